//! Install packages into a fresh root through the host's dnf (`--installroot`).

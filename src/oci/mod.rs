//! Encapsulate a commit as an OCI image (ostree-ext), chunked by package, and push it.

//! ostree-composer: compose rpm-ostree treefiles into OSTree commits, archive
//! repos and OCI images, in a default rootless podman container.
//!
//! The library holds all behaviour; `src/main.rs` is a thin shell that parses
//! the command line, calls [`cli::run`] and maps errors to exit codes
//! ([`exit`]). Data flows left to right through the modules:
//! treefile -> repos/install -> postprocess -> commit -> export/oci, driven by
//! [`compose`].

pub mod cli;
pub mod commit;
pub mod compose;
pub mod exit;
pub mod export;
pub mod install;
pub mod oci;
pub mod postprocess;
pub mod progress;
pub mod repos;
pub mod threads;
pub mod treefile;

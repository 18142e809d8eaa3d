//! Writing a prepared rootfs into an OSTree repository as a commit, and
//! reading commits back.
//!
//! - [`repo`]: open/create repositories (clear errors, fsync policy).
//! - [`lock`]: the exclusive per-repository compose lock.
//! - [`metadata`]: typed commit metadata and its big-endian `a{sv}` form.
//! - [`write`]: [`commit_rootfs`], one transaction, ref moved only on success;
//!   [`xattrs`] decides which extended attributes are kept, `special` moves
//!   fifos/sockets/devices out of the way; `parallel` writes the files on
//!   one thread per core (same objects, same checksum as libostree's walk).
//! - [`known`]: checksums the cached installer already knows, trusted while
//!   the file is untouched; [`prestage`] copies those files into the
//!   repository's staging directory while the compose post-processes.
//! - [`read`]: [`CommitInfo`], a previous commit's metadata and files.
//! - [`pkgdiff`]: the compose JSON package diff (pure).
//! - [`pull`]: copying commits between local repositories.
//!
//! Everything goes through the `ostree` crate (libostree), never the CLI.
//! Not for: deciding metadata values, versions or change detection policy
//! (the compose pipeline does), exporting to archive repos ([`crate::export`]).

mod adopt;
pub mod checksum;
mod dirtree;
pub mod known;
pub mod lock;
pub mod metadata;
mod parallel;
pub mod pkgdiff;
pub mod prestage;
pub mod pull;
pub mod read;
pub mod repo;
mod special;
pub(crate) mod staging;
pub mod tree_walk;
pub mod write;
pub mod xattrs;

pub use lock::RepoLock;
pub use metadata::{CommitMetadata, MetaValue, PkgListEntry};
pub use pkgdiff::{pkgdiff, pkgdiff_to_json, PkgChange, PkgDiffEntry};
pub use pull::{pull_local, PullHistory, PullLocalOptions};
pub use read::{format_timestamp, CommitInfo};
pub use repo::{create_repo, open_or_create_repo, open_repo, set_repo_fsync};
pub use write::{
    commit_rootfs, find_kernel_version, resolve_parent, source_date_epoch, CommitOptions,
    CommitResult, CommitStats, ParentSpec, TreeWriter,
};

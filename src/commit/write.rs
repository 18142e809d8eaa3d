//! Writing a prepared rootfs directory into a repository as one commit, inside
//! one transaction: on any error the transaction is aborted, nothing becomes
//! reachable and no ref moves.
//!
//! What is kept from disk: ownership, modes (setuid/setgid/sticky included:
//! no canonical permissions), symlinks, and of the xattrs only
//! `security.capability`, `user.pax.flags` and `user.ima` (stored as
//! `security.ima`). Files that are hardlinked checkouts of a bare-user repo
//! (with a `user.ostreemeta` xattr) are committed with the ownership, mode
//! and xattrs recorded there (minus `security.selinux`). Fifos, sockets and
//! device nodes are skipped with a note. SELinux labels come from the rootfs'
//! own policy when asked for.
//!
//! Not for: post-processing the rootfs, computing metadata values, exporting.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::prelude::*;
use ostree::{
    MutableTree, Repo, RepoCommitFilterResult, RepoCommitModifier, RepoCommitModifierFlags,
    RepoDevInoCache, RepoFile, SePolicy,
};

use super::metadata::{CommitMetadata, KEY_VERSION};
use super::parallel::ContentStats;
use super::read::{format_timestamp, CommitInfo};
use super::special::{find_special_files, SpecialFilesAside};
use super::xattrs::{kept_xattrs, read_ostreemeta, xattrs_to_variant};

/// Which commit becomes the parent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ParentSpec {
    /// The ref's current commit, if the ref exists (the default).
    #[default]
    FromRef,
    /// `--parent REV`: must resolve; a full 64-hex checksum is taken as is,
    /// even if that commit is not in the repository.
    Rev(String),
    /// `--no-parent`.
    None,
}

/// Options of [`commit_rootfs`].
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// The prepared root filesystem directory.
    pub rootfs: PathBuf,
    /// The ref this commit is for (parent lookup and, with `write_ref`, update).
    pub ref_: Option<String>,
    /// Move the ref to the new commit. `false` for `--write-commitid-to`.
    pub write_ref: bool,
    pub parent: ParentSpec,
    pub metadata: CommitMetadata,
    /// Detached metadata (written only when not empty).
    pub detached_metadata: CommitMetadata,
    /// Commit time in seconds (`SOURCE_DATE_EPOCH`); `None` = now.
    pub timestamp: Option<u64>,
    /// Label files with the rootfs' SELinux policy. Without a policy in the
    /// rootfs this warns and commits unlabeled.
    pub selinux: bool,
    /// A device/inode -> checksum cache of files checked out from this repo.
    pub devino_cache: Option<RepoDevInoCache>,
    /// Content checksums known without reading the files (the cached
    /// installer's); used by the parallel writer.
    pub known_contents: Option<std::sync::Arc<super::known::KnownContents>>,
    /// Content objects being copied into the repository ahead of the
    /// commit; used by the parallel writer when it consumes the rootfs.
    pub pre_stager: Option<super::prestage::PreStager>,
    /// Delete rootfs files as they are committed (saves disk space).
    pub consume: bool,
    /// Sign the commit with this GPG key id.
    pub gpg_key: Option<String>,
    /// GnuPG home directory for `gpg_key` (default: the user's).
    pub gpg_homedir: Option<PathBuf>,
    /// How the files are written (both give the same commit).
    pub writer: TreeWriter,
}

/// Which tree writer [`commit_rootfs`] uses. Both write the same objects and
/// give the same commit checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TreeWriter {
    /// The parallel writer when it applies (no devino cache, a tree it
    /// reproduces exactly; SELinux labels included), else libostree's walk.
    #[default]
    Auto,
    /// libostree's single-threaded `write_dfd_to_mtree`.
    Libostree,
    /// The parallel writer with this many worker threads (when it applies).
    Parallel(usize),
}

impl CommitOptions {
    /// Defaults: no ref, parent from the ref, no metadata, now, no SELinux,
    /// keep the rootfs, unsigned.
    pub fn new(rootfs: impl Into<PathBuf>) -> Self {
        CommitOptions {
            rootfs: rootfs.into(),
            ref_: None,
            write_ref: true,
            parent: ParentSpec::FromRef,
            metadata: CommitMetadata::new(),
            detached_metadata: CommitMetadata::new(),
            timestamp: None,
            selinux: false,
            devino_cache: None,
            known_contents: None,
            pre_stager: None,
            consume: false,
            gpg_key: None,
            gpg_homedir: None,
            writer: TreeWriter::Auto,
        }
    }
}

/// Transaction statistics (the compose JSON's `ostree-n-*` keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommitStats {
    pub metadata_total: u64,
    pub metadata_written: u64,
    pub content_total: u64,
    pub content_written: u64,
    pub devino_cache_hits: u64,
    pub content_bytes_written: u64,
}

/// What [`commit_rootfs`] made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitResult {
    pub checksum: String,
    /// `ostree_commit_get_content_checksum`: over the tree and metadata only.
    pub content_checksum: String,
    pub parent: Option<String>,
    /// Seconds since the epoch.
    pub timestamp: u64,
    /// The ref that now points at the commit (None if not written).
    pub ref_written: Option<String>,
    /// The `version` metadata, if any.
    pub version: Option<String>,
    pub stats: CommitStats,
    /// Paths (in the commit's namespace) of skipped fifos, sockets, devices.
    pub skipped: Vec<String>,
    /// Whether files were labeled with an SELinux policy.
    pub selinux_labeled: bool,
    pub signed: bool,
}

impl CommitResult {
    /// The timestamp as `%FT%H:%M:%SZ`.
    pub fn timestamp_string(&self) -> String {
        format_timestamp(self.timestamp)
    }
}

/// The commit time from `SOURCE_DATE_EPOCH`, if set (for reproducible commits).
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => parse_source_date_epoch(&value).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(crate::exit::invalid_input(
            "SOURCE_DATE_EPOCH is not valid UTF-8; set it to seconds since 1970-01-01 UTC",
        )),
    }
}

/// Parse a `SOURCE_DATE_EPOCH` value: decimal seconds since the epoch.
pub fn parse_source_date_epoch(value: &str) -> Result<u64> {
    value.trim().parse::<u64>().map_err(|_| {
        crate::exit::invalid_input(format!(
            "SOURCE_DATE_EPOCH='{value}' is not a number of seconds since 1970-01-01 UTC"
        ))
    })
}

/// Decide the parent commit for `ref_` per `spec`.
pub fn resolve_parent(
    repo: &Repo,
    ref_: Option<&str>,
    spec: &ParentSpec,
) -> Result<Option<String>> {
    match spec {
        ParentSpec::None => Ok(None),
        ParentSpec::FromRef => match ref_ {
            Some(r) => super::read::resolve_rev(repo, r),
            None => Ok(None),
        },
        ParentSpec::Rev(rev) => {
            if is_full_checksum(rev) {
                return Ok(Some(rev.to_ascii_lowercase()));
            }
            match super::read::resolve_rev(repo, rev)? {
                Some(c) => Ok(Some(c)),
                None => Err(crate::exit::invalid_input(format!(
                    "--parent '{rev}' does not resolve to a commit in the repository; \
                     give an existing ref or a full 64-character checksum"
                ))),
            }
        }
    }
}

fn is_full_checksum(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Commit `opts.rootfs` into `repo`. See the module doc for what is kept.
pub fn commit_rootfs(repo: &Repo, opts: &CommitOptions) -> Result<CommitResult> {
    if let Some(r) = &opts.ref_ {
        ostree::validate_rev(r)
            .map_err(|e| crate::exit::invalid_input(format!("invalid ref '{r}': {e}")))?;
    }
    let rootfs_str = opts.rootfs.to_str().ok_or_else(|| {
        crate::exit::invalid_input(format!(
            "rootfs path {} is not valid UTF-8",
            opts.rootfs.display()
        ))
    })?;
    let rootfs_dir = std::fs::File::open(&opts.rootfs)
        .with_context(|| format!("Opening rootfs {}", opts.rootfs.display()))?;
    if !rootfs_dir
        .metadata()
        .with_context(|| format!("Reading {}", opts.rootfs.display()))?
        .is_dir()
    {
        return Err(crate::exit::invalid_input(format!(
            "rootfs {} is not a directory",
            opts.rootfs.display()
        )));
    }

    let parent = resolve_parent(repo, opts.ref_.as_deref(), &opts.parent)?;
    let timestamp = match opts.timestamp {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("The system clock is before 1970")?
            .as_secs(),
    };

    // The policy holds on to the rootfs fd: keep `rootfs_dir` open while it lives.
    let sepolicy = if opts.selinux {
        load_policy(&rootfs_dir, &opts.rootfs)?
    } else {
        None
    };
    let selinux_labeled = sepolicy.is_some();

    let txn = repo
        .auto_transaction(gio::Cancellable::NONE)
        .context("Starting a repository transaction")?;
    let (root, skipped, content) = write_tree(repo, opts, rootfs_str, sepolicy.as_ref())?;
    drop(sepolicy);
    drop(rootfs_dir);
    let metadata = opts.metadata.to_variant();
    let checksum = repo
        .write_commit_with_time(
            parent.as_deref(),
            Some(""),
            Some(""),
            Some(&metadata),
            &root,
            timestamp,
            gio::Cancellable::NONE,
        )
        .context("Writing the commit object")?
        .to_string();
    if !opts.detached_metadata.is_empty() {
        repo.write_commit_detached_metadata(
            &checksum,
            Some(&opts.detached_metadata.to_variant()),
            gio::Cancellable::NONE,
        )
        .context("Writing detached commit metadata")?;
    }
    if let Some(key) = &opts.gpg_key {
        let homedir = opts.gpg_homedir.as_deref().map(path_str).transpose()?;
        repo.sign_commit(&checksum, key, homedir, gio::Cancellable::NONE)
            .with_context(|| format!("Signing commit {checksum} with GPG key {key}"))?;
    }
    let ref_written = match (&opts.ref_, opts.write_ref) {
        (Some(r), true) => {
            repo.transaction_set_ref(None, r, Some(&checksum));
            Some(r.clone())
        }
        _ => None,
    };
    // Marked partial while libostree moves the staged objects into place: a
    // kill in that window leaves an unreferenced commit whose trees may be
    // missing, and `ostree fsck` accepts a partial commit where it would
    // report a corrupt one. Unmarked once everything is in place.
    repo.mark_commit_partial(&checksum, true)
        .with_context(|| format!("Marking commit {checksum} partial during the transaction"))?;
    let stats = txn
        .commit(gio::Cancellable::NONE)
        .context("Committing the repository transaction")?;
    repo.mark_commit_partial(&checksum, false)
        .with_context(|| format!("Unmarking commit {checksum} partial"))?;

    let info = CommitInfo::load(repo, &checksum)?;
    // A `version` that is not a string (e.g. a JSON number) is not a version.
    let version = info
        .metadata_value(KEY_VERSION)
        .and_then(|v| v.str().map(String::from));
    Ok(CommitResult {
        content_checksum: info.content_checksum()?,
        checksum,
        parent,
        timestamp,
        ref_written,
        version,
        stats: CommitStats {
            metadata_total: stats.get_metadata_objects_total() as u64,
            metadata_written: stats.get_metadata_objects_written() as u64,
            content_total: stats.get_content_objects_total() as u64 + content.total,
            content_written: stats.get_content_objects_written() as u64 + content.written,
            devino_cache_hits: stats.get_devino_cache_hits() as u64,
            content_bytes_written: stats.get_content_bytes_written() + content.bytes_written,
        },
        skipped,
        selinux_labeled,
        signed: opts.gpg_key.is_some(),
    })
}

/// Write the rootfs' files and directories (inside the caller's transaction)
/// and return the tree root, the skipped special files and the content
/// statistics of the parallel writer's own transactions (zero for libostree's walk).
fn write_tree(
    repo: &Repo,
    opts: &CommitOptions,
    rootfs_str: &str,
    sepolicy: Option<&SePolicy>,
) -> Result<(RepoFile, Vec<String>, ContentStats)> {
    let threads = match opts.writer {
        TreeWriter::Libostree => None,
        _ if opts.devino_cache.is_some() => None,
        TreeWriter::Auto => Some(super::parallel::default_threads()),
        TreeWriter::Parallel(n) => Some(n.max(1)),
    };
    if let Some(threads) = threads {
        let known = opts.known_contents.as_deref();
        match super::parallel::write_tree(
            repo,
            &opts.rootfs,
            threads,
            opts.consume,
            known,
            opts.pre_stager.as_ref(),
            sepolicy,
        )? {
            Ok((mtree, skipped, content)) => {
                return Ok((write_root(repo, &mtree)?, skipped, content));
            }
            Err(declined) => {
                eprintln!(
                    "note: committing with libostree's single-threaded walk ({})",
                    declined.0
                );
            }
        }
    }
    let (root, skipped) = write_tree_libostree(repo, opts, rootfs_str, sepolicy)?;
    Ok((root, skipped, ContentStats::default()))
}

fn write_root(repo: &Repo, mtree: &MutableTree) -> Result<RepoFile> {
    let root = repo
        .write_mtree(mtree, gio::Cancellable::NONE)
        .context("Writing the directory tree")?;
    root.downcast::<RepoFile>()
        .map_err(|_| anyhow!("libostree returned a tree root that is not a RepoFile"))
}

/// [`write_tree`] with libostree's `write_dfd_to_mtree`.
fn write_tree_libostree(
    repo: &Repo,
    opts: &CommitOptions,
    rootfs_str: &str,
    sepolicy: Option<&SePolicy>,
) -> Result<(RepoFile, Vec<String>)> {
    // libostree's directory walk rejects special files before the commit
    // filter sees them (`Not a regular file or symlink`), so move them out of
    // the tree for the commit (or delete them when consuming the rootfs). The
    // guard puts them back, also on error.
    let special = find_special_files(&opts.rootfs)?;
    for path in &special {
        eprintln!("note: skipping {path}: fifos, sockets and device nodes are not committed");
    }
    let callback_error = Rc::new(RefCell::new(None));
    let modifier = build_modifier(opts, sepolicy, &callback_error);
    let mtree = MutableTree::new();
    let aside = SpecialFilesAside::move_out(&opts.rootfs, &special, opts.consume)?;
    let write_result = repo.write_dfd_to_mtree(
        libc::AT_FDCWD,
        rootfs_str,
        &mtree,
        Some(&modifier),
        gio::Cancellable::NONE,
    );
    let restored = aside.restore();
    if let Some(err) = callback_error.borrow_mut().take() {
        return Err(err);
    }
    write_result
        .with_context(|| format!("Writing {} into the repository", opts.rootfs.display()))?;
    restored?;
    Ok((write_root(repo, &mtree)?, special))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path {} is not valid UTF-8", p.display()))
}

/// Load the rootfs' SELinux policy; `None` (with a warning) if it has none.
fn load_policy(rootfs_dir: &std::fs::File, rootfs: &Path) -> Result<Option<SePolicy>> {
    let policy = SePolicy::new_at(rootfs_dir.as_raw_fd(), gio::Cancellable::NONE)
        .with_context(|| format!("Loading the SELinux policy of {}", rootfs.display()))?;
    if policy.csum().is_none() {
        eprintln!(
            "warning: SELinux labeling was requested but {} has no SELinux policy \
             (no usr/etc/selinux/config or etc/selinux/config); committing without labels",
            rootfs.display()
        );
        return Ok(None);
    }
    Ok(Some(policy))
}

type SharedError = Rc<RefCell<Option<anyhow::Error>>>;

fn build_modifier(
    opts: &CommitOptions,
    sepolicy: Option<&SePolicy>,
    callback_error: &SharedError,
) -> RepoCommitModifier {
    let mut flags = RepoCommitModifierFlags::NONE;
    if opts.consume {
        flags |= RepoCommitModifierFlags::CONSUME;
    }
    if sepolicy.is_some() {
        flags |= RepoCommitModifierFlags::ERROR_ON_UNLABELED;
    }

    let filter_root = opts.rootfs.clone();
    let filter_error = Rc::clone(callback_error);
    // The filter sees every path once: count them for the progress display.
    let seen = std::cell::Cell::new(0u64);
    let bar = RefCell::new(crate::progress::bar("commit", 0));
    let filter = move |_repo: &Repo, path: &str, info: &gio::FileInfo| {
        seen.set(seen.get() + 1);
        bar.borrow_mut().set(seen.get());
        let file_type_bits = info.attribute_uint32("unix::mode") & libc::S_IFMT;
        // Special files were moved out before the walk; one that appeared
        // since is still not committed.
        if ![libc::S_IFREG, libc::S_IFDIR, libc::S_IFLNK].contains(&file_type_bits) {
            eprintln!("note: skipping {path}: fifos, sockets and device nodes are not committed");
            return RepoCommitFilterResult::Skip;
        }
        match read_ostreemeta(&disk_path(&filter_root, path)) {
            Ok(Some(meta)) => {
                info.set_attribute_uint32("unix::uid", meta.uid);
                info.set_attribute_uint32("unix::gid", meta.gid);
                info.set_attribute_uint32("unix::mode", file_type_bits | (meta.mode & 0o7777));
            }
            Ok(None) => {}
            Err(e) => record_error(&filter_error, e),
        }
        RepoCommitFilterResult::Allow
    };
    let modifier = RepoCommitModifier::new(flags, Some(Box::new(filter)));

    let xattr_root = opts.rootfs.clone();
    let xattr_error = Rc::clone(callback_error);
    modifier.set_xattr_callback(move |_repo, path, _info| {
        match kept_xattrs(&disk_path(&xattr_root, path)) {
            Ok(list) => xattrs_to_variant(&list),
            Err(e) => {
                record_error(&xattr_error, e);
                xattrs_to_variant(&[])
            }
        }
    });
    if let Some(policy) = sepolicy {
        modifier.set_sepolicy(Some(policy));
    }
    if let Some(cache) = &opts.devino_cache {
        modifier.set_devino_cache(cache);
    }
    modifier
}

fn record_error(slot: &SharedError, err: anyhow::Error) {
    let mut slot = slot.borrow_mut();
    if slot.is_none() {
        *slot = Some(err);
    }
}

/// The on-disk path of a commit path ("/usr/bin/x") under the rootfs.
pub(super) fn disk_path(root: &Path, commit_path: &str) -> PathBuf {
    let rel = commit_path.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// The kernel version of a rootfs with exactly one `usr/lib/modules/*/vmlinuz`
/// (what `ostree.linux` holds); `None` if there is no kernel. Several kernels
/// are an error, as in `ostree_commit_metadata_for_bootable`.
pub fn find_kernel_version(rootfs: &Path) -> Result<Option<String>> {
    let modules = rootfs.join("usr/lib/modules");
    if !modules.is_dir() {
        return Ok(None);
    }
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(&modules).with_context(|| format!("Reading {}", modules.display()))?
    {
        let entry = entry.with_context(|| format!("Reading {}", modules.display()))?;
        if entry.path().join("vmlinuz").is_file() {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(crate::exit::invalid_input(format!(
            "{} holds several kernels ({}); a bootable commit needs exactly one usr/lib/modules/*/vmlinuz",
            rootfs.display(),
            found.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_values() {
        assert_eq!(
            parse_source_date_epoch("1700000000").unwrap(),
            1_700_000_000
        );
        assert_eq!(parse_source_date_epoch(" 0\n").unwrap(), 0);
        let err = parse_source_date_epoch("yesterday").unwrap_err();
        assert_eq!(crate::exit::exit_code_for(&err), 3);
        assert!(parse_source_date_epoch("-1").is_err());
    }

    #[test]
    fn full_checksums() {
        assert!(is_full_checksum(&"01ba4719".repeat(8)));
        assert!(!is_full_checksum("01ba4719"));
        assert!(!is_full_checksum(&"zz".repeat(32)));
    }
}

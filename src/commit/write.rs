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
use ostree::glib::{Variant, VariantTy};
use ostree::prelude::*;
use ostree::{
    MutableTree, Repo, RepoCommitFilterResult, RepoCommitModifier, RepoCommitModifierFlags,
    RepoDevInoCache, RepoFile, SePolicy,
};

use super::metadata::{CommitMetadata, MetaValue, KEY_VERSION};
use super::read::{format_timestamp, CommitInfo};

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
    /// Delete rootfs files as they are committed (saves disk space).
    pub consume: bool,
    /// Sign the commit with this GPG key id.
    pub gpg_key: Option<String>,
    /// GnuPG home directory for `gpg_key` (default: the user's).
    pub gpg_homedir: Option<PathBuf>,
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
            consume: false,
            gpg_key: None,
            gpg_homedir: None,
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

    // The policy holds on to the rootfs fd: keep `rootfs_dir` open until the end.
    let sepolicy = if opts.selinux {
        load_policy(&rootfs_dir, &opts.rootfs)?
    } else {
        None
    };
    let skipped = Rc::new(RefCell::new(Vec::new()));
    let callback_error = Rc::new(RefCell::new(None));
    let modifier = build_modifier(opts, sepolicy.as_ref(), &skipped, &callback_error);

    let txn = repo
        .auto_transaction(gio::Cancellable::NONE)
        .context("Starting a repository transaction")?;
    let mtree = MutableTree::new();
    // libostree's directory walk rejects special files before the commit
    // filter sees them (`Not a regular file or symlink`), so move them out of
    // the tree for the commit (or delete them when consuming the rootfs). The
    // guard puts them back, also on error.
    let special = find_special_files(&opts.rootfs)?;
    for path in &special {
        eprintln!("note: skipping {path}: fifos, sockets and device nodes are not committed");
    }
    skipped.borrow_mut().extend(special.iter().cloned());
    let aside = SpecialFilesAside::move_out(&opts.rootfs, &special, opts.consume)?;
    let write_result = repo.write_dfd_to_mtree(
        libc::AT_FDCWD,
        rootfs_str,
        &mtree,
        Some(&modifier),
        gio::Cancellable::NONE,
    );
    aside.restore()?;
    if let Some(err) = callback_error.borrow_mut().take() {
        return Err(err);
    }
    write_result
        .with_context(|| format!("Writing {} into the repository", opts.rootfs.display()))?;
    let root = repo
        .write_mtree(&mtree, gio::Cancellable::NONE)
        .context("Writing the directory tree")?;
    let root = root
        .downcast::<RepoFile>()
        .map_err(|_| anyhow!("libostree returned a tree root that is not a RepoFile"))?;
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
    let stats = txn
        .commit(gio::Cancellable::NONE)
        .context("Committing the repository transaction")?;
    drop(modifier);
    drop(rootfs_dir);

    let info = CommitInfo::load(repo, &checksum)?;
    let version = match opts.metadata.get(KEY_VERSION) {
        Some(MetaValue::Str(v)) => Some(v.clone()),
        _ => info.version().ok().flatten(),
    };
    let skipped = skipped.borrow().clone();
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
            content_total: stats.get_content_objects_total() as u64,
            content_written: stats.get_content_objects_written() as u64,
            devino_cache_hits: stats.get_devino_cache_hits() as u64,
            content_bytes_written: stats.get_content_bytes_written(),
        },
        skipped,
        selinux_labeled: sepolicy.is_some(),
        signed: opts.gpg_key.is_some(),
    })
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
    skipped: &Rc<RefCell<Vec<String>>>,
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
    let filter_skipped = Rc::clone(skipped);
    let filter_error = Rc::clone(callback_error);
    let filter = move |_repo: &Repo, path: &str, info: &gio::FileInfo| {
        // libostree fills `unix::mode` from stat(); the gio file type is not
        // always set for special files, so decide on the mode's type bits.
        let file_type_bits = info.attribute_uint32("unix::mode") & libc::S_IFMT;
        if ![libc::S_IFREG, libc::S_IFDIR, libc::S_IFLNK].contains(&file_type_bits) {
            eprintln!("note: skipping {path}: fifos, sockets and device nodes are not committed");
            filter_skipped.borrow_mut().push(path.to_string());
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
fn disk_path(root: &Path, commit_path: &str) -> PathBuf {
    let rel = commit_path.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Commit paths ("/dev/null") of everything under `root` that is not a
/// directory, regular file or symlink. Uses the directory entries' types, so
/// it costs one readdir per directory and no stat in the common case.
pub fn find_special_files(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, commit_dir)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("Reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("Reading {}", dir.display()))?;
            let file_type = entry
                .file_type()
                .with_context(|| format!("Reading the type of {}", entry.path().display()))?;
            let name = entry.file_name();
            let commit_path = format!("{commit_dir}/{}", name.to_string_lossy());
            if file_type.is_dir() {
                stack.push((entry.path(), commit_path));
            } else if !file_type.is_file() && !file_type.is_symlink() {
                found.push(commit_path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Special files moved out of a rootfs for the duration of a commit.
struct SpecialFilesAside {
    holding: Option<tempfile::TempDir>,
    moved: Vec<(PathBuf, PathBuf)>,
}

impl SpecialFilesAside {
    /// Move each of `special` (commit paths) into a holding directory beside
    /// the rootfs, or delete them if `delete` is set.
    fn move_out(rootfs: &Path, special: &[String], delete: bool) -> Result<Self> {
        let mut aside = SpecialFilesAside {
            holding: None,
            moved: Vec::new(),
        };
        if special.is_empty() {
            return Ok(aside);
        }
        if delete {
            for path in special {
                let disk = disk_path(rootfs, path);
                std::fs::remove_file(&disk)
                    .with_context(|| format!("Removing special file {}", disk.display()))?;
            }
            return Ok(aside);
        }
        let parent = rootfs.parent().unwrap_or(rootfs);
        let holding = tempfile::Builder::new()
            .prefix(".ostree-composer-special-")
            .tempdir_in(parent)
            .with_context(|| format!("Creating a holding directory in {}", parent.display()))?;
        let holding_path = holding.path().to_path_buf();
        aside.holding = Some(holding);
        for (i, path) in special.iter().enumerate() {
            let from = disk_path(rootfs, path);
            let to = holding_path.join(i.to_string());
            std::fs::rename(&from, &to).with_context(|| {
                format!(
                    "Moving special file {} out of the tree to commit it without it",
                    from.display()
                )
            })?;
            aside.moved.push((from, to));
        }
        Ok(aside)
    }

    /// Put everything back where it was.
    fn restore(mut self) -> Result<()> {
        self.put_back()
    }

    fn put_back(&mut self) -> Result<()> {
        while let Some((original, held)) = self.moved.pop() {
            std::fs::rename(&held, &original).with_context(|| {
                format!(
                    "Restoring special file {} (it is at {})",
                    original.display(),
                    held.display()
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for SpecialFilesAside {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            eprintln!("warning: {e:#}");
            // Keep the holding directory so nothing is lost.
            if let Some(dir) = self.holding.take() {
                let _ = dir.keep();
            }
        }
    }
}

/// An extended attribute: name (without NUL) and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// All xattrs of `path` (not following symlinks), sorted by name. A
/// filesystem without xattr support yields none.
pub fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    use rustix::io::Errno;
    let unsupported = |e: Errno| e == Errno::NOTSUP || e == Errno::OPNOTSUPP;
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(e) if e == Errno::RANGE => {
                let need = rustix::fs::llistxattr(path, &mut [])
                    .with_context(|| format!("Listing xattrs of {}", path.display()))?;
                names.resize(need.max(names.len() * 2), 0);
            }
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("Listing xattrs of {}", path.display()))
            }
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if let Some(value) = read_xattr(path, name)? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr's value; `None` if it does not exist.
fn read_xattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    use rustix::io::Errno;
    let cname = std::ffi::CString::new(name).context("xattr name contains a NUL byte")?;
    let shown = || {
        format!(
            "Reading xattr {} of {}",
            String::from_utf8_lossy(name),
            path.display()
        )
    };
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e == Errno::RANGE => {
                let need =
                    rustix::fs::lgetxattr(path, cname.as_c_str(), &mut []).with_context(shown)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) if e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP => {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(shown),
        }
    }
}

/// Ownership, mode and xattrs that a bare-user repository recorded for a
/// checked-out file (`user.ostreemeta`, GVariant `(uuua(ayay))`, numbers big-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Vec<Xattr>,
}

const OSTREEMETA: &[u8] = b"user.ostreemeta";

fn read_ostreemeta(path: &Path) -> Result<Option<OstreeMeta>> {
    match read_xattr(path, OSTREEMETA)? {
        None => Ok(None),
        Some(bytes) => parse_ostreemeta(&bytes)
            .map(Some)
            .with_context(|| format!("Parsing user.ostreemeta of {}", path.display())),
    }
}

/// Parse the value of a `user.ostreemeta` xattr.
pub fn parse_ostreemeta(bytes: &[u8]) -> Result<OstreeMeta> {
    let ty = VariantTy::new("(uuua(ayay))").context("invalid GVariant type string")?;
    let v = Variant::from_data_with_type(bytes, ty);
    if !v.is_normal_form() {
        anyhow::bail!("not a valid (uuua(ayay)) GVariant");
    }
    let (uid, gid, mode, xattrs): (u32, u32, u32, Vec<Xattr>) = v
        .get()
        .ok_or_else(|| anyhow!("not a (uuua(ayay)) GVariant"))?;
    let xattrs = xattrs
        .into_iter()
        .map(|(mut k, v)| {
            if k.last() == Some(&0) {
                k.pop();
            }
            (k, v)
        })
        .collect();
    Ok(OstreeMeta {
        uid: u32::from_be(uid),
        gid: u32::from_be(gid),
        mode: u32::from_be(mode),
        xattrs,
    })
}

/// The xattrs to commit for a file: those recorded in `user.ostreemeta` minus
/// `security.selinux`, else the on-disk ones filtered by [`filter_xattrs`].
fn kept_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    if let Some(meta) = read_ostreemeta(path)? {
        let mut list: Vec<Xattr> = meta
            .xattrs
            .into_iter()
            .filter(|(k, _)| k.as_slice() != b"security.selinux")
            .collect();
        list.sort();
        return Ok(list);
    }
    Ok(filter_xattrs(read_xattrs(path)?))
}

/// Keep `security.capability` and `user.pax.flags`; rename `user.ima` to
/// `security.ima`; drop everything else (SELinux labels come from the policy).
pub fn filter_xattrs(list: Vec<Xattr>) -> Vec<Xattr> {
    let mut kept: Vec<Xattr> = list
        .into_iter()
        .filter_map(|(k, v)| match k.as_slice() {
            b"security.capability" | b"user.pax.flags" => Some((k, v)),
            b"user.ima" => Some((b"security.ima".to_vec(), v)),
            _ => None,
        })
        .collect();
    kept.sort();
    kept
}

/// The `a(ayay)` variant OSTree expects from an xattr callback (names with a trailing NUL).
fn xattrs_to_variant(list: &[Xattr]) -> Variant {
    let children = list.iter().map(|(k, v)| {
        let mut name = k.clone();
        name.push(0);
        Variant::tuple_from_iter([
            Variant::array_from_fixed_array(&name),
            Variant::array_from_fixed_array(v),
        ])
    });
    let ty = VariantTy::new("(ayay)").expect("(ayay) is a valid GVariant type");
    Variant::array_from_iter_with_type(ty, children)
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
    use ostree::glib::ToVariant;

    #[test]
    fn full_checksums() {
        assert!(is_full_checksum(&"01ba4719".repeat(8)));
        assert!(!is_full_checksum("01ba4719"));
        assert!(!is_full_checksum(&"zz".repeat(32)));
    }

    #[test]
    fn xattr_filter() {
        let list = vec![
            (b"user.foo".to_vec(), b"1".to_vec()),
            (b"security.selinux".to_vec(), b"x".to_vec()),
            (b"user.ima".to_vec(), b"sig".to_vec()),
            (b"security.capability".to_vec(), b"cap".to_vec()),
        ];
        assert_eq!(
            filter_xattrs(list),
            vec![
                (b"security.capability".to_vec(), b"cap".to_vec()),
                (b"security.ima".to_vec(), b"sig".to_vec()),
            ]
        );
    }

    #[test]
    fn xattr_variant_has_nul_terminated_names() {
        let v = xattrs_to_variant(&[(b"a.b".to_vec(), vec![1, 2])]);
        assert_eq!(v.type_().as_str(), "a(ayay)");
        assert_eq!(v.print(false).as_str(), "[(b'a.b', [0x01, 0x02])]");
        assert_eq!(xattrs_to_variant(&[]).n_children(), 0);
    }

    #[test]
    fn ostreemeta_parse() {
        let xattrs = vec![(b"security.capability\0".to_vec(), vec![9u8])];
        let v = (900u32.to_be(), 901u32.to_be(), 0o104755u32.to_be(), xattrs).to_variant();
        let meta = parse_ostreemeta(v.data()).unwrap();
        assert_eq!((meta.uid, meta.gid, meta.mode), (900, 901, 0o104755));
        assert_eq!(
            meta.xattrs,
            vec![(b"security.capability".to_vec(), vec![9u8])]
        );
        assert!(parse_ostreemeta(b"\x01").is_err());
    }
}

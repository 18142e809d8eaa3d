//! The package cache: each RPM's payload extracted once, on disk, so a root
//! can be assembled from it by hardlinks instead of unpacking every package
//! on every compose.
//!
//! Layout: `CACHEDIR/pkgcache/v1/<key>/` where `key` is a filesystem-safe
//! name the caller chooses (the package's rpm-md checksum, `sha256-<hex>`).
//! Inside, `tree/` holds the payload with its real paths (directories 0755;
//! regular files with the payload's permission bits, setuid/setgid included,
//! owned by whoever ran the import, mtime from the payload; symlinks;
//! hardlink sets as hardlinks), and `index.json` lists every regular file with
//! its OSTree content checksum for owner 0:0, the payload mode and no xattrs
//! (hashed while the file is written, never read back), its size, mode and
//! hardlink group. An entry exists only once its `index.json` parses:
//! imports extract into `.tmp-<random>/`, write the index last and rename the
//! directory into place; a crash leaves only a `.tmp-` directory.
//!
//! Locking: every [`PackageCache`] holds a shared `flock` on `v1/.lock` for
//! its lifetime, so entries another compose is hardlinking from are never
//! deleted under it. Removing stale `.tmp-` directories ([`PackageCache::open`])
//! and garbage collection ([`PackageCache::retain`]) need the lock exclusively
//! and are skipped when another process holds it.
//!
//! Not for: device nodes and fifos (an import of a package with one fails
//! naming it; the caller installs that package with rpm), ownership, file
//! capabilities and other header-only metadata (the rpmdb has them),
//! assembling the root.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use super::rpmpayload::{PayloadEntry, PayloadReader};
use crate::commit::checksum::ContentHasher;

const INDEX_VERSION: u32 = 1;
const INDEX_FILE: &str = "index.json";
const TMP_PREFIX: &str = ".tmp-";
/// Longest symlink target accepted (PATH_MAX).
const MAX_LINK_TARGET: u64 = 4096;

/// The package cache under one cache directory; holds a shared lock on it.
#[derive(Debug)]
pub struct PackageCache {
    /// `CACHEDIR/pkgcache/v1`.
    root: PathBuf,
    /// `.lock`, flocked shared (exclusive during `retain`).
    lock: File,
    /// Imports and invalidations of this process hold it for reading, `retain`
    /// for writing: our own shared flock does not keep our own threads out.
    gc: RwLock<()>,
}

/// One imported package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPackage {
    pub key: String,
    /// `.../<key>/tree`: the payload's files under their real paths.
    pub tree: PathBuf,
    /// Every regular file, by absolute path (`/usr/bin/bash`).
    pub files: BTreeMap<String, CachedFile>,
}

/// One regular file of a cached package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    /// OSTree content checksum for uid 0, gid 0, [`Self::mode`] and no xattrs.
    pub checksum: String,
    pub size: u64,
    /// `st_mode` from the payload, `S_IFREG` included.
    pub mode: u32,
    /// Files with the same group are one hardlink set (one inode in `tree/`).
    pub link_group: Option<u32>,
}

/// `index.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Index {
    version: u32,
    key: String,
    /// The `.rpm` it was imported from (for people reading the cache).
    source: String,
    files: BTreeMap<String, CachedFile>,
}

impl PackageCache {
    /// Open (creating) `cachedir/pkgcache/v1` and take the shared lock. When
    /// no other process uses the cache, `.tmp-` directories left by crashed
    /// imports are removed first.
    pub fn open(cachedir: &Path) -> Result<PackageCache> {
        PackageCache::open_root(cachedir.join("pkgcache").join("v1"))
    }

    /// Another handle on the same cache (with its own shared lock), for
    /// another thread.
    pub fn reopen(&self) -> Result<PackageCache> {
        PackageCache::open_root(self.root.clone())
    }

    fn open_root(root: PathBuf) -> Result<PackageCache> {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("Creating the package cache {}", root.display()))?;
        let lock_path = root.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("Opening {}", lock_path.display()))?;
        let cache = PackageCache {
            root,
            lock,
            gc: RwLock::new(()),
        };
        if cache.try_exclusive()? {
            // Nobody else has the cache open: every .tmp- is stale.
            let cleaned = cache.remove_tmp_dirs();
            cache.back_to_shared()?;
            cleaned?;
        } else {
            cache.back_to_shared()?;
        }
        Ok(cache)
    }

    /// `CACHEDIR/pkgcache/v1`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry `key`, if it was imported (its `index.json` parses).
    pub fn get(&self, key: &str) -> Result<Option<CachedPackage>> {
        check_key(key)?;
        let dir = self.root.join(key);
        let index_path = dir.join(INDEX_FILE);
        let bytes = match std::fs::read(&index_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("Reading {}", index_path.display())),
        };
        // An index that does not parse (a foreign or damaged entry) is no
        // entry: `import` replaces it.
        let Ok(index) = serde_json::from_slice::<Index>(&bytes) else {
            return Ok(None);
        };
        if index.version != INDEX_VERSION || index.key != key {
            return Ok(None);
        }
        Ok(Some(CachedPackage {
            key: key.to_string(),
            tree: dir.join("tree"),
            files: index.files,
        }))
    }

    /// Import the payload of `rpm` as `key`; a no-op returning the entry when
    /// it exists. On error nothing is left behind.
    pub fn import(&self, key: &str, rpm: &Path) -> Result<CachedPackage> {
        check_key(key)?;
        let _gc = self.gc.read().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = self.get(key)? {
            return Ok(p);
        }
        let ctx = || format!("Importing {} into the package cache", rpm.display());
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&self.root)
            .with_context(|| format!("Creating a directory in {}", self.root.display()))
            .with_context(ctx)?;
        set_mode(tmp.path(), 0o755).with_context(ctx)?;
        let files = extract(rpm, &tmp.path().join("tree")).with_context(ctx)?;
        let index = Index {
            version: INDEX_VERSION,
            key: key.to_string(),
            source: rpm.display().to_string(),
            files,
        };
        let index_path = tmp.path().join(INDEX_FILE);
        std::fs::write(&index_path, serde_json::to_vec(&index)?)
            .with_context(|| format!("Writing {}", index_path.display()))
            .with_context(ctx)?;
        let dest = self.root.join(key);
        let ours = |tmp: tempfile::TempDir, files| {
            let _ = tmp.keep();
            CachedPackage {
                key: key.to_string(),
                tree: dest.join("tree"),
                files,
            }
        };
        let rename_err = |e: std::io::Error| {
            Err(e)
                .with_context(|| format!("Renaming {} to {}", tmp.path().display(), dest.display()))
                .with_context(ctx)
        };
        let exists =
            |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST));
        match std::fs::rename(tmp.path(), &dest) {
            Ok(()) => return Ok(ours(tmp, index.files)),
            Err(e) if exists(&e) => {}
            Err(e) => return rename_err(e),
        }
        // Another compose imported it meanwhile: keep theirs (ours is
        // dropped with `tmp`).
        if let Some(p) = self.get(key)? {
            return Ok(p);
        }
        // A damaged entry without a valid index: replace it.
        self.remove_entry(key)?;
        match std::fs::rename(tmp.path(), &dest) {
            Ok(()) => Ok(ours(tmp, index.files)),
            Err(e) if exists(&e) => self.get(key)?.map_or_else(|| rename_err(e), Ok),
            Err(e) => rename_err(e),
        }
    }

    /// Import the missing ones of `items` (key, `.rpm`) on `threads` threads,
    /// largest `.rpm` first (so the big ones do not end up alone at the end),
    /// and return every entry in input order. The first error stops the
    /// workers and is returned; entries already imported stay.
    pub fn import_all(
        &self,
        items: &[(String, PathBuf)],
        threads: usize,
    ) -> Result<Vec<CachedPackage>> {
        let mut have: HashMap<&str, CachedPackage> = HashMap::new();
        let mut todo: Vec<(u64, &str, &Path)> = Vec::new();
        let mut queued: HashSet<&str> = HashSet::new();
        for (key, rpm) in items {
            if have.contains_key(key.as_str()) || queued.contains(key.as_str()) {
                continue;
            }
            match self.get(key)? {
                Some(p) => {
                    have.insert(key, p);
                }
                None => {
                    let size = std::fs::metadata(rpm)
                        .with_context(|| format!("Reading {}", rpm.display()))?
                        .len();
                    todo.push((size, key, rpm));
                    queued.insert(key);
                }
            }
        }
        todo.sort_by_key(|t| std::cmp::Reverse(t.0));
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let done: Mutex<Vec<CachedPackage>> = Mutex::new(Vec::new());
        let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, todo.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= todo.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let (_, key, rpm) = todo[i];
                    match self.import(key, rpm) {
                        Ok(p) => done.lock().unwrap_or_else(|e| e.into_inner()).push(p),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        }
                    }
                });
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
        if !errors.is_empty() {
            let more = errors.len() - 1;
            let first = errors.swap_remove(0);
            return Err(if more > 0 {
                first.context(format!("(and {more} more packages failed to import)"))
            } else {
                first
            });
        }
        let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
        let imported: HashMap<String, CachedPackage> =
            done.into_iter().map(|p| (p.key.clone(), p)).collect();
        items
            .iter()
            .map(|(key, _)| {
                have.get(key.as_str())
                    .or_else(|| imported.get(key))
                    .cloned()
                    .with_context(|| format!("package cache entry {key} missing after import"))
            })
            .collect()
    }

    /// Remove the entry `key` (renamed away first, so it is gone at once and
    /// a crash leaves only a `.tmp-`). No entry is not an error.
    pub fn invalidate(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let _gc = self.gc.read().unwrap_or_else(|e| e.into_inner());
        self.remove_entry(key)
    }

    /// Record that entry `key` was used now (the mtime of its `index.json`),
    /// for [`PackageCache::retain`].
    pub fn mark_used(&self, key: &str) -> Result<()> {
        let index = self.root.join(key).join(INDEX_FILE);
        let file = File::options()
            .write(true)
            .open(&index)
            .with_context(|| format!("Opening {}", index.display()))?;
        file.set_modified(std::time::SystemTime::now())
            .with_context(|| format!("Marking {} used", index.display()))
    }

    /// Delete every entry whose key is not in `keep` and that was not used
    /// (see [`PackageCache::mark_used`]) for `unused_for`, and stale `.tmp-`
    /// directories. Needs the lock exclusively: when another process has the
    /// cache open, nothing is deleted and the result is `Ok(false)`.
    pub fn retain(&self, keep: &BTreeSet<String>, unused_for: Duration) -> Result<bool> {
        let _gc = self.gc.write().unwrap_or_else(|e| e.into_inner());
        if !self.try_exclusive()? {
            self.back_to_shared()?;
            return Ok(false);
        }
        let result = (|| -> Result<()> {
            self.remove_tmp_dirs()?;
            for name in self.list()? {
                if name.starts_with('.') || keep.contains(&name) {
                    continue;
                }
                let last_used = std::fs::metadata(self.root.join(&name).join(INDEX_FILE))
                    .and_then(|m| m.modified())
                    .ok();
                let recent = last_used
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < unused_for);
                if !recent {
                    self.remove_entry(&name)?;
                }
            }
            Ok(())
        })();
        self.back_to_shared()?;
        result.map(|()| true)
    }

    /// Names in the cache directory.
    fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .with_context(|| format!("Reading {}", self.root.display()))?
        {
            let e = e.with_context(|| format!("Reading {}", self.root.display()))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn remove_tmp_dirs(&self) -> Result<()> {
        for name in self.list()? {
            if name.starts_with(TMP_PREFIX) {
                let p = self.root.join(&name);
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("Removing the stale {}", p.display()))?;
            }
        }
        Ok(())
    }

    /// Rename `<key>` onto a fresh empty `.tmp-` directory (rename replaces an
    /// empty directory), then delete that.
    fn remove_entry(&self, key: &str) -> Result<()> {
        let dir = self.root.join(key);
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&self.root)
            .with_context(|| format!("Creating a directory in {}", self.root.display()))?;
        match std::fs::rename(&dir, tmp.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("Moving {} away", dir.display()));
            }
        }
        let path = tmp.path().to_path_buf();
        tmp.close()
            .with_context(|| format!("Removing {} (was {})", path.display(), dir.display()))
    }

    /// Try to turn our shared lock into an exclusive one without waiting.
    /// `flock` drops the shared lock before trying, so whatever the answer,
    /// call [`Self::back_to_shared`] afterwards.
    fn try_exclusive(&self) -> Result<bool> {
        match flock(&self.lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("Locking {}/.lock", self.root.display())),
        }
    }

    fn back_to_shared(&self) -> Result<()> {
        flock(&self.lock, FlockOperation::LockShared)
            .map_err(std::io::Error::from)
            .with_context(|| format!("Locking {}/.lock", self.root.display()))
    }
}

/// Keys are file names: `[A-Za-z0-9._-]+`, not starting with a dot (those
/// are the cache's own: `.lock`, `.tmp-`).
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("invalid package cache key {key:?} (allowed: [A-Za-z0-9._-]+, no leading dot)");
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// A hardlink set being extracted: rpm puts the content on the last entry,
/// the others come first with size 0.
#[derive(Default)]
struct LinkSet {
    /// Entries seen before the content.
    pending: Vec<PayloadEntry>,
    /// The path holding the content, once written, and its index record.
    written: Option<(String, CachedFile)>,
    seen: u32,
}

/// Writes one payload into `tree`.
struct Extractor<'a> {
    tree: &'a Path,
    files: BTreeMap<String, CachedFile>,
    dirs: HashSet<String>,
    /// Symlinks created: nothing may be created beneath one (a payload with
    /// `/a -> /etc` and `/a/passwd` must not write outside `tree`).
    symlinks: HashSet<String>,
    links: BTreeMap<u32, LinkSet>,
}

/// Extract the payload of `rpm` into the new directory `tree`; returns the
/// index of its regular files. The payload digest is checked before return.
fn extract(rpm: &Path, tree: &Path) -> Result<BTreeMap<String, CachedFile>> {
    std::fs::create_dir(tree).with_context(|| format!("Creating {}", tree.display()))?;
    set_mode(tree, 0o755)?;
    let mut reader = PayloadReader::open(rpm)?;
    let mut x = Extractor {
        tree,
        files: BTreeMap::new(),
        dirs: HashSet::new(),
        symlinks: HashSet::new(),
        links: BTreeMap::new(),
    };
    while let Some(entry) = reader.next_entry()? {
        x.entry(&mut reader, &entry)
            .with_context(|| format!("Extracting {}", entry.path))?;
    }
    x.finish_link_sets()?;
    reader.finish()?;
    Ok(x.files)
}

impl Extractor<'_> {
    fn full(&self, path: &str) -> PathBuf {
        self.tree.join(&path[1..])
    }

    fn entry(&mut self, reader: &mut PayloadReader, e: &PayloadEntry) -> Result<()> {
        if e.path == "/" {
            // The root directory (owned by `filesystem`): `tree` itself.
            if e.file_type() != libc::S_IFDIR {
                bail!("the payload's root is not a directory (mode {:o})", e.mode);
            }
            return Ok(());
        }
        self.make_parents(&e.path)?;
        match e.file_type() {
            libc::S_IFDIR => self.mkdir(&e.path),
            libc::S_IFREG if e.nlink > 1 => self.link_entry(reader, e),
            libc::S_IFREG => {
                let f = self.write_file(e, None, |out| reader.read_content(out))?;
                self.files.insert(e.path.clone(), f);
                Ok(())
            }
            libc::S_IFLNK => {
                if e.size == 0 || e.size > MAX_LINK_TARGET {
                    bail!("symlink target of {} bytes", e.size);
                }
                let mut target = Vec::with_capacity(e.size as usize);
                reader.read_content(&mut target)?;
                if target.contains(&0) {
                    bail!("symlink target contains a NUL byte");
                }
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&target);
                let full = self.full(&e.path);
                std::os::unix::fs::symlink(target, &full)
                    .with_context(|| format!("Creating the symlink {}", full.display()))?;
                self.symlinks.insert(e.path.clone());
                Ok(())
            }
            t => bail!(
                "{} in {} is a {} (mode {:o}): the package cache holds only regular files, \
                 directories and symlinks",
                e.path,
                reader.path().display(),
                match t {
                    libc::S_IFCHR => "character device",
                    libc::S_IFBLK => "block device",
                    libc::S_IFIFO => "fifo",
                    libc::S_IFSOCK => "socket",
                    _ => "file of unknown type",
                },
                e.mode
            ),
        }
    }

    /// One entry of a hardlink set (same `ino`, `nlink` > 1).
    fn link_entry(&mut self, reader: &mut PayloadReader, e: &PayloadEntry) -> Result<()> {
        let set = self.links.entry(e.ino).or_default();
        set.seen += 1;
        if let Some((first, f)) = &set.written {
            if e.size > 0 {
                bail!("second content for the hardlink set of {first}");
            }
            let (first, f) = (first.clone(), f.clone());
            self.hardlink(&first, &e.path)?;
            self.files.insert(e.path.clone(), f);
            return Ok(());
        }
        if e.size == 0 && set.seen < e.nlink {
            set.pending.push(e.clone());
            return Ok(());
        }
        // The content (or the last of a set of empty files).
        let f = self.write_file(e, Some(e.ino), |out| reader.read_content(out))?;
        self.written_link_set(e.ino, &e.path, f)
    }

    /// `path` holds the set's content: link the pending paths to it.
    fn written_link_set(&mut self, ino: u32, path: &str, f: CachedFile) -> Result<()> {
        let pending = match self.links.get_mut(&ino) {
            Some(set) => {
                set.written = Some((path.to_string(), f.clone()));
                std::mem::take(&mut set.pending)
            }
            None => Vec::new(),
        };
        self.files.insert(path.to_string(), f.clone());
        for p in pending {
            self.hardlink(path, &p.path)?;
            self.files.insert(p.path, f.clone());
        }
        Ok(())
    }

    /// Sets whose content never came (fewer entries than `nlink`, all
    /// empty): an empty file with the first entry's metadata, the others
    /// linked to it.
    fn finish_link_sets(&mut self) -> Result<()> {
        let open: Vec<(u32, PayloadEntry)> = self
            .links
            .iter()
            .filter(|(_, s)| s.written.is_none())
            .filter_map(|(ino, s)| s.pending.first().map(|e| (*ino, e.clone())))
            .collect();
        for (ino, first) in open {
            if let Some(set) = self.links.get_mut(&ino) {
                set.pending.remove(0);
            }
            let f = self
                .write_file(&first, Some(ino), |_| Ok(0))
                .with_context(|| format!("Extracting {}", first.path))?;
            self.written_link_set(ino, &first.path, f)?;
        }
        Ok(())
    }

    fn hardlink(&self, existing: &str, new: &str) -> Result<()> {
        let (a, b) = (self.full(existing), self.full(new));
        std::fs::hard_link(&a, &b)
            .with_context(|| format!("Linking {} to {}", b.display(), a.display()))
    }

    /// Create the entry's file with the content `fill` writes, the entry's
    /// mode and mtime, hashing the content as it is written.
    fn write_file(
        &self,
        e: &PayloadEntry,
        link_group: Option<u32>,
        fill: impl FnOnce(&mut HashingWriter) -> Result<u64>,
    ) -> Result<CachedFile> {
        let full = self.full(&e.path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&full)
            .with_context(|| format!("Creating {}", full.display()))?;
        let mut out = HashingWriter {
            file: &mut file,
            hasher: ContentHasher::without_xattrs((0, 0, e.mode))?,
            path: &full,
        };
        let size = fill(&mut out)?;
        let checksum = out.hasher.finish();
        file.set_times(
            std::fs::FileTimes::new()
                .set_modified(UNIX_EPOCH + Duration::from_secs(u64::from(e.mtime))),
        )
        .with_context(|| format!("Setting the mtime of {}", full.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o7777))
            .with_context(|| format!("chmod {}", full.display()))?;
        Ok(CachedFile {
            checksum,
            size,
            mode: e.mode,
            link_group,
        })
    }

    /// Create the directories above `path`, refusing to go through a symlink.
    fn make_parents(&mut self, path: &str) -> Result<()> {
        let mut end = 0;
        while let Some(i) = path[end + 1..].find('/') {
            end += 1 + i;
            self.mkdir(&path[..end])?;
        }
        Ok(())
    }

    /// Create the directory `path` (0755) unless this import already did.
    fn mkdir(&mut self, path: &str) -> Result<()> {
        if self.dirs.contains(path) {
            return Ok(());
        }
        if self.symlinks.contains(path) {
            bail!("{path} is a symlink in this payload: nothing may be created through it");
        }
        let full = self.full(path);
        match std::fs::create_dir(&full) {
            Ok(()) => set_mode(&full, 0o755)?,
            Err(e) => return Err(e).with_context(|| format!("Creating {}", full.display())),
        }
        self.dirs.insert(path.to_string());
        Ok(())
    }
}

/// Writes to the file and the content hasher.
struct HashingWriter<'a> {
    file: &'a mut File,
    hasher: ContentHasher,
    path: &'a Path,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf).map_err(|e| {
            std::io::Error::new(e.kind(), format!("Writing {}: {e}", self.path.display()))
        })?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpmpayload::testutil::{cpio_entry, cpio_entry_full, fake_rpm, gzip};
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const REG: u32 = libc::S_IFREG | 0o644;

    /// Import a hand-made package whose cpio is built by `build`.
    fn import_cpio(build: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, Result<CachedPackage>) {
        let mut cpio = Vec::new();
        build(&mut cpio);
        cpio_entry(&mut cpio, "070701", "TRAILER!!!", 0, b"");
        let rpm = fake_rpm(Some("gzip"), &gzip(&cpio));
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let res = cache.import("k", rpm.path());
        let names: Vec<String> = std::fs::read_dir(cache.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(TMP_PREFIX)),
            "{names:?}"
        );
        if res.is_err() {
            assert_eq!(names, [".lock"]);
        }
        (dir, res)
    }

    #[test]
    fn nothing_is_created_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        for (second, mode, want) in [
            ("./a/passwd", REG, "is a symlink in this payload"),
            ("./a/sub/passwd", REG, "is a symlink in this payload"),
            ("./a", libc::S_IFDIR | 0o755, "is a symlink in this payload"),
            ("./a", REG, "Creating"),
        ] {
            let (_d, res) = import_cpio(|c| {
                cpio_entry(c, "070701", "./a", libc::S_IFLNK | 0o777, target.as_bytes());
                cpio_entry(c, "070701", second, mode, b"owned\n");
            });
            let msg = format!("{:#}", res.unwrap_err());
            assert!(msg.contains(want), "{second}: {msg}");
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn the_root_directory_entry_is_the_tree() {
        let (_d, res) = import_cpio(|c| {
            cpio_entry(c, "070701", "./", libc::S_IFDIR | 0o555, b"");
            cpio_entry(c, "070701", "./usr", libc::S_IFDIR | 0o755, b"");
            cpio_entry(c, "070701", "./usr/f", REG, b"f");
        });
        let p = res.unwrap();
        assert_eq!(p.files.keys().collect::<Vec<_>>(), ["/usr/f"]);
        let mode = std::fs::metadata(&p.tree).unwrap().mode();
        assert_eq!(mode, libc::S_IFDIR | 0o755);
        let (_d, res) = import_cpio(|c| cpio_entry(c, "070701", "./", REG, b""));
        assert!(format!("{:#}", res.unwrap_err()).contains("root is not a directory"));
    }

    #[test]
    fn duplicate_paths_are_errors() {
        let (_d, res) = import_cpio(|c| {
            cpio_entry(c, "070701", "./f", REG, b"1");
            cpio_entry(c, "070701", "./f", REG, b"2");
        });
        assert!(format!("{:#}", res.unwrap_err()).contains("/f"));
    }

    fn inode(p: &CachedPackage, path: &str) -> u64 {
        std::fs::metadata(p.tree.join(&path[1..])).unwrap().ino()
    }

    #[test]
    fn hardlink_sets_in_any_order() {
        let (_d, res) = import_cpio(|c| {
            // rpm's order: content on the last link.
            cpio_entry_full(c, "070701", "./x1", REG, (7, 2), b"");
            cpio_entry_full(c, "070701", "./x2", REG, (7, 2), b"seven");
            // Content first.
            cpio_entry_full(c, "070701", "./y1", REG, (8, 3), b"eight");
            cpio_entry_full(c, "070701", "./y2", REG, (8, 3), b"");
            cpio_entry_full(c, "070701", "./y3", REG, (8, 3), b"");
            // Empty files, and fewer entries than nlink says.
            cpio_entry_full(c, "070701", "./z1", REG, (9, 3), b"");
            cpio_entry_full(c, "070701", "./z2", REG, (9, 3), b"");
            cpio_entry(c, "070701", "./single", REG, b"one");
        });
        let p = res.unwrap();
        assert_eq!(p.files.len(), 8);
        for (set, content, group) in [
            (&["/x1", "/x2"][..], &b"seven"[..], 7),
            (&["/y1", "/y2", "/y3"], b"eight", 8),
            (&["/z1", "/z2"], b"", 9),
        ] {
            for path in set {
                assert_eq!(inode(&p, path), inode(&p, set[0]), "{path}");
                assert_eq!(std::fs::read(p.tree.join(&path[1..])).unwrap(), content);
                assert_eq!(p.files[*path].link_group, Some(group));
                assert_eq!(p.files[*path], p.files[set[0]]);
            }
            assert_eq!(
                std::fs::metadata(p.tree.join(&set[0][1..]))
                    .unwrap()
                    .nlink(),
                set.len() as u64
            );
        }
        assert_eq!(p.files["/single"].link_group, None);
        // Two contents for one set is corrupt.
        let (_d, res) = import_cpio(|c| {
            cpio_entry_full(c, "070701", "./x1", REG, (7, 2), b"a");
            cpio_entry_full(c, "070701", "./x2", REG, (7, 2), b"b");
        });
        assert!(format!("{:#}", res.unwrap_err()).contains("second content"));
    }

    #[test]
    fn fifos_are_refused() {
        let (_d, res) = import_cpio(|c| {
            cpio_entry(c, "070701", "./run/fifo", libc::S_IFIFO | 0o600, b"");
        });
        let msg = format!("{:#}", res.unwrap_err());
        assert!(msg.contains("/run/fifo") && msg.contains("fifo"), "{msg}");
    }

    #[test]
    fn keys() {
        for ok in ["sha256-0123abcdef", "a", "A.b_c-9"] {
            check_key(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".tmp-x",
            ".lock",
            "a/b",
            "a b",
            "sha256:ab",
            "é",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}

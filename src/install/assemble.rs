//! The cached installer: a root assembled from the package cache instead of
//! rpm unpacking every package again.
//!
//! rpm's transaction spends most of its time decompressing payloads and
//! writing files, and the commit then reads every file back to checksum it.
//! On a re-run after a small change almost all of that is repeated work. Here
//! (rpm-ostree's design, without its FUSE write protection, which a rootless
//! container does not have):
//! 1. each package's payload is imported once into the package cache
//!    ([`super::pkgcache`]), with each file's OSTree content checksum;
//! 2. rpm orders the transaction and writes the rpmdb itself (`--justdb`, in
//!    the dnf helper, while step 3 runs), checking dependencies and file
//!    conflicts; the helper leaves out the files `nodocs` and
//!    `%_install_langs` exclude and marks them so in the rpmdb, as a real
//!    install does;
//! 3. every `%pretrans`; then in rpm's order, for each package: the
//!    `%triggerprein` it sets off or owns, its `%pre`
//!    (scriptlets, shell or Lua, run by the helper the way rpm runs them,
//!    once the rpmdb is written), its files (regular files owned by root as
//!    hardlinks of the cache, the rest created or copied with rpm's
//!    ownership, resolved through the root's own `/etc/passwd` as rpm does,
//!    and file capabilities (`%caps`, converted by libcap as rpm does);
//!    `%config` files over files the compose put there before, as rpm
//!    decides: `.rpmnew`, `.rpmorig`), its `%post` (with the
//!    `%filetriggerin` it sets off or owns, before or after by priority, and
//!    the `%triggerin` it sets off or owns, after);
//! 4. every `%posttrans`, then every `%transfiletriggerin` (fed the
//!    installed files under its prefixes, as rpm does).
//!
//! The commit then trusts a cache file's checksum (see [`KnownContents`])
//! only while its inode still has the exact status recorded right after the
//! checkout (ctime included: any write, chmod, chown or link changes it), so
//! a scriptlet or post-processing step that changed a file in place is
//! simply checksummed again. Such a write also changed the cache's copy (one
//! inode): [`Assembled::release`] (or dropping the [`Assembled`] of a failed
//! compose) finds those entries by owner, mode, size and mtime (a write sets
//! the mtime; the ctime changes anyway when the root's link goes) and drops
//! them, so the next compose imports them again.
//!
//! The helper decides first whether this is exact for the transaction (no
//! Lua triggers, no relocation, no device nodes);
//! otherwise the caller installs with rpm.
//!
//! Not for: depsolving or downloading ([`super::dnf`]), reading RPM files
//! ([`super::rpmpayload`]), the cache's layout ([`super::pkgcache`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::pkgcache::{CachedPackage, PackageCache};
use super::InstalledFilesSink;
use crate::commit::known::{KnownContents, Stamp};
use crate::commit::prestage::AheadFile;

/// How long package cache entries no compose used are kept.
const UNUSED_ENTRIES_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The dnf helper's answer to a cached-install request.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PlanOutcome {
    /// rpm's own install is needed; nothing was written. The reason names
    /// the package.
    Blocked { blocked: String },
    /// The transaction is ready to write the rpmdb (see
    /// `dnf::Session::start_rpmdb`); the packages in rpm's order.
    Planned { packages: Vec<PlannedPackage> },
}

/// The downloaded packages of a transaction, from the dnf helper.
#[derive(Debug, Deserialize)]
pub struct Located {
    pub packages: Vec<LocatedPackage>,
    /// Why the cached installer cannot install this transaction exactly.
    pub blocked: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LocatedPackage {
    /// rpm-md checksum (`sha256:hex`).
    pub checksum: String,
    /// The downloaded `.rpm`.
    pub rpm: PathBuf,
}

/// One package of a cached install, as the helper describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PlannedPackage {
    pub nevra: String,
    /// The downloaded `.rpm`.
    pub rpm: PathBuf,
    /// rpm-md checksum, `"sha256:<hex>"`: the package cache's key.
    pub checksum: String,
    /// What the helper runs for it (see `run_planned_scriptlet` there):
    /// `"pretrans"`, `"pre"`, `"post"`, `"posttrans"`, and the triggers
    /// `"triggerprein"`, `"triggerin"`, `"filetriggerin"`,
    /// `"transfiletriggerin"`.
    pub scripts: Vec<String>,
    /// The files rpm installs (its rpmdb says "normal" state, no `%ghost`),
    /// in header order (parents before children).
    pub files: Vec<PlannedFile>,
}

impl PlannedPackage {
    fn has(&self, kind: &str) -> bool {
        self.scripts.iter().any(|s| s == kind)
    }
}

/// `[path, st_mode, user, group, symlink target, rpm file flags,
/// security.capability value in hex or ""]` (compact on the wire).
#[derive(Debug, Clone, Deserialize)]
pub struct PlannedFile(
    pub String,
    pub u32,
    pub String,
    pub String,
    pub String,
    pub u32,
    pub String,
);

/// rpmfiles.h: `%config`, `%config(noreplace)`.
const RPMFILE_CONFIG: u32 = 1 << 0;
const RPMFILE_NOREPLACE: u32 = 1 << 4;

impl PlannedFile {
    fn path(&self) -> &str {
        &self.0
    }
    fn mode(&self) -> u32 {
        self.1
    }
    fn owned_by_root(&self) -> bool {
        self.2 == "root" && self.3 == "root"
    }
    /// The `security.capability` value rpm sets (`%caps`), if any.
    fn capabilities(&self) -> Result<Option<Vec<u8>>> {
        if self.6.is_empty() {
            return Ok(None);
        }
        hex::decode(&self.6)
            .map(Some)
            .with_context(|| format!("{}: the helper sent bad file capabilities", self.0))
    }
}

/// The package cache's key for an rpm-md checksum (`sha256:hex` →
/// `sha256-hex`).
pub fn cache_key(checksum: &str) -> String {
    checksum.replace(':', "-")
}

/// What runs a package's scriptlet (the dnf helper in a compose).
pub trait ScriptletRunner {
    /// Run scriptlet `kind` of package `index` of the plan (once the
    /// rpmdb is complete).
    fn run(&mut self, index: usize, kind: &str) -> Result<()>;
    /// Wait until the rpmdb is complete (the checkout runs meanwhile).
    fn finish_rpmdb(&mut self) -> Result<()>;
}

/// A cache file linked into the root.
#[derive(Debug)]
struct Linked {
    key: String,
    cache_path: PathBuf,
    checksum: String,
    stamp: Stamp,
}

/// The result of [`assemble`].
#[derive(Debug)]
pub struct Assembled<'a> {
    cache: &'a PackageCache,
    /// [`Assembled::release`] ran.
    released: bool,
    /// For the commit ([`crate::commit::CommitOptions::known_contents`]).
    pub known: std::sync::Arc<KnownContents>,
    linked: Vec<Linked>,
    /// The cache keys of every package of the compose.
    keys: BTreeSet<String>,
    /// Held until [`Assembled::release`]: one compose at a time links the
    /// cache's files into a root (see [`lock_cache_use`]).
    _in_use: std::fs::File,
}

impl Assembled<'_> {
    /// After the root is committed: drop the cache entries whose files
    /// something wrote to through the root (see the module doc), then the
    /// entries of packages this compose did not use. Returns the keys
    /// dropped as changed. (Dropping an `Assembled` without this, e.g. when
    /// the compose failed, still drops the changed entries.)
    pub fn release(mut self) -> Result<Vec<String>> {
        self.released = true;
        let changed = self.drop_changed_entries()?;
        // Entries no compose used for a week go (old versions of packages;
        // a manifest built alternately with this one keeps its own). Skipped
        // while another compose has the cache open.
        for key in self.keys.iter().filter(|k| !changed.contains(k)) {
            self.cache.mark_used(key)?;
        }
        self.cache.retain(&self.keys, UNUSED_ENTRIES_KEPT)?;
        Ok(changed)
    }

    /// The cache files linked into the root, each with the checksum and
    /// status the commit trusts ([`KnownContents`]), biggest first: what may
    /// be copied into the repository ahead of the commit
    /// ([`crate::commit::prestage`]).
    pub fn ahead_files(&self) -> Vec<AheadFile> {
        let mut files: Vec<AheadFile> = self
            .linked
            .iter()
            .map(|l| AheadFile {
                path: l.cache_path.clone(),
                checksum: l.checksum.clone(),
                stamp: l.stamp,
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.stamp.size));
        files
    }

    /// The cache entries whose linked files changed since the checkout,
    /// invalidated. A file counts as changed when its owner, mode, size or
    /// mtime differ from the stamp (a write sets the mtime): its ctime
    /// changes anyway once the root's link is removed or renamed.
    fn drop_changed_entries(&self) -> Result<Vec<String>> {
        let mut changed: Vec<String> = Vec::new();
        for l in &self.linked {
            if changed.contains(&l.key) {
                continue;
            }
            let intact = match std::fs::symlink_metadata(&l.cache_path) {
                Ok(now) => {
                    let now = Stamp::of(&now);
                    (now.uid, now.gid, now.mode, now.size, now.mtime)
                        == (
                            l.stamp.uid,
                            l.stamp.gid,
                            l.stamp.mode,
                            l.stamp.size,
                            l.stamp.mtime,
                        )
                }
                Err(_) => false,
            };
            if !intact {
                changed.push(l.key.clone());
            }
        }
        for key in &changed {
            eprintln!("note: a scriptlet or post-processing step wrote into a file of the package cache entry {key}; dropping the entry");
            self.cache.invalidate(key)?;
        }
        Ok(changed)
    }
}

impl Drop for Assembled<'_> {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.drop_changed_entries() {
                eprintln!("warning: checking the package cache after a failed compose: {e:#}");
            }
        }
    }
}

/// Assemble `root` from `plan` (the helper is writing the rpmdb there) and
/// the plan's package cache `entries` (by key), checking out each package
/// between its scriptlets. `files` is told each package's regular files
/// once they are in place.
pub fn assemble<'a>(
    root: &Path,
    plan: &[PlannedPackage],
    cache: &'a PackageCache,
    entries: &HashMap<String, CachedPackage>,
    scripts: &mut dyn ScriptletRunner,
    files: Option<&InstalledFilesSink>,
) -> Result<Assembled<'a>> {
    let in_use = lock_cache_use(cache)?;
    let t = Instant::now();
    let cached = plan
        .iter()
        .map(|p| {
            entries
                .get(&cache_key(&p.checksum))
                .ok_or_else(|| anyhow!("{} is not in the package cache", p.nevra))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut scripts = Gate {
        runner: scripts,
        newest: None,
    };
    // Made first: if a step below fails, dropping it still finds the cache
    // entries a scriptlet wrote into (see the module doc).
    let mut out = Assembled {
        cache,
        released: false,
        known: Default::default(),
        linked: Vec::new(),
        keys: plan.iter().map(|p| cache_key(&p.checksum)).collect(),
        _in_use: in_use,
    };
    let linked = &mut out.linked;
    let mut known = KnownContents::default();
    let mut dirs = DirsMade::default();
    // rpm runs every %pretrans before it looks at the root (a file one of
    // them creates counts as already there).
    scripts.run_each(plan, "pretrans")?;
    let pre_existing = existing_files(root)?;
    let total = plan.len();
    for (i, (pkg, entry)) in plan.iter().zip(&cached).enumerate() {
        eprintln!("  [{}/{total}] {}", i + 1, pkg.nevra);
        for kind in ["triggerprein", "pre"] {
            scripts.run_if(pkg, i, kind)?;
        }
        let linked_from = linked.len();
        let regular = checkout_package(root, pkg, entry, &mut dirs, &pre_existing, linked)
            .with_context(|| format!("Installing {} from the package cache", pkg.nevra))?;
        // The status the commit will compare against, taken once all the
        // package's links exist (a hardlink set links one inode twice).
        for l in &mut linked[linked_from..] {
            let meta = std::fs::symlink_metadata(&l.cache_path)
                .with_context(|| format!("Reading {}", l.cache_path.display()))?;
            l.stamp = Stamp::of(&meta);
            scripts.stamped(l.stamp.ctime);
            known.insert(&meta, l.checksum.clone());
        }
        if let Some(sink) = files {
            sink.send(root, regular);
        }
        // %filetriggerin of priority >= 10000 run before %post, the others
        // after it, and %triggerin after %post (rpm's psm.c).
        let file_triggers = pkg.has("filetriggerin");
        if file_triggers {
            scripts.run(i, "filetriggerin-upper")?;
        }
        for kind in ["post", "triggerin"] {
            scripts.run_if(pkg, i, kind)?;
        }
        if file_triggers {
            scripts.run(i, "filetriggerin-lower")?;
        }
    }
    // Then, as rpm: every %posttrans, then each package's
    // %transfiletriggerin, fed the installed files under its prefixes.
    scripts.run_each(plan, "posttrans")?;
    scripts.run_each(plan, "transfiletriggerin")?;
    scripts.runner.finish_rpmdb()?;
    eprintln!(
        "Root assembled in {:.1}s ({} files linked from the cache)",
        t.elapsed().as_secs_f64(),
        linked.len()
    );
    out.known = std::sync::Arc::new(known);
    Ok(out)
}

/// Runs the scriptlets of an assembly, each once the filesystem clock has
/// moved past every ctime recorded so far: timestamps come from a coarse
/// clock, and a scriptlet writing into a linked file in the same tick as
/// its link would leave the ctime the commit trusts unchanged.
struct Gate<'r> {
    runner: &'r mut dyn ScriptletRunner,
    /// The newest ctime stamped so far.
    newest: Option<(i64, i64)>,
}

impl Gate<'_> {
    fn stamped(&mut self, ctime: (i64, i64)) {
        self.newest = self.newest.max(Some(ctime));
    }

    fn run(&mut self, index: usize, kind: &str) -> Result<()> {
        if let Some(newest) = self.newest {
            crate::commit::known::wait_until_clock_past(newest);
        }
        self.runner.run(index, kind)
    }

    /// Scriptlet `kind` of package `index`, if it has one.
    fn run_if(&mut self, pkg: &PlannedPackage, index: usize, kind: &str) -> Result<()> {
        match pkg.has(kind) {
            true => self.run(index, kind),
            false => Ok(()),
        }
    }

    /// Scriptlet `kind` of every package that has one, in plan order.
    fn run_each(&mut self, plan: &[PlannedPackage], kind: &str) -> Result<()> {
        for (i, pkg) in plan.iter().enumerate() {
            self.run_if(pkg, i, kind)?;
        }
        Ok(())
    }
}

/// Whether files of `cache` can be hardlinked into `root` (both must be on
/// one filesystem that supports hardlinks): a probe file is linked and both
/// names removed again.
pub fn check_hardlinks(cache: &PackageCache, root: &Path) -> Result<()> {
    let name = format!(".link-probe-{}", std::process::id());
    let probe = cache.root().join(&name);
    let linked = root.join(&name);
    std::fs::write(&probe, b"").with_context(|| format!("Writing {}", probe.display()))?;
    let result = std::fs::hard_link(&probe, &linked).with_context(|| {
        format!(
            "cannot hardlink from the package cache {} into {}",
            cache.root().display(),
            root.display()
        )
    });
    if result.is_ok() {
        std::fs::remove_file(&linked).with_context(|| format!("Removing {}", linked.display()))?;
    }
    std::fs::remove_file(&probe).with_context(|| format!("Removing {}", probe.display()))?;
    result
}

/// Read the directories and file status of `trees` (package cache
/// entries) into the kernel's caches, so the checkout's links do not wait
/// for the disk one inode at a time. Only a hint: errors are ignored (the
/// checkout reports them).
pub fn prefetch(trees: Vec<PathBuf>) {
    let mut dirs = trees;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(meta) = std::fs::symlink_metadata(e.path()) {
                if meta.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
    }
}

/// An exclusive lock on the package cache's use: while a root holds links
/// to the cache's files, a scriptlet of that compose writing into one would
/// change what another compose links at the same time. A second compose
/// sharing the cache directory waits (only for its install and commit).
fn lock_cache_use(cache: &PackageCache) -> Result<std::fs::File> {
    use rustix::fs::{flock, FlockOperation};
    let path = cache.root().join(".in-use.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("Opening {}", path.display()))?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        eprintln!(
            "Waiting for another compose to finish with the package cache {}",
            cache.root().display()
        );
        flock(&file, FlockOperation::LockExclusive)
            .with_context(|| format!("Locking {}", path.display()))?;
    }
    Ok(file)
}

/// Directories known to exist in the root, so each is created (or looked
/// up) once.
#[derive(Default)]
struct DirsMade(HashSet<PathBuf>);

impl DirsMade {
    /// `dir` (absolute, inside the root) and its missing parents, created
    /// the way rpm creates directories no package lists: 0755, root-owned.
    fn ensure(&mut self, dir: &Path) -> Result<()> {
        if self.0.contains(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("Setting the mode of {}", dir.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("Creating {}", dir.display())),
        }
        self.0.insert(dir.to_path_buf());
        Ok(())
    }
}

/// Names → ids through the root's `/etc/passwd` and `/etc/group`, as rpm
/// resolves them when it installs a file (an unknown name becomes root,
/// with rpm's warning).
struct Ids {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

impl Ids {
    fn read(root: &Path) -> Result<Ids> {
        Ok(Ids {
            users: read_id_file(&root.join("etc/passwd"))?,
            groups: read_id_file(&root.join("etc/group"))?,
        })
    }

    fn uid(&self, name: &str) -> u32 {
        lookup(&self.users, name, "user")
    }

    fn gid(&self, name: &str) -> u32 {
        lookup(&self.groups, name, "group")
    }
}

fn lookup(ids: &BTreeMap<String, u32>, name: &str, what: &str) -> u32 {
    if name == "root" {
        return 0;
    }
    match ids.get(name) {
        Some(id) => *id,
        None => {
            eprintln!("warning: {what} {name} does not exist - using root");
            0
        }
    }
}

/// `name:x:id:...` lines of a passwd or group file; the first entry of a
/// name wins (as in rpm's lookup). A missing file has no entries.
fn read_id_file(path: &Path) -> Result<BTreeMap<String, u32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("Reading {}", path.display())),
    };
    Ok(parse_id_lines(&text))
}

fn parse_id_lines(text: &str) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>() {
            ids.entry(name.to_string()).or_insert(id);
        }
    }
    ids
}

/// Put one package's files into `root` from its cache entry. Returns its
/// regular files of at most 64 MiB (relative paths) for the deflate-ahead
/// sink; adds the linked ones to `linked`.
fn checkout_package(
    root: &Path,
    pkg: &PlannedPackage,
    entry: &CachedPackage,
    dirs: &mut DirsMade,
    pre_existing: &HashSet<PathBuf>,
    linked: &mut Vec<Linked>,
) -> Result<Vec<PathBuf>> {
    let ids = if pkg.files.iter().all(PlannedFile::owned_by_root) {
        None
    } else {
        Some(Ids::read(root)?)
    };
    let key = cache_key(&pkg.checksum);
    let mut regular = Vec::new();
    // Hardlink sets owned by someone else: the copy made for the first name.
    let mut copies: HashMap<u32, PathBuf> = HashMap::new();
    for f in &pkg.files {
        let rel = f.path().trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            dirs.ensure(parent)?;
        }
        let (uid, gid) = match &ids {
            Some(ids) => (ids.uid(&f.2), ids.gid(&f.3)),
            None => (0, 0),
        };
        let perms = f.mode() & 0o7777;
        match f.mode() & libc::S_IFMT {
            libc::S_IFDIR => {
                dirs.ensure(&dest)?;
                set_owner_and_mode(&dest, uid, gid, Some(perms))?;
            }
            libc::S_IFLNK => {
                remove_non_dir(&dest)?;
                std::os::unix::fs::symlink(&f.4, &dest)
                    .with_context(|| format!("Creating symlink {}", dest.display()))?;
                if (uid, gid) != (0, 0) {
                    set_owner_and_mode(&dest, uid, gid, None)?;
                }
            }
            libc::S_IFREG => {
                let cached = entry
                    .files
                    .get(f.path())
                    .ok_or_else(|| anyhow!("{} is not in the package's payload", f.path()))?;
                let src = entry.tree.join(rel);
                let dest = match pre_existing.contains(&dest) {
                    true => config_destination(f, &src, dest)?,
                    false => dest,
                };
                remove_non_dir(&dest)?;
                let caps = f.capabilities()?;
                // A file with capabilities is a copy: the xattr would be the
                // cache's too on a link.
                let linkable =
                    (uid, gid) == (0, 0) && cached.mode & 0o7777 == perms && caps.is_none();
                if linkable {
                    std::fs::hard_link(&src, &dest).with_context(|| {
                        format!("Linking {} to {}", src.display(), dest.display())
                    })?;
                    linked.push(Linked {
                        key: key.clone(),
                        cache_path: src,
                        checksum: cached.checksum.clone(),
                        // Taken once the whole package is in place.
                        stamp: Stamp::default(),
                    });
                } else {
                    match cached.link_group.and_then(|g| copies.get(&g)) {
                        Some(first) => std::fs::hard_link(first, &dest).with_context(|| {
                            format!("Linking {} to {}", first.display(), dest.display())
                        })?,
                        None => {
                            std::fs::copy(&src, &dest).with_context(|| {
                                format!("Copying {} to {}", src.display(), dest.display())
                            })?;
                            // chown clears setuid/setgid and capabilities:
                            // the mode, then the capabilities come after (as
                            // in rpm's fsm).
                            set_owner_and_mode(&dest, uid, gid, Some(perms))?;
                            if let Some(caps) = &caps {
                                rustix::fs::setxattr(
                                    &dest,
                                    "security.capability",
                                    caps,
                                    rustix::fs::XattrFlags::empty(),
                                )
                                .with_context(|| {
                                    format!("Setting the file capabilities of {}", dest.display())
                                })?;
                            }
                            if let Some(g) = cached.link_group {
                                copies.insert(g, dest.clone());
                            }
                        }
                    }
                }
                if cached.size > 0 && cached.size <= super::REPORTED_FILE_MAX {
                    if let Ok(rel) = dest.strip_prefix(root) {
                        regular.push(rel.to_path_buf());
                    }
                }
            }
            other => bail!("{}: unsupported file type {other:o}", f.path()),
        }
    }
    Ok(regular)
}

/// Where a package's file goes when a file was at `dest` before the install
/// began (e.g. the previous commit's `/etc/passwd`), as rpm decides it: a
/// `%config(noreplace)` file that differs goes beside it as `.rpmnew`; a
/// `%config` file that differs moves the one on disk to `.rpmorig`; any
/// other file replaces it.
fn config_destination(f: &PlannedFile, src: &Path, dest: PathBuf) -> Result<PathBuf> {
    if f.5 & RPMFILE_CONFIG == 0 || same_content(src, &dest)? {
        return Ok(dest);
    }
    let with_suffix = |suffix: &str| {
        let mut name = dest.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    if f.5 & RPMFILE_NOREPLACE != 0 {
        eprintln!("warning: {} created as {}.rpmnew", f.path(), f.path());
        return Ok(with_suffix(".rpmnew"));
    }
    let saved = with_suffix(".rpmorig");
    std::fs::rename(&dest, &saved)
        .with_context(|| format!("Renaming {} to {}", dest.display(), saved.display()))?;
    eprintln!("warning: {} saved as {}.rpmorig", f.path(), f.path());
    Ok(dest)
}

/// Whether two regular files hold the same bytes (a symlink or a missing
/// file at `b` never does).
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let meta = std::fs::symlink_metadata(b).with_context(|| format!("Reading {}", b.display()))?;
    if !meta.is_file() {
        return Ok(false);
    }
    let size_a = std::fs::metadata(a)
        .with_context(|| format!("Reading {}", a.display()))?
        .len();
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("Reading {}", p.display()));
    Ok(meta.len() == size_a && read(a)? == read(b)?)
}

/// The regular files and symlinks in `root` before any package is put
/// there (files the compose injects, such as the previous passwd). The
/// rpmdb directory, which rpm is writing meanwhile, is left out: no package
/// ships files there.
fn existing_files(root: &Path) -> Result<HashSet<PathBuf>> {
    let mut found = HashSet::new();
    let rpmdb = root.join(super::rpmdb::RPMDB_DIR);
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        if dir == rpmdb {
            continue;
        }
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("Reading {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("Reading {}", dir.display()))?;
            let ft = e
                .file_type()
                .with_context(|| format!("Reading {}", e.path().display()))?;
            if ft.is_dir() {
                dirs.push(e.path());
            } else {
                found.insert(e.path());
            }
        }
    }
    Ok(found)
}

/// Remove `path` if it exists and is not a directory (a later package's
/// file replaces an earlier one's, as rpm does).
fn remove_non_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => bail!(
            "{} is a directory in one package and not in another",
            path.display()
        ),
        Ok(_) => {
            std::fs::remove_file(path).with_context(|| format!("Replacing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("Reading {}", path.display())),
    }
}

/// lchown `path`, then chmod it (not for symlinks: `mode` None).
fn set_owner_and_mode(path: &Path, uid: u32, gid: u32, mode: Option<u32>) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("Changing the owner of {} to {uid}:{gid}", path.display()))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("Setting the mode of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lines_first_entry_wins_and_bad_lines_are_skipped() {
        let ids = parse_id_lines("root:x:0:0::/root:/bin/sh\nfoo:x:12:12::/:/bin/false\nbad\nfoo:x:13:13::/:/\nnum:x:abc:1::/:/\n");
        assert_eq!(ids.get("root"), Some(&0));
        assert_eq!(ids.get("foo"), Some(&12));
        assert_eq!(ids.get("num"), None);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn hardlink_probe_needs_one_filesystem_and_leaves_nothing() {
        let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
        let cache = PackageCache::open(cachedir.path()).unwrap();
        let same_fs = tempfile::tempdir_in("/var/tmp").unwrap();
        check_hardlinks(&cache, same_fs.path()).unwrap();
        assert_eq!(std::fs::read_dir(same_fs.path()).unwrap().count(), 0);
        // /dev/shm is a tmpfs, another filesystem than /var/tmp here.
        if let Ok(other_fs) = tempfile::tempdir_in("/dev/shm") {
            let err = check_hardlinks(&cache, other_fs.path()).unwrap_err();
            assert!(format!("{err:#}").contains("cannot hardlink"), "{err:#}");
            assert_eq!(std::fs::read_dir(other_fs.path()).unwrap().count(), 0);
        }
        let left: Vec<_> = std::fs::read_dir(cache.root())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".link-probe"))
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn cache_keys_have_no_colon() {
        assert_eq!(cache_key("sha256:abc"), "sha256-abc");
    }

    #[test]
    fn plan_outcomes_parse() {
        let p: PlanOutcome = serde_json::from_str(r#"{"blocked": "x has triggers"}"#).unwrap();
        assert!(matches!(p, PlanOutcome::Blocked { blocked } if blocked == "x has triggers"));
        let p: PlanOutcome = serde_json::from_str(
            r#"{"packages": [{"nevra": "a-1-1.noarch", "rpm": "/c/a.rpm", "checksum": "sha256:00",
                "scripts": ["post"], "files": [["/usr/bin/a", 33261, "root", "root", "", 0, ""],
                          ["/usr/bin/p", 33261, "root", "root", "", 0, "0100000200200000"]]}]}"#,
        )
        .unwrap();
        match p {
            PlanOutcome::Planned { packages } => {
                assert_eq!(packages[0].files[0].mode(), 0o100755);
                assert!(packages[0].files[0].owned_by_root());
                assert_eq!(packages[0].files[0].capabilities().unwrap(), None);
                assert_eq!(
                    packages[0].files[1].capabilities().unwrap().unwrap(),
                    [0x01, 0, 0, 0x02, 0, 0x20, 0, 0]
                );
            }
            _ => panic!("not planned"),
        }
    }
}

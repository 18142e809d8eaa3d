//! A multi-threaded replacement for libostree's `write_dfd_to_mtree`: the
//! rootfs is walked once on the calling thread, its regular files and
//! symlinks are written as content objects by one worker per core (each with
//! its own repository handle and transaction), and the directory objects
//! are then built on the calling thread and written by the workers too
//! ([`super::dirtree`]).
//!
//! libostree's walk checksums and writes every file on one thread, which
//! makes the commit of a whole OS tree CPU-bound on a single core. The
//! objects written here are byte-for-byte what libostree writes for the same
//! input: the file header is built by libostree itself
//! (`ostree_raw_file_to_content_stream`) from the same ownership and mode
//! (after the same `user.ostreemeta` override as the commit filter in
//! [`super::write`]) and the same kept xattrs, so the commit checksum is the
//! same (the integration tests compare both writers on the same trees).
//!
//! With an SELinux policy, each path gets the label libostree would give it
//! (asked on the walking thread, appended after the kept xattrs).
//!
//! Not used (the caller keeps libostree's walk) when a devino cache is asked
//! for, or when the walk finds something this writer does not reproduce (a
//! symlink whose recorded mode is not 0777).
//! Fifos, sockets and device nodes are skipped with a note, as in the
//! libostree path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::prelude::*;
use ostree::{MutableTree, Repo};

use super::adopt::{Adopter, PreStagedUse};
use super::checksum::regular_file_checksum;
use super::dirtree::{self, MetadataObjects};
use super::known::KnownContents;
use super::prestage::PreStager;
use super::xattrs::{kept_xattrs, read_ostreemeta, xattrs_to_variant};

/// Content-object counts of the workers' transactions.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ContentStats {
    pub total: u64,
    pub written: u64,
    pub bytes_written: u64,
}

/// Why the parallel writer declined a tree (the caller uses libostree's walk).
#[derive(Debug)]
pub(super) struct Declined(pub String);

/// What [`write_tree`] made: the filled tree, the skipped special files and
/// the workers' statistics.
pub(super) type Written = (MutableTree, Vec<String>, ContentStats);

/// Ownership and mode as they go into the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

#[derive(Debug)]
enum Node {
    Dir(Box<Dir>),
    /// Index into the job list.
    File(usize),
}

#[derive(Debug)]
struct Dir {
    path: PathBuf,
    owner: Owner,
    /// The SELinux label the policy gives it, if labeling.
    label: Option<String>,
    children: BTreeMap<String, Node>,
}

#[derive(Debug)]
enum Kind {
    /// `known`: its checksum, taken from [`KnownContents`] at the walk.
    Regular {
        size: u64,
        known: Option<String>,
    },
    Symlink {
        target: PathBuf,
    },
}

#[derive(Debug)]
struct Job {
    path: PathBuf,
    owner: Owner,
    /// The SELinux label the policy gives it, if labeling.
    label: Option<String>,
    kind: Kind,
}

/// The number of worker threads: one per available core, at most 8.
pub(super) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Write `rootfs` into `repo` and return the tree root (written with
/// `write_mtree` in the caller's transaction), the skipped special files and
/// the workers' content statistics. `Ok(Err(Declined))` when the tree needs
/// libostree's walk; nothing has been written then.
pub(super) fn write_tree(
    repo: &Repo,
    rootfs: &Path,
    threads: usize,
    consume: bool,
    known: Option<&KnownContents>,
    pre_stager: Option<&PreStager>,
    sepolicy: Option<&ostree::SePolicy>,
) -> Result<std::result::Result<Written, Declined>> {
    let started = std::time::Instant::now();
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    let root_meta = std::fs::symlink_metadata(rootfs)
        .with_context(|| format!("Reading {}", rootfs.display()))?;
    let root_owner = effective_owner(rootfs, &root_meta)?;
    let mut walker = Walker {
        jobs: &mut jobs,
        skipped: &mut skipped,
        known,
        sepolicy,
    };
    let mut root = Dir {
        path: rootfs.to_path_buf(),
        owner: root_owner,
        label: walker.label("/", root_owner.mode)?,
        children: BTreeMap::new(),
    };
    if let Err(declined) = walker.walk(&mut root, "")? {
        return Ok(Err(declined));
    }
    for path in &skipped {
        eprintln!("note: skipping {path}: fifos, sockets and device nodes are not committed");
    }

    let repo_path = repo
        .path()
        .path()
        .ok_or_else(|| anyhow!("The repository has no local path"))?;
    let walked = started.elapsed().as_secs_f64();
    let adopter = if consume {
        // The copying stops here: what it did not reach, the workers copy.
        let pre_staged = match pre_stager {
            Some(p) => p.finish()?,
            None => None,
        };
        Adopter::new(repo, &repo_path, rootfs, pre_staged)?
    } else {
        None
    };
    let (checksums, stats) = write_contents(&repo_path, &jobs, threads, consume, adopter.as_ref())?;
    drop(adopter);
    let written = started.elapsed().as_secs_f64();

    let mut objects = MetadataObjects::default();
    let (root_contents, root_meta) = dir_objects(&root, &checksums, &mut objects)?;
    // The rootfs' directories were read above: what is left of them is
    // removed while the directory objects are written.
    std::thread::scope(|s| -> Result<()> {
        let removal = consume.then(|| s.spawn(|| remove_contents(rootfs)));
        let written = dirtree::write_parallel(&repo_path, &objects.objects, threads);
        let removed = match removal {
            Some(r) => r
                .join()
                .unwrap_or_else(|_| Err(anyhow!("removing the committed rootfs panicked"))),
            None => Ok(()),
        };
        // A failed write says more than a failed removal.
        written.and(removed)
    })?;
    // A tree made from its checksums: libostree's write_mtree returns its
    // root without serializing anything again.
    let mtree = MutableTree::from_checksum(repo, &root_contents, &root_meta);
    let known = jobs
        .iter()
        .filter(|j| matches!(j.kind, Kind::Regular { known: Some(_), .. }))
        .count();
    eprintln!(
        "Wrote {} files on {threads} threads, {known} with checksums known ahead \
         (walk {walked:.1}s, files {:.1}s, directories {:.1}s)",
        jobs.len(),
        written - walked,
        started.elapsed().as_secs_f64() - written
    );
    Ok(Ok((mtree, skipped, stats)))
}

/// The xattrs committed for `path`: the kept ones (never a label of its
/// own), then the policy's label with its NUL, appended last as libostree's
/// `get_final_xattrs` does.
fn final_xattrs(path: &Path, label: Option<&str>) -> Result<Vec<super::xattrs::Xattr>> {
    let mut list = kept_xattrs(path)?;
    if let Some(label) = label {
        let mut value = label.as_bytes().to_vec();
        value.push(0);
        list.push((b"security.selinux".to_vec(), value));
    }
    Ok(list)
}

/// Ownership and mode after the `user.ostreemeta` override (see the commit
/// filter in [`super::write`]).
fn effective_owner(path: &Path, meta: &std::fs::Metadata) -> Result<Owner> {
    let type_bits = meta.mode() & libc::S_IFMT;
    let mut owner = Owner {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
    };
    if let Some(m) = read_ostreemeta(path)? {
        owner = Owner {
            uid: m.uid,
            gid: m.gid,
            mode: type_bits | (m.mode & 0o7777),
        };
    }
    Ok(owner)
}

/// The walk's output and what it consults.
struct Walker<'a> {
    jobs: &'a mut Vec<Job>,
    skipped: &'a mut Vec<String>,
    known: Option<&'a KnownContents>,
    sepolicy: Option<&'a ostree::SePolicy>,
}

impl Walker<'_> {
    /// The label of `commit_path` (`/usr/bin/x`) with `mode`, as libostree's
    /// commit asks the policy for it (after the ownership override).
    fn label(&self, commit_path: &str, mode: u32) -> Result<Option<String>> {
        let Some(policy) = self.sepolicy else {
            return Ok(None);
        };
        let label = policy
            .label(commit_path, mode, gio::Cancellable::NONE)
            .with_context(|| format!("Looking up the SELinux label of {commit_path}"))?;
        Ok(label.map(|l| l.to_string()))
    }

    fn walk(&mut self, dir: &mut Dir, rel: &str) -> Result<std::result::Result<(), Declined>> {
        let entries = std::fs::read_dir(&dir.path)
            .with_context(|| format!("Reading {}", dir.path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("Reading {}", dir.path.display()))?;
            let name = entry.file_name().into_string().map_err(|n| {
                anyhow!(
                    "{}: file name {:?} is not valid UTF-8",
                    dir.path.display(),
                    n
                )
            })?;
            let path = entry.path();
            let commit_path = format!("{rel}/{name}");
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("Reading {}", path.display()))?;
            let ft = meta.file_type();
            if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
                self.skipped.push(commit_path);
                continue;
            }
            let owner = effective_owner(&path, &meta)?;
            let label = self.label(&commit_path, owner.mode)?;
            if ft.is_dir() {
                let mut sub = Dir {
                    path,
                    owner,
                    label,
                    children: BTreeMap::new(),
                };
                if let Err(d) = self.walk(&mut sub, &commit_path)? {
                    return Ok(Err(d));
                }
                dir.children.insert(name, Node::Dir(Box::new(sub)));
                continue;
            }
            let kind = if ft.is_symlink() {
                if owner.mode != (libc::S_IFLNK | 0o777) {
                    return Ok(Err(Declined(format!(
                        "{commit_path}: a symlink with recorded mode {:o}",
                        owner.mode
                    ))));
                }
                let target = std::fs::read_link(&path)
                    .with_context(|| format!("Reading symlink {}", path.display()))?;
                if target.to_str().is_none() {
                    return Ok(Err(Declined(format!(
                        "{commit_path}: symlink target is not UTF-8"
                    ))));
                }
                Kind::Symlink { target }
            } else {
                // A known checksum is for the file's own owner and mode.
                let as_on_disk =
                    (owner.uid, owner.gid, owner.mode) == (meta.uid(), meta.gid(), meta.mode());
                let known = self
                    .known
                    .filter(|_| as_on_disk)
                    .and_then(|k| k.checksum_for(&meta))
                    .map(str::to_string);
                Kind::Regular {
                    size: meta.len(),
                    known,
                }
            };
            dir.children.insert(name, Node::File(self.jobs.len()));
            self.jobs.push(Job {
                path,
                owner,
                label,
                kind,
            });
        }
        Ok(Ok(()))
    }
}

/// Write every job's content object on `threads` workers; returns the
/// checksums by job index.
///
/// Regular files first, then the adopter's objects are published (see
/// [`in_transactions`]), then symlinks: libostree writes the symlinks'
/// objects straight into `objects/xx` (its transactions here do not sync),
/// and in a new repository the adopter can move its staged `xx`
/// directories whole only while those do not exist yet.
fn write_contents(
    repo_path: &Path,
    jobs: &[Job],
    threads: usize,
    consume: bool,
    adopter: Option<&Adopter>,
) -> Result<(Vec<String>, ContentStats)> {
    let (mut regular, symlinks): (Vec<usize>, Vec<usize>) =
        (0..jobs.len()).partition(|&i| matches!(jobs[i].kind, Kind::Regular { .. }));
    // Big files first, so the workers finish together.
    regular.sort_by_key(|&i| match jobs[i].kind {
        Kind::Regular { size, .. } => std::cmp::Reverse(size),
        Kind::Symlink { .. } => std::cmp::Reverse(0),
    });
    let results = Mutex::new(vec![None; jobs.len()]);
    let mut stats = ContentStats::default();
    for (order, adopter) in [(regular, adopter), (symlinks, None)] {
        if order.is_empty() && adopter.is_none() {
            continue;
        }
        let queue = WorkQueue {
            jobs,
            order: &order,
            next: AtomicUsize::new(0),
            results: &results,
            consume,
            adopter,
        };
        let outcomes = in_transactions(
            repo_path,
            threads.clamp(1, order.len().max(1)),
            "a commit worker",
            |repo, failed| worker(&queue, repo, failed),
            || adopter.map_or(Ok(()), |a| a.publish().map(drop)),
        )?;
        for (bypassed, txn) in outcomes.into_iter().flatten() {
            stats.total += txn.total + bypassed.total;
            stats.written += txn.written + bypassed.written;
            stats.bytes_written += txn.bytes_written + bypassed.bytes_written;
        }
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow!("a commit worker thread panicked"))?;
    let checksums = results
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.ok_or_else(|| anyhow!("{} was not written", jobs[i].path.display())))
        .collect::<Result<Vec<_>>>()?;
    Ok((checksums, stats))
}

/// What the content workers share.
struct WorkQueue<'a> {
    jobs: &'a [Job],
    /// Job indices in the order they are handed out.
    order: &'a [usize],
    next: AtomicUsize,
    results: &'a Mutex<Vec<Option<String>>>,
    consume: bool,
    /// Set when files may be renamed into the repository instead of copied.
    adopter: Option<&'a Adopter>,
}

/// Write content objects from the queue through `repo` (inside a worker's
/// transaction, see [`in_transactions`]) until it is empty or `failed`.
/// Returns the objects that bypassed the transaction (already present, or
/// adopted), which its statistics do not count.
fn worker(q: &WorkQueue<'_>, repo: &Repo, failed: &AtomicBool) -> Result<ContentStats> {
    let mut bypassed = ContentStats::default();
    while !failed.load(Ordering::SeqCst) {
        let n = q.next.fetch_add(1, Ordering::SeqCst);
        let Some(&i) = q.order.get(n) else { break };
        let job = &q.jobs[i];
        let (checksum, stored) = write_one(repo, job, q.adopter)
            .with_context(|| format!("Writing {} into the repository", job.path.display()))?;
        match stored {
            Stored::ByLibostree => {}
            Stored::AlreadyPresent => bypassed.total += 1,
            Stored::Adopted { size } | Stored::Staged { size } => {
                bypassed.total += 1;
                bypassed.written += 1;
                bypassed.bytes_written += size;
            }
        }
        // Removed here, on every worker, not by the one thread that removes
        // the directories afterwards (corpus-large: 18377 files staged ahead).
        if q.consume && !matches!(stored, Stored::Adopted { .. }) {
            std::fs::remove_file(&job.path)
                .with_context(|| format!("Removing committed {}", job.path.display()))?;
        }
        let mut slot = q
            .results
            .lock()
            .map_err(|_| anyhow!("a commit worker thread panicked"))?;
        slot[i] = Some(checksum);
    }
    Ok(bypassed)
}

/// Run `work` on `threads` threads, each with its own handle on the
/// repository at `repo_path` and its own transaction, then run
/// `before_commit` once, and commit those transactions one at a time. `who`
/// names a thread in errors.
///
/// - No syncfs per worker: the caller's transaction syncs the filesystem
///   (when the repository fsyncs at all) before any ref moves.
/// - Every worker starts its transaction before any worker commits one, and
///   they commit one after another: libostree's transaction setup scans
///   `tmp/` for reusable staging directories and fails on one that a
///   finishing transaction is deleting.
/// - `before_commit` runs when every worker is done and before the first
///   transaction commits (the commit publishes its adopted objects there,
///   while a new repository still lacks the `objects/xx` directories the
///   transactions would create, see [`super::staging::publish_staged`]).
/// - Once one worker (or `before_commit`) fails, `failed` is set: the others
///   should stop, and their transactions are aborted (dropped) instead of
///   committed; the first error is returned.
///
/// Returns, per worker, what `work` returned and the content objects its
/// transaction counted (`None` for an aborted one).
pub(super) fn in_transactions<R: Send>(
    repo_path: &Path,
    threads: usize,
    who: &str,
    work: impl Fn(&Repo, &AtomicBool) -> Result<R> + Sync,
    before_commit: impl FnOnce() -> Result<()> + Send,
) -> Result<Vec<Option<(R, ContentStats)>>> {
    let threads = threads.max(1);
    let failed = AtomicBool::new(false);
    let prepared = Barrier::new(threads);
    let finished = Barrier::new(threads);
    let committing = Mutex::new(());
    let before_commit = Mutex::new(Some(before_commit));
    let one = || -> Result<Option<(R, ContentStats)>> {
        let repo = Repo::new_for_path(repo_path);
        let txn = repo
            .open(gio::Cancellable::NONE)
            .with_context(|| format!("Opening {} in {who}", repo_path.display()))
            .and_then(|()| {
                repo.set_disable_fsync(true);
                repo.auto_transaction(gio::Cancellable::NONE)
                    .with_context(|| format!("Starting a repository transaction in {who}"))
            });
        prepared.wait();
        let worked = txn.and_then(|txn| Ok((txn, work(&repo, &failed)?)));
        if worked.is_err() {
            failed.store(true, Ordering::SeqCst);
        }
        // Every worker gets here, failed or not: none is left waiting.
        finished.wait();
        let (txn, result) = worked?;
        let _one_at_a_time = committing
            .lock()
            .map_err(|_| anyhow!("{who} thread panicked"))?;
        if failed.load(Ordering::SeqCst) {
            // Dropping `txn` aborts it.
            return Ok(None);
        }
        let hook = before_commit
            .lock()
            .map_err(|_| anyhow!("{who} thread panicked"))?
            .take();
        if let Some(hook) = hook {
            hook()?;
        }
        let stats = txn
            .commit(gio::Cancellable::NONE)
            .with_context(|| format!("Committing the transaction of {who}"))?;
        let counted = ContentStats {
            total: stats.get_content_objects_total() as u64,
            written: stats.get_content_objects_written() as u64,
            bytes_written: stats.get_content_bytes_written(),
        };
        Ok(Some((result, counted)))
    };
    let outcomes: Vec<Result<Option<(R, ContentStats)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let r = one();
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("{who} thread panicked")))
            })
            .collect()
    });
    outcomes.into_iter().collect()
}

/// How [`write_one`] stored a content object.
enum Stored {
    /// Written through libostree (its transaction counts it).
    ByLibostree,
    /// The repository already had it: nothing was written.
    AlreadyPresent,
    /// The rootfs file itself became the object (see [`Adopter`]).
    Adopted { size: u64 },
    /// A copy became the object, made now or ahead of the commit (see
    /// [`Adopter`]); the rootfs file stays where it was.
    Staged { size: u64 },
}

/// One content object, exactly as libostree's walk writes it. A regular
/// file is checksummed first (see [`regular_file_checksum`]), so a file
/// the repository already has is never copied: on a rebuild most are.
fn write_one(repo: &Repo, job: &Job, adopter: Option<&Adopter>) -> Result<(String, Stored)> {
    let xattrs = xattrs_to_variant(&final_xattrs(&job.path, job.label.as_deref())?);
    match &job.kind {
        Kind::Symlink { target } => {
            let target = target
                .to_str()
                .ok_or_else(|| anyhow!("symlink target is not UTF-8"))?;
            let csum = repo
                .write_symlink(
                    None,
                    job.owner.uid,
                    job.owner.gid,
                    Some(&xattrs),
                    target,
                    gio::Cancellable::NONE,
                )
                .context("Writing a symlink object")?;
            Ok((csum.to_string(), Stored::ByLibostree))
        }
        Kind::Regular { known, .. } => {
            let known = known.as_ref().filter(|_| xattrs.n_children() == 0);
            if let Some(checksum) = known {
                if repo
                    .has_object(ostree::ObjectType::File, checksum, gio::Cancellable::NONE)
                    .context("Looking up a content object")?
                {
                    return Ok((checksum.clone(), Stored::AlreadyPresent));
                }
                if let Some(stored) = pre_staged(adopter, checksum)? {
                    return Ok((checksum.clone(), stored));
                }
            }
            let mut file = std::fs::File::open(&job.path).context("Opening")?;
            // The size of what is read, not of the earlier stat.
            let size = file.metadata().context("Reading metadata")?.len();
            let info = gio::FileInfo::new();
            info.set_file_type(gio::FileType::Regular);
            info.set_size(size as i64);
            info.set_attribute_uint32("unix::uid", job.owner.uid);
            info.set_attribute_uint32("unix::gid", job.owner.gid);
            info.set_attribute_uint32("unix::mode", job.owner.mode);
            info.set_attribute_uint32("unix::rdev", 0);
            let owner = (job.owner.uid, job.owner.gid, job.owner.mode);
            let checksum = match known {
                // Not in the repository (asked above).
                Some(c) => c.clone(),
                None => {
                    let c = regular_file_checksum(&mut file, owner, &xattrs)?;
                    if repo
                        .has_object(ostree::ObjectType::File, &c, gio::Cancellable::NONE)
                        .context("Looking up a content object")?
                    {
                        return Ok((c, Stored::AlreadyPresent));
                    }
                    if let Some(stored) = pre_staged(adopter, &c)? {
                        return Ok((c, stored));
                    }
                    c
                }
            };
            if let Some(adopter) = adopter {
                if adopter.adopt(&file, &job.path, owner, &xattrs, &checksum)? {
                    return Ok((checksum, Stored::Adopted { size }));
                }
                let size = adopter.copy_in(&file, &job.path, owner, &xattrs, &checksum)?;
                return Ok((checksum, Stored::Staged { size }));
            }
            std::io::Seek::rewind(&mut file).context("Rewinding")?;
            // SAFETY: `take_fd` takes ownership of the descriptor the File owned.
            let input = unsafe { gio::UnixInputStream::take_fd(file) };
            let (object, length) = ostree::raw_file_to_content_stream(
                &input,
                &info,
                Some(&xattrs),
                gio::Cancellable::NONE,
            )
            .context("Building the content object stream")?;
            let csum = repo
                .write_content(Some(&checksum), &object, length, gio::Cancellable::NONE)
                .context("Writing a content object")?;
            Ok((csum.to_hex(), Stored::ByLibostree))
        }
    }
}

/// How the object `checksum` is stored if it was staged ahead of the commit
/// (see [`super::prestage`]): the first file with that content counts it as
/// written, like an adopted file.
fn pre_staged(adopter: Option<&Adopter>, checksum: &str) -> Result<Option<Stored>> {
    let Some(adopter) = adopter else {
        return Ok(None);
    };
    Ok(adopter.take_pre_staged(checksum)?.map(|found| match found {
        PreStagedUse::First { size } => Stored::Staged { size },
        PreStagedUse::Again => Stored::AlreadyPresent,
    }))
}

/// The dirmeta and dirtree objects of `dir` and everything below it (added
/// to `objects`, children first); returns `dir`'s dirtree and dirmeta
/// checksums.
fn dir_objects(
    dir: &Dir,
    checksums: &[String],
    objects: &mut MetadataObjects,
) -> Result<(String, String)> {
    let xattrs = xattrs_to_variant(&final_xattrs(&dir.path, dir.label.as_deref())?);
    let meta = objects.add(
        ostree::ObjectType::DirMeta,
        dirtree::dirmeta(dir.owner.uid, dir.owner.gid, dir.owner.mode, &xattrs),
    );
    let mut files: Vec<(&str, &str)> = Vec::new();
    let mut subdirs: Vec<(&str, String, String)> = Vec::new();
    // BTreeMap order: byte order of the names, libostree's strcmp order.
    for (name, node) in &dir.children {
        match node {
            Node::File(i) => files.push((name, &checksums[*i])),
            Node::Dir(sub) => {
                let (contents, sub_meta) = dir_objects(sub, checksums, objects)?;
                subdirs.push((name, contents, sub_meta));
            }
        }
    }
    let dirs: Vec<(&str, &str, &str)> = subdirs
        .iter()
        .map(|(n, c, m)| (*n, c.as_str(), m.as_str()))
        .collect();
    let tree = dirtree::dirtree(&files, &dirs)
        .with_context(|| format!("Building the directory tree of {}", dir.path.display()))?;
    Ok((objects.add(ostree::ObjectType::DirTree, tree), meta))
}

/// `consume`: delete what is left of the rootfs (directories, skipped special
/// files), keeping the root directory itself.
fn remove_contents(rootfs: &Path) -> Result<()> {
    for entry in
        std::fs::read_dir(rootfs).with_context(|| format!("Reading {}", rootfs.display()))?
    {
        let entry = entry.with_context(|| format!("Reading {}", rootfs.display()))?;
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.with_context(|| format!("Removing {}", path.display()))?;
    }
    Ok(())
}

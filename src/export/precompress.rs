//! The export's pre-pass into an `archive` repository: every content object of
//! the commit (and of the ancestors the pull will copy) that the destination
//! lacks is compressed into its `.filez` form on one thread per core, before
//! libostree's pull-local runs. The pull then finds those objects present and
//! only writes the metadata objects; signing, deltas, summary and refs are
//! untouched. libostree 2022.7's local import deflates each object with the
//! system zlib (on GLib's worker threads); here each worker has its own source
//! `Repo` handle (they are not `Sync`) and deflates with libdeflate/zlib-ng
//! (see [`super::filez`]), which does the same work in under half the CPU time.
//!
//! Safety, mirroring libostree's transaction (`ostree-repo-commit.c`):
//! - an object only ever gets its final name (`objects/xx/rest.filez`) by a
//!   rename of a complete file, so a killed export leaves whole objects or none;
//! - with fsync on (the default), objects are written into a staging directory
//!   under the repository's `tmp/`, `syncfs()` runs, then they are renamed into
//!   place and `syncfs()` runs again (where libostree fsyncs each
//!   `objects/xx`): a power cut cannot leave a truncated object under its
//!   final name either;
//! - with `core.per-object-fsync`, each file is fsync'ed and renamed at once
//!   (then the final `syncfs()`);
//!   with `core.fsync=false`, renamed at once without any sync;
//! - a staging directory left by a killed export is removed by the next one
//!   (the caller holds the destination's [`crate::commit::RepoLock`]).
//!
//! The compression level is the repository's `archive.zlib-level` (libostree's
//! default 6 when unset).
//!
//! Not for: metadata objects, non-archive destinations, archive sources (the
//! pull hardlinks or copies those objects unchanged).

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ostree::gio;
use ostree::prelude::*;
use ostree::{ObjectType, Repo};

use super::ahead::DeflatedAhead;
use super::filez::{write_filez, write_filez_deflated, FileHeader};
use crate::commit::read::has_commit;
use crate::commit::repo::open_repo;
use crate::commit::staging::{create_subdir, loose_path, publish_staged, remove_stale, syncfs};
use crate::commit::tree_walk::{root_dirtree, walk_tree, IO_THREADS};

/// How many objects ahead of the workers the source files are read ahead.
const PREFETCH_AHEAD: usize = 64;

/// Prefix of our staging directories in the destination's `tmp/`.
const STAGING_PREFIX: &str = "ostree-composer-filez-";

/// What [`precompress`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrecompressStats {
    /// Content objects written.
    pub objects: u64,
    /// Their total size on disk.
    pub bytes: u64,
    /// Content objects the destination already had.
    pub present: u64,
    /// Objects whose content had been deflated ahead (during the install).
    pub deflated_ahead: u64,
    pub threads: usize,
    pub duration: Duration,
}

/// How the destination wants objects written.
#[derive(Debug, Clone, Copy)]
struct WriteSettings {
    fsync: bool,
    per_object_fsync: bool,
    level: u32,
}

impl WriteSettings {
    /// libostree's level when `archive.zlib-level` is not set.
    const DEFAULT_LEVEL: u32 = 6;

    fn of(dest: &Repo) -> WriteSettings {
        let config = dest.copy_config();
        let per_object_fsync = config.boolean("core", "per-object-fsync").unwrap_or(false);
        // As libostree parses it: g_ascii_strtoull clamped to 1..=9.
        let level = match config.value("archive", "zlib-level") {
            Ok(v) => {
                let digits: String = v
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                digits.parse::<u64>().unwrap_or(0).clamp(1, 9) as u32
            }
            Err(_) => Self::DEFAULT_LEVEL,
        };
        WriteSettings {
            // Reflects `core.fsync=false` (applied when the repo was opened).
            fsync: !dest.is_disable_fsync(),
            per_object_fsync,
            level,
        }
    }

    /// Whether a worker renames its object into place right away (libostree
    /// writes straight into `objects/` in these cases).
    fn publish_at_once(&self) -> bool {
        !self.fsync || self.per_object_fsync
    }
}

/// The zlib level an export into `dest_path` compresses content objects
/// with: the archive repository's own, libostree's default for the archive
/// repository the export will create, `None` when the destination is a
/// repository of another mode (no `.filez` objects).
pub(crate) fn level_for_destination(dest_path: &Path) -> Result<Option<u32>> {
    if !crate::commit::repo::is_repo(dest_path) {
        return Ok(Some(WriteSettings::DEFAULT_LEVEL));
    }
    let dest = open_repo(dest_path)?;
    Ok((dest.mode() == ostree::RepoMode::Archive).then(|| WriteSettings::of(&dest).level))
}

/// Write, as `.filez` objects into `dest` (an archive repository at
/// `dest_path`), the content objects it lacks of `commit` and of the
/// ancestors the pull will copy (complete in `src_path`, not in `dest`).
/// `src_path` must be a bare-mode repository.
pub(crate) fn precompress(
    src_path: &Path,
    dest_path: &Path,
    dest: &Repo,
    commit: &str,
    ahead: Option<&DeflatedAhead>,
) -> Result<PrecompressStats> {
    let start = Instant::now();
    let src = open_repo(src_path)?;
    let settings = WriteSettings::of(dest);
    let objects_dir = dest_path.join("objects");

    let wanted = content_objects_to_copy(src_path, &src, dest, commit)?;
    let total = wanted.len() as u64;
    let mut todo = missing_with_sizes(wanted, &src_path.join("objects"), &objects_dir)?;
    // Largest first, so no big file is left for the end on one core.
    todo.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let present = total - todo.len() as u64;

    let tmp_dir = dest_path.join("tmp");
    remove_stale(&tmp_dir, STAGING_PREFIX)?;
    if todo.is_empty() {
        return Ok(PrecompressStats {
            present,
            duration: start.elapsed(),
            ..Default::default()
        });
    }
    let staging = Staging::create(&tmp_dir)?;

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, todo.len());
    let job = Job {
        src_path,
        objects_dir: &objects_dir,
        staging: &staging.path,
        settings,
        ahead,
    };
    // With a cold page cache the workers spent about half their time blocked
    // in read() of small source files (perf sched, corpus-medium): ask the
    // kernel to read the next files while the current ones are compressed.
    let src_objects = src_path.join("objects");
    let read_ahead = |(_, csum): &(u64, String)| {
        // An object deflated ahead is not read at all.
        if !ahead.is_some_and(|a| a.has_object(csum)) {
            read_ahead(&loose_path(&src_objects, csum, "file"))
        }
    };
    let bytes = for_each_parallel(
        threads,
        &todo,
        || job.worker_state(),
        |state, (_, csum)| job.write(state, csum),
        Some(&read_ahead),
    )?;

    if !settings.publish_at_once() {
        // Everything staged is on disk before anything gets its final name.
        syncfs(&staging.path)?;
        publish_staged(&staging.path, &objects_dir, threads)?;
    }
    if settings.fsync {
        // The new names are durable too: where libostree fsyncs every
        // objects/xx, one more syncfs does it with a single flush.
        syncfs(&objects_dir)?;
    }
    staging.remove()?;
    Ok(PrecompressStats {
        objects: todo.len() as u64,
        bytes,
        present,
        deflated_ahead: ahead.map_or(0, |a| a.reused()),
        threads,
        duration: start.elapsed(),
    })
}

/// Those of `wanted` that `dest_objects` lacks, with the size of their
/// source object in `src_objects` (0 if unreadable: only the order depends
/// on it, and the worker reports the problem). Looked up on several
/// threads: with a cold page cache each lookup waits for the disk.
fn missing_with_sizes(
    wanted: HashSet<String>,
    src_objects: &Path,
    dest_objects: &Path,
) -> Result<Vec<(u64, String)>> {
    let wanted: Vec<String> = wanted.into_iter().collect();
    crate::threads::map_chunks(&wanted, IO_THREADS, "an object lookup thread", |part| {
        let mut missing = Vec::new();
        for csum in part {
            let dest_obj = loose_path(dest_objects, csum, "filez");
            let present = dest_obj
                .try_exists()
                .with_context(|| format!("Looking up {}", dest_obj.display()))?;
            if !present {
                let size = std::fs::symlink_metadata(loose_path(src_objects, csum, "file"))
                    .map(|m| m.len())
                    .unwrap_or(0);
                missing.push((size, csum.clone()));
            }
        }
        Ok(missing)
    })
}

/// The content objects of `commit` and of its ancestors that are complete in
/// `src` (at `src_path`) and not complete in `dest` (a partial commit's
/// objects may be missing). The trees are read on several threads.
fn content_objects_to_copy(
    src_path: &Path,
    src: &Repo,
    dest: &Repo,
    commit: &str,
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    let mut current = Some(commit.to_string());
    while let Some(c) = current {
        if complete_commit(dest, &c)? {
            break;
        }
        if !has_commit(src, &c)? || (c != commit && !complete_commit(src, &c)?) {
            // The pull cannot copy this ancestor's tree either.
            break;
        }
        let tree = walk_tree(src_path, &root_dirtree(src, &c)?)
            .with_context(|| format!("Listing the objects of commit {c}"))?;
        out.extend(tree.files.into_values());
        let v = src
            .load_variant(ObjectType::Commit, &c)
            .with_context(|| format!("Loading commit {c}"))?;
        current = ostree::commit_get_parent(&v).map(|s| s.to_string());
    }
    Ok(out)
}

/// Whether `repo` has the commit and all its objects (no `commitpartial` mark).
fn complete_commit(repo: &Repo, commit: &str) -> Result<bool> {
    if !has_commit(repo, commit)? {
        return Ok(false);
    }
    let (_, state) = repo
        .load_commit(commit)
        .with_context(|| format!("Loading commit {commit}"))?;
    Ok(!state.contains(ostree::RepoCommitState::PARTIAL))
}

/// Run `f` on every item on `threads` threads (each with its own state from
/// `init`: `Repo` handles are not `Sync`), stopping early once one fails.
/// With `prefetch`, one more thread calls it on the items a little ahead of
/// the workers. Returns the sum of what `f` returned, or the first error.
fn for_each_parallel<T: Sync, S>(
    threads: usize,
    items: &[T],
    init: impl Fn() -> Result<S> + Sync,
    f: impl Fn(&mut S, &T) -> Result<u64> + Sync,
    prefetch: Option<&(dyn Fn(&T) + Sync)>,
) -> Result<u64> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<u64> {
        let r = (|| {
            let mut state = init()?;
            let mut sum = 0;
            while !failed.load(Ordering::Relaxed) {
                let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                sum += f(&mut state, item)?;
            }
            Ok(sum)
        })();
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        r
    };
    let prefetcher = |hint: &(dyn Fn(&T) + Sync)| {
        for (i, item) in items.iter().enumerate() {
            while i >= next.load(Ordering::Relaxed) + PREFETCH_AHEAD {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if failed.load(Ordering::Relaxed) {
                return;
            }
            hint(item);
        }
    };
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        if let Some(hint) = prefetch {
            s.spawn(move || prefetcher(hint));
        }
        let handles: Vec<_> = (0..threads.clamp(1, items.len().max(1)))
            .map(|_| s.spawn(worker))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
            })
            .collect()
    });
    let mut sum = 0;
    for r in results {
        sum += r?;
    }
    Ok(sum)
}

struct WorkerState {
    src: Repo,
    staged_dirs: HashSet<String>,
    published_dirs: HashSet<String>,
}

struct Job<'a> {
    src_path: &'a Path,
    objects_dir: &'a Path,
    staging: &'a Path,
    settings: WriteSettings,
    ahead: Option<&'a DeflatedAhead>,
}

impl Job<'_> {
    /// A worker's own source handle, and the staging and `objects/`
    /// subdirectories it knows exist.
    fn worker_state(&self) -> Result<WorkerState> {
        let src = Repo::new_for_path(self.src_path);
        src.open(gio::Cancellable::NONE)
            .with_context(|| format!("Opening OSTree repository {}", self.src_path.display()))?;
        Ok(WorkerState {
            src,
            staged_dirs: HashSet::new(),
            published_dirs: HashSet::new(),
        })
    }

    /// Compress one object; publish it at once if the settings say so.
    /// Returns its size.
    fn write(&self, state: &mut WorkerState, csum: &str) -> Result<u64> {
        let n = self
            .write_one(&state.src, csum, &mut state.staged_dirs)
            .with_context(|| format!("Writing content object {csum}.filez"))?;
        if self.settings.publish_at_once() {
            publish(
                self.staging,
                self.objects_dir,
                csum,
                &mut state.published_dirs,
            )?;
        }
        Ok(n)
    }

    /// Write one object into the staging directory.
    fn write_one(&self, src: &Repo, csum: &str, staged_dirs: &mut HashSet<String>) -> Result<u64> {
        let (stream, info, xattrs) = src
            .load_file(csum, gio::Cancellable::NONE)
            .context("Loading it from the source repository")?;
        let is_link = info.file_type() == gio::FileType::SymbolicLink;
        let header = FileHeader {
            size: if is_link {
                0
            } else {
                u64::try_from(info.size()).context("negative file size")?
            },
            uid: info.attribute_uint32("unix::uid"),
            gid: info.attribute_uint32("unix::gid"),
            mode: info.attribute_uint32("unix::mode"),
            symlink_target: if is_link {
                info.symlink_target()
                    .context("symlink without a target")?
                    .to_str()
                    .context("symlink target is not UTF-8")?
                    .to_string()
            } else {
                String::new()
            },
            xattrs: Some(xattrs),
        };
        // Staged as `xx/rest.filez` like the objects: two workers rarely
        // create files in the same directory at once (a directory's lock
        // serializes file creation in it).
        ensure_subdir(self.staging, csum, staged_dirs)?;
        let path = loose_path(self.staging, csum, "filez");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("Creating {}", path.display()))?;
        // libostree gives archive objects 0644 whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {}", path.display()))?;
        let mut out = BufWriter::with_capacity(256 * 1024, &file);
        // Deflated ahead under this object's checksum: its content is not read.
        let deflated = match is_link {
            true => None,
            false => self
                .ahead
                .and_then(|a| a.lookup_object(csum, self.settings.level)),
        };
        let n = match deflated {
            Some(deflated) => write_filez_deflated(&header, &deflated, &mut out)?,
            None => {
                let mut reader = stream.map(|s| s.into_read());
                write_filez(
                    &header,
                    reader.as_mut().map(|r| r as &mut dyn Read),
                    self.settings.level,
                    self.ahead,
                    &mut out,
                )?
            }
        };
        out.flush()
            .with_context(|| format!("Writing {}", path.display()))?;
        drop(out);
        if self.settings.fsync && self.settings.per_object_fsync {
            file.sync_all()
                .with_context(|| format!("fsync {}", path.display()))?;
        }
        Ok(n)
    }
}

/// Rename a staged object to its final name, making `objects/xx` if needed.
fn publish(
    staging: &Path,
    objects_dir: &Path,
    csum: &str,
    dirs_made: &mut HashSet<String>,
) -> Result<()> {
    ensure_subdir(objects_dir, csum, dirs_made)?;
    let from = loose_path(staging, csum, "filez");
    let to = loose_path(objects_dir, csum, "filez");
    std::fs::rename(&from, &to)
        .with_context(|| format!("Renaming {} to {}", from.display(), to.display()))
}

/// Make `parent/xx` (xx: the checksum's first two characters) unless
/// `dirs_made` says it exists.
fn ensure_subdir(parent: &Path, csum: &str, dirs_made: &mut HashSet<String>) -> Result<()> {
    let prefix = &csum[..2];
    if !dirs_made.contains(prefix) {
        create_subdir(parent, csum)?;
        dirs_made.insert(prefix.to_string());
    }
    Ok(())
}

/// Start reading `path` into the page cache (`POSIX_FADV_WILLNEED`), without
/// waiting. Only a hint: a file that cannot be opened here is reported by the
/// worker that loads it, so errors are ignored.
fn read_ahead(path: &Path) {
    // A `bare` repository stores symlinks as symlinks: never follow one (its
    // target could be anything, a FIFO would block).
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    if let Ok(f) = opened {
        let _ = rustix::fs::fadvise(&f, 0, 0, rustix::fs::Advice::WillNeed);
    }
}

/// Our staging directory; removed on drop if [`Staging::remove`] was not reached.
struct Staging {
    path: PathBuf,
    removed: bool,
}

impl Staging {
    fn create(tmp_dir: &Path) -> Result<Staging> {
        std::fs::create_dir_all(tmp_dir)
            .with_context(|| format!("Creating {}", tmp_dir.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(tmp_dir)
            .with_context(|| format!("Creating a staging directory in {}", tmp_dir.display()))?;
        Ok(Staging {
            path: dir.keep(),
            removed: false,
        })
    }

    fn remove(mut self) -> Result<()> {
        self.removed = true;
        std::fs::remove_dir_all(&self.path)
            .with_context(|| format!("Removing {}", self.path.display()))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                // The next export removes it (staging::remove_stale).
                eprintln!("warning: could not remove {}: {e}", self.path.display());
            }
        }
    }
}

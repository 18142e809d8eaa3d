//! An exclusive lock on an OSTree repository held for a whole compose (and export),
//! so that two composes into the same repo never interleave their ref updates.
//!
//! The lock is an advisory `flock` on `<repo>/.ostree-composer.lock`; it is
//! released when the [`RepoLock`] is dropped or the process dies (the kernel
//! drops flocks with the last file descriptor, so a crash never leaves a stale
//! lock). The holder writes its pid into the file so a waiter can say who it
//! waits for. libostree's own per-transaction lock (`<repo>/.lock`) only
//! protects single transactions; this one spans the read-parent ->
//! commit -> set-ref sequence.
//!
//! Within one thread, [`RepoLock::acquire`] is re-entrant: a nested acquire
//! of a repository this thread already holds returns a guard that does
//! nothing (the one-shot command holds the export repo's lock while the export
//! step takes it again; flock locks belong to the open file description, so a
//! second open of the lock file would otherwise wait on itself forever).
//!
//! Not for: locking between threads of one process (flock locks belong to the
//! open file description; take one lock per process and pass it around).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

/// File name of the lock inside the repository directory.
pub const LOCK_FILE_NAME: &str = ".ostree-composer.lock";

thread_local! {
    /// Repositories (canonical paths) whose lock this thread holds: a nested
    /// `acquire` on the same thread gets a guard that does not lock again.
    static HELD_BY_THIS_THREAD: RefCell<BTreeSet<PathBuf>> = const { RefCell::new(BTreeSet::new()) };
}

/// Repositories whose lock any thread of this process holds. flock locks of
/// one process conflict with each other too, so code that may run under a
/// caller's lock on another thread (the export) checks here before locking.
static HELD_BY_THIS_PROCESS: std::sync::Mutex<BTreeSet<PathBuf>> =
    std::sync::Mutex::new(BTreeSet::new());

fn held_by_process() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    HELD_BY_THIS_PROCESS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A held exclusive lock on a repository. Dropping it releases the lock.
#[derive(Debug)]
pub struct RepoLock {
    /// `None` for a nested guard of a lock this thread already holds.
    file: Option<File>,
    path: PathBuf,
    /// The key in [`HELD_BY_THIS_THREAD`] (for the outermost guard).
    held_key: PathBuf,
}

fn held_key(repo_path: &Path) -> PathBuf {
    std::fs::canonicalize(repo_path).unwrap_or_else(|_| repo_path.to_path_buf())
}

impl RepoLock {
    /// Whether any thread of this process holds the lock of the repository
    /// at `repo_path` (a function that may run under its caller's lock checks this).
    pub fn is_held_by_this_process(repo_path: &Path) -> bool {
        held_by_process().contains(&held_key(repo_path))
    }

    /// Take the lock, waiting as long as another process holds it (printing
    /// "waiting for lock on REPO held by pid N" once to stderr).
    pub fn acquire(repo_path: &Path) -> Result<RepoLock> {
        let key = held_key(repo_path);
        if HELD_BY_THIS_THREAD.with(|h| h.borrow().contains(&key)) {
            return Ok(RepoLock {
                file: None,
                path: repo_path.join(LOCK_FILE_NAME),
                held_key: key,
            });
        }
        let (mut file, path) = open_lock_file(repo_path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::WOULDBLOCK => {
                eprintln!(
                    "waiting for lock on {} held by {}",
                    repo_path.display(),
                    holder_description(&mut file)
                );
                flock(&file, FlockOperation::LockExclusive)
                    .with_context(|| format!("Locking {}", path.display()))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("Locking {}", path.display()));
            }
        }
        Self::record_holder(file, path, key)
    }

    /// Take the lock if it is free; otherwise fail at once with an error of
    /// class [`crate::exit::ErrorClass::Locked`] naming the holder's pid.
    pub fn try_acquire(repo_path: &Path) -> Result<RepoLock> {
        let (mut file, path) = open_lock_file(repo_path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Self::record_holder(file, path, held_key(repo_path)),
            Err(e) if e == Errno::WOULDBLOCK => Err(crate::exit::locked(format!(
                "the repository {} is locked by another compose ({}); wait for it to finish or retry later",
                repo_path.display(),
                holder_description(&mut file)
            ))),
            Err(e) => Err(e).with_context(|| format!("Locking {}", path.display())),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record_holder(mut file: File, path: PathBuf, held_key: PathBuf) -> Result<RepoLock> {
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        write_pid(&mut file).with_context(|| format!("Writing pid to {}", path.display()))?;
        HELD_BY_THIS_THREAD.with(|h| h.borrow_mut().insert(held_key.clone()));
        held_by_process().insert(held_key.clone());
        Ok(RepoLock {
            file: Some(file),
            path,
            held_key,
        })
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // A nested guard leaves the outer one's lock alone.
        let Some(file) = &self.file else { return };
        HELD_BY_THIS_THREAD.with(|h| h.borrow_mut().remove(&self.held_key));
        held_by_process().remove(&self.held_key);
        // Leave the file (removing it would race with a waiter that already
        // opened it); clear the pid so nobody is named as a holder.
        let _ = file.set_len(0);
        // Closing the descriptor releases the flock.
    }
}

fn open_lock_file(repo_path: &Path) -> Result<(File, PathBuf)> {
    let path = repo_path.join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("Opening lock file {}", path.display()))?;
    Ok((file, path))
}

fn holder_description(file: &mut File) -> String {
    let mut content = String::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut content));
    match read {
        Ok(_) if !content.trim().is_empty() => format!("pid {}", content.trim()),
        _ => "another process".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_acquire_in_one_thread_does_not_wait_on_itself() {
        let dir = tempfile::tempdir().unwrap();
        let outer = RepoLock::acquire(dir.path()).unwrap();
        // Before the fix this blocked forever (a second flock in the same process).
        let inner = RepoLock::acquire(dir.path()).unwrap();
        drop(inner);
        // The outer guard still holds the lock.
        assert!(RepoLock::try_acquire(dir.path()).is_err());
        drop(outer);
        let again = RepoLock::try_acquire(dir.path()).unwrap();
        drop(again);
        // And a fresh acquire after release takes the lock for real.
        let fresh = RepoLock::acquire(dir.path()).unwrap();
        assert!(RepoLock::try_acquire(dir.path()).is_err());
        drop(fresh);
    }
}

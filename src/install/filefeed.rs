//! A low-priority thread fed the files each package put in place.
//!
//! rpm's transaction keeps one core busy and leaves the other mostly idle.
//! Work that only needs the installed files (deflating them for an archive
//! export, hashing them for the commit) can run there while rpm goes on:
//! the installer reports each package's files through an
//! [`InstalledFilesSink`] once they are in place, and a [`FileFeed`] hands
//! them, one by one, to a handler on its own thread.
//!
//! Post-processing moves the root's top-level directories into a new root
//! (`rootfs.tmp` to `rootfs`, `etc` to `usr/etc`); the sink opens each
//! top-level directory when it first sees it and queues the files relative
//! to it, so files the thread has not reached yet stay reachable.
//!
//! Not for: deciding anything about the result. A handler only prepares
//! work that the later step checks (by content hash, or by inode status)
//! before it uses it; a file that cannot be opened is simply skipped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags};

use super::InstalledFilesSink;

/// What the handler wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Stop taking files (e.g. a memory budget is used up).
    Stop,
}

/// One package's files, each as (its top-level directory, opened when the
/// installer reported the file; the rest of its path).
struct Batch {
    files: Vec<(Arc<OwnedFd>, PathBuf)>,
}

/// The top-level directories of one install root, opened (`None`: could
/// not be, e.g. not a directory).
type OpenedTops = HashMap<std::ffi::OsString, Option<Arc<OwnedFd>>>;

/// What a sink keeps: where to send, and the root it last saw with its
/// opened top-level directories.
type SinkState = (
    Option<mpsc::Sender<Option<Batch>>>,
    Option<(PathBuf, OpenedTops)>,
);

/// The thread and the way to feed it.
pub struct FileFeed {
    sender: Option<mpsc::Sender<Option<Batch>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    offered: Arc<AtomicU64>,
}

impl FileFeed {
    /// Start the thread `name` at `nice` (only otherwise idle CPU: 10 or
    /// more); `handle` gets each file as (its top-level directory, the rest
    /// of its path).
    pub fn start(
        name: &str,
        nice: i32,
        handle: impl FnMut(&OwnedFd, &Path) -> Next + Send + 'static,
    ) -> Result<FileFeed> {
        let (sender, receiver) = mpsc::channel::<Option<Batch>>();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    lower_priority(nice);
                    run(&receiver, &stop, handle)
                })
                .with_context(|| format!("Starting the {name} thread"))?
        };
        Ok(FileFeed {
            sender: Some(sender),
            stop,
            thread: Some(thread),
            offered: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Where the installer sends the files it put in place.
    pub fn sink(&self) -> InstalledFilesSink {
        // mpsc::Sender is Send but not Sync before Rust 1.72; a Mutex keeps
        // the sink shareable either way. The top-level directories stay open
        // between batches.
        let state: Mutex<SinkState> = Mutex::new((self.sender.clone(), None));
        let offered = self.offered.clone();
        InstalledFilesSink::new(move |root, files| {
            offered.fetch_add(files.len() as u64, Ordering::Relaxed);
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            let (sender, opened) = &mut *state;
            if opened.as_ref().map(|(p, _)| p.as_path()) != Some(root) {
                *opened = Some((root.to_path_buf(), HashMap::new()));
            }
            let (Some(sender), Some((_, tops))) = (sender.as_ref(), opened.as_mut()) else {
                return;
            };
            let mut batch = Vec::with_capacity(files.len());
            for file in files {
                let mut parts = file.components();
                let Some(std::path::Component::Normal(top)) = parts.next() else {
                    continue;
                };
                let rest = parts.as_path();
                if rest.as_os_str().is_empty() {
                    // A file directly in the root: too rare to bother.
                    continue;
                }
                // Only a hint: a directory that cannot be opened is no error here.
                let dir = tops
                    .entry(top.to_os_string())
                    .or_insert_with(|| open_dir(&root.join(top)).ok().map(Arc::new));
                if let Some(dir) = dir {
                    batch.push((dir.clone(), rest.to_path_buf()));
                }
            }
            // The thread is gone only after stop_and_join(): nothing to do then.
            let _ = sender.send(Some(Batch { files: batch }));
        })
    }

    /// How many files the installer reported.
    pub fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Stop the thread (files still queued are left) and wait for it.
    pub fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Sinks may outlive the thread and keep the channel open: wake it
        // with an explicit end.
        if let Some(s) = self.sender.take() {
            let _ = s.send(None);
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                // Only the time is lost: the later step does the work itself.
                eprintln!("warning: a background thread reading the installed files panicked");
            }
        }
    }
}

impl Drop for FileFeed {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(
    receiver: &mpsc::Receiver<Option<Batch>>,
    stop: &AtomicBool,
    mut handle: impl FnMut(&OwnedFd, &Path) -> Next,
) {
    while let Ok(Some(Batch { files })) = receiver.recv() {
        for (dir, path) in files {
            if stop.load(Ordering::Relaxed) || handle(&dir, &path) == Next::Stop {
                return;
            }
        }
    }
}

/// Open `path` as a directory.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open `path` under `dir` for reading if it is a regular file (never
/// following a final symlink, never blocking on a FIFO).
pub fn open_regular(dir: &OwnedFd, path: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    let fd = rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        anyhow::bail!("not a regular file");
    }
    Ok((file, meta))
}

/// `nice` for the calling thread (on Linux, setpriority on a thread id
/// affects that thread only).
fn lower_priority(nice: i32) {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        // Failing leaves the normal priority: only fairness is lost.
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file reported is handed over, also after the root's top-level
    /// directory moved; a symlink or a missing file is the handler's to
    /// skip; files queued after a stop are left.
    #[test]
    fn files_are_handed_over_also_after_the_root_is_rearranged() {
        let top = tempfile::tempdir().unwrap();
        let old_root = top.path().join("rootfs.tmp");
        let new_root = top.path().join("rootfs");
        std::fs::create_dir_all(old_root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(&new_root).unwrap();
        std::fs::write(old_root.join("usr/lib/x"), b"x").unwrap();
        std::fs::write(old_root.join("usr/lib/y"), b"y").unwrap();
        std::os::unix::fs::symlink("x", old_root.join("usr/lib/link")).unwrap();
        // The handler waits for the move before it looks at anything.
        let (moved_tx, moved_rx) = mpsc::channel::<()>();
        let moved_rx = Mutex::new(moved_rx);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut feed = {
            let seen = seen.clone();
            let mut waited = false;
            FileFeed::start("test-feed", 10, move |dir, path| {
                if !waited {
                    moved_rx.lock().unwrap().recv().unwrap();
                    waited = true;
                }
                let kind = match open_regular(dir, path) {
                    Ok(_) => "file",
                    Err(_) => "skipped",
                };
                seen.lock()
                    .unwrap()
                    .push(format!("{} {kind}", path.display()));
                Next::Continue
            })
            .unwrap()
        };
        let sink = feed.sink();
        sink.send(
            &old_root,
            vec![
                PathBuf::from("usr/lib/x"),
                PathBuf::from("usr/lib/link"),
                PathBuf::from("usr/lib/missing"),
                PathBuf::from("top-level-file"),
                PathBuf::from("no-such-dir/x"),
            ],
        );
        sink.send(&old_root, vec![PathBuf::from("usr/lib/y")]);
        std::fs::rename(old_root.join("usr"), new_root.join("usr")).unwrap();
        moved_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while seen.lock().unwrap().len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        feed.stop_and_join();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "lib/x file",
                "lib/link skipped",
                "lib/missing skipped",
                "lib/y file"
            ]
        );
        assert_eq!(feed.offered(), 6);
        // A send after the stop is ignored, not a panic.
        sink.send(&new_root, vec![PathBuf::from("usr/lib/x")]);
    }

    #[test]
    fn a_handler_can_stop_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let mut feed = {
            let count = count.clone();
            FileFeed::start("test-feed", 10, move |_, _| {
                count.fetch_add(1, Ordering::Relaxed);
                Next::Stop
            })
            .unwrap()
        };
        let files: Vec<PathBuf> = (0..5).map(|i| PathBuf::from(format!("d/{i}"))).collect();
        feed.sink().send(dir.path(), files);
        // The thread returns after the first file: join waits for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while count.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        feed.stop_and_join();
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }
}

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
//! The feed opens each file itself and hands the handler the open file. A
//! step that traces which files of the root are opened (the initramfs cache
//! watching dracut) asks the feed to be quiet: it opens the next files at
//! once, before the trace starts, and then only works on those until the
//! step is done ([`InstalledFilesSink::quiet_opens`]).
//!
//! Not for: deciding anything about the result. A handler only prepares
//! work that the later step checks (by content hash, or by inode status)
//! before it uses it; a file that cannot be opened is simply skipped.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
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

/// One file: its top-level directory (opened when the installer reported
/// the file) and the rest of its path.
type Queued = (Arc<OwnedFd>, PathBuf);

/// What the thread gets through its channel.
enum Msg {
    /// One package's files.
    Batch(Vec<Queued>),
    /// Look at [`Control`] (a quiet request).
    Wake,
    /// Stop.
    End,
}

/// The quiet handshake between [`FeedQuiet::hold`] and the thread.
#[derive(Default)]
struct ControlState {
    /// Open up to this many queued files now, then say `ready`.
    requested: Option<usize>,
    ready: bool,
    /// Open nothing more until this is false again.
    quiet: bool,
    /// The thread is gone.
    finished: bool,
}

#[derive(Default)]
struct Control {
    state: Mutex<ControlState>,
    changed: Condvar,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        // The state is plain flags: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The top-level directories of one install root, opened (`None`: could
/// not be, e.g. not a directory).
type OpenedTops = HashMap<std::ffi::OsString, Option<Arc<OwnedFd>>>;

/// What a sink keeps: where to send, and the root it last saw with its
/// opened top-level directories.
type SinkState = (Option<mpsc::Sender<Msg>>, Option<(PathBuf, OpenedTops)>);

/// The thread and the way to feed it.
pub struct FileFeed {
    sender: Option<mpsc::Sender<Msg>>,
    stop: Arc<AtomicBool>,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
    offered: Arc<AtomicU64>,
}

impl FileFeed {
    /// Start the thread `name` at `nice` (only otherwise idle CPU: 10 or
    /// more); `handle` gets each regular file opened (never following a
    /// final symlink), with its status and its path below its top-level
    /// directory. Files that cannot be opened, or are not regular, are
    /// skipped.
    pub fn start(
        name: &str,
        nice: i32,
        handle: impl FnMut(File, &Metadata, &Path) -> Next + Send + 'static,
    ) -> Result<FileFeed> {
        let (sender, receiver) = mpsc::channel::<Msg>();
        let stop = Arc::new(AtomicBool::new(false));
        let control = Arc::new(Control::default());
        let thread = {
            let stop = stop.clone();
            let control = control.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    crate::threads::lower_priority(nice);
                    run(&receiver, &stop, &control, handle);
                    control.lock().finished = true;
                    control.changed.notify_all();
                })
                .with_context(|| format!("Starting the {name} thread"))?
        };
        Ok(FileFeed {
            sender: Some(sender),
            stop,
            control,
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
        let quiet = FeedQuiet {
            control: self.control.clone(),
            sender: Mutex::new(self.sender.clone()),
        };
        InstalledFilesSink::with_quiet(Arc::new(quiet), move |root, files| {
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
            let _ = sender.send(Msg::Batch(batch));
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
        // with an explicit end (and from a quiet wait).
        if let Some(s) = self.sender.take() {
            let _ = s.send(Msg::End);
        }
        self.control.changed.notify_all();
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

/// Hands a sink's holder a way to make the feed quiet.
pub struct FeedQuiet {
    control: Arc<Control>,
    sender: Mutex<Option<mpsc::Sender<Msg>>>,
}

/// While this lives, the feed opens no file (see [`FeedQuiet::hold`]).
pub struct QuietGuard {
    control: Arc<Control>,
}

impl Drop for QuietGuard {
    fn drop(&mut self) {
        self.control.lock().quiet = false;
        self.control.changed.notify_all();
    }
}

impl FeedQuiet {
    /// Make the feed open up to `max` of its queued files now and then no
    /// more until the guard is dropped. Returns once those are open (or the
    /// thread has ended); the thread goes on working on them meanwhile.
    pub fn hold(&self, max: usize) -> QuietGuard {
        let max = open_files_allowed(max);
        {
            let mut st = self.control.lock();
            st.requested = Some(max);
            st.ready = false;
            st.quiet = true;
        }
        let sent = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.send(Msg::Wake).is_ok())
            .unwrap_or(false);
        let mut st = self.control.lock();
        while sent && !st.ready && !st.finished {
            st = self
                .control
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        QuietGuard {
            control: self.control.clone(),
        }
    }
}

/// How many files [`FeedQuiet::hold`] may keep open: `want`, or less when
/// the open-files limit is lower than twice that and cannot be raised (the
/// soft limit is raised towards the hard one, as the process may).
fn open_files_allowed(want: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    const SPARE: u64 = 256;
    let need = want as u64 * 2 + SPARE;
    let mut lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let soft = if soft < need && hard > soft {
        lim.current = Some(need.min(hard));
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => need.min(hard),
            Err(_) => soft,
        }
    } else {
        soft
    };
    (soft.saturating_sub(SPARE) / 2).min(want as u64) as usize
}

/// The thread: files in the order reported; on a quiet request, open the
/// next ones at once and work only on those until the quiet ends.
fn run(
    receiver: &mpsc::Receiver<Msg>,
    stop: &AtomicBool,
    control: &Control,
    mut handle: impl FnMut(File, &Metadata, &Path) -> Next,
) {
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut opened: VecDeque<(File, Metadata, PathBuf)> = VecDeque::new();
    let mut ended = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut st = control.lock();
        if let Some(max) = st.requested.take() {
            drop(st);
            while let Ok(msg) = receiver.try_recv() {
                match msg {
                    Msg::Batch(files) => queue.extend(files),
                    Msg::Wake => {}
                    Msg::End => ended = true,
                }
            }
            while opened.len() < max {
                let Some((dir, path)) = queue.pop_front() else {
                    break;
                };
                if let Ok((file, meta)) = open_regular(&dir, &path) {
                    opened.push_back((file, meta, path));
                }
            }
            st = control.lock();
            st.ready = true;
            control.changed.notify_all();
        }
        let quiet = st.quiet;
        if let Some((file, meta, path)) = opened.pop_front() {
            drop(st);
            if handle(file, &meta, &path) == Next::Stop {
                return;
            }
            continue;
        }
        if quiet {
            // Nothing opened left: wait for the end of the quiet (or a stop).
            let _st = control.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        drop(st);
        if let Some((dir, path)) = queue.pop_front() {
            if let Ok((file, meta)) = open_regular(&dir, &path) {
                if handle(file, &meta, &path) == Next::Stop {
                    return;
                }
            }
            continue;
        }
        if ended {
            return;
        }
        match receiver.recv() {
            Ok(Msg::Batch(files)) => queue.extend(files),
            Ok(Msg::Wake) => {}
            Ok(Msg::End) | Err(_) => return,
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
            FileFeed::start("test-feed", 10, move |_file, meta, path| {
                if !waited {
                    moved_rx.lock().unwrap().recv().unwrap();
                    waited = true;
                }
                seen.lock()
                    .unwrap()
                    .push(format!("{} {}", path.display(), meta.len()));
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
        while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        feed.stop_and_join();
        // The symlink and the missing file are skipped.
        assert_eq!(*seen.lock().unwrap(), ["lib/x 1", "lib/y 1"]);
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
            FileFeed::start("test-feed", 10, move |_, _, _| {
                count.fetch_add(1, Ordering::Relaxed);
                Next::Stop
            })
            .unwrap()
        };
        let files: Vec<PathBuf> = (0..5).map(|i| PathBuf::from(format!("d/{i}"))).collect();
        for f in &files {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        feed.sink().send(dir.path(), files);
        // The thread returns after the first file: join waits for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while count.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        feed.stop_and_join();
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !what() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// While quiet, the feed opens no file of the root (an inotify trace
    /// sees nothing) and works only on what it opened when asked; then it
    /// goes on with the rest.
    #[test]
    fn a_quiet_feed_opens_nothing_until_the_quiet_ends() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        let files: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("d/{i}"))).collect();
        for f in &files {
            std::fs::write(root.join(f), "x").unwrap();
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let feed = {
            let seen = seen.clone();
            let gate_rx = Mutex::new(gate_rx);
            let entered_tx = Mutex::new(entered_tx);
            FileFeed::start("test-feed", 0, move |_, _, path| {
                if seen.lock().unwrap().is_empty() {
                    let _ = entered_tx.lock().unwrap().send(());
                    // A failing test drops the gate: the thread ends too.
                    if gate_rx.lock().unwrap().recv().is_err() {
                        return Next::Stop;
                    }
                }
                seen.lock().unwrap().push(path.to_path_buf());
                Next::Continue
            })
            .unwrap()
        };
        // Dropped before `feed` (declared after it), so that a failing
        // assertion releases the thread instead of joining it forever.
        let gate_tx = gate_tx;
        let sink = feed.sink();
        sink.send(root, files.clone());
        // Once the thread is in the handler for the first file (not before:
        // it would answer the request at once), ask for quiet.
        entered_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the feed reached the first file");
        let asking = {
            let sink = sink.clone();
            std::thread::spawn(move || sink.quiet_opens(3).unwrap())
        };
        wait_for(|| feed.control.lock().requested.is_some());
        gate_tx.send(()).unwrap();
        let guard = asking.join().unwrap();

        let tracer = crate::postprocess::opentrace::Tracer::start(
            root,
            &[PathBuf::new(), PathBuf::from("d")],
            &[],
        )
        .unwrap();
        wait_for(|| seen.lock().unwrap().len() == 4);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            seen.lock().unwrap().len(),
            4,
            "1 in hand and 3 opened ahead"
        );
        let trace = tracer.finish().unwrap();
        assert!(trace.opened.is_empty(), "{trace:?}");

        drop(guard);
        wait_for(|| seen.lock().unwrap().len() == 10);
        let names: Vec<_> = seen.lock().unwrap().clone();
        let want: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix("d").unwrap().to_path_buf())
            .collect();
        assert_eq!(names, want, "in order, none lost");
    }
}

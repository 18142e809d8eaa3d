//! Content deflated ahead of the export, while rpm is still installing.
//!
//! rpm's transaction keeps one core busy and leaves the other idle for most
//! of the install; the export to an archive repository later spends most of
//! its time deflating file contents. [`AheadWorker`] uses the idle core: as
//! each package's files are in place (the dnf helper reports them), one
//! low-priority thread reads them from the install root and deflates them
//! exactly as [`super::filez::write_filez`] would, keyed by the SHA-256 of
//! the content. The export's [`super::precompress`] hashes each object's
//! content and reuses a stream found here instead of compressing it again.
//!
//! Why keying by content is safe: what is looked up is the hash of the
//! object's own bytes, and what is stored under a hash is the deflate of
//! exactly the bytes that were hashed. A file a scriptlet or the
//! post-processing changed later, one that was replaced by something else, a
//! torn read of a file being rewritten: each has a different hash from the
//! final object and is simply never found. Reading outside the root through
//! a symlinked directory can at worst cache the deflate of content that no
//! object has. The result never depends on what was cached, only the time.
//!
//! Bounded: entries stop being added past a memory budget, and the thread
//! runs at nice 10 so it takes CPU from nobody but the idle core.
//!
//! Not for: files over [`super::filez::WHOLE_BUFFER_MAX`] (the export streams
//! those), symlinks and metadata (cheap), non-archive destinations.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::filez::{deflate_to_vec, WHOLE_BUFFER_MAX};
use crate::install::InstalledFilesSink;

/// Content streams deflated ahead, by SHA-256 of the content.
#[derive(Debug)]
pub struct DeflatedAhead {
    level: u32,
    streams: Mutex<HashMap<[u8; 32], Arc<[u8]>>>,
    /// Sum of the stored streams' lengths.
    stored_bytes: AtomicU64,
    reused: AtomicU64,
    /// Files the installer reported.
    offered: AtomicU64,
}

impl DeflatedAhead {
    fn new(level: u32) -> DeflatedAhead {
        DeflatedAhead {
            level,
            streams: Mutex::new(HashMap::new()),
            stored_bytes: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            offered: AtomicU64::new(0),
        }
    }

    /// The deflate stream of `content` at `level`, if it was made ahead.
    pub(crate) fn lookup(&self, content: &[u8], level: u32) -> Option<Arc<[u8]>> {
        if level != self.level {
            return None;
        }
        let key: [u8; 32] = Sha256::digest(content).into();
        let found = self.lock().get(&key).cloned();
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// How many lookups found a stream.
    pub(crate) fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// How many files the installer reported.
    pub(crate) fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// The stored streams' total size.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    /// How many streams are stored.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.lock().contains_key(key)
    }

    fn insert(&self, key: [u8; 32], stream: Vec<u8>) {
        self.stored_bytes
            .fetch_add(stream.len() as u64, Ordering::Relaxed);
        self.lock().insert(key, stream.into());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<[u8]>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (single insert/get calls): keep using it.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The background thread filling a [`DeflatedAhead`].
pub struct AheadWorker {
    sender: Option<mpsc::Sender<Option<Vec<PathBuf>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    ahead: Arc<DeflatedAhead>,
}

impl AheadWorker {
    /// Start the thread; `level` is the destination's `archive.zlib-level`.
    pub fn start(level: u32) -> Result<AheadWorker> {
        let (sender, receiver) = mpsc::channel::<Option<Vec<PathBuf>>>();
        let stop = Arc::new(AtomicBool::new(false));
        let ahead = Arc::new(DeflatedAhead::new(level));
        let budget = memory_budget();
        let thread = {
            let stop = stop.clone();
            let ahead = ahead.clone();
            std::thread::Builder::new()
                .name("deflate-ahead".into())
                .spawn(move || run(&receiver, &stop, &ahead, budget))
                .context("Starting the deflate-ahead thread")?
        };
        Ok(AheadWorker {
            sender: Some(sender),
            stop,
            thread: Some(thread),
            ahead,
        })
    }

    /// Where the installer sends the files it put in place.
    pub fn sink(&self) -> InstalledFilesSink {
        // mpsc::Sender is Send but not Sync before Rust 1.72; a Mutex keeps
        // the sink shareable either way.
        let sender = Mutex::new(self.sender.clone());
        // Weak: a sink kept by the caller must not keep the streams in memory
        // once the export has used them.
        let ahead = Arc::downgrade(&self.ahead);
        InstalledFilesSink::new(move |files| {
            if let Some(a) = ahead.upgrade() {
                a.offered.fetch_add(files.len() as u64, Ordering::Relaxed);
            }
            if let Some(s) = sender.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                // The worker is gone only after finish(): nothing to do then.
                let _ = s.send(Some(files));
            }
        })
    }

    /// Stop (files still queued are left to the export) and hand over what
    /// was deflated.
    pub fn finish(mut self) -> Arc<DeflatedAhead> {
        self.stop_and_join();
        self.ahead.clone()
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Sinks may outlive the worker and keep the channel open: wake the
        // thread with an explicit end.
        if let Some(s) = self.sender.take() {
            let _ = s.send(None);
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                // Only the time is lost: the export deflates what is missing.
                eprintln!("warning: the deflate-ahead thread panicked");
            }
        }
    }
}

impl Drop for AheadWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// At most this much compressed data is kept (corpus-medium needs 111 MB,
/// corpus-large 419 MB of which the thread gets through less than half
/// during the install).
const BUDGET_MAX: u64 = 256 << 20;

/// [`BUDGET_MAX`], or an eighth of the memory available (to the cgroup, when
/// it is limited) if that is less.
fn memory_budget() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| meminfo_available(&m));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    [available, cgroup]
        .into_iter()
        .flatten()
        .map(|b| b / 8)
        .fold(BUDGET_MAX, u64::min)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn run(
    receiver: &mpsc::Receiver<Option<Vec<PathBuf>>>,
    stop: &AtomicBool,
    ahead: &DeflatedAhead,
    budget: u64,
) {
    lower_priority();
    let mut buf = Vec::new();
    while let Ok(Some(files)) = receiver.recv() {
        for path in files {
            if stop.load(Ordering::Relaxed) || ahead.stored_bytes.load(Ordering::Relaxed) >= budget
            {
                return;
            }
            // A file that cannot be read is no error here: the export
            // compresses it (or whatever replaced it) itself.
            if read_regular(&path, &mut buf).is_ok() {
                let key: [u8; 32] = Sha256::digest(&buf).into();
                if !ahead.contains(&key) {
                    match deflate_to_vec(&buf, ahead.level) {
                        Ok(stream) => ahead.insert(key, stream),
                        // Same: the export compresses it and reports any error.
                        Err(_) => continue,
                    }
                }
            }
        }
    }
}

/// Read `path` into `buf` if it is a regular file of at most
/// [`WHOLE_BUFFER_MAX`] bytes (never following a final symlink, never
/// blocking on a FIFO).
fn read_regular(path: &std::path::Path, buf: &mut Vec<u8>) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 || meta.len() > WHOLE_BUFFER_MAX {
        anyhow::bail!("not a candidate");
    }
    buf.clear();
    file.take(WHOLE_BUFFER_MAX + 1).read_to_end(buf)?;
    Ok(())
}

/// nice 10 for the calling thread (on Linux, setpriority on a thread id
/// affects that thread only): the thread should only get otherwise idle CPU.
fn lower_priority() {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        // Failing leaves the normal priority: only fairness is lost.
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::filez::{write_filez, FileHeader};

    fn header(size: usize) -> FileHeader {
        FileHeader {
            size: size as u64,
            uid: 0,
            gid: 0,
            mode: 0o100644,
            symlink_target: String::new(),
            xattrs: None,
        }
    }

    fn filez(content: &[u8], level: u32, ahead: Option<&DeflatedAhead>) -> Vec<u8> {
        let mut out = Vec::new();
        write_filez(
            &header(content.len()),
            Some(&mut &content[..]),
            level,
            ahead,
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn files_deflated_ahead_are_reused_and_give_the_same_object() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let content_a = b"the quick brown fox\n".repeat(5000);
        std::fs::write(&a, &content_a).unwrap();
        std::fs::write(&b, b"first version").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();

        let worker = AheadWorker::start(6).unwrap();
        let sink = worker.sink();
        sink.send(vec![a.clone(), b.clone(), link, dir.path().join("missing")]);
        // Give the thread the files before stopping it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while worker.ahead.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ahead = worker.finish();
        assert_eq!(
            ahead.len(),
            2,
            "a and b, not the symlink or the missing file"
        );
        assert_eq!(ahead.offered(), 4);
        // A send after finish is ignored, not a panic.
        sink.send(vec![a.clone()]);

        // b changed after it was deflated: not found, compressed normally.
        let content_b = b"second version".to_vec();
        let plain_a = filez(&content_a, 6, None);
        assert_eq!(filez(&content_a, 6, Some(&ahead)), plain_a);
        assert_eq!(ahead.reused(), 1);
        assert_eq!(
            filez(&content_b, 6, Some(&ahead)),
            filez(&content_b, 6, None)
        );
        assert_eq!(ahead.reused(), 1);
        // Another level: never reused.
        assert_eq!(
            filez(&content_a, 9, Some(&ahead)),
            filez(&content_a, 9, None)
        );
        assert_eq!(ahead.reused(), 1);
        // The sink (still alive) does not keep the streams in memory.
        let weak = Arc::downgrade(&ahead);
        drop(ahead);
        assert!(weak.upgrade().is_none());
        sink.send(vec![b]);
    }

    #[test]
    fn budget_from_meminfo() {
        let m = "MemTotal:       24000000 kB\nMemAvailable:    1048576 kB\n";
        assert_eq!(meminfo_available(m), Some(1 << 30));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
        assert!(memory_budget() <= BUDGET_MAX);
    }
}

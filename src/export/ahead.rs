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
//! Bounded: past a memory budget, streams are appended to an unlinked spill
//! file (up to [`SPILL_MAX`]), so the thread keeps using the idle core
//! through the rest of the install and the post-processing (dracut leaves a
//! core idle too); it runs at nice 10 so it takes CPU from nobody but the
//! idle core.
//!
//! Files over [`super::filez::WHOLE_BUFFER_MAX`] (up to [`BIG_MAX`]) are
//! deflated the way the export streams them (zlib-ng), so that reusing
//! their stream gives the same bytes.
//!
//! The same read gives the commit each file's OSTree content checksum
//! ([`AheadWorker::known`]): without it the commit reads every file rpm
//! installed again to checksum it, on the critical path. A checksum is
//! recorded with the file's status read before the content ([`KnownContents`]
//! trusts it while the status is unchanged), only when the status is the
//! same after the read and its ctime is older than the clock read before
//! it: then no write during or after the read can leave the status as it
//! was.
//!
//! Not for: files over [`BIG_MAX`] (the export streams those), symlinks and
//! metadata (cheap), non-archive destinations.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::filez::{deflate_big_to_vec, deflate_to_vec, WHOLE_BUFFER_MAX};
use crate::commit::checksum::ContentHasher;
use crate::commit::known::{coarse_clock, KnownContents, Stamp};
use crate::install::filefeed::{FileFeed, Next};
use crate::install::InstalledFilesSink;

/// Where one deflated stream is kept.
#[derive(Debug, Clone)]
enum Stored {
    Memory(Arc<[u8]>),
    /// In the spill file, at this offset, this long.
    Spilled {
        offset: u64,
        len: usize,
    },
}

/// Content streams deflated ahead, by SHA-256 of the content.
#[derive(Debug)]
pub struct DeflatedAhead {
    level: u32,
    streams: Mutex<HashMap<[u8; 32], Stored>>,
    /// OSTree content checksum (as the file was read: its own owner and
    /// mode, no xattrs) -> key of its stream in `streams`: the export finds
    /// an object's stream without reading and hashing its content.
    by_object: Mutex<HashMap<String, [u8; 32]>>,
    /// Sum of the lengths of the streams kept in memory.
    stored_bytes: AtomicU64,
    /// Streams past the memory budget: appended to one unlinked file (the
    /// page cache holds it while there is room; the process's memory does
    /// not). Only the worker thread appends; reads are positioned.
    spill: Option<std::fs::File>,
    /// How much of `spill` is written.
    spilled_bytes: AtomicU64,
    /// Sizes of the big files (over [`WHOLE_BUFFER_MAX`]) stored: the export
    /// reads such a file whole only when one of its size is here.
    big_sizes: Mutex<std::collections::HashSet<u64>>,
    reused: AtomicU64,
    /// Files the installer reported.
    offered: AtomicU64,
}

impl DeflatedAhead {
    fn new(level: u32, spill: Option<std::fs::File>) -> DeflatedAhead {
        DeflatedAhead {
            level,
            streams: Mutex::new(HashMap::new()),
            by_object: Mutex::new(HashMap::new()),
            stored_bytes: AtomicU64::new(0),
            spill,
            spilled_bytes: AtomicU64::new(0),
            big_sizes: Mutex::new(std::collections::HashSet::new()),
            reused: AtomicU64::new(0),
            offered: AtomicU64::new(0),
        }
    }

    /// The deflate stream of `content` at `level`, if it was made ahead.
    pub(crate) fn lookup(&self, content: &[u8], level: u32) -> Option<Arc<[u8]>> {
        if level != self.level {
            return None;
        }
        self.stream(&Sha256::digest(content).into())
    }

    /// The deflate stream at `level` of the content of the object
    /// `checksum`, if a file with that object checksum was deflated ahead.
    /// Its content is the object's: the checksum covers it.
    pub(crate) fn lookup_object(&self, checksum: &str, level: u32) -> Option<Arc<[u8]>> {
        if level != self.level {
            return None;
        }
        let key = *self
            .by_object
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(checksum)?;
        self.stream(&key)
    }

    /// Whether a stream is known for the object `checksum`.
    pub(crate) fn has_object(&self, checksum: &str) -> bool {
        self.by_object
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(checksum)
    }

    /// The stream stored under `key` (counted as reused).
    fn stream(&self, key: &[u8; 32]) -> Option<Arc<[u8]>> {
        let found = match self.lock().get(key).cloned()? {
            Stored::Memory(stream) => stream,
            Stored::Spilled { offset, len } => {
                // Unreadable: compressed again by the caller.
                self.read_spilled(offset, len).ok()?.into()
            }
        };
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(found)
    }

    fn read_spilled(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let Some(spill) = &self.spill else {
            return Err(std::io::ErrorKind::NotFound.into());
        };
        let mut buf = vec![0u8; len];
        spill.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Whether a big file of `size` bytes was deflated ahead.
    pub(crate) fn has_big_of_size(&self, size: u64) -> bool {
        self.big_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&size)
    }

    /// How many lookups found a stream.
    pub(crate) fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// How many files the installer reported.
    pub(crate) fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// The stored streams' total size (in memory and spilled).
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed) + self.spilled_bytes.load(Ordering::Relaxed)
    }

    /// How many streams are stored.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.lock().contains_key(key)
    }

    /// Keep `stream` in memory while under `budget`, else in the spill file
    /// while it is under [`SPILL_MAX`]; false when there is no room left
    /// (the worker then stops: nothing is inserted after a false).
    fn insert(&self, key: [u8; 32], stream: Vec<u8>, budget: u64) -> bool {
        if self.stored_bytes.load(Ordering::Relaxed) < budget {
            self.stored_bytes
                .fetch_add(stream.len() as u64, Ordering::Relaxed);
            self.lock().insert(key, Stored::Memory(stream.into()));
            return true;
        }
        use std::os::unix::fs::FileExt;
        let Some(spill) = &self.spill else {
            return false;
        };
        let offset = self.spilled_bytes.load(Ordering::Relaxed);
        // A full disk: keep what is there, take nothing more.
        if offset >= SPILL_MAX || spill.write_all_at(&stream, offset).is_err() {
            return false;
        }
        self.spilled_bytes
            .store(offset + stream.len() as u64, Ordering::Relaxed);
        self.lock().insert(
            key,
            Stored::Spilled {
                offset,
                len: stream.len(),
            },
        );
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Stored>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (single insert/get calls): keep using it.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The background thread filling a [`DeflatedAhead`].
pub struct AheadWorker {
    feed: FileFeed,
    ahead: Arc<DeflatedAhead>,
    known: Arc<Mutex<KnownContents>>,
}

impl AheadWorker {
    /// Start the thread; `level` is the destination's `archive.zlib-level`.
    /// Past the memory budget, streams go to an unlinked file in
    /// `spill_dir` (when given), so the thread goes on using the idle core
    /// through the rest of the install and the post-processing.
    pub fn start(level: u32, spill_dir: Option<&Path>) -> Result<AheadWorker> {
        // Only time is at stake: without a spill file the worker stops at
        // the memory budget, as it did before there was one.
        let spill = spill_dir.and_then(|dir| match tempfile::tempfile_in(dir) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "note: no scratch file for deflating ahead in {} ({e}); \
                     the export compresses what does not fit in memory",
                    dir.display()
                );
                None
            }
        });
        let ahead = Arc::new(DeflatedAhead::new(level, spill));
        let known = Arc::new(Mutex::new(KnownContents::default()));
        let budget = memory_budget();
        let feed = {
            let ahead = ahead.clone();
            let known = known.clone();
            let mut buf = Vec::new();
            // nice 10: the thread takes CPU from nobody but the idle core.
            FileFeed::start(
                "deflate-ahead",
                10,
                move |file, _meta, _path| match deflate_one(&ahead, &known, file, &mut buf, budget)
                {
                    true => Next::Continue,
                    false => Next::Stop,
                },
            )?
        };
        Ok(AheadWorker { feed, ahead, known })
    }

    /// The content checksums of the files read so far, for the commit.
    pub fn known(&self) -> Arc<Mutex<KnownContents>> {
        self.known.clone()
    }

    /// Where the installer sends the files it put in place.
    pub fn sink(&self) -> InstalledFilesSink {
        self.feed.sink()
    }

    /// Stop (files still queued are left to the export) and hand over what
    /// was deflated.
    pub fn finish(mut self) -> Arc<DeflatedAhead> {
        self.feed.stop_and_join();
        self.ahead
            .offered
            .store(self.feed.offered(), Ordering::Relaxed);
        self.ahead.clone()
    }
}

/// Deflate one installed file into `ahead`; false when there is no room
/// for more. A file that cannot be read is no error here: the export
/// compresses it (or whatever replaced it) itself.
fn deflate_one(
    ahead: &DeflatedAhead,
    known: &Mutex<KnownContents>,
    file: std::fs::File,
    buf: &mut Vec<u8>,
    budget: u64,
) -> bool {
    let clock = coarse_clock();
    let Ok(before) = file.metadata() else {
        return true;
    };
    if read_candidate(&file, &before, buf).is_err() {
        return true;
    }
    // The object checksum of what was read, as committed with the file's
    // own owner and mode and no xattrs (the commit takes it only for such a
    // file; the export finds the stream by it).
    let checksum = ContentHasher::without_xattrs((before.uid(), before.gid(), before.mode()))
        .map(|mut hasher| {
            hasher.update(buf);
            hasher.finish()
        })
        .ok();
    let unchanged = file
        .metadata()
        .is_ok_and(|after| Stamp::of(&after) == Stamp::of(&before));
    if let Some(checksum) = &checksum {
        if unchanged && (before.ctime(), before.ctime_nsec()) < clock {
            known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(&before, checksum.clone());
        }
    }
    let key: [u8; 32] = Sha256::digest(&buf[..]).into();
    let map_object = |ahead: &DeflatedAhead| {
        if let Some(checksum) = checksum.clone() {
            ahead
                .by_object
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(checksum, key);
        }
    };
    if ahead.contains(&key) {
        map_object(ahead);
        return true;
    }
    let big = buf.len() as u64 > WHOLE_BUFFER_MAX;
    // Made as the export would make it (libdeflate whole, zlib-ng streamed
    // for big files), so the object's bytes never depend on the timing.
    let stream = match big {
        false => deflate_to_vec(buf, ahead.level),
        true => deflate_big_to_vec(buf, ahead.level),
    };
    match stream {
        Ok(stream) => {
            let stored = ahead.insert(key, stream, budget);
            if stored {
                map_object(ahead);
            }
            if stored && big {
                ahead
                    .big_sizes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(buf.len() as u64);
            }
            stored
        }
        // Same: the export compresses it and reports any error.
        Err(_) => true,
    }
}

/// At most this much compressed data is kept in memory (corpus-medium needs
/// 111 MB and fits; corpus-large needs 419 MB and spills the rest). With
/// 256 MiB, large's one-shot peaked at 413 MiB once files up to [`BIG_MAX`]
/// were taken (their buffers come on top).
const BUDGET_MAX: u64 = 128 << 20;

/// At most this much goes to the spill file (a bound on the disk it takes
/// while the compose runs).
const SPILL_MAX: u64 = 2 << 30;

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

/// Read the opened regular `file` into `buf` if it has at most [`BIG_MAX`]
/// bytes.
fn read_candidate(file: &std::fs::File, meta: &std::fs::Metadata, buf: &mut Vec<u8>) -> Result<()> {
    if meta.len() == 0 || meta.len() > BIG_MAX {
        anyhow::bail!("not a candidate");
    }
    if buf.capacity() as u64 > 2 * WHOLE_BUFFER_MAX {
        // A big file's buffer is not kept for the small files to come.
        *buf = Vec::new();
    }
    buf.clear();
    file.take(BIG_MAX + 1).read_to_end(buf)?;
    Ok(())
}

/// Files up to this size are deflated ahead (bigger ones only by the
/// export, streamed; the export reads a file of a size found here whole,
/// so this also bounds that buffer): what the installer reports.
const BIG_MAX: u64 = crate::install::REPORTED_FILE_MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::filez::{write_filez, write_filez_deflated, FileHeader};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

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

    /// The commit gets each file's content checksum (the one libostree's
    /// commit computes for it), trusted until the file changes.
    #[test]
    fn checksums_of_the_files_read_hold_until_they_change() {
        use crate::commit::checksum::regular_file_checksum;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let a = dir.path().join("d/a");
        let b = dir.path().join("d/b");
        std::fs::write(&a, b"alpha\n".repeat(1000)).unwrap();
        std::fs::write(&b, b"bravo").unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o750)).unwrap();
        // Written a tick ago: the thread's clock is past their ctimes.
        for p in [&a, &b] {
            let meta = std::fs::metadata(p).unwrap();
            crate::commit::known::wait_until_clock_past((meta.ctime(), meta.ctime_nsec()));
        }
        let worker = AheadWorker::start(6, None).unwrap();
        let known = worker.known();
        worker
            .sink()
            .send(dir.path(), vec![PathBuf::from("d/a"), PathBuf::from("d/b")]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while known.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ahead = worker.finish();
        let known = known.lock().unwrap();
        for p in [&a, &b] {
            let meta = std::fs::metadata(p).unwrap();
            let expected = regular_file_checksum(
                &mut std::fs::File::open(p).unwrap(),
                (meta.uid(), meta.gid(), meta.mode()),
                &crate::commit::xattrs::xattrs_to_variant(&[]),
            )
            .unwrap();
            assert_eq!(known.checksum_for(&meta), Some(expected.as_str()));
            // The export finds the stream by the object checksum, and the
            // object written from it is the one written from the content.
            let content = std::fs::read(p).unwrap();
            let stream = ahead
                .lookup_object(&expected, 6)
                .expect("found by checksum");
            assert!(ahead.lookup_object(&expected, 9).is_none(), "another level");
            let mut from_stream = Vec::new();
            write_filez_deflated(&header(content.len()), &stream, &mut from_stream).unwrap();
            assert_eq!(from_stream, filez(&content, 6, None));
        }
        assert!(!ahead.has_object(&"0".repeat(64)));
        // Rewritten in place (same size): no longer trusted.
        std::fs::write(&b, b"BRAVO").unwrap();
        assert_eq!(known.checksum_for(&std::fs::metadata(&b).unwrap()), None);
    }

    #[test]
    fn files_deflated_ahead_are_reused_and_give_the_same_object() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let a = dir.path().join("d/a");
        let b = dir.path().join("d/b");
        let content_a = b"the quick brown fox\n".repeat(5000);
        std::fs::write(&a, &content_a).unwrap();
        std::fs::write(&b, b"first version").unwrap();
        let link = dir.path().join("d/link");
        std::os::unix::fs::symlink(&a, &link).unwrap();

        let worker = AheadWorker::start(6, None).unwrap();
        let sink = worker.sink();
        let rel = |p: &Path| p.strip_prefix(dir.path()).unwrap().to_path_buf();
        sink.send(
            dir.path(),
            vec![
                rel(&a),
                rel(&b),
                rel(&link),
                PathBuf::from("d/missing"),
                PathBuf::from("top-level-file"),
                PathBuf::from("no-such-dir/x"),
            ],
        );
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
        assert_eq!(ahead.offered(), 6);
        // A send after finish is ignored, not a panic.
        sink.send(dir.path(), vec![rel(&a)]);

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
        sink.send(dir.path(), vec![rel(&b)]);
    }

    /// A file over the whole-buffer size is deflated ahead the way the
    /// export streams it, and reused only for the same content.
    #[test]
    fn big_files_are_deflated_ahead_as_the_export_streams_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let big: Vec<u8> = (0..(WHOLE_BUFFER_MAX as u32 + 4096))
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 & 0x3f)
            .collect();
        std::fs::write(dir.path().join("d/big"), &big).unwrap();
        let worker = AheadWorker::start(6, Some(dir.path())).unwrap();
        worker.sink().send(dir.path(), vec![PathBuf::from("d/big")]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while worker.ahead.len() < 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ahead = worker.finish();
        assert_eq!(ahead.len(), 1);
        assert!(ahead.has_big_of_size(big.len() as u64));
        assert_eq!(filez(&big, 6, Some(&ahead)), filez(&big, 6, None));
        assert_eq!(ahead.reused(), 1);
        // Same size, other content: compressed by the export, not reused.
        let mut other = big.clone();
        other[0] ^= 1;
        assert_eq!(filez(&other, 6, Some(&ahead)), filez(&other, 6, None));
        assert_eq!(ahead.reused(), 1);
    }

    /// Past the memory budget, streams go to the spill file and are found
    /// there; without a spill file there is no room.
    #[test]
    fn streams_past_the_budget_are_spilled_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempfile_in(dir.path()).unwrap();
        let ahead = DeflatedAhead::new(6, Some(spill));
        let contents: Vec<Vec<u8>> = (0..3u8)
            .map(|i| format!("content {i}\n").repeat(300).into_bytes())
            .collect();
        for (i, c) in contents.iter().enumerate() {
            let key: [u8; 32] = Sha256::digest(c).into();
            // The first in memory (budget 1 byte), the others spilled.
            let stream = deflate_to_vec(c, 6).unwrap();
            assert!(ahead.insert(key, stream, 1), "stream {i}");
        }
        let spilled = ahead
            .lock()
            .values()
            .filter(|s| matches!(s, Stored::Spilled { .. }))
            .count();
        assert_eq!(spilled, 2);
        for c in &contents {
            assert_eq!(filez(c, 6, Some(&ahead)), filez(c, 6, None));
        }
        assert_eq!(ahead.reused(), 3);
        assert!(ahead.stored_bytes() > 0);

        // A spill directory that cannot take a file: no spill, no error.
        let worker = AheadWorker::start(6, Some(&dir.path().join("missing"))).unwrap();
        assert!(worker.ahead.spill.is_none());
        drop(worker);

        let no_spill = DeflatedAhead::new(6, None);
        let key: [u8; 32] = Sha256::digest(&contents[0]).into();
        assert!(no_spill.insert(key, vec![1], 1));
        assert!(!no_spill.insert([0; 32], vec![2], 1));
        assert_eq!(no_spill.len(), 1);
    }

    #[test]
    fn budget_from_meminfo() {
        let m = "MemTotal:       24000000 kB\nMemAvailable:    1048576 kB\n";
        assert_eq!(meminfo_available(m), Some(1 << 30));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
        assert!(memory_budget() <= BUDGET_MAX);
    }
}

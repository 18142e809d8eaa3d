//! Content checksums the commit may take without reading the file.
//!
//! The cached installer ([`crate::install::assemble`]) links files of its
//! package cache into the root and knows each one's OSTree content checksum
//! from the import. The commit takes such a checksum only while the file's
//! inode has exactly the status recorded after the checkout: owner, mode,
//! size, mtime and ctime. Any write, chmod, chown, link or unlink in between
//! changes the ctime, and the file is then read and checksummed as usual.
//!
//! Not for: deciding whether an object is already in the repository (the
//! writer still asks the repository), files with xattrs the commit keeps.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// A file's status as the commit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Checksums by (device, inode), each valid for one [`Stamp`]. Each
/// checksum is the one of the file as committed with its own owner and
/// mode and no xattrs: the writer uses it only for files committed so.
#[derive(Debug, Default)]
pub struct KnownContents {
    by_inode: HashMap<(u64, u64), (String, Stamp)>,
}

impl KnownContents {
    /// Record `checksum` for the file whose current status is `meta`.
    pub fn insert(&mut self, meta: &std::fs::Metadata, checksum: String) {
        self.by_inode
            .insert((meta.dev(), meta.ino()), (checksum, Stamp::of(meta)));
    }

    /// The checksum of the file with this status, if nothing has touched
    /// it since it was recorded.
    pub fn checksum_for(&self, meta: &std::fs::Metadata) -> Option<&str> {
        match self.by_inode.get(&(meta.dev(), meta.ino())) {
            Some((csum, stamp)) if *stamp == Stamp::of(meta) => Some(csum),
            _ => None,
        }
    }

    /// Add `other`'s entries (they describe other inodes, or the same
    /// inode in the same status and so the same content).
    pub fn extend_from(&mut self, other: &KnownContents) {
        for (k, v) in &other.by_inode {
            self.by_inode.insert(*k, v.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }
}

/// Wait until the coarse filesystem clock is past `ctime` (at most a second;
/// one tick is a few milliseconds). A file whose ctime is older than the
/// clock cannot be changed again without its ctime changing.
pub fn wait_until_clock_past(ctime: (i64, i64)) {
    for _ in 0..1000 {
        if clock_is_past(ctime) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether the coarse filesystem clock is already past `ctime`: then a
/// file with that ctime cannot be changed again without its ctime changing.
pub fn clock_is_past(ctime: (i64, i64)) -> bool {
    coarse_clock() > ctime
}

/// The coarse clock file timestamps come from. A file whose status, read
/// after this, has an older ctime cannot change after that read without its
/// ctime changing.
pub fn coarse_clock() -> (i64, i64) {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    (now.tv_sec, now.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_holds_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let mut known = KnownContents::default();
        known.insert(&std::fs::metadata(&path).unwrap(), "c1".into());
        assert_eq!(
            known.checksum_for(&std::fs::metadata(&path).unwrap()),
            Some("c1")
        );
        // Wait for the coarse filesystem clock so the write gets a newer ctime.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        assert_eq!(known.checksum_for(&std::fs::metadata(&path).unwrap()), None);
        // A link (same content) changes the ctime too: checksummed again.
        known.insert(&std::fs::metadata(&path).unwrap(), "c2".into());
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(&path, dir.path().join("g")).unwrap();
        assert_eq!(known.checksum_for(&std::fs::metadata(&path).unwrap()), None);
        // Another file never matches.
        std::fs::write(dir.path().join("h"), b"two").unwrap();
        assert_eq!(
            known.checksum_for(&std::fs::metadata(dir.path().join("h")).unwrap()),
            None
        );
    }
}

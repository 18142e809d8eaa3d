//! The OSTree checksum of a regular file's content object, computed here.
//!
//! Why not `ostree_checksum_file_from_input`: libostree 2022.7 hashes with
//! GLib's GChecksum, a portable SHA-256 that runs at ~250 MB/s, while the
//! `sha2` crate uses the CPU's SHA extensions where present (~1.9 GB/s on the
//! build machines). The input is the same bytes libostree hashes: the file
//! header (GVariant `(uuuusa(ayay))`: uid, gid, mode big-endian, rdev 0, empty
//! symlink target, the xattrs) serialized with a big-endian 32-bit length and
//! 4 NUL bytes of padding in front, followed by the file's content. The tests
//! compare the result with libostree's for files with and without xattrs.
//!
//! Not for: symlinks and metadata objects (libostree computes those).

use std::io::Read;

use anyhow::{Context, Result};
use ostree::glib::{ToVariant, Variant};
use sha2::{Digest, Sha256};

/// Hex SHA-256 content checksum of a regular file with this ownership, mode
/// (including `S_IFREG`) and xattrs (`a(ayay)`, sorted by name), reading
/// `content` to its end.
pub fn regular_file_checksum(
    content: &mut impl Read,
    (uid, gid, mode): (u32, u32, u32),
    xattrs: &Variant,
) -> Result<String> {
    let mut hasher = ContentHasher::new((uid, gid, mode), xattrs)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("Reading file content"),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// The same checksum as [`regular_file_checksum`], fed piece by piece: for a
/// writer that hashes content while writing it (the package cache), so the
/// file is not read back.
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// Start with the file header for this ownership, mode (including
    /// `S_IFREG`) and xattrs (`a(ayay)`, sorted by name).
    pub fn new((uid, gid, mode): (u32, u32, u32), xattrs: &Variant) -> Result<ContentHasher> {
        let header = Variant::tuple_from_iter([
            uid.to_be().to_variant(),
            gid.to_be().to_variant(),
            mode.to_be().to_variant(),
            0u32.to_variant(),
            "".to_variant(),
            xattrs.clone(),
        ]);
        let mut hasher = Sha256::new();
        hasher.update(lenprefixed(&header)?);
        Ok(ContentHasher(hasher))
    }

    /// [`Self::new`] for a file without xattrs.
    pub fn without_xattrs(owner: (u32, u32, u32)) -> Result<ContentHasher> {
        ContentHasher::new(owner, &super::xattrs::xattrs_to_variant(&[]))
    }

    pub fn update(&mut self, content: &[u8]) {
        self.0.update(content);
    }

    /// The hex checksum.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

impl std::io::Write for ContentHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A variant's bytes behind its big-endian u32 length and 4 NUL bytes (so the
/// variant starts 8-aligned): how libostree frames file headers, both in the
/// checksummed stream and in `.filez` objects.
pub(crate) fn lenprefixed(v: &Variant) -> Result<Vec<u8>> {
    let data = v.data();
    let len = u32::try_from(data.len()).context("file header larger than 4 GiB")?;
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostree::gio;

    fn libostree_checksum(content: &[u8], owner: (u32, u32, u32), xattrs: &Variant) -> String {
        let info = gio::FileInfo::new();
        info.set_file_type(gio::FileType::Regular);
        info.set_size(content.len() as i64);
        info.set_attribute_uint32("unix::uid", owner.0);
        info.set_attribute_uint32("unix::gid", owner.1);
        info.set_attribute_uint32("unix::mode", owner.2);
        let input = gio::MemoryInputStream::from_bytes(&ostree::glib::Bytes::from(content));
        ostree::checksum_file_from_input(
            &info,
            Some(xattrs),
            Some(&input),
            ostree::ObjectType::File,
            gio::Cancellable::NONE,
        )
        .unwrap()
        .to_hex()
    }

    #[test]
    fn same_as_libostree() {
        let none = super::super::xattrs::xattrs_to_variant(&[]);
        let some = super::super::xattrs::xattrs_to_variant(&[
            (
                b"security.capability".to_vec(),
                vec![1, 0, 0, 2, 0, 32, 0, 0],
            ),
            (b"user.pax.flags".to_vec(), b"m".to_vec()),
        ]);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        type Case<'a> = (&'a [u8], (u32, u32, u32), &'a Variant);
        let cases: [Case; 5] = [
            (b"", (0, 0, libc::S_IFREG | 0o644), &none),
            (b"hello\n", (0, 0, libc::S_IFREG | 0o755), &none),
            (b"su\n", (0, 0, libc::S_IFREG | 0o4755), &some),
            (b"owned", (900, 901, libc::S_IFREG | 0o640), &some),
            (&big, (1000, 1000, libc::S_IFREG | 0o600), &none),
        ];
        for (content, owner, xattrs) in cases {
            let ours = regular_file_checksum(&mut &content[..], owner, xattrs).unwrap();
            assert_eq!(
                ours,
                libostree_checksum(content, owner, xattrs),
                "{owner:?}"
            );
            // Fed in uneven pieces, the streaming hasher agrees.
            let mut h = ContentHasher::new(owner, xattrs).unwrap();
            for piece in content.chunks(4099) {
                h.update(piece);
            }
            assert_eq!(h.finish(), ours, "{owner:?} in pieces");
            if xattrs == &none {
                let mut h = ContentHasher::without_xattrs(owner).unwrap();
                h.update(content);
                assert_eq!(h.finish(), ours, "{owner:?} without xattrs");
            }
        }
    }
}

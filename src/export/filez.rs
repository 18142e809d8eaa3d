//! The on-disk form of a content object in an `archive` repository
//! (`objects/xx/rest.filez`), written by us so that many can be compressed at
//! once (see [`super::precompress`]).
//!
//! Layout, as libostree 2022.7 writes it (`_ostree_zlib_file_header_new`,
//! `variant_to_lenprefixed_buffer`, `write_content_object`):
//!
//! 1. the length N of the header variant, u32 big-endian;
//! 2. four NUL bytes (so the variant starts 8-aligned);
//! 3. N bytes: the GVariant `(tuuuusa(ayay))` = (content size, uid, gid, mode,
//!    rdev = 0, symlink target or "", xattrs), the numbers big-endian;
//! 4. for a regular file only: its content as one raw deflate stream (no zlib
//!    or gzip wrapper). A symlink has no payload; its size field is 0 (libostree
//!    re-parses the uncompressed object stream, whose payload is empty).
//!
//! libostree uses GLib's zlib converter for step 4. We use libdeflate for files
//! up to [`WHOLE_BUFFER_MAX`] (it compresses a whole buffer at once: on the
//! benchmark tree a third less CPU than zlib-ng at the same level, and 4%
//! smaller) and flate2 on zlib-ng, streaming, for bigger ones; content that is
//! already compressed (gzip, zstd, xz, ...) is stored, see
//! [`effective_level`]. The compressed
//! bytes differ from libostree's while the header and the inflated content are
//! identical (`ostree fsck` inflates and re-checksums). Written by hand because
//! no crate produces this format; the GVariant itself is built by glib.
//!
//! Not for: reading `.filez` objects (libostree does), choosing which objects
//! to write or where (the caller).

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use flate2::write::DeflateEncoder;
use flate2::Compression;
use ostree::glib::{ToVariant, Variant, VariantTy};

use super::ahead::DeflatedAhead;

/// The metadata that goes into a `.filez` header.
#[derive(Debug, Clone)]
pub(crate) struct FileHeader {
    /// Content length of a regular file; 0 for a symlink.
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// `st_mode`, file type bits included.
    pub mode: u32,
    /// The target of a symlink; empty for a regular file.
    pub symlink_target: String,
    /// The extended attributes, an `a(ayay)` (kept in the order given, as libostree does).
    pub xattrs: Option<Variant>,
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl FileHeader {
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// The serialized header: length, padding, variant.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let kind = self.mode & S_IFMT;
        if kind != S_IFREG && kind != S_IFLNK {
            bail!(
                "content object of mode {:o} is neither a regular file nor a symlink",
                self.mode
            );
        }
        let xattrs_ty = VariantTy::new("a(ayay)").context("invalid GVariant type string")?;
        let xattrs = match &self.xattrs {
            Some(x) if x.type_() == xattrs_ty => x.clone(),
            Some(x) => bail!(
                "extended attributes of type {} instead of a(ayay)",
                x.type_()
            ),
            None => {
                Variant::array_from_iter_with_type(VariantTy::new("(ayay)")?, [] as [Variant; 0])
            }
        };
        let v = Variant::tuple_from_iter([
            self.size.to_be().to_variant(),
            self.uid.to_be().to_variant(),
            self.gid.to_be().to_variant(),
            self.mode.to_be().to_variant(),
            0u32.to_variant(),
            self.symlink_target.to_variant(),
            xattrs,
        ]);
        crate::commit::checksum::lenprefixed(&v)
    }
}

/// [`write_filez`] for a regular file whose content was deflated ahead at
/// the level asked for (found by its object checksum, see
/// [`DeflatedAhead::lookup_object`]): the header, then that stream, the same
/// bytes `write_filez` writes. Returns the number of bytes written.
pub(crate) fn write_filez_deflated<W: Write>(
    header: &FileHeader,
    deflated: &[u8],
    out: W,
) -> Result<u64> {
    if header.is_symlink() {
        bail!("a symlink object has no content to deflate");
    }
    write_object(header, out, |out| {
        out.write_all(deflated)
            .context("Writing the compressed content")
    })
}

/// Write a whole `.filez` object to `out`: the header, then (regular files
/// only) `content` deflated at `level`. Fails if `content` does not hold
/// exactly `header.size` bytes. Returns the number of bytes written to `out`.
/// With `ahead`, a file's content deflated earlier at the same level (see
/// [`super::ahead`]) is reused instead of being compressed again: the bytes
/// are the same either way.
pub(crate) fn write_filez<W: Write>(
    header: &FileHeader,
    content: Option<&mut dyn Read>,
    level: u32,
    ahead: Option<&DeflatedAhead>,
    out: W,
) -> Result<u64> {
    write_object(header, out, |out| {
        if header.is_symlink() {
            return Ok(());
        }
        let content = content.context("a regular file object needs its content")?;
        if header.size <= WHOLE_BUFFER_MAX {
            deflate_whole(content, header.size, level, ahead, out)?;
        } else if let Some(ahead) = ahead.filter(|a| a.has_big_of_size(header.size)) {
            // A big file of this size was deflated ahead: read it whole to
            // find out whether it is the same content.
            let mut input = Vec::new();
            read_exactly(content, header.size, &mut input)?;
            match ahead.lookup(&input, level) {
                Some(deflated) => out
                    .write_all(&deflated)
                    .context("Writing the compressed content")?,
                None => deflate_streaming(&mut &input[..], header.size, level, out)?,
            }
        } else {
            deflate_streaming(content, header.size, level, out)?;
        }
        Ok(())
    })
}

/// `header`'s bytes, then what `payload` writes, to `out`, flushed; returns
/// the number of bytes written.
fn write_object<W: Write>(
    header: &FileHeader,
    out: W,
    payload: impl FnOnce(&mut CountingWriter<W>) -> Result<()>,
) -> Result<u64> {
    let header_bytes = header.to_bytes()?;
    let mut out = CountingWriter {
        inner: out,
        count: 0,
    };
    out.write_all(&header_bytes)
        .context("Writing the file header")?;
    payload(&mut out)?;
    out.flush().context("Flushing the object")?;
    Ok(out.count)
}

/// `content` (exactly `size` bytes) as one raw deflate stream by zlib-ng
/// at `level`: the way files over [`WHOLE_BUFFER_MAX`] are compressed.
fn deflate_streaming(
    content: &mut dyn Read,
    size: u64,
    level: u32,
    out: &mut dyn Write,
) -> Result<()> {
    let mut prefix = [0u8; MAGIC_MAX];
    let mut got = 0;
    while got < prefix.len() {
        match content.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("Reading the file content"),
        }
    }
    let level = effective_level(&prefix[..got], level);
    let mut enc = DeflateEncoder::new(out, Compression::new(level));
    enc.write_all(&prefix[..got])
        .context("Compressing the file content")?;
    let n = got as u64 + copy(content, &mut enc)?;
    if n != size {
        bail!("the file content has {n} bytes, its metadata says {size}");
    }
    enc.finish().context("Finishing the deflate stream")?;
    Ok(())
}

/// A big file's content (over [`WHOLE_BUFFER_MAX`]) as the deflate stream
/// [`write_filez`] writes for it.
pub(crate) fn deflate_big_to_vec(input: &[u8], level: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    deflate_streaming(&mut &input[..], input.len() as u64, level, &mut out)?;
    Ok(out)
}

/// Read all of `content` into `buf` (cleared first), failing unless it is
/// exactly `size` bytes (the size the object's header says).
fn read_exactly(content: &mut dyn Read, size: u64, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let n = content
        .take(size + 1)
        .read_to_end(buf)
        .context("Reading the file content")?;
    if n as u64 != size {
        bail!("the file content has {n} or more bytes, its metadata says {size}");
    }
    Ok(())
}

/// How content starting with `prefix` is deflated when `level` is asked for:
/// at level 0 (stored blocks) when it is already compressed (gzip, zstd, xz,
/// bzip2, lz4: man pages, changelogs, a zstd initramfs), at `level`
/// otherwise. Deflate cannot shrink such data, and trying costs the most CPU
/// per byte of anything exported (corpus-large: 66 MB of it, the 39 MB
/// initramfs through zlib-ng's level 6); stored, the object has the same
/// size. Pure; the ahead thread and the export both go through it, so an
/// object's bytes never depend on which of them compressed it.
pub(crate) fn effective_level(prefix: &[u8], level: u32) -> u32 {
    const MAGICS: &[&[u8]] = &[
        b"\x1f\x8b",         // gzip
        b"\x28\xb5\x2f\xfd", // zstd
        b"\xfd7zXZ\x00",     // xz
        b"\x04\x22\x4d\x18", // lz4 frame
    ];
    // bzip2: "BZh", the block size digit, then the first block's magic.
    let bzip2 = prefix.len() >= 10
        && prefix.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&prefix[3])
        && &prefix[4..10] == b"1AY&SY";
    if bzip2 || MAGICS.iter().any(|m| prefix.starts_with(m)) {
        0
    } else {
        level
    }
}

/// The longest prefix [`effective_level`] looks at.
const MAGIC_MAX: usize = 10;

/// Files up to this size are read whole and compressed by libdeflate (two
/// buffers of this size per compressing thread at most).
pub(crate) const WHOLE_BUFFER_MAX: u64 = 16 << 20;

/// Read exactly `size` bytes of `content` and write them as one raw deflate
/// stream at zlib-style `level` (libdeflate accepts 0-12; 0-9 mean what they
/// mean in zlib), or the stream `ahead` holds for that content and level.
fn deflate_whole(
    content: &mut dyn Read,
    size: u64,
    level: u32,
    ahead: Option<&DeflatedAhead>,
    out: &mut dyn Write,
) -> Result<()> {
    WHOLE.with(|cell| -> Result<()> {
        let mut guard = cell.borrow_mut();
        let state = &mut *guard;
        // The buffers are kept between objects: fresh ones for every file
        // cost a page fault per page (large allocations are fresh mappings).
        read_exactly(content, size, &mut state.input)?;
        if let Some(deflated) = ahead.and_then(|a| a.lookup(&state.input, level)) {
            return out
                .write_all(&deflated)
                .context("Writing the compressed content");
        }
        let written = compress(
            &mut state.compressor,
            &state.input,
            &mut state.output,
            level,
        )?;
        out.write_all(&state.output[..written])
            .context("Writing the compressed content")
    })
}

/// `input` as one raw deflate stream at `level`, exactly as [`write_filez`]
/// writes it (same compressor and settings, so the same bytes).
pub(crate) fn deflate_to_vec(input: &[u8], level: u32) -> Result<Vec<u8>> {
    WHOLE.with(|cell| -> Result<Vec<u8>> {
        let mut guard = cell.borrow_mut();
        let state = &mut *guard;
        let written = compress(&mut state.compressor, input, &mut state.output, level)?;
        Ok(state.output[..written].to_vec())
    })
}

/// Compress `input` into `output` (grown as needed) with the thread's
/// libdeflate compressor for `level`; returns the compressed length.
fn compress(
    slot: &mut Option<(u32, libdeflater::Compressor)>,
    input: &[u8],
    output: &mut Vec<u8>,
    level: u32,
) -> Result<usize> {
    let level = effective_level(input, level).min(12);
    if slot.as_ref().map(|(l, _)| *l) != Some(level) {
        let lvl = libdeflater::CompressionLvl::new(level as i32)
            .map_err(|e| anyhow::anyhow!("compression level {level}: {e:?}"))?;
        *slot = Some((level, libdeflater::Compressor::new(lvl)));
    }
    let Some((_, compressor)) = slot.as_mut() else {
        bail!("internal error: no compressor");
    };
    let bound = compressor.deflate_compress_bound(input.len());
    if output.len() < bound {
        output.resize(bound, 0);
    }
    compressor
        .deflate_compress(input, &mut output[..bound])
        .map_err(|e| anyhow::anyhow!("libdeflate: {e:?}"))
}

/// A thread's libdeflate compressor (for one level) and its buffers.
#[derive(Default)]
struct WholeBufferState {
    compressor: Option<(u32, libdeflater::Compressor)>,
    input: Vec<u8>,
    output: Vec<u8>,
}

thread_local! {
    static WHOLE: std::cell::RefCell<WholeBufferState> = std::cell::RefCell::default();
}

/// `std::io::copy` with a larger buffer: fewer reads from GIO streams.
fn copy(from: &mut dyn Read, to: &mut dyn Write) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("Reading the file content"),
        };
        to.write_all(&buf[..got])
            .context("Compressing the file content")?;
        n += got as u64;
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;

    fn xattrs(pairs: &[(&[u8], &[u8])]) -> Variant {
        let children: Vec<Variant> = pairs
            .iter()
            .map(|(k, v)| {
                Variant::tuple_from_iter([
                    Variant::array_from_fixed_array(k),
                    Variant::array_from_fixed_array(v),
                ])
            })
            .collect();
        Variant::array_from_iter_with_type(VariantTy::new("(ayay)").unwrap(), children)
    }

    /// The header of a regular file of `size` bytes, root's, mode 0644.
    fn plain_file(size: u64) -> FileHeader {
        FileHeader {
            size,
            uid: 0,
            gid: 0,
            mode: 0o100644,
            symlink_target: String::new(),
            xattrs: None,
        }
    }

    #[test]
    fn header_layout_matches_the_format() {
        let h = plain_file(5);
        let b = h.to_bytes().unwrap();
        let n = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(b.len(), 8 + n);
        // t (8) + 4 u (16) + "" + NUL (1) + empty array (0) + 1 framing offset
        assert_eq!(n, 26);
        assert_eq!(&b[8..16], &5u64.to_be_bytes());
        assert_eq!(&b[20..24], &0u32.to_be_bytes()); // gid
        assert_eq!(&b[24..28], &0o100644u32.to_be_bytes());
        let v = Variant::from_data_with_type(&b[8..], VariantTy::new("(tuuuusa(ayay))").unwrap());
        assert!(v.is_normal_form());
        assert_eq!(v.child_value(5).str(), Some(""));
    }

    #[test]
    fn regular_file_roundtrips_and_symlink_has_no_payload() {
        let content = b"hello world\n".repeat(1000);
        let h = FileHeader {
            size: content.len() as u64,
            uid: 1000,
            gid: 1000,
            mode: 0o104755,
            symlink_target: String::new(),
            xattrs: Some(xattrs(&[(b"security.capability\0", b"\x01\x02")])),
        };
        let mut out = Vec::new();
        let n = write_filez(&h, Some(&mut &content[..]), 6, None, &mut out).unwrap();
        assert_eq!(n as usize, out.len());
        let hb = h.to_bytes().unwrap();
        assert_eq!(&out[..hb.len()], &hb[..]);
        let mut inflated = Vec::new();
        DeflateDecoder::new(&out[hb.len()..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, content);

        let link = FileHeader {
            size: 0,
            uid: 0,
            gid: 0,
            mode: 0o120777,
            symlink_target: "../lib/x".into(),
            xattrs: None,
        };
        let mut out = Vec::new();
        write_filez(&link, None, 6, None, &mut out).unwrap();
        assert_eq!(out, link.to_bytes().unwrap());
    }

    #[test]
    fn compressed_formats_are_stored_and_others_compressed() {
        for (prefix, stored) in [
            (&b"\x1f\x8b\x08\x00"[..], true),
            (b"\x28\xb5\x2f\xfd\x00", true),
            (b"\xfd7zXZ\x00\x00", true),
            (b"\x04\x22\x4d\x18", true),
            (b"BZh91AY&SY", true),
            (b"BZh is just text", false),
            (b"\x7fELF\x02\x01", false),
            (b"\x1f", false),
            (b"", false),
        ] {
            assert_eq!(effective_level(prefix, 6) == 0, stored, "{prefix:?}");
        }
        assert_eq!(effective_level(b"plain", 9), 9);

        // A "gzip" file of repetitive bytes: stored, so it does not shrink,
        // and it inflates back; the same bytes whole (libdeflate) and
        // streamed (zlib-ng, for big files) as the export writes them, and
        // as deflated ahead.
        let mut content = b"\x1f\x8b".to_vec();
        content.extend(b"abc".repeat(50_000));
        let h = plain_file(content.len() as u64);
        let mut out = Vec::new();
        write_filez(&h, Some(&mut &content[..]), 6, None, &mut out).unwrap();
        let payload = &out[h.to_bytes().unwrap().len()..];
        assert!(payload.len() > content.len(), "{} bytes", payload.len());
        let mut inflated = Vec::new();
        DeflateDecoder::new(payload)
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, content);
        assert_eq!(deflate_to_vec(&content, 6).unwrap(), payload);
        let streamed = deflate_big_to_vec(&content, 6).unwrap();
        assert!(streamed.len() > content.len());
        let mut inflated = Vec::new();
        DeflateDecoder::new(&streamed[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, content);
        // Without the magic the same bytes compress.
        let plain = &content[2..];
        assert!(deflate_to_vec(plain, 6).unwrap().len() < plain.len() / 10);
        assert!(deflate_big_to_vec(plain, 6).unwrap().len() < plain.len() / 10);
    }

    #[test]
    fn size_mismatch_and_bad_mode_are_errors() {
        let h = plain_file(3);
        assert!(write_filez(&h, Some(&mut &b"four"[..]), 6, None, Vec::new()).is_err());
        let dir = FileHeader {
            mode: 0o040755,
            ..h
        };
        assert!(dir.to_bytes().is_err());
    }
}

//! Stream the payload (the cpio archive of files) out of an `.rpm` file.
//!
//! Why hand-written rather than the `rpm` crate: that crate reads a whole
//! package into memory, and packages can be hundreds of MB; here the payload
//! is decompressed as it is read and each file's content is copied straight to
//! its destination. Only three things of the main header are needed: the
//! payload compressor, format and digest.
//!
//! Layout of an `.rpm` (v3/v4): a 96-byte lead; the signature header; padding
//! to 8 bytes; the main header; the compressed payload up to the end of the
//! file. Both headers are an 16-byte intro (magic `8e ad e8 01`, 4 reserved
//! bytes, the index entry count and the data store size, big-endian), the
//! index entries (16 bytes: tag, type, offset, count) and the data store.
//! Every count and offset is checked against the file's size and the data
//! store's bounds, so a corrupt file is an error naming it, never a panic or
//! a huge allocation.
//!
//! The payload digest (`PAYLOADDIGEST`, SHA-256 of the compressed bytes) is
//! computed on the bytes as they are read from the file and compared by
//! [`PayloadReader::finish`]: content handed out before then is unverified, so
//! a caller must not trust what it wrote until `finish` returned `Ok`.
//!
//! Not for: signatures and header digests (not checked), file metadata held
//! only in the header (owners, capabilities, config flags: read those from
//! the rpmdb or `rpm -q`), writing RPMs.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

const LEAD_SIZE: u64 = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm's own limits for one header (`hdrchkTags`, `hdrchkData`).
const MAX_INDEX_ENTRIES: u32 = 0xffff;
const MAX_DATA_SIZE: u32 = 0x0fff_ffff;

const TAG_PAYLOADFORMAT: u32 = 1124;
const TAG_PAYLOADCOMPRESSOR: u32 = 1125;
const TAG_PAYLOADDIGEST: u32 = 5092;
const TAG_PAYLOADDIGESTALGO: u32 = 5093;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
/// OpenPGP hash algorithm id of SHA-256, as rpm stores it.
const DIGEST_ALGO_SHA256: u32 = 8;

/// A cpio name longer than this is corrupt (PATH_MAX plus "./").
const MAX_NAME: u32 = 4096 + 2;
/// Memory the xz/lzma decoder may use: a corrupt header must not make it
/// allocate gigabytes (`xz -9` needs 65 MiB; zstd's decoder has its own
/// 128 MiB window limit).
const MAX_DECODER_MEMORY: u64 = 512 << 20;
/// Decompressed bytes tolerated after the cpio trailer (its padding).
const MAX_TRAILING: u64 = 1 << 20;

/// One file of the payload, as its cpio header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadEntry {
    /// Absolute path, `/usr/bin/bash` (the cpio name is `./usr/bin/bash`).
    /// Never has empty, `.` or `..` components.
    pub path: String,
    /// `st_mode`, including the file type bits.
    pub mode: u32,
    /// Size of the content that follows in the archive: the target's length for
    /// a symlink, and 0 for all but the last entry of a hardlink set.
    pub size: u64,
    /// Inode number, unique within the payload; entries of a hardlink set share it.
    pub ino: u32,
    pub nlink: u32,
    pub mtime: u32,
}

impl PayloadEntry {
    /// The `S_IFMT` bits of [`Self::mode`].
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// Reads the file bytes after the main header, hashing them when the package
/// carries a payload digest.
struct HashingFile {
    file: File,
    hasher: Option<Sha256>,
}

impl Read for HashingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The decompressors, kept as concrete types so [`PayloadReader::finish`] can
/// take the file back out and hash whatever the decompressor did not read.
enum Decompressor {
    Zstd(zstd::stream::read::Decoder<'static, BufReader<HashingFile>>),
    Gzip(flate2::read::GzDecoder<HashingFile>),
    Xz(xz2::read::XzDecoder<HashingFile>),
}

impl Read for Decompressor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decompressor::Zstd(d) => d.read(buf),
            Decompressor::Gzip(d) => d.read(buf),
            Decompressor::Xz(d) => d.read(buf),
        }
    }
}

impl Decompressor {
    fn into_inner(self) -> HashingFile {
        match self {
            Decompressor::Zstd(d) => d.finish().into_inner(),
            Decompressor::Gzip(d) => d.into_inner(),
            Decompressor::Xz(d) => d.into_inner(),
        }
    }
}

/// What the main header says about the payload.
#[derive(Debug, Default)]
struct PayloadInfo {
    compressor: Option<String>,
    format: Option<String>,
    digest: Option<String>,
    digest_algo: Option<u32>,
}

/// A streaming reader of an RPM's payload: [`Self::next_entry`] until `None`,
/// [`Self::read_content`] for the entries whose content is wanted, then
/// [`Self::finish`] to verify the payload digest.
pub struct PayloadReader {
    path: PathBuf,
    input: BufReader<Decompressor>,
    /// Offset in the decompressed cpio stream (for the 4-byte alignment).
    pos: u64,
    /// Content bytes of the current entry not read yet.
    remaining: u64,
    /// Padding after the current entry's content.
    pad: u64,
    /// Expected payload digest (lowercase hex), when the package has one.
    digest: Option<String>,
    done: bool,
}

impl PayloadReader {
    /// Open `rpm`, parse its headers and position at the first cpio entry.
    pub fn open(rpm: &Path) -> Result<PayloadReader> {
        let ctx = || format!("Reading RPM payload of {}", rpm.display());
        let (file, info) = open_headers(rpm).with_context(ctx)?;
        if let Some(f) = &info.format {
            if f != "cpio" {
                return Err(anyhow::anyhow!("unsupported payload format {f:?}")).with_context(ctx);
            }
        }
        let hasher = match (&info.digest, info.digest_algo) {
            (None, _) => None,
            (Some(_), Some(DIGEST_ALGO_SHA256)) => Some(Sha256::new()),
            (Some(_), algo) => {
                return Err(anyhow::anyhow!(
                    "unsupported payload digest algorithm {algo:?} (only 8, SHA-256)"
                ))
                .with_context(ctx)
            }
        };
        let raw = HashingFile { file, hasher };
        let decomp = match info.compressor.as_deref().unwrap_or("gzip") {
            "zstd" => Decompressor::Zstd(
                zstd::stream::read::Decoder::new(raw)
                    .context("Starting the zstd decoder")
                    .with_context(ctx)?,
            ),
            "gzip" => Decompressor::Gzip(flate2::read::GzDecoder::new(raw)),
            "xz" | "lzma" => {
                let stream = if info.compressor.as_deref() == Some("xz") {
                    xz2::stream::Stream::new_stream_decoder(
                        MAX_DECODER_MEMORY,
                        xz2::stream::CONCATENATED,
                    )
                } else {
                    xz2::stream::Stream::new_lzma_decoder(MAX_DECODER_MEMORY)
                };
                let stream = stream
                    .context("Starting the xz/lzma decoder")
                    .with_context(ctx)?;
                Decompressor::Xz(xz2::read::XzDecoder::new_stream(raw, stream))
            }
            other => {
                return Err(anyhow::anyhow!("unsupported payload compressor {other:?}"))
                    .with_context(ctx)
            }
        };
        Ok(PayloadReader {
            path: rpm.to_path_buf(),
            input: BufReader::with_capacity(256 * 1024, decomp),
            pos: 0,
            remaining: 0,
            pad: 0,
            digest: info.digest.map(|d| d.to_ascii_lowercase()),
            done: false,
        })
    }

    /// The `.rpm` this reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next cpio entry, or `None` after the last one. Its content is then
    /// read with [`Self::read_content`]; unread content is skipped here.
    pub fn next_entry(&mut self) -> Result<Option<PayloadEntry>> {
        if self.done {
            return Ok(None);
        }
        self.next_entry_inner()
            .with_context(|| format!("Reading RPM payload of {}", self.path.display()))
    }

    fn next_entry_inner(&mut self) -> Result<Option<PayloadEntry>> {
        let skip = self.remaining + self.pad;
        self.skip(skip)?;
        self.remaining = 0;
        self.pad = 0;

        let mut hdr = [0u8; 110];
        self.read_exact_counted(&mut hdr)
            .context("cpio entry header")?;
        let magic = &hdr[..6];
        if magic != b"070701" {
            if magic == b"07070X" {
                bail!("unsupported cpio format (rpm's stripped cpio \"07070X\", used for files over 4 GiB)");
            }
            bail!(
                "unsupported or corrupt cpio entry at payload offset {}: magic {:?}",
                self.pos - 110,
                String::from_utf8_lossy(magic)
            );
        }
        let field = |i: usize| -> Result<u32> {
            let s = &hdr[6 + 8 * i..6 + 8 * (i + 1)];
            let s = std::str::from_utf8(s)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
            s.and_then(|s| u32::from_str_radix(s, 16).ok())
                .with_context(|| {
                    format!(
                        "corrupt cpio header field {:?}",
                        String::from_utf8_lossy(&hdr[6 + 8 * i..6 + 8 * (i + 1)])
                    )
                })
        };
        let ino = field(0)?;
        let mode = field(1)?;
        let nlink = field(4)?;
        let mtime = field(5)?;
        let size = u64::from(field(6)?);
        let namesize = field(11)?;
        if !(2..=MAX_NAME).contains(&namesize) {
            bail!("corrupt cpio entry: name size {namesize}");
        }
        let mut name = vec![0u8; namesize as usize];
        self.read_exact_counted(&mut name)
            .context("cpio entry name")?;
        let hpad = pad4(self.pos);
        self.skip(hpad)?;
        if name.pop() != Some(0) || name.contains(&0) {
            bail!(
                "corrupt cpio entry name {:?}",
                String::from_utf8_lossy(&name)
            );
        }
        let name = String::from_utf8(name).map_err(|e| {
            anyhow::anyhow!(
                "cpio entry name is not UTF-8: {:?}",
                String::from_utf8_lossy(e.as_bytes())
            )
        })?;
        if name == "TRAILER!!!" {
            self.done = true;
            return Ok(None);
        }
        let path = normalize(&name)?;
        self.remaining = size;
        self.pad = pad4(self.pos + size);
        Ok(Some(PayloadEntry {
            path,
            mode,
            size,
            ino,
            nlink,
            mtime,
        }))
    }

    /// Copy the current entry's (remaining) content to `out`; returns the
    /// number of bytes copied.
    pub fn read_content(&mut self, out: &mut impl Write) -> Result<u64> {
        let mut copied = 0u64;
        while self.remaining > 0 {
            let buf = self
                .input
                .fill_buf()
                .with_context(|| format!("Reading RPM payload of {}", self.path.display()))?;
            if buf.is_empty() {
                bail!(
                    "Reading RPM payload of {}: truncated (file content ends early)",
                    self.path.display()
                );
            }
            let n = buf
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            out.write_all(&buf[..n])?;
            self.input.consume(n);
            self.pos += n as u64;
            self.remaining -= n as u64;
            copied += n as u64;
        }
        Ok(copied)
    }

    /// After the last entry: read what follows the trailer to the end of the
    /// file (so the decompressor checks its own checksums) and compare the
    /// payload digest when the package has one.
    pub fn finish(self) -> Result<()> {
        let path = self.path.clone();
        self.finish_inner()
            .with_context(|| format!("Reading RPM payload of {}", path.display()))
    }

    fn finish_inner(self) -> Result<()> {
        if !self.done {
            bail!("payload not read to its end (no cpio trailer yet)");
        }
        let PayloadReader {
            mut input, digest, ..
        } = self;
        // Trailing cpio padding: small; more would be a corrupt stream.
        let trailing = std::io::copy(
            &mut (&mut input).take(MAX_TRAILING + 1),
            &mut std::io::sink(),
        )
        .context("reading the end of the payload")?;
        if trailing > MAX_TRAILING {
            bail!("corrupt payload: more than {MAX_TRAILING} bytes after the cpio trailer");
        }
        // What the decompressor left unread is part of the digested bytes too.
        let mut raw = input.into_inner().into_inner();
        std::io::copy(&mut raw, &mut std::io::sink()).context("reading the end of the file")?;
        if let (Some(want), Some(h)) = (digest, raw.hasher.take()) {
            let got = hex::encode(h.finalize());
            if got != want {
                bail!("payload digest mismatch: header says {want}, payload has {got}");
            }
        }
        Ok(())
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                anyhow::anyhow!("truncated payload")
            } else {
                anyhow::Error::new(e)
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let skipped = std::io::copy(&mut (&mut self.input).take(n), &mut std::io::sink())?;
        self.pos += skipped;
        if skipped != n {
            bail!("truncated payload");
        }
        Ok(())
    }
}

fn pad4(pos: u64) -> u64 {
    (4 - pos % 4) % 4
}

/// `./usr/bin/bash` → `/usr/bin/bash`, `./` (rpm's name for `/`, which
/// Fedora's `filesystem` owns) → `/`; rejects names that could leave the
/// extraction root or are ambiguous (`..`, `.`, empty components).
fn normalize(name: &str) -> Result<String> {
    if name == "./" || name == "." {
        return Ok("/".to_string());
    }
    let rel = name
        .strip_prefix("./")
        .or_else(|| name.strip_prefix('/'))
        .unwrap_or(name);
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("unsafe or malformed path in payload: {name:?}");
    }
    Ok(format!("/{rel}"))
}

/// Open the file, check the lead, skip the signature header, parse the main
/// header; the returned file is positioned at the payload's first byte.
fn open_headers(rpm: &Path) -> Result<(File, PayloadInfo)> {
    let mut file = File::open(rpm).context("opening")?;
    let file_len = file.metadata().context("stat")?.len();
    let mut lead = [0u8; LEAD_SIZE as usize];
    file.read_exact(&mut lead)
        .context("not an RPM: too short for the lead")?;
    if lead[..4] != LEAD_MAGIC {
        bail!("not an RPM (bad lead magic)");
    }
    let mut pos = LEAD_SIZE;
    // Signature header: skipped, then padded to 8 bytes.
    let (il, dl) = read_intro(&mut file, file_len, pos, "signature")?;
    let sig_len = u64::from(il) * 16 + u64::from(dl);
    let sig_pad = (8 - sig_len % 8) % 8;
    pos += 16 + sig_len + sig_pad;
    if pos > file_len {
        bail!("truncated: signature header runs past the end of the file");
    }
    std::io::copy(
        &mut (&mut file).take(sig_len + sig_pad),
        &mut std::io::sink(),
    )
    .context("reading the signature header")?;
    // Main header.
    let (il, dl) = read_intro(&mut file, file_len, pos, "main")?;
    let index_len = il as usize * 16;
    let mut blob = vec![0u8; index_len + dl as usize];
    file.read_exact(&mut blob)
        .context("truncated main header")?;
    let (index, data) = blob.split_at(index_len);
    let info = parse_index(index, data)?;
    Ok((file, info))
}

/// Read and check a header intro at `pos`: magic, entry count and data size
/// within rpm's limits and within the file.
fn read_intro(file: &mut File, file_len: u64, pos: u64, which: &str) -> Result<(u32, u32)> {
    let mut intro = [0u8; 16];
    file.read_exact(&mut intro)
        .with_context(|| format!("truncated {which} header"))?;
    if intro[..4] != HEADER_MAGIC {
        bail!("corrupt {which} header (bad magic)");
    }
    let il = u32::from_be_bytes(intro[8..12].try_into().expect("4 bytes"));
    let dl = u32::from_be_bytes(intro[12..16].try_into().expect("4 bytes"));
    if il == 0 || il > MAX_INDEX_ENTRIES || dl > MAX_DATA_SIZE {
        bail!("corrupt {which} header: {il} entries, {dl} bytes of data");
    }
    if pos + 16 + u64::from(il) * 16 + u64::from(dl) > file_len {
        bail!("truncated: {which} header runs past the end of the file");
    }
    Ok((il, dl))
}

fn parse_index(index: &[u8], data: &[u8]) -> Result<PayloadInfo> {
    let mut info = PayloadInfo::default();
    for e in index.chunks_exact(16) {
        let word = |i: usize| u32::from_be_bytes(e[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let (tag, ty, offset, count) = (word(0), word(1), word(2) as usize, word(3));
        let string = || -> Result<String> {
            if ty != TYPE_STRING && ty != TYPE_STRING_ARRAY {
                bail!("corrupt main header: tag {tag} has type {ty}, not a string");
            }
            let rest = data.get(offset..).with_context(|| {
                format!("corrupt main header: tag {tag} offset {offset} out of bounds")
            })?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .with_context(|| format!("corrupt main header: tag {tag} string not terminated"))?;
            String::from_utf8(rest[..end].to_vec())
                .with_context(|| format!("corrupt main header: tag {tag} is not UTF-8"))
        };
        match tag {
            TAG_PAYLOADFORMAT => info.format = Some(string()?),
            TAG_PAYLOADCOMPRESSOR => info.compressor = Some(string()?),
            // A string array; rpm stores one digest.
            TAG_PAYLOADDIGEST => {
                if count == 0 {
                    bail!("corrupt main header: empty payload digest");
                }
                info.digest = Some(string()?)
            }
            TAG_PAYLOADDIGESTALGO => {
                if ty != TYPE_INT32 || count == 0 {
                    bail!("corrupt main header: payload digest algorithm of type {ty}");
                }
                let b = data
                    .get(offset..offset.saturating_add(4))
                    .context("corrupt main header: payload digest algorithm out of bounds")?;
                info.digest_algo = Some(u32::from_be_bytes(b.try_into().expect("4 bytes")));
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Hand-made packages for the tests of this module and of the package cache.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A minimal header blob: intro-less index + data store.
    pub fn header(entries: &[(u32, u32, u32, u32)], data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut index = Vec::new();
        for (tag, ty, off, count) in entries {
            for w in [tag, ty, off, count] {
                index.extend_from_slice(&w.to_be_bytes());
            }
        }
        (index, data.to_vec())
    }

    /// A newc cpio entry with inode 1 and one link.
    pub fn cpio_entry(out: &mut Vec<u8>, magic: &str, name: &str, mode: u32, content: &[u8]) {
        cpio_entry_full(out, magic, name, mode, (1, 1), content)
    }

    /// A newc cpio entry with this (inode, nlink).
    pub fn cpio_entry_full(
        out: &mut Vec<u8>,
        magic: &str,
        name: &str,
        mode: u32,
        (ino, nlink): (u32, u32),
        content: &[u8],
    ) {
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            content.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(magic.as_bytes());
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(content);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }

    /// A hand-made RPM: lead, a one-entry signature header, a main header
    /// naming `compressor` (none = absent, i.e. gzip), then `payload`.
    pub fn fake_rpm(compressor: Option<&str>, payload: &[u8]) -> tempfile::NamedTempFile {
        let mut f = vec![0u8; 96];
        f[..4].copy_from_slice(&LEAD_MAGIC);
        let mut hdr = |entries: &[(u32, u32, u32, u32)], data: &[u8], pad: bool| {
            f.extend_from_slice(&HEADER_MAGIC);
            f.extend_from_slice(&[0; 4]);
            f.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            f.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let (i, d) = header(entries, data);
            f.extend_from_slice(&i);
            f.extend_from_slice(&d);
            if pad {
                while f.len() % 8 != 0 {
                    f.push(0);
                }
            }
        };
        hdr(&[(1000, 7, 0, 3)], b"abc", true);
        match compressor {
            Some(c) => hdr(
                &[(TAG_PAYLOADCOMPRESSOR, TYPE_STRING, 0, 1)],
                format!("{c}\0").as_bytes(),
                false,
            ),
            None => hdr(&[(1000, TYPE_STRING, 0, 1)], b"x\0", false),
        }
        f.extend_from_slice(payload);
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(&f).unwrap();
        t
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("./usr/bin/bash").unwrap(), "/usr/bin/bash");
        assert_eq!(normalize("/etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(normalize("./").unwrap(), "/");
        for bad in [
            "", "/", "./a/../b", "./a//b", "../x", "./a/./b", "./a/", ".//",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn index_parsing_bounds() {
        let (i, d) = header(
            &[
                (TAG_PAYLOADCOMPRESSOR, TYPE_STRING, 0, 1),
                (TAG_PAYLOADDIGESTALGO, TYPE_INT32, 8, 1),
            ],
            b"zstd\0\0\0\0\0\0\0\x08",
        );
        let info = parse_index(&i, &d).unwrap();
        assert_eq!(info.compressor.as_deref(), Some("zstd"));
        assert_eq!(info.digest_algo, Some(8));
        // Offset past the data store, unterminated string, int past the end.
        for (e, d) in [
            ((TAG_PAYLOADCOMPRESSOR, TYPE_STRING, 100, 1), &b"zstd\0"[..]),
            ((TAG_PAYLOADCOMPRESSOR, TYPE_STRING, 0, 1), &b"zstd"[..]),
            (
                (TAG_PAYLOADDIGESTALGO, TYPE_INT32, 2, 1),
                &b"\0\0\0\x08"[..],
            ),
            (
                (TAG_PAYLOADDIGESTALGO, TYPE_INT32, u32::MAX, 1),
                &b"\0\0\0\x08"[..],
            ),
            ((TAG_PAYLOADFORMAT, TYPE_INT32, 0, 1), &b"cpio\0"[..]),
        ] {
            let (i, d) = header(&[e], d);
            assert!(parse_index(&i, &d).is_err(), "{e:?}");
        }
    }

    #[test]
    fn hand_made_gzip_payload_without_digest() {
        let mut cpio = Vec::new();
        cpio_entry(&mut cpio, "070701", "./etc", libc::S_IFDIR | 0o755, b"");
        cpio_entry(
            &mut cpio,
            "070701",
            "./etc/hello",
            libc::S_IFREG | 0o644,
            b"hello\n",
        );
        cpio_entry(&mut cpio, "070701", "TRAILER!!!", 0, b"");
        let rpm = fake_rpm(None, &gzip(&cpio));
        let mut r = PayloadReader::open(rpm.path()).unwrap();
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.path.as_str(), e.mode), ("/etc", libc::S_IFDIR | 0o755));
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.path.as_str(), e.size), ("/etc/hello", 6));
        let mut out = Vec::new();
        assert_eq!(r.read_content(&mut out).unwrap(), 6);
        assert_eq!(out, b"hello\n");
        assert!(r.next_entry().unwrap().is_none());
        r.finish().unwrap();
    }

    #[test]
    fn stripped_cpio_and_bad_magic_are_unsupported() {
        for (magic, want) in [
            ("07070X", "unsupported cpio format"),
            ("070707", "unsupported or corrupt"),
        ] {
            let mut cpio = Vec::new();
            cpio_entry(&mut cpio, magic, "./big", libc::S_IFREG | 0o644, b"");
            let rpm = fake_rpm(Some("gzip"), &gzip(&cpio));
            let mut r = PayloadReader::open(rpm.path()).unwrap();
            let err = format!("{:#}", r.next_entry().unwrap_err());
            assert!(err.contains(want), "{err}");
            assert!(err.contains(&rpm.path().display().to_string()), "{err}");
        }
    }

    #[test]
    fn unsafe_names_and_bzip2_are_errors() {
        let mut cpio = Vec::new();
        cpio_entry(
            &mut cpio,
            "070701",
            "./a/../../etc/x",
            libc::S_IFREG | 0o644,
            b"",
        );
        let rpm = fake_rpm(Some("gzip"), &gzip(&cpio));
        let mut r = PayloadReader::open(rpm.path()).unwrap();
        assert!(format!("{:#}", r.next_entry().unwrap_err()).contains("unsafe"));

        let rpm = fake_rpm(Some("bzip2"), b"BZh9");
        let err = format!("{:#}", PayloadReader::open(rpm.path()).err().unwrap());
        assert!(
            err.contains("unsupported payload compressor \"bzip2\""),
            "{err}"
        );
    }

    #[test]
    fn finish_before_trailer_is_an_error() {
        let mut cpio = Vec::new();
        cpio_entry(&mut cpio, "070701", "./a", libc::S_IFREG | 0o644, b"x");
        cpio_entry(&mut cpio, "070701", "TRAILER!!!", 0, b"");
        let rpm = fake_rpm(Some("gzip"), &gzip(&cpio));
        let mut r = PayloadReader::open(rpm.path()).unwrap();
        r.next_entry().unwrap().unwrap();
        assert!(r.finish().is_err());
    }

    /// Every prefix of a valid package is an error somewhere (open, an
    /// entry, content or finish), never a panic or a silent success.
    #[test]
    fn every_truncation_is_an_error() {
        let mut cpio = Vec::new();
        cpio_entry(
            &mut cpio,
            "070701",
            "./etc/hello",
            libc::S_IFREG | 0o644,
            b"hello world\n",
        );
        cpio_entry(&mut cpio, "070701", "TRAILER!!!", 0, b"");
        let full = fake_rpm(Some("gzip"), &gzip(&cpio));
        let bytes = std::fs::read(full.path()).unwrap();
        for len in 0..bytes.len() {
            let mut t = tempfile::NamedTempFile::new().unwrap();
            t.write_all(&bytes[..len]).unwrap();
            let res = (|| -> Result<()> {
                let mut r = PayloadReader::open(t.path())?;
                while r.next_entry()?.is_some() {
                    r.read_content(&mut std::io::sink())?;
                }
                r.finish()
            })();
            assert!(res.is_err(), "prefix of {len} bytes read fine");
        }
    }
}

//! Where dracut's early cpio ends in an image dracut left uncompressed.
//!
//! dracut puts CPU microcode (and ACPI table overrides) into an *early* cpio
//! archive at the front of the initramfs, which the kernel reads before it
//! unpacks anything and only when it is uncompressed. dracut marks that
//! archive with a file named `early_cpio` (as `lsinitrd` checks). When the
//! image is compressed here rather than in dracut's pipeline, only what
//! follows the early archive may be compressed.
//!
//! Not for: reading the archive's files, or images dracut compressed.

use std::io::Read;

use anyhow::{bail, Context, Result};

/// A newc header: magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 110;
const MAGIC: &[u8] = b"070701";
/// The file dracut puts into its early archive.
const MARKER: &[u8] = b"early_cpio";
const TRAILER: &[u8] = b"TRAILER!!!";
/// More entries than any early archive has: the image's first archive is
/// then dracut's main one, not an early one.
const MAX_ENTRIES: usize = 4096;

fn align4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

fn hex_field(header: &[u8], index: usize) -> Result<u64> {
    let at = 6 + 8 * index;
    let text = std::str::from_utf8(&header[at..at + 8]).context("a cpio header field")?;
    u64::from_str_radix(text, 16).with_context(|| format!("cpio header field {text:?}"))
}

/// The length of the early archive at the start of `image`, with the zero
/// padding after it, or `None` when the image does not start with one (no
/// newc archive, or one without dracut's `early_cpio` marker). Reads only
/// the headers and names of the first archive.
pub fn early_cpio_len(image: &mut impl Read) -> Result<Option<u64>> {
    let mut at = 0u64;
    let mut marked = false;
    let mut header = [0u8; HEADER_LEN];
    for _ in 0..MAX_ENTRIES {
        if !read_fully(image, &mut header)? || &header[..6] != MAGIC {
            return Ok(None);
        }
        let size = hex_field(&header, 6)?;
        let name_len = hex_field(&header, 11)?;
        if name_len == 0 || name_len > 4096 {
            bail!("a cpio entry with a name of {name_len} bytes");
        }
        let mut name = vec![0u8; name_len as usize];
        if !read_fully(image, &mut name)? {
            return Ok(None);
        }
        let name = &name[..name.len() - 1];
        let data_at = align4(at + HEADER_LEN as u64 + name_len);
        let end = align4(data_at + size);
        skip(image, end - (at + HEADER_LEN as u64 + name_len))?;
        at = end;
        if name == TRAILER {
            if !marked {
                return Ok(None);
            }
            return Ok(Some(at + zero_run(image)?));
        }
        marked |= name == MARKER || name == b"./early_cpio";
    }
    Ok(None)
}

/// Fill `buf`; false at the end of the input before it is full.
fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("Reading the initramfs"),
        }
    }
    Ok(true)
}

fn skip(r: &mut impl Read, n: u64) -> Result<()> {
    let copied =
        std::io::copy(&mut r.take(n), &mut std::io::sink()).context("Reading the initramfs")?;
    if copied != n {
        bail!("the initramfs ends inside a cpio entry");
    }
    Ok(())
}

/// How many zero bytes come next (the archive's block padding); the first
/// byte after them is consumed too.
fn zero_run(r: &mut impl Read) -> Result<u64> {
    let mut n = 0;
    let mut byte = [0u8; 1];
    while read_fully(r, &mut byte)? && byte[0] == 0 {
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A newc archive of the files under `dir`, as dracut makes it.
    fn cpio_of(dir: &std::path::Path) -> Vec<u8> {
        let names = Command::new("sh")
            .arg("-c")
            .arg("cd \"$0\" && find . -print0 | sort -z | cpio --null -H newc -o --quiet -R 0:0")
            .arg(dir)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(names.status.success());
        names.stdout
    }

    #[test]
    fn the_early_archive_is_found_by_its_marker() {
        let t = tempfile::tempdir().unwrap();
        let early = t.path().join("early");
        std::fs::create_dir_all(early.join("kernel/x86/microcode")).unwrap();
        std::fs::write(early.join("early_cpio"), "1\n").unwrap();
        std::fs::write(early.join("kernel/x86/microcode/GenuineIntel.bin"), "abcde").unwrap();
        let main = t.path().join("main");
        std::fs::create_dir_all(main.join("usr/bin")).unwrap();
        std::fs::write(main.join("init"), "#!/bin/sh\n").unwrap();
        std::fs::write(main.join("usr/bin/tool"), vec![7u8; 3000]).unwrap();
        let early_bytes = cpio_of(&early);
        let main_bytes = cpio_of(&main);
        assert_eq!(early_bytes.len() % 512, 0, "cpio pads to blocks");
        let image = [early_bytes.clone(), main_bytes.clone()].concat();
        assert_eq!(
            early_cpio_len(&mut &image[..]).unwrap(),
            Some(early_bytes.len() as u64)
        );
        // No early archive: dracut's main archive first, or nothing cpio.
        assert_eq!(early_cpio_len(&mut &main_bytes[..]).unwrap(), None);
        assert_eq!(
            early_cpio_len(&mut &b"\x28\xb5\x2f\xfdzstd"[..]).unwrap(),
            None
        );
        assert_eq!(early_cpio_len(&mut &b""[..]).unwrap(), None);
        // Cut short: never a length.
        let cut = &image[..early_bytes.len() / 2];
        assert!(!matches!(early_cpio_len(&mut &cut[..]), Ok(Some(_))));
    }
}

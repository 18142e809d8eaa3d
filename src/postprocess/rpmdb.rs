//! Make the rpmdb in `usr/share/rpm` reproducible.
//!
//! rpm records when each package was installed (`INSTALLTIME`, `INSTALLTID`),
//! so two composes of the same inputs differ in `rpmdb.sqlite`. With
//! `SOURCE_DATE_EPOCH` set we export the headers (`rpmdb --exportdb`), rewrite
//! those two tags (install time = epoch + index, as rpm-ostree's
//! `rpmdb-normalize` does; transaction id = epoch), import them into a fresh
//! database (`rpmdb --importdb`) and switch the sqlite journal to DELETE so no
//! `-wal`/`-shm` files remain. The header rewriting is pure ([`patch_header_stream`]);
//! the rest is process I/O. Not for: other rpmdb backends (bdb/ndb) — the
//! target here is always sqlite.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const TAG_INSTALLTIME: u32 = 1008;
const TAG_INSTALLTID: u32 = 1128;
const TYPE_INT32: u32 = 4;

fn be32(b: &[u8], at: usize) -> Result<u32> {
    let s = b
        .get(at..at + 4)
        .with_context(|| format!("truncated rpm header stream at byte {at}"))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Rewrite INSTALLTIME (epoch + n for the n-th header) and INSTALLTID (epoch)
/// in a stream of rpm headers as written by `rpmdb --exportdb`.
/// Returns the number of headers seen.
pub fn patch_header_stream(stream: &mut [u8], epoch: u32) -> Result<usize> {
    let mut pos = 0usize;
    let mut count = 0usize;
    while pos < stream.len() {
        if stream.get(pos..pos + 4) != Some(&HEADER_MAGIC[..]) {
            bail!("unexpected data in rpm header stream at byte {pos} (no header magic)");
        }
        let nindex = be32(stream, pos + 8)? as usize;
        let hsize = be32(stream, pos + 12)? as usize;
        let index_start = pos + 16;
        let data_start = index_start + nindex * 16;
        let end = data_start + hsize;
        if end > stream.len() {
            bail!("truncated rpm header at byte {pos}");
        }
        for i in 0..nindex {
            let e = index_start + i * 16;
            let tag = be32(stream, e)?;
            let ty = be32(stream, e + 4)?;
            let offset = be32(stream, e + 8)? as usize;
            let n = be32(stream, e + 12)? as usize;
            let value = match tag {
                TAG_INSTALLTIME => epoch.wrapping_add(count as u32),
                TAG_INSTALLTID => epoch,
                _ => continue,
            };
            if ty != TYPE_INT32 || n != 1 || data_start + offset + 4 > end {
                bail!("rpm header {count}: unexpected shape of tag {tag}");
            }
            let at = data_start + offset;
            stream[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        pos = end;
        count += 1;
    }
    Ok(count)
}

fn run_rpmdb(dbpath: &Path, arg: &str, stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut child = Command::new("rpmdb")
        .arg("--dbpath")
        .arg(dbpath)
        .arg(arg)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("Running rpmdb {arg} (is the rpm package installed?)"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .with_context(|| format!("Feeding rpmdb {arg}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("Waiting for rpmdb {arg}"))?;
    if !out.status.success() {
        bail!(
            "rpmdb {arg} on {} failed ({}): {}",
            dbpath.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Switch an sqlite rpmdb to journal mode DELETE (checkpoints and removes
/// `-wal`/`-shm`). Uses the host's python3 sqlite3 module, which dnf already
/// requires, rather than linking a second sqlite into this binary.
pub fn finalize_sqlite(dbdir: &Path) -> Result<()> {
    let db = dbdir.join("rpmdb.sqlite");
    if !db.exists() {
        return Ok(());
    }
    // The system interpreter, not whatever `python3` PATH finds first: a
    // version manager's shim (pyenv) costs a quarter of a second of shell.
    let python = ["/usr/bin/python3", "/usr/libexec/platform-python"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .unwrap_or(Path::new("python3"));
    let out = Command::new(python)
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=DELETE').fetchall(); c.close()")
        .arg(&db)
        .output()
        .context("Running python3 to finalize the rpmdb")?;
    if !out.status.success() {
        bail!(
            "finalizing {} failed: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for leftover in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal"] {
        let p = dbdir.join(leftover);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("Removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Normalize the rpmdb of `root` (at `usr/share/rpm`) for `epoch`.
pub fn normalize_rpmdb(root: &Path, epoch: u64) -> Result<()> {
    let dbdir = root.join("usr/share/rpm");
    let epoch = u32::try_from(epoch).context("SOURCE_DATE_EPOCH does not fit rpm's 32-bit time")?;
    let mut headers = run_rpmdb(&dbdir, "--exportdb", None)?;
    let n = patch_header_stream(&mut headers, epoch)
        .with_context(|| format!("Rewriting the headers of {}", dbdir.display()))?;
    let fresh = root.join("usr/share/rpm.normalize-tmp");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).with_context(|| format!("Removing {}", fresh.display()))?;
    }
    std::fs::create_dir_all(&fresh).with_context(|| format!("Creating {}", fresh.display()))?;
    run_rpmdb(&fresh, "--importdb", Some(&headers))?;
    finalize_sqlite(&fresh)?;
    // Swap: keep everything rpm-ostree expects (the dir, its mode), replace the contents.
    for entry in
        std::fs::read_dir(&dbdir).with_context(|| format!("Reading {}", dbdir.display()))?
    {
        let p = entry?.path();
        std::fs::remove_file(&p).with_context(|| format!("Removing {}", p.display()))?;
    }
    for entry in
        std::fs::read_dir(&fresh).with_context(|| format!("Reading {}", fresh.display()))?
    {
        let entry = entry?;
        std::fs::rename(entry.path(), dbdir.join(entry.file_name())).with_context(|| {
            format!("Moving {} into {}", entry.path().display(), dbdir.display())
        })?;
    }
    std::fs::remove_dir(&fresh).with_context(|| format!("Removing {}", fresh.display()))?;
    crate::progress::note(&format!(
        "Normalized rpmdb: {n} headers, install time {epoch}"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One header with INSTALLTIME and INSTALLTID and an unrelated tag.
    fn header(time: u32, tid: u32) -> Vec<u8> {
        let mut v = HEADER_MAGIC.to_vec();
        v.extend([0, 0, 0, 0]);
        v.extend(3u32.to_be_bytes()); // nindex
        v.extend(12u32.to_be_bytes()); // hsize
        for (tag, off) in [(1000u32, 0u32), (TAG_INSTALLTIME, 4), (TAG_INSTALLTID, 8)] {
            v.extend(tag.to_be_bytes());
            v.extend(TYPE_INT32.to_be_bytes());
            v.extend(off.to_be_bytes());
            v.extend(1u32.to_be_bytes());
        }
        v.extend(77u32.to_be_bytes());
        v.extend(time.to_be_bytes());
        v.extend(tid.to_be_bytes());
        v
    }

    #[test]
    fn patches_each_header() {
        let mut s = header(123, 456);
        s.extend(header(789, 456));
        assert_eq!(patch_header_stream(&mut s, 1000).unwrap(), 2);
        let mut want = header(1000, 1000);
        want.extend(header(1001, 1000));
        assert_eq!(s, want);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        let mut g = b"not a header".to_vec();
        assert!(patch_header_stream(&mut g, 1).is_err());
        let mut t = header(1, 2);
        t.truncate(30);
        assert!(patch_header_stream(&mut t, 1).is_err());
        assert_eq!(patch_header_stream(&mut [], 1).unwrap(), 0);
    }
}

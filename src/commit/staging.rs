//! Writing loose objects into a repository outside libostree's transaction
//! the way libostree does it: staged under the repository's `tmp/`, synced,
//! then renamed to `objects/xx/rest.EXT`. Shared by the commit's adoption of
//! rootfs files ([`super::adopt`]) and the export's pre-compression
//! (`crate::export::precompress`).
//!
//! Not for: deciding what to write, or the objects' contents.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `dir/xx/rest.EXT` for `csum` (`dir` is `objects/` or a staging directory).
pub(crate) fn loose_path(dir: &Path, csum: &str, ext: &str) -> PathBuf {
    let (prefix, rest) = csum.split_at(2.min(csum.len()));
    dir.join(prefix).join(format!("{rest}.{ext}"))
}

/// Make `dir/xx` for `csum` if it does not exist.
pub(crate) fn create_subdir(dir: &Path, csum: &str) -> Result<()> {
    let sub = dir.join(&csum[..2.min(csum.len())]);
    match std::fs::create_dir(&sub) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("Creating {}", sub.display())),
    }
}

/// `syncfs()` on the filesystem holding `path`.
pub(crate) fn syncfs(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).with_context(|| format!("Opening {}", path.display()))?;
    rustix::fs::syncfs(&dir).with_context(|| format!("syncfs on {}", path.display()))
}

/// Remove the staging directories named `prefix*` in `tmp_dir` that killed
/// runs left behind (the caller holds the repository's lock, so no live run
/// owns one).
pub(crate) fn remove_stale(tmp_dir: &Path, prefix: &str) -> Result<()> {
    let entries = match std::fs::read_dir(tmp_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("Reading {}", tmp_dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("Reading {}", tmp_dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let p = entry.path();
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("Removing the stale staging directory {}", p.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_paths() {
        assert_eq!(
            loose_path(Path::new("/r/objects"), "abcdef", "filez"),
            Path::new("/r/objects/ab/cdef.filez")
        );
    }
}

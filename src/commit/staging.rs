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

/// Give every object staged under `staging/xx/` its name under
/// `objects_dir/xx/` (the caller has synced them when the repository syncs);
/// returns how many objects moved. A subdirectory `objects_dir` lacks is
/// moved whole, one rename instead of one per object (a first commit into a
/// new repository: 20857 renames on corpus-large took 0.35 s on one thread);
/// the others are emptied file by file on `threads` threads.
pub(crate) fn publish_staged(staging: &Path, objects_dir: &Path, threads: usize) -> Result<u64> {
    let mut leftover = Vec::new();
    let mut moved = 0;
    for sub in
        std::fs::read_dir(staging).with_context(|| format!("Reading {}", staging.display()))?
    {
        let sub = sub.with_context(|| format!("Reading {}", staging.display()))?;
        if !sub.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let names = list_names(&sub.path())?;
        let dest = objects_dir.join(sub.file_name());
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            sub.path(),
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => moved += names.len() as u64,
            Err(rustix::io::Errno::EXIST) => leftover.push((sub.path(), dest, names)),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("Moving {} to {}", sub.path().display(), dest.display())
                })
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let move_files = || -> Result<u64> {
        let mut n = 0;
        while let Some((from, to, names)) =
            leftover.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        {
            for name in names {
                let (a, b) = (from.join(name), to.join(name));
                std::fs::rename(&a, &b)
                    .with_context(|| format!("Moving {} to {}", a.display(), b.display()))?;
                n += 1;
            }
        }
        Ok(n)
    };
    std::thread::scope(|s| -> Result<u64> {
        let workers: Vec<_> = (0..threads.clamp(1, leftover.len().max(1)))
            .map(|_| s.spawn(move_files))
            .collect();
        for w in workers {
            moved += w
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("publishing staged objects panicked")))?;
        }
        Ok(moved)
    })
}

/// The names of the entries of `dir`.
fn list_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    std::fs::read_dir(dir)
        .with_context(|| format!("Reading {}", dir.display()))?
        .map(|e| {
            e.map(|e| e.file_name())
                .with_context(|| format!("Reading {}", dir.display()))
        })
        .collect()
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
    fn staged_objects_move_whole_directories_or_file_by_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (staging, objects) = (tmp.path().join("staging"), tmp.path().join("objects"));
        for (dir, names) in [
            (
                &staging,
                &["ab/1.file", "ab/2.file", "cd/3.file", "ef/4.file"][..],
            ),
            (&objects, &["cd/0.file"][..]),
        ] {
            for name in names {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, name).unwrap();
            }
        }
        // ab and ef are new, cd exists already: its objects join the old one.
        assert_eq!(publish_staged(&staging, &objects, 2).unwrap(), 4);
        for name in ["ab/1.file", "ab/2.file", "cd/3.file", "ef/4.file"] {
            assert_eq!(std::fs::read_to_string(objects.join(name)).unwrap(), name);
        }
        assert_eq!(
            std::fs::read_to_string(objects.join("cd/0.file")).unwrap(),
            "cd/0.file"
        );
        let left: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["cd"], "only the emptied directory stays");
        assert_eq!(std::fs::read_dir(staging.join("cd")).unwrap().count(), 0);
    }

    #[test]
    fn loose_paths() {
        assert_eq!(
            loose_path(Path::new("/r/objects"), "abcdef", "filez"),
            Path::new("/r/objects/ab/cdef.filez")
        );
    }
}

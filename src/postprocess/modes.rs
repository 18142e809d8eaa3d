//! `readonly-executables`: clear every write bit of regular files that have
//! any execute bit, as rpm-ostree's importer does for each package file.
//!
//! Walks the installed root without following symlinks. Not for directories,
//! symlinks or files without an execute bit.

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The mode with write bits cleared if any execute bit is set; `None` if unchanged.
pub fn readonly_mode(mode: u32) -> Option<u32> {
    let perms = mode & 0o7777;
    (perms & 0o111 != 0 && perms & 0o222 != 0).then_some(perms & !0o222)
}

/// Apply [`readonly_mode`] to every regular file below `root`; returns how many changed.
pub fn make_executables_readonly(root: &Path) -> Result<usize> {
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("Reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("Reading {}", dir.display()))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .with_context(|| format!("Inspecting {}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                if let Some(mode) = readonly_mode(meta.permissions().mode()) {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                        .with_context(|| format!("Making {} read-only", path.display()))?;
                    changed += 1;
                }
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(readonly_mode(0o100755), Some(0o555));
        assert_eq!(readonly_mode(0o104755), Some(0o4555));
        assert_eq!(readonly_mode(0o100644), None);
        assert_eq!(readonly_mode(0o100555), None);
        assert_eq!(readonly_mode(0o100700), Some(0o500));
    }

    #[test]
    fn walks_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), "x").unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("usr/bin/data"), "x").unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/data"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), "x").unwrap();
        std::fs::set_permissions(
            outside.path().join("victim"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("usr/link")).unwrap();
        assert_eq!(make_executables_readonly(root).unwrap(), 1);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root.join("usr/bin/tool")), 0o555);
        assert_eq!(mode(&root.join("usr/bin/data")), 0o644);
        assert_eq!(mode(&outside.path().join("victim")), 0o755);
    }
}

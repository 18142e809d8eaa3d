//! Fifos, sockets and device nodes in a rootfs: OSTree cannot store them, and
//! libostree's directory walk fails on them before a commit filter could skip
//! them. So they are found first and moved out of the tree for the duration
//! of the commit (or deleted when the rootfs is consumed anyway).
//!
//! Not for: anything else about the commit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::write::disk_path;

/// Commit paths ("/dev/null") of everything under `root` that is not a
/// directory, regular file or symlink. Uses the directory entries' types, so
/// it costs one readdir per directory and no stat in the common case.
pub fn find_special_files(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, commit_dir)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("Reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("Reading {}", dir.display()))?;
            let file_type = entry
                .file_type()
                .with_context(|| format!("Reading the type of {}", entry.path().display()))?;
            let name = entry.file_name();
            let commit_path = format!("{commit_dir}/{}", name.to_string_lossy());
            if file_type.is_dir() {
                stack.push((entry.path(), commit_path));
            } else if !file_type.is_file() && !file_type.is_symlink() {
                found.push(commit_path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Special files moved out of a rootfs for the duration of a commit.
pub(super) struct SpecialFilesAside {
    holding: Option<tempfile::TempDir>,
    moved: Vec<(PathBuf, PathBuf)>,
}

impl SpecialFilesAside {
    /// Move each of `special` (commit paths) into a holding directory beside
    /// the rootfs, or delete them if `delete` is set.
    pub(super) fn move_out(rootfs: &Path, special: &[String], delete: bool) -> Result<Self> {
        let mut aside = SpecialFilesAside {
            holding: None,
            moved: Vec::new(),
        };
        if special.is_empty() {
            return Ok(aside);
        }
        if delete {
            for path in special {
                let disk = disk_path(rootfs, path);
                std::fs::remove_file(&disk)
                    .with_context(|| format!("Removing special file {}", disk.display()))?;
            }
            return Ok(aside);
        }
        let parent = rootfs.parent().unwrap_or(rootfs);
        let holding = tempfile::Builder::new()
            .prefix(".ostree-composer-special-")
            .tempdir_in(parent)
            .with_context(|| format!("Creating a holding directory in {}", parent.display()))?;
        let holding_path = holding.path().to_path_buf();
        aside.holding = Some(holding);
        for (i, path) in special.iter().enumerate() {
            let from = disk_path(rootfs, path);
            let to = holding_path.join(i.to_string());
            std::fs::rename(&from, &to).with_context(|| {
                format!(
                    "Moving special file {} out of the tree to commit it without it",
                    from.display()
                )
            })?;
            aside.moved.push((from, to));
        }
        Ok(aside)
    }

    /// Put everything back where it was.
    pub(super) fn restore(mut self) -> Result<()> {
        self.put_back()
    }

    fn put_back(&mut self) -> Result<()> {
        while let Some((original, held)) = self.moved.pop() {
            std::fs::rename(&held, &original).with_context(|| {
                format!(
                    "Restoring special file {} (it is at {})",
                    original.display(),
                    held.display()
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for SpecialFilesAside {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            eprintln!("warning: {e:#}");
            // Keep the holding directory so nothing is lost.
            if let Some(dir) = self.holding.take() {
                let _ = dir.keep();
            }
        }
    }
}

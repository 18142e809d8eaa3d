//! Common post-processing (§4.6): the idempotent clean-up that every tree gets,
//! both before and after the final steps.
//!
//! `etc` is moved to `usr/etc`, a stray `var/lib/rpm` database is moved to
//! `usr/share/rpm`, and lock and backup files that must not end up in a commit
//! are deleted. Running it twice changes nothing. Not for the treefile-driven
//! steps (see `treefile_steps`) nor the final host integration (`final_steps`).

use std::io;

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;

use super::fsutil;

/// Where rpm-ostree trees keep the rpm database.
pub const RPMDB_DIR: &str = "usr/share/rpm";
/// The traditional rpm database location, a compat symlink in the tree.
pub const TRADITIONAL_RPMDB_DIR: &str = "var/lib/rpm";
/// Link target of `var/lib/rpm`.
pub const TRADITIONAL_RPMDB_LINK: &str = "../../usr/share/rpm";

/// Files in `usr/share/rpm` that are runtime locks/environments, not data.
fn is_rpmdb_lock(name: &str) -> bool {
    matches!(name, ".dbenv.lock" | ".rpm.lock") || name.starts_with("__db.")
}

/// Backup and lock files shadow-utils leaves in `/etc`.
const ETC_BACKUP_FILES: &[&str] = &[
    ".pwd.lock",
    "passwd-",
    "group-",
    "shadow-",
    "gshadow-",
    "subuid-",
    "subgid-",
];

/// SELinux store lock files, per policy directory.
const SEMANAGE_LOCKS: &[&str] = &["semanage.trans.LOCK", "semanage.read.LOCK"];

/// Run every common step in order (§4.6 1-5).
pub fn postprocess_common(root: &Dir) -> Result<()> {
    move_etc_to_usr_etc(root)?;
    move_rpmdb_to_usr_share(root)?;
    remove_rpmdb_locks(root)?;
    remove_semanage_locks(root)?;
    remove_etc_backup_files(root)?;
    Ok(())
}

/// Rename a real `etc` directory to `usr/etc`. If `usr/etc` already has
/// content, an empty `etc` is removed instead; a non-empty one is an error
/// (two `/etc` trees cannot be merged silently). Returns whether `etc` existed.
pub fn move_etc_to_usr_etc(root: &Dir) -> Result<bool> {
    if !fsutil::is_real_dir(root, "etc")? {
        return Ok(false);
    }
    fsutil::ensure_dir_all(root, "usr", 0o755)?;
    match root.rename("etc", root, "usr/etc") {
        Ok(()) => Ok(true),
        Err(e) if is_exists_error(&e) => {
            root.remove_dir("etc").with_context(|| {
                "Both etc and usr/etc exist and etc is not empty; \
                 cannot merge them (move the content of etc into usr/etc first)"
            })?;
            Ok(true)
        }
        Err(e) => Err(e).context("Renaming etc to usr/etc"),
    }
}

fn is_exists_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY))
}

/// If `usr/share/rpm` is missing and `var/lib/rpm` is a real directory, move
/// the database to `usr/share/rpm` and leave `var/lib/rpm -> ../../usr/share/rpm`.
pub fn move_rpmdb_to_usr_share(root: &Dir) -> Result<()> {
    if fsutil::exists_nofollow(root, RPMDB_DIR)? {
        return Ok(());
    }
    if !fsutil::is_real_dir(root, TRADITIONAL_RPMDB_DIR)? {
        return Ok(());
    }
    fsutil::ensure_dir_all(root, "usr/share", 0o755)?;
    root.rename(TRADITIONAL_RPMDB_DIR, root, RPMDB_DIR)
        .with_context(|| format!("Moving {TRADITIONAL_RPMDB_DIR} to {RPMDB_DIR}"))?;
    root.symlink_contents(TRADITIONAL_RPMDB_LINK, TRADITIONAL_RPMDB_DIR)
        .with_context(|| format!("Symlinking {TRADITIONAL_RPMDB_DIR}"))?;
    Ok(())
}

/// Delete `.dbenv.lock`, `.rpm.lock` and `__db.*` from `usr/share/rpm`.
pub fn remove_rpmdb_locks(root: &Dir) -> Result<()> {
    let Some(db) = root
        .open_dir_optional(RPMDB_DIR)
        .with_context(|| format!("Opening {RPMDB_DIR}"))?
    else {
        return Ok(());
    };
    for entry in db
        .entries()
        .with_context(|| format!("Reading {RPMDB_DIR}"))?
    {
        let entry = entry.with_context(|| format!("Reading {RPMDB_DIR}"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_rpmdb_lock(name) {
            db.remove_file(name)
                .with_context(|| format!("Removing {RPMDB_DIR}/{name}"))?;
        }
    }
    Ok(())
}

/// Delete `usr/etc/selinux/*/semanage.{trans,read}.LOCK`.
pub fn remove_semanage_locks(root: &Dir) -> Result<()> {
    let Some(selinux) = root
        .open_dir_optional("usr/etc/selinux")
        .context("Opening usr/etc/selinux")?
    else {
        return Ok(());
    };
    for entry in selinux.entries().context("Reading usr/etc/selinux")? {
        let entry = entry.context("Reading usr/etc/selinux")?;
        if !entry
            .file_type()
            .context("Reading usr/etc/selinux")?
            .is_dir()
        {
            continue;
        }
        let policy = entry.file_name();
        for lock in SEMANAGE_LOCKS {
            let path = std::path::Path::new(&policy).join(lock);
            selinux
                .remove_file_optional(&path)
                .with_context(|| format!("Removing usr/etc/selinux/{}", path.display()))?;
        }
    }
    Ok(())
}

/// Delete the shadow-utils backup and lock files from `usr/etc`.
pub fn remove_etc_backup_files(root: &Dir) -> Result<()> {
    let Some(etc) = root
        .open_dir_optional("usr/etc")
        .context("Opening usr/etc")?
    else {
        return Ok(());
    };
    for name in ETC_BACKUP_FILES {
        etc.remove_file_optional(name)
            .with_context(|| format!("Removing usr/etc/{name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpmdb_lock_names() {
        assert!(is_rpmdb_lock(".dbenv.lock"));
        assert!(is_rpmdb_lock(".rpm.lock"));
        assert!(is_rpmdb_lock("__db.001"));
        assert!(!is_rpmdb_lock("rpmdb.sqlite"));
        assert!(!is_rpmdb_lock("Packages"));
    }
}

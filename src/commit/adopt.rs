//! Turn a rootfs file into its bare-user content object by renaming it into
//! the repository, instead of copying its data.
//!
//! When the commit consumes the rootfs (the compose deletes it afterwards),
//! copying every file into `objects/` writes the whole tree a second time
//! only to delete the first copy. A file can become its own object when the
//! repository is bare-user on the same filesystem, the file has a single
//! link (renaming a shared inode would change the other names' metadata) and
//! no xattrs other than `user.ostreemeta` (the object must not carry real
//! xattrs such as file capabilities). The object is then exactly what
//! libostree writes in bare-user mode: ownership, mode and xattrs in
//! `user.ostreemeta` (GVariant `(uuua(ayay))`, big-endian numbers), file mode
//! `(mode & 0775) | 0400`, mtime 0, owned by the repository's user.
//!
//! Durability, as in a libostree transaction: adopted files are renamed into a
//! staging directory under the repository's `tmp/`, and [`Adopter::publish`]
//! syncs the filesystem before renaming them to their object names (a file
//! whose data is not on disk yet never appears under an object name, where a
//! later run would trust it); the caller's transaction syncs again before any
//! ref points at the commit. A killed run leaves a staging directory, removed
//! by the next run (which holds the repository lock).
//!
//! Not for: archive repositories (objects are compressed), checksumming (the
//! caller passes the checksum libostree computed for the file).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use ostree::glib::{ToVariant, Variant};

use super::staging;
use super::xattrs::{read_xattr_names, OSTREEMETA};

/// Renames eligible rootfs files into one repository's `objects/`.
#[derive(Debug)]
pub(super) struct Adopter {
    objects: PathBuf,
    /// `tmp/ostree-composer-adopt-*`: adopted files until [`Adopter::publish`].
    staging: tempfile::TempDir,
    /// The repository syncs (`core.fsync`).
    fsync: bool,
    dev: u64,
    uid: rustix::fs::Uid,
    gid: rustix::fs::Gid,
    /// Names the temporary files of [`Adopter::copy_in`].
    copies: std::sync::atomic::AtomicU64,
    /// Objects already in `staging`, copied there ahead of the commit
    /// ([`super::prestage`]), with their sizes.
    pre_staged: HashMap<String, u64>,
    /// The pre-staged objects the commit used; the others are removed
    /// before publishing.
    pre_staged_used: Mutex<HashSet<String>>,
}

/// How [`Adopter::take_pre_staged`] found an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PreStagedUse {
    /// Staged ahead, used for the first time: it counts as written.
    First { size: u64 },
    /// Staged ahead and already used by another file.
    Again,
}

impl Adopter {
    /// An adopter for `repo_path` when the commit consumes `rootfs`, the
    /// repository is bare-user and both are on one filesystem; else `None`.
    /// `pre_staged`: objects copied ahead into a staging directory of this
    /// repository ([`super::prestage`]); the adopter publishes from it.
    pub(super) fn new(
        repo: &ostree::Repo,
        repo_path: &Path,
        rootfs: &Path,
        pre_staged: Option<PreStaged>,
    ) -> Result<Option<Adopter>> {
        let Some(dev) = adoption_device(repo, repo_path, rootfs)? else {
            return Ok(None);
        };
        let (staging, pre_staged) = match pre_staged {
            Some(p) => (p.staging, p.objects),
            None => (new_staging(repo_path)?, HashMap::new()),
        };
        Ok(Some(Adopter {
            objects: repo_path.join("objects"),
            staging,
            fsync: !repo.is_disable_fsync(),
            dev,
            uid: rustix::process::geteuid(),
            gid: rustix::process::getegid(),
            copies: Default::default(),
            pre_staged,
            pre_staged_used: Default::default(),
        }))
    }

    /// The object `checksum` if it was staged ahead of the commit.
    pub(super) fn take_pre_staged(&self, checksum: &str) -> Result<Option<PreStagedUse>> {
        let Some(&size) = self.pre_staged.get(checksum) else {
            return Ok(None);
        };
        let mut used = self
            .pre_staged_used
            .lock()
            .map_err(|_| anyhow::anyhow!("a commit worker thread panicked"))?;
        Ok(Some(if used.insert(checksum.to_string()) {
            PreStagedUse::First { size }
        } else {
            PreStagedUse::Again
        }))
    }

    /// Make `file` (open on `path`) the content object `checksum` with the
    /// commit's `uid`/`gid`/`mode` and `xattrs` (`a(ayay)`). `Ok(false)`:
    /// not eligible, nothing changed; the caller writes the object instead.
    pub(super) fn adopt(
        &self,
        file: &File,
        path: &Path,
        (uid, gid, mode): (u32, u32, u32),
        xattrs: &Variant,
        checksum: &str,
    ) -> Result<bool> {
        let meta = file
            .metadata()
            .with_context(|| format!("Reading {}", path.display()))?;
        if meta.nlink() != 1 || meta.dev() != self.dev || !meta.is_file() {
            return Ok(false);
        }
        if read_xattr_names(path)?
            .iter()
            .any(|n| n.as_slice() != OSTREEMETA)
        {
            return Ok(false);
        }
        // A file we cannot take over (e.g. an unmapped owner) is copied instead.
        if (meta.uid(), meta.gid()) != (self.uid.as_raw(), self.gid.as_raw())
            && rustix::fs::fchown(file, Some(self.uid), Some(self.gid)).is_err()
        {
            return Ok(false);
        }
        self.stage(file, path, (uid, gid, mode), xattrs, checksum)?;
        Ok(true)
    }

    /// Copy `file` (open on `path`, positioned anywhere) into a new staged
    /// content object `checksum`: for a file that cannot be adopted (it has
    /// other links, e.g. into the package cache). The data is copied in the
    /// kernel (`copy_file_range`); libostree's `write_content` would read it
    /// through user space and checksum it again with GLib's slow SHA-256.
    pub(super) fn copy_in(
        &self,
        file: &File,
        path: &Path,
        owner: (u32, u32, u32),
        xattrs: &Variant,
        checksum: &str,
    ) -> Result<u64> {
        use std::os::unix::fs::OpenOptionsExt;
        let n = self
            .copies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.staging.path().join(format!("copy-{n}"));
        let mut copy = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("Creating {}", tmp.display()))?;
        let mut src = file;
        std::io::Seek::rewind(&mut src).with_context(|| format!("Rewinding {}", path.display()))?;
        let size = std::io::copy(&mut src, &mut copy)
            .with_context(|| format!("Copying {} to {}", path.display(), tmp.display()))?;
        self.stage(&copy, &tmp, owner, xattrs, checksum)?;
        Ok(size)
    }

    /// [`stage_object`] into this adopter's staging directory.
    fn stage(
        &self,
        file: &File,
        path: &Path,
        owner: (u32, u32, u32),
        xattrs: &Variant,
        checksum: &str,
    ) -> Result<()> {
        stage_object(self.staging.path(), file, path, owner, xattrs, checksum)
    }

    /// Give the staged files their object names (after a filesystem sync when
    /// the repository syncs); returns how many were published. Objects staged
    /// ahead that the commit did not use are removed first.
    pub(super) fn publish(&self) -> Result<u64> {
        let staging = self.staging.path();
        let used = self
            .pre_staged_used
            .lock()
            .map_err(|_| anyhow::anyhow!("a commit worker thread panicked"))?;
        for checksum in self.pre_staged.keys().filter(|c| !used.contains(*c)) {
            let path = staging::loose_path(staging, checksum, "file");
            std::fs::remove_file(&path)
                .with_context(|| format!("Removing the unused {}", path.display()))?;
        }
        if self.fsync {
            staging::syncfs(staging)?;
        }
        staging::publish_staged(staging, &self.objects, super::parallel::default_threads())
    }
}

/// What the commit's adopter starts from when objects were copied ahead
/// ([`super::prestage`]): its staging directory and the objects in it.
#[derive(Debug)]
pub(super) struct PreStaged {
    pub staging: tempfile::TempDir,
    /// Checksum -> content size.
    pub objects: HashMap<String, u64>,
}

/// The device of `repo_path`'s objects when files under `rootfs` can become
/// its objects by renaming: a bare-user repository on the same filesystem.
pub(super) fn adoption_device(
    repo: &ostree::Repo,
    repo_path: &Path,
    rootfs: &Path,
) -> Result<Option<u64>> {
    if repo.mode() != ostree::RepoMode::BareUser {
        return Ok(None);
    }
    let objects = repo_path.join("objects");
    let dev = std::fs::metadata(&objects)
        .with_context(|| format!("Reading {}", objects.display()))?
        .dev();
    let root_dev = std::fs::metadata(rootfs)
        .with_context(|| format!("Reading {}", rootfs.display()))?
        .dev();
    Ok((dev == root_dev).then_some(dev))
}

/// A new staging directory in `repo_path/tmp`, after removing the ones
/// killed runs left (the caller holds the repository's lock).
pub(super) fn new_staging(repo_path: &Path) -> Result<tempfile::TempDir> {
    let tmp = repo_path.join("tmp");
    staging::remove_stale(&tmp, STAGING_PREFIX)?;
    tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(&tmp)
        .with_context(|| format!("Creating a staging directory in {}", tmp.display()))
}

/// Give `file` (open on `path`, owned by the repository's user) the
/// bare-user object form and move it to its object name in `staging`.
pub(super) fn stage_object(
    staging: &Path,
    file: &File,
    path: &Path,
    (uid, gid, mode): (u32, u32, u32),
    xattrs: &Variant,
    checksum: &str,
) -> Result<()> {
    rustix::fs::fsetxattr(
        file,
        "user.ostreemeta",
        bareuser_meta(uid, gid, mode, xattrs).data(),
        rustix::fs::XattrFlags::empty(),
    )
    .with_context(|| format!("Setting user.ostreemeta on {}", path.display()))?;
    let content_mode = (mode & 0o775) | 0o400;
    rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(content_mode))
        .with_context(|| format!("Changing the mode of {}", path.display()))?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    rustix::fs::futimens(file, &times)
        .with_context(|| format!("Setting the mtime of {}", path.display()))?;
    staging::create_subdir(staging, checksum)?;
    let dest = staging::loose_path(staging, checksum, "file");
    // A concurrent worker may have staged the same content under this
    // name a moment ago: replacing it with identical bytes is harmless.
    std::fs::rename(path, &dest)
        .with_context(|| format!("Moving {} to {}", path.display(), dest.display()))?;
    Ok(())
}

const STAGING_PREFIX: &str = "ostree-composer-adopt-";

/// The `user.ostreemeta` value libostree stores on bare-user objects.
fn bareuser_meta(uid: u32, gid: u32, mode: u32, xattrs: &Variant) -> Variant {
    Variant::tuple_from_iter([
        uid.to_be().to_variant(),
        gid.to_be().to_variant(),
        mode.to_be().to_variant(),
        xattrs.clone(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_through_the_parser() {
        let x = super::super::xattrs::xattrs_to_variant(&[(b"user.a".to_vec(), b"v".to_vec())]);
        let v = bareuser_meta(1000, 7, libc::S_IFREG | 0o4755, &x);
        assert_eq!(v.type_().as_str(), "(uuua(ayay))");
        let m = super::super::xattrs::parse_ostreemeta(v.data()).unwrap();
        assert_eq!((m.uid, m.gid, m.mode), (1000, 7, libc::S_IFREG | 0o4755));
        assert_eq!(m.xattrs, vec![(b"user.a".to_vec(), b"v".to_vec())]);
    }
}

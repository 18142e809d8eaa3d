//! Content objects copied into a bare-user repository's staging directory
//! while the compose is still post-processing, so that the commit only has
//! to rename them into place.
//!
//! A root assembled from the package cache is made of hardlinks to the
//! cache's files, so the commit cannot turn those files into its objects by
//! renaming them ([`super::adopt`]); it copies them instead. That is about
//! 1 GB on a large tree, which costs seconds of kernel time on the commit's
//! critical path. The cache already knows each file's checksum, and
//! post-processing (dracut, mostly) keeps only one core busy. So a
//! low-priority thread copies the files the repository lacks into the
//! staging directory that the commit's adopter will later publish from.
//!
//! Trust: an object named C must hold content whose checksum is C. A file is
//! copied only while its status is exactly the stamp its checksum was
//! recorded for (the stamp [`super::known::KnownContents`] trusts). The
//! status is checked before and after the copy: a write in between changes
//! the ctime, and such a copy is dropped. The object's `user.ostreemeta`
//! holds the stamp's owner and mode and no xattrs: the header that checksum
//! covers. Objects the commit does not use are removed before it publishes
//! (see `Adopter::publish`).
//!
//! Not for: deciding which files the commit takes (it asks the repository
//! first, then `Adopter::take_pre_staged`), archive repositories.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};

use super::adopt::{self, PreStaged};
use super::known::Stamp;
use super::staging;
use super::xattrs::xattrs_to_variant;

/// A file whose content object may be copied ahead: its checksum is valid
/// while its status is `stamp`.
#[derive(Debug, Clone)]
pub struct AheadFile {
    pub path: PathBuf,
    pub checksum: String,
    pub stamp: Stamp,
}

/// The copying thread; cloned into the commit's options, which stops it
/// when the commit starts writing files ([`PreStager::finish`]). Dropping
/// the last handle stops it too, and removes what it staged.
#[derive(Debug, Clone)]
pub struct PreStager(Arc<Mutex<Option<Running>>>);

#[derive(Debug)]
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Staged>>,
    /// What the thread staged, once [`PreStager::wait_until_done`] joined it.
    done: Option<Staged>,
}

/// What the thread staged, and why it stopped early if it failed.
#[derive(Debug)]
struct Staged {
    staging: tempfile::TempDir,
    objects: HashMap<String, u64>,
    bytes: u64,
    failure: Option<anyhow::Error>,
}

/// Whether objects staged ahead would be used: the commit of a rootfs under
/// `dir` into `repo` (at `repo_path`) publishes from a staging directory when
/// the repository is bare-user and on `dir`'s filesystem.
pub fn applies(repo: &ostree::Repo, repo_path: &Path, dir: &Path) -> Result<bool> {
    Ok(adopt::adoption_device(repo, repo_path, dir)?.is_some())
}

impl PreStager {
    /// Start copying `files` into a staging directory of `repo` (at
    /// `repo_path`) when the commit of `rootfs` will publish from one: a
    /// bare-user repository on `rootfs`'s filesystem. `None` otherwise.
    /// The caller must hold the repository's lock until the commit is done.
    pub fn start(
        repo: &ostree::Repo,
        repo_path: &Path,
        rootfs: &Path,
        files: Vec<AheadFile>,
    ) -> Result<Option<PreStager>> {
        if files.is_empty() || !applies(repo, repo_path, rootfs)? {
            return Ok(None);
        }
        let staging = adopt::new_staging(repo_path)?;
        let objects = repo_path.join("objects");
        let sync_after = !repo.is_disable_fsync();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("prestage".into())
            .spawn(move || {
                // Post-processing and the commit come first.
                crate::threads::lower_priority(19);
                copy_all(staging, &objects, &files, &flag, sync_after)
            })
            .context("Starting the thread that stages objects ahead of the commit")?;
        Ok(Some(PreStager(Arc::new(Mutex::new(Some(Running {
            stop,
            thread: Some(thread),
            done: None,
        }))))))
    }

    /// Wait until every file is copied (or the copying failed), without
    /// stopping it early.
    pub fn wait_until_done(&self) -> Result<()> {
        let mut running = self
            .0
            .lock()
            .map_err(|_| anyhow!("the object staging handle was poisoned"))?;
        match running.as_mut() {
            Some(running) => running.collect(),
            None => Ok(()),
        }
    }

    /// Stop copying (the file being copied is finished) and hand over what
    /// was staged; `None` if another handle took it already. A failure of
    /// the thread is reported as a warning: the commit copies the rest.
    pub(super) fn finish(&self) -> Result<Option<PreStaged>> {
        let running = self
            .0
            .lock()
            .map_err(|_| anyhow!("the object staging handle was poisoned"))?
            .take();
        let Some(mut running) = running else {
            return Ok(None);
        };
        let staged = running.join()?;
        if !staged.objects.is_empty() {
            eprintln!(
                "Staged ahead of the commit: {} objects ({:.1} MiB)",
                staged.objects.len(),
                staged.bytes as f64 / (1024.0 * 1024.0)
            );
        }
        if let Some(e) = &staged.failure {
            eprintln!("warning: staging objects ahead of the commit stopped: {e:#}");
        }
        Ok(Some(PreStaged {
            staging: staged.staging,
            objects: staged.objects,
        }))
    }
}

impl Running {
    /// Wait for the thread (if not done already) and keep what it staged.
    fn collect(&mut self) -> Result<()> {
        if let Some(thread) = self.thread.take() {
            let staged = thread
                .join()
                .map_err(|_| anyhow!("the thread staging objects ahead of the commit panicked"))?;
            self.done = Some(staged);
        }
        Ok(())
    }

    /// Stop the thread and take what it staged.
    fn join(&mut self) -> Result<Staged> {
        self.stop.store(true, Ordering::SeqCst);
        self.collect()?;
        self.done
            .take()
            .ok_or_else(|| anyhow!("the objects staged ahead were already taken"))
    }
}

impl Drop for Running {
    /// Stop the thread; its staging directory is removed with what it staged.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// Copy each of `files` the repository lacks into `staging`, until `stop`.
/// A failure ends the copying; what was staged before it stays usable.
fn copy_all(
    staging: tempfile::TempDir,
    objects: &Path,
    files: &[AheadFile],
    stop: &AtomicBool,
    sync_after: bool,
) -> Staged {
    let mut staged = Staged {
        staging,
        objects: HashMap::new(),
        bytes: 0,
        failure: None,
    };
    let no_xattrs = xattrs_to_variant(&[]);
    for (n, f) in files.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            return staged;
        }
        if staged.objects.contains_key(&f.checksum)
            || staging::loose_path(objects, &f.checksum, "file").exists()
        {
            continue;
        }
        let tmp = staged.staging.path().join(format!("ahead-{n}"));
        match copy_one(f, &tmp) {
            Ok(Some((copy, size))) => {
                let owner = (f.stamp.uid, f.stamp.gid, f.stamp.mode);
                let staged_object = adopt::stage_object(
                    staged.staging.path(),
                    &copy,
                    &tmp,
                    owner,
                    &no_xattrs,
                    &f.checksum,
                );
                if let Err(e) = staged_object {
                    staged.failure = Some(e);
                    return staged;
                }
                staged.objects.insert(f.checksum.clone(), size);
                staged.bytes += size;
            }
            Ok(None) => {}
            Err(e) => {
                staged.failure = Some(e);
                return staged;
            }
        }
    }
    // Start writing the copies back now rather than in the commit's sync
    // (which would wait for this one: nothing to sync for nothing copied).
    if sync_after && !staged.objects.is_empty() {
        if let Err(e) = staging::syncfs(staged.staging.path()) {
            staged.failure = Some(e);
        }
    }
    staged
}

/// Copy `f` to `tmp` if its status is its stamp before and after the copy;
/// `None` (and no `tmp`) when it is not, or when it is gone.
fn copy_one(f: &AheadFile, tmp: &Path) -> Result<Option<(File, u64)>> {
    let mut src = match File::open(&f.path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("Opening {}", f.path.display())),
    };
    let unchanged = |src: &File| -> Result<bool> {
        let meta = src
            .metadata()
            .with_context(|| format!("Reading {}", f.path.display()))?;
        Ok(meta.is_file() && Stamp::of(&meta) == f.stamp)
    };
    if !unchanged(&src)? {
        return Ok(None);
    }
    let mut copy = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .with_context(|| format!("Creating {}", tmp.display()))?;
    // copy_file_range: the data stays in the kernel.
    let size = std::io::copy(&mut src, &mut copy)
        .with_context(|| format!("Copying {} to {}", f.path.display(), tmp.display()))?;
    if !unchanged(&src)? {
        std::fs::remove_file(tmp).with_context(|| format!("Removing {}", tmp.display()))?;
        return Ok(None);
    }
    Ok(Some((copy, size)))
}

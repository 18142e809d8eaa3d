//! A commit's tree read from its dirtree objects: every file path with its
//! content object, every directory, and each object's paths in the order
//! ostree-ext lists them.
//!
//! Used by the OCI writer ([`crate::oci::chunking`], [`crate::oci::chunkwriter`]) and
//! the archive export (`export::precompress`).
//!
//! Not for: reading file contents or metadata objects other than dirtrees.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::gio::prelude::FileExt;

/// The regular files and symlinks of a commit (path -> content checksum) and its directories.
#[derive(Debug, Default, Clone)]
pub struct CommitTree {
    /// Absolute paths (`/usr/bin/bash`) to content object checksums.
    pub files: BTreeMap<String, String>,
    /// Absolute paths of directories (`/`, `/usr`, ...).
    pub dirs: BTreeSet<String>,
    /// Content object checksum -> its paths, in the order of a depth-first walk that
    /// lists a directory's files before its subdirectories (the order the image
    /// writer must keep to match ostree-ext byte for byte). Filled by [`walk_commit`].
    pub object_paths: BTreeMap<String, Vec<String>>,
}

/// Walk the commit `checksum` and list its files and directories.
///
/// The dirtree objects are read on several threads (a cold page cache makes this a
/// chain of small reads, each waiting for the disk), then walked in memory.
pub fn walk_commit(repo: &ostree::Repo, checksum: &str) -> Result<CommitTree> {
    let repo_path = repo
        .path()
        .path()
        .ok_or_else(|| anyhow!("The OSTree repository has no local path"))?;
    walk_tree(&repo_path, &root_dirtree(repo, checksum)?)
        .with_context(|| format!("Walking the tree of commit {checksum}"))
}

/// The checksum of the root dirtree of commit `checksum`.
pub fn root_dirtree(repo: &ostree::Repo, checksum: &str) -> Result<String> {
    let (commit_v, _) = repo
        .load_commit(checksum)
        .with_context(|| format!("Loading commit {checksum}"))?;
    Ok(hex::encode(commit_v.child_value(6).data_as_bytes()))
}

/// [`walk_commit`] from the root dirtree, with the repository given by its path (so
/// that it can run on another thread than the caller's repository object).
pub fn walk_tree(repo_path: &Path, root_dirtree: &str) -> Result<CommitTree> {
    let dirtrees = load_dirtrees(repo_path, root_dirtree)?;
    let mut tree = CommitTree::default();
    tree.dirs.insert("/".into());
    walk_dirtree(&dirtrees, root_dirtree, "", &mut tree)?;
    Ok(tree)
}

/// A dirtree object, `(a(say)a(sayay))`: files (name, checksum), dirs (name, tree, meta).
pub(crate) type DirTreeV = (Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>, Vec<u8>)>);

/// Threads for reading many small objects: they mostly wait for the disk, so more
/// than the cores (a deeper I/O queue), but few enough to stay cheap.
pub(crate) const IO_THREADS: usize = 6;

/// Every dirtree reachable from `root`, parsed, by checksum.
fn load_dirtrees(repo_path: &Path, root: &str) -> Result<HashMap<String, DirTreeV>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex};
    /// The shared work list.
    #[derive(Default)]
    struct Work {
        /// Dirtrees to read.
        todo: Vec<String>,
        /// Dirtrees being read.
        busy: usize,
        /// Every dirtree ever queued (identical subtrees share a dirtree: read it once).
        seen: HashSet<String>,
        done: HashMap<String, DirTreeV>,
    }
    let work = Mutex::new(Work {
        todo: vec![root.to_string()],
        seen: [root.to_string()].into(),
        ..Default::default()
    });
    let wake = Condvar::new();
    let failed = AtomicBool::new(false);
    let poisoned = || anyhow!("poisoned lock");
    let worker = || -> Result<()> {
        let r = (|| -> Result<()> {
            // libostree repo objects are not thread-safe: one per thread.
            let repo = ostree::Repo::new_for_path(repo_path);
            repo.open(gio::Cancellable::NONE)
                .with_context(|| format!("Opening {}", repo_path.display()))?;
            loop {
                let csum = {
                    let mut w = work.lock().map_err(|_| poisoned())?;
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        if let Some(c) = w.todo.pop() {
                            w.busy += 1;
                            break c;
                        }
                        if w.busy == 0 {
                            return Ok(());
                        }
                        w = wake.wait(w).map_err(|_| poisoned())?;
                    }
                };
                // A panic must not leave `busy` counting a read that never ends.
                let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let v = repo
                        .load_variant(ostree::ObjectType::DirTree, &csum)
                        .with_context(|| format!("Loading dirtree {csum}"))?;
                    v.get::<DirTreeV>()
                        .ok_or_else(|| anyhow!("dirtree {csum} has an unexpected type"))
                }))
                .unwrap_or_else(|_| Err(anyhow!("Reading dirtree {csum} panicked")))?;
                let mut w = work.lock().map_err(|_| poisoned())?;
                w.busy -= 1;
                for (_, t, _) in &parsed.1 {
                    let t = hex::encode(t);
                    if w.seen.insert(t.clone()) {
                        w.todo.push(t);
                    }
                }
                w.done.insert(csum, parsed);
                drop(w);
                wake.notify_all();
            }
        })();
        if r.is_err() {
            // Stop the others instead of letting them wait for this thread's read. Set
            // under the lock: a thread between its check and its wait would miss it.
            let w = work.lock();
            failed.store(true, Ordering::Relaxed);
            drop(w);
            wake.notify_all();
        }
        r
    };
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..IO_THREADS).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some(anyhow!("a dirtree reader panicked")),
            })
            .collect()
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(work.into_inner().map_err(|_| poisoned())?.done)
}

/// Depth first, a directory's files before its subdirectories: the order ostree-ext
/// lists an object's paths in (kept in [`CommitTree::object_paths`]).
fn walk_dirtree(
    dirtrees: &HashMap<String, DirTreeV>,
    csum: &str,
    prefix: &str,
    tree: &mut CommitTree,
) -> Result<()> {
    let (files, dirs) = dirtrees
        .get(csum)
        .ok_or_else(|| anyhow!("internal error: dirtree {csum} ({prefix}/) was not read"))?;
    for (name, fcsum) in files {
        let path = format!("{prefix}/{name}");
        let fcsum = hex::encode(fcsum);
        tree.object_paths
            .entry(fcsum.clone())
            .or_default()
            .push(path.clone());
        tree.files.insert(path, fcsum);
    }
    for (name, tcsum, _meta) in dirs {
        let path = format!("{prefix}/{name}");
        tree.dirs.insert(path.clone());
        walk_dirtree(dirtrees, &hex::encode(tcsum), &path, tree)?;
    }
    Ok(())
}

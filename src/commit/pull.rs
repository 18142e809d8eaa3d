//! Copying a commit between two local repositories (`ostree pull-local`), e.g.
//! from a build repo into the target repo or an export repo.
//!
//! libostree imports local objects on GLib's worker threads (one task per
//! object), so a pull between repos of different modes (bare-user -> archive,
//! which zlib-compresses every file) already spreads over the available cores;
//! between repos of the same mode on one filesystem objects are hardlinked.
//!
//! Not for: remote (HTTP) pulls, signature checks (local sources are trusted).

use std::path::Path;

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib::{self, ToVariant};
use ostree::{Repo, RepoPullFlags};

use super::read::has_commit;

/// How much of a commit's history to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullHistory {
    /// Only the commit (and its tree); parents are referenced but not copied.
    CommitOnly,
    /// The commit and every ancestor that the source repository has.
    AllAvailable,
}

/// Options of [`pull_local`].
#[derive(Debug, Clone)]
pub struct PullLocalOptions<'a> {
    /// The source repository directory.
    pub src_repo: &'a Path,
    /// The commit checksum to copy.
    pub commit: &'a str,
    /// Set this ref in the destination to the commit once the pull completed
    /// (an atomic file replacement; it never points at missing objects).
    pub ref_: Option<&'a str>,
    pub history: PullHistory,
}

/// Copy a commit from `opts.src_repo` into `dest`. Returns the number of
/// commits that were not in `dest` before (0 if it already had everything).
pub fn pull_local(dest: &Repo, opts: &PullLocalOptions<'_>) -> Result<u32> {
    let src_abs = std::fs::canonicalize(opts.src_repo)
        .with_context(|| format!("Resolving {}", opts.src_repo.display()))?;
    let src = super::repo::open_repo(&src_abs)?;
    let depth = match opts.history {
        PullHistory::CommitOnly => 0,
        PullHistory::AllAvailable => available_depth(&src, opts.commit)?,
    };
    let new_commits = count_missing_commits(&src, dest, opts.commit, depth)?;

    let url = format!("file://{}", src_abs.display());
    let dict = glib::VariantDict::new(None);
    dict.insert_value("refs", &vec![opts.commit.to_string()].to_variant());
    dict.insert_value("flags", &(RepoPullFlags::NONE.bits() as i32).to_variant());
    dict.insert_value("depth", &depth.to_variant());
    // Local sources are our own repositories: trusted, no signature checks.
    dict.insert_value("gpg-verify", &false.to_variant());
    dict.insert_value("gpg-verify-summary", &false.to_variant());
    dict.insert_value("disable-sign-verify", &true.to_variant());
    dict.insert_value("disable-sign-verify-summary", &true.to_variant());
    let options = dict.end();
    dest.pull_with_options(&url, &options, None, gio::Cancellable::NONE)
        .with_context(|| {
            format!(
                "Pulling commit {} from {}",
                opts.commit,
                opts.src_repo.display()
            )
        })?;
    if let Some(r) = opts.ref_ {
        dest.set_ref_immediate(None, r, Some(opts.commit), gio::Cancellable::NONE)
            .with_context(|| format!("Setting ref {r} to {}", opts.commit))?;
    }
    Ok(new_commits)
}

/// How many ancestors of `commit` the repository holds without a gap.
fn available_depth(repo: &Repo, commit: &str) -> Result<i32> {
    let mut depth = 0i32;
    let mut current = commit.to_string();
    loop {
        let Some(parent) = parent_of(repo, &current)? else {
            return Ok(depth);
        };
        if !has_commit(repo, &parent)? {
            return Ok(depth);
        }
        depth += 1;
        current = parent;
    }
}

fn parent_of(repo: &Repo, commit: &str) -> Result<Option<String>> {
    let v = repo
        .load_variant(ostree::ObjectType::Commit, commit)
        .with_context(|| format!("Loading commit {commit}"))?;
    Ok(ostree::commit_get_parent(&v).map(|s| s.to_string()))
}

fn count_missing_commits(src: &Repo, dest: &Repo, commit: &str, depth: i32) -> Result<u32> {
    let mut missing = 0;
    let mut current = Some(commit.to_string());
    let mut level = 0;
    while let Some(c) = current {
        if level > depth || has_commit(dest, &c)? {
            break;
        }
        missing += 1;
        level += 1;
        current = parent_of(src, &c)?;
    }
    Ok(missing)
}

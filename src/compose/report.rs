//! Build the compose JSON (§6) from a commit result.

use super::composejson::ComposeJson;
use crate::commit::{CommitInfo, CommitResult};
use crate::install::InstalledPackage;
use anyhow::Result;

/// The compose JSON for a new commit; `pkgdiff` when the parent is in the repo.
/// `parent` is a full checksum.
pub fn compose_json(
    repo: &ostree::Repo,
    result: &CommitResult,
    ref_moved: Option<&str>,
    version: Option<&str>,
    inputhash: &str,
    parent: Option<&str>,
    installed: &[InstalledPackage],
) -> Result<ComposeJson> {
    let stats = &result.stats;
    // The parent may be absent from this repo: the one-shot command with a
    // fresh cache takes the exported repo's commit as parent.
    let parent = match parent {
        Some(p) if crate::commit::read::has_commit(repo, p)? => Some(p),
        _ => None,
    };
    let pkgdiff = match parent {
        Some(p) => match CommitInfo::load_optional(repo, p)? {
            Some(prev) => {
                let old = prev.pkglist()?.unwrap_or_default();
                let new = super::metadata::pkglist(installed);
                let diff = crate::commit::pkgdiff(&old, &new);
                match crate::commit::pkgdiff_to_json(&diff) {
                    serde_json::Value::Array(a) => Some(a),
                    _ => None,
                }
            }
            None => None,
        },
        None => None,
    };
    Ok(ComposeJson {
        r#ref: ref_moved.map(str::to_string),
        ostree_n_metadata_total: Some(stats.metadata_total),
        ostree_n_metadata_written: Some(stats.metadata_written),
        ostree_n_content_total: Some(stats.content_total),
        ostree_n_content_written: Some(stats.content_written),
        ostree_n_cache_hits: Some(stats.devino_cache_hits),
        ostree_content_bytes_written: Some(stats.content_bytes_written),
        ostree_commit: result.checksum.clone(),
        ostree_content_checksum: Some(result.content_checksum.clone()),
        ostree_version: version.map(str::to_string),
        ostree_timestamp: Some(result.timestamp_string()),
        rpm_ostree_inputhash: Some(inputhash.to_string()),
        pkgdiff,
        kernel: None,
        exported_repo: None,
        images: Vec::new(),
    })
}

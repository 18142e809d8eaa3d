//! Commit metadata for a compose, in rpm-ostree's precedence order (§5.1):
//! treefile `add-commit-metadata`, then each `--add-metadata-from-json` file,
//! then each `--add-metadata-string`, then `ostree.container-cmd`; then the
//! automatic `version`, and after installation the keys the compose itself
//! records (input hash, package list, bootable kernel).

use super::version::next_version;
use crate::commit::{CommitMetadata, MetaValue, PkgListEntry};
use crate::exit::invalid_input;
use crate::install::{InstalledPackage, Resolution};
use crate::treefile::Treefile;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Metadata from the treefile and the command line.
pub fn user_metadata(
    treefile: &Treefile,
    strings: &[String],
    json_files: &[PathBuf],
) -> Result<CommitMetadata> {
    let mut meta = CommitMetadata::new();
    if let Some(map) = &treefile.config.add_commit_metadata {
        for (k, v) in map {
            meta.insert(k.clone(), MetaValue::Json(v.clone()));
        }
    }
    for path in json_files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid_input(format!(
                "Reading --add-metadata-from-json {}: {e}; give an existing JSON file",
                path.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            invalid_input(format!(
                "--add-metadata-from-json {}: invalid JSON at line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        meta.merge_json_object(
            &value,
            &format!("--add-metadata-from-json {}", path.display()),
        )?;
    }
    for kv in strings {
        let (k, v) = parse_key_value(kv, "--add-metadata-string")?;
        meta.insert_str(k, v);
    }
    if let Some(cmd) = &treefile.config.container_cmd {
        meta.set_container_cmd(cmd);
    }
    Ok(meta)
}

pub use crate::cli::parse_key_value;

/// Compute `version` from `automatic-version-prefix` unless metadata already
/// has one; returns the commit's version, if any.
pub fn apply_version(
    treefile: &Treefile,
    meta: &mut CommitMetadata,
    previous_version: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>> {
    if let Some(v) = meta.get("version") {
        return Ok(match v {
            MetaValue::Str(s) => Some(s.clone()),
            MetaValue::Json(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        });
    }
    let Some(prefix) = &treefile.config.automatic_version_prefix else {
        return Ok(None);
    };
    let suffix = treefile.config.automatic_version_suffix();
    let version = next_version(prefix, &suffix, previous_version, now)
        .with_context(|| format!("{}: automatic-version-prefix", treefile.path.display()))?;
    crate::progress::note(&format!("New version: {version}"));
    meta.insert_str("version", version.clone());
    Ok(Some(version))
}

/// The package list as rpm-ostree stores it: sorted by name, EVR, arch.
pub fn pkglist(installed: &[InstalledPackage]) -> Vec<PkgListEntry> {
    let mut list: Vec<PkgListEntry> = installed
        .iter()
        .map(|p| PkgListEntry {
            name: p.name.clone(),
            epoch: p.epoch.to_string(),
            version: p.version.clone(),
            release: p.release.clone(),
            arch: p.arch.clone(),
        })
        .collect();
    list.sort_by(crate::commit::pkgdiff::package_cmp);
    list
}

/// The keys a compose records once the tree exists.
pub fn apply_compose_metadata(
    treefile: &Treefile,
    meta: &mut CommitMetadata,
    inputhash: &str,
    installed: &[InstalledPackage],
    resolution: &Resolution,
    kernel_version: Option<&str>,
) {
    use crate::treefile::MetadataTarget;
    if treefile.config.repo_metadata() == MetadataTarget::Inline
        && !meta.contains_key("rpmostree.rpmmd-repos")
    {
        let repos = resolution
            .repos
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "timestamp": r.timestamp}))
            .collect();
        meta.insert(
            "rpmostree.rpmmd-repos",
            MetaValue::Json(serde_json::Value::Array(repos)),
        );
    }
    if let Some(args) = &treefile.config.initramfs_args {
        meta.insert("rpmostree.initramfs-args", MetaValue::StrList(args.clone()));
    }
    meta.insert_str("rpmostree.inputhash", inputhash);
    meta.insert(
        "rpmostree.rpmdb.pkglist",
        MetaValue::PkgList(pkglist(installed)),
    );
    if let (false, Some(kver)) = (treefile.config.container(), kernel_version) {
        meta.set_bootable(kver);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(parse_key_value("a=b=c", "--x").unwrap(), ("a", "b=c"));
        assert_eq!(parse_key_value("a=", "--x").unwrap(), ("a", ""));
        assert!(parse_key_value("novalue", "--x").is_err());
        assert!(parse_key_value("=v", "--x").is_err());
    }
}

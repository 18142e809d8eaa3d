//! The compose JSON (`--write-composejson-to`): rpm-ostree's keys, in its
//! order, plus what our outputs add (exported repo, pushed images).
//!
//! Pure data and serialization; the pipeline fills it in and writes it
//! atomically with [`write_atomic`].

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// One pkgdiff entry: `[name, type, {"PreviousPackage": [...], "NewPackage": [...]}]`.
pub type PkgDiffEntry = serde_json::Value;

/// The compose JSON. Field order is the serialization order.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComposeJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_n_metadata_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_n_metadata_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_n_content_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_n_content_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_n_cache_hits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_content_bytes_written: Option<u64>,
    pub ostree_commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_content_checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_ostree_inputhash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkgdiff: Option<Vec<PkgDiffEntry>>,
    /// Our addition: the kernel of a bootable tree, and where its module
    /// index and initramfs came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelSummary>,
    /// Our addition: the archive repo the commit was exported to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported_repo: Option<ExportedRepo>,
    /// Our addition: the OCI images written or pushed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageOutput>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KernelSummary {
    pub version: String,
    /// `built` (dracut ran), `reused` (restored from the run cache),
    /// `packaged` (`no-initramfs` with a packaged one) or `none`.
    pub initramfs: String,
    /// `written` (depmod ran) or `reused` (restored from the run cache).
    pub module_index: String,
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExportedRepo {
    pub path: String,
    pub mode: String,
    pub static_delta: bool,
    pub signed: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageOutput {
    pub reference: String,
    pub digest: String,
    pub layers: u64,
    pub size: u64,
}

impl ComposeJson {
    pub fn to_json_pretty(&self) -> String {
        // Serializing a struct of plain fields cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Write `content` to `path` atomically (temp file in the same dir + rename), mode 0644.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("Creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content)
        .with_context(|| format!("Writing {}", path.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("Setting the mode of {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("Renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_omission() {
        let j = ComposeJson {
            r#ref: Some("a/b".into()),
            ostree_commit: "c".repeat(64),
            rpm_ostree_inputhash: Some("h".into()),
            ..Default::default()
        };
        let s = j.to_json_pretty();
        let r = s.find("\"ref\"").unwrap();
        let c = s.find("\"ostree-commit\"").unwrap();
        let h = s.find("\"rpm-ostree-inputhash\"").unwrap();
        assert!(r < c && c < h, "{s}");
        assert!(!s.contains("ostree-version"), "{s}");
        assert!(!s.contains("images"), "{s}");
    }

    #[test]
    fn atomic_write() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("compose.json");
        write_atomic(&p, b"{}").unwrap();
        write_atomic(&p, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}");
    }
}

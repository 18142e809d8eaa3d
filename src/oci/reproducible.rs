//! Make an image that ostree-ext wrote into an OCI directory reproducible and
//! give it the right platform.
//!
//! ostree-ext 0.15.3 stamps every `history[].created` with the current time and
//! records the *host* architecture. This rewrites the config (`created`,
//! `history[].created`, `architecture`, `variant`, `os`), writes it as a new blob
//! (ocidir serializes JSON canonically, keys sorted), points the manifest at it,
//! writes the new manifest, re-tags it in `index.json`, deletes the blobs that
//! are no longer referenced, and runs ocidir's fsck. Layers are not touched
//! (ostree-ext writes them deterministically).
//!
//! Not for: choosing the time (the caller does), pushing (see `push`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use ocidir::cap_std::fs::Dir;
use ocidir::oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageManifest, MediaType, Os, Platform,
};
use ocidir::OciDir;

/// The OCI platform of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciPlatform {
    pub architecture: String,
    pub variant: Option<String>,
}

/// Map an RPM basearch (or an OCI architecture name) to the OCI architecture.
pub fn oci_platform_for(arch: &str) -> Result<OciPlatform> {
    let (a, v) = match arch {
        "x86_64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "ppc64le" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "i386" | "i486" | "i586" | "i686" | "386" => ("386", None),
        "armv7hl" | "armv7l" | "armhfp" | "arm" => ("arm", Some("v7")),
        "loongarch64" | "loong64" => ("loong64", None),
        "mips64el" | "mips64le" => ("mips64le", None),
        other => {
            return Err(crate::exit::invalid_input(format!(
                "Unknown architecture '{other}': expected an RPM basearch (x86_64, aarch64, ppc64le, s390x, riscv64, i686, armv7hl) or an OCI name (amd64, arm64, ...)"
            )))
        }
    };
    Ok(OciPlatform {
        architecture: a.to_string(),
        variant: v.map(str::to_string),
    })
}

/// Format a time the way image configs carry it (`2024-01-02T03:04:05Z`).
pub fn format_created(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parse a creation time: seconds since the epoch (SOURCE_DATE_EPOCH style) or RFC 3339.
pub fn parse_created(s: &str) -> Result<DateTime<Utc>> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().map_err(|_| {
            crate::exit::invalid_input(format!("Creation time '{s}' is out of range"))
        })?;
        return DateTime::from_timestamp(secs, 0).ok_or_else(|| {
            crate::exit::invalid_input(format!("Creation time '{s}' is out of range"))
        });
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            crate::exit::invalid_input(format!(
                "Creation time '{s}' is neither seconds since the epoch nor RFC 3339 ({e})"
            ))
        })
}

/// What the normalized image is.
#[derive(Debug, Clone)]
pub struct NormalizedImage {
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.ref.name"))
        .map(String::as_str)
}

fn blob_path(d: &Descriptor) -> Result<String> {
    let hex = d
        .as_digest_sha256()
        .ok_or_else(|| anyhow!("Unsupported digest {} (only sha256)", d.digest()))?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// Rewrite the image tagged `tag` in the OCI directory `path`; see the module docs.
pub fn normalize(
    path: &Path,
    tag: &str,
    created: &str,
    platform: &OciPlatform,
) -> Result<NormalizedImage> {
    let dir = Dir::open_ambient_dir(path, ocidir::cap_std::ambient_authority())
        .with_context(|| format!("Opening OCI directory {}", path.display()))?;
    let oci =
        OciDir::open(&dir).with_context(|| format!("Opening OCI directory {}", path.display()))?;
    let index = oci
        .read_index()?
        .ok_or_else(|| anyhow!("{} has no index.json", path.display()))?;
    let old_desc = index
        .manifests()
        .iter()
        .find(|d| tag_of(d) == Some(tag))
        .cloned()
        .ok_or_else(|| anyhow!("{} has no image tagged '{tag}'", path.display()))?;
    let mut manifest: ImageManifest = oci.read_json_blob(&old_desc).context("Reading manifest")?;
    let old_config_desc = manifest.config().clone();
    let mut config: ImageConfiguration = oci
        .read_json_blob(&old_config_desc)
        .context("Reading image config")?;

    config.set_created(Some(created.to_string()));
    for h in config.history_mut().iter_mut() {
        h.set_created(Some(created.to_string()));
    }
    config.set_architecture(Arch::from(platform.architecture.as_str()));
    config.set_variant(platform.variant.clone());
    config.set_os(Os::Linux);

    let config_desc = oci
        .write_config(config.clone())
        .context("Writing image config")?;
    manifest.set_config(config_desc.clone());
    let mut oci_platform = Platform::default();
    oci_platform.set_architecture(Arch::from(platform.architecture.as_str()));
    oci_platform.set_os(Os::Linux);
    oci_platform.set_variant(platform.variant.clone());
    let new_desc = oci
        .insert_manifest(manifest.clone(), Some(tag), oci_platform)
        .context("Writing manifest and index.json")?;

    // Drop blobs nothing references any more.
    let index = oci.read_index()?.unwrap_or(index);
    let mut live: HashSet<String> = HashSet::new();
    for d in index.manifests() {
        live.insert(blob_path(d)?);
        let m: ImageManifest = oci.read_json_blob(d)?;
        live.insert(blob_path(m.config())?);
        for l in m.layers() {
            live.insert(blob_path(l)?);
        }
    }
    for old in [&old_desc, &old_config_desc] {
        let p = blob_path(old)?;
        if !live.contains(&p) {
            dir.remove_file(&p)
                .with_context(|| format!("Removing orphaned blob {p}"))?;
        }
    }
    oci.fsck().context("Verifying the OCI directory (fsck)")?;
    debug_assert_eq!(new_desc.media_type(), &MediaType::ImageManifest);
    Ok(NormalizedImage {
        manifest_digest: new_desc.digest().to_string(),
        manifest,
        config,
    })
}

/// Record `platform` on the `index.json` entries of an OCI directory that point at
/// `digest` (skopeo writes index entries without one).
pub fn set_index_platform(path: &Path, digest: &str, platform: &OciPlatform) -> Result<()> {
    let index_path = path.join("index.json");
    let text = std::fs::read_to_string(&index_path)
        .with_context(|| format!("Reading {}", index_path.display()))?;
    let mut index: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", index_path.display()))?;
    let mut p = serde_json::Map::new();
    p.insert("architecture".into(), platform.architecture.clone().into());
    p.insert("os".into(), "linux".into());
    if let Some(v) = &platform.variant {
        p.insert("variant".into(), v.clone().into());
    }
    let mut changed = false;
    if let Some(ms) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        for m in ms.iter_mut().filter(|m| m["digest"] == digest) {
            if let Some(obj) = m.as_object_mut() {
                obj.insert("platform".into(), serde_json::Value::Object(p.clone()));
                changed = true;
            }
        }
    }
    if changed {
        let tmp = path.join(".index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&index)?)
            .with_context(|| format!("Writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &index_path)
            .with_context(|| format!("Replacing {}", index_path.display()))?;
    }
    Ok(())
}

/// Remove the untagged entries of an existing OCI directory's `index.json`, so that
/// writing an untagged image there leaves exactly one untagged image (as ostree-ext
/// does for `oci:DIR`), instead of an ambiguous index. Tagged entries are kept; blobs
/// are not garbage-collected. A missing directory or index is fine.
pub fn drop_untagged_manifests(path: &Path) -> Result<()> {
    let index_path = path.join("index.json");
    let text = match std::fs::read_to_string(&index_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("Reading {}", index_path.display())),
    };
    let mut index: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", index_path.display()))?;
    let Some(manifests) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Ok(());
    };
    let before = manifests.len();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"].is_string());
    if manifests.len() == before {
        return Ok(());
    }
    let tmp = path.join(".index.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&index)?)
        .with_context(|| format!("Writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &index_path)
        .with_context(|| format!("Replacing {}", index_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_entries_dropped() {
        let d = tempfile::tempdir().unwrap();
        drop_untagged_manifests(&d.path().join("missing")).unwrap();
        std::fs::write(
            d.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:1"},{"digest":"sha256:2","annotations":{"org.opencontainers.image.ref.name":"t"}}]}"#,
        )
        .unwrap();
        drop_untagged_manifests(d.path()).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["digest"], "sha256:2");
    }

    #[test]
    fn arch_mapping() {
        assert_eq!(oci_platform_for("x86_64").unwrap().architecture, "amd64");
        assert_eq!(oci_platform_for("aarch64").unwrap().architecture, "arm64");
        assert_eq!(oci_platform_for("arm64").unwrap().architecture, "arm64");
        assert_eq!(
            oci_platform_for("armv7hl").unwrap().variant.as_deref(),
            Some("v7")
        );
        assert!(oci_platform_for("vax").is_err());
    }

    #[test]
    fn created_parsing() {
        assert_eq!(
            format_created(&parse_created("0").unwrap()),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            format_created(&parse_created("1700000000").unwrap()),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_created(&parse_created("2024-01-02T04:04:05+01:00").unwrap()),
            "2024-01-02T03:04:05Z"
        );
        assert!(parse_created("yesterday").is_err());
    }
}

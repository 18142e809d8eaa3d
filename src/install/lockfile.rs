//! rpm-ostree lockfiles (`--ex-lockfile`, `--ex-write-lockfile-to`): parse,
//! merge and write. Applying a lockfile to a depsolve happens in the dnf
//! backend ([`super::dnf`]); this module only deals with the file format.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::invalid_input;

use super::Resolution;

/// One `packages.<name>` entry as written in a lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackageEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evra: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoGenerated {
    pub generated: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockfileMetadata {
    pub generated: String,
    #[serde(default)]
    pub rpmmd_repos: BTreeMap<String, RepoGenerated>,
}

/// The on-disk shape of one lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockfileDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<LockfileMetadata>,
    /// Required; `Option` only so a missing key gets rpm-ostree's message.
    pub packages: Option<BTreeMap<String, LockedPackageEntry>>,
}

/// A locked package after parsing: EVR (epoch 0 omitted, as rpm-md spells it),
/// optional arch and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    pub evr: String,
    pub arch: Option<String>,
    pub digest: Option<String>,
}

/// All lockfiles merged (later files override earlier ones per package name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    pub packages: BTreeMap<String, LockedPackage>,
}

fn normalize_evr(evr: &str) -> String {
    evr.strip_prefix("0:").unwrap_or(evr).to_string()
}

/// Parse one lockfile's text; `path` decides the format (`.yaml`/`.yml` → YAML, else JSON).
pub fn parse(text: &str, path: &Path) -> Result<Lockfile> {
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let doc: LockfileDoc = if is_yaml {
        serde_yaml::from_str(text)
            .map_err(|e| invalid_input(format!("Parsing lockfile {}: {e}", path.display())))?
    } else {
        serde_json::from_str(text)
            .map_err(|e| invalid_input(format!("Parsing lockfile {}: {e}", path.display())))?
    };
    if let Some(meta) = &doc.metadata {
        let dates =
            std::iter::once(&meta.generated).chain(meta.rpmmd_repos.values().map(|r| &r.generated));
        for date in dates {
            chrono::DateTime::parse_from_rfc3339(date).map_err(|e| {
                invalid_input(format!(
                    "Parsing lockfile {}: '{date}' is not an RFC 3339 time: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let Some(entries) = doc.packages else {
        return Err(invalid_input(format!(
            "Key 'packages' not found in {}",
            path.display()
        )));
    };
    let mut packages = BTreeMap::new();
    for (name, entry) in entries {
        let (evr, arch) = match (&entry.evra, &entry.evr) {
            (Some(evra), None) => {
                let (evr, arch) = evra.rsplit_once('.').ok_or_else(|| {
                    invalid_input(format!(
                        "Lockfile {}: package {name} has malformed evra '{evra}' (expected EVR.ARCH)",
                        path.display()
                    ))
                })?;
                (evr.to_string(), Some(arch.to_string()))
            }
            (None, Some(evr)) => (evr.clone(), None),
            _ => {
                return Err(invalid_input(format!(
                    "Lockfile {}: package {name} needs exactly one of 'evra' or 'evr'",
                    path.display()
                )))
            }
        };
        if evr.is_empty() || arch.as_deref() == Some("") {
            return Err(invalid_input(format!(
                "Lockfile {}: package {name} has an empty version",
                path.display()
            )));
        }
        packages.insert(
            name.clone(),
            LockedPackage {
                name,
                evr: normalize_evr(&evr),
                arch,
                digest: entry.digest,
            },
        );
    }
    Ok(Lockfile { packages })
}

/// Read and merge lockfiles in order (later override earlier per name).
pub fn read(paths: &[PathBuf]) -> Result<Lockfile> {
    let mut merged = Lockfile::default();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid_input(format!(
                "Reading lockfile {}: {e}; give an existing lockfile",
                path.display()
            ))
        })?;
        let one = parse(&text, path)?;
        merged.packages.extend(one.packages);
    }
    Ok(merged)
}

fn evr_string(epoch: u64, version: &str, release: &str) -> String {
    if epoch == 0 {
        format!("{version}-{release}")
    } else {
        format!("{epoch}:{version}-{release}")
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The lockfile document for a resolution; `today` is the generation time
/// (rpm-ostree rounds it down to 00:00:00 UTC so lockfiles written on the
/// same day are identical).
pub fn document(res: &Resolution, now: chrono::DateTime<chrono::Utc>) -> LockfileDoc {
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let rpmmd_repos = res
        .repos
        .iter()
        .map(|r| {
            let t = chrono::DateTime::from_timestamp(r.timestamp, 0).unwrap_or_default();
            (
                r.id.clone(),
                RepoGenerated {
                    generated: rfc3339(t),
                },
            )
        })
        .collect();
    let packages = res
        .packages
        .iter()
        .map(|p| {
            let mut metadata = BTreeMap::new();
            metadata.insert(
                "sourcerpm".to_string(),
                serde_json::Value::String(p.sourcerpm.clone()),
            );
            let entry = LockedPackageEntry {
                evra: Some(format!(
                    "{}.{}",
                    evr_string(p.epoch, &p.version, &p.release),
                    p.arch
                )),
                evr: None,
                digest: Some(p.checksum.clone()),
                metadata: Some(metadata),
            };
            (p.name.clone(), entry)
        })
        .collect();
    LockfileDoc {
        metadata: Some(LockfileMetadata {
            generated: rfc3339(midnight),
            rpmmd_repos,
        }),
        packages: Some(packages),
    }
}

/// Write the lockfile for `res` to `path` as pretty JSON, atomically
/// (temporary file in the same directory, then rename).
pub fn write(path: &Path, res: &Resolution) -> Result<()> {
    let doc = document(res, chrono::Utc::now());
    let mut text = serde_json::to_string_pretty(&doc).context("Serializing lockfile")?;
    text.push('\n');
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("Creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("Writing lockfile {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("Writing lockfile {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("Writing lockfile {}", path.display()))?;
    }
    tmp.persist(path)
        .with_context(|| format!("Renaming lockfile into place at {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{RepoState, ResolvedPackage};

    fn sample() -> Resolution {
        Resolution {
            packages: vec![
                ResolvedPackage {
                    name: "bar".into(),
                    epoch: 2,
                    version: "1.0".into(),
                    release: "3".into(),
                    arch: "x86_64".into(),
                    repo: "r".into(),
                    checksum: "sha256:00ff".into(),
                    sourcerpm: "bar-1.0-3.src.rpm".into(),
                    download_size: 10,
                },
                ResolvedPackage {
                    name: "foo".into(),
                    epoch: 0,
                    version: "2".into(),
                    release: "1".into(),
                    arch: "noarch".into(),
                    repo: "r".into(),
                    checksum: "sha256:aa".into(),
                    sourcerpm: "foo-2-1.src.rpm".into(),
                    download_size: 5,
                },
            ],
            repos: vec![RepoState {
                id: "r".into(),
                timestamp: 86400,
            }],
        }
    }

    #[test]
    fn document_round_trips_through_parse() {
        let now = chrono::DateTime::from_timestamp(1_700_000_123, 0).unwrap();
        let doc = document(&sample(), now);
        let meta = doc.metadata.as_ref().unwrap();
        assert_eq!(meta.generated, "2023-11-14T00:00:00Z");
        assert_eq!(meta.rpmmd_repos["r"].generated, "1970-01-02T00:00:00Z");
        let text = serde_json::to_string_pretty(&doc).unwrap();
        assert!(text.contains("\"evra\": \"2:1.0-3.x86_64\""), "{text}");
        assert!(
            text.contains("\"sourcerpm\": \"foo-2-1.src.rpm\""),
            "{text}"
        );
        let lf = parse(&text, Path::new("x.json")).unwrap();
        assert_eq!(
            lf.packages["bar"],
            LockedPackage {
                name: "bar".into(),
                evr: "2:1.0-3".into(),
                arch: Some("x86_64".into()),
                digest: Some("sha256:00ff".into())
            }
        );
        assert_eq!(lf.packages["foo"].evr, "2-1");
    }

    #[test]
    fn yaml_evr_and_override() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.json");
        std::fs::write(
            &a,
            "packages:\n  foo:\n    evr: 0:1.0-1\n  bar:\n    evra: 1-1.noarch\n",
        )
        .unwrap();
        std::fs::write(&b, r#"{"packages": {"foo": {"evra": "2.0-1.x86_64"}}}"#).unwrap();
        let lf = read(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(lf.packages["foo"].evr, "2.0-1");
        assert_eq!(lf.packages["foo"].arch.as_deref(), Some("x86_64"));
        assert_eq!(lf.packages["bar"].evr, "1-1");
        let lf = read(&[b, a]).unwrap();
        assert_eq!(lf.packages["foo"].evr, "1.0-1", "epoch 0 is dropped");
        assert_eq!(lf.packages["foo"].arch, None);
    }

    #[test]
    fn invalid_lockfiles() {
        let cases = [
            (
                "x.json",
                r#"{"metadata": {"generated": "2020-01-01T00:00:00Z"}}"#,
                "Key 'packages' not found in x.json",
            ),
            ("x.json", r#"{"packages": {}, "extra": 1}"#, "unknown field"),
            (
                "x.yaml",
                "packages:\n  foo:\n    evra: 1.0\n    bogus: 1\n",
                "unknown field",
            ),
            (
                "x.json",
                r#"{"packages": {"foo": {"evra": "nodot"}}}"#,
                "package foo has malformed evra",
            ),
            ("x.json", r#"{"packages": {"foo": {}}}"#, "exactly one of"),
            (
                "x.json",
                r#"{"packages": {}, "metadata": {"generated": "yesterday"}}"#,
                "RFC 3339",
            ),
            ("x.json", "{", "Parsing lockfile x.json"),
        ];
        for (name, text, want) in cases {
            let e = parse(text, Path::new(name)).unwrap_err();
            let msg = format!("{e:#}");
            assert!(msg.contains(want), "{text}: {msg}");
            assert_eq!(crate::exit::exit_code_for(&e), 3, "{msg}");
        }
    }

    #[test]
    fn write_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, &sample()).unwrap();
        let lf = read(std::slice::from_ref(&path)).unwrap();
        assert_eq!(lf.packages.len(), 2);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}

//! The treefile: model, include/variable resolution, validation, serialization.
//!
//! Reads rpm-ostree treefiles (YAML, JSON, kickstart subset) exactly as
//! `rpm-ostree compose tree` does and produces one merged [`TreeComposeConfig`]
//! plus the external files it names ([`Externals`]). Not for acting on the
//! config (repos, install, postprocess live elsewhere).
//!
//! Submodules: `model` (serde types and defaults), `parse` (one document),
//! `condition` (conditional-include), `split` (package strings), `kickstart`,
//! `merge` (include merge rules), `resolve` (include walk + externals),
//! `varsubst` (`${var}`), `validate` (§2.2 checks).
//!
//! Deliberate differences from rpm-ostree (v2026.2):
//! * unknown JSON keys are serialized sorted by name (rpm-ostree: `HashMap`
//!   order, which can make its inputhash unstable);
//! * an inline `conditional-include` treefile that sets `include`,
//!   `arch-include`, `conditional-include`, `postprocess-script`, `add-files`
//!   or a `file` check-passwd/check-groups is an error (rpm-ostree silently
//!   drops or half-applies them);
//! * `remove-files` and `cliwrap-binaries` are checked in
//!   [`Treefile::validate_for_compose`], before anything is installed
//!   (rpm-ostree fails on them during post-processing);
//! * error messages keep rpm-ostree's wording and add the file, key and a hint.

pub mod condition;
pub mod kickstart;
pub mod merge;
pub mod model;
pub mod parse;
pub mod resolve;
pub mod split;
pub mod validate;
pub mod varsubst;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};

pub use condition::{IncludeCondition, IncludeConditions, VarValue};
pub use model::*;
pub use parse::{parse_treefile_str, Format};
pub use resolve::{resolve, ExternalFile, Externals, MissingExternals, ResolveOptions, Resolved};

use crate::exit::invalid_input;

/// Options for [`Treefile::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Compose architecture; `None` = the host's ([`host_basearch`]).
    pub basearch: Option<String>,
    /// Variables supplied by the caller; they beat the treefiles' own.
    pub initial_variables: BTreeMap<String, VarValue>,
}

/// The rpm basearch of the host ("x86_64", "aarch64", "ppc64le", "s390x", ...).
pub fn host_basearch() -> String {
    let arch = std::env::consts::ARCH;
    match arch {
        "x86" => "i386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "arm" => "armhfp",
        "loongarch64" => "loongarch64",
        other => other,
    }
    .to_string()
}

/// A loaded, resolved and validated treefile.
#[derive(Debug, Clone)]
pub struct Treefile {
    /// The top-level treefile as given.
    pub path: PathBuf,
    /// Its directory (where `.repo` files are looked up).
    pub dir: PathBuf,
    /// The compose architecture.
    pub basearch: String,
    pub config: TreeComposeConfig,
    pub externals: Externals,
}

impl Treefile {
    /// Parse, resolve includes, substitute variables and run the after-merge
    /// validation, opening every external (a missing one is an error).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Treefile> {
        let basearch = opts.basearch.clone().unwrap_or_else(host_basearch);
        let ropts = ResolveOptions {
            basearch: Some(basearch.clone()),
            initial_variables: opts.initial_variables.clone(),
            missing_externals: MissingExternals::Error,
        };
        // Every error from `resolve` already names the file (and include chain).
        let resolved = resolve(path, &ropts)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Treefile {
            path: path.to_path_buf(),
            dir,
            basearch,
            config: resolved.config,
            externals: resolved.externals,
        })
    }

    /// The compose-only checks of reference §2.2.
    pub fn validate_for_compose(&self) -> Result<()> {
        validate::validate_for_compose(
            &self.config,
            &self.externals,
            &self.basearch,
            &host_basearch(),
        )
        .map_err(|e| invalid_input(format!("{}: {e}", self.path.display())))
    }

    /// The ref after the strict `${basearch}` pass (`None`: no ref is set).
    pub fn strict_ref(&self) -> Result<Option<String>> {
        validate::strict_ref(&self.config, &self.basearch)
            .map_err(|e| invalid_input(format!("{}: {e}", self.path.display())))
    }

    /// `treefile.json` / `--print-only` output.
    pub fn to_json_pretty(&self) -> String {
        config_to_json_pretty(&self.config)
    }

    /// The compact JSON hashed into the inputhash (no `ostree-layers`, no `metadata`).
    pub fn to_json_compact_for_hash(&self) -> String {
        config_to_json_compact_for_hash(&self.config)
    }

    /// [`Self::checksum_with_layers`] without layer checksums.
    pub fn checksum(&self) -> String {
        self.checksum_with_layers(&[])
    }

    /// rpm-ostree's `treefile_checksum_hex` (reference §5.3): SHA-256 over the
    /// compact JSON, then the postprocess-script, check-passwd file,
    /// check-groups file and add-files sources (by source name), then
    /// `layer_checksums`: the hex content checksums of each `ostree-layers`
    /// then `ostree-override-layers` ref, resolved by the caller in the build
    /// repo (this module has no repository access).
    pub fn checksum_with_layers(&self, layer_checksums: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(self.to_json_compact_for_hash().as_bytes());
        let ext = &self.externals;
        for f in [
            &ext.postprocess_script,
            &ext.check_passwd_file,
            &ext.check_groups_file,
        ]
        .into_iter()
        .flatten()
        {
            h.update(&f.content);
        }
        for f in ext.add_files.values() {
            h.update(&f.content);
        }
        for c in layer_checksums {
            h.update(c.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Sort every nested JSON object by key (rpm-ostree's serde_json has no
/// `preserve_order`, so nested maps serialize sorted).
fn sorted_value(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted_value(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted_value).collect())
        }
        other => other,
    }
}

/// Keys whose values are free-form JSON (`serde_json::Value` in rpm-ostree).
const FREE_FORM_KEYS: &[&str] = &["metadata", "add-commit-metadata"];

/// The config as an ordered JSON object: struct order, then unknown keys sorted.
pub fn config_to_value(cfg: &TreeComposeConfig) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(cfg) {
        for (k, v) in m {
            // Typed structs keep their field order; only free-form JSON
            // values (maps in rpm-ostree) are sorted.
            let v = if FREE_FORM_KEYS.contains(&k.as_str()) {
                sorted_value(v)
            } else {
                v
            };
            out.insert(k, v);
        }
    }
    for (k, v) in &cfg.extra {
        if !out.contains_key(k) {
            out.insert(k.clone(), sorted_value(v.clone()));
        }
    }
    out
}

/// Pretty JSON for `--print-only`.
pub fn config_to_json_pretty(cfg: &TreeComposeConfig) -> String {
    serde_json::to_string_pretty(&serde_json::Value::Object(config_to_value(cfg)))
        .unwrap_or_default()
}

/// Compact JSON for the inputhash.
pub fn config_to_json_compact_for_hash(cfg: &TreeComposeConfig) -> String {
    let mut m = config_to_value(cfg);
    m.shift_remove("ostree-layers");
    m.shift_remove("metadata");
    serde_json::to_string(&serde_json::Value::Object(m)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_order_and_omissions() {
        let cfg: TreeComposeConfig = parse_treefile_str(
            "{\"zzz\": 1, \"ref\": \"r\", \"packages\": [\"b\", \"a\"], \"variables\": {\"x\": 1}, \"repovars\": {\"a\": \"b\"}, \"metadata\": {\"b\": 1, \"a\": {\"d\": 1, \"c\": 2}}, \"ostree-layers\": [\"l\"], \"aaa\": 2}",
            Format::Json,
            "t.json",
            Some("x86_64"),
        )
        .unwrap();
        let pretty = config_to_json_pretty(&cfg);
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&pretty)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        assert_eq!(
            keys,
            [
                "packages",
                "ref",
                "metadata",
                "basearch",
                "ostree-layers",
                "aaa",
                "zzz"
            ]
        );
        assert!(
            pretty.contains("\"a\": {\n      \"c\": 2,\n      \"d\": 1"),
            "{pretty}"
        );
        let compact = config_to_json_compact_for_hash(&cfg);
        assert_eq!(
            compact,
            "{\"packages\":[\"a\",\"b\"],\"ref\":\"r\",\"basearch\":\"x86_64\",\"aaa\":2,\"zzz\":1}"
        );
    }

    #[test]
    fn host_arch_is_rpm_style() {
        let a = host_basearch();
        assert!(!a.is_empty());
        assert_ne!(a, "powerpc64");
    }
}

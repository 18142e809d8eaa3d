//! Treefile validation (reference §2.2): the after-merge checks every load
//! runs, and the compose-only checks `compose tree` adds.
//!
//! Pure functions over the merged config (and the externals' modes); they
//! return plain messages that the caller classifies and prefixes with the file.

use std::sync::OnceLock;

use regex::Regex;

use super::model::TreeComposeConfig;
use super::resolve::Externals;
use super::varsubst::substitute_strict;

/// rpm-ostree `add_files_path_is_valid`.
pub fn add_files_path_is_valid(dest: &str) -> bool {
    let p = dest.trim_start_matches('/');
    if p.starts_with("usr/local/") {
        return false;
    }
    ["usr/", "etc/", "bin/", "sbin/", "lib/", "lib64/"]
        .iter()
        .any(|prefix| p.starts_with(prefix))
}

/// Checks run on every load after merging (`Treefile::validate_config`).
pub fn validate_config(cfg: &TreeComposeConfig) -> Result<(), String> {
    for (_src, dest) in cfg.add_files.iter().flatten() {
        if !add_files_path_is_valid(dest) {
            return Err(format!(
                "add-files: Unsupported path in add-files: {dest} (the destination must be under /usr (not /usr/local), /etc, /bin, /sbin, /lib or /lib64)"
            ));
        }
    }
    if let Some(s) = &cfg.automatic_version_suffix {
        if s.len() != 1 || !s.is_ascii() {
            return Err(format!(
                "Invalid automatic-version-suffix, must be exactly one ASCII character: {s}"
            ));
        }
    }
    Ok(())
}

fn ref_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Literal pattern (ostree's ref grammar); covered by unit tests.
        #[allow(clippy::expect_used)]
        Regex::new(r"^(?:[\w\d][-._\w\d]*/)*[\w\d][-._\w\d]*$").expect("ref regex compiles")
    })
}

/// Whether `r` is a valid OSTree ref name.
pub fn is_valid_ref(r: &str) -> bool {
    r.is_ascii() && ref_regex().is_match(r)
}

/// The ref after the strict `${basearch}` pass and the ref-syntax check.
pub fn strict_ref(cfg: &TreeComposeConfig, basearch: &str) -> Result<Option<String>, String> {
    let Some(r) = cfg.treeref.as_deref() else {
        return Ok(None);
    };
    if r.is_empty() {
        return Ok(None);
    }
    let mut vars = std::collections::BTreeMap::new();
    vars.insert("basearch".to_string(), basearch.to_string());
    let out = substitute_strict(r, &vars).map_err(|e| format!("ref: {e}"))?;
    if !is_valid_ref(&out) {
        return Err(format!(
            "ref: invalid OSTree ref '{out}' (use letters, digits, '-', '_', '.' and '/' separated components)"
        ));
    }
    Ok(Some(out))
}

/// Binaries `cliwrap-binaries` may name.
pub const CLIWRAP_BINARIES: &[&str] = &["rpm", "dracut", "grubby", "yum", "dnf", "kernel-install"];

/// Compose-only checks (`treefile_new_compose`, `sanitycheck_externals`).
pub fn validate_for_compose(
    cfg: &TreeComposeConfig,
    externals: &Externals,
    basearch: &str,
    host_basearch: &str,
) -> Result<(), String> {
    if basearch != host_basearch {
        return Err(format!(
            "basearch: Invalid basearch {basearch} on {host_basearch}: cross-composes are not supported"
        ));
    }
    for reserved in ["releasever", "basearch"] {
        if cfg
            .repovars
            .as_ref()
            .is_some_and(|m| m.contains_key(reserved))
        {
            let hint = if reserved == "releasever" {
                "use \"releasever\" field instead"
            } else {
                "it is automatically filled in"
            };
            return Err(format!(
                "repovars: Treefile repo var \"{reserved}\" invalid; {hint}"
            ));
        }
    }
    if let Some(v) = cfg.selinux_label_version {
        if v > 1 {
            return Err(format!(
                "Invalid selinux-label-version: {v} (only 0 and 1 are supported)"
            ));
        }
    }
    let derived = cfg.derivation_keys_set();
    if !derived.is_empty() {
        let all = super::config_to_value(cfg);
        let only: serde_json::Map<String, serde_json::Value> = all
            .into_iter()
            .filter(|(k, _)| derived.contains(&k.as_str()))
            .collect();
        let json = serde_json::to_string_pretty(&only).unwrap_or_default();
        return Err(format!(
            "the following derivation fields are not supported:\n{json}\n(they are client-side only; remove them to compose)"
        ));
    }
    if let Some(script) = &externals.postprocess_script {
        if script.mode & 0o111 == 0 {
            return Err(format!(
                "postprocess-script must be executable: {} (chmod +x it)",
                script.path.display()
            ));
        }
    }
    if cfg.units.as_ref().is_some_and(|u| !u.is_empty()) && !cfg.machineid_compat() {
        return Err(
            "'units' directive is incompatible with machineid-compat = false (enable units with a systemd preset instead)"
                .to_string(),
        );
    }
    for f in cfg.remove_files.iter().flatten() {
        if f.starts_with('/') {
            return Err(format!(
                "remove-files: '{f}' must be relative to the root (write it without the leading '/')"
            ));
        }
        if f.split('/').any(|c| c == "..") {
            return Err(format!("remove-files: '{f}' must not contain '..'"));
        }
    }
    for b in cfg.cliwrap_binaries.iter().flatten() {
        if !CLIWRAP_BINARIES.contains(&b.as_str()) {
            return Err(format!(
                "cliwrap-binaries: Unknown cliwrap binary {b} (known: {})",
                CLIWRAP_BINARIES.join(", ")
            ));
        }
    }
    strict_ref(cfg, basearch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_files_paths() {
        for ok in [
            "/usr/bin/x",
            "usr/lib/x",
            "/etc/x",
            "/bin/x",
            "/sbin/x",
            "/lib/x",
            "/lib64/x",
        ] {
            assert!(add_files_path_is_valid(ok), "{ok}");
        }
        for bad in ["/usr/local/bin/x", "/var/x", "/opt/x", "/usr", "x"] {
            assert!(!add_files_path_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn refs() {
        for ok in ["fedora/x86_64/coreos/testing-devel", "a", "a.b-c_d/e"] {
            assert!(is_valid_ref(ok), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a b", "-a", "a/.b", "a/${x}"] {
            assert!(!is_valid_ref(bad), "{bad}");
        }
    }

    #[test]
    fn suffix() {
        let cfg = |s: &str| TreeComposeConfig {
            automatic_version_suffix: Some(s.into()),
            ..Default::default()
        };
        assert!(validate_config(&cfg("-")).is_ok());
        assert!(validate_config(&cfg("--")).is_err());
        assert!(validate_config(&cfg("é")).is_err());
        assert!(validate_config(&cfg("")).is_err());
    }

    #[test]
    fn compose_checks() {
        let ext = Externals::default();
        let base = TreeComposeConfig::default();
        assert!(validate_for_compose(&base, &ext, "x86_64", "x86_64").is_ok());
        assert!(validate_for_compose(&base, &ext, "aarch64", "x86_64")
            .unwrap_err()
            .contains("cross-composes"));
        let c = TreeComposeConfig {
            selinux_label_version: Some(2),
            ..Default::default()
        };
        assert!(validate_for_compose(&c, &ext, "x86_64", "x86_64").is_err());
        let c = TreeComposeConfig {
            override_remove: Some(["foo".to_string()].into()),
            ..Default::default()
        };
        let e = validate_for_compose(&c, &ext, "x86_64", "x86_64").unwrap_err();
        assert!(
            e.starts_with("the following derivation fields are not supported:\n{"),
            "{e}"
        );
        assert!(
            e.contains("\"override-remove\": [\n    \"foo\"\n  ]"),
            "{e}"
        );
        let c = TreeComposeConfig {
            units: Some(vec!["a.service".into()]),
            machineid_compat: Some(false),
            ..Default::default()
        };
        assert!(validate_for_compose(&c, &ext, "x86_64", "x86_64")
            .unwrap_err()
            .contains("incompatible"));
        for bad in ["/usr/share/man", "usr/../etc"] {
            let c = TreeComposeConfig {
                remove_files: Some(vec![bad.into()]),
                ..Default::default()
            };
            assert!(
                validate_for_compose(&c, &ext, "x86_64", "x86_64").is_err(),
                "{bad}"
            );
        }
        let c = TreeComposeConfig {
            treeref: Some("a/${stream}".into()),
            ..Default::default()
        };
        assert!(validate_for_compose(&c, &ext, "x86_64", "x86_64")
            .unwrap_err()
            .contains("Unknown variable reference ${stream}"));
        let c = TreeComposeConfig {
            repovars: Some([("basearch".to_string(), "x".to_string())].into()),
            ..Default::default()
        };
        assert!(validate_for_compose(&c, &ext, "x86_64", "x86_64").is_err());
    }
}

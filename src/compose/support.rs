//! Treefile keys that parse but that this composer does not implement yet.
//!
//! Nothing is silently ignored: before any work, [`check_supported`] refuses
//! (exit 4) every key whose value would change the result in a way we cannot
//! honour, naming the file and the key and saying what to do. Pure.

use crate::exit::unsupported;
use crate::treefile::{MetadataTarget, RpmdbBackend, SysUsers, Treefile};
use anyhow::Result;

/// The keys of `treefile` this composer cannot honour, with a hint each.
pub fn unsupported_keys(treefile: &Treefile) -> Vec<(&'static str, &'static str)> {
    let c = &treefile.config;
    let mut out = Vec::new();
    let non_empty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if non_empty(&c.ostree_layers) {
        out.push((
            "ostree-layers",
            "commit the layer content with add-files or an RPM instead",
        ));
    }
    if non_empty(&c.ostree_override_layers) {
        out.push((
            "ostree-override-layers",
            "commit the layer content with add-files or an RPM instead",
        ));
    }
    if c.cliwrap() || non_empty(&c.cliwrap_binaries) {
        out.push(("cliwrap", "cliwrap is deprecated in rpm-ostree; remove it"));
    }
    if c.ima() {
        out.push((
            "ima",
            "IMA signatures are not carried into the commit; remove ima: true",
        ));
    }
    if c.selinux_label_version() != 0 {
        out.push((
            "selinux-label-version",
            "libostree 2022.7 has no label version 1; use 0 (the default)",
        ));
    }
    if matches!(c.rpmdb(), RpmdbBackend::Bdb | RpmdbBackend::Ndb) {
        out.push((
            "rpmdb",
            "the rpmdb is written as sqlite; use rpmdb: sqlite, target or host",
        ));
    }
    if c.sysusers() == SysUsers::ComposeForced {
        out.push((
            "sysusers",
            "users come from the packages' own scriptlets; use compose-auto (the default)",
        ));
    }
    if c.repo_metadata() == MetadataTarget::Detached {
        out.push(("repo-metadata", "use inline (the default) or disabled"));
    }
    out
}

/// Refuse a treefile that uses keys we cannot honour (exit 4).
pub fn check_supported(treefile: &Treefile) -> Result<()> {
    let keys = unsupported_keys(treefile);
    if keys.is_empty() {
        return Ok(());
    }
    let list = keys
        .iter()
        .map(|(k, hint)| format!("  {k}: {hint}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(unsupported(format!(
        "{}: these keys are not supported yet:\n{list}",
        treefile.path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::treefile::{parse_treefile_str, Format};

    fn load(text: &str) -> Treefile {
        let config = parse_treefile_str(text, Format::Yaml, "t.yaml", Some("x86_64")).unwrap();
        Treefile {
            path: "t.yaml".into(),
            dir: ".".into(),
            basearch: "x86_64".into(),
            config,
            externals: Default::default(),
        }
    }

    #[test]
    fn plain_treefile_is_supported() {
        let t = load("ref: a/b\npackages: [foo]\nrpmdb: sqlite\nsysusers: compose-auto\n");
        assert!(unsupported_keys(&t).is_empty());
        assert!(check_supported(&t).is_ok());
    }

    #[test]
    fn each_unsupported_key_is_named() {
        for (yaml, key) in [
            ("ostree-layers: [overlay/05core]\n", "ostree-layers"),
            ("ostree-override-layers: [x]\n", "ostree-override-layers"),
            ("cliwrap: true\n", "cliwrap"),
            ("ima: true\n", "ima"),
            ("selinux-label-version: 1\n", "selinux-label-version"),
            ("rpmdb: bdb\n", "rpmdb"),
            ("sysusers: compose-forced\n", "sysusers"),
            ("repo-metadata: detached\n", "repo-metadata"),
        ] {
            let t = load(&format!("ref: a/b\n{yaml}"));
            let e = check_supported(&t).unwrap_err();
            assert_eq!(crate::exit::exit_code_for(&e), 4);
            assert!(format!("{e:#}").contains(key), "{yaml}: {e:#}");
        }
    }

    #[test]
    fn empty_layer_lists_are_fine() {
        let t = load("ref: a/b\nostree-layers: []\n");
        assert!(check_supported(&t).is_ok());
    }
}

//! The 49 rpm-ostree `treefile.rs` unit-test vectors rebuilt on disk under
//! `../shared/corpus/treefiles/coreos__rpm-ostree/rust-treefile-tests/`, each
//! asserting what that directory's EXPECTED.md entry says. The files are read
//! from ../shared at test time (never copied); if it is absent every test
//! prints that it was skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ostree_composer::exit::{exit_code_for, ErrorClass};
use ostree_composer::treefile::{
    parse_treefile_str, resolve, BootLocation, CheckGroups, CheckPasswd, Format, LoadOptions,
    MissingExternals, RepoPackage, ResolveOptions, Resolved, RpmdbBackend, TreeComposeConfig,
    Treefile, VarValue,
};

fn vectors_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/treefiles/coreos__rpm-ostree/rust-treefile-tests");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; treefile vector tests not run",
            d.display()
        );
        None
    }
}

/// Entry point of a vector directory.
fn entry(name: &str) -> Option<PathBuf> {
    let d = vectors_dir()?.join(name);
    for f in ["treefile.yaml", "treefile.json", "test.ks", "top.yaml"] {
        if d.join(f).exists() {
            return Some(d.join(f));
        }
    }
    panic!("vector {name} has no entry point");
}

fn resolve_with(
    name: &str,
    basearch: Option<&str>,
    vars: &[(&str, VarValue)],
) -> Option<anyhow::Result<Resolved>> {
    let path = entry(name)?;
    let opts = ResolveOptions {
        basearch: basearch.map(String::from),
        initial_variables: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        missing_externals: MissingExternals::Error,
    };
    Some(resolve(&path, &opts))
}

/// Resolve for x86_64 and expect success.
fn ok_x86(name: &str) -> Option<TreeComposeConfig> {
    let r = resolve_with(name, Some("x86_64"), &[])?;
    Some(r.unwrap_or_else(|e| panic!("{name}: {e:#}")).config)
}

fn ok_noarch(name: &str) -> Option<TreeComposeConfig> {
    let r = resolve_with(name, None, &[])?;
    Some(r.unwrap_or_else(|e| panic!("{name}: {e:#}")).config)
}

/// Resolve for x86_64, expect an invalid-input error containing every needle.
fn err_x86(name: &str, needles: &[&str]) {
    let Some(r) = resolve_with(name, Some("x86_64"), &[]) else {
        return;
    };
    let e = match r {
        Ok(_) => panic!("{name}: expected an error"),
        Err(e) => e,
    };
    let msg = format!("{e:#}");
    for n in needles {
        assert!(msg.contains(n), "{name}: error {msg:?} lacks {n:?}");
    }
    assert!(
        msg.contains("treefile.yaml"),
        "{name}: error {msg:?} does not name the file"
    );
    assert_eq!(
        exit_code_for(&e),
        ErrorClass::InvalidInput.exit_code(),
        "{name}: {msg}"
    );
}

fn pkgs(c: &TreeComposeConfig) -> Vec<String> {
    c.packages().into_iter().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const PRELUDE_PKGS: &[&str] = &["foo", "bar", "baz", "corge", "quuz >= 1.0"];

fn prelude_plus(extra: &[&str]) -> BTreeSet<String> {
    let mut s = set(PRELUDE_PKGS);
    s.extend(set(extra));
    s
}

#[test]
fn basic_valid() {
    let Some(c) = ok_x86("basic-valid") else {
        return;
    };
    assert_eq!(c.treeref.as_deref(), Some("exampleos/x86_64/blah"));
    assert_eq!(c.packages(), prelude_plus(&["grub2", "grub2-tools"]));
    assert_eq!(c.packages().len(), 7);
    assert_eq!(
        c.repo_packages,
        Some(vec![RepoPackage {
            repo: "baserepo".into(),
            packages: set(&["blah", "bloo"])
        }])
    );
    assert_eq!(
        c.repovars,
        Some(BTreeMap::from([(
            "foobar".to_string(),
            "bazboo".to_string()
        )]))
    );
    let md = c.metadata.clone().unwrap();
    assert_eq!(md["name"], "fedora-coreos");
    assert_eq!(md["deeper"]["answer"], 42);
    assert_eq!(c.check_passwd(), CheckPasswd::Previous);
    assert_eq!(c.check_groups(), CheckGroups::Previous);
    assert_eq!(c.platform_module.as_deref(), Some("platform:f36"));
    assert_eq!(c.ostree_override_layers, Some(vec!["bar".to_string()]));
    assert_eq!(c.lockfile_repos, Some(vec!["lockrepo".to_string()]));
    let noarch = ok_noarch("basic-valid").unwrap();
    assert_eq!(noarch.packages(), set(PRELUDE_PKGS));

    // digest_changes: ostree-layers and metadata are not hashed, cliwrap is.
    let path = entry("basic-valid").unwrap();
    let tf = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let base = tf.checksum();
    assert_eq!(base.len(), 64);
    let mut t2 = tf.clone();
    t2.config.ostree_layers = Some(vec!["other".into()]);
    t2.config
        .metadata
        .as_mut()
        .unwrap()
        .insert("x".into(), serde_json::json!("y"));
    assert_eq!(
        t2.checksum(),
        base,
        "ostree-layers/metadata must not change the checksum"
    );
    let mut t3 = tf.clone();
    t3.config.cliwrap = Some(true);
    assert_ne!(t3.checksum(), base, "cliwrap must change the checksum");
    assert_ne!(tf.checksum_with_layers(&["abc".into()]), base);
    let compact = tf.to_json_compact_for_hash();
    assert!(
        !compact.contains("ostree-layers") && !compact.contains("\"metadata\""),
        "{compact}"
    );
    assert!(
        compact.contains("\"ostree-override-layers\":[\"bar\"]"),
        "{compact}"
    );
    let pretty = tf.to_json_pretty();
    assert!(pretty.contains("\"ostree-layers\"") && pretty.contains("\"metadata\""));
    assert!(
        !pretty.contains("repovars") && !pretty.contains("variables"),
        "{pretty}"
    );
}

#[test]
fn basic_js_valid() {
    let Some(c) = ok_x86("basic-js-valid") else {
        return;
    };
    assert_eq!(c.treeref.as_deref(), Some("exampleos/x86_64/blah"));
    assert_eq!(
        c.packages(),
        set(&["foo", "bar", "baz", "grub2", "grub2-tools"])
    );
    // Unknown JSON keys are tolerated and kept (and serialized).
    assert!(c.extra.contains_key("comment-packages"));
    assert!(c.extra.contains_key("comment-packages-s390x"));
    let pretty = ostree_composer::treefile::config_to_json_pretty(&c);
    assert!(pretty.contains("\"comment-packages\""), "{pretty}");
}

#[test]
fn add_remove_files() {
    let Some(path) = entry("add-remove-files") else {
        return;
    };
    // Parsing the document alone (what the upstream test does) succeeds.
    let text = std::fs::read_to_string(&path).unwrap();
    let c = parse_treefile_str(&text, Format::Yaml, "treefile.yaml", Some("x86_64")).unwrap();
    assert_eq!(c.add_files.as_ref().unwrap().len(), 2);
    assert_eq!(c.remove_files.as_ref().unwrap().len(), 2);
    // A full load opens externals: the sources foo/baz do not exist.
    let e = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("add-files") && msg.contains("/foo"), "{msg}");
    assert_eq!(exit_code_for(&e), 3);
}

#[test]
fn rpmdb_target() {
    let Some(c) = ok_x86("rpmdb-target") else {
        return;
    };
    assert_eq!(c.rpmdb(), RpmdbBackend::Target);
    assert!(c.rpmdb().is_target());
    assert_eq!(TreeComposeConfig::default().rpmdb(), RpmdbBackend::Target);
}

#[test]
fn rpmdb_bdb() {
    let Some(c) = ok_x86("rpmdb-bdb") else { return };
    assert_eq!(c.rpmdb(), RpmdbBackend::Bdb);
    assert!(c.rpmdb().is_target());
}

#[test]
fn rpmdb_host() {
    let Some(c) = ok_x86("rpmdb-host") else {
        return;
    };
    assert_eq!(c.rpmdb(), RpmdbBackend::Host);
    assert!(!c.rpmdb().is_target());
}

fn check_releasever(name: &str, number: bool) {
    let Some(c) = ok_x86(name) else { return };
    assert_eq!(c.treeref.as_deref(), Some("exampleos/x86_64/30"));
    let json = serde_json::to_value(&c.releasever).unwrap();
    if number {
        assert_eq!(json, serde_json::json!(30));
    } else {
        assert_eq!(json, serde_json::json!("30"));
    }
    assert_eq!(c.automatic_version_prefix.as_deref(), Some("30"));
    assert_eq!(c.mutate_os_release.as_deref(), Some("30"));
    assert_eq!(c.rpmdb, None);
}

#[test]
fn releasever_string() {
    check_releasever("releasever-string", false);
}

#[test]
fn releasever_number() {
    check_releasever("releasever-number", true);
}

#[test]
fn no_releasever() {
    let Some(c) = ok_x86("no-releasever") else {
        return;
    };
    assert_eq!(c.automatic_version_prefix.as_deref(), Some("${releasever}"));
}

#[test]
fn variables() {
    let Some(c) = ok_x86("variables") else { return };
    assert_eq!(
        c.treeref.as_deref(),
        Some("exampleos/x86_64/30/bar/5/false")
    );
    assert_eq!(c.automatic_version_prefix.as_deref(), Some("30"));
}

#[test]
fn variables_reserved_releasever() {
    err_x86(
        "variables-reserved-releasever",
        &["cannot define reserved variable 'releasever'"],
    );
}

#[test]
fn variables_reserved_basearch() {
    err_x86(
        "variables-reserved-basearch",
        &["cannot define reserved variable 'basearch'"],
    );
}

#[test]
fn legacy_underscore_keys() {
    let Some(c) = ok_x86("legacy-underscore-keys") else {
        return;
    };
    assert_eq!(c.gpg_key.as_deref(), Some("foo"));
    assert_eq!(c.boot_location, Some(BootLocation::New));
    assert_eq!(c.default_target.as_deref(), Some("bar"));
    assert_eq!(c.automatic_version_prefix.as_deref(), Some("baz"));
    assert_eq!(c.rpmdb, Some(RpmdbBackend::Sqlite));
    // Legacy spellings are never serialized.
    let pretty = ostree_composer::treefile::config_to_json_pretty(&c);
    assert!(
        pretty.contains("\"gpg-key\"") && !pretty.contains("gpg_key"),
        "{pretty}"
    );
}

#[test]
fn legacy_kebab_keys() {
    let Some(c) = ok_x86("legacy-kebab-keys") else {
        return;
    };
    assert_eq!(c.gpg_key.as_deref(), Some("foo"));
    assert_eq!(c.boot_location, Some(BootLocation::New));
    assert_eq!(c.default_target.as_deref(), Some("bar"));
    assert_eq!(c.automatic_version_prefix.as_deref(), Some("baz"));
    assert_eq!(c.rpmdb, Some(RpmdbBackend::Bdb));
}

#[test]
fn invalid_legacy_both_gpg_key() {
    err_x86(
        "invalid-legacy-both-gpg-key",
        &["Cannot use new and legacy forms of gpg_key"],
    );
}

#[test]
fn invalid_legacy_both_boot_location() {
    err_x86(
        "invalid-legacy-both-boot-location",
        &["Cannot use new and legacy forms of boot_location"],
    );
}

#[test]
fn invalid_legacy_both_default_target() {
    err_x86(
        "invalid-legacy-both-default-target",
        &["Cannot use new and legacy forms of default_target"],
    );
}

#[test]
fn invalid_legacy_both_automatic_version_prefix() {
    err_x86(
        "invalid-legacy-both-automatic-version-prefix",
        &["Cannot use new and legacy forms of automatic_version_prefix"],
    );
}

#[test]
fn derive_override_remove() {
    let Some(c) = ok_x86("derive-override-remove") else {
        return;
    };
    assert_eq!(c.override_remove, Some(set(&["foo", "bar"])));
    // compose rejects derivation fields, naming them.
    let path = entry("derive-override-remove").unwrap();
    let tf = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let tf = Treefile {
        basearch: ostree_composer::treefile::host_basearch(),
        ..tf
    };
    let e = format!("{:#}", tf.validate_for_compose().unwrap_err());
    assert!(
        e.contains("the following derivation fields are not supported:\n{"),
        "{e}"
    );
    assert!(
        e.contains("\"override-remove\": [\n    \"bar\",\n    \"foo\"\n  ]"),
        "{e}"
    );
}

#[test]
fn invalid_install_langs() {
    err_x86("invalid-install_langs", &["Unknown fields: install_langs"]);
}

#[test]
fn invalid_arch_packages_type() {
    err_x86(
        "invalid-arch-packages-type",
        &["Invalid field packages-hal9000: expected array of strings"],
    );
}

#[test]
fn invalid_arch_packages_array_type() {
    err_x86(
        "invalid-arch-packages-array-type",
        &["Invalid field packages-hal9000: expected array of strings"],
    );
}

#[test]
fn boot_location_kernel_install() {
    let Some(c) = ok_x86("boot-location-kernel-install") else {
        return;
    };
    assert_eq!(c.boot_location(), BootLocation::KernelInstall);
}

#[test]
fn rojig() {
    let Some(c) = ok_x86("rojig") else { return };
    let r = c.rojig.unwrap();
    assert_eq!(r.name, "exampleos 35");
    assert_eq!(r.summary, "ExampleOS rojig base image 35 x86_64");
}

#[test]
fn includes() {
    let Some(c) = ok_noarch("includes") else {
        return;
    };
    assert_eq!(c.packages(), prelude_plus(&["fooinclude"]));
    assert_eq!(
        c.repo_packages,
        Some(vec![
            RepoPackage {
                repo: "foo2".into(),
                packages: set(&["qwert"])
            },
            RepoPackage {
                repo: "baserepo".into(),
                packages: set(&["blah", "bloo"])
            },
        ])
    );
    // vec merge: included file's repos first
    assert_eq!(
        c.repos,
        Some(vec!["foo".to_string(), "baserepo".to_string()])
    );
}

#[test]
fn arch_includes() {
    let Some(c) = ok_x86("arch-includes") else {
        return;
    };
    assert!(
        c.packages().contains("foo-x86_64-include"),
        "{:?}",
        pkgs(&c)
    );
    // With no basearch, arch-include is not applied at all.
    let c = ok_noarch("arch-includes").unwrap();
    assert!(!c.packages().contains("foo-x86_64-include"));
    // For s390x the named file does not exist: that is an error naming it.
    let e = resolve_with("arch-includes", Some("s390x"), &[])
        .unwrap()
        .unwrap_err();
    assert!(format!("{e:#}").contains("foo-s390x.yaml"), "{e:#}");
}

#[test]
fn kickstart() {
    let Some(c) = ok_x86("kickstart") else { return };
    assert_eq!(c.packages(), set(&["systemd", "nushell"]));
    assert_eq!(c.exclude_packages, Some(vec!["bash".to_string()]));
}

#[test]
fn treefile_with_kickstart() {
    let Some(c) = ok_noarch("treefile-with-kickstart") else {
        return;
    };
    assert_eq!(c.packages(), prelude_plus(&["systemd", "nushell"]));
    assert_eq!(c.packages().len(), 7);
    let ex: BTreeSet<String> = c.exclude_packages.unwrap().into_iter().collect();
    assert_eq!(ex, set(&["mypkg", "bash"]));
}

#[test]
fn conditional_includes() {
    let Some(c) = ok_x86("conditional-includes") else {
        return;
    };
    let expected = [
        "foo-x86_64-include",
        "foo-le",
        "foo-eq",
        "foo-ge",
        "foo-false",
        "foo-true",
        "foo-str",
        "foo-multi-a",
        "foo-multi-b",
        "foo-nested",
        "foo-more-nested",
    ];
    let p = c.packages();
    for e in expected {
        assert!(p.contains(e), "missing {e} in {p:?}");
    }
    assert_eq!(
        p,
        prelude_plus(&expected)
            .into_iter()
            .chain(set(&["grub2", "grub2-tools"]))
            .collect()
    );
}

#[test]
fn conditional_releasever_str() {
    let Some(c) = ok_x86("conditional-releasever-str") else {
        return;
    };
    assert!(c.packages().contains("foo"));
}

#[test]
fn conditional_inline() {
    let Some(c) = ok_x86("conditional-inline") else {
        return;
    };
    assert!(c.packages().contains("inlinedpkg"), "{:?}", pkgs(&c));
}

#[test]
fn initial_variables() {
    let Some(r) = resolve_with(
        "initial-variables",
        Some("x86_64"),
        &[("foobar", VarValue::String("nope".into()))],
    ) else {
        return;
    };
    assert!(!r.unwrap().config.packages().contains("inlinedpkg"));
    let r = resolve_with(
        "initial-variables",
        Some("x86_64"),
        &[("foobar", VarValue::String("bazboo".into()))],
    )
    .unwrap();
    assert!(r.unwrap().config.packages().contains("inlinedpkg"));
    // Through the public load API too.
    let path = entry("initial-variables").unwrap();
    let opts = LoadOptions {
        basearch: Some("x86_64".into()),
        initial_variables: BTreeMap::from([(
            "foobar".to_string(),
            VarValue::String("bazboo".into()),
        )]),
    };
    assert!(Treefile::load(&path, &opts)
        .unwrap()
        .config
        .packages()
        .contains("inlinedpkg"));
    err_x86("initial-variables", &["undefined variable 'foobar'"]);
}

#[test]
fn conditional_error_garbage_condition() {
    err_x86(
        "conditional-error-garbage-condition",
        &["invalid condition: garbage", "conditional-include"],
    );
}

#[test]
fn conditional_error_number_condition() {
    err_x86(
        "conditional-error-number-condition",
        &["invalid condition 5", "conditional-include"],
    );
}

#[test]
fn conditional_error_bad_operator() {
    err_x86(
        "conditional-error-bad-operator",
        &[
            "invalid condition",
            "expected one of ==, !=, >, >=, <, <= but got garbage",
        ],
    );
}

#[test]
fn conditional_error_unquoted_string_value() {
    err_x86(
        "conditional-error-unquoted-string-value",
        &["invalid condition: myvar == garbage"],
    );
}

#[test]
fn conditional_error_string_gt_number() {
    err_x86(
        "conditional-error-string-gt-number",
        &["mystr is not same type as 8"],
    );
}

#[test]
fn conditional_error_bool_le_number() {
    err_x86(
        "conditional-error-bool-le-number",
        &["mybool is not same type as 5"],
    );
}

#[test]
fn conditional_error_string_ordering() {
    err_x86(
        "conditional-error-string-ordering",
        &["invalid op for values 'str' and 'asd'"],
    );
}

#[test]
fn conditional_error_undefined_variable() {
    err_x86(
        "conditional-error-undefined-variable",
        &["undefined variable 'enoent'"],
    );
}

#[test]
fn merge_chain() {
    let Some(c) = ok_x86("merge-chain") else {
        return;
    };
    assert_eq!(
        c.packages(),
        prelude_plus(&["grub2", "grub2-tools", "some", "layered", "packages"])
    );
    assert_eq!(c.packages().len(), 10);
    let egm: BTreeSet<String> = c.etc_group_members.clone().unwrap().into_iter().collect();
    assert_eq!(egm, set(&["docker", "sudo"]));
    assert_eq!(
        serde_json::to_value(&c.releasever).unwrap(),
        serde_json::json!("35")
    );
    assert_eq!(c.rojig.as_ref().unwrap().name, "exampleos 35");
    let acm = c.add_commit_metadata.clone().unwrap();
    assert_eq!(acm["my-arch"], "my arch is x86_64");
    assert_eq!(acm["my-first-key"], "please don't override me");
    assert_eq!(acm["my-second-key"], "something better");
    assert_eq!(acm["my-third-key"], 1000);
    assert_eq!(acm["my-fourth-key"], serde_json::json!({"nested": "table"}));
    let md = c.metadata.clone().unwrap();
    assert_eq!(md["foo"], "baz");
    assert_eq!(md["bar"], "substituted overridden");
    assert_eq!(md["name"], "fedora-coreos");
    assert_eq!(md["deeper"], serde_json::json!({"answer": 9001}));
    let v = c.variables.clone().unwrap();
    assert_eq!(v["mystr"], VarValue::String("don't override me".into()));
    assert_eq!(v["mystr_override"], VarValue::String("overridden".into()));
    assert_eq!(v["mynum"], VarValue::Number(4));
    assert_eq!(v["mynum_override"], VarValue::Number(6));
    assert_eq!(v["mybool"], VarValue::Bool(true));
    assert_eq!(v["mybool_override"], VarValue::Bool(true));
    assert_eq!(v["releasever"], VarValue::String("35".into()));
}

#[test]
fn container_defaults() {
    let Some(c) = ok_x86("container-defaults") else {
        return;
    };
    assert!(c.container());
    assert!(c.tmp_is_dir());
    assert_eq!(c.boot_location(), BootLocation::Modules);
    assert!(!c.selinux());
    assert!(!c.preserve_passwd());
    assert_eq!(c.check_passwd(), CheckPasswd::None);
    assert_eq!(c.check_groups(), CheckGroups::None);
}

#[test]
fn edition_2024() {
    let Some(path) = entry("edition-2024") else {
        return;
    };
    let tf = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(tf.config.tmp_is_dir());
    assert_eq!(tf.config.boot_location(), BootLocation::Modules);
    assert!(tf.externals.finalize_d.is_empty());
    assert!(tf.to_json_pretty().contains("\"edition\": \"2024\""));
}

#[test]
fn check_passwd_none() {
    let Some(c) = ok_x86("check-passwd-none") else {
        return;
    };
    assert_eq!(c.check_passwd(), CheckPasswd::None);
}

#[test]
fn check_passwd_data() {
    let Some(c) = ok_x86("check-passwd-data") else {
        return;
    };
    let CheckPasswd::Data { entries } = c.check_passwd() else {
        panic!("expected data, got {:?}", c.check_passwd())
    };
    assert_eq!(entries["bin"].ids(), (1, 1));
    assert_eq!(entries["adm"].ids(), (3, 4));
    assert_eq!(entries["foo"].ids(), (2, 2));
    assert_eq!(entries.len(), 3);
}

#[test]
fn check_passwd_file() {
    let Some(path) = entry("check-passwd-file") else {
        return;
    };
    let tf = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        tf.config.check_passwd(),
        CheckPasswd::File {
            filename: "local-file".into()
        }
    );
    let f = tf
        .externals
        .check_passwd_file
        .as_ref()
        .expect("check-passwd file opened");
    assert!(f.path.ends_with("check-passwd-file/local-file"));
    assert!(f.content.is_empty());
}

#[test]
fn check_groups_none() {
    let Some(c) = ok_x86("check-groups-none") else {
        return;
    };
    assert_eq!(c.check_groups(), CheckGroups::None);
}

#[test]
fn check_groups_data() {
    let Some(c) = ok_x86("check-groups-data") else {
        return;
    };
    assert_eq!(
        c.check_groups(),
        CheckGroups::Data {
            entries: BTreeMap::from([("bin".to_string(), 1)])
        }
    );
}

#[test]
fn check_groups_file() {
    let Some(path) = entry("check-groups-file") else {
        return;
    };
    let tf = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        tf.config.check_groups(),
        CheckGroups::File {
            filename: "local-file".into()
        }
    );
    assert!(tf.externals.check_groups_file.is_some());
}

/// Every vector directory has a test above (guards against new vectors).
#[test]
fn every_vector_is_covered() {
    let Some(dir) = vectors_dir() else { return };
    let src = include_str!("treefile_vectors.rs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if !e.file_type().unwrap().is_dir() {
            continue;
        }
        n += 1;
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            src.contains(&format!("\"{name}\"")),
            "vector {name} has no test"
        );
    }
    assert_eq!(n, 49);
}

//! Merging an included treefile into its includer (reference §2 "Merge"
//! column, rpm-ostree `treefile_merge`).
//!
//! * first: the includer's value wins; otherwise the included one is taken
//!   (so the earlier of two includes wins).
//! * vec: `included ++ includer`.
//! * set: union.
//! * map: key union, includer wins per key (shallow).
//! * none: only the top-level value survives (`platform-module`, unknown JSON keys).
//!
//! `include`, `arch-include` and `conditional-include` are consumed by the
//! resolver before merging and are not touched here.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{OverrideReplace, RepoPackage, TreeComposeConfig};

fn first<T>(dest: &mut Option<T>, src: Option<T>) {
    if dest.is_none() {
        *dest = src;
    }
}

fn vec<T>(dest: &mut Option<Vec<T>>, src: Option<Vec<T>>) {
    if let Some(mut s) = src {
        if let Some(d) = dest.take() {
            s.extend(d);
        }
        *dest = Some(s);
    }
}

fn set<T: Ord>(dest: &mut Option<BTreeSet<T>>, src: Option<BTreeSet<T>>) {
    if let Some(s) = src {
        dest.get_or_insert_with(BTreeSet::new).extend(s);
    }
}

fn map<K: Ord, V>(dest: &mut Option<BTreeMap<K, V>>, src: Option<BTreeMap<K, V>>) {
    if let Some(mut s) = src {
        if let Some(d) = dest.take() {
            s.extend(d);
        }
        *dest = Some(s);
    }
}

/// Merge `src` (an included file) into `dest` (its includer).
pub fn merge(dest: &mut TreeComposeConfig, src: TreeComposeConfig) {
    let TreeComposeConfig {
        packages,
        repo_packages,
        cliwrap,
        cliwrap_binaries,
        base_refspec,
        container_image_reference,
        packages_local,
        packages_local_fileoverride,
        override_remove,
        ex_override_replace,
        override_replace_local,
        initramfs,
        custom,
        override_commit,
        unconfigured_state,
        edition,
        treeref,
        metadata,
        basearch,
        rojig,
        repos,
        lockfile_repos,
        selinux,
        ignore_devices,
        selinux_label_version,
        sysusers,
        ima,
        gpg_key,
        include: _,
        arch_include: _,
        bootstrap_packages,
        ostree_layers,
        ostree_override_layers,
        exclude_packages,
        platform_module: _,
        container,
        recommends,
        documentation,
        install_langs,
        initramfs_args,
        no_initramfs,
        readonly_executables,
        boot_location,
        tmp_is_dir,
        opt_usrlocal,
        units,
        default_target,
        machineid_compat,
        releasever,
        automatic_version_prefix,
        automatic_version_suffix,
        mutate_os_release,
        etc_group_members,
        preserve_passwd,
        check_passwd,
        check_groups,
        ignore_removed_users,
        ignore_removed_groups,
        postprocess_script,
        postprocess,
        add_files,
        remove_files,
        remove_from_packages,
        add_commit_metadata,
        repo_metadata,
        advisories_metadata,
        rpmdb,
        rpmdb_normalize,
        container_cmd,
        variables,
        repovars,
        conditional_include: _,
        extra: _,
    } = src;
    let d = dest;
    set(&mut d.packages, packages);
    vec(&mut d.repo_packages, repo_packages);
    // Like rpm-ostree, the override de-duplication runs on every merge (and
    // only then: a lone file keeps its own duplicates).
    if let Some(rp) = d.repo_packages.take() {
        d.repo_packages = Some(dedupe_repo_packages(rp));
    }
    first(&mut d.cliwrap, cliwrap);
    vec(&mut d.cliwrap_binaries, cliwrap_binaries);
    first(&mut d.base_refspec, base_refspec);
    first(&mut d.container_image_reference, container_image_reference);
    map(&mut d.packages_local, packages_local);
    map(
        &mut d.packages_local_fileoverride,
        packages_local_fileoverride,
    );
    set(&mut d.override_remove, override_remove);
    vec(&mut d.ex_override_replace, ex_override_replace);
    if let Some(r) = d.ex_override_replace.take() {
        d.ex_override_replace = Some(dedupe_override_replace(r));
    }
    map(&mut d.override_replace_local, override_replace_local);
    first(&mut d.initramfs, initramfs);
    first(&mut d.custom, custom);
    first(&mut d.override_commit, override_commit);
    first(&mut d.unconfigured_state, unconfigured_state);
    first(&mut d.edition, edition);
    first(&mut d.treeref, treeref);
    map(&mut d.metadata, metadata);
    first(&mut d.basearch, basearch);
    first(&mut d.rojig, rojig);
    vec(&mut d.repos, repos);
    vec(&mut d.lockfile_repos, lockfile_repos);
    first(&mut d.selinux, selinux);
    first(&mut d.ignore_devices, ignore_devices);
    first(&mut d.selinux_label_version, selinux_label_version);
    first(&mut d.sysusers, sysusers);
    first(&mut d.ima, ima);
    first(&mut d.gpg_key, gpg_key);
    set(&mut d.bootstrap_packages, bootstrap_packages);
    vec(&mut d.ostree_layers, ostree_layers);
    vec(&mut d.ostree_override_layers, ostree_override_layers);
    vec(&mut d.exclude_packages, exclude_packages);
    first(&mut d.container, container);
    first(&mut d.recommends, recommends);
    first(&mut d.documentation, documentation);
    vec(&mut d.install_langs, install_langs);
    vec(&mut d.initramfs_args, initramfs_args);
    first(&mut d.no_initramfs, no_initramfs);
    first(&mut d.readonly_executables, readonly_executables);
    first(&mut d.boot_location, boot_location);
    first(&mut d.tmp_is_dir, tmp_is_dir);
    first(&mut d.opt_usrlocal, opt_usrlocal);
    vec(&mut d.units, units);
    first(&mut d.default_target, default_target);
    first(&mut d.machineid_compat, machineid_compat);
    first(&mut d.releasever, releasever);
    first(&mut d.automatic_version_prefix, automatic_version_prefix);
    first(&mut d.automatic_version_suffix, automatic_version_suffix);
    first(&mut d.mutate_os_release, mutate_os_release);
    vec(&mut d.etc_group_members, etc_group_members);
    first(&mut d.preserve_passwd, preserve_passwd);
    first(&mut d.check_passwd, check_passwd);
    first(&mut d.check_groups, check_groups);
    set(&mut d.ignore_removed_users, ignore_removed_users);
    set(&mut d.ignore_removed_groups, ignore_removed_groups);
    first(&mut d.postprocess_script, postprocess_script);
    vec(&mut d.postprocess, postprocess);
    vec(&mut d.add_files, add_files);
    vec(&mut d.remove_files, remove_files);
    vec(&mut d.remove_from_packages, remove_from_packages);
    map(&mut d.add_commit_metadata, add_commit_metadata);
    first(&mut d.repo_metadata, repo_metadata);
    first(&mut d.advisories_metadata, advisories_metadata);
    first(&mut d.rpmdb, rpmdb);
    first(&mut d.rpmdb_normalize, rpmdb_normalize);
    first(&mut d.container_cmd, container_cmd);
    map(&mut d.variables, variables);
    map(&mut d.repovars, repovars);
}

/// Same de-duplication for `ex-override-replace` entries.
pub fn dedupe_override_replace(entries: Vec<OverrideReplace>) -> Vec<OverrideReplace> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<OverrideReplace> = Vec::new();
    for mut e in entries.into_iter().rev() {
        e.packages.retain(|p| seen.insert(p.clone()));
        if !e.packages.is_empty() {
            out.push(e);
        }
    }
    out.reverse();
    out
}

/// `repo-packages` override de-duplication: a package keeps only its last
/// occurrence across entries; entries left empty are dropped.
pub fn dedupe_repo_packages(entries: Vec<RepoPackage>) -> Vec<RepoPackage> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<RepoPackage> = Vec::new();
    for mut e in entries.into_iter().rev() {
        e.packages.retain(|p| seen.insert(p.clone()));
        if !e.packages.is_empty() {
            out.push(e);
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(json: serde_json::Value) -> TreeComposeConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn rules() {
        let mut top = cfg(serde_json::json!({
            "ref": "top", "packages": ["a"], "postprocess": ["top"],
            "metadata": {"k": "top", "deep": {"x": 1}}, "platform-module": "p:top"
        }));
        let a = cfg(serde_json::json!({
            "ref": "a", "selinux": false, "packages": ["b"], "postprocess": ["a"],
            "metadata": {"k": "a", "only-a": 1, "deep": {"y": 2}}, "platform-module": "p:a"
        }));
        let b =
            cfg(serde_json::json!({"selinux": true, "postprocess": ["b"], "recommends": false}));
        merge(&mut top, a);
        merge(&mut top, b);
        assert_eq!(top.treeref.as_deref(), Some("top"));
        assert_eq!(top.selinux, Some(false), "earlier include wins");
        assert_eq!(top.recommends, Some(false));
        assert_eq!(top.postprocess.unwrap(), ["b", "a", "top"]);
        assert_eq!(top.packages.unwrap().len(), 2);
        let md = top.metadata.unwrap();
        assert_eq!(md["k"], "top");
        assert_eq!(md["only-a"], 1);
        assert_eq!(
            md["deep"],
            serde_json::json!({"x": 1}),
            "maps merge shallowly"
        );
        assert_eq!(top.platform_module.as_deref(), Some("p:top"));
    }

    #[test]
    fn platform_module_not_merged() {
        let mut top = TreeComposeConfig::default();
        merge(&mut top, cfg(serde_json::json!({"platform-module": "p:a"})));
        assert_eq!(top.platform_module, None);
    }

    #[test]
    fn repo_packages_dedupe() {
        let rp = |r: &str, p: &[&str]| RepoPackage {
            repo: r.into(),
            packages: p.iter().map(|s| s.to_string()).collect(),
        };
        let out = dedupe_repo_packages(vec![
            rp("foo", &["qwert"]),
            rp("foob", &["blah"]),
            rp("foo2", &["qwert"]),
            rp("baserepo", &["blah", "bloo"]),
        ]);
        assert_eq!(
            out,
            vec![rp("foo2", &["qwert"]), rp("baserepo", &["blah", "bloo"])]
        );
    }

    proptest! {
        #[test]
        fn vec_and_first_laws(
            top in proptest::option::of(proptest::collection::vec("[a-z]{1,3}", 0..4)),
            inc in proptest::option::of(proptest::collection::vec("[a-z]{1,3}", 0..4)),
            tref in proptest::option::of("[a-z]{1,4}"),
            iref in proptest::option::of("[a-z]{1,4}"),
        ) {
            let mut d = TreeComposeConfig { units: top.clone(), treeref: tref.clone(), packages: top.clone().map(|v| v.into_iter().collect()), ..Default::default() };
            let s = TreeComposeConfig { units: inc.clone(), treeref: iref.clone(), packages: inc.clone().map(|v| v.into_iter().collect()), ..Default::default() };
            merge(&mut d, s);
            let expect_units = match (&top, &inc) {
                (None, None) => None,
                (t, i) => Some(i.clone().unwrap_or_default().into_iter().chain(t.clone().unwrap_or_default()).collect::<Vec<_>>()),
            };
            prop_assert_eq!(d.units, expect_units);
            prop_assert_eq!(d.treeref, tref.or(iref));
            let expect_pkgs: Option<BTreeSet<String>> = match (&top, &inc) {
                (None, None) => None,
                (t, i) => Some(t.iter().chain(i.iter()).flatten().cloned().collect()),
            };
            prop_assert_eq!(d.packages, expect_pkgs);
        }

        #[test]
        fn dedupe_keeps_each_package_once_at_its_last_position(
            entries in proptest::collection::vec(("[a-c]", proptest::collection::btree_set("[a-e]", 0..4)), 0..6)
        ) {
            let input: Vec<RepoPackage> = entries.into_iter().map(|(r, p)| RepoPackage { repo: r, packages: p }).collect();
            let out = dedupe_repo_packages(input.clone());
            let mut all = BTreeSet::new();
            for e in &out {
                prop_assert!(!e.packages.is_empty());
                for p in &e.packages { prop_assert!(all.insert(p.clone())); }
            }
            let expect: BTreeSet<String> = input.iter().flat_map(|e| e.packages.iter().cloned()).collect();
            prop_assert_eq!(all, expect);
            // the last input entry naming a package is the one that keeps it
            for p in out.iter().flat_map(|e| e.packages.iter()) {
                let last = input.iter().rev().find(|e| e.packages.contains(p)).unwrap();
                let kept = out.iter().find(|e| e.packages.contains(p)).unwrap();
                prop_assert_eq!(&last.repo, &kept.repo);
            }
        }
    }
}

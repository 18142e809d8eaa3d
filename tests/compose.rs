//! End-to-end `compose tree` against real RPMs, real dnf and real OSTree repos,
//! checked with the `ostree` and `rpm` CLIs.
mod common;

use common::compose_fixture::*;
use common::composer_bin;
use std::process::Command;

#[test]
fn compose_tree_end_to_end() {
    let f = fixture();
    let json = f.dir.join("compose.json");
    let out = compose(&f, &[&format!("--write-composejson-to={}", json.display())]);
    assert!(out.status.success(), "{}", text(&out));
    let commit = rev(&f.repo, REF);
    assert_eq!(commit.len(), 64);

    // Packages: the newest app, its dependency and the weak dependency.
    let ls = ostree(&f.repo, &["ls", "-R", REF]);
    for path in [
        "/usr/bin/app",
        "/usr/lib64/libfoo.so.1",
        "/usr/share/weakdep/data",
        "/usr/etc/app.conf",
        "/usr/etc/extra.conf",
        "/usr/share/postprocess-ran",
        "/usr/share/app/post-ran",
        "/usr/lib/passwd",
        "/usr/lib/group",
        "/usr/share/rpm",
        "/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf",
        "/usr/lib/modules/6.1.0-test/vmlinuz",
        "/usr/lib/modules/6.1.0-test/initramfs.img",
        "/usr/share/rpm-ostree/treefile.json",
        "/usr/etc/systemd/system/multi-user.target.wants/app.service",
    ] {
        assert!(
            ls.lines()
                .any(|l| l.ends_with(path) || l.contains(&format!("{path} ->"))),
            "{path} missing from the commit:\n{ls}"
        );
    }
    for absent in [
        "/usr/share/doc/app/README",
        "/usr/share/app/remove-me",
        " /etc/",
    ] {
        assert!(!ls.contains(absent), "{absent} should not be in the commit");
    }
    assert_eq!(
        ostree(&f.repo, &["cat", REF, "/usr/bin/app"]),
        "#!/bin/sh\necho app 2.0\n"
    );
    assert_eq!(
        ostree(&f.repo, &["cat", REF, "/usr/share/postprocess-ran"]),
        "hello\n"
    );

    // passwd/group split: root stays in /usr/etc, system users go to /usr/lib.
    let etc_passwd = ostree(&f.repo, &["cat", REF, "/usr/etc/passwd"]);
    let lib_passwd = ostree(&f.repo, &["cat", REF, "/usr/lib/passwd"]);
    assert!(etc_passwd.starts_with("root:"), "{etc_passwd}");
    assert!(!etc_passwd.contains("demo:"), "{etc_passwd}");
    assert!(lib_passwd.contains("demo:x:900:900:"), "{lib_passwd}");

    // /var content became tmpfiles.d lines with names resolved.
    let autovar = ostree(
        &f.repo,
        &["cat", REF, "/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf"],
    );
    assert!(
        autovar
            .lines()
            .any(|l| l.starts_with("d /var/lib/app 0750 demo demo")),
        "{autovar}"
    );

    // Metadata.
    assert_eq!(meta(&f.repo, REF, "version"), "'1.0'");
    assert_eq!(meta(&f.repo, REF, "fixture"), "'yes'");
    assert_eq!(meta(&f.repo, REF, "ostree.bootable"), "true");
    assert_eq!(meta(&f.repo, REF, "ostree.linux"), format!("'{KVER}'"));
    let inputhash = meta(&f.repo, REF, "rpmostree.inputhash");
    assert_eq!(inputhash.trim_matches('\'').len(), 64, "{inputhash}");
    let pkglist = meta(&f.repo, REF, "rpmostree.rpmdb.pkglist");
    assert!(
        pkglist.contains("('app', '0', '2.0', '1', 'x86_64')"),
        "{pkglist}"
    );

    // The compose JSON has rpm-ostree's keys.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["ref"], REF);
    assert_eq!(j["ostree-commit"], commit.as_str());
    assert_eq!(j["ostree-version"], "1.0");
    assert_eq!(j["rpm-ostree-inputhash"], inputhash.trim_matches('\''));
    assert!(j["ostree-content-bytes-written"].as_u64().unwrap() > 0);
    // Our addition: the kernel, with `no-initramfs` and the host's depmod.
    assert_eq!(j["kernel"]["version"], KVER);
    assert_eq!(j["kernel"]["module-index"], "written");
    assert!(
        ["packaged", "none"].contains(&j["kernel"]["initramfs"].as_str().unwrap()),
        "{}",
        j["kernel"]
    );

    // The rpmdb in the commit is readable by rpm.
    let co = f.dir.join("checkout");
    ostree(
        &f.repo,
        &["checkout", "--user-mode", REF, co.to_str().unwrap()],
    );
    let out = Command::new("rpm")
        .arg("--dbpath")
        .arg(co.join("usr/share/rpm"))
        .args(["-qa", "--qf", "%{NAME}-%{VERSION}\\n"])
        .output()
        .unwrap();
    let pkgs = String::from_utf8_lossy(&out.stdout);
    assert!(
        pkgs.contains("app-2.0") && pkgs.contains("libfoo-1.0"),
        "{pkgs}"
    );
    assert!(ostree_ok(&f.repo, &["fsck"]));

    // No change: no new commit.
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No apparent changes since previous commit")
            || String::from_utf8_lossy(&out.stdout)
                .contains("No apparent changes since previous commit"),
        "{}",
        text(&out)
    );
    assert_eq!(rev(&f.repo, REF), commit);

    // --force-nocache: a new commit, child of the first, next version.
    let out = compose(&f, &["--force-nocache"]);
    assert!(out.status.success(), "{}", text(&out));
    let second = rev(&f.repo, REF);
    assert_ne!(second, commit);
    assert_eq!(rev(&f.repo, &format!("{REF}^")), commit);
    assert_eq!(meta(&f.repo, REF, "version"), "'1.0.1'");

    // --no-parent
    let out = compose(&f, &["--force-nocache", "--no-parent"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!ostree_ok(&f.repo, &["rev-parse", &format!("{REF}^")]));
}

#[test]
fn write_commitid_leaves_the_ref() {
    let f = fixture();
    let idfile = f.dir.join("commitid");
    let out = compose(&f, &[&format!("--write-commitid-to={}", idfile.display())]);
    assert!(out.status.success(), "{}", text(&out));
    let id = std::fs::read_to_string(&idfile).unwrap();
    assert_eq!(id.len(), 64, "no newline, 64 hex: {id:?}");
    assert!(
        !ostree_ok(&f.repo, &["rev-parse", REF]),
        "ref must not be set"
    );
    assert!(ostree_ok(&f.repo, &["show", &id]));
}

#[test]
fn reproducible_with_source_date_epoch() {
    let f = fixture();
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let first = rev(&f.repo, REF);
    // A fresh repo and a fresh cache: the same commit.
    let repo2 = f.dir.join("repo2");
    init_repo(&repo2, "bare-user");
    let cache2 = f.dir.join("cache2");
    std::fs::create_dir_all(&cache2).unwrap();
    let out = Command::new(composer_bin())
        .args(["compose", "tree"])
        .arg(format!("--repo={}", repo2.display()))
        .arg(format!("--cachedir={}", cache2.display()))
        .arg(&f.manifest)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        rev(&repo2, REF),
        first,
        "the same inputs must give the same commit"
    );
}

#[test]
fn failure_leaves_ref_untouched() {
    let f = fixture();
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = rev(&f.repo, REF);
    // A failing postprocess script.
    let broken = MANIFEST.replace("set -e", "set -e\n    exit 7");
    std::fs::write(&f.manifest, broken).unwrap();
    let out = compose(&f, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postprocess"),
        "{}",
        text(&out)
    );
    assert_eq!(rev(&f.repo, REF), before);
    assert!(ostree_ok(&f.repo, &["fsck"]));
    // A missing package.
    std::fs::write(
        &f.manifest,
        MANIFEST.replace("- app\n", "- app nosuchpkg\n"),
    )
    .unwrap();
    let out = compose(&f, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nosuchpkg"),
        "{}",
        text(&out)
    );
    assert_eq!(rev(&f.repo, REF), before);
    // The next good run works without clean-up.
    std::fs::write(&f.manifest, MANIFEST).unwrap();
    let out = compose(&f, &["--force-nocache"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn print_only_and_dry_run() {
    let f = fixture();
    let out = Command::new(composer_bin())
        .args(["compose", "tree", "--print-only"])
        .arg(&f.manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ref"], REF);
    assert_eq!(j["packages"].as_array().unwrap().len(), 5);

    let out = compose(&f, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !ostree_ok(&f.repo, &["rev-parse", REF]),
        "dry run must not commit"
    );
}

#[test]
fn readonly_executables_and_unsupported_keys() {
    let f = fixture();
    std::fs::write(
        &f.manifest,
        format!("{MANIFEST}readonly-executables: true\n"),
    )
    .unwrap();
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let ls = ostree(&f.repo, &["ls", REF, "/usr/bin/app", "/usr/etc/app.conf"]);
    assert!(
        ls.contains("-00555 0 0") && ls.contains("/usr/bin/app"),
        "{ls}"
    );
    assert!(ls.contains("-00644 0 0"), "{ls}");
    let before = rev(&f.repo, REF);

    // A key we cannot honour is refused before any work, naming the key.
    std::fs::write(
        &f.manifest,
        format!("{MANIFEST}ostree-layers: [overlay/05core]\n"),
    )
    .unwrap();
    let out = compose(&f, &["--force-nocache"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("ostree-layers"), "{}", text(&out));
    assert_eq!(rev(&f.repo, REF), before);
}

//! Ports of the assertions of rpm-ostree's compose integration tests
//! (reference §8.2: test-misc-tweaks, test-mutate-os-release, test-lockfile,
//! test-no-initramfs, test-machineid-compat, test-basic-unified) that apply to
//! this tool, run through the real binary against fixture RPMs and checked
//! with the `ostree` CLI. Cases already covered by `tests/compose.rs` are not
//! repeated here.
mod common;

use common::compose_fixture::*;
use common::rpmfixture::*;
use std::path::Path;
use std::process::Command;

/// The standard fixture packages plus `extra`, minus the packages `skip` rejects.
fn rpms_dir(f: &Fixture) -> std::path::PathBuf {
    f._tmp.path().join("rpms")
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

fn ls_entry(repo: &Path, r: &str, path: &str) -> String {
    ostree(repo, &["ls", r, "-d", path]).trim().to_string()
}

fn exists(repo: &Path, r: &str, path: &str) -> bool {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["ls", r, "-d", path])
        .output()
        .unwrap()
        .status
        .success()
}

fn assert_ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", text(o));
}

/// Head of a manifest: the fixture system without the compose.rs extras.
/// `packages` comes last so a test can append list items.
const BASE: &str = r#"
repos: [fixture]
documentation: false
automatic-version-prefix: "1.0"
boot-location: modules
no-initramfs: true
selinux: false
packages:
  - filesystem setup busybox
  - app
  - kernel-core
"#;

fn pkg_pair_sharing_a_file() -> Vec<Pkg> {
    vec![
        Pkg::new("shared-a", "1.0")
            .requires("filesystem")
            .entry(Entry::file("/usr/share/shared/common", "common\n"))
            .entry(Entry::file("/usr/share/shared/only-a", "a\n")),
        Pkg::new("shared-b", "1.0")
            .requires("filesystem")
            .entry(Entry::file("/usr/share/shared/common", "common\n"))
            .entry(Entry::file("/usr/share/shared/only-b", "b\n")),
    ]
}

/// test-misc-tweaks.sh: one compose exercising many small treefile keys.
#[test]
fn misc_tweaks() {
    let manifest = format!(
        r#"ref: test/x86_64/base
include: [inc1.yaml, inc2.yaml]
{BASE}
  - shared-a shared-b
recommends: true
exclude-packages: [weakdep]
machineid-compat: true
units: [app.service]
default-target: multi-user.target
tmp-is-dir: false
opt-usrlocal: root
remove-from-packages:
  - [shared-a, "/usr/share/shared/.*"]
add-files:
  - [bar.txt, /etc/bar.txt]
  - [extra.conf, /usr/share/extra.conf]
postprocess:
  - |
    #!/bin/sh
    set -e
    echo inline >> /usr/share/pp-order
postprocess-script: pp-script.sh
"#
    );
    let f = fixture_with(pkg_pair_sharing_a_file(), |_| false, &manifest);
    for (name, tag) in [("inc1.yaml", "inc1"), ("inc2.yaml", "inc2")] {
        write(
            &f.dir,
            name,
            &format!(
                "postprocess:\n  - |\n    #!/bin/sh\n    set -e\n    echo {tag} >> /usr/share/pp-order\n"
            ),
        );
    }
    write(
        &f.dir,
        "pp-script.sh",
        "#!/bin/sh\nset -e\necho script >> /usr/share/pp-order\n",
    );
    Command::new("chmod")
        .arg("0755")
        .arg(f.dir.join("pp-script.sh"))
        .status()
        .unwrap();
    write(&f.dir, "bar.txt", "bar\n");
    // finalize.d: executables run from the host in filename order, cwd = the
    // rootfs (usr/etc, no etc), RPMOSTREE_WORKDIR = the treefile's directory;
    // a file without the exec bit is skipped.
    let fin = f.dir.join("finalize.d");
    std::fs::create_dir_all(&fin).unwrap();
    for (name, body, mode) in [
        ("20-b", "#!/bin/sh\nset -e\necho b >> usr/share/finalize-order\n", "0755"),
        (
            "10-a",
            "#!/bin/sh\nset -e\ntest -d usr/etc\ntest ! -e etc\necho a >> usr/share/finalize-order\n\
             echo \"$RPMOSTREE_WORKDIR\" > usr/share/finalize-workdir\n",
            "0755",
        ),
        ("30-noexec", "#!/bin/sh\necho c >> usr/share/finalize-order\n", "0644"),
    ] {
        write(&fin, name, body);
        Command::new("chmod")
            .arg(mode)
            .arg(fin.join(name))
            .status()
            .unwrap();
    }
    let out = compose(&f, &[]);
    assert_ok(&out);
    let r = REF;
    let repo = &f.repo;

    // default-target and units.
    let dt = ls_entry(repo, r, "/usr/lib/systemd/system/default.target");
    assert!(
        dt.starts_with('l') && dt.ends_with("default.target -> multi-user.target"),
        "{dt}"
    );
    let unit = ls_entry(
        repo,
        r,
        "/usr/etc/systemd/system/multi-user.target.wants/app.service",
    );
    assert!(
        unit.ends_with("-> /usr/lib/systemd/system/app.service"),
        "{unit}"
    );
    // exclude-packages drops the weak dependency even with recommends: true.
    assert!(!exists(repo, r, "/usr/share/weakdep/data"));
    let pkglist = meta(repo, r, "rpmostree.rpmdb.pkglist");
    assert!(!pkglist.contains("'weakdep'"), "{pkglist}");
    // documentation: false
    assert!(!exists(repo, r, "/usr/share/doc/app/README"));
    assert!(exists(repo, r, "/usr/bin/app"));
    // remove-from-packages: shared-a's own file goes, the file shared-b also owns stays.
    assert!(!exists(repo, r, "/usr/share/shared/only-a"));
    assert!(exists(repo, r, "/usr/share/shared/only-b"));
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/share/shared/common"]),
        "common\n"
    );
    // Postprocess order: includes first (later includes before earlier ones),
    // then the inline scripts, then postprocess-script.
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/share/pp-order"]),
        "inc2\ninc1\ninline\nscript\n"
    );
    assert!(!exists(
        repo,
        r,
        "/usr/bin/rpmostree-treefile-postprocess-script"
    ));
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/share/finalize-order"]),
        "a\nb\n"
    );
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/share/finalize-workdir"]).trim(),
        f.dir.to_str().unwrap()
    );
    // tmp-is-dir: false
    let tmp = ls_entry(repo, r, "/tmp");
    assert!(
        tmp.starts_with('l') && tmp.ends_with("/tmp -> sysroot/tmp"),
        "{tmp}"
    );
    // opt-usrlocal: root -> real directories.
    for d in ["/opt", "/usr/local"] {
        let e = ls_entry(repo, r, d);
        assert!(e.starts_with('d'), "{d}: {e}");
    }
    // add-files: /etc goes to /usr/etc.
    assert_eq!(ostree(repo, &["cat", r, "/usr/etc/bar.txt"]), "bar\n");
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/share/extra.conf"]),
        "extra=1\n"
    );
    // machineid-compat: true -> an empty /usr/etc/machine-id.
    assert_eq!(ostree(repo, &["cat", r, "/usr/etc/machine-id"]), "");
}

/// test-misc-tweaks.sh "bad add-files path" error: named, non-zero, no ref.
#[test]
fn bad_add_files_path_fails() {
    let manifest = format!(
        "ref: test/x86_64/base\n{BASE}add-files:\n  - [does-not-exist.txt, /etc/foo.txt]\n"
    );
    let f = fixture_with(vec![], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("does-not-exist.txt"), "{}", text(&out));
    assert!(!ostree_ok(&f.repo, &["rev-parse", REF]));
}

/// test-machineid-compat.sh: `units` conflicts with `machineid-compat: false`;
/// without them there is no machine-id, and without `ref` the commit is
/// written but no ref. Also test-misc-tweaks' `recommends: false`.
#[test]
fn machineid_compat_false_and_no_ref() {
    let manifest =
        format!("{BASE}machineid-compat: false\nrecommends: false\nunits: [app.service]\n");
    let f = fixture_with(vec![], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("machineid-compat"), "{}", text(&out));

    std::fs::write(
        &f.manifest,
        format!("{BASE}machineid-compat: false\nrecommends: false\n"),
    )
    .unwrap();
    let json = f.dir.join("compose.json");
    let out = compose(&f, &[&format!("--write-composejson-to={}", json.display())]);
    assert_ok(&out);
    assert_eq!(ostree(&f.repo, &["refs"]).trim(), "", "no ref is written");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let commit = j["ostree-commit"].as_str().unwrap().to_string();
    assert_eq!(commit.len(), 64, "{j}");
    assert!(exists(&f.repo, &commit, "/usr/bin/app"));
    assert!(!exists(&f.repo, &commit, "/usr/etc/machine-id"));
    // recommends: false leaves the weak dependency out.
    assert!(!exists(&f.repo, &commit, "/usr/share/weakdep/data"));
}

/// test-mutate-os-release.sh
#[test]
fn mutate_os_release() {
    let release = Pkg::new("fixture-release", "38")
        .requires("filesystem")
        .entry(Entry::file(
            "/usr/lib/os-release",
            "NAME=Fixture\nVERSION=\"38 (Test Edition)\"\nID=fixture\n\nVERSION_ID=38\nPRETTY_NAME=\"Fixture 38 (Test Edition)\"\n",
        ))
        .entry(Entry::symlink("/etc/os-release", "../usr/lib/os-release"));
    let manifest =
        format!("ref: test/x86_64/base\n{BASE}  - fixture-release\nmutate-os-release: \"38\"\n")
            .replace(
                "automatic-version-prefix: \"1.0\"",
                "automatic-version-prefix: \"38.4\"",
            );
    let f = fixture_with(vec![release], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert_ok(&out);
    assert_eq!(meta(&f.repo, REF, "version"), "'38.4'");
    let link = ls_entry(&f.repo, REF, "/usr/etc/os-release");
    assert!(link.ends_with("-> ../usr/lib/os-release"), "{link}");
    let osr = ostree(&f.repo, &["cat", REF, "/usr/lib/os-release"]);
    assert!(osr.contains("\nVERSION=\"38.4 (Test Edition)\"\n"), "{osr}");
    assert!(
        osr.contains("PRETTY_NAME=\"Fixture 38.4 (Test Edition)\"\n"),
        "{osr}"
    );
    assert!(
        osr.contains("\nVERSION_ID=38\n"),
        "VERSION_ID untouched: {osr}"
    );
    assert!(osr.ends_with("OSTREE_VERSION='38.4'\n"), "{osr}");
    assert!(!osr.contains("\n\n"), "empty lines dropped: {osr}");
}

/// test-no-initramfs.sh (+ test-basic-unified's kernel checks): with
/// `no-initramfs: true` the RPM's initramfs.img is kept as shipped, 0644.
#[test]
fn no_initramfs_keeps_the_rpm_initramfs() {
    let f = fixture();
    let out = compose(&f, &[]);
    assert_ok(&out);
    let initramfs: Vec<u8> = (0..2048u32).map(|i| (i * 13 % 241) as u8).collect();
    let co = f.dir.join("co");
    ostree(
        &f.repo,
        &[
            "checkout",
            "--user-mode",
            "--subpath=/usr/lib/modules",
            REF,
            co.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(co.join(format!("{KVER}/initramfs.img"))).unwrap(),
        initramfs
    );
    for name in ["initramfs.img", "vmlinuz"] {
        let e = ls_entry(&f.repo, REF, &format!("/usr/lib/modules/{KVER}/{name}"));
        assert!(e.starts_with("-00644 0 0"), "{e}");
    }
}

/// test-lockfile.sh: a written lockfile pins app 1.0 after app 2.0 appears;
/// strict mode refuses a package not in the lockfile.
#[test]
fn lockfile_pins_and_strict_mode() {
    let manifest = format!("ref: test/x86_64/base\n{BASE}");
    let f = fixture_with(
        vec![Pkg::new("unlocked", "1.0")
            .requires("filesystem")
            .entry(Entry::file("/usr/share/unlocked", "u\n"))],
        |p| p.name == "app" && p.version == "2.0",
        &manifest,
    );
    let lock = f.dir.join("lock.json");
    let out = compose(&f, &[&format!("--ex-write-lockfile-to={}", lock.display())]);
    assert_ok(&out);
    let l: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    assert_eq!(l["packages"]["app"]["evra"], "1.0-1.x86_64", "{l}");
    assert!(
        l["packages"]["app"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{l}"
    );
    assert!(l["packages"].get("unlocked").is_none(), "{l}");
    let first = rev(&f.repo, REF);

    // app 2.0 arrives in the repo.
    let app2 = packages()
        .into_iter()
        .find(|p| p.name == "app" && p.version == "2.0")
        .unwrap();
    build_rpm(&app2, &rpms_dir(&f).join("Packages"));
    refresh_repo(&rpms_dir(&f));
    let lockarg = format!("--ex-lockfile={}", lock.display());
    let out = compose(&f, &[&lockarg, "--ex-lockfile-strict", "--force-nocache"]);
    assert_ok(&out);
    assert_ne!(rev(&f.repo, REF), first);
    assert_eq!(
        ostree(&f.repo, &["cat", REF, "/usr/bin/app"]),
        "#!/bin/sh\necho app 1.0\n"
    );
    // Without the lockfile the new version is picked (the repo really has it).
    let out = compose(&f, &["--dry-run"]);
    assert_ok(&out);
    assert!(text(&out).contains("app-2.0-1.x86_64"), "{}", text(&out));

    // Strict: a requested package missing from the lockfile fails.
    let before = rev(&f.repo, REF);
    std::fs::write(&f.manifest, format!("{manifest}  - unlocked\n")).unwrap();
    let out = compose(&f, &[&lockarg, "--ex-lockfile-strict"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unlocked"), "{}", text(&out));
    assert_eq!(rev(&f.repo, REF), before);
}

/// test-basic-unified.sh: metadata precedence, --parent with a checksum.
#[test]
fn metadata_precedence_and_parent() {
    let manifest = format!(
        "ref: test/x86_64/base\n{BASE}add-commit-metadata:\n  fromtreefile: t\n  foo: treefile\n  bar: treefile\n"
    );
    let f = fixture_with(vec![], |_| false, &manifest);
    let json = f.dir.join("meta.json");
    std::fs::write(&json, r#"{"foo": "json", "bar": "json"}"#).unwrap();
    let out = compose(
        &f,
        &[
            &format!("--add-metadata-from-json={}", json.display()),
            "--add-metadata-string=bar=string",
        ],
    );
    assert_ok(&out);
    assert_eq!(meta(&f.repo, REF, "fromtreefile"), "'t'");
    assert_eq!(meta(&f.repo, REF, "foo"), "'json'");
    assert_eq!(meta(&f.repo, REF, "bar"), "'string'");
    let first = rev(&f.repo, REF);

    let out = compose(&f, &["--force-nocache", "--no-parent"]);
    assert_ok(&out);
    let second = rev(&f.repo, REF);
    assert!(!ostree_ok(&f.repo, &["rev-parse", &format!("{REF}^")]));
    let out = compose(&f, &["--force-nocache", &format!("--parent={first}")]);
    assert_ok(&out);
    let third = rev(&f.repo, REF);
    assert_ne!(third, second);
    assert_eq!(rev(&f.repo, &format!("{REF}^")), first);
}

/// test-basic-unified.sh: the layout of the committed tree.
#[test]
fn basic_unified_tree_layout() {
    let shadow_utils = Pkg::new("shadow-utils", "4.14")
        .requires("setup")
        .entry(Entry::config(
            "/etc/default/useradd",
            "GROUP=100\nHOME=/home\nINACTIVE=-1\nSHELL=/bin/sh\n",
        ));
    let suid = Pkg::new("suid", "1.0")
        .requires("filesystem")
        .entry(Entry::File {
            path: "/usr/bin/su".into(),
            content: b"#!/bin/sh\n".to_vec(),
            mode: 0o4755,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: false,
        });
    let manifest = format!(
        "ref: test/x86_64/base\n{BASE}  - shadow-utils suid\ntmp-is-dir: true\nmachineid-compat: false\n\
         postprocess:\n  - |\n    #!/bin/sh\n    set -e\n    test -L /var/lib/rpm\n    test -L /usr/lib/sysimage/rpm\n\
         \x20   test -f /usr/share/rpm/rpmdb.sqlite\n    touch /usr/share/pp-saw-rpmdb\n"
    );
    let f = fixture_with(vec![shadow_utils, suid], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert_ok(&out);
    let (repo, r) = (&f.repo, REF);

    for gone in [
        "/usr/etc/passwd-",
        "/usr/etc/group-",
        "/usr/etc/shadow-",
        "/usr/etc/machine-id",
        "/usr/share/rpm/.rpm.lock",
        "/usr/share/rpm/rpmdb.sqlite-shm",
        "/usr/share/rpm/rpmdb.sqlite-wal",
    ] {
        assert!(!exists(repo, r, gone), "{gone} should not be committed");
    }
    let passwd = ls_entry(repo, r, "/usr/etc/passwd");
    assert!(passwd.starts_with("-00644 0 0"), "{passwd}");
    let shadow = ls_entry(repo, r, "/usr/etc/shadow");
    assert!(shadow.starts_with("-00000 0 0"), "{shadow}");
    // Postprocess scripts see the rpmdb through /var/lib/rpm and /usr/lib/sysimage/rpm.
    assert!(exists(repo, r, "/usr/share/pp-saw-rpmdb"));
    let su = ls_entry(repo, r, "/usr/bin/su");
    assert!(su.starts_with("-04755 0 0"), "setuid kept: {su}");
    let useradd = ostree(repo, &["cat", r, "/usr/etc/default/useradd"]);
    assert!(useradd.contains("\nHOME=/var/home\n"), "{useradd}");
    assert!(!useradd.contains("HOME=/home"), "{useradd}");
    assert!(
        ls_entry(repo, r, "/usr/etc/default/useradd").starts_with("-00644"),
        "useradd mode"
    );

    // rpmdb: sqlite under /usr/share/rpm, a base-db copy, the dbpath macro.
    assert!(exists(repo, r, "/usr/share/rpm/rpmdb.sqlite"));
    assert!(exists(
        repo,
        r,
        "/usr/lib/sysimage/rpm-ostree-base-db/rpmdb.sqlite"
    ));
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/lib/rpm/macros.d/macros.rpm-ostree"]),
        "%_dbpath /usr/share/rpm\n"
    );
    // Links and /tmp.
    let usrlocal = ls_entry(repo, r, "/usr/local");
    assert!(
        usrlocal.ends_with("/usr/local -> ../var/usrlocal"),
        "{usrlocal}"
    );
    let opt = ls_entry(repo, r, "/opt");
    assert!(opt.ends_with("/opt -> var/opt"), "{opt}");
    let tmp = ls_entry(repo, r, "/tmp");
    assert!(tmp.starts_with("d01777 0 0"), "{tmp}");

    // treefile.json and repo metadata.
    let tf: serde_json::Value = serde_json::from_str(&ostree(
        repo,
        &["cat", r, "/usr/share/rpm-ostree/treefile.json"],
    ))
    .unwrap();
    assert_eq!(tf["basearch"], "x86_64", "{tf}");
    let repos = meta(repo, r, "rpmostree.rpmmd-repos");
    assert!(repos.contains("'fixture'"), "{repos}");
    assert!(repos.contains("timestamp"), "{repos}");
}

/// test-basic-unified.sh: --touch-if-changed, and the compose JSON's pkgdiff
/// after an upgrade appears in the repo.
#[test]
fn touch_if_changed_and_pkgdiff() {
    let f = fixture();
    let stamp = f.dir.join("stamp");
    let set_old = || {
        std::fs::write(&stamp, "").unwrap();
        let st = Command::new("touch")
            .arg("-d")
            .arg("@1000000")
            .arg(&stamp)
            .status()
            .unwrap();
        assert!(st.success());
    };
    let mtime = || {
        std::fs::metadata(&stamp)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let touch = format!("--touch-if-changed={}", stamp.display());
    set_old();
    let out = compose(&f, &[&touch]);
    assert_ok(&out);
    assert!(mtime() > 1000000, "touched on a new commit");
    let first = rev(&f.repo, REF);

    set_old();
    let out = compose(&f, &[&touch]);
    assert_ok(&out);
    assert_eq!(rev(&f.repo, REF), first);
    assert_eq!(mtime(), 1000000, "not touched without a new commit");

    // app 3.0 lands in the repo: the rerun upgrades it and reports it.
    let app3 = Pkg::new("app", "3.0")
        .arch("x86_64")
        .requires("libfoo")
        .entry(Entry::exe("/usr/bin/app", "#!/bin/sh\necho app 3.0\n"));
    let rpms = f._tmp.path().join("rpms");
    build_rpm(&app3, &rpms.join("Packages"));
    refresh_repo(&rpms);
    let json = f.dir.join("compose.json");
    let out = compose(
        &f,
        &[
            &touch,
            &format!("--write-composejson-to={}", json.display()),
        ],
    );
    assert_ok(&out);
    assert_ne!(rev(&f.repo, REF), first);
    assert!(mtime() > 1000000);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let diff = j["pkgdiff"].as_array().expect("pkgdiff array");
    let app = diff
        .iter()
        .find(|e| e[0] == "app")
        .unwrap_or_else(|| panic!("app not in pkgdiff: {j}"));
    assert_eq!(app[1], 2, "upgraded: {app}");
    assert_eq!(app[2]["PreviousPackage"][1], "2.0-1", "{app}");
    assert_eq!(app[2]["NewPackage"][1], "3.0-1", "{app}");
}

/// Build `langpack-1.0` (files tagged `%lang(fr)` / `%lang(de)` plus an
/// untagged one) into `rpms/Packages`; rpmfixture's `Entry` has no `%lang`.
fn build_lang_rpm(rpms: &Path) {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("langpack.spec");
    let mo = "/usr/share/locale/%s/LC_MESSAGES/langpack.mo";
    std::fs::write(
        &spec,
        format!(
            "Name: langpack\nVersion: 1.0\nRelease: 1\nSummary: langs\nLicense: MIT\nBuildArch: noarch\n\
             AutoReqProv: no\n\n%description\nlangs\n\n%install\n\
             for l in fr de; do mkdir -p %{{buildroot}}/usr/share/locale/$l/LC_MESSAGES; \
             echo $l > %{{buildroot}}$(printf {mo} $l); done\n\
             mkdir -p %{{buildroot}}/usr/share/langpack; echo all > %{{buildroot}}/usr/share/langpack/common\n\n\
             %files\n%lang(fr) {fr}\n%lang(de) {de}\n/usr/share/langpack/common\n",
            fr = mo.replace("%s", "fr"),
            de = mo.replace("%s", "de"),
        ),
    )
    .unwrap();
    let out = Command::new("rpmbuild")
        .args(["-bb", "--nodeps", "--quiet"])
        .arg(format!(
            "--define=_topdir {}",
            work.path().join("top").display()
        ))
        .arg(format!(
            "--define=_rpmdir {}",
            rpms.join("Packages").display()
        ))
        .arg("--define=_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm")
        .arg("--define=__os_install_post %{nil}")
        .arg("--define=debug_package %{nil}")
        .arg("--define=_build_id_links none")
        .arg(&spec)
        .env("HOME", work.path())
        .output()
        .unwrap();
    assert_ok(&out);
    refresh_repo(rpms);
}

/// test-install-langs.sh: `install-langs` keeps only the listed languages.
#[test]
fn install_langs() {
    let manifest = format!("ref: test/x86_64/base\n{BASE}  - langpack\ninstall-langs: [fr]\n");
    let f = fixture_with(vec![], |_| false, &manifest);
    build_lang_rpm(&rpms_dir(&f));
    let out = compose(&f, &[]);
    assert_ok(&out);
    let (repo, r) = (&f.repo, REF);
    assert_eq!(
        ostree(
            repo,
            &["cat", r, "/usr/share/locale/fr/LC_MESSAGES/langpack.mo"]
        ),
        "fr\n"
    );
    assert!(!exists(
        repo,
        r,
        "/usr/share/locale/de/LC_MESSAGES/langpack.mo"
    ));
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/share/langpack/common"]),
        "all\n"
    );
    // Without install-langs every language is installed.
    std::fs::write(
        &f.manifest,
        format!("ref: test/x86_64/base\n{BASE}  - langpack\n"),
    )
    .unwrap();
    let out = compose(&f, &[]);
    assert_ok(&out);
    assert!(exists(
        repo,
        r,
        "/usr/share/locale/de/LC_MESSAGES/langpack.mo"
    ));
}

/// test-basic-unified.sh / test-misc-tweaks.sh: `${basearch}` in the ref
/// (also under --print-only), `repovars` in a .repo baseurl, repositories
/// taken from `enabled=1` when `repos` is absent, a quoted version spec.
#[test]
fn basearch_ref_repovars_enabled_repos_and_quoted_specs() {
    let base = BASE
        .replace("repos: [fixture]\n", "")
        .replace("  - app\n", "  - \"'app < 2.0'\"\n");
    let manifest = format!("ref: test/${{basearch}}/base\nrepovars:\n  fixturedir: rpms\n{base}");
    let f = fixture_with(vec![], |_| false, &manifest);
    // Replace the plain .repo file by one using the variable, plus a disabled
    // repository that would break the compose if it were used.
    let top = f._tmp.path();
    std::fs::write(
        f.dir.join("fixture.repo"),
        format!(
            "[fixture]\nname=fixture\nbaseurl=file://{}/$fixturedir\nenabled=1\ngpgcheck=0\n\n\
             [broken]\nname=broken\nbaseurl=file://{}/nonexistent\nenabled=0\ngpgcheck=0\n",
            top.display(),
            top.display()
        ),
    )
    .unwrap();

    let out = Command::new(common::composer_bin())
        .args(["compose", "tree", "--print-only"])
        .arg(&f.manifest)
        .output()
        .unwrap();
    assert_ok(&out);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ref"], REF, "{j}");

    let out = compose(&f, &[]);
    assert_ok(&out);
    assert_eq!(
        ostree(&f.repo, &["cat", REF, "/usr/bin/app"]),
        "#!/bin/sh\necho app 1.0\n"
    );
    let repos = meta(&f.repo, REF, "rpmostree.rpmmd-repos");
    assert!(
        repos.contains("'fixture'") && !repos.contains("broken"),
        "{repos}"
    );
}

/// test-basic-unified.sh derivation-field rejection; test-misc-tweaks.sh
/// `container-cmd` -> `ostree.container-cmd`.
#[test]
fn derivation_fields_rejected_and_container_cmd() {
    let manifest = format!("ref: test/x86_64/base\n{BASE}override-remove: [app]\n");
    let f = fixture_with(vec![], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("derivation fields are not supported") && t.contains("override-remove"),
        "{t}"
    );
    assert!(!ostree_ok(&f.repo, &["rev-parse", REF]));

    std::fs::write(
        &f.manifest,
        format!("ref: test/x86_64/base\n{BASE}container-cmd: [/usr/bin/app, --serve]\n"),
    )
    .unwrap();
    let out = compose(&f, &[]);
    assert_ok(&out);
    assert_eq!(
        meta(&f.repo, REF, "ostree.container-cmd"),
        "['/usr/bin/app', '--serve']"
    );
}

/// test-excludes.sh: excluding a hard dependency fails the depsolve naming
/// it; a package both requested and excluded is not found. No ref either way.
#[test]
fn exclude_packages_hard_dependency_fails() {
    let manifest = format!("ref: test/x86_64/base\n{BASE}exclude-packages: [libfoo]\n");
    let f = fixture_with(vec![], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("libfoo"), "{}", text(&out));
    assert!(!ostree_ok(&f.repo, &["rev-parse", REF]));

    std::fs::write(
        &f.manifest,
        format!("ref: test/x86_64/base\n{BASE}  - weakdep\nexclude-packages: [weakdep]\n"),
    )
    .unwrap();
    let out = compose(&f, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("weakdep"), "{}", text(&out));
    assert!(!ostree_ok(&f.repo, &["rev-parse", REF]));
}

/// test-container.sh: `container: true` composes a tree without a kernel;
/// no `ostree.bootable`, `/tmp` a real 01777 directory.
#[test]
fn container_minimal_compose() {
    let manifest = format!("ref: test/x86_64/base\ncontainer: true\n{BASE}")
        .replace("  - kernel-core\n", "")
        .replace(
            "boot-location: modules\nno-initramfs: true\nselinux: false\n",
            "",
        );
    let f = fixture_with(vec![], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert_ok(&out);
    assert!(exists(&f.repo, REF, "/usr/bin/app"));
    assert!(!exists(&f.repo, REF, "/usr/lib/modules/6.1.0-test"));
    assert!(
        !ostree_ok(
            &f.repo,
            &["show", REF, "--print-metadata-key=ostree.bootable"]
        ),
        "a container tree is not bootable"
    );
    let tmp = ls_entry(&f.repo, REF, "/tmp");
    assert!(tmp.starts_with("d01777 0 0"), "{tmp}");
}

/// All `usr/lib/tmpfiles.d/*.conf` lines of a commit.
fn tmpfiles_lines(repo: &Path, r: &str) -> Vec<String> {
    let ls = ostree(repo, &["ls", r, "/usr/lib/tmpfiles.d"]);
    let mut lines = Vec::new();
    for l in ls.lines() {
        let Some(path) = l.split_whitespace().last() else {
            continue;
        };
        if l.starts_with('-') && path.ends_with(".conf") {
            lines.extend(ostree(repo, &["cat", r, path]).lines().map(str::to_string));
        }
    }
    lines
}

/// test-state-overlays.sh (+ the importer's /opt translation): RPM content
/// under /opt lands in /usr/lib/opt, reached through tmpfiles links with the
/// default `opt-usrlocal: var`, and through `/opt -> usr/lib/opt` plus the
/// state-overlay units with `opt-usrlocal: state-overlay`.
#[test]
fn opt_content_and_state_overlays() {
    let optapp = Pkg::new("optapp", "1.0")
        .requires("filesystem")
        .entry(Entry::exe("/opt/optapp/bin/tool", "#!/bin/sh\necho tool\n"));
    let manifest = format!("ref: test/x86_64/base\n{BASE}  - optapp\n");
    let f = fixture_with(vec![optapp], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert_ok(&out);
    let (repo, r) = (&f.repo, REF);
    assert_eq!(
        ostree(repo, &["cat", r, "/usr/lib/opt/optapp/bin/tool"]),
        "#!/bin/sh\necho tool\n"
    );
    assert!(ls_entry(repo, r, "/opt").ends_with("/opt -> var/opt"));
    let lines = tmpfiles_lines(repo, r);
    assert!(
        lines.iter().any(|l| l.starts_with("L ")
            && l.contains("/opt/optapp ")
            && l.trim_end().ends_with("usr/lib/opt/optapp")),
        "no tmpfiles link for /opt/optapp: {lines:#?}"
    );
    for want in ["d /var/opt", "d /var/usrlocal"] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{want}: {lines:#?}"
        );
    }

    std::fs::write(
        &f.manifest,
        format!("{manifest}opt-usrlocal: state-overlay\n"),
    )
    .unwrap();
    let out = compose(&f, &[]);
    assert_ok(&out);
    let opt = ls_entry(repo, r, "/opt");
    assert!(opt.ends_with("/opt -> usr/lib/opt"), "{opt}");
    let usrlocal = ls_entry(repo, r, "/usr/local");
    assert!(usrlocal.starts_with('d'), "{usrlocal}");
    for unit in ["usr-lib-opt", "usr-local"] {
        let link = ls_entry(
            repo,
            r,
            &format!(
                "/usr/lib/systemd/system/local-fs.target.requires/ostree-state-overlay@{unit}.service"
            ),
        );
        assert!(
            link.starts_with('l') && link.contains("-> ../ostree-state-overlay@"),
            "{link}"
        );
    }
    let lines = tmpfiles_lines(repo, r);
    for (path, target) in [
        ("/var/usrlocal", "../usr/local"),
        ("/var/opt", "../usr/lib/opt"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("L {path} ")) && l.trim_end().ends_with(target)),
            "L {path} -> {target}: {lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("d /var/opt")),
        "{lines:#?}"
    );
}

/// test-repo-metadata.sh: `repo-metadata: disabled` leaves
/// `rpmostree.rpmmd-repos` out. `detached` (and test-misc-tweaks'
/// `sysusers: compose-forced`, `selinux-label-version: 1`) are refused up
/// front with exit 4 naming the key, since this composer cannot honour them.
#[test]
fn repo_metadata_disabled_and_refused_keys() {
    let manifest = format!("ref: test/x86_64/base\n{BASE}repo-metadata: disabled\n");
    let f = fixture_with(vec![], |_| false, &manifest);
    let out = compose(&f, &[]);
    assert_ok(&out);
    assert!(exists(&f.repo, REF, "/usr/bin/app"));
    assert!(!ostree_ok(
        &f.repo,
        &["show", REF, "--print-metadata-key=rpmostree.rpmmd-repos"]
    ));
    let before = rev(&f.repo, REF);
    for (extra, key) in [
        ("repo-metadata: detached\n", "repo-metadata"),
        ("sysusers: compose-forced\n", "sysusers"),
        ("selinux-label-version: 1\n", "selinux-label-version"),
    ] {
        std::fs::write(&f.manifest, format!("ref: test/x86_64/base\n{BASE}{extra}")).unwrap();
        let out = compose(&f, &["--force-nocache"]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains(key), "{}", text(&out));
        assert_eq!(rev(&f.repo, REF), before);
    }
}

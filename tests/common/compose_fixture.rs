//! A small bootable system built from fixture RPMs (filesystem, setup, busybox,
//! a library, two versions of an app with a weak dependency, %config, a /var dir
//! owned by a system user, a %post, docs, a kernel stand-in) and a manifest that
//! exercises the treefile post-processing keys; plus helpers to run the binary
//! and inspect repos with the ostree CLI.
#![allow(dead_code)]

use super::composer_bin;
use super::rpmfixture::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const KVER: &str = "6.1.0-test";
pub const REF: &str = "test/x86_64/base";

pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub manifest: PathBuf,
    pub repo: PathBuf,
    pub cache: PathBuf,
}

pub fn packages() -> Vec<Pkg> {
    let app = |version: &str| {
        Pkg::new("app", version)
            .arch("x86_64")
            .requires("libfoo")
            .requires("setup")
            .recommends("weakdep")
            .entry(Entry::exe(
                "/usr/bin/app",
                &format!("#!/bin/sh\necho app {version}\n"),
            ))
            .entry(Entry::config("/etc/app.conf", "setting=1\n"))
            .entry(Entry::doc("/usr/share/doc/app/README", "read me\n"))
            .entry(Entry::file("/usr/share/app/remove-me", "x\n"))
            .entry(Entry::file(
                "/usr/lib/systemd/system/app.service",
                "[Service]\nExecStart=/usr/bin/app\n",
            ))
            .entry(Entry::owned_dir("/var/lib/app", 0o750, "demo", "demo"))
            .script("post", "echo post-ran > /usr/share/app/post-ran")
    };
    vec![
        filesystem_pkg(),
        setup_pkg(),
        busybox_pkg(),
        Pkg::new("libfoo", "1.0")
            .arch("x86_64")
            .requires("filesystem")
            .entry(Entry::file(
                "/usr/lib64/libfoo.so.1",
                "not really a library\n",
            )),
        app("1.0"),
        app("2.0"),
        Pkg::new("weakdep", "1.0").entry(Entry::file("/usr/share/weakdep/data", "weak\n")),
        kernel_pkg(KVER),
    ]
}

pub const MANIFEST: &str = r#"
ref: test/x86_64/base
repos: [fixture]
packages:
  - filesystem setup busybox
  - app
  - kernel-core
recommends: true
documentation: false
automatic-version-prefix: "1.0"
add-commit-metadata:
  fixture: "yes"
boot-location: modules
no-initramfs: true
selinux: false
machineid-compat: true
units: [app.service]
postprocess:
  - |
    #!/bin/sh
    set -e
    echo hello > /usr/share/postprocess-ran
    test -L /var/lib/rpm
add-files:
  - [extra.conf, /etc/extra.conf]
remove-files:
  - usr/share/app/remove-me
"#;

pub fn fixture() -> Fixture {
    fixture_with(vec![], |_| false, MANIFEST)
}

/// The fixture with `extra` packages added, those matching `skip` left out,
/// and `manifest` as the treefile.
pub fn fixture_with(extra: Vec<Pkg>, skip: impl Fn(&Pkg) -> bool, manifest: &str) -> Fixture {
    assert!(
        have_rpm_tools(),
        "rpmbuild and createrepo_c are needed (run ci/setup-host)"
    );
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = tmp.path().join("manifest");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pkgs: Vec<Pkg> = packages().into_iter().filter(|p| !skip(p)).collect();
    pkgs.extend(extra);
    let rpms = build_repo(&tmp.path().join("rpms"), &pkgs);
    write_repo_file(&dir, "fixture", &rpms, false);
    std::fs::write(dir.join("extra.conf"), "extra=1\n").unwrap();
    let manifest_path = dir.join("manifest.yaml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let repo = tmp.path().join("repo");
    init_repo(&repo, "bare-user");
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    Fixture {
        dir,
        manifest: manifest_path,
        repo,
        cache,
        _tmp: tmp,
    }
}

pub fn init_repo(path: &Path, mode: &str) {
    let st = Command::new("ostree")
        .arg(format!("--repo={}", path.display()))
        .args(["init", &format!("--mode={mode}")])
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn ostree_ok(repo: &Path, args: &[&str]) -> bool {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

pub fn compose(f: &Fixture, extra: &[&str]) -> Output {
    let mut cmd = Command::new(composer_bin());
    cmd.args(["compose", "tree", "--unified-core"])
        .arg(format!("--repo={}", f.repo.display()))
        .arg(format!("--cachedir={}", f.cache.display()))
        .args(extra)
        .arg(&f.manifest)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    cmd.output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn rev(repo: &Path, r: &str) -> String {
    ostree(repo, &["rev-parse", r]).trim().to_string()
}

pub fn meta(repo: &Path, r: &str, key: &str) -> String {
    ostree(repo, &["show", r, &format!("--print-metadata-key={key}")])
        .trim()
        .to_string()
}

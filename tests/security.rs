//! What a compose server must not trust or leak, through the real binary:
//! - `gpgcheck=1` repositories: packages signed with a throwaway key are
//!   accepted with that key (`gpgkey=file://`), refused with another key,
//!   without a key, or when one package is unsigned;
//! - postprocess scripts cannot write host paths outside the new root;
//! - `add-files` sources cannot escape the manifest directory through
//!   absolute paths, `..` or symlinks;
//! - registry credentials (authfile contents) never appear on stdout, stderr
//!   or in the compose JSON, whether the registry accepts or refuses them.
mod common;
use common::registry::Registry;

use common::composer_bin;
use common::rpmfixture::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const REF: &str = "test/x86_64/sec";

const BASE: &str = "ref: test/x86_64/sec
repos: [fixture]
packages: [filesystem, setup, busybox, app]
selinux: false
container: true
";

fn text(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawning");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    out
}

fn ostree(repo: &Path, args: &[&str]) -> Output {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap()
}

fn refs(repo: &Path) -> BTreeMap<String, String> {
    let out = ostree(repo, &["refs"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|r| {
            let c = ostree(repo, &["rev-parse", r]);
            (
                r.to_string(),
                String::from_utf8_lossy(&c.stdout).trim().to_string(),
            )
        })
        .collect()
}

fn assert_fsck(repo: &Path) {
    let out = ostree(repo, &["fsck"]);
    assert!(out.status.success(), "fsck: {}", text(&out));
}

fn init_repo(path: &Path) {
    run(Command::new("ostree")
        .arg(format!("--repo={}", path.display()))
        .args(["init", "--mode=bare-user"]));
}

fn compose(repo: &Path, cache: &Path, manifest: &Path, extra: &[&str]) -> Output {
    Command::new(composer_bin())
        .args(["compose", "tree"])
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--cachedir={}", cache.display()))
        .args(extra)
        .arg(manifest)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn base_packages() -> Vec<Pkg> {
    vec![
        filesystem_pkg(),
        setup_pkg(),
        busybox_pkg(),
        Pkg::new("app", "1.0").entry(Entry::file("/usr/share/app/data", "app\n")),
    ]
}

/// A throwaway GnuPG home with one passphrase-less signing key; returns its key id.
fn gen_key(home: &Path, name: &str) -> String {
    std::fs::create_dir_all(home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
    run(Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--passphrase", "", "--quick-gen-key"])
        .arg(format!("{name} <{name}@example.invalid>"))
        .args(["rsa2048", "sign", "never"]));
    let out = run(Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--list-keys", "--with-colons"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("pub:"))
        .and_then(|l| l.split(':').nth(4))
        .expect("a key id")
        .to_string()
}

fn export_key(home: &Path, keyid: &str, to: &Path) {
    let out = run(Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--armor", "--export", keyid]));
    assert!(!out.stdout.is_empty());
    std::fs::write(to, out.stdout).unwrap();
}

fn sign_rpm(home: &Path, keyid: &str, rpm: &Path) {
    run(Command::new("rpmsign")
        .arg("--define=__gpg /usr/bin/gpg")
        .arg(format!("--define=_gpg_name {keyid}"))
        .arg(format!("--define=_gpg_path {}", home.display()))
        .arg("--addsign")
        .arg(rpm)
        .stdin(Stdio::null()));
}

fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .status();
}

#[test]
fn gpgcheck_accepts_the_signing_key_and_refuses_anything_else() {
    assert!(have_rpm_tools());
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let good_home = tmp.path().join("gpg-good");
    let other_home = tmp.path().join("gpg-other");
    let good = gen_key(&good_home, "signer");
    let other = gen_key(&other_home, "stranger");
    export_key(&good_home, &good, &tmp.path().join("good.asc"));
    export_key(&other_home, &other, &tmp.path().join("other.asc"));

    let mut pkgs = base_packages();
    pkgs.push(Pkg::new("unsigned-extra", "1.0").entry(Entry::file("/usr/share/unsigned/x", "x\n")));
    let rpms = build_repo(&tmp.path().join("rpms"), &pkgs);
    for p in &pkgs {
        if p.name != "unsigned-extra" {
            sign_rpm(&good_home, &good, &rpms.join("Packages").join(p.filename()));
        }
    }
    refresh_repo(&rpms);
    stop_agent(&good_home);
    stop_agent(&other_home);

    let repo = tmp.path().join("repo");
    init_repo(&repo);
    let cache = tmp.path().join("cache");
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("m.yaml");
    let repo_file = |gpg: &str| {
        std::fs::write(
            dir.join("fixture.repo"),
            format!(
                "[fixture]\nbaseurl=file://{}\ngpgcheck=1\n{gpg}\n",
                rpms.display()
            ),
        )
        .unwrap()
    };

    // The right key: accepted.
    repo_file(&format!(
        "gpgkey=file://{}",
        tmp.path().join("good.asc").display()
    ));
    std::fs::write(&manifest, BASE).unwrap();
    let out = compose(&repo, &cache, &manifest, &[]);
    assert!(
        out.status.success(),
        "signed packages, right key: {}",
        text(&out)
    );
    let before = refs(&repo);
    assert_eq!(before.len(), 1);
    let ls = ostree(&repo, &["ls", REF, "/usr/share/app/data"]);
    assert!(ls.status.success(), "{}", text(&ls));

    // Each of these must be refused, naming the package and repo, ref unchanged.
    let refused: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "wrong key",
            format!("gpgkey=file://{}", tmp.path().join("other.asc").display()),
            BASE,
            vec!["GPG check FAILED", "app-1.0-1.noarch.rpm", "fixture"],
        ),
        (
            "no key at all",
            String::new(),
            BASE,
            vec!["GPG check FAILED", "app-1.0-1.noarch.rpm", "fixture"],
        ),
        (
            "one unsigned package",
            format!("gpgkey=file://{}", tmp.path().join("good.asc").display()),
            "ref: test/x86_64/sec
repos: [fixture]
packages: [filesystem, setup, busybox, app, unsigned-extra]
selinux: false
container: true
",
            vec!["unsigned-extra-1.0-1.noarch.rpm is not signed", "fixture"],
        ),
    ];
    for (what, gpg, m, expect) in refused {
        repo_file(&gpg);
        std::fs::write(&manifest, m).unwrap();
        let out = compose(&repo, &cache, &manifest, &["--force-nocache"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for e in expect {
            assert!(
                stderr.contains(e),
                "{what}: stderr lacks {e:?}: {}",
                text(&out)
            );
        }
        if what != "one unsigned package" {
            // Nothing signed by the wrong key gets through: every package is named.
            assert!(
                stderr.contains("busybox-1.35.0-1.x86_64.rpm"),
                "{what}: {}",
                text(&out)
            );
        }
        assert_eq!(refs(&repo), before, "{what}: ref moved");
        assert_fsck(&repo);
    }
}

#[test]
fn postprocess_cannot_write_host_paths() {
    assert!(have_rpm_tools());
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rpms = build_repo(&tmp.path().join("rpms"), &base_packages());
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    write_repo_file(&dir, "fixture", &rpms, false);
    // Host paths the script aims at: one in the test's own temp dir (absolute,
    // as the host sees it), /tmp, /etc and /root.
    let tag = format!("canary-{}", std::process::id());
    let host_dir = tmp.path().join("host-target");
    std::fs::create_dir_all(&host_dir).unwrap();
    let targets: Vec<PathBuf> = vec![
        host_dir.join(&tag),
        PathBuf::from("/tmp").join(&tag),
        PathBuf::from("/etc").join(&tag),
        PathBuf::from("/root").join(&tag),
    ];
    let mut script = String::from("#!/bin/sh\n");
    for t in &targets {
        let t = t.display();
        script.push_str(&format!(
            "mkdir -p \"$(dirname {t})\"; echo escaped > {t} || true\n"
        ));
        // Climbing out with '..' from the root and from a subdirectory.
        script.push_str(&format!(
            "(cd / && cd ../../../.. && echo escaped > .{t}) || true\n"
        ));
        script.push_str(&format!(
            "(cd /usr/share && echo escaped > ../../../../..{t}) || true\n"
        ));
        // Through /proc, if it were mounted.
        script.push_str(&format!(
            "echo escaped > /proc/1/root{t} 2>/dev/null || true\n"
        ));
    }
    // An absolute symlink made inside the root resolves inside the root too.
    script.push_str(&format!(
        "ln -s {} /usr/share/link-out && echo escaped > /usr/share/link-out/{tag}.via-link || true\n",
        host_dir.display()
    ));
    script.push_str("echo ran > /usr/share/postprocess-ran\n");
    let indented: String = script.lines().map(|l| format!("    {l}\n")).collect();
    let manifest = dir.join("m.yaml");
    std::fs::write(&manifest, format!("{BASE}postprocess:\n  - |\n{indented}")).unwrap();
    let repo = tmp.path().join("repo");
    init_repo(&repo);
    let out = compose(&repo, &tmp.path().join("cache"), &manifest, &[]);
    assert!(out.status.success(), "{}", text(&out));
    // The script ran (its marker is in the commit)...
    let cat = ostree(&repo, &["cat", REF, "/usr/share/postprocess-ran"]);
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "ran\n",
        "{}",
        text(&cat)
    );
    // ...its writes landed inside the new root...
    let inside = ostree(&repo, &["cat", REF, &format!("/usr/etc/{tag}")]);
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout),
        "escaped\n",
        "{}",
        text(&inside)
    );
    // ...and none on the host.
    for t in &targets {
        assert!(
            !t.exists(),
            "a postprocess script wrote the host path {}",
            t.display()
        );
    }
    assert!(!host_dir.join(format!("{tag}.via-link")).exists());
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0);
}

#[test]
fn add_files_sources_cannot_escape_the_manifest_directory() {
    assert!(have_rpm_tools());
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rpms = build_repo(&tmp.path().join("rpms"), &base_packages());
    let dir = tmp.path().join("manifests/os");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    write_repo_file(&dir, "fixture", &rpms, false);
    // A "secret" beside the manifest directory, and host files.
    let secret = tmp.path().join("manifests/secret.json");
    std::fs::write(&secret, "{\"password\": \"hunter2\"}\n").unwrap();
    std::fs::write(dir.join("ok.conf"), "ok\n").unwrap();
    std::fs::write(dir.join("sub/inner.conf"), "inner\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link-to-host")).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link-to-secret")).unwrap();
    std::os::unix::fs::symlink("ok.conf", dir.join("link-inside")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), dir.join("dirlink")).unwrap();
    let repo = tmp.path().join("repo");
    init_repo(&repo);
    let cache = tmp.path().join("cache");
    let manifest = dir.join("m.yaml");
    let with_add = |src: &str| format!("{BASE}add-files:\n  - [\"{src}\", /usr/share/added]\n");

    // Inside (plain, through a subdirectory and back, through an inner symlink): accepted.
    for src in ["ok.conf", "sub/../ok.conf", "link-inside", "sub/inner.conf"] {
        std::fs::write(&manifest, with_add(src)).unwrap();
        let out = compose(&repo, &cache, &manifest, &["--force-nocache"]);
        assert!(out.status.success(), "{src}: {}", text(&out));
    }
    let before = refs(&repo);
    let escapes = [
        "../secret.json",
        "sub/../../secret.json",
        "/etc/passwd",
        "../../../../../../../../etc/passwd",
        "link-to-host",
        "link-to-secret",
        "dirlink/manifests/secret.json",
    ];
    for src in escapes {
        std::fs::write(&manifest, with_add(src)).unwrap();
        let out = compose(&repo, &cache, &manifest, &["--force-nocache"]);
        assert_eq!(out.status.code(), Some(3), "{src}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("add-files")
                && stderr.contains(src)
                && stderr.contains("outside the manifest directory"),
            "{src}: {}",
            text(&out)
        );
        assert!(
            !stderr.contains("hunter2"),
            "the secret was read: {}",
            text(&out)
        );
        assert_eq!(refs(&repo), before, "{src}: ref moved");
    }
    assert_fsck(&repo);
}

fn authfile(path: &Path, port: u16, user: &str, password: &str) {
    use std::io::Write;
    let mut b64 = Vec::new();
    {
        // base64 by hand is not worth a dependency: use the coreutils tool.
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{user}:{password}").as_bytes())
            .unwrap();
        b64.extend(child.wait_with_output().unwrap().stdout);
    }
    std::fs::write(
        path,
        format!(
            "{{\"auths\": {{\"127.0.0.1:{port}\": {{\"auth\": \"{}\"}}}}}}\n",
            String::from_utf8_lossy(&b64)
        ),
    )
    .unwrap();
}

#[test]
fn registry_credentials_never_leak() {
    assert!(have_rpm_tools());
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rpms = build_repo(&tmp.path().join("rpms"), &base_packages());
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    write_repo_file(&dir, "fixture", &rpms, false);
    let manifest = dir.join("m.yaml");
    std::fs::write(&manifest, BASE).unwrap();
    let user = "composer";
    let password = "S3cr3t-Pa55word-4-test";
    let reg = Registry::start_with_auth(user, password);
    let dest = format!("docker://127.0.0.1:{}/test/sec:latest", reg.port);
    let export = tmp.path().join("export");
    let cache = tmp.path().join("cache");
    let oneshot = |auth: &Path, json: &Path| {
        Command::new(composer_bin())
            .arg(&manifest)
            .arg(format!("--repo={}", export.display()))
            .arg(format!("--cachedir={}", cache.display()))
            .arg(format!("--oci={dest}"))
            .arg("--dest-tls-verify=false")
            .arg(format!("--authfile={}", auth.display()))
            .arg(format!("--write-composejson-to={}", json.display()))
            .arg("--force-nocache")
            .output()
            .unwrap()
    };
    let leaks = |out: &Output, json: &Path, pw: &str, auth: &Path| {
        let auth_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(auth).unwrap()).unwrap();
        let b64 = auth_json["auths"]
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(|v| v["auth"].as_str())
            .unwrap()
            .to_string();
        assert!(b64.len() > 20, "{b64}");
        let mut places = vec![
            ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
            ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ];
        if let Ok(j) = std::fs::read_to_string(json) {
            places.push(("compose JSON", j));
        }
        for (name, content) in places {
            assert!(!content.contains(pw), "password in {name}: {content}");
            assert!(!content.contains(&b64), "auth string in {name}: {content}");
        }
    };

    // Right credentials: the push works, nothing leaks.
    let good_auth = tmp.path().join("auth-good.json");
    authfile(&good_auth, reg.port, user, password);
    let json = tmp.path().join("good.json");
    let out = oneshot(&good_auth, &json);
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["images"].as_array().map(|a| a.len()), Some(1), "{j}");
    leaks(&out, &json, password, &good_auth);

    // Wrong password: refused (exit 5, output failed after the commit), the
    // registry named, nothing leaks.
    let wrong = "Wr0ng-Pa55word-4-test";
    let bad_auth = tmp.path().join("auth-bad.json");
    authfile(&bad_auth, reg.port, user, wrong);
    let json = tmp.path().join("bad.json");
    let out = oneshot(&bad_auth, &json);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", reg.port)),
        "{}",
        text(&out)
    );
    assert!(
        stderr.to_lowercase().contains("auth"),
        "the error should say it is about authentication: {}",
        text(&out)
    );
    assert!(!stderr.contains("panicked"));
    leaks(&out, &json, wrong, &bad_auth);

    // No credentials at all: refused the same way.
    let none = tmp.path().join("auth-none.json");
    std::fs::write(&none, "{\"auths\": {}}\n").unwrap();
    let out = oneshot(&none, &tmp.path().join("none.json"));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_fsck(&export);
}

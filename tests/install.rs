//! Resolve, download and install real RPMs (built at test time) with the
//! host's dnf into a fresh root; lockfiles; the download cache.
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::rpmfixture::*;
use ostree_composer::exit::exit_code_for;
use ostree_composer::install::{self, lockfile, InstallRequest, Resolution};

/// Two repositories built once per test binary and only read afterwards.
struct Repos {
    _tmp: tempfile::TempDir,
    main: PathBuf,
    other: PathBuf,
}

/// A package shipping a static busybox as /usr/bin/sh, so scriptlets can run in the root.
fn shell_pkg() -> Pkg {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    Pkg::new("shell", "1.0")
        .arch("x86_64")
        .requires("filesystem")
        .provides("/bin/sh")
        .entry(Entry::File {
            path: "/usr/bin/busybox".into(),
            content: busybox,
            mode: 0o755,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: false,
        })
        .entry(Entry::symlink("/usr/bin/sh", "busybox"))
}

fn app(version: &str) -> Pkg {
    Pkg::new("app", version)
        .requires("filesystem")
        .requires("setup")
        .requires("shell")
        .requires("lib-dep")
        .recommends("weak-extra")
        .entry(Entry::exe(
            "/usr/bin/app",
            &format!("#!/bin/sh\necho app {version}\n"),
        ))
        .entry(Entry::config("/etc/app.conf", "greeting=hello\n"))
        .entry(Entry::doc("/usr/share/doc/app/README", "read me\n"))
        .entry(Entry::owned_dir("/var/lib/app", 0o750, "demo", "demo"))
        .script(
            "post",
            &format!("echo post-ran {version} > /var/lib/app/post-marker; echo to-stdout"),
        )
}

fn repos() -> &'static Repos {
    static REPOS: OnceLock<Repos> = OnceLock::new();
    REPOS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let main = build_repo(
            &tmp.path().join("base"),
            &[
                filesystem_pkg(),
                setup_pkg(),
                shell_pkg(),
                app("1.0"),
                app("2.0"),
                Pkg::new("lib-dep", "1.0").entry(Entry::file("/usr/lib/lib-dep.txt", "1.0\n")),
                Pkg::new("weak-extra", "1.0").entry(Entry::file("/usr/share/weak-extra", "w\n")),
                Pkg::new("broken-post", "1.0")
                    .requires("shell")
                    .entry(Entry::file("/usr/share/broken-post", "b\n"))
                    .script("post", "echo about to fail >&2; exit 3"),
                Pkg::new("needs-excluded", "1.0").requires("excluded-dep"),
                Pkg::new("excluded-dep", "1.0"),
                Pkg::new("provider", "1.0").provides("virtual-thing = 5"),
            ],
        );
        let other = build_repo(
            &tmp.path().join("other"),
            &[
                Pkg::new("lib-dep", "0.9").entry(Entry::file("/usr/lib/lib-dep.txt", "0.9\n")),
                Pkg::new("only-other", "1.0"),
            ],
        );
        Repos {
            _tmp: tmp,
            main,
            other,
        }
    })
}

/// A manifest directory with `base.repo` and `other.repo`, plus a cache dir.
struct Setup {
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let r = repos();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("manifest")).unwrap();
        write_repo_file(&tmp.path().join("manifest"), "base", &r.main, false);
        write_repo_file(&tmp.path().join("manifest"), "other", &r.other, false);
        Setup { tmp }
    }
    fn manifest_dir(&self) -> PathBuf {
        self.tmp.path().join("manifest")
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn request(&self, packages: &[&str]) -> InstallRequest {
        InstallRequest {
            repos: Some(vec!["base".into()]),
            releasever: Some("40".into()),
            packages: packages.iter().map(|s| s.to_string()).collect(),
            ..InstallRequest::new(&self.manifest_dir(), &self.path("cache"), "x86_64")
        }
    }
}

fn names(res: &Resolution) -> Vec<String> {
    res.packages.iter().map(|p| p.name.clone()).collect()
}

fn version_of(res: &Resolution, name: &str) -> Option<String> {
    res.packages
        .iter()
        .find(|p| p.name == name)
        .map(|p| format!("{}-{}", p.version, p.release))
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> (String, i32) {
    let e = r.expect_err("expected an error");
    eprintln!("expected error (exit {}): {e:#}", exit_code_for(&e));
    (format!("{e:#}"), exit_code_for(&e))
}

#[test]
fn resolve_then_install_into_a_fresh_root() {
    let s = Setup::new();
    let req = s.request(&["app"]);
    let res = install::resolve(&req).unwrap();
    assert_eq!(
        names(&res),
        [
            "app",
            "filesystem",
            "lib-dep",
            "setup",
            "shell",
            "weak-extra"
        ]
    );
    assert_eq!(
        version_of(&res, "app").as_deref(),
        Some("2.0-1"),
        "newest wins"
    );
    for p in &res.packages {
        assert_eq!(p.repo, "base");
        assert!(
            p.checksum.starts_with("sha256:") && p.checksum.len() == 7 + 64,
            "{p:?}"
        );
        assert!(
            p.sourcerpm.starts_with(&format!("{}-", p.name)) && p.sourcerpm.ends_with(".src.rpm"),
            "{p:?}"
        );
        assert!(p.download_size > 0, "{p:?}");
    }
    let expected_sha = {
        let rpm = repos().main.join("Packages/app-2.0-1.noarch.rpm");
        let out = Command::new("sha256sum").arg(&rpm).output().unwrap();
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    };
    let app = res.packages.iter().find(|p| p.name == "app").unwrap();
    assert_eq!(app.checksum, format!("sha256:{expected_sha}"));
    assert_eq!(res.repos.len(), 1);
    assert_eq!(res.repos[0].id, "base");
    assert!(res.repos[0].timestamp > 1_600_000_000, "{:?}", res.repos);

    let root = s.path("root");
    install::install(&req, &res, &root).unwrap();

    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        "greeting=hello\n"
    );
    assert!(root.join("usr/share/doc/app/README").exists());
    let var_app = std::fs::metadata(root.join("var/lib/app")).unwrap();
    assert_eq!((var_app.uid(), var_app.gid()), (900, 900));
    assert_eq!(var_app.mode() & 0o7777, 0o750);
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/app/post-marker")).unwrap(),
        "post-ran 2.0\n",
        "%post ran inside the root"
    );
    assert!(root.join("usr/share/rpm/rpmdb.sqlite").is_file());
    assert!(!root.join("var/lib/rpm/rpmdb.sqlite").exists());
    assert!(!root.join("root/.rpmdb").exists());
    assert!(
        !root.join("var/lib/dnf").exists(),
        "dnf state stays out of the root"
    );
    assert!(!root.join("var/cache/dnf").exists());

    let out = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/usr/share/rpm", "-qa", "--qf", "%{NEVRA}\\n"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut qa: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    qa.sort();
    let mut want: Vec<String> = res.packages.iter().map(|p| p.nevra()).collect();
    want.sort();
    assert_eq!(qa, want, "the root has exactly the resolved set");

    let out = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/usr/share/rpm", "-qc", "app"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/etc/app.conf\n",
        "%config recorded"
    );

    // Nothing but package payload (and the rpmdb) lands in the root.
    let out = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/usr/share/rpm", "-qal"])
        .output()
        .unwrap();
    let owned: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let mut stray = Vec::new();
    walk_non_dirs(&root, &root, &mut |rel| {
        if !owned.contains(&rel)
            && !rel.starts_with("/usr/share/rpm/")
            && rel != "/var/lib/app/post-marker"
        {
            stray.push(rel);
        }
    });
    assert!(stray.is_empty(), "files no package owns: {stray:?}");

    let installed = install::installed_packages(&root).unwrap();
    let got: Vec<(String, String, String)> = installed
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.arch.clone()))
        .collect();
    let want: Vec<(String, String, String)> = res
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.arch.clone()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn constraint_weak_deps_and_nodocs() {
    let s = Setup::new();
    let mut req = s.request(&["app < 2.0"]);
    req.recommends = false;
    req.documentation = false;
    let res = install::resolve(&req).unwrap();
    assert_eq!(version_of(&res, "app").as_deref(), Some("1.0-1"));
    assert!(
        !names(&res).contains(&"weak-extra".to_string()),
        "{:?}",
        names(&res)
    );
    let root = s.path("root");
    install::install(&req, &res, &root).unwrap();
    assert!(root.join("usr/bin/app").exists());
    assert!(root.join("etc/app.conf").exists());
    assert!(!root.join("usr/share/doc/app/README").exists(), "nodocs");
    assert!(!root.join("usr/share/weak-extra").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/app/post-marker")).unwrap(),
        "post-ran 1.0\n"
    );

    // Other spellings: a provide with a version, a file path, >=.
    let res =
        install::resolve(&s.request(&["virtual-thing >= 5", "/usr/lib/lib-dep.txt", "app >= 1.5"]))
            .unwrap();
    assert_eq!(version_of(&res, "app").as_deref(), Some("2.0-1"));
    assert!(names(&res).contains(&"provider".to_string()));
}

#[test]
fn failing_post_names_the_package() {
    let s = Setup::new();
    let req = s.request(&["broken-post"]);
    let res = install::resolve(&req).unwrap();
    let (msg, code) = err_text(install::install(&req, &res, &s.path("root")));
    assert!(msg.contains("broken-post"), "{msg}");
    assert!(msg.contains("POSTIN scriptlet"), "{msg}");
    assert_eq!(code, 1);
}

#[test]
fn repo_packages_pin_the_repository() {
    let s = Setup::new();
    let mut req = s.request(&["app"]);
    req.repos = Some(vec!["base".into(), "other".into()]);
    req.repo_packages = vec![("other".into(), vec!["lib-dep".into()])];
    let res = install::resolve(&req).unwrap();
    let lib = res.packages.iter().find(|p| p.name == "lib-dep").unwrap();
    assert_eq!((lib.version.as_str(), lib.repo.as_str()), ("0.9", "other"));

    req.repo_packages = vec![("other".into(), vec!["setup".into()])];
    let (msg, _) = err_text(install::resolve(&req));
    assert!(
        msg.contains("No matches for 'setup' in repo 'other'"),
        "{msg}"
    );

    // Without repo-packages the newest (main's 1.0) wins.
    req.repo_packages.clear();
    let res = install::resolve(&req).unwrap();
    assert_eq!(version_of(&res, "lib-dep").as_deref(), Some("1.0-1"));
}

#[test]
fn exclude_packages() {
    let s = Setup::new();
    let mut req = s.request(&["app"]);
    req.exclude_packages = vec!["weak-extra".into()];
    let res = install::resolve(&req).unwrap();
    assert!(
        !names(&res).contains(&"weak-extra".to_string()),
        "weak dep dropped"
    );

    let mut req = s.request(&["needs-excluded"]);
    req.exclude_packages = vec!["excluded-dep".into()];
    let (msg, code) = err_text(install::resolve(&req));
    assert!(
        msg.contains("needs-excluded") && msg.contains("excluded-dep"),
        "{msg}"
    );
    assert_eq!(code, 1);

    let mut req = s.request(&["excluded-dep"]);
    req.exclude_packages = vec!["excluded-dep".into()];
    let (msg, _) = err_text(install::resolve(&req));
    assert!(msg.contains("Packages not found: excluded-dep"), "{msg}");
}

#[test]
fn unknown_repo_and_missing_packages() {
    let s = Setup::new();
    let mut req = s.request(&["app"]);
    req.repos = Some(vec!["base".into(), "nope".into()]);
    let (msg, code) = err_text(install::resolve(&req));
    assert!(msg.contains("Unknown rpm-md repository: nope"), "{msg}");
    assert!(
        msg.contains("base, other") && msg.contains("base.repo"),
        "{msg}"
    );
    assert_eq!(code, 3);

    let req = s.request(&["nope1", "app", "nope2"]);
    let (msg, code) = err_text(install::resolve(&req));
    assert!(msg.contains("Packages not found: nope1, nope2"), "{msg}");
    assert_eq!(code, 1);

    // `repos` absent: every enabled=1 repository.
    let mut req = s.request(&["only-other", "app"]);
    req.repos = None;
    let res = install::resolve(&req).unwrap();
    assert!(names(&res).contains(&"only-other".to_string()));
}

#[test]
fn gpgcheck_rejects_unsigned_packages() {
    let s = Setup::new();
    write_repo_file(&s.manifest_dir(), "base", &repos().main, true);
    let req = s.request(&["lib-dep"]);
    let res = install::resolve(&req).unwrap();
    let (msg, _) = err_text(install::download(&req, &res));
    assert!(
        msg.contains("lib-dep-1.0-1.noarch.rpm is not signed"),
        "{msg}"
    );
    let (msg, _) = err_text(install::install(&req, &res, &s.path("root")));
    assert!(msg.contains("GPG check FAILED"), "{msg}");
    assert!(!s.path("root/usr/share/rpm").exists(), "nothing installed");
}

#[test]
fn a_payload_that_is_not_the_headers_is_refused() {
    // rpm installs without hashing each file (--nofiledigest): the payload
    // digest must still stop a payload that decompresses fine but is not
    // the one the header describes (here: another build's, same sizes).
    let s = Setup::new();
    let pkg = |c: &str| Pkg::new("spliced", "1.0").entry(Entry::file("/usr/share/spliced", c));
    let good = build_rpm(&pkg(&"A".repeat(64)), &s.path("a"));
    let other = build_rpm(&pkg(&"B".repeat(64)), &s.path("b"));
    let (good, other) = (std::fs::read(good).unwrap(), std::fs::read(other).unwrap());
    let spliced = splice_payload(&good, &other);
    assert_ne!(spliced, good);
    let repo = s.path("spliced-repo");
    std::fs::create_dir_all(repo.join("Packages")).unwrap();
    std::fs::write(repo.join("Packages").join(pkg("").filename()), &spliced).unwrap();
    refresh_repo(&repo);
    write_repo_file(&s.manifest_dir(), "spliced", &repo, false);
    let req = InstallRequest {
        repos: Some(vec!["spliced".into()]),
        ..s.request(&["spliced"])
    };
    let res = install::resolve(&req).unwrap();
    let (msg, _) = err_text(install::install(&req, &res, &s.path("root")));
    assert!(msg.contains("spliced"), "{msg}");
    assert!(msg.to_lowercase().contains("digest"), "{msg}");
    assert!(!s.path("root/usr/share/spliced").exists(), "{msg}");
}
#[test]
fn releasever_and_repovars_in_baseurl() {
    let s = Setup::new();
    let versioned = s.path("mirror/40/x86_64/stable");
    std::fs::create_dir_all(versioned.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&repos().main, &versioned).unwrap();
    std::fs::write(
        s.manifest_dir().join("base.repo"),
        format!(
            "[base]\nbaseurl=file://{}/mirror/$releasever/$basearch/$channel\ngpgcheck=0\n",
            s.tmp.path().display()
        ),
    )
    .unwrap();
    let mut req = s.request(&["lib-dep"]);
    req.repovars.insert("channel".into(), "stable".into());
    let res = install::resolve(&req).unwrap();
    assert_eq!(names(&res), ["lib-dep"]);
    req.repovars.insert("channel".into(), "unstable".into());
    assert!(install::resolve(&req).is_err());
}

#[test]
fn lockfile_write_read_strict_and_relaxed() {
    let s = Setup::new();
    let req = s.request(&["app"]);
    let res = install::resolve(&req).unwrap();
    let lock = s.path("out/lock.json");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    lockfile::write(&lock, &res).unwrap();
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("\"evra\": \"2.0-1.noarch\""), "{text}");
    assert!(text.contains("\"rpmmd_repos\""), "{text}");
    let parsed = lockfile::read(std::slice::from_ref(&lock)).unwrap();
    assert_eq!(parsed.packages.len(), res.packages.len());

    let mut strict = s.request(&["app"]);
    strict.lockfiles = vec![lock.clone()];
    strict.lockfile_strict = true;
    assert_eq!(install::resolve(&strict).unwrap().packages, res.packages);
    strict.packages.push("only-other".into());
    strict.repos = Some(vec!["base".into(), "other".into()]);
    let (msg, _) = err_text(install::resolve(&strict));
    assert!(msg.contains("Packages not found: only-other"), "{msg}");

    // Relaxed: a lock on app 1.0 pins it; everything else is free.
    let pin = s.path("out/pin.yaml");
    std::fs::write(&pin, "packages:\n  app:\n    evr: 1.0-1\n").unwrap();
    let mut relaxed = s.request(&["app", "excluded-dep"]);
    relaxed.lockfiles = vec![lock.clone(), pin.clone()];
    let res = install::resolve(&relaxed).unwrap();
    assert_eq!(version_of(&res, "app").as_deref(), Some("1.0-1"));
    assert!(names(&res).contains(&"excluded-dep".to_string()));

    // A digest that matches nothing: the lock can't be satisfied, app is excluded.
    std::fs::write(
        &pin,
        format!(
            "packages:\n  app:\n    evra: 2.0-1.noarch\n    digest: sha256:{}\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    relaxed.lockfiles = vec![pin.clone()];
    let (msg, _) = err_text(install::resolve(&relaxed));
    assert!(msg.contains("Packages not found: app"), "{msg}");

    // lockfile-repos: only locked packages may come from them.
    let mut lr = s.request(&["app", "only-other"]);
    lr.lockfile_repos = vec!["other".into()];
    lr.lockfiles = vec![lock.clone()];
    let (msg, _) = err_text(install::resolve(&lr));
    assert!(msg.contains("Packages not found: only-other"), "{msg}");
    let mut lr = s.request(&["app"]);
    lr.lockfile_repos = vec!["other".into()];
    lr.lockfiles = vec![lock];
    let res = install::resolve(&lr).unwrap();
    assert_eq!(
        res.repos.len(),
        2,
        "lockfile-repos are enabled with a lockfile"
    );
    assert_eq!(version_of(&res, "lib-dep").as_deref(), Some("1.0-1"));
}

/// `python3 -m http.server` serving `dir`; killed on drop.
struct HttpServer {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let server = HttpServer {
            child: Command::new("/usr/bin/python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                ])
                .arg(dir)
                .stdout(std::process::Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap(),
            port,
            log,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(server);
        panic!("http.server did not start");
    }
}

impl HttpServer {
    /// Request paths served so far (from the access log).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cache_is_reused_offline() {
    let s = Setup::new();
    let server = HttpServer::start(&repos().main);
    std::fs::write(
        s.manifest_dir().join("base.repo"),
        format!(
            "[base]\nbaseurl=http://127.0.0.1:{}/\ngpgcheck=0\n",
            server.port
        ),
    )
    .unwrap();
    let mut req = s.request(&["app"]);
    let res = install::resolve(&req).unwrap();
    install::download(&req, &res).unwrap();
    let cached_rpms = walk_count(&s.path("cache"), ".rpm");
    assert_eq!(
        cached_rpms,
        res.packages.len(),
        "download-only filled the cache"
    );
    let served = server.requests().len();
    assert!(
        server.requests().iter().any(|r| r.contains("primary")),
        "{:?}",
        server.requests()
    );

    // Online again: only repomd.xml is checked; metadata and RPMs come from the cache.
    let res2 = install::resolve(&req).unwrap();
    install::download(&req, &res2).unwrap();
    let new: Vec<String> = server.requests()[served..].to_vec();
    assert!(
        !new.is_empty() && new.iter().all(|r| r.contains("repomd.xml")),
        "{new:?}"
    );
    drop(server);

    // Offline: refreshing fails, cache-only works and installs from cached RPMs.
    assert!(
        install::resolve(&req).is_err(),
        "metadata refresh needs the server"
    );
    req.cache_only = true;
    let again = install::resolve(&req).unwrap();
    assert_eq!(again, res);
    let root = s.path("root");
    install::install(&req, &again, &root).unwrap();
    assert!(root.join("usr/bin/app").exists());

    // cache-only with an empty cache says so.
    let mut cold = req.clone();
    cold.cachedir = s.path("cold-cache");
    let (msg, _) = err_text(install::resolve(&cold));
    assert!(msg.to_lowercase().contains("cache"), "{msg}");
}

fn walk_count(dir: &Path, suffix: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            n += walk_count(&p, suffix);
        } else if p.to_string_lossy().ends_with(suffix) {
            n += 1;
        }
    }
    n
}

/// Timing of resolve + install for a `make-rpm-corpus` output directory:
/// `CORPUS_DIR=/var/tmp/corpus-small cargo test --test install -- --ignored --nocapture`.
#[test]
#[ignore = "needs CORPUS_DIR from ../shared/bench/make-rpm-corpus"]
fn corpus_resolve_install_timing() {
    let Some(dir) = std::env::var_os("CORPUS_DIR").map(PathBuf::from) else {
        panic!("set CORPUS_DIR");
    };
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("manifest.yaml")).unwrap()).unwrap();
    let packages: Vec<String> = manifest["packages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let req = InstallRequest {
        repos_dir: dir.clone(),
        repos: Some(vec!["corpus".into()]),
        basearch: "x86_64".into(),
        packages,
        recommends: false,
        documentation: true,
        cachedir: tmp.path().join("cache"),
        ..Default::default()
    };
    for round in ["cold cache", "warm cache"] {
        let t = std::time::Instant::now();
        let res = install::resolve(&req).unwrap();
        let resolved = t.elapsed();
        let root = tmp.path().join(format!("root-{}", round.replace(' ', "-")));
        install::install(&req, &res, &root).unwrap();
        let total = t.elapsed();
        let n = install::installed_packages(&root).unwrap().len();
        eprintln!(
            "{round}: resolve {:.2}s, resolve+install {:.2}s, {} packages ({} bytes to download), {n} in rpmdb",
            resolved.as_secs_f64(),
            total.as_secs_f64(),
            res.packages.len(),
            res.download_size()
        );
        assert_eq!(n, res.packages.len());
    }
}

/// Call `f` with the root-relative path ("/usr/bin/x") of every non-directory under `dir`.
fn walk_non_dirs(root: &Path, dir: &Path, f: &mut dyn FnMut(String)) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            walk_non_dirs(root, &p, f);
        } else {
            f(format!("/{}", p.strip_prefix(root).unwrap().display()));
        }
    }
}

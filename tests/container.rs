//! End-to-end tests of the container image, run the way README.md tells a user
//! to: rootless podman as an unprivileged user, no added privileges, the
//! command line copied from the README itself.
//!
//! The image is built once per test run with `ci/build-image` (the binary under
//! test goes in as the prebuilt binary), saved from root's storage and loaded
//! into the test user's (`composer-test`, created by `ci/setup-host`). Run as a
//! normal user, the tests use that user's own storage instead.
//!
//! Skipped (with a message) only when podman is not installed.

mod common;
use common::registry::Registry;

use common::rpmfixture::{build_repo, filesystem_pkg, setup_pkg, Entry, Pkg};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const IMAGE: &str = "localhost/composer:latest";
const DEFAULT_TEST_USER: &str = "composer-test";
/// Upper bound for one compose inside the container.
const RUN_TIMEOUT_SECS: u32 = 900;

/// Who runs podman: an unprivileged account (when the tests run as root) or
/// the current user.
#[derive(Debug, Clone)]
struct Runner {
    /// `Some` when commands are switched to another user with runuser.
    switch_to: Option<String>,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl Runner {
    /// A shell command line run in `dir` as this user, with a time limit.
    fn sh(&self, dir: &Path, script: &str) -> Output {
        let script = format!("cd '{}' && {script}", dir.display());
        let mut cmd = match &self.switch_to {
            Some(name) => {
                let mut c = Command::new("runuser");
                c.args(["-u", name, "--", "env"])
                    .arg(format!("HOME={}", self.home.display()))
                    .arg(format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid))
                    .arg(format!("USER={name}"))
                    .arg(format!("LOGNAME={name}"))
                    .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
                    .arg("timeout")
                    .arg(RUN_TIMEOUT_SECS.to_string())
                    .args(["sh", "-c", &script]);
                c
            }
            None => {
                let mut c = Command::new("timeout");
                c.arg(RUN_TIMEOUT_SECS.to_string())
                    .args(["sh", "-c", &script]);
                c
            }
        };
        cmd.output()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
    }

    /// Like [`Runner::sh`], but the command must succeed; returns its stdout.
    fn sh_ok(&self, dir: &Path, script: &str) -> String {
        let out = self.sh(dir, script);
        assert!(
            out.status.success(),
            "`{script}` failed ({}):\n{}",
            out.status,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh directory owned by this user (removed on drop).
    fn workdir(&self) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("composer-e2e-")
            .tempdir_in("/var/tmp")
            .expect("creating a temporary directory under /var/tmp");
        chown_tree(dir.path(), self.uid, self.gid);
        dir
    }
}

fn describe(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn have_podman() -> bool {
    Command::new("podman")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn home_of(user: &str) -> Option<PathBuf> {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.trim().split(':').nth(5).map(PathBuf::from)
}

fn has_subids(user: &str) -> bool {
    ["/etc/subuid", "/etc/subgid"].iter().all(|f| {
        std::fs::read_to_string(f)
            .map(|s| s.lines().any(|l| l.split(':').next() == Some(user)))
            .unwrap_or(false)
    })
}

fn host_is_bookworm() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .map(|s| s.lines().any(|l| l == "VERSION_CODENAME=bookworm"))
        .unwrap_or(false)
}

/// Serialize container test runs on this machine (several checkouts share
/// root's image storage, the test user's storage and the image name): an
/// exclusive flock held until this test process exits.
fn lock_machine() -> Result<(), String> {
    use rustix::fs::{flock, FlockOperation};
    static HELD: OnceLock<std::fs::File> = OnceLock::new();
    let path = format!(
        "/var/tmp/ostree-composer-container-tests-{}.lock",
        rustix::process::getuid().as_raw()
    );
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        eprintln!("container tests: waiting for another run to release {path}");
        flock(&file, FlockOperation::LockExclusive).map_err(|e| format!("{path}: {e}"))?;
    }
    let _ = HELD.set(file);
    Ok(())
}

/// Build the image and make it available to the runner. Once per test run.
fn prepare() -> Result<Runner, String> {
    lock_machine()?;
    let user_name =
        std::env::var("COMPOSER_TEST_USER").unwrap_or_else(|_| DEFAULT_TEST_USER.to_string());
    let runner = if is_root() {
        let (Some(uid), Some(gid), Some(home)) = (
            id_of(&user_name, "-u"),
            id_of(&user_name, "-g"),
            home_of(&user_name),
        ) else {
            return Err(format!(
                "the unprivileged test user '{user_name}' does not exist: run ci/setup-host as root"
            ));
        };
        if !has_subids(&user_name) {
            return Err(format!(
                "'{user_name}' has no /etc/subuid or /etc/subgid range: run ci/setup-host as root"
            ));
        }
        // runuser starts no login session: make the runtime dir podman expects.
        let run_dir = PathBuf::from(format!("/run/user/{uid}"));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", run_dir.display()))?;
        std::os::unix::fs::chown(&run_dir, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", run_dir.display()))?;
        Runner {
            switch_to: Some(user_name),
            uid,
            gid,
            home,
        }
    } else {
        Runner {
            switch_to: None,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
        }
    };

    // 1. Build (in the current user's storage) with the binary under test.
    let mut build = Command::new(root().join("ci/build-image"));
    build.env("COMPOSER_IMAGE", IMAGE);
    if host_is_bookworm() {
        build.env("COMPOSER_PREBUILT_BINARY", common::composer_bin());
    }
    eprintln!("container tests: building {IMAGE} with ci/build-image");
    let started = std::time::Instant::now();
    let out = build
        .output()
        .map_err(|e| format!("running ci/build-image: {e}"))?;
    if !out.status.success() {
        return Err(format!("ci/build-image failed:\n{}", describe(&out)));
    }
    eprintln!(
        "container tests: image built in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 2. Hand it to the unprivileged user's storage.
    if runner.switch_to.is_some() {
        let tmp = runner.workdir();
        let archive = tmp.path().join("composer.tar");
        let out = Command::new("podman")
            .args(["save", "--quiet", "-o"])
            .arg(&archive)
            .arg(IMAGE)
            .output()
            .map_err(|e| format!("podman save: {e}"))?;
        if !out.status.success() {
            return Err(format!("podman save failed:\n{}", describe(&out)));
        }
        chown_tree(tmp.path(), runner.uid, runner.gid);
        // Loading again leaves the previous image untagged: drop those.
        let out = runner.sh(
            tmp.path(),
            "podman load --quiet -i composer.tar && podman image prune --force >/dev/null",
        );
        if !out.status.success() {
            return Err(format!(
                "podman load as the test user failed:\n{}",
                describe(&out)
            ));
        }
    }
    Ok(runner)
}

/// The shared runner, or `None` (skip) when podman is absent.
fn runner() -> Option<&'static Runner> {
    static READY: OnceLock<Option<Result<Runner, String>>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if !have_podman() {
            return None;
        }
        Some(prepare())
    });
    match ready {
        None => {
            eprintln!("SKIPPED: podman is not installed; the container tests need it (ci/setup-host installs it)");
            None
        }
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => panic!("preparing the container image failed: {e}"),
    }
}

/// The README's command lines (the lines starting with `mkdir -p repo`).
fn readme_command(containing: &str, not_containing: Option<&str>) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("reading README.md");
    readme
        .lines()
        .map(str::trim)
        .find(|l| {
            l.starts_with("mkdir -p repo")
                && l.contains("podman run")
                && l.contains(containing)
                && !not_containing.is_some_and(|n| l.contains(n))
        })
        .unwrap_or_else(|| {
            panic!("README.md has no `mkdir -p repo ... podman run` line with {containing:?}")
        })
        .to_string()
}

fn basearch() -> String {
    let out = Command::new("uname").arg("-m").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file under `dir` belongs to `uid` (what a rootless user expects).
fn assert_owned_by(dir: &Path, uid: u32) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert_eq!(
        meta.uid(),
        uid,
        "{} is owned by uid {}, expected the user's {uid}",
        dir.display(),
        meta.uid()
    );
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            assert_owned_by(&entry.unwrap().path(), uid);
        }
    }
}

/// The checks every composed repo must pass: ref, archive mode, fsck, summary, owner.
fn check_repo(runner: &Runner, work: &Path, r#ref: &str) -> String {
    let repo = work.join("repo");
    assert_owned_by(&repo, runner.uid);
    let config = std::fs::read_to_string(repo.join("config")).expect("repo/config");
    assert!(
        config.lines().any(|l| l.trim().starts_with("mode=archive")),
        "repo is not in archive mode:\n{config}"
    );
    assert!(
        repo.join("summary").is_file(),
        "repo/summary is missing: the summary must be updated"
    );
    let refs = runner.sh_ok(work, "ostree --repo=repo refs");
    assert!(
        refs.lines().any(|l| l.trim() == r#ref),
        "ref {ref} missing; refs:\n{refs}"
    );
    let summary = runner.sh_ok(work, "ostree --repo=repo summary --view");
    assert!(
        summary.contains(r#ref),
        "summary does not list {ref}:\n{summary}"
    );
    runner.sh_ok(work, "ostree --repo=repo fsck");
    runner
        .sh_ok(work, &format!("ostree --repo=repo rev-parse '{ref}'"))
        .trim()
        .to_string()
}

fn commit_count(runner: &Runner, work: &Path, r#ref: &str) -> usize {
    runner
        .sh_ok(work, &format!("ostree --repo=repo log '{ref}'"))
        .lines()
        .filter(|l| l.starts_with("commit "))
        .count()
}

#[test]
fn image_describes_itself() {
    let Some(_) = runner() else { return };
    let out = Command::new("podman")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}} {{.Config.WorkingDir}} {{index .Config.Labels \"org.opencontainers.image.title\"}}",
            IMAGE,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text.trim(),
        "[\"ostree-composer\"] /srv/manifests ostree-composer"
    );
    // The bundled manifests and the demo RPM repository are in the image.
    let out = Command::new("podman")
        .args(["run", "--rm", "--network=none", "--entrypoint", "sh", IMAGE, "-c"])
        .arg("ls /srv/manifests && ls /usr/share/ostree-composer/demo-repo/Packages && test -d /srv/repo && test -d /srv/cache")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    for want in [
        "manifest.yaml",
        "demo.repo",
        "fedora-minimal",
        "centos-stream-bootc",
        "demo-kernel-",
        "demo-base-",
    ] {
        assert!(
            text.contains(want),
            "{want} missing from the image:\n{text}"
        );
    }
    // --help documents the exit codes.
    let out = Command::new("podman")
        .args(["run", "--rm", "--network=none", IMAGE, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes:"));
}

/// The main job on a fresh machine: README's command, rootless, offline,
/// composes the bundled demo; a second run changes nothing.
#[test]
fn readme_main_command_composes_the_demo_rootless() {
    let Some(runner) = runner() else { return };
    let cmd = readme_command("localhost/composer", Some("/srv/manifests"));
    for forbidden in ["--privileged", "--cap-add", "--device", "--security-opt"] {
        assert!(
            !cmd.contains(forbidden),
            "the README command must not need {forbidden}: {cmd}"
        );
    }
    let work = runner.workdir();
    let started = std::time::Instant::now();
    let first = runner.sh(work.path(), &cmd);
    assert!(
        first.status.success(),
        "`{cmd}` failed ({}):\n{}",
        first.status,
        describe(&first)
    );
    eprintln!(
        "demo compose (first run): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let r#ref = format!("ostree-composer/demo/{}/minimal", basearch());
    let commit = check_repo(runner, work.path(), &r#ref);

    // A bootable tree in OSTree's sense: kernel + initramfs under /usr/lib/modules.
    let kver = format!("6.1.0-1.demo.{}", basearch());
    let listing = runner.sh_ok(
        work.path(),
        &format!("ostree --repo=repo ls '{ref}' /usr/lib/modules/{kver}"),
    );
    assert!(listing.contains("vmlinuz"), "{listing}");
    assert!(listing.contains("initramfs.img"), "{listing}");
    let linux = runner.sh_ok(
        work.path(),
        &format!("ostree --repo=repo show --print-metadata-key=ostree.linux '{ref}'"),
    );
    assert!(
        linux.contains(&kver),
        "ostree.linux should name {kver}: {linux}"
    );
    let sh = runner.sh_ok(
        work.path(),
        &format!("ostree --repo=repo ls '{ref}' /usr/bin/sh"),
    );
    assert!(sh.contains("-> busybox"), "{sh}");

    // Second run: same inputs, no new commit.
    let started = std::time::Instant::now();
    let second = runner.sh(work.path(), &cmd);
    assert!(
        second.status.success(),
        "second run failed ({}):\n{}",
        second.status,
        describe(&second)
    );
    eprintln!(
        "demo compose (unchanged rerun): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        all.contains("No apparent changes"),
        "the rerun should say so:\n{all}"
    );
    let again = check_repo(runner, work.path(), &r#ref);
    assert_eq!(commit, again, "an unchanged rerun must not move the ref");
    assert_eq!(commit_count(runner, work.path(), &r#ref), 1);
}

/// A user's own manifest and RPM repository, mounted over /srv/manifests as
/// the README shows, with a cache directory reused by the second run.
#[test]
fn readme_own_manifest_command_uses_the_mounted_repo() {
    let Some(runner) = runner() else { return };
    if !common::rpmfixture::have_rpm_tools() {
        panic!("rpmbuild/createrepo_c missing: run ci/setup-host");
    }
    let cmd = readme_command("/srv/manifests", None);
    let work = runner.workdir();
    let manifests = work.path().join("my-manifests");
    let kver = "6.0.0-1.test.x86_64";
    let hello = Pkg::new("hello", "1.0")
        .requires("filesystem")
        .entry(Entry::file(
            "/usr/share/hello/greeting",
            "hello from the test repo\n",
        ))
        .entry(Entry::config("/etc/hello.conf", "greeting=hi\n"))
        // rpm sets it in the container's user namespace; so must the
        // cached installer on the forced rerun below.
        .entry(Entry::Caps {
            path: "/usr/bin/hello-ping".into(),
            content: "#!/bin/sh\necho ping\n".into(),
            caps: "cap_net_raw=p".into(),
        });
    let kernel = Pkg::new("test-kernel", "6.0.0")
        .arch("x86_64")
        .requires("filesystem")
        .entry(Entry::dir(&format!("/usr/lib/modules/{kver}")))
        .entry(Entry::file(
            &format!("/usr/lib/modules/{kver}/vmlinuz"),
            "kernel stand-in\n",
        ))
        .entry(Entry::file(
            &format!("/usr/lib/modules/{kver}/initramfs.img"),
            "initramfs stand-in\n",
        ));
    build_repo(
        &manifests.join("rpms"),
        &[filesystem_pkg(), setup_pkg(), hello, kernel],
    );
    // The path the repository has inside the container.
    std::fs::write(
        manifests.join("local.repo"),
        "[local]\nname=test packages\nbaseurl=file:///srv/manifests/rpms\nenabled=1\ngpgcheck=0\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("manifest.yaml"),
        "ref: test/${basearch}/own\n\
         repos: [local]\n\
         packages: [filesystem, setup, hello, test-kernel]\n\
         no-initramfs: true\n\
         boot-location: modules\n\
         selinux: false\n",
    )
    .unwrap();
    chown_tree(work.path(), runner.uid, runner.gid);

    let first = runner.sh(work.path(), &cmd);
    assert!(
        first.status.success(),
        "`{cmd}` failed ({}):\n{}",
        first.status,
        describe(&first)
    );
    let r#ref = format!("test/{}/own", basearch());
    let commit = check_repo(runner, work.path(), &r#ref);
    let greeting = runner.sh_ok(
        work.path(),
        &format!("ostree --repo=repo cat '{ref}' /usr/share/hello/greeting"),
    );
    assert_eq!(greeting, "hello from the test repo\n");
    // /etc content lives in /usr/etc in an OSTree commit.
    runner.sh_ok(
        work.path(),
        &format!("ostree --repo=repo ls '{ref}' /usr/etc/hello.conf"),
    );
    if cmd.contains("./cache:") {
        assert_owned_by(&work.path().join("cache"), runner.uid);
    }

    let second = runner.sh(work.path(), &cmd);
    assert!(
        second.status.success(),
        "second run failed ({}):\n{}",
        second.status,
        describe(&second)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(all.contains("No apparent changes"), "{all}");
    assert_eq!(check_repo(runner, work.path(), &r#ref), commit);

    // With ./cache mounted, the first run filled the package cache; a forced
    // rerun assembles the root from it, rootless (hardlinks, scriptlets
    // chrooted by the dnf helper), to the same tree.
    let first_log = String::from_utf8_lossy(&first.stderr);
    assert!(
        first_log.contains("importing them after the post-processing")
            && first_log.contains("packages imported for the next compose"),
        "{first_log}"
    );
    let third = runner.sh(work.path(), &format!("{cmd} --force-nocache"));
    let log = describe(&third);
    assert!(third.status.success(), "forced rerun failed:\n{log}");
    assert!(log.contains("Root assembled"), "{log}");
    let recommitted = check_repo(runner, work.path(), &r#ref);
    assert_ne!(recommitted, commit);
    // Files and symlinks, with modes, owners and checksums; the rpmdb records
    // install times (no SOURCE_DATE_EPOCH here), so it and the directories
    // above it differ.
    let files = |rev: &str| -> Vec<String> {
        runner
            .sh_ok(work.path(), &format!("ostree --repo=repo ls -R -C {rev}"))
            .lines()
            .filter(|l| !l.starts_with('d') && !l.contains("rpmdb.sqlite"))
            .map(String::from)
            .collect()
    };
    assert_eq!(files(&recommitted), files(&commit));
    let caps = runner.sh_ok(
        work.path(),
        &format!("ostree --repo=repo ls -X {recommitted} /usr/bin/hello-ping"),
    );
    assert!(caps.contains("security.capability"), "{caps}");
}

/// The GitHub workflow's "Compose" step, run as written for its `demo` matrix
/// entry (rootless, as on a runner): it must leave the compose JSON and an OCI
/// archive of the commit in ./out. The only change: `--network=none` (this
/// machine has no rootless networking; the demo needs none).
#[test]
fn github_template_compose_step_runs_rootless() {
    let Some(runner) = runner() else { return };
    let text = std::fs::read_to_string(root().join("ci/github/compose.yml")).unwrap();
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let job = &wf["jobs"]["compose"];
    let demo = job["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("demo"))
        .expect("a demo matrix entry");
    let step = job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str() == Some("Compose"))
        .expect("a Compose step");
    let mut script = step["run"].as_str().unwrap().to_string();
    for key in ["name", "manifests", "manifest"] {
        script = script.replace(
            &format!("${{{{ matrix.{key} }}}}"),
            demo[key].as_str().unwrap(),
        );
    }
    assert!(!script.contains("${{"), "unexpanded expression in {script}");
    let script = script.replace("podman run --rm", "podman run --rm --network=none");
    let image = wf["env"]["COMPOSER_IMAGE"].as_str().unwrap();

    let work = runner.workdir();
    // The runner's checkout: the manifests directory of this tree.
    let copy = Command::new("cp")
        .arg("-a")
        .arg(root().join("manifests"))
        .arg(work.path())
        .status()
        .unwrap();
    assert!(copy.success());
    chown_tree(work.path(), runner.uid, runner.gid);
    let out = runner.sh(
        work.path(),
        &format!("export COMPOSER_IMAGE='{image}'; set -e\n{script}"),
    );
    assert!(
        out.status.success(),
        "the Compose step failed ({}):\n{}",
        out.status,
        describe(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("out/compose.json")).expect("out/compose.json"),
    )
    .expect("compose JSON");
    let r#ref = format!("ostree-composer/demo/{}/minimal", basearch());
    assert_eq!(json["ref"], r#ref.as_str(), "{json}");
    let commit = check_repo(runner, work.path(), &r#ref);
    assert_eq!(json["ostree-commit"], commit.as_str(), "{json}");
    let inspect = runner.sh_ok(
        work.path(),
        "skopeo inspect --config oci-archive:out/demo.ociarchive",
    );
    assert!(
        inspect.contains(&commit),
        "the OCI image should carry the commit {commit}:\n{inspect}"
    );
    assert_owned_by(&work.path().join("out"), runner.uid);
}

fn auth_json(registry: &str, user: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .args(["-w0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let b64 = String::from_utf8(out.stdout).unwrap();
    format!("{{\"auths\":{{\"{registry}\":{{\"auth\":\"{b64}\"}}}}}}")
}

/// Pushing from the rootless container as the README describes: the auth file
/// mounted read-only and passed with --authfile. The image lands in a registry
/// that requires the credentials; the password never appears in the output,
/// and a wrong password fails with exit code 5 (commit written, output failed).
#[test]
fn push_to_an_authenticated_registry_with_a_mounted_authfile() {
    let Some(runner) = runner() else { return };
    let (user, password) = ("composer", "pw-7f3a9c-never-log-me");
    let registry = Registry::start_with_auth(user, password);
    let host = format!("127.0.0.1:{}", registry.port);
    let work = runner.workdir();
    std::fs::write(
        work.path().join("auth.json"),
        auth_json(&host, user, password),
    )
    .unwrap();
    std::fs::write(
        work.path().join("wrong.json"),
        auth_json(&host, user, "not-the-password-0c1d"),
    )
    .unwrap();
    chown_tree(work.path(), runner.uid, runner.gid);
    // Rootless podman shares the user's network with --network=host without
    // needing /dev/net/tun; that is how the container reaches 127.0.0.1.
    let push = |authfile: &str| {
        runner.sh(
            work.path(),
            &format!(
                "mkdir -p repo && podman run --rm --network=host -v ./repo:/srv/repo \
                 -v ./{authfile}:/run/auth.json:ro {IMAGE} manifest.yaml \
                 --oci docker://{host}/os/demo:latest --authfile /run/auth.json \
                 --dest-tls-verify=false --progress=plain"
            ),
        )
    };

    let out = push("auth.json");
    let all = describe(&out);
    assert!(out.status.success(), "push failed ({}):\n{all}", out.status);
    assert!(!all.contains(password), "the password was printed:\n{all}");
    let r#ref = format!("ostree-composer/demo/{}/minimal", basearch());
    let commit = check_repo(runner, work.path(), &r#ref);
    let inspect = runner.sh_ok(
        work.path(),
        &format!(
            "skopeo inspect --config --tls-verify=false --authfile auth.json docker://{host}/os/demo:latest"
        ),
    );
    assert!(
        inspect.contains(&commit),
        "the pushed image should carry {commit}:\n{inspect}"
    );
    // Without credentials the registry refuses: the image really is protected.
    let anon = runner.sh(
        work.path(),
        &format!("skopeo inspect --tls-verify=false --no-creds docker://{host}/os/demo:latest"),
    );
    let anon_text = describe(&anon).to_lowercase();
    assert!(
        !anon.status.success()
            && (anon_text.contains("unauthorized")
                || anon_text.contains("authentication required")),
        "the registry should refuse anonymous reads:\n{anon_text}"
    );

    let bad = push("wrong.json");
    let all = describe(&bad);
    assert_eq!(
        bad.status.code(),
        Some(5),
        "a refused push should exit 5:\n{all}"
    );
    assert!(
        !all.contains("not-the-password-0c1d"),
        "the password was printed:\n{all}"
    );
}

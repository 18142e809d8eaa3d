//! Composes running at the same time against the same repositories: they must
//! serialize on the repo lock (the later one says it is waiting), every one
//! must succeed, and no ref update may be lost: the new commits form one
//! chain (each one's parent is the one before), and `ostree fsck` is clean.
mod common;

use common::composer_bin;
use common::rpmfixture::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REF: &str = "test/x86_64/conc";

const MANIFEST: &str = "ref: test/x86_64/conc
repos: [fixture]
packages: [filesystem, setup, busybox, app]
selinux: false
container: true
";

struct Fixture {
    tmp: tempfile::TempDir,
    manifest: PathBuf,
}

fn fixture() -> Fixture {
    assert!(have_rpm_tools(), "rpmbuild and createrepo_c are needed");
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rpms = build_repo(
        &tmp.path().join("rpms"),
        &[
            filesystem_pkg(),
            setup_pkg(),
            busybox_pkg(),
            Pkg::new("app", "1.0").entry(Entry::file("/usr/share/app/data", "app\n")),
        ],
    );
    let dir = tmp.path().join("manifest");
    std::fs::create_dir_all(&dir).unwrap();
    write_repo_file(&dir, "fixture", &rpms, false);
    let manifest = dir.join("m.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    Fixture { tmp, manifest }
}

fn ostree(repo: &Path, args: &[&str]) -> Output {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap()
}

fn rev(repo: &Path, r: &str) -> Option<String> {
    let out = ostree(repo, &["rev-parse", r]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn assert_fsck(repo: &Path) {
    let out = ostree(repo, &["fsck"]);
    assert!(
        out.status.success(),
        "fsck {}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The chain of commits from the ref back, `n` deep.
fn chain(repo: &Path, n: usize) -> Vec<String> {
    let mut out = vec![];
    let mut cur = rev(repo, REF);
    while let Some(c) = cur {
        out.push(c.clone());
        if out.len() == n {
            break;
        }
        cur = rev(repo, &format!("{c}^"));
    }
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Start all commands at once and wait for all of them.
fn run_all(cmds: Vec<Command>) -> Vec<Output> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn waited(o: &Output) -> bool {
    String::from_utf8_lossy(&o.stderr).contains("waiting for lock on")
}

#[test]
fn concurrent_compose_tree_into_one_repo_serializes() {
    let f = fixture();
    let repo = f.tmp.path().join("repo");
    assert!(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["init", "--mode=bare-user"])
        .status()
        .unwrap()
        .success());
    let tree = |cache: &str| {
        let mut c = Command::new(composer_bin());
        c.args(["compose", "tree", "--force-nocache"])
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--cachedir={}", f.tmp.path().join(cache).display()))
            .arg(&f.manifest);
        c
    };
    // A first commit, so every concurrent one has a parent to race for.
    let out = tree("cache-a").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let first = rev(&repo, REF).unwrap();

    // Four at once: two sharing a cache, two with their own.
    let outs = run_all(vec![
        tree("cache-a"),
        tree("cache-a"),
        tree("cache-b"),
        tree("cache-c"),
    ]);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
    let waiters = outs.iter().filter(|o| waited(o)).count();
    assert!(
        waiters >= 1,
        "four composes at once, yet none waited for the lock"
    );
    // No lost update: five commits in one chain ending at the first.
    let c = chain(&repo, 5);
    assert_eq!(c.len(), 5, "{c:?}");
    assert_eq!(c[4], first, "the chain must end at the first commit: {c:?}");
    let mut unique = c.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{c:?}");
    // Every process's commit is in the chain.
    for o in &outs {
        let stdout = String::from_utf8_lossy(&o.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{REF} => ")))
            .unwrap_or_else(|| panic!("no ref line: {}", text(o)));
        let commit = line.rsplit(' ').next().unwrap();
        assert!(c.iter().any(|x| x == commit), "{commit} lost: {c:?}");
    }
    assert_fsck(&repo);
}

/// Two one-shot runs exporting to one archive repo at once, with their own
/// caches and with a shared fresh cache: both succeed, the export history
/// has both commits, fsck is clean.
#[test]
fn concurrent_oneshots_into_one_export_repo() {
    let f = fixture();
    let export = f.tmp.path().join("export");
    let oneshot_to = |export: &Path, cache: &str| {
        let mut c = Command::new(composer_bin());
        c.arg(&f.manifest)
            .arg(format!("--repo={}", export.display()))
            .arg(format!("--cachedir={}", f.tmp.path().join(cache).display()))
            .arg("--force-nocache");
        c
    };
    let oneshot = |cache: &str| oneshot_to(&export, cache);
    // Fresh export repo and a fresh shared cache: both create them at once.
    let outs = run_all(vec![oneshot("shared"), oneshot("shared")]);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let c = chain(&export, 3);
    assert_eq!(
        c.len(),
        2,
        "both commits must be in the export history: {c:?}"
    );
    assert_fsck(&export);
    assert_fsck(&f.tmp.path().join("shared/repo-build"));

    // A fresh export repo again, now with separate fresh caches: the
    // composes must still serialize on the export repo.
    let export2 = f.tmp.path().join("export2");
    let fresh = |cache: &str| oneshot_to(&export2, cache);
    let outs = run_all(vec![fresh("fresh-1"), fresh("fresh-2")]);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let c_fresh = chain(&export2, 3);
    assert_eq!(
        c_fresh.len(),
        2,
        "a lost update in a fresh export repo: {c_fresh:?}"
    );
    assert_fsck(&export2);

    // Existing export repo, separate caches.
    let outs = run_all(vec![oneshot("own-1"), oneshot("own-2")]);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    assert!(
        outs.iter().any(waited),
        "two one-shots on one export repo, yet none waited: {}",
        outs.iter().map(text).collect::<Vec<_>>().join("\n")
    );
    let c2 = chain(&export, 5);
    assert_eq!(c2.len(), 4, "no lost update in the export history: {c2:?}");
    assert_eq!(&c2[2..], &c[..], "{c2:?} vs {c:?}");
    assert_fsck(&export);
    for cache in ["own-1", "own-2"] {
        assert_fsck(&f.tmp.path().join(cache).join("repo-build"));
    }
}

/// Composes into different repos sharing one fresh cache (rpm-md metadata,
/// downloaded packages, work directories) at the same time: all succeed.
#[test]
fn concurrent_composes_share_one_cache() {
    let f = fixture();
    let cache = f.tmp.path().join("shared-cache");
    let repos: Vec<PathBuf> = (0..3)
        .map(|i| f.tmp.path().join(format!("repo{i}")))
        .collect();
    let cmds = repos
        .iter()
        .map(|repo| {
            assert!(Command::new("ostree")
                .arg(format!("--repo={}", repo.display()))
                .args(["init", "--mode=bare-user"])
                .status()
                .unwrap()
                .success());
            let mut c = Command::new(composer_bin());
            c.args(["compose", "tree"])
                .arg(format!("--repo={}", repo.display()))
                .arg(format!("--cachedir={}", cache.display()))
                .arg(&f.manifest)
                .env("SOURCE_DATE_EPOCH", "1700000000");
            c
        })
        .collect();
    let outs = run_all(cmds);
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    // The same inputs give the same commit in each repo.
    let commits: Vec<_> = repos.iter().map(|r| rev(r, REF).unwrap()).collect();
    assert!(commits.windows(2).all(|w| w[0] == w[1]), "{commits:?}");
    for r in &repos {
        assert_fsck(r);
    }
}

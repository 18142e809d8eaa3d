//! Compose `corpus-medium` end to end: real Debian software (a systemd server,
//! 168 packages) repackaged as RPMs by `../shared/bench/make-rpm-corpus`,
//! with its real dependency graph and scriptlets. Slow (the corpus build
//! downloads ~80 MiB of .debs on the first run; it is kept under
//! /var/tmp/ostree-composer-corpus and reused), so it runs once per suite.
//!
//! Skipped, with a message, only when ../shared is absent.
mod common;

use common::compose_fixture::{init_repo, ostree, ostree_ok, text};
use common::composer_bin;
use std::process::Command;
use std::time::Instant;

const REF: &str = "corpus/x86_64/medium";

#[test]
fn compose_corpus_medium() {
    let Some(shared) = common::shared_dir() else {
        eprintln!("SKIPPED: ../shared is absent, corpus-medium cannot be built");
        return;
    };
    let corpus = common::build_corpus(&shared, "medium");
    // Our copy of the generated manifest: no kernel in this tier.
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let manifest_dir = work.path().join("manifest");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let generated = std::fs::read_to_string(corpus.join("manifest.yaml")).unwrap();
    std::fs::write(
        manifest_dir.join("manifest.yaml"),
        format!("{generated}\ncontainer: true\n"),
    )
    .unwrap();
    std::fs::copy(corpus.join("corpus.repo"), manifest_dir.join("corpus.repo")).unwrap();

    let repo = work.path().join("repo");
    init_repo(&repo, "bare-user");
    let cache = work.path().join("cache");
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kb=%M"])
        .arg(composer_bin())
        .args(["compose", "tree", "--unified-core"])
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--cachedir={}", cache.display()))
        .arg(manifest_dir.join("manifest.yaml"))
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kb="))
        .unwrap_or("?");
    eprintln!("corpus-medium compose tree: {wall:.1}s wall, peak RSS of the composer {rss} KiB");

    // The commit: every package in the rpmdb, a real shell and systemd, fsck clean.
    let co = work.path().join("checkout");
    ostree(
        &repo,
        &["checkout", "--user-mode", REF, co.to_str().unwrap()],
    );
    let q = Command::new("rpm")
        .arg("--dbpath")
        .arg(co.join("usr/share/rpm"))
        .args(["-qa"])
        .output()
        .unwrap();
    let n = String::from_utf8_lossy(&q.stdout).lines().count();
    assert!(n >= 160, "expected the whole closure in the rpmdb, got {n}");
    let ls = ostree(
        &repo,
        &["ls", REF, "/usr/bin/bash", "/usr/lib/systemd/systemd"],
    );
    assert_eq!(ls.lines().count(), 2, "{ls}");
    let tmpfiles = ostree(
        &repo,
        &["cat", REF, "/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf"],
    );
    assert!(tmpfiles.lines().count() > 5, "{tmpfiles}");
    assert!(ostree_ok(&repo, &["fsck"]));

    // A rerun is a no-op.
    let t = Instant::now();
    let out = Command::new(composer_bin())
        .args(["compose", "tree"])
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--cachedir={}", cache.display()))
        .arg(manifest_dir.join("manifest.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No apparent changes"), "{}", text(&out));
    eprintln!(
        "corpus-medium no-change rerun: {:.2}s",
        t.elapsed().as_secs_f64()
    );
}

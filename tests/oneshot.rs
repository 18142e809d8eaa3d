//! The one-shot command end to end: compose into the cache's build repo,
//! export to an archive repo (summary, static delta), write an OCI archive,
//! and report everything in the compose JSON; reruns are incremental.
mod common;

use common::compose_fixture::*;
use common::composer_bin;
use std::path::Path;
use std::process::{Command, Output};

fn oneshot(f: &Fixture, export: &Path, cache: Option<&Path>, extra: &[&str]) -> Output {
    let mut cmd = Command::new(composer_bin());
    cmd.arg(&f.manifest)
        .arg("--repo")
        .arg(export)
        .args(["--progress", "json"])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if let Some(c) = cache {
        cmd.arg("--cachedir").arg(c);
    }
    cmd.output().unwrap()
}

fn config_mode(repo: &Path) -> String {
    let cfg = std::fs::read_to_string(repo.join("config")).unwrap();
    cfg.lines()
        .find_map(|l| l.trim().strip_prefix("mode="))
        .unwrap_or_default()
        .to_string()
}

/// libostree writes archive mode as its legacy name `archive-z2`.
fn is_archive(repo: &Path) -> bool {
    matches!(config_mode(repo).as_str(), "archive" | "archive-z2")
}

#[test]
fn oneshot_exports_and_encapsulates() {
    let f = fixture();
    let export = f.dir.join("export");
    let ociarchive = f.dir.join("image.ociarchive");
    let json = f.dir.join("compose.json");
    let out = oneshot(
        &f,
        &export,
        Some(&f.cache),
        &[
            "--oci",
            &format!("oci-archive:{}", ociarchive.display()),
            "--write-composejson-to",
            json.to_str().unwrap(),
            "--label",
            "org.example.test=yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Progress is JSON lines on stderr, one object per line, with phases.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let phases: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON progress line"))
        .filter(|v| v["event"] == "phase")
        .map(|v| v["phase"].as_str().unwrap().to_string())
        .collect();
    for p in [
        "resolve",
        "install",
        "postprocess",
        "commit",
        "export",
        "oci",
    ] {
        assert!(
            phases.iter().any(|x| x == p),
            "phase {p} missing: {phases:?}"
        );
    }

    // The archive repo: created in archive mode, ref, summary, fsck clean.
    assert!(is_archive(&export), "mode {}", config_mode(&export));
    let commit = rev(&export, REF);
    assert!(export.join("summary").exists(), "summary written");
    let summary = ostree(&export, &["summary", "--view"]);
    assert!(
        summary.contains(REF) && summary.contains(&commit),
        "{summary}"
    );
    assert!(ostree_ok(&export, &["fsck"]));
    assert_eq!(
        ostree(&export, &["cat", REF, "/usr/bin/app"]),
        "#!/bin/sh\necho app 2.0\n"
    );

    // The OCI archive carries the commit and our label, in several layers.
    let inspect = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", ociarchive.display())])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect));
    let img: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(img["Labels"]["ostree.commit"], commit.as_str());
    assert_eq!(img["Labels"]["org.example.test"], "yes");
    assert_eq!(img["Labels"]["containers.bootc"], "1");
    assert!(img["Layers"].as_array().unwrap().len() >= 3, "{img}");

    // The compose JSON names the commit, the export and the image.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["ostree-commit"], commit.as_str());
    assert_eq!(j["exported-repo"]["mode"], "archive");
    assert!(j["ostree-n-content-written"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(
        j["images"][0]["layers"],
        img["Layers"].as_array().unwrap().len()
    );
    assert!(j["images"][0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // Unchanged rerun: no new commit.
    let out = oneshot(&f, &export, Some(&f.cache), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No apparent changes"), "{}", text(&out));
    assert_eq!(rev(&export, REF), commit);

    // A new commit with a static delta from the previous one.
    let out = oneshot(
        &f,
        &export,
        Some(&f.cache),
        &["--force-nocache", "--static-delta"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let second = rev(&export, REF);
    assert_ne!(second, commit);
    assert_eq!(rev(&export, &format!("{REF}^")), commit, "history exported");
    let deltas = ostree(&export, &["static-delta", "list"]);
    assert!(deltas.contains(&format!("{commit}-{second}")), "{deltas}");
    assert!(ostree_ok(&export, &["fsck"]));
}

#[test]
fn oneshot_without_cache_detects_no_change_from_the_export() {
    let f = fixture();
    let export = f.dir.join("export");
    std::fs::create_dir_all(&export).unwrap(); // an empty dir is initialised
    let out = oneshot(&f, &export, None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(is_archive(&export), "mode {}", config_mode(&export));
    let first = rev(&export, REF);
    // A second run with a fresh temporary cache: the export's input hash decides.
    let out = oneshot(&f, &export, None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No apparent changes"), "{}", text(&out));
    assert_eq!(rev(&export, REF), first);
    // Forced: the new commit's parent is the exported one.
    let out = oneshot(&f, &export, None, &["--force-nocache"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rev(&export, &format!("{REF}^")), first);
    assert!(ostree_ok(&export, &["fsck"]));
}

#[test]
fn oneshot_print_only_and_missing_manifest() {
    let f = fixture();
    let out = Command::new(composer_bin())
        .arg(&f.manifest)
        .arg("--print-only")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ref"], REF);
    let out = Command::new(composer_bin())
        .arg(f.dir.join("nope.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("nope.yaml"), "{}", text(&out));
}

/// The packages' files are deflated while rpm installs them (the export's
/// deflate-ahead worker): the exported repository holds exactly the objects
/// libostree's own pull-local writes from the build repo, and they are whole.
#[test]
fn oneshot_archive_matches_libostree_with_files_deflated_during_install() {
    let f = fixture();
    let export = f.dir.join("export");
    let out = oneshot(&f, &export, Some(&f.cache), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    let line = log
        .lines()
        .find(|l| l.starts_with("Deflated ahead (during the install and post-processing):"))
        .unwrap_or_else(|| panic!("no deflate-ahead report in:\n{log}"));
    // How many got deflated before the export started depends on timing;
    // that the installer reported the packages' files does not.
    let offered: u64 = line
        .split("from the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected report: {line}"));
    assert!(offered >= 5, "{line}");

    let reference = f.dir.join("reference");
    init_repo(&reference, "archive");
    let build_repo = f.cache.join("repo-build");
    ostree(
        &reference,
        &["pull-local", build_repo.to_str().unwrap(), REF],
    );
    let ours = object_names(&export);
    assert!(ours.iter().any(|o| o.ends_with(".filez")), "{ours:?}");
    assert_eq!(ours, object_names(&reference));
    assert!(ostree_ok(&export, &["fsck"]));
}

/// `xx/rest.kind` of every loose object of `repo`.
fn object_names(repo: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(repo.join("objects")).unwrap() {
        let dir = dir.unwrap();
        for obj in std::fs::read_dir(dir.path()).unwrap() {
            out.insert(format!(
                "{}/{}",
                dir.file_name().to_string_lossy(),
                obj.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out
}

//! The no-change fast path of `compose tree` (src/install/fastpath.rs), end to
//! end with real RPMs, dnf, createrepo_c and OSTree: a rerun with nothing new
//! answers "No apparent changes" without starting dnf, and any change of the
//! repository metadata or the treefile goes through a full resolve.
mod common;

use common::compose_fixture::*;
use common::rpmfixture::{build_rpm, refresh_repo, Entry, Pkg};

const FAST_NOTE: &str = "not resolving";
const RECORD: &str = "resolve-fastpath.json";

#[test]
fn unchanged_rerun_skips_dnf_and_changed_repo_does_not() {
    let f = fixture();
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let first = rev(&f.repo, REF);
    assert!(
        f.cache.join(RECORD).is_file(),
        "no fast-path record written"
    );

    // Same inputs: unchanged, answered without a resolve.
    let out = compose(&f, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("No apparent changes"), "{t}");
    assert!(t.contains(FAST_NOTE), "fast path not taken:\n{t}");
    assert!(
        !t.contains("Resolving dependencies"),
        "dnf was started:\n{t}"
    );
    assert_eq!(rev(&f.repo, REF), first);

    // A new RPM in the repository (createrepo_c rewrites repomd.xml): the
    // rerun must resolve and commit the new version.
    let rpms = f._tmp.path().join("rpms");
    let app3 = Pkg::new("app", "3.0")
        .arch("x86_64")
        .requires("libfoo")
        .requires("setup")
        .entry(Entry::exe("/usr/bin/app", "#!/bin/sh\necho app 3.0\n"))
        .entry(Entry::config("/etc/app.conf", "setting=1\n"))
        .entry(Entry::file("/usr/share/app/remove-me", "x\n"))
        .entry(Entry::file(
            "/usr/lib/systemd/system/app.service",
            "[Service]\nExecStart=/usr/bin/app\n",
        ))
        .entry(Entry::owned_dir("/var/lib/app", 0o750, "demo", "demo"));
    build_rpm(&app3, &rpms.join("Packages"));
    refresh_repo(&rpms);
    let out = compose(&f, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        !t.contains("No apparent changes"),
        "changed repo reported unchanged:\n{t}"
    );
    assert!(!t.contains(FAST_NOTE), "{t}");
    let second = rev(&f.repo, REF);
    assert_ne!(second, first);
    assert_eq!(
        ostree(&f.repo, &["cat", REF, "/usr/bin/app"]),
        "#!/bin/sh\necho app 3.0\n"
    );

    // Unchanged again -> fast path again.
    let out = compose(&f, &[]);
    let t = text(&out);
    assert!(out.status.success() && t.contains(FAST_NOTE), "{t}");
    assert_eq!(rev(&f.repo, REF), second);

    // A treefile change is not "unchanged".
    let manifest = std::fs::read_to_string(&f.manifest).unwrap();
    std::fs::write(
        &f.manifest,
        manifest.replace("fixture: \"yes\"", "fixture: \"changed\""),
    )
    .unwrap();
    let out = compose(&f, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("No apparent changes"), "{t}");
    assert_ne!(rev(&f.repo, REF), second);
    assert_eq!(meta(&f.repo, REF, "fixture"), "'changed'");

    // --force-nocache never takes the fast path.
    let third = rev(&f.repo, REF);
    let out = compose(&f, &["--force-nocache"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains(FAST_NOTE), "{t}");
    assert_ne!(rev(&f.repo, REF), third);
}

#[test]
fn a_commit_without_the_recorded_inputhash_is_not_unchanged() {
    let f = fixture();
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let first = rev(&f.repo, REF);
    // A record that does not match the previous commit's input hash (e.g. the
    // repo was reset to another commit) must lead to a full resolve.
    let record = f.cache.join(RECORD);
    let text_record = std::fs::read_to_string(&record).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text_record).unwrap();
    let forged = serde_json::json!({"key": v["key"], "inputhash": "0".repeat(64)});
    std::fs::write(&record, forged.to_string()).unwrap();
    let out = compose(&f, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains(FAST_NOTE), "{t}");
    // The full resolve finds the same inputs: unchanged, and the record is repaired.
    assert!(t.contains("No apparent changes"), "{t}");
    assert_eq!(rev(&f.repo, REF), first);
    let out = compose(&f, &[]);
    assert!(text(&out).contains(FAST_NOTE), "{}", text(&out));
}

/// The key itself: every input a resolve depends on changes it, and any
/// repository it cannot read cheaply gives no key at all.
#[test]
fn fast_path_key_inputs() {
    use ostree_composer::install::{fastpath, InstallRequest};
    let tmp = tempfile::tempdir().unwrap();
    let manifest_dir = tmp.path().join("m");
    let rpmmd = tmp.path().join("rpmmd/x86_64");
    std::fs::create_dir_all(rpmmd.join("repodata")).unwrap();
    std::fs::create_dir_all(&manifest_dir).unwrap();
    std::fs::write(rpmmd.join("repodata/repomd.xml"), "<repomd>1</repomd>").unwrap();
    let repo_file = manifest_dir.join("local.repo");
    std::fs::write(
        &repo_file,
        format!(
            "[local]\nbaseurl=file://{}/rpmmd/$basearch\nenabled=1\ngpgcheck=0\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let mut req = InstallRequest::new(&manifest_dir, &tmp.path().join("cache"), "x86_64");
    req.packages = vec!["bash".into()];
    let key = |req: &InstallRequest| fastpath::key(req, "treefile-checksum");
    let base = key(&req).expect("a local repository gives a key");
    assert_eq!(key(&req), Some(base.clone()), "the key is stable");
    assert_ne!(fastpath::key(&req, "other-treefile"), Some(base.clone()));

    // repomd.xml rewritten (e.g. createrepo_c after adding an RPM).
    std::fs::write(rpmmd.join("repodata/repomd.xml"), "<repomd>2</repomd>").unwrap();
    let after_repomd = key(&req).unwrap();
    assert_ne!(after_repomd, base);

    // Package list, flags, lockfiles.
    let mut other = req.clone();
    other.packages.push("vim".into());
    assert_ne!(key(&other).unwrap(), after_repomd);
    let mut other = req.clone();
    other.recommends = false;
    assert_ne!(key(&other).unwrap(), after_repomd);
    let lock = tmp.path().join("lock.json");
    std::fs::write(&lock, "{\"packages\": {}}").unwrap();
    let mut locked = req.clone();
    locked.lockfiles = vec![lock.clone()];
    let k1 = key(&locked).unwrap();
    std::fs::write(&lock, "{\"packages\": {\"a\": {}}}").unwrap();
    assert_ne!(key(&locked).unwrap(), k1);

    // --cache-only resolves against cached metadata: no key.
    let mut cache_only = req.clone();
    cache_only.cache_only = true;
    assert_eq!(key(&cache_only), None);

    // A remote repository: no key (the caller resolves).
    std::fs::write(
        &repo_file,
        "[local]\nbaseurl=https://example.com/repo\nenabled=1\ngpgcheck=0\n",
    )
    .unwrap();
    assert_eq!(key(&req), None);
    // A missing repomd.xml: no key either (dnf will say what is wrong).
    std::fs::write(
        &repo_file,
        format!(
            "[local]\nbaseurl=file://{}/nowhere\nenabled=1\ngpgcheck=0\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    assert_eq!(key(&req), None);
}

//! The RPM payload reader and the package cache, against real packages built
//! by `rpmbuild` at test time, with `rpm2cpio | cpio` and the `ostree` CLI as
//! the oracles.
//!
//! The packages are built from a spec written here rather than with
//! `common::rpmfixture`, which has no hardlinks and a fixed compressor.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ostree_composer::install::rpmpayload::{PayloadEntry, PayloadReader};

use common::run_ok as run;

/// Deterministic bytes that do not compress to nothing.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

/// Build `name` with `_binary_payload` = `payload` (e.g. `w19.zstdio`) into
/// `out`. Contents: executables (one setuid), an empty file, a 600 KB file
/// (crosses the reader's buffers), a hardlink set of three with content and
/// one of two empty files, symlinks (relative, absolute, dangling), a 0700
/// directory, a 0000 file, a name with a space. `seed` varies the contents.
fn build_pkg(out: &Path, name: &str, payload: &str, seed: u32) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("payload");
    let mk = |p: &str, content: &[u8], mode: u32| {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, content).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let d = format!("usr/share/{name}");
    mk(&format!("usr/bin/{name}"), b"#!/bin/sh\necho hi\n", 0o755);
    mk(&format!("usr/bin/{name}-suid"), &noise(1000, seed), 0o4755);
    mk(&format!("{d}/empty"), b"", 0o644);
    mk(&format!("{d}/big"), &noise(600_000, seed + 1), 0o644);
    mk(&format!("{d}/secret"), b"nobody reads this\n", 0o000);
    mk(&format!("{d}/with space"), b"spaced\n", 0o640);
    mk(&format!("{d}/links/a"), &noise(5000, seed + 2), 0o755);
    for l in ["b", "c"] {
        std::fs::hard_link(
            root.join(format!("{d}/links/a")),
            root.join(format!("{d}/links/{l}")),
        )
        .unwrap();
    }
    mk(&format!("{d}/links/empty1"), b"", 0o644);
    std::fs::hard_link(
        root.join(format!("{d}/links/empty1")),
        root.join(format!("{d}/links/empty2")),
    )
    .unwrap();
    std::os::unix::fs::symlink("big", root.join(format!("{d}/sym"))).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join(format!("{d}/abs"))).unwrap();
    std::os::unix::fs::symlink("../nowhere/at/all", root.join(format!("{d}/dangling"))).unwrap();
    let private = root.join(format!("var/lib/{name}"));
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();

    let spec = work.path().join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: test\nLicense: MIT\n\
             BuildArch: noarch\nAutoReqProv: no\n\n%description\ntest\n\n\
             %install\nmkdir -p %{{buildroot}}\ncp -a {}/. %{{buildroot}}/\n\n\
             %files\n%defattr(-,root,root,-)\n/usr/bin/{name}\n/usr/bin/{name}-suid\n\
             /usr/share/{name}\n/var/lib/{name}\n",
            root.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(out).unwrap();
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--nodeps")
        .arg("--quiet")
        .arg(format!(
            "--define=_topdir {}",
            work.path().join("top").display()
        ))
        .arg(format!("--define=_rpmdir {}", out.display()))
        .arg("--define=_build_name_fmt %%{NAME}.rpm")
        .arg("--define=__os_install_post %{nil}")
        .arg("--define=debug_package %{nil}")
        .arg("--define=_build_id_links none")
        .arg(format!("--define=_binary_payload {payload}"))
        .arg(&spec)
        .env("HOME", work.path()));
    out.join(format!("{name}.rpm"))
}

fn query(rpm: &Path, fmt: &str) -> String {
    run(Command::new("rpm").arg("-qp").arg("--qf").arg(fmt).arg(rpm))
}

/// `rpm2cpio RPM | cpio -idm` into a new directory.
fn cpio_extract(rpm: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
        .arg("sh")
        .arg(rpm)
        .current_dir(dir.path()));
    dir
}

/// Every entry with its content (symlink: target), and `finish` checked.
fn read_all(rpm: &Path) -> anyhow::Result<Vec<(PayloadEntry, Vec<u8>)>> {
    read_all_but(rpm, "")
}

/// [`read_all`], leaving the content of paths ending with `unread` unread
/// (empty), so `next_entry` skips it.
fn read_all_but(rpm: &Path, unread: &str) -> anyhow::Result<Vec<(PayloadEntry, Vec<u8>)>> {
    let mut r = PayloadReader::open(rpm)?;
    let mut all = Vec::new();
    while let Some(e) = r.next_entry()? {
        let mut content = Vec::new();
        if unread.is_empty() || !e.path.ends_with(unread) {
            assert_eq!(r.read_content(&mut content)?, e.size);
        }
        all.push((e, content));
    }
    r.finish()?;
    Ok(all)
}

/// Non-directory paths under `root` (absolute, "/usr/bin/x").
fn non_dirs(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    out
}

/// The reader's entries equal what cpio extracts: paths, modes, mtimes,
/// contents, symlink targets; hardlink sets share an inode there and an
/// `ino` here, with the content on the last entry only.
fn check_reader_against_cpio(rpm: &Path) -> usize {
    let entries = read_all(rpm).unwrap_or_else(|e| panic!("{e:#}"));
    // Content left unread is skipped: the same entries and later contents.
    let skipping = read_all_but(rpm, "/big").unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(entries.len(), skipping.len());
    for ((a, ca), (b, cb)) in entries.iter().zip(&skipping) {
        assert_eq!(a, b);
        assert!(
            ca == cb || (a.path.ends_with("/big") && cb.is_empty()),
            "{}",
            a.path
        );
    }
    let ex = cpio_extract(rpm);
    let mut by_ino: BTreeMap<u32, Vec<&(PayloadEntry, Vec<u8>)>> = BTreeMap::new();
    for item in &entries {
        let (e, content) = item;
        let on_disk = ex.path().join(e.path.trim_start_matches('/'));
        let md =
            std::fs::symlink_metadata(&on_disk).unwrap_or_else(|err| panic!("{}: {err}", e.path));
        assert_eq!(e.mode, md.mode(), "{} mode", e.path);
        if md.is_dir() {
            assert_eq!(e.size, 0, "{}", e.path);
            continue;
        }
        if md.file_type().is_symlink() {
            // (cpio -m does not set a symlink's mtime.)
            let target = std::fs::read_link(&on_disk).unwrap();
            assert_eq!(content, target.as_os_str().as_encoded_bytes(), "{}", e.path);
            continue;
        }
        assert_eq!(i64::from(e.mtime), md.mtime(), "{} mtime", e.path);
        if e.nlink > 1 {
            by_ino.entry(e.ino).or_default().push(item);
        } else {
            assert_eq!(content, &std::fs::read(&on_disk).unwrap(), "{}", e.path);
            assert_eq!(e.size, md.len(), "{}", e.path);
        }
    }
    for set in by_ino.values() {
        let (last, data) = set.last().unwrap();
        let md = std::fs::metadata(ex.path().join(last.path.trim_start_matches('/'))).unwrap();
        assert_eq!(
            set.len() as u64,
            md.nlink(),
            "{}: whole set in the payload",
            last.path
        );
        assert_eq!(
            data,
            &std::fs::read(ex.path().join(&last.path[1..])).unwrap()
        );
        for (e, _) in &set[..set.len() - 1] {
            assert_eq!(e.size, 0, "{}: only the last link has data", e.path);
            let other = std::fs::metadata(ex.path().join(&e.path[1..])).unwrap();
            assert_eq!(
                other.ino(),
                md.ino(),
                "{} is a link of {}",
                e.path,
                last.path
            );
        }
    }
    // Nothing extracted that the reader did not list (directories cpio
    // creates for parents are not in the payload).
    let listed: BTreeSet<String> = entries.iter().map(|(e, _)| e.path.clone()).collect();
    let extracted = non_dirs(ex.path());
    assert!(extracted.is_subset(&listed), "{extracted:?} vs {listed:?}");
    entries.len()
}

fn tools() {
    assert!(
        common::rpmfixture::have_rpm_tools(),
        "rpmbuild and createrepo_c are needed"
    );
}

#[test]
fn reader_matches_cpio_for_each_compressor() {
    tools();
    let tmp = tempfile::tempdir().unwrap();
    for (i, (payload, compressor)) in [
        ("w19.zstdio", "zstd"),
        ("w9.gzdio", "gzip"),
        ("w6.xzdio", "xz"),
        ("w6.lzdio", "lzma"),
    ]
    .into_iter()
    .enumerate()
    {
        let rpm = build_pkg(tmp.path(), &format!("demo{i}"), payload, i as u32);
        assert_eq!(query(&rpm, "%{PAYLOADCOMPRESSOR}"), compressor);
        let n = check_reader_against_cpio(&rpm);
        // 2 bins, dir, 8 files + 3 symlinks + links dir, /var/lib dir.
        assert!(n >= 16, "{compressor}: only {n} entries");
        let entries = read_all(&rpm).unwrap();
        let find = |suffix: &str| {
            entries
                .iter()
                .find(|(e, _)| e.path.ends_with(suffix))
                .unwrap_or_else(|| panic!("no {suffix}"))
        };
        assert_eq!(find("-suid").0.mode, libc::S_IFREG | 0o4755);
        assert_eq!(find("/secret").0.mode, libc::S_IFREG);
        assert_eq!(find("/empty").0.size, 0);
        assert_eq!(find("/big").0.size, 600_000);
        assert_eq!(
            find(&format!("/var/lib/demo{i}")).0.mode,
            libc::S_IFDIR | 0o700
        );
        assert_eq!(find("/sym").1, b"big");
        assert_eq!(find("/with space").1, b"spaced\n");
        let links: Vec<_> = entries
            .iter()
            .filter(|(e, _)| e.path.contains("/links/"))
            .collect();
        assert_eq!(links.len(), 5);
        assert_eq!(
            links
                .iter()
                .map(|(e, _)| e.ino)
                .collect::<BTreeSet<_>>()
                .len(),
            2,
            "two hardlink sets"
        );
    }
}

#[test]
fn truncated_or_corrupt_packages_are_errors() {
    tools();
    let tmp = tempfile::tempdir().unwrap();
    let rpm = build_pkg(tmp.path(), "corrupt", "w19.zstdio", 7);
    let bytes = std::fs::read(&rpm).unwrap();
    read_all(&rpm).unwrap();
    let bad = tmp.path().join("bad.rpm");
    let check = |data: &[u8], what: &str| -> String {
        std::fs::write(&bad, data).unwrap();
        let err = read_all(&bad)
            .err()
            .unwrap_or_else(|| panic!("{what}: read fine"));
        let msg = format!("{err:#}");
        assert!(msg.contains(&bad.display().to_string()), "{what}: {msg}");
        msg
    };
    for cut in [
        10,
        100,
        200,
        1000,
        bytes.len() / 2,
        bytes.len() - 20,
        bytes.len() - 1,
    ] {
        check(&bytes[..cut], &format!("cut at {cut}"));
    }
    // A flipped byte in the middle of the payload (the end of the file is
    // payload): the decompressor or the digest notices.
    for at in [bytes.len() / 2, bytes.len() - 100, bytes.len() - 3] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        check(&flipped, &format!("flip at {at}"));
    }
    // A payload that decompresses fine but is not the one the header
    // describes: only the digest check can tell.
    let digest = query(&rpm, "%{PAYLOADDIGEST}");
    assert_eq!(digest.len(), 64, "{digest}");
    let at = bytes
        .windows(64)
        .position(|w| w == digest.as_bytes())
        .expect("digest in the header");
    let mut edited = bytes.clone();
    edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
    let msg = check(&edited, "digest edited");
    assert!(msg.contains("payload digest mismatch"), "{msg}");
}

#[test]
fn reader_reads_a_corpus_package() {
    let Some(bash) = std::fs::read_dir("/var/tmp/corpus/medium/repo/Packages")
        .ok()
        .and_then(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("bash-")
            })
        })
    else {
        eprintln!("SKIP: no /var/tmp/corpus/medium/repo/Packages/bash-*.rpm");
        return;
    };
    let n = check_reader_against_cpio(&bash);
    assert!(n > 50, "{n} entries in {}", bash.display());
}

// ---------------------------------------------------------------------------
// The package cache.

use ostree_composer::install::pkgcache::{CachedPackage, PackageCache};

/// Packages built once per test binary: (name, .rpm), zstd and gzip payloads.
/// (Statics are never dropped: they live under cargo's target tmp dir, not
/// in /var/tmp.)
fn packages() -> &'static [(String, PathBuf)] {
    static PKGS: std::sync::OnceLock<(tempfile::TempDir, Vec<(String, PathBuf)>)> =
        std::sync::OnceLock::new();
    &PKGS
        .get_or_init(|| {
            tools();
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let pkgs = (0..4)
                .map(|i| {
                    let name = format!("cached{i}");
                    let payload = if i % 2 == 0 { "w19.zstdio" } else { "w9.gzdio" };
                    let rpm = build_pkg(dir.path(), &name, payload, 100 + i);
                    (format!("sha256-{name}"), rpm)
                })
                .collect();
            (dir, pkgs)
        })
        .1
}

/// Names in the cache's v1 directory.
fn cache_names(cache: &PackageCache) -> BTreeSet<String> {
    std::fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Paths grouped by inode (only inodes with more than one path).
fn link_sets(root: &Path, paths: &BTreeSet<String>) -> BTreeSet<BTreeSet<String>> {
    let mut by_ino: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for p in paths {
        let md = std::fs::symlink_metadata(root.join(&p[1..])).unwrap();
        by_ino.entry(md.ino()).or_default().insert(p.clone());
    }
    by_ino.into_values().filter(|s| s.len() > 1).collect()
}

/// `tree/` equals what cpio extracts (directories aside: all 0755 here),
/// and the index lists exactly the regular files with their sizes, modes and
/// link groups.
fn check_tree_against_cpio(pkg: &CachedPackage, rpm: &Path) {
    let ex = cpio_extract(rpm);
    let ours = non_dirs(&pkg.tree);
    let theirs = non_dirs(ex.path());
    assert_eq!(ours, theirs, "{}", rpm.display());
    for p in &ours {
        let a = std::fs::symlink_metadata(pkg.tree.join(&p[1..])).unwrap();
        let b = std::fs::symlink_metadata(ex.path().join(&p[1..])).unwrap();
        assert_eq!(a.mode(), b.mode(), "{p} mode");
        if a.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(pkg.tree.join(&p[1..])).unwrap(),
                std::fs::read_link(ex.path().join(&p[1..])).unwrap(),
                "{p}"
            );
            assert!(!pkg.files.contains_key(p), "{p}: symlinks are not indexed");
            continue;
        }
        assert_eq!(a.mtime(), b.mtime(), "{p} mtime");
        assert_eq!(
            std::fs::read(pkg.tree.join(&p[1..])).unwrap(),
            std::fs::read(ex.path().join(&p[1..])).unwrap(),
            "{p} content"
        );
        let f = pkg
            .files
            .get(p)
            .unwrap_or_else(|| panic!("{p} not indexed"));
        assert_eq!((f.size, f.mode), (a.len(), a.mode()), "{p}");
        assert_eq!(f.link_group.is_some(), a.nlink() > 1, "{p} link group");
    }
    assert_eq!(
        pkg.files.keys().cloned().collect::<BTreeSet<_>>(),
        ours.iter()
            .filter(|p| !std::fs::symlink_metadata(pkg.tree.join(&p[1..]))
                .unwrap()
                .file_type()
                .is_symlink())
            .cloned()
            .collect(),
    );
    assert_eq!(link_sets(&pkg.tree, &ours), link_sets(ex.path(), &theirs));
    // The index's groups are the same sets.
    let mut groups: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (p, f) in &pkg.files {
        if let Some(g) = f.link_group {
            groups.entry(g).or_default().insert(p.clone());
        }
    }
    assert_eq!(
        groups.into_values().collect::<BTreeSet<_>>(),
        link_sets(&pkg.tree, &ours)
    );
    // Directories: 0755, whatever the payload says.
    let mut stack = vec![pkg.tree.clone()];
    while let Some(d) = stack.pop() {
        assert_eq!(
            std::fs::metadata(&d).unwrap().mode(),
            libc::S_IFDIR | 0o755,
            "{}",
            d.display()
        );
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

/// The index's checksums equal those `ostree commit --owner-uid=0
/// --owner-gid=0 --no-xattrs` of `tree/` gives.
fn check_checksums_against_ostree(pkg: &CachedPackage) {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let repo = tmp.path().join("repo");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=bare-user"));
    run(Command::new("ostree")
        .arg("commit")
        .arg(format!("--repo={}", repo.display()))
        .args(["--owner-uid=0", "--owner-gid=0", "--no-xattrs", "-b", "t"])
        .arg(format!("--tree=dir={}", pkg.tree.display())));
    let ls = run(Command::new("ostree")
        .arg("ls")
        .arg(format!("--repo={}", repo.display()))
        .args(["-R", "-C", "t"]));
    let mut theirs = BTreeMap::new();
    for line in ls.lines().filter(|l| l.starts_with('-')) {
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap();
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        theirs.insert(rest.trim_start().to_string(), fields[4].to_string());
    }
    let ours: BTreeMap<String, String> = pkg
        .files
        .iter()
        .map(|(p, f)| (p.clone(), f.checksum.clone()))
        .collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs);
}

#[test]
fn import_matches_cpio_and_ostree() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cache = PackageCache::open(cachedir.path()).unwrap();
    for (key, rpm) in &packages()[..2] {
        let pkg = cache.import(key, rpm).unwrap();
        assert_eq!(&pkg, &cache.get(key).unwrap().unwrap());
        assert_eq!(pkg.tree, cache.root().join(key).join("tree"));
        check_tree_against_cpio(&pkg, rpm);
        check_checksums_against_ostree(&pkg);
        let suid = pkg
            .files
            .iter()
            .find(|(p, _)| p.ends_with("-suid"))
            .unwrap()
            .1;
        assert_eq!(suid.mode, libc::S_IFREG | 0o4755);
        assert_eq!(
            pkg.files
                .values()
                .filter(|f| f.link_group.is_some())
                .count(),
            5
        );
    }
    // A real distribution package, when the benchmark corpus is here.
    match std::fs::read_dir("/var/tmp/corpus/medium/repo/Packages") {
        Ok(dir) => {
            let bash = dir
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("bash-")
                })
                .expect("bash in the corpus");
            let pkg = cache.import("sha256-bash", &bash).unwrap();
            check_tree_against_cpio(&pkg, &bash);
            check_checksums_against_ostree(&pkg);
        }
        Err(_) => eprintln!("SKIP (bash part): no /var/tmp/corpus/medium/repo/Packages"),
    }
    let names = cache_names(&cache);
    assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
}

#[test]
fn reimport_is_a_no_op() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cache = PackageCache::open(cachedir.path()).unwrap();
    let (key, rpm) = &packages()[0];
    let first = cache.import(key, rpm).unwrap();
    let index = cache.root().join(key).join("index.json");
    let before = std::fs::metadata(&index).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Even from another .rpm path: the key decides.
    let again = cache.import(key, &packages()[1].1).unwrap();
    assert_eq!(first, again);
    let after = std::fs::metadata(&index).unwrap();
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(before.ino(), after.ino());
    // A reopened cache finds it too.
    drop(cache);
    let cache = PackageCache::open(cachedir.path()).unwrap();
    assert_eq!(cache.get(key).unwrap(), Some(first));
}

#[test]
fn import_all_on_two_threads() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cache = PackageCache::open(cachedir.path()).unwrap();
    let pkgs = packages();
    // One is already there; one key is asked for twice.
    let pre = cache.import(&pkgs[2].0, &pkgs[2].1).unwrap();
    let mut items: Vec<(String, PathBuf)> = pkgs.to_vec();
    items.push(pkgs[0].clone());
    let all = cache.import_all(&items, 2).unwrap();
    assert_eq!(all.len(), items.len());
    for ((key, rpm), pkg) in items.iter().zip(&all) {
        assert_eq!(&pkg.key, key);
        assert_eq!(Some(pkg), cache.get(key).unwrap().as_ref());
        check_tree_against_cpio(pkg, rpm);
    }
    assert_eq!(all[2], pre);
    let names = cache_names(&cache);
    let want: BTreeSet<String> = pkgs
        .iter()
        .map(|(k, _)| k.clone())
        .chain([".lock".to_string()])
        .collect();
    assert_eq!(names, want);
    // A failing package fails the whole call, naming it, and leaves no .tmp-.
    let bad = cachedir.path().join("bad.rpm");
    std::fs::write(&bad, b"not an rpm at all, not even close to one........").unwrap();
    let err = cache
        .import_all(&[pkgs[0].clone(), ("sha256-bad".into(), bad.clone())], 2)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains(&bad.display().to_string()),
        "{err:#}"
    );
    assert_eq!(cache_names(&cache), want);
}

#[test]
fn two_caches_importing_the_same_key_agree() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (key, rpm) = &packages()[3];
    let caches = [
        PackageCache::open(cachedir.path()).unwrap(),
        PackageCache::open(cachedir.path()).unwrap(),
    ];
    let results: Vec<CachedPackage> = std::thread::scope(|s| {
        let handles: Vec<_> = caches
            .iter()
            .map(|c| s.spawn(move || c.import(key, rpm).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results[0], results[1]);
    assert_eq!(
        cache_names(&caches[0]),
        BTreeSet::from([".lock".to_string(), key.clone()])
    );
}

#[test]
fn invalidate_and_retain() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cache = PackageCache::open(cachedir.path()).unwrap();
    let pkgs = packages();
    cache.import_all(pkgs, 2).unwrap();
    let key = |i: usize| pkgs[i].0.clone();

    cache.invalidate(&key(0)).unwrap();
    assert_eq!(cache.get(&key(0)).unwrap(), None);
    cache.invalidate(&key(0)).unwrap(); // absent: fine
    assert!(!cache.root().join(key(0)).exists());
    assert!(cache_names(&cache).iter().all(|n| !n.starts_with(".tmp-")));
    // Importable again.
    cache.import(&key(0), &pkgs[0].1).unwrap();

    // Another holder of the cache (a second open file description, as
    // another process would have): retain is skipped, nothing deleted.
    let other = PackageCache::open(cachedir.path()).unwrap();
    let keep = BTreeSet::from([key(1), key(3), "sha256-never-imported".to_string()]);
    assert!(!cache.retain(&keep, Duration::ZERO).unwrap());
    assert_eq!(cache_names(&cache).len(), 5);
    drop(other);

    // Alone: entries used within the window stay (all were just imported),
    // an entry last used 30 days ago goes with a 7-day window.
    let week = Duration::from_secs(7 * 86400);
    assert!(cache.retain(&keep, week).unwrap());
    assert_eq!(cache_names(&cache).len(), 5);
    let index = cache.root().join(key(0)).join("index.json");
    std::fs::File::options()
        .write(true)
        .open(&index)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - 30 * Duration::from_secs(86400))
        .unwrap();
    assert!(cache.retain(&keep, week).unwrap());
    assert_eq!(cache.get(&key(0)).unwrap(), None);
    assert!(cache.get(&key(2)).unwrap().is_some());
    // Used again: mark_used makes it recent.
    cache.import(&key(0), &pkgs[0].1).unwrap();
    cache.mark_used(&key(0)).unwrap();
    assert!(cache.retain(&keep, week).unwrap());
    assert!(cache.get(&key(0)).unwrap().is_some());

    // Without a window, retain keeps exactly those, and removes a stale .tmp-.
    std::fs::create_dir_all(cache.root().join(".tmp-crashed/tree/x")).unwrap();
    assert!(cache.retain(&keep, Duration::ZERO).unwrap());
    assert_eq!(
        cache_names(&cache),
        BTreeSet::from([".lock".to_string(), key(1), key(3)])
    );
    assert!(cache.get(&key(1)).unwrap().is_some());
    assert_eq!(cache.get(&key(2)).unwrap(), None);
    // Still usable after the lock went exclusive and back.
    cache.import(&key(2), &pkgs[2].1).unwrap();
    let other = PackageCache::open(cachedir.path()).unwrap();
    assert!(other.get(&key(2)).unwrap().is_some());
}

#[test]
fn open_removes_stale_tmp_dirs_only_when_alone() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let first = PackageCache::open(cachedir.path()).unwrap();
    let stale = first.root().join(".tmp-stale");
    std::fs::create_dir_all(stale.join("tree/usr/bin")).unwrap();
    std::fs::write(stale.join("tree/usr/bin/x"), b"x").unwrap();
    // Someone else has the cache open: the .tmp- may be their import.
    let second = PackageCache::open(cachedir.path()).unwrap();
    assert!(stale.exists());
    drop((first, second));
    let _cache = PackageCache::open(cachedir.path()).unwrap();
    assert!(!stale.exists());
}

#[test]
fn corrupt_packages_and_bad_keys_leave_nothing() {
    let cachedir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cache = PackageCache::open(cachedir.path()).unwrap();
    let (_, rpm) = &packages()[0];
    let bytes = std::fs::read(rpm).unwrap();
    let bad = cachedir.path().join("bad.rpm");
    // Truncated in the payload; a flipped payload byte; an edited digest.
    let digest = query(rpm, "%{PAYLOADDIGEST}");
    let at = bytes
        .windows(64)
        .position(|w| w == digest.as_bytes())
        .unwrap();
    let mut edited = bytes.clone();
    edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
    let mut flipped = bytes.clone();
    flipped[bytes.len() - 3] ^= 0x40;
    for (what, data) in [
        ("truncated", bytes[..bytes.len() * 2 / 3].to_vec()),
        ("flipped", flipped),
        ("digest", edited),
    ] {
        std::fs::write(&bad, &data).unwrap();
        let err = cache.import("sha256-bad", &bad).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&bad.display().to_string()), "{what}: {msg}");
        assert_eq!(cache.get("sha256-bad").unwrap(), None, "{what}");
        assert_eq!(
            cache_names(&cache),
            BTreeSet::from([".lock".to_string()]),
            "{what}"
        );
    }
    for key in ["", "../x", "a/b", ".tmp-x", "sha256:x"] {
        assert!(cache.import(key, rpm).is_err(), "{key:?}");
        assert!(cache.get(key).is_err(), "{key:?}");
    }
    // An entry without a valid index is no entry, and import replaces it.
    let (key, rpm) = &packages()[1];
    std::fs::create_dir_all(cache.root().join(key).join("tree")).unwrap();
    std::fs::write(cache.root().join(key).join("index.json"), b"{\"half").unwrap();
    assert_eq!(cache.get(key).unwrap(), None);
    let pkg = cache.import(key, rpm).unwrap();
    check_tree_against_cpio(&pkg, rpm);
}

#[test]
fn device_nodes_fail_the_import() {
    tools();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let spec = work.path().join("devdemo.spec");
    std::fs::write(
        &spec,
        "Name: devdemo\nVersion: 1\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n\
         %description\nt\n%install\nmkdir -p %{buildroot}/usr/share/devdemo\n\
         echo hi > %{buildroot}/usr/share/devdemo/f\n\
         %files\n/usr/share/devdemo/f\n%dev(c,1,3) /dev/devdemo-null\n",
    )
    .unwrap();
    run(Command::new("rpmbuild")
        .args(["-bb", "--quiet"])
        .arg(format!(
            "--define=_topdir {}",
            work.path().join("top").display()
        ))
        .arg(format!("--define=_rpmdir {}", work.path().display()))
        .arg("--define=_build_name_fmt %%{NAME}.rpm")
        .arg("--define=__os_install_post %{nil}")
        .arg(&spec)
        .env("HOME", work.path()));
    let rpm = work.path().join("devdemo.rpm");
    let cachedir = work.path().join("cache");
    let cache = PackageCache::open(&cachedir).unwrap();
    let msg = format!("{:#}", cache.import("sha256-dev", &rpm).unwrap_err());
    assert!(msg.contains("/dev/devdemo-null"), "{msg}");
    assert!(msg.contains("character device"), "{msg}");
    assert!(msg.contains(&rpm.display().to_string()), "{msg}");
    assert_eq!(cache_names(&cache), BTreeSet::from([".lock".to_string()]));
}

/// The packages of the medium benchmark's installed set (`PKGCACHE_TIER`
/// chooses another tier, e.g. `large`), keyed `pkgN`, or `None` (with a
/// SKIP message) when the benchmark corpus is not prepared.
fn medium_corpus_items() -> Option<Vec<(String, PathBuf)>> {
    let tier = std::env::var("PKGCACHE_TIER").unwrap_or_else(|_| "medium".into());
    let list = format!("/var/tmp/ostree-composer-bench/{tier}/installed-rpms.txt");
    let Ok(text) = std::fs::read_to_string(&list) else {
        eprintln!("SKIP: no {list}");
        return None;
    };
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| (format!("pkg{i}"), PathBuf::from(l.trim())))
            .collect(),
    )
}

/// Not a check: prints how long importing the medium benchmark's 167
/// packages takes on 1 and 2 threads from a cold page cache, a run with
/// everything cached, and `rpm2cpio | cpio -idm` of the same packages for
/// reference. Run with `cargo test --release --test pkgcache bench_ --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn bench_import_medium_corpus() {
    let Some(items) = medium_corpus_items() else {
        return;
    };
    let drop_caches = || {
        let ok = Command::new("sh")
            .arg("-c")
            .arg("sync; echo 3 > /proc/sys/vm/drop_caches")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("(could not drop the page cache: timings are warm)");
        }
    };
    for threads in [1, 2, 1, 2] {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        drop_caches();
        let cache = PackageCache::open(dir.path()).unwrap();
        let t = std::time::Instant::now();
        let all = cache.import_all(&items, threads).unwrap();
        let cold = t.elapsed();
        let t = std::time::Instant::now();
        cache.import_all(&items, threads).unwrap();
        let cached = t.elapsed();
        let files: usize = all.iter().map(|p| p.files.len()).sum();
        let bytes: u64 = all
            .iter()
            .flat_map(|p| p.files.values())
            .map(|f| f.size)
            .sum();
        eprintln!(
            "import {} packages ({files} files, {} MB) on {threads} thread(s): {:.2} s cold; \
             {:.3} s with all cached",
            items.len(),
            bytes / 1_000_000,
            cold.as_secs_f64(),
            cached.as_secs_f64()
        );
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    drop_caches();
    let t = std::time::Instant::now();
    for (i, (_, rpm)) in items.iter().enumerate() {
        let d = dir.path().join(i.to_string());
        std::fs::create_dir(&d).unwrap();
        run(Command::new("sh")
            .arg("-c")
            .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
            .arg("sh")
            .arg(rpm)
            .current_dir(&d));
    }
    eprintln!(
        "reference: rpm2cpio | cpio -idm of the same, one after the other: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// Every package of the medium benchmark imported and checked against cpio
/// and `ostree commit` (slow: `cargo test --release --test pkgcache
/// corpus_ -- --ignored`).
#[test]
#[ignore]
fn corpus_medium_every_package_matches() {
    let Some(items) = medium_corpus_items() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cache = PackageCache::open(dir.path()).unwrap();
    let all = cache.import_all(&items, 2).unwrap();
    for ((_, rpm), pkg) in items.iter().zip(&all) {
        check_tree_against_cpio(pkg, rpm);
        if !pkg.files.is_empty() {
            check_checksums_against_ostree(pkg);
        }
    }
}

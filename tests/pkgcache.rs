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

use ostree_composer::install::rpmpayload::{PayloadEntry, PayloadReader};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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

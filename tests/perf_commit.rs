//! The parallel tree writer (src/commit/parallel.rs) against libostree's own
//! walk: the same rootfs must give the same commit checksum (hence the same
//! objects: ownership, modes incl. setuid, kept/renamed xattrs, symlinks,
//! hardlinks, bare-user checkouts with `user.ostreemeta`), in bare-user and
//! archive repos, checked with `ostree fsck` and `ostree ls`.
mod common;

use common::compose_fixture::{self, compose, fixture, rev, text, REF};
use ostree_composer::commit::{commit_rootfs, CommitOptions, ParentSpec, TreeWriter};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

const TIME: u64 = 1_700_000_000;

fn ostree(repo: &Path, args: &[&str]) -> String {
    compose_fixture::ostree(repo, args)
}

fn init_repo(path: &Path, mode: &str) -> ostree::Repo {
    compose_fixture::init_repo(path, mode);
    ostree_composer::commit::open_repo(path).unwrap()
}

fn write(path: &Path, content: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// Many files of many sizes (so several workers get work), plus every kind
/// of metadata the commit keeps.
fn build_rootfs(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in 0..12 {
        for f in 0..25 {
            let size = (d * 25 + f) * 97 % 5000;
            let content: Vec<u8> = (0..size).map(|i| (i * 31 + d) as u8).collect();
            write(
                &root.join(format!("usr/share/d{d}/f{f}")),
                &content,
                if f % 3 == 0 { 0o755 } else { 0o644 },
            );
        }
    }
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write(&root.join("usr/lib/big.bin"), &big, 0o644);
    write(&root.join("usr/lib/empty"), b"", 0o600);
    write(&root.join("usr/bin/su"), b"su binary\n", 0o4755);
    write(&root.join("usr/bin/wall"), b"wall\n", 0o2755);
    write(&root.join("usr/bin/ping"), b"ping binary\n", 0o755);
    write(
        &root.join("usr/etc/shadow"),
        b"root:*::0:99999:7:::\n",
        0o000,
    );
    std::fs::hard_link(root.join("usr/bin/ping"), root.join("usr/bin/ping6")).unwrap();
    symlink("su", root.join("usr/bin/sudo")).unwrap();
    symlink("../lib/big.bin", root.join("usr/bin/dangling-ok")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    let cap: [u8; 20] = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    setxattr(&root.join("usr/bin/ping"), "security.capability", &cap);
    setxattr(&root.join("usr/bin/ping"), "user.ima", b"imasig");
    setxattr(&root.join("usr/bin/su"), "user.dropme", b"1");
    setxattr(&root.join("usr/share/d3"), "user.pax.flags", b"m");
    let owned = root.join("var/lib/owned");
    std::fs::create_dir_all(&owned).unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o1770)).unwrap();
    std::os::unix::fs::chown(&owned, Some(900), Some(901)).unwrap();
    write(&owned.join("data"), b"owned\n", 0o640);
    std::os::unix::fs::chown(owned.join("data"), Some(902), Some(903)).unwrap();
    std::os::unix::fs::lchown(root.join("usr/bin/sudo"), Some(7), Some(8)).unwrap();
    std::fs::create_dir_all(root.join("usr/share/empty-dir")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("usr/share/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

fn commit_with(repo_path: &Path, mode: &str, rootfs: &Path, writer: TreeWriter) -> String {
    let repo = if repo_path.exists() {
        ostree_composer::commit::open_repo(repo_path).unwrap()
    } else {
        init_repo(repo_path, mode)
    };
    let mut opts = CommitOptions::new(rootfs);
    opts.ref_ = Some("test/ref".into());
    opts.timestamp = Some(TIME);
    opts.writer = writer;
    opts.parent = ParentSpec::None;
    let r = commit_rootfs(&repo, &opts).unwrap();
    assert!(
        r.skipped.iter().any(|s| s.ends_with("/fifo")) || !rootfs.join("usr/share/fifo").exists()
    );
    r.checksum
}

#[test]
fn parallel_writer_gives_libostree_checksum() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    for mode in ["bare-user", "archive"] {
        let a = tmp.path().join(format!("{mode}-libostree"));
        let b = tmp.path().join(format!("{mode}-parallel"));
        let expected = commit_with(&a, mode, &rootfs, TreeWriter::Libostree);
        for threads in [1, 2, 5] {
            let got = commit_with(&b, mode, &rootfs, TreeWriter::Parallel(threads));
            assert_eq!(got, expected, "{mode}, {threads} threads");
        }
        assert_eq!(
            commit_with(&b, mode, &rootfs, TreeWriter::Auto),
            expected,
            "{mode}, auto"
        );
        ostree(&b, &["fsck"]);
        let ls = ostree(&b, &["ls", "-R", &expected]);
        assert!(ls.contains("-04755 0 0     10 /usr/bin/su"), "{ls}");
        assert!(ls.contains("d01770 900 901"), "{ls}");
        assert!(
            ls.contains("-00640 902 903      6 /var/lib/owned/data"),
            "{ls}"
        );
        assert!(ls.contains("l00777 7 8      0 /usr/bin/sudo -> su"), "{ls}");
        assert!(!ls.contains("fifo"), "{ls}");
        // The objects are the same set too.
        assert_eq!(
            ostree(&a, &["ls", "-R", "-C", &expected]),
            ostree(&b, &["ls", "-R", "-C", &expected])
        );
    }
    // A bare-user repo shares nothing with the rootfs: the big file was written.
    let b = tmp.path().join("bare-user-parallel");
    let out = Command::new("ostree")
        .arg(format!("--repo={}", b.display()))
        .args(["cat", "test/ref", "/usr/lib/big.bin"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 3_000_000);
}

#[test]
fn consume_with_the_parallel_writer_empties_the_rootfs() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let a = tmp.path().join("a");
    let expected = commit_with(&a, "bare-user", &rootfs, TreeWriter::Libostree);
    let repo_path = tmp.path().join("b");
    let repo = init_repo(&repo_path, "bare-user");
    let mut opts = CommitOptions::new(&rootfs);
    opts.ref_ = Some("test/ref".into());
    opts.timestamp = Some(TIME);
    opts.writer = TreeWriter::Parallel(2);
    opts.parent = ParentSpec::None;
    opts.consume = true;
    let r = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(r.checksum, expected);
    assert!(rootfs.is_dir());
    assert_eq!(std::fs::read_dir(&rootfs).unwrap().count(), 0);
    ostree(&repo_path, &["fsck"]);
}

/// A real composed tree, checked out of the bare-user repo with hardlinks
/// (files carry `user.ostreemeta`) and recommitted with both writers.
#[test]
fn composed_tree_checkout_recommits_identically() {
    let f = fixture();
    let out = compose(&f, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let commit = rev(&f.repo, REF);
    let co = f.dir.join("checkout");
    let st = Command::new("ostree")
        .arg(format!("--repo={}", f.repo.display()))
        .args(["checkout", "-U", &commit])
        .arg(&co)
        .status()
        .unwrap();
    assert!(st.success());
    let a = f.dir.join("a");
    let b = f.dir.join("b");
    let libostree = commit_with(&a, "bare-user", &co, TreeWriter::Libostree);
    let parallel = commit_with(&b, "bare-user", &co, TreeWriter::Parallel(3));
    assert_eq!(parallel, libostree);
    // The same objects, listed with their checksums.
    assert_eq!(
        ostree(&a, &["ls", "-R", "-C", &libostree]),
        ostree(&b, &["ls", "-R", "-C", &parallel])
    );
}

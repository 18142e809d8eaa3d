//! Committing a hand-built rootfs into real OSTree repositories (bare-user and
//! archive) and checking the result with the `ostree` CLI.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ostree_composer::commit::{
    self, commit_rootfs, CommitInfo, CommitMetadata, CommitOptions, MetaValue, ParentSpec,
    PkgListEntry, RepoLock,
};
use ostree_composer::exit::{class_of, ErrorClass};

const TIME: u64 = 1_700_000_000;
const REF: &str = "test/x86_64/os";

fn tmpdir() -> tempfile::TempDir {
    // Not /tmp: bare-user repos need user.* xattrs, which tmpfs may lack.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .expect("running ostree");
    assert!(
        out.status.success(),
        "ostree {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `cmd`; it must succeed (its stderr is the failure message).
fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn init_repo(path: &Path, mode: &str) -> ostree::Repo {
    std::fs::create_dir_all(path).unwrap();
    run_ok(Command::new("ostree").args([
        "init",
        &format!("--repo={}", path.display()),
        &format!("--mode={mode}"),
    ]));
    commit::open_repo(path).unwrap()
}

fn write(path: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}

/// A small OS-like tree: modes, setuid, a symlink, a dir owned by uid 900, a
/// file capability, xattrs that must be dropped or renamed, and a fifo.
fn build_rootfs(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(
        &root.join("usr/bin/hello"),
        "#!/bin/sh\necho hello\n",
        0o755,
    );
    write(&root.join("usr/bin/su"), "su binary\n", 0o4755);
    write(&root.join("usr/bin/ping"), "ping binary\n", 0o755);
    write(
        &root.join("usr/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\n",
        0o644,
    );
    write(
        &root.join("usr/etc/shadow"),
        "root:*::0:99999:7:::\n",
        0o000,
    );
    symlink("hello", root.join("usr/bin/sh")).unwrap();
    let owned = root.join("var/lib/owned");
    std::fs::create_dir_all(&owned).unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(&owned, Some(900), Some(900)).unwrap();
    write(&owned.join("data"), "owned\n", 0o640);
    std::os::unix::fs::chown(owned.join("data"), Some(900), Some(901)).unwrap();
    // cap_net_raw+ep as a VFS_CAP_REVISION_2 xattr.
    let cap: [u8; 20] = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    setxattr(&root.join("usr/bin/ping"), "security.capability", &cap);
    setxattr(&root.join("usr/bin/ping"), "user.ima", b"imasig");
    setxattr(&root.join("usr/bin/hello"), "user.dropme", b"1");
    std::fs::create_dir_all(root.join("usr/share")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("usr/share/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

fn pkglist() -> Vec<PkgListEntry> {
    vec![PkgListEntry {
        name: "bash".into(),
        epoch: "0".into(),
        version: "5.2".into(),
        release: "1".into(),
        arch: "x86_64".into(),
    }]
}

fn full_metadata() -> CommitMetadata {
    let mut md = CommitMetadata::new();
    md.insert_str("version", "39.1");
    md.insert_str("rpmostree.inputhash", "abc123");
    md.insert("test.bool", MetaValue::Bool(true));
    md.insert("test.int", MetaValue::I64(42));
    md.insert("test.uint", MetaValue::U64(7));
    md.insert("test.float", MetaValue::F64(1.5));
    md.insert(
        "test.strv",
        MetaValue::StrList(vec!["a".into(), "b".into()]),
    );
    md.insert("rpmostree.rpmdb.pkglist", MetaValue::PkgList(pkglist()));
    md.merge_json_object(
        &serde_json::json!({"test.json": {"name": "x", "list": [1, "two"]}}),
        "inline",
    )
    .unwrap();
    md.set_bootable("6.5.0-1.x86_64");
    md.set_container_cmd(&["/usr/bin/bash".into()]);
    md
}

fn options(rootfs: &Path) -> CommitOptions {
    let mut o = CommitOptions::new(rootfs);
    o.ref_ = Some(REF.to_string());
    o.timestamp = Some(TIME);
    o
}

fn check_committed_tree(repo_path: &Path, rev: &str) {
    let ls = ostree(repo_path, &["ls", "-R", rev]);
    let line = |path: &str| {
        ls.lines()
            .find(|l| l.ends_with(path) || l.contains(&format!("{path} ->")))
            .unwrap_or_else(|| panic!("{path} missing from:\n{ls}"))
            .to_string()
    };
    assert!(line("/usr/bin/su").starts_with("-04755 0 0"), "{ls}");
    assert!(line("/usr/bin/hello").starts_with("-00755 0 0"), "{ls}");
    assert!(line("/usr/etc/shadow").starts_with("-00000 0 0"), "{ls}");
    assert!(line("/var/lib/owned").starts_with("d00750 900 900"), "{ls}");
    assert!(
        line("/var/lib/owned/data").starts_with("-00640 900 901"),
        "{ls}"
    );
    assert!(line("/usr/bin/sh").starts_with("l00777 0 0"), "{ls}");
    assert!(
        line("/usr/bin/sh").ends_with("/usr/bin/sh -> hello"),
        "{ls}"
    );
    assert!(!ls.contains("fifo"), "fifo was committed:\n{ls}");

    assert_eq!(
        ostree(repo_path, &["cat", rev, "/usr/etc/passwd"]),
        "root:x:0:0:root:/root:/bin/bash\n"
    );
    let xattrs = ostree(repo_path, &["ls", "-X", rev, "/usr/bin/ping"]);
    assert!(xattrs.contains("security.capability"), "{xattrs}");
    assert!(xattrs.contains("security.ima"), "{xattrs}");
    assert!(!xattrs.contains("user.ima"), "{xattrs}");
    let xattrs = ostree(repo_path, &["ls", "-X", rev, "/usr/bin/hello"]);
    assert!(!xattrs.contains("user.dropme"), "{xattrs}");
    ostree(repo_path, &["fsck"]);
}

fn check_full_metadata(repo_path: &Path, rev: &str) {
    let key = |k: &str| {
        ostree(
            repo_path,
            &["show", &format!("--print-metadata-key={k}"), rev],
        )
        .trim()
        .to_string()
    };
    assert_eq!(key("version"), "'39.1'");
    assert_eq!(key("test.bool"), "true");
    assert_eq!(key("test.strv"), "['a', 'b']");
    assert_eq!(key("ostree.bootable"), "true");
    assert_eq!(key("ostree.linux"), "'6.5.0-1.x86_64'");
    assert_eq!(key("ostree.container-cmd"), "['/usr/bin/bash']");
    assert_eq!(
        key("rpmostree.rpmdb.pkglist"),
        "[('bash', '0', '5.2', '1', 'x86_64')]"
    );
    assert_eq!(
        key("test.json"),
        "{'name': <'x'>, 'list': <[<int64 1>, <'two'>]>}"
    );
    // Numbers are stored big-endian like rpm-ostree does, which the CLI
    // expects (it prints them back in host order).
    assert_eq!(key("test.int"), "int64 42");
    assert_eq!(key("test.uint"), "uint64 7");
    assert_eq!(key("test.float"), "1.5");
}

fn commit_full_tree(mode: &str) {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, mode);
    let mut opts = options(&rootfs);
    opts.metadata = full_metadata();
    let result = commit_rootfs(&repo, &opts).unwrap();

    assert_eq!(result.skipped, vec!["/usr/share/fifo".to_string()]);
    assert_eq!(result.ref_written.as_deref(), Some(REF));
    assert_eq!(result.version.as_deref(), Some("39.1"));
    assert_eq!(result.timestamp_string(), "2023-11-14T22:13:20Z");
    assert!(result.stats.content_written >= 6, "{:?}", result.stats);
    assert!(result.stats.content_bytes_written > 0);
    assert!(result.stats.metadata_written > 0);
    assert_eq!(result.content_checksum.len(), 64);
    assert_ne!(result.content_checksum, result.checksum);
    assert_eq!(
        ostree(&repo_path, &["rev-parse", REF]).trim(),
        result.checksum
    );
    check_committed_tree(&repo_path, REF);
    check_full_metadata(&repo_path, REF);

    // Read it back through the library.
    let info = CommitInfo::load(&repo, REF).unwrap();
    assert_eq!(info.checksum(), result.checksum);
    assert_eq!(info.parent(), None);
    assert_eq!(info.timestamp(), TIME);
    assert_eq!(info.content_checksum().unwrap(), result.content_checksum);
    assert_eq!(info.version().unwrap().as_deref(), Some("39.1"));
    assert_eq!(info.inputhash().unwrap().as_deref(), Some("abc123"));
    assert_eq!(info.metadata_i64("test.int").unwrap(), Some(42));
    assert_eq!(info.metadata_u64("test.uint").unwrap(), Some(7));
    assert_eq!(info.metadata_bool("test.bool").unwrap(), Some(true));
    assert_eq!(
        info.metadata_strv("test.strv").unwrap(),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert!(info.metadata_string("test.bool").is_err());
    assert_eq!(info.metadata_string("absent").unwrap(), None);
    assert_eq!(info.pkglist().unwrap(), Some(pkglist()));
    assert_eq!(
        info.read_file("/usr/etc/passwd").unwrap().as_deref(),
        Some(&b"root:x:0:0:root:/root:/bin/bash\n"[..])
    );
    assert_eq!(info.read_file("/usr/lib/passwd").unwrap(), None);
    assert!(info.read_file("/usr/bin").is_err());
    // The rootfs is kept unless `consume` is asked for.
    assert!(rootfs.join("usr/bin/hello").exists());
}

#[test]
fn commit_into_bare_user_repo() {
    commit_full_tree("bare-user");
}

#[test]
fn commit_into_archive_repo() {
    commit_full_tree("archive");
}

#[test]
fn same_tree_and_time_give_same_checksum() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let mut sums = Vec::new();
    for (i, mode) in ["archive", "archive", "bare-user"].iter().enumerate() {
        let repo = init_repo(&tmp.path().join(format!("repo{i}")), mode);
        let mut opts = options(&rootfs);
        opts.metadata = full_metadata();
        let r = commit_rootfs(&repo, &opts).unwrap();
        sums.push((r.checksum, r.content_checksum));
    }
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[0], sums[2]);

    // Another time: another commit checksum, the same content checksum.
    let repo = init_repo(&tmp.path().join("repo-later"), "archive");
    let mut opts = options(&rootfs);
    opts.metadata = full_metadata();
    opts.timestamp = Some(TIME + 1);
    let later = commit_rootfs(&repo, &opts).unwrap();
    assert_ne!(later.checksum, sums[0].0);
    assert_eq!(later.content_checksum, sums[0].1);
}

#[test]
fn parent_from_ref_no_parent_and_explicit_parent() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "archive");

    let first = commit_rootfs(&repo, &options(&rootfs)).unwrap();
    write(&rootfs.join("usr/share/new"), "v2\n", 0o644);
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 10);
    let second = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.checksum.as_str()));
    let log = ostree(&repo_path, &["log", REF]);
    assert!(
        log.contains(&first.checksum) && log.contains(&second.checksum),
        "{log}"
    );
    assert!(second.stats.content_written < first.stats.content_written);

    // --no-parent: history starts over.
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 20);
    opts.parent = ParentSpec::None;
    let orphan = commit_rootfs(&repo, &opts).unwrap();
    let log = ostree(&repo_path, &["log", REF]);
    assert!(log.contains(&orphan.checksum), "{log}");
    assert!(!log.contains(&second.checksum), "{log}");

    // --parent REF resolves; --parent with an absent full checksum is accepted.
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 30);
    opts.parent = ParentSpec::Rev(first.checksum.clone());
    let on_first = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(on_first.parent.as_deref(), Some(first.checksum.as_str()));
    let absent = "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b";
    let mut opts = options(&rootfs);
    opts.parent = ParentSpec::Rev(absent.to_string());
    let dangling = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(dangling.parent.as_deref(), Some(absent));
    let log = ostree(&repo_path, &["log", REF]);
    assert!(
        log.contains("History beyond this commit not fetched"),
        "{log}"
    );
    ostree(&repo_path, &["fsck"]);

    // A parent that does not resolve is invalid input, and nothing moves.
    let before = ostree(&repo_path, &["rev-parse", REF]);
    let mut opts = options(&rootfs);
    opts.parent = ParentSpec::Rev("no/such/ref".into());
    let err = commit_rootfs(&repo, &opts).unwrap_err();
    assert_eq!(class_of(&err), Some(ErrorClass::InvalidInput));
    assert!(format!("{err:#}").contains("no/such/ref"), "{err:#}");
    assert_eq!(ostree(&repo_path, &["rev-parse", REF]), before);
}

fn count_commit_objects(repo: &Path) -> usize {
    let mut n = 0;
    for dir in std::fs::read_dir(repo.join("objects")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            if f.unwrap().path().extension().is_some_and(|e| e == "commit") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn failed_commit_moves_no_ref_and_leaves_repo_clean() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "bare-user");
    let first = commit_rootfs(&repo, &options(&rootfs)).unwrap();
    let commits_before = count_commit_objects(&repo_path);

    // Fails after the tree and the commit object were written: signing with a
    // key that does not exist in an empty GnuPG home.
    write(&rootfs.join("usr/share/changed"), "new content\n", 0o644);
    let gnupg = tmp.path().join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 5);
    opts.gpg_key = Some("0123456789ABCDEF".into());
    opts.gpg_homedir = Some(gnupg.clone());
    let err = commit_rootfs(&repo, &opts).unwrap_err();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&gnupg)
        .args(["--kill", "gpg-agent"])
        .status();
    assert!(format!("{err:#}").contains("Signing commit"), "{err:#}");
    assert_eq!(
        ostree(&repo_path, &["rev-parse", REF]).trim(),
        first.checksum
    );
    assert_eq!(count_commit_objects(&repo_path), commits_before);
    ostree(&repo_path, &["fsck"]);

    // Fails in the middle of the tree walk: a file with a corrupt
    // user.ostreemeta. The fifo that was moved aside for the walk is back.
    write(&rootfs.join("usr/share/zz-corrupt"), "x\n", 0o644);
    setxattr(
        &rootfs.join("usr/share/zz-corrupt"),
        "user.ostreemeta",
        b"garbage",
    );
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 7);
    let err = commit_rootfs(&repo, &opts).unwrap_err();
    assert!(format!("{err:#}").contains("user.ostreemeta"), "{err:#}");
    assert_eq!(
        ostree(&repo_path, &["rev-parse", REF]).trim(),
        first.checksum
    );
    assert_eq!(count_commit_objects(&repo_path), commits_before);
    let fifo = std::fs::symlink_metadata(rootfs.join("usr/share/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    ostree(&repo_path, &["fsck"]);
    std::fs::remove_file(rootfs.join("usr/share/zz-corrupt")).unwrap();

    // An invalid ref name fails before anything is written.
    let mut opts = options(&rootfs);
    opts.ref_ = Some("bad ref".into());
    let err = commit_rootfs(&repo, &opts).unwrap_err();
    assert_eq!(class_of(&err), Some(ErrorClass::InvalidInput));
    assert_eq!(count_commit_objects(&repo_path), commits_before);

    // The repo still takes commits.
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 6);
    let next = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(next.parent.as_deref(), Some(first.checksum.as_str()));
}

#[test]
fn pkgdiff_from_parent_commit() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo = init_repo(&tmp.path().join("repo"), "archive");
    let pkg = |name: &str, version: &str| PkgListEntry {
        name: name.into(),
        epoch: "0".into(),
        version: version.into(),
        release: "1".into(),
        arch: "x86_64".into(),
    };
    let mut opts = options(&rootfs);
    opts.metadata.insert(
        "rpmostree.rpmdb.pkglist",
        MetaValue::PkgList(vec![pkg("bash", "5.1"), pkg("gone", "1")]),
    );
    let first = commit_rootfs(&repo, &opts).unwrap();
    assert!(CommitInfo::load(&repo, &first.checksum)
        .unwrap()
        .pkgdiff_from_parent()
        .unwrap()
        .is_none());
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 1);
    opts.metadata.insert(
        "rpmostree.rpmdb.pkglist",
        MetaValue::PkgList(vec![pkg("bash", "5.2"), pkg("new", "1")]),
    );
    let second = commit_rootfs(&repo, &opts).unwrap();
    let diff = CommitInfo::load(&repo, &second.checksum)
        .unwrap()
        .pkgdiff_from_parent()
        .unwrap()
        .unwrap();
    assert_eq!(
        commit::pkgdiff_to_json(&diff),
        serde_json::json!([
            ["new", 0, {"NewPackage": ["new", "1-1", "x86_64"]}],
            ["gone", 1, {"PreviousPackage": ["gone", "1-1", "x86_64"]}],
            ["bash", 2, {"PreviousPackage": ["bash", "5.1-1", "x86_64"],
                         "NewPackage": ["bash", "5.2-1", "x86_64"]}],
        ])
    );
}

#[test]
fn kernel_version_for_bootable_metadata() {
    let tmp = tmpdir();
    let root = tmp.path();
    assert_eq!(commit::find_kernel_version(root).unwrap(), None);
    write(
        &root.join("usr/lib/modules/6.1.0-13-amd64/vmlinuz"),
        "kernel",
        0o644,
    );
    std::fs::create_dir_all(root.join("usr/lib/modules/6.1.0-13-amd64/kernel")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/modules/extra-no-kernel")).unwrap();
    assert_eq!(
        commit::find_kernel_version(root).unwrap().as_deref(),
        Some("6.1.0-13-amd64")
    );
    write(
        &root.join("usr/lib/modules/6.5.0-1/vmlinuz"),
        "kernel",
        0o644,
    );
    let err = commit::find_kernel_version(root).unwrap_err();
    assert!(
        format!("{err:#}").contains("6.1.0-13-amd64, 6.5.0-1"),
        "{err:#}"
    );
}

#[test]
fn write_ref_false_leaves_ref() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "archive");
    let mut opts = options(&rootfs);
    opts.write_ref = false;
    let r = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(r.ref_written, None);
    assert!(ostree(&repo_path, &["refs"]).trim().is_empty());
    ostree(&repo_path, &["show", &r.checksum]);

    let first = commit_rootfs(&repo, &options(&rootfs)).unwrap();
    let mut opts = options(&rootfs);
    opts.write_ref = false;
    opts.timestamp = Some(TIME + 1);
    let unrefd = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(unrefd.parent.as_deref(), Some(first.checksum.as_str()));
    assert_eq!(
        ostree(&repo_path, &["rev-parse", REF]).trim(),
        first.checksum
    );
}

#[test]
fn not_a_repo_says_how_to_create_one() {
    let tmp = tmpdir();
    let err = commit::open_repo(tmp.path()).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("not an OSTree repository"), "{text}");
    assert!(
        text.contains(&format!(
            "ostree init --repo={} --mode=archive",
            tmp.path().display()
        )),
        "{text}"
    );
    assert_eq!(class_of(&err), Some(ErrorClass::InvalidInput));
    let err = commit::open_repo(&tmp.path().join("missing")).unwrap_err();
    assert!(format!("{err:#}").contains("not an OSTree repository"));

    // open_or_create initialises an empty directory, refuses a non-empty one.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (repo, created) = commit::open_or_create_repo(&empty, ostree::RepoMode::Archive).unwrap();
    assert!(created);
    assert_eq!(repo.mode(), ostree::RepoMode::Archive);
    let (_, created) = commit::open_or_create_repo(&empty, ostree::RepoMode::BareUser).unwrap();
    assert!(!created);
    std::fs::write(tmp.path().join("junk"), "x").unwrap();
    let err = commit::open_or_create_repo(tmp.path(), ostree::RepoMode::Archive).unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
}

#[test]
fn selinux_without_policy_commits_unlabeled() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo = init_repo(&tmp.path().join("repo"), "archive");
    let mut opts = options(&rootfs);
    opts.selinux = true;
    let r = commit_rootfs(&repo, &opts).unwrap();
    assert!(!r.selinux_labeled);
    let mut opts = options(&rootfs);
    opts.selinux = false;
    opts.parent = ParentSpec::None;
    let plain = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(plain.content_checksum, r.content_checksum);
}

#[test]
fn selinux_labels_from_the_rootfs_policy() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    write_test_policy(&rootfs);
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "archive");
    let mut opts = options(&rootfs);
    opts.selinux = true;
    let r = commit_rootfs(&repo, &opts).unwrap();
    assert!(r.selinux_labeled);
    let su = ostree(&repo_path, &["ls", "-X", REF, "/usr/bin/su"]);
    assert!(
        su.contains("b'security.selinux', b'system_u:object_r:bin_t:s0"),
        "{su}"
    );
    let passwd = ostree(&repo_path, &["ls", "-X", REF, "/usr/etc/passwd"]);
    assert!(passwd.contains("system_u:object_r:etc_t:s0"), "{passwd}");
    let var = ostree(&repo_path, &["ls", "-X", "-d", REF, "/var"]);
    assert!(var.contains("system_u:object_r:default_t:s0"), "{var}");
    // File capabilities survive next to the label.
    let ping = ostree(&repo_path, &["ls", "-X", REF, "/usr/bin/ping"]);
    assert!(
        ping.contains("security.capability") && ping.contains("bin_t"),
        "{ping}"
    );
    ostree(&repo_path, &["fsck"]);
}

/// A minimal policy: libostree checksums policy/policy.N and labels with the
/// textual file_contexts (libselinux does not validate the contexts). A rule
/// for each kind of path (directories, files, symlinks).
fn write_test_policy(rootfs: &Path) {
    let policy = rootfs.join("usr/etc/selinux");
    write(
        &policy.join("config"),
        "SELINUX=enforcing\nSELINUXTYPE=test\n",
        0o644,
    );
    write(
        &policy.join("test/policy/policy.33"),
        "not a real policy\n",
        0o644,
    );
    write(
        &policy.join("test/contexts/files/file_contexts"),
        "/.*\tsystem_u:object_r:default_t:s0\n/\tsystem_u:object_r:root_t:s0\n\
         /usr(/.*)?\tsystem_u:object_r:usr_t:s0\n/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n\
         /usr/bin/.*\t-l\tsystem_u:object_r:bin_link_t:s0\n/usr/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n",
        0o644,
    );
}

/// With an SELinux policy, the parallel writer labels every file, symlink
/// and directory as libostree's walk does: the same commit, into an archive
/// repository and consumed into a bare-user one.
#[test]
fn selinux_labels_from_the_parallel_writer_match_libostree() {
    let tmp = tmpdir();
    for mode in ["archive", "bare-user"] {
        let rootfs = tmp.path().join(format!("rootfs-{mode}"));
        build_rootfs(&rootfs);
        write_test_policy(&rootfs);
        std::os::unix::fs::symlink("hello", rootfs.join("usr/bin/hello-link")).unwrap();
        let reference_root = tmp.path().join(format!("reference-{mode}"));
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(&rootfs)
                .arg(&reference_root),
        );
        let reference_path = tmp.path().join(format!("reference-repo-{mode}"));
        let reference = init_repo(&reference_path, mode);
        let mut ropts = options(&reference_root);
        ropts.selinux = true;
        ropts.writer = commit::TreeWriter::Libostree;
        let expected = commit_rootfs(&reference, &ropts).unwrap();
        assert!(expected.selinux_labeled);

        let repo_path = tmp.path().join(format!("repo-{mode}"));
        let repo = init_repo(&repo_path, mode);
        let mut opts = options(&rootfs);
        opts.selinux = true;
        opts.writer = commit::TreeWriter::Parallel(2);
        opts.consume = mode == "bare-user";
        let got = commit_rootfs(&repo, &opts).unwrap();
        assert!(got.selinux_labeled);
        assert_eq!(
            ostree(&repo_path, &["ls", "-R", "-X", REF]),
            ostree(&reference_path, &["ls", "-R", "-X", REF]),
            "{mode}"
        );
        assert_eq!(got.checksum, expected.checksum, "{mode}");
        let link = ostree(&repo_path, &["ls", "-X", REF, "/usr/bin/hello-link"]);
        assert!(link.contains("bin_link_t"), "{link}");
        let root = ostree(&repo_path, &["ls", "-X", "-d", REF, "/"]);
        assert!(root.contains("root_t"), "{root}");
        ostree(&repo_path, &["fsck"]);
    }
}

#[test]
fn recommit_of_bare_user_checkout_keeps_recorded_ownership() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    // What a user-mode checkout cannot reproduce, by design of libostree:
    // directory ownership (dirs carry no user.ostreemeta) and mode-0000 files
    // (copied, not hardlinked, and made readable).
    std::os::unix::fs::chown(rootfs.join("var/lib/owned"), Some(0), Some(0)).unwrap();
    std::fs::remove_file(rootfs.join("usr/etc/shadow")).unwrap();
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "bare-user");
    let first = commit_rootfs(&repo, &options(&rootfs)).unwrap();

    // A hardlinked user-mode checkout: files carry user.ostreemeta, and are
    // owned by us with modes bare-user masks. The checkout fills the devino cache.
    let co = tmp.path().join("checkout");
    let cache = ostree::RepoDevInoCache::new();
    let checkout_opts = ostree::RepoCheckoutAtOptions {
        mode: ostree::RepoCheckoutMode::User,
        no_copy_fallback: true,
        devino_to_csum_cache: Some(cache.clone()),
        ..Default::default()
    };
    repo.checkout_at(
        Some(&checkout_opts),
        libc::AT_FDCWD,
        &co,
        &first.checksum,
        ostree::gio::Cancellable::NONE,
    )
    .unwrap();
    let su_meta = std::fs::symlink_metadata(co.join("usr/bin/su")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&su_meta), 2);
    let mut opts = options(&co);
    opts.parent = ParentSpec::None;
    opts.devino_cache = Some(cache);
    let again = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(again.checksum, first.checksum);
    assert!(again.stats.devino_cache_hits > 0, "{:?}", again.stats);

    // Without the devino cache, user.ostreemeta gives the same answer.
    let mut opts = options(&co);
    opts.parent = ParentSpec::None;
    let uncached = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(uncached.checksum, first.checksum);
    let ls = ostree(&repo_path, &["ls", "-R", &uncached.checksum]);
    assert!(ls.contains("-04755 0 0     10 /usr/bin/su"), "{ls}");
    assert!(
        ls.contains("-00640 900 901      6 /var/lib/owned/data"),
        "{ls}"
    );
}

#[test]
fn consume_deletes_the_rootfs() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "archive");
    let mut opts = options(&rootfs);
    opts.consume = true;
    commit_rootfs(&repo, &opts).unwrap();
    assert!(!rootfs.join("usr/bin/hello").exists());
    ostree(&repo_path, &["fsck"]);
}

/// Consuming into a bare-user repository on the same filesystem renames plain
/// files into `objects/` (no copy) and still makes exactly libostree's commit;
/// files with kept xattrs, and hardlinked files while another name is left,
/// are copied.
#[test]
fn consume_into_bare_user_adopts_files_and_matches_libostree() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    write(&rootfs.join("usr/share/big"), &"x".repeat(3 << 20), 0o644);
    write(&rootfs.join("usr/share/linked"), "linked\n", 0o644);
    std::fs::hard_link(
        rootfs.join("usr/share/linked"),
        rootfs.join("usr/share/linked2"),
    )
    .unwrap();
    // A copy of the same tree for libostree's own walk.
    let (reference_path, expected) = commit_copy_with_libostree(tmp.path(), &rootfs);

    let ino = |p: &str| std::fs::metadata(rootfs.join(p)).unwrap().ino();
    let (big_ino, ping_ino) = (ino("usr/share/big"), ino("usr/bin/ping"));
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "bare-user");
    // What a killed run leaves behind: removed by the next one.
    let stale = repo_path.join("tmp/ostree-composer-adopt-killed/ab");
    std::fs::create_dir_all(&stale).unwrap();
    write(&stale.join("cdef.file"), "half", 0o644);
    let mut opts = options(&rootfs);
    opts.consume = true;
    let got = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(got.checksum, expected.checksum);
    ostree(&repo_path, &["fsck"]);
    assert!(!rootfs.join("usr/share/big").exists());
    // Adopted files were staged, then published: nothing is left in tmp/.
    let staged: Vec<_> = std::fs::read_dir(repo_path.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ostree-composer-adopt-"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");

    // The content object of `path` in the commit: its checksum and file.
    let object_of = |path: &str| {
        let line = ostree(&repo_path, &["ls", "-C", &got.checksum, path]);
        let csum = line
            .split_whitespace()
            .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| panic!("no checksum in {line}"))
            .to_string();
        let obj = repo_path.join(format!("objects/{}/{}.file", &csum[..2], &csum[2..]));
        (csum, obj)
    };
    let object_ino = |path: &str| {
        let (csum, obj) = object_of(path);
        let meta = std::fs::metadata(&obj).unwrap();
        let reference_obj =
            reference_path.join(format!("objects/{}/{}.file", &csum[..2], &csum[2..]));
        let rmeta = std::fs::metadata(&reference_obj).unwrap();
        // The object file looks exactly like the one libostree wrote.
        assert_eq!(
            (
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.mtime(),
                meta.len()
            ),
            (
                rmeta.mode(),
                rmeta.uid(),
                rmeta.gid(),
                rmeta.mtime(),
                rmeta.len()
            ),
            "{path}"
        );
        meta.ino()
    };
    let links_of_object = |path: &str| std::fs::metadata(object_of(path).1).unwrap().nlink();
    assert_eq!(
        object_ino("/usr/share/big"),
        big_ino,
        "a plain file becomes its object"
    );
    assert_ne!(
        object_ino("/usr/bin/ping"),
        ping_ino,
        "a file with kept xattrs is copied"
    );
    // A hardlink set: a name is copied while another name of its inode is
    // left; the last name may be adopted once the workers removed the
    // others (which one depends on their timing). Either way no other
    // path shares the object's inode.
    object_ino("/usr/share/linked");
    assert_eq!(links_of_object("/usr/share/linked"), 1);
    assert_eq!(links_of_object("/usr/share/big"), 1);
    // Owned by someone else: taken over (chowned) as libostree would write it.
    object_ino("/var/lib/owned/data");
}

#[test]
fn pull_local_commit_only_or_with_history() {
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    build_rootfs(&rootfs);
    let build_path = tmp.path().join("build");
    let build = init_repo(&build_path, "bare-user");
    let c1 = commit_rootfs(&build, &options(&rootfs)).unwrap();
    write(&rootfs.join("usr/share/v2"), "2\n", 0o644);
    let mut opts = options(&rootfs);
    opts.timestamp = Some(TIME + 1);
    let c2 = commit_rootfs(&build, &opts).unwrap();

    let only_path = tmp.path().join("only");
    let only = init_repo(&only_path, "archive");
    let n = commit::pull_local(
        &only,
        &commit::PullLocalOptions {
            src_repo: &build_path,
            commit: &c2.checksum,
            ref_: Some(REF),
            history: commit::PullHistory::CommitOnly,
        },
    )
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(ostree(&only_path, &["rev-parse", REF]).trim(), c2.checksum);
    assert!(ostree(&only_path, &["log", REF]).contains("History beyond this commit not fetched"));
    ostree(&only_path, &["fsck"]);

    let all_path = tmp.path().join("all");
    let all = init_repo(&all_path, "archive");
    let n = commit::pull_local(
        &all,
        &commit::PullLocalOptions {
            src_repo: &build_path,
            commit: &c2.checksum,
            ref_: None,
            history: commit::PullHistory::AllAvailable,
        },
    )
    .unwrap();
    assert_eq!(n, 2);
    let log = ostree(&all_path, &["log", &c2.checksum]);
    assert!(log.contains(&c1.checksum), "{log}");
    assert!(ostree(&all_path, &["refs"]).trim().is_empty());
    ostree(&all_path, &["fsck"]);
    check_committed_tree(&all_path, &c2.checksum);
}

#[test]
fn concurrent_locked_composes_chain_their_commits() {
    let tmp = tmpdir();
    let repo_path = tmp.path().join("repo");
    init_repo(&repo_path, "archive");
    let mut workers = Vec::new();
    for i in 0..3u64 {
        let repo_path = repo_path.clone();
        let rootfs = tmp.path().join(format!("rootfs{i}"));
        build_rootfs(&rootfs);
        write(&rootfs.join("usr/share/worker"), &format!("{i}\n"), 0o644);
        workers.push(std::thread::spawn(move || {
            let _lock = RepoLock::acquire(&repo_path).unwrap();
            let repo = commit::open_repo(&repo_path).unwrap();
            let mut opts = options(&rootfs);
            opts.timestamp = Some(TIME + i);
            commit_rootfs(&repo, &opts).unwrap()
        }));
    }
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    // Each commit's parent is another one's checksum, except one root: no
    // ref update was lost.
    let roots = results.iter().filter(|r| r.parent.is_none()).count();
    assert_eq!(roots, 1, "{results:?}");
    let log = ostree(&repo_path, &["log", REF]);
    for r in &results {
        assert!(log.contains(&r.checksum), "{log}");
    }
    ostree(&repo_path, &["fsck"]);
}

#[test]
fn fsync_setting_is_persisted() {
    let tmp = tmpdir();
    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "archive");
    commit::set_repo_fsync(&repo, false).unwrap();
    let config = std::fs::read_to_string(repo_path.join("config")).unwrap();
    assert!(config.contains("fsync=false"), "{config}");
    assert!(repo.is_disable_fsync());
    commit::set_repo_fsync(&repo, true).unwrap();
    assert!(!repo.is_disable_fsync());
    assert!(std::fs::read_to_string(repo_path.join("config"))
        .unwrap()
        .contains("fsync=true"));
}

#[test]
fn lock_is_exclusive_and_waits() {
    let tmp = tmpdir();
    let repo_path: PathBuf = tmp.path().join("repo");
    init_repo(&repo_path, "archive");
    let held = RepoLock::acquire(&repo_path).unwrap();
    let pid = std::process::id().to_string();
    assert_eq!(
        std::fs::read_to_string(held.path()).unwrap().trim(),
        pid.as_str()
    );

    assert!(RepoLock::is_held_by_this_process(&repo_path));
    let err = RepoLock::try_acquire(&repo_path).unwrap_err();
    assert_eq!(class_of(&err), Some(ErrorClass::Locked));
    assert!(
        format!("{err:#}").contains(&format!("pid {pid}")),
        "{err:#}"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let path = repo_path.clone();
    let waiter = std::thread::spawn(move || {
        let lock = RepoLock::acquire(&path).unwrap();
        tx.send(()).unwrap();
        drop(lock);
    });
    assert!(rx
        .recv_timeout(std::time::Duration::from_millis(500))
        .is_err());
    drop(held);
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the waiter got the lock after release");
    waiter.join().unwrap();
    assert!(!RepoLock::is_held_by_this_process(&repo_path));
    let again = RepoLock::try_acquire(&repo_path).unwrap();
    drop(again);

    // Another process holding it: the non-blocking variant fails, naming no
    // pid it cannot know (util-linux flock writes none).
    let mut holder = Command::new("flock")
        .arg(repo_path.join(".ostree-composer.lock"))
        .args(["-c", "sleep 1"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let err = RepoLock::try_acquire(&repo_path).unwrap_err();
    assert_eq!(class_of(&err), Some(ErrorClass::Locked));
    let start = std::time::Instant::now();
    let waited = RepoLock::acquire(&repo_path).unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    holder.wait().unwrap();
    drop(waited);
}

/// Files of a package cache (hardlinked into the rootfs, checksums known)
/// are copied into the repository while the "compose" goes on; the commit
/// takes those copies. A file written to after its copy is committed with
/// its new content, and the stale copy never reaches `objects/`.
#[test]
fn objects_staged_ahead_are_used_only_for_untouched_files() {
    use ostree_composer::commit::checksum::regular_file_checksum;
    use ostree_composer::commit::known::{wait_until_clock_past, KnownContents, Stamp};
    use ostree_composer::commit::prestage::{AheadFile, PreStager};
    use std::os::unix::fs::MetadataExt;

    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs");
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let files = [
        ("usr/share/a", "alpha\n".repeat(5000), 0o644),
        ("usr/share/b", "bravo\n".repeat(3000), 0o644),
        ("usr/bin/c", "#!/bin/sh\necho charlie\n".to_string(), 0o755),
    ];
    for (i, (path, content, mode)) in files.iter().enumerate() {
        let cached = cache.join(format!("f{i}"));
        write(&cached, content, *mode);
        std::fs::create_dir_all(rootfs.join(path).parent().unwrap()).unwrap();
        std::fs::hard_link(&cached, rootfs.join(path)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("usr/lib")).unwrap();
    let no_xattrs = ostree::glib::Variant::array_from_iter_with_type(
        ostree::glib::VariantTy::new("(ayay)").unwrap(),
        std::iter::empty::<ostree::glib::Variant>(),
    );
    let mut known = KnownContents::default();
    let mut ahead = Vec::new();
    for i in 0..files.len() {
        let cached = cache.join(format!("f{i}"));
        let meta = std::fs::metadata(&cached).unwrap();
        let checksum = regular_file_checksum(
            &mut std::fs::File::open(&cached).unwrap(),
            (meta.uid(), meta.gid(), meta.mode()),
            &no_xattrs,
        )
        .unwrap();
        known.insert(&meta, checksum.clone());
        ahead.push(AheadFile {
            path: cached,
            checksum,
            stamp: Stamp::of(&meta),
        });
    }
    let stale_b = ahead[1].checksum.clone();

    let repo_path = tmp.path().join("repo");
    let repo = init_repo(&repo_path, "bare-user");
    let stager = PreStager::start(&repo, &repo_path, &rootfs, ahead.clone())
        .unwrap()
        .expect("a bare-user repository on the rootfs' filesystem");
    stager.wait_until_done().unwrap();
    let staged: Vec<PathBuf> = std::fs::read_dir(repo_path.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("ostree-composer-adopt-"))
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    let count = walkdir_files(&staged[0]);
    assert_eq!(count, 3, "three objects staged in {}", staged[0].display());

    // A post-processing step appends to b through the rootfs (one inode).
    wait_until_clock_past(ahead[1].stamp.ctime);
    let mut b = std::fs::OpenOptions::new()
        .append(true)
        .open(rootfs.join("usr/share/b"))
        .unwrap();
    std::io::Write::write_all(&mut b, b"edited\n").unwrap();
    drop(b);

    // What libostree's own walk commits for the same final tree.
    let (_, expected) = commit_copy_with_libostree(tmp.path(), &rootfs);

    let mut opts = options(&rootfs);
    opts.writer = commit::TreeWriter::Parallel(2);
    opts.consume = true;
    opts.known_contents = Some(std::sync::Arc::new(known));
    opts.pre_stager = Some(stager);
    let got = commit_rootfs(&repo, &opts).unwrap();
    assert_eq!(got.checksum, expected.checksum);
    ostree(&repo_path, &["fsck"]);
    assert_eq!(
        ostree(&repo_path, &["cat", REF, "/usr/share/b"]),
        format!("{}edited\n", "bravo\n".repeat(3000))
    );
    let stale = repo_path
        .join("objects")
        .join(&stale_b[..2])
        .join(format!("{}.file", &stale_b[2..]));
    assert!(!stale.exists(), "the stale copy of b was published");
    assert!(!staged[0].exists(), "the staging directory is left");
}

/// Regular files below `dir`, recursively.
fn walkdir_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            n += walkdir_files(&entry.path());
        } else {
            n += 1;
        }
    }
    n
}

/// A copy of `rootfs` (in `tmp/reference`) committed by libostree's own walk
/// into a new bare-user repository `tmp/reference-repo`: what the parallel
/// writer must reproduce.
fn commit_copy_with_libostree(tmp: &Path, rootfs: &Path) -> (PathBuf, commit::CommitResult) {
    let reference_root = tmp.join("reference");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(&reference_root),
    );
    let reference_path = tmp.join("reference-repo");
    let reference = init_repo(&reference_path, "bare-user");
    let mut opts = options(&reference_root);
    opts.writer = commit::TreeWriter::Libostree;
    let expected = commit_rootfs(&reference, &opts).unwrap();
    (reference_path, expected)
}

//! Two installs of the same packages at different times give byte-identical
//! rpmdbs after normalization, and rpm still reads them.
mod common;
use common::rpmfixture::*;
use std::path::Path;
use std::process::Command;

fn install(root: &Path, rpms: &[std::path::PathBuf]) {
    let st = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            "/usr/share/rpm",
            "-i",
            "--nodeps",
            "--noscripts",
        ])
        .args(rpms)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn normalized_rpmdbs_are_identical_and_readable() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = tmp.path().join("rpms");
    let rpms: Vec<_> = [
        Pkg::new("alpha", "1.0").entry(Entry::file("/usr/share/alpha", "a\n")),
        Pkg::new("beta", "2.0").entry(Entry::file("/usr/share/beta", "b\n")),
    ]
    .iter()
    .map(|p| build_rpm(p, &out))
    .collect();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    install(&a, &rpms);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    install(&b, &rpms);
    let db = |r: &Path| std::fs::read(r.join("usr/share/rpm/rpmdb.sqlite")).unwrap();
    for r in [&a, &b] {
        ostree_composer::postprocess::rpmdb::normalize_rpmdb(r, 1_700_000_000).unwrap();
        assert!(!r.join("usr/share/rpm/rpmdb.sqlite-wal").exists());
        assert!(!r.join("usr/share/rpm/rpmdb.sqlite-shm").exists());
    }
    assert!(db(&a) == db(&b), "normalized rpmdbs differ");
    let q = Command::new("rpm")
        .arg("--root")
        .arg(&a)
        .args([
            "--dbpath",
            "/usr/share/rpm",
            "-qa",
            "--qf",
            "%{NAME} %{INSTALLTIME}\\n",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&q.stdout);
    // Install order decides who gets epoch+0 and epoch+1.
    let mut times: Vec<&str> = text.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    times.sort();
    assert_eq!(times, ["1700000000", "1700000001"], "{text}");
}

//! The RPM fixture builder itself works: builds a repo that rpm can read.
mod common;
use common::rpmfixture::*;

#[test]
fn builds_queryable_rpms_and_repo() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = Pkg::new("hello", "1.0")
        .requires("filesystem")
        .entry(Entry::exe("/usr/bin/hello", "#!/bin/sh\necho hello\n"))
        .entry(Entry::config("/etc/hello.conf", "greeting=hi\n"))
        .entry(Entry::owned_dir("/var/lib/hello", 0o750, "demo", "demo"))
        .script("post", "echo post-ran > /var/lib/hello/post");
    let repo = build_repo(
        &tmp.path().join("repo"),
        &[pkg.clone(), filesystem_pkg(), setup_pkg()],
    );
    assert!(repo.join("repodata/repomd.xml").exists());
    let rpm = repo.join("Packages").join(pkg.filename());
    let out = std::process::Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "%{NAME}-%{VERSION}\\n[%{FILENAMES} %{FILEUSERNAME}\\n]",
        ])
        .arg(&rpm)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("hello-1.0"), "{text}");
    assert!(text.contains("/var/lib/hello demo"), "{text}");
}

//! Post-processing part 1 on real roots: treefile steps (§4.4), scripts run
//! chrooted in the new root, root preparation (§4.5) and the common steps
//! (§4.6). Roots are either built by hand or installed with the real `rpm`
//! from RPMs built at test time (including a busybox shell so scripts run).
mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::rpmfixture::{build_rpm, filesystem_pkg, Entry, Pkg};
use ostree_composer::exit::exit_code_for;
use ostree_composer::postprocess::common as pcommon;
use ostree_composer::postprocess::fsutil::open_root;
use ostree_composer::postprocess::prepare_rootfs::{
    prepare_rootfs, prepare_rootfs_at, OptUsrLocal, PrepareRootfsOptions, RootfsLayout,
};
use ostree_composer::postprocess::scripts::{
    run_postprocess_scripts, PostprocessScript, PostprocessScripts, ScriptEnv,
};
use ostree_composer::postprocess::treefile_steps::{
    self as steps, apply_remove_from_packages, run_treefile_steps, AddFile, RemoveFromPackage,
    TempEtcGuard, TreefileStepsOptions,
};

// ---------------------------------------------------------------------------
// helpers

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
        .to_string_lossy()
        .into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A package with a static busybox as `/usr/bin/busybox` and the applets the
/// test scripts use, so scripts can run chrooted in the installed root.
fn busybox_pkg() -> Pkg {
    let bytes = std::fs::read("/bin/busybox").expect("busybox-static is installed on the host");
    let mut p = Pkg::new("busybox", "1.35").arch("x86_64");
    p = p.entry(Entry::File {
        path: "/usr/bin/busybox".into(),
        content: bytes,
        mode: 0o755,
        user: "root".into(),
        group: "root".into(),
        config: false,
        doc: false,
    });
    for applet in [
        "sh", "env", "touch", "rm", "cp", "cat", "ls", "mkdir", "echo", "test", "pwd", "readlink",
        "id",
    ] {
        p = p.entry(Entry::symlink(&format!("/usr/bin/{applet}"), "busybox"));
    }
    p
}

/// `setup`-like package with the files misc-tweaks touches.
fn setup_pkg() -> Pkg {
    Pkg::new("setup", "2.14")
        .entry(Entry::config("/etc/hosts", "127.0.0.1 localhost\n"))
        .entry(Entry::config("/etc/hosts.allow", "# allow\n"))
        .entry(Entry::config("/etc/hosts.deny", "# deny\n"))
        .entry(Entry::config(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n",
        ))
        .entry(Entry::config("/etc/group", "root:x:0:\n"))
}

/// Owns `/etc/hosts.deny` too (same content), so it must survive.
fn netshare_pkg() -> Pkg {
    Pkg::new("netshare", "1.0").entry(Entry::config("/etc/hosts.deny", "# deny\n"))
}

/// An os-release like Fedora's: the file in /usr/lib, a relative link in /etc.
fn release_pkg() -> Pkg {
    Pkg::new("fedora-release", "33")
        .entry(Entry::file(
            "/usr/lib/os-release",
            "NAME=Fedora\nVERSION=\"33 (Thirty Three)\"\n\nVERSION_ID=33\nPRETTY_NAME=\"Fedora 33 (Thirty Three)\"\n",
        ))
        .entry(Entry::symlink("/etc/os-release", "../usr/lib/os-release"))
}

fn docs_pkg() -> Pkg {
    Pkg::new("docs", "1.0")
        .entry(Entry::dir("/usr/share/doc/docs"))
        .entry(Entry::file("/usr/share/doc/docs/README", "readme\n"))
        .entry(Entry::file("/usr/share/doc/docs/NEWS", "news\n"))
        .entry(Entry::exe("/usr/bin/docs-tool", "#!/bin/sh\n"))
}

/// Build the fixture RPMs once per test binary.
fn rpms() -> &'static Vec<PathBuf> {
    static RPMS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    RPMS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("post-tree-rpms");
        let _ = std::fs::remove_dir_all(&dir);
        [
            filesystem_pkg(),
            busybox_pkg(),
            setup_pkg(),
            netshare_pkg(),
            release_pkg(),
            docs_pkg(),
        ]
        .iter()
        .map(|p| build_rpm(p, &dir))
        .collect()
    })
}

fn rpm(root: &Path) -> Command {
    let mut c = Command::new("rpm");
    c.arg("--root")
        .arg(root)
        .args(["--dbpath", "/usr/share/rpm"]);
    c
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A root installed by rpm from the fixture packages, like `rootfs.tmp`.
fn installed_root() -> (tempfile::TempDir, PathBuf) {
    let td = tempfile::tempdir().unwrap();
    let root = td.path().join("rootfs.tmp");
    std::fs::create_dir(&root).unwrap();
    run_ok(rpm(&root).arg("--initdb"));
    run_ok(rpm(&root).args(["-i", "--nodeps"]).args(rpms()));
    (td, root)
}

fn no_env_scripts() -> ScriptEnv {
    ScriptEnv {
        lang: "C".into(),
        source_date_epoch: Some("1700000000".into()),
    }
}

// ---------------------------------------------------------------------------
// §4.4 on an installed root (test-misc-tweaks, test-basic-unified, test-mutate-os-release)

#[test]
fn treefile_steps_misc_tweaks() {
    let (_td, root) = installed_root();
    let rnd = format!("{}", std::process::id());
    let opts = TreefileStepsOptions {
        units: vec!["zincati.service".into()],
        default_target: Some("multi-user.target".into()),
        opt_usrlocal: OptUsrLocal::Var,
        treefile_json: Some("{\n  \"ref\": \"test/x86_64\"\n}".into()),
        mutate_os_release: Some("33".into()),
        version: Some("33.4".into()),
        remove_files: vec!["etc/hosts".into()],
        add_files: vec![
            AddFile {
                dest: "/usr/etc/foo.txt".into(),
                contents: format!("{rnd}\n").into_bytes(),
                mode: 0o644,
            },
            AddFile {
                dest: "/usr/share/baz.txt".into(),
                contents: b"baz\n".to_vec(),
                mode: 0o644,
            },
            AddFile {
                dest: "/etc/bar.txt".into(),
                contents: b"bar\n".to_vec(),
                mode: 0o600,
            },
            AddFile {
                dest: "/usr/libexec/new/dir/tool".into(),
                contents: b"#!/bin/sh\n".to_vec(),
                mode: 0o4755,
            },
        ],
        scripts: PostprocessScripts {
            inline: vec![
                "#!/bin/sh\ntouch /usr/share/postprocess-testing\n".into(),
                "#!/bin/sh\nset -e\ntouch /usr/share/included-postprocess-test\n\
                 rm /usr/share/postprocess-testing\ntouch /usr/share/postprocess-testing-done\n"
                    .into(),
                // What a script sees (test-basic-unified): rpmdb links, /etc, env, cwd.
                "#!/bin/sh\nset -e\nenv > /usr/share/script-env.txt\npwd > /usr/share/script-cwd.txt\n\
                 readlink /var/lib/rpm > /usr/share/varlibrpm-link.txt\n\
                 ls /var/lib/rpm/ > /usr/share/varlibrpm.txt\n\
                 ls /usr/lib/sysimage/rpm/ > /usr/share/sysimage.txt\n\
                 cat /etc/os-release > /usr/share/etc-os-release.txt\n\
                 ls /usr/bin/ > /usr/share/usrbin.txt\n"
                    .into(),
            ],
            script: Some(PostprocessScript {
                name: "postprocess.sh".into(),
                contents: b"#!/bin/sh\nset -e\n# Ordering should be after postprocess\n\
                    rm /usr/share/postprocess-testing-done\n\
                    echo misc-tweaks-postprocess-done > /usr/share/misc-tweaks-postprocess-done.txt\n\
                    cp -a /usr/etc/foo.txt /usr/share/misc-tweaks-foo.txt\n"
                    .to_vec(),
            }),
            env: no_env_scripts(),
        },
    };
    run_treefile_steps(&root, &opts).unwrap();
    let r = |p: &str| root.join(p);

    // a: /etc moved to /usr/etc, and the guard undone.
    assert!(!exists(&r("etc")));
    assert!(is_real_dir(&r("usr/etc")));
    // b: rpmdb links.
    assert_eq!(link(&r("var/lib/rpm")), "../../usr/share/rpm");
    assert_eq!(link(&r("usr/lib/sysimage/rpm")), "../../share/rpm");
    // c: macro.
    assert_eq!(
        read(&r("usr/lib/rpm/macros.d/macros.rpm-ostree")),
        "%_dbpath /usr/share/rpm\n"
    );
    assert_eq!(mode(&r("usr/lib/rpm/macros.d/macros.rpm-ostree")), 0o644);
    assert_eq!(mode(&r("usr/lib/rpm/macros.d")), 0o755);
    // d: units (absolute link).
    assert_eq!(
        link(&r(
            "usr/etc/systemd/system/multi-user.target.wants/zincati.service"
        )),
        "/usr/lib/systemd/system/zincati.service"
    );
    // e: default target.
    assert_eq!(
        link(&r("usr/lib/systemd/system/default.target")),
        "multi-user.target"
    );
    // f: not state-overlay.
    assert!(!exists(&r(
        "usr/lib/systemd/system/local-fs.target.requires"
    )));
    // g: treefile.json.
    assert_eq!(
        read(&r("usr/share/rpm-ostree/treefile.json")),
        "{\n  \"ref\": \"test/x86_64\"\n}"
    );
    assert_eq!(mode(&r("usr/share/rpm-ostree/treefile.json")), 0o644);
    // i: mutate-os-release rewrote the real file, the /etc link is intact.
    assert_eq!(
        read(&r("usr/lib/os-release")),
        "NAME=Fedora\nVERSION=\"33.4 (Thirty Three)\"\nVERSION_ID=33\n\
         PRETTY_NAME=\"Fedora 33.4 (Thirty Three)\"\nOSTREE_VERSION='33.4'\n"
    );
    assert_eq!(link(&r("usr/etc/os-release")), "../usr/lib/os-release");
    // j: remove-files through the guard's /etc.
    assert!(!exists(&r("usr/etc/hosts")));
    assert!(exists(&r("usr/etc/hosts.allow")));
    // k: add-files, /etc -> /usr/etc, modes from the source, parents 0755.
    assert_eq!(read(&r("usr/etc/foo.txt")), format!("{rnd}\n"));
    assert_eq!(read(&r("usr/etc/bar.txt")), "bar\n");
    assert_eq!(mode(&r("usr/etc/bar.txt")), 0o600);
    assert_eq!(read(&r("usr/share/baz.txt")), "baz\n");
    assert_eq!(mode(&r("usr/libexec/new/dir/tool")), 0o4755);
    assert_eq!(mode(&r("usr/libexec/new")), 0o755);
    assert_eq!(mode(&r("usr/libexec/new/dir")), 0o755);
    // m: scripts ran in order, the postprocess-script after the inline ones.
    assert!(exists(&r("usr/share/included-postprocess-test")));
    assert!(!exists(&r("usr/share/postprocess-testing")));
    assert!(!exists(&r("usr/share/postprocess-testing-done")));
    assert_eq!(
        read(&r("usr/share/misc-tweaks-postprocess-done.txt")),
        "misc-tweaks-postprocess-done\n"
    );
    assert_eq!(
        read(&r("usr/share/misc-tweaks-foo.txt")),
        format!("{rnd}\n")
    );
    // Scripts saw the rpmdb links and /etc.
    assert_eq!(
        read(&r("usr/share/varlibrpm-link.txt")),
        "../../usr/share/rpm\n"
    );
    // (busybox `ls` hides dotfiles such as `.rpm.lock`)
    let host_db: BTreeSet<String> = names(&r("usr/share/rpm"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(!host_db.is_empty());
    let seen: BTreeSet<String> = read(&r("usr/share/varlibrpm.txt"))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(seen, host_db);
    let seen: BTreeSet<String> = read(&r("usr/share/sysimage.txt"))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(seen, host_db);
    assert!(read(&r("usr/share/etc-os-release.txt")).contains("OSTREE_VERSION='33.4'"));
    // cwd and a minimal environment (nothing from cargo's environment).
    assert_eq!(read(&r("usr/share/script-cwd.txt")), "/\n");
    let env = read(&r("usr/share/script-env.txt"));
    for want in [
        "PATH=/usr/sbin:/usr/bin",
        "SYSTEMD_OFFLINE=1",
        "LANG=C",
        "SOURCE_DATE_EPOCH=1700000000",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in:\n{env}");
    }
    assert!(!env.contains("CARGO"), "host environment leaked:\n{env}");
    assert!(
        !env.contains("HOME=/root"),
        "host environment leaked:\n{env}"
    );
    // The staged scripts were in /usr/bin while running and are gone now.
    let usrbin = read(&r("usr/share/usrbin.txt"));
    assert!(
        usrbin.contains("rpmostree-postprocess-inline-2"),
        "{usrbin}"
    );
    for e in names(&r("usr/bin")) {
        assert!(!e.starts_with("rpmostree-"), "leftover script {e}");
    }
}

#[test]
fn remove_from_packages_keeps_shared_files() {
    let (_td, root) = installed_root();
    let entries = vec![
        RemoveFromPackage {
            package: "setup".into(),
            patterns: vec![r"/etc/hosts\..*".into()],
        },
        RemoveFromPackage {
            package: "docs".into(),
            patterns: vec!["^/usr/share/doc/docs$".into()],
        },
        RemoveFromPackage {
            package: "not-installed".into(),
            patterns: vec![".*".into()],
        },
    ];
    let removed = apply_remove_from_packages(&root, &entries).unwrap();
    assert_eq!(
        removed,
        vec![
            "/usr/etc/hosts.allow".to_string(),
            "/usr/share/doc/docs".into(),
            "/usr/share/doc/docs/NEWS".into(),
            "/usr/share/doc/docs/README".into(),
        ]
    );
    // Still at /etc here (called before the treefile steps).
    assert!(!exists(&root.join("etc/hosts.allow")));
    assert!(exists(&root.join("etc/hosts.deny")), "shared with netshare");
    assert!(exists(&root.join("etc/hosts")), "did not match");
    assert!(!exists(&root.join("usr/share/doc/docs")));
    assert!(exists(&root.join("usr/share/doc")), "owned by filesystem");
    assert!(exists(&root.join("usr/bin/docs-tool")));

    // Same after /etc moved to /usr/etc.
    let (_td2, root2) = installed_root();
    let dir = open_root(&root2).unwrap();
    pcommon::move_etc_to_usr_etc(&dir).unwrap();
    let removed = apply_remove_from_packages(
        &root2,
        &[RemoveFromPackage {
            package: "setup".into(),
            patterns: vec![r"^/usr/etc/hosts(\.deny)?$".into()],
        }],
    )
    .unwrap();
    assert_eq!(removed, vec!["/usr/etc/hosts".to_string()]);
    assert!(!exists(&root2.join("usr/etc/hosts")));
    assert!(exists(&root2.join("usr/etc/hosts.deny")));
    assert!(exists(&root2.join("usr/etc/hosts.allow")));

    // A bad regex is invalid input, and nothing is removed.
    let err = apply_remove_from_packages(
        &root2,
        &[
            RemoveFromPackage {
                package: "setup".into(),
                patterns: vec!["hosts".into()],
            },
            RemoveFromPackage {
                package: "docs".into(),
                patterns: vec!["(unclosed".into()],
            },
        ],
    )
    .unwrap_err();
    assert_eq!(exit_code_for(&err), 3, "{err:#}");
    assert!(format!("{err:#}").contains("docs"));
    assert!(exists(&root2.join("usr/etc/hosts.allow")));
}

// ---------------------------------------------------------------------------
// scripts

#[test]
fn scripts_cannot_write_outside_the_root() {
    let (_td, root) = installed_root();
    let outside = tempfile::tempdir().unwrap();
    let host_file = outside.path().join("escaped");
    let body = format!(
        "#!/bin/sh\nset -e\nmkdir -p {d}\necho escaped > {f}\necho root > /root-marker\n\
         cat </dev/null > /devnull-read\necho discarded > /dev/null\n",
        d = outside.path().display(),
        f = host_file.display()
    );
    run_postprocess_scripts(
        &root,
        &PostprocessScripts {
            inline: vec![body],
            script: None,
            env: no_env_scripts(),
        },
    )
    .unwrap();
    assert!(!host_file.exists(), "script wrote to the host");
    assert!(
        !Path::new("/root-marker").exists(),
        "script wrote to the host"
    );
    let inside = root.join(host_file.strip_prefix("/").unwrap());
    assert_eq!(read(&inside), "escaped\n");
    assert_eq!(read(&root.join("root-marker")), "root\n");
    // The /dev/null stand-in read as empty and is gone again.
    assert_eq!(read(&root.join("devnull-read")), "");
    assert!(!exists(&root.join("dev/null")));
    assert!(
        is_real_dir(&root.join("dev")),
        "dev came from the filesystem package"
    );
}

#[test]
fn script_failures_name_the_script_and_restore_the_root() {
    let (_td, root) = installed_root();
    let dir = open_root(&root).unwrap();
    pcommon::move_etc_to_usr_etc(&dir).unwrap();
    let scripts = |inline: Vec<&str>, script: Option<&str>| PostprocessScripts {
        inline: inline.into_iter().map(str::to_string).collect(),
        script: script.map(|s| PostprocessScript {
            name: "/src/post.sh".into(),
            contents: s.as_bytes().to_vec(),
        }),
        env: no_env_scripts(),
    };

    let err = run_postprocess_scripts(
        &root,
        &scripts(
            vec!["#!/bin/sh\ntouch /ran-0\n", "#!/bin/sh\nexit 3\n"],
            None,
        ),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("postprocess[1]"), "{msg}");
    assert!(msg.contains("exit status 3"), "{msg}");
    assert_eq!(exit_code_for(&err), 1);
    assert!(exists(&root.join("ran-0")));
    // Guard undone, staged script removed.
    assert!(is_real_dir(&root.join("usr/etc")));
    assert!(!exists(&root.join("etc")));
    assert!(!exists(
        &root.join("usr/bin/rpmostree-postprocess-inline-1")
    ));

    let err = run_postprocess_scripts(
        &root,
        &scripts(vec![], Some("#!/bin/sh\necho bad >&2; exit 7\n")),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("postprocess-script /src/post.sh"), "{msg}");
    assert!(msg.contains("exit status 7"), "{msg}");
    assert!(!exists(
        &root.join("usr/bin/rpmostree-treefile-postprocess-script")
    ));

    // No shebang: invalid input, and no script runs at all.
    let err = run_postprocess_scripts(
        &root,
        &scripts(vec!["#!/bin/sh\ntouch /ran-a\n", "touch /ran-b\n"], None),
    )
    .unwrap_err();
    assert_eq!(exit_code_for(&err), 3, "{err:#}");
    assert!(format!("{err:#}").contains("postprocess[1]"));
    assert!(!exists(&root.join("ran-a")));

    // Interpreter missing in the root.
    let err =
        run_postprocess_scripts(&root, &scripts(vec!["#!/bin/bash\ntrue\n"], None)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("interpreter /bin/bash not found"), "{msg}");
    assert!(is_real_dir(&root.join("usr/etc")));
    assert!(!exists(&root.join("etc")));
    assert!(!exists(
        &root.join("usr/bin/rpmostree-postprocess-inline-0")
    ));
}

// ---------------------------------------------------------------------------
// Temp-etc guard and the treefile steps without rpm

#[test]
fn temp_etc_guard_moves_and_restores() {
    let td = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(td.path().join("usr/etc/x")).unwrap();
    std::fs::write(td.path().join("usr/etc/x/f"), "f").unwrap();
    let dir = open_root(td.path()).unwrap();
    {
        let g = TempEtcGuard::new(&dir).unwrap();
        assert!(g.is_active());
        assert!(is_real_dir(&td.path().join("etc")));
        assert_eq!(link(&td.path().join("usr/etc")), "../etc");
        assert_eq!(read(&td.path().join("usr/etc/x/f")), "f");
        // A nested guard is a no-op.
        let g2 = TempEtcGuard::new(&dir).unwrap();
        assert!(!g2.is_active());
        g2.undo().unwrap();
        assert!(is_real_dir(&td.path().join("etc")));
        // Dropped without undo(): restored anyway.
    }
    assert!(!exists(&td.path().join("etc")));
    assert!(is_real_dir(&td.path().join("usr/etc")));
    let g = TempEtcGuard::new(&dir).unwrap();
    g.undo().unwrap();
    assert!(is_real_dir(&td.path().join("usr/etc")));
}

fn bare_root() -> tempfile::TempDir {
    let td = tempfile::tempdir().unwrap();
    let p = td.path();
    for d in [
        "etc/systemd/system",
        "usr/lib/systemd/system",
        "usr/share",
        "var/lib/rpm",
        "usr/lib/sysimage/rpm",
    ] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    std::fs::write(p.join("etc/hosts"), "h").unwrap();
    std::fs::write(p.join("usr/lib/systemd/system/default.target"), "x").unwrap();
    std::fs::write(p.join("var/lib/rpm/stale"), "x").unwrap();
    td
}

#[test]
fn treefile_steps_state_overlay_and_bad_input() {
    let td = bare_root();
    let p = td.path();
    let opts = TreefileStepsOptions {
        opt_usrlocal: OptUsrLocal::StateOverlay,
        units: vec!["a.service".into()],
        default_target: Some("graphical.target".into()),
        scripts: PostprocessScripts {
            env: no_env_scripts(),
            ..Default::default()
        },
        ..Default::default()
    };
    run_treefile_steps(p, &opts).unwrap();
    for unit in [
        "ostree-state-overlay@usr-lib-opt.service",
        "ostree-state-overlay@usr-local.service",
    ] {
        assert_eq!(
            link(
                &p.join("usr/lib/systemd/system/local-fs.target.requires")
                    .join(unit)
            ),
            format!("../{unit}")
        );
    }
    // The regular file default.target was replaced by a link; stale rpmdb dir by the link.
    assert_eq!(
        link(&p.join("usr/lib/systemd/system/default.target")),
        "graphical.target"
    );
    assert_eq!(link(&p.join("var/lib/rpm")), "../../usr/share/rpm");
    assert_eq!(link(&p.join("usr/lib/sysimage/rpm")), "../../share/rpm");
    // No usr/share/rpm existed: the populated var/lib/rpm became the database.
    assert_eq!(read(&p.join("usr/share/rpm/stale")), "x");
    // Idempotent: a second run keeps the existing unit link.
    run_treefile_steps(p, &opts).unwrap();
    assert_eq!(
        link(&p.join("usr/etc/systemd/system/multi-user.target.wants/a.service")),
        "/usr/lib/systemd/system/a.service"
    );

    // Bad remove-files: invalid input, nothing removed, guard undone.
    for bad in ["/etc/hosts", "etc/../usr"] {
        let opts = TreefileStepsOptions {
            remove_files: vec!["usr/share".into(), bad.into()],
            ..Default::default()
        };
        let err = run_treefile_steps(p, &opts).unwrap_err();
        assert_eq!(exit_code_for(&err), 3, "{err:#}");
        assert!(exists(&p.join("usr/share")));
        assert!(is_real_dir(&p.join("usr/etc")));
        assert!(!exists(&p.join("etc")));
    }
    // Bad add-files destination: rejected before remove-files runs.
    let opts = TreefileStepsOptions {
        remove_files: vec!["usr/share".into()],
        add_files: vec![AddFile {
            dest: "/var/lib/foo.txt".into(),
            contents: vec![],
            mode: 0o644,
        }],
        ..Default::default()
    };
    let err = run_treefile_steps(p, &opts).unwrap_err();
    assert_eq!(exit_code_for(&err), 3);
    assert!(format!("{err:#}").contains("Unsupported path in add-files: /var/lib/foo.txt"));
    assert!(!exists(&p.join("var/lib/foo.txt")));
    assert!(exists(&p.join("usr/share")));
    assert!(is_real_dir(&p.join("usr/etc")));
    // Likewise a script without a shebang.
    let opts = TreefileStepsOptions {
        remove_files: vec!["usr/share".into()],
        scripts: PostprocessScripts {
            inline: vec!["echo no shebang".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let err = run_treefile_steps(p, &opts).unwrap_err();
    assert_eq!(exit_code_for(&err), 3);
    assert!(exists(&p.join("usr/share")));

    // mutate-os-release without a version is skipped.
    std::fs::write(p.join("usr/etc/os-release"), "VERSION=1\n").unwrap();
    let opts = TreefileStepsOptions {
        mutate_os_release: Some("1".into()),
        ..Default::default()
    };
    run_treefile_steps(p, &opts).unwrap();
    assert_eq!(read(&p.join("usr/etc/os-release")), "VERSION=1\n");
    // An absolute /etc/os-release link is resolved inside the root.
    std::fs::create_dir_all(p.join("usr/lib")).unwrap();
    std::fs::write(p.join("usr/lib/os-release"), "VERSION=\"1 (x)\"\n").unwrap();
    std::fs::remove_file(p.join("usr/etc/os-release")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/os-release", p.join("usr/etc/os-release")).unwrap();
    let opts = TreefileStepsOptions {
        mutate_os_release: Some("1".into()),
        version: Some("1.5".into()),
        ..Default::default()
    };
    run_treefile_steps(p, &opts).unwrap();
    assert_eq!(
        read(&p.join("usr/lib/os-release")),
        "VERSION=\"1.5 (x)\"\nOSTREE_VERSION='1.5'\n"
    );
    assert_eq!(link(&p.join("usr/etc/os-release")), "/usr/lib/os-release");
    // units need /usr/etc.
    let empty = tempfile::tempdir().unwrap();
    let err = steps::enable_units(
        &open_root(empty.path()).unwrap(),
        &["a.service".to_string()],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("usr/etc"));
}

// ---------------------------------------------------------------------------
// §4.5 root preparation

/// A rootfs.tmp as the treefile steps leave it (no /etc, dnf's toplevel dirs).
fn rootfs_tmp(parent: &Path) -> PathBuf {
    let src = parent.join("rootfs.tmp");
    for d in [
        "usr/bin",
        "usr/lib",
        "usr/lib64",
        "usr/etc",
        "var/lib/x",
        "boot/loader",
        "dev",
        "home/someone",
        "root",
        "opt",
        "srv",
        "tmp/junk",
        "proc",
        "data",
    ] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("dev/null"), "").unwrap();
    std::fs::write(src.join("var/lib/x/state"), "s").unwrap();
    std::fs::write(src.join("boot/vmlinuz-1"), "k").unwrap();
    for (l, t) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(t, src.join(l)).unwrap();
    }
    src
}

fn prepare(parent: &Path, opts: PrepareRootfsOptions) -> anyhow::Result<(PathBuf, RootfsLayout)> {
    let dest = parent.join("rootfs");
    std::fs::create_dir_all(&dest).unwrap();
    let src = open_root(&parent.join("rootfs.tmp"))?;
    let d = open_root(&dest)?;
    let layout = prepare_rootfs(&src, &d, &opts)?;
    Ok((dest, layout))
}

#[test]
fn prepare_rootfs_strict_layouts() {
    for (tmp_is_dir, opt) in [
        (false, OptUsrLocal::Var),
        (true, OptUsrLocal::Root),
        (true, OptUsrLocal::StateOverlay),
    ] {
        let td = tempfile::tempdir().unwrap();
        let src = rootfs_tmp(td.path());
        let (dest, layout) = prepare(
            td.path(),
            PrepareRootfsOptions {
                tmp_is_dir,
                opt_usrlocal: opt,
            },
        )
        .unwrap();
        assert_eq!(layout, RootfsLayout::Strict);
        assert!(names(&src).is_empty(), "rootfs.tmp left: {:?}", names(&src));
        let expected: BTreeSet<String> = [
            "bin", "boot", "dev", "home", "lib", "lib64", "media", "mnt", "opt", "ostree", "proc",
            "root", "run", "sbin", "srv", "sys", "sysroot", "tmp", "usr", "var",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(names(&dest), expected);
        assert_eq!(mode(&dest), 0o755);
        for d in ["dev", "proc", "run", "sys", "sysroot"] {
            assert!(is_real_dir(&dest.join(d)), "{d}");
            assert_eq!(mode(&dest.join(d)), 0o755, "{d}");
            assert!(names(&dest.join(d)).is_empty(), "{d} not empty");
        }
        for (l, t) in [
            ("root", "var/roothome"),
            ("home", "var/home"),
            ("ostree", "sysroot/ostree"),
            ("srv", "var/srv"),
            ("mnt", "var/mnt"),
            ("media", "run/media"),
            ("bin", "usr/bin"),
            ("sbin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            assert_eq!(link(&dest.join(l)), t, "{l}");
        }
        if tmp_is_dir {
            assert!(is_real_dir(&dest.join("tmp")));
            assert_eq!(mode(&dest.join("tmp")), 0o1777);
            assert!(names(&dest.join("tmp")).is_empty());
        } else {
            assert_eq!(link(&dest.join("tmp")), "sysroot/tmp");
        }
        match opt {
            OptUsrLocal::Var => assert_eq!(link(&dest.join("opt")), "var/opt"),
            OptUsrLocal::StateOverlay => assert_eq!(link(&dest.join("opt")), "usr/lib/opt"),
            OptUsrLocal::Root => {
                assert!(is_real_dir(&dest.join("opt")));
                assert_eq!(mode(&dest.join("opt")), 0o755);
            }
        }
        assert_eq!(read(&dest.join("var/lib/x/state")), "s");
        assert_eq!(read(&dest.join("boot/vmlinuz-1")), "k");
        assert!(is_real_dir(&dest.join("usr/etc")));
    }
}

#[test]
fn prepare_rootfs_by_path_removes_rootfs_tmp() {
    let td = tempfile::tempdir().unwrap();
    let src = rootfs_tmp(td.path());
    let dest = td.path().join("rootfs");
    let layout = prepare_rootfs_at(&src, &dest, &PrepareRootfsOptions::default()).unwrap();
    assert_eq!(layout, RootfsLayout::Strict);
    assert!(!exists(&src));
    assert!(is_real_dir(&dest.join("usr/etc")));
    assert_eq!(link(&dest.join("tmp")), "sysroot/tmp");
    // A non-empty target is refused.
    let src = rootfs_tmp(td.path());
    let err = prepare_rootfs_at(&src, &dest, &PrepareRootfsOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    assert!(is_real_dir(&src.join("usr")));
}

#[test]
fn prepare_rootfs_transient() {
    let td = tempfile::tempdir().unwrap();
    let src = rootfs_tmp(td.path());
    std::fs::create_dir_all(src.join("usr/lib/ostree")).unwrap();
    std::fs::write(
        src.join("usr/lib/ostree/prepare-root.conf"),
        "[composefs]\nenabled = yes\n[root]\ntransient = true\n",
    )
    .unwrap();
    std::fs::remove_dir(src.join("opt")).unwrap();
    std::os::unix::fs::symlink("var/opt", src.join("opt")).unwrap();

    // tmp-is-dir: false conflicts; nothing is moved.
    let err = prepare(td.path(), PrepareRootfsOptions::default()).unwrap_err();
    assert_eq!(exit_code_for(&err), 3);
    assert!(format!("{err:#}").contains("Transient root conflicts with tmp-is-dir: false"));
    assert!(is_real_dir(&src.join("usr")));
    assert!(names(&td.path().join("rootfs")).is_empty());

    let (dest, layout) = prepare(
        td.path(),
        PrepareRootfsOptions {
            tmp_is_dir: true,
            opt_usrlocal: OptUsrLocal::Var,
        },
    )
    .unwrap();
    assert_eq!(layout, RootfsLayout::Transient);
    assert!(names(&src).is_empty());
    // test-rootfs-transient: /opt is a real 0755 directory.
    for d in ["opt", "media", "mnt", "usr/local"] {
        assert!(is_real_dir(&dest.join(d)), "{d}");
        assert_eq!(mode(&dest.join(d)), 0o755, "{d}");
    }
    // Every other toplevel entry came along.
    assert!(is_real_dir(&dest.join("data")));
    assert!(is_real_dir(&dest.join("srv")));
    assert_eq!(link(&dest.join("lib64")), "usr/lib64");
    assert_eq!(link(&dest.join("root")), "var/roothome");
    assert_eq!(link(&dest.join("home")), "var/home");
    assert_eq!(link(&dest.join("ostree")), "sysroot/ostree");
    assert_eq!(mode(&dest.join("tmp")), 0o1777);
    assert!(names(&dest.join("tmp")).is_empty());
    assert!(names(&dest.join("dev")).is_empty());
    assert!(is_real_dir(&dest.join("sysroot")));
    assert_eq!(read(&dest.join("var/lib/x/state")), "s");
}

// ---------------------------------------------------------------------------
// §4.6 common post-processing

#[test]
fn common_postprocess_is_idempotent() {
    let td = tempfile::tempdir().unwrap();
    let p = td.path();
    std::fs::create_dir_all(p.join("etc/selinux/targeted")).unwrap();
    std::fs::create_dir_all(p.join("var/lib/rpm")).unwrap();
    std::fs::create_dir_all(p.join("usr/share")).unwrap();
    for f in [
        "etc/passwd",
        "etc/passwd-",
        "etc/group-",
        "etc/shadow-",
        "etc/gshadow-",
        "etc/subuid-",
        "etc/subgid-",
        "etc/.pwd.lock",
        "etc/selinux/targeted/semanage.read.LOCK",
        "etc/selinux/targeted/semanage.trans.LOCK",
        "etc/selinux/config",
        "var/lib/rpm/rpmdb.sqlite",
        "var/lib/rpm/.rpm.lock",
        "var/lib/rpm/.dbenv.lock",
        "var/lib/rpm/__db.001",
    ] {
        std::fs::write(p.join(f), "x").unwrap();
    }
    let dir = open_root(p).unwrap();
    for _ in 0..2 {
        pcommon::postprocess_common(&dir).unwrap();
        assert!(!exists(&p.join("etc")));
        assert_eq!(
            names(&p.join("usr/etc")),
            ["passwd", "selinux"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert_eq!(names(&p.join("usr/etc/selinux/targeted")), BTreeSet::new());
        assert!(exists(&p.join("usr/etc/selinux/config")));
        assert_eq!(
            names(&p.join("usr/share/rpm")),
            ["rpmdb.sqlite".to_string()].into_iter().collect()
        );
        assert_eq!(link(&p.join("var/lib/rpm")), "../../usr/share/rpm");
    }
    // An empty etc next to a populated usr/etc is just removed; a populated one is an error.
    std::fs::create_dir(p.join("etc")).unwrap();
    pcommon::postprocess_common(&dir).unwrap();
    assert!(!exists(&p.join("etc")));
    std::fs::create_dir(p.join("etc")).unwrap();
    std::fs::write(p.join("etc/new"), "n").unwrap();
    let err = pcommon::postprocess_common(&dir).unwrap_err();
    assert!(format!("{err:#}").contains("usr/etc"), "{err:#}");
}

//! Final post-processing (§4.7, §4.8) on real directory trees: owners, links,
//! modes, depmod, hardlinks, and one end-to-end run on a root installed by dnf
//! from RPMs built at test time.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cap_std_ext::cap_std::ambient_authority;
use cap_std_ext::cap_std::fs::Dir;
use ostree_composer::postprocess::final_steps::{self, postprocess_final, FinalOptions};
use ostree_composer::postprocess::kernel::{
    self, BootLocation, DepmodTool, InitramfsSource, KernelOptions,
};
use ostree_composer::postprocess::passwd::{self, CheckOptions, CheckReference, SplitOptions};
use ostree_composer::postprocess::tmpfiles::{
    self, LinksOptions, OptUsrLocal, VarToTmpfilesOptions,
};
use sha2::{Digest, Sha256};

const PASSWD_ETC: &str = "root:x:0:0:root:/root:/bin/sh\n";
const PASSWD_LIB: &str = "bin:x:1:1:bin:/bin:/sbin/nologin\ndemo:x:900:900:demo:/:/sbin/nologin\n";
const GROUP_ETC: &str = "root:x:0:\n";
const GROUP_LIB: &str = "bin:x:1:\nwheel:x:10:\ndemo:x:900:\n";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn open(root: &Path) -> Dir {
    Dir::open_ambient_dir(root, ambient_authority()).unwrap()
}

/// A prepared-rootfs stand-in with split passwd/group (demo = 900).
fn base_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "usr/etc/passwd", PASSWD_ETC);
    write(r, "usr/lib/passwd", PASSWD_LIB);
    write(r, "usr/etc/group", GROUP_ETC);
    write(r, "usr/lib/group", GROUP_LIB);
    fs::create_dir_all(r.join("var")).unwrap();
    t
}

#[test]
fn var_becomes_tmpfiles_with_owner_names() {
    let t = base_tree();
    let r = t.path();
    let var = r.join("var");
    fs::create_dir_all(var.join("lib/demo/sub")).unwrap();
    fs::set_permissions(var.join("lib/demo"), fs::Permissions::from_mode(0o750)).unwrap();
    chown(var.join("lib/demo"), Some(900), Some(900)).unwrap();
    // An owner without a passwd entry stays numeric.
    fs::create_dir_all(var.join("lib/anon")).unwrap();
    chown(var.join("lib/anon"), Some(4242), Some(10)).unwrap();
    symlink("../../usr/share/foo", var.join("lib/foo")).unwrap();
    symlink("../run", var.join("run")).unwrap();
    fs::create_dir_all(var.join("cache/x")).unwrap();
    fs::write(var.join("cache/x/state.db"), "state").unwrap();
    fs::create_dir_all(var.join("log")).unwrap();
    fs::write(var.join("log/wtmp"), "").unwrap();
    fs::create_dir_all(var.join("lib/nfs")).unwrap();
    fs::write(var.join("lib/nfs/etab"), "").unwrap();
    fs::create_dir_all(var.join("lib/with space")).unwrap();
    fs::create_dir_all(var.join("tmp")).unwrap();
    fs::set_permissions(var.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    // Another tmpfiles.d file already declares /var/log.
    write(r, "usr/lib/tmpfiles.d/var.conf", "d /var/log 0755 - - -\n");

    let report = tmpfiles::var_to_tmpfiles(
        &open(r),
        &VarToTmpfilesOptions {
            extra_known_lines: tmpfiles::integration_lines(OptUsrLocal::Var),
        },
    )
    .unwrap();

    let conf = r.join("usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf");
    assert_eq!(mode(&conf), 0o644);
    let text = fs::read_to_string(&conf).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let expected = vec![
        "d /var/cache 0755 root root - -",
        "d /var/cache/x 0755 root root - -",
        "d /var/lib 0755 root root - -",
        "d /var/lib/anon 0755 4242 wheel - -",
        "d /var/lib/demo 0750 demo demo - -",
        "d /var/lib/demo/sub 0755 root root - -",
        "L /var/lib/foo - - - - ../../usr/share/foo",
        "d /var/lib/nfs 0755 root root - -",
        "f /var/lib/nfs/etab 0644 root root - -",
        "d \"/var/lib/with space\" 0755 root root - -",
        "d /var/tmp 01777 root root - -",
    ];
    assert_eq!(lines, expected, "{text}");
    assert_eq!(report.lines, expected.len());
    assert_eq!(report.dropped, vec!["/var/cache/x/state.db".to_string()]);
    assert_eq!(report.already_known, 1, "/var/log");
    // var is left empty, 0755.
    assert_eq!(fs::read_dir(&var).unwrap().count(), 0);
    assert_eq!(mode(&var), 0o755);
}

#[test]
fn systemd_tmpfiles_accepts_the_output() {
    // The generated lines must parse for the real consumer, when it is here.
    let Ok(out) = Command::new("systemd-tmpfiles").arg("--version").output() else {
        eprintln!("SKIP: systemd-tmpfiles not installed");
        return;
    };
    if !out.status.success() {
        eprintln!("SKIP: systemd-tmpfiles not usable");
        return;
    }
    let t = base_tree();
    let r = t.path();
    fs::create_dir_all(r.join("var/lib/a b%c\"q\\")).unwrap();
    chown(r.join("var/lib/a b%c\"q\\"), Some(900), Some(900)).unwrap();
    symlink("x", r.join("var/lib/l")).unwrap();
    tmpfiles::var_to_tmpfiles(&open(r), &VarToTmpfilesOptions::default()).unwrap();
    tmpfiles::install_integration_files(&open(r), OptUsrLocal::Var).unwrap();
    // Make the names resolvable for --root and create everything.
    write(r, "etc/passwd", &format!("{PASSWD_ETC}{PASSWD_LIB}"));
    write(r, "etc/group", &format!("{GROUP_ETC}{GROUP_LIB}"));
    let out = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", r.display()))
        .arg(r.join("usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let made = r.join("var/lib/a b%c\"q\\");
    assert!(made.is_dir(), "{err}");
    assert_eq!(fs::metadata(&made).unwrap().uid(), 900);
    assert_eq!(
        fs::read_link(r.join("var/lib/l")).unwrap(),
        PathBuf::from("x")
    );
}

#[test]
fn links_usrlocal_and_var_lib() {
    let t = base_tree();
    let r = t.path();
    fs::create_dir_all(r.join("usr/local/bin")).unwrap();
    fs::write(r.join("usr/local/bin/x"), "").unwrap();
    fs::create_dir_all(r.join("var/lib/alternatives")).unwrap();
    symlink("/usr/bin/vim.basic", r.join("var/lib/alternatives/vi")).unwrap();
    tmpfiles::rootfs_prepare_links(&open(r), &LinksOptions::default()).unwrap();
    assert_eq!(
        fs::read_link(r.join("usr/local")).unwrap(),
        PathBuf::from("../var/usrlocal")
    );
    assert_eq!(
        fs::read_link(r.join("var/lib/alternatives")).unwrap(),
        PathBuf::from("../../usr/lib/alternatives")
    );
    assert_eq!(
        fs::read_link(r.join("usr/lib/alternatives/vi")).unwrap(),
        PathBuf::from("/usr/bin/vim.basic")
    );

    // opt-usrlocal: root keeps (or makes) a real directory.
    let t = base_tree();
    let r = t.path();
    tmpfiles::rootfs_prepare_links(
        &open(r),
        &LinksOptions {
            opt_usrlocal: OptUsrLocal::Root,
            transient_root: false,
        },
    )
    .unwrap();
    assert!(fs::symlink_metadata(r.join("usr/local")).unwrap().is_dir());
}

#[test]
fn passwd_split_and_modes() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        "usr/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\ndemo:x:900:900::/:/sbin/nologin\n",
    );
    write(
        r,
        "usr/etc/group",
        "root:x:0:\nbin:x:1:\nwheel:x:10:alice\ndemo:x:900:\n",
    );
    write(
        r,
        "usr/etc/shadow",
        "root:*:19000:0:99999:7:::\nalice:$6$x:19000:0:99999:7:::\n",
    );
    fs::set_permissions(r.join("usr/etc/shadow"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(r.join("usr/etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(r.join("usr/lib")).unwrap();
    let root = open(r);
    passwd::split_passwd_group(
        &root,
        &SplitOptions {
            etc_group_members: ["wheel".to_string()].into(),
        },
    )
    .unwrap();
    passwd::normalize_etc_shadow(&root).unwrap();
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/lib/passwd")).unwrap(),
        "bin:x:1:1:bin:/bin:/sbin/nologin\ndemo:x:900:900::/:/sbin/nologin\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/group")).unwrap(),
        "root:x:0:\nwheel:x:10:alice\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/lib/group")).unwrap(),
        "bin:x:1:\nwheel:x:10:alice\ndemo:x:900:\n"
    );
    for f in [
        "usr/etc/passwd",
        "usr/lib/passwd",
        "usr/etc/group",
        "usr/lib/group",
    ] {
        assert_eq!(mode(&r.join(f)), 0o644, "{f}");
    }
    assert_eq!(mode(&r.join("usr/etc/shadow")), 0, "shadow keeps its mode");
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/shadow")).unwrap(),
        "root:*::0:99999:7:::\nalice:$6$x:19000:0:99999:7:::\n"
    );
}

#[test]
fn inject_passwd_from_files_and_previous() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let root = open(r);
    passwd::prepare_passwd_from_files(
        &root,
        &passwd::PasswdFiles {
            passwd: "root:x:0:0::/root:/bin/sh\ndemo:x:900:900::/:/sbin/nologin\ndemo:x:901:901::/:/bin/false\n",
            group: "root:x:0:\ndemo:x:900:\n",
        },
        &passwd::InjectOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(r.join("etc/passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\ndemo:x:900:900::/:/sbin/nologin\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/shadow")).unwrap(),
        "root:*::0:99999:7:::\ndemo:*::0:99999:7:::\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/gshadow")).unwrap(),
        "root:::\ndemo:::\n"
    );
    assert_eq!(mode(&r.join("etc/shadow")), 0);
    assert_eq!(mode(&r.join("etc/passwd")), 0o644);

    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let (p, g) = passwd::prepare_passwd_from_previous(
        &open(r),
        &passwd::PreviousPasswd {
            etc_passwd: Some(PASSWD_ETC.into()),
            lib_passwd: Some(PASSWD_LIB.into()),
            etc_group: Some(GROUP_ETC.into()),
            lib_group: None,
        },
        &passwd::InjectOptions {
            etc_dir: "usr/etc".into(),
        },
    )
    .unwrap();
    assert!(p && !g);
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/passwd")).unwrap(),
        format!("{PASSWD_ETC}{PASSWD_LIB}")
    );
    assert!(!r.join("usr/etc/group").exists());
}

fn check(
    root: &Path,
    reference_passwd: &str,
    ignore: &[&str],
) -> anyhow::Result<passwd::CheckReport> {
    passwd::check_passwd_group(
        &open(root),
        &CheckOptions {
            passwd: CheckReference::PreviousContent(Some(reference_passwd.to_string())),
            groups: CheckReference::None,
            ignore_removed_users: ignore.iter().map(|s| s.to_string()).collect(),
            ignore_removed_groups: BTreeSet::new(),
        },
    )
}

#[test]
fn check_passwd_cases() {
    let t = base_tree();
    let r = t.path();
    // Same entries: fine; a new user is reported.
    let rep = check(r, "bin:x:1:1::/:/bin/sh\n", &[]).unwrap();
    assert_eq!(rep.new_users, vec!["demo".to_string()]);
    // uid changed.
    let e = check(
        r,
        PASSWD_LIB.replace(":900:900:", ":901:900:").as_str(),
        &[],
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("passwd UID changed: demo (901 to 900)"),
        "{e:#}"
    );
    // gid changed.
    let e = check(
        r,
        PASSWD_LIB.replace(":900:900:", ":900:901:").as_str(),
        &[],
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("passwd GID changed: demo (901 to 900)"),
        "{e:#}"
    );
    // Removed user that owns nothing: fine.
    let reference = format!("{PASSWD_LIB}gone:x:950:950::/:/sbin/nologin\n");
    let rep = check(r, &reference, &[]).unwrap();
    assert_eq!(rep.unused_users_removed, vec!["gone".to_string()]);
    // Removed user that still owns a file: error.
    write(r, "usr/share/gone/data", "x");
    chown(r.join("usr/share/gone/data"), Some(950), Some(0)).unwrap();
    let e = check(r, &reference, &[]).unwrap_err();
    assert!(
        format!("{e:#}").contains("User missing from new passwd file: gone"),
        "{e:#}"
    );
    // ... unless ignored, by name or by '*'.
    let rep = check(r, &reference, &["gone"]).unwrap();
    assert_eq!(rep.ignored_users_removed, vec!["gone".to_string()]);
    check(r, &reference, &["*"]).unwrap();
    // root in the reference is in usr/etc: not "missing".
    check(r, &format!("{PASSWD_ETC}{PASSWD_LIB}"), &[]).unwrap();

    // Groups, inline data.
    let groups: BTreeMap<String, u32> =
        [("demo".to_string(), 900), ("old".to_string(), 960)].into();
    chown(r.join("usr/share/gone/data"), Some(0), Some(960)).unwrap();
    let e = passwd::check_passwd_group(
        &open(r),
        &CheckOptions {
            groups: CheckReference::Entries(groups.clone()),
            ..CheckOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("Group missing from new group file: old"),
        "{e:#}"
    );
    let ignore: BTreeSet<String> = ["*".to_string()].into();
    passwd::check_passwd_group(
        &open(r),
        &CheckOptions {
            groups: CheckReference::Entries(groups),
            ignore_removed_groups: ignore,
            ..CheckOptions::default()
        },
    )
    .unwrap();
}

/// A bootable stand-in: one kernel, a modules tree, `lib -> usr/lib`.
fn kernel_tree(kver: &str) -> tempfile::TempDir {
    let t = base_tree();
    let r = t.path();
    write(
        r,
        &format!("usr/lib/modules/{kver}/vmlinuz"),
        "not really a kernel",
    );
    fs::create_dir_all(r.join(format!("usr/lib/modules/{kver}/kernel/drivers"))).unwrap();
    symlink("usr/lib", r.join("lib")).unwrap();
    write(
        r,
        "usr/etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    fs::create_dir_all(r.join("boot/0123456789abcdef0123456789abcdef")).unwrap();
    fs::create_dir_all(r.join("boot/loader/entries")).unwrap();
    t
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

#[test]
fn kernel_no_initramfs_with_packaged_image_and_boot_location_new() {
    let kver = "6.1.0-test";
    let t = kernel_tree(kver);
    let r = t.path();
    write(
        r,
        &format!("usr/lib/modules/{kver}/initramfs.img"),
        "packaged initramfs",
    );
    fs::set_permissions(
        r.join(format!("usr/lib/modules/{kver}/initramfs.img")),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let rep = kernel::process_kernel(
        r,
        &KernelOptions {
            boot_location: BootLocation::New,
            machineid_compat: true,
            no_initramfs: true,
            initramfs_args: None,
            tools: Default::default(),
        },
    )
    .unwrap();
    assert_eq!(rep.kver, kver);
    assert_eq!(rep.initramfs, InitramfsSource::Packaged);
    assert_eq!(rep.depmod, DepmodTool::Host);
    let moddir = r.join(format!("usr/lib/modules/{kver}"));
    assert!(
        moddir.join("modules.dep").is_file(),
        "depmod made modules.dep"
    );
    let csum = sha256_hex(&[b"not really a kernel", b"packaged initramfs"]);
    assert_eq!(rep.bootcsum, csum);
    let boot = r.join("usr/lib/ostree-boot");
    let v = fs::metadata(boot.join(format!("vmlinuz-{kver}-{csum}"))).unwrap();
    let i = fs::metadata(boot.join(format!("initramfs-{kver}.img-{csum}"))).unwrap();
    assert_eq!(v.ino(), fs::metadata(moddir.join("vmlinuz")).unwrap().ino());
    assert_eq!(
        i.ino(),
        fs::metadata(moddir.join("initramfs.img")).unwrap().ino()
    );
    assert_eq!(mode(&moddir.join("initramfs.img")), 0o644);
    // machine-id compat: empty file; the kernel-install dir and loader are gone.
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/machine-id")).unwrap(),
        ""
    );
    assert!(!boot.join("0123456789abcdef0123456789abcdef").exists());
    assert!(!boot.join("loader").exists());
    // boot is an empty 0755 mountpoint.
    assert_eq!(fs::read_dir(r.join("boot")).unwrap().count(), 0);
    assert_eq!(mode(&r.join("boot")), 0o755);
}

#[test]
fn kernel_modules_location_without_initramfs() {
    let kver = "6.1.0-test";
    let t = kernel_tree(kver);
    let r = t.path();
    let rep = kernel::process_kernel(
        r,
        &KernelOptions {
            boot_location: BootLocation::Modules,
            machineid_compat: false,
            no_initramfs: true,
            initramfs_args: None,
            tools: Default::default(),
        },
    )
    .unwrap();
    assert_eq!(rep.initramfs, InitramfsSource::None);
    assert_eq!(rep.bootcsum, sha256_hex(&[b"not really a kernel"]));
    assert!(!r.join("usr/etc/machine-id").exists());
    // Nothing with a bootcsum in ostree-boot for `modules`.
    let names: Vec<_> = fs::read_dir(r.join("usr/lib/ostree-boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn kernel_errors_two_kernels_and_missing_dracut() {
    let t = kernel_tree("6.1.0-a");
    let r = t.path();
    write(r, "usr/lib/modules/6.1.0-b/vmlinuz", "other");
    let e = kernel::process_kernel(r, &KernelOptions::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("Multiple kernels found in /usr/lib/modules: 6.1.0-a, 6.1.0-b"),
        "{e:#}"
    );

    let t = kernel_tree("6.1.0-a");
    let r = t.path();
    let e = kernel::process_kernel(
        r,
        &KernelOptions {
            no_initramfs: false,
            ..KernelOptions::default()
        },
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("has no dracut"), "{msg}");
    assert!(msg.contains("add `dracut` to `packages`"), "{msg}");
    assert!(msg.contains("no-initramfs: true"), "{msg}");
    assert_eq!(ostree_composer::exit::exit_code_for(&e), 3);
    // The temporary shims are gone again.
    assert!(!r.join("etc").exists());
    assert_eq!(
        fs::read_link(r.join("lib")).unwrap(),
        PathBuf::from("usr/lib")
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/passwd")).unwrap(),
        PASSWD_ETC
    );

    let t = base_tree();
    fs::create_dir_all(t.path().join("usr/lib/modules")).unwrap();
    let e = kernel::process_kernel(t.path(), &KernelOptions::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("/usr/lib/modules is empty"),
        "{e:#}"
    );
}

/// Copy a host binary and the libraries `ldd` lists into `root` (same paths).
fn copy_with_libs(root: &Path, bin: &str, dest: &str) -> bool {
    let Ok(out) = Command::new("ldd").arg(bin).output() else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_string);
        if let Some(p) = path {
            let real = fs::canonicalize(&p).unwrap();
            let target = root
                .join("usr")
                .join(p.trim_start_matches('/').trim_start_matches("usr/"));
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::copy(real, &target).unwrap();
        }
    }
    let d = root.join(dest);
    fs::create_dir_all(d.parent().unwrap()).unwrap();
    fs::copy(bin, d).unwrap();
    true
}

#[test]
fn depmod_prefers_the_trees_own_via_chroot() {
    let kver = "6.1.0-test";
    let t = kernel_tree(kver);
    let r = t.path();
    let Some(kmod) = ["/usr/bin/kmod", "/bin/kmod"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIP: no host kmod to build a tree-side depmod from");
        return;
    };
    // /lib is already -> usr/lib; add /lib64 -> usr/lib64 for the loader.
    symlink("usr/lib64", r.join("lib64")).unwrap();
    assert!(copy_with_libs(r, kmod, "usr/sbin/depmod"));
    let dep = kernel::run_depmod(&open(r), r, kver, None).unwrap();
    assert_eq!(dep, DepmodTool::Target);
    assert!(r
        .join(format!("usr/lib/modules/{kver}/modules.dep"))
        .is_file());
    assert!(!r.join("etc").exists(), "temporary etc link removed");
    assert!(!r.join("dev/null").exists(), "temporary dev/null removed");
}

#[test]
fn devices_and_whiteouts() {
    let t = base_tree();
    let r = t.path();
    fs::create_dir_all(r.join("usr/share/x")).unwrap();
    let mk = |p: &Path, maj: u32, min: u32| {
        Command::new("mknod")
            .arg(p)
            .arg("c")
            .arg(maj.to_string())
            .arg(min.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !mk(&r.join("usr/share/x/gone"), 0, 0) {
        eprintln!("SKIP: mknod not permitted here (rootless container)");
        return;
    }
    assert!(mk(&r.join("usr/share/x/null"), 1, 3));
    let e = final_steps::process_devices(&open(r), false).unwrap_err();
    assert!(
        format!("{e:#}").contains("Unsupported device file: /usr/share/x/"),
        "{e:#}"
    );
    let (removed, renamed) = final_steps::process_devices(&open(r), true).unwrap();
    assert_eq!(removed, vec!["usr/share/x/null".to_string()]);
    assert_eq!(renamed, vec!["usr/share/x/gone".to_string()]);
    assert!(r.join("usr/share/x/.ostree-wh.gone").is_file());
    assert!(!r.join("usr/share/x/null").exists());
}

#[test]
fn final_run_container_and_idempotence() {
    let t = base_tree();
    let r = t.path();
    write(r, "usr/etc/default/useradd", "GROUP=100\nHOME=/home\n");
    write(
        r,
        "usr/etc/nsswitch.conf",
        "passwd: files systemd\ngroup: files\n",
    );
    write(r, "usr/share/rpm/rpmdb.sqlite", "db");
    fs::create_dir_all(r.join("var/lib/demo")).unwrap();
    chown(r.join("var/lib/demo"), Some(900), Some(900)).unwrap();
    symlink("../../usr/share/rpm", r.join("var/lib/rpm")).unwrap();
    fs::create_dir_all(r.join("usr/local/share")).unwrap();
    let fin = tempfile::tempdir().unwrap();
    let script = fin.path().join("10-mark");
    fs::write(
        &script,
        "#!/bin/sh\nset -e\ntest -d usr/etc\necho \"$RPMOSTREE_WORKDIR\" > usr/share/finalized\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let opts = FinalOptions {
        container: true,
        selinux: false,
        finalize_d: vec![script],
        workdir: Some(fin.path().to_path_buf()),
        ..FinalOptions::default()
    };
    let rep = postprocess_final(r, &opts).unwrap();
    assert!(!rep.already_done);
    assert!(rep.kernel.is_none());
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/default/useradd")).unwrap(),
        "GROUP=100\nHOME=/var/home\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/nsswitch.conf")).unwrap(),
        "passwd: files altfiles systemd\ngroup: files altfiles\n"
    );
    let autovar =
        fs::read_to_string(r.join("usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf")).unwrap();
    assert!(
        autovar.contains("d /var/lib/demo 0755 demo demo - -\n"),
        "{autovar}"
    );
    assert!(
        !autovar.contains("/var/lib/rpm"),
        "integration declares it: {autovar}"
    );
    for f in [
        "rpm-ostree-0-integration.conf",
        "rpm-ostree-0-integration-opt-usrlocal.conf",
    ] {
        assert_eq!(mode(&r.join("usr/lib/tmpfiles.d").join(f)), 0o644, "{f}");
    }
    assert_eq!(
        fs::read_link(r.join("usr/local")).unwrap(),
        PathBuf::from("../var/usrlocal")
    );
    let base = r.join("usr/lib/sysimage/rpm-ostree-base-db/rpmdb.sqlite");
    assert_eq!(
        fs::metadata(&base).unwrap().ino(),
        fs::metadata(r.join("usr/share/rpm/rpmdb.sqlite"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/share/finalized"))
            .unwrap()
            .trim(),
        fin.path().to_str().unwrap()
    );

    // Second run: marker present, nothing touched.
    fs::write(r.join("usr/etc/nsswitch.conf"), "passwd: files\n").unwrap();
    let rep = postprocess_final(r, &opts).unwrap();
    assert!(rep.already_done);
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/nsswitch.conf")).unwrap(),
        "passwd: files\n"
    );
}

#[test]
fn finalize_script_failure_is_an_error() {
    let t = base_tree();
    let r = t.path();
    let fin = tempfile::tempdir().unwrap();
    let script = fin.path().join("fail");
    fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let e = postprocess_final(
        r,
        &FinalOptions {
            container: true,
            finalize_d: vec![script],
            ..FinalOptions::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("finalize.d script"), "{e:#}");
    // Not marked done: a rerun redoes the steps.
    assert!(!r
        .join("usr/lib/tmpfiles.d/rpm-ostree-0-integration.conf")
        .exists());
}

/// Install `pkgs` from `repo` into `root` with the host's dnf (rpmdb in
/// `usr/share/rpm`, no scriptlets), as the installer stage would.
fn dnf_install(work: &Path, repo: &Path, root: &Path, pkgs: &[&str]) -> bool {
    if Command::new("dnf").arg("--version").output().is_err() {
        return false;
    }
    let home = work.join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join(".rpmmacros"), "%_dbpath /usr/share/rpm\n").unwrap();
    let reposd = work.join("repos.d");
    fs::create_dir_all(&reposd).unwrap();
    common::rpmfixture::write_repo_file(&reposd, "fixture", repo, false);
    fs::write(work.join("dnf.conf"), "[main]\n").unwrap();
    let out = Command::new("dnf")
        .env("HOME", &home)
        .arg("-y")
        .arg(format!("--config={}", work.join("dnf.conf").display()))
        .arg(format!("--installroot={}", root.display()))
        .arg(format!("--setopt=reposdir={}", reposd.display()))
        .arg(format!(
            "--setopt=cachedir={}",
            work.join("cache").display()
        ))
        .args([
            "--releasever=1",
            "--setopt=install_weak_deps=False",
            "--setopt=tsflags=noscripts",
            "--disableplugin=*",
            "install",
        ])
        .args(pkgs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dnf failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn end_to_end_on_a_dnf_installed_root() {
    use common::rpmfixture::*;
    if !have_rpm_tools() {
        eprintln!("SKIP: rpmbuild/createrepo_c missing");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let app = Pkg::new("demo-app", "1.0")
        .requires("setup")
        .entry(Entry::exe("/usr/bin/demo", "#!/bin/sh\n"))
        .entry(Entry::config("/etc/demo.conf", "x=1\n"))
        .entry(Entry::owned_dir("/var/lib/demo", 0o750, "demo", "demo"))
        .entry(Entry::symlink("/var/lib/demo-link", "demo"))
        .entry(Entry::dir("/var/cache/demo"))
        .entry(Entry::file("/var/cache/demo/seed", "state\n"));
    let kver = "6.1.0-test";
    let kernel = Pkg::new("kernel-test", "6.1.0")
        .requires("filesystem")
        .entry(Entry::dir(&format!("/usr/lib/modules/{kver}")))
        .entry(Entry::dir(&format!("/usr/lib/modules/{kver}/kernel")))
        .entry(Entry::file(
            &format!("/usr/lib/modules/{kver}/vmlinuz"),
            "fake kernel image\n",
        ))
        .entry(Entry::file(
            &format!("/usr/lib/modules/{kver}/initramfs.img"),
            "fake initramfs\n",
        ));
    let repo = build_repo(
        &w.join("repo"),
        &[filesystem_pkg(), setup_pkg(), app, kernel],
    );
    let root = w.join("root");
    fs::create_dir_all(&root).unwrap();
    if !dnf_install(w, &repo, &root, &["demo-app", "kernel-test"]) {
        eprintln!("SKIP: dnf missing");
        return;
    }
    // What §4.4-§4.6 (another stage) leave: /etc in usr/etc.
    fs::rename(root.join("etc"), root.join("usr/etc")).unwrap();
    assert_eq!(
        fs::metadata(root.join("var/lib/demo")).unwrap().uid(),
        900,
        "rpm applied the owner"
    );

    let opts = FinalOptions {
        selinux: false,
        kernel: KernelOptions {
            boot_location: BootLocation::New,
            machineid_compat: true,
            no_initramfs: true,
            initramfs_args: None,
            tools: Default::default(),
        },
        ..FinalOptions::default()
    };
    let rep = postprocess_final(&root, &opts).unwrap();
    let k = rep.kernel.expect("bootable tree has a kernel");
    assert_eq!(k.kver, kver);
    assert_eq!(k.initramfs, InitramfsSource::Packaged);
    let moddir = root.join(format!("usr/lib/modules/{kver}"));
    assert!(moddir.join("modules.dep").is_file());
    assert!(root
        .join(format!("usr/lib/ostree-boot/vmlinuz-{kver}-{}", k.bootcsum))
        .is_file());

    let autovar =
        fs::read_to_string(root.join("usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf")).unwrap();
    assert!(
        autovar.contains("d /var/lib/demo 0750 demo demo - -\n"),
        "{autovar}"
    );
    assert!(
        autovar.contains("L /var/lib/demo-link - - - - demo\n"),
        "{autovar}"
    );
    assert!(
        autovar.contains("d /var/cache/demo 0755 root root - -\n"),
        "{autovar}"
    );
    assert!(!autovar.contains("seed"), "{autovar}");
    assert!(!autovar.contains("/var/run"), "{autovar}");
    assert!(rep
        .var
        .dropped
        .contains(&"/var/cache/demo/seed".to_string()));
    assert_eq!(fs::read_dir(root.join("var")).unwrap().count(), 0);

    assert_eq!(
        fs::read_to_string(root.join("usr/etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    let lib_passwd = fs::read_to_string(root.join("usr/lib/passwd")).unwrap();
    assert!(lib_passwd.contains("demo:x:900:900:"), "{lib_passwd}");
    assert!(root
        .join("usr/lib/sysimage/rpm-ostree-base-db")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
    assert_eq!(
        fs::read_link(root.join("usr/local")).unwrap(),
        PathBuf::from("../var/usrlocal")
    );

    // §4.8 against the same data passes; a changed uid is caught.
    let reference = lib_passwd.clone();
    passwd::check_passwd_group(
        &open(&root),
        &CheckOptions {
            passwd: CheckReference::FileContent(format!(
                "root:x:0:0:root:/root:/bin/sh\n{reference}"
            )),
            ..CheckOptions::default()
        },
    )
    .unwrap();
    let e = passwd::check_passwd_group(
        &open(&root),
        &CheckOptions {
            passwd: CheckReference::FileContent(reference.replace(":900:900:", ":905:900:")),
            ..CheckOptions::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("passwd UID changed: demo (905 to 900)"));
}

/// A real dracut run, on a tree given by `POSTFINAL_DRACUT_ROOT` (a prepared
/// rootfs with dracut installed and one kernel; it is modified in place).
/// Skipped without it: building such a tree needs a distribution mirror.
#[test]
fn real_dracut_on_a_given_tree() {
    let Some(root) = std::env::var_os("POSTFINAL_DRACUT_ROOT") else {
        eprintln!("SKIP: set POSTFINAL_DRACUT_ROOT to a prepared tree with dracut and a kernel");
        return;
    };
    let root = PathBuf::from(root);
    let started = std::time::Instant::now();
    let rep = postprocess_final(
        &root,
        &FinalOptions {
            selinux: false,
            kernel: KernelOptions {
                boot_location: BootLocation::Modules,
                machineid_compat: true,
                no_initramfs: false,
                initramfs_args: None,
                tools: Default::default(),
            },
            ..FinalOptions::default()
        },
    )
    .unwrap();
    let k = rep.kernel.unwrap();
    eprintln!("dracut run took {:?}", started.elapsed());
    assert_eq!(k.initramfs, InitramfsSource::Dracut);
    let img = root.join(format!("usr/lib/modules/{}/initramfs.img", k.kver));
    assert_eq!(mode(&img), 0o644);
    assert!(fs::metadata(&img).unwrap().len() > 100_000);
    // Shims gone, scratch dirs clean.
    assert!(!root.join("etc").exists());
    assert!(!root.join("dev/null").exists());
    assert_eq!(fs::read_dir(root.join("var")).unwrap().count(), 0);
}

#[test]
fn selinux_policy_edits_and_store_move() {
    let t = base_tree();
    let r = t.path();
    write(
        r,
        "usr/etc/selinux/config",
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    );
    let files = "usr/etc/selinux/targeted/contexts/files";
    write(
        r,
        &format!("{files}/file_contexts"),
        "/.* system_u:object_r:default_t:s0\n",
    );
    write(
        r,
        &format!("{files}/file_contexts.subs_dist"),
        "/var/home /home\n/etc/systemd/system /usr/lib/systemd/system\n",
    );
    write(r, "usr/etc/selinux/semanage.conf", "module-store = direct");
    write(
        r,
        "var/lib/selinux/targeted/active/modules/100/base/cil",
        "(x)",
    );
    let rep = postprocess_final(
        r,
        &FinalOptions {
            container: true,
            ..FinalOptions::default()
        },
    )
    .unwrap();
    let subs = fs::read_to_string(r.join(format!("{files}/file_contexts.subs_dist"))).unwrap();
    assert!(subs.contains("# /var/home /home\n"), "{subs}");
    assert!(subs.contains("\n/home /var/home\n"), "{subs}");
    assert!(subs.contains("\n/usr/etc /etc\n"), "{subs}");
    assert!(
        subs.contains("\n/usr/etc/systemd/system /usr/lib/systemd/system\n"),
        "{subs}"
    );
    assert!(subs.ends_with("/usr/lib/opt /opt\n"), "{subs}");
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/selinux/semanage.conf")).unwrap(),
        "module-store = direct\nstore-root=/etc/selinux\n"
    );
    assert!(r
        .join("usr/etc/selinux/targeted/active/modules/100/base/cil")
        .is_file());
    assert!(
        rep.notes.iter().any(|n| n.contains("semodule")),
        "{:?}",
        rep.notes
    );

    // Without a policy: a note, no failure.
    let t = base_tree();
    let rep = postprocess_final(
        t.path(),
        &FinalOptions {
            container: true,
            ..FinalOptions::default()
        },
    )
    .unwrap();
    assert!(
        rep.notes
            .iter()
            .any(|n| n.contains("no /etc/selinux/config")),
        "{:?}",
        rep.notes
    );
}

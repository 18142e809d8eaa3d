//! The "final" post-processing that makes an installed root a host tree
//! (§4.7), in order, through [`postprocess_final`].
//!
//! Input: a prepared rootfs (§4.5/§4.6 done): `usr/etc` holds /etc, `var`
//! holds what packages put there, the rpmdb is in `usr/share/rpm`. Output: the
//! tree ready to commit, plus a [`FinalReport`] (the kernel version for
//! `ostree.bootable`/`ostree.linux`).
//!
//! Not here: the §4.6 common cleanup (the caller runs it again after this, as
//! rpm-ostree does between steps 7 and 9 — it only deletes lock/backup files,
//! so the order does not matter), §4.8 checks
//! ([`super::passwd::check_passwd_group`]), SELinux policy rebuilds
//! (`semodule`) and labelling (done at commit time).
//!
//! Idempotence: `usr/lib/tmpfiles.d/rpm-ostree-0-integration.conf` marks a
//! finished run. Unlike rpm-ostree, which writes it before the kernel step, it
//! is written last here, so a failed run is redone from the start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::ambient_authority;
use cap_std_ext::cap_std::fs::{Dir, FileTypeExt, MetadataExt, Permissions, PermissionsExt};
use cap_std_ext::dirext::{CapStdExtDirExt, WalkConfiguration};

use super::kernel::{self, KernelOptions, KernelReport};
use super::nsswitch;
use super::passwd::{self, SplitOptions};
use super::tmpfiles::{self, LinksOptions, OptUsrLocal, VarReport, VarToTmpfilesOptions};

/// Options for [`postprocess_final`] (treefile keys in parentheses).
#[derive(Debug, Clone)]
pub struct FinalOptions {
    /// (`selinux`) Edit the policy's `file_contexts.subs_dist` and move the
    /// SELinux store, when the tree has a policy.
    pub selinux: bool,
    /// (`ignore-devices`) Delete char/block devices instead of failing.
    pub ignore_devices: bool,
    /// (`etc-group-members`)
    pub etc_group_members: BTreeSet<String>,
    /// (`opt-usrlocal`)
    pub opt_usrlocal: OptUsrLocal,
    /// The tree has a transient root (§4.5).
    pub transient_root: bool,
    /// (`container`) Skip kernel/initramfs processing.
    pub container: bool,
    /// (`boot-location`, `machineid-compat`, `no-initramfs`, `initramfs-args`)
    pub kernel: KernelOptions,
    /// `finalize.d` executables, in the order to run them (host binaries,
    /// cwd = the root).
    pub finalize_d: Vec<PathBuf>,
    /// `RPMOSTREE_WORKDIR` for finalize.d (the treefile directory).
    pub workdir: Option<PathBuf>,
}

impl Default for FinalOptions {
    /// rpm-ostree's defaults for a 2014-edition bootable treefile.
    fn default() -> Self {
        FinalOptions {
            selinux: true,
            ignore_devices: true,
            etc_group_members: BTreeSet::new(),
            opt_usrlocal: OptUsrLocal::Var,
            transient_root: false,
            container: false,
            kernel: KernelOptions {
                machineid_compat: true,
                ..KernelOptions::default()
            },
            finalize_d: Vec::new(),
            workdir: None,
        }
    }
}

/// What [`postprocess_final`] did.
#[derive(Debug, Clone, Default)]
pub struct FinalReport {
    /// The integration marker was present: nothing was done.
    pub already_done: bool,
    /// Kernel version etc. (`None` for containers or when already done).
    pub kernel: Option<KernelReport>,
    pub var: VarReport,
    /// Device files deleted (`ignore-devices`), relative paths.
    pub devices_removed: Vec<String>,
    /// Overlay whiteouts renamed to `.ostree-wh.NAME`.
    pub whiteouts_renamed: Vec<String>,
    /// Things skipped and why.
    pub notes: Vec<String>,
}

impl FinalReport {
    fn note(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        eprintln!("note: {msg}");
        self.notes.push(msg);
    }
}

/// Set `HOME=/var/home` in `usr/etc/default/useradd` (0644), if that file
/// exists. Pure part: [`useradd_home`].
pub fn set_useradd_home(root: &Dir) -> Result<bool> {
    let path = "usr/etc/default/useradd";
    let Some(c) = root
        .read_to_string_optional(path)
        .with_context(|| format!("Reading {path}"))?
    else {
        return Ok(false);
    };
    root.atomic_write_with_perms(path, useradd_home(&c), Permissions::from_mode(0o644))
        .with_context(|| format!("Writing {path}"))?;
    Ok(true)
}

/// Replace the `HOME=` line (or append one) with `HOME=/var/home`. Pure.
pub fn useradd_home(content: &str) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in content.lines() {
        if line.starts_with("HOME=") {
            out.push_str("HOME=/var/home");
            found = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        out.push_str("HOME=/var/home\n");
    }
    out
}

/// What to do with a device file found in the tree (pure decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAction {
    /// Overlay whiteout (char 0:0): becomes an empty regular `.ostree-wh.NAME`.
    RenameWhiteout,
    Delete,
}

/// Decide for a char/block device: whiteouts are always renamed; others are
/// deleted with `ignore-devices`, else an error.
pub fn device_action(
    path: &str,
    is_char: bool,
    rdev: u64,
    ignore_devices: bool,
) -> Result<DeviceAction> {
    if is_char && rdev == 0 {
        return Ok(DeviceAction::RenameWhiteout);
    }
    if ignore_devices {
        Ok(DeviceAction::Delete)
    } else {
        bail!(crate::exit::invalid_input(format!(
            "Unsupported device file: /{path} (OSTree commits cannot hold device nodes; \
             remove it with remove-files, or set `ignore-devices: true`)"
        )))
    }
}

/// §4.7 step 1, devices: walk the tree; rename whiteouts, delete or refuse
/// other device nodes. Returns (removed, renamed) relative paths.
pub fn process_devices(root: &Dir, ignore_devices: bool) -> Result<(Vec<String>, Vec<String>)> {
    let mut found: Vec<(PathBuf, bool, u64)> = Vec::new();
    root.walk(
        &WalkConfiguration::default(),
        |e| -> std::io::Result<std::ops::ControlFlow<()>> {
            let ft = e.file_type;
            if ft.is_char_device() || ft.is_block_device() {
                let m = e.entry.metadata()?;
                found.push((e.path.to_path_buf(), ft.is_char_device(), m.rdev()));
            }
            Ok(std::ops::ControlFlow::Continue(()))
        },
    )
    .context("Walking the tree for device files")?;
    // Decide everything first: an error must leave the tree untouched.
    let mut planned = Vec::with_capacity(found.len());
    for (path, is_char, rdev) in found {
        let p = path.to_string_lossy().into_owned();
        let action = device_action(&p, is_char, rdev, ignore_devices)?;
        planned.push((path, p, action));
    }
    let mut removed = Vec::new();
    let mut renamed = Vec::new();
    for (path, p, action) in planned {
        match action {
            DeviceAction::RenameWhiteout => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dest = path.with_file_name(format!(".ostree-wh.{name}"));
                root.remove_file(&path)
                    .with_context(|| format!("Removing whiteout {p}"))?;
                root.atomic_write_with_perms(&dest, "", Permissions::from_mode(0o644))
                    .with_context(|| format!("Writing {}", dest.display()))?;
                renamed.push(p);
            }
            DeviceAction::Delete => {
                eprintln!("Ignoring device file '/{p}'");
                root.remove_file(&path)
                    .with_context(|| format!("Removing device {p}"))?;
                removed.push(p);
            }
        }
    }
    Ok((removed, renamed))
}

/// The active policy name from `usr/etc/selinux/config` (`SELINUXTYPE=`). Pure.
pub fn selinux_policy_name(config: &str) -> Option<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SELINUXTYPE="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| !v.is_empty())
}

/// The `file_contexts.subs_dist` edits for an OSTree layout. Pure.
pub fn edit_subs_dist(content: &str) -> String {
    let mut out = String::new();
    let mut has_usr_etc = false;
    let mut etc_aliases = Vec::new();
    for line in content.lines() {
        if line.starts_with("/var/home ") {
            out.push_str("# https://github.com/projectatomic/rpm-ostree/pull/1754\n# ");
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if line.starts_with("/usr/etc ") {
            has_usr_etc = true;
        }
        if line.starts_with("/etc/") {
            etc_aliases.push(format!("/usr{line}"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("# https://github.com/projectatomic/rpm-ostree/pull/1754\n/home /var/home\n");
    if !has_usr_etc {
        out.push_str("# https://github.com/coreos/rpm-ostree/pull/4640\n/usr/etc /etc\n");
    }
    if !etc_aliases.is_empty() {
        out.push_str("# https://github.com/coreos/rpm-ostree/pull/5485\n");
        for a in etc_aliases {
            out.push_str(&a);
            out.push('\n');
        }
    }
    out.push_str("# https://github.com/coreos/rpm-ostree/pull/1795\n/usr/lib/opt /opt\n");
    out
}

/// SELinux parts of §4.7 that need no policy tools: the subs_dist edits
/// (step 1) and the store move (step 5). Returns the policy name, or `None`
/// (with a note) when the tree has no usable policy.
fn selinux_steps(root: &Dir, report: &mut FinalReport) -> Result<Option<String>> {
    let Some(config) = root
        .read_to_string_optional("usr/etc/selinux/config")
        .context("Reading usr/etc/selinux/config")?
    else {
        report.note("selinux is enabled but the tree has no /etc/selinux/config; no policy edits (install a policy package, or set `selinux: false`)");
        return Ok(None);
    };
    let Some(policy) = selinux_policy_name(&config) else {
        report.note("usr/etc/selinux/config has no SELINUXTYPE=; no policy edits");
        return Ok(None);
    };
    let fc = format!("usr/etc/selinux/{policy}/contexts/files/file_contexts");
    if root
        .symlink_metadata_optional(&fc)
        .with_context(|| format!("Querying {fc}"))?
        .is_none()
    {
        report.note(format!(
            "selinux is enabled but {fc} is missing; no policy edits"
        ));
        return Ok(None);
    }
    let subs = format!("{fc}.subs_dist");
    if let Some(c) = root
        .read_to_string_optional(&subs)
        .with_context(|| format!("Reading {subs}"))?
    {
        root.atomic_write_with_perms(&subs, edit_subs_dist(&c), Permissions::from_mode(0o644))
            .with_context(|| format!("Writing {subs}"))?;
    }
    report.note("SELinux policy modules are not rebuilt (no semodule run); the commit is labelled from the tree's policy");

    // Step 5: the module store lives in /etc/selinux on OSTree systems.
    let store = format!("var/lib/selinux/{policy}");
    if root
        .symlink_metadata_optional(format!("{store}/active/modules"))
        .with_context(|| format!("Querying {store}/active/modules"))?
        .is_some()
    {
        let conf = "usr/etc/selinux/semanage.conf";
        let c = root
            .read_to_string_optional(conf)
            .with_context(|| format!("Reading {conf}"))?
            .unwrap_or_default();
        if !c.lines().any(|l| l.trim() == "store-root=/etc/selinux") {
            let mut n = c.clone();
            if !n.is_empty() && !n.ends_with('\n') {
                n.push('\n');
            }
            n.push_str("store-root=/etc/selinux\n");
            root.atomic_write_with_perms(conf, n, Permissions::from_mode(0o644))
                .with_context(|| format!("Writing {conf}"))?;
        }
        let src = root
            .open_dir(&store)
            .with_context(|| format!("Opening {store}"))?;
        let dest = format!("usr/etc/selinux/{policy}");
        for e in src.entries().with_context(|| format!("Reading {store}"))? {
            let e = e.with_context(|| format!("Reading {store}"))?;
            let name = e.file_name();
            let d = Path::new(&dest).join(&name);
            root.remove_all_optional(&d)
                .with_context(|| format!("Removing {}", d.display()))?;
            root.rename(Path::new(&store).join(&name), root, &d)
                .with_context(|| {
                    format!(
                        "Moving {store}/{} to {}",
                        name.to_string_lossy(),
                        d.display()
                    )
                })?;
        }
    }
    Ok(Some(policy))
}

/// Hardlink-copy `src` into `dest` (dirs created with the source's mode).
fn hardlink_tree(root: &Dir, src: &Path, dest: &Path) -> Result<()> {
    let mode = root
        .symlink_metadata(src)
        .with_context(|| format!("Querying {}", src.display()))?
        .mode()
        & 0o7777;
    root.create_dir_all(dest)
        .with_context(|| format!("Creating {}", dest.display()))?;
    root.set_permissions(dest, Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dest.display()))?;
    let d = root
        .open_dir(src)
        .with_context(|| format!("Opening {}", src.display()))?;
    for e in d
        .entries()
        .with_context(|| format!("Reading {}", src.display()))?
    {
        let e = e.with_context(|| format!("Reading {}", src.display()))?;
        let name = e.file_name();
        let s = src.join(&name);
        let t = dest.join(&name);
        if e.file_type()
            .with_context(|| format!("Querying {}", s.display()))?
            .is_dir()
        {
            hardlink_tree(root, &s, &t)?;
        } else {
            root.hard_link(&s, root, &t)
                .with_context(|| format!("Hardlinking {} to {}", s.display(), t.display()))?;
        }
    }
    Ok(())
}

/// The base rpmdb copy OSTree clients diff against.
pub const BASE_DB: &str = "usr/lib/sysimage/rpm-ostree-base-db";

/// §4.7 step 11: hardlink `usr/share/rpm/**` into
/// `usr/lib/sysimage/rpm-ostree-base-db/` (replacing an old copy).
pub fn copy_base_rpmdb(root: &Dir) -> Result<bool> {
    let src = Path::new("usr/share/rpm");
    match root
        .symlink_metadata_optional(src)
        .context("Querying usr/share/rpm")?
    {
        Some(m) if m.is_dir() => {}
        _ => return Ok(false),
    }
    root.remove_all_optional(BASE_DB)
        .with_context(|| format!("Removing old {BASE_DB}"))?;
    root.create_dir_all("usr/lib/sysimage")
        .context("Creating usr/lib/sysimage")?;
    hardlink_tree(root, src, Path::new(BASE_DB))?;
    Ok(true)
}

/// Run the finalize.d executables on the host, cwd = the root.
pub fn run_finalize_d(root_path: &Path, scripts: &[PathBuf], workdir: Option<&Path>) -> Result<()> {
    for s in scripts {
        eprintln!(
            "Running finalize.d/{}",
            s.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let mut c = Command::new(s);
        c.current_dir(root_path);
        if let Some(w) = workdir {
            c.env("RPMOSTREE_WORKDIR", w);
        }
        let st = c
            .status()
            .with_context(|| format!("Running finalize.d script {}", s.display()))?;
        if !st.success() {
            bail!("finalize.d script {} failed ({st})", s.display());
        }
    }
    Ok(())
}

/// §4.7 in order; see the module docs. `root_path` is the prepared rootfs.
pub fn postprocess_final(root_path: &Path, opts: &FinalOptions) -> Result<FinalReport> {
    let root = Dir::open_ambient_dir(root_path, ambient_authority())
        .with_context(|| format!("Opening {}", root_path.display()))?;
    let root = &root;
    let mut report = FinalReport::default();
    if tmpfiles::integration_marker_present(root)? {
        report.already_done = true;
        report.note("usr/lib/tmpfiles.d/rpm-ostree-0-integration.conf exists: final postprocessing already done");
        return Ok(report);
    }

    // 1. useradd HOME, devices, subs_dist.
    set_useradd_home(root)?;
    let (removed, renamed) = process_devices(root, opts.ignore_devices)?;
    report.devices_removed = removed;
    report.whiteouts_renamed = renamed;
    if opts.selinux {
        // Steps 1 (subs_dist) and 5 (store), both before /var is translated.
        selinux_steps(root, &mut report).context("SELinux policy adjustments")?;
    } else {
        report.note("selinux: false; no SELinux policy edits");
    }

    // 3. passwd/group split.
    passwd::split_passwd_group(
        root,
        &SplitOptions {
            etc_group_members: opts.etc_group_members.clone(),
        },
    )?;
    // 4. nsswitch altfiles.
    nsswitch::enable_altfiles(root)?;
    // 6. links.
    tmpfiles::rootfs_prepare_links(
        root,
        &LinksOptions {
            opt_usrlocal: opts.opt_usrlocal,
            transient_root: opts.transient_root,
        },
    )?;
    // 7. /var -> tmpfiles.d.
    report.var = tmpfiles::var_to_tmpfiles(
        root,
        &VarToTmpfilesOptions {
            extra_known_lines: tmpfiles::integration_lines(opts.opt_usrlocal),
        },
    )
    .context("Converting /var to tmpfiles.d")?;

    // 10. kernel.
    if opts.container {
        report.note("container: true; no kernel/initramfs processing");
    } else {
        report.kernel = Some(
            kernel::process_kernel(root_path, &opts.kernel)
                .context("Processing the kernel and initramfs")?,
        );
    }
    passwd::normalize_etc_shadow(root)?;

    // 11. base rpmdb, finalize.d.
    if !copy_base_rpmdb(root)? {
        report.note("no usr/share/rpm; no base rpmdb copy");
    }
    run_finalize_d(root_path, &opts.finalize_d, opts.workdir.as_deref())?;

    // 9. integration files, last: they are the "done" marker.
    tmpfiles::install_integration_files(root, opts.opt_usrlocal)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn useradd_home_replaced_or_appended() {
        assert_eq!(
            useradd_home("GROUP=100\nHOME=/home\nSHELL=/bin/bash\n"),
            "GROUP=100\nHOME=/var/home\nSHELL=/bin/bash\n"
        );
        assert_eq!(
            useradd_home("SHELL=/bin/sh\n"),
            "SHELL=/bin/sh\nHOME=/var/home\n"
        );
    }

    #[test]
    fn device_decisions() {
        assert_eq!(
            device_action("a", true, 0, false).unwrap(),
            DeviceAction::RenameWhiteout
        );
        assert_eq!(
            device_action("a", true, 0x103, true).unwrap(),
            DeviceAction::Delete
        );
        let e = device_action("usr/dev/null", true, 0x103, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("Unsupported device file: /usr/dev/null"),
            "{e}"
        );
        assert_eq!(crate::exit::exit_code_for(&e), 3);
        assert_eq!(
            device_action("b", false, 0, true).unwrap(),
            DeviceAction::Delete
        );
    }

    #[test]
    fn subs_dist_edits() {
        let orig = "/var/home /home\n/etc/init.d /etc/rc.d/init.d\n/lib /usr/lib\n";
        let out = edit_subs_dist(orig);
        assert_eq!(
            out,
            "# https://github.com/projectatomic/rpm-ostree/pull/1754\n# /var/home /home\n\
/etc/init.d /etc/rc.d/init.d\n/lib /usr/lib\n\
# https://github.com/projectatomic/rpm-ostree/pull/1754\n/home /var/home\n\
# https://github.com/coreos/rpm-ostree/pull/4640\n/usr/etc /etc\n\
# https://github.com/coreos/rpm-ostree/pull/5485\n/usr/etc/init.d /etc/rc.d/init.d\n\
# https://github.com/coreos/rpm-ostree/pull/1795\n/usr/lib/opt /opt\n"
        );
        assert!(!edit_subs_dist("/usr/etc /etc\n").contains("4640"));
    }

    #[test]
    fn policy_name() {
        assert_eq!(
            selinux_policy_name("SELINUX=enforcing\nSELINUXTYPE=targeted\n").as_deref(),
            Some("targeted")
        );
        assert_eq!(selinux_policy_name("# SELINUXTYPE=x\n"), None);
    }
}

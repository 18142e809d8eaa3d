//! Map the treefile onto the post-processing steps and run them in
//! rpm-ostree's order: passwd injection (before install), then after install
//! remove-from-packages, the treefile steps (§4.4), rpmdb normalization, root
//! preparation (§4.5), the common (§4.6) and final (§4.7) steps, and the
//! passwd/group checks (§4.8).
//!
//! This is the only place that knows both the treefile and the step option
//! structs; the steps themselves take plain parameters.

use crate::postprocess::passwd::{
    self, CheckOptions, CheckReference, InjectOptions, PasswdFiles, PreviousPasswd,
};
use crate::postprocess::{
    common, final_steps, fsutil, kernel, prepare_rootfs, rpmdb, scripts, treefile_steps,
};
use crate::progress;
use crate::treefile::{self as tf, Treefile};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What later stages need from post-processing.
#[derive(Debug, Default)]
pub struct PostprocessReport {
    /// The kernel version of a bootable tree.
    pub kernel_version: Option<String>,
    /// What the compose JSON says of it.
    pub kernel: Option<crate::compose::composejson::KernelSummary>,
}

/// §4.3a: put passwd/group into `rootfs_tmp/etc` before packages are installed,
/// so uids and gids stay stable across composes.
pub fn inject_passwd(
    treefile: &Treefile,
    previous: &PreviousPasswd,
    rootfs_tmp: &Path,
) -> Result<()> {
    let c = &treefile.config;
    if !c.preserve_passwd() {
        return Ok(());
    }
    let root = fsutil::open_root(rootfs_tmp)?;
    let opts = InjectOptions::default();
    let passwd_file = &treefile.externals.check_passwd_file;
    let group_file = &treefile.externals.check_groups_file;
    match (passwd_file, group_file) {
        (Some(p), Some(g)) => {
            let passwd = String::from_utf8_lossy(&p.content);
            let group = String::from_utf8_lossy(&g.content);
            passwd::prepare_passwd_from_files(
                &root,
                &PasswdFiles {
                    passwd: &passwd,
                    group: &group,
                },
                &opts,
            )?;
            progress::note("Injected passwd/group from the check-passwd/check-groups files");
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(crate::exit::invalid_input(format!(
                "{}: configured to migrate passwd data from a file but group data from the commit (or the reverse); give check-passwd and check-groups both as type: file",
                treefile.path.display()
            )));
        }
        (None, None) => {
            let (p, g) = passwd::prepare_passwd_from_previous(&root, previous, &opts)?;
            if p || g {
                progress::note("Injected passwd/group from the previous commit");
            }
        }
    }
    Ok(())
}

fn treefile_steps_options(
    treefile: &Treefile,
    version: Option<&str>,
    source_date_epoch: Option<u64>,
) -> Result<treefile_steps::TreefileStepsOptions> {
    let c = &treefile.config;
    let mut add_files = Vec::new();
    for (src, dest) in c.add_files.iter().flatten() {
        let ext =
            treefile.externals.add_files.get(src).with_context(|| {
                format!("add-files source '{src}' was not loaded (internal error)")
            })?;
        add_files.push(treefile_steps::AddFile {
            dest: dest.clone(),
            contents: ext.content.clone(),
            mode: ext.mode,
        });
    }
    let script =
        treefile
            .externals
            .postprocess_script
            .as_ref()
            .map(|s| scripts::PostprocessScript {
                name: s.path.display().to_string(),
                contents: s.content.clone(),
            });
    let env = scripts::ScriptEnv {
        source_date_epoch: source_date_epoch.map(|e| e.to_string()),
        ..Default::default()
    };
    Ok(treefile_steps::TreefileStepsOptions {
        units: c.units.clone().unwrap_or_default(),
        default_target: c.default_target.clone(),
        opt_usrlocal: c.opt_usrlocal(),
        treefile_json: Some(treefile.to_json_pretty()),
        mutate_os_release: c.mutate_os_release.clone(),
        version: version.map(str::to_string),
        remove_files: c.remove_files.clone().unwrap_or_default(),
        add_files,
        scripts: scripts::PostprocessScripts {
            inline: c.postprocess.clone().unwrap_or_default(),
            script,
            env,
        },
    })
}

fn check_options(treefile: &Treefile, previous: &PreviousPasswd) -> CheckOptions {
    let c = &treefile.config;
    let file_text = |f: &Option<tf::ExternalFile>| {
        f.as_ref()
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .unwrap_or_default()
    };
    let passwd = match c.check_passwd() {
        tf::CheckPasswd::None => CheckReference::None,
        tf::CheckPasswd::Previous => CheckReference::PreviousContent(previous.lib_passwd.clone()),
        tf::CheckPasswd::File { .. } => {
            CheckReference::FileContent(file_text(&treefile.externals.check_passwd_file))
        }
        tf::CheckPasswd::Data { entries } => CheckReference::Entries(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), v.ids()))
                .collect::<BTreeMap<_, _>>(),
        ),
    };
    let groups = match c.check_groups() {
        tf::CheckGroups::None => CheckReference::None,
        tf::CheckGroups::Previous => CheckReference::PreviousContent(previous.lib_group.clone()),
        tf::CheckGroups::File { .. } => {
            CheckReference::FileContent(file_text(&treefile.externals.check_groups_file))
        }
        tf::CheckGroups::Data { entries } => CheckReference::Entries(entries.clone()),
    };
    CheckOptions {
        passwd,
        groups,
        ignore_removed_users: c.ignore_removed_users.clone().unwrap_or_default(),
        ignore_removed_groups: c.ignore_removed_groups.clone().unwrap_or_default(),
    }
}

/// Run every post-processing step: `rootfs_tmp` (as installed) becomes `rootfs`.
pub fn run(
    treefile: &Treefile,
    rootfs_tmp: &Path,
    rootfs: &Path,
    version: Option<&str>,
    previous: &PreviousPasswd,
    source_date_epoch: Option<u64>,
    tools: kernel::ToolRuns,
) -> Result<PostprocessReport> {
    let c = &treefile.config;
    // remove-from-packages: rpm-ostree filters at package checkout, before
    // scripts; with dnf the closest point is right after installation.
    let removals: Vec<treefile_steps::RemoveFromPackage> = c
        .remove_from_packages
        .iter()
        .flatten()
        .filter_map(|v| {
            v.split_first()
                .map(|(pkg, pats)| treefile_steps::RemoveFromPackage {
                    package: pkg.clone(),
                    patterns: pats.to_vec(),
                })
        })
        .collect();
    if !removals.is_empty() {
        let removed = treefile_steps::apply_remove_from_packages(rootfs_tmp, &removals)?;
        progress::note(&format!(
            "remove-from-packages: removed {} paths",
            removed.len()
        ));
    }
    if c.readonly_executables() {
        let n = crate::postprocess::modes::make_executables_readonly(rootfs_tmp)?;
        progress::note(&format!(
            "readonly-executables: {n} executables made read-only"
        ));
    }
    treefile_steps::run_treefile_steps(
        rootfs_tmp,
        &treefile_steps_options(treefile, version, source_date_epoch)?,
    )?;
    if let Some(epoch) = source_date_epoch {
        rpmdb::normalize_rpmdb(rootfs_tmp, epoch)?;
    } else {
        rpmdb::finalize_sqlite(&rootfs_tmp.join("usr/share/rpm"))?;
    }
    std::fs::create_dir_all(rootfs).with_context(|| format!("Creating {}", rootfs.display()))?;
    let layout = prepare_rootfs::prepare_rootfs_at(
        rootfs_tmp,
        rootfs,
        &prepare_rootfs::PrepareRootfsOptions {
            tmp_is_dir: c.tmp_is_dir(),
            opt_usrlocal: c.opt_usrlocal(),
        },
    )?;
    let root = fsutil::open_root(rootfs)?;
    common::postprocess_common(&root)?;
    let final_report = final_steps::postprocess_final(
        rootfs,
        &final_steps::FinalOptions {
            selinux: c.selinux(),
            ignore_devices: c.ignore_devices(),
            etc_group_members: c
                .etc_group_members
                .iter()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>(),
            opt_usrlocal: c.opt_usrlocal(),
            transient_root: layout == prepare_rootfs::RootfsLayout::Transient,
            container: c.container(),
            kernel: kernel::KernelOptions {
                boot_location: c.boot_location(),
                machineid_compat: c.machineid_compat(),
                no_initramfs: c.no_initramfs(),
                initramfs_args: c.initramfs_args.clone(),
                tools,
            },
            finalize_d: treefile
                .externals
                .finalize_d
                .values()
                .map(|f| f.path.clone())
                .collect(),
            workdir: Some(treefile.dir.clone()),
        },
    )?;
    common::postprocess_common(&root)?;
    let check = passwd::check_passwd_group(&root, &check_options(treefile, previous))?;
    if !check.new_users.is_empty() {
        progress::note(&format!(
            "New passwd entries: {}",
            check.new_users.join(", ")
        ));
    }
    if !check.new_groups.is_empty() {
        progress::note(&format!(
            "New group entries: {}",
            check.new_groups.join(", ")
        ));
    }
    Ok(PostprocessReport {
        kernel_version: final_report.kernel.as_ref().map(|k| k.kver.clone()),
        kernel: final_report.kernel.map(|k| k.summary()),
    })
}

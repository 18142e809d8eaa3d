//! The compose pipeline: runs the stages in order, handing typed values on.
//!
//! [`run_compose_tree`], [`run_oneshot`] and [`run_container_encapsulate`]
//! turn parsed command lines into the option structs of [`tree`],
//! [`oneshot`] and [`crate::oci`], and print results. The stages themselves
//! live in their own modules.

pub mod composejson;
pub mod inputhash;
pub mod metadata;
pub mod oneshot;
pub mod postprocess_run;
pub mod report;
pub mod support;
pub mod tree;
pub mod version;

use crate::cli::{EncapsulateArgs, OneShotArgs, TreeArgs};
use crate::exit::{invalid_input, unsupported};
use crate::treefile::{LoadOptions, Treefile};
use anyhow::Result;
use std::path::Path;
use tree::{ParentChoice, TreeRequest};

/// `SOURCE_DATE_EPOCH` from the environment, validated.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => s.trim().parse::<u64>().map(Some).map_err(|_| {
            invalid_input(format!(
                "SOURCE_DATE_EPOCH='{s}' is not a number of seconds since 1970; unset it or give an integer"
            ))
        }),
        Err(_) => Ok(None),
    }
}

/// `--print-only`: the flattened treefile as JSON on stdout.
pub fn print_only(treefile: &Path) -> Result<()> {
    let tf = Treefile::load(treefile, &LoadOptions::default())?;
    println!("{}", tf.to_json_pretty());
    Ok(())
}

/// `compose tree`.
pub fn run_compose_tree(args: TreeArgs) -> Result<()> {
    if args.print_only {
        return print_only(&args.treefile);
    }
    for (given, flag, hint) in [
        (
            args.layer_repo.is_some(),
            "--layer-repo",
            "ostree-layers are not supported yet",
        ),
        (
            args.source_root.is_some(),
            "--source-root",
            "repos are read from the manifest's directory",
        ),
        (
            args.download_only_rpms,
            "--download-only-rpms",
            "use --download-only",
        ),
    ] {
        if given {
            return Err(unsupported(format!("{flag} is not supported yet: {hint}")));
        }
    }
    if args.workdir.is_some() || args.workdir_tmpfs {
        crate::progress::note("note: --workdir is ignored with the unified core (as in rpm-ostree); work directories go under --cachedir");
    }
    if args.postprocess {
        crate::progress::note("note: --postprocess only applies to `compose install`; `compose tree` always post-processes");
    }
    if args.disable_selinux {
        crate::progress::note("note: --disable-selinux: packages are not labelled at install; the commit is still labelled when the treefile has selinux: true (as in rpm-ostree)");
    }
    let Some(repo) = args.repo.clone() else {
        return Err(crate::exit::usage(
            "compose tree: --repo is required (an existing OSTree repository; create one with `ostree init --repo=REPO --mode=archive`)",
        ));
    };
    let req = TreeRequest {
        treefile: args.treefile.clone(),
        repo,
        cachedir: args.cachedir.clone(),
        package_cache: args.cachedir.is_some() && !args.no_package_cache,
        initramfs_cache: args.cachedir.is_some() && !args.no_initramfs_cache,
        dracut_plain_copy: args.no_dracut_fast_copy,
        force_nocache: args.force_nocache,
        cache_only: args.cache_only,
        dry_run: args.dry_run,
        download_only: args.download_only,
        touch_if_changed: args.touch_if_changed.clone(),
        previous_commit: args.previous_commit.clone(),
        previous_inputhash: args.previous_inputhash.clone(),
        previous_version: args.previous_version.clone(),
        write_commitid_to: args.write_commitid_to.clone(),
        write_composejson_to: args.write_composejson_to.clone(),
        metadata_strings: args.add_metadata_string.clone(),
        metadata_json_files: args.add_metadata_from_json.clone(),
        parent: match (&args.parent, args.no_parent) {
            (_, true) => ParentChoice::None,
            (Some(p), false) => ParentChoice::Rev(p.clone()),
            (None, false) => ParentChoice::Auto,
        },
        lockfiles: args.ex_lockfile.clone(),
        lockfile_strict: args.ex_lockfile_strict,
        write_lockfile_to: args.ex_write_lockfile_to.clone(),
        proxy: args.proxy.clone(),
        source_date_epoch: source_date_epoch()?,
        fallback_previous: None,
        installed_files: None,
        installed_known: None,
    };
    if let tree::TreeOutcome::Committed(mut c) = tree::compose_tree(&req)? {
        if let Some(fill) = c.cache_fill.take() {
            fill.run();
        }
    }
    Ok(())
}

/// `compose container-encapsulate`.
pub fn run_container_encapsulate(args: EncapsulateArgs) -> Result<()> {
    oneshot::container_encapsulate(args)
}

/// The one-shot command.
pub fn run_oneshot(args: OneShotArgs) -> Result<()> {
    oneshot::run(args)
}

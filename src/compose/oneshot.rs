//! The one-shot command (`ostree-composer MANIFEST`): compose into a
//! bare-user build repo kept in the cache, export the commit into the archive
//! repo that HTTP serves, and write or push OCI images.
//!
//! Change detection also works without a persistent cache: when the build
//! repo has no previous commit, the exported repo's commit (its input hash and
//! version) stands in, and the new commit's parent is that commit.

use super::composejson::{self, ExportedRepo, ImageOutput};
use super::tree::{self, FallbackPrevious, TreeOutcome, TreeRequest};
use crate::cli::{EncapsulateArgs, OneShotArgs};
use crate::commit::{self as ostree_commit, CommitInfo};
use crate::exit::{invalid_input, with_class, ErrorClass};
use crate::export::AheadWorker;
use crate::progress;
use crate::treefile::{LoadOptions, Treefile};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the output repo goes when `--repo` is not given.
fn default_repo() -> PathBuf {
    let srv = Path::new("/srv/repo");
    if srv.is_dir() {
        srv.to_path_buf()
    } else {
        PathBuf::from("repo")
    }
}

/// The cache: `--cachedir`, else `/srv/cache` when it exists, else a temporary dir.
enum Cache {
    /// `outlives_run`: false for the image's own `/srv/cache` when no
    /// volume is mounted there (it goes with the container).
    Kept {
        path: PathBuf,
        outlives_run: bool,
    },
    Temporary(tempfile::TempDir),
}

impl Cache {
    fn path(&self) -> &Path {
        match self {
            Cache::Kept { path, .. } => path,
            Cache::Temporary(t) => t.path(),
        }
    }

    /// Whether filling the package cache can pay off in a later run.
    fn outlives_run(&self) -> bool {
        matches!(
            self,
            Cache::Kept {
                outlives_run: true,
                ..
            }
        )
    }
}

/// Whether we run in a container (podman and docker leave these markers).
fn in_container() -> bool {
    Path::new("/run/.containerenv").exists() || Path::new("/.dockerenv").exists()
}

/// Whether `dir` is the root of a mount (another device than its parent).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    match (dev(dir), dir.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

fn choose_cache(arg: Option<&Path>) -> Result<Cache> {
    if let Some(p) = arg {
        std::fs::create_dir_all(p)
            .with_context(|| format!("Creating --cachedir {}", p.display()))?;
        return Ok(Cache::Kept {
            path: p.to_path_buf(),
            outlives_run: true,
        });
    }
    let srv = Path::new("/srv/cache");
    if srv.is_dir() {
        let outlives_run = !in_container() || is_mount_point(srv);
        if !outlives_run {
            progress::note(
                "note: /srv/cache is not a volume, so nothing cached outlives this container \
                 (mount one there, e.g. -v ./cache:/srv/cache, to make reruns incremental)",
            );
        }
        return Ok(Cache::Kept {
            path: srv.to_path_buf(),
            outlives_run,
        });
    }
    // /var/tmp, not /tmp: a whole tree goes through here and bare-user needs user xattrs.
    let t = tempfile::Builder::new()
        .prefix("ostree-composer-cache-")
        .tempdir_in("/var/tmp")
        .context("Creating a temporary cache in /var/tmp (pass --cachedir to keep one)")?;
    progress::note(&format!(
        "note: no --cachedir: using a temporary cache {} (pass --cachedir DIR to make reruns incremental)",
        t.path().display()
    ));
    Ok(Cache::Temporary(t))
}

/// The previous exported commit of `treeref` in the output repo, if any.
fn exported_previous(export_repo: &Path, treeref: &str) -> Result<Option<FallbackPrevious>> {
    if !ostree_commit::repo::is_repo(export_repo) {
        return Ok(None);
    }
    let repo = ostree_commit::open_repo(export_repo)?;
    Ok(
        CommitInfo::load_optional(&repo, treeref)?.map(|info| FallbackPrevious {
            checksum: info.checksum().to_string(),
            inputhash: info.inputhash().ok().flatten(),
            version: info.version().ok().flatten(),
        }),
    )
}

/// The build repo in the cache: bare-user (keeps ownership and xattrs as
/// metadata, so it works unprivileged), falling back to archive where the
/// filesystem has no user xattrs (e.g. an old tmpfs).
fn open_or_create_build_repo(path: &Path) -> Result<()> {
    if ostree_commit::repo::is_repo(path) {
        ostree_commit::open_repo(path)?;
        return Ok(());
    }
    match ostree_commit::create_repo(path, ostree::RepoMode::BareUser) {
        Ok(_) => Ok(()),
        Err(e) => {
            progress::note(&format!(
                "note: cannot create a bare-user build repo at {} ({e:#}); using archive mode",
                path.display()
            ));
            if path.exists() {
                std::fs::remove_dir_all(path)
                    .with_context(|| format!("Removing {}", path.display()))?;
            }
            ostree_commit::create_repo(path, ostree::RepoMode::Archive).map(|_| ())
        }
    }
}

/// When the export will write compressed objects (an archive destination fed
/// from a bare-user build repo), a worker that compresses the packages' files
/// on the idle core while rpm installs them; the export reuses its work.
fn start_deflating_ahead(build_repo: &Path, export_path: &Path) -> Result<Option<AheadWorker>> {
    if ostree_commit::open_repo(build_repo)?.mode() == ostree::RepoMode::Archive {
        return Ok(None);
    }
    match crate::export::archive_deflate_level(export_path)? {
        // The build repository's tmp/: on the cache's filesystem.
        Some(level) => AheadWorker::start(level, Some(&build_repo.join("tmp"))).map(Some),
        None => Ok(None),
    }
}

/// Refuse an output path that can never be exported to before composing
/// anything (and before a lock file is put into it).
fn check_export_destination(path: &Path) -> Result<()> {
    if !path.exists() || ostree_commit::repo::is_repo(path) {
        return Ok(());
    }
    let shown = path.display();
    if !path.is_dir() {
        return Err(invalid_input(format!(
            "--repo {shown} is not a directory: give an OSTree repository, or an empty or missing directory"
        )));
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("Reading --repo {shown}"))?;
    let non_empty = entries
        .flatten()
        .any(|e| e.file_name() != ostree_commit::lock::LOCK_FILE_NAME);
    if non_empty {
        return Err(invalid_input(format!(
            "--repo {shown} is not an OSTree repository and not empty: give an empty or missing directory, \
             or create a repository with `ostree init --repo={shown} --mode=archive`"
        )));
    }
    Ok(())
}

/// Run the one-shot command.
pub fn run(args: OneShotArgs) -> Result<()> {
    let manifest = args
        .manifest
        .clone()
        .ok_or_else(|| crate::exit::usage("a MANIFEST is required"))?;
    if !manifest.exists() {
        let cwd = std::env::current_dir().unwrap_or_default();
        return Err(invalid_input(format!(
            "manifest {} not found (looked in {}); mount your manifests over /srv/manifests or give a path",
            manifest.display(),
            cwd.display()
        )));
    }
    if args.print_only {
        return super::print_only(&manifest);
    }
    let t0 = Instant::now();
    let treefile = Treefile::load(&manifest, &LoadOptions::default())?;
    treefile.validate_for_compose()?;
    let Some(treeref) = treefile.strict_ref()? else {
        return Err(invalid_input(format!(
            "{}: the one-shot command needs a `ref` in the manifest to export and update",
            manifest.display()
        )));
    };
    let export_path = args.repo.clone().unwrap_or_else(default_repo);
    let labels = crate::oci::parse_labels(&args.label)?;
    if !args.oci.is_empty() && args.max_layers < 4 {
        return Err(invalid_input(format!(
            "--max-layers {}: an image needs at least 4 layers",
            args.max_layers
        )));
    }
    for dest in &args.oci {
        crate::oci::imageref::parse_destination(dest)?;
    }
    check_export_destination(&export_path)?;
    if let Some(path) = &args.write_composejson_to {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(invalid_input(format!(
                "--write-composejson-to {}: the directory {} does not exist; create it first",
                path.display(),
                dir.display()
            )));
        }
    }
    let cache = choose_cache(args.cachedir.as_deref())?;
    let build_repo_path = cache.path().join("repo-build");
    open_or_create_build_repo(&build_repo_path)?;

    progress::note(&format!(
        "Composing {} ({}) -> {}{}",
        manifest.display(),
        treeref,
        export_path.display(),
        if args.oci.is_empty() {
            String::new()
        } else {
            format!(" and {}", args.oci.join(", "))
        }
    ));
    // Lock the export repo for the whole run, creating its directory first
    // if needed (export accepts a directory holding only the lock file):
    // two first runs into a new repo must serialize too, or the second
    // commit replaces the first without it as parent.
    if !export_path.exists() {
        std::fs::create_dir_all(&export_path)
            .with_context(|| format!("Creating --repo {}", export_path.display()))?;
    }
    let _export_lock = ostree_commit::RepoLock::acquire(&export_path)?;
    let fallback_previous = exported_previous(&export_path, &treeref)?;
    let ahead_worker = start_deflating_ahead(&build_repo_path, &export_path)?;
    let req = TreeRequest {
        treefile: manifest.clone(),
        repo: build_repo_path.clone(),
        cachedir: Some(cache.path().to_path_buf()),
        package_cache: cache.outlives_run() && !args.no_package_cache,
        initramfs_cache: cache.outlives_run() && !args.no_initramfs_cache,
        dracut_plain_copy: args.no_dracut_fast_copy,
        force_nocache: args.force_nocache,
        cache_only: args.cache_only,
        dry_run: args.dry_run,
        lockfiles: args.lockfile.clone(),
        lockfile_strict: args.lockfile_strict,
        write_lockfile_to: args.write_lockfile_to.clone(),
        source_date_epoch: super::source_date_epoch()?,
        fallback_previous,
        installed_files: ahead_worker.as_ref().map(AheadWorker::sink),
        installed_known: ahead_worker.as_ref().map(AheadWorker::known),
        ..Default::default()
    };
    let mut json = composejson::ComposeJson {
        r#ref: Some(treeref.clone()),
        ..Default::default()
    };
    // Packages to import into the package cache for the next run, once the
    // export and encapsulation are done.
    let mut cache_fill = None;
    let commit = match tree::compose_tree(&req)? {
        TreeOutcome::DryRun { .. } | TreeOutcome::DownloadOnly => return Ok(()),
        TreeOutcome::Unchanged { previous } => {
            // Make sure the output repo really has it (it may have been wiped).
            // When the build repo has the commit, the (idempotent) export
            // still runs: a run killed after moving the exported ref but
            // before regenerating the summary left the summary stale.
            if !ostree_commit::read::has_commit(
                &ostree_commit::open_repo(&build_repo_path)?,
                &previous,
            )? && ostree_commit::repo::is_repo(&export_path)
                && ostree_commit::read::resolve_rev(
                    &ostree_commit::open_repo(&export_path)?,
                    &treeref,
                )?
                .as_deref()
                    == Some(previous.as_str())
                && args.oci.is_empty()
            {
                progress::note(&format!(
                    "{} already has {treeref} => {previous}; nothing to do",
                    export_path.display()
                ));
                return Ok(());
            }
            previous
        }
        TreeOutcome::Committed(mut c) => {
            cache_fill = c.cache_fill.take();
            json = c.composejson.clone();
            c.checksum.clone()
        }
    };
    json.ostree_commit = commit.clone();
    // The commit is in the build repo, unless the compose was "unchanged"
    // against the exported repo's commit (no persistent cache): then outputs
    // read it from the exported repo.
    let in_build_repo =
        ostree_commit::read::has_commit(&ostree_commit::open_repo(&build_repo_path)?, &commit)?;
    let source_repo = if in_build_repo {
        build_repo_path.clone()
    } else {
        export_path.clone()
    };

    // Export first, then images: an image is only pushed once the archive
    // repo has the commit, so a failed export never leaves a pushed image
    // behind. (Running both at once gained nothing measurable: libostree's
    // pull already uses worker threads.)
    if in_build_repo {
        let t = Instant::now();
        progress::phase("export", &format!("Exporting to {}", export_path.display()));
        let deflated_ahead = ahead_worker.map(AheadWorker::finish);
        let exported = crate::export::export(&crate::export::ExportOptions {
            src_repo: source_repo.clone(),
            dest: export_path.clone(),
            ref_: treeref.clone(),
            commit: commit.clone(),
            gpg_key: args.gpg_sign.clone(),
            gpg_homedir: args.gpg_homedir.clone(),
            static_delta: args.static_delta,
            deflated_ahead,
        })
        .map_err(|e| with_class(e, ErrorClass::OutputFailed))?;
        progress::done(
            "export",
            &format!("{} => {commit} in {}", treeref, export_path.display()),
            t.elapsed().as_secs_f64(),
        );
        json.exported_repo = Some(ExportedRepo {
            path: export_path.display().to_string(),
            mode: exported.mode.clone(),
            static_delta: exported.delta_written.is_some(),
            signed: args.gpg_sign.is_some(),
        });
    } else {
        progress::note(&format!("{} already has {commit}", export_path.display()));
    }

    if !args.oci.is_empty() {
        let t = Instant::now();
        progress::phase("oci", &format!("Encapsulating {commit}"));
        let opts = crate::oci::OciOptions {
            repo: source_repo.clone(),
            rev: commit.clone(),
            max_layers: args.max_layers,
            labels,
            tls_verify: args.dest_tls_verify,
            authfile: args.authfile.clone(),
            workdir: cache.path().to_path_buf(),
            ..Default::default()
        };
        let results = crate::oci::build_and_push_many(&opts, &args.oci)
            .map_err(|e| with_class(e, ErrorClass::OutputFailed))?;
        for r in &results {
            println!(
                "Wrote: {}@{} ({} layers)",
                r.reference, r.manifest_digest, r.layer_count
            );
            json.images.push(ImageOutput {
                reference: r.reference.clone(),
                digest: r.manifest_digest.clone(),
                layers: r.layer_count as u64,
                size: r.compressed_size,
            });
        }
        progress::done(
            "oci",
            &format!("{} image(s)", results.len()),
            t.elapsed().as_secs_f64(),
        );
    }
    if let Some(path) = &args.write_composejson_to {
        composejson::write_atomic(path, json.to_json_pretty().as_bytes())
            .with_context(|| format!("Writing --write-composejson-to {}", path.display()))?;
    }
    progress::note(&format!("Done in {:.1}s", t0.elapsed().as_secs_f64()));
    if let Some(fill) = cache_fill {
        fill.run();
    }
    Ok(())
}

/// `compose container-encapsulate`.
pub fn container_encapsulate(args: EncapsulateArgs) -> Result<()> {
    let opts = crate::oci::EncapsulateOptions {
        repo: args.repo,
        rev: args.ostree_ref,
        imgref: args.imgref,
        labels: args.label,
        image_config: args.image_config,
        arch: args.arch,
        copymeta: args.copymeta,
        copymeta_opt: args.copymeta_opt,
        cmd: (!args.cmd.is_empty()).then_some(args.cmd),
        max_layers: Some(args.max_layers),
        format_version: Some(args.format_version),
        write_contentmeta_json: args.write_contentmeta_json,
        compare_with_build: args.compare_with_build,
        previous_build_manifest: args.previous_build_manifest,
        authfile: args.authfile,
        tls_verify: Some(args.dest_tls_verify),
        workdir: None,
    };
    let r = crate::oci::container_encapsulate(&opts)?;
    println!(
        "Wrote: {}@{} ({} layers)",
        r.reference, r.manifest_digest, r.layer_count
    );
    Ok(())
}

//! `compose tree`: treefile -> resolved packages -> installed root ->
//! post-processed tree -> commit, with rpm-ostree's change detection,
//! versioning and metadata.
//!
//! Each stage is a named step below; stages hand typed values on and never
//! reach back. The caller ([`super`]) maps command-line flags into a
//! [`TreeRequest`] and prints the [`TreeOutcome`].

use super::composejson::ComposeJson;
use super::inputhash::{input_hash, HashedPackage};
use super::metadata;
use crate::commit::known::KnownContents;
use crate::commit::{self as ostree_commit, CommitInfo};
use crate::install::{self, InstallRequest, Resolution};
use crate::progress;
use crate::treefile::{LoadOptions, Treefile};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which parent the new commit gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The current value of the ref in the target repo (if any).
    #[default]
    Auto,
    /// No parent (`--no-parent`).
    None,
    /// This rev (`--parent`).
    Rev(String),
}

/// Everything `compose tree` needs.
#[derive(Debug, Clone, Default)]
pub struct TreeRequest {
    pub treefile: PathBuf,
    /// Target repo; must exist (any mode).
    pub repo: PathBuf,
    /// rpm-md, packages and work directories; a temporary dir under the repo when `None`.
    pub cachedir: Option<PathBuf>,
    pub force_nocache: bool,
    pub cache_only: bool,
    pub dry_run: bool,
    pub download_only: bool,
    pub touch_if_changed: Option<PathBuf>,
    pub previous_commit: Option<String>,
    pub previous_inputhash: Option<String>,
    pub previous_version: Option<String>,
    pub write_commitid_to: Option<PathBuf>,
    pub write_composejson_to: Option<PathBuf>,
    pub metadata_strings: Vec<String>,
    pub metadata_json_files: Vec<PathBuf>,
    pub parent: ParentChoice,
    pub lockfiles: Vec<PathBuf>,
    pub lockfile_strict: bool,
    pub write_lockfile_to: Option<PathBuf>,
    pub proxy: Option<String>,
    /// `SOURCE_DATE_EPOCH`: commit timestamp and rpmdb normalization.
    pub source_date_epoch: Option<u64>,
    /// A commit elsewhere (e.g. the exported repo's) to use for change
    /// detection, versioning and as parent when the target repo has no ref.
    pub fallback_previous: Option<FallbackPrevious>,
    /// Told each package's files as they are installed.
    pub installed_files: Option<install::InstalledFilesSink>,
    /// Content checksums whatever reads `installed_files` computed, for the
    /// commit (see [`KnownContents`]).
    pub installed_known: Option<std::sync::Arc<std::sync::Mutex<KnownContents>>>,
    /// Assemble the root from the package cache in `cachedir` when that is
    /// exact (see [`install::assemble`]); false: rpm installs every package.
    /// Only worth it when the cache directory outlives the run.
    pub package_cache: bool,
    /// Reuse the module index and initramfs depmod and dracut made from the
    /// same inputs in an earlier compose (see
    /// [`crate::postprocess::runcache`]); like the package cache, only worth
    /// it when the cache directory outlives the run.
    pub initramfs_cache: bool,
    /// Let dracut-install fork `cp` for each file where the filesystem
    /// cannot clone, instead of copying in the kernel (see
    /// [`crate::postprocess::dracut_fastcopy`]).
    pub dracut_plain_copy: bool,
}

/// What the one-shot command knows about the last exported commit.
#[derive(Debug, Clone)]
pub struct FallbackPrevious {
    pub checksum: String,
    pub inputhash: Option<String>,
    pub version: Option<String>,
}

/// The result of a compose.
#[derive(Debug)]
pub enum TreeOutcome {
    /// `--dry-run`: the transaction was printed; `changed` says whether a commit would be made.
    DryRun { changed: bool },
    /// `--download-only`: packages are in the cache.
    DownloadOnly,
    /// Inputs unchanged since `previous`; nothing written.
    Unchanged { previous: String },
    /// A new commit.
    Committed(Box<Committed>),
}

/// A new commit and what was recorded about it.
#[derive(Debug)]
pub struct Committed {
    pub checksum: String,
    /// The ref that was moved (None with `--write-commitid-to` or no `ref`).
    pub ref_moved: Option<String>,
    /// The treefile's ref, even when not moved.
    pub treeref: Option<String>,
    pub version: Option<String>,
    pub inputhash: String,
    pub parent: Option<String>,
    pub composejson: ComposeJson,
    /// Directory of the manifest (for rpmdb lookups of the installed root by outputs).
    pub basearch: String,
    /// Packages to import into the package cache for the next compose:
    /// run it once this run's outputs are written (see [`install::CacheFill`]).
    pub cache_fill: Option<install::CacheFill>,
}

/// Run `compose tree`.
pub fn compose_tree(req: &TreeRequest) -> Result<TreeOutcome> {
    let t0 = Instant::now();
    progress::phase("treefile", &format!("Loading {}", req.treefile.display()));
    let treefile = Treefile::load(&req.treefile, &LoadOptions::default())?;
    refuse_empty_manifest(&req.treefile)?;
    check_output_dirs(req)?;
    treefile.validate_for_compose()?;
    super::support::check_supported(&treefile)?;
    let treeref = treefile.strict_ref()?;
    progress::done(
        "treefile",
        &format!(
            "ref {}, {} packages",
            treeref.as_deref().unwrap_or("(none)"),
            treefile.config.packages().len()
        ),
        t0.elapsed().as_secs_f64(),
    );

    let repo = ostree_commit::open_repo(&req.repo)?;
    let _lock = ostree_commit::RepoLock::acquire(&req.repo)?;
    check_parent_exists(&repo, req, treeref.as_deref())?;

    // The previous commit: --previous-commit, else the ref in the target repo.
    let previous = find_previous(&repo, req, treeref.as_deref())?;
    let previous_inputhash = req.previous_inputhash.clone().or_else(|| match &previous {
        Previous::Local(info) => info.inputhash().ok().flatten(),
        Previous::Fallback(f) => f.inputhash.clone(),
        Previous::None => None,
    });
    let previous_version = req.previous_version.clone().or_else(|| match &previous {
        Previous::Local(info) => info.version().ok().flatten(),
        Previous::Fallback(f) => f.version.clone(),
        Previous::None => None,
    });
    if let Some(csum) = previous.checksum() {
        progress::note(&format!("Previous commit: {csum}"));
    } else if let Some(r) = &treeref {
        progress::note(&format!("No previous commit for {r}"));
    }

    // Metadata from the treefile and the command line, then the version.
    let mut meta =
        metadata::user_metadata(&treefile, &req.metadata_strings, &req.metadata_json_files)?;
    let now = match req.source_date_epoch {
        Some(e) => chrono::DateTime::from_timestamp(e as i64, 0).unwrap_or_else(chrono::Utc::now),
        None => chrono::Utc::now(),
    };
    let version = metadata::apply_version(&treefile, &mut meta, previous_version.as_deref(), now)?;

    // Resolve, hash, decide.
    let cachedir = match &req.cachedir {
        Some(c) => c.clone(),
        None => req.repo.join("tmp/ostree-composer-cache"),
    };
    std::fs::create_dir_all(&cachedir)
        .with_context(|| format!("Creating the cache directory {}", cachedir.display()))?;
    let install_req = install_request(&treefile, req, &cachedir);
    // Fast path: inputs identical to the last full resolve in this cache and
    // the previous commit carries its input hash -> unchanged, without dnf.
    let fast_key = (!req.force_nocache
        && !req.dry_run
        && !req.download_only
        && req.write_lockfile_to.is_none())
    .then(|| install::fastpath::key(&install_req, &treefile.checksum()))
    .flatten();
    if let (Some(key), Some(prev_hash), Some(prev)) =
        (&fast_key, &previous_inputhash, previous.checksum())
    {
        if install::fastpath::cached_inputhash(&cachedir, key).as_deref() == Some(prev_hash) {
            progress::note(&format!(
                "Input state hash: {prev_hash} (repositories and treefile unchanged; not resolving)"
            ));
            println!("No apparent changes since previous commit; use --force-nocache to override");
            return Ok(TreeOutcome::Unchanged {
                previous: prev.to_string(),
            });
        }
    }
    let t = Instant::now();
    progress::phase("resolve", "Resolving dependencies");
    // One dnf helper for resolve and install: the install reuses its state.
    let mut dnf = install::Session::start()?;
    let resolution = match dnf.resolve(&install_req) {
        Ok(r) => r,
        Err(e) => {
            install::fastpath::clear(&cachedir);
            return Err(e);
        }
    };
    progress::done(
        "resolve",
        &format!(
            "{} packages, {} MiB to download",
            resolution.packages.len(),
            resolution.download_size() / (1 << 20)
        ),
        t.elapsed().as_secs_f64(),
    );
    print_transaction(&resolution);
    if let Some(path) = &req.write_lockfile_to {
        install::lockfile::write(path, &resolution)
            .with_context(|| format!("Writing the lockfile {}", path.display()))?;
        progress::note(&format!("Wrote lockfile {}", path.display()));
    }
    let inputhash = input_hash(
        &treefile.checksum(),
        resolution.packages.iter().map(|p| HashedPackage {
            action: "install",
            checksum: &p.checksum,
        }),
    );
    progress::note(&format!("Input state hash: {inputhash}"));
    if let Some(key) = &fast_key {
        install::fastpath::store(&cachedir, key, &inputhash)?;
    }
    let unchanged = !req.force_nocache
        && match (&previous_inputhash, previous.checksum()) {
            (Some(h), _) => *h == inputhash,
            (None, Some(_)) => {
                progress::note(
                    "Previous commit found, but without rpmostree.inputhash metadata key",
                );
                false
            }
            (None, None) => false,
        };
    if req.dry_run {
        if unchanged {
            println!("No apparent changes since previous commit.");
        } else {
            println!(
                "--dry-run complete{}; exiting",
                req.touch_if_changed
                    .as_ref()
                    .map(|p| format!(", updating --touch-if-changed={}", p.display()))
                    .unwrap_or_default()
            );
            touch_if_changed(req.touch_if_changed.as_deref())?;
        }
        return Ok(TreeOutcome::DryRun {
            changed: !unchanged,
        });
    }
    if unchanged {
        println!("No apparent changes since previous commit; use --force-nocache to override");
        let previous = previous.checksum().unwrap_or_default().to_string();
        return Ok(TreeOutcome::Unchanged { previous });
    }
    if req.download_only {
        let t = Instant::now();
        progress::phase("download", "Downloading packages into the cache");
        dnf.download(&install_req, &resolution)?;
        progress::done("download", "done", t.elapsed().as_secs_f64());
        return Ok(TreeOutcome::DownloadOnly);
    }

    // Install into a fresh root in a work directory beside the cache.
    remove_stale_workdirs(&cachedir);
    let workdir = tempfile::Builder::new()
        .prefix(WORKDIR_PREFIX)
        .tempdir_in(&cachedir)
        .with_context(|| format!("Creating a work directory in {}", cachedir.display()))?;
    let _workdir_lock = lock_workdir(workdir.path())?;
    let rootfs_tmp = workdir.path().join("rootfs.tmp");
    std::fs::create_dir_all(&rootfs_tmp)
        .with_context(|| format!("Creating {}", rootfs_tmp.display()))?;
    // Read once: injected before the install, checked against after it.
    let prev_passwd = previous_passwd(&previous)?;
    super::postprocess_run::inject_passwd(&treefile, &prev_passwd, &rootfs_tmp)?;
    let t = Instant::now();
    progress::phase(
        "install",
        &format!("Installing {} packages", resolution.packages.len()),
    );
    let pkgcache = if req.package_cache {
        Some(install::pkgcache::PackageCache::open(&cachedir)?)
    } else {
        None
    };
    // Files of the package cache can be copied into the repository while
    // the root is post-processed. Importing a first compose's packages
    // before installing pays off only when those copies are hidden behind
    // the kernel step (depmod, dracut): without it (`container: true`) they
    // land on the commit, and rpm's install, whose files the commit renames,
    // was as fast or faster (corpus-medium, interleaved: 3.3-3.9 s against
    // 3.4-4.7 s in one series, 3.1-3.7 s against 3.3-3.6 s in another). The one-shot's
    // spare core deflates the archive's objects instead: there too, rpm
    // installs a first compose.
    let stage_ahead = ostree_commit::prestage::applies(&repo, &req.repo, &rootfs_tmp)?;
    let import_first = stage_ahead && req.installed_files.is_none() && !treefile.config.container();
    let installed = match (&pkgcache, &req.installed_files) {
        (Some(cache), sink) => dnf.install_cached(
            &install_req,
            &resolution,
            &rootfs_tmp,
            cache,
            sink.as_ref(),
            match import_first {
                true => install::ColdCache::ImportFirst,
                // No dracut to slow down, and nobody reading rpm's files:
                // the cache fill takes the core rpm leaves idle.
                false if treefile.config.container() && sink.is_none() => {
                    install::ColdCache::FillBeside
                }
                false => install::ColdCache::FillAfter,
            },
        )?,
        (None, Some(sink)) => {
            dnf.install_reporting(&install_req, &resolution, &rootfs_tmp, sink)?;
            install::Installed::ByRpm { filling: None }
        }
        (None, None) => {
            dnf.install(&install_req, &resolution, &rootfs_tmp)?;
            install::Installed::ByRpm { filling: None }
        }
    };
    let (assembled, mut filling) = match installed {
        install::Installed::Assembled(a) => (Some(a), None),
        install::Installed::ByRpm { filling } => (None, filling),
    };
    drop(dnf);
    let pre_stager = match &assembled {
        Some(a) if stage_ahead => ostree_commit::prestage::PreStager::start(
            &repo,
            &req.repo,
            &rootfs_tmp,
            a.ahead_files(),
        )?,
        _ => None,
    };
    progress::done("install", "done", t.elapsed().as_secs_f64());

    // Post-process: treefile steps, root preparation, final steps, checks.
    let t = Instant::now();
    progress::phase("postprocess", "Post-processing the root");
    let rootfs = workdir.path().join("rootfs");
    let run_cache = req
        .initramfs_cache
        .then(|| crate::postprocess::kernel::RunCacheOptions {
            cachedir: cachedir.clone(),
            known: assembled.as_ref().map(|a| std::sync::Arc::clone(&a.known)),
            learned: Default::default(),
            feed: req.installed_files.clone(),
        });
    let learned = run_cache.as_ref().map(|o| o.learned.clone());
    let report = super::postprocess_run::run(
        &treefile,
        &rootfs_tmp,
        &rootfs,
        version.as_deref(),
        &prev_passwd,
        req.source_date_epoch,
        crate::postprocess::kernel::ToolRuns {
            run_cache,
            dracut_plain_copy: req.dracut_plain_copy,
        },
    )?;
    progress::done("postprocess", "done", t.elapsed().as_secs_f64());

    // Commit; the package cache may now be filled beside it.
    if let Some(fill) = filling.as_mut() {
        fill.start_in_background();
    }
    let t = Instant::now();
    progress::phase("commit", &format!("Committing to {}", req.repo.display()));
    let installed = install::installed_packages(&rootfs)?;
    metadata::apply_compose_metadata(
        &treefile,
        &mut meta,
        &inputhash,
        &installed,
        &resolution,
        report.kernel_version.as_deref(),
    );
    let parent_spec = match &req.parent {
        ParentChoice::None => ostree_commit::ParentSpec::None,
        ParentChoice::Rev(r) => ostree_commit::ParentSpec::Rev(r.clone()),
        ParentChoice::Auto => match previous.checksum() {
            Some(c) => ostree_commit::ParentSpec::Rev(c.to_string()),
            None => ostree_commit::ParentSpec::None,
        },
    };
    let parent = ostree_commit::resolve_parent(&repo, treeref.as_deref(), &parent_spec)?;
    let write_ref = req.write_commitid_to.is_none();
    let mut commit_opts = ostree_commit::CommitOptions::new(&rootfs);
    commit_opts.ref_ = treeref.clone();
    commit_opts.write_ref = write_ref && treeref.is_some();
    commit_opts.parent = match &parent {
        Some(p) => ostree_commit::ParentSpec::Rev(p.clone()),
        None => ostree_commit::ParentSpec::None,
    };
    commit_opts.metadata = meta;
    commit_opts.timestamp = req.source_date_epoch;
    commit_opts.selinux = treefile.config.selinux();
    commit_opts.consume = true;
    commit_opts.gpg_key = treefile.config.gpg_key.clone();
    commit_opts.known_contents = known_for_commit(
        assembled.as_ref().map(|a| a.known.as_ref()),
        [learned.as_deref(), req.installed_known.as_deref()],
    );
    commit_opts.pre_stager = pre_stager;
    let result = ostree_commit::commit_rootfs(&repo, &commit_opts)?;
    if let Some(assembled) = assembled {
        assembled.release()?;
    }

    progress::done(
        "commit",
        &format!(
            "{} ({} of {} content objects written)",
            result.checksum, result.stats.content_written, result.stats.content_total
        ),
        t.elapsed().as_secs_f64(),
    );
    let ref_moved = result.ref_written.clone();
    match &ref_moved {
        Some(r) => println!("{r} => {}", result.checksum),
        None => println!("Wrote commit: {}", result.checksum),
    }
    if let Some(path) = &req.write_commitid_to {
        super::composejson::write_atomic(path, result.checksum.as_bytes())
            .with_context(|| format!("Writing --write-commitid-to {}", path.display()))?;
    }
    let mut composejson = super::report::compose_json(
        &repo,
        &result,
        ref_moved.as_deref(),
        version.as_deref(),
        &inputhash,
        parent.as_deref(),
        &installed,
    )?;
    composejson.kernel = report.kernel.clone();
    if let Some(path) = &req.write_composejson_to {
        super::composejson::write_atomic(path, composejson.to_json_pretty().as_bytes())
            .with_context(|| format!("Writing --write-composejson-to {}", path.display()))?;
    }
    touch_if_changed(req.touch_if_changed.as_deref())?;
    progress::note(&format!(
        "Compose finished in {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(TreeOutcome::Committed(Box::new(Committed {
        checksum: result.checksum.clone(),
        ref_moved,
        treeref,
        version,
        inputhash,
        parent,
        composejson,
        basearch: treefile.basearch.clone(),
        cache_fill: filling,
    })))
}

enum Previous {
    Local(CommitInfo),
    Fallback(FallbackPrevious),
    None,
}

impl Previous {
    fn checksum(&self) -> Option<&str> {
        match self {
            Previous::Local(i) => Some(i.checksum()),
            Previous::Fallback(f) => Some(&f.checksum),
            Previous::None => None,
        }
    }
}

fn find_previous(
    repo: &ostree::Repo,
    req: &TreeRequest,
    treeref: Option<&str>,
) -> Result<Previous> {
    if let Some(rev) = &req.previous_commit {
        let info = CommitInfo::load(repo, rev).map_err(|e| {
            crate::exit::invalid_input(format!(
                "--previous-commit {rev} does not resolve in {}: {e:#}; give an existing ref or commit checksum",
                req.repo.display()
            ))
        })?;
        return Ok(Previous::Local(info));
    }
    if let Some(r) = treeref {
        if let Some(info) = CommitInfo::load_optional(repo, r)? {
            return Ok(Previous::Local(info));
        }
    }
    Ok(match &req.fallback_previous {
        Some(f) => Previous::Fallback(f.clone()),
        None => Previous::None,
    })
}

/// passwd/group of the previous commit, for `preserve-passwd` and `check-*: previous`.
fn previous_passwd(previous: &Previous) -> Result<crate::postprocess::passwd::PreviousPasswd> {
    let mut out = crate::postprocess::passwd::PreviousPasswd::default();
    if let Previous::Local(info) = previous {
        let text = |path: &str| -> Result<Option<String>> {
            Ok(info
                .read_file(path)?
                .map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        out.etc_passwd = text("/usr/etc/passwd")?;
        out.lib_passwd = text("/usr/lib/passwd")?;
        out.etc_group = text("/usr/etc/group")?;
        out.lib_group = text("/usr/lib/group")?;
    }
    Ok(out)
}

/// The checksums the commit may take: the package cache's, and those the
/// run cache computed while fingerprinting depmod's and dracut's inputs.
fn known_for_commit(
    assembled: Option<&KnownContents>,
    gathered: [Option<&std::sync::Mutex<KnownContents>>; 2],
) -> Option<std::sync::Arc<KnownContents>> {
    let gathered: Vec<_> = gathered
        .into_iter()
        .flatten()
        .map(|k| k.lock().unwrap_or_else(|e| e.into_inner()))
        .collect();
    if assembled.is_none() && gathered.is_empty() {
        return None;
    }
    let mut all = KnownContents::default();
    for k in assembled.into_iter().chain(gathered.iter().map(|g| &**g)) {
        all.extend_from(k);
    }
    Some(std::sync::Arc::new(all))
}

fn install_request(treefile: &Treefile, req: &TreeRequest, cachedir: &Path) -> InstallRequest {
    let c = &treefile.config;
    InstallRequest {
        repos_dir: treefile.dir.clone(),
        repos: c.repos.clone(),
        lockfile_repos: c.lockfile_repos.clone().unwrap_or_default(),
        releasever: c.releasever.as_ref().map(|r| r.to_string()),
        basearch: treefile.basearch.clone(),
        repovars: c.repovars.clone().unwrap_or_default(),
        packages: c.packages().into_iter().collect(),
        repo_packages: c
            .repo_packages
            .iter()
            .flatten()
            .map(|rp| (rp.repo.clone(), rp.packages.iter().cloned().collect()))
            .collect(),
        exclude_packages: c.exclude_packages.clone().unwrap_or_default(),
        recommends: c.recommends(),
        documentation: c.documentation(),
        install_langs: c.install_langs.clone().unwrap_or_default(),
        lockfiles: req.lockfiles.clone(),
        lockfile_strict: req.lockfile_strict,
        cachedir: cachedir.to_path_buf(),
        cache_only: req.cache_only,
        proxy: req.proxy.clone(),
    }
}

fn print_transaction(res: &Resolution) {
    if progress::is_json() {
        return;
    }
    println!("Resolved {} packages:", res.packages.len());
    for p in &res.packages {
        println!("  {} ({})", p.nevra(), p.repo);
    }
}

const WORKDIR_PREFIX: &str = "compose-";
const WORKDIR_LOCK: &str = ".in-use.lock";

/// Hold an flock on `<workdir>/.in-use.lock` for the whole compose, so that a
/// later compose can tell a work directory left by a killed one (lock free)
/// from one in use by a concurrent compose sharing the cache (lock held).
fn lock_workdir(workdir: &Path) -> Result<std::fs::File> {
    let path = workdir.join(WORKDIR_LOCK);
    let file =
        std::fs::File::create(&path).with_context(|| format!("Creating {}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .with_context(|| format!("Locking {}", path.display()))?;
    Ok(file)
}

/// Remove work directories that killed composes left in the cache (each
/// holds a whole root filesystem). Only directories whose in-use lock exists
/// and is free are removed; failures are reported, never fatal.
fn remove_stale_workdirs(cachedir: &Path) {
    let Ok(entries) = std::fs::read_dir(cachedir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(WORKDIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(lock) = std::fs::File::open(dir.join(WORKDIR_LOCK)) else {
            continue;
        };
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => progress::note(&format!(
                "Removed {} left by an interrupted compose",
                dir.display()
            )),
            Err(e) => progress::note(&format!(
                "warning: could not remove {} left by an interrupted compose: {e}",
                dir.display()
            )),
        }
    }
}

/// `--parent` must name a commit in the repo. Checked before anything is
/// installed: a full checksum of a missing commit would otherwise only fail
/// after the commit was written and the ref moved.
fn check_parent_exists(
    repo: &ostree::Repo,
    req: &TreeRequest,
    treeref: Option<&str>,
) -> Result<()> {
    let ParentChoice::Rev(rev) = &req.parent else {
        return Ok(());
    };
    let spec = ostree_commit::ParentSpec::Rev(rev.clone());
    if let Some(checksum) = ostree_commit::resolve_parent(repo, treeref, &spec)? {
        if !ostree_commit::read::has_commit(repo, &checksum)? {
            return Err(crate::exit::invalid_input(format!(
                "--parent {rev}: no such commit in {}; give an existing ref or commit checksum, or drop --parent",
                req.repo.display()
            )));
        }
    }
    Ok(())
}

/// The files written after the commit must have a directory to go into:
/// checked first, so a typo does not leave a commit (and a moved ref) behind
/// a failed run.
fn check_output_dirs(req: &TreeRequest) -> Result<()> {
    let outputs = [
        ("--write-commitid-to", &req.write_commitid_to),
        ("--write-composejson-to", &req.write_composejson_to),
        ("--touch-if-changed", &req.touch_if_changed),
        ("--ex-write-lockfile-to", &req.write_lockfile_to),
    ];
    for (flag, path) in outputs {
        let Some(path) = path else { continue };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(crate::exit::invalid_input(format!(
                "{flag} {}: the directory {} does not exist; create it first",
                path.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// An empty (or whitespace-only) manifest parses as an empty treefile, which
/// would "compose" a tree of nothing; it is almost certainly a mistake.
fn refuse_empty_manifest(path: &Path) -> Result<()> {
    let bytes =
        std::fs::read(path).with_context(|| format!("Reading manifest {}", path.display()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(crate::exit::invalid_input(format!(
            "{}: the manifest is empty; it needs at least `repos` and `packages` (and `ref` to update a branch)",
            path.display()
        )));
    }
    Ok(())
}

fn touch_if_changed(path: Option<&Path>) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("Opening --touch-if-changed {}", path.display()))?;
    f.set_modified(std::time::SystemTime::now())
        .with_context(|| format!("Touching {}", path.display()))?;
    Ok(())
}

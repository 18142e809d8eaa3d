//! Install packages into a fresh root through the host's dnf.
//!
//! Three steps the compose driver calls in order, so it can stop after any:
//! [`resolve`] (depsolve only: the input hash, `--dry-run`, lockfile writing
//! and change detection need nothing more), [`download`] (fetch the RPMs into
//! the cache: `--download-only`), and [`install`] (put exactly the resolved
//! set into a root with `--installroot`; RPM scriptlets run). The rpmdb ends
//! up in `ROOT/usr/share/rpm` (sqlite); [`installed_packages`] reads it back.
//!
//! Not here: parsing `.repo` files ([`crate::repos`]), the treefile, and any
//! post-processing of the root.

pub mod assemble;
mod dnf;
pub mod fastpath;
pub mod filefeed;
pub mod lockfile;
mod nosyncfs;
pub mod pkgcache;
pub mod rpmdb;
pub mod rpmpayload;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use rpmdb::{installed_packages, InstalledPackage};

/// Make a helper process die with the compose: when the compose is killed
/// (SIGKILL leaves no chance to clean up), the kernel sends the child
/// SIGKILL too (`PR_SET_PDEATHSIG`), instead of leaving dnf or a script
/// running orphaned, writing into a work directory the next run removes.
/// The signal follows the spawning *thread*: spawn from a thread that lives
/// as long as the child (all callers spawn from the compose's own thread).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl: nothing would send the signal.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Everything the installer needs from the treefile and the command line.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// Directory holding the `.repo` files (the top-level treefile's directory).
    pub repos_dir: PathBuf,
    /// `repos`: ids to enable; `None`/empty = those with `enabled=1`.
    pub repos: Option<Vec<String>>,
    /// `lockfile-repos`: enabled only when `lockfiles` is non-empty.
    pub lockfile_repos: Vec<String>,
    /// `releasever`; `None` → `rpmostree-unset-releasever` as rpm-ostree does.
    pub releasever: Option<String>,
    pub basearch: String,
    /// `repovars`: extra dnf variables for the `.repo` files.
    pub repovars: BTreeMap<String, String>,
    /// `packages`: names, provides, `'foo >= 1.0'`, NEVRAs, globs, file paths.
    pub packages: Vec<String>,
    /// `repo-packages`: (repo id, package specs) that must come from that repo.
    pub repo_packages: Vec<(String, Vec<String>)>,
    /// `exclude-packages`: exact names.
    pub exclude_packages: Vec<String>,
    /// `recommends`: install weak dependencies.
    pub recommends: bool,
    /// `documentation`: false → rpm `nodocs`.
    pub documentation: bool,
    /// `install-langs` → `%_install_langs`.
    pub install_langs: Vec<String>,
    /// `--ex-lockfile` paths, merged in order.
    pub lockfiles: Vec<PathBuf>,
    /// `--ex-lockfile-strict`.
    pub lockfile_strict: bool,
    /// rpm-md metadata and downloaded RPMs live here and are reused.
    pub cachedir: PathBuf,
    /// `--cache-only`: never refresh metadata (dnf -C).
    pub cache_only: bool,
    pub proxy: Option<String>,
}

impl InstallRequest {
    /// A request with the treefile defaults (`recommends` and `documentation`
    /// on, no packages, all `enabled=1` repositories).
    pub fn new(repos_dir: &Path, cachedir: &Path, basearch: &str) -> InstallRequest {
        InstallRequest {
            repos_dir: repos_dir.to_path_buf(),
            cachedir: cachedir.to_path_buf(),
            basearch: basearch.to_string(),
            recommends: true,
            documentation: true,
            ..Default::default()
        }
    }
}

/// One package of the depsolved transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPackage {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// Repository id it comes from.
    pub repo: String,
    /// rpm-md checksum, `"sha256:<hex>"`.
    pub checksum: String,
    /// Source RPM file name.
    pub sourcerpm: String,
    pub download_size: u64,
}

impl ResolvedPackage {
    /// `name-[epoch:]version-release.arch`
    pub fn nevra(&self) -> String {
        if self.epoch == 0 {
            format!(
                "{}-{}-{}.{}",
                self.name, self.version, self.release, self.arch
            )
        } else {
            format!(
                "{}-{}:{}-{}.{}",
                self.name, self.epoch, self.version, self.release, self.arch
            )
        }
    }
}

/// An enabled repository and the newest timestamp in its `repomd.xml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    pub id: String,
    pub timestamp: i64,
}

/// The result of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Sorted by name, then EVR (rpm order), then arch.
    pub packages: Vec<ResolvedPackage>,
    /// Enabled repositories, sorted by id.
    pub repos: Vec<RepoState>,
}

impl Resolution {
    /// Total download size in bytes.
    pub fn download_size(&self) -> u64 {
        self.packages.iter().map(|p| p.download_size).sum()
    }
}

/// The repositories `req` enables: `repos` (or those with `enabled=1`), plus
/// `lockfile-repos` when lockfiles are given.
pub(crate) fn enabled_repos(req: &InstallRequest) -> Result<Vec<crate::repos::RepoDef>> {
    let all = crate::repos::load_repo_dir(&req.repos_dir)?;
    crate::repos::select_repos(&all, req.repos.as_deref(), active_lockfile_repos(req))
}

/// `lockfile-repos` count only when lockfiles are given.
pub(crate) fn active_lockfile_repos(req: &InstallRequest) -> &[String] {
    if req.lockfiles.is_empty() {
        &[]
    } else {
        &req.lockfile_repos
    }
}

/// One dnf helper for the steps of one compose: [`Session::resolve`] then
/// [`Session::install`] on the same session reuse the resolve's loaded
/// metadata and depsolve instead of starting dnf again.
pub struct Session(dnf::Session);

impl Session {
    pub fn start() -> Result<Session> {
        Ok(Session(dnf::Backend::detect()?.session()?))
    }

    /// Depsolve `req` without installing anything. Refreshes rpm-md metadata
    /// into `req.cachedir` unless `req.cache_only`.
    pub fn resolve(&mut self, req: &InstallRequest) -> Result<Resolution> {
        self.0.resolve(req)
    }

    /// Download the RPMs of `res` into the cache (and check signatures where
    /// the repository has `gpgcheck=1`), without installing.
    pub fn download(&mut self, req: &InstallRequest, res: &Resolution) -> Result<()> {
        self.0.download(req, res)
    }

    /// Install exactly the packages of `res` into `root` (a fresh, empty or
    /// non-existent directory). Scriptlets run; any scriptlet failure fails.
    pub fn install(&mut self, req: &InstallRequest, res: &Resolution, root: &Path) -> Result<()> {
        self.0.install(req, res, root, None)
    }

    /// Install `res` into `root` (fresh, empty) from the package cache when
    /// that is exact for this transaction (see [`assemble`]), else with
    /// rpm as [`Session::install`] does.
    ///
    /// When the cache lacks most of the packages (a first compose), as
    /// `cold` says:
    /// - with [`ColdCache::ImportFirst`], the packages are imported first, on every
    ///   core, and the root is assembled from the cache. For a caller that
    ///   copies the cache's files into its repository while it
    ///   post-processes ([`crate::commit::prestage`]): each payload is then
    ///   decompressed and checksummed once.
    /// - otherwise rpm installs them, which writes each file once and lets
    ///   the commit adopt it, and the caller fills the cache once its
    ///   outputs are written ([`CacheFill`]). That decompresses every
    ///   payload twice, but leaves a core free during rpm's transaction for
    ///   a caller that uses it (the one-shot deflates the archive's objects
    ///   there). With [`ColdCache::FillBeside`] (a caller with nothing else
    ///   for that core, and no dracut to come) the fill starts there, beside
    ///   rpm's transaction.
    pub fn install_cached<'a>(
        &mut self,
        req: &InstallRequest,
        res: &Resolution,
        root: &Path,
        cache: &'a pkgcache::PackageCache,
        files: Option<&InstalledFilesSink>,
        cold: ColdCache,
    ) -> Result<Installed<'a>> {
        let located = self.0.locate(req, res)?;
        if let Some(blocked) = &located.blocked {
            return self.install_with_rpm(req, res, root, files, blocked);
        }
        if let Err(e) = assemble::check_hardlinks(cache, root) {
            return self.install_with_rpm(req, res, root, files, &format!("{e:#}"));
        }
        let mut entries = HashMap::new();
        let mut missing = Vec::new();
        for p in &located.packages {
            let key = assemble::cache_key(&p.checksum);
            match cache.get(&key)? {
                Some(entry) => {
                    entries.insert(key, entry);
                }
                None => missing.push((key, p.rpm.clone())),
            }
        }
        if missing.len() * 2 > located.packages.len() && cold != ColdCache::ImportFirst {
            let mut filling = CacheFill::new(cache.reopen()?, missing);
            if cold == ColdCache::FillBeside {
                filling.start_in_background();
            }
            self.0.install(req, res, root, files)?;
            eprintln!(
                "Package cache: {} of {} packages missing; importing them {}",
                filling.missing.len(),
                located.packages.len(),
                match cold {
                    ColdCache::FillBeside => "beside rpm's transaction",
                    _ => "after the post-processing",
                }
            );
            return Ok(Installed::ByRpm {
                filling: Some(filling),
            });
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let t = std::time::Instant::now();
        match cache.import_all(&missing, threads) {
            Ok(imported) => entries.extend(imported.into_iter().map(|e| (e.key.clone(), e))),
            Err(e) => {
                let why = format!("the package cache could not import a package: {e:#}");
                return self.install_with_rpm(req, res, root, files, &why);
            }
        }
        eprintln!(
            "Package cache: {} of {} packages imported in {:.1}s",
            missing.len(),
            located.packages.len(),
            t.elapsed().as_secs_f64()
        );
        eprintln!(
            "Installing {} packages into {}",
            res.packages.len(),
            root.display()
        );
        // While the helper plans and rpm writes the rpmdb, a thread reads
        // the cache entries' directories and inodes the checkout links from
        // (cold on disk after a while). Only a hint: not waited for.
        let trees = entries.values().map(|e| e.tree.clone()).collect();
        std::thread::spawn(move || assemble::prefetch(trees));
        let packages = match self.0.plan_cached(req, res, root)? {
            assemble::PlanOutcome::Blocked { blocked } => {
                return self.install_with_rpm(req, res, root, files, &blocked);
            }
            assemble::PlanOutcome::Planned { packages } => packages,
        };
        // rpm writes the rpmdb while the files are put in place.
        self.0.start_rpmdb()?;
        let mut runner = HelperScriptlets(&mut self.0);
        assemble::assemble(root, &packages, cache, &entries, &mut runner, files)
            .map(Installed::Assembled)
    }

    /// [`Session::install_cached`]'s way out: rpm installs, with a note why.
    fn install_with_rpm<'a>(
        &mut self,
        req: &InstallRequest,
        res: &Resolution,
        root: &Path,
        files: Option<&InstalledFilesSink>,
        why: &str,
    ) -> Result<Installed<'a>> {
        eprintln!("note: installing with rpm, not from the package cache: {why}");
        self.0.install(req, res, root, files)?;
        Ok(Installed::ByRpm { filling: None })
    }

    /// [`Session::install`], telling `files` each package's regular files
    /// as soon as rpm has put them in place (before the next package).
    pub fn install_reporting(
        &mut self,
        req: &InstallRequest,
        res: &Resolution,
        root: &Path,
        files: &InstalledFilesSink,
    ) -> Result<()> {
        self.0.install(req, res, root, Some(files))
    }
}

/// What [`Session::install_cached`] does when the package cache lacks most
/// of the packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdCache {
    /// Import every package first, on every core, then assemble the root.
    ImportFirst,
    /// rpm installs; the caller fills the cache once post-processing is done.
    FillAfter,
    /// rpm installs; the cache fill starts beside rpm's transaction.
    FillBeside,
}

/// How [`Session::install_cached`] installed the root.
pub enum Installed<'a> {
    /// rpm installed it; `filling`: what to import into the package cache
    /// for the next compose once the outputs are written.
    ByRpm { filling: Option<CacheFill> },
    /// Assembled from the cache: hand its known checksums to the commit and
    /// call [`assemble::Assembled::release`] afterwards.
    Assembled(assemble::Assembled<'a>),
}

/// Packages to import into the package cache for the next compose. Not
/// while the root is post-processed: importing beside dracut (corpus-large's
/// one-shot, on 2 cores) made dracut take 7.2 s instead of 3.1 s, and beside
/// rpm's transaction *and* the one-shot's deflating it slowed rpm by half.
/// The caller starts it in the background once post-processing is done, or
/// when rpm starts for a tree without a kernel step that nothing else reads
/// during the install (`compose tree` of corpus-medium: 0.16 s faster on
/// average over 24 interleaved pairs, rpm's transaction 0.1-0.2 s slower)
/// ([`CacheFill::start_in_background`]: one package at a time, at the
/// lowest priority, so the commit and the export come first) and finishes
/// it on every core once its outputs are written ([`CacheFill::run`]).
/// Dropped without `run` (the compose failed), it stops after the package
/// being imported: the next compose imports the rest.
pub struct CacheFill {
    cache: Arc<pkgcache::PackageCache>,
    missing: Arc<Vec<(String, PathBuf)>>,
    background: Option<BackgroundFill>,
}

/// The thread of [`CacheFill::start_in_background`] and its stop flag.
struct BackgroundFill {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl BackgroundFill {
    /// Stop after the package being imported; its error, if it failed.
    fn stop(self) -> Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the package cache import thread panicked")))
    }
}

impl std::fmt::Debug for CacheFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheFill({} packages)", self.missing.len())
    }
}

impl CacheFill {
    fn new(cache: pkgcache::PackageCache, mut missing: Vec<(String, PathBuf)>) -> CacheFill {
        // Largest first, as `import_all` orders them: the last ones, which
        // `run` may import on every core, are then the small ones.
        missing.sort_by_cached_key(|(_, rpm)| {
            std::cmp::Reverse(std::fs::metadata(rpm).map_or(0, |m| m.len()))
        });
        CacheFill {
            cache: Arc::new(cache),
            missing: Arc::new(missing),
            background: None,
        }
    }

    /// Start importing on a thread of its own, one package at a time, at the
    /// lowest priority; [`CacheFill::run`] finishes the rest.
    pub fn start_in_background(&mut self) {
        if self.background.is_some() {
            return;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, cache, missing) = (stop.clone(), self.cache.clone(), self.missing.clone());
        let spawned = std::thread::Builder::new()
            .name("pkgcache-fill".into())
            .spawn(move || -> Result<()> {
                crate::threads::lower_priority(19);
                for (key, rpm) in missing.iter() {
                    if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    cache.import(key, rpm)?;
                }
                Ok(())
            });
        match spawned {
            Ok(thread) => self.background = Some(BackgroundFill { stop, thread }),
            // `run` imports everything then.
            Err(e) => eprintln!("note: no thread to fill the package cache in the background: {e}"),
        }
    }

    /// Import what is still missing, on every core. A failure only makes the
    /// next compose slower: it is reported as a warning.
    pub fn run(mut self) {
        let t = std::time::Instant::now();
        if let Some(background) = self.background.take() {
            if let Err(e) = background.stop() {
                eprintln!("warning: filling the package cache in the background failed: {e:#}");
            }
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        match self.cache.import_all(&self.missing, threads) {
            Ok(imported) => eprintln!(
                "Package cache: {} packages imported for the next compose (the last ones in {:.1}s)",
                imported.len(),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("warning: filling the package cache failed: {e:#}"),
        }
    }
}

impl Drop for CacheFill {
    /// Without [`CacheFill::run`]: stop the background import (its error
    /// only means the next compose imports more).
    fn drop(&mut self) {
        if let Some(background) = self.background.take() {
            if let Err(e) = background.stop() {
                eprintln!("note: filling the package cache stopped: {e:#}");
            }
        }
    }
}

/// Scriptlets run by the session's dnf helper.
struct HelperScriptlets<'a>(&'a mut dnf::Session);

impl assemble::ScriptletRunner for HelperScriptlets<'_> {
    fn run(&mut self, index: usize, kind: &str) -> Result<()> {
        // Waits for the rpmdb first (the helper answers in order).
        self.0.run_scriptlet(index, kind)
    }

    fn finish_rpmdb(&mut self) -> Result<()> {
        self.0.finish_rpmdb()
    }
}

/// Receives the install root and the paths (relative to it) of one
/// package's regular files, as the package lists them (some may be missing,
/// e.g. documentation with `documentation: false`), once rpm has installed
/// that package. Called on the installing thread: it should only hand the
/// list on.
#[derive(Clone)]
pub struct InstalledFilesSink {
    callback: Arc<FilesCallback>,
    quiet: Option<Arc<filefeed::FeedQuiet>>,
}

/// Regular files up to this size are reported to an [`InstalledFilesSink`]
/// (the dnf helper's `REPORT_MAX_SIZE` is the same bound).
pub const REPORTED_FILE_MAX: u64 = 64 << 20;

/// The callback behind an [`InstalledFilesSink`]: install root, relative paths.
type FilesCallback = dyn Fn(&Path, Vec<PathBuf>) + Send + Sync;

impl InstalledFilesSink {
    pub fn new(f: impl Fn(&Path, Vec<PathBuf>) + Send + Sync + 'static) -> InstalledFilesSink {
        InstalledFilesSink {
            callback: Arc::new(f),
            quiet: None,
        }
    }

    /// A sink whose receiver can be made quiet ([`Self::quiet_opens`]).
    pub fn with_quiet(
        quiet: Arc<filefeed::FeedQuiet>,
        f: impl Fn(&Path, Vec<PathBuf>) + Send + Sync + 'static,
    ) -> InstalledFilesSink {
        InstalledFilesSink {
            callback: Arc::new(f),
            quiet: Some(quiet),
        }
    }

    pub(crate) fn send(&self, root: &Path, files: Vec<PathBuf>) {
        (self.callback)(root, files)
    }

    /// Until the guard is dropped, whatever reads the reported files opens
    /// none of them: it opens up to `max` right now and works on those
    /// (see [`filefeed`]). `None`: this sink's receiver never opens files
    /// later.
    pub fn quiet_opens(&self, max: usize) -> Option<filefeed::QuietGuard> {
        self.quiet.as_ref().map(|q| q.hold(max))
    }
}

impl std::fmt::Debug for InstalledFilesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstalledFilesSink")
    }
}

/// [`Session::resolve`] on a session of its own.
pub fn resolve(req: &InstallRequest) -> Result<Resolution> {
    Session::start()?.resolve(req)
}

/// [`Session::download`] on a session of its own.
pub fn download(req: &InstallRequest, res: &Resolution) -> Result<()> {
    Session::start()?.download(req, res)
}

/// [`Session::install`] on a session of its own.
pub fn install(req: &InstallRequest, res: &Resolution, root: &Path) -> Result<()> {
    Session::start()?.install(req, res, root)
}

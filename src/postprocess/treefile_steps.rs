//! Treefile post-processing (§4.4): the steps driven by treefile keys, run on
//! the freshly installed root (`rootfs.tmp`) before it is prepared for commit.
//!
//! Each step is a small public function taking the root as a [`Dir`] and plain
//! parameters; [`run_treefile_steps`] runs them in rpm-ostree's order. The
//! caller maps treefile fields to [`TreefileStepsOptions`]; nothing here knows
//! the treefile type. Root preparation (§4.5) and the final host integration
//! (§4.7) live elsewhere. `remove-from-packages` ([`remove_from_package`]) is
//! here too but is called by the installer stage, where files are known per
//! package through the rpm database.

use cap_std_ext::cap_std::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;

use super::common::{self, RPMDB_DIR, TRADITIONAL_RPMDB_DIR, TRADITIONAL_RPMDB_LINK};
use super::fsutil;
use super::prepare_rootfs::OptUsrLocal;
use super::scripts::{self, PostprocessScripts};
use crate::exit::invalid_input;

/// Directory of the `_dbpath` macro file.
pub const RPM_MACROS_DIR: &str = "usr/lib/rpm/macros.d";
/// The macro file pointing rpm at `/usr/share/rpm`.
pub const RPM_MACRO_FILE: &str = "usr/lib/rpm/macros.d/macros.rpm-ostree";
/// Where `units` are enabled.
pub const MULTI_USER_WANTS: &str = "usr/etc/systemd/system/multi-user.target.wants";
/// The systemd default target link.
pub const DEFAULT_TARGET: &str = "usr/lib/systemd/system/default.target";
/// Where the state-overlay units are enabled.
pub const LOCAL_FS_REQUIRES: &str = "usr/lib/systemd/system/local-fs.target.requires";
/// The state-overlay unit instances for `/usr/lib/opt` and `/usr/local`.
pub const STATE_OVERLAY_UNITS: &[&str] = &[
    "ostree-state-overlay@usr-lib-opt.service",
    "ostree-state-overlay@usr-local.service",
];
/// Where the flattened treefile is recorded in the tree.
pub const TREEFILE_JSON: &str = "usr/share/rpm-ostree/treefile.json";
/// The sysimage rpmdb compat link and its target.
pub const SYSIMAGE_RPMDB: &str = "usr/lib/sysimage/rpm";
pub const SYSIMAGE_RPMDB_LINK: &str = "../../share/rpm";

/// One `add-files` entry with its content already read by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddFile {
    /// Destination as written in the treefile (`/etc/foo`, `usr/share/x`).
    pub dest: String,
    /// File content.
    pub contents: Vec<u8>,
    /// Permission bits of the source file (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Everything the treefile steps need, mapped from the treefile by the caller.
#[derive(Debug, Clone, Default)]
pub struct TreefileStepsOptions {
    /// `units`: enabled in `multi-user.target.wants`.
    pub units: Vec<String>,
    /// `default-target`.
    pub default_target: Option<String>,
    /// `opt-usrlocal` (only `state-overlay` matters here).
    pub opt_usrlocal: OptUsrLocal,
    /// Pretty JSON of the flattened treefile for `usr/share/rpm-ostree/treefile.json`.
    pub treefile_json: Option<String>,
    /// `mutate-os-release`: the base version string to replace.
    pub mutate_os_release: Option<String>,
    /// The commit version (used by `mutate-os-release`).
    pub version: Option<String>,
    /// `remove-files`: root-relative paths.
    pub remove_files: Vec<String>,
    /// `add-files`.
    pub add_files: Vec<AddFile>,
    /// `postprocess` and `postprocess-script`.
    pub scripts: PostprocessScripts,
}

impl TreefileStepsOptions {
    /// Check every input up front (unit names, paths, script shebangs) so a
    /// bad value fails before the root is touched. Errors are invalid input.
    pub fn validate(&self) -> Result<()> {
        for unit in &self.units {
            check_unit_name(unit).map_err(|m| invalid_input(format!("units: {m}")))?;
        }
        if let Some(t) = &self.default_target {
            check_unit_name(t).map_err(|m| invalid_input(format!("default-target: {m}")))?;
        }
        for p in &self.remove_files {
            fsutil::check_relative_inside(p)
                .map_err(|m| invalid_input(format!("remove-files: {m}")))?;
        }
        for f in &self.add_files {
            check_add_files_dest(&f.dest).map_err(invalid_input)?;
        }
        scripts::check_scripts(&self.scripts)
    }
}

/// Run §4.4 a-m in order on the installed root at `root_path` (inputs are
/// validated first, see [`TreefileStepsOptions::validate`]).
pub fn run_treefile_steps(root_path: &Path, opts: &TreefileStepsOptions) -> Result<()> {
    opts.validate()?;
    let root = fsutil::open_root(root_path)?;
    common::move_etc_to_usr_etc(&root)?;
    link_rpmdb(&root)?;
    write_rpm_macro(&root)?;
    enable_units(&root, &opts.units)?;
    if let Some(target) = opts.default_target.as_deref() {
        set_default_target(&root, target)?;
    }
    if opts.opt_usrlocal == OptUsrLocal::StateOverlay {
        enable_state_overlays(&root)?;
    }
    if let Some(json) = opts.treefile_json.as_deref() {
        write_treefile_json(&root, json)?;
    }
    {
        let guard = TempEtcGuard::new(&root)?;
        if let Some(base) = opts.mutate_os_release.as_deref() {
            mutate_os_release(&root, base, opts.version.as_deref())?;
        }
        remove_files(&root, &opts.remove_files)?;
        add_files(&root, &opts.add_files)?;
        guard.undo()?;
    }
    scripts::run_postprocess_scripts(root_path, &opts.scripts)?;
    Ok(())
}

/// While alive, the root has a real `etc` (moved from `usr/etc`) and a
/// `usr/etc -> ../etc` compat link, so code and scripts can use `/etc`.
/// [`TempEtcGuard::undo`] (or dropping the guard, e.g. on an error path)
/// moves it back. Does nothing if `etc` already exists or `usr/etc` does not.
#[derive(Debug)]
pub struct TempEtcGuard {
    root: Option<Dir>,
}

impl TempEtcGuard {
    pub fn new(root: &Dir) -> Result<Self> {
        if fsutil::exists_nofollow(root, "etc")? || !fsutil::is_real_dir(root, "usr/etc")? {
            return Ok(TempEtcGuard { root: None });
        }
        let root = root
            .try_clone()
            .context("Duplicating root directory handle")?;
        root.rename("usr/etc", &root, "etc")
            .context("Renaming usr/etc to etc")?;
        if let Err(e) = root.symlink_contents("../etc", "usr/etc") {
            // Put things back before reporting.
            let back = root.rename("etc", &root, "usr/etc");
            let err = anyhow::Error::new(e).context("Symlinking usr/etc -> ../etc");
            return Err(match back {
                Ok(()) => err,
                Err(b) => err.context(format!("and moving etc back to usr/etc failed: {b}")),
            });
        }
        Ok(TempEtcGuard { root: Some(root) })
    }

    /// Whether this guard moved `usr/etc` (and will move it back).
    pub fn is_active(&self) -> bool {
        self.root.is_some()
    }

    /// Move `etc` back to `usr/etc`, reporting errors.
    pub fn undo(mut self) -> Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> Result<()> {
        let Some(root) = self.root.take() else {
            return Ok(());
        };
        root.remove_file("usr/etc")
            .context("Removing the usr/etc -> ../etc link")?;
        root.rename("etc", &root, "usr/etc")
            .context("Renaming etc back to usr/etc")
    }
}

impl Drop for TempEtcGuard {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("error: restoring usr/etc after a failed step: {e:#}");
        }
    }
}

/// §4.4 b: `var/lib/rpm -> ../../usr/share/rpm` and
/// `usr/lib/sysimage/rpm -> ../../share/rpm`, replacing whatever was there.
/// Safety net beyond rpm-ostree: if `usr/share/rpm` does not exist yet, a
/// database found at `usr/lib/sysimage/rpm` or `var/lib/rpm` (an installer
/// run with rpm's default `_dbpath`) is moved there instead of deleted.
pub fn link_rpmdb(root: &Dir) -> Result<()> {
    if !fsutil::exists_nofollow(root, RPMDB_DIR)? {
        for old in [SYSIMAGE_RPMDB, TRADITIONAL_RPMDB_DIR] {
            if fsutil::is_real_dir(root, old)? && !dir_is_empty(root, old)? {
                eprintln!("Moving the rpm database from /{old} to /{RPMDB_DIR}");
                fsutil::ensure_dir_all(root, "usr/share", 0o755)?;
                root.rename(old, root, RPMDB_DIR)
                    .with_context(|| format!("Moving {old} to {RPMDB_DIR}"))?;
                break;
            }
        }
    }
    fsutil::ensure_dir_all(root, "var/lib", 0o755)?;
    fsutil::replace_symlink(root, TRADITIONAL_RPMDB_LINK, TRADITIONAL_RPMDB_DIR)?;
    fsutil::ensure_dir_all(root, "usr/lib/sysimage", 0o755)?;
    fsutil::replace_symlink(root, SYSIMAGE_RPMDB_LINK, SYSIMAGE_RPMDB)?;
    Ok(())
}

fn dir_is_empty(root: &Dir, path: &str) -> Result<bool> {
    Ok(root
        .read_dir(path)
        .with_context(|| format!("Reading {path}"))?
        .next()
        .is_none())
}

/// §4.4 c: `usr/lib/rpm/macros.d/macros.rpm-ostree` = `%_dbpath /usr/share/rpm`.
pub fn write_rpm_macro(root: &Dir) -> Result<()> {
    fsutil::ensure_dir_all(root, RPM_MACROS_DIR, 0o755)?;
    fsutil::write_file_mode(root, RPM_MACRO_FILE, rpm_macro_contents().as_bytes(), 0o644)
}

fn rpm_macro_contents() -> String {
    format!("%_dbpath /{RPMDB_DIR}\n")
}

/// A systemd unit name usable as a file name: non-empty, no `/`, not `.`/`..`.
pub fn check_unit_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("Invalid systemd unit name {name:?}"));
    }
    Ok(())
}

/// §4.4 d (`units`): `usr/etc/systemd/system/multi-user.target.wants/<u> ->
/// /usr/lib/systemd/system/<u>` for each unit not already there.
pub fn enable_units(root: &Dir, units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    for unit in units {
        check_unit_name(unit).map_err(|m| invalid_input(format!("units: {m}")))?;
    }
    if !fsutil::exists_nofollow(root, "usr/etc")? {
        anyhow::bail!("Handling treefile 'units': missing usr/etc in rootfs");
    }
    fsutil::ensure_dir_all(root, MULTI_USER_WANTS, 0o755)?;
    for unit in units {
        let link = Path::new(MULTI_USER_WANTS).join(unit);
        if fsutil::exists_nofollow(root, &link)? {
            continue;
        }
        eprintln!("Adding {unit} to multi-user.target.wants");
        root.symlink_contents(format!("/usr/lib/systemd/system/{unit}"), &link)
            .with_context(|| format!("Enabling unit {unit}"))?;
    }
    Ok(())
}

/// §4.4 e (`default-target`): `usr/lib/systemd/system/default.target -> <target>`.
pub fn set_default_target(root: &Dir, target: &str) -> Result<()> {
    check_unit_name(target).map_err(|m| invalid_input(format!("default-target: {m}")))?;
    fsutil::ensure_dir_all(root, "usr/lib/systemd/system", 0o755)?;
    fsutil::replace_symlink(root, target, DEFAULT_TARGET)
        .context("Handling treefile 'default-target'")
}

/// §4.4 f (`opt-usrlocal: state-overlay`): enable the state-overlay units in
/// `local-fs.target.requires`.
pub fn enable_state_overlays(root: &Dir) -> Result<()> {
    fsutil::ensure_dir_all(root, LOCAL_FS_REQUIRES, 0o755)?;
    for unit in STATE_OVERLAY_UNITS {
        fsutil::replace_symlink(
            root,
            format!("../{unit}"),
            Path::new(LOCAL_FS_REQUIRES).join(unit),
        )
        .with_context(|| format!("Enabling {unit}"))?;
    }
    Ok(())
}

/// §4.4 g: write the flattened treefile JSON to `usr/share/rpm-ostree/treefile.json` (0644).
pub fn write_treefile_json(root: &Dir, json: &str) -> Result<()> {
    fsutil::write_file_mode(root, TREEFILE_JSON, json.as_bytes(), 0o644)
}

/// §4.4 i (`mutate-os-release`): rewrite the file `/etc/os-release` resolves
/// to inside the root (needs `etc`, i.e. the temp-etc guard). Skipped with a
/// message when there is no commit version.
pub fn mutate_os_release(root: &Dir, base_version: &str, version: Option<&str>) -> Result<()> {
    let Some(version) = version.filter(|v| !v.is_empty()) else {
        eprintln!("Ignoring mutate-os-release: no commit version specified.");
        return Ok(());
    };
    let path = fsutil::resolve_in_root(root, "etc/os-release")?
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("etc/os-release"));
    eprintln!("Updating {}", path.display());
    let contents = root
        .read_to_string(&path)
        .with_context(|| format!("mutate-os-release: reading /{}", path.display()))?;
    let mode = root
        .metadata(&path)
        .with_context(|| format!("Querying /{}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let new = mutate_os_release_contents(&contents, base_version, version);
    fsutil::write_file_mode(root, &path, new.as_bytes(), mode)
        .context("mutate-os-release: writing the new os-release")
}

/// In `VERSION=` and `PRETTY_NAME=` lines replace every `base_version` with
/// `version`, drop empty lines, and append `OSTREE_VERSION=<quoted version>`.
pub fn mutate_os_release_contents(contents: &str, base_version: &str, version: &str) -> String {
    let mut out = String::with_capacity(contents.len() + 64);
    for line in contents.lines() {
        if line.is_empty() {
            continue;
        }
        let prefix = ["VERSION=", "PRETTY_NAME="]
            .into_iter()
            .find(|p| line.starts_with(p));
        match prefix {
            Some(p) if !base_version.is_empty() => {
                out.push_str(p);
                out.push_str(&line[p.len()..].replace(base_version, version));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("OSTREE_VERSION=");
    out.push_str(&shell_quote(version));
    out.push('\n');
    out
}

/// Quote like GLib's `g_shell_quote`: wrap in single quotes, and write each
/// embedded `'` as `'\''`. (A dozen lines; not worth a dependency.)
pub fn shell_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// §4.4 j (`remove-files`): `rm -rf` each root-relative path. All paths are
/// checked first (absolute or `..` → invalid input) so nothing is removed
/// when one is bad. With the temp-etc guard on, `etc/x` reaches `/etc`.
pub fn remove_files(root: &Dir, paths: &[String]) -> Result<()> {
    for p in paths {
        fsutil::check_relative_inside(p)
            .map_err(|m| invalid_input(format!("remove-files: {m}")))?;
    }
    for p in paths {
        let rel = Path::new(p);
        let Some(name) = rel.file_name() else {
            continue;
        };
        // Resolve the parent like the chrooted `rm -rf` would, so links such
        // as `bin -> usr/bin` (or absolute ones) are followed inside the root.
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Some(parent) = fsutil::resolve_in_root(root, parent)? else {
            continue;
        };
        let target = parent.join(name);
        eprintln!("Deleting: {p}");
        root.remove_all_optional(&target)
            .with_context(|| format!("remove-files: deleting {p}"))?;
    }
    Ok(())
}

/// Check an `add-files` destination (§2): after stripping leading `/` it must
/// start with `usr/` (but not `usr/local/`), `etc/`, `bin/`, `sbin/`, `lib/`
/// or `lib64/`, and have no `..` component.
pub fn check_add_files_dest(dest: &str) -> std::result::Result<(), String> {
    let rel = dest.trim_start_matches('/');
    const ALLOWED: &[&str] = &["usr/", "etc/", "bin/", "sbin/", "lib/", "lib64/"];
    let allowed = ALLOWED.iter().any(|p| rel.starts_with(p)) && !rel.starts_with("usr/local/");
    if !allowed {
        return Err(format!("Unsupported path in add-files: {dest}"));
    }
    if Path::new(rel)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!("Invalid '..' in add-files destination: {dest}"));
    }
    Ok(())
}

/// The root-relative path an `add-files` destination is written to:
/// `etc/*` goes to `usr/etc/*`.
pub fn add_files_target(dest: &str) -> PathBuf {
    let rel = dest.trim_start_matches('/');
    match rel.strip_prefix("etc/") {
        Some(rest) => Path::new("usr/etc").join(rest),
        None => PathBuf::from(rel),
    }
}

/// §4.4 k (`add-files`): write each file with its source mode; missing
/// parents are created 0755. All destinations are checked first.
pub fn add_files(root: &Dir, files: &[AddFile]) -> Result<()> {
    for f in files {
        check_add_files_dest(&f.dest).map_err(invalid_input)?;
    }
    for f in files {
        let target = add_files_target(&f.dest);
        eprintln!("Adding file {}", target.display());
        fsutil::write_file_mode(root, &target, &f.contents, f.mode & 0o7777)
            .with_context(|| format!("add-files: writing {}", f.dest))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// remove-from-packages

/// The rpm database path inside the root (`--dbpath` for `rpm --root`).
pub const RPM_DBPATH: &str = "/usr/share/rpm";

/// How many paths go on one `rpm -qf` command line.
const RPM_QF_BATCH: usize = 512;

/// One `remove-from-packages` entry: a package and its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveFromPackage {
    pub package: String,
    /// Regular expressions searched (unanchored) in each file's OSTree path.
    pub patterns: Vec<String>,
}

/// The OSTree path of a file as rpm lists it: `/etc/...` becomes `/usr/etc/...`.
pub fn ostree_path_of(rpm_path: &str) -> String {
    if rpm_path == "/etc" {
        "/usr/etc".to_string()
    } else if let Some(rest) = rpm_path.strip_prefix("/etc/") {
        format!("/usr/etc/{rest}")
    } else {
        rpm_path.to_string()
    }
}

/// Compile the patterns of one entry; a bad one is invalid input naming the
/// package. (rpm-ostree uses GLib/PCRE regexes; look-around and
/// back-references are not supported here.)
pub fn compile_patterns(package: &str, patterns: &[String]) -> Result<Vec<regex::Regex>> {
    patterns
        .iter()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| {
                invalid_input(format!(
                    "remove-from-packages: package {package}: invalid regular expression {p:?}: {e}"
                ))
            })
        })
        .collect()
}

/// The files of `package` (as rpm paths) whose OSTree path matches any of
/// `regexes`. Pure: `files` comes from the rpm database.
pub fn matching_files<'a>(files: &'a [String], regexes: &[regex::Regex]) -> Vec<&'a str> {
    files
        .iter()
        .filter(|f| {
            let p = ostree_path_of(f);
            regexes.iter().any(|r| r.is_match(&p))
        })
        .map(|f| f.as_str())
        .collect()
}

/// Apply every entry: list the package's files with rpm and remove matches.
/// Returns the OSTree paths removed.
pub fn apply_remove_from_packages(
    root_path: &Path,
    entries: &[RemoveFromPackage],
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for e in entries {
        compile_patterns(&e.package, &e.patterns)?;
    }
    for e in entries {
        let Some(files) = package_files(root_path, &e.package)? else {
            eprintln!(
                "warning: remove-from-packages: package {} is not installed; nothing removed",
                e.package
            );
            continue;
        };
        removed.extend(remove_from_package(
            root_path,
            &e.package,
            &e.patterns,
            &files,
        )?);
    }
    Ok(removed)
}

/// The files `package` owns per the root's rpm database (`rpm -ql`), or
/// `None` when it is not installed.
pub fn package_files(root_path: &Path, package: &str) -> Result<Option<Vec<String>>> {
    let out = rpm_in_root(root_path)
        .args(["-q", "--qf", "[%{FILENAMES}\\n]", "--", package])
        .output()
        .with_context(|| format!("Running rpm -ql {package}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("is not installed") {
            return Ok(None);
        }
        anyhow::bail!(
            "rpm -ql {package} failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(
        stdout
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(str::to_string)
            .collect(),
    ))
}

/// Delete from the root the files of `package` (given as `files`, rpm paths)
/// whose OSTree path matches one of `patterns`, except those another
/// installed package also owns. A matching directory takes the package's
/// files below it along; directories are removed only once empty.
/// Returns the OSTree paths removed, sorted.
pub fn remove_from_package(
    root_path: &Path,
    package: &str,
    patterns: &[String],
    files: &[String],
) -> Result<Vec<String>> {
    let regexes = compile_patterns(package, patterns)?;
    let root = fsutil::open_root(root_path)?;
    let mut candidates: std::collections::BTreeSet<&str> =
        matching_files(files, &regexes).into_iter().collect();
    // A matched directory drops everything of this package beneath it.
    let mut matched_dirs = Vec::new();
    for f in &candidates {
        if on_disk(&root, f)?.is_some_and(|(_, m)| m.is_dir()) {
            matched_dirs.push(format!("{f}/"));
        }
    }
    for f in files {
        if matched_dirs.iter().any(|d| f.starts_with(d.as_str())) {
            candidates.insert(f);
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<&str> = candidates.iter().copied().collect();
    let shared = shared_with_other_packages(root_path, package, &list)?;

    let mut removed = Vec::new();
    let mut dirs = Vec::new();
    for f in &list {
        if shared.contains(*f) {
            eprintln!("remove-from-packages: keeping {f}: also owned by another package");
            continue;
        }
        let Some((path, meta)) = on_disk(&root, f)? else {
            continue;
        };
        if meta.is_dir() {
            dirs.push((*f, path));
            continue;
        }
        root.remove_file(&path)
            .with_context(|| format!("remove-from-packages: removing {f} of {package}"))?;
        removed.push(ostree_path_of(f));
    }
    // Deepest first, so parents can become empty.
    dirs.sort_by(|a, b| b.0.cmp(a.0));
    for (f, path) in dirs {
        match root.remove_dir(&path) {
            Ok(()) => removed.push(ostree_path_of(f)),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                eprintln!("remove-from-packages: keeping non-empty directory {f}");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("remove-from-packages: removing directory {f} of {package}")
                })
            }
        }
    }
    removed.sort();
    for r in &removed {
        eprintln!("remove-from-packages: removed {r} ({package})");
    }
    Ok(removed)
}

/// Where an rpm path is in the root right now (`/etc` may be at `etc` or
/// `usr/etc`), with its metadata; `None` when absent.
fn on_disk(
    root: &Dir,
    rpm_path: &str,
) -> Result<Option<(PathBuf, cap_std_ext::cap_std::fs::Metadata)>> {
    let ostree = ostree_path_of(rpm_path);
    let rel = if ostree.starts_with("/usr/etc") && fsutil::is_real_dir(root, "etc")? {
        PathBuf::from(rpm_path.trim_start_matches('/'))
    } else {
        PathBuf::from(ostree.trim_start_matches('/'))
    };
    let Some(name) = rel.file_name().map(|n| n.to_owned()) else {
        return Ok(None);
    };
    let Some(parent) = fsutil::resolve_in_root(root, rel.parent().unwrap_or(Path::new("")))? else {
        return Ok(None);
    };
    let path = parent.join(name);
    Ok(root
        .symlink_metadata_optional(&path)
        .with_context(|| format!("Querying {rpm_path}"))?
        .map(|m| (path, m)))
}

/// The subset of `paths` that some installed package other than `package`
/// owns too.
fn shared_with_other_packages(
    root_path: &Path,
    package: &str,
    paths: &[&str],
) -> Result<std::collections::BTreeSet<String>> {
    let mut others = std::collections::BTreeSet::new();
    for chunk in paths.chunks(RPM_QF_BATCH) {
        let out = rpm_in_root(root_path)
            .args(["-qf", "--qf", "%{NAME}\\n", "--"])
            .args(chunk)
            .output()
            .context("Running rpm -qf")?;
        // Exit status counts unowned paths; those lines are not package names.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.trim();
            if name.is_empty() || name.contains(' ') || name == package {
                continue;
            }
            others.insert(name.to_string());
        }
        if !out.status.success() && out.stdout.is_empty() {
            anyhow::bail!(
                "rpm -qf failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let wanted: std::collections::BTreeSet<&str> = paths.iter().copied().collect();
    let mut shared = std::collections::BTreeSet::new();
    for other in others {
        for f in package_files(root_path, &other)?.unwrap_or_default() {
            if wanted.contains(f.as_str()) {
                shared.insert(f);
            }
        }
    }
    Ok(shared)
}

/// `rpm --root <root> --dbpath /usr/share/rpm` with a predictable environment.
fn rpm_in_root(root_path: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("rpm");
    cmd.arg("--root")
        .arg(root_path)
        .arg("--dbpath")
        .arg(RPM_DBPATH)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    const OS_RELEASE: &str = "NAME=Fedora
VERSION=\"28.20180202.0 (Twenty Eight)\"
ID=fedora

VERSION_ID=28
PRETTY_NAME=\"Fedora 28.20180202.0 (Twenty Eight)\"
ANSI_COLOR=\"0;34\"
";

    #[test]
    fn mutate_os_release_rewrites_version_lines() {
        let out = mutate_os_release_contents(OS_RELEASE, "28.20180202.0", "28.20180202.1");
        assert_eq!(
            out,
            "NAME=Fedora
VERSION=\"28.20180202.1 (Twenty Eight)\"
ID=fedora
VERSION_ID=28
PRETTY_NAME=\"Fedora 28.20180202.1 (Twenty Eight)\"
ANSI_COLOR=\"0;34\"
OSTREE_VERSION='28.20180202.1'
"
        );
    }

    #[test]
    fn mutate_os_release_leaves_other_lines_and_quotes() {
        let input = "VERSION_ID=33\nVERSION=33\nNAME=\"33\"\n";
        let out = mutate_os_release_contents(input, "33", "33.4");
        assert_eq!(
            out,
            "VERSION_ID=33\nVERSION=33.4\nNAME=\"33\"\nOSTREE_VERSION='33.4'\n"
        );
        let out = mutate_os_release_contents("VERSION=1\n", "1", "it's 2");
        assert_eq!(out, "VERSION=it's 2\nOSTREE_VERSION='it'\\''s 2'\n");
    }

    #[test]
    fn shell_quoting_matches_glib() {
        assert_eq!(shell_quote("33.4"), "'33.4'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        assert_eq!(shell_quote("$x `y`"), "'$x `y`'");
    }

    #[test]
    fn add_files_destinations() {
        assert!(check_add_files_dest("/usr/etc/foo.txt").is_ok());
        assert!(check_add_files_dest("/etc/bar.txt").is_ok());
        assert!(check_add_files_dest("usr/share/baz").is_ok());
        assert!(check_add_files_dest("/lib64/x").is_ok());
        assert_eq!(
            check_add_files_dest("/var/lib/foo.txt").unwrap_err(),
            "Unsupported path in add-files: /var/lib/foo.txt"
        );
        assert!(check_add_files_dest("/usr/local/bin/x").is_err());
        assert!(check_add_files_dest("/usr").is_err());
        assert!(check_add_files_dest("/usr/../var/x").is_err());
        assert_eq!(
            add_files_target("/etc/bar.txt"),
            Path::new("usr/etc/bar.txt")
        );
        assert_eq!(add_files_target("usr/etc/a"), Path::new("usr/etc/a"));
        assert_eq!(add_files_target("/usr/share/b"), Path::new("usr/share/b"));
    }

    #[test]
    fn unit_names() {
        assert!(check_unit_name("zincati.service").is_ok());
        assert!(check_unit_name("getty@tty1.service").is_ok());
        assert!(check_unit_name("../x.service").is_err());
        assert!(check_unit_name("").is_err());
        assert!(check_unit_name("..").is_err());
    }

    #[test]
    fn rpm_macro() {
        assert_eq!(rpm_macro_contents(), "%_dbpath /usr/share/rpm\n");
    }

    #[test]
    fn remove_from_packages_matching() {
        assert_eq!(ostree_path_of("/etc/hosts.allow"), "/usr/etc/hosts.allow");
        assert_eq!(ostree_path_of("/etc"), "/usr/etc");
        assert_eq!(ostree_path_of("/etcetera"), "/etcetera");
        assert_eq!(ostree_path_of("/usr/bin/x"), "/usr/bin/x");
        let files: Vec<String> = [
            "/etc/hosts",
            "/etc/hosts.allow",
            "/etc/hosts.deny",
            "/usr/share/doc/setup/README",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let re = compile_patterns("setup", &[r"/etc/hosts\..*".to_string()]).unwrap();
        assert_eq!(
            matching_files(&files, &re),
            vec!["/etc/hosts.allow", "/etc/hosts.deny"]
        );
        // Matched against the OSTree path: /usr/etc, not /etc.
        let re = compile_patterns("setup", &["^/etc/".to_string()]).unwrap();
        assert!(matching_files(&files, &re).is_empty());
        let re =
            compile_patterns("setup", &["^/usr/etc/hosts$".to_string(), "README".into()]).unwrap();
        assert_eq!(
            matching_files(&files, &re),
            vec!["/etc/hosts", "/usr/share/doc/setup/README"]
        );
        let e = compile_patterns("setup", &["(".to_string()]).unwrap_err();
        assert_eq!(crate::exit::exit_code_for(&e), 3);
        assert!(format!("{e}").contains("setup"));
    }
}

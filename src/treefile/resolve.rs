//! Include resolution (reference §3.1): walk `include`, `arch-include` and
//! `conditional-include` depth-first with a shared variable map, open each
//! file's externals, merge everything into one config, then substitute
//! `${var}`s and run the after-merge validation.
//!
//! This is the I/O half of treefile loading; per-document parsing lives in
//! `parse`, merge rules in `merge`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::condition::VarValue;
use super::kickstart::kickstart_config;
use super::merge::merge;
use super::model::{CheckGroups, CheckPasswd, ConditionalIncludeTarget, TreeComposeConfig};
use super::parse::{parse_inline, parse_treefile_str, Format};
use super::validate::validate_config;
use super::varsubst::substitute_config;
use crate::exit::invalid_input;

/// Maximum include depth (rpm-ostree's limit).
pub const MAX_INCLUDE_DEPTH: u32 = 50;

/// A file a treefile refers to, read at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// `st_mode` permission bits (e.g. 0o755).
    pub mode: u32,
}

/// All externals of a resolved treefile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Externals {
    pub postprocess_script: Option<ExternalFile>,
    pub check_passwd_file: Option<ExternalFile>,
    pub check_groups_file: Option<ExternalFile>,
    /// Keyed by the source name as written in `add-files`.
    pub add_files: BTreeMap<String, ExternalFile>,
    /// Executable regular files of `finalize.d/` next to each treefile, by file name.
    pub finalize_d: BTreeMap<String, ExternalFile>,
}

impl Externals {
    /// rpm-ostree `treefile_merge_externals`: single files first-wins;
    /// add-files and finalize.d entries of the included file override.
    fn merge_from(&mut self, child: Externals) {
        if self.postprocess_script.is_none() {
            self.postprocess_script = child.postprocess_script;
        }
        if self.check_passwd_file.is_none() {
            self.check_passwd_file = child.check_passwd_file;
        }
        if self.check_groups_file.is_none() {
            self.check_groups_file = child.check_groups_file;
        }
        self.add_files.extend(child.add_files);
        self.finalize_d.extend(child.finalize_d);
    }
}

/// What to do when an external file is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingExternals {
    /// Fail naming the file and the key (what `compose tree` does).
    #[default]
    Error,
    /// Leave it out of [`Externals`]; for inspecting treefiles whose scripts
    /// are not at hand (never used for composing).
    Skip,
}

/// Options for [`resolve`].
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Compose architecture; `None` = unknown (`packages-$arch`,
    /// `arch-include` and the `basearch` variable are not applied).
    pub basearch: Option<String>,
    /// Caller-supplied variables; they beat every file's own.
    pub initial_variables: BTreeMap<String, VarValue>,
    pub missing_externals: MissingExternals,
}

/// The result of [`resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: TreeComposeConfig,
    pub externals: Externals,
    /// Every treefile/kickstart file read, in processing order.
    pub files: Vec<PathBuf>,
}

/// Read a file as UTF-8 text, returning its (device, inode).
pub fn read_with_devino(path: &Path) -> Result<(String, (u64, u64))> {
    // Check the type first so a FIFO or device is refused, not opened (a FIFO
    // would block).
    let pre = std::fs::metadata(path)
        .map_err(|e| invalid_input(format!("Opening treefile {}: {e}", path.display())))?;
    if !pre.is_file() {
        return Err(invalid_input(format!(
            "Treefile {} is not a regular file",
            path.display()
        )));
    }
    let mut f = std::fs::File::open(path)
        .map_err(|e| invalid_input(format!("Opening treefile {}: {e}", path.display())))?;
    let md = f
        .metadata()
        .with_context(|| format!("Reading metadata of {}", path.display()))?;
    if !md.is_file() {
        return Err(invalid_input(format!(
            "Treefile {} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .with_context(|| format!("Reading {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        invalid_input(format!(
            "Treefile {} is not valid UTF-8 (byte offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((text, (md.dev(), md.ino())))
}

struct Walker<'a> {
    opts: &'a ResolveOptions,
    vars: BTreeMap<String, VarValue>,
    seen: BTreeSet<(u64, u64)>,
    files: Vec<PathBuf>,
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_external(
    opts: &ResolveOptions,
    declaring: &Path,
    key: &str,
    path: &Path,
) -> Result<Option<ExternalFile>> {
    let res = std::fs::metadata(path).and_then(|md| {
        if !md.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        std::fs::read(path).map(|content| ExternalFile {
            path: path.to_path_buf(),
            content,
            mode: md.mode() & 0o7777,
        })
    });
    match res {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.missing_externals == MissingExternals::Skip => Ok(None),
        Err(e) => Err(invalid_input(format!(
            "{}: {key}: cannot read {}: {e}; add the file or fix the path (it is relative to the directory of {})",
            declaring.display(),
            path.display(),
            declaring.display()
        ))),
    }
}

/// Open the externals one file declares (§3.1 step 2).
/// An `add-files` source must stay inside the directory of the top-level
/// manifest or of the file declaring it (as given or with the manifest's own
/// symlink resolved), after following `..` and symlinks:
/// its content goes into the image, so a manifest must not be able to pull in
/// arbitrary host files (credentials, keys). rpm-ostree does not check this.
fn check_add_files_source(top: &Path, declaring: &Path, src: &str, full: &Path) -> Result<()> {
    let Ok(real) = std::fs::canonicalize(full) else {
        // Missing: read_external reports it.
        return Ok(());
    };
    // The directories as given and, for a manifest that is itself a symlink
    // (a manifest tree mirrored by symlinks), where it really lives: a file
    // outside the manifest tree cannot carry an attacker's add-files list.
    let mut roots = vec![dir_of(top), dir_of(declaring)];
    for f in [top, declaring] {
        if let Ok(real_file) = std::fs::canonicalize(f) {
            roots.push(dir_of(&real_file));
        }
    }
    let inside = roots.iter().any(|root| {
        std::fs::canonicalize(root)
            .map(|root| real.starts_with(root))
            .unwrap_or(false)
    });
    if inside {
        return Ok(());
    }
    Err(invalid_input(format!(
        "{}: add-files: source '{src}' resolves to {}, outside the manifest directory {}; \
         copy the file into the manifest directory (sources may not escape it through '..' or symlinks)",
        declaring.display(),
        real.display(),
        dir_of(top).display()
    )))
}

fn open_externals(
    opts: &ResolveOptions,
    top: &Path,
    path: &Path,
    cfg: &TreeComposeConfig,
) -> Result<Externals> {
    let dir = dir_of(path);
    let mut ext = Externals::default();
    if let Some(script) = &cfg.postprocess_script {
        ext.postprocess_script =
            read_external(opts, path, "postprocess-script", &dir.join(script))?;
    }
    if let Some(CheckPasswd::File { filename }) = &cfg.check_passwd {
        ext.check_passwd_file = read_external(opts, path, "check-passwd", &dir.join(filename))?;
    }
    if let Some(CheckGroups::File { filename }) = &cfg.check_groups {
        ext.check_groups_file = read_external(opts, path, "check-groups", &dir.join(filename))?;
    }
    for (src, _dest) in cfg.add_files.iter().flatten() {
        check_add_files_source(top, path, src, &dir.join(src))?;
        if let Some(f) = read_external(opts, path, "add-files", &dir.join(src))? {
            ext.add_files.insert(src.clone(), f);
        }
    }
    let fin = dir.join("finalize.d");
    if fin.is_dir() {
        let entries = std::fs::read_dir(&fin)
            .map_err(|e| invalid_input(format!("Reading {}: {e}", fin.display())))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("Reading {}", fin.display()))?;
            let p = entry.path();
            // Like rpm-ostree: the entry itself (symlinks are skipped), u+x only.
            let md = std::fs::symlink_metadata(&p)
                .with_context(|| format!("Reading {}", p.display()))?;
            if md.is_file() && md.mode() & 0o100 != 0 {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(f) = read_external(opts, path, "finalize.d", &p)? {
                    ext.finalize_d.insert(name, f);
                }
            }
        }
    }
    Ok(ext)
}

impl Walker<'_> {
    fn walk(&mut self, path: &Path, depth: u32) -> Result<(TreeComposeConfig, Externals)> {
        let (text, devino) = read_with_devino(path)?;
        if !self.seen.insert(devino) {
            return Err(invalid_input(format!(
                "Include loop detected; {} was already included (rpm-ostree refuses to include the same file twice)",
                path.display()
            )));
        }
        self.files.push(path.to_path_buf());
        let name = path.display().to_string();
        let basearch = self.opts.basearch.as_deref();
        let format = Format::detect(path);
        let mut cfg = match format {
            // rpm-ostree does not run its per-file processing on kickstarts
            // (no basearch fill-in, no automatic variables).
            Format::Kickstart => kickstart_config(path, &text, devino)?,
            _ => parse_treefile_str(&text, format, &name, basearch)?,
        };
        let top = self
            .files
            .first()
            .cloned()
            .unwrap_or_else(|| path.to_path_buf());
        let mut externals = open_externals(self.opts, &top, path, &cfg)?;

        let mut includes: Vec<String> =
            cfg.include.take().map(|i| i.into_vec()).unwrap_or_default();
        // Fold this file's variables in; entries already present win.
        if let Some(own) = &cfg.variables {
            for (k, v) in own {
                self.vars.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if let Some(mut arch) = cfg.arch_include.take() {
            if let Some(a) = basearch.and_then(|b| arch.remove(b)) {
                includes.extend(a.into_vec());
            }
        }
        for (i, ci) in cfg
            .conditional_include
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let holds = ci.condition.evaluate(&self.vars).map_err(|e| {
                invalid_input(format!("{name}: conditional-include entry {}: {e}", i + 1))
            })?;
            if !holds {
                continue;
            }
            match ci.include {
                ConditionalIncludeTarget::Paths(p) => includes.extend(p.into_vec()),
                ConditionalIncludeTarget::Inline(m) => {
                    let inline = parse_inline(&m, &name)?;
                    merge(&mut cfg, inline);
                }
            }
        }
        let dir = dir_of(path);
        for inc in includes {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(invalid_input(format!(
                    "{name}: Reached maximum include depth {MAX_INCLUDE_DEPTH} (including {inc})"
                )));
            }
            let child_path = dir.join(&inc);
            let (child, child_ext) = self
                .walk(&child_path, depth + 1)
                .with_context(|| format!("Processing include {inc} of {name}"))?;
            merge(&mut cfg, child);
            externals.merge_from(child_ext);
        }
        Ok((cfg, externals))
    }
}

/// Resolve a treefile and everything it includes into one config.
pub fn resolve(path: &Path, opts: &ResolveOptions) -> Result<Resolved> {
    let mut walker = Walker {
        opts,
        vars: opts.initial_variables.clone(),
        seen: BTreeSet::new(),
        files: Vec::new(),
    };
    let (mut config, externals) = walker.walk(path, 0)?;
    config.variables = Some(walker.vars);
    let vars = config.variables.clone().unwrap_or_default();
    substitute_config(&mut config, &vars)
        .map_err(|e| invalid_input(format!("{}: variables: {e}", path.display())))?;
    validate_config(&config).map_err(|e| invalid_input(format!("{}: {e}", path.display())))?;
    Ok(Resolved {
        config,
        externals,
        files: walker.files,
    })
}

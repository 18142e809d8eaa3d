//! depmod and dracut run through the run cache ([`super::runcache`]): reuse
//! what an earlier run made from the same inputs, else run the program with
//! its opens traced ([`super::opentrace`]) so that this run can be reused
//! later.
//!
//! Both run chrooted with the kernel step's shims in place ([`super::kernel`]
//! sets them up): the shims are part of what the program sees, so the tree is
//! listed and fingerprinted with them. A cache that cannot be read, or a
//! trace that cannot be set up, only costs the reuse: the program runs.
//!
//! Not for: the host's depmod (a tree without kmod), whose binary is not in
//! the tree and so not in the fingerprint; it always runs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::opentrace::{OpenTrace, Tracer};
use super::runcache::{self, Checksums, Fingerprint, Lookup, Mtimes, RunCache, TreeListing};
use crate::commit::known::KnownContents;
use crate::install::InstalledFilesSink;

/// Where the run cache is, and what helps it.
#[derive(Debug, Clone)]
pub struct RunCacheOptions {
    pub cachedir: PathBuf,
    /// Content checksums of files linked from the package cache: the
    /// fingerprint takes them instead of reading those files.
    pub known: Option<std::sync::Arc<KnownContents>>,
    /// Checksums the fingerprints computed (for the next one, and for the
    /// commit).
    pub learned: std::sync::Arc<std::sync::Mutex<KnownContents>>,
    /// A background reader of the installed files, kept from opening any
    /// while a program is traced (its opens would count as the program's).
    pub feed: Option<InstalledFilesSink>,
}

/// At most this many installed files the background reader opens before a
/// traced run, to work on during it (about what it gets through in the
/// 4-5 s dracut takes on corpus-large).
const FEED_OPENED_DURING_A_RUN: usize = 8192;

fn checksums(opts: &RunCacheOptions) -> Checksums<'_> {
    Checksums {
        known: opts.known.as_deref(),
        learned: &opts.learned,
    }
}

/// What the program's run depends on besides the tree: the command as run
/// (less the chroot's path, which differs each compose), its environment,
/// `extra` (what is done here with the output), and the host kernel (the
/// program may ask `uname`). Hex SHA-256.
pub fn command_inputs(cmd: &Command, extra: &[u8]) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"ostree-composer run inputs 1");
    field(cmd.get_program().as_bytes());
    for a in cmd.get_args().skip(1) {
        field(a.as_bytes());
    }
    for (k, v) in cmd.get_envs() {
        field(k.as_bytes());
        field(v.map(|v| v.as_bytes()).unwrap_or(b"<unset>"));
    }
    field(extra);
    let uname = rustix::system::uname();
    field(uname.release().to_bytes());
    field(uname.machine().to_bytes());
    hex::encode(h.finalize())
}

/// Restore the outputs of a record made from the same inputs into
/// `dest_dir`: the number of files the program read, or why nothing was
/// restored.
fn reuse(
    cache: &RunCache,
    root: &Path,
    inputs: &str,
    shape: &str,
    opts: &RunCacheOptions,
    mtimes: Mtimes,
    dest_dir: &Path,
) -> std::result::Result<usize, String> {
    match cache.lookup(root, inputs, shape, checksums(opts), mtimes) {
        Ok(Lookup::Hit { entry, files }) => match cache.restore(&entry, dest_dir) {
            Ok(_) => Ok(files),
            Err(e) => Err(format!("{e:#}")),
        },
        Ok(Lookup::Miss(why)) => Err(why),
        Err(e) => Err(format!("the cache could not be read: {e:#}")),
    }
}

/// Run `cmd` with the feed quiet and a trace on the tree. `None` for the
/// trace when it could not be set up (the command ran all the same).
fn run_traced(
    cmd: Command,
    what: &str,
    root: &Path,
    listing: &TreeListing,
    ignored: &[PathBuf],
    opts: &RunCacheOptions,
) -> Result<Option<OpenTrace>> {
    let quiet = opts
        .feed
        .as_ref()
        .and_then(|f| f.quiet_opens(FEED_OPENED_DURING_A_RUN));
    let tracer = match Tracer::start(root, &listing.dirs, ignored) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("note: {what} runs untraced, and will not be reused: {e:#}");
            None
        }
    };
    super::kernel::run_status(cmd, what)?;
    let trace = tracer.map(Tracer::finish).transpose()?;
    drop(quiet);
    Ok(trace)
}

/// Digests of what the program opened, less `outputs`.
fn fingerprint(
    root: &Path,
    inputs: &str,
    listing: TreeListing,
    trace: OpenTrace,
    outputs: &BTreeSet<PathBuf>,
    opts: &RunCacheOptions,
    mtimes: Mtimes,
) -> Result<Fingerprint> {
    let paths: Vec<PathBuf> = trace
        .opened
        .into_iter()
        .filter(|p| !outputs.contains(p))
        .collect();
    let files = runcache::file_digests(root, &paths, checksums(opts), mtimes)?;
    Ok(Fingerprint {
        inputs: inputs.to_string(),
        shape: listing.shape,
        files,
    })
}

/// What [`dracut`] did.
pub enum DracutRun {
    /// The image of an earlier run with the same inputs is in place.
    Reused,
    /// dracut ran; with what it depended on when that can be recorded
    /// (with [`store_initramfs`], once the image is final).
    Built(Option<Fingerprint>),
}

/// The cache of initramfs images.
pub fn initramfs_cache(opts: &RunCacheOptions) -> RunCache {
    RunCache::new(&opts.cachedir, "initramfs", "dracut")
}

/// Run dracut (`cmd`, writing `out_dir/initramfs.img`, announced with
/// `running`), or put the image of an earlier run with the same inputs
/// there. `extra`: what is done here with the image (see
/// [`command_inputs`]); `ignored`: its working directory and the shims it
/// writes to.
pub fn dracut(
    cmd: Command,
    running: &str,
    extra: &[u8],
    root: &Path,
    out_dir: &Path,
    ignored: &[PathBuf],
    opts: &RunCacheOptions,
) -> Result<DracutRun> {
    let started = Instant::now();
    let cache = initramfs_cache(opts);
    let inputs = &command_inputs(&cmd, extra);
    let listing = runcache::list_tree(root, ignored)?;
    let mtimes = runcache::dracut_mtimes(root);
    match reuse(&cache, root, inputs, &listing.shape, opts, mtimes, out_dir) {
        Ok(files) => {
            eprintln!(
                "Initramfs: reusing the image dracut built from the same inputs ({files} files \
                 it read, and the tree's list of files, are unchanged; checked in {:.2}s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(DracutRun::Reused);
        }
        Err(why) => eprintln!("Initramfs: building ({why})"),
    }
    eprintln!("{running}");
    let Some(trace) = run_traced(cmd, "dracut (in the tree)", root, &listing, ignored, opts)?
    else {
        return Ok(DracutRun::Built(None));
    };
    if trace.overflowed || !trace.changed.is_empty() {
        eprintln!(
            "note: the initramfs will not be reused later: {}",
            untraceable(&trace, "dracut")
        );
        return Ok(DracutRun::Built(None));
    }
    let started = Instant::now();
    let f = fingerprint(root, inputs, listing, trace, &BTreeSet::new(), opts, mtimes)?;
    eprintln!(
        "Initramfs: fingerprinted the {} files dracut read in {:.2}s",
        f.files.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(DracutRun::Built(Some(f)))
}

/// Record the final `image` (compressed here, if it is) for `fingerprint`.
pub fn store_initramfs(opts: &RunCacheOptions, fingerprint: &Fingerprint, image: &Path) {
    let outputs = [("initramfs.img".to_string(), image.to_path_buf())];
    match initramfs_cache(opts).store(fingerprint, &outputs) {
        Ok(()) => eprintln!(
            "Initramfs cached for later composes ({} files dracut read)",
            fingerprint.files.len()
        ),
        Err(e) => eprintln!("warning: not caching the initramfs: {e:#}"),
    }
}

/// Why a trace cannot be recorded. Pure.
fn untraceable(trace: &OpenTrace, program: &str) -> String {
    if trace.overflowed {
        "inotify lost events".to_string()
    } else {
        format!(
            "{program} changed {} paths in the tree, e.g. /{}",
            trace.changed.len(),
            trace
                .changed
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    }
}

/// Run the tree's depmod (`cmd`, writing `moddir`'s `modules.*` files), or
/// put the files an earlier run with the same inputs wrote there. `ignored`:
/// the shims it writes to. True when reused.
pub fn depmod(
    cmd: Command,
    root: &Path,
    moddir: &Path,
    ignored: &[PathBuf],
    opts: &RunCacheOptions,
) -> Result<bool> {
    let started = Instant::now();
    let cache = RunCache::new(&opts.cachedir, "depmod", "depmod");
    let inputs = command_inputs(&cmd, b"");
    let listing = runcache::list_tree(root, ignored)?;
    let dest = root.join(moddir);
    match reuse(
        &cache,
        root,
        &inputs,
        &listing.shape,
        opts,
        Mtimes::Ignored,
        &dest,
    ) {
        Ok(files) => {
            eprintln!(
                "Kernel modules: reusing the index depmod wrote from the same inputs ({files} \
                 files it read, and the tree's list of files, are unchanged; checked in {:.2}s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(true);
        }
        Err(why) => eprintln!("Kernel modules: running depmod ({why})"),
    }
    let before = names_in(&dest)?;
    let Some(trace) = run_traced(cmd, "depmod (in the tree)", root, &listing, ignored, opts)?
    else {
        return Ok(false);
    };
    let after = names_in(&dest)?;
    let outputs = match depmod_outputs(&trace, moddir, &before, &after) {
        Ok(o) => o,
        Err(why) => {
            eprintln!("note: the module index will not be reused later: {why}");
            return Ok(false);
        }
    };
    let started = Instant::now();
    let out_paths: BTreeSet<PathBuf> = outputs.iter().map(|n| moddir.join(n)).collect();
    let f = fingerprint(
        root,
        &inputs,
        listing,
        trace,
        &out_paths,
        opts,
        Mtimes::Ignored,
    )?;
    let files: Vec<(String, PathBuf)> = outputs.iter().map(|n| (n.clone(), dest.join(n))).collect();
    match cache.store(&f, &files) {
        Ok(()) => eprintln!(
            "Kernel modules: index cached for later composes ({} files depmod read, \
             fingerprinted in {:.2}s)",
            f.files.len(),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("warning: not caching the module index: {e:#}"),
    }
    Ok(false)
}

/// Names in `dir`.
fn names_in(dir: &Path) -> Result<BTreeSet<OsString>> {
    std::fs::read_dir(dir)
        .with_context(|| format!("Reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("Reading {}", dir.display()))
}

/// The files a depmod run wrote: every changed path must be a `modules.*`
/// file of `moddir` that exists afterwards, or a temporary one that existed
/// neither before nor after. Pure but for its arguments; `Err` says why the
/// run cannot be recorded.
pub fn depmod_outputs(
    trace: &OpenTrace,
    moddir: &Path,
    before: &BTreeSet<OsString>,
    after: &BTreeSet<OsString>,
) -> std::result::Result<Vec<String>, String> {
    if trace.overflowed {
        return Err("inotify lost events".into());
    }
    let mut outputs = Vec::new();
    for p in &trace.changed {
        let name = p
            .strip_prefix(moddir)
            .ok()
            .and_then(|n| n.to_str())
            .filter(|n| !n.contains('/') && n.starts_with("modules."))
            .ok_or_else(|| format!("depmod changed /{}", p.display()))?;
        if after.contains(std::ffi::OsStr::new(name)) {
            outputs.push(name.to_string());
        } else if before.contains(std::ffi::OsStr::new(name)) {
            return Err(format!("depmod removed /{}", p.display()));
        }
    }
    if outputs.is_empty() {
        return Err("depmod wrote nothing".into());
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(changed: &[&str]) -> OpenTrace {
        OpenTrace {
            changed: changed.iter().map(PathBuf::from).collect(),
            ..OpenTrace::default()
        }
    }

    fn names(n: &[&str]) -> BTreeSet<OsString> {
        n.iter().map(OsString::from).collect()
    }

    #[test]
    fn depmod_outputs_are_the_modules_files_it_wrote() {
        let m = Path::new("usr/lib/modules/6.1");
        let t = trace(&[
            "usr/lib/modules/6.1/modules.dep",
            "usr/lib/modules/6.1/modules.dep.tmp",
            "usr/lib/modules/6.1/modules.alias.bin",
        ]);
        let before = names(&["kernel", "modules.dep", "modules.order"]);
        let after = names(&[
            "kernel",
            "modules.dep",
            "modules.order",
            "modules.alias.bin",
        ]);
        assert_eq!(
            depmod_outputs(&t, m, &before, &after).unwrap(),
            ["modules.alias.bin", "modules.dep"]
        );

        let e = depmod_outputs(
            &trace(&["usr/lib/modules/6.1/kernel/x.ko"]),
            m,
            &before,
            &after,
        );
        assert!(e
            .unwrap_err()
            .contains("changed /usr/lib/modules/6.1/kernel/x.ko"));
        let e = depmod_outputs(&trace(&["usr/etc/x"]), m, &before, &after);
        assert!(e.unwrap_err().contains("changed /usr/etc/x"));
        let gone = names(&["kernel", "modules.order"]);
        let e = depmod_outputs(
            &trace(&["usr/lib/modules/6.1/modules.dep"]),
            m,
            &before,
            &gone,
        );
        assert!(e.unwrap_err().contains("removed"));
        let e = depmod_outputs(&trace(&[]), m, &before, &after);
        assert!(e.unwrap_err().contains("wrote nothing"));
        let mut lost = trace(&["usr/lib/modules/6.1/modules.dep"]);
        lost.overflowed = true;
        assert!(depmod_outputs(&lost, m, &before, &after).is_err());
    }

    #[test]
    fn inputs_follow_the_command_and_its_environment_not_the_root_path() {
        let cmd = |root: &str, arg: &str, env: &str| {
            let mut c = Command::new("chroot");
            c.arg(root).arg("/usr/bin/dracut").arg(arg).env("X", env);
            c
        };
        let a = command_inputs(&cmd("/tmp/a", "-f", "1"), b"zstd");
        assert_eq!(a, command_inputs(&cmd("/tmp/b", "-f", "1"), b"zstd"));
        assert_ne!(a, command_inputs(&cmd("/tmp/a", "-F", "1"), b"zstd"));
        assert_ne!(a, command_inputs(&cmd("/tmp/a", "-f", "2"), b"zstd"));
        assert_ne!(a, command_inputs(&cmd("/tmp/a", "-f", "1"), b"gzip"));
    }
}

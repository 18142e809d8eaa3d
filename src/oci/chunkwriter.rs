//! Write an ostree commit as a chunked OCI image, generating and gzipping the layers
//! on all cores.
//!
//! The image format is ostree-ext's "chunked v1" encapsulation (what ostree-ext,
//! rpm-ostree and bootc import), written here because ostree-ext 0.15.3 builds its
//! layers one after the other on one thread and its layer writers are not public.
//! This module follows the format byte for byte, so that for the same packing both
//! writers give the same image (tests/oci.rs checks it):
//! - every layer is a tar whose members are ostree repo objects under
//!   `sysroot/ostree/repo/objects/`: for each content object (in checksum order) its
//!   `.file-xattrs` (once per layer, named by the SHA-256 of the xattrs) and a
//!   `.file-xattrs-link` hardlink to it, the `.file` object itself, then one entry per
//!   path of the object in the tree (`usr/bin/bash`, `usr/etc` shown as `etc`): a
//!   hardlink to the object, or an empty regular file for empty regular files;
//! - every layer starts with the repo skeleton (`sysroot/ostree/repo/{objects/00..ff,
//!   refs, ...}` and a `config` saying `mode=bare-split-xattrs`);
//! - the first layer also holds `./`, the commit, commitmeta, dirtree and dirmeta
//!   objects and every directory of the tree (no file content unless some object has
//!   no component), then `var/tmp`;
//! - config labels: `ostree.commit`, `ostree.final-diffid` (the diff ID of the last
//!   layer), `ostree.bootable` + `containers.bootc`, `ostree.linux`, `version` +
//!   `org.opencontainers.image.version`, the copymeta keys and the caller's labels,
//!   also set as manifest annotations; each package layer is annotated with
//!   `ostree.components` and has a history entry named after its components.
//!
//! Each worker thread opens its own `ostree::Repo` on the same path (libostree repo
//! objects are not thread-safe) and writes its layers into the OCI directory as
//! blobs (ocidir writes a temp file and renames it to its digest).
//!
//! Not for: the package -> layer assignment (`packing`), following a previous
//! build's layout (ostree-ext does that, see `encapsulate`), fixing timestamps and
//! architecture (`reproducible`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use ocidir::cap_std::fs::Dir;
use ocidir::oci_spec::image as oci_image;
use ocidir::{Layer, OciDir};
use ostree::gio;
use ostree::gio::prelude::*;
use ostree::glib;
use sha2::Digest;

use super::encapsulate::EncapsulateInputs;
use super::packing;
use crate::commit::tree_walk::{walk_commit, CommitTree, DirTreeV};

const OSTREEDIR: &str = "sysroot/ostree";
/// The repo config of an exported tar stream (the mode tells importers the xattrs
/// live in separate objects).
const REPO_CONFIG: &str = "[core]\nrepo_version=1\nmode=bare-split-xattrs\n";
const COMPONENTS_ANNOTATION: &str = "ostree.components";
/// Read buffer for file content (as large as ostree-ext's: fewer, larger writes).
const READ_BUF: usize = 128 * 1024;

/// What [`write_image`] did.
#[derive(Debug, Clone)]
pub struct WriteStats {
    pub layers: usize,
    pub threads: usize,
}

/// The objects of one layer: content checksum -> paths in the tree (walk order).
type Objects<'t> = BTreeMap<&'t str, &'t [String]>;

struct LayerJob<'t> {
    /// Package layers: (description, components); `None` for the commit layer.
    chunk: Option<(String, Vec<String>)>,
    objects: Objects<'t>,
    est_size: u64,
}

/// Write the image of `inputs.commit` into the OCI directory `oci_dir` (created if
/// missing) under `tag`, packing components with [`packing::pack`].
/// `inputs.prior_build` must be `None` (the caller uses ostree-ext for that).
pub fn write_image(
    inputs: &EncapsulateInputs<'_>,
    oci_dir: &Path,
    tag: &str,
) -> Result<WriteStats> {
    let tree = walk_commit(inputs.repo, inputs.commit)?;
    let w = ImageWriter::open(inputs.repo, inputs.commit, oci_dir)?;
    w.finish(inputs, &tree, None::<fn() -> Result<Layer>>, tag)
}

/// An image being written in steps, so that the caller can overlap them with its own
/// work: [`ImageWriter::open`] prepares the OCI directory, [`ImageWriter::commit_layer`]
/// writes the commit layer (it needs no packing, so it can run on another thread while
/// the packages are mapped), and [`ImageWriter::finish`] writes the other layers and
/// the image.
pub struct ImageWriter {
    oci: OciDir,
    repo_path: PathBuf,
    commit: String,
    /// `file` (or `filez` in archive repos): the content objects' file extension.
    object_ext: &'static str,
}

impl ImageWriter {
    /// Create (if missing) and open the OCI directory `oci_dir` for the image of `commit`.
    pub fn open(repo: &ostree::Repo, commit: &str, oci_dir: &Path) -> Result<Self> {
        let repo_path = repo
            .path()
            .path()
            .ok_or_else(|| anyhow!("The OSTree repository has no local path"))?;
        if !oci_dir.exists() {
            std::fs::create_dir(oci_dir)
                .with_context(|| format!("Creating {}", oci_dir.display()))?;
        }
        let dir = Dir::open_ambient_dir(oci_dir, ocidir::cap_std::ambient_authority())
            .with_context(|| format!("Opening {}", oci_dir.display()))?;
        let oci =
            OciDir::ensure(&dir).with_context(|| format!("Initializing {}", oci_dir.display()))?;
        let object_ext = match repo.mode() {
            ostree::RepoMode::Archive => "filez",
            _ => "file",
        };
        Ok(ImageWriter {
            oci,
            repo_path,
            commit: commit.to_string(),
            object_ext,
        })
    }

    /// The commit layer as [`ImageWriter::finish`] writes it when no content object
    /// lacks a component (the mapping of `chunking` is total): commit, tree structure
    /// and directories only. Safe to call from another thread (it opens its own repo).
    pub fn commit_layer(&self) -> Result<Layer> {
        let (repo, commit_v) = open_repo(&self.repo_path, &self.commit)?;
        let job = LayerJob {
            chunk: None,
            objects: Objects::new(),
            est_size: 0,
        };
        write_layer(
            &self.oci,
            &repo,
            &self.commit,
            &commit_v,
            &job,
            &AtomicBool::new(false),
        )
        .context("Writing the commit layer")
    }

    /// Write the package layers, then the config, manifest and index under `tag`.
    /// `commit_layer` gives the result of [`ImageWriter::commit_layer`] (typically by
    /// joining the thread writing it; called once the other layers are written); when
    /// it is `None`, or the packing puts content objects into the commit layer, the
    /// commit layer is written here. `tree` is the commit's walk
    /// ([`walk_commit`]); `inputs.prior_build` must be `None` (the caller
    /// uses ostree-ext for that).
    pub fn finish(
        &self,
        inputs: &EncapsulateInputs<'_>,
        tree: &CommitTree,
        commit_layer: Option<impl FnOnce() -> Result<Layer>>,
        tag: &str,
    ) -> Result<WriteStats> {
        ensure!(
            inputs.prior_build.is_none(),
            "internal error: the parallel writer does not follow a previous build"
        );
        ensure!(
            inputs.commit == self.commit,
            "internal error: writing commit {} into the image of {}",
            inputs.commit,
            self.commit
        );
        let commit = inputs.commit;
        let (commit_v, _) = inputs
            .repo
            .load_commit(commit)
            .with_context(|| format!("Loading commit {commit}"))?;
        let jobs = layer_jobs(inputs, tree);
        // An object without a component goes into the commit layer: then the one
        // written ahead (without content) is not the right one.
        let ahead = commit_layer.is_some() && jobs[0].objects.is_empty();
        let mut skip = vec![false; jobs.len()];
        skip[0] = ahead;

        let t = Instant::now();
        let (mut layers, threads, cpu) = build_layers(
            &self.oci,
            &self.repo_path,
            self.object_ext,
            commit,
            &jobs,
            &skip,
        )?;
        if let Some(get) = commit_layer {
            let layer = get()?;
            if ahead {
                layers[0] = Some(layer);
            }
        }
        let layers = layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.ok_or_else(|| anyhow!("internal error: layer {i} was not written")))
            .collect::<Result<Vec<_>>>()?;
        eprintln!(
            "Wrote {} layers of commit {commit} on {threads} threads in {:.1}s (CPU {cpu:.1}s)",
            layers.len(),
            t.elapsed().as_secs_f32()
        );

        assemble(inputs, &commit_v, &self.oci, tag, &jobs, layers)?;
        Ok(WriteStats {
            layers: jobs.len(),
            threads,
        })
    }
}

/// The commit layer, then one job per bin of [`packing::pack`], each with its objects.
fn layer_jobs<'t>(inputs: &EncapsulateInputs<'_>, tree: &'t CommitTree) -> Vec<LayerJob<'t>> {
    let meta = inputs.contentmeta;
    let bins = packing::pack(&meta.sizes, inputs.max_layers.get());
    let mut bin_of: HashMap<&str, usize> = HashMap::new();
    for (i, b) in bins.iter().enumerate() {
        for c in b {
            bin_of.insert(&c.meta.identifier, i);
        }
    }
    let mut jobs: Vec<LayerJob> = Vec::with_capacity(bins.len() + 1);
    jobs.push(LayerJob {
        chunk: None,
        objects: Objects::new(),
        est_size: 0,
    });
    for b in &bins {
        let mut comps: Vec<String> = b.iter().map(|c| c.meta.name.to_string()).collect();
        comps.sort();
        jobs.push(LayerJob {
            chunk: Some((packing::bin_name(b), comps)),
            objects: Objects::new(),
            est_size: b.iter().map(|c| c.size).sum(),
        });
    }
    for (csum, ps) in &tree.object_paths {
        let job = match meta.map.get(csum).and_then(|id| bin_of.get(&**id)) {
            Some(i) => i + 1,
            None => 0,
        };
        jobs[job].objects.insert(csum, ps);
    }
    jobs
}

/// A repo object for this thread (libostree repo objects are not thread-safe) and the commit.
fn open_repo(repo_path: &Path, commit: &str) -> Result<(ostree::Repo, glib::Variant)> {
    let repo = ostree::Repo::new_for_path(repo_path);
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("Opening {}", repo_path.display()))?;
    let (commit_v, _) = repo
        .load_commit(commit)
        .with_context(|| format!("Loading commit {commit}"))?;
    Ok((repo, commit_v))
}

fn parse_dirtree(v: &glib::Variant, csum: &str) -> Result<DirTreeV> {
    v.get::<DirTreeV>()
        .ok_or_else(|| anyhow!("dirtree {csum} has an unexpected type"))
}

/// CPU time of the calling thread, in seconds (for the log: with the wall time it
/// shows whether the threads got the cores or waited for them).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass; this clock always exists on Linux.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Generate every layer not to `skip`, on up to `available_parallelism` threads: the
/// commit layer first (its size is not estimated: it holds the tree's structure),
/// then the package layers, largest first.
/// Returns the layers (in job order, `None` where skipped), the thread count and the
/// CPU seconds used.
fn build_layers(
    oci: &OciDir,
    repo_path: &Path,
    object_ext: &str,
    commit: &str,
    jobs: &[LayerJob],
    skip: &[bool],
) -> Result<(Vec<Option<Layer>>, usize, f64)> {
    let order = job_order(jobs, skip);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(order.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Layer>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let cpu: Mutex<f64> = Mutex::new(0.0);

    std::thread::scope(|s| {
        let objects_dir = repo_path.join("objects");
        let (order_r, next_r, failed_r) = (&order, &next, &failed);
        s.spawn(move || prefetch(&objects_dir, object_ext, jobs, order_r, next_r, failed_r));
        for _ in 0..threads {
            s.spawn(|| {
                let cpu0 = thread_cpu_secs();
                let run = || -> Result<()> {
                    if order.is_empty() {
                        return Ok(());
                    }
                    let (repo, commit_v) = open_repo(repo_path, commit)?;
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = order.get(k) else {
                            return Ok(());
                        };
                        let layer = write_layer(oci, &repo, commit, &commit_v, &jobs[i], &failed)
                            .with_context(|| match &jobs[i].chunk {
                            None => "Writing the commit layer".to_string(),
                            Some((name, _)) => format!("Writing layer {i} ({name})"),
                        })?;
                        *results[i].lock().map_err(|_| anyhow!("poisoned lock"))? = Some(layer);
                    }
                };
                if let Err(e) = run() {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut errs) = errors.lock() {
                        errs.push(e);
                    }
                }
                if let Ok(mut c) = cpu.lock() {
                    *c += thread_cpu_secs() - cpu0;
                }
            });
        }
    });
    let mut errors = errors.into_inner().map_err(|_| anyhow!("poisoned lock"))?;
    if !errors.is_empty() {
        return Err(errors.swap_remove(0));
    }
    let layers = results
        .into_iter()
        .map(|m| m.into_inner().map_err(|_| anyhow!("poisoned lock")))
        .collect::<Result<Vec<_>>>()?;
    let cpu = cpu.into_inner().map_err(|_| anyhow!("poisoned lock"))?;
    Ok((layers, threads, cpu))
}

/// The jobs still to write, in the order the workers take them: the commit layer
/// first, then by estimated size, largest first.
fn job_order(jobs: &[LayerJob], skip: &[bool]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).filter(|&i| !skip[i]).collect();
    order.sort_by_key(|&i| {
        (
            jobs[i].chunk.is_some(),
            std::cmp::Reverse(jobs[i].est_size),
            i,
        )
    });
    order
}

/// Ask the kernel to start reading the object files in the order the workers will
/// read them, so that a cold page cache costs I/O wait in this thread rather than in
/// the compressing ones (it does little CPU work: an open and an fadvise per object).
/// Best effort by design: a file that cannot be opened here is just not prefetched;
/// the worker reading it reports any real error.
fn prefetch(
    objects_dir: &Path,
    ext: &str,
    jobs: &[LayerJob],
    order: &[usize],
    next: &AtomicUsize,
    stop: &AtomicBool,
) {
    use std::os::unix::fs::OpenOptionsExt;
    for &i in order {
        for &csum in jobs[i].objects.keys() {
            // Stop on failure, and once every job is taken (the workers are then
            // reading what is left themselves).
            if stop.load(Ordering::Relaxed) || next.load(Ordering::Relaxed) >= order.len() {
                return;
            }
            let (a, b) = csum.split_at(2);
            let p = objects_dir.join(a).join(format!("{b}.{ext}"));
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
            {
                let _ = rustix::fs::fadvise(&f, 0, 0, rustix::fs::Advice::WillNeed);
            }
        }
    }
}

fn write_layer(
    oci: &OciDir,
    repo: &ostree::Repo,
    commit: &str,
    commit_v: &glib::Variant,
    job: &LayerJob,
    failed: &AtomicBool,
) -> Result<Layer> {
    let out = oci
        .create_layer(Some(flate2::Compression::default()))
        .context("Creating a layer blob")?;
    let mut w = LayerTar {
        repo,
        out,
        xattrs: HashSet::new(),
        dirtrees: HashSet::new(),
        dirmetas: HashSet::new(),
    };
    if job.chunk.is_none() {
        w.commit_structure(commit, commit_v)?;
    } else {
        w.repo_skeleton()?;
    }
    for (csum, paths) in &job.objects {
        if failed.load(Ordering::Relaxed) {
            bail!("cancelled: another layer failed");
        }
        w.content_object(csum, paths)
            .with_context(|| format!("Writing content object {csum} ({})", paths[0]))?;
    }
    let gz = w.out.into_inner().context("Finishing the tar stream")?;
    gz.complete().context("Completing the layer blob")
}

/// `sysroot/ostree/repo/objects/ab/cdef....<ext>`
fn object_path(csum: &str, ext: &str) -> String {
    let (a, b) = csum.split_at(2);
    format!("{OSTREEDIR}/repo/objects/{a}/{b}.{ext}")
}

/// In the commit layer's directory entries (`./usr/etc/...`), `usr/etc` is shown as `etc`.
fn dir_entry_path(p: &Path) -> PathBuf {
    match p.strip_prefix("./usr/etc") {
        Ok(rest) => Path::new("./etc").join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// A tree path (`/usr/etc/x`) as a tar member name (`etc/x`).
fn content_entry_path(p: &str) -> &str {
    let p = p.strip_prefix('/').unwrap_or(p);
    if Path::new(p).starts_with("usr/etc") {
        &p["usr/".len()..]
    } else {
        p
    }
}

/// ostree modes carry the file type bits; tar modes do not.
fn tar_mode(mode: u32) -> u32 {
    mode & !libc::S_IFMT
}

/// One layer's tar stream. The header of a hardlink to an object is a copy of the
/// object's header after it was written (as in ostree-ext: the bytes must match).
struct LayerTar<'r, W: Write> {
    repo: &'r ostree::Repo,
    out: tar::Builder<W>,
    xattrs: HashSet<String>,
    dirtrees: HashSet<String>,
    dirmetas: HashSet<String>,
}

impl<W: Write> LayerTar<'_, W> {
    fn default_dir(&mut self, path: &str) -> Result<()> {
        let mut h = gnu_header(tar::EntryType::Directory, (0, 0, 0o755), 0);
        self.out
            .append_data(&mut h, path, std::io::empty())
            .with_context(|| format!("Writing {path}"))
    }

    fn default_file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut h = gnu_header(tar::EntryType::Regular, (0, 0, 0o644), data.len() as u64);
        self.out
            .append_data(&mut h, path, data)
            .with_context(|| format!("Writing {path}"))
    }

    fn repo_skeleton(&mut self) -> Result<()> {
        for d in [
            "sysroot",
            OSTREEDIR,
            "sysroot/ostree/repo",
            "sysroot/ostree/repo/objects",
        ] {
            self.default_dir(d)?;
        }
        for i in 0..=0xffu32 {
            self.default_dir(&format!("{OSTREEDIR}/repo/objects/{i:02x}"))?;
        }
        for d in [
            "extensions",
            "refs",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
            "state",
            "tmp",
            "tmp/cache",
        ] {
            self.default_dir(&format!("{OSTREEDIR}/repo/{d}"))?;
        }
        self.default_file(&format!("{OSTREEDIR}/repo/config"), REPO_CONFIG.as_bytes())
    }

    fn dir(&mut self, path: &Path, meta: &ostree::DirMetaParsed) -> Result<()> {
        let owner = (meta.uid, meta.gid, tar_mode(meta.mode));
        let mut h = gnu_header(tar::EntryType::Directory, owner, 0);
        self.out
            .append_data(&mut h, path, std::io::empty())
            .with_context(|| format!("Writing directory {}", path.display()))
    }

    /// A metadata object (dirtree or dirmeta), once per layer.
    fn meta_object(&mut self, ext: &str, csum: &str, v: &glib::Variant) -> Result<()> {
        let seen = match ext {
            "dirtree" => &mut self.dirtrees,
            _ => &mut self.dirmetas,
        };
        if !seen.insert(csum.to_string()) {
            return Ok(());
        }
        self.default_file(&object_path(csum, ext), &v.data_as_bytes())
    }

    fn load_dirmeta(&mut self, csum: &str) -> Result<ostree::DirMetaParsed> {
        let v = self
            .repo
            .load_variant(ostree::ObjectType::DirMeta, csum)
            .with_context(|| format!("Loading dirmeta {csum}"))?;
        self.meta_object("dirmeta", csum, &v)?;
        ostree::DirMetaParsed::from_variant(&v).map_err(|e| anyhow!("dirmeta {csum}: {e}"))
    }

    /// The commit layer's head: root directory, skeleton, commit, commitmeta, then every
    /// dirtree/dirmeta with the directories of the tree, then `var/tmp`.
    fn commit_structure(&mut self, commit: &str, commit_v: &glib::Variant) -> Result<()> {
        let root_tree = hex::encode(commit_v.child_value(6).data_as_bytes());
        let root_meta_csum = hex::encode(commit_v.child_value(7).data_as_bytes());
        let root_meta_v = self
            .repo
            .load_variant(ostree::ObjectType::DirMeta, &root_meta_csum)
            .with_context(|| format!("Loading dirmeta {root_meta_csum}"))?;
        let root_meta = ostree::DirMetaParsed::from_variant(&root_meta_v)
            .map_err(|e| anyhow!("dirmeta {root_meta_csum}: {e}"))?;
        let root = Path::new("./");
        self.dir(root, &root_meta)?;
        self.repo_skeleton()?;
        self.default_file(&object_path(commit, "commit"), &commit_v.data_as_bytes())?;
        if let Some(detached) = self
            .repo
            .read_commit_detached_metadata(commit, gio::Cancellable::NONE)
            .with_context(|| format!("Reading the detached metadata of {commit}"))?
        {
            self.default_file(
                &object_path(commit, "commitmeta"),
                &detached.data_as_bytes(),
            )?;
        }
        self.meta_object("dirmeta", &root_meta_csum, &root_meta_v)?;
        self.dirtree_structure(root, &root_tree, true)?;
        // ostree-ext means to add /var/tmp only when the commit lacks it, but its
        // check never matches ("./var/tmp" != "var/tmp"), so it is always added.
        let owner = (0, 0, tar_mode(libc::S_IFDIR | 0o1777));
        let mut h = gnu_header(tar::EntryType::Directory, owner, 0);
        self.out
            .append_data(&mut h, "var/tmp", std::io::empty())
            .context("Writing var/tmp")
    }

    fn dirtree_structure(&mut self, dir: &Path, csum: &str, is_root: bool) -> Result<()> {
        let v = self
            .repo
            .load_variant(ostree::ObjectType::DirTree, csum)
            .with_context(|| format!("Loading dirtree {csum}"))?;
        self.meta_object("dirtree", csum, &v)?;
        let (_, dirs) = parse_dirtree(&v, csum)?;
        for (name, tree, meta) in dirs {
            let meta = self.load_dirmeta(&hex::encode(meta))?;
            // The sysroot of the tar stream is the repo skeleton; a second one would
            // duplicate its entries.
            if is_root && name == "sysroot" {
                continue;
            }
            let sub = dir_entry_path(&dir.join(&name));
            self.dir(&sub, &meta)?;
            self.dirtree_structure(&sub, &hex::encode(tree), false)?;
        }
        Ok(())
    }

    /// A content object with its xattrs, then a hardlink (or empty file) per path.
    fn content_object(&mut self, csum: &str, paths: &[String]) -> Result<()> {
        let objpath = object_path(csum, "file");
        let (stream, info, xattrs) = self
            .repo
            .load_file(csum, gio::Cancellable::NONE)
            .context("Loading the object")?;
        let mut h = tar::Header::new_gnu();
        h.set_uid(u64::from(info.attribute_uint32("unix::uid")));
        h.set_gid(u64::from(info.attribute_uint32("unix::gid")));
        h.set_mode(tar_mode(info.attribute_uint32("unix::mode")));
        let size = u64::try_from(info.size()).context("Negative file size")?;
        if stream.is_some() {
            h.set_size(size);
        }

        // xattrs first: importers need them when they reach the content.
        let xdata = xattrs.data_as_bytes();
        let xcsum = hex::encode(sha2::Sha256::digest(&*xdata));
        let xpath = object_path(&xcsum, "file-xattrs");
        if self.xattrs.insert(xcsum.clone()) {
            self.default_file(&xpath, &xdata)?;
        }
        let mut lh = gnu_header(tar::EntryType::Link, (0, 0, 0o644), 0);
        self.out
            .append_link(&mut lh, object_path(csum, "file-xattrs-link"), &xpath)
            .context("Writing the xattrs link")?;

        match stream {
            Some(stream) => {
                ensure!(
                    info.file_type() == gio::FileType::Regular,
                    "content stream for a non-regular file"
                );
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                let r = BufReader::with_capacity(READ_BUF, stream.into_read());
                self.out
                    .append_data(&mut h, &objpath, r)
                    .context("Writing the file content")?;
            }
            None => {
                ensure!(
                    info.file_type() == gio::FileType::SymbolicLink,
                    "object is neither a regular file nor a symlink"
                );
                let target = info
                    .symlink_target()
                    .ok_or_else(|| anyhow!("Symlink without a target"))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| anyhow!("Non-UTF-8 symlink target {target:?}"))?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                if target.contains("//") {
                    // tar would normalize "a//b"; keep the target as it is.
                    h.set_link_name_literal(target)
                        .with_context(|| format!("Symlink target {target}"))?;
                    self.out
                        .append_data(&mut h, &objpath, std::io::empty())
                        .context("Writing the symlink")?;
                } else {
                    self.out
                        .append_link(&mut h, &objpath, target)
                        .context("Writing the symlink")?;
                }
            }
        }

        for p in paths {
            let mut lh = h.clone();
            let size = lh.size().context("Reading back the object size")?;
            lh.set_size(0);
            let dest = content_entry_path(p);
            // Empty regular files are not hardlinked: a container build that modifies
            // one would otherwise modify the object in /sysroot too.
            if lh.entry_type() == tar::EntryType::Regular && size == 0 {
                self.out
                    .append_data(&mut lh, dest, std::io::empty())
                    .with_context(|| format!("Writing {dest}"))?;
            } else {
                lh.set_entry_type(tar::EntryType::Link);
                lh.set_link_name(&objpath)
                    .with_context(|| format!("Link name {objpath}"))?;
                self.out
                    .append_data(&mut lh, dest, std::io::empty())
                    .with_context(|| format!("Writing {dest}"))?;
            }
        }
        Ok(())
    }
}

/// Labels, layers, config, manifest and index, in ostree-ext's order.
fn assemble(
    inputs: &EncapsulateInputs<'_>,
    commit_v: &glib::Variant,
    oci: &OciDir,
    tag: &str,
    jobs: &[LayerJob],
    layers: Vec<Layer>,
) -> Result<()> {
    let commit = inputs.commit;
    let meta = glib::VariantDict::new(Some(&commit_v.child_value(0)));
    let lookup_str = |k: &str| -> Result<Option<String>> {
        match meta.lookup_value(k, None) {
            None => Ok(None),
            Some(v) => v
                .str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| anyhow!("Commit metadata '{k}' is a {}, not a string", v.type_())),
        }
    };
    let mut labels: HashMap<String, String> = HashMap::new();
    for k in &inputs.copymeta {
        let v = lookup_str(k)?.ok_or_else(|| anyhow!("Commit {commit} has no metadata '{k}'"))?;
        labels.insert(k.clone(), v);
    }
    for k in &inputs.copymeta_opt {
        if let Some(v) = lookup_str(k)? {
            labels.insert(k.clone(), v);
        }
    }
    if let Some(v) = meta.lookup_value("ostree.bootable", None) {
        let b = v.get::<bool>().ok_or_else(|| {
            anyhow!(
                "Commit metadata 'ostree.bootable' is a {}, not a boolean",
                v.type_()
            )
        })?;
        labels.insert("ostree.bootable".into(), b.to_string());
        labels.insert("containers.bootc".into(), "1".into());
    }
    if let Some(v) = lookup_str("ostree.linux")? {
        labels.insert("ostree.linux".into(), v);
    }
    if let Some(v) = lookup_str("version")? {
        labels.insert("version".into(), v.clone());
        labels.insert(oci_image::ANNOTATION_VERSION.into(), v);
    }
    labels.insert("ostree.commit".into(), commit.to_string());
    for (k, v) in &inputs.labels {
        labels.insert(k.clone(), v.clone());
    }

    let created = super::reproducible::parse_created(&inputs.created)?;
    let mut imgcfg = oci_image::ImageConfiguration::default();
    imgcfg.set_created(Some(inputs.created.clone()));
    let mut manifest = ocidir::new_empty_manifest()
        .build()
        .context("Building an empty manifest")?;
    let subject = commit_v.child_value(3);
    let subject = subject.str().unwrap_or_default();
    let description = if subject.is_empty() {
        format!("ostree export of commit {commit}")
    } else {
        subject.to_string()
    };
    let final_diffid = layers
        .last()
        .map(|l| format!("sha256:{}", l.uncompressed_sha256.digest()))
        .ok_or_else(|| anyhow!("internal error: no layers"))?;
    for (job, layer) in jobs.iter().zip(layers) {
        match &job.chunk {
            None => oci.push_layer_full(
                &mut manifest,
                &mut imgcfg,
                layer,
                None::<HashMap<String, String>>,
                &description,
                created,
            ),
            Some((name, comps)) => {
                let annos: HashMap<String, String> =
                    [(COMPONENTS_ANNOTATION.to_string(), comps.join(","))].into();
                oci.push_layer_full(
                    &mut manifest,
                    &mut imgcfg,
                    layer,
                    Some(annos),
                    name,
                    created,
                )
            }
        }
    }
    labels.insert("ostree.final-diffid".into(), final_diffid);

    let mut ctrcfg = inputs.container_config.clone().unwrap_or_default();
    let cmd = match &inputs.cmd {
        Some(c) => Some(c.clone()),
        None => match meta.lookup_value("ostree.container-cmd", None) {
            None => None,
            Some(v) => Some(v.get::<Vec<String>>().ok_or_else(|| {
                anyhow!(
                    "Commit metadata 'ostree.container-cmd' is a {}, not a string array",
                    v.type_()
                )
            })?),
        },
    };
    if let Some(cmd) = cmd {
        ctrcfg.set_cmd(Some(cmd));
    }
    ctrcfg
        .labels_mut()
        .get_or_insert_with(Default::default)
        .extend(labels.clone());
    imgcfg.set_config(Some(ctrcfg));
    let cfg = oci
        .write_config(imgcfg)
        .context("Writing the image config")?;
    manifest.set_config(cfg);
    manifest.set_annotations(Some(labels));
    oci.insert_manifest(manifest, Some(tag), oci_image::Platform::default())
        .context("Writing the manifest")?;
    Ok(())
}

/// A GNU tar header with this type, `(uid, gid, mode)` and size.
fn gnu_header(kind: tar::EntryType, (uid, gid, mode): (u32, u32, u32), size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mode(mode);
    h.set_size(size);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_layer_first_then_largest() {
        let job = |chunk: bool, est_size| LayerJob {
            chunk: chunk.then(|| (String::new(), Vec::new())),
            objects: Objects::new(),
            est_size,
        };
        let jobs = [job(false, 0), job(true, 5), job(true, 10), job(true, 5)];
        assert_eq!(job_order(&jobs, &[false; 4]), vec![0, 2, 1, 3]);
        assert_eq!(job_order(&jobs, &[true, false, true, false]), vec![1, 3]);
    }

    #[test]
    fn paths() {
        assert_eq!(
            object_path("ab0123", "file-xattrs"),
            "sysroot/ostree/repo/objects/ab/0123.file-xattrs"
        );
        assert_eq!(content_entry_path("/usr/etc/passwd"), "etc/passwd");
        assert_eq!(content_entry_path("/usr/etc"), "etc");
        assert_eq!(content_entry_path("/usr/etcx/a"), "usr/etcx/a");
        assert_eq!(content_entry_path("/usr/bin/bash"), "usr/bin/bash");
        assert_eq!(dir_entry_path(Path::new("./usr/etc")), Path::new("./etc/"));
        assert_eq!(
            dir_entry_path(Path::new("./usr/etc/x")),
            Path::new("./etc/x")
        );
        assert_eq!(
            dir_entry_path(Path::new("./usr/lib")),
            Path::new("./usr/lib")
        );
        assert_eq!(tar_mode(libc::S_IFREG | 0o4755), 0o4755);
    }
}

//! Encapsulate a commit as an OCI image (ostree-ext), chunked by package, and push it.
//!
//! The pipeline for one commit, whatever the destinations:
//! 1. validate the options and every destination (`imageref`);
//! 2. map every content object of the commit to its RPM (`chunking`, `rpmdb`): the
//!    rpmdb is read while other threads walk the tree and read the object sizes, and
//!    the commit layer (which needs no mapping) is written meanwhile;
//! 3. write the image into a private `oci:` directory under `workdir`
//!    (layers grouped by `packing`, written in parallel by `chunkwriter`;
//!    ostree-ext's encapsulate, through `encapsulate`, when a previous build's layout
//!    is kept or `OciOptions::writer` asks for it);
//! 4. make it reproducible and give it the commit's architecture (`reproducible`);
//! 5. `skopeo copy` it to each destination, retrying transient failures (`push`);
//!    an `oci-archive:` is written directly (`archive`).
//!
//! Entry points are synchronous (they build their own current-thread runtime):
//! [`build_and_push`] / [`build_and_push_many`] for the compose pipeline, and
//! [`container_encapsulate`] for `compose container-encapsulate`.
//! Errors after the commit exists are classified `output_failed`, bad options
//! `invalid_input`, unimplemented options `unsupported`.
//!
//! Runtime needs: `skopeo` (ostree-ext queries the written `oci:` directory with it,
//! and registry and `oci:` destinations are written with `skopeo copy`) and `rpm` (to read the
//! commit's rpmdb). Nothing is written to /tmp or /var/tmp: the image, skopeo's
//! temporary files and the extracted rpmdb all live under `OciOptions::workdir`.

mod archive;
pub mod chunking;
pub mod chunkwriter;
pub mod dropin;
pub mod encapsulate;
pub mod imageref;
pub mod packing;
pub mod push;
pub mod reproducible;
pub mod rpmdb;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ostree::gio;
use ostree::gio::prelude::FileExt;
use ostree_ext::oci_spec::image as oci_image;

use crate::exit::{invalid_input, Classified, ErrorClass};
pub use dropin::{container_encapsulate, parse_labels, EncapsulateOptions};
use encapsulate::catch_panic;
use imageref::Destination;

/// ostree-ext's default and minimum layer counts.
pub const DEFAULT_MAX_LAYERS: u32 = 64;
pub const MIN_MAX_LAYERS: u32 = 4;

/// The tag used inside the private build directory.
const BUILD_TAG: &str = "build";

/// Options for building one image from one commit (see [`build_and_push`]).
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// The OSTree repository holding the commit (any mode).
    pub repo: PathBuf,
    /// Ref or checksum.
    pub rev: String,
    /// A rootfs whose rpmdb describes the commit (faster than reading it out of the
    /// commit). `None`: the rpmdb is read from the commit itself.
    pub rootfs_for_rpmdb: Option<PathBuf>,
    /// At most this many package layers (plus the commit layer); at least 4.
    pub max_layers: u32,
    /// Extra config labels (also manifest annotations). Overrides generated ones,
    /// except `ostree.commit` / `ostree.final-diffid`, which are refused.
    pub labels: BTreeMap<String, String>,
    /// Image creation time: seconds since the epoch or RFC 3339. `None`: the
    /// `SOURCE_DATE_EPOCH` environment variable if set, else the commit timestamp.
    pub created: Option<String>,
    /// RPM basearch or OCI architecture of the image. `None`: the architecture of the
    /// commit's packages (noarch ignored), else the host's.
    pub arch: Option<String>,
    /// Verify TLS when pushing to a registry.
    pub tls_verify: bool,
    /// containers-auth.json for pushing.
    pub authfile: Option<PathBuf>,
    /// Extra push attempts on transient failure.
    pub retries: u32,
    /// Wait before the first retry (doubles each time).
    pub retry_backoff: Duration,
    /// Scratch space for the image (a compressed copy of the whole tree): use the
    /// cache's filesystem, not a small /tmp.
    pub workdir: PathBuf,
    /// A JSON file with the OCI runtime config (`Env`, `Entrypoint`, `User`, ...) or a
    /// whole image configuration (its `config` member is used).
    pub image_config: Option<PathBuf>,
    /// Override the image CMD (otherwise the commit's `ostree.container-cmd`).
    pub cmd: Option<Vec<String>>,
    /// The manifest (JSON) of the previous build, to keep the layer packing stable.
    pub prior_manifest: Option<PathBuf>,
    /// Commit metadata keys copied to labels (must exist, must be strings).
    pub copymeta: Vec<String>,
    /// Commit metadata keys copied to labels when present.
    pub copymeta_opt: Vec<String>,
    /// Write the package/component size metadata here as JSON.
    pub contentmeta_json: Option<PathBuf>,
    /// Which implementation writes the image (the parallel one unless asked otherwise).
    pub writer: encapsulate::Writer,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            repo: PathBuf::new(),
            rev: String::new(),
            rootfs_for_rpmdb: None,
            max_layers: DEFAULT_MAX_LAYERS,
            labels: BTreeMap::new(),
            created: None,
            arch: None,
            tls_verify: true,
            authfile: None,
            retries: 3,
            retry_backoff: Duration::from_secs(2),
            workdir: std::env::temp_dir(),
            image_config: None,
            cmd: None,
            prior_manifest: None,
            copymeta: Vec::new(),
            copymeta_opt: Vec::new(),
            contentmeta_json: None,
            writer: encapsulate::Writer::default(),
        }
    }
}

/// What was written to one destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OciResult {
    /// The destination as given.
    pub reference: String,
    /// `sha256:...` of the manifest at the destination.
    pub manifest_digest: String,
    /// The commit that was encapsulated.
    pub commit: String,
    /// Layers in the image (the commit layer included).
    pub layer_count: usize,
    /// Sum of the compressed layer sizes, in bytes.
    pub compressed_size: u64,
    /// OCI architecture recorded in the image.
    pub architecture: String,
    /// Layers the destination already had, so skopeo did not copy them.
    pub layers_reused: usize,
}

/// Build the image of `opts.rev` and write it to `dest`.
pub fn build_and_push(opts: &OciOptions, dest: &str) -> Result<OciResult> {
    let mut r = build_and_push_many(opts, &[dest.to_string()])?;
    r.pop()
        .ok_or_else(|| anyhow::anyhow!("internal error: no result for {dest}"))
}

/// Build the image once and write it to every destination, in order.
pub fn build_and_push_many(opts: &OciOptions, dests: &[String]) -> Result<Vec<OciResult>> {
    let parsed: Vec<Destination> = dests
        .iter()
        .map(|d| imageref::parse_destination(d))
        .collect::<Result<_>>()?;
    for d in &parsed {
        push::precheck(d)?;
    }
    let built = build_image(opts)?;
    let push_opts = push::PushOptions {
        tls_verify: opts.tls_verify,
        authfile: opts.authfile.clone(),
        retries: opts.retries,
        initial_backoff: opts.retry_backoff,
        tmpdir: built.tmp.path().to_path_buf(),
    };
    let mut out = Vec::new();
    for (given, dest) in dests.iter().zip(&parsed) {
        let t = Instant::now();
        if let Destination::OciDir { path, tag: None } = dest {
            reproducible::drop_untagged_manifests(path)
                .map_err(|e| output_failed_ctx(e, format!("Preparing {dest}")))?;
        }
        let pushed =
            push::copy_image(&built.oci_dir, BUILD_TAG, dest, &push_opts).map_err(|e| {
                match crate::exit::class_of(&e) {
                    Some(_) => e,
                    None => output_failed_ctx(e, format!("Writing the image to {dest}")),
                }
            })?;
        if pushed.digest != built.image.manifest_digest {
            return Err(crate::exit::output_failed(format!(
                "{dest} got manifest {} but the built image is {} (a registry or skopeo changed it)",
                pushed.digest, built.image.manifest_digest
            )));
        }
        if let Destination::OciDir { path, .. } = dest {
            reproducible::set_index_platform(path, &pushed.digest, &built.platform)
                .map_err(|e| output_failed_ctx(e, format!("Recording the platform in {dest}")))?;
        }
        let skipped = pushed.layers_reused;
        eprintln!(
            "Wrote {dest}: {} ({} layers, {}; {} attempt(s), {} layer(s) already present, {:.1}s)",
            pushed.digest,
            built.image.manifest.layers().len(),
            human_size(built.compressed_size),
            pushed.attempts,
            skipped,
            t.elapsed().as_secs_f32()
        );
        out.push(OciResult {
            reference: given.clone(),
            manifest_digest: pushed.digest,
            commit: built.commit.clone(),
            layer_count: built.image.manifest.layers().len(),
            compressed_size: built.compressed_size,
            architecture: built.platform.architecture.clone(),
            layers_reused: skipped,
        });
    }
    Ok(out)
}

/// A built, normalized image in a private OCI directory.
struct BuiltImage {
    /// Holds the private directory; removed on drop.
    tmp: tempfile::TempDir,
    oci_dir: PathBuf,
    commit: String,
    image: reproducible::NormalizedImage,
    compressed_size: u64,
    platform: reproducible::OciPlatform,
}

/// Add an `output_failed` class (unless the error already has one) with a context line.
pub(crate) fn output_failed_ctx(e: anyhow::Error, what: String) -> anyhow::Error {
    if crate::exit::class_of(&e).is_some() {
        return e.context(what);
    }
    e.context(Classified {
        class: ErrorClass::OutputFailed,
        message: what,
    })
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for k in labels.keys() {
        if k.is_empty() {
            return Err(invalid_input("Image label with an empty key"));
        }
        if k == "ostree.commit" || k == "ostree.final-diffid" {
            return Err(invalid_input(format!(
                "Image label '{k}' is set by the encapsulation itself and cannot be overridden"
            )));
        }
    }
    Ok(())
}

fn build_image(opts: &OciOptions) -> Result<BuiltImage> {
    let started = Instant::now();
    let max_layers = match NonZeroU32::new(opts.max_layers) {
        Some(n) if n.get() >= MIN_MAX_LAYERS => n,
        _ => {
            return Err(invalid_input(format!(
                "--max-layers {} is too small: chunked images need at least {MIN_MAX_LAYERS} layers (default {DEFAULT_MAX_LAYERS})",
                opts.max_layers
            )))
        }
    };
    validate_labels(&opts.labels)?;
    let created = match &opts.created {
        Some(c) => Some(reproducible::parse_created(c)?),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => {
                Some(reproducible::parse_created(&v).context("Reading SOURCE_DATE_EPOCH")?)
            }
            _ => None,
        },
    };
    let platform = opts
        .arch
        .as_deref()
        .map(reproducible::oci_platform_for)
        .transpose()?;
    let container_config = opts
        .image_config
        .as_deref()
        .map(read_image_config)
        .transpose()?;
    let prior: Option<oci_image::ImageManifest> = match &opts.prior_manifest {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("Reading previous build manifest {}", p.display()))
                .map_err(|e| invalid_input(format!("{e:#}")))?;
            let m: oci_image::ImageManifest = serde_json::from_str(&text).map_err(|e| {
                invalid_input(format!(
                    "Previous build manifest {} is not an OCI image manifest: {e}",
                    p.display()
                ))
            })?;
            encapsulate::validate_prior_manifest(&m, max_layers.get(), p)?;
            Some(m)
        }
        None => None,
    };

    let repo = ostree::Repo::new_for_path(&opts.repo);
    repo.open(gio::Cancellable::NONE).map_err(|e| {
        invalid_input(format!(
            "Opening OSTree repository {}: {e}",
            opts.repo.display()
        ))
    })?;
    let commit = repo
        .resolve_rev(&opts.rev, true)
        .map_err(|e| {
            invalid_input(format!(
                "Resolving '{}' in {}: {e}",
                opts.rev,
                opts.repo.display()
            ))
        })?
        .ok_or_else(|| {
            invalid_input(format!(
                "Ref or commit '{}' not found in repository {}",
                opts.rev,
                opts.repo.display()
            ))
        })?
        .to_string();

    let (commit_v, _) = repo
        .load_commit(&commit)
        .with_context(|| format!("Loading commit {commit}"))?;
    check_copymeta(&commit_v, &commit, &opts.copymeta, &opts.copymeta_opt)?;

    let result = (|| -> Result<BuiltImage> {
        let created = match created {
            Some(c) => c,
            None => {
                let ts = ostree::commit_get_timestamp(&commit_v);
                chrono::DateTime::from_timestamp(i64::try_from(ts).unwrap_or(0), 0).ok_or_else(
                    || anyhow::anyhow!("Commit {commit} has an invalid timestamp {ts}"),
                )?
            }
        };
        let created_s = reproducible::format_created(&created);

        std::fs::create_dir_all(&opts.workdir)
            .with_context(|| format!("Creating work directory {}", opts.workdir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("oci-build-")
            .tempdir_in(&opts.workdir)
            .with_context(|| {
                format!(
                    "Creating a temporary directory in {}",
                    opts.workdir.display()
                )
            })?;

        // 1. content -> package mapping. While this thread reads the rpmdb (found
        // without walking the whole tree), other threads walk the tree once and read
        // the object sizes, and (parallel writer) write the commit layer, which needs
        // no mapping.
        let t = Instant::now();
        let repo_path = repo
            .path()
            .path()
            .ok_or_else(|| anyhow::anyhow!("The OSTree repository has no local path"))?;
        let root_dirtree = crate::commit::tree_walk::root_dirtree(&repo, &commit)?;
        let oci_dir = tmp.path().join("oci");
        let writer = match (opts.writer, &prior) {
            (encapsulate::Writer::Parallel, None) => Some(
                chunkwriter::ImageWriter::open(&repo, &commit, &oci_dir)
                    .with_context(|| format!("Encapsulating commit {commit}"))?,
            ),
            _ => None,
        };
        // The scope returns before `tmp` may be dropped: no thread still writes into it.
        // The threads turn panics into errors: an unjoined thread's panic would
        // otherwise resurface as a panic when the scope ends.
        let (image, compressed_size, platform) = std::thread::scope(|s| {
            let commit_layer = writer
                .as_ref()
                .map(|w| s.spawn(|| catch_panic(|| w.commit_layer())?));
            let walked = s.spawn(|| {
                catch_panic(|| {
                    let tree = crate::commit::tree_walk::walk_tree(&repo_path, &root_dirtree)
                        .with_context(|| format!("Walking the tree of commit {commit}"))?;
                    let sizes = chunking::object_sizes(&repo_path, &tree)
                        .context("Reading object sizes")?;
                    Ok::<_, anyhow::Error>((tree, sizes))
                })?
            });
            let rpmdb = read_rpmdb(opts, &repo, &commit, tmp.path())?;
            let (tree, sizes) = walked
                .join()
                .map_err(|_| anyhow::anyhow!("Walking the tree panicked"))??;
            let mapping = map_to_packages(&repo, &commit, &tree, &rpmdb)?;
            eprintln!(
                "Mapped {} content objects of commit {commit} to {} components ({} packages in the rpmdb, {} unpackaged objects) in {:.1}s",
                mapping.owners.len(),
                mapping.components.len(),
                rpmdb.packages.len(),
                mapping
                    .objects_per_component()
                    .get(chunking::UNPACKAGED_ID)
                    .copied()
                    .unwrap_or(0),
                t.elapsed().as_secs_f32()
            );
            let sized = chunking::sized_meta(mapping.to_object_meta(), &sizes)
                .context("Computing component sizes")?;
            if let Some(p) = &opts.contentmeta_json {
                let json = serde_json::to_vec_pretty(&sized.sizes)
                    .context("Serializing content metadata")?;
                std::fs::write(p, json).with_context(|| format!("Writing {}", p.display()))?;
            }

            let platform = match platform {
                Some(p) => p,
                None => default_platform(&rpmdb)?,
            };

            // 2. labels and the layers
            let mut labels = BTreeMap::new();
            labels.insert(
                "org.opencontainers.image.created".to_string(),
                created_s.clone(),
            );
            labels.extend(opts.labels.clone());
            let t = Instant::now();
            let inputs = encapsulate::EncapsulateInputs {
                repo: &repo,
                commit: &commit,
                labels,
                cmd: opts.cmd.clone(),
                container_config: container_config.clone(),
                copymeta: opts.copymeta.clone(),
                copymeta_opt: opts.copymeta_opt.clone(),
                max_layers,
                contentmeta: &sized,
                prior_build: prior.as_ref(),
                created: created_s.clone(),
                writer: opts.writer,
            };
            match (&writer, commit_layer) {
                (Some(w), Some(commit_layer)) => {
                    let commit_layer = || {
                        commit_layer
                            .join()
                            .map_err(|_| anyhow::anyhow!("Writing the commit layer panicked"))?
                    };
                    catch_panic(|| w.finish(&inputs, &tree, Some(commit_layer), BUILD_TAG))
                        .with_context(|| {
                            format!("Encapsulating commit {commit} failed internally")
                        })?
                        .with_context(|| format!("Encapsulating commit {commit}"))?;
                }
                _ => encapsulate::encapsulate_to_ocidir(&inputs, &oci_dir, BUILD_TAG)?,
            }
            let encap_secs = t.elapsed().as_secs_f32();

            // 3. reproducibility + platform
            let image = reproducible::normalize(&oci_dir, BUILD_TAG, &created_s, &platform)
                .context("Normalizing the image (timestamps, architecture)")?;
            let compressed_size = image.manifest.layers().iter().map(|l| l.size()).sum();
            eprintln!(
                "Built image {} for commit {commit}: {} layers, {}, {} (encapsulate {encap_secs:.1}s, total {:.1}s)",
                image.manifest_digest,
                image.manifest.layers().len(),
                human_size(compressed_size),
                platform.architecture,
                started.elapsed().as_secs_f32()
            );
            Ok::<_, anyhow::Error>((image, compressed_size, platform))
        })?;
        Ok(BuiltImage {
            tmp,
            oci_dir,
            commit: commit.clone(),
            image,
            compressed_size,
            platform,
        })
    })();
    result.map_err(|e| output_failed_ctx(e, format!("Building the OCI image of commit {commit}")))
}

/// `--copymeta` keys must exist and be strings; `--copymeta-opt` keys, if present,
/// must be strings (ostree-ext's own message does not name the option).
fn check_copymeta(
    commit_v: &ostree::glib::Variant,
    commit: &str,
    required: &[String],
    optional: &[String],
) -> Result<()> {
    let meta = ostree::glib::VariantDict::new(Some(&commit_v.child_value(0)));
    for (keys, must) in [(required, true), (optional, false)] {
        for k in keys {
            match meta.lookup_value(k, None) {
                None if must => {
                    return Err(invalid_input(format!(
                        "--copymeta {k}: commit {commit} has no metadata key '{k}'"
                    )))
                }
                None => {}
                Some(v) if v.str().is_none() => {
                    return Err(invalid_input(format!(
                        "--copymeta {k}: metadata key '{k}' of commit {commit} is of type {}, not a string",
                        v.type_()
                    )))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Map every content object of `tree` to its package in `rpmdb`.
fn map_to_packages(
    repo: &ostree::Repo,
    commit: &str,
    tree: &crate::commit::tree_walk::CommitTree,
    rpmdb: &rpmdb::RpmDbContents,
) -> Result<chunking::ContentMapping> {
    let mut link_cache: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut symlink = |c: &str| -> Result<Option<String>> {
        if let Some(t) = link_cache.get(c) {
            return Ok(t.clone());
        }
        let t = chunking::symlink_target(repo, c)?;
        link_cache.insert(c.to_string(), t.clone());
        Ok(t)
    };
    chunking::build_mapping(tree, rpmdb, &mut symlink)
        .with_context(|| format!("Mapping the content of commit {commit} to packages"))
}

/// Read the rpmdb: from `opts.rootfs_for_rpmdb`, or out of the commit.
fn read_rpmdb(
    opts: &OciOptions,
    repo: &ostree::Repo,
    commit: &str,
    tmp: &Path,
) -> Result<rpmdb::RpmDbContents> {
    if let Some(root) = &opts.rootfs_for_rpmdb {
        let Some(dbpath) = rpmdb::find_dbpath(root) else {
            return Err(invalid_input(format!(
                "No rpmdb found in {} (looked in {})",
                root.display(),
                rpmdb::RPMDB_CANDIDATES.join(", ")
            )));
        };
        return rpmdb::query(root, dbpath);
    }
    let root = tmp.join("rpmdb-root");
    std::fs::create_dir_all(&root).with_context(|| format!("Creating {}", root.display()))?;
    let r = match chunking::extract_rpmdb(repo, commit, &root)? {
        Some(dbpath) => rpmdb::query(&root, &dbpath)?,
        None => {
            eprintln!("warning: the commit has no rpmdb; all content goes into one component");
            rpmdb::RpmDbContents::default()
        }
    };
    std::fs::remove_dir_all(&root).with_context(|| format!("Removing {}", root.display()))?;
    Ok(r)
}

/// The architecture most packages are built for; the host's if the rpmdb has none.
fn default_platform(db: &rpmdb::RpmDbContents) -> Result<reproducible::OciPlatform> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in db.packages.values() {
        if !matches!(p.arch.as_str(), "noarch" | "(none)" | "" | "src") {
            *counts.entry(p.arch.as_str()).or_default() += 1;
        }
    }
    match counts
        .into_iter()
        .max_by_key(|(a, n)| (*n, std::cmp::Reverse(*a)))
    {
        Some((arch, _)) => reproducible::oci_platform_for(arch),
        None => {
            let host = std::env::consts::ARCH;
            eprintln!("warning: cannot tell the commit's architecture from its packages; using the host's ({host}); pass --arch to choose");
            reproducible::oci_platform_for(host)
        }
    }
}

/// Parse `--image-config`: an OCI runtime config, or a whole image configuration.
fn read_image_config(path: &Path) -> Result<oci_image::Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid_input(format!("Reading image config {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid_input(format!("Image config {} is not JSON: {e}", path.display())))?;
    let inner = match v.get("config") {
        Some(c) if v.get("rootfs").is_some() || v.get("architecture").is_some() => c.clone(),
        _ => v,
    };
    serde_json::from_value(inner).map_err(|e| {
        invalid_input(format!(
            "Image config {} is not an OCI image config object: {e}",
            path.display()
        ))
    })
}

pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::class_of;

    #[test]
    fn small_max_layers_is_invalid_input() {
        let opts = OciOptions {
            max_layers: 3,
            ..Default::default()
        };
        let e = build_image(&opts).err().unwrap();
        assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput));
        assert!(format!("{e}").contains("at least 4"), "{e}");
    }

    #[test]
    fn platform_from_packages() {
        let mut db = rpmdb::RpmDbContents::default();
        for (n, a) in [
            ("a", "noarch"),
            ("b", "aarch64"),
            ("c", "aarch64"),
            ("d", "x86_64"),
        ] {
            db.packages.insert(
                n.into(),
                rpmdb::RpmPackage {
                    name: n.into(),
                    nevra: n.into(),
                    arch: a.into(),
                    srcrpm: n.into(),
                    buildtime: 0,
                    changelog_times: vec![],
                },
            );
        }
        assert_eq!(default_platform(&db).unwrap().architecture, "arm64");
    }

    #[test]
    fn image_config_forms() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.json");
        std::fs::write(&a, r#"{"Env":["A=1"],"User":"root"}"#).unwrap();
        assert_eq!(
            read_image_config(&a).unwrap().user().as_deref(),
            Some("root")
        );
        let b = d.path().join("b.json");
        std::fs::write(
            &b,
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["B=2"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(
            read_image_config(&b).unwrap().env().as_ref().unwrap()[0],
            "B=2"
        );
        std::fs::write(&b, "[").unwrap();
        assert_eq!(
            class_of(&read_image_config(&b).unwrap_err()),
            Some(ErrorClass::InvalidInput)
        );
    }
}

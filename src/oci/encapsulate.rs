//! Encapsulate a commit into a local OCI directory: with the parallel writer
//! (`chunkwriter`, the default), or with ostree-ext's `encapsulate` when the layout
//! of a previous build must be kept (its packer does that) or when asked to.
//!
//! ostree-ext's futures are `!Send`, so they run on a current-thread tokio
//! runtime with `block_on` (never `tokio::spawn`). Its chunker has `assert!`s and
//! `panic!`s for inputs it does not expect; the callers validate inputs so those
//! cannot trigger, and as a last line of defence a panic is caught here and turned
//! into an error instead of aborting the compose.
//!
//! Not for: mapping content to packages (`chunking`), fixing timestamps
//! (`reproducible`) or pushing (`push`).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use ostree_ext::chunking::ObjectMetaSized;
use ostree_ext::container::{Config, ExportOpts, ImageReference, Transport};
use ostree_ext::oci_spec::image as oci_image;

/// Inputs for one ostree-ext run.
pub struct EncapsulateInputs<'a> {
    pub repo: &'a ostree::Repo,
    pub commit: &'a str,
    pub labels: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub container_config: Option<oci_image::Config>,
    pub copymeta: Vec<String>,
    pub copymeta_opt: Vec<String>,
    pub max_layers: NonZeroU32,
    pub contentmeta: &'a ObjectMetaSized,
    pub prior_build: Option<&'a oci_image::ImageManifest>,
    pub created: String,
    pub writer: Writer,
}

/// Which implementation writes the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Writer {
    /// `chunkwriter`: layers generated and compressed on all cores; ostree-ext is
    /// still used when a previous build's layout must be followed.
    #[default]
    Parallel,
    /// ostree-ext's `encapsulate` (one thread), for comparison.
    OstreeExt,
}

/// Write the image into the OCI directory `oci_dir` (created if missing) under `tag`.
pub fn encapsulate_to_ocidir(
    inputs: &EncapsulateInputs<'_>,
    oci_dir: &Path,
    tag: &str,
) -> Result<()> {
    if inputs.writer == Writer::Parallel && inputs.prior_build.is_none() {
        // A panic in a layer thread (ocidir unwraps some write errors) reaches us
        // through the thread scope; report it as an error like ostree-ext's.
        catch_panic(|| super::chunkwriter::write_image(inputs, oci_dir, tag))
            .with_context(|| format!("Encapsulating commit {} failed internally", inputs.commit))?
            .with_context(|| format!("Encapsulating commit {}", inputs.commit))?;
        return Ok(());
    }
    encapsulate_with_ostree_ext(inputs, oci_dir, tag)
}

/// Write the image with ostree-ext (one thread; honours `prior_build`).
fn encapsulate_with_ostree_ext(
    inputs: &EncapsulateInputs<'_>,
    oci_dir: &Path,
    tag: &str,
) -> Result<()> {
    let dest = ImageReference {
        transport: Transport::OciDir,
        name: format!("{}:{tag}", oci_dir.display()),
    };
    let config = Config {
        labels: Some(inputs.labels.clone()),
        cmd: inputs.cmd.clone(),
    };
    let mut opts = ExportOpts::default();
    opts.max_layers = Some(inputs.max_layers);
    opts.contentmeta = Some(inputs.contentmeta);
    opts.prior_build = inputs.prior_build;
    opts.created = Some(inputs.created.clone());
    opts.legacy_version_label = true;
    opts.copy_meta_keys = inputs.copymeta.clone();
    opts.copy_meta_opt_keys = inputs.copymeta_opt.clone();
    opts.container_config = inputs.container_config.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Creating the async runtime")?;
    let run = || {
        rt.block_on(ostree_ext::container::encapsulate(
            inputs.repo,
            inputs.commit,
            &config,
            Some(opts.clone()),
            &dest,
        ))
    };
    catch_panic(run)
        .with_context(|| {
            format!(
                "ostree-ext failed internally while chunking commit {}; try another --max-layers value or drop --previous-build-manifest",
                inputs.commit
            )
        })?
        .with_context(|| format!("Encapsulating commit {} with ostree-ext", inputs.commit))?;
    Ok(())
}

/// Run `f`, turning a panic into an error carrying the panic message.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        anyhow!("panic: {msg}")
    })
}

/// Check a prior build's manifest so ostree-ext's packer cannot panic on it:
/// at least one layer after the commit layer, every such layer annotated with
/// `ostree.components`, no component listed twice, and no more layers than `max_layers`.
pub fn validate_prior_manifest(
    m: &oci_image::ImageManifest,
    max_layers: u32,
    source: &Path,
) -> Result<()> {
    let bad = |why: String| {
        crate::exit::invalid_input(format!(
            "Previous build manifest {}: {why}; it must be the manifest of a chunked ostree image (pass the previous image's manifest JSON, or omit the option)",
            source.display()
        ))
    };
    let layers = m.layers();
    if layers.len() < 2 {
        return Err(bad(format!(
            "it has {} layer(s), need at least 2",
            layers.len()
        )));
    }
    if layers.len() - 1 > max_layers as usize {
        return Err(bad(format!(
            "it has {} package layers but --max-layers is {max_layers}; raise --max-layers",
            layers.len() - 1
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, l) in layers.iter().enumerate().skip(1) {
        let comps = l
            .annotations()
            .as_ref()
            .and_then(|a| a.get("ostree.components"))
            .ok_or_else(|| bad(format!("layer {i} has no ostree.components annotation")))?;
        for c in comps.split(',').filter(|c| !c.is_empty()) {
            if !seen.insert(c.to_string()) {
                return Err(bad(format!("component '{c}' appears in two layers")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::str::FromStr;

    fn desc(annos: Option<&str>) -> oci_image::Descriptor {
        let mut d = oci_image::DescriptorBuilder::default()
            .media_type(oci_image::MediaType::ImageLayerGzip)
            .size(1u64)
            .digest(
                oci_image::Digest::from_str(
                    "sha256:a5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7",
                )
                .unwrap(),
            )
            .build()
            .unwrap();
        if let Some(a) = annos {
            let mut m = HashMap::new();
            m.insert("ostree.components".to_string(), a.to_string());
            d.set_annotations(Some(m));
        }
        d
    }

    fn manifest(layers: Vec<oci_image::Descriptor>) -> oci_image::ImageManifest {
        ocidir::new_empty_manifest().layers(layers).build().unwrap()
    }

    #[test]
    fn panics_become_errors() {
        assert_eq!(catch_panic(|| 3).unwrap(), 3);
        let e = catch_panic(|| -> u32 { panic!("assertion left == right failed") }).unwrap_err();
        assert!(format!("{e}").contains("assertion left == right"), "{e}");
    }

    #[test]
    fn prior_manifest_checks() {
        let p = Path::new("prev.json");
        let ok = manifest(vec![desc(None), desc(Some("a,b")), desc(Some(""))]);
        validate_prior_manifest(&ok, 4, p).unwrap();
        assert!(validate_prior_manifest(&manifest(vec![desc(None)]), 4, p).is_err());
        let dup = manifest(vec![desc(None), desc(Some("a")), desc(Some("a"))]);
        assert!(validate_prior_manifest(&dup, 4, p).is_err());
        let missing = manifest(vec![desc(None), desc(None)]);
        assert!(validate_prior_manifest(&missing, 4, p).is_err());
        let many = manifest(
            (0..7)
                .map(|i| {
                    if i == 0 {
                        desc(None)
                    } else {
                        desc(Some(&format!("p{i}")))
                    }
                })
                .collect(),
        );
        let e = validate_prior_manifest(&many, 4, p).unwrap_err();
        assert!(format!("{e}").contains("max-layers"), "{e}");
    }
}

//! The drop-in core of `ostree-composer compose container-encapsulate --repo REPO REF IMGREF`,
//! with rpm-ostree's option names and semantics (§1.2), on top of [`super::build_and_push`].
//!
//! Not for: clap definitions (the CLI module owns those) or the image building itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use ostree_ext::oci_spec::image as oci_image;

use super::{
    build_and_push, human_size, imageref, output_failed_ctx, OciOptions, OciResult,
    DEFAULT_MAX_LAYERS,
};
use crate::exit::{invalid_input, unsupported};

/// `compose container-encapsulate` options, as rpm-ostree spells them.
#[derive(Debug, Clone, Default)]
pub struct EncapsulateOptions {
    /// `--repo`
    pub repo: PathBuf,
    /// `REF`
    pub rev: String,
    /// `IMGREF`
    pub imgref: String,
    /// `-l/--label KEY=VALUE`
    pub labels: Vec<String>,
    /// `--image-config FILE`
    pub image_config: Option<PathBuf>,
    /// `--arch`
    pub arch: Option<String>,
    /// `--copymeta KEY`
    pub copymeta: Vec<String>,
    /// `--copymeta-opt KEY`
    pub copymeta_opt: Vec<String>,
    /// `--cmd`
    pub cmd: Option<Vec<String>>,
    /// `--max-layers` (default 64)
    pub max_layers: Option<u32>,
    /// `--format-version` (default 1; only 1 is supported)
    pub format_version: Option<u32>,
    /// `--write-contentmeta-json FILE`
    pub write_contentmeta_json: Option<PathBuf>,
    /// `--compare-with-build IMGREF`: print the layer differences against this image.
    pub compare_with_build: Option<String>,
    /// `--previous-build-manifest FILE`
    pub previous_build_manifest: Option<PathBuf>,
    /// `--authfile` (not an rpm-ostree flag of this subcommand, but needed for registries).
    pub authfile: Option<PathBuf>,
    /// TLS verification for registry destinations (default true).
    pub tls_verify: Option<bool>,
    /// Scratch directory; default: the repository's own `tmp/`.
    pub workdir: Option<PathBuf>,
}

/// Split `KEY=VALUE` labels.
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = crate::cli::parse_key_value(l, "--label")?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `compose container-encapsulate --repo REPO REF IMGREF`.
pub fn container_encapsulate(e: &EncapsulateOptions) -> Result<OciResult> {
    match e.format_version.unwrap_or(1) {
        1 => {}
        2 => {
            return Err(unsupported(
                "--format-version=2 (parent directories in every layer) is not supported; use 1",
            ))
        }
        n => {
            return Err(invalid_input(format!(
                "--format-version={n}: expected 1 or 2"
            )))
        }
    }
    let mut copymeta_opt = e.copymeta_opt.clone();
    if !copymeta_opt.iter().any(|k| k == "rpmostree.inputhash") {
        copymeta_opt.push("rpmostree.inputhash".into());
    }
    let opts = OciOptions {
        repo: e.repo.clone(),
        rev: e.rev.clone(),
        max_layers: e.max_layers.unwrap_or(DEFAULT_MAX_LAYERS),
        labels: parse_labels(&e.labels)?,
        arch: e.arch.clone(),
        tls_verify: e.tls_verify.unwrap_or(true),
        authfile: e.authfile.clone(),
        workdir: e.workdir.clone().unwrap_or_else(|| e.repo.join("tmp")),
        image_config: e.image_config.clone(),
        cmd: e.cmd.clone(),
        prior_manifest: e.previous_build_manifest.clone(),
        copymeta: e.copymeta.clone(),
        copymeta_opt,
        contentmeta_json: e.write_contentmeta_json.clone(),
        ..OciOptions::default()
    };
    let result = build_and_push(&opts, &e.imgref)?;
    if let Some(other) = &e.compare_with_build {
        compare_with_build(&result, &e.imgref, other, opts.tls_verify)
            .map_err(|err| output_failed_ctx(err, format!("Comparing with {other}")))?;
    }
    Ok(result)
}

/// Print which layers of the new image `new_ref` are shared with `other`.
fn compare_with_build(new: &OciResult, new_ref: &str, other: &str, tls_verify: bool) -> Result<()> {
    let new_dest = imageref::parse_destination(new_ref)?;
    let new_m = inspect_raw(&new_dest.skopeo_ref(), tls_verify)?;
    let other_ref = match imageref::parse_destination(other) {
        Ok(d) => d.skopeo_ref(),
        Err(_) => other.to_string(),
    };
    let old_m = inspect_raw(&other_ref, tls_verify)?;
    let old: std::collections::HashSet<String> = old_m
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    let (mut shared, mut added, mut added_size) = (0usize, 0usize, 0u64);
    for l in new_m.layers() {
        if old.contains(&l.digest().to_string()) {
            shared += 1;
        } else {
            added += 1;
            added_size += l.size();
        }
    }
    let removed = old_m.layers().len() - shared.min(old_m.layers().len());
    println!(
        "Compared {} with {other}: {shared} layers shared, {added} new ({}), {removed} removed",
        new.manifest_digest,
        human_size(added_size)
    );
    Ok(())
}

fn inspect_raw(skopeo_ref: &str, tls_verify: bool) -> Result<oci_image::ImageManifest> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.arg("inspect").arg("--raw");
    if skopeo_ref.starts_with("docker://") {
        cmd.arg(format!("--tls-verify={tls_verify}"));
    }
    cmd.arg(skopeo_ref);
    let out = cmd.output().context("Running skopeo inspect")?;
    if !out.status.success() {
        anyhow::bail!(
            "skopeo inspect {skopeo_ref} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("Parsing the manifest of {skopeo_ref}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{class_of, ErrorClass};

    #[test]
    fn labels_parse() {
        let l = parse_labels(&["a=b".into(), "c=d=e".into()]).unwrap();
        assert_eq!(l["c"], "d=e");
        for bad in ["novalue", "=v"] {
            let e = parse_labels(&[bad.into()]).unwrap_err();
            assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput), "{bad}");
        }
    }

    #[test]
    fn format_version_2_unsupported() {
        let e = container_encapsulate(&EncapsulateOptions {
            format_version: Some(2),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(class_of(&e), Some(ErrorClass::Unsupported));
    }
}

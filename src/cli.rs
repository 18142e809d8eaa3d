//! Command line definitions (clap) and dispatch.
//!
//! Two entry points: the one-shot `ostree-composer MANIFEST [OPTIONS]` (what
//! the container runs) and the rpm-ostree compatible `compose` subcommands.
//! This module only turns arguments into option structs for [`crate::compose`];
//! it holds no behaviour of its own. Flags that rpm-ostree has and we do not
//! implement yet are accepted by the parser and refused with a clear
//! "not supported yet" error (exit 4): nothing is silently ignored.

use crate::exit::{unsupported, EXIT_CODES_HELP};
use crate::progress::ProgressMode;
use anyhow::Result;
use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  # Compose the manifest into ./repo (archive mode, summary updated), as the container does:
  ostree-composer manifest.yaml
  podman run --rm -v ./repo:/srv/repo localhost/composer manifest.yaml

  # Also push an OCI image and sign the exported repo:
  ostree-composer manifest.yaml --repo /srv/repo --cachedir /srv/cache \\
      --oci docker://registry.example.com/os/base:latest --authfile auth.json \\
      --gpg-sign 0xKEYID --static-delta --progress=json

  # Drop-in for rpm-ostree compose tree:
  ostree-composer compose tree --unified-core --repo=repo --cachedir=cache manifest.yaml
  ostree-composer compose tree --print-only manifest.yaml

  # Encapsulate an existing commit:
  ostree-composer compose container-encapsulate --repo=repo myos/x86_64/stable oci-archive:os.ociarchive";

#[derive(Debug, Parser)]
#[command(
    name = "ostree-composer",
    version,
    about = "Compose rpm-ostree treefiles into OSTree commits, archive repos and OCI images",
    long_about = "Compose an rpm-ostree treefile (manifest) into an OSTree commit, export it to an \
archive repository that plain HTTP can serve, and encapsulate it as an OCI image. Runs as root in a \
default rootless podman container: no --privileged, no added capabilities, no /dev/fuse.",
    after_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}"),
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub oneshot: OneShotArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// rpm-ostree compatible compose commands.
    Compose(ComposeCommand),
}

#[derive(Debug, Args)]
pub struct ComposeCommand {
    #[command(subcommand)]
    pub command: ComposeSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeSubcommand {
    /// Process a treefile: install packages, post-process, commit (drop-in for `rpm-ostree compose tree`).
    Tree(TreeArgs),
    /// Encapsulate an OSTree commit as an OCI image (drop-in for `rpm-ostree compose container-encapsulate`).
    ContainerEncapsulate(EncapsulateArgs),
    /// Not supported yet (rpm-ostree `compose install`).
    #[command(hide = true)]
    Install(UnsupportedArgs),
    /// Not supported yet (rpm-ostree `compose postprocess`).
    #[command(hide = true)]
    Postprocess(UnsupportedArgs),
    /// Not supported yet (rpm-ostree `compose commit`).
    #[command(hide = true)]
    Commit(UnsupportedArgs),
    /// Not supported yet (rpm-ostree `compose extensions`).
    #[command(hide = true)]
    Extensions(UnsupportedArgs),
    /// Not supported yet (rpm-ostree `compose image`); use the one-shot command with --oci.
    #[command(hide = true)]
    Image(UnsupportedArgs),
    /// Not supported yet (rpm-ostree `compose rootfs`).
    #[command(hide = true)]
    Rootfs(UnsupportedArgs),
    /// Not supported yet (rpm-ostree `compose build-chunked-oci`).
    #[command(hide = true)]
    BuildChunkedOci(UnsupportedArgs),
}

/// Any arguments, for subcommands that exist in rpm-ostree but not here yet.
#[derive(Debug, Args)]
pub struct UnsupportedArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// Flags of `rpm-ostree compose tree` (GOption groups common, repo, install, commit).
#[derive(Debug, Args, Default)]
pub struct TreeArgs {
    /// The treefile (YAML or JSON; .ks kickstart subset).
    pub treefile: PathBuf,

    /// Use new unified core codepath (always on here; accepted for compatibility).
    #[arg(long)]
    pub unified_core: bool,
    #[arg(long, hide = true)]
    pub ex_unified_core: bool,

    /// Path to OSTree repository (must exist; any mode).
    #[arg(short = 'r', long, value_name = "REPO")]
    pub repo: Option<PathBuf>,
    /// Repository holding ostree-layers refs (not supported yet).
    #[arg(long, value_name = "REPO")]
    pub layer_repo: Option<PathBuf>,

    /// Always commit; disables change detection.
    #[arg(long)]
    pub force_nocache: bool,
    /// Don't refresh rpm-md metadata; use what the cache has.
    #[arg(long)]
    pub cache_only: bool,
    /// Cache rpm-md metadata and packages here, reused by the next run.
    #[arg(long, value_name = "CACHEDIR")]
    pub cachedir: Option<PathBuf>,
    /// Install every package with rpm's own transaction, not from the package cache in
    /// --cachedir (the cache assembles the same root much faster on reruns).
    #[arg(long)]
    pub no_package_cache: bool,
    /// Always run depmod and dracut, never reusing the module index and initramfs that an
    /// earlier compose with --cachedir made from the same inputs.
    #[arg(long)]
    pub no_initramfs_cache: bool,
    /// Let dracut run as it comes: dracut-install forks `cp` for every file it puts into the
    /// initramfs (as it does on filesystems that cannot clone) instead of copying in the kernel,
    /// and `ldd` is the tree's shell script (same image, slower).
    #[arg(long)]
    pub no_dracut_fast_copy: bool,
    /// Root filesystem used to configure dnf (not supported yet).
    #[arg(long, value_name = "PATH")]
    pub source_root: Option<PathBuf>,
    /// Resolve and download packages into the cache, then exit.
    #[arg(long)]
    pub download_only: bool,
    /// Download RPMs only (not supported yet; use --download-only).
    #[arg(long)]
    pub download_only_rpms: bool,
    /// HTTP proxy for repository access.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Print the transaction and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Expand includes, print the flattened treefile as JSON and exit.
    #[arg(long)]
    pub print_only: bool,
    /// Disable SELinux labelling of the package imports (labels at commit time stay).
    #[arg(long)]
    pub disable_selinux: bool,
    /// Update the modification time of FILE if a new commit was created.
    #[arg(long, value_name = "FILE")]
    pub touch_if_changed: Option<PathBuf>,
    /// Use this commit for change detection and passwd/group checks.
    #[arg(long, value_name = "COMMIT")]
    pub previous_commit: Option<String>,
    /// Use this input hash for change detection.
    #[arg(long, value_name = "DIGEST")]
    pub previous_inputhash: Option<String>,
    /// Use this version as the previous one for automatic versioning.
    #[arg(long, value_name = "VERSION")]
    pub previous_version: Option<String>,
    /// Working directory (ignored with unified core, as in rpm-ostree).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub workdir_tmpfs: bool,
    /// Also run default postprocessing (only meaningful for `compose install`).
    #[arg(long)]
    pub postprocess: bool,
    /// Write a lockfile of the resolved packages to FILE.
    #[arg(long, value_name = "FILE")]
    pub ex_write_lockfile_to: Option<PathBuf>,
    /// Read a lockfile (repeatable; later files override earlier ones).
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    pub ex_lockfile: Vec<PathBuf>,
    /// Only allow packages in the lockfiles.
    #[arg(long)]
    pub ex_lockfile_strict: bool,

    /// Add a string metadata KEY=VALUE to the commit (repeatable).
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub add_metadata_string: Vec<String>,
    /// Add metadata from a JSON object in FILE (repeatable).
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    pub add_metadata_from_json: Vec<PathBuf>,
    /// Write the commit checksum to FILE instead of updating the ref.
    #[arg(long, value_name = "FILE")]
    pub write_commitid_to: Option<PathBuf>,
    /// Write the compose JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_composejson_to: Option<PathBuf>,
    /// Create a commit without a parent.
    #[arg(long, conflicts_with = "parent")]
    pub no_parent: bool,
    /// Commit with this parent (a ref or checksum).
    #[arg(long, value_name = "REV")]
    pub parent: Option<String>,

    /// Progress output on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// Flags of `rpm-ostree compose container-encapsulate`.
#[derive(Debug, Args)]
pub struct EncapsulateArgs {
    /// OSTree ref or checksum to encapsulate.
    pub ostree_ref: String,
    /// Image reference: oci:DIR[:TAG], oci-archive:FILE, docker://REGISTRY/NAME:TAG.
    pub imgref: String,
    /// Path to the OSTree repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// Additional label KEY=VALUE (repeatable).
    #[arg(short = 'l', long, value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub label: Vec<String>,
    /// JSON file with an OCI image `config` object.
    #[arg(long, value_name = "FILE")]
    pub image_config: Option<PathBuf>,
    /// Architecture of the image (default: the commit's, else the host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Copy commit metadata KEY to a label (must exist).
    #[arg(long, value_name = "KEY", action = ArgAction::Append)]
    pub copymeta: Vec<String>,
    /// Copy commit metadata KEY to a label if present.
    #[arg(long, value_name = "KEY", action = ArgAction::Append)]
    pub copymeta_opt: Vec<String>,
    /// Command for the image config.
    #[arg(long, action = ArgAction::Append)]
    pub cmd: Vec<String>,
    /// Maximum number of layers (at least 4).
    #[arg(long, default_value_t = 64)]
    pub max_layers: u32,
    /// Image format version (only 1 is supported).
    #[arg(long, default_value_t = 1)]
    pub format_version: u32,
    /// Write the package/layer mapping as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_contentmeta_json: Option<PathBuf>,
    /// Compare with a previous build (not supported yet).
    #[arg(long, value_name = "IMGREF")]
    pub compare_with_build: Option<String>,
    /// Previous build manifest JSON, to keep the layer packing stable.
    #[arg(long, value_name = "FILE")]
    pub previous_build_manifest: Option<PathBuf>,
    /// Verify TLS for registry destinations.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dest_tls_verify: bool,
    /// Registry credentials file.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Progress output on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// The one-shot command: compose, export, encapsulate, push.
#[derive(Debug, Args, Default)]
pub struct OneShotArgs {
    /// The manifest (treefile) to compose; relative paths are looked up in the current directory.
    #[arg(required = true)]
    pub manifest: Option<PathBuf>,
    /// Archive repo to export to (default: /srv/repo when it exists, else ./repo). Created in
    /// archive mode if missing or empty; an existing repo of another mode is written as it is.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Cache (rpm-md, packages, build repo), reused by the next run (default: /srv/cache when it
    /// exists, else a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub cachedir: Option<PathBuf>,
    /// Install every package with rpm's own transaction, not from the package cache in the
    /// cache directory (the cache assembles the same root much faster on reruns).
    #[arg(long)]
    pub no_package_cache: bool,
    /// Always run depmod and dracut, never reusing the module index and initramfs that an
    /// earlier compose made from the same inputs (kept in the cache directory).
    #[arg(long)]
    pub no_initramfs_cache: bool,
    /// Let dracut run as it comes: dracut-install forks `cp` for every file it puts into the
    /// initramfs (as it does on filesystems that cannot clone) instead of copying in the kernel,
    /// and `ldd` is the tree's shell script (same image, slower).
    #[arg(long)]
    pub no_dracut_fast_copy: bool,
    /// Also write/push an OCI image: oci:DIR[:TAG], oci-archive:FILE, docker://REGISTRY/NAME:TAG (repeatable).
    #[arg(long, value_name = "IMAGEREF", action = ArgAction::Append)]
    pub oci: Vec<String>,
    /// Verify TLS when pushing to a registry.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dest_tls_verify: bool,
    /// Registry credentials file (containers auth.json format).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// GPG key id: sign the exported commit and summary.
    #[arg(long, value_name = "KEYID")]
    pub gpg_sign: Option<String>,
    /// GnuPG home directory holding the signing key.
    #[arg(long, value_name = "DIR")]
    pub gpg_homedir: Option<PathBuf>,
    /// Generate a static delta from the previous commit in the exported repo.
    #[arg(long)]
    pub static_delta: bool,
    /// Maximum number of OCI layers (at least 4).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_layers: u32,
    /// OCI image label KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub label: Vec<String>,
    /// Progress output on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Write the compose JSON (commit, exported repo, image digests) to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_composejson_to: Option<PathBuf>,
    /// Always commit; disables change detection.
    #[arg(long)]
    pub force_nocache: bool,
    /// Don't refresh rpm-md metadata.
    #[arg(long)]
    pub cache_only: bool,
    /// Resolve, print what would be done, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the flattened manifest as JSON and exit.
    #[arg(long)]
    pub print_only: bool,
    /// Read a lockfile (repeatable).
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    pub lockfile: Vec<PathBuf>,
    /// Only allow packages in the lockfiles.
    #[arg(long)]
    pub lockfile_strict: bool,
    /// Write a lockfile of the resolved packages to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_lockfile_to: Option<PathBuf>,
}

/// Parse the process arguments and run.
pub fn run() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version exit 0; usage errors exit 2.
            e.exit();
        }
    };
    dispatch(cli)
}

/// Run a parsed command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Compose(c)) => match c.command {
            ComposeSubcommand::Tree(args) => {
                crate::progress::init(args.progress);
                crate::compose::run_compose_tree(args)
            }
            ComposeSubcommand::ContainerEncapsulate(args) => {
                crate::progress::init(args.progress);
                crate::compose::run_container_encapsulate(args)
            }
            ComposeSubcommand::Install(_) => Err(not_yet("compose install")),
            ComposeSubcommand::Postprocess(_) => Err(not_yet("compose postprocess")),
            ComposeSubcommand::Commit(_) => Err(not_yet("compose commit")),
            ComposeSubcommand::Extensions(_) => Err(not_yet("compose extensions")),
            ComposeSubcommand::Image(_) => Err(unsupported(
                "`compose image` is not supported yet; use `ostree-composer MANIFEST --oci IMAGEREF` instead",
            )),
            ComposeSubcommand::Rootfs(_) => Err(not_yet("compose rootfs")),
            ComposeSubcommand::BuildChunkedOci(_) => Err(not_yet("compose build-chunked-oci")),
        },
        None => {
            crate::progress::init(cli.oneshot.progress);
            crate::compose::run_oneshot(cli.oneshot)
        }
    }
}

/// Split a `KEY=VALUE` argument of `flag` (`--label`, `--add-metadata-string`);
/// an empty key or a missing `=` is an input error naming the flag.
pub fn parse_key_value<'a>(kv: &'a str, flag: &str) -> Result<(&'a str, &'a str)> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(crate::exit::invalid_input(format!(
            "{flag} '{kv}': expected KEY=VALUE"
        ))),
    }
}

fn not_yet(what: &str) -> anyhow::Error {
    unsupported(format!(
        "`{what}` is not supported yet; `compose tree` runs the whole pipeline"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_shows_examples_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("compose tree --print-only"), "{help}");
    }

    #[test]
    fn tree_accepts_rpm_ostree_flags() {
        let cli = Cli::try_parse_from([
            "ostree-composer",
            "compose",
            "tree",
            "--unified-core",
            "--repo=repo",
            "--cachedir",
            "cache",
            "--force-nocache",
            "--add-metadata-string=a=b",
            "--add-metadata-string",
            "c=d",
            "--ex-lockfile=l1.json",
            "--ex-lockfile=l2.json",
            "--write-composejson-to=c.json",
            "--no-parent",
            "manifest.yaml",
        ])
        .unwrap();
        let Some(Command::Compose(ComposeCommand {
            command: ComposeSubcommand::Tree(t),
        })) = cli.command
        else {
            panic!("not a tree command");
        };
        assert_eq!(t.repo.as_deref(), Some(std::path::Path::new("repo")));
        assert_eq!(t.add_metadata_string, vec!["a=b", "c=d"]);
        assert_eq!(t.ex_lockfile.len(), 2);
        assert!(t.no_parent && t.force_nocache && t.unified_core);
    }

    #[test]
    fn oneshot_parses_manifest_and_outputs() {
        let cli = Cli::try_parse_from([
            "ostree-composer",
            "manifest.yaml",
            "--oci",
            "oci:/tmp/x",
            "--oci=docker://127.0.0.1:5000/a/b:c",
            "--dest-tls-verify=false",
            "--label",
            "a=b",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.oneshot.oci.len(), 2);
        assert!(!cli.oneshot.dest_tls_verify);
        let cli = Cli::try_parse_from(["ostree-composer", "m.yaml"]).unwrap();
        assert!(cli.oneshot.dest_tls_verify);
    }

    #[test]
    fn missing_manifest_is_usage_error() {
        let e = Cli::try_parse_from(["ostree-composer"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn parent_conflicts_with_no_parent() {
        assert!(Cli::try_parse_from([
            "ostree-composer",
            "compose",
            "tree",
            "--parent=abc",
            "--no-parent",
            "--repo=r",
            "t.yaml"
        ])
        .is_err());
    }
}

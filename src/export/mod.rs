//! The one-shot export: put a commit into an archive repository that a plain
//! HTTP server can serve. The destination is created in `archive` mode when it
//! is missing or an empty directory (an existing repository of another mode is
//! written as it is). The commit is pulled with the history the source has,
//! signed (GPG) before anything points at it, a static delta from its parent
//! is generated when asked (and the parent is in the destination), then the ref
//! moves and the summary is regenerated (and signed). Rerunning with nothing
//! new writes nothing and leaves a valid summary in place.
//!
//! Concurrency: the export takes the destination's [`RepoLock`] (several
//! composes may export into one repository) unless this process already holds
//! it or the destination is the source repository; the caller is expected to
//! hold the source's lock.
//!
//! Files are written as the current user; archive repositories never chown.
//! Into an archive repository from a bare-mode one, the content objects are
//! first compressed on every core by [`precompress`] with zlib-ng (libostree's
//! pull-local deflates them with the system zlib, about twice the CPU time);
//! the pull then finds them present and copies the metadata.
//!
//! Not for: committing ([`crate::commit`]), OCI images ([`crate::oci`]).

mod ahead;
mod filez;
mod pgp;
mod precompress;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib::{self, Variant, VariantTy};
use ostree::{Repo, RepoMode, StaticDeltaGenerateOpt};

use crate::commit::lock::{RepoLock, LOCK_FILE_NAME};
use crate::commit::pull::{pull_local, PullHistory, PullLocalOptions};
use crate::commit::read::{has_commit, resolve_rev};
use crate::commit::repo::{check_repo_or_empty, mode_name, open_or_create_repo_ignoring};

pub use ahead::{AheadWorker, DeflatedAhead};

/// The zlib level [`export`] into `dest` would deflate content objects with,
/// or `None` if it writes no compressed objects there (a repository of
/// another mode than archive). For starting an [`AheadWorker`].
pub fn archive_deflate_level(dest: &Path) -> Result<Option<u32>> {
    precompress::level_for_destination(dest)
}

/// Options of [`export`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The repository holding the commit (the compose's `--repo`).
    pub src_repo: PathBuf,
    /// The export repository directory (created in archive mode if missing or empty).
    pub dest: PathBuf,
    /// The ref to set in the destination.
    pub ref_: String,
    /// The commit checksum to export.
    pub commit: String,
    /// GPG key id: sign the commit and the summary.
    pub gpg_key: Option<String>,
    /// GnuPG home directory for `gpg_key` (default: the user's).
    pub gpg_homedir: Option<PathBuf>,
    /// Generate a static delta from the commit's parent, when the parent is in the destination.
    pub static_delta: bool,
    /// Content already deflated (during the install, see [`AheadWorker`]).
    pub deflated_ahead: Option<std::sync::Arc<DeflatedAhead>>,
}

/// What [`export`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportResult {
    pub repo: PathBuf,
    /// The destination's mode (`archive`, `bare-user`, ...).
    pub mode: String,
    /// Whether the destination repository was created by this export.
    pub created: bool,
    #[serde(rename = "ref")]
    pub ref_: String,
    pub commit: String,
    /// Commits that were not in the destination before.
    pub commits_pulled: u32,
    /// Loose objects added to the destination, and their size on disk.
    pub objects_written: u64,
    pub bytes_written: u64,
    /// Whether the ref moved (false when it already pointed at the commit).
    pub ref_updated: bool,
    /// The delta written, as `FROM-TO`, if any.
    pub delta_written: Option<String>,
    /// Why no delta was written although one was asked for.
    pub delta_skipped_reason: Option<String>,
    /// Whether a GPG signature was added to the commit (false if it had one with this key).
    pub commit_signed: bool,
    pub summary_regenerated: bool,
    pub summary_signed: bool,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Export `opts.commit` into `opts.dest`. Errors carry the output-failed class
/// (exit 5) unless they are invalid input (e.g. a non-empty non-repository
/// destination, exit 3).
pub fn export(opts: &ExportOptions) -> Result<ExportResult> {
    export_inner(opts)
        .with_context(|| format!("Exporting {} to {}", opts.commit, opts.dest.display()))
        .map_err(|e| {
            if crate::exit::class_of(&e).is_some() {
                e
            } else {
                // A fresh classified error (with the whole chain in its text):
                // `exit::with_class` puts the class where `class_of` misses it.
                crate::exit::output_failed(format!("{e:#}"))
            }
        })
}

fn export_inner(opts: &ExportOptions) -> Result<ExportResult> {
    let start = Instant::now();
    if opts.commit.len() != 64 || !opts.commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(crate::exit::invalid_input(format!(
            "export needs a full 64-character commit checksum, not '{}'",
            opts.commit
        )));
    }
    ostree::validate_rev(&opts.ref_)
        .map_err(|e| crate::exit::invalid_input(format!("invalid ref '{}': {e}", opts.ref_)))?;
    // Refuse an unsuitable destination before touching it (not even a lock file).
    check_repo_or_empty(&opts.dest, RepoMode::Archive, &[LOCK_FILE_NAME])?;
    if !opts.dest.exists() {
        std::fs::create_dir_all(&opts.dest)
            .with_context(|| format!("Creating {}", opts.dest.display()))?;
    }
    let src_abs = std::fs::canonicalize(&opts.src_repo)
        .with_context(|| format!("Resolving {}", opts.src_repo.display()))?;
    let dest_abs = std::fs::canonicalize(&opts.dest)
        .with_context(|| format!("Resolving {}", opts.dest.display()))?;
    let same_repo = src_abs == dest_abs;
    // The caller holds the source repository's lock; take the destination's
    // (it may be shared by several composes) unless it is the same repository
    // or this process already holds it.
    let _dest_lock = if same_repo || RepoLock::is_held_by_this_process(&dest_abs) {
        None
    } else {
        Some(RepoLock::acquire(&dest_abs)?)
    };
    let (dest, created) =
        open_or_create_repo_ignoring(&dest_abs, RepoMode::Archive, &[LOCK_FILE_NAME])?;
    if created {
        eprintln!("Created archive repository {}", dest_abs.display());
    }

    let before = object_totals(&dest_abs)?;
    let commits_pulled = if same_repo {
        0
    } else {
        precompress_if_archive(
            &src_abs,
            &dest_abs,
            &dest,
            &opts.commit,
            opts.deflated_ahead.as_deref(),
        )?;
        pull_local(
            &dest,
            &PullLocalOptions {
                src_repo: &src_abs,
                commit: &opts.commit,
                ref_: None,
                history: PullHistory::AllAvailable,
            },
        )?
    };
    let after = object_totals(&dest_abs)?;

    let homedir = opts
        .gpg_homedir
        .as_deref()
        .map(|p| {
            p.to_str().ok_or_else(|| {
                crate::exit::invalid_input(format!("GnuPG home {} is not valid UTF-8", p.display()))
            })
        })
        .transpose()?;
    let commit_signed = match &opts.gpg_key {
        Some(key) => sign_commit_once(&dest, &opts.commit, key, homedir)?,
        None => false,
    };

    let mut delta_written = None;
    let mut delta_skipped_reason = None;
    if opts.static_delta {
        match generate_delta(&dest, &opts.commit)? {
            DeltaOutcome::Written(name) => delta_written = Some(name),
            DeltaOutcome::Exists => {}
            DeltaOutcome::Skipped(reason) => {
                eprintln!("note: no static delta: {reason}");
                delta_skipped_reason = Some(reason);
            }
        }
    }

    let current = resolve_rev(&dest, &opts.ref_)?;
    let ref_updated = current.as_deref() != Some(opts.commit.as_str());
    if ref_updated {
        dest.set_ref_immediate(None, &opts.ref_, Some(&opts.commit), gio::Cancellable::NONE)
            .with_context(|| format!("Setting ref {} to {}", opts.ref_, opts.commit))?;
    }

    let changed = after.0 != before.0 || ref_updated || delta_written.is_some() || commit_signed;
    let summary_ok = summary_lists(&dest_abs, &opts.ref_, &opts.commit)?
        && (opts.gpg_key.is_none() || dest_abs.join("summary.sig").is_file());
    let mut summary_signed = false;
    let summary_regenerated = changed || !summary_ok;
    if summary_regenerated {
        dest.regenerate_summary(None, gio::Cancellable::NONE)
            .context("Regenerating the summary")?;
        if let Some(key) = &opts.gpg_key {
            dest.add_gpg_signature_summary(&[key.as_str()], homedir, gio::Cancellable::NONE)
                .with_context(|| format!("Signing the summary with GPG key {key}"))?;
            summary_signed = true;
        }
    }

    let result = ExportResult {
        repo: dest_abs,
        mode: mode_name(dest.mode()).to_string(),
        created,
        ref_: opts.ref_.clone(),
        commit: opts.commit.clone(),
        commits_pulled,
        objects_written: after.0.saturating_sub(before.0),
        bytes_written: after.1.saturating_sub(before.1),
        ref_updated,
        delta_written,
        delta_skipped_reason,
        commit_signed,
        summary_regenerated,
        summary_signed,
        duration: start.elapsed(),
    };
    eprintln!(
        "Exported {} to {} ({}): {} objects, {} bytes written{}",
        result.commit,
        result.repo.display(),
        result.ref_,
        result.objects_written,
        result.bytes_written,
        if result.summary_regenerated {
            ", summary updated"
        } else {
            ", nothing new"
        }
    );
    Ok(result)
}

/// Run [`precompress::precompress`] when the destination is an archive
/// repository and the source a bare-mode one (an archive source's objects are
/// copied unchanged by the pull, other destinations store no `.filez`).
fn precompress_if_archive(
    src: &Path,
    dest_path: &Path,
    dest: &Repo,
    commit: &str,
    ahead: Option<&DeflatedAhead>,
) -> Result<()> {
    if dest.mode() != RepoMode::Archive {
        return Ok(());
    }
    let src_repo = crate::commit::repo::open_repo(src)?;
    if src_repo.mode() == RepoMode::Archive || !has_commit(&src_repo, commit)? {
        // A missing commit: the pull reports it.
        return Ok(());
    }
    // With nothing deflated ahead (e.g. the compose was unchanged), hashing
    // every object only to look it up would be wasted.
    let reusable = ahead.filter(|a| a.len() > 0);
    let stats = precompress::precompress(src, dest_path, dest, commit, reusable)
        .context("Compressing content objects into the archive repository")?;
    if stats.objects > 0 {
        eprintln!(
            "Compressed {} content objects ({} bytes) on {} threads in {:.1}s ({} already present)",
            stats.objects,
            stats.bytes,
            stats.threads,
            stats.duration.as_secs_f64(),
            stats.present,
        );
    }
    if let Some(a) = ahead.filter(|a| a.offered() > 0) {
        eprintln!(
            "Deflated ahead (during the install and post-processing): {} contents ({}) from the {} files the packages installed; {} objects reused them",
            a.len(),
            crate::oci::human_size(a.stored_bytes()),
            a.offered(),
            stats.deflated_ahead
        );
    }
    Ok(())
}

/// Sign `commit` with `key` unless it already carries a signature by that key.
/// Returns whether a signature was added.
fn sign_commit_once(repo: &Repo, commit: &str, key: &str, homedir: Option<&str>) -> Result<bool> {
    if commit_signed_by(repo, commit, key)? {
        return Ok(false);
    }
    match repo.sign_commit(commit, key, homedir, gio::Cancellable::NONE) {
        Ok(()) => Ok(true),
        // libostree reports an existing signature by the same key as EXISTS.
        Err(e) if e.matches(gio::IOErrorEnum::Exists) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("Signing commit {commit} with GPG key {key}")),
    }
}

/// Whether the commit's detached metadata holds a GPG signature issued by `key`.
fn commit_signed_by(repo: &Repo, commit: &str, key: &str) -> Result<bool> {
    let Some(detached) = repo
        .read_commit_detached_metadata(commit, gio::Cancellable::NONE)
        .with_context(|| format!("Reading the detached metadata of {commit}"))?
    else {
        return Ok(false);
    };
    let sigs_type = VariantTy::new("aay").context("invalid GVariant type string")?;
    let Some(sigs) =
        glib::VariantDict::new(Some(&detached)).lookup_value("ostree.gpgsigs", Some(sigs_type))
    else {
        return Ok(false);
    };
    let issuers: Vec<String> = sigs
        .iter()
        .flat_map(|sig| pgp::signature_issuers(&sig.data_as_bytes()))
        .collect();
    Ok(pgp::key_matches(key, &issuers))
}

enum DeltaOutcome {
    Written(String),
    Exists,
    Skipped(String),
}

fn generate_delta(repo: &Repo, commit: &str) -> Result<DeltaOutcome> {
    let commit_v = repo
        .load_variant(ostree::ObjectType::Commit, commit)
        .with_context(|| format!("Loading commit {commit}"))?;
    let Some(parent) = ostree::commit_get_parent(&commit_v).map(|s| s.to_string()) else {
        return Ok(DeltaOutcome::Skipped(format!(
            "commit {commit} has no parent"
        )));
    };
    if !has_commit(repo, &parent)? {
        return Ok(DeltaOutcome::Skipped(format!(
            "the parent commit {parent} is not in the export repository"
        )));
    }
    let name = format!("{parent}-{commit}");
    let existing = repo
        .list_static_delta_names(gio::Cancellable::NONE)
        .context("Listing static deltas")?;
    if existing.iter().any(|d| d.as_str() == name) {
        return Ok(DeltaOutcome::Exists);
    }
    eprintln!("Generating static delta {name}");
    // libostree 2022.7 dereferences `params` unconditionally: pass an empty a{sv}.
    let params = glib::VariantDict::new(None).end();
    repo.static_delta_generate(
        StaticDeltaGenerateOpt::Major,
        Some(&parent),
        commit,
        None,
        Some(&params),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("Generating static delta {name}"))?;
    Ok(DeltaOutcome::Written(name))
}

/// True if the repository's summary file lists `ref_` at `commit`.
fn summary_lists(repo_path: &Path, ref_: &str, commit: &str) -> Result<bool> {
    let path = repo_path.join("summary");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("Reading {}", path.display())),
    };
    let ty = VariantTy::new("(a(s(taya{sv}))a{sv})").context("invalid GVariant type string")?;
    let summary = Variant::from_bytes_with_type(&glib::Bytes::from_owned(bytes), ty);
    if !summary.is_normal_form() {
        // Not ours to judge; regenerating fixes it.
        return Ok(false);
    }
    let refs = summary.child_value(0);
    for entry in refs.iter() {
        let name: Option<String> = entry.child_value(0).get();
        if name.as_deref() != Some(ref_) {
            continue;
        }
        // Read the `ay` checksum ourselves: ostree_checksum_from_bytes_v
        // crashes on a value that is not 32 bytes long.
        let csum_v = entry.child_value(1).child_value(1);
        let listed = csum_v
            .fixed_array::<u8>()
            .map(hex::encode)
            .unwrap_or_default();
        return Ok(listed == commit);
    }
    Ok(false)
}

/// Number and total size of the loose objects of a repository.
fn object_totals(repo_path: &Path) -> Result<(u64, u64)> {
    let objects = repo_path.join("objects");
    let mut count = 0u64;
    let mut bytes = 0u64;
    for dir in
        std::fs::read_dir(&objects).with_context(|| format!("Reading {}", objects.display()))?
    {
        let dir = dir.with_context(|| format!("Reading {}", objects.display()))?;
        if !dir.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let dir_path = dir.path();
        for obj in std::fs::read_dir(&dir_path)
            .with_context(|| format!("Reading {}", dir_path.display()))?
        {
            let obj = obj.with_context(|| format!("Reading {}", dir_path.display()))?;
            let meta = obj
                .metadata()
                .with_context(|| format!("Reading {}", obj.path().display()))?;
            count += 1;
            bytes += meta.len();
        }
    }
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostree::glib::ToVariant;

    #[test]
    fn summary_parsing_finds_the_ref() {
        let tmp = tempfile::tempdir().unwrap();
        let csum = "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b";
        let csum_v = Variant::array_from_fixed_array(&hex::decode(csum).unwrap());
        let meta = glib::VariantDict::new(None).end();
        let entry = Variant::tuple_from_iter([
            "os/x86_64".to_variant(),
            Variant::tuple_from_iter([10u64.to_variant(), csum_v, meta.clone()]),
        ]);
        let refs = Variant::array_from_iter_with_type(entry.type_(), [entry.clone()]);
        let summary = Variant::tuple_from_iter([refs, meta]);
        std::fs::write(tmp.path().join("summary"), summary.data()).unwrap();
        assert!(summary_lists(tmp.path(), "os/x86_64", csum).unwrap());
        assert!(!summary_lists(tmp.path(), "os/aarch64", csum).unwrap());
        assert!(!summary_lists(tmp.path(), "os/x86_64", &"0".repeat(64)).unwrap());
        std::fs::write(tmp.path().join("summary"), b"junk").unwrap();
        assert!(!summary_lists(tmp.path(), "os/x86_64", csum).unwrap());
        std::fs::remove_file(tmp.path().join("summary")).unwrap();
        assert!(!summary_lists(tmp.path(), "os/x86_64", csum).unwrap());
    }
}

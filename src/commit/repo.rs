//! Opening and creating OSTree repositories, with errors that say what to do.
//!
//! fsync policy: libostree by default does not fsync each object but calls
//! `syncfs()` when a transaction commits, so a crash never leaves a ref
//! pointing at missing objects. We keep that for every repository a user
//! keeps (`--repo`, the export destination). [`set_repo_fsync`] can turn it off
//! for throw-away build repositories on slow container storage; it writes
//! `core.fsync=false` into the repo config so the `ostree` child processes that
//! ostree-ext spawns skip it too.
//!
//! Not for: reading or writing commits (see the sibling modules).

use std::path::Path;

use anyhow::{Context, Result};
use ostree::gio;
use ostree::prelude::*;
use ostree::{Repo, RepoMode};

/// The `ostree init --mode=` spelling of a repository mode.
pub fn mode_name(mode: RepoMode) -> &'static str {
    match mode {
        RepoMode::Bare => "bare",
        RepoMode::Archive => "archive",
        RepoMode::BareUser => "bare-user",
        RepoMode::BareUserOnly => "bare-user-only",
        RepoMode::BareSplitXattrs => "bare-split-xattrs",
        _ => "unknown",
    }
}

/// Parse a mode name as `ostree init --mode=` accepts it (`archive-z2` too).
pub fn parse_mode(name: &str) -> Result<RepoMode> {
    Repo::mode_from_string(name).map_err(|_| {
        crate::exit::invalid_input(format!(
            "unknown OSTree repository mode '{name}': use archive, bare-user, bare-user-only or bare"
        ))
    })
}

/// True if `path` looks like an OSTree repository (has `config` and `objects/`).
pub fn is_repo(path: &Path) -> bool {
    path.join("config").is_file() && path.join("objects").is_dir()
}

/// Open an existing repository of any mode. A path that is not a repository
/// gives an invalid-input error that says how to create one.
pub fn open_repo(path: &Path) -> Result<Repo> {
    if !is_repo(path) {
        let shown = path.display();
        let what = if path.exists() {
            "not an OSTree repository"
        } else {
            "no such directory; not an OSTree repository"
        };
        return Err(crate::exit::invalid_input(format!(
            "{what}: {shown}: create it with `ostree init --repo={shown} --mode=archive`"
        )));
    }
    let repo = Repo::new_for_path(path);
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("Opening OSTree repository {}", path.display()))?;
    Ok(repo)
}

/// Create a new repository in `mode` at `path` (the directory may exist and be
/// empty, or be missing; its parent must exist) and open it.
pub fn create_repo(path: &Path, mode: RepoMode) -> Result<Repo> {
    if !path.exists() {
        std::fs::create_dir(path)
            .with_context(|| format!("Creating repository directory {}", path.display()))?;
    }
    let repo = Repo::new_for_path(path);
    repo.create(mode, gio::Cancellable::NONE).with_context(|| {
        format!(
            "Creating OSTree repository {} in mode {}",
            path.display(),
            mode_name(mode)
        )
    })?;
    Ok(repo)
}

/// Open the repository at `path`, creating it in `mode` if the path is missing
/// or an empty directory. Returns the repo and whether it was created. An
/// existing repository is opened as it is, whatever its mode. A non-empty
/// directory that is not a repository is an error.
pub fn open_or_create_repo(path: &Path, mode: RepoMode) -> Result<(Repo, bool)> {
    open_or_create_repo_ignoring(path, mode, &[])
}

/// Like [`open_or_create_repo`], but entries named in `ignored` (such as a lock
/// file just created there) do not make a directory count as non-empty.
pub fn open_or_create_repo_ignoring(
    path: &Path,
    mode: RepoMode,
    ignored: &[&str],
) -> Result<(Repo, bool)> {
    if is_repo(path) {
        return Ok((open_repo(path)?, false));
    }
    check_repo_or_empty(path, mode, ignored)?;
    Ok((create_repo(path, mode)?, true))
}

/// Fail unless `path` is a repository, is missing, or is an empty directory
/// (entries named in `ignored` do not count). Nothing is created. `mode` is
/// only used in the error message.
pub fn check_repo_or_empty(path: &Path, mode: RepoMode, ignored: &[&str]) -> Result<()> {
    if is_repo(path) {
        return Ok(());
    }
    if path.exists() {
        if !path.is_dir() {
            return Err(crate::exit::invalid_input(format!(
                "{} exists and is not a directory; expected an OSTree repository or an empty directory",
                path.display()
            )));
        }
        let mut entries =
            std::fs::read_dir(path).with_context(|| format!("Reading {}", path.display()))?;
        let non_empty = entries.try_fold(false, |found, entry| -> Result<bool> {
            let entry = entry.with_context(|| format!("Reading {}", path.display()))?;
            let name = entry.file_name();
            Ok(found || !ignored.iter().any(|i| name.as_os_str() == *i))
        })?;
        if non_empty {
            return Err(crate::exit::invalid_input(format!(
                "{shown} is not an OSTree repository and not empty: give an empty or missing directory, \
                 or create a repository with `ostree init --repo={shown} --mode={}`",
                mode_name(mode),
                shown = path.display()
            )));
        }
    }
    Ok(())
}

/// Turn fsync on or off for `repo`, persistently (`core.fsync` in its config)
/// and for this process. Only for repositories you can rebuild.
pub fn set_repo_fsync(repo: &Repo, enabled: bool) -> Result<()> {
    let config = repo.copy_config();
    config.set_boolean("core", "fsync", enabled);
    repo.write_config(&config)
        .context("Writing core.fsync to the repository config")?;
    repo.reload_config(gio::Cancellable::NONE)
        .context("Reloading the repository config")?;
    repo.set_disable_fsync(!enabled);
    Ok(())
}

/// The repository's path on disk.
pub fn repo_path(repo: &Repo) -> Result<std::path::PathBuf> {
    repo.path()
        .path()
        .context("The OSTree repository has no local path")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_roundtrip() {
        for name in ["archive", "bare-user", "bare-user-only", "bare"] {
            let mode = parse_mode(name).unwrap();
            assert_eq!(mode_name(mode), name);
        }
        assert_eq!(mode_name(parse_mode("archive-z2").unwrap()), "archive");
        let err = parse_mode("zip").unwrap_err();
        assert_eq!(crate::exit::exit_code_for(&err), 3);
    }
}

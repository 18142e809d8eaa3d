//! Small filesystem helpers shared by the post-processing steps.
//!
//! Everything here works relative to a [`Dir`] handle of the target root, so a
//! path can never escape it. Not for anything step-specific: each step lives
//! in its own module.

use cap_std_ext::cap_std::fs::{DirBuilderExt, PermissionsExt};
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::{DirBuilder, Permissions};
use cap_std_ext::cap_std::{self, fs::Dir};
use cap_std_ext::dirext::CapStdExtDirExt;

/// How many symlinks [`resolve_in_root`] follows before giving up (like the
/// kernel's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// Open a root directory given by path (the one place ambient authority is used).
pub fn open_root(path: &Path) -> Result<Dir> {
    Dir::open_ambient_dir(path, cap_std::ambient_authority())
        .with_context(|| format!("Opening root directory {}", path.display()))
}

/// Whether `path` exists, without following a final symlink.
pub fn exists_nofollow(root: &Dir, path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    Ok(root
        .symlink_metadata_optional(path)
        .with_context(|| format!("Querying {}", path.display()))?
        .is_some())
}

/// Whether `path` is a real directory (not a symlink to one).
pub fn is_real_dir(root: &Dir, path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    Ok(root
        .symlink_metadata_optional(path)
        .with_context(|| format!("Querying {}", path.display()))?
        .is_some_and(|m| m.is_dir()))
}

/// `mkdir -p` with `mode` for every directory created (existing ones keep theirs).
pub fn ensure_dir_all(root: &Dir, path: impl AsRef<Path>, mode: u32) -> Result<()> {
    let path = path.as_ref();
    // Accept an existing directory, also through a symlink (e.g. `usr/etc ->
    // ../etc` while the temp-etc guard is on).
    if root
        .metadata_optional(path)
        .with_context(|| format!("Querying {}", path.display()))?
        .is_some_and(|m| m.is_dir())
    {
        return Ok(());
    }
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    builder.mode(mode);
    root.ensure_dir_with(path, &builder)
        .with_context(|| format!("Creating directory {}", path.display()))?;
    Ok(())
}

/// Create a directory with an exact mode (umask does not apply), or set the
/// mode of an existing one.
pub fn ensure_dir_mode(root: &Dir, path: impl AsRef<Path>, mode: u32) -> Result<()> {
    let path = path.as_ref();
    ensure_dir_all(root, path, mode)?;
    root.set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("Setting mode {mode:o} on {}", path.display()))
}

/// Replace whatever is at `link` with a symlink whose content is `target`.
/// `target` is stored verbatim (it may be absolute: it is only resolved by
/// whoever later uses the tree).
pub fn replace_symlink(root: &Dir, target: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
    let (target, link) = (target.as_ref(), link.as_ref());
    root.remove_all_optional(link)
        .with_context(|| format!("Removing {}", link.display()))?;
    root.symlink_contents(target, link)
        .with_context(|| format!("Symlinking {} -> {}", link.display(), target.display()))
}

/// Write `contents` to `path` atomically with an exact `mode`, creating
/// missing parents with mode 0755.
pub fn write_file_mode(
    root: &Dir,
    path: impl AsRef<Path>,
    contents: &[u8],
    mode: u32,
) -> Result<()> {
    let path = path.as_ref();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir_all(root, parent, 0o755)?;
    }
    root.atomic_write_with_perms(path, contents, Permissions::from_mode(mode))
        .with_context(|| format!("Writing {}", path.display()))?;
    // atomic_write_with_perms applies the mode through fchmod, but be explicit
    // in case a umask-dependent path is ever taken.
    root.set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("Setting mode {mode:o} on {}", path.display()))
}

/// Resolve `path` inside `root` the way a process chrooted into `root` would:
/// absolute symlink targets start at the root, and `..` never climbs above it.
/// Returns the resolved root-relative path (empty for the root itself), or
/// `None` when some component does not exist. The final component need not
/// be resolvable as a directory.
pub fn resolve_in_root(root: &Dir, path: impl AsRef<Path>) -> Result<Option<PathBuf>> {
    let path = path.as_ref();
    // Components still to walk, in reverse order (so we can pop from the end).
    let mut pending: Vec<PathBuf> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut hops = 0usize;
    while let Some(comp) = pending.pop() {
        if comp.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&comp);
        let meta = match root.symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("Querying {}", candidate.display()));
            }
        };
        if meta.is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                anyhow::bail!(
                    "Too many levels of symbolic links resolving /{}",
                    path.display()
                );
            }
            let target = root
                .read_link_contents(&candidate)
                .with_context(|| format!("Reading symlink {}", candidate.display()))?;
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            push_components(&mut pending, &target);
        } else {
            resolved = candidate;
        }
    }
    Ok(Some(resolved))
}

/// Push the normal and `..` components of `path` onto `stack` so that the
/// first component is popped first.
fn push_components(stack: &mut Vec<PathBuf>, path: &Path) {
    let comps: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(comps.into_iter().rev());
}

/// Check that `path` is relative and has no `..` component (so it names
/// something inside the root). Returns a human-readable reason when not.
pub fn check_relative_inside(path: &str) -> std::result::Result<(), String> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("Invalid absolute path: {path}"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("Invalid '..' in path: {path}"));
    }
    if p.components().all(|c| c == Component::CurDir) {
        return Err(format!("Invalid empty path: {path:?}"));
    }
    Ok(())
}

/// The entries of directory `path` (none if it does not exist) as (name,
/// is a directory), sorted by name. Symlinks count as not directories.
pub fn list_names(root: &Dir, path: &str) -> Result<Vec<(String, bool)>> {
    let Some(d) = root
        .open_dir_optional(path)
        .with_context(|| format!("Opening {path}"))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in d.entries().with_context(|| format!("Reading {path}"))? {
        let e = e.with_context(|| format!("Reading {path}"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e
            .file_type()
            .with_context(|| format!("Querying {path}/{name}"))?
            .is_dir();
        out.push((name, is_dir));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_inside() {
        assert!(check_relative_inside("etc/hosts").is_ok());
        assert!(check_relative_inside("usr/share/./x").is_ok());
        assert!(check_relative_inside("/etc/hosts")
            .unwrap_err()
            .contains("absolute"));
        assert!(check_relative_inside("usr/../../x")
            .unwrap_err()
            .contains(".."));
        assert!(check_relative_inside("").is_err());
        assert!(check_relative_inside(".").is_err());
        // `..` inside a name is not a parent component.
        assert!(check_relative_inside("usr/share/a..b").is_ok());
    }

    #[test]
    fn resolve_follows_links_inside_root() {
        let td = tempfile::tempdir().unwrap();
        let root = open_root(td.path()).unwrap();
        root.create_dir_all("usr/lib").unwrap();
        root.create_dir_all("etc").unwrap();
        root.write("usr/lib/os-release", "x").unwrap();
        root.symlink_contents("../usr/lib/os-release", "etc/os-release")
            .unwrap();
        root.symlink_contents("/usr/lib/os-release", "etc/abs")
            .unwrap();
        root.symlink_contents("../../../../usr/lib", "etc/up")
            .unwrap();
        root.symlink_contents("loop2", "etc/loop1").unwrap();
        root.symlink_contents("loop1", "etc/loop2").unwrap();
        let r = |p: &str| resolve_in_root(&root, p).unwrap();
        assert_eq!(r("etc/os-release"), Some("usr/lib/os-release".into()));
        assert_eq!(r("/etc/abs"), Some("usr/lib/os-release".into()));
        assert_eq!(r("etc/up/os-release"), Some("usr/lib/os-release".into()));
        assert_eq!(r("etc/missing"), None);
        assert_eq!(r("/"), Some(PathBuf::new()));
        assert!(resolve_in_root(&root, "etc/loop1").is_err());
    }

    #[test]
    fn write_and_symlink_helpers() {
        let td = tempfile::tempdir().unwrap();
        let root = open_root(td.path()).unwrap();
        write_file_mode(&root, "a/b/c", b"hi", 0o600).unwrap();
        let m = root.metadata("a/b/c").unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            root.metadata("a/b").unwrap().permissions().mode() & 0o7777,
            0o755
        );
        replace_symlink(&root, "/abs/target", "a/b").unwrap();
        assert_eq!(
            root.read_link_contents("a/b").unwrap(),
            PathBuf::from("/abs/target")
        );
        ensure_dir_mode(&root, "t", 0o1777).unwrap();
        assert_eq!(
            root.metadata("t").unwrap().permissions().mode() & 0o7777,
            0o1777
        );
    }
}

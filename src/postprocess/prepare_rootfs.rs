//! Root preparation (§4.5): move the installed root (`rootfs.tmp`) into a new,
//! empty root directory with the OSTree toplevel layout.
//!
//! Strict mode (the default) builds the toplevel from scratch and moves over
//! only `usr`, `boot`, `var` and the `lib*`/`bin`/`sbin` compat links; anything
//! else at the toplevel of the source (e.g. `/dev` nodes, `/home`) is
//! discarded. Transient-root mode (`[root] transient=true` in
//! `ostree/prepare-root.conf`) moves every toplevel entry instead. Not for
//! `/usr/local` or `/var` content (the final steps handle those).

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;

use super::fsutil;
use crate::exit::invalid_input;

pub use crate::treefile::OptUsrLocal;

/// Options for [`prepare_rootfs`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrepareRootfsOptions {
    /// Treefile `tmp-is-dir`: `/tmp` a 01777 directory, else `tmp -> sysroot/tmp`.
    pub tmp_is_dir: bool,
    /// Treefile `opt-usrlocal`.
    pub opt_usrlocal: OptUsrLocal,
}

/// Which layout [`prepare_rootfs`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsLayout {
    Strict,
    Transient,
}

/// Where `prepare-root.conf` is looked for, first found wins (as rpm-ostree does).
pub const PREPARE_ROOT_CONF_PATHS: &[&str] = &[
    "etc/ostree/prepare-root.conf",
    "usr/lib/ostree/prepare-root.conf",
];

/// Toplevel directories every tree has (0755).
const TOPLEVEL_DIRS: &[&str] = &["dev", "proc", "run", "sys", "var", "sysroot"];
/// Toplevel symlinks every tree has.
const BASE_SYMLINKS: &[(&str, &str)] = &[
    ("root", "var/roothome"),
    ("home", "var/home"),
    ("ostree", "sysroot/ostree"),
];
/// Extra toplevel symlinks of the strict layout (`opt` depends on `opt-usrlocal`).
const STRICT_SYMLINKS: &[(&str, &str)] = &[
    ("srv", "var/srv"),
    ("mnt", "var/mnt"),
    ("media", "run/media"),
];
/// Entries moved from the source in strict mode, when present.
const STRICT_MOVED: &[&str] = &["usr", "boot", "var", "lib", "lib64", "lib32", "bin", "sbin"];
/// Real directories of the transient layout (replacing any symlink).
const TRANSIENT_DIRS: &[&str] = &["opt", "media", "mnt", "usr/local"];

/// Move the root in `src` into the empty directory `dest` (same filesystem),
/// then delete what is left in `src` (the caller removes `src` itself).
pub fn prepare_rootfs(src: &Dir, dest: &Dir, opts: &PrepareRootfsOptions) -> Result<RootfsLayout> {
    if dest
        .entries()
        .context("Reading the target root directory")?
        .next()
        .is_some()
    {
        anyhow::bail!("Preparing rootfs: the target root directory is not empty");
    }
    if !fsutil::is_real_dir(src, "usr")? {
        anyhow::bail!("Preparing rootfs: the installed root has no usr directory");
    }
    let layout = if transient_root_enabled(src)? {
        eprintln!("Target has transient root enabled");
        if !opts.tmp_is_dir {
            return Err(invalid_input(
                "Transient root conflicts with tmp-is-dir: false (set tmp-is-dir: true)",
            ));
        }
        prepare_transient(src, dest)?;
        RootfsLayout::Transient
    } else {
        prepare_strict(src, dest, opts)?;
        RootfsLayout::Strict
    };
    discard_rest(src)?;
    Ok(layout)
}

/// [`prepare_rootfs`] by path: create `dest` (0755; it may exist if empty),
/// move `src` into it, and remove the emptied `src` directory. Both must be
/// on the same filesystem (entries are renamed, not copied).
pub fn prepare_rootfs_at(
    src: &Path,
    dest: &Path,
    opts: &PrepareRootfsOptions,
) -> Result<RootfsLayout> {
    match std::fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("Creating {}", dest.display())),
    }
    let src_dir = fsutil::open_root(src)?;
    let dest_dir = fsutil::open_root(dest)?;
    let layout = prepare_rootfs(&src_dir, &dest_dir, opts)
        .with_context(|| format!("Preparing {} from {}", dest.display(), src.display()))?;
    drop(src_dir);
    std::fs::remove_dir(src).with_context(|| format!("Removing {}", src.display()))?;
    Ok(layout)
}

fn prepare_strict(src: &Dir, dest: &Dir, opts: &PrepareRootfsOptions) -> Result<()> {
    eprintln!("Initializing rootfs");
    init_base(dest, opts.tmp_is_dir)?;
    for (link, target) in STRICT_SYMLINKS {
        make_symlink(dest, target, link)?;
    }
    match opts.opt_usrlocal {
        OptUsrLocal::Var => make_symlink(dest, "var/opt", "opt")?,
        OptUsrLocal::StateOverlay => make_symlink(dest, "usr/lib/opt", "opt")?,
        OptUsrLocal::Root => fsutil::ensure_dir_mode(dest, "opt", 0o755)?,
    }
    for name in STRICT_MOVED {
        move_entry(src, dest, name)?;
    }
    move_opt_content(src, dest, opts.opt_usrlocal)
}

/// The tmpfiles.d file (under `usr/lib/tmpfiles.d`) linking `/opt/<x>` to
/// `/usr/lib/opt/<x>`; see [`move_opt_content`].
pub const OPT_LINKS_CONF: &str = "rpm-ostree-1-opt.conf";

/// Packaged content under `/opt` goes to `/usr/lib/opt` (rpm-ostree's importer
/// does the same translation) instead of being discarded with the rest of the
/// toplevel. Unless `/opt` already points there (`opt-usrlocal:
/// state-overlay`), each entry gets an `L /opt/<x> - - - - ../../usr/lib/opt/<x>`
/// line in [`OPT_LINKS_CONF`].
fn move_opt_content(src: &Dir, dest: &Dir, opt_usrlocal: OptUsrLocal) -> Result<()> {
    let is_dir = src
        .symlink_metadata_optional("opt")
        .context("Inspecting /opt of the installed root")?
        .is_some_and(|m| m.is_dir());
    if !is_dir {
        return Ok(());
    }
    let opt = src
        .open_dir("opt")
        .context("Opening /opt of the installed root")?;
    let names = toplevel_names(&opt)?;
    if names.is_empty() {
        return Ok(());
    }
    fsutil::ensure_dir_mode(dest, "usr/lib/opt", 0o755)?;
    let mut conf = String::from("# This file was generated by ostree-composer.\n");
    for name in names {
        let moved = Path::new("usr/lib/opt").join(&name);
        if fsutil::exists_nofollow(dest, &moved)? {
            return Err(invalid_input(format!(
                "/opt/{} and /{} both exist in the installed packages; rpm content under /opt is moved to /usr/lib/opt",
                name.to_string_lossy(),
                moved.display()
            )));
        }
        opt.rename(&name, dest, &moved).with_context(|| {
            format!(
                "Moving /opt/{} to /{}",
                name.to_string_lossy(),
                moved.display()
            )
        })?;
        let link =
            super::tmpfiles::escape_tmpfiles_path(Path::new("/opt").join(&name).as_os_str())?;
        let target = super::tmpfiles::escape_tmpfiles_argument(
            Path::new("../../usr/lib/opt").join(&name).as_os_str(),
        )?;
        conf.push_str(&super::tmpfiles::link_line(&link, &target));
        conf.push('\n');
    }
    if opt_usrlocal != OptUsrLocal::StateOverlay {
        fsutil::ensure_dir_mode(dest, "usr/lib/tmpfiles.d", 0o755)?;
        dest.write(Path::new("usr/lib/tmpfiles.d").join(OPT_LINKS_CONF), conf)
            .with_context(|| format!("Writing usr/lib/tmpfiles.d/{OPT_LINKS_CONF}"))?;
    }
    Ok(())
}

fn prepare_transient(src: &Dir, dest: &Dir) -> Result<()> {
    // Entries the base layout creates itself are not taken from the source:
    // rpm-ostree never has them there (its importer only takes /usr, /etc,
    // /var, /boot), and e.g. a dnf-created `root` directory would clash with
    // the `root -> var/roothome` link.
    let fresh: Vec<&str> = TOPLEVEL_DIRS
        .iter()
        .copied()
        .filter(|d| *d != "var")
        .chain(BASE_SYMLINKS.iter().map(|(l, _)| *l))
        .chain(["tmp"])
        .collect();
    for name in toplevel_names(src)? {
        let keep = name.to_str().map_or(true, |n| !fresh.contains(&n));
        if keep {
            src.rename(&name, dest, &name)
                .with_context(|| format!("Moving {name:?}"))?;
        }
    }
    init_base(dest, true)?;
    for d in TRANSIENT_DIRS {
        if let Some(meta) = dest
            .symlink_metadata_optional(d)
            .with_context(|| format!("Querying {d}"))?
        {
            if !meta.is_dir() {
                dest.remove_file(d)
                    .with_context(|| format!("Removing {d}"))?;
            }
        }
        fsutil::ensure_dir_all(dest, d, 0o755)?;
    }
    Ok(())
}

/// The layout both modes share: root 0755, the toplevel dirs, `tmp`, and the
/// `root`/`home`/`ostree` links.
fn init_base(dest: &Dir, tmp_is_dir: bool) -> Result<()> {
    fsutil::ensure_dir_mode(dest, ".", 0o755)?;
    for d in TOPLEVEL_DIRS {
        fsutil::ensure_dir_all(dest, d, 0o755)?;
    }
    if tmp_is_dir {
        fsutil::ensure_dir_mode(dest, "tmp", 0o1777)?;
    } else {
        make_symlink(dest, "sysroot/tmp", "tmp")?;
    }
    for (link, target) in BASE_SYMLINKS {
        make_symlink(dest, target, link)?;
    }
    Ok(())
}

fn make_symlink(dest: &Dir, target: &str, link: &str) -> Result<()> {
    dest.symlink_contents(target, link)
        .with_context(|| format!("Creating {link} -> {target}"))
}

/// Move `name` from `src` to `dest` if it exists. An existing empty directory
/// at the destination (e.g. `var` made by the base layout) is replaced.
fn move_entry(src: &Dir, dest: &Dir, name: &str) -> Result<()> {
    if fsutil::exists_nofollow(src, name)? {
        src.rename(name, dest, name)
            .with_context(|| format!("Moving /{name} to the target root"))?;
    }
    Ok(())
}

fn toplevel_names(dir: &Dir) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in dir.entries().context("Reading the installed root")? {
        names.push(entry.context("Reading the installed root")?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Remove everything left in `src` (what the layout does not take).
fn discard_rest(src: &Dir) -> Result<()> {
    for name in toplevel_names(src)? {
        src.remove_all_optional(&name)
            .with_context(|| format!("Discarding {name:?} from the installed root"))?;
    }
    Ok(())
}

/// Whether `prepare-root.conf` in `root` (see [`PREPARE_ROOT_CONF_PATHS`])
/// enables the transient root.
pub fn transient_root_enabled(root: &Dir) -> Result<bool> {
    for path in PREPARE_ROOT_CONF_PATHS {
        if let Some(text) = root
            .read_to_string_optional(path)
            .with_context(|| format!("Reading {path}"))?
        {
            return parse_transient_root(&text).map_err(|m| invalid_input(format!("{path}: {m}")));
        }
    }
    Ok(false)
}

/// Read `[root] transient` from a GLib key file (`prepare-root.conf`).
/// Missing key → false. GLib's boolean spellings: `true`/`false`/`1`/`0`.
/// Hand-written: the format subset is tiny and the key-file crates in reach
/// (glib) would add a C dependency for one lookup.
pub fn parse_transient_root(text: &str) -> std::result::Result<bool, String> {
    let mut group: Option<&str> = None;
    let mut value: Option<&str> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: invalid group header {raw:?}", n + 1))?;
            group = Some(name);
            continue;
        }
        let Some((key, val)) = line.split_once('=') else {
            return Err(format!("line {}: expected key=value, got {raw:?}", n + 1));
        };
        if group.is_none() {
            return Err(format!("line {}: key outside of any group", n + 1));
        }
        if group == Some("root") && key.trim() == "transient" {
            value = Some(val.trim());
        }
    }
    match value {
        None => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!(
            "[root] transient: invalid boolean {other:?} (use true or false)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std_ext::cap_std::ambient_authority;

    #[test]
    fn opt_content_moves_to_usr_lib_opt() {
        let tmp = tempfile::tempdir().unwrap();
        for (mode, conf) in [(OptUsrLocal::Var, true), (OptUsrLocal::StateOverlay, false)] {
            let (src_path, dest_path) = (tmp.path().join("src"), tmp.path().join("dest"));
            let _ = std::fs::remove_dir_all(&src_path);
            let _ = std::fs::remove_dir_all(&dest_path);
            std::fs::create_dir_all(src_path.join("opt/app dir/bin")).unwrap();
            std::fs::create_dir_all(src_path.join("usr/lib")).unwrap();
            std::fs::write(src_path.join("opt/app dir/bin/tool"), "t").unwrap();
            std::fs::create_dir_all(&dest_path).unwrap();
            let src = Dir::open_ambient_dir(&src_path, ambient_authority()).unwrap();
            let dest = Dir::open_ambient_dir(&dest_path, ambient_authority()).unwrap();
            let opts = PrepareRootfsOptions {
                tmp_is_dir: true,
                opt_usrlocal: mode,
            };
            prepare_rootfs(&src, &dest, &opts).unwrap();
            assert_eq!(
                std::fs::read_to_string(dest_path.join("usr/lib/opt/app dir/bin/tool")).unwrap(),
                "t"
            );
            let written =
                std::fs::read_to_string(dest_path.join("usr/lib/tmpfiles.d").join(OPT_LINKS_CONF));
            if conf {
                assert!(written
                    .unwrap()
                    .contains("\nL \"/opt/app dir\" - - - - ../../usr/lib/opt/app dir\n"),);
            } else {
                assert!(
                    written.is_err(),
                    "state-overlay: /opt already is usr/lib/opt"
                );
            }
        }
    }

    #[test]
    fn transient_parsing() {
        assert_eq!(parse_transient_root("[root]\ntransient=true\n"), Ok(true));
        assert_eq!(parse_transient_root("[root]\ntransient = 1\n"), Ok(true));
        assert_eq!(parse_transient_root("[root]\ntransient=false\n"), Ok(false));
        assert_eq!(parse_transient_root(""), Ok(false));
        assert_eq!(
            parse_transient_root("# c\n[composefs]\nenabled = yes\n[root]\n"),
            Ok(false)
        );
        // Only the [root] group counts.
        assert_eq!(
            parse_transient_root("[etc]\ntransient=true\n[root]\n"),
            Ok(false)
        );
        // Later value wins.
        assert_eq!(
            parse_transient_root("[root]\ntransient=true\ntransient=false\n"),
            Ok(false)
        );
        assert!(parse_transient_root("[root]\ntransient=yes\n").is_err());
        assert!(parse_transient_root("transient=true\n").is_err());
        assert!(parse_transient_root("[root\n").is_err());
        assert!(parse_transient_root("[root]\nnonsense\n").is_err());
    }
}

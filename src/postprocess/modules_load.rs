//! The kernel modules a tree lists in `/usr/lib/modules-load.d`, which
//! dracut's `systemd` module puts into the initramfs.
//!
//! That module reads the list through bash process substitution, which needs
//! `/dev/fd`; the chroot dracut runs in has no `/proc` (a rootless container
//! cannot mount one), so the list comes back empty and dracut says only
//! `/dev/fd/63: No such file or directory`. The kernel step reads the list
//! itself and hands dracut the listed modules that the tree's kernel has as
//! files (`--add-drivers`, which, unlike the systemd module, fails on a
//! module it cannot find); the others (built in, or names dracut would have
//! resolved as aliases) are named in a note.
//!
//! Not for: `/etc/modules-load.d` (the systemd module reads only
//! `/usr/lib/modules-load.d`), running dracut.

use std::collections::BTreeSet;

use anyhow::Result;
use cap_std_ext::cap_std::fs::Dir;

use super::fsutil::list_names;

/// Where the systemd dracut module reads the list.
pub const MODULES_LOAD_D: &str = "usr/lib/modules-load.d";

/// The module names in one `modules-load.d` file, as the systemd dracut
/// module reads them: each line without surrounding blanks, skipping empty
/// lines and comments (`#` or `;`). Pure.
pub fn listed_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

/// A module's name as modprobe compares them (`-` and `_` are the same).
/// Pure.
fn normalized(name: &str) -> String {
    name.replace('-', "_")
}

/// The module names `modules.dep` has files for (`kernel/x/foo-bar.ko.xz:
/// deps` gives `foo_bar`). Pure.
pub fn modules_with_files(modules_dep: &str) -> BTreeSet<String> {
    modules_dep
        .lines()
        .filter_map(|l| l.split_once(':').map(|(path, _)| path))
        .filter_map(|path| {
            let file = path.rsplit('/').next()?;
            let name = file.split(".ko").next()?;
            (!name.is_empty() && file.len() > name.len()).then(|| normalized(name))
        })
        .collect()
}

/// The listed modules split into those with a file in `available` (for
/// `--add-drivers`) and the others, each in list order without repeats.
/// Pure.
pub fn split_available(
    listed: &[String],
    available: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let mut seen = BTreeSet::new();
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for m in listed {
        if !seen.insert(normalized(m)) {
            continue;
        }
        if available.contains(&normalized(m)) {
            found.push(m.clone());
        } else {
            missing.push(m.clone());
        }
    }
    (found, missing)
}

/// Every module listed in the `*.conf` files of the tree's
/// `usr/lib/modules-load.d`, in file name order (as bash's glob).
pub fn read_listed(root: &Dir) -> Result<Vec<String>> {
    let names = list_names(root, MODULES_LOAD_D)?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.ends_with(".conf"));
    let mut listed = Vec::new();
    for name in names {
        let path = format!("{MODULES_LOAD_D}/{name}");
        // Like the systemd module's `[[ -f ]]`: a dangling or escaping
        // symlink, or a directory, lists nothing.
        match root.read_to_string(&path) {
            Ok(text) => listed.extend(listed_modules(&text)),
            Err(e) => eprintln!("note: not reading /{path}: {e}"),
        }
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_skip_comments_and_blanks() {
        assert_eq!(
            listed_modules("# comment\n; also\n\n  br_netfilter  \nvfio-pci\n#tun\n"),
            ["br_netfilter", "vfio-pci"]
        );
        assert!(listed_modules("").is_empty());
    }

    #[test]
    fn module_files_from_modules_dep() {
        let dep = "kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz\n\
                   kernel/drivers/vfio/pci/vfio-pci.ko:\n\
                   kernel/fs/zstd-thing.ko.zst:\n\
                   garbage line\n";
        assert_eq!(
            modules_with_files(dep).into_iter().collect::<Vec<_>>(),
            ["br_netfilter", "vfio_pci", "zstd_thing"]
        );
    }

    #[test]
    fn listed_modules_split_by_file_dash_and_underscore_alike() {
        let available: BTreeSet<String> = ["vfio_pci", "br_netfilter"]
            .into_iter()
            .map(String::from)
            .collect();
        let listed: Vec<String> = ["vfio-pci", "loop", "br_netfilter", "vfio_pci"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            split_available(&listed, &available),
            (
                vec!["vfio-pci".to_string(), "br_netfilter".to_string()],
                vec!["loop".to_string()]
            )
        );
    }

    #[test]
    fn reads_conf_files_in_name_order() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(MODULES_LOAD_D);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("b.conf"), "second\n").unwrap();
        std::fs::write(d.join("a.conf"), "# x\nfirst\n").unwrap();
        std::fs::write(d.join("c.txt"), "ignored\n").unwrap();
        std::fs::create_dir(d.join("d.conf")).unwrap();
        let root =
            Dir::open_ambient_dir(t.path(), cap_std_ext::cap_std::ambient_authority()).unwrap();
        assert_eq!(read_listed(&root).unwrap(), ["first", "second"]);
        let empty = tempfile::tempdir().unwrap();
        let root =
            Dir::open_ambient_dir(empty.path(), cap_std_ext::cap_std::ambient_authority()).unwrap();
        assert!(read_listed(&root).unwrap().is_empty());
    }
}

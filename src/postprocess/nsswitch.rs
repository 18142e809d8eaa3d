//! Enable nss-altfiles in `usr/etc/nsswitch.conf` (§4.7 step 4).
//!
//! After the passwd/group split most users live in `/usr/lib/{passwd,group}`,
//! which glibc only reads through the `altfiles` NSS module. This module adds
//! `altfiles` to the `passwd:` and `group:` lines. Not for anything else in
//! nsswitch.conf.

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::{Dir, MetadataExt, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;

/// Databases that get `altfiles`.
const ALTFILES_DATABASES: &[&str] = &["passwd:", "group:"];

/// Insert `altfiles` right after `files` (or at the end) on the `passwd:` and
/// `group:` lines, unless present. Those lines are rewritten with single spaces
/// (`passwd: files altfiles systemd`); every other line is kept as is. Pure and
/// idempotent.
pub fn add_altfiles(content: &str) -> String {
    let mut out = String::with_capacity(content.len() + 32);
    for line in content.lines() {
        let db = ALTFILES_DATABASES
            .iter()
            .find(|db| line.starts_with(**db))
            .copied();
        match db {
            Some(db) => {
                let rest = &line[db.len()..];
                let mut sources: Vec<&str> = rest.split_whitespace().collect();
                if !sources.contains(&"altfiles") {
                    match sources.iter().position(|s| *s == "files") {
                        Some(i) => sources.insert(i + 1, "altfiles"),
                        None => sources.push("altfiles"),
                    }
                }
                out.push_str(db);
                out.push(' ');
                out.push_str(&sources.join(" "));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Apply [`add_altfiles`] to `usr/etc/nsswitch.conf` if it is a regular file
/// (a symlink, e.g. to authselect's copy, is left alone). Returns whether the
/// file was changed. The file keeps its mode.
pub fn enable_altfiles(root: &Dir) -> Result<bool> {
    let path = "usr/etc/nsswitch.conf";
    let Some(meta) = root
        .symlink_metadata_optional(path)
        .with_context(|| format!("Querying {path}"))?
    else {
        return Ok(false);
    };
    if !meta.is_file() {
        return Ok(false);
    }
    let orig = root
        .read_to_string(path)
        .with_context(|| format!("Reading {path}"))?;
    let new = add_altfiles(&orig);
    if new == orig {
        return Ok(false);
    }
    root.atomic_write_with_perms(path, new, Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("Writing {path}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altfiles_replaced() {
        let orig = "# blah blah nss stuff\n# more blah blah\n\n# passwd: db files\n# shadow: db files\n\npasswd:     sss files systemd\nshadow:     files\ngroup:      sss files systemd\nhosts:      files resolve [!UNAVAIL=return] myhostname dns\nautomount:  files sss\n";
        let expected = "# blah blah nss stuff\n# more blah blah\n\n# passwd: db files\n# shadow: db files\n\npasswd: sss files altfiles systemd\nshadow:     files\ngroup: sss files altfiles systemd\nhosts:      files resolve [!UNAVAIL=return] myhostname dns\nautomount:  files sss\n";
        let once = add_altfiles(orig);
        assert_eq!(once, expected);
        assert_eq!(add_altfiles(&once), expected, "idempotent");
    }

    #[test]
    fn altfiles_appended_without_files() {
        assert_eq!(
            add_altfiles("passwd:\tsss systemd\ngroup: db\n"),
            "passwd: sss systemd altfiles\ngroup: db altfiles\n"
        );
        assert_eq!(
            add_altfiles("passwd: altfiles files\n"),
            "passwd: altfiles files\n"
        );
        // Debian default
        assert_eq!(
            add_altfiles("passwd:         files\ngroup:          files\nshadow:         files\n"),
            "passwd: files altfiles\ngroup: files altfiles\nshadow:         files\n"
        );
    }
}

//! The kickstart subset rpm-ostree accepts as a treefile (reference §3.6):
//! `%packages [--exclude-weakdeps] … %end` (a leading `-` excludes) and
//! `%include <path>` (relative to the directory of the kickstart named by the
//! treefile, also for nested includes, as rpm-ostree does); lines starting
//! with `#` and blank lines are skipped everywhere. Anything else is an error.
//!
//! `parse_kickstart` is pure; `load_kickstart` follows `%include`s on disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::model::TreeComposeConfig;
use crate::exit::invalid_input;

/// Maximum number of `%include` files followed from one kickstart.
pub const MAX_KICKSTART_INCLUDES: usize = 256;

/// One parsed kickstart file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kickstart {
    pub packages: Vec<String>,
    pub excludes: Vec<String>,
    pub exclude_weakdeps: bool,
    pub includes: Vec<String>,
}

/// Parse kickstart text. `name` is used in error messages.
pub fn parse_kickstart(text: &str, name: &str) -> Result<Kickstart, String> {
    let mut ks = Kickstart::default();
    let mut in_packages = false;
    for (lineno, line) in text.lines().enumerate() {
        let lineno = lineno + 1;
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if in_packages {
            if line == "%end" {
                in_packages = false;
            } else if let Some(ex) = line.strip_prefix('-') {
                ks.excludes.push(ex.to_string());
            } else {
                ks.packages.push(line.to_string());
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        match verb {
            "%packages" => {
                for opt in words {
                    match opt {
                        "--exclude-weakdeps" => ks.exclude_weakdeps = true,
                        other => {
                            return Err(format!(
                                "{name}:{lineno}: unsupported %packages option '{other}' (only --exclude-weakdeps is supported)"
                            ))
                        }
                    }
                }
                in_packages = true;
            }
            "%include" => {
                let path: Vec<&str> = words.collect();
                if path.len() != 1 {
                    return Err(format!("{name}:{lineno}: %include takes exactly one path"));
                }
                ks.includes.push(path[0].to_string());
            }
            other => {
                return Err(format!(
                    "{name}:{lineno}: Unhandled verb '{other}' (only %packages and %include are supported)"
                ))
            }
        }
    }
    if in_packages {
        return Err(format!("{name}: Missing %end for %packages"));
    }
    Ok(ks)
}

/// Build a treefile config from an already-read kickstart file (`devino` is
/// its device/inode), following its `%include`s relative to its directory.
pub fn kickstart_config(path: &Path, text: &str, devino: (u64, u64)) -> Result<TreeComposeConfig> {
    let mut seen = BTreeSet::new();
    seen.insert(devino);
    let mut count = 0usize;
    let mut acc = Kickstart::default();
    let top_dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    absorb(path, text, &top_dir, &mut seen, &mut count, &mut acc)?;
    // As rpm-ostree's `from_kickstart`: both lists always set.
    let mut cfg = TreeComposeConfig {
        packages: Some(acc.packages.into_iter().collect()),
        exclude_packages: Some(acc.excludes),
        ..Default::default()
    };
    if acc.exclude_weakdeps {
        cfg.recommends = Some(false);
    }
    Ok(cfg)
}

fn absorb(
    path: &Path,
    text: &str,
    top_dir: &Path,
    seen: &mut BTreeSet<(u64, u64)>,
    count: &mut usize,
    acc: &mut Kickstart,
) -> Result<()> {
    let ks = parse_kickstart(text, &path.display().to_string()).map_err(invalid_input)?;
    acc.packages.extend(ks.packages);
    acc.excludes.extend(ks.excludes);
    acc.exclude_weakdeps |= ks.exclude_weakdeps;
    for inc in ks.includes {
        *count += 1;
        if *count > MAX_KICKSTART_INCLUDES {
            return Err(invalid_input(format!(
                "{}: more than {MAX_KICKSTART_INCLUDES} kickstart %include files",
                path.display()
            )));
        }
        let child = top_dir.join(&inc);
        let (text, devino) = super::resolve::read_with_devino(&child)
            .with_context(|| format!("{}: %include {inc}", path.display()))?;
        if !seen.insert(devino) {
            return Err(invalid_input(format!(
                "{}: kickstart include loop detected; {} was already included",
                path.display(),
                child.display()
            )));
        }
        absorb(&child, &text, top_dir, seen, count, acc)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic() {
        let ks = parse_kickstart("# c\n%packages --exclude-weakdeps\nsystemd\n-bash\n\nnushell\n%end\n%include other.ks\n", "t").unwrap();
        assert_eq!(ks.packages, ["systemd", "nushell"]);
        assert_eq!(ks.excludes, ["bash"]);
        assert!(ks.exclude_weakdeps);
        assert_eq!(ks.includes, ["other.ks"]);
    }

    #[test]
    fn errors() {
        assert!(parse_kickstart("rootpw foo\n", "t")
            .unwrap_err()
            .contains("Unhandled verb"));
        assert!(parse_kickstart("%packages\nfoo\n", "t")
            .unwrap_err()
            .contains("Missing %end"));
        assert!(parse_kickstart("%packages --nocore\n%end\n", "t").is_err());
    }
}

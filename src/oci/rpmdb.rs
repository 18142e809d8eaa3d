//! Read the package list and file ownership out of an rpmdb with the `rpm` CLI.
//!
//! Used by the chunking step to map commit content to packages. The query runs
//! `rpm --root ROOT --dbpath DBPATH -qa --qf ...` (the rpmdb is opened read-only;
//! no scriptlet or chroot is involved). Parsing the output is pure and tested here;
//! this module does not know about OSTree.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmPackage {
    pub name: String,
    pub nevra: String,
    pub arch: String,
    /// The source RPM file name, or the package name when rpm reports none.
    pub srcrpm: String,
    pub buildtime: u64,
    /// Changelog entry times (seconds since the epoch), newest first as rpm stores them.
    pub changelog_times: Vec<u64>,
}

/// One file owned by a package, as listed in the rpmdb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmFile {
    pub path: String,
    /// NEVRA of the owning package.
    pub nevra: String,
}

/// What the rpmdb says: packages by NEVRA, and owned (non-ghost) files.
#[derive(Debug, Default, Clone)]
pub struct RpmDbContents {
    pub packages: BTreeMap<String, RpmPackage>,
    pub files: Vec<RpmFile>,
}

/// `%ghost` files are listed in the rpmdb but their content does not come from the package.
const RPMFILE_GHOST: u64 = 1 << 6;

const PKG_QUERYFORMAT: &str =
    "%{NEVRA}\\t%{NAME}\\t%{ARCH}\\t%{SOURCERPM}\\t%{BUILDTIME}\\t[%{CHANGELOGTIME} ]\\n";
// `%{=NEVRA}`: repeat the (formatted, array-like) NEVRA for every file; a plain
// `%{NEVRA}` inside `[...]` makes rpm fail with "array iterator used with different sized arrays".
const FILE_QUERYFORMAT: &str = "[%{FILEFLAGS}\\t%{=NEVRA}\\t%{FILENAMES}\\n]";

/// The rpmdb locations tried, relative to a root, in order.
pub const RPMDB_CANDIDATES: &[&str] = &["usr/share/rpm", "usr/lib/sysimage/rpm", "var/lib/rpm"];

/// Find the rpmdb directory under `root` (returned as an absolute `--dbpath` value inside the root).
pub fn find_dbpath(root: &Path) -> Option<&'static str> {
    RPMDB_CANDIDATES.iter().copied().find(|c| {
        let d = root.join(c);
        ["rpmdb.sqlite", "Packages", "Packages.db"]
            .iter()
            .any(|f| d.join(f).is_file())
    })
}

/// Query the rpmdb at `root`/`dbpath` (dbpath relative to the root, e.g. `usr/share/rpm`).
/// The package and the file queries run at the same time (two `rpm` processes).
pub fn query(root: &Path, dbpath: &str) -> Result<RpmDbContents> {
    let pkgs = spawn_rpm(root, dbpath, PKG_QUERYFORMAT)?;
    let files = spawn_rpm(root, dbpath, FILE_QUERYFORMAT);
    // Wait for both children before reporting either one's failure.
    let pkgs = finish_rpm(pkgs, root, dbpath);
    let files = files.and_then(|f| finish_rpm(f, root, dbpath));
    let (pkgs, files) = (pkgs?, files?);
    let mut out = RpmDbContents::default();
    for p in parse_packages(&pkgs)? {
        out.packages.insert(p.nevra.clone(), p);
    }
    out.files = parse_files(&files);
    Ok(out)
}

/// A running `rpm -qa --qf QF` and how it was started (for messages).
struct RpmQuery {
    child: std::process::Child,
    cmd: String,
}

fn spawn_rpm(root: &Path, dbpath: &str, qf: &str) -> Result<RpmQuery> {
    let mut cmd = Command::new("rpm");
    cmd.arg("--root")
        .arg(root)
        .arg("--dbpath")
        .arg(format!("/{}", dbpath.trim_start_matches('/')))
        .args(["-qa", "--qf", qf])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("Running {cmd:?} (is rpm installed?)"))?;
    Ok(RpmQuery {
        child,
        cmd: format!("{cmd:?}"),
    })
}

fn finish_rpm(q: RpmQuery, root: &Path, dbpath: &str) -> Result<String> {
    let out = q
        .child
        .wait_with_output()
        .with_context(|| format!("Running {}", q.cmd))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // rpm reports query-format errors on stderr but still exits 0.
    if !out.status.success() || stderr.lines().any(|l| l.starts_with("error:")) {
        bail!(
            "Reading the rpmdb at {}/{dbpath} failed ({}): {}",
            root.display(),
            out.status,
            stderr.trim()
        );
    }
    String::from_utf8(out.stdout).context("rpm printed non-UTF-8 output")
}

/// Parse the output of [`PKG_QUERYFORMAT`].
pub fn parse_packages(text: &str) -> Result<Vec<RpmPackage>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            bail!("Unexpected rpm package line (want 6 tab-separated fields): {line:?}");
        }
        let buildtime = f[4]
            .parse::<u64>()
            .with_context(|| format!("Bad BUILDTIME in rpm line {line:?}"))?;
        let changelog_times = f[5]
            .split_whitespace()
            .filter_map(|t| t.parse::<u64>().ok())
            .collect();
        let srcrpm = if f[3] == "(none)" || f[3].is_empty() {
            f[1].to_string()
        } else {
            f[3].to_string()
        };
        out.push(RpmPackage {
            nevra: f[0].to_string(),
            name: f[1].to_string(),
            arch: f[2].to_string(),
            srcrpm,
            buildtime,
            changelog_times,
        });
    }
    Ok(out)
}

/// Parse the output of [`FILE_QUERYFORMAT`], dropping `%ghost` files. Lines that
/// do not parse (a file name with a newline) are skipped: those files then count
/// as unpackaged content, which is safe.
pub fn parse_files(text: &str) -> Vec<RpmFile> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, '\t');
            let flags = it.next()?.parse::<u64>().ok()?;
            let nevra = it.next()?;
            let path = it.next()?;
            if flags & RPMFILE_GHOST != 0 || !path.starts_with('/') {
                return None;
            }
            Some(RpmFile {
                path: path.to_string(),
                nevra: nevra.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_packages() {
        let t = "bash-5.2-1.fc39.x86_64\tbash\tx86_64\tbash-5.2-1.fc39.src.rpm\t1700000000\t1690000000 1680000000 \n\
                 gpg-pubkey-1-2\tgpg-pubkey\t(none)\t(none)\t1600000000\t\n";
        let p = parse_packages(t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[0].changelog_times, vec![1690000000, 1680000000]);
        assert_eq!(p[1].srcrpm, "gpg-pubkey");
        assert!(parse_packages("a\tb\n").is_err());
    }

    #[test]
    fn parses_files_and_drops_ghosts() {
        let t = "0\tbash-5.2-1.x86_64\t/usr/bin/bash\n\
                 64\tkernel-6-1.x86_64\t/usr/lib/modules/6/initramfs.img\n\
                 17\tsetup-2-1.noarch\t/etc/with\ttab\n\
                 garbage\n";
        let f = parse_files(t);
        assert_eq!(
            f,
            vec![
                RpmFile {
                    path: "/usr/bin/bash".into(),
                    nevra: "bash-5.2-1.x86_64".into()
                },
                RpmFile {
                    path: "/etc/with\ttab".into(),
                    nevra: "setup-2-1.noarch".into()
                }
            ]
        );
    }
}

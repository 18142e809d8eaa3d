//! Read the installed package list back from a root's rpmdb
//! (`ROOT/usr/share/rpm`) with the host's `rpm` CLI.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

/// Where the rpmdb lives inside a composed root.
pub const RPMDB_DIR: &str = "usr/share/rpm";

/// One installed package (for `rpmostree.rpmdb.pkglist`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstalledPackage {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
}

const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n";

/// Parse the output of `rpm -qa --qf QUERY_FORMAT`; `gpg-pubkey` pseudo
/// packages are skipped. Sorted by name, epoch, version, release, arch.
pub fn parse_query_output(text: &str) -> Result<Vec<InstalledPackage>> {
    let mut pkgs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch] = fields[..] else {
            bail!("Unexpected line from rpm -qa: '{line}'");
        };
        if name == "gpg-pubkey" {
            continue;
        }
        let epoch = epoch
            .parse()
            .map_err(|e| anyhow!("Bad epoch in rpm -qa line '{line}': {e}"))?;
        pkgs.push(InstalledPackage {
            name: name.into(),
            epoch,
            version: version.into(),
            release: release.into(),
            arch: arch.into(),
        });
    }
    pkgs.sort();
    Ok(pkgs)
}

/// The packages in `root`'s rpmdb (`root/usr/share/rpm`).
pub fn installed_packages(root: &Path) -> Result<Vec<InstalledPackage>> {
    let dbdir = root.join(RPMDB_DIR);
    if !dbdir.is_dir() {
        bail!("No rpmdb found at {}", dbdir.display());
    }
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/usr/share/rpm", "-qa", "--qf", QUERY_FORMAT])
        .output()
        .context("Running rpm -qa (is rpm installed?)")?;
    if !out.status.success() {
        bail!(
            "rpm -qa on {} failed ({}): {}",
            dbdir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_query_output(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("Reading the rpmdb in {}", dbdir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sorts_skipping_pubkeys() {
        let text =
            "zed\t0\t1\t2\tnoarch\ngpg-pubkey\t0\tabc\tdef\t(none)\nabc\t3\t1.0\t1.fc40\tx86_64\n";
        let pkgs = parse_query_output(text).unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "abc");
        assert_eq!(pkgs[0].epoch, 3);
        assert_eq!(pkgs[1].arch, "noarch");
        assert!(parse_query_output("a\tb\n").is_err());
        assert!(parse_query_output("a\tx\t1\t1\tnoarch\n").is_err());
    }
}

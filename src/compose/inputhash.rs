//! The input hash (`rpmostree.inputhash`) that decides "no change".
//!
//! SHA-256 over the treefile checksum followed by, for each package of the
//! resolved transaction in order, the action and the rpm-md checksum. Pure;
//! the caller supplies the treefile checksum and the resolved package set.

use sha2::{Digest, Sha256};

/// One package of the resolved transaction, as it enters the hash.
pub struct HashedPackage<'a> {
    /// `install` for a compose (rpm-ostree also knows update/downgrade/remove/obsolete).
    pub action: &'a str,
    /// `"<type>:<hex>"` from rpm-md, e.g. `sha256:…`.
    pub checksum: &'a str,
}

/// Hex SHA-256 of the treefile checksum and the packages, in the given order.
pub fn input_hash<'a>(
    treefile_checksum: &str,
    packages: impl IntoIterator<Item = HashedPackage<'a>>,
) -> String {
    let mut h = Sha256::new();
    h.update(treefile_checksum.as_bytes());
    for p in packages {
        h.update(p.action.as_bytes());
        h.update(p.checksum.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkgs(list: &[&'static str]) -> Vec<HashedPackage<'static>> {
        list.iter()
            .map(|c| HashedPackage {
                action: "install",
                checksum: c,
            })
            .collect()
    }

    #[test]
    fn changes_with_any_input() {
        let base = input_hash("abc", pkgs(&["sha256:1", "sha256:2"]));
        assert_eq!(base.len(), 64);
        assert_eq!(base, input_hash("abc", pkgs(&["sha256:1", "sha256:2"])));
        assert_ne!(base, input_hash("abd", pkgs(&["sha256:1", "sha256:2"])));
        assert_ne!(base, input_hash("abc", pkgs(&["sha256:1", "sha256:3"])));
        assert_ne!(base, input_hash("abc", pkgs(&["sha256:2", "sha256:1"])));
        assert_ne!(base, input_hash("abc", pkgs(&["sha256:1"])));
    }
}

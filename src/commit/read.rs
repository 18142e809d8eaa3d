//! Reading an existing commit: checksum, parent, timestamp, metadata values and
//! file contents by path. Used for change detection (`rpmostree.inputhash`),
//! automatic versioning (`version`), passwd/group checks (`/usr/etc/passwd`,
//! `/usr/lib/passwd`) and the compose JSON `pkgdiff`.
//!
//! Numbers in metadata are read as big-endian, the convention rpm-ostree (and
//! [`super::metadata`]) write; commits made by other tools with native-endian
//! numbers read back byte-swapped. Strings, booleans and lists are unaffected.
//!
//! Not for: writing commits or resolving which commit is "previous" (the caller
//! decides: usually the target ref, see [`resolve_rev`]).

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib::{self, Variant, VariantTy};
use ostree::prelude::*;
use ostree::{ObjectType, Repo};

use super::metadata::{big_endian_to_native, pkglist_from_variant, PkgListEntry};

/// Resolve a ref or checksum. `Ok(None)` if it does not exist.
pub fn resolve_rev(repo: &Repo, rev: &str) -> Result<Option<String>> {
    let resolved = repo
        .resolve_rev(rev, true)
        .with_context(|| format!("Resolving '{rev}'"))?;
    Ok(resolved.map(|s| s.to_string()))
}

/// True if the commit object `checksum` is in `repo`.
pub fn has_commit(repo: &Repo, checksum: &str) -> Result<bool> {
    repo.has_object(ObjectType::Commit, checksum, gio::Cancellable::NONE)
        .with_context(|| format!("Looking up commit {checksum}"))
}

/// A loaded commit.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    repo: Repo,
    checksum: String,
    commit: Variant,
    /// The commit's metadata `a{sv}` converted to native byte order.
    metadata: Variant,
}

impl CommitInfo {
    /// Load the commit `rev` (a ref or checksum) from `repo`.
    pub fn load(repo: &Repo, rev: &str) -> Result<CommitInfo> {
        let checksum = repo
            .require_rev(rev)
            .with_context(|| format!("Resolving '{rev}'"))?
            .to_string();
        let commit = repo
            .load_variant(ObjectType::Commit, &checksum)
            .with_context(|| format!("Loading commit {checksum}"))?;
        let metadata = big_endian_to_native(&commit.child_value(0));
        Ok(CommitInfo {
            repo: repo.clone(),
            checksum,
            commit,
            metadata,
        })
    }

    /// Load `rev` if it resolves, `Ok(None)` otherwise.
    pub fn load_optional(repo: &Repo, rev: &str) -> Result<Option<CommitInfo>> {
        match resolve_rev(repo, rev)? {
            Some(csum) => Ok(Some(Self::load(repo, &csum)?)),
            None => Ok(None),
        }
    }

    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// The parent commit's checksum, if the commit has one (it may be absent from the repo).
    pub fn parent(&self) -> Option<String> {
        ostree::commit_get_parent(&self.commit).map(|s| s.to_string())
    }

    /// Seconds since the epoch, UTC.
    pub fn timestamp(&self) -> u64 {
        ostree::commit_get_timestamp(&self.commit)
    }

    /// The timestamp as `%FT%H:%M:%SZ` (what the compose JSON shows).
    pub fn timestamp_string(&self) -> String {
        format_timestamp(self.timestamp())
    }

    /// The checksum over the commit's root tree and metadata only
    /// (`ostree_commit_get_content_checksum`), equal for equal trees.
    pub fn content_checksum(&self) -> Result<String> {
        ostree::commit_get_content_checksum(&self.commit)
            .map(|s| s.to_string())
            .with_context(|| format!("Computing the content checksum of {}", self.checksum))
    }

    /// The commit subject line.
    pub fn subject(&self) -> String {
        self.commit
            .try_child_get::<String>(3)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The metadata `a{sv}` in native byte order.
    pub fn metadata(&self) -> &Variant {
        &self.metadata
    }

    /// The raw value of a metadata key (native byte order).
    pub fn metadata_value(&self, key: &str) -> Option<Variant> {
        glib::VariantDict::new(Some(&self.metadata)).lookup_value(key, None)
    }

    /// A string value; an error if the key holds another type.
    pub fn metadata_string(&self, key: &str) -> Result<Option<String>> {
        self.typed(key, "s")
    }

    /// A boolean value.
    pub fn metadata_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "b")
    }

    /// A signed 64-bit integer (`x`).
    pub fn metadata_i64(&self, key: &str) -> Result<Option<i64>> {
        self.typed(key, "x")
    }

    /// An unsigned 64-bit integer (`t`).
    pub fn metadata_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "t")
    }

    /// A string list (`as`).
    pub fn metadata_strv(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.typed(key, "as")
    }

    /// The `version` string.
    pub fn version(&self) -> Result<Option<String>> {
        self.metadata_string(super::metadata::KEY_VERSION)
    }

    /// The `rpmostree.inputhash` string.
    pub fn inputhash(&self) -> Result<Option<String>> {
        self.metadata_string(super::metadata::KEY_INPUTHASH)
    }

    /// The `rpmostree.rpmdb.pkglist` package list.
    pub fn pkglist(&self) -> Result<Option<Vec<PkgListEntry>>> {
        match self.metadata_value(super::metadata::KEY_PKGLIST) {
            None => Ok(None),
            Some(v) => pkglist_from_variant(&v)
                .map(Some)
                .with_context(|| format!("Reading the package list of commit {}", self.checksum)),
        }
    }

    /// The package difference from this commit's parent, if the parent is in
    /// the repository and both commits carry a package list (the compose JSON's
    /// `pkgdiff` is only written then).
    pub fn pkgdiff_from_parent(&self) -> Result<Option<Vec<super::pkgdiff::PkgDiffEntry>>> {
        let Some(parent) = self.parent() else {
            return Ok(None);
        };
        if !has_commit(&self.repo, &parent)? {
            return Ok(None);
        }
        let parent = CommitInfo::load(&self.repo, &parent)?;
        match (parent.pkglist()?, self.pkglist()?) {
            (Some(old), Some(new)) => Ok(Some(super::pkgdiff::pkgdiff(&old, &new))),
            _ => Ok(None),
        }
    }

    fn typed<T: glib::FromVariant>(&self, key: &str, type_str: &str) -> Result<Option<T>> {
        let Some(v) = self.metadata_value(key) else {
            return Ok(None);
        };
        let want = VariantTy::new(type_str).context("invalid GVariant type string")?;
        if v.type_() != want {
            bail!(
                "metadata key '{key}' of commit {} has type {} instead of {type_str}",
                self.checksum,
                v.type_().as_str()
            );
        }
        let value = v
            .get::<T>()
            .with_context(|| format!("Reading metadata key '{key}' of commit {}", self.checksum))?;
        Ok(Some(value))
    }

    /// The contents of the regular file at `path` (absolute inside the commit,
    /// e.g. `/usr/etc/passwd`); `Ok(None)` if nothing is there. A directory or
    /// symlink at `path` is an error.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let (root, _) = self
            .repo
            .read_commit(&self.checksum, gio::Cancellable::NONE)
            .with_context(|| format!("Reading commit {}", self.checksum))?;
        let rel = path.trim_start_matches('/');
        let file = if rel.is_empty() {
            root
        } else {
            root.resolve_relative_path(rel)
        };
        let info = match file.query_info(
            "standard::type",
            gio::FileQueryInfoFlags::NOFOLLOW_SYMLINKS,
            gio::Cancellable::NONE,
        ) {
            Ok(info) => info,
            Err(e) if e.matches(gio::IOErrorEnum::NotFound) => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("Looking up {path} in commit {}", self.checksum))
            }
        };
        if info.file_type() != gio::FileType::Regular {
            bail!(
                "{path} in commit {} is not a regular file ({:?})",
                self.checksum,
                info.file_type()
            );
        }
        // Read through the content object: `GFile::load_contents` on a
        // RepoFile of an archive repo trips a GLib assertion.
        let repo_file = file
            .downcast::<ostree::RepoFile>()
            .map_err(|_| anyhow::anyhow!("libostree returned a file that is not a RepoFile"))?;
        repo_file
            .ensure_resolved()
            .with_context(|| format!("Resolving {path} in commit {}", self.checksum))?;
        let content_checksum = repo_file.checksum();
        let (stream, _, _) = self
            .repo
            .load_file(&content_checksum, gio::Cancellable::NONE)
            .with_context(|| format!("Loading {path} from commit {}", self.checksum))?;
        let mut bytes = Vec::new();
        if let Some(stream) = stream {
            std::io::Read::read_to_end(&mut stream.into_read(), &mut bytes)
                .with_context(|| format!("Reading {path} from commit {}", self.checksum))?;
        }
        Ok(Some(bytes))
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_timestamp(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}

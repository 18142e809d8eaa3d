//! The "no change" fast path: decide that a compose's inputs are unchanged
//! without starting dnf.
//!
//! A full resolve costs a Python start-up plus a `repomd.xml` check per
//! repository (~0.5 s), and its only use on a rerun with nothing new is the
//! input hash. The [`FastPathKey`] is a SHA-256 over everything a resolve
//! depends on: the treefile checksum, the install request's package and
//! repository settings, the enabled repositories' `.repo` options, the
//! lockfiles' bytes, the dnf helper itself, and for every enabled repository
//! the bytes of its current `repomd.xml` (read directly for `file://`
//! baseurls). After a full resolve the key and the resulting input hash are
//! stored in the cache directory; on the next run, the same key and a
//! previous commit with that input hash mean "no apparent changes".
//!
//! Any doubt gives no key and the caller resolves as usual: a repository that
//! is remote (http, mirrorlist, metalink), has several baseurls, or whose URL
//! keeps an unknown `$variable`; an unreadable file. Races are safe: the key
//! is computed before the resolve it is stored with, so a `repomd.xml` that
//! changes in between gives a key that will not match again.
//!
//! Not for: deciding anything when a key cannot be computed; remote metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::InstallRequest;

/// Name of the record in the cache directory.
pub const RECORD_FILE: &str = "resolve-fastpath.json";

/// A hex SHA-256 over everything a resolve depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastPathKey(pub String);

/// What the cache remembers of the last full resolve.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Record {
    key: String,
    inputhash: String,
}

/// The key for `req` and a treefile with checksum `treefile_checksum`, or
/// `None` when some input cannot be read cheaply (see the module doc).
/// `--cache-only` resolves against cached metadata, which the key does not
/// see: no key.
pub fn key(req: &InstallRequest, treefile_checksum: &str) -> Option<FastPathKey> {
    if req.cache_only {
        return None;
    }
    match compute_key(req, treefile_checksum) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("note: no fast change check ({e:#}); resolving");
            None
        }
    }
}

fn compute_key(req: &InstallRequest, treefile_checksum: &str) -> Result<Option<FastPathKey>> {
    let lockfile_repos = super::active_lockfile_repos(req);
    let enabled = super::enabled_repos(req)?;
    let vars = url_variables(req);
    let mut h = Sha256::new();
    let mut field = |name: &str, bytes: &[u8]| {
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field("version", env!("CARGO_PKG_VERSION").as_bytes());
    field("helper", super::dnf::HELPER.as_bytes());
    field("treefile", treefile_checksum.as_bytes());
    // Every field of the request, so a setting added later cannot be
    // forgotten here (the cache-related ones only make the key stricter).
    let settings = format!("{req:?} {lockfile_repos:?}");
    field("settings", settings.as_bytes());
    for lf in &req.lockfiles {
        let bytes = std::fs::read(lf).with_context(|| format!("Reading {}", lf.display()))?;
        field("lockfile", &bytes);
    }
    for repo in &enabled {
        field("repo", repo.id.as_bytes());
        field(
            "options",
            serde_json::to_string(&repo.options)
                .context("Serializing repository options")?
                .as_bytes(),
        );
        let Some(dir) = local_repo_dir(&repo.options, &vars) else {
            return Ok(None);
        };
        let repomd = dir.join("repodata/repomd.xml");
        let bytes =
            std::fs::read(&repomd).with_context(|| format!("Reading {}", repomd.display()))?;
        field("repomd", &bytes);
    }
    Ok(Some(FastPathKey(hex::encode(h.finalize()))))
}

/// The variables dnf substitutes in `.repo` URLs for this request.
fn url_variables(req: &InstallRequest) -> BTreeMap<String, String> {
    let mut vars = req.repovars.clone();
    vars.insert(
        "releasever".to_string(),
        req.releasever
            .clone()
            .unwrap_or_else(|| super::dnf::UNSET_RELEASEVER.to_string()),
    );
    vars.insert("basearch".to_string(), req.basearch.clone());
    vars
}

/// The local directory of a repository with exactly one `file://` baseurl and
/// no mirrorlist/metalink; `None` otherwise.
fn local_repo_dir(
    options: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
) -> Option<PathBuf> {
    if options.contains_key("mirrorlist") || options.contains_key("metalink") {
        return None;
    }
    let baseurl = options.get("baseurl")?;
    let mut urls = baseurl
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty());
    let url = urls.next()?;
    if urls.next().is_some() {
        return None;
    }
    let url = substitute(url, vars)?;
    let path = url.strip_prefix("file://")?;
    // Percent-encoded paths and relative ones are left to dnf.
    if path.contains('%') || !path.starts_with('/') {
        return None;
    }
    Some(PathBuf::from(path))
}

/// dnf's `$name` / `${name}` substitution; `None` if a variable is unknown
/// or uses a form we do not implement (e.g. `${name:-default}`).
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}')?;
            let name = &braced[..end];
            if name.is_empty() || !name.chars().all(is_word) {
                return None;
            }
            (name, end + 2)
        } else {
            let end = after.find(|c: char| !is_word(c)).unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            return None;
        }
        out.push_str(vars.get(name)?);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Some(out)
}

/// The input hash stored with `key` in `cachedir`, if the last full resolve
/// there had this key.
pub fn cached_inputhash(cachedir: &Path, key: &FastPathKey) -> Option<String> {
    let bytes = std::fs::read(cachedir.join(RECORD_FILE)).ok()?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    (record.key == key.0).then_some(record.inputhash)
}

/// Remember that a full resolve with `key` gave `inputhash` (atomic replace).
pub fn store(cachedir: &Path, key: &FastPathKey, inputhash: &str) -> Result<()> {
    let record = Record {
        key: key.0.clone(),
        inputhash: inputhash.to_string(),
    };
    let path = cachedir.join(RECORD_FILE);
    let tmp = cachedir.join(format!(".{RECORD_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&record)?)
        .with_context(|| format!("Writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("Renaming {} into place", path.display()))
}

/// Forget the record (e.g. when a resolve failed), so no stale key survives.
pub fn clear(cachedir: &Path) {
    let _ = std::fs::remove_file(cachedir.join(RECORD_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("basearch", "x86_64"), ("releasever", "40"), ("v", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution() {
        let v = vars();
        assert_eq!(
            substitute("file:///r/$releasever/${basearch}/$v-y", &v).as_deref(),
            Some("file:///r/40/x86_64/x-y")
        );
        assert_eq!(
            substitute("file:///plain", &v).as_deref(),
            Some("file:///plain")
        );
        assert_eq!(substitute("file:///r/$unknown", &v), None);
        assert_eq!(substitute("file:///r/${basearch:-x}", &v), None);
        assert_eq!(substitute("file:///r/$", &v), None);
    }

    #[test]
    fn only_single_local_baseurls() {
        let v = vars();
        let opts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            local_repo_dir(&opts(&[("baseurl", "file:///srv/$basearch")]), &v),
            Some(PathBuf::from("/srv/x86_64"))
        );
        assert_eq!(
            local_repo_dir(&opts(&[("baseurl", "https://x/y")]), &v),
            None
        );
        assert_eq!(
            local_repo_dir(&opts(&[("baseurl", "file:///a\nfile:///b")]), &v),
            None
        );
        assert_eq!(
            local_repo_dir(
                &opts(&[("baseurl", "file:///a"), ("metalink", "https://m")]),
                &v
            ),
            None
        );
        assert_eq!(
            local_repo_dir(&opts(&[("baseurl", "file:///a%20b")]), &v),
            None
        );
        assert_eq!(local_repo_dir(&opts(&[]), &v), None);
    }

    #[test]
    fn record_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let k = FastPathKey("k1".into());
        assert_eq!(cached_inputhash(tmp.path(), &k), None);
        store(tmp.path(), &k, "h1").unwrap();
        assert_eq!(cached_inputhash(tmp.path(), &k).as_deref(), Some("h1"));
        assert_eq!(
            cached_inputhash(tmp.path(), &FastPathKey("k2".into())),
            None
        );
        clear(tmp.path());
        assert_eq!(cached_inputhash(tmp.path(), &k), None);
    }
}

//! Reuse of what a program run in the tree made before from the same inputs:
//! the initramfs dracut builds, the module index depmod writes.
//!
//! dracut is most of a bootable compose once packages come from the package
//! cache (4-5 s of a 7.7 s re-run on the large corpus), depmod another
//! second (it reads every kernel module), and a re-run after changing a
//! package that goes neither into the initramfs nor into the kernel (almost
//! any package) makes the same outputs again. The outputs are kept in
//! `CACHEDIR/KIND/v1/` with a record of what the run depended on, and reused
//! when all of that is the same:
//!
//! - **inputs**: the program's arguments and environment, what is done
//!   here with the output (the initramfs compression), the host's kernel
//!   release and machine;
//! - **shape** of the tree: every path with its type, mode, owner, symlink
//!   target and whether it is empty. dracut decides much by looking for
//!   files (`require_binaries`, `[ -e ]`, `[ -s ]`) without opening them,
//!   and inotify does not see those lookups; so any file added or removed
//!   anywhere counts as a change;
//! - **content** of every file the program opened ([`super::opentrace`]):
//!   its OSTree content checksum (known from the package cache for files
//!   linked from it, else computed) and its mtime. For dracut only older
//!   mtimes count: `--reproducible` sets the mtime of everything newer than
//!   its own `dracut-functions.sh` to that file's, so a newer one counts as
//!   "new" (files made during the compose, such as the staged passwd, have
//!   a new mtime every time; see [`dracut_mtimes`]).
//!
//! A run is recorded only when the trace is complete and the program
//! changed nothing in the tree but its outputs. The trace may hold more than
//! the program read (anything else opening files of the tree meanwhile
//! counts), which only makes a reuse rarer.
//!
//! Not for: deciding whether a program must run for other reasons; a tree
//! whose `os-release` changes on every compose (an automatic version) gets
//! a new initramfs every time, as it should, since dracut copies it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::commit::checksum::ContentHasher;
use crate::commit::known::KnownContents;

/// Bump when the meaning of a record changes.
const FORMAT: u32 = 2;

/// How many records of one kind the cache keeps (an initramfs is about
/// 40 MB).
const KEPT_ENTRIES: usize = 3;

/// Name prefix of a record being written (see [`RunCache::store`]).
const TMP_PREFIX: &str = "tmp.";

/// dracut `--reproducible` gives everything newer than this file its mtime.
const DRACUT_MTIME_REFERENCE: &str = "usr/lib/dracut/dracut-functions.sh";

/// The tree as a program sees it without opening files.
#[derive(Debug, Clone)]
pub struct TreeListing {
    /// Every directory (symlinks not followed), relative; `""` is the root.
    pub dirs: Vec<PathBuf>,
    /// Hex SHA-256 over every entry's path, type, mode, owner, symlink
    /// target or device number, and emptiness.
    pub shape: String,
}

/// Walk `root`, leaving out `ignored` paths (relative) and what is below
/// them. Entries are visited in name order, so the shape does not depend on
/// the directory order on disk.
pub fn list_tree(root: &Path, ignored: &[PathBuf]) -> Result<TreeListing> {
    let mut hasher = Sha256::new();
    let mut dirs = vec![PathBuf::new()];
    let mut i = 0;
    while i < dirs.len() {
        let rel = dirs[i].clone();
        let abs = root.join(&rel);
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&abs).with_context(|| format!("Reading {}", abs.display()))? {
            let e = e.with_context(|| format!("Reading {}", abs.display()))?;
            let path = rel.join(e.file_name());
            if ignored.iter().any(|i| path.starts_with(i)) {
                continue;
            }
            let meta = e
                .metadata()
                .with_context(|| format!("Querying {}", root.join(&path).display()))?;
            entries.push((path, meta));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, meta) in entries {
            hasher.update(path.as_os_str().as_bytes());
            hasher.update([0]);
            hasher.update(meta.mode().to_le_bytes());
            hasher.update(meta.uid().to_le_bytes());
            hasher.update(meta.gid().to_le_bytes());
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(root.join(&path))
                    .with_context(|| format!("Reading the link {}", path.display()))?;
                hasher.update(target.as_os_str().as_bytes());
            } else if ft.is_file() {
                hasher.update([u8::from(meta.len() == 0)]);
            } else if ft.is_block_device() || ft.is_char_device() {
                hasher.update(meta.rdev().to_le_bytes());
            }
            hasher.update([0]);
            if ft.is_dir() {
                dirs.push(path);
            }
        }
        i += 1;
    }
    Ok(TreeListing {
        dirs,
        shape: hex::encode(hasher.finalize()),
    })
}

/// How much of an opened file's mtime can reach the program's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtimes {
    /// None of it (depmod writes no timestamps).
    Ignored,
    /// Only mtimes up to this one; newer ones all count as "new" (dracut
    /// `--reproducible`, see [`dracut_mtimes`]).
    UpTo((i64, i64)),
    /// All of it.
    Exact,
}

/// Where the content checksums of files come from: known ahead (the package
/// cache), learned earlier in this compose, or computed here (and then
/// learned, so that the next fingerprint and the commit take them).
#[derive(Clone, Copy)]
pub struct Checksums<'a> {
    pub known: Option<&'a KnownContents>,
    pub learned: &'a Mutex<KnownContents>,
}

impl Checksums<'_> {
    /// The OSTree content checksum (own owner and mode, no xattrs) of the
    /// regular file `abs` whose status is `meta`.
    fn of(&self, abs: &Path, meta: &std::fs::Metadata) -> Result<String> {
        if let Some(c) = self.known.and_then(|k| k.checksum_for(meta)) {
            return Ok(c.to_string());
        }
        let learned = || self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = learned().checksum_for(meta).map(str::to_string) {
            return Ok(c);
        }
        let mut f = File::open(abs).with_context(|| format!("Opening {}", abs.display()))?;
        let mut h = ContentHasher::without_xattrs((meta.uid(), meta.gid(), meta.mode()))?;
        std::io::copy(&mut f, &mut h).with_context(|| format!("Reading {}", abs.display()))?;
        let checksum = h.finish();
        // Only a status older than the clock tick identifies the content: a
        // write within the same tick would not change the ctime.
        if crate::commit::known::clock_is_past((meta.ctime(), meta.ctime_nsec())) {
            learned().insert(meta, checksum.clone());
        }
        Ok(checksum)
    }
}

/// One opened file as the record keeps it: `CHECKSUM@MTIME` (`@new` past
/// the [`Mtimes`] bound, `CHECKSUM` alone when mtimes are ignored),
/// `missing`, or `type:MODE` for what is not a regular file.
fn file_digest(root: &Path, rel: &Path, checksums: Checksums, mtimes: Mtimes) -> Result<String> {
    let abs = root.join(rel);
    let meta = match std::fs::symlink_metadata(&abs) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok("missing".into()),
        Err(e) => return Err(e).with_context(|| format!("Querying {}", abs.display())),
    };
    if !meta.is_file() {
        return Ok(format!("type:{:o}", meta.mode()));
    }
    let checksum = checksums.of(&abs, &meta)?;
    let mtime = (meta.mtime(), meta.mtime_nsec());
    Ok(match mtimes {
        Mtimes::Ignored => checksum,
        Mtimes::UpTo(r) if mtime > r => format!("{checksum}@new"),
        _ => format!("{checksum}@{}.{:09}", mtime.0, mtime.1),
    })
}

/// What of the mtimes reaches dracut's output: those up to its
/// `dracut-functions.sh`'s (all, if the tree has no such file).
pub fn dracut_mtimes(root: &Path) -> Mtimes {
    std::fs::symlink_metadata(root.join(DRACUT_MTIME_REFERENCE))
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Mtimes::UpTo((m.mtime(), m.mtime_nsec())))
        .unwrap_or(Mtimes::Exact)
}

/// Digests of `paths` (relative to `root`), on one thread per core.
pub fn file_digests(
    root: &Path,
    paths: &[PathBuf],
    checksums: Checksums,
    mtimes: Mtimes,
) -> Result<BTreeMap<PathBuf, String>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let digests = crate::threads::map_chunks(paths, threads, "a digest thread", |part| {
        part.iter()
            .map(|p| Ok((p.clone(), file_digest(root, p, checksums, mtimes)?)))
            .collect()
    })?;
    Ok(digests.into_iter().collect())
}

/// What a record says; `entry.json` next to the outputs (in `out/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    format: u32,
    inputs: String,
    shape: String,
    /// Opened path -> [`file_digest`].
    files: BTreeMap<String, String>,
    /// Output file name -> its content.
    outputs: BTreeMap<String, Output>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Output {
    sha256: String,
    mode: u32,
}

/// A run worth recording: what it depended on.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub inputs: String,
    pub shape: String,
    pub files: BTreeMap<PathBuf, String>,
}

/// The outcome of [`RunCache::lookup`].
#[derive(Debug)]
pub enum Lookup {
    /// This entry was built from the same inputs.
    Hit { entry: PathBuf, files: usize },
    /// Why no entry fits, for the log.
    Miss(String),
}

/// Outputs of one program and their records in `CACHEDIR/KIND/v1`.
pub struct RunCache {
    dir: PathBuf,
    /// The program's name, for the log.
    program: &'static str,
}

impl RunCache {
    pub fn new(cachedir: &Path, kind: &str, program: &'static str) -> RunCache {
        RunCache {
            dir: cachedir.join(kind).join("v1"),
            program,
        }
    }

    /// Records, newest first (by the time they were made or last used).
    fn records(&self) -> Result<Vec<(PathBuf, SystemTime)>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("Reading {}", self.dir.display())),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.with_context(|| format!("Reading {}", self.dir.display()))?;
            let name = e.file_name();
            if name.as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                continue;
            }
            let json = e.path().join("entry.json");
            if let Ok(m) = std::fs::metadata(&json) {
                out.push((e.path(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.1));
        Ok(out)
    }

    /// Find a record with these inputs and this shape whose opened files
    /// have the digests they have in `root` now.
    pub fn lookup(
        &self,
        root: &Path,
        inputs: &str,
        shape: &str,
        checksums: Checksums,
        mtimes: Mtimes,
    ) -> Result<Lookup> {
        let records = self.records()?;
        if records.is_empty() {
            return Ok(Lookup::Miss(format!("{} did not run before", self.program)));
        }
        let mut memo: HashMap<String, String> = HashMap::new();
        let (mut same_inputs, mut same_shape) = (0, 0);
        let mut first_difference: Option<String> = None;
        for (entry, _) in &records {
            let json = entry.join("entry.json");
            let record: Record = match std::fs::read(&json)
                .with_context(|| format!("Reading {}", json.display()))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .with_context(|| format!("Parsing {}", json.display()))
                }) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("warning: ignoring the {} cache entry: {e:#}", self.program);
                    continue;
                }
            };
            if record.format != FORMAT || record.inputs != inputs {
                continue;
            }
            same_inputs += 1;
            if record.shape != shape {
                continue;
            }
            same_shape += 1;
            let mut differs = None;
            for (path, digest) in &record.files {
                if !memo.contains_key(path) {
                    let d = file_digest(root, Path::new(path), checksums, mtimes)?;
                    memo.insert(path.clone(), d);
                }
                if memo[path] != *digest {
                    differs = Some(path.clone());
                    break;
                }
            }
            match differs {
                None => {
                    return Ok(Lookup::Hit {
                        entry: entry.clone(),
                        files: record.files.len(),
                    })
                }
                Some(p) => {
                    first_difference.get_or_insert(p);
                }
            }
        }
        let program = self.program;
        Ok(Lookup::Miss(
            match (same_inputs, same_shape, first_difference) {
                (0, _, _) => {
                    format!("{program}'s arguments or environment differ from earlier runs")
                }
                (_, 0, _) => "the tree's files differ in their list, type, mode, owner, \
                          symlink targets or emptiness"
                    .into(),
                (_, _, Some(p)) => format!("/{p}, which {program} read, differs"),
                _ => "no earlier run matches".into(),
            },
        ))
    }

    /// Copy the outputs of a hit into `dest_dir` (each replaced whole),
    /// checking each is the file recorded. A damaged record is removed.
    pub fn restore(&self, entry: &Path, dest_dir: &Path) -> Result<Vec<String>> {
        let json = entry.join("entry.json");
        let record: Record = serde_json::from_slice(
            &std::fs::read(&json).with_context(|| format!("Reading {}", json.display()))?,
        )
        .with_context(|| format!("Parsing {}", json.display()))?;
        // All copied and checked first, then renamed into place: a failure
        // leaves `dest_dir` as it was (no temporary file ends up in a tree).
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        let copied = (|| -> Result<()> {
            for (name, output) in &record.outputs {
                let src = entry.join("out").join(name);
                let tmp = dest_dir.join(format!(".{name}.restoring"));
                staged.push((tmp.clone(), dest_dir.join(name)));
                if copy_hashing(&src, &tmp, output.mode)? != output.sha256 {
                    if let Err(e) = std::fs::remove_dir_all(entry) {
                        eprintln!("warning: removing {}: {e}", entry.display());
                    }
                    bail!(
                        "the cached {} is damaged (its checksum differs from the record); \
                         it was removed",
                        src.display()
                    );
                }
            }
            Ok(())
        })();
        if let Err(e) = copied {
            for (tmp, _) in &staged {
                if let Err(e) = std::fs::remove_file(tmp) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        eprintln!("warning: removing {}: {e}", tmp.display());
                    }
                }
            }
            return Err(e);
        }
        for (tmp, dest) in &staged {
            std::fs::rename(tmp, dest)
                .with_context(|| format!("Moving {} to {}", tmp.display(), dest.display()))?;
        }
        // Most recently used: kept longest.
        File::options()
            .append(true)
            .open(&json)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .with_context(|| format!("Touching {}", json.display()))?;
        Ok(record.outputs.into_keys().collect())
    }

    /// Record `outputs` (name, file) as made from `fingerprint`; drop the
    /// oldest records beyond [`KEPT_ENTRIES`]. Written to a temporary
    /// directory and renamed into place, so a record is whole or absent.
    pub fn store(&self, fingerprint: &Fingerprint, outputs: &[(String, PathBuf)]) -> Result<()> {
        let mut files = BTreeMap::new();
        for (p, d) in &fingerprint.files {
            let Some(s) = p.to_str() else {
                bail!(
                    "{} read {}, a path that is not UTF-8",
                    self.program,
                    p.display()
                );
            };
            files.insert(s.to_string(), d.clone());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("Creating {}", self.dir.display()))?;
        self.remove_stale_temporaries();
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&self.dir)
            .with_context(|| format!("Creating a directory in {}", self.dir.display()))?;
        let out_dir = tmp.path().join("out");
        std::fs::create_dir(&out_dir).with_context(|| format!("Creating {}", out_dir.display()))?;
        let mut recorded = BTreeMap::new();
        for (name, src) in outputs {
            let mode = std::fs::metadata(src)
                .with_context(|| format!("Querying {}", src.display()))?
                .mode()
                & 0o7777;
            let sha256 = copy_hashing(src, &out_dir.join(name), mode)?;
            recorded.insert(name.clone(), Output { sha256, mode });
        }
        let record = Record {
            format: FORMAT,
            inputs: fingerprint.inputs.clone(),
            shape: fingerprint.shape.clone(),
            files,
            outputs: recorded,
        };
        let json = serde_json::to_vec(&record).context("Serializing the record")?;
        std::fs::write(tmp.path().join("entry.json"), &json).context("Writing the record")?;
        let id = hex::encode(Sha256::digest(&json));
        let dest = self.dir.join(&id[..32]);
        if dest.exists() {
            return Ok(());
        }
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            if let Err(e2) = std::fs::remove_dir_all(&tmp) {
                eprintln!("warning: removing {}: {e2}", tmp.display());
            }
            return Err(e).with_context(|| format!("Moving the record to {}", dest.display()));
        }
        for (old, _) in self.records()?.into_iter().skip(KEPT_ENTRIES) {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("Removing the old record {}", old.display()))?;
        }
        Ok(())
    }

    /// Temporary directories a killed compose left, after an hour.
    fn remove_stale_temporaries(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old && e.file_name().as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    eprintln!("warning: removing {}: {err}", e.path().display());
                }
            }
        }
    }
}

/// Copy `src` to a new file `dest` with `mode`; the hex SHA-256 of the bytes.
fn copy_hashing(src: &Path, dest: &Path, mode: u32) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut input = File::open(src).with_context(|| format!("Opening {}", src.display()))?;
    let mut out = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(dest)
        .with_context(|| format!("Creating {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("Reading {}", src.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("Writing {}", dest.display()))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Nothing known ahead, a fresh memo each time (leaked: a test's worth).
    fn none() -> Checksums<'static> {
        Checksums {
            known: None,
            learned: Box::leak(Box::default()),
        }
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/dracut")).unwrap();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("scratch")).unwrap();
        std::fs::write(r.join("usr/lib/dracut/dracut-functions.sh"), "f").unwrap();
        std::fs::write(r.join("usr/lib/dracut/conf"), "read by dracut").unwrap();
        std::fs::write(r.join("usr/bin/tool"), "not read").unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        t
    }

    fn shape(r: &Path) -> String {
        list_tree(r, &[PathBuf::from("scratch")]).unwrap().shape
    }

    #[test]
    fn the_shape_sees_paths_types_modes_targets_and_emptiness_not_content() {
        let t = tree();
        let r = t.path();
        let l = list_tree(r, &[PathBuf::from("scratch")]).unwrap();
        let dirs: Vec<_> = l.dirs.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(dirs, ["", "usr", "usr/bin", "usr/lib", "usr/lib/dracut"]);
        let base = l.shape;

        std::fs::write(r.join("usr/bin/tool"), "other content, same emptiness").unwrap();
        std::fs::write(r.join("scratch/ignored"), "x").unwrap();
        assert_eq!(shape(r), base, "content and ignored paths are not shape");

        std::fs::write(r.join("usr/bin/tool"), "").unwrap();
        assert_ne!(shape(r), base, "emptiness is");
        std::fs::write(r.join("usr/bin/tool"), "x").unwrap();
        assert_eq!(shape(r), base);

        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(shape(r), base, "mode is");
        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(shape(r), base);

        std::fs::write(r.join("usr/bin/new"), "x").unwrap();
        assert_ne!(shape(r), base, "a new file is");
        std::fs::remove_file(r.join("usr/bin/new")).unwrap();
        assert_eq!(shape(r), base);

        std::fs::remove_file(r.join("bin")).unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("bin")).unwrap();
        assert_ne!(shape(r), base, "a symlink target is");
    }

    #[test]
    fn digests_take_content_owner_mode_and_mtimes_up_to_the_reference() {
        let t = tree();
        let r = t.path();
        let set_mtime = |p: &str, secs: u64| {
            std::fs::File::options()
                .append(true)
                .open(r.join(p))
                .unwrap()
                .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        };
        set_mtime("usr/lib/dracut/dracut-functions.sh", 1000);
        set_mtime("usr/lib/dracut/conf", 500);
        set_mtime("usr/bin/tool", 2000);
        let paths = [
            PathBuf::from("usr/lib/dracut/conf"),
            PathBuf::from("usr/bin/tool"),
            PathBuf::from("usr/gone"),
            PathBuf::from("usr/bin"),
        ];
        let d = file_digests(r, &paths, none(), dracut_mtimes(r)).unwrap();
        let conf = &d[&paths[0]];
        assert!(conf.ends_with("@500.000000000"), "{conf}");
        assert_eq!(conf.len(), 64 + "@500.000000000".len());
        assert!(d[&paths[1]].ends_with("@new"), "newer than the reference");
        let ignored = file_digests(r, &paths[..1], none(), Mtimes::Ignored).unwrap();
        assert_eq!(ignored[&paths[0]].len(), 64, "the checksum alone");
        assert_eq!(d[&paths[2]], "missing");
        assert!(d[&paths[3]].starts_with("type:40"), "{}", d[&paths[3]]);

        // A newer mtime that stays newer is the same digest; an older one is not.
        set_mtime("usr/bin/tool", 3000);
        assert_eq!(
            file_digests(r, &paths, none(), dracut_mtimes(r)).unwrap(),
            d
        );
        set_mtime("usr/lib/dracut/conf", 501);
        assert_ne!(
            file_digests(r, &paths, none(), dracut_mtimes(r)).unwrap()[&paths[0]],
            *conf
        );
        set_mtime("usr/lib/dracut/conf", 500);
        std::fs::write(r.join("usr/lib/dracut/conf"), "read by dracuT").unwrap();
        set_mtime("usr/lib/dracut/conf", 500);
        assert_ne!(
            file_digests(r, &paths, none(), dracut_mtimes(r)).unwrap()[&paths[0]],
            *conf
        );
    }

    #[test]
    fn known_checksums_are_taken_while_the_inode_is_untouched() {
        let t = tree();
        let r = t.path();
        let p = [PathBuf::from("usr/bin/tool")];
        let computed = file_digests(r, &p, none(), Mtimes::Exact).unwrap();
        let mut known = KnownContents::default();
        let meta = std::fs::metadata(r.join("usr/bin/tool")).unwrap();
        known.insert(&meta, "c".repeat(64));
        let learned = Mutex::default();
        let with_known = Checksums {
            known: Some(&known),
            learned: &learned,
        };
        let d = file_digests(r, &p, with_known, Mtimes::Exact).unwrap();
        assert!(d[&p[0]].starts_with(&"c".repeat(64)), "{d:?}");
        // Touched since: read again.
        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        crate::commit::known::wait_until_clock_past((0, 0));
        let meta2 = std::fs::metadata(r.join("usr/bin/tool")).unwrap();
        if meta2.ctime() != meta.ctime() || meta2.ctime_nsec() != meta.ctime_nsec() {
            assert_eq!(
                file_digests(r, &p, with_known, Mtimes::Exact).unwrap(),
                computed
            );
        }
    }

    fn fingerprint(r: &Path, inputs: &str) -> Fingerprint {
        let paths = [PathBuf::from("usr/lib/dracut/conf")];
        Fingerprint {
            inputs: inputs.into(),
            shape: shape(r),
            files: file_digests(r, &paths, none(), Mtimes::Exact).unwrap(),
        }
    }

    /// An empty initramfs cache (in the returned directory) and an image in
    /// the tree's scratch directory.
    fn image_cache(r: &Path) -> (tempfile::TempDir, RunCache, PathBuf) {
        let c = tempfile::tempdir().unwrap();
        let cache = RunCache::new(c.path(), "initramfs", "dracut");
        let img = r.join("scratch/initramfs.img");
        std::fs::write(&img, "IMAGE").unwrap();
        (c, cache, img)
    }

    fn outputs(img: &Path) -> Vec<(String, PathBuf)> {
        vec![("initramfs.img".to_string(), img.to_path_buf())]
    }

    #[test]
    fn a_stored_image_is_found_again_only_for_the_same_inputs() {
        let t = tree();
        let r = t.path();
        let (_c, cache, img) = image_cache(r);
        let miss = |l: Lookup| match l {
            Lookup::Miss(why) => why,
            Lookup::Hit { .. } => panic!("unexpected hit"),
        };
        let why = miss(
            cache
                .lookup(r, "in", &shape(r), none(), Mtimes::Exact)
                .unwrap(),
        );
        assert!(why.contains("dracut did not run before"), "{why}");

        cache.store(&fingerprint(r, "in"), &outputs(&img)).unwrap();

        let Lookup::Hit { entry, files } = cache
            .lookup(r, "in", &shape(r), none(), Mtimes::Exact)
            .unwrap()
        else {
            panic!("expected a hit");
        };
        assert_eq!(files, 1);
        let restored = tempfile::tempdir().unwrap();
        let out = restored.path();
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(cache.restore(&entry, out).unwrap(), ["initramfs.img"]);
        assert_eq!(std::fs::read(out.join("initramfs.img")).unwrap(), b"IMAGE");
        let mode = std::fs::metadata(out.join("initramfs.img")).unwrap().mode();
        assert_eq!(
            mode & 0o7777,
            0o644,
            "the mode recorded, not the source's now"
        );

        let why = miss(
            cache
                .lookup(r, "other", &shape(r), none(), Mtimes::Exact)
                .unwrap(),
        );
        assert!(why.contains("arguments or environment"), "{why}");
        std::fs::write(r.join("usr/bin/tool"), "unread content changes nothing").unwrap();
        assert!(matches!(
            cache
                .lookup(r, "in", &shape(r), none(), Mtimes::Exact)
                .unwrap(),
            Lookup::Hit { .. }
        ));
        std::fs::write(r.join("usr/bin/added"), "x").unwrap();
        let why = miss(
            cache
                .lookup(r, "in", &shape(r), none(), Mtimes::Exact)
                .unwrap(),
        );
        assert!(why.contains("list, type, mode"), "{why}");
        std::fs::remove_file(r.join("usr/bin/added")).unwrap();
        std::fs::write(r.join("usr/lib/dracut/conf"), "changed").unwrap();
        let why = miss(
            cache
                .lookup(r, "in", &shape(r), none(), Mtimes::Exact)
                .unwrap(),
        );
        assert!(
            why.contains("/usr/lib/dracut/conf, which dracut read, differs"),
            "{why}"
        );
    }

    #[test]
    fn a_damaged_output_is_refused_the_record_removed_and_nothing_replaced() {
        let t = tree();
        let r = t.path();
        let (_c, cache, img) = image_cache(r);
        let index = r.join("scratch/modules.dep");
        std::fs::write(&index, "INDEX").unwrap();
        let both = [
            ("modules.dep".to_string(), index.clone()),
            ("modules.dep.bin".to_string(), img.clone()),
        ];
        cache.store(&fingerprint(r, "in"), &both).unwrap();
        let Lookup::Hit { entry, .. } = cache
            .lookup(r, "in", &shape(r), none(), Mtimes::Exact)
            .unwrap()
        else {
            panic!("expected a hit");
        };
        std::fs::write(entry.join("out/modules.dep.bin"), "IMAGF").unwrap();
        let restored = tempfile::tempdir().unwrap();
        let out = restored.path();
        std::fs::write(out.join("modules.dep"), "OLD").unwrap();
        let e = cache.restore(&entry, out).unwrap_err();
        assert!(format!("{e:#}").contains("is damaged"), "{e:#}");
        let left: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["modules.dep"], "no temporary file left behind");
        assert_eq!(
            std::fs::read(out.join("modules.dep")).unwrap(),
            b"OLD",
            "the good output was not put in place alone"
        );
        assert!(!entry.exists());
    }

    #[test]
    fn only_the_newest_records_are_kept() {
        let t = tree();
        let r = t.path();
        let (_c, cache, img) = image_cache(r);
        for i in 0..KEPT_ENTRIES + 2 {
            cache
                .store(&fingerprint(r, &format!("in{i}")), &outputs(&img))
                .unwrap();
            // Distinct mtimes for the order.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(cache.records().unwrap().len(), KEPT_ENTRIES);
        let newest = format!("in{}", KEPT_ENTRIES + 1);
        assert!(matches!(
            cache
                .lookup(r, &newest, &shape(r), none(), Mtimes::Exact)
                .unwrap(),
            Lookup::Hit { .. }
        ));
        assert!(matches!(
            cache
                .lookup(r, "in0", &shape(r), none(), Mtimes::Exact)
                .unwrap(),
            Lookup::Miss(_)
        ));
    }
}

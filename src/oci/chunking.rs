//! Map every content object of a commit to the package that owns it, for
//! ostree-ext's package-aware layer chunking.
//!
//! ostree-ext panics when one regular-file or symlink object of the commit has no
//! owner, so the mapping here is total by construction: every file entry found by
//! walking the commit's dirtrees is assigned, in this order, to
//! 1. the initramfs component (`/usr/lib/modules/*/initramfs*`, `/usr/lib/ostree-boot/initramfs*`, `/boot/initramfs*`),
//! 2. the package whose rpmdb entry lists the path (rpm paths are resolved through the
//!    commit's own symlinks, and `/etc` is found as `/usr/etc`),
//! 3. the catch-all [`UNPACKAGED_ID`] component.
//!
//! The commit is walked once ([`walk_commit`], dirtrees read on several threads): the
//! [`CommitTree`] serves the mapping and, with each object's paths in ostree-ext's
//! order, the image writer. The object sizes ([`object_sizes`], [`sized_meta`]) and
//! the rpmdb ([`extract_rpmdb`], through a [`LazyTree`] that does not wait for the
//! walk) are read meanwhile by the caller's threads.
//!
//! This module does not write images; it only produces the
//! [`ostree_ext::objectsource::ObjectMeta`] (and its sized form) that `encapsulate`
//! and `chunkwriter` consume.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::gio::prelude::InputStreamExtManual;
use ostree_ext::chunking::{ObjectMetaSized, ObjectSourceMetaSized};
use ostree_ext::objectsource::{ObjectMeta, ObjectSourceMeta};

use super::rpmdb::{self, RpmDbContents};
#[cfg(doc)]
use crate::commit::tree_walk::walk_commit;
use crate::commit::tree_walk::{root_dirtree, CommitTree, DirTreeV, IO_THREADS};

/// Component holding every object no package owns (the name rpm-ostree uses, so
/// `--previous-build-manifest` from rpm-ostree images keeps working).
pub const UNPACKAGED_ID: &str = "rpmostree-unpackaged-content";
/// Component holding the initramfs.
pub const INITRAMFS_ID: &str = "initramfs";

/// The result of mapping: one component per package (plus the catch-alls) and the owner of every object.
#[derive(Debug, Default)]
pub struct ContentMapping {
    pub components: Vec<Component>,
    /// Content checksum -> component identifier, sorted by checksum.
    pub owners: BTreeMap<String, String>,
}

/// One chunking component (a package, the initramfs, or the unpackaged rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Unique id: the package NEVRA (the first one, for multilib packages sharing a name).
    pub identifier: String,
    /// Unversioned name: what appears in the `ostree.components` layer annotation.
    pub name: String,
    pub srcid: String,
    pub change_time_offset: u32,
    pub change_frequency: u32,
}

impl ContentMapping {
    /// Convert into ostree-ext's type (only components that own objects are kept).
    pub fn to_object_meta(&self) -> ObjectMeta {
        let mut ids: HashMap<&str, Rc<str>> = HashMap::new();
        let mut set = HashSet::new();
        for c in &self.components {
            let id: Rc<str> = Rc::from(c.identifier.as_str());
            ids.insert(c.identifier.as_str(), Rc::clone(&id));
            set.insert(ObjectSourceMeta {
                identifier: id,
                name: Rc::from(c.name.as_str()),
                srcid: Rc::from(c.srcid.as_str()),
                change_time_offset: c.change_time_offset,
                change_frequency: c.change_frequency,
            });
        }
        let mut map = indexmap::IndexMap::new();
        for (csum, owner) in &self.owners {
            let id = ids
                .get(owner.as_str())
                .cloned()
                .unwrap_or_else(|| Rc::from(owner.as_str()));
            map.insert(csum.clone(), id);
        }
        ObjectMeta { set, map }
    }

    /// Objects per component name (for logs and tests).
    pub fn objects_per_component(&self) -> BTreeMap<String, usize> {
        let names: HashMap<&str, &str> = self
            .components
            .iter()
            .map(|c| (c.identifier.as_str(), c.name.as_str()))
            .collect();
        let mut out = BTreeMap::new();
        for owner in self.owners.values() {
            let name = names.get(owner.as_str()).copied().unwrap_or(owner);
            *out.entry(name.to_string()).or_insert(0) += 1;
        }
        out
    }
}

/// The size of every content object of `tree` (what ostree reports for it: the
/// content length of a regular file), read on several threads.
pub fn object_sizes(repo_path: &Path, tree: &CommitTree) -> Result<HashMap<String, u64>> {
    let csums: Vec<&str> = tree
        .files
        .values()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sizes = crate::threads::map_chunks(&csums, IO_THREADS, "an object size reader", |part| {
        // libostree repo objects are not thread-safe: one per thread.
        let repo = ostree::Repo::new_for_path(repo_path);
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("Opening {}", repo_path.display()))?;
        part.iter()
            .map(|c| {
                let (info, _) = repo
                    .query_file(c, gio::Cancellable::NONE)
                    .with_context(|| format!("Querying content object {c}"))?;
                let size = u64::try_from(info.size())
                    .with_context(|| format!("Content object {c}: negative size"))?;
                Ok((c.to_string(), size))
            })
            .collect()
    })?;
    Ok(sizes.into_iter().collect())
}

/// ostree-ext's `ObjectMetaSized::compute_sizes`, from sizes already read (see
/// [`object_sizes`]): the total size per component, largest first (ties in
/// identifier order), only components that own objects.
pub fn sized_meta(meta: ObjectMeta, sizes: &HashMap<String, u64>) -> Result<ObjectMetaSized> {
    let ObjectMeta { map, mut set } = meta;
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (csum, id) in &map {
        let size = sizes
            .get(csum)
            .ok_or_else(|| anyhow!("internal error: no size for content object {csum}"))?;
        *totals.entry(id).or_default() += size;
    }
    let mut out = totals
        .into_iter()
        .map(|(id, size)| {
            set.take(id)
                .map(|meta| ObjectSourceMetaSized { meta, size })
                .ok_or_else(|| anyhow!("internal error: component {id} is not in the content set"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Stable: equal sizes stay in identifier order, as in ostree-ext.
    out.sort_by_key(|c| std::cmp::Reverse(c.size));
    Ok(ObjectMetaSized { map, sizes: out })
}

/// The symlink target of a content object, or `None` for a regular file.
pub fn symlink_target(repo: &ostree::Repo, checksum: &str) -> Result<Option<String>> {
    let (info, _) = repo
        .query_file(checksum, gio::Cancellable::NONE)
        .with_context(|| format!("Querying content object {checksum}"))?;
    if info.file_type() == gio::FileType::SymbolicLink {
        Ok(info
            .symlink_target()
            .map(|t| t.to_string_lossy().into_owned()))
    } else {
        Ok(None)
    }
}

/// What path resolution needs to know about one path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    /// A regular file or symlink, with its content checksum.
    File(String),
    Missing,
}

/// A commit's tree as [`resolve_path`] sees it: the walked [`CommitTree`], or a
/// [`LazyTree`] that reads only the dirtrees on the paths asked about.
pub trait TreeView {
    /// What `path` (absolute, normalized: `/usr/bin`) is.
    fn kind(&mut self, path: &str) -> Result<PathKind>;
}

impl TreeView for &CommitTree {
    fn kind(&mut self, path: &str) -> Result<PathKind> {
        Ok(if self.dirs.contains(path) {
            PathKind::Dir
        } else if let Some(c) = self.files.get(path) {
            PathKind::File(c.clone())
        } else {
            PathKind::Missing
        })
    }
}

/// Resolve an absolute path as the commit would see it: follow symlinks in the
/// directory part (not the last component), and find `/etc` as `/usr/etc`.
/// Returns the path of the file entry, or `None` if the path is not a file in the tree.
pub fn resolve_in_tree(
    tree: &CommitTree,
    path: &str,
    symlink: &mut dyn FnMut(&str) -> Result<Option<String>>,
) -> Result<Option<String>> {
    resolve_path(&mut &*tree, path, symlink)
}

/// [`resolve_in_tree`] on any [`TreeView`].
pub fn resolve_path(
    tree: &mut dyn TreeView,
    path: &str,
    symlink: &mut dyn FnMut(&str) -> Result<Option<String>>,
) -> Result<Option<String>> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .rev()
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        let mut candidate = join(&cur, &comp);
        if cur.is_empty()
            && comp == "etc"
            && tree.kind("/etc")? != PathKind::Dir
            && tree.kind("/usr/etc")? == PathKind::Dir
        {
            cur.push("usr".into());
            candidate = "/usr/etc".into();
        }
        let last = pending.is_empty();
        let csum = match tree.kind(&candidate)? {
            PathKind::Dir => {
                cur.push(comp);
                if last {
                    return Ok(None);
                }
                continue;
            }
            PathKind::Missing => return Ok(None),
            PathKind::File(csum) => csum,
        };
        if last {
            return Ok(Some(candidate));
        }
        // A file in the middle of the path: follow it if it is a symlink.
        let Some(target) = symlink(&csum)? else {
            return Ok(None);
        };
        hops += 1;
        if hops > 40 {
            return Ok(None);
        }
        if target.starts_with('/') {
            cur.clear();
        }
        for c in target
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
        {
            pending.push(c.to_string());
        }
    }
    Ok(None)
}

/// A commit's tree read on demand: only the dirtrees on the paths looked up, for the
/// few lookups that should not wait for the whole walk (finding the rpmdb).
pub struct LazyTree<'r> {
    repo: &'r ostree::Repo,
    root: String,
    /// Directory path -> its dirtree checksum (`None`: not a directory).
    dir_trees: HashMap<String, Option<String>>,
    /// Dirtree checksum -> parsed object.
    loaded: HashMap<String, DirTreeV>,
}

impl<'r> LazyTree<'r> {
    pub fn new(repo: &'r ostree::Repo, commit: &str) -> Result<Self> {
        Ok(LazyTree {
            repo,
            root: root_dirtree(repo, commit)?,
            dir_trees: HashMap::new(),
            loaded: HashMap::new(),
        })
    }

    fn load(&mut self, csum: &str) -> Result<&DirTreeV> {
        if !self.loaded.contains_key(csum) {
            let v = self
                .repo
                .load_variant(ostree::ObjectType::DirTree, csum)
                .with_context(|| format!("Loading dirtree {csum}"))?;
            let parsed = v
                .get::<DirTreeV>()
                .ok_or_else(|| anyhow!("dirtree {csum} has an unexpected type"))?;
            self.loaded.insert(csum.to_string(), parsed);
        }
        self.loaded
            .get(csum)
            .ok_or_else(|| anyhow!("internal error: dirtree {csum} vanished"))
    }

    /// The dirtree of directory `dir` (`/` or `/usr/share`), `None` if it is not one.
    fn dirtree_of(&mut self, dir: &str) -> Result<Option<String>> {
        if dir.is_empty() || dir == "/" {
            return Ok(Some(self.root.clone()));
        }
        if let Some(t) = self.dir_trees.get(dir) {
            return Ok(t.clone());
        }
        let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
        let t = match self.dirtree_of(parent)? {
            None => None,
            Some(p) => self
                .load(&p)?
                .1
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, t, _)| hex::encode(t)),
        };
        self.dir_trees.insert(dir.to_string(), t.clone());
        Ok(t)
    }

    /// Every file under directory `dir`, at any depth: (path, content checksum).
    pub fn files_under(&mut self, dir: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut todo = vec![dir.trim_end_matches('/').to_string()];
        while let Some(d) = todo.pop() {
            let Some(t) = self.dirtree_of(&d)? else {
                continue;
            };
            let (files, dirs) = self.load(&t)?;
            for (name, csum) in files {
                out.push((format!("{d}/{name}"), hex::encode(csum)));
            }
            for (name, _, _) in dirs {
                todo.push(format!("{d}/{name}"));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl TreeView for LazyTree<'_> {
    fn kind(&mut self, path: &str) -> Result<PathKind> {
        if path == "/" {
            return Ok(PathKind::Dir);
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let Some(t) = self.dirtree_of(parent)? else {
            return Ok(PathKind::Missing);
        };
        let (files, dirs) = self.load(&t)?;
        if let Some((_, c)) = files.iter().find(|(n, _)| n == name) {
            return Ok(PathKind::File(hex::encode(c)));
        }
        if dirs.iter().any(|(n, _, _)| n == name) {
            return Ok(PathKind::Dir);
        }
        Ok(PathKind::Missing)
    }
}

fn join(cur: &[String], comp: &str) -> String {
    let mut s = String::new();
    for c in cur {
        s.push('/');
        s.push_str(c);
    }
    s.push('/');
    s.push_str(comp);
    s
}

fn is_initramfs(path: &str) -> bool {
    let (dir, file) = match path.rsplit_once('/') {
        Some(x) => x,
        None => return false,
    };
    if !file.starts_with("initramfs") {
        return false;
    }
    dir == "/boot"
        || dir == "/usr/lib/ostree-boot"
        || dir
            .strip_prefix("/usr/lib/modules/")
            .is_some_and(|kver| !kver.is_empty() && !kver.contains('/'))
}

/// Build the total mapping from a walked tree and the rpmdb contents.
pub fn build_mapping(
    tree: &CommitTree,
    rpmdb: &RpmDbContents,
    symlink: &mut dyn FnMut(&str) -> Result<Option<String>>,
) -> Result<ContentMapping> {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();

    // 1. initramfs
    let mut have_initramfs = false;
    for (path, csum) in &tree.files {
        if is_initramfs(path) {
            owners
                .entry(csum.clone())
                .or_insert_with(|| INITRAMFS_ID.to_string());
            have_initramfs = true;
        }
    }

    // 2. packages: one component per package name; multilib NEVRAs sharing a name merge
    //    into the first NEVRA (ostree-ext matches prior builds by name and needs names unique).
    let mut id_for_nevra: BTreeMap<&str, &str> = BTreeMap::new();
    let mut first_by_name: BTreeMap<&str, &str> = BTreeMap::new();
    for (nevra, pkg) in &rpmdb.packages {
        let id = *first_by_name
            .entry(pkg.name.as_str())
            .or_insert(nevra.as_str());
        id_for_nevra.insert(nevra.as_str(), id);
    }
    let mut files: Vec<&rpmdb::RpmFile> = rpmdb.files.iter().collect();
    files.sort_by(|a, b| (&a.nevra, &a.path).cmp(&(&b.nevra, &b.path)));
    for f in files {
        let Some(id) = id_for_nevra.get(f.nevra.as_str()) else {
            continue;
        };
        if let Some(p) = resolve_in_tree(tree, &f.path, symlink)? {
            if let Some(csum) = tree.files.get(&p) {
                owners.entry(csum.clone()).or_insert_with(|| id.to_string());
            }
        }
    }

    // 3. everything else
    let mut have_unpackaged = false;
    for csum in tree.files.values() {
        if !owners.contains_key(csum) {
            owners.insert(csum.clone(), UNPACKAGED_ID.to_string());
            have_unpackaged = true;
        }
    }

    // Components, only those that own something.
    let used: BTreeSet<&str> = owners.values().map(String::as_str).collect();
    let newest = rpmdb
        .packages
        .values()
        .map(|p| p.buildtime)
        .max()
        .unwrap_or(0);
    let oldest = rpmdb
        .packages
        .values()
        .map(|p| p.buildtime)
        .min()
        .unwrap_or(0);
    let mut components = Vec::new();
    for (name, id) in &first_by_name {
        if !used.contains(id) {
            continue;
        }
        let pkg = &rpmdb.packages[*id];
        // Changes in the year before the newest build in the image (not "now": the
        // result must not depend on the day the image is built).
        let year_ago = newest.saturating_sub(365 * 24 * 3600);
        let freq = pkg
            .changelog_times
            .iter()
            .filter(|t| **t >= year_ago)
            .count();
        components.push(Component {
            identifier: id.to_string(),
            name: name.to_string(),
            srcid: pkg.srcrpm.clone(),
            change_time_offset: u32::try_from((pkg.buildtime.saturating_sub(oldest)) / 3600)
                .unwrap_or(u32::MAX - 1),
            // u32::MAX is reserved for the catch-all components.
            change_frequency: u32::try_from(freq)
                .unwrap_or(u32::MAX - 1)
                .min(u32::MAX - 1),
        });
    }
    for (present, id) in [
        (have_initramfs, INITRAMFS_ID),
        (have_unpackaged, UNPACKAGED_ID),
    ] {
        if present {
            components.push(Component {
                identifier: id.into(),
                name: id.into(),
                srcid: id.into(),
                change_time_offset: 0,
                change_frequency: u32::MAX,
            });
        }
    }
    for c in &components {
        if c.name.contains(',') {
            anyhow::bail!(
                "Package name '{}' contains ',', which OCI layer annotations cannot carry",
                c.name
            );
        }
    }
    let mapping = ContentMapping { components, owners };
    check_total(tree, &mapping)?;
    Ok(mapping)
}

/// The invariant ostree-ext relies on (it panics otherwise): every file object has an
/// owner, and every owner is a known component.
pub fn check_total(tree: &CommitTree, mapping: &ContentMapping) -> Result<()> {
    let ids: HashSet<&str> = mapping
        .components
        .iter()
        .map(|c| c.identifier.as_str())
        .collect();
    for (path, csum) in &tree.files {
        match mapping.owners.get(csum) {
            None => anyhow::bail!("Internal error: no chunking owner for {path} ({csum})"),
            Some(o) if !ids.contains(o.as_str()) => {
                anyhow::bail!("Internal error: owner {o} of {path} is not a component")
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Copy the rpmdb directory of `commit` into `dest` (as `dest/<dbpath>`) and return the
/// dbpath, or `None` when the commit has no rpmdb. Reads only the dirtrees on the way
/// (it does not wait for a walk of the whole tree).
pub fn extract_rpmdb(repo: &ostree::Repo, commit: &str, dest: &Path) -> Result<Option<String>> {
    let mut tree = LazyTree::new(repo, commit)?;
    let mut symlink = |c: &str| symlink_target(repo, c);
    let mut dbdir = None;
    for cand in rpmdb::RPMDB_CANDIDATES {
        // Resolve the directory through symlinks by resolving a file inside it.
        for f in ["rpmdb.sqlite", "Packages", "Packages.db"] {
            if let Some(p) = resolve_path(&mut tree, &format!("/{cand}/{f}"), &mut symlink)? {
                if let Some((d, _)) = p.rsplit_once('/') {
                    dbdir = Some(d.to_string());
                }
                break;
            }
        }
        if dbdir.is_some() {
            break;
        }
    }
    let Some(dbdir) = dbdir else {
        return Ok(None);
    };
    for (path, csum) in tree.files_under(&dbdir)? {
        let (stream, info, _) = repo
            .load_file(&csum, gio::Cancellable::NONE)
            .with_context(|| format!("Reading {path} from the commit"))?;
        let Some(stream) = stream else { continue };
        if info.file_type() != gio::FileType::Regular {
            continue;
        }
        let out = dest.join(path.trim_start_matches('/'));
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("Creating {}", parent.display()))?;
        }
        let mut f =
            std::fs::File::create(&out).with_context(|| format!("Creating {}", out.display()))?;
        let mut r = stream.into_read();
        std::io::copy(&mut r, &mut f).with_context(|| format!("Writing {}", out.display()))?;
        f.flush()?;
    }
    Ok(Some(dbdir.trim_start_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::rpmdb::{RpmFile, RpmPackage};
    use super::*;

    fn tree() -> CommitTree {
        let mut t = CommitTree::default();
        for d in [
            "/",
            "/usr",
            "/usr/bin",
            "/usr/etc",
            "/usr/lib",
            "/usr/lib/modules",
            "/usr/lib/modules/6.1",
        ] {
            t.dirs.insert(d.into());
        }
        for (p, c) in [
            ("/usr/bin/a", "c1"),
            ("/usr/bin/b", "c2"),
            ("/usr/etc/a.conf", "c3"),
            ("/usr/lib/modules/6.1/initramfs.img", "c4"),
            ("/usr/lib/modules/6.1/vmlinuz", "c5"),
            ("/usr/lib/stray", "c6"),
            ("/bin", "l1"),
            ("/usr/bin/dup", "c1"),
        ] {
            t.files.insert(p.into(), c.into());
        }
        t
    }

    fn pkg(nevra: &str, name: &str, bt: u64) -> RpmPackage {
        RpmPackage {
            name: name.into(),
            nevra: nevra.into(),
            arch: "x86_64".into(),
            srcrpm: format!("{name}.src.rpm"),
            buildtime: bt,
            changelog_times: vec![bt, bt - 10, 1],
        }
    }

    fn links(c: &str) -> Result<Option<String>> {
        Ok((c == "l1").then(|| "usr/bin".to_string()))
    }

    #[test]
    fn resolves_symlinks_and_etc() {
        let t = tree();
        let mut s = links;
        assert_eq!(
            resolve_in_tree(&t, "/bin/a", &mut s).unwrap().as_deref(),
            Some("/usr/bin/a")
        );
        assert_eq!(
            resolve_in_tree(&t, "/etc/a.conf", &mut s)
                .unwrap()
                .as_deref(),
            Some("/usr/etc/a.conf")
        );
        assert_eq!(
            resolve_in_tree(&t, "/bin", &mut s).unwrap().as_deref(),
            Some("/bin")
        );
        assert_eq!(resolve_in_tree(&t, "/usr/bin", &mut s).unwrap(), None);
        assert_eq!(resolve_in_tree(&t, "/nope/x", &mut s).unwrap(), None);
        assert_eq!(
            resolve_in_tree(&t, "/usr/bin/../lib/stray", &mut s)
                .unwrap()
                .as_deref(),
            Some("/usr/lib/stray")
        );
    }

    #[test]
    fn mapping_is_total_and_prefers_initramfs() {
        let t = tree();
        let mut db = RpmDbContents::default();
        db.packages.insert(
            "a-1-1.x86_64".into(),
            pkg("a-1-1.x86_64", "a", 1_700_000_000),
        );
        db.packages
            .insert("a-1-1.i686".into(), pkg("a-1-1.i686", "a", 1_700_000_000));
        db.packages.insert(
            "kernel-6.1-1.x86_64".into(),
            pkg("kernel-6.1-1.x86_64", "kernel", 1_700_360_000),
        );
        db.packages.insert(
            "empty-1-1.noarch".into(),
            pkg("empty-1-1.noarch", "empty", 1_700_000_000),
        );
        for (p, n) in [
            ("/bin/a", "a-1-1.x86_64"),
            ("/usr/bin/b", "a-1-1.i686"),
            ("/etc/a.conf", "a-1-1.x86_64"),
            ("/usr/lib/modules/6.1/vmlinuz", "kernel-6.1-1.x86_64"),
            ("/usr/lib/modules/6.1/initramfs.img", "kernel-6.1-1.x86_64"),
        ] {
            db.files.push(RpmFile {
                path: p.into(),
                nevra: n.into(),
            });
        }
        let m = build_mapping(&t, &db, &mut links).unwrap();
        let names: Vec<&str> = m.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["a", "kernel", INITRAMFS_ID, UNPACKAGED_ID]);
        // multilib merged into the first NEVRA (sorted): a-1-1.i686
        assert_eq!(m.owners["c1"], "a-1-1.i686");
        assert_eq!(m.owners["c2"], "a-1-1.i686");
        assert_eq!(m.owners["c4"], INITRAMFS_ID);
        assert_eq!(m.owners["c5"], "kernel-6.1-1.x86_64");
        assert_eq!(m.owners["c6"], UNPACKAGED_ID);
        assert_eq!(m.owners["l1"], UNPACKAGED_ID);
        let kernel = &m.components[1];
        assert_eq!(kernel.change_time_offset, 100);
        assert_eq!(kernel.change_frequency, 2);
        assert_eq!(m.components[3].change_frequency, u32::MAX);
        let meta = m.to_object_meta();
        assert_eq!(meta.map.len(), 7);
        assert_eq!(meta.set.len(), 4);
        assert_eq!(m.objects_per_component()["a"], 3);
    }

    #[test]
    fn no_rpmdb_means_everything_unpackaged() {
        let t = tree();
        let m = build_mapping(&t, &RpmDbContents::default(), &mut links).unwrap();
        assert_eq!(m.components.len(), 2);
        assert!(m
            .owners
            .values()
            .all(|o| o == UNPACKAGED_ID || o == INITRAMFS_ID));
    }
}

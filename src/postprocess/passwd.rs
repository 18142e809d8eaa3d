//! passwd/group handling for a composed tree (§4.3a, §4.7 step 3, §4.8).
//!
//! What it is for:
//! - injecting the reference passwd/group data into the root before packages
//!   are installed, so RPM `useradd` calls reuse the same ids
//!   ([`prepare_passwd_from_files`], [`prepare_passwd_from_previous`]);
//! - the nss-altfiles split after installation: root entries stay in
//!   `usr/etc/{passwd,group}`, everything else goes to `usr/lib/{passwd,group}`
//!   ([`split_passwd_group`]); and blanking the `lstchg` field of locked shadow
//!   entries ([`normalize_etc_shadow`]);
//! - the `check-passwd` / `check-groups` validation before commit
//!   ([`check_passwd_group`]).
//!
//! What it is not for: reading treefiles or ostree commits. Callers hand in
//! plain file contents and ids; the lead maps treefile keys onto the option
//! structs here. Parsing is pure (`parse_*`), the rest does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::fs::{Dir, MetadataExt, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;

/// Mode of `passwd` and `group` files.
const PWGRP_MODE: u32 = 0o644;
/// Mode of the `shadow` and `gshadow` files we write.
const SHADOW_MODE: u32 = 0o000;

/// One line of a `passwd` file (see passwd(5)). The original line is kept so
/// that rewriting a file never changes an entry's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    line: String,
}

/// One line of a `group` file (see group(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    line: String,
}

impl PasswdEntry {
    /// The entry as it appeared in its file, without the newline.
    pub fn line(&self) -> &str {
        &self.line
    }
}

impl GroupEntry {
    /// The entry as it appeared in its file, without the newline.
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// Lines that carry no entry: empty lines and `#` comments (tolerated, as
/// glibc's files backend does).
fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

fn parse_id(field: &str, what: &str, lineno: usize, line: &str) -> Result<u32> {
    field
        .parse::<u32>()
        .with_context(|| format!("line {lineno}: invalid {what} '{field}' in '{line}'"))
}

/// Parse the content of a `passwd` file. `origin` names the file in errors.
pub fn parse_passwd(content: &str, origin: &str) -> Result<Vec<PasswdEntry>> {
    let mut out = Vec::new();
    for (idx, line) in content.lines().enumerate() {
        if is_blank_or_comment(line) {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() != 7 {
            bail!(
                "{origin}: line {}: expected 7 ':'-separated fields, found {}: '{line}'",
                idx + 1,
                fields.len()
            );
        }
        let uid = parse_id(fields[2], "uid", idx + 1, line).with_context(|| origin.to_string())?;
        let gid = parse_id(fields[3], "gid", idx + 1, line).with_context(|| origin.to_string())?;
        out.push(PasswdEntry {
            name: fields[0].to_string(),
            uid,
            gid,
            line: line.to_string(),
        });
    }
    Ok(out)
}

/// Parse the content of a `group` file. `origin` names the file in errors.
pub fn parse_group(content: &str, origin: &str) -> Result<Vec<GroupEntry>> {
    let mut out = Vec::new();
    for (idx, line) in content.lines().enumerate() {
        if is_blank_or_comment(line) {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() != 4 {
            bail!(
                "{origin}: line {}: expected 4 ':'-separated fields, found {}: '{line}'",
                idx + 1,
                fields.len()
            );
        }
        let gid = parse_id(fields[2], "gid", idx + 1, line).with_context(|| origin.to_string())?;
        out.push(GroupEntry {
            name: fields[0].to_string(),
            gid,
            line: line.to_string(),
        });
    }
    Ok(out)
}

/// Render lines as file content (one line each, newline-terminated).
fn render<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The result of splitting a `passwd` or `group` file for nss-altfiles.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitContent {
    /// What stays in `usr/etc/…`.
    pub etc: String,
    /// What is appended to `usr/lib/…`.
    pub usrlib: String,
}

/// Split passwd content: uid 0 entries stay in /etc, all others go to /usr/lib.
/// Names already present in `existing_usrlib` are not appended again.
pub fn split_passwd(content: &str, existing_usrlib: &str) -> Result<SplitContent> {
    let entries = parse_passwd(content, "usr/etc/passwd")?;
    let existing: HashSet<String> = parse_passwd(existing_usrlib, "usr/lib/passwd")?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let (roots, others): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.uid == 0);
    Ok(SplitContent {
        etc: render(roots.iter().map(|e| e.line())),
        usrlib: render(
            others
                .iter()
                .filter(|e| !existing.contains(&e.name))
                .map(|e| e.line()),
        ),
    })
}

/// Split group content: gid 0 entries and `etc_group_members` stay in /etc;
/// every non-root group goes to /usr/lib (so the preserved ones are in both).
pub fn split_group(
    content: &str,
    existing_usrlib: &str,
    etc_group_members: &BTreeSet<String>,
) -> Result<SplitContent> {
    let entries = parse_group(content, "usr/etc/group")?;
    let existing: HashSet<String> = parse_group(existing_usrlib, "usr/lib/group")?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let mut etc = Vec::new();
    let mut usrlib = Vec::new();
    for e in &entries {
        if e.gid == 0 {
            etc.push(e.line());
            continue;
        }
        if etc_group_members.contains(&e.name) {
            etc.push(e.line());
        }
        if !existing.contains(&e.name) {
            usrlib.push(e.line());
        }
    }
    Ok(SplitContent {
        etc: render(etc),
        usrlib: render(usrlib),
    })
}

/// `a` followed by `b`, with a newline between them if `a` lacks one.
fn concat_lines(a: &str, b: &str) -> String {
    let mut s = a.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(b);
    s
}

fn read_optional_string(root: &Dir, path: &str) -> Result<Option<String>> {
    root.read_to_string_optional(path)
        .with_context(|| format!("Reading {path}"))
}

fn write_with_mode(root: &Dir, path: &str, content: &str, mode: u32) -> Result<()> {
    root.atomic_write_with_perms(path, content, Permissions::from_mode(mode))
        .with_context(|| format!("Writing {path}"))
}

/// Options for [`split_passwd_group`].
#[derive(Debug, Clone, Default)]
pub struct SplitOptions {
    /// Treefile `etc-group-members`: groups also kept in `usr/etc/group`.
    pub etc_group_members: BTreeSet<String>,
}

/// §4.7 step 3: move every non-root passwd/group entry from `usr/etc` to
/// `usr/lib` (appending), keep root (and `etc-group-members`) in `usr/etc`.
/// All four files end up mode 0644. Missing `usr/etc/passwd` or `usr/etc/group`
/// is skipped (a root without `setup`). Shadow files are not touched.
pub fn split_passwd_group(root: &Dir, opts: &SplitOptions) -> Result<()> {
    if let Some(etc) = read_optional_string(root, "usr/etc/passwd")? {
        let lib = read_optional_string(root, "usr/lib/passwd")?.unwrap_or_default();
        let split = split_passwd(&etc, &lib)?;
        write_with_mode(
            root,
            "usr/lib/passwd",
            &concat_lines(&lib, &split.usrlib),
            PWGRP_MODE,
        )?;
        write_with_mode(root, "usr/etc/passwd", &split.etc, PWGRP_MODE)?;
    } else {
        eprintln!("No usr/etc/passwd in the tree; skipping the passwd split");
    }
    if let Some(etc) = read_optional_string(root, "usr/etc/group")? {
        let lib = read_optional_string(root, "usr/lib/group")?.unwrap_or_default();
        let split = split_group(&etc, &lib, &opts.etc_group_members)?;
        write_with_mode(
            root,
            "usr/lib/group",
            &concat_lines(&lib, &split.usrlib),
            PWGRP_MODE,
        )?;
        write_with_mode(root, "usr/etc/group", &split.etc, PWGRP_MODE)?;
    } else {
        eprintln!("No usr/etc/group in the tree; skipping the group split");
    }
    Ok(())
}

/// Blank the `lstchg` field (3rd) of shadow entries whose password starts
/// with `!` or `*` (locked accounts): it holds the day of the compose, which
/// would make every compose differ. Pure.
pub fn normalize_shadow_content(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    for line in content.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 3 && (fields[1].starts_with('!') || fields[1].starts_with('*')) {
            fields[2] = "";
            out.push_str(&fields.join(":"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Apply [`normalize_shadow_content`] to `usr/etc/shadow`, keeping its mode.
pub fn normalize_etc_shadow(root: &Dir) -> Result<()> {
    let path = "usr/etc/shadow";
    let Some(meta) = root
        .symlink_metadata_optional(path)
        .with_context(|| format!("Querying {path}"))?
    else {
        return Ok(());
    };
    if !meta.is_file() {
        return Ok(());
    }
    let content = root
        .read_to_string(path)
        .with_context(|| format!("Reading {path}"))?;
    let normalized = normalize_shadow_content(&content);
    if normalized != content {
        write_with_mode(root, path, &normalized, meta.mode() & 0o7777)?;
    }
    Ok(())
}

/// Where injected passwd data goes. With dnf installing into a real root this
/// is `etc` (before the §4.4 `etc -> usr/etc` move); rpm-ostree's unified core
/// uses `usr/etc`.
#[derive(Debug, Clone)]
pub struct InjectOptions {
    /// Directory relative to the root, e.g. `etc` or `usr/etc`.
    pub etc_dir: PathBuf,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            etc_dir: PathBuf::from("etc"),
        }
    }
}

/// Contents of the treefile's `check-passwd: {type: file}` and
/// `check-groups: {type: file}` files.
#[derive(Debug, Clone)]
pub struct PasswdFiles<'a> {
    pub passwd: &'a str,
    pub group: &'a str,
}

fn ensure_etc_dir(root: &Dir, etc_dir: &Path) -> Result<()> {
    root.create_dir_all(etc_dir)
        .with_context(|| format!("Creating {}", etc_dir.display()))
}

fn join(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Dedupe entries by name (first wins), returning the kept lines.
fn dedupe_passwd(entries: &[PasswdEntry], seen: &mut HashSet<String>) -> Vec<String> {
    entries
        .iter()
        .filter(|e| seen.insert(e.name.clone()))
        .map(|e| e.line.clone())
        .collect()
}

fn dedupe_group(entries: &[GroupEntry], seen: &mut HashSet<String>) -> Vec<String> {
    entries
        .iter()
        .filter(|e| seen.insert(e.name.clone()))
        .map(|e| e.line.clone())
        .collect()
}

/// §4.3a, `check-passwd`/`check-groups` of type `file`: write `passwd` and
/// `group` (deduplicated by name, 0644) plus matching `shadow`
/// (`name:*::0:99999:7:::`) and `gshadow` (`name:::`) files (mode 0000) into
/// the etc dir, before any package is installed.
pub fn prepare_passwd_from_files(
    root: &Dir,
    files: &PasswdFiles,
    opts: &InjectOptions,
) -> Result<()> {
    let users = parse_passwd(files.passwd, "check-passwd file")?;
    let groups = parse_group(files.group, "check-groups file")?;
    ensure_etc_dir(root, &opts.etc_dir)?;
    let mut seen = HashSet::new();
    let user_lines = dedupe_passwd(&users, &mut seen);
    let mut seen = HashSet::new();
    let group_lines = dedupe_group(&groups, &mut seen);
    let kept_users = parse_passwd(&render(user_lines.iter().map(|s| s.as_str())), "passwd")?;
    let kept_groups = parse_group(&render(group_lines.iter().map(|s| s.as_str())), "group")?;

    write_with_mode(
        root,
        &join(&opts.etc_dir, "passwd"),
        &render(user_lines.iter().map(|s| s.as_str())),
        PWGRP_MODE,
    )?;
    let shadow: Vec<String> = kept_users
        .iter()
        .map(|u| format!("{}:*::0:99999:7:::", u.name))
        .collect();
    write_with_mode(
        root,
        &join(&opts.etc_dir, "shadow"),
        &render(shadow.iter().map(|s| s.as_str())),
        SHADOW_MODE,
    )?;
    write_with_mode(
        root,
        &join(&opts.etc_dir, "group"),
        &render(group_lines.iter().map(|s| s.as_str())),
        PWGRP_MODE,
    )?;
    let gshadow: Vec<String> = kept_groups
        .iter()
        .map(|g| format!("{}:::", g.name))
        .collect();
    write_with_mode(
        root,
        &join(&opts.etc_dir, "gshadow"),
        &render(gshadow.iter().map(|s| s.as_str())),
        SHADOW_MODE,
    )?;
    Ok(())
}

/// The previous commit's passwd/group files (`None` = absent in that commit).
#[derive(Debug, Clone, Default)]
pub struct PreviousPasswd {
    pub etc_passwd: Option<String>,
    pub lib_passwd: Option<String>,
    pub etc_group: Option<String>,
    pub lib_group: Option<String>,
}

/// Merge `/usr/etc/X` and `/usr/lib/X` of the previous commit (first
/// occurrence of a name wins). `None` when either file is missing. Pure.
pub fn merge_previous_passwd(etc: Option<&str>, lib: Option<&str>) -> Result<Option<String>> {
    let (Some(etc), Some(lib)) = (etc, lib) else {
        return Ok(None);
    };
    let mut seen = HashSet::new();
    let mut lines = dedupe_passwd(&parse_passwd(etc, "previous /usr/etc/passwd")?, &mut seen);
    lines.extend(dedupe_passwd(
        &parse_passwd(lib, "previous /usr/lib/passwd")?,
        &mut seen,
    ));
    Ok(Some(render(lines.iter().map(|s| s.as_str()))))
}

/// Group counterpart of [`merge_previous_passwd`].
pub fn merge_previous_group(etc: Option<&str>, lib: Option<&str>) -> Result<Option<String>> {
    let (Some(etc), Some(lib)) = (etc, lib) else {
        return Ok(None);
    };
    let mut seen = HashSet::new();
    let mut lines = dedupe_group(&parse_group(etc, "previous /usr/etc/group")?, &mut seen);
    lines.extend(dedupe_group(
        &parse_group(lib, "previous /usr/lib/group")?,
        &mut seen,
    ));
    Ok(Some(render(lines.iter().map(|s| s.as_str()))))
}

/// §4.3a without `file` data: if the previous commit has both
/// `/usr/etc/passwd` and `/usr/lib/passwd`, write their union to the etc dir
/// (0644); same for group. Returns which of (passwd, group) were written.
/// Unlike rpm-ostree (which always writes `etc/`), this honours
/// [`InjectOptions::etc_dir`].
pub fn prepare_passwd_from_previous(
    root: &Dir,
    previous: &PreviousPasswd,
    opts: &InjectOptions,
) -> Result<(bool, bool)> {
    let passwd = merge_previous_passwd(
        previous.etc_passwd.as_deref(),
        previous.lib_passwd.as_deref(),
    )?;
    let group = merge_previous_group(previous.etc_group.as_deref(), previous.lib_group.as_deref())?;
    if passwd.is_some() || group.is_some() {
        ensure_etc_dir(root, &opts.etc_dir)?;
    }
    if let Some(p) = &passwd {
        write_with_mode(root, &join(&opts.etc_dir, "passwd"), p, PWGRP_MODE)?;
    }
    if let Some(g) = &group {
        write_with_mode(root, &join(&opts.etc_dir, "group"), g, PWGRP_MODE)?;
    }
    Ok((passwd.is_some(), group.is_some()))
}

/// The reference a `check-passwd` / `check-groups` compares against.
#[derive(Debug, Clone, Default)]
pub enum CheckReference<E> {
    /// `type: none` (or `previous` without a previous commit): no check.
    #[default]
    None,
    /// `type: data`: inline entries.
    Entries(E),
    /// `type: file`: the content of the configured file.
    FileContent(String),
    /// `type: previous`: the previous commit's `/usr/lib/passwd` (or group);
    /// `None` when that commit has no such file (then nothing is checked).
    PreviousContent(Option<String>),
}

/// Options for [`check_passwd_group`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Users: name -> (uid, gid). The treefile's `data` forms `uid`, `[uid]`
    /// mean (uid, uid).
    pub passwd: CheckReference<BTreeMap<String, (u32, u32)>>,
    /// Groups: name -> gid.
    pub groups: CheckReference<BTreeMap<String, u32>>,
    /// `ignore-removed-users` (`*` = all).
    pub ignore_removed_users: BTreeSet<String>,
    /// `ignore-removed-groups` (`*` = all).
    pub ignore_removed_groups: BTreeSet<String>,
}

/// What the check found (besides errors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub new_users: Vec<String>,
    pub new_groups: Vec<String>,
    /// Removed names that no file in the tree is owned by.
    pub unused_users_removed: Vec<String>,
    pub unused_groups_removed: Vec<String>,
    /// Removed names listed in `ignore-removed-*`.
    pub ignored_users_removed: Vec<String>,
    pub ignored_groups_removed: Vec<String>,
}

fn reference_users(
    r: &CheckReference<BTreeMap<String, (u32, u32)>>,
) -> Result<Option<BTreeMap<String, (u32, u32)>>> {
    let content = match r {
        CheckReference::None | CheckReference::PreviousContent(None) => return Ok(None),
        CheckReference::Entries(e) => return Ok(Some(e.clone())),
        CheckReference::FileContent(c) => parse_passwd(c, "check-passwd file")?,
        CheckReference::PreviousContent(Some(c)) => parse_passwd(c, "previous /usr/lib/passwd")?,
    };
    Ok(Some(
        content
            .into_iter()
            .map(|e| (e.name, (e.uid, e.gid)))
            .collect(),
    ))
}

fn reference_groups(
    r: &CheckReference<BTreeMap<String, u32>>,
) -> Result<Option<BTreeMap<String, u32>>> {
    let content = match r {
        CheckReference::None | CheckReference::PreviousContent(None) => return Ok(None),
        CheckReference::Entries(e) => return Ok(Some(e.clone())),
        CheckReference::FileContent(c) => parse_group(c, "check-groups file")?,
        CheckReference::PreviousContent(Some(c)) => parse_group(c, "previous /usr/lib/group")?,
    };
    Ok(Some(content.into_iter().map(|e| (e.name, e.gid)).collect()))
}

/// The decision for one missing name, computed without touching the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Missing {
    Ignored(String),
    /// Needs the owner walk: (name, id).
    CheckOwner(String, u32),
}

/// Pure comparison of users. Returns missing names to settle and new names, or
/// the id-changed error.
fn compare_users(
    reference: &BTreeMap<String, (u32, u32)>,
    new: &BTreeMap<String, (u32, u32)>,
    also_present: &BTreeSet<String>,
    ignore: &BTreeSet<String>,
) -> Result<(Vec<Missing>, Vec<String>)> {
    let ignore_all = ignore.contains("*");
    let mut missing = Vec::new();
    for (name, (uid, _)) in reference {
        if new.contains_key(name) || also_present.contains(name) {
            continue;
        }
        if ignore_all || ignore.contains(name) {
            missing.push(Missing::Ignored(name.clone()));
        } else {
            missing.push(Missing::CheckOwner(name.clone(), *uid));
        }
    }
    let mut new_names = Vec::new();
    for (name, (uid, gid)) in new {
        let Some((ouid, ogid)) = reference.get(name) else {
            new_names.push(name.clone());
            continue;
        };
        if uid != ouid {
            bail!("passwd UID changed: {name} ({ouid} to {uid})");
        }
        if gid != ogid {
            bail!("passwd GID changed: {name} ({ogid} to {gid})");
        }
    }
    Ok((missing, new_names))
}

/// Pure comparison of groups (see [`compare_users`]).
fn compare_groups(
    reference: &BTreeMap<String, u32>,
    new: &BTreeMap<String, u32>,
    also_present: &BTreeSet<String>,
    ignore: &BTreeSet<String>,
) -> Result<(Vec<Missing>, Vec<String>)> {
    let ignore_all = ignore.contains("*");
    let mut missing = Vec::new();
    for (name, gid) in reference {
        if new.contains_key(name) || also_present.contains(name) {
            continue;
        }
        if ignore_all || ignore.contains(name) {
            missing.push(Missing::Ignored(name.clone()));
        } else {
            missing.push(Missing::CheckOwner(name.clone(), *gid));
        }
    }
    let mut new_names = Vec::new();
    for (name, gid) in new {
        let Some(ogid) = reference.get(name) else {
            new_names.push(name.clone());
            continue;
        };
        if gid != ogid {
            bail!("group GID changed: {name} ({ogid} to {gid})");
        }
    }
    Ok((missing, new_names))
}

/// Every uid and gid that owns something in a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeOwners {
    pub uids: BTreeSet<u32>,
    pub gids: BTreeSet<u32>,
}

/// Collect the owners of the root directory and everything below it
/// (symlinks not followed) in one walk.
pub fn tree_owners(root: &Dir) -> Result<TreeOwners> {
    let mut owners = TreeOwners::default();
    let top = root.dir_metadata().context("Querying the root directory")?;
    owners.uids.insert(top.uid());
    owners.gids.insert(top.gid());
    root.walk(
        &cap_std_ext::dirext::WalkConfiguration::default(),
        |e| -> std::io::Result<std::ops::ControlFlow<()>> {
            let m = e.entry.metadata()?;
            owners.uids.insert(m.uid());
            owners.gids.insert(m.gid());
            Ok(std::ops::ControlFlow::Continue(()))
        },
    )
    .context("Walking the tree for file owners")?;
    Ok(owners)
}

/// [`tree_owners`], computed on first use.
struct LazyOwners<'a> {
    root: &'a Dir,
    owners: Option<TreeOwners>,
}

impl LazyOwners<'_> {
    fn get(&mut self) -> Result<&TreeOwners> {
        if self.owners.is_none() {
            self.owners = Some(tree_owners(self.root)?);
        }
        // Just filled in above.
        self.owners
            .as_ref()
            .context("internal error: owners not collected")
    }
}

fn names_in_etc_passwd(root: &Dir) -> Result<BTreeSet<String>> {
    Ok(match read_optional_string(root, "usr/etc/passwd")? {
        Some(c) => parse_passwd(&c, "usr/etc/passwd")?
            .into_iter()
            .map(|e| e.name)
            .collect(),
        None => BTreeSet::new(),
    })
}

fn names_in_etc_group(root: &Dir) -> Result<BTreeSet<String>> {
    Ok(match read_optional_string(root, "usr/etc/group")? {
        Some(c) => parse_group(&c, "usr/etc/group")?
            .into_iter()
            .map(|e| e.name)
            .collect(),
        None => BTreeSet::new(),
    })
}

/// §4.8: validate the tree's `usr/lib/{passwd,group}` against the reference.
///
/// A reference name missing from the new files is fine if it is in
/// `ignore-removed-*` (or `*`), or if no file in the tree is owned by its old
/// id ("Unused user removed…"); otherwise `User missing from new passwd file:
/// NAME` / `Group missing from new group file: NAME`. A name with another id
/// fails with `passwd UID changed: NAME (OLD to NEW)`, `passwd GID changed: …`
/// or `group GID changed: …`. Names kept in `usr/etc` (root, and
/// `etc-group-members`) count as present.
pub fn check_passwd_group(root: &Dir, opts: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut owners = LazyOwners { root, owners: None };
    if let Some(reference) = reference_users(&opts.passwd)? {
        let new: BTreeMap<String, (u32, u32)> = match read_optional_string(root, "usr/lib/passwd")?
        {
            Some(c) => parse_passwd(&c, "usr/lib/passwd")?
                .into_iter()
                .map(|e| (e.name, (e.uid, e.gid)))
                .collect(),
            None => BTreeMap::new(),
        };
        let also = names_in_etc_passwd(root)?;
        let (missing, new_names) =
            compare_users(&reference, &new, &also, &opts.ignore_removed_users)
                .context("Validating user entries according to check-passwd")?;
        for m in missing {
            match m {
                Missing::Ignored(n) => {
                    eprintln!("Ignored user missing from new passwd file: {n}");
                    report.ignored_users_removed.push(n);
                }
                Missing::CheckOwner(n, uid) => {
                    if owners.get()?.uids.contains(&uid) {
                        bail!("User missing from new passwd file: {n}");
                    }
                    eprintln!("Unused user removed from new passwd file: {n}");
                    report.unused_users_removed.push(n);
                }
            }
        }
        if !new_names.is_empty() {
            eprintln!("New passwd entries: {}", new_names.join(", "));
        }
        report.new_users = new_names;
    }
    if let Some(reference) = reference_groups(&opts.groups)? {
        let new: BTreeMap<String, u32> = match read_optional_string(root, "usr/lib/group")? {
            Some(c) => parse_group(&c, "usr/lib/group")?
                .into_iter()
                .map(|e| (e.name, e.gid))
                .collect(),
            None => BTreeMap::new(),
        };
        let also = names_in_etc_group(root)?;
        let (missing, new_names) =
            compare_groups(&reference, &new, &also, &opts.ignore_removed_groups)
                .context("Validating group entries according to check-groups")?;
        for m in missing {
            match m {
                Missing::Ignored(n) => {
                    eprintln!("Ignored group missing from new group file: {n}");
                    report.ignored_groups_removed.push(n);
                }
                Missing::CheckOwner(n, gid) => {
                    if owners.get()?.gids.contains(&gid) {
                        bail!("Group missing from new group file: {n}");
                    }
                    eprintln!("Unused group removed from new group file: {n}");
                    report.unused_groups_removed.push(n);
                }
            }
        }
        if !new_names.is_empty() {
            eprintln!("New group entries: {}", new_names.join(", "));
        }
        report.new_groups = new_names;
    }
    Ok(report)
}

/// Name lookups for a root: uid -> user name and gid -> group name from
/// `usr/{etc,lib}/{passwd,group}` (the `usr/etc` entry wins on a duplicate id).
#[derive(Debug, Clone, Default)]
pub struct NameDb {
    pub users: BTreeMap<u32, String>,
    pub groups: BTreeMap<u32, String>,
}

impl NameDb {
    /// Build from file contents (any may be empty). Pure.
    pub fn from_contents(passwds: &[&str], groups: &[&str]) -> Result<Self> {
        let mut db = NameDb::default();
        for c in passwds {
            for e in parse_passwd(c, "passwd")? {
                db.users.entry(e.uid).or_insert(e.name);
            }
        }
        for c in groups {
            for e in parse_group(c, "group")? {
                db.groups.entry(e.gid).or_insert(e.name);
            }
        }
        Ok(db)
    }

    /// Read `usr/etc` then `usr/lib` passwd/group of a root (missing = empty).
    pub fn load(root: &Dir) -> Result<Self> {
        let mut p = Vec::new();
        let mut g = Vec::new();
        for path in ["usr/etc/passwd", "usr/lib/passwd"] {
            p.push(read_optional_string(root, path)?.unwrap_or_default());
        }
        for path in ["usr/etc/group", "usr/lib/group"] {
            g.push(read_optional_string(root, path)?.unwrap_or_default());
        }
        let p: Vec<&str> = p.iter().map(|s| s.as_str()).collect();
        let g: Vec<&str> = g.iter().map(|s| s.as_str()).collect();
        Self::from_contents(&p, &g).context("Loading users and groups of the tree")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
bin:x:1:1:bin:/bin:/sbin/nologin\n\
toor:x:0:0:alt root:/root:/bin/sh\n\
demo:x:900:900::/:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nbin:x:1:\nwheel:x:10:alice\ndemo:x:900:\n";

    #[test]
    fn passwd_split_keeps_uid0_in_etc() {
        let s = split_passwd(PASSWD, "").unwrap();
        assert_eq!(
            s.etc,
            "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0:alt root:/root:/bin/sh\n"
        );
        assert_eq!(
            s.usrlib,
            "bin:x:1:1:bin:/bin:/sbin/nologin\ndemo:x:900:900::/:/usr/sbin/nologin\n"
        );
        // Already present names are not appended twice.
        let s2 = split_passwd(PASSWD, "bin:x:1:1:bin:/bin:/sbin/nologin\n").unwrap();
        assert_eq!(s2.usrlib, "demo:x:900:900::/:/usr/sbin/nologin\n");
    }

    #[test]
    fn group_split_with_members() {
        let members: BTreeSet<String> = ["wheel".to_string()].into();
        let s = split_group(GROUP, "", &members).unwrap();
        assert_eq!(s.etc, "root:x:0:\nwheel:x:10:alice\n");
        assert_eq!(s.usrlib, "bin:x:1:\nwheel:x:10:alice\ndemo:x:900:\n");
        let s = split_group(GROUP, "", &BTreeSet::new()).unwrap();
        assert_eq!(s.etc, "root:x:0:\n");
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let e = parse_passwd("root:x:0:0:root:/root\n", "usr/etc/passwd").unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("usr/etc/passwd") && msg.contains("line 1"),
            "{msg}"
        );
        let e = parse_group("g:x:abc:\n", "usr/etc/group").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("invalid gid 'abc'"), "{msg}");
        // Comments and blank lines are tolerated.
        assert_eq!(parse_group("# c\n\nroot:x:0:\n", "g").unwrap().len(), 1);
    }

    #[test]
    fn concat_adds_missing_newline() {
        assert_eq!(concat_lines("a:x:1:", "b:x:2:\n"), "a:x:1:\nb:x:2:\n");
        assert_eq!(concat_lines("", "b\n"), "b\n");
        assert_eq!(concat_lines("a\n", ""), "a\n");
    }

    #[test]
    fn shadow_normalization() {
        let orig = "root:!locked::0:99999:7:::\nbin:*:19000:0:99999:7:::\nalice:$6$abc:19000:0:99999:7:::\nnolock:!!:19001::::::\n";
        let expected = "root:!locked::0:99999:7:::\nbin:*::0:99999:7:::\nalice:$6$abc:19000:0:99999:7:::\nnolock:!!:::::::\n";
        assert_eq!(normalize_shadow_content(orig), expected);
    }

    #[test]
    fn previous_merge_first_wins() {
        let etc = "root:x:0:0:root:/root:/bin/bash\n";
        let lib = "root:x:0:0:other:/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\n";
        let merged = merge_previous_passwd(Some(etc), Some(lib))
            .unwrap()
            .unwrap();
        assert_eq!(
            merged,
            "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n"
        );
        assert!(merge_previous_passwd(Some(etc), None).unwrap().is_none());
        assert!(merge_previous_group(None, Some("a:x:1:\n"))
            .unwrap()
            .is_none());
    }

    fn users(v: &[(&str, u32, u32)]) -> BTreeMap<String, (u32, u32)> {
        v.iter()
            .map(|(n, u, g)| (n.to_string(), (*u, *g)))
            .collect()
    }

    #[test]
    fn compare_users_cases() {
        let reference = users(&[("bin", 1, 1), ("demo", 900, 900), ("gone", 950, 950)]);
        let none = BTreeSet::new();
        // uid changed
        let new = users(&[("bin", 1, 1), ("demo", 901, 900)]);
        let e = compare_users(&reference, &new, &none, &none).unwrap_err();
        assert_eq!(e.to_string(), "passwd UID changed: demo (900 to 901)");
        // gid changed
        let new = users(&[("bin", 1, 2), ("demo", 900, 900)]);
        let e = compare_users(&reference, &new, &none, &none).unwrap_err();
        assert_eq!(e.to_string(), "passwd GID changed: bin (1 to 2)");
        // missing + new
        let new = users(&[("bin", 1, 1), ("demo", 900, 900), ("fresh", 42, 42)]);
        let (missing, fresh) = compare_users(&reference, &new, &none, &none).unwrap();
        assert_eq!(missing, vec![Missing::CheckOwner("gone".into(), 950)]);
        assert_eq!(fresh, vec!["fresh".to_string()]);
        // ignored, by name and by '*'
        let ign: BTreeSet<String> = ["gone".to_string()].into();
        let (missing, _) = compare_users(&reference, &new, &none, &ign).unwrap();
        assert_eq!(missing, vec![Missing::Ignored("gone".into())]);
        let star: BTreeSet<String> = ["*".to_string()].into();
        let (missing, _) = compare_users(&reference, &users(&[]), &none, &star).unwrap();
        assert_eq!(missing.len(), 3);
        // present in usr/etc counts as present
        let also: BTreeSet<String> = ["gone".to_string()].into();
        let (missing, _) = compare_users(&reference, &new, &also, &none).unwrap();
        assert!(missing.is_empty());
    }

    #[test]
    fn compare_groups_cases() {
        let reference: BTreeMap<String, u32> = [("wheel".to_string(), 10)].into();
        let new: BTreeMap<String, u32> = [("wheel".to_string(), 11)].into();
        let none = BTreeSet::new();
        let e = compare_groups(&reference, &new, &none, &none).unwrap_err();
        assert_eq!(e.to_string(), "group GID changed: wheel (10 to 11)");
        let (missing, _) = compare_groups(&reference, &BTreeMap::new(), &none, &none).unwrap();
        assert_eq!(missing, vec![Missing::CheckOwner("wheel".into(), 10)]);
    }

    #[test]
    fn name_db_prefers_first() {
        let db = NameDb::from_contents(
            &[
                "root:x:0:0::/:/bin/sh\n",
                "demo:x:900:900::/:/bin/sh\nalias:x:0:0::/:/bin/sh\n",
            ],
            &[GROUP],
        )
        .unwrap();
        assert_eq!(db.users[&0], "root");
        assert_eq!(db.users[&900], "demo");
        assert_eq!(db.groups[&10], "wheel");
    }
}

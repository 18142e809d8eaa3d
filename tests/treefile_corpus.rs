//! Every entry point of the real-world treefile corpus
//! (`../shared/corpus/treefiles/SOURCES.md`, 100 entries) resolves for
//! x86_64 to the `ref`, package count, repo-packages count and number of
//! files its table gives. Entries with a dangling external must fail naming
//! the missing file and the key (and, inspected with missing externals
//! skipped, still resolve to the table's figures); entries rpm-ostree
//! rejects must be rejected naming the offending key.
//!
//! The tables are parsed from SOURCES.md at test time; no corpus data lives
//! in this repository. If ../shared is absent the test says it was skipped.

use std::path::{Path, PathBuf};

use ostree_composer::exit::exit_code_for;
use ostree_composer::treefile::{
    resolve, LoadOptions, MissingExternals, ResolveOptions, Resolved, Treefile,
};

#[derive(Debug)]
struct Entry {
    source_dir: String,
    path: String,
    expected_ref: Option<String>,
    packages_x86_64: usize,
    repo_packages: usize,
    files_in_chain: usize,
    /// (key, file names) of dangling externals.
    dangling: Vec<(String, Vec<String>)>,
    /// The text after "rpm-ostree would reject**:".
    rejected: Option<String>,
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, t)| t.to_string())
        .collect()
}

fn parse_sources(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut source_dir = String::new();
    let mut in_entry_table = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("- Directory: `") {
            source_dir = rest
                .split('`')
                .next()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string();
            continue;
        }
        if line.starts_with("| entry point") {
            in_entry_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_entry_table = false;
            continue;
        }
        if !in_entry_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 7, "unexpected row {line}");
        let path = backticked(cells[0]).into_iter().next().expect("entry path");
        let expected_ref = if cells[1].starts_with('—') {
            None
        } else {
            backticked(cells[1]).into_iter().last()
        };
        let packages_x86_64 = cells[3].split('/').next().unwrap().trim().parse().unwrap();
        let repo_packages = cells[4].parse().unwrap();
        let files_in_chain = cells[5].parse().unwrap();
        let mut dangling = Vec::new();
        let mut rejected = None;
        for note in cells[6].split("; ") {
            if let Some(rest) = note.strip_prefix("dangling ") {
                let (key, files) = rest.split_once(':').unwrap();
                dangling.push((key.to_string(), backticked(files)));
            } else if let Some((_, why)) = note.split_once("would reject**:") {
                rejected = Some(why.split('(').next().unwrap().trim().to_string());
            }
        }
        out.push(Entry {
            source_dir: source_dir.clone(),
            path,
            expected_ref,
            packages_x86_64,
            repo_packages,
            files_in_chain,
            dangling,
            rejected,
        });
    }
    out
}

fn corpus_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/treefiles");
    if d.join("SOURCES.md").is_file() {
        Some(d)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; treefile corpus test not run",
            d.display()
        );
        None
    }
}

/// If `file` is a symlink flattened into a small regular file holding the
/// link target (how the shared corpus stores its 29 upstream symlinks), the
/// target.
fn flattened_symlink_target(file: &Path) -> Option<String> {
    let md = std::fs::metadata(file).ok()?;
    if md.len() == 0 || md.len() > 200 {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let target = text.trim_end_matches('\n');
    if target.is_empty() || target.contains('\n') || target.contains(": ") {
        return None;
    }
    file.parent()?
        .join(target)
        .exists()
        .then(|| target.to_string())
}

/// Build a view of the corpus in `dest` where every regular file is a symlink
/// to the original and flattened symlinks are real (relative) symlinks again,
/// so includes through symlinked files/directories resolve as upstream.
/// Returns how many symlinks were restored. Nothing is copied.
fn mirror_with_symlinks(src: &Path, dest: &Path) -> usize {
    let mut restored = 0;
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
            restored += 1;
        } else if ft.is_dir() {
            restored += mirror_with_symlinks(&from, &to);
        } else if let Some(target) = flattened_symlink_target(&from) {
            std::os::unix::fs::symlink(target, &to).unwrap();
            restored += 1;
        } else {
            std::os::unix::fs::symlink(from.canonicalize().unwrap(), &to).unwrap();
        }
    }
    restored
}

fn check_figures(e: &Entry, r: &Resolved) -> Result<(), String> {
    let c = &r.config;
    let got_ref = c.treeref.clone();
    if got_ref != e.expected_ref {
        return Err(format!("ref {got_ref:?}, expected {:?}", e.expected_ref));
    }
    let n = c.packages().len();
    if n != e.packages_x86_64 {
        return Err(format!("{n} packages, expected {}", e.packages_x86_64));
    }
    let rp: usize = c
        .repo_packages
        .iter()
        .flatten()
        .map(|x| x.packages.len())
        .sum();
    if rp != e.repo_packages {
        return Err(format!("{rp} repo-packages, expected {}", e.repo_packages));
    }
    if r.files.len() != e.files_in_chain {
        return Err(format!(
            "{} files in chain, expected {}",
            r.files.len(),
            e.files_in_chain
        ));
    }
    Ok(())
}

fn check_entry(root: &Path, e: &Entry) -> Result<(), String> {
    let path = root.join(&e.source_dir).join(&e.path);
    let load = Treefile::load(
        &path,
        &LoadOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    );
    if let Some(why) = &e.rejected {
        let err = match load {
            Ok(_) => return Err(format!("loaded, but rpm-ostree rejects it ({why})")),
            Err(err) => err,
        };
        let msg = format!("{err:#}");
        // "Unknown fields: groups" -> the key is the last word.
        let key = why.rsplit(' ').next().unwrap_or(why);
        if !msg.contains("Unknown fields") || !msg.contains(key) || exit_code_for(&err) != 3 {
            return Err(format!(
                "rejected with {msg:?}, expected it to name {why:?}"
            ));
        }
        return Ok(());
    }
    if !e.dangling.is_empty() {
        let err = match load {
            Ok(_) => return Err("loaded although an external is missing".into()),
            Err(err) => err,
        };
        let msg = format!("{err:#}");
        let named = e.dangling.iter().any(|(key, files)| {
            msg.contains(&format!(": {key}:"))
                && files.iter().any(|f| {
                    let base = f.rsplit('/').next().unwrap_or(f);
                    msg.contains(base)
                })
        });
        if !named || exit_code_for(&err) != 3 {
            return Err(format!(
                "error {msg:?} does not name a missing external of {:?}",
                e.dangling
            ));
        }
        let r = resolve(
            &path,
            &ResolveOptions {
                basearch: Some("x86_64".into()),
                missing_externals: MissingExternals::Skip,
                ..Default::default()
            },
        );
        return match r {
            Ok(r) => check_figures(e, &r),
            // The 2016 test fixture adds a file outside /usr and /etc; today's
            // rpm-ostree rejects that once the source exists.
            Err(err) if format!("{err:#}").contains("Unsupported path in add-files: /exports/") => {
                eprintln!(
                    "  note {}/{}: would then fail: {err:#}",
                    e.source_dir, e.path
                );
                Ok(())
            }
            Err(err) => Err(format!("lenient resolve failed: {err:#}")),
        };
    }
    let tf = load.map_err(|err| format!("load failed: {err:#}"))?;
    let strict = tf
        .strict_ref()
        .map_err(|err| format!("strict ref: {err:#}"))?;
    if strict != e.expected_ref {
        return Err(format!(
            "strict ref {strict:?}, expected {:?}",
            e.expected_ref
        ));
    }
    let r = resolve(
        &path,
        &ResolveOptions {
            basearch: Some("x86_64".into()),
            ..Default::default()
        },
    )
    .map_err(|err| format!("resolve failed: {err:#}"))?;
    if r.config != tf.config {
        return Err("resolve and load disagree".into());
    }
    check_figures(e, &r)?;
    // Serialization round-trips through JSON without error and is stable.
    let pretty = tf.to_json_pretty();
    serde_json::from_str::<serde_json::Value>(&pretty)
        .map_err(|err| format!("pretty JSON: {err}"))?;
    if tf.checksum() != tf.clone().checksum() || tf.checksum().len() != 64 {
        return Err("checksum unstable".into());
    }
    Ok(())
}

#[test]
fn corpus_entry_points_resolve_as_documented() {
    let Some(shared) = corpus_dir() else { return };
    let text = std::fs::read_to_string(shared.join("SOURCES.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("treefiles");
    let restored = mirror_with_symlinks(&shared, &root);
    assert_eq!(restored, 29, "SOURCES.md documents 29 symlinks");
    let entries = parse_sources(&text);
    assert_eq!(entries.len(), 100, "SOURCES.md lists 100 entry points");
    let mut failures = Vec::new();
    let (mut clean, mut dangling, mut rejected) = (0, 0, 0);
    for e in &entries {
        match check_entry(&root, e) {
            Ok(()) => {
                if e.rejected.is_some() {
                    rejected += 1
                } else if !e.dangling.is_empty() {
                    dangling += 1
                } else {
                    clean += 1
                }
            }
            Err(why) => failures.push(format!("{}/{}: {why}", e.source_dir, e.path)),
        }
    }
    let ok = entries.len() - failures.len();
    eprintln!(
        "treefile corpus: {ok} of {} resolve as expected ({clean} load cleanly, {dangling} fail on a named missing external and match when inspected, {rejected} rejected as rpm-ostree does)",
        entries.len()
    );
    for f in &failures {
        eprintln!("  MISMATCH {f}");
    }
    assert!(
        failures.is_empty(),
        "{} corpus entries mismatched",
        failures.len()
    );
}

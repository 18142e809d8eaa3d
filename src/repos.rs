//! Read the `.repo` files beside the manifest and decide which rpm-md
//! repositories a compose enables.
//!
//! This module only parses and selects; it does not substitute `$releasever`
//! / `$basearch` / repovars in URLs nor fetch anything: dnf itself does that
//! when the installer hands it the same directory (see [`crate::install`]),
//! so the URL and gpg semantics are exactly dnf's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exit::invalid_input;

/// One `[id]` section of a `.repo` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoDef {
    pub id: String,
    /// The `.repo` file the section came from.
    pub file: PathBuf,
    /// `enabled=` (dnf's default: true).
    pub enabled: bool,
    /// `gpgcheck=` (default false: no dnf.conf is read, so dnf's built-in default applies).
    pub gpgcheck: bool,
    /// `gpgkey=` URLs (whitespace or comma separated, continuation lines allowed).
    pub gpgkeys: Vec<String>,
    /// Every `key=value` of the section, unsubstituted, later keys overriding earlier ones.
    pub options: BTreeMap<String, String>,
}

/// Parse dnf's boolean spellings (`1/0`, `yes/no`, `true/false`, `on/off`).
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Parse the text of one `.repo` file (INI as dnf reads it: `#`/`;` comments,
/// `key=value` or `key: value`, indented continuation lines).
pub fn parse_repo_file(text: &str, file: &Path) -> Result<Vec<RepoDef>> {
    let mut sections: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut last_key: Option<String> = None;
    for (lineno, raw) in text.lines().enumerate() {
        let lineno = lineno + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let is_continuation = raw.starts_with([' ', '\t']);
        if is_continuation {
            if let (Some(key), Some((_, opts))) = (&last_key, sections.last_mut()) {
                if let Some(value) = opts.get_mut(key) {
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
            }
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let id = rest.strip_suffix(']').ok_or_else(|| {
                invalid_input(format!(
                    "{}:{lineno}: malformed section header '{trimmed}'",
                    file.display()
                ))
            })?;
            let id = id.trim();
            if id.is_empty() {
                return Err(invalid_input(format!(
                    "{}:{lineno}: empty repository id",
                    file.display()
                )));
            }
            sections.push((id.to_string(), BTreeMap::new()));
            last_key = None;
            continue;
        }
        let split = trimmed.find(['=', ':']).ok_or_else(|| {
            invalid_input(format!(
                "{}:{lineno}: expected 'key=value', found '{trimmed}'",
                file.display()
            ))
        })?;
        let key = trimmed[..split].trim().to_string();
        let value = trimmed[split + 1..].trim().to_string();
        let Some((_, opts)) = sections.last_mut() else {
            return Err(invalid_input(format!(
                "{}:{lineno}: option '{key}' before any [repository] section",
                file.display()
            )));
        };
        opts.insert(key.clone(), value);
        last_key = Some(key);
    }
    sections
        .into_iter()
        .filter(|(id, _)| id != "main")
        .map(|(id, options)| repo_from_options(id, options, file))
        .collect()
}

fn repo_from_options(
    id: String,
    options: BTreeMap<String, String>,
    file: &Path,
) -> Result<RepoDef> {
    let flag = |key: &str, default: bool| -> Result<bool> {
        match options.get(key) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                invalid_input(format!(
                    "{}: repository '{id}': {key}={v} is not a boolean (use 0 or 1)",
                    file.display()
                ))
            }),
        }
    };
    let enabled = flag("enabled", true)?;
    let gpgcheck = flag("gpgcheck", false)?;
    let gpgkeys = options
        .get("gpgkey")
        .map(|v| {
            v.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(RepoDef {
        id,
        file: file.to_path_buf(),
        enabled,
        gpgcheck,
        gpgkeys,
        options,
    })
}

/// Read every `*.repo` file in `dir` (sorted by file name). A repository id
/// defined twice is an error naming both files.
pub fn load_repo_dir(dir: &Path) -> Result<Vec<RepoDef>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("Reading repo directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("Reading repo directory {}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "repo") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut repos: Vec<RepoDef> = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("Reading {}", file.display()))?;
        for def in parse_repo_file(&text, file)? {
            if let Some(prev) = repos.iter().find(|r| r.id == def.id) {
                return Err(invalid_input(format!(
                    "Repository '{}' is defined in both {} and {}",
                    def.id,
                    prev.file.display(),
                    file.display()
                )));
            }
            repos.push(def);
        }
    }
    Ok(repos)
}

/// Pick the repositories to enable: the ids in `requested` if it is given and
/// non-empty, else every repository with `enabled=1`; plus `lockfile_repos`
/// (pass an empty slice when no lockfile is in use). Unknown ids are an
/// invalid-input error listing what was found.
pub fn select_repos(
    all: &[RepoDef],
    requested: Option<&[String]>,
    lockfile_repos: &[String],
) -> Result<Vec<RepoDef>> {
    let find = |id: &String| -> Result<RepoDef> {
        all.iter().find(|r| &r.id == id).cloned().ok_or_else(|| {
            let mut ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
            ids.sort_unstable();
            let mut files: Vec<String> = all.iter().map(|r| r.file.display().to_string()).collect();
            files.sort();
            files.dedup();
            invalid_input(format!(
                "Unknown rpm-md repository: {id} (repositories found: {}; files read: {})",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                },
                if files.is_empty() {
                    "no .repo files".to_string()
                } else {
                    files.join(", ")
                }
            ))
        })
    };
    let mut selected: Vec<RepoDef> = match requested {
        Some(ids) if !ids.is_empty() => ids.iter().map(find).collect::<Result<_>>()?,
        _ => all.iter().filter(|r| r.enabled).cloned().collect(),
    };
    for id in lockfile_repos {
        if !selected.iter().any(|r| &r.id == id) {
            selected.push(find(id)?);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    selected.retain(|r| seen.insert(r.id.clone()));
    for r in &mut selected {
        r.enabled = true;
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
[main]
gpgcheck=1

[fedora]
name=Fedora $releasever - $basearch
baseurl=https://example.org/$releasever/$basearch/
enabled=1
gpgcheck=1
gpgkey=file:///etc/pki/a
  file:///etc/pki/b, https://example.org/c

[updates]
name = Updates
enabled = 0
; disabled by default
";

    fn parsed() -> Vec<RepoDef> {
        parse_repo_file(TEXT, Path::new("/x/f.repo")).unwrap()
    }

    #[test]
    fn parses_sections_continuations_and_bools() {
        let repos = parsed();
        assert_eq!(repos.len(), 2, "[main] is not a repository");
        assert_eq!(repos[0].id, "fedora");
        assert!(repos[0].enabled && repos[0].gpgcheck);
        assert_eq!(
            repos[0].gpgkeys,
            [
                "file:///etc/pki/a",
                "file:///etc/pki/b",
                "https://example.org/c"
            ]
        );
        assert_eq!(
            repos[0].options["baseurl"],
            "https://example.org/$releasever/$basearch/"
        );
        assert_eq!(repos[1].id, "updates");
        assert!(!repos[1].enabled && !repos[1].gpgcheck);
        assert_eq!(repos[1].options["name"], "Updates");
    }

    #[test]
    fn bad_lines_are_invalid_input() {
        for text in [
            "baseurl=x\n",
            "[a]\nnonsense\n",
            "[a\n",
            "[a]\nenabled=maybe\n",
        ] {
            let e = parse_repo_file(text, Path::new("f.repo")).unwrap_err();
            assert_eq!(crate::exit::exit_code_for(&e), 3, "{text}: {e:#}");
            assert!(format!("{e:#}").contains("f.repo"), "{e:#}");
        }
    }

    #[test]
    fn selection_rules() {
        let all = parsed();
        let ids = |v: Vec<RepoDef>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(select_repos(&all, None, &[]).unwrap()), ["fedora"]);
        assert_eq!(ids(select_repos(&all, Some(&[]), &[]).unwrap()), ["fedora"]);
        let sel = select_repos(&all, Some(&["updates".into()]), &[]).unwrap();
        assert_eq!(ids(sel.clone()), ["updates"]);
        assert!(
            sel[0].enabled,
            "a requested repo is enabled even if the file says 0"
        );
        assert_eq!(
            ids(select_repos(&all, None, &["updates".into(), "fedora".into()]).unwrap()),
            ["fedora", "updates"]
        );
        let e = select_repos(&all, Some(&["nope".into()]), &[]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.starts_with("Unknown rpm-md repository: nope"), "{msg}");
        assert!(
            msg.contains("fedora, updates") && msg.contains("/x/f.repo"),
            "{msg}"
        );
        assert_eq!(crate::exit::exit_code_for(&e), 3);
        assert!(select_repos(&all, None, &["nope".into()]).is_err());
    }
}

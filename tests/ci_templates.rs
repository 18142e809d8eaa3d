//! The CI templates (`ci/github/compose.yml`, `ci/gitlab/compose.gitlab-ci.yml`)
//! and the bundled manifests stay consistent with the binary and the tree.
//!
//! Every `ostree-composer` command the templates run — directly, or as the
//! arguments after the image in a `podman run` — may only use subcommands and
//! flags that the built binary's `--help` lists. Every matrix entry must name a
//! manifest that exists, and every bundled manifest's `repos:` must be defined
//! by a `.repo` file beside it.

mod common;

use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the templates name the image whose entrypoint is `ostree-composer`.
const IMAGE_TOKENS: &[&str] = &[
    "$COMPOSER_IMAGE",
    "${COMPOSER_IMAGE}",
    "localhost/composer:latest",
    "localhost/composer",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_yaml(rel: &str) -> Value {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// All shell scripts in a CI file: GitHub `run:` values and GitLab
/// `script` / `before_script` / `after_script` entries.
fn scripts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                let key = k.as_str().unwrap_or_default();
                match (key, val) {
                    ("run", Value::String(s)) => out.push(s.clone()),
                    ("script" | "before_script" | "after_script", Value::Sequence(seq)) => {
                        for item in seq {
                            if let Value::String(s) = item {
                                out.push(s.clone());
                            }
                        }
                    }
                    ("script" | "before_script" | "after_script", Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => scripts(val, out),
                }
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|x| scripts(x, out)),
        _ => {}
    }
}

/// Split a shell script into simple commands (words after quote removal).
/// Enough shell for CI scripts: quotes, backslash-newline, `;`, `&&`, `||`, `|`.
fn commands(script: &str) -> Vec<Vec<String>> {
    let script = script.replace("\\\n", " ");
    let mut cmds = Vec::new();
    for line in script.lines() {
        let mut words: Vec<String> = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut chars = line.chars().peekable();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, '#') if !in_word => break,
                (None, ' ' | '\t') => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                (None, ';' | '|' | '&') => {
                    if c != ';' && chars.peek() == Some(&c) {
                        chars.next();
                    }
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                    if !words.is_empty() {
                        cmds.push(std::mem::take(&mut words));
                    }
                }
                (None, c) => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            words.push(word);
        }
        if !words.is_empty() {
            cmds.push(words);
        }
    }
    cmds
}

/// The argument lists given to `ostree-composer` in one simple command.
fn composer_invocations(cmd: &[String]) -> Option<Vec<String>> {
    if let Some(i) = cmd.iter().position(|w| w == "ostree-composer") {
        return Some(cmd[i + 1..].to_vec());
    }
    let podman = cmd.iter().position(|w| w == "podman")?;
    if cmd.get(podman + 1).map(String::as_str) != Some("run") {
        return None;
    }
    let image = cmd
        .iter()
        .skip(podman + 2)
        .position(|w| IMAGE_TOKENS.contains(&w.as_str()))?;
    Some(cmd[podman + 2 + image + 1..].to_vec())
}

fn help_of(args: &[&str]) -> String {
    let out = Command::new(common::composer_bin())
        .args(args)
        .arg("--help")
        .output()
        .expect("running ostree-composer --help");
    assert!(
        out.status.success(),
        "ostree-composer {args:?} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Long flags (`--name`) and short flags (`-x`) a help text documents.
fn flags_in_help(help: &str) -> BTreeSet<String> {
    let long = regex::Regex::new(r"(?m)^\s+(?:-([A-Za-z]), )?--([a-z0-9][a-z0-9-]*)").unwrap();
    let mut set = BTreeSet::new();
    for c in long.captures_iter(help) {
        if let Some(s) = c.get(1) {
            set.insert(format!("-{}", s.as_str()));
        }
        set.insert(format!("--{}", &c[2]));
    }
    set
}

/// The visible subcommands of `ostree-composer compose`.
fn compose_subcommands() -> BTreeSet<String> {
    let help = help_of(&["compose"]);
    let mut in_cmds = false;
    let mut set = BTreeSet::new();
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if line.trim().is_empty() {
                break;
            }
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" {
                    set.insert(name.to_string());
                }
            }
        }
    }
    set
}

/// Check every `ostree-composer` invocation of one template; returns how many.
fn check_template(rel: &str) -> usize {
    let yaml = load_yaml(rel);
    let mut all = Vec::new();
    scripts(&yaml, &mut all);
    let subcommands = compose_subcommands();
    let mut seen = 0;
    for script in &all {
        for cmd in commands(script) {
            let Some(args) = composer_invocations(&cmd) else {
                continue;
            };
            seen += 1;
            let (help_path, flags): (Vec<&str>, &[String]) = if args.first().map(String::as_str)
                == Some("compose")
            {
                let sub = args.get(1).unwrap_or_else(|| {
                    panic!("{rel}: `ostree-composer compose` without a subcommand: {cmd:?}")
                });
                assert!(
                        subcommands.contains(sub),
                        "{rel}: `compose {sub}` is not a supported subcommand (have {subcommands:?}): {cmd:?}"
                    );
                (vec!["compose", sub.as_str()], &args[2..])
            } else {
                assert!(
                    args.first().is_some_and(|a| !a.starts_with('-')),
                    "{rel}: the one-shot command must start with the manifest: {cmd:?}"
                );
                (vec![], &args[1..])
            };
            let known = flags_in_help(&help_of(&help_path));
            for flag in flags.iter().filter(|a| a.starts_with('-') && *a != "-") {
                let name = flag.split('=').next().unwrap_or(flag);
                assert!(
                    known.contains(name),
                    "{rel}: `ostree-composer {}` has no flag {name} (known: {known:?}); command: {cmd:?}",
                    help_path.join(" ")
                );
            }
        }
    }
    seen
}

#[test]
fn shell_splitting_handles_quotes_and_separators() {
    let cmds = commands(
        "mkdir -p repo && podman run --rm \\\n  -v \"./a b:/srv\" \"$COMPOSER_IMAGE\" m.yaml --progress=plain # note\necho 'x;y' | cat",
    );
    assert_eq!(
        cmds,
        vec![
            vec!["mkdir", "-p", "repo"],
            vec![
                "podman",
                "run",
                "--rm",
                "-v",
                "./a b:/srv",
                "$COMPOSER_IMAGE",
                "m.yaml",
                "--progress=plain"
            ],
            vec!["echo", "x;y"],
            vec!["cat"],
        ]
    );
    assert_eq!(
        composer_invocations(&cmds[1]).unwrap(),
        vec!["m.yaml", "--progress=plain"]
    );
}

#[test]
fn help_parser_finds_the_one_shot_flags() {
    let known = flags_in_help(&help_of(&[]));
    for flag in [
        "--repo",
        "--cachedir",
        "--oci",
        "--authfile",
        "--progress",
        "--write-composejson-to",
    ] {
        assert!(known.contains(flag), "{flag} missing from {known:?}");
    }
    assert!(!known.contains("--no-such-flag"));
}

#[test]
fn github_workflow_uses_existing_flags() {
    let n = check_template("ci/github/compose.yml");
    assert!(n >= 2, "expected a compose and a push command, found {n}");
}

#[test]
fn gitlab_template_uses_existing_flags() {
    let n = check_template("ci/gitlab/compose.gitlab-ci.yml");
    assert!(n >= 2, "expected a compose and a push command, found {n}");
}

fn assert_manifest(dir: &str, manifest: &str, from: &str) {
    let path = root().join(dir).join(manifest);
    assert!(
        path.is_file(),
        "{from}: matrix entry names {} which does not exist",
        path.display()
    );
}

#[test]
fn matrix_entries_name_existing_manifests() {
    let gh = load_yaml("ci/github/compose.yml");
    let include = gh["jobs"]["compose"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("GitHub matrix include list");
    assert!(include.len() >= 2);
    for e in include {
        assert_manifest(
            e["manifests"].as_str().unwrap(),
            e["manifest"].as_str().unwrap(),
            "ci/github/compose.yml",
        );
    }
    let gl = load_yaml("ci/gitlab/compose.gitlab-ci.yml");
    let matrix = gl["compose"]["parallel"]["matrix"]
        .as_sequence()
        .expect("GitLab parallel matrix");
    assert!(matrix.len() >= 2);
    for e in matrix {
        assert_manifest(
            e["MANIFESTS"].as_str().unwrap(),
            e["MANIFEST"].as_str().unwrap(),
            "ci/gitlab/compose.gitlab-ci.yml",
        );
    }
}

/// Repo ids defined by the `.repo` files in `dir`.
fn repo_ids(dir: &Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "repo") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let line = line.trim();
                if let Some(id) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    ids.insert(id.to_string());
                }
            }
        }
    }
    ids
}

#[test]
fn bundled_manifests_reference_repos_beside_them() {
    let mut checked = 0;
    for dir in [
        "manifests",
        "manifests/fedora-minimal",
        "manifests/centos-stream-bootc",
    ] {
        let manifest = load_yaml(&format!("{dir}/manifest.yaml"));
        let ids = repo_ids(&root().join(dir));
        let repos = manifest["repos"].as_sequence().expect("repos: list");
        assert!(!repos.is_empty(), "{dir}/manifest.yaml has no repos");
        for r in repos {
            let id = r.as_str().unwrap();
            assert!(
                ids.contains(id),
                "{dir}/manifest.yaml uses repo {id}, not defined by a .repo file there ({ids:?})"
            );
        }
        assert!(manifest["ref"].as_str().is_some(), "{dir}: no ref");
        let packages = manifest["packages"].as_sequence().expect("packages");
        assert!(
            packages
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.contains("kernel"))),
            "{dir}: a bootable manifest needs a kernel"
        );
        // add-files sources live beside the manifest.
        if let Some(files) = manifest["add-files"].as_sequence() {
            for pair in files {
                let src = pair[0].as_str().unwrap();
                assert!(
                    root().join(dir).join(src).is_file(),
                    "{dir}: add-files source {src} missing"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}

/// Every bundled manifest resolves with the binary (`compose tree --print-only`):
/// keys, includes and variables are valid, and the ref comes out expanded.
#[test]
fn bundled_manifests_resolve_with_print_only() {
    let basearch = String::from_utf8(
        Command::new("uname")
            .arg("-m")
            .output()
            .expect("uname -m")
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    for (dir, want_ref) in [
        (
            "manifests",
            format!("ostree-composer/demo/{basearch}/minimal"),
        ),
        (
            "manifests/fedora-minimal",
            format!("fedora/44/{basearch}/minimal"),
        ),
        (
            "manifests/centos-stream-bootc",
            format!("centos-bootc/stream10/{basearch}"),
        ),
    ] {
        let manifest = root().join(dir).join("manifest.yaml");
        let out = Command::new(common::composer_bin())
            .args(["compose", "tree", "--print-only"])
            .arg(&manifest)
            .output()
            .expect("running ostree-composer");
        assert!(
            out.status.success(),
            "{}: --print-only failed: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: --print-only is not JSON: {e}", manifest.display()));
        assert_eq!(json["ref"], want_ref.as_str(), "{}", manifest.display());
    }
}

/// README.md stays true to the binary: its exit-code table is the one
/// `--help` prints, and every flag its one-shot synopsis names exists.
#[test]
fn readme_matches_the_binary() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let help = help_of(&[]);
    let codes: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert!(codes.len() >= 6, "no exit codes in --help:\n{help}");
    for line in codes {
        assert!(
            readme.contains(line),
            "README.md lacks the exit code line `{line}`"
        );
    }
    let known = flags_in_help(&help);
    let synopsis: String = readme
        .lines()
        .skip_while(|l| !l.starts_with("ostree-composer MANIFEST"))
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join(" ");
    let flag = regex::Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
    let named: Vec<&str> = flag.find_iter(&synopsis).map(|m| m.as_str()).collect();
    assert!(named.len() >= 10, "no synopsis found: {synopsis}");
    for f in named {
        assert!(
            known.contains(f),
            "README synopsis names {f}, which --help lacks"
        );
    }
}

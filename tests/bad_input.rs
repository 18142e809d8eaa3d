//! Bad input through the real binary: every case must exit non-zero with the
//! documented code (src/exit.rs), never panic, name what is wrong, and leave
//! every existing ref and the repository itself (`ostree fsck`) untouched.
//!
//! One fixture (real RPMs, a real rpm-md repo, a bare-user repo holding a
//! good commit) is shared by a table of cases run in sequence; cases that need
//! special setup (read-only or full filesystems, a registry) have their own
//! tests.
mod common;

use common::composer_bin;
use common::rpmfixture::*;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "ref: test/x86_64/bad
repos: [fixture]
packages: [filesystem, setup, busybox, app]
selinux: false
container: true
";

struct Fixture {
    tmp: tempfile::TempDir,
    rpms: PathBuf,
    repo: PathBuf,
    cache: PathBuf,
}

fn packages() -> Vec<Pkg> {
    vec![
        filesystem_pkg(),
        setup_pkg(),
        busybox_pkg(),
        Pkg::new("libfoo", "1.0").entry(Entry::file("/usr/lib/libfoo.txt", "foo\n")),
        Pkg::new("app", "1.0")
            .requires("libfoo")
            .entry(Entry::file("/usr/share/app/data", "app\n")),
        Pkg::new("broken-post", "1.0")
            .requires("busybox")
            .entry(Entry::file("/usr/share/broken-post/x", "x\n"))
            .script("post", "echo broken-post-scriptlet-failing >&2\nexit 3"),
        big_pkg(),
        Pkg::new("needs-missing", "1.0")
            .requires("libmissing-capability")
            .entry(Entry::file("/usr/share/needs-missing/x", "x\n")),
    ]
}

/// 24 MiB of incompressible data, to fill a small filesystem.
fn big_pkg() -> Pkg {
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let data: Vec<u8> = (0..24 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut p = Pkg::new("bigdata", "1.0");
    p.entries.push(Entry::File {
        path: "/usr/share/bigdata/blob".into(),
        content: data,
        mode: 0o644,
        user: "root".into(),
        group: "root".into(),
        config: false,
        doc: false,
    });
    p
}

fn repo_file(rpms: &Path, gpg: &str) -> String {
    format!(
        "[fixture]\nname=fixture\nbaseurl=file://{}\nenabled=1\n{gpg}\n",
        rpms.display()
    )
}

fn ostree_cmd(repo: &Path, args: &[&str]) -> Output {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .expect("running ostree")
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = ostree_cmd(repo, args);
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every ref of the repo and its commit.
fn refs(repo: &Path) -> BTreeMap<String, String> {
    ostree(repo, &["refs"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|r| {
            (
                r.to_string(),
                ostree(repo, &["rev-parse", r]).trim().to_string(),
            )
        })
        .collect()
}

fn fsck_clean(repo: &Path) -> Result<(), String> {
    let out = ostree_cmd(repo, &["fsck"]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ostree fsck {}: {}{}",
            repo.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fixture() -> Fixture {
    assert!(have_rpm_tools(), "rpmbuild and createrepo_c are needed");
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let rpms = build_repo(&tmp.path().join("rpms"), &packages());
    let repo = tmp.path().join("repo");
    let st = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["init", "--mode=bare-user"])
        .status()
        .unwrap();
    assert!(st.success());
    let cache = tmp.path().join("cache");
    let f = Fixture {
        tmp,
        rpms,
        repo,
        cache,
    };
    // A good commit first: every bad case must leave it alone.
    let dir = f.case_dir("good");
    std::fs::write(dir.join("m.yaml"), BASE).unwrap();
    let out = f.tree(&dir.join("m.yaml"), &[]);
    assert!(out.status.success(), "good compose: {}", text(&out));
    assert_eq!(refs(&f.repo).len(), 1);
    f
}

impl Fixture {
    /// A fresh manifest directory with the fixture's `.repo` file.
    fn case_dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join("cases").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("fixture.repo"),
            repo_file(&self.rpms, "gpgcheck=0"),
        )
        .unwrap();
        dir
    }

    fn tree(&self, manifest: &Path, extra: &[String]) -> Output {
        let mut args = vec![
            "compose".to_string(),
            "tree".into(),
            format!("--repo={}", self.repo.display()),
            format!("--cachedir={}", self.cache.display()),
        ];
        args.extend(extra.iter().cloned());
        args.push(manifest.display().to_string());
        run_bin(&args, &[("SOURCE_DATE_EPOCH", "1700000000")])
    }
}

fn run_bin(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(composer_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running ostree-composer")
}

/// What a case runs.
enum Invocation {
    /// `compose tree` into the fixture repo with these extra flags.
    Tree(Vec<String>),
    /// `compose tree` with these flags only (`{dir}` is the case directory);
    /// the manifest is appended.
    TreeRaw(Vec<String>),
    /// The one-shot command with these extra flags (`--repo` and `--cachedir`
    /// point at the fixture's export repo and cache).
    OneShot(Vec<String>),
}

struct Case {
    name: &'static str,
    /// Files written into the case directory (path relative to it).
    files: Vec<(String, Vec<u8>)>,
    /// The manifest given on the command line (relative to the case directory).
    manifest: &'static str,
    run: Invocation,
    env: Vec<(&'static str, &'static str)>,
    code: i32,
    /// Substrings that must all appear in stderr (`{dir}` is the case directory).
    expect: Vec<&'static str>,
}

fn case(name: &'static str, manifest_text: &str, code: i32, expect: &[&'static str]) -> Case {
    Case {
        name,
        files: vec![("m.yaml".into(), manifest_text.as_bytes().to_vec())],
        manifest: "m.yaml",
        run: Invocation::Tree(vec![]),
        env: vec![],
        code,
        expect: expect.to_vec(),
    }
}

impl Case {
    fn file(mut self, path: &str, content: &str) -> Self {
        self.files.push((path.into(), content.as_bytes().to_vec()));
        self
    }
    fn bytes(mut self, path: &str, content: Vec<u8>) -> Self {
        self.files.push((path.into(), content));
        self
    }
    fn manifest(mut self, m: &'static str) -> Self {
        self.manifest = m;
        self
    }
    fn args(mut self, a: &[&str]) -> Self {
        self.run = Invocation::Tree(a.iter().map(|s| s.to_string()).collect());
        self
    }
    fn raw(mut self, a: &[&str]) -> Self {
        self.run = Invocation::TreeRaw(a.iter().map(|s| s.to_string()).collect());
        self
    }
    fn oneshot(mut self, a: &[&str]) -> Self {
        self.run = Invocation::OneShot(a.iter().map(|s| s.to_string()).collect());
        self
    }
    fn env(mut self, k: &'static str, v: &'static str) -> Self {
        self.env.push((k, v));
        self
    }
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn cases(rpms: &Path) -> Vec<Case> {
    let mut include_chain: Vec<(String, Vec<u8>)> = (0..56)
        .map(|i| {
            (
                format!("chain{i}.yaml"),
                format!("include: chain{}.yaml\n", i + 1).into_bytes(),
            )
        })
        .collect();
    include_chain.push(("chain56.yaml".into(), b"packages: [app]\n".to_vec()));
    let mut garbage: Vec<u8> = (0..512u32).map(|i| (i * 131 % 256) as u8).collect();
    garbage[0] = 0xff;
    let mut deep = case("include_depth_past_50", "include: chain0.yaml\n", 3, &[]);
    deep.files.extend(include_chain);
    deep.expect = vec!["maximum include depth 50", "chain5"];

    vec![
        // --- Syntax
        case(
            "yaml_syntax_error",
            "ref: test/x86_64/bad\npackages: [a, b\nrepos: [fixture]\n",
            3,
            &["m.yaml:3:", "invalid YAML"],
        ),
        case("json_syntax_error", "", 3, &["m.json:3:1", "invalid JSON"])
            .file(
                "m.json",
                "{\"ref\": \"test/x86_64/bad\",\n \"packages\": [1,\n}\n",
            )
            .manifest("m.json"),
        case("empty_file", "", 3, &["m.yaml", "manifest is empty"]),
        case(
            "whitespace_only_file",
            "\n  \n\n",
            3,
            &["m.yaml", "manifest is empty"],
        ),
        case("binary_garbage", "", 3, &["m.yaml", "not valid UTF-8"]).bytes("m.yaml", garbage),
        case("yaml_not_a_mapping", "- just\n- a list\n", 3, &["m.yaml"]),
        // --- Types and keys
        case(
            "wrong_type_packages",
            &BASE.replace("packages: [filesystem, setup, busybox, app]", "packages: 5"),
            3,
            &["m.yaml", "'packages'", "expected a sequence"],
        ),
        case(
            "wrong_type_bool",
            &BASE.replace("selinux: false", "selinux: maybe"),
            3,
            &["m.yaml", "'selinux'", "boolean"],
        ),
        case(
            "wrong_type_add_files_pair",
            &with("add-files: [[only-one]]\n"),
            3,
            &["m.yaml", "add-files"],
        ),
        case(
            "wrong_type_releasever",
            &with("releasever: [1, 2]\n"),
            3,
            &["m.yaml", "releasever"],
        ),
        case(
            "unknown_key",
            &with("packagez: [app]\n"),
            3,
            &["m.yaml", "Unknown fields: packagez", "remove or rename"],
        ),
        // --- Includes
        case(
            "include_cycle",
            "include: a.yaml\n",
            3,
            &["Include loop", "a.yaml"],
        )
        .file("a.yaml", "include: b.yaml\n")
        .file("b.yaml", "include: a.yaml\n"),
        case(
            "include_same_file_twice",
            &with("include: [extra.yaml, extra.yaml]\n"),
            3,
            &["extra.yaml", "already included"],
        )
        .file("extra.yaml", "packages: [libfoo]\n"),
        case(
            "include_missing",
            &with("include: nope.yaml\n"),
            3,
            &["nope.yaml", "m.yaml", "No such file"],
        ),
        case(
            "include_is_a_directory",
            &with("include: subdir\n"),
            3,
            &["subdir", "not a regular file"],
        )
        .file("subdir/placeholder", ""),
        deep,
        // --- Variables and conditions
        case(
            "undefined_variable_in_condition",
            &with("conditional-include:\n  - if: foo == 1\n    include: extra.yaml\n"),
            3,
            &["m.yaml", "conditional-include", "undefined variable 'foo'"],
        )
        .file("extra.yaml", "packages: [libfoo]\n"),
        case(
            "condition_syntax_error",
            &with("conditional-include:\n  - if: \"foo ==\"\n    include: extra.yaml\n"),
            3,
            &["m.yaml", "conditional-include"],
        )
        .file("extra.yaml", "packages: [libfoo]\n"),
        case(
            "reserved_variable",
            &with("variables:\n  basearch: riscv\n"),
            3,
            &["m.yaml", "reserved variable 'basearch'"],
        ),
        // --- Refs
        case(
            "invalid_ref_characters",
            &BASE.replace("ref: test/x86_64/bad", "ref: \"bad ref!\""),
            3,
            &["bad ref!"],
        ),
        case(
            "invalid_ref_dotdot",
            &BASE.replace("ref: test/x86_64/bad", "ref: test/../bad"),
            3,
            &["test/../bad"],
        ),
        // --- add-files / remove-files / externals
        case(
            "add_files_source_missing",
            &with("add-files:\n  - [nosuch.conf, /etc/nosuch.conf]\n"),
            3,
            &["m.yaml", "add-files", "nosuch.conf"],
        ),
        case(
            "add_files_dest_under_var",
            &with("add-files:\n  - [x.conf, /var/lib/x.conf]\n"),
            3,
            &["Unsupported path in add-files: /var/lib/x.conf", "/usr"],
        )
        .file("x.conf", "x\n"),
        case(
            "add_files_dest_usr_local",
            &with("add-files:\n  - [x.conf, /usr/local/x.conf]\n"),
            3,
            &["Unsupported path in add-files: /usr/local/x.conf"],
        )
        .file("x.conf", "x\n"),
        case(
            "remove_files_absolute",
            &with("remove-files:\n  - /usr/share/app/data\n"),
            3,
            &["remove-files", "/usr/share/app/data"],
        ),
        case(
            "remove_files_dotdot",
            &with("remove-files:\n  - usr/../etc/passwd\n"),
            3,
            &["remove-files", "usr/../etc/passwd", ".."],
        ),
        case(
            "postprocess_script_missing",
            &with("postprocess-script: nope.sh\n"),
            3,
            &["postprocess-script", "nope.sh"],
        ),
        // (`container: true` turns passwd checks off, so without it.)
        case(
            "check_passwd_file_missing",
            &BASE.replace(
                "container: true\n",
                "check-passwd:\n  type: file\n  filename: nope-passwd\n",
            ),
            3,
            &["check-passwd", "nope-passwd"],
        ),
        // --- Repositories
        case(
            "unknown_repo_id",
            &BASE.replace("repos: [fixture]", "repos: [fixture, nosuchrepo]"),
            3,
            &["nosuchrepo"],
        ),
        case(
            "repo_packages_unknown_repo",
            &with("repo-packages:\n  - repo: otherrepo\n    packages: [app]\n"),
            3,
            &["otherrepo", "repo-packages"],
        ),
        case(
            "repo_file_malformed",
            BASE,
            3,
            &["broken.repo:2", "key=value"],
        )
        .file("broken.repo", "[broken]\nthis line is not an option\n"),
        case(
            "repo_file_bad_boolean",
            BASE,
            3,
            &["bad.repo", "gpgcheck=maybe"],
        )
        .file(
            "bad.repo",
            "[bad]\nbaseurl=file:///nonexistent\ngpgcheck=maybe\n",
        ),
        case("repo_id_defined_twice", BASE, 3, &["fixture", "dup.repo"])
            .file("dup.repo", &repo_file(rpms, "gpgcheck=0")),
        case(
            "repo_server_down",
            BASE,
            1,
            &["repo 'fixture'", "127.0.0.1:1"],
        )
        .file(
            "fixture.repo",
            "[fixture]\nbaseurl=http://127.0.0.1:1/repo\ngpgcheck=0\n",
        ),
        case(
            "repo_baseurl_missing",
            BASE,
            1,
            &["repo 'fixture'", "/nonexistent/repo"],
        )
        .file(
            "fixture.repo",
            "[fixture]\nbaseurl=file:///nonexistent/repo\ngpgcheck=0\n",
        ),
        // --- Packages
        case(
            "missing_package",
            &BASE.replace("app]", "app, nosuchpkg]"),
            1,
            &[
                "Packages not found: nosuchpkg",
                "searched repositories: fixture",
                "'repos'",
            ],
        ),
        case(
            "unsatisfiable_dependency",
            &BASE.replace("app]", "app, needs-missing]"),
            1,
            &["needs-missing", "libmissing-capability"],
        ),
        case(
            "failing_post_scriptlet",
            &BASE.replace("app]", "app, broken-post]"),
            1,
            &["broken-post", "%post"],
        ),
        case(
            "failing_postprocess_script",
            &with(
                "postprocess:\n  - |\n    #!/bin/sh\n    echo failing-on-purpose >&2\n    exit 7\n",
            ),
            1,
            &["postprocess", "failing-on-purpose"],
        ),
        // (--force-nocache: with unchanged inputs nothing is downloaded, so nothing is checked.)
        case(
            "gpgcheck_unsigned_packages",
            BASE,
            1,
            &["not signed", "fixture", "gpgcheck=1"],
        )
        .file("fixture.repo", &repo_file(rpms, "gpgcheck=1"))
        .args(&["--force-nocache"]),
        case(
            "gpgkey_missing_file",
            BASE,
            1,
            &["/nonexistent/RPM-GPG-KEY", "fixture"],
        )
        .file(
            "fixture.repo",
            &repo_file(rpms, "gpgcheck=1\ngpgkey=file:///nonexistent/RPM-GPG-KEY"),
        )
        .args(&["--force-nocache"]),
        case(
            "gpgkey_not_a_key",
            BASE,
            1,
            &["fixture", "garbage.asc", "no OpenPGP public key"],
        )
        .file("garbage.asc", "this is not an OpenPGP key\n")
        .file(
            "fixture.repo",
            &repo_file(rpms, "gpgcheck=1\ngpgkey=file://{dir}/garbage.asc"),
        )
        .args(&["--force-nocache"]),
        // --- Command line and flag values
        case("manifest_missing", BASE, 3, &["nope.yaml"]).manifest("nope.yaml"),
        case(
            "manifest_is_a_directory",
            BASE,
            3,
            &["subdir", "not a regular file"],
        )
        .file("subdir/placeholder", "")
        .manifest("subdir"),
        case("lockfile_malformed", BASE, 3, &["lock.json", "lockfile"])
            .file("lock.json", "{ not json")
            .args(&["--ex-lockfile={dir}/lock.json"]),
        case("metadata_json_malformed", BASE, 3, &["meta.json"])
            .file("meta.json", "[1, 2")
            .args(&["--add-metadata-from-json={dir}/meta.json"]),
        case(
            "metadata_string_without_value",
            BASE,
            3,
            &["novalue", "KEY=VALUE"],
        )
        .args(&["--add-metadata-string=novalue"]),
        case(
            "source_date_epoch_not_a_number",
            BASE,
            3,
            &["SOURCE_DATE_EPOCH", "yesterday"],
        )
        .env("SOURCE_DATE_EPOCH", "yesterday"),
        case(
            "parent_does_not_exist",
            BASE,
            3,
            &["--parent 0123456789abcdef", "no such commit"],
        )
        .args(&[
            "--force-nocache",
            "--parent=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ]),
        case(
            "composejson_dir_missing",
            BASE,
            3,
            &["--write-composejson-to", "{dir}/nodir", "does not exist"],
        )
        .args(&[
            "--force-nocache",
            "--write-composejson-to={dir}/nodir/c.json",
        ]),
        case(
            "commitid_dir_missing",
            BASE,
            3,
            &["--write-commitid-to", "{dir}/nodir", "does not exist"],
        )
        .args(&["--force-nocache", "--write-commitid-to={dir}/nodir/id"]),
        case(
            "touch_if_changed_dir_missing",
            BASE,
            3,
            &["--touch-if-changed", "does not exist"],
        )
        .args(&["--force-nocache", "--touch-if-changed={dir}/nodir/t"]),
        case(
            "lockfile_missing",
            BASE,
            3,
            &["{dir}/nolock.json", "lockfile"],
        )
        .args(&["--ex-lockfile={dir}/nolock.json"]),
        case("metadata_json_missing", BASE, 3, &["{dir}/nometa.json"])
            .args(&["--add-metadata-from-json={dir}/nometa.json"]),
        case(
            "previous_commit_does_not_resolve",
            BASE,
            3,
            &["--previous-commit nosuchrev"],
        )
        .args(&["--previous-commit=nosuchrev"]),
        case(
            "oneshot_composejson_dir_missing",
            BASE,
            3,
            &["--write-composejson-to", "does not exist"],
        )
        .oneshot(&[
            "--force-nocache",
            "--write-composejson-to={dir}/nodir/c.json",
        ]),
        case(
            "repo_is_not_a_repo",
            BASE,
            3,
            &["not an OSTree repository", "ostree init"],
        )
        .file("plain/placeholder", "")
        .raw(&["--repo={dir}/plain"]),
        case(
            "repo_does_not_exist",
            BASE,
            3,
            &["no such directory", "ostree init"],
        )
        .raw(&["--repo={dir}/missing-repo"]),
        case("repo_is_a_file", BASE, 3, &["not an OSTree repository"])
            .file("afile", "x")
            .raw(&["--repo={dir}/afile"]),
        case(
            "cachedir_is_a_file",
            BASE,
            1,
            &["{dir}/afile", "cache directory"],
        )
        .file("afile", "x")
        .raw(&["--repo={repo}", "--cachedir={dir}/afile", "--force-nocache"]),
        case("repo_flag_missing", BASE, 2, &["--repo is required"]).raw(&[]),
        case(
            "unsupported_flag",
            BASE,
            4,
            &["--layer-repo", "not supported"],
        )
        .args(&["--layer-repo=/nonexistent"]),
        // --- One-shot flag values
        case("oneshot_max_layers_too_small", BASE, 3, &["--max-layers 2"])
            .oneshot(&["--oci=oci:{dir}/img", "--max-layers=2"]),
        case(
            "oneshot_bad_image_reference",
            BASE,
            3,
            &["nosuchtransport:x"],
        )
        .oneshot(&["--oci=nosuchtransport:x"]),
        case("oneshot_bad_label", BASE, 3, &["novalue"])
            .oneshot(&["--oci=oci:{dir}/img", "--label=novalue"]),
        case(
            "oneshot_repo_not_a_repo",
            BASE,
            3,
            &["{dir}/plain", "not an OSTree repository and not empty"],
        )
        .file("plain/placeholder", "")
        .oneshot(&["--repo={dir}/plain"]),
        case(
            "oneshot_repo_is_a_file",
            BASE,
            3,
            &["{dir}/afile", "not a directory"],
        )
        .file("afile", "x")
        .oneshot(&["--repo={dir}/afile"]),
        case(
            "oneshot_manifest_without_ref",
            &BASE.replace("ref: test/x86_64/bad\n", ""),
            3,
            &["m.yaml", "needs a `ref`"],
        )
        .oneshot(&[]),
    ]
}

/// Run every case; collect every failure and report them all at once.
#[test]
fn bad_inputs_are_refused_cleanly() {
    let f = fixture();
    let export = f.tmp.path().join("export");
    // A good one-shot export, so the one-shot cases have a ref to keep too.
    let good = f.case_dir("good-oneshot");
    std::fs::write(good.join("m.yaml"), BASE).unwrap();
    let out = run_bin(
        &[
            good.join("m.yaml").display().to_string(),
            format!("--repo={}", export.display()),
            format!(
                "--cachedir={}",
                f.tmp.path().join("oneshot-cache").display()
            ),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert!(out.status.success(), "good one-shot: {}", text(&out));
    let refs_before = refs(&f.repo);
    let export_refs_before = refs(&export);
    let oneshot_build = f.tmp.path().join("oneshot-cache/repo-build");
    let oneshot_build_refs_before = refs(&oneshot_build);
    assert_eq!(export_refs_before.len(), 1);

    let all = cases(&f.rpms);
    assert!(all.len() >= 30, "{} cases", all.len());
    let mut failures = Vec::new();
    let t0 = Instant::now();
    for c in &all {
        let t = Instant::now();
        let dir = f.case_dir(c.name);
        for (p, content) in &c.files {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let content = match String::from_utf8(content.clone()) {
                Ok(t) => t.replace("{dir}", &dir.display().to_string()).into_bytes(),
                Err(_) => content.clone(),
            };
            std::fs::write(&path, content).unwrap();
        }
        let subst = |s: &String| {
            s.replace("{dir}", &dir.display().to_string())
                .replace("{repo}", &f.repo.display().to_string())
        };
        let manifest = dir.join(c.manifest).display().to_string();
        let mut env: Vec<(&str, &str)> = vec![("SOURCE_DATE_EPOCH", "1700000000")];
        env.extend(c.env.iter().copied());
        let args: Vec<String> = match &c.run {
            Invocation::Tree(extra) => {
                let mut a = vec![
                    "compose".to_string(),
                    "tree".into(),
                    format!("--repo={}", f.repo.display()),
                    format!("--cachedir={}", f.cache.display()),
                ];
                a.extend(extra.iter().map(subst));
                a.push(manifest);
                a
            }
            Invocation::TreeRaw(extra) => {
                let mut a = vec!["compose".to_string(), "tree".into()];
                a.extend(extra.iter().map(subst));
                a.push(manifest);
                a
            }
            Invocation::OneShot(extra) => {
                let own_repo = extra.iter().any(|a| a.starts_with("--repo"));
                let mut a = vec![
                    manifest,
                    if own_repo {
                        String::new()
                    } else {
                        format!("--repo={}", export.display())
                    },
                    format!(
                        "--cachedir={}",
                        f.tmp.path().join("oneshot-cache").display()
                    ),
                ];
                a.extend(extra.iter().map(subst));
                a.retain(|x| !x.is_empty());
                a
            }
        };
        let out = run_bin(&args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut problems = Vec::new();
        if out.status.code() != Some(c.code) {
            problems.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
        }
        if stderr.contains("panicked") || out.status.code() == Some(101) {
            problems.push("panicked".into());
        }
        if !stderr.contains("error: ") {
            problems.push("no `error: ` line on stderr".into());
        }
        for e in &c.expect {
            let e = e.replace("{dir}", &dir.display().to_string());
            if !stderr.contains(&e) {
                problems.push(format!("stderr lacks {e:?}"));
            }
        }
        if refs(&f.repo) != refs_before {
            problems.push(format!(
                "refs of the build repo changed: {:?}",
                refs(&f.repo)
            ));
        }
        if refs(&oneshot_build) != oneshot_build_refs_before {
            problems.push(format!(
                "refs of the one-shot build repo changed: {:?}",
                refs(&oneshot_build)
            ));
        }
        if dir.join("plain/.ostree-composer.lock").exists() {
            problems.push("a lock file was put into a non-repository".into());
        }
        if refs(&export) != export_refs_before {
            problems.push(format!(
                "refs of the export repo changed: {:?}",
                refs(&export)
            ));
        }
        if let Err(e) = fsck_clean(&f.repo).and_then(|_| fsck_clean(&export)) {
            problems.push(e);
        }
        eprintln!(
            "case {:<34} exit {:?} in {:.1}s: {}",
            c.name,
            out.status.code(),
            t.elapsed().as_secs_f32(),
            stderr
                .lines()
                .rfind(|l| l.starts_with("error: "))
                .unwrap_or("(no error line)")
        );
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n{}",
                c.name,
                problems.join("; "),
                text(&out)
            ));
        }
    }
    eprintln!("{} cases in {:.1}s", all.len(), t0.elapsed().as_secs_f32());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
    // And the next good compose still works on both repos.
    let out = f.tree(
        &f.tmp.path().join("cases/good/m.yaml"),
        &["--force-nocache".into()],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Run `cmd`; false if it failed (e.g. mounts are not permitted here).
fn try_run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Checks shared by the special cases: the documented code, no panic, the
/// expected words, refs unchanged, fsck clean.
fn check_refused(
    out: &Output,
    code: i32,
    expect: &[&str],
    repo: &Path,
    before: &BTreeMap<String, String>,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert!(!stderr.contains("panicked"), "{}", text(out));
    for e in expect {
        assert!(stderr.contains(e), "stderr lacks {e:?}: {}", text(out));
    }
    assert_eq!(&refs(repo), before, "refs changed");
    if let Err(e) = fsck_clean(repo) {
        panic!("{e}");
    }
}

/// `--repo` on a read-only bind mount: a clear error, nothing changed.
/// (As root a chmod does not stop writes, so a read-only mount it is.)
#[test]
fn read_only_repo_is_refused() {
    let f = fixture();
    let ro = f.tmp.path().join("repo-ro");
    std::fs::create_dir_all(&ro).unwrap();
    if !try_run(Command::new("mount").arg("--bind").arg(&f.repo).arg(&ro)) {
        eprintln!("SKIP: bind mounts are not permitted here (not root / no CAP_SYS_ADMIN)");
        return;
    }
    let _m = Mount(ro.clone());
    assert!(try_run(
        Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(&ro)
    ));
    let before = refs(&ro);
    let dir = f.case_dir("ro");
    std::fs::write(dir.join("m.yaml"), BASE.replace("app]", "app, libfoo]")).unwrap();
    let out = run_bin(
        &[
            "compose".into(),
            "tree".into(),
            format!("--repo={}", ro.display()),
            format!("--cachedir={}", f.cache.display()),
            dir.join("m.yaml").display().to_string(),
        ],
        &[],
    );
    check_refused(
        &out,
        1,
        &[&ro.display().to_string(), "Read-only file system"],
        &ro,
        &before,
    );
}

/// The repo's filesystem fills up in the middle of the commit: the commit
/// fails, the ref stays, fsck is clean, and once there is room again the
/// next compose works without any clean-up.
#[test]
fn disk_full_mid_commit_leaves_repo_intact() {
    let f = fixture();
    let img = f.tmp.path().join("small.img");
    let mnt = f.tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let made = try_run(Command::new("truncate").args(["-s", "20M"]).arg(&img))
        && try_run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
    assert!(made, "creating an ext4 image");
    if !try_run(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt),
    ) {
        eprintln!("SKIP: loop mounts are not permitted here (not root / no loop devices)");
        return;
    }
    let _m = Mount(mnt.clone());
    let repo = mnt.join("repo");
    assert!(try_run(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["init", "--mode=bare-user"])
    ));
    let dir = f.case_dir("full");
    std::fs::write(dir.join("m.yaml"), BASE).unwrap();
    std::fs::write(dir.join("big.yaml"), BASE.replace("app]", "app, bigdata]")).unwrap();
    let tree = |m: &str, extra: &[&str]| {
        let mut a = vec![
            "compose".to_string(),
            "tree".into(),
            format!("--repo={}", repo.display()),
            format!("--cachedir={}", f.cache.display()),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(dir.join(m).display().to_string());
        run_bin(&a, &[("SOURCE_DATE_EPOCH", "1700000000")])
    };
    let out = tree("m.yaml", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = refs(&repo);
    // libostree's own guard first (core.min-free-space-percent, default 3%)...
    let out = tree("big.yaml", &[]);
    check_refused(&out, 1, &["min-free-space-percent"], &repo, &before);
    // ...then without it, a real ENOSPC in the middle of writing objects.
    assert!(try_run(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["config", "set", "core.min-free-space-percent", "0"])
    ));
    let out = tree("big.yaml", &[]);
    check_refused(&out, 1, &["No space left on device"], &repo, &before);
    // Room again (the 24 MiB file was the problem): the next run just works.
    let out = tree("m.yaml", &["--force-nocache"]);
    assert!(out.status.success(), "after ENOSPC: {}", text(&out));
    assert_ne!(refs(&repo), before);
    fsck_clean(&repo).unwrap();
}

/// A registry that is down: the commit and the export are made (they come
/// first), the image push fails with exit 5 naming the registry, and both
/// repos are consistent; the next run (registry still down) fails the same
/// way without needing any clean-up.
#[test]
fn registry_down_is_an_output_failure() {
    let f = fixture();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound and dropped: nothing listens there now
    let export = f.tmp.path().join("export-down");
    let cache = f.tmp.path().join("cache-down");
    let dir = f.case_dir("down");
    std::fs::write(dir.join("m.yaml"), BASE).unwrap();
    let dest = format!("docker://127.0.0.1:{port}/test/os:latest");
    let t = Instant::now();
    for _ in 0..2 {
        let out = run_bin(
            &[
                dir.join("m.yaml").display().to_string(),
                format!("--repo={}", export.display()),
                format!("--cachedir={}", cache.display()),
                format!("--oci={dest}"),
                "--dest-tls-verify=false".into(),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{}", text(&out));
        assert!(!stderr.contains("panicked"), "{}", text(&out));
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}")),
            "{}",
            text(&out)
        );
        // The export happened and is consistent.
        let r = refs(&export);
        assert_eq!(r.len(), 1, "{r:?}");
        fsck_clean(&export).unwrap();
        fsck_clean(&cache.join("repo-build")).unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "a down registry must fail fast"
    );
}

mod resolver_fuzz {
    //! Arbitrary manifest trees (several files including each other, with
    //! conditions, variables, externals and garbage) through the whole
    //! loader: never a panic, and every refusal is classified invalid input
    //! (exit 3). The case count follows `PROPTEST_CASES` (default 256).
    use ostree_composer::exit::{class_of, ErrorClass};
    use ostree_composer::treefile::{LoadOptions, Treefile};
    use proptest::prelude::*;

    fn file_ref() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..4u8).prop_map(|n| format!("f{n}.yaml")),
            Just("missing.yaml".to_string()),
            Just("sub".to_string()),
            Just("../f0.yaml".to_string()),
            Just("data.txt".to_string()),
            "[a-z./]{0,12}",
        ]
    }

    fn condition() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("basearch == \"x86_64\"".to_string()),
            Just("releasever >= 3".to_string()),
            Just("myvar".to_string()),
            Just("undefined_thing == 1".to_string()),
            Just("myvar == \"a\" && basearch != \"s390x\"".to_string()),
            "[a-z =<>!\"0-9&|()]{0,20}",
        ]
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("true".to_string()),
            Just("1".to_string()),
            Just("\"a\"".to_string()),
            Just("[a, 1]".to_string()),
            Just("{x: y}".to_string()),
            Just("null".to_string()),
            Just("${basearch}".to_string()),
            Just("\"${nope}\"".to_string()),
            "[a-z0-9/${}. -]{0,10}",
        ]
    }

    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            file_ref().prop_map(|f| format!("include: {f}\n")),
            (file_ref(), file_ref()).prop_map(|(a, b)| format!("include: [{a}, {b}]\n")),
            (condition(), file_ref()).prop_map(|(c, f)| format!(
                "conditional-include:\n  - if: '{}'\n    include: {f}\n",
                c.replace('\'', "")
            )),
            (condition(), scalar()).prop_map(|(c, v)| format!(
                "conditional-include:\n  - if: '{}'\n    include:\n      packages: [{v}]\n",
                c.replace('\'', "")
            )),
            scalar().prop_map(|v| format!("variables:\n  myvar: {v}\n")),
            Just("variables:\n  basearch: x\n".to_string()),
            scalar().prop_map(|v| format!("ref: {v}\n")),
            scalar().prop_map(|v| format!("packages: [{v}]\n")),
            scalar().prop_map(|v| format!("releasever: {v}\n")),
            (file_ref(), "[/a-z.]{0,16}")
                .prop_map(|(s, d)| format!("add-files:\n  - [\"{s}\", \"{d}\"]\n")),
            "[/a-z.]{0,16}".prop_map(|p| format!("remove-files: [\"{p}\"]\n")),
            file_ref().prop_map(|f| format!("postprocess-script: {f}\n")),
            file_ref().prop_map(|f| format!("check-passwd:\n  type: file\n  filename: {f}\n")),
            file_ref().prop_map(|f| format!("arch-include:\n  x86_64: {f}\n")),
            scalar().prop_map(|v| format!("{v}: {v}\n")),
            ".{0,30}",
        ]
    }

    fn file_body() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => proptest::collection::vec(entry(), 0..5).prop_map(|v| v.concat()),
            1 => ".{0,60}",
            1 => proptest::collection::vec(entry(), 0..4)
                .prop_map(|v| format!("{{\"packages\": [\"a\"], \"bad\": {:?}}}", v.concat())),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_manifest_trees_never_panic(bodies in proptest::collection::vec(file_body(), 1..5)) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("sub")).unwrap();
            std::fs::write(dir.path().join("data.txt"), "data\n").unwrap();
            for (i, b) in bodies.iter().enumerate() {
                std::fs::write(dir.path().join(format!("f{i}.yaml")), b).unwrap();
            }
            let top = dir.path().join("f0.yaml");
            let result = Treefile::load(&top, &LoadOptions::default()).and_then(|tf| {
                tf.validate_for_compose()?;
                tf.strict_ref()?;
                let _ = tf.to_json_pretty();
                let _ = tf.checksum();
                Ok(())
            });
            if let Err(e) = result {
                prop_assert_eq!(
                    class_of(&e),
                    Some(ErrorClass::InvalidInput),
                    "unclassified refusal: {:#}\nfiles: {:?}",
                    e,
                    bodies
                );
            }
        }
    }
}

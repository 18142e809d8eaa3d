//! The dnf backend: finds the host's dnf and drives it.
//!
//! dnf 4 (what Debian, Fedora ≤ 40 and RHEL ship): we run the embedded
//! `dnf_helper.py` with the same Python interpreter the `dnf` script uses and
//! talk JSON over stdin/stdout. The Python API, not the CLI, because only the
//! API can depsolve without installing and report the transaction with rpm-md
//! checksums, apply lockfile excludes to the sack, and see a failing `%post`
//! (the CLI exits 0 after a scriptlet error).
//!
//! dnf 5 (Fedora ≥ 41): python3-dnf (dnf 4) is still packaged there and is
//! used when present. A host with only dnf5 is detected and refused with a
//! clear "unsupported" error: a dnf5 driver (libdnf5 bindings or its CLI)
//! cannot be exercised on this build host, and an untested path is not
//! shipped. See [`Backend::Dnf5`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use super::{lockfile, InstallRequest, InstalledFilesSink, Resolution};
use crate::exit::{invalid_input, unsupported};

pub(super) const HELPER: &str = include_str!("dnf_helper.py");
/// What rpm-ostree passes as `$releasever` when the treefile sets none.
pub(super) const UNSET_RELEASEVER: &str = "rpmostree-unset-releasever";

/// Which dnf the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// dnf 4, driven through its Python API with this interpreter.
    Dnf4 { python: PathBuf },
    /// DNF5-ONLY HOSTS: not implemented (cannot be tested here).
    Dnf5 { dnf5: PathBuf },
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The interpreter named by a `#!` line, if it is a Python.
fn python_from_shebang(script: &[u8]) -> Option<PathBuf> {
    let first = script.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?;
    let mut words = line.split_whitespace();
    let interp = words.next()?;
    let interp = if interp.ends_with("/env") {
        words.find(|w| !w.starts_with('-'))?
    } else {
        interp
    };
    interp.contains("python").then(|| PathBuf::from(interp))
}

impl Backend {
    /// Find dnf 4's Python: the interpreter of the `dnf` script (Debian,
    /// Fedora ≤ 40) or of `dnf-3` (Fedora ≥ 41 with python3-dnf beside
    /// dnf5), else a `python3` that can `import dnf`; failing that, dnf 5.
    pub fn detect() -> Result<Backend> {
        for name in ["dnf", "dnf-3"] {
            let Some(script) = find_in_path(name) else {
                continue;
            };
            let head =
                std::fs::read(&script).with_context(|| format!("Reading {}", script.display()))?;
            if let Some(python) = python_from_shebang(&head[..head.len().min(256)]) {
                return Ok(Backend::Dnf4 { python });
            }
        }
        let python = PathBuf::from("/usr/bin/python3");
        let has_dnf_module = Command::new(&python)
            .args(["-c", "import dnf"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if has_dnf_module {
            return Ok(Backend::Dnf4 { python });
        }
        if let Some(dnf5) = find_in_path("dnf5") {
            return Ok(Backend::Dnf5 { dnf5 });
        }
        bail!("dnf was not found: install dnf 4 (the python3-dnf package) on the build host")
    }

    /// Start the helper (one process for any number of requests).
    pub fn session(&self) -> Result<Session> {
        let Backend::Dnf4 { python } = self else {
            // DNF5-ONLY HOSTS: see the module comment; base_request says why.
            return Ok(Session {
                backend: self.clone(),
                helper: None,
                rpmdb_pending: None,
            });
        };
        Ok(Session {
            backend: self.clone(),
            helper: Some(Helper::spawn(python)?),
            rpmdb_pending: None,
        })
    }
}

/// One running dnf helper. A resolve followed by an install on the same
/// session reuses the resolve's loaded metadata and depsolve (the helper keeps
/// them), instead of starting Python and loading the repositories again.
pub struct Session {
    backend: Backend,
    helper: Option<Helper>,
    /// A `writedb` request was sent (and whether it could be), its reply
    /// not read yet.
    rpmdb_pending: Option<bool>,
}

impl Session {
    pub fn resolve(&mut self, req: &InstallRequest) -> Result<Resolution> {
        let locked = if req.lockfiles.is_empty() {
            Vec::new()
        } else {
            let lf = lockfile::read(&req.lockfiles)?;
            lf.packages
                .values()
                .map(|p| json!({"name": p.name, "evr": p.evr, "arch": p.arch, "digest": p.digest}))
                .collect()
        };
        let mut request = self.backend.base_request(req)?;
        request["action"] = json!("resolve");
        request["locked"] = json!(locked);
        let reply = self.run(&request)?;
        let res: Resolution = serde_json::from_value(reply)
            .context("Unexpected reply from the dnf helper (resolve)")?;
        Ok(res)
    }

    pub fn download(&mut self, req: &InstallRequest, res: &Resolution) -> Result<()> {
        let mut request = self.backend.base_request(req)?;
        request["action"] = json!("download");
        request["transaction"] = json!(res.packages);
        eprintln!(
            "Will download: {} packages ({} bytes)",
            res.packages.len(),
            res.download_size()
        );
        self.run(&request).map(drop)
    }

    pub fn install(
        &mut self,
        req: &InstallRequest,
        res: &Resolution,
        root: &Path,
        files: Option<&InstalledFilesSink>,
    ) -> Result<()> {
        let (root, mut request) = self.install_request(req, res, root)?;
        request["report_files"] = json!(files.is_some());
        eprintln!(
            "Installing {} packages into {}",
            res.packages.len(),
            root.display()
        );
        let on_event = |event: Event| {
            if let (Some(sink), Event::Installed { files }) = (files, event) {
                sink.send(&root, files.iter().map(|f| relative(f)).collect());
            }
        };
        self.run_with_events(&request, &on_event).map(drop)
    }

    /// The cached installer's plan: rpm orders the transaction of `res` that
    /// will write its rpmdb into `root` (`--justdb`, started by
    /// [`Session::start_rpmdb`]), and the helper says, in that order, what
    /// each package's files and scriptlets are (see `plan_cached_install` in
    /// the helper). `Blocked` when a package needs rpm's own install.
    pub fn plan_cached(
        &mut self,
        req: &InstallRequest,
        res: &Resolution,
        root: &Path,
    ) -> Result<super::assemble::PlanOutcome> {
        let (_, mut request) = self.install_request(req, res, root)?;
        request["cached"] = json!(true);
        let reply = self.run(&request)?;
        serde_json::from_value(reply)
            .context("Unexpected reply from the dnf helper (cached install plan)")
    }

    /// Download and check the RPMs of `res` (as an install does first) and
    /// say where they are and whether the cached installer can install them.
    pub fn locate(
        &mut self,
        req: &InstallRequest,
        res: &Resolution,
    ) -> Result<super::assemble::Located> {
        let mut request = self.backend.base_request(req)?;
        request["action"] = json!("locate");
        request["transaction"] = json!(res.packages);
        let reply = self.run(&request)?;
        serde_json::from_value(reply).context("Unexpected reply from the dnf helper (locate)")
    }

    /// Start writing the rpmdb of the last [`Session::plan_cached`] (the
    /// helper runs rpm's `--justdb` transaction); the caller may put files
    /// in place meanwhile and must call [`Session::finish_rpmdb`] before any
    /// other request.
    pub fn start_rpmdb(&mut self) -> Result<()> {
        let helper = self.helper_mut()?;
        let sent = helper.send(&json!({"action": "writedb"}))?;
        self.rpmdb_pending = Some(sent);
        Ok(())
    }

    /// Wait for the rpmdb started by [`Session::start_rpmdb`] (no-op when
    /// none is pending).
    pub fn finish_rpmdb(&mut self) -> Result<()> {
        let Some(sent) = self.rpmdb_pending.take() else {
            return Ok(());
        };
        self.helper_mut()?.receive(sent, &|_| {}).map(drop)
    }

    fn helper_mut(&mut self) -> Result<&mut Helper> {
        match &mut self.helper {
            Some(helper) => Ok(helper),
            None => bail!("internal error: dnf helper request without dnf 4"),
        }
    }

    /// Run scriptlet or trigger `kind` (see
    /// [`super::assemble::PlannedPackage::scripts`]) of package `index` of the
    /// last [`Session::plan_cached`], as rpm would.
    pub fn run_scriptlet(&mut self, index: usize, kind: &str) -> Result<()> {
        let request = json!({"action": "scriptlet", "index": index, "kind": kind});
        self.run(&request).map(drop)
    }

    /// An install request of `res` into `root` (made absolute and created).
    fn install_request(
        &self,
        req: &InstallRequest,
        res: &Resolution,
        root: &Path,
    ) -> Result<(PathBuf, serde_json::Value)> {
        let root = absolute(root)?;
        std::fs::create_dir_all(&root)
            .with_context(|| format!("Creating install root {}", root.display()))?;
        let mut request = self.backend.base_request(req)?;
        request["action"] = json!("install");
        request["transaction"] = json!(res.packages);
        request["installroot"] = json!(root);
        Ok((root, request))
    }

    fn run(&mut self, request: &serde_json::Value) -> Result<serde_json::Value> {
        self.run_with_events(request, &|_| {})
    }

    fn run_with_events(
        &mut self,
        request: &serde_json::Value,
        on_event: &dyn Fn(Event),
    ) -> Result<serde_json::Value> {
        self.finish_rpmdb()?;
        self.helper_mut()?.request(request, on_event)
    }
}

impl Backend {
    /// The request fields every action shares; validates the repositories.
    fn base_request(&self, req: &InstallRequest) -> Result<serde_json::Value> {
        if let Backend::Dnf5 { dnf5 } = self {
            // DNF5-ONLY HOSTS: see the module comment.
            return Err(unsupported(format!(
                "Only dnf5 was found ({}); ostree-composer needs dnf 4's Python API: \
                 install python3-dnf (Fedora still packages it beside dnf5)",
                dnf5.display()
            )));
        }
        let lockfile_repos = super::active_lockfile_repos(req);
        let enabled = super::enabled_repos(req)?;
        let wants_packages =
            !req.packages.is_empty() || req.repo_packages.iter().any(|(_, p)| !p.is_empty());
        if enabled.is_empty() && wants_packages {
            return Err(invalid_input(format!(
                "No enabled repositories (no enabled=1 repository in the .repo files in {}, and no 'repos' key)",
                req.repos_dir.display()
            )));
        }
        for (repo, _) in &req.repo_packages {
            if !enabled.iter().any(|r| &r.id == repo) {
                return Err(invalid_input(format!(
                    "repo-packages names repository '{repo}', which is not enabled (add it to 'repos')"
                )));
            }
        }
        let cachedir = absolute(&req.cachedir)?;
        std::fs::create_dir_all(&cachedir)
            .with_context(|| format!("Creating cache directory {}", cachedir.display()))?;
        Ok(json!({
            "reposdir": absolute(&req.repos_dir)?,
            "enable": enabled.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            "releasever": req.releasever.clone().unwrap_or_else(|| UNSET_RELEASEVER.to_string()),
            "basearch": req.basearch,
            "repovars": req.repovars,
            "cachedir": cachedir,
            "cache_only": req.cache_only,
            "proxy": req.proxy,
            "packages": req.packages,
            "repo_packages": req.repo_packages,
            "exclude": req.exclude_packages,
            "recommends": req.recommends,
            "documentation": req.documentation,
            "install_langs": req.install_langs,
            "lock_strict": req.lockfile_strict && !req.lockfiles.is_empty(),
            "lockfile_repos": lockfile_repos,
        }))
    }
}

/// The helper process: one JSON request per line on its stdin, one JSON
/// reply per line on its stdout, progress on stderr (inherited).
struct Helper {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    replies: std::io::BufReader<std::process::ChildStdout>,
    work: tempfile::TempDir,
}

impl Helper {
    fn spawn(python: &Path) -> Result<Helper> {
        let work = tempfile::tempdir().context("Creating a temporary directory for dnf")?;
        let home = work.path().join("home");
        std::fs::create_dir_all(&home).context("Creating dnf's private HOME")?;
        // Debian's rpm keeps its rpmdb in ~/.rpmdb; pin it for rpm and rpmkeys.
        std::fs::write(
            home.join(".rpmmacros"),
            "%_dbpath /usr/share/rpm\n%_db_backend sqlite\n",
        )
        .context("Writing .rpmmacros for dnf")?;
        let script = work.path().join("dnf_helper.py");
        std::fs::write(&script, HELPER).context("Writing the dnf helper script")?;
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        super::die_with_parent(&mut cmd);
        super::nosyncfs::skip_syncfs(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("Running {} (dnf's Python)", python.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("dnf helper has no stdout"))?;
        Ok(Helper {
            child,
            stdin,
            replies: std::io::BufReader::new(stdout),
            work,
        })
    }

    /// Send `request`; its JSON reply, or its error. Event lines the helper
    /// writes before the reply go to `on_event`.
    fn request(
        &mut self,
        request: &serde_json::Value,
        on_event: &dyn Fn(Event),
    ) -> Result<serde_json::Value> {
        let sent = self.send(request)?;
        self.receive(sent, on_event)
    }

    /// Write `request`; whether it could be written (a helper that died
    /// cannot read it: [`Helper::receive`] then says how it ended).
    fn send(&mut self, request: &serde_json::Value) -> Result<bool> {
        let mut request = request.clone();
        request["workdir"] = json!(self.work.path());
        let mut line = serde_json::to_string(&request)?;
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("dnf helper has no stdin"))?;
        Ok(stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .is_ok())
    }

    /// The reply to the request just sent (see [`Helper::request`]).
    fn receive(&mut self, sent: bool, on_event: &dyn Fn(Event)) -> Result<serde_json::Value> {
        use std::io::BufRead as _;
        let mut text = String::new();
        let read = match sent {
            true => loop {
                text.clear();
                match self.replies.read_line(&mut text) {
                    Ok(n) if n > 0 => {
                        if text.starts_with(EVENT_PREFIX) {
                            // An event we cannot read is only a lost hint.
                            if let Ok(EventLine { event }) = serde_json::from_str(text.trim()) {
                                on_event(event);
                            }
                            continue;
                        }
                        break Ok(true);
                    }
                    other => break other.map(|_| false),
                }
            },
            false => Ok(false),
        };
        let reply: Option<Reply> = match read {
            Ok(true) => serde_json::from_str(text.trim()).ok(),
            _ => None,
        };
        match reply {
            Some(Reply {
                error: Some(message),
                class,
                ..
            }) => Err(match class.as_deref() {
                Some("invalid_input") => invalid_input(message),
                _ => anyhow!(message),
            }),
            Some(Reply { rest, .. }) => Ok(serde_json::Value::Object(rest)),
            None => {
                // The helper died or wrote garbage: report how it ended.
                self.stdin = None;
                let status = self.child.wait().context("Waiting for the dnf helper")?;
                bail!(
                    "The dnf helper failed ({status}){}",
                    if text.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", text.trim())
                    }
                )
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // End of input: the helper exits; reap it so no zombie is left.
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// How the helper's event lines start (`json.dumps` of `{"event": ...}`).
const EVENT_PREFIX: &str = "{\"event\": ";

/// A line the helper writes before its reply.
#[derive(Deserialize)]
struct EventLine {
    event: Event,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Event {
    /// A package is installed: its regular files (paths as in the package).
    Installed { files: Vec<String> },
}

/// `file` (absolute, as rpm lists it) relative to the install root.
fn relative(file: &str) -> PathBuf {
    PathBuf::from(file.trim_start_matches('/'))
}

#[derive(Deserialize)]
struct Reply {
    error: Option<String>,
    class: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .with_context(|| format!("Making {} absolute: no current directory", p.display()))?;
    Ok(cwd.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_detection() {
        assert_eq!(
            python_from_shebang(b"#!/usr/bin/python3\nimport dnf"),
            Some(PathBuf::from("/usr/bin/python3"))
        );
        assert_eq!(
            python_from_shebang(b"#!/usr/bin/env -S python3 -s\n"),
            Some(PathBuf::from("python3"))
        );
        assert_eq!(python_from_shebang(b"\x7fELF\x02"), None);
        assert_eq!(python_from_shebang(b"#!/bin/sh\n"), None);
    }
}

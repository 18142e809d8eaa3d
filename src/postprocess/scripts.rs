//! Treefile `postprocess` (inline) and `postprocess-script` scripts (§4.4 m),
//! run inside the new root.
//!
//! rpm-ostree uses bubblewrap; a default rootless podman container cannot
//! create mount namespaces, so we `chroot(8)` into the root instead (allowed
//! there: the container's root has CAP_SYS_CHROOT). Each script is written to
//! `/usr/bin` in the root (0755), run with `/` as its working directory, a
//! minimal environment (`LANG`, `PATH=/usr/sbin:/usr/bin`, `SOURCE_DATE_EPOCH`
//! if set, `SYSTEMD_OFFLINE=1`), `/etc` present through the temp-etc guard, and
//! deleted afterwards. stdout/stderr pass through.
//!
//! Differences from bubblewrap, by construction: there is no private `/dev`
//! (only an empty regular file standing in for `/dev/null` while a script
//! runs), `/proc`, `/run` or `/tmp` (a script sees what is in the root), `/var` is
//! writable, and a root-privileged script that deliberately breaks out of a
//! chroot is not contained. Ordinary writes to absolute paths land inside the
//! root. Not for RPM scriptlets (the installer runs those through rpm).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;

use super::fsutil;
use super::treefile_steps::TempEtcGuard;
use crate::exit::invalid_input;

/// `PATH` inside the root.
pub const SCRIPT_PATH_ENV: &str = "/usr/sbin:/usr/bin";

/// The inline scripts and the optional `postprocess-script`, in treefile order.
#[derive(Debug, Clone, Default)]
pub struct PostprocessScripts {
    /// `postprocess`: each must start with a shebang (`#!`).
    pub inline: Vec<String>,
    /// `postprocess-script`, run after all inline scripts.
    pub script: Option<PostprocessScript>,
    /// Environment passed to the scripts.
    pub env: ScriptEnv,
}

/// The `postprocess-script` file, already read by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostprocessScript {
    /// Where it came from, for messages (the treefile path value).
    pub name: String,
    pub contents: Vec<u8>,
}

/// The environment a script gets (nothing else from the host leaks in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptEnv {
    /// `LANG` (the host's, or `C`).
    pub lang: String,
    /// `SOURCE_DATE_EPOCH`, forwarded when set.
    pub source_date_epoch: Option<String>,
}

impl ScriptEnv {
    /// `LANG` and `SOURCE_DATE_EPOCH` from this process's environment.
    pub fn from_host() -> Self {
        ScriptEnv {
            lang: std::env::var("LANG")
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "C".into()),
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        }
    }

    /// The complete environment as (name, value) pairs.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("LANG", self.lang.clone()),
            ("PATH", SCRIPT_PATH_ENV.to_string()),
        ];
        if let Some(e) = &self.source_date_epoch {
            v.push(("SOURCE_DATE_EPOCH", e.clone()));
        }
        v.push(("SYSTEMD_OFFLINE", "1".to_string()));
        v
    }
}

impl Default for ScriptEnv {
    /// Same as [`ScriptEnv::from_host`].
    fn default() -> Self {
        Self::from_host()
    }
}

/// Check that every script has a usable shebang line (invalid input if not).
pub fn check_scripts(scripts: &PostprocessScripts) -> Result<()> {
    for (i, body) in scripts.inline.iter().enumerate() {
        interpreter_of(body.as_bytes())
            .map_err(|m| invalid_input(format!("postprocess[{i}]: {m}")))?;
    }
    if let Some(s) = &scripts.script {
        interpreter_of(&s.contents)
            .map_err(|m| invalid_input(format!("postprocess-script {}: {m}", s.name)))?;
    }
    Ok(())
}

/// Run all inline scripts, then the `postprocess-script`, inside `root_path`.
pub fn run_postprocess_scripts(root_path: &Path, scripts: &PostprocessScripts) -> Result<()> {
    // Check every script before running any, so a bad one later in the list
    // does not leave a half-processed root.
    check_scripts(scripts)?;
    for (i, body) in scripts.inline.iter().enumerate() {
        eprintln!("Executing `postprocess` inline script '{i}'");
        let script = Script {
            label: format!("postprocess[{i}] (inline script)"),
            path_in_root: format!("usr/bin/rpmostree-postprocess-inline-{i}"),
            contents: body.as_bytes(),
        };
        run_script_in_root(root_path, &script, &scripts.env)?;
    }
    if let Some(s) = &scripts.script {
        eprintln!("Executing postprocessing script");
        let script = Script {
            label: format!("postprocess-script {}", s.name),
            path_in_root: "usr/bin/rpmostree-treefile-postprocess-script".into(),
            contents: &s.contents,
        };
        run_script_in_root(root_path, &script, &scripts.env)?;
        eprintln!("Finished postprocessing script");
    }
    Ok(())
}

/// One script to stage and run.
#[derive(Debug, Clone)]
pub struct Script<'a> {
    /// Name used in messages (`postprocess[2] (inline script)`).
    pub label: String,
    /// Root-relative path it is written to (must be under `usr/bin`).
    pub path_in_root: String,
    pub contents: &'a [u8],
}

/// Write `script` into the root, run it chrooted with the temp-etc guard on,
/// and delete it again (also when it fails).
pub fn run_script_in_root(root_path: &Path, script: &Script<'_>, env: &ScriptEnv) -> Result<()> {
    let root = fsutil::open_root(root_path)?;
    let interpreter = interpreter_of(script.contents)
        .map_err(|m| invalid_input(format!("{}: {m}", script.label)))?;
    let staged = StagedScript::write(&root, &script.path_in_root, script.contents)
        .with_context(|| format!("Staging {}", script.label))?;
    let guard = TempEtcGuard::new(&root)?;
    // The interpreter is looked up after the guard so `/etc`-relative links work.
    if fsutil::resolve_in_root(&root, &interpreter)?.is_none() {
        return Err(anyhow::anyhow!(
            "{}: interpreter {interpreter} not found in the target root (install the \
             package that provides it)",
            script.label
        ));
    }
    let dev_null = DevNullShim::new(&root)?;
    let status = run_chrooted(root_path, &format!("/{}", script.path_in_root), env)
        .with_context(|| format!("Running {}", script.label))?;
    dev_null.remove()?;
    guard.undo()?;
    staged.remove()?;
    if !status.success() {
        anyhow::bail!("{} failed: {}", script.label, describe_status(status));
    }
    Ok(())
}

/// Run `program` (an absolute path inside the root) chrooted into `root_path`.
fn run_chrooted(root_path: &Path, program: &str, env: &ScriptEnv) -> Result<ExitStatus> {
    let chroot = host_tool("chroot")?;
    let mut cmd = Command::new(&chroot);
    cmd.arg(root_path)
        .arg(program)
        .env_clear()
        .envs(env.vars())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    crate::install::die_with_parent(&mut cmd);
    let status = cmd
        .status()
        .with_context(|| format!("Spawning {} {}", chroot.display(), root_path.display()))?;
    Ok(status)
}

/// Find a tool on the host's `PATH` (looked up before the child's environment
/// is cleared, so the script's `PATH` never selects host binaries).
fn host_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found on the host (install coreutils)"))
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(127), _) => "exit status 127 (command not found, or chroot failed)".into(),
        (Some(125), _) => "exit status 125 (chroot failed: not permitted?)".into(),
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("{status}"),
    }
}

/// The interpreter path of a script (`#!/bin/bash -e` → `/bin/bash`), or why
/// it has none.
pub fn interpreter_of(contents: &[u8]) -> std::result::Result<String, String> {
    let Some(rest) = contents.strip_prefix(b"#!") else {
        return Err("script must start with a shebang line (#!/path/to/interpreter)".into());
    };
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = std::str::from_utf8(&rest[..line_end])
        .map_err(|_| "the shebang line is not valid UTF-8".to_string())?;
    let interp = line.split_whitespace().next().unwrap_or("");
    if interp.is_empty() {
        return Err("the shebang line names no interpreter".into());
    }
    if !interp.starts_with('/') {
        return Err(format!(
            "the shebang interpreter {interp:?} must be an absolute path"
        ));
    }
    Ok(interp.to_string())
}

/// Without mount namespaces we cannot give scripts a real `/dev`, and a
/// rootless container may not create device nodes. So that the ubiquitous
/// `>/dev/null` and `</dev/null` work, an empty regular file stands in for
/// `/dev/null` while a script runs: reads see EOF until the script itself
/// writes to it, and what it wrote is discarded with the file afterwards.
/// Only what this shim created is removed again.
struct DevNullShim {
    root: Option<Dir>,
    created_dev: bool,
}

impl DevNullShim {
    fn new(root: &Dir) -> Result<Self> {
        if fsutil::exists_nofollow(root, "dev/null")? {
            return Ok(DevNullShim {
                root: None,
                created_dev: false,
            });
        }
        let created_dev = !fsutil::exists_nofollow(root, "dev")?;
        if created_dev {
            fsutil::ensure_dir_mode(root, "dev", 0o755)?;
        }
        let shim = DevNullShim {
            root: Some(
                root.try_clone()
                    .context("Duplicating root directory handle")?,
            ),
            created_dev,
        };
        fsutil::write_file_mode(root, "dev/null", b"", 0o666)?;
        Ok(shim)
    }

    fn remove(mut self) -> Result<()> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<()> {
        let Some(root) = self.root.take() else {
            return Ok(());
        };
        root.remove_all_optional("dev/null")
            .context("Removing the /dev/null stand-in")?;
        if self.created_dev {
            root.remove_dir("dev")
                .context("Removing the /dev directory made for scripts")?;
        }
        Ok(())
    }
}

impl Drop for DevNullShim {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            eprintln!("error: {e:#}");
        }
    }
}

/// A script written into the root; removed by [`StagedScript::remove`] or on drop.
struct StagedScript {
    root: Option<Dir>,
    path: String,
}

impl StagedScript {
    fn write(root: &Dir, path: &str, contents: &[u8]) -> Result<Self> {
        fsutil::write_file_mode(root, path, contents, 0o755)?;
        Ok(StagedScript {
            root: Some(
                root.try_clone()
                    .context("Duplicating root directory handle")?,
            ),
            path: path.to_string(),
        })
    }

    fn remove(mut self) -> Result<()> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<()> {
        let Some(root) = self.root.take() else {
            return Ok(());
        };
        root.remove_file(&self.path)
            .with_context(|| format!("Removing /{}", self.path))
    }
}

impl Drop for StagedScript {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            eprintln!("error: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_parsing() {
        assert_eq!(interpreter_of(b"#!/bin/bash\necho").unwrap(), "/bin/bash");
        assert_eq!(
            interpreter_of(b"#! /usr/bin/env bash\n").unwrap(),
            "/usr/bin/env"
        );
        assert_eq!(interpreter_of(b"#!/bin/sh -e").unwrap(), "/bin/sh");
        assert!(interpreter_of(b"echo hi\n")
            .unwrap_err()
            .contains("shebang"));
        assert!(interpreter_of(b" #!/bin/sh\n").is_err());
        assert!(interpreter_of(b"#!\n").is_err());
        assert!(interpreter_of(b"#!bash\n")
            .unwrap_err()
            .contains("absolute"));
    }

    #[test]
    fn env_is_minimal() {
        let env = ScriptEnv {
            lang: "C.UTF-8".into(),
            source_date_epoch: Some("1700000000".into()),
        };
        assert_eq!(
            env.vars(),
            vec![
                ("LANG", "C.UTF-8".to_string()),
                ("PATH", "/usr/sbin:/usr/bin".to_string()),
                ("SOURCE_DATE_EPOCH", "1700000000".to_string()),
                ("SYSTEMD_OFFLINE", "1".to_string()),
            ]
        );
        let env = ScriptEnv {
            lang: "C".into(),
            source_date_epoch: None,
        };
        assert_eq!(env.vars().len(), 3);
    }
}

//! Copy a finished local OCI image to its destination with `skopeo copy`,
//! retrying transient failures with exponential backoff (`oci-archive:`
//! destinations are written directly, see [`super::archive`]).
//!
//! Digests are preserved (`--preserve-digests`: skopeo fails rather than
//! re-encode), and the pushed manifest digest is read back from `--digestfile`.
//! Credentials never reach a log line or an error: only the authfile *path* is
//! passed, and any secret found in the authfile is scrubbed from skopeo's output
//! before it is shown.
//!
//! Not for: building or changing the image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::imageref::Destination;

/// How to copy.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Verify TLS for registry destinations.
    pub tls_verify: bool,
    /// A containers-auth.json file for the destination registry.
    pub authfile: Option<PathBuf>,
    /// Extra attempts after the first failure.
    pub retries: u32,
    /// Wait before the first retry; doubled each time (capped at 60s).
    pub initial_backoff: Duration,
    /// A directory for skopeo's temporary files (it defaults to /var/tmp otherwise).
    pub tmpdir: PathBuf,
}

/// What skopeo reported.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub digest: String,
    /// Layers the destination already had (skopeo's "Skipping blob ... (already present)").
    pub layers_reused: usize,
    pub attempts: u32,
}

/// Cheap checks to run before building: a local destination's directory must exist.
pub fn precheck(dest: &Destination) -> Result<()> {
    if let Destination::OciArchive { path, .. } | Destination::OciDir { path, .. } = dest {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(crate::exit::output_failed(format!(
                    "Cannot write {dest}: directory {} does not exist",
                    parent.display()
                )));
            }
        }
    }
    Ok(())
}

/// Copy `src_oci_dir:src_tag` to `dest`.
pub fn copy_image(
    src_oci_dir: &Path,
    src_tag: &str,
    dest: &Destination,
    opts: &PushOptions,
) -> Result<PushOutcome> {
    if let Destination::OciArchive { path, tag } = dest {
        precheck(dest)?;
        let digest = super::archive::write_oci_archive(src_oci_dir, src_tag, path, tag.as_deref())
            .map_err(|e| crate::exit::output_failed(format!("{e:#}")))?;
        return Ok(PushOutcome {
            digest,
            layers_reused: 0,
            attempts: 1,
        });
    }
    let secrets = match &opts.authfile {
        Some(p) => {
            if !p.is_file() {
                return Err(crate::exit::invalid_input(format!(
                    "Authfile {} does not exist or is not a file",
                    p.display()
                )));
            }
            secrets_in_authfile(p)
        }
        None => Vec::new(),
    };
    let digestfile = tempfile::NamedTempFile::new_in(&opts.tmpdir)
        .with_context(|| format!("Creating a digest file in {}", opts.tmpdir.display()))?;
    precheck(dest)?;
    let mut cmd = Command::new("skopeo");
    // --debug: the only way skopeo 1.9 reports reused blobs without a terminal. Debug
    // lines are parsed for that and never shown.
    cmd.arg("--debug")
        .arg("copy")
        .arg("--preserve-digests")
        .arg("--digestfile")
        .arg(digestfile.path());
    if let Destination::Registry { .. } = dest {
        cmd.arg(format!("--dest-tls-verify={}", opts.tls_verify));
        if let Some(a) = &opts.authfile {
            cmd.arg("--dest-authfile").arg(a);
        }
    }
    // An archive is written next to its final name and renamed into place on success,
    // so a failed copy never leaves a truncated archive under the requested name.
    let (skopeo_dest, partial) = match dest {
        Destination::OciArchive { path, tag } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let partial = path.with_file_name(format!(".{name}.partial"));
            let tmp = Destination::OciArchive {
                path: partial.clone(),
                tag: tag.clone(),
            };
            (tmp.skopeo_ref(), Some((partial, path.clone())))
        }
        _ => (dest.skopeo_ref(), None),
    };
    cmd.arg(format!("oci:{}:{src_tag}", src_oci_dir.display()))
        .arg(skopeo_dest)
        .env("TMPDIR", &opts.tmpdir);
    let result = run_with_retries(&mut cmd, dest, opts, &secrets, digestfile.path());
    if let Some((partial, fin)) = partial {
        if result.is_ok() {
            std::fs::rename(&partial, &fin)
                .with_context(|| format!("Renaming {} to {}", partial.display(), fin.display()))?;
        } else if partial.exists() {
            std::fs::remove_file(&partial)
                .with_context(|| format!("Removing {}", partial.display()))?;
        }
    }
    result
}

fn run_with_retries(
    cmd: &mut Command,
    dest: &Destination,
    opts: &PushOptions,
    secrets: &[String],
    digestfile: &Path,
) -> Result<PushOutcome> {
    let mut backoff = opts.initial_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = cmd
            .output()
            .context("Running skopeo (is it installed and on PATH?)")?;
        let stderr_all = String::from_utf8_lossy(&out.stderr);
        let stderr = scrub(&without_debug_lines(&stderr_all), secrets);
        if out.status.success() {
            let digest = std::fs::read_to_string(digestfile)
                .context("Reading skopeo's --digestfile")?
                .trim()
                .to_string();
            if !digest.starts_with("sha256:") {
                return Err(crate::exit::output_failed(format!(
                    "skopeo copy to {dest} wrote no manifest digest"
                )));
            }
            return Ok(PushOutcome {
                digest,
                layers_reused: count_reused(&stderr_all),
                attempts: attempt,
            });
        }
        let permanent = is_permanent(&stderr);
        if permanent || attempt > opts.retries {
            let target = match dest.registry_host() {
                Some(h) => format!("{dest} (registry {h})"),
                None => dest.to_string(),
            };
            let why = if permanent {
                "not retried: the error is not transient".to_string()
            } else {
                format!("gave up after {attempt} attempt(s)")
            };
            return Err(crate::exit::output_failed(format!(
                "Copying the image to {target} failed ({why}): {}",
                stderr.trim()
            )));
        }
        eprintln!(
            "skopeo copy to {dest} failed (attempt {attempt} of {}), retrying in {}s: {}",
            opts.retries + 1,
            backoff.as_secs_f32(),
            last_line(&stderr)
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// skopeo's stderr without its `level=debug` lines, and with logrus's
/// `time=... level=fatal msg="..."` wrapping reduced to the message.
fn without_debug_lines(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.contains("level=debug"))
        .map(|l| match l.split_once(" msg=\"") {
            Some((head, msg)) if head.starts_with("time=") => {
                msg.strip_suffix('"').unwrap_or(msg).replace("\\\"", "\"")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Distinct blobs skopeo skipped because the destination had them.
fn count_reused(stderr: &str) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for l in stderr.lines() {
        if let Some(rest) = l.split("Skipping blob ").nth(1) {
            if rest.contains("already present") {
                if let Some(d) = rest.split_whitespace().next() {
                    seen.insert(d.to_string());
                }
            }
        }
    }
    seen.len()
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("")
}

/// Errors that will not go away by trying again.
fn is_permanent(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "denied",
        "invalid reference",
        "invalid image name",
        "no such file or directory",
        "permission denied",
        "would invalidate",
        "cannot preserve digests",
        "x509:",
        "certificate",
        "http response to https client",
        "no space left on device",
        "read-only file system",
    ]
    .iter()
    .any(|p| s.contains(p))
}

/// The secret strings of a containers auth file: `auth` (base64 user:password), its
/// decoded password, `identitytoken`, `password`, `registrytoken`.
fn secrets_in_authfile(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect_secrets(&v, &mut out);
    out.retain(|s| s.len() >= 3);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn collect_secrets(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                if let (Some(s), true) = (
                    val.as_str(),
                    matches!(
                        k.as_str(),
                        "auth" | "identitytoken" | "password" | "registrytoken"
                    ),
                ) {
                    out.push(s.to_string());
                    if k == "auth" {
                        if let Some(decoded) = decode_base64(s) {
                            if let Some((_, pw)) = decoded.split_once(':') {
                                out.push(pw.to_string());
                            }
                            out.push(decoded);
                        }
                    }
                } else {
                    collect_secrets(val, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_secrets(x, out)),
        _ => {}
    }
}

/// Standard base64 decoding (no crate for one auth field).
fn decode_base64(s: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Replace every secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            t = t.replace(s.as_str(), "***");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_secrets() {
        assert_eq!(
            decode_base64("dXNlcjpodW50ZXIy").as_deref(),
            Some("user:hunter2")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        std::fs::write(
            &p,
            r#"{"auths":{"r.example":{"auth":"dXNlcjpodW50ZXIy"},"q":{"identitytoken":"tok123"}}}"#,
        )
        .unwrap();
        let s = secrets_in_authfile(&p);
        let text = "failed auth dXNlcjpodW50ZXIy pw hunter2 token tok123 user:hunter2";
        let out = scrub(text, &s);
        assert!(
            !out.contains("hunter2") && !out.contains("tok123") && !out.contains("dXNl"),
            "{out}"
        );
    }

    #[test]
    fn debug_output_parsing() {
        let e = "time=\"x\" level=debug msg=\"Skipping blob sha256:aa (already present):\"\n\
                 time=\"x\" level=debug msg=\"Skipping blob sha256:aa (already present):\"\n\
                 time=\"x\" level=debug msg=\"Skipping blob sha256:bb (already present):\"\n\
                 time=\"x\" level=fatal msg=\"boom\"";
        assert_eq!(count_reused(e), 2);
        assert_eq!(without_debug_lines(e), "boom");
        assert_eq!(
            without_debug_lines("time=\"x\" level=fatal msg=\"Get \\\"http://h/v2/\\\": refused\""),
            "Get \"http://h/v2/\": refused"
        );
    }

    #[test]
    fn permanent_errors() {
        assert!(is_permanent(
            "Error: ... unauthorized: authentication required"
        ));
        assert!(!is_permanent(
            "dial tcp 127.0.0.1:1: connect: connection refused"
        ));
    }
}

//! Exporting commits into archive repositories, checked with the `ostree` CLI
//! and with a real `ostree pull` over HTTP (python's static file server) that
//! verifies GPG signatures and uses the static delta.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ostree_composer::commit::{self, commit_rootfs, CommitOptions};
use ostree_composer::exit::{class_of, ErrorClass};
use ostree_composer::export::{export, ExportOptions};

const REF: &str = "test/x86_64/os";
const TIME: u64 = 1_700_000_000;

/// libostree 2022.7's pull can trip its own assertion
/// (`n_outstanding_metadata_fetches == 0`) when several pulls run on threads
/// of one process, as parallel tests do; the tool runs one export per
/// process. Serialize the tests that export.
static EXPORT_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    EXPORT_SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args))
}

fn write(path: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A build repo (bare-user) with `n` commits on REF, each adding a file; also
/// one file big enough to be worth a delta.
struct Build {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo_path: PathBuf,
    repo: ostree::Repo,
    rootfs: PathBuf,
    commits: Vec<String>,
}

impl Build {
    fn new() -> Build {
        let tmp = tmpdir();
        let dir = tmp.path().to_path_buf();
        let repo_path = dir.join("build");
        let repo = commit::create_repo(&repo_path, ostree::RepoMode::BareUser).unwrap();
        let rootfs = dir.join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).unwrap();
        write(
            &rootfs.join("usr/bin/tool"),
            "#!/bin/sh\necho tool\n",
            0o755,
        );
        write(&rootfs.join("usr/bin/su"), "setuid\n", 0o4755);
        let big: String = (0..20000).map(|i| format!("line {i}\n")).collect();
        write(&rootfs.join("usr/lib/big.txt"), &big, 0o644);
        Build {
            _tmp: tmp,
            dir,
            repo_path,
            repo,
            rootfs,
            commits: Vec::new(),
        }
    }

    fn commit(&mut self) -> String {
        let n = self.commits.len();
        write(
            &self.rootfs.join(format!("usr/share/v{n}")),
            &format!("{n}\n"),
            0o644,
        );
        // Change the big file a little, so a delta has something to diff.
        let big = self.rootfs.join("usr/lib/big.txt");
        let mut content = std::fs::read_to_string(&big).unwrap();
        content.push_str(&format!("version {n}\n"));
        std::fs::write(&big, content).unwrap();
        let mut opts = CommitOptions::new(&self.rootfs);
        opts.ref_ = Some(REF.into());
        opts.timestamp = Some(TIME + n as u64);
        let r = commit_rootfs(&self.repo, &opts).unwrap();
        self.commits.push(r.checksum.clone());
        r.checksum
    }

    fn export_opts(&self, dest: &Path, commit: &str) -> ExportOptions {
        ExportOptions {
            src_repo: self.repo_path.clone(),
            dest: dest.to_path_buf(),
            ref_: REF.into(),
            commit: commit.into(),
            gpg_key: None,
            gpg_homedir: None,
            static_delta: false,
            deflated_ahead: None,
        }
    }
}

#[test]
fn export_creates_archive_repo_then_adds_delta_and_reruns_clean() {
    let _serial = serial();
    let mut build = Build::new();
    let c1 = build.commit();
    let dest = build.dir.join("export");

    let r = export(&build.export_opts(&dest, &c1)).unwrap();
    assert!(r.created);
    assert_eq!(r.mode, "archive");
    assert!(r.ref_updated);
    assert_eq!(r.commits_pulled, 1);
    assert!(r.objects_written >= 6, "{r:?}");
    assert!(r.bytes_written > 0);
    assert!(r.summary_regenerated);
    assert!(!r.summary_signed);
    let config = std::fs::read_to_string(dest.join("config")).unwrap();
    assert!(config.contains("mode=archive"), "{config}");
    assert_eq!(ostree(&dest, &["rev-parse", REF]).trim(), c1);
    let summary = ostree(&dest, &["summary", "--view"]);
    assert!(summary.contains(REF) && summary.contains(&c1), "{summary}");
    assert_eq!(
        ostree(&dest, &["cat", REF, "/usr/bin/tool"]),
        "#!/bin/sh\necho tool\n"
    );
    assert!(ostree(&dest, &["ls", REF, "/usr/bin/su"]).starts_with("-04755 0 0"));
    ostree(&dest, &["fsck"]);

    // Second commit with a delta from the first.
    let c2 = build.commit();
    let mut opts = build.export_opts(&dest, &c2);
    opts.static_delta = true;
    let r = export(&opts).unwrap();
    assert!(!r.created);
    assert_eq!(r.commits_pulled, 1);
    let delta = format!("{c1}-{c2}");
    assert_eq!(r.delta_written.as_deref(), Some(delta.as_str()));
    let deltas = ostree(&dest, &["static-delta", "list"]);
    assert!(deltas.contains(&delta), "{deltas}");
    let summary = ostree(&dest, &["summary", "--view"]);
    assert!(summary.contains(&c2), "{summary}");
    assert!(ostree(&dest, &["log", REF]).contains(&c1));
    ostree(&dest, &["fsck"]);

    // Unchanged rerun: nothing written, the summary stays valid.
    let summary_before = std::fs::read(dest.join("summary")).unwrap();
    let r = export(&opts).unwrap();
    assert_eq!(r.objects_written, 0);
    assert_eq!(r.commits_pulled, 0);
    assert!(!r.ref_updated);
    assert_eq!(r.delta_written, None);
    assert!(!r.summary_regenerated);
    assert_eq!(std::fs::read(dest.join("summary")).unwrap(), summary_before);
    ostree(&dest, &["summary", "--view"]);
    ostree(&dest, &["fsck"]);
}

#[test]
fn export_history_and_delta_without_parent_in_dest() {
    let _serial = serial();
    let mut build = Build::new();
    let c1 = build.commit();
    let c2 = build.commit();
    let c3 = build.commit();

    // A fresh destination gets the whole available history.
    let dest = build.dir.join("all");
    let r = export(&build.export_opts(&dest, &c3)).unwrap();
    assert_eq!(r.commits_pulled, 3);
    let log = ostree(&dest, &["log", REF]);
    assert!(log.contains(&c1) && log.contains(&c2), "{log}");

    // A delta is skipped (with a reason) when the parent never reached the dest:
    // the source lost the parent (pruned), so only c3 itself can be exported.
    let pruned = build.dir.join("pruned-src");
    let src = commit::create_repo(&pruned, ostree::RepoMode::Archive).unwrap();
    commit::pull_local(
        &src,
        &commit::PullLocalOptions {
            src_repo: &build.repo_path,
            commit: &c3,
            ref_: Some(REF),
            history: commit::PullHistory::CommitOnly,
        },
    )
    .unwrap();
    let dest2 = build.dir.join("nodelta");
    let mut opts = build.export_opts(&dest2, &c3);
    opts.src_repo = pruned;
    opts.static_delta = true;
    let r = export(&opts).unwrap();
    assert_eq!(r.commits_pulled, 1);
    assert_eq!(r.delta_written, None);
    assert!(
        r.delta_skipped_reason
            .as_deref()
            .unwrap_or("")
            .contains(&c2),
        "{r:?}"
    );
    ostree(&dest2, &["fsck"]);
}

#[test]
fn export_into_existing_dirs() {
    let _serial = serial();
    let mut build = Build::new();
    let c1 = build.commit();

    // An empty existing directory is initialised as archive.
    let empty = build.dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = export(&build.export_opts(&empty, &c1)).unwrap();
    assert!(r.created);
    assert_eq!(r.mode, "archive");

    // An existing bare-user repository is written as it is.
    let bare_user = build.dir.join("bare-user");
    commit::create_repo(&bare_user, ostree::RepoMode::BareUser).unwrap();
    let r = export(&build.export_opts(&bare_user, &c1)).unwrap();
    assert!(!r.created);
    assert_eq!(r.mode, "bare-user");
    assert_eq!(ostree(&bare_user, &["rev-parse", REF]).trim(), c1);
    ostree(&bare_user, &["fsck"]);

    // A non-empty directory that is not a repository is refused, untouched.
    let junk = build.dir.join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("file"), "keep me").unwrap();
    let err = export(&build.export_opts(&junk, &c1)).unwrap_err();
    assert_eq!(class_of(&err), Some(ErrorClass::InvalidInput), "{err:#}");
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    let entries: Vec<_> = std::fs::read_dir(&junk)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("file")]);
    assert_eq!(
        std::fs::read_to_string(junk.join("file")).unwrap(),
        "keep me"
    );

    // Under the caller's own lock on the destination the export does not
    // wait for itself.
    let held = ostree_composer::commit::RepoLock::acquire(&empty).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let opts = build.export_opts(&empty, &c1);
    std::thread::spawn(move || {
        tx.send(
            export(&opts)
                .map(|r| r.objects_written)
                .map_err(|e| format!("{e:#}")),
        )
    });
    let written = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the export finished under the caller's lock");
    assert_eq!(written, Ok(0));
    drop(held);

    // A commit the source does not have: output failure, ref untouched.
    let missing = "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b";
    let err = export(&build.export_opts(&empty, missing)).unwrap_err();
    assert_eq!(class_of(&err), Some(ErrorClass::OutputFailed), "{err:#}");
    assert_eq!(ostree(&empty, &["rev-parse", REF]).trim(), c1);
}

/// A throw-away GnuPG home with one signing key; kills its agent when dropped.
struct Gpg {
    home: PathBuf,
    key_id: String,
    public_key: PathBuf,
}

impl Gpg {
    fn new(dir: &Path) -> Gpg {
        let home = dir.join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| run(Command::new("gpg").arg("--homedir").arg(&home).args(args));
        gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Export Test <export-test@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        let listing = gpg(&["--list-keys", "--with-colons"]);
        let key_id = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("a fingerprint")
            .to_string();
        let public_key = dir.join("key.asc");
        let armored = gpg(&["--armor", "--export", &key_id]);
        std::fs::write(&public_key, armored).unwrap();
        Gpg {
            home,
            key_id,
            public_key,
        }
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// `python3 -m http.server` on a free port of 127.0.0.1; killed when dropped.
struct HttpServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl HttpServer {
    /// Serve `dir`; the access log goes to `log`.
    fn serve(dir: &Path, log: &Path) -> HttpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("starting python3 -m http.server");
        let server = HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the HTTP server did not start on port {port}");
    }
}

impl HttpServer {
    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_repo(path: &Path, url: &str, gpg_key: Option<&Path>) {
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", path.display()))
        .arg("--mode=bare-user"));
    ostree(
        path,
        &[
            "remote",
            "add",
            "--set=gpg-verify=true",
            "--set=gpg-verify-summary=true",
            "origin",
            url,
        ],
    );
    if let Some(key) = gpg_key {
        ostree(
            path,
            &[
                "remote",
                "gpg-import",
                &format!("--keyring={}", key.display()),
                "origin",
            ],
        );
    }
}

fn pull(client: &Path, extra: &[&str]) -> std::process::Output {
    Command::new("ostree")
        .arg(format!("--repo={}", client.display()))
        .arg("pull")
        .args(extra)
        .args(["origin", REF])
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .unwrap()
}

#[test]
fn signed_export_is_pulled_over_http_with_verification_and_delta() {
    let _serial = serial();
    let mut build = Build::new();
    let gpg = Gpg::new(&build.dir);
    let dest = build.dir.join("export");
    let c1 = build.commit();
    let mut opts = build.export_opts(&dest, &c1);
    opts.gpg_key = Some(gpg.key_id.clone());
    opts.gpg_homedir = Some(gpg.home.clone());
    opts.static_delta = true;
    let r = export(&opts).unwrap();
    assert!(r.commit_signed && r.summary_signed, "{r:?}");
    assert!(r.delta_skipped_reason.is_some(), "{r:?}");
    let first_sig_len = std::fs::metadata(dest.join("summary.sig")).unwrap().len();

    let server = HttpServer::serve(&dest, &build.dir.join("http.log"));
    let client = build.dir.join("client");
    client_repo(&client, &server.url, Some(&gpg.public_key));
    let out = pull(&client, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ostree(&client, &["rev-parse", &format!("origin:{REF}")]).trim(),
        c1
    );
    let show = ostree(&client, &["show", &c1]);
    assert!(show.contains("Good signature"), "{show}");

    // The next commit travels as a static delta (the pull refuses anything else).
    // The client revalidates its cached summary.sig with If-Modified-Since,
    // which has 1-second resolution: publish in a later second than the pull.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let c2 = build.commit();
    let mut opts = build.export_opts(&dest, &c2);
    opts.gpg_key = Some(gpg.key_id.clone());
    opts.gpg_homedir = Some(gpg.home.clone());
    opts.static_delta = true;
    let r = export(&opts).unwrap();
    assert_eq!(r.delta_written, Some(format!("{c1}-{c2}")));
    // The regenerated summary carries one fresh signature, not the old ones too.
    let sig_len = std::fs::metadata(dest.join("summary.sig")).unwrap().len();
    assert!(
        sig_len < first_sig_len * 3 / 2,
        "{first_sig_len} -> {sig_len}"
    );
    let out = pull(&client, &["--require-static-deltas"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let requests = server.requests();
    assert!(requests.contains("GET /deltas/"), "{text}\n{requests}");
    assert!(requests.contains("GET /summary.sig"), "{requests}");
    assert_eq!(
        ostree(&client, &["rev-parse", &format!("origin:{REF}")]).trim(),
        c2
    );
    ostree(&client, &["fsck"]);

    // The unchanged rerun keeps a summary the client still accepts.
    let r = export(&opts).unwrap();
    assert!(!r.summary_regenerated && !r.commit_signed, "{r:?}");
    let show = ostree(&dest, &["show", &c2]);
    assert_eq!(show.matches("Signature made").count(), 1, "{show}");
    let out = pull(&client, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A client without the key refuses the repository.
    let stranger = build.dir.join("stranger");
    client_repo(&stranger, &server.url, None);
    let out = pull(&stranger, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("gpg") || err.contains("signature"),
        "{err}"
    );
    drop(server);
}

/// Timing of commit + export on a real tree (not run by default):
/// `BENCH_TREE=/usr/share cargo test --release --test export bench -- --ignored --nocapture`.
/// Copies the tree into a rootfs, commits it into a bare-user repo, exports
/// to a fresh archive repo, and reruns the export; prints the times and the
/// CPU time (user+sys) of the process, to see whether the pull uses >1 core.
#[test]
#[ignore]
fn bench_commit_and_export() {
    let _serial = serial();
    let source = std::env::var("BENCH_TREE").unwrap_or_else(|_| "/usr/share".into());
    let tmp = tmpdir();
    let rootfs = tmp.path().join("rootfs/usr/share");
    std::fs::create_dir_all(rootfs.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(&source).arg(&rootfs));
    let rootfs = tmp.path().join("rootfs");
    // utime + stime of all threads, from /proc (clock ticks of 1/100 s on Linux).
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    };
    let repo_path = tmp.path().join("build");
    let repo = commit::create_repo(&repo_path, ostree::RepoMode::BareUser).unwrap();
    let (t0, c0) = (std::time::Instant::now(), cpu());
    let mut opts = CommitOptions::new(&rootfs);
    opts.ref_ = Some(REF.into());
    let r = commit_rootfs(&repo, &opts).unwrap();
    eprintln!(
        "commit: {:.2}s wall, {:.2}s cpu, {:?}",
        t0.elapsed().as_secs_f64(),
        cpu() - c0,
        r.stats
    );
    let dest = tmp.path().join("export");
    let opts = ExportOptions {
        src_repo: repo_path.clone(),
        dest: dest.clone(),
        ref_: REF.into(),
        commit: r.checksum.clone(),
        gpg_key: None,
        gpg_homedir: None,
        static_delta: false,
        deflated_ahead: None,
    };
    for round in ["export (new)", "export (rerun)"] {
        let (t0, c0) = (std::time::Instant::now(), cpu());
        let e = export(&opts).unwrap();
        eprintln!(
            "{round}: {:.2}s wall, {:.2}s cpu, {} objects, {} bytes",
            t0.elapsed().as_secs_f64(),
            cpu() - c0,
            e.objects_written,
            e.bytes_written
        );
    }
}

#[test]
fn failed_signing_leaves_the_export_ref() {
    let _serial = serial();
    let mut build = Build::new();
    let c1 = build.commit();
    let dest = build.dir.join("export");
    export(&build.export_opts(&dest, &c1)).unwrap();
    let c2 = build.commit();
    let gnupg = build.dir.join("empty-gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut opts = build.export_opts(&dest, &c2);
    opts.gpg_key = Some("0123456789ABCDEF0123456789ABCDEF01234567".into());
    opts.gpg_homedir = Some(gnupg.clone());
    let err = export(&opts).unwrap_err();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&gnupg)
        .args(["--kill", "gpg-agent"])
        .status();
    assert_eq!(class_of(&err), Some(ErrorClass::OutputFailed), "{err:#}");
    assert!(format!("{err:#}").contains("Signing commit"), "{err:#}");
    assert_eq!(ostree(&dest, &["rev-parse", REF]).trim(), c1);
    let summary = ostree(&dest, &["summary", "--view"]);
    assert!(summary.contains(&c1) && !summary.contains(&c2), "{summary}");
    ostree(&dest, &["fsck"]);
}

// ---------------------------------------------------------------------------
// The archive pre-pass: content objects compressed by our own writer.

/// A `.filez` object split into its header (length, padding, variant) and
/// its inflated payload.
struct Filez {
    header: Vec<u8>,
    /// The content size recorded in the header.
    size: u64,
    payload: Vec<u8>,
    compressed: Vec<u8>,
}

fn read_filez(path: &Path) -> Filez {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 16, "{} is too short", path.display());
    let len = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "{}", path.display());
    let end = 8 + len;
    assert!(
        end <= bytes.len(),
        "{} truncated in its header",
        path.display()
    );
    let size = u64::from_be_bytes(bytes[8..16].try_into().unwrap());
    let compressed = bytes[end..].to_vec();
    let mut payload = Vec::new();
    if !compressed.is_empty() {
        flate2::read::DeflateDecoder::new(&compressed[..])
            .read_to_end(&mut payload)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    Filez {
        header: bytes[..end].to_vec(),
        size,
        payload,
        compressed,
    }
}

/// The `.filez` objects of an archive repository, by checksum.
fn filez_objects(repo: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let mut out = std::collections::BTreeMap::new();
    for dir in std::fs::read_dir(repo.join("objects")).unwrap() {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue;
        }
        let prefix = dir.file_name().to_string_lossy().into_owned();
        for obj in std::fs::read_dir(dir.path()).unwrap() {
            let obj = obj.unwrap();
            let name = obj.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_suffix(".filez") {
                out.insert(format!("{prefix}{rest}"), obj.path());
            }
        }
    }
    out
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting {name} on {}: {e}", path.display()));
}

/// Pseudo-random text: compressible, but not trivially.
fn text(seed: u32, len: usize) -> String {
    let mut state = seed;
    (0..len)
        .map(|i| {
            if i % 61 == 60 {
                return '\n';
            }
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'a' + ((state >> 16) % 26) as u8)
        })
        .collect()
}

/// Every kind of content object: empty, symlinks (absolute, relative,
/// dangling), setuid/setgid, executable, xattrs (one, two), a large file.
fn edge_case_tree(rootfs: &Path) {
    write(&rootfs.join("usr/share/empty"), "", 0o644);
    write(&rootfs.join("usr/bin/suid"), "setuid\n", 0o4755);
    write(&rootfs.join("usr/bin/sgid"), "setgid\n", 0o2711);
    write(&rootfs.join("usr/bin/exe"), "#!/bin/sh\n", 0o700);
    write(&rootfs.join("usr/lib/pax"), "pax\n", 0o755);
    set_xattr(&rootfs.join("usr/lib/pax"), "user.pax.flags", b"m");
    write(&rootfs.join("usr/lib/two"), "two xattrs\n", 0o644);
    set_xattr(&rootfs.join("usr/lib/two"), "user.pax.flags", b"em");
    set_xattr(
        &rootfs.join("usr/lib/two"),
        "user.ima",
        b"\x03\x02ima-signature",
    );
    write(
        &rootfs.join("usr/lib/large.txt"),
        &text(7, 6 * 1024 * 1024 + 17),
        0o644,
    );
    // Above filez::WHOLE_BUFFER_MAX (16 MiB): compressed streaming, not whole.
    write(
        &rootfs.join("usr/lib/huge.txt"),
        &text(11, 17 * 1024 * 1024 + 5),
        0o644,
    );
    std::os::unix::fs::symlink("/usr/lib/large.txt", rootfs.join("usr/lib/abs-link")).unwrap();
    std::os::unix::fs::symlink("../bin/exe", rootfs.join("usr/lib/rel-link")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", rootfs.join("usr/lib/dangling")).unwrap();
}

/// Our `.filez` objects against libostree's for the same commit: same set,
/// identical headers, identical inflated content (the compressed bytes of the
/// large file differ: zlib-ng, so the pre-pass really wrote them). `ostree
/// fsck` accepts them, and an HTTP client gets the very tree of the source.
#[test]
fn precompressed_objects_match_libostree_and_serve_over_http() {
    let _serial = serial();
    let mut build = Build::new();
    edge_case_tree(&build.rootfs);
    let c1 = build.commit();

    let ours = build.dir.join("ours");
    let r = export(&build.export_opts(&ours, &c1)).unwrap();
    assert!(r.created);
    ostree(&ours, &["fsck"]);

    let theirs = build.dir.join("theirs");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", theirs.display()))
        .arg("--mode=archive"));
    ostree(
        &theirs,
        &["pull-local", build.repo_path.to_str().unwrap(), &c1],
    );

    let ours_objs = filez_objects(&ours);
    let theirs_objs = filez_objects(&theirs);
    assert_eq!(
        ours_objs.keys().collect::<Vec<_>>(),
        theirs_objs.keys().collect::<Vec<_>>()
    );
    assert!(ours_objs.len() >= 13, "{}", ours_objs.len());
    let mut recompressed = 0;
    let mut symlinks = 0;
    let mut with_xattrs = 0;
    for (csum, path) in &ours_objs {
        let a = read_filez(path);
        let b = read_filez(&theirs_objs[csum]);
        assert_eq!(a.header, b.header, "header of {csum}");
        assert_eq!(a.size, b.size, "{csum}");
        assert_eq!(a.payload.len() as u64, a.size, "{csum}");
        assert_eq!(a.payload, b.payload, "content of {csum}");
        if a.compressed.is_empty() {
            symlinks += 1;
            assert!(b.compressed.is_empty(), "{csum}");
        }
        if a.compressed != b.compressed {
            recompressed += 1;
        }
        if a.header.windows(8).any(|w| w == b"user.pax") {
            with_xattrs += 1;
        }
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644, "{csum}");
    }
    assert_eq!(symlinks, 3);
    assert_eq!(with_xattrs, 2);
    assert!(
        recompressed >= 1,
        "no object was compressed by the pre-pass"
    );
    // No staging directory is left behind.
    assert!(ours.join("tmp").is_dir());
    let left = tmp_entries(&ours, "ostree-composer");
    assert!(left.is_empty(), "{left:?}");

    // A client pulling over HTTP gets the same tree, xattrs and all.
    let server = HttpServer::serve(&ours, &build.dir.join("http.log"));
    let client = build.dir.join("client");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", client.display()))
        .arg("--mode=bare-user"));
    ostree(
        &client,
        &["remote", "add", "--no-gpg-verify", "origin", &server.url],
    );
    let out = pull(&client, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ostree(&client, &["fsck"]);
    let listing = |repo: &Path, rev: &str| ostree(repo, &["ls", "-R", "-C", "-X", rev, "/"]);
    let want = listing(&build.repo_path, &c1);
    assert!(want.contains("user.pax.flags"), "{want}");
    assert_eq!(listing(&client, &format!("origin:{REF}")), want);
    let checkout = build.dir.join("checkout");
    ostree(
        &client,
        &[
            "checkout",
            "--user-mode",
            &format!("origin:{REF}"),
            checkout.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(checkout.join("usr/lib/large.txt")).unwrap(),
        std::fs::read(build.rootfs.join("usr/lib/large.txt")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(checkout.join("usr/lib/dangling")).unwrap(),
        PathBuf::from("nowhere/at/all")
    );
    assert_eq!(
        std::fs::metadata(checkout.join("usr/share/empty"))
            .unwrap()
            .len(),
        0
    );
    drop(server);
}

/// Objects the destination already has are left alone (not rewritten), and a
/// repository with `core.fsync=false` and its own `archive.zlib-level` gets
/// its objects at that level.
#[test]
fn precompress_skips_present_objects_and_follows_the_repo_config() {
    let _serial = serial();
    let mut build = Build::new();
    edge_case_tree(&build.rootfs);
    let c1 = build.commit();
    let dest = build.dir.join("export");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", dest.display()))
        .arg("--mode=archive"));
    ostree(&dest, &["config", "set", "core.fsync", "false"]);
    ostree(&dest, &["config", "set", "archive.zlib-level", "1"]);
    // c1's objects come from libostree (system zlib, level 1).
    ostree(
        &dest,
        &["pull-local", build.repo_path.to_str().unwrap(), &c1],
    );
    let before: std::collections::BTreeMap<String, (u64, std::time::SystemTime)> =
        filez_objects(&dest)
            .into_iter()
            .map(|(c, p)| {
                let m = std::fs::metadata(&p).unwrap();
                (
                    c,
                    (
                        std::os::unix::fs::MetadataExt::ino(&m),
                        m.modified().unwrap(),
                    ),
                )
            })
            .collect();

    // c2 adds one new large file and changes nothing else.
    write(
        &build.rootfs.join("usr/lib/large2.txt"),
        &text(99, 3 * 1024 * 1024),
        0o644,
    );
    let c2 = build.commit();
    let r = export(&build.export_opts(&dest, &c2)).unwrap();
    assert_eq!(r.commits_pulled, 1);
    ostree(&dest, &["fsck"]);
    let after = filez_objects(&dest);
    for (csum, (ino, mtime)) in &before {
        let m = std::fs::metadata(&after[csum]).unwrap();
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::ino(&m),
                m.modified().unwrap()
            ),
            (*ino, *mtime),
            "{csum} was rewritten"
        );
    }
    // New: large2.txt, the changed big.txt, the new v1 file.
    let new: Vec<&String> = after.keys().filter(|c| !before.contains_key(*c)).collect();
    assert_eq!(new.len(), 3, "{new:?}");

    // The level: the same 3 MiB at level 1 vs level 9 (set afterwards).
    let level1_size: u64 = new
        .iter()
        .map(|c| std::fs::metadata(&after[*c]).unwrap().len())
        .sum();
    let dest9 = build.dir.join("export9");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", dest9.display()))
        .arg("--mode=archive"));
    ostree(&dest9, &["config", "set", "archive.zlib-level", "9"]);
    ostree(
        &dest9,
        &["pull-local", build.repo_path.to_str().unwrap(), &c1],
    );
    export(&build.export_opts(&dest9, &c2)).unwrap();
    ostree(&dest9, &["fsck"]);
    let after9 = filez_objects(&dest9);
    let level9_size: u64 = new
        .iter()
        .map(|c| std::fs::metadata(&after9[*c]).unwrap().len())
        .sum();
    // Ignoring the level would give equal sizes; libdeflate's level 1 is
    // already good, so the gap is ~2% on this data.
    assert!(
        level9_size * 100 < level1_size * 99,
        "level 9 {level9_size} vs level 1 {level1_size}"
    );
}

const KILL_CHILD_SRC: &str = "OSTREE_COMPOSER_TEST_EXPORT_SRC";
const KILL_CHILD_DEST: &str = "OSTREE_COMPOSER_TEST_EXPORT_DEST";
const KILL_CHILD_COMMIT: &str = "OSTREE_COMPOSER_TEST_EXPORT_COMMIT";

/// Not a test by itself: the child process that
/// `a_killed_export_leaves_only_whole_objects` starts (this test binary, run
/// with `--ignored --exact`) and kills. Does nothing without its environment.
#[test]
#[ignore]
fn kill_child_export() {
    let (Ok(src), Ok(dest), Ok(commit)) = (
        std::env::var(KILL_CHILD_SRC),
        std::env::var(KILL_CHILD_DEST),
        std::env::var(KILL_CHILD_COMMIT),
    ) else {
        return;
    };
    export(&ExportOptions {
        src_repo: src.into(),
        dest: dest.into(),
        ref_: REF.into(),
        commit,
        gpg_key: None,
        gpg_homedir: None,
        static_delta: false,
        deflated_ahead: None,
    })
    .unwrap();
}

fn staging_dirs(repo: &Path) -> Vec<PathBuf> {
    tmp_entries(repo, "ostree-composer-filez-")
}

/// The entries of `repo`'s `tmp/` whose names start with `prefix`.
fn tmp_entries(repo: &Path, prefix: &str) -> Vec<PathBuf> {
    match std::fs::read_dir(repo.join("tmp")) {
        Ok(entries) => entries
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// SIGKILL an export while it compresses (staged with fsync on, published one
/// by one with fsync off): every object under its final name is whole (its
/// payload inflates to the size in its header), the next export trusts what
/// is there, completes, removes the stale staging directory, and `ostree
/// fsck` (which inflates and re-checksums every object of the commit) is clean.
#[test]
fn a_killed_export_leaves_only_whole_objects() {
    let _serial = serial();
    let mut build = Build::new();
    let files = 128;
    for i in 0..files {
        write(
            &build.rootfs.join(format!("usr/share/kill/f{i:03}")),
            &text(1000 + i, 512 * 1024),
            0o644,
        );
    }
    let c1 = build.commit();
    let exe = std::env::current_exe().unwrap();
    let mut interrupted = 0;
    let mut partially_published = 0;
    let trials = [
        (true, 0),
        (true, 150),
        (true, 400),
        (false, 0),
        (false, 150),
        (false, 400),
    ];
    for (trial, (fsync, delay_ms)) in trials.into_iter().enumerate() {
        let dest = build.dir.join(format!("kill{trial}"));
        run(Command::new("ostree")
            .arg("init")
            .arg(format!("--repo={}", dest.display()))
            .arg("--mode=archive"));
        if !fsync {
            ostree(&dest, &["config", "set", "core.fsync", "false"]);
        }
        let mut child = Command::new(&exe)
            .args([
                "kill_child_export",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(KILL_CHILD_SRC, &build.repo_path)
            .env(KILL_CHILD_DEST, &dest)
            .env(KILL_CHILD_COMMIT, &c1)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while staging_dirs(&dest).is_empty()
            && child.try_wait().unwrap().is_none()
            && t0.elapsed() < std::time::Duration::from_secs(60)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();

        let objects = filez_objects(&dest);
        for (csum, path) in &objects {
            let f = read_filez(path);
            assert_eq!(f.payload.len() as u64, f.size, "trial {trial}: {csum}");
        }
        let ref_set = Command::new("ostree")
            .arg(format!("--repo={}", dest.display()))
            .args(["rev-parse", REF])
            .output()
            .unwrap()
            .status
            .success();
        if !ref_set {
            interrupted += 1;
            if !objects.is_empty() && objects.len() < files as usize {
                partially_published += 1;
            }
        }
        eprintln!(
            "trial {trial} (fsync {fsync}, +{delay_ms} ms): {} objects published, ref set: {ref_set}",
            objects.len()
        );

        let r = export(&build.export_opts(&dest, &c1)).unwrap();
        assert_eq!(r.commit, c1);
        assert!(staging_dirs(&dest).is_empty(), "trial {trial}");
        ostree(&dest, &["fsck"]);
        assert_eq!(ostree(&dest, &["rev-parse", REF]).trim(), c1);
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} exports were interrupted"
    );
    assert!(
        partially_published >= 1,
        "no kill landed between two objects"
    );
}

/// A commit the destination has only partially (its metadata, marked
/// `commitpartial`) still gets its content objects from the pre-pass.
#[test]
fn precompress_fills_a_partial_commit() {
    let _serial = serial();
    let mut build = Build::new();
    edge_case_tree(&build.rootfs);
    let c1 = build.commit();
    let src = build.repo_path.to_str().unwrap().to_string();
    let init = |path: &Path| {
        run(Command::new("ostree")
            .arg("init")
            .arg(format!("--repo={}", path.display()))
            .arg("--mode=archive"))
    };
    let theirs = build.dir.join("theirs");
    init(&theirs);
    ostree(&theirs, &["pull-local", &src, &c1]);
    let dest = build.dir.join("export");
    init(&dest);
    ostree(&dest, &["pull-local", "--commit-metadata-only", &src, &c1]);
    assert!(dest.join(format!("state/{c1}.commitpartial")).exists());
    assert!(filez_objects(&dest).is_empty());

    export(&build.export_opts(&dest, &c1)).unwrap();
    ostree(&dest, &["fsck"]);
    assert!(!dest.join(format!("state/{c1}.commitpartial")).exists());
    let ours = filez_objects(&dest);
    let reference = filez_objects(&theirs);
    assert_eq!(ours.len(), reference.len());
    let recompressed = ours
        .iter()
        .filter(|(c, p)| read_filez(p).compressed != read_filez(&reference[*c]).compressed)
        .count();
    assert!(recompressed >= 1, "the pull wrote every object itself");
}

/// From a `bare` source (symlinks stored as symlinks, here one to a FIFO,
/// which the read-ahead must not open): same objects as libostree's. A bare
/// repository needs root (chown); skipped otherwise.
#[test]
fn precompress_from_a_bare_source() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: a bare repository needs root");
        return;
    }
    let _serial = serial();
    let mut build = Build::new();
    edge_case_tree(&build.rootfs);
    let fifo = build.dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink(&fifo, build.rootfs.join("usr/lib/fifo-link")).unwrap();
    let c1 = build.commit();
    let bare = build.dir.join("bare");
    commit::create_repo(&bare, ostree::RepoMode::Bare).unwrap();
    ostree(
        &bare,
        &["pull-local", build.repo_path.to_str().unwrap(), &c1],
    );
    let dest = build.dir.join("export");
    let mut opts = build.export_opts(&dest, &c1);
    opts.src_repo = bare.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(
            export(&opts)
                .map(|r| r.objects_written)
                .map_err(|e| format!("{e:#}")),
        )
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("the export finished")
        .unwrap();
    ostree(&dest, &["fsck"]);
    let theirs = build.dir.join("theirs");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", theirs.display()))
        .arg("--mode=archive"));
    ostree(&theirs, &["pull-local", bare.to_str().unwrap(), &c1]);
    let ours = filez_objects(&dest);
    let reference = filez_objects(&theirs);
    assert_eq!(ours.len(), reference.len());
    let mut recompressed = 0;
    for (csum, path) in &ours {
        let (a, b) = (read_filez(path), read_filez(&reference[csum]));
        assert_eq!(a.header, b.header, "{csum}");
        assert_eq!(a.payload, b.payload, "{csum}");
        recompressed += usize::from(a.compressed != b.compressed);
    }
    assert!(recompressed >= 1);
}

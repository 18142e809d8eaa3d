//! OCI output with real parts: RPMs built with rpmbuild, installed with rpm into a
//! rootfs, committed with the `ostree` CLI, encapsulated with ostree-ext, checked
//! with skopeo, imported back with ostree-ext, pushed to a real docker-registry.
mod common;
use common::registry::Registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::rpmfixture::*;
use ostree_composer::commit::tree_walk;
use ostree_composer::exit::{class_of, ErrorClass};
use ostree_composer::oci::{self, OciOptions};
use ostree_ext::container::OstreeImageReference;

const REF: &str = "test/x86_64";
const COMMIT_TIME: &str = "2024-01-02T03:04:05Z";
const KVER: &str = "6.1.0-1.x86_64";

struct Fixture {
    repo: PathBuf,
    rootfs: PathBuf,
    commit: String,
}

fn scratch_root() -> PathBuf {
    // Not /tmp: bare-user repos need user xattrs (tmpfs lacks them on older kernels).
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(scratch_root()).unwrap()
}

use common::run_ok as run;

/// Deterministic, poorly compressible bytes.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

fn blob(path: &str, len: usize, seed: u32, mode: u32) -> Entry {
    Entry::File {
        path: path.into(),
        content: noise(len, seed),
        mode,
        user: "root".into(),
        group: "root".into(),
        config: false,
        doc: false,
    }
}

fn packages() -> Vec<Pkg> {
    vec![
        filesystem_pkg(),
        setup_pkg(),
        Pkg::new("hello", "1.0")
            .arch("x86_64")
            .entry(Entry::exe("/usr/bin/hello", "#!/bin/sh\necho hello\n"))
            .entry(Entry::config("/etc/hello.conf", "greeting=hi\n"))
            .entry(Entry::doc("/usr/share/doc/hello/README", "hello docs\n")),
        Pkg::new("libfoo", "2.3")
            .arch("x86_64")
            .entry(blob("/usr/lib64/libfoo.so.2", 300_000, 1, 0o755))
            .entry(Entry::symlink("/usr/lib64/libfoo.so", "libfoo.so.2")),
        Pkg::new("sutool", "0.5")
            .arch("x86_64")
            .entry(blob("/usr/bin/sutool", 20_000, 2, 0o4755)),
        Pkg::new("kernel", "6.1.0")
            .arch("x86_64")
            .entry(Entry::dir("/usr/lib/modules/6.1.0-1.x86_64"))
            .entry(blob(
                "/usr/lib/modules/6.1.0-1.x86_64/vmlinuz",
                400_000,
                3,
                0o755,
            ))
            .entry(Entry::file(
                "/usr/lib/modules/6.1.0-1.x86_64/modules.dep",
                "kernel/foo.ko:\n",
            )),
        Pkg::new("bigdata", "1.0").entry(blob("/usr/share/bigdata/blob", 600_000, 4, 0o644)),
    ]
}

/// Build the RPMs, install them into a rootfs with rpm, and commit it (once per test binary).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t = Instant::now();
        let dir = scratch_root().join("oci-fixture");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let rpmrepo = build_repo(&dir.join("rpms"), &packages());
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let rpms: Vec<PathBuf> = std::fs::read_dir(rpmrepo.join("Packages"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        run(Command::new("rpm").arg("--root").arg(&rootfs).args([
            "--dbpath",
            "/usr/share/rpm",
            "--initdb",
        ]));
        run(Command::new("rpm")
            .arg("--root")
            .arg(&rootfs)
            .args([
                "--dbpath",
                "/usr/share/rpm",
                "-i",
                "--nodeps",
                "--noscripts",
            ])
            .args(&rpms));
        // What the compose pipeline does before committing: /etc -> /usr/etc.
        std::fs::rename(rootfs.join("etc"), rootfs.join("usr/etc")).unwrap();
        // Unowned content: an initramfs and a stray file.
        std::fs::write(
            rootfs.join(format!("usr/lib/modules/{KVER}/initramfs.img")),
            noise(80_000, 5),
        )
        .unwrap();
        std::fs::write(rootfs.join("usr/share/unowned.txt"), "nobody owns me\n").unwrap();
        let repo = dir.join("repo");
        run(Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["init", "--mode=bare-user"]));
        let commit = run(Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg("commit")
            .arg(format!("--branch={REF}"))
            .arg(format!("--tree=dir={}", rootfs.display()))
            .arg("--add-metadata-string=version=1.0")
            .arg("--add-metadata=ostree.bootable=true")
            .arg(format!("--timestamp={COMMIT_TIME}"))
            .arg("--subject=fixture"))
        .trim()
        .to_string();
        assert_eq!(commit.len(), 64, "{commit}");
        eprintln!(
            "fixture: built RPMs, rootfs and commit {commit} in {:.1}s",
            t.elapsed().as_secs_f32()
        );
        Fixture {
            repo,
            rootfs,
            commit,
        }
    })
}

fn options(f: &Fixture, workdir: &Path) -> OciOptions {
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.opencontainers.image.title".to_string(),
        "Test OS".to_string(),
    );
    labels.insert("com.example.flavor".to_string(), "plain".to_string());
    OciOptions {
        repo: f.repo.clone(),
        rev: REF.into(),
        labels,
        workdir: workdir.to_path_buf(),
        retry_backoff: Duration::from_millis(200),
        ..Default::default()
    }
}

fn inspect(imgref: &str, extra: &[&str]) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(imgref));
    serde_json::from_str(&out).unwrap()
}

fn unencapsulate(imgref: &str, insecure: bool) -> String {
    let (commit, d) = import_image(imgref, insecure);
    // The setuid bit survived the trip.
    let ls = run(Command::new("ostree")
        .arg(format!("--repo={}", d.path().display()))
        .args(["ls", &commit, "/usr/bin/sutool"]));
    assert!(ls.starts_with("-04755"), "{ls}");
    commit
}

/// Import with ostree-ext into a fresh bare-user repo: (commit, the repo's directory).
fn import_image(imgref: &str, insecure: bool) -> (String, tempfile::TempDir) {
    let d = tmpdir();
    let repo = ostree::Repo::new_for_path(d.path());
    repo.create(ostree::RepoMode::BareUser, ostree::gio::Cancellable::NONE)
        .unwrap();
    let imgref: OstreeImageReference = imgref.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let commit = rt.block_on(async {
        let cfg = containers_image_proxy::ImageProxyConfig {
            // Run skopeo as ourselves: under systemd (INVOCATION_ID set, e.g. a CI runner)
            // ostree-ext would otherwise drop to `nobody`, who cannot read our temp dirs.
            skopeo_cmd: Some(Command::new("skopeo")),
            insecure_skip_tls_verification: insecure.then_some(true),
            ..Default::default()
        };
        let imp = ostree_ext::container::store::ImageImporter::new(&repo, &imgref, cfg)
            .await
            .unwrap();
        imp.unencapsulate().await.unwrap().ostree_commit
    });
    (commit, d)
}

fn components_of(raw_manifest: &serde_json::Value) -> Vec<String> {
    raw_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["annotations"]["ostree.components"].as_str())
        .flat_map(|s| s.split(',').map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn oci_dir_and_archive_roundtrip() {
    let f = fixture();
    let out = tmpdir();
    let work = tmpdir();
    let ocidir = out.path().join("img");
    let archive = out.path().join("img.tar");
    let dests = [
        format!("oci:{}:v1", ocidir.display()),
        format!("oci-archive:{}:v1", archive.display()),
    ];
    let t = Instant::now();
    let results = oci::build_and_push_many(&options(f, work.path()), &dests).unwrap();
    eprintln!(
        "build + 2 outputs: {:.1}s; {results:?}",
        t.elapsed().as_secs_f32()
    );
    assert_eq!(results.len(), 2);
    let r = &results[0];
    assert_eq!(r.commit, f.commit);
    assert_eq!(r.manifest_digest, results[1].manifest_digest);
    assert_eq!(r.architecture, "amd64");
    assert!(r.layer_count >= 6, "{r:?}");
    assert!(r.compressed_size > 1_000_000, "{r:?}");
    // The work directory is cleaned up, and no partial archive is left behind.
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    let mut names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["img", "img.tar"]);

    for imgref in [&dests[0], &dests[1]] {
        let info = inspect(imgref, &[]);
        let labels = &info["Labels"];
        assert_eq!(labels["ostree.commit"], f.commit.as_str(), "{info:#}");
        assert_eq!(labels["version"], "1.0");
        assert_eq!(labels["org.opencontainers.image.version"], "1.0");
        assert_eq!(labels["containers.bootc"], "1");
        assert_eq!(labels["org.opencontainers.image.created"], COMMIT_TIME);
        assert_eq!(labels["org.opencontainers.image.title"], "Test OS");
        assert_eq!(labels["com.example.flavor"], "plain");
        assert_eq!(info["Architecture"], "amd64");
        assert_eq!(info["Created"], COMMIT_TIME);
        assert_eq!(info["Digest"], r.manifest_digest.as_str());
        assert_eq!(info["Layers"].as_array().unwrap().len(), r.layer_count);

        let raw = inspect(imgref, &["--raw"]);
        let comps = components_of(&raw);
        for p in [
            "hello",
            "libfoo",
            "sutool",
            "kernel",
            "bigdata",
            "setup",
            "initramfs",
            "rpmostree-unpackaged-content",
        ] {
            assert!(comps.iter().any(|c| c == p), "{p} not in {comps:?}");
        }
        // Every package layer has the annotation, each component once.
        let mut sorted = comps.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), comps.len(), "{comps:?}");

        let config = inspect(imgref, &["--config"]);
        for h in config["history"].as_array().unwrap() {
            assert_eq!(h["created"], COMMIT_TIME, "{config:#}");
        }
        assert_eq!(config["architecture"], "amd64");
    }

    let t = Instant::now();
    let c1 = unencapsulate(&format!("ostree-unverified-image:{}", dests[0]), false);
    let c2 = unencapsulate(&format!("ostree-unverified-image:{}", dests[1]), false);
    eprintln!("two imports: {:.1}s", t.elapsed().as_secs_f32());
    assert_eq!(c1, f.commit);
    assert_eq!(c2, f.commit);
    eprintln!(
        "fixture image: {} layers, {} bytes compressed; archive {} bytes",
        r.layer_count,
        r.compressed_size,
        std::fs::metadata(&archive).unwrap().len()
    );
}

#[test]
fn same_commit_same_digest_and_rpmdb_from_rootfs() {
    let f = fixture();
    let mut digests = Vec::new();
    let outs = [tmpdir(), tmpdir()];
    for (i, out) in outs.iter().enumerate() {
        let work = tmpdir();
        let mut o = options(f, work.path());
        if i == 1 {
            // The second run reads the rpmdb from the rootfs instead of the commit.
            o.rootfs_for_rpmdb = Some(f.rootfs.clone());
        }
        let t = Instant::now();
        let r =
            oci::build_and_push(&o, &format!("oci:{}", out.path().join("img").display())).unwrap();
        eprintln!(
            "run {i}: {:.1}s {}",
            t.elapsed().as_secs_f32(),
            r.manifest_digest
        );
        digests.push(r.manifest_digest);
    }
    assert_eq!(digests[0], digests[1]);
    // Byte-identical blob sets.
    let blobs = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join("img/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(blobs(outs[0].path()), blobs(outs[1].path()));

    // A different creation time gives a different digest, and it is recorded. Written
    // untagged over the first image: the directory then holds just the new one.
    let work = tmpdir();
    let mut o = options(f, work.path());
    o.created = Some("1700000000".into());
    o.max_layers = 4;
    let dest = format!("oci:{}", outs[0].path().join("img").display());
    let r = oci::build_and_push(&o, &dest).unwrap();
    assert_ne!(r.manifest_digest, digests[0]);
    // 4 package bins at most, plus the commit layer.
    assert!(r.layer_count <= 5 && r.layer_count >= 2, "{r:?}");
    let info = inspect(&dest, &[]);
    assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(info["Digest"], r.manifest_digest.as_str());
    assert_eq!(
        unencapsulate(&format!("ostree-unverified-image:{dest}"), false),
        f.commit
    );
}

#[test]
fn container_encapsulate_dropin() {
    let f = fixture();
    let out = tmpdir();
    let work = tmpdir();
    let first = format!("oci:{}:first", out.path().join("img").display());
    let second = format!("oci:{}:second", out.path().join("img").display());
    let meta = out.path().join("contentmeta.json");
    let imgcfg = out.path().join("config.json");
    std::fs::write(
        &imgcfg,
        r#"{"Env":["PATH=/usr/bin","LANG=C.UTF-8"],"User":"0"}"#,
    )
    .unwrap();
    let base = oci::EncapsulateOptions {
        repo: f.repo.clone(),
        rev: f.commit.clone(),
        imgref: first.clone(),
        labels: vec!["a.b=c".into()],
        copymeta: vec!["version".into()],
        cmd: Some(vec!["/usr/bin/hello".into()]),
        write_contentmeta_json: Some(meta.clone()),
        image_config: Some(imgcfg.clone()),
        workdir: Some(work.path().to_path_buf()),
        ..Default::default()
    };
    let r1 = oci::container_encapsulate(&base).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let names: Vec<&str> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"libfoo") && names.contains(&"rpmostree-unpackaged-content"),
        "{names:?}"
    );
    let libfoo = m
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "libfoo")
        .unwrap();
    // The 300 kB library and its symlink, nothing else.
    let size = libfoo["size"].as_u64().unwrap();
    assert!((300_000..300_100).contains(&size), "{libfoo}");
    assert_eq!(libfoo["identifier"], "libfoo-2.3-1.x86_64");
    let info = inspect(&first, &["--config"]);
    assert_eq!(info["config"]["Cmd"][0], "/usr/bin/hello");
    assert_eq!(info["config"]["Labels"]["a.b"], "c");
    assert_eq!(info["config"]["Env"][1], "LANG=C.UTF-8", "{info:#}");
    assert_eq!(info["config"]["User"], "0");

    // Previous build manifest keeps the packing; compare-with-build works.
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", &first]));
    let prev = out.path().join("prev.json");
    std::fs::write(&prev, raw).unwrap();
    let r2 = oci::container_encapsulate(&oci::EncapsulateOptions {
        imgref: second.clone(),
        previous_build_manifest: Some(prev.clone()),
        compare_with_build: Some(first.clone()),
        ..base.clone()
    })
    .unwrap();
    assert_eq!(r1.manifest_digest, r2.manifest_digest);

    // Bad inputs are classified.
    let e = oci::container_encapsulate(&oci::EncapsulateOptions {
        format_version: Some(2),
        ..base.clone()
    })
    .unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::Unsupported));
    std::fs::write(&prev, "{\"schemaVersion\":2}").unwrap();
    let e = oci::container_encapsulate(&oci::EncapsulateOptions {
        imgref: second.clone(),
        previous_build_manifest: Some(prev),
        ..base.clone()
    })
    .unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput), "{e:#}");
    let e = oci::container_encapsulate(&oci::EncapsulateOptions {
        copymeta: vec!["no.such.key".into()],
        ..base.clone()
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("no.such.key"), "{e:#}");
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput), "{e:#}");
    let e = oci::container_encapsulate(&oci::EncapsulateOptions {
        copymeta_opt: vec!["ostree.bootable".into()],
        ..base.clone()
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("not a string"), "{e:#}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let f = fixture();
    let work = tmpdir();
    let out = tmpdir();
    let dest = format!("oci:{}", out.path().join("img").display());
    let mut o = options(f, work.path());
    o.max_layers = 3;
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput));
    assert!(format!("{e:#}").contains("at least 4"), "{e:#}");

    let o = options(f, work.path());
    let e = oci::build_and_push(&o, "ftp://example.com/x").unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput));
    assert!(format!("{e:#}").contains("unknown transport"), "{e:#}");

    let mut o = options(f, work.path());
    o.rev = "no/such/ref".into();
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput));
    assert!(format!("{e:#}").contains("no/such/ref"), "{e:#}");

    let o = options(f, work.path());
    let e = oci::build_and_push(&o, "oci-archive:/nonexistent/dir/x.tar").unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::OutputFailed), "{e:#}");
    assert!(format!("{e:#}").contains("/nonexistent/dir"), "{e:#}");

    let mut o = options(f, work.path());
    o.labels.insert("ostree.commit".into(), "x".into());
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput));
    assert!(!out.path().join("img").exists());
}

fn blob_count(storage: &Path) -> usize {
    let dir = storage.join("docker/registry/v2/blobs/sha256");
    let mut n = 0;
    for a in std::fs::read_dir(dir).unwrap() {
        n += std::fs::read_dir(a.unwrap().path()).unwrap().count();
    }
    n
}

#[test]
fn registry_push_roundtrip_and_failure() {
    let f = fixture();
    let reg = Registry::start();
    let work = tmpdir();
    let mut o = options(f, work.path());
    o.tls_verify = false;
    let dest = format!("docker://127.0.0.1:{}/test/os:latest", reg.port);
    let t = Instant::now();
    let r = oci::build_and_push(&o, &dest).unwrap();
    eprintln!("registry push: {:.1}s {r:?}", t.elapsed().as_secs_f32());
    assert_eq!(r.layers_reused, 0, "{r:?}");
    let info = inspect(&dest, &["--tls-verify=false"]);
    assert_eq!(info["Labels"]["ostree.commit"], f.commit.as_str());
    assert_eq!(info["Labels"]["containers.bootc"], "1");
    assert_eq!(info["Digest"], r.manifest_digest.as_str());
    assert_eq!(info["Layers"].as_array().unwrap().len(), r.layer_count);
    let blobs = blob_count(&reg.storage);
    // The registry stores the manifest as a blob too.
    assert_eq!(blobs, r.layer_count + 2, "layers + config + manifest");

    // Round trip from the registry.
    let c = unencapsulate(
        &format!(
            "ostree-unverified-registry:127.0.0.1:{}/test/os:latest",
            reg.port
        ),
        true,
    );
    assert_eq!(c, f.commit);

    // Second push: nothing new goes over the wire.
    let r2 = oci::build_and_push(&o, &dest).unwrap();
    assert_eq!(r2.manifest_digest, r.manifest_digest);
    assert_eq!(r2.layers_reused, r.layer_count, "{r2:?}");
    assert_eq!(blob_count(&reg.storage), blobs);

    // TLS verification on against a plain-HTTP registry: a clear, non-retried failure.
    let mut strict = options(f, work.path());
    strict.tls_verify = true;
    let e = oci::build_and_push(&strict, &dest).unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::OutputFailed), "{e:#}");

    // Registry down: a clear error after the retries, naming the registry.
    let port = reg.port;
    drop(reg);
    let mut o = options(f, work.path());
    o.tls_verify = false;
    o.retries = 2;
    let t = Instant::now();
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    let msg = format!("{e:#}");
    eprintln!("registry down -> {:.1}s: {msg}", t.elapsed().as_secs_f32());
    assert_eq!(class_of(&e), Some(ErrorClass::OutputFailed), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("3 attempt"), "{msg}");
}

#[test]
fn registry_with_authentication() {
    let f = fixture();
    let reg = Registry::start_with_auth("tester", "s3cr3t-pass");
    let work = tmpdir();
    let dest = format!("docker://127.0.0.1:{}/auth/os:1", reg.port);
    let authfile = |pw: &str| {
        let p = work.path().join(format!("auth-{pw}.json"));
        let token = base64(&format!("tester:{pw}"));
        std::fs::write(
            &p,
            format!(
                r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{token}"}}}}}}"#,
                reg.port
            ),
        )
        .unwrap();
        (p, token)
    };
    let mut o = options(f, work.path());
    o.tls_verify = false;
    o.retries = 2;

    // No credentials: refused at once (not retried), classified, naming the registry.
    let t = Instant::now();
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    let msg = format!("{e:#}");
    assert_eq!(class_of(&e), Some(ErrorClass::OutputFailed), "{msg}");
    assert!(
        msg.contains("not retried") && msg.contains(&format!("127.0.0.1:{}", reg.port)),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{msg}");

    // Wrong password: refused, and neither the password nor the token shows up.
    let (bad, bad_token) = authfile("wrong-horse-battery");
    o.authfile = Some(bad);
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    let msg = format!("{e:#} {e:?}");
    assert!(
        !msg.contains("wrong-horse-battery") && !msg.contains(&bad_token),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("unauthorized"), "{msg}");

    // Right password: pushed, and readable with the same credentials.
    let (good, _) = authfile("s3cr3t-pass");
    o.authfile = Some(good.clone());
    let r = oci::build_and_push(&o, &dest).unwrap();
    let info = inspect(
        &dest,
        &["--tls-verify=false", "--authfile", good.to_str().unwrap()],
    );
    assert_eq!(info["Digest"], r.manifest_digest.as_str());

    // A missing authfile is an input error.
    o.authfile = Some(work.path().join("missing.json"));
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput), "{e:#}");
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs only as a child of `reproducible_across_processes` (a fresh process means fresh
/// HashMap seeds, so any hash-order dependence in the image would show).
#[test]
#[ignore]
fn child_build() {
    let (Ok(repo), Ok(out)) = (
        std::env::var("OCI_CHILD_REPO"),
        std::env::var("OCI_CHILD_OUT"),
    ) else {
        return;
    };
    let work = tmpdir();
    let o = OciOptions {
        repo: repo.into(),
        rev: REF.into(),
        workdir: work.path().to_path_buf(),
        ..Default::default()
    };
    let r = oci::build_and_push(&o, &format!("oci:{out}")).unwrap();
    std::fs::write(format!("{out}.digest"), r.manifest_digest).unwrap();
}

#[test]
fn reproducible_across_processes() {
    let f = fixture();
    let out = tmpdir();
    let mut digests = Vec::new();
    for i in 0..2 {
        let img = out.path().join(format!("img{i}"));
        run(Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_build", "--ignored", "--nocapture"])
            .env("OCI_CHILD_REPO", &f.repo)
            .env("OCI_CHILD_OUT", &img));
        digests.push(std::fs::read_to_string(format!("{}.digest", img.display())).unwrap());
    }
    assert!(digests[0].starts_with("sha256:"), "{digests:?}");
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn archive_repo_gives_the_same_image() {
    let f = fixture();
    let d = tmpdir();
    let archive = d.path().join("archive");
    run(Command::new("ostree")
        .arg(format!("--repo={}", archive.display()))
        .args(["init", "--mode=archive"]));
    run(Command::new("ostree")
        .arg(format!("--repo={}", archive.display()))
        .arg("pull-local")
        .arg(&f.repo)
        .arg(REF));
    let mut digests = Vec::new();
    for repo in [&f.repo, &archive] {
        let work = tmpdir();
        let mut o = options(f, work.path());
        o.repo = repo.clone();
        let out = d.path().join(format!("img-{}", digests.len()));
        let r = oci::build_and_push(&o, &format!("oci:{}", out.display())).unwrap();
        digests.push(r.manifest_digest);
    }
    assert_eq!(digests[0], digests[1]);
}

/// Manual measurement, not part of the suite:
/// `OCI_MEASURE_DIR=/usr/lib/x86_64-linux-gnu cargo test --test oci measure -- --ignored --nocapture`
/// commits the directory as the root of a tree and times each step.
#[test]
#[ignore]
fn measure_dir_throughput() {
    let Ok(src) = std::env::var("OCI_MEASURE_DIR") else {
        return;
    };
    let d = tmpdir();
    let repo = d.path().join("repo");
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["init", "--mode=bare-user"]));
    let t = Instant::now();
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args([
            "commit",
            "--branch=m/x86_64",
            "--timestamp=2024-01-01T00:00:00Z",
        ])
        .arg(format!("--tree=dir={src}")));
    eprintln!("measure: ostree commit {:.1}s", t.elapsed().as_secs_f32());
    let work = tmpdir();
    let o = OciOptions {
        repo: repo.clone(),
        rev: "m/x86_64".into(),
        arch: Some("x86_64".into()),
        workdir: work.path().to_path_buf(),
        ..Default::default()
    };
    let t = Instant::now();
    let r = oci::build_and_push_many(
        &o,
        &[
            format!("oci:{}", d.path().join("img").display()),
            format!("oci-archive:{}", d.path().join("img.tar").display()),
        ],
    )
    .unwrap();
    eprintln!(
        "measure: build + oci + oci-archive {:.1}s: {r:?}",
        t.elapsed().as_secs_f32()
    );
}

#[test]
fn non_bootable_commit_and_foreign_arch() {
    let f = fixture();
    let d = tmpdir();
    let repo = d.path().join("repo");
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["init", "--mode=bare-user"]));
    // Same tree, no ostree.bootable, no version.
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .arg("commit")
        .arg("--branch=plain/aarch64")
        .arg(format!("--tree=dir={}", f.rootfs.display()))
        .arg(format!("--timestamp={COMMIT_TIME}")));
    let work = tmpdir();
    let mut o = options(f, work.path());
    o.repo = repo;
    o.rev = "plain/aarch64".into();
    o.arch = Some("aarch64".into());
    let dest = format!("oci:{}:a", d.path().join("img").display());
    let r = oci::build_and_push(&o, &dest).unwrap();
    assert_eq!(r.architecture, "arm64");
    let info = inspect(&dest, &["--config"]);
    assert_eq!(info["architecture"], "arm64", "{info:#}");
    assert_eq!(info["os"], "linux");
    let labels = &info["config"]["Labels"];
    assert!(labels.get("containers.bootc").is_none(), "{labels:#}");
    assert!(labels.get("version").is_none(), "{labels:#}");
    assert_eq!(labels["ostree.commit"].as_str().unwrap().len(), 64);
    // The index entry carries the platform too.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("img/index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], r.manifest_digest.as_str());
    assert_eq!(entry["platform"]["architecture"], "arm64", "{index:#}");

    let mut bad = options(f, work.path());
    bad.arch = Some("vax".into());
    let e = oci::build_and_push(&bad, &dest).unwrap_err();
    assert_eq!(class_of(&e), Some(ErrorClass::InvalidInput), "{e:#}");
}

#[test]
fn prior_build_keeps_packing_when_packages_change() {
    let f = fixture();
    let d = tmpdir();
    let work = tmpdir();
    // Build 1: the fixture, packed into at most 5 bins.
    let mut o = options(f, work.path());
    o.max_layers = 5;
    let first = format!("oci:{}:one", d.path().join("img").display());
    oci::build_and_push(&o, &first).unwrap();
    let raw1 = inspect(&first, &["--raw"]);
    let prev = d.path().join("prev.json");
    std::fs::write(&prev, serde_json::to_vec(&raw1).unwrap()).unwrap();

    // Build 2: bigdata removed, newpkg added.
    let rootfs = d.path().join("rootfs2");
    run(Command::new("cp").arg("-a").arg(&f.rootfs).arg(&rootfs));
    let rpmdir = d.path().join("rpms");
    let newpkg = build_rpm(
        &Pkg::new("newpkg", "1.0").entry(blob("/usr/share/newpkg/data", 50_000, 9, 0o644)),
        &rpmdir,
    );
    let rpm = |args: &[&str]| {
        let mut c = Command::new("rpm");
        c.arg("--root")
            .arg(&rootfs)
            .args(["--dbpath", "/usr/share/rpm"])
            .args(args);
        c
    };
    run(&mut rpm(&["-e", "--nodeps", "--noscripts", "bigdata"]));
    run(rpm(&["-i", "--nodeps", "--noscripts"]).arg(&newpkg));
    run(Command::new("ostree")
        .arg(format!("--repo={}", f.repo.display()))
        .arg("commit")
        .arg("--branch=test2/x86_64")
        .arg(format!("--tree=dir={}", rootfs.display()))
        .arg("--add-metadata-string=version=2.0")
        .arg(format!("--timestamp={COMMIT_TIME}")));
    let mut o2 = options(f, work.path());
    o2.rev = "test2/x86_64".into();
    o2.max_layers = 5;
    o2.prior_manifest = Some(prev);
    let second = format!("oci:{}:two", d.path().join("img").display());
    let r2 = oci::build_and_push(&o2, &second).unwrap();
    let raw2 = inspect(&second, &["--raw"]);

    let layers = |raw: &serde_json::Value| -> Vec<Vec<String>> {
        raw["layers"].as_array().unwrap()[1..]
            .iter()
            .map(|l| {
                l["annotations"]["ostree.components"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    };
    let (l1, l2) = (layers(&raw1), layers(&raw2));
    assert_eq!(l1.len(), l2.len(), "{l1:?} {l2:?}");
    // Same bins, minus bigdata; newpkg goes into the last (reserved) bin.
    for (a, b) in l1.iter().zip(&l2).take(l1.len() - 1) {
        let a: Vec<_> = a.iter().filter(|p| *p != "bigdata").cloned().collect();
        assert_eq!(&a, b, "{l1:?} {l2:?}");
    }
    assert!(l2.last().unwrap().contains(&"newpkg".to_string()), "{l2:?}");
    assert!(!l2.iter().flatten().any(|p| p == "bigdata"), "{l2:?}");
    assert_eq!(r2.layer_count, raw2["layers"].as_array().unwrap().len());
    // And it still imports to the right commit.
    let c2 = run(Command::new("ostree")
        .arg(format!("--repo={}", f.repo.display()))
        .args(["rev-parse", "test2/x86_64"]));
    assert_eq!(
        unencapsulate(&format!("ostree-unverified-image:{second}"), false),
        c2.trim()
    );
}

#[test]
fn packages_of_empty_files_do_not_break_chunking() {
    // Edge input for ostree-ext's size statistics: every package component has size 0
    // (median and deviation 0), with few and with many layers.
    let d = tmpdir();
    // Only such packages: every component but the unpackaged rpmdb has size 0.
    let mut pkgs = vec![];
    // Distinct modes make distinct (empty) content objects, one per package.
    for (i, mode) in [0o644, 0o640, 0o600, 0o444, 0o400, 0o664]
        .into_iter()
        .enumerate()
    {
        pkgs.push(Pkg::new(&format!("empty{i}"), "1.0").entry(Entry::File {
            path: format!("/usr/share/empty{i}/marker"),
            content: vec![],
            mode,
            user: "root".into(),
            group: "root".into(),
            config: false,
            doc: false,
        }));
    }
    let rpmrepo = build_repo(&d.path().join("rpms"), &pkgs);
    let rootfs = d.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let rpms: Vec<PathBuf> = std::fs::read_dir(rpmrepo.join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run(Command::new("rpm")
        .arg("--root")
        .arg(&rootfs)
        .args([
            "--dbpath",
            "/usr/share/rpm",
            "-i",
            "--nodeps",
            "--noscripts",
        ])
        .args(&rpms));
    let repo = d.path().join("repo");
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["init", "--mode=bare-user"]));
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["commit", "--branch=e/x86_64"])
        .arg(format!("--tree=dir={}", rootfs.display())));
    let work = tmpdir();
    for max_layers in [4, 5, 64] {
        let o = OciOptions {
            repo: repo.clone(),
            rev: "e/x86_64".into(),
            arch: Some("x86_64".into()),
            max_layers,
            workdir: work.path().to_path_buf(),
            ..Default::default()
        };
        let dest = format!("oci:{}:m{max_layers}", d.path().join("img").display());
        let r = oci::build_and_push(&o, &dest).unwrap();
        assert!(r.layer_count >= 2, "{r:?}");
        let comps = components_of(&inspect(&dest, &["--raw"]));
        for i in 0..6 {
            assert!(comps.contains(&format!("empty{i}")), "{comps:?}");
        }
    }
}

/// The manifest and config of the image tagged `tag` in the OCI directory `dir`.
fn read_oci(dir: &Path, tag: &str) -> (serde_json::Value, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index:#}"));
    let blob = |digest: &serde_json::Value| -> Vec<u8> {
        let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
        std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&desc["digest"])).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
    (manifest, config)
}

/// A tar entry: (path, type, mode, uid, gid, link target, size, content sha256).
type TarEntry = (String, char, u32, u64, u64, String, u64, String);

/// Every tar entry of every layer of the image, deduplicated across layers.
fn image_entries(dir: &Path, tag: &str) -> std::collections::BTreeSet<TarEntry> {
    use sha2::Digest;
    use std::io::Read;
    let (manifest, _) = read_oci(dir, tag);
    let mut out = std::collections::BTreeSet::new();
    for l in manifest["layers"].as_array().unwrap() {
        let hex = l["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let f = std::fs::File::open(dir.join("blobs/sha256").join(hex)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert((
                path,
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                link,
                h.size().unwrap(),
                hex::encode(sha2::Sha256::digest(&data)),
            ));
        }
    }
    out
}

fn build_with(o: &OciOptions, dest: &str, writer: oci::encapsulate::Writer) -> oci::OciResult {
    let mut o = o.clone();
    o.writer = writer;
    oci::build_and_push(&o, dest).unwrap()
}

/// A commit with the corners of the format: /usr/etc, /var/tmp, /sysroot, content
/// shared by several paths (one listed before the others by the depth-first walk, files
/// first, but after them in path order), empty files, a "//" symlink, a symlink target and paths longer
/// than a tar header holds, a user xattr, a 0700 directory, detached metadata, a
/// container command; no rpmdb (everything is unpackaged content).
fn corner_case_commit(d: &Path) -> (PathBuf, String) {
    let root = d.join("corner-root");
    let long_dir = root
        .join("usr/lib")
        .join("d".repeat(60))
        .join("e".repeat(60));
    for p in [
        root.join("usr/bin"),
        root.join("usr/etc/app"),
        root.join("usr/share/empty"),
        root.join("var/tmp"),
        root.join("sysroot"),
        root.join("usr/lib/private"),
        long_dir.clone(),
    ] {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(root.join("usr/bin/tool"), noise(70_000, 11)).unwrap();
    std::fs::write(root.join("usr/bin/tool-copy"), noise(70_000, 11)).unwrap();
    std::fs::write(root.join("usr/zz-tool"), noise(70_000, 11)).unwrap();
    std::fs::write(root.join("usr/etc/app/app.conf"), "key=value\n").unwrap();
    std::fs::write(root.join("usr/share/empty/a"), "").unwrap();
    std::fs::write(root.join("usr/share/empty/b"), "").unwrap();
    std::fs::write(long_dir.join("f".repeat(40)), noise(5_000, 12)).unwrap();
    std::os::unix::fs::symlink("../..//sbin/chkconfig", root.join("usr/bin/denormal")).unwrap();
    std::os::unix::fs::symlink(
        format!(
            "../lib/{}/{}/{}",
            "d".repeat(60),
            "e".repeat(60),
            "f".repeat(40)
        ),
        root.join("usr/bin/longlink"),
    )
    .unwrap();
    let x = root.join("usr/lib/private/with-xattr");
    std::fs::write(&x, "xattr carrier\n").unwrap();
    run(Command::new("setfattr")
        .args(["-n", "user.composer.test", "-v", "hello"])
        .arg(&x));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("usr/lib/private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("var/tmp"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    let repo = d.join("corner-repo");
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["init", "--mode=bare-user"]));
    let commit = run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args([
            "commit",
            "--branch=corner/x86_64",
            "--owner-uid=0",
            "--owner-gid=0",
        ])
        .arg(format!("--tree=dir={}", root.display()))
        .arg("--add-metadata-string=version=7")
        .arg("--add-metadata-string=ostree.linux=6.1.0")
        .arg("--add-metadata=ostree.container-cmd=['/usr/bin/tool', '--x']")
        .arg("--add-detached-metadata-string=note=detached")
        .arg(format!("--timestamp={COMMIT_TIME}")))
    .trim()
    .to_string();
    (repo, commit)
}

/// The parallel writer gives byte for byte ostree-ext's image when both pack alike
/// (fewer components than layers): same layers, config and manifest digest.
#[test]
fn parallel_writer_is_byte_identical_to_ostree_ext() {
    use oci::encapsulate::Writer;
    let f = fixture();
    let d = tmpdir();
    let work = tmpdir();
    let (corner_repo, corner_commit) = corner_case_commit(d.path());
    let mut corner = options(f, work.path());
    corner.repo = corner_repo.clone();
    corner.rev = "corner/x86_64".into();
    corner.arch = Some("x86_64".into());
    corner.copymeta_opt = vec!["version".into(), "no.such.key".into()];
    for (name, o) in [("fixture", options(f, work.path())), ("corner", corner)] {
        let img = d.path().join(format!("img-{name}"));
        let t = Instant::now();
        let ext = build_with(&o, &format!("oci:{}:ext", img.display()), Writer::OstreeExt);
        let t_ext = t.elapsed();
        let t = Instant::now();
        let par = build_with(&o, &format!("oci:{}:par", img.display()), Writer::Parallel);
        eprintln!(
            "{name}: ostree-ext {:.2}s, parallel {:.2}s, {} layers",
            t_ext.as_secs_f32(),
            t.elapsed().as_secs_f32(),
            par.layer_count
        );
        let (m_ext, c_ext) = read_oci(&img, "ext");
        let (m_par, c_par) = read_oci(&img, "par");
        assert_eq!(
            c_ext["rootfs"], c_par["rootfs"],
            "{name}: layer diff IDs differ"
        );
        assert_eq!(c_ext, c_par, "{name}: configs differ");
        assert_eq!(m_ext, m_par, "{name}: manifests differ");
        assert_eq!(ext.manifest_digest, par.manifest_digest, "{name}");
    }

    // The corner-case image imports back to the same commit, and the repo is sound.
    let img = d.path().join("img-corner");
    let (commit, repo) = import_image(
        &format!("ostree-unverified-image:oci:{}:par", img.display()),
        false,
    );
    assert_eq!(commit, corner_commit);
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.path().display()))
        .args(["fsck"]));
    let ls = run(Command::new("ostree")
        .arg(format!("--repo={}", repo.path().display()))
        .args(["ls", "-X", &commit, "/usr/lib/private/with-xattr"]));
    assert!(ls.contains("user.composer.test"), "{ls}");
    let info = inspect(&format!("oci:{}:par", img.display()), &["--config"]);
    let labels = &info["config"]["Labels"];
    assert_eq!(labels["ostree.commit"], corner_commit.as_str(), "{info:#}");
    assert_eq!(labels["ostree.linux"], "6.1.0");
    assert_eq!(labels["version"], "7");
    assert_eq!(info["config"]["Cmd"][1], "--x", "{info:#}");
    // The detached metadata travelled in the commit layer.
    let entries = image_entries(&img, "par");
    assert!(
        entries.iter().any(|e| e.0.ends_with(".commitmeta")),
        "no commitmeta"
    );
}

/// The object sizes read on several threads give ostree-ext's component sizes
/// (`ObjectMetaSized::compute_sizes`), and the walk lists every path of an object in
/// the depth-first order (a directory's files before its subdirectories).
#[test]
fn walk_and_sizes_match_ostree_ext() {
    use ostree_composer::oci::chunking;
    use ostree_ext::chunking::ObjectMetaSized;
    use ostree_ext::objectsource::ObjectMeta;
    let f = fixture();
    let d = tmpdir();
    let (corner_repo, _) = corner_case_commit(d.path());
    for (path, rev) in [(f.repo.clone(), REF), (corner_repo, "corner/x86_64")] {
        let repo = ostree::Repo::new_for_path(&path);
        repo.open(ostree::gio::Cancellable::NONE).unwrap();
        let commit = repo.resolve_rev(rev, false).unwrap().unwrap().to_string();
        let tree = tree_walk::walk_commit(&repo, &commit).unwrap();
        // Every file path once, under its object.
        let listed: usize = tree.object_paths.values().map(Vec::len).sum();
        assert_eq!(listed, tree.files.len());
        for (csum, paths) in &tree.object_paths {
            assert!(paths.iter().all(|p| tree.files[p] == *csum));
        }
        // Components of several sizes, some sharing a size (ties keep identifier order).
        let ids = component_ids(5);
        let set = || component_set(&ids);
        let mut map = indexmap::IndexMap::new();
        for (i, csum) in tree.object_paths.keys().enumerate() {
            map.insert(csum.clone(), ids[i % ids.len()].clone());
        }
        let meta = || ObjectMeta {
            set: set(),
            map: map.clone(),
        };
        let theirs = ObjectMetaSized::compute_sizes(&repo, meta()).unwrap();
        let sizes = chunking::object_sizes(&path, &tree).unwrap();
        let ours = chunking::sized_meta(meta(), &sizes).unwrap();
        assert_eq!(
            serde_json::to_value(&ours.sizes).unwrap(),
            serde_json::to_value(&theirs.sizes).unwrap(),
            "{rev}"
        );
        assert_eq!(ours.map, theirs.map);
    }
    // The corner commit has one object at /usr/bin/tool, /usr/bin/tool-copy and
    // /usr/zz-tool: /usr's own files come before its subdirectories.
    let repo_path = d.path().join("corner-repo");
    let repo = ostree::Repo::new_for_path(&repo_path);
    repo.open(ostree::gio::Cancellable::NONE).unwrap();
    let commit = repo
        .resolve_rev("corner/x86_64", false)
        .unwrap()
        .unwrap()
        .to_string();
    let tree = tree_walk::walk_commit(&repo, &commit).unwrap();
    let tool = &tree.files["/usr/bin/tool"];
    assert_eq!(
        tree.object_paths[tool],
        vec!["/usr/zz-tool", "/usr/bin/tool", "/usr/bin/tool-copy"]
    );
}

/// The tree read on demand (used to find the rpmdb before the walk ends) sees every
/// path as the walked tree does, and resolves paths through symlinks alike.
#[test]
fn lazy_tree_agrees_with_the_walk() {
    use ostree_composer::oci::chunking::{self, PathKind, TreeView};
    let f = fixture();
    let repo = ostree::Repo::new_for_path(&f.repo);
    repo.open(ostree::gio::Cancellable::NONE).unwrap();
    let tree = tree_walk::walk_commit(&repo, &f.commit).unwrap();
    let mut lazy = chunking::LazyTree::new(&repo, &f.commit).unwrap();
    for d in &tree.dirs {
        assert_eq!(lazy.kind(d).unwrap(), PathKind::Dir, "{d}");
    }
    for (p, c) in &tree.files {
        assert_eq!(lazy.kind(p).unwrap(), PathKind::File(c.clone()), "{p}");
    }
    for p in ["/nope", "/usr/nope", "/usr/bin/nope/deeper", "/etc"] {
        assert_eq!(lazy.kind(p).unwrap(), PathKind::Missing, "{p}");
    }
    let under_usr: Vec<(String, String)> = tree
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("/usr/"))
        .map(|(p, c)| (p.clone(), c.clone()))
        .collect();
    assert_eq!(lazy.files_under("/usr").unwrap(), under_usr);
    let mut symlink = |c: &str| chunking::symlink_target(&repo, c);
    for p in tree
        .files
        .keys()
        .chain(["/etc/hello.conf".to_string()].iter())
    {
        assert_eq!(
            chunking::resolve_path(&mut lazy, p, &mut symlink).unwrap(),
            chunking::resolve_in_tree(&tree, p, &mut symlink).unwrap(),
            "{p}"
        );
    }
    let mut view = &tree;
    assert_eq!(
        chunking::resolve_path(&mut view, "/etc/hello.conf", &mut symlink)
            .unwrap()
            .as_deref(),
        Some("/usr/etc/hello.conf")
    );
    // The rpmdb is found without the walk.
    let d = tmpdir();
    let dbpath = chunking::extract_rpmdb(&repo, &f.commit, d.path()).unwrap();
    assert_eq!(dbpath.as_deref(), Some("usr/share/rpm"));
    assert!(d.path().join("usr/share/rpm/rpmdb.sqlite").is_file());
}

/// The commit layer written ahead (while the packages are mapped) is the one the
/// layer pool writes; when the packing leaves an object without a layer (it then
/// belongs in the commit layer), the one written ahead is not used.
#[test]
fn commit_layer_written_ahead_only_when_right() {
    use ostree_composer::oci::chunking;
    use ostree_composer::oci::chunkwriter::ImageWriter;
    use ostree_composer::oci::encapsulate::{EncapsulateInputs, Writer};
    use ostree_ext::objectsource::ObjectMeta;
    let f = fixture();
    let d = tmpdir();
    let repo = ostree::Repo::new_for_path(&f.repo);
    repo.open(ostree::gio::Cancellable::NONE).unwrap();
    let tree = tree_walk::walk_commit(&repo, &f.commit).unwrap();
    let sizes = chunking::object_sizes(&f.repo, &tree).unwrap();
    let mut commit_layers = Vec::new();
    for total in [true, false] {
        let ids = component_ids(3);
        let set = component_set(&ids);
        let mut map = indexmap::IndexMap::new();
        for (i, csum) in tree.object_paths.keys().enumerate() {
            if total || i > 0 {
                map.insert(csum.clone(), ids[i % ids.len()].clone());
            }
        }
        let sized = chunking::sized_meta(ObjectMeta { set, map }, &sizes).unwrap();
        let inputs = EncapsulateInputs {
            repo: &repo,
            commit: &f.commit,
            labels: BTreeMap::new(),
            cmd: None,
            container_config: None,
            copymeta: vec![],
            copymeta_opt: vec![],
            max_layers: std::num::NonZeroU32::new(8).unwrap(),
            contentmeta: &sized,
            prior_build: None,
            created: COMMIT_TIME.into(),
            writer: Writer::Parallel,
        };
        let ahead_dir = d.path().join(format!("ahead-{total}"));
        let w = ImageWriter::open(&repo, &f.commit, &ahead_dir).unwrap();
        let layer = w.commit_layer().unwrap();
        w.finish(&inputs, &tree, Some(move || Ok(layer)), "t")
            .unwrap();
        let pool_dir = d.path().join(format!("pool-{total}"));
        let w = ImageWriter::open(&repo, &f.commit, &pool_dir).unwrap();
        w.finish(
            &inputs,
            &tree,
            None::<fn() -> anyhow::Result<ocidir::Layer>>,
            "t",
        )
        .unwrap();
        let (ahead, _) = read_oci(&ahead_dir, "t");
        let (pool, _) = read_oci(&pool_dir, "t");
        assert_eq!(ahead, pool, "total mapping: {total}");
        commit_layers.push(pool["layers"][0]["digest"].clone());
    }
    // The object without a layer went into the commit layer.
    assert_ne!(commit_layers[0], commit_layers[1]);
}

/// A dirtree that cannot be read makes the walk fail with its name (the other readers
/// stop instead of waiting for it).
#[test]
fn walk_reports_an_unreadable_dirtree() {
    let d = tmpdir();
    let (repo_path, commit) = corner_case_commit(d.path());
    let ls = run(Command::new("ostree")
        .arg(format!("--repo={}", repo_path.display()))
        .args(["ls", "-C", "-d", &commit, "/usr/lib/private"]));
    let dirtree = ls.split_whitespace().nth(4).unwrap().to_string();
    assert_eq!(dirtree.len(), 64, "{ls}");
    let obj = repo_path
        .join("objects")
        .join(&dirtree[..2])
        .join(format!("{}.dirtree", &dirtree[2..]));
    std::fs::remove_file(&obj).unwrap();
    let repo = ostree::Repo::new_for_path(&repo_path);
    repo.open(ostree::gio::Cancellable::NONE).unwrap();
    let e = tree_walk::walk_commit(&repo, &commit).unwrap_err();
    assert!(format!("{e:#}").contains(&dirtree), "{e:#}");
}

/// With more components than layers the two writers pack differently, but the image
/// holds the same tar entries, the labels point at the right layers, and it imports
/// back to the same commit, reproducibly.
#[test]
fn parallel_writer_merged_packing_equivalent_to_ostree_ext() {
    use oci::encapsulate::Writer;
    let f = fixture();
    let d = tmpdir();
    let work = tmpdir();
    let img = d.path().join("img");
    let mut o = options(f, work.path());
    o.max_layers = 4;
    let ext = build_with(&o, &format!("oci:{}:ext", img.display()), Writer::OstreeExt);
    let par = build_with(&o, &format!("oci:{}:par", img.display()), Writer::Parallel);
    let again = build_with(
        &o,
        &format!("oci:{}:again", img.display()),
        Writer::Parallel,
    );
    assert_eq!(par.manifest_digest, again.manifest_digest);
    assert_ne!(par.manifest_digest, ext.manifest_digest);
    assert!(par.layer_count <= 5, "{par:?}");
    assert_eq!(image_entries(&img, "ext"), image_entries(&img, "par"));

    let (m, c) = read_oci(&img, "par");
    let diff_ids = c["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), m["layers"].as_array().unwrap().len());
    assert_eq!(
        c["config"]["Labels"]["ostree.final-diffid"],
        *diff_ids.last().unwrap()
    );
    assert_eq!(m["annotations"], c["config"]["Labels"]);
    assert_eq!(
        c["history"].as_array().unwrap().len(),
        diff_ids.len(),
        "one history entry per layer"
    );
    // Every component in exactly one layer; the last layer is reserved for new packages.
    let mut comps = components_of(&m);
    let n = comps.len();
    comps.sort();
    comps.dedup();
    assert_eq!(comps.len(), n);
    let mut ext_comps = components_of(&read_oci(&img, "ext").0);
    ext_comps.sort();
    assert_eq!(comps, ext_comps);
    let last = m["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["annotations"]["ostree.components"], "", "{m:#}");

    let dest = format!("ostree-unverified-image:oci:{}:par", img.display());
    let (commit, repo) = import_image(&dest, false);
    assert_eq!(commit, f.commit);
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.path().display()))
        .args(["fsck"]));
}

/// A layer thread that fails (a dirmeta object, read only by the commit layer, is
/// missing) fails the whole build with an error naming the object; nothing is left in
/// the work directory or at the destination.
#[test]
fn parallel_writer_reports_a_failing_layer() {
    let f = fixture();
    let d = tmpdir();
    let repo = d.path().join("repo");
    run(Command::new("cp").arg("-a").arg(&f.repo).arg(&repo));
    let ls = run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["ls", "-C", "-d", REF, "/usr/lib64"]));
    let csum = ls.split_whitespace().nth(5).unwrap().to_string();
    assert_eq!(csum.len(), 64, "{ls}");
    std::fs::remove_file(
        repo.join("objects")
            .join(&csum[..2])
            .join(format!("{}.dirmeta", &csum[2..])),
    )
    .unwrap();
    let work = tmpdir();
    let mut o = options(f, work.path());
    o.repo = repo;
    let dest = format!("oci:{}", d.path().join("img").display());
    let e = oci::build_and_push(&o, &dest).unwrap_err();
    let msg = format!("{e:#}");
    assert_eq!(class_of(&e), Some(ErrorClass::OutputFailed), "{msg}");
    assert!(
        msg.contains(&csum) && msg.contains("Writing the commit layer"),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    assert!(!d.path().join("img").exists());
}

/// Manual check on a real image, not part of the suite:
/// `OCI_ROUNDTRIP_IMAGE=oci:/path/img OCI_ROUNDTRIP_COMMIT=<checksum> cargo test --test oci roundtrip_external -- --ignored --nocapture`
/// imports the image into a fresh repo with ostree-ext and checks the commit and `ostree fsck`.
#[test]
#[ignore]
fn roundtrip_external_image() {
    let (Ok(img), Ok(commit)) = (
        std::env::var("OCI_ROUNDTRIP_IMAGE"),
        std::env::var("OCI_ROUNDTRIP_COMMIT"),
    ) else {
        return;
    };
    let t = Instant::now();
    let (got, repo) = import_image(&format!("ostree-unverified-image:{img}"), false);
    eprintln!("imported {got} in {:.1}s", t.elapsed().as_secs_f32());
    assert_eq!(got, commit);
    let fsck = run(Command::new("ostree")
        .arg(format!("--repo={}", repo.path().display()))
        .arg("fsck"));
    eprintln!("{fsck}");
}

/// `n` component identifiers, `comp-0`...
fn component_ids(n: usize) -> Vec<std::rc::Rc<str>> {
    (0..n)
        .map(|i| std::rc::Rc::from(format!("comp-{i}")))
        .collect()
}

/// The component set of `ids`, all alike but for their names.
fn component_set(ids: &[std::rc::Rc<str>]) -> ostree_ext::objectsource::ObjectMetaSet {
    ids.iter()
        .map(|id| ostree_ext::objectsource::ObjectSourceMeta {
            identifier: id.clone(),
            name: id.clone(),
            srcid: id.clone(),
            change_time_offset: 1,
            change_frequency: 1,
        })
        .collect()
}

//! A bootable compose of `corpus-large` end to end: real Debian software with
//! a real kernel and the real dracut (repackaged as RPMs by
//! `../shared/bench/make-rpm-corpus`), so the kernel step runs as it does
//! for users: depmod, dracut chrooted into the tree, the initramfs
//! compressed in dracut's pipeline, and the initramfs cache across composes.
//!
//! Slow: the corpus build downloads ~300 MiB of .debs the first time (kept
//! under /var/tmp/ostree-composer-corpus and reused), and each bootable
//! compose takes 5-20 s. Skipped, with a message, only when ../shared is
//! absent.
mod common;

use common::compose_fixture::{init_repo, ostree, ostree_ok, text};
use common::composer_bin;
use ostree_composer::postprocess::early_cpio::early_cpio_len;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const REF: &str = "corpus/x86_64/large";
/// What the log says when dracut-install copies in the kernel and dracut's
/// ldd is the program that stands in for glibc's script.
const FAST_COPY: &str =
    "(dracut-install copies in the kernel, not with cp; ldd runs without a shell)";

/// The generated manifest plus `extra`, in a directory of its own.
fn manifest(corpus: &Path, dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let generated = std::fs::read_to_string(corpus.join("manifest.yaml")).unwrap();
    let path = dir.join("manifest.yaml");
    std::fs::write(
        &path,
        format!("{generated}\nboot-location: modules\n{extra}"),
    )
    .unwrap();
    std::fs::copy(corpus.join("corpus.repo"), dir.join("corpus.repo")).unwrap();
    path
}

fn compose(repo: &Path, cache: &Path, manifest: &Path, extra: &[&str]) -> (Output, f64) {
    let t = Instant::now();
    let out = Command::new(composer_bin())
        .args(["compose", "tree", "--force-nocache"])
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--cachedir={}", cache.display()))
        .args(extra)
        .arg(manifest)
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    (out, wall)
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The commit's initramfs image.
fn initramfs_image(repo: &Path, kver: &str) -> Vec<u8> {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args([
            "cat",
            REF,
            &format!("/usr/lib/modules/{kver}/initramfs.img"),
        ])
        .output()
        .unwrap()
        .stdout
}

/// The paths in the first cpio archive of `bytes`, with `cpio -it`.
fn cpio_names(bytes: &[u8], scratch: &Path) -> String {
    let cpio_file = scratch.join("initramfs.cpio");
    std::fs::write(&cpio_file, bytes).unwrap();
    let list = Command::new("cpio")
        .args(["-it", "--quiet", "-F"])
        .arg(&cpio_file)
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", text(&list));
    String::from_utf8(list.stdout).unwrap()
}

/// The paths of the zstd frame at the start of `img` (the kernel's config
/// has CONFIG_RD_ZSTD) holding dracut's cpio.
fn zstd_cpio_names(img: &[u8], scratch: &Path) -> String {
    assert_eq!(&img[..4], &ZSTD_MAGIC, "zstd magic");
    let mut cpio = Vec::new();
    zstd::stream::read::Decoder::new(img)
        .unwrap()
        .single_frame()
        .read_to_end(&mut cpio)
        .unwrap();
    cpio_names(&cpio, scratch)
}

/// The paths in the commit's initramfs: a zstd frame holding dracut's
/// cpio, then the device-node cpio.
fn initramfs_names(repo: &Path, kver: &str, scratch: &Path) -> String {
    zstd_cpio_names(&initramfs_image(repo, kver), scratch)
}

/// The kernel version and the initramfs content checksum of the commit.
fn initramfs(repo: &Path) -> (String, String) {
    let ls = ostree(repo, &["ls", REF, "/usr/lib/modules"]);
    let kver = ls
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find_map(|p| p.strip_prefix("/usr/lib/modules/"))
        .expect("a kernel in usr/lib/modules")
        .to_string();
    let img = format!("/usr/lib/modules/{kver}/initramfs.img");
    let line = ostree(repo, &["ls", "-C", REF, &img]);
    let checksum = line.split_whitespace().nth(4).unwrap().to_string();
    (kver, checksum)
}

#[test]
fn bootable_compose_of_corpus_large_and_initramfs_reuse() {
    let Some(shared) = common::shared_dir() else {
        eprintln!("SKIPPED: ../shared is absent, corpus-large cannot be built");
        return;
    };
    let corpus = common::build_corpus(&shared, "large");
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let w = work.path();
    let repo = w.join("repo");
    init_repo(&repo, "bare-user");
    let cache = w.join("cache");
    let plain = manifest(&corpus, &w.join("m1"), "");

    // 1. Cold: dracut runs, and its run is recorded.
    let json = w.join("compose.json");
    let json_arg = format!("--write-composejson-to={}", json.display());
    let kernel_json = || -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        v["kernel"].clone()
    };
    let (out, wall) = compose(&repo, &cache, &plain, &[&json_arg]);
    let log = text(&out);
    eprintln!("cold bootable compose: {wall:.1}s");
    assert!(
        log.contains("Initramfs: building (dracut did not run before)"),
        "{log}"
    );
    assert!(
        log.contains("Kernel modules: running depmod (depmod did not run before)"),
        "{log}"
    );
    assert!(
        log.contains("Kernel modules: index cached for later composes"),
        "{log}"
    );
    assert!(log.contains("Initramfs cached for later composes"), "{log}");
    // The test machine's filesystem cannot clone (ext4): without the fast
    // copy dracut-install would fork cp for every file.
    assert!(log.contains(FAST_COPY), "{log}");
    let (kver, built) = initramfs(&repo);
    assert_eq!(
        kernel_json(),
        serde_json::json!({"version": kver, "initramfs": "built", "module-index": "written"})
    );
    assert!(ostree_ok(&repo, &["fsck"]));
    let names = initramfs_names(&repo, &kver, w);
    for want in [
        "init",
        "usr/lib/ostree/ostree-prepare-root",
        &format!("usr/lib/modules/{kver}/modules.dep"),
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} not in the initramfs"
        );
    }

    // 2. A change dracut does not read: the image is reused, not rebuilt.
    let unread = manifest(
        &corpus,
        &w.join("m2"),
        "postprocess:\n  - |\n    #!/bin/sh\n    echo changed >> /usr/share/composer-note\n",
    );
    // The file exists in both composes (so the list of files is the same):
    // the first run of this manifest adds it, and is a rebuild.
    let (out, _) = compose(&repo, &cache, &unread, &[]);
    assert!(
        text(&out).contains("Initramfs: building ("),
        "{}",
        text(&out)
    );
    let unread2 = manifest(
        &corpus,
        &w.join("m3"),
        "postprocess:\n  - |\n    #!/bin/sh\n    echo 'changed again' >> /usr/share/composer-note\n",
    );
    let (out, wall) = compose(&repo, &cache, &unread2, &[&json_arg]);
    let log = text(&out);
    eprintln!("bootable compose reusing the initramfs: {wall:.1}s");
    assert!(log.contains("Initramfs: reusing the image"), "{log}");
    assert!(!log.contains("dracut: Executing"), "dracut ran: {log}");
    assert!(
        log.contains("Kernel modules: reusing the index depmod wrote"),
        "{log}"
    );
    let (_, reused) = initramfs(&repo);
    assert_eq!(
        kernel_json(),
        serde_json::json!({"version": kver, "initramfs": "reused", "module-index": "reused"})
    );
    assert_eq!(
        ostree(&repo, &["cat", REF, "/usr/share/composer-note"]),
        "changed again\n"
    );

    // 3. The same tree without the cache and with dracut-install forking
    // cp: dracut builds the same image, byte for byte.
    let repo2 = w.join("repo2");
    init_repo(&repo2, "bare-user");
    let (out, _) = compose(
        &repo2,
        &cache,
        &unread2,
        &["--no-initramfs-cache", "--no-dracut-fast-copy"],
    );
    assert!(text(&out).contains("dracut: Executing"), "{}", text(&out));
    for fast in ["copies in the kernel", "ldd runs without a shell"] {
        assert!(!text(&out).contains(fast), "{}", text(&out));
    }
    assert_eq!(
        initramfs(&repo2).1,
        reused,
        "the reused image (built with the fast copy) is what dracut builds with cp"
    );
    assert_eq!(reused, built, "the change does not reach the initramfs");

    // 4. A change in a file dracut reads: rebuilt, and named in the log.
    let read = manifest(
        &corpus,
        &w.join("m4"),
        "postprocess:\n  - |\n    #!/bin/sh\n    echo 'changed again' >> /usr/share/composer-note\n    \
         echo '# edited' >> /etc/dracut.conf.d/ostree.conf\n",
    );
    let (out, _) = compose(&repo, &cache, &read, &[]);
    let log = text(&out);
    assert!(
        log.contains(
            "Initramfs: building (/usr/etc/dracut.conf.d/ostree.conf, which dracut read, differs)"
        ),
        "{log}"
    );
    assert!(log.contains("dracut: Executing"), "{log}");

    // 5. Modules listed in modules-load.d, which dracut's systemd module
    // cannot read in the chroot (no /dev/fd): the compose adds those the
    // kernel has files for, and names the others.
    let listed = manifest(
        &corpus,
        &w.join("m5"),
        "postprocess:\n  - |\n    #!/bin/sh\n    mkdir -p /usr/lib/modules-load.d\n    \
         printf '# listed\\nbr_netfilter\\nno-such-module\\n' > /usr/lib/modules-load.d/t.conf\n",
    );
    let (out, _) = compose(&repo, &cache, &listed, &[]);
    let log = text(&out);
    assert!(log.contains("dracut: Executing"), "{log}");
    assert!(
        log.contains(
            "lists (dracut cannot read the list without /dev/fd in this chroot): br_netfilter\n"
        ),
        "{log}"
    );
    assert!(
        log.contains("(built in, or aliases), not added to the initramfs: no-such-module\n"),
        "{log}"
    );
    let names = initramfs_names(&repo, &kver, w);
    assert!(
        names.lines().any(|l| l.starts_with(&format!(
            "usr/lib/modules/{kver}/kernel/net/bridge/br_netfilter.ko"
        ))),
        "br_netfilter not in the initramfs"
    );

    // 6. Microcode in the tree: dracut puts it into an early cpio, which
    // must stay uncompressed in front of the compressed image (where the
    // kernel looks for it); the compression is dracut's own pipeline.
    let ucode = manifest(
        &corpus,
        &w.join("m6"),
        "postprocess:\n  - |\n    #!/bin/sh\n    mkdir -p /usr/lib/firmware/intel-ucode\n    \
         printf 'not really microcode' > /usr/lib/firmware/intel-ucode/06-0f-01\n",
    );
    let (out, _) = compose(&repo, &cache, &ucode, &[]);
    let log = text(&out);
    assert!(log.contains("Constructing GenuineIntel.bin"), "{log}");
    assert!(
        log.contains("Initramfs: compressed with zstd in dracut's pipeline"),
        "{log}"
    );
    let img = initramfs_image(&repo, &kver);
    assert_eq!(&img[..6], b"070701", "an uncompressed cpio first");
    let early = cpio_names(&img, w);
    assert!(
        early
            .lines()
            .any(|l| l == "kernel/x86/microcode/GenuineIntel.bin"),
        "{early}"
    );
    assert!(!early.lines().any(|l| l == "init"), "{early}");
    let early_len = early_cpio_len(&mut &img[..])
        .unwrap()
        .expect("dracut's early cpio, with its marker, first");
    let names = zstd_cpio_names(&img[early_len as usize..], w);
    assert!(names.lines().any(|l| l == "init"), "{names}");
    assert!(ostree_ok(&repo, &["fsck"]));
}

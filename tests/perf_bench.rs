//! Ad-hoc measurements of the export (bare-user -> archive), run by hand:
//! `PERF_SRC=/path/to/bare-user-repo PERF_REF=ref cargo test --test perf_bench -- --ignored --nocapture`.
//! Prints wall time and CPU time (user+sys of this process, all threads) for
//! `ostree pull-local`, libostree's pull in this process (all its threads) and
//! our export,
//! and checks that both destinations hold the same commit and pass fsck.
mod common;

use ostree::gio;
use ostree::glib::{self, ToVariant};
use std::path::PathBuf;
use std::time::Instant;

fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn init_archive(path: &std::path::Path) -> ostree::Repo {
    common::compose_fixture::init_repo(path, "archive");
    ostree_composer::commit::open_repo(path).unwrap()
}

#[test]
#[ignore]
fn export_cpu_and_wall() {
    let Ok(src) = std::env::var("PERF_SRC") else {
        eprintln!("PERF_SRC not set; skipping");
        return;
    };
    let src = PathBuf::from(src);
    let r#ref = std::env::var("PERF_REF").unwrap_or_else(|_| "corpus/x86_64/medium".into());
    let commit = common::compose_fixture::rev(&src, &r#ref);
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();

    // libostree's pull alone (the pull without the parallel import).
    let plain = tmp.path().join("plain");
    common::compose_fixture::init_repo(&plain, "archive");
    let (w, c) = (Instant::now(), cpu_secs());
    let st = std::process::Command::new("ostree")
        .arg(format!("--repo={}", plain.display()))
        .arg("pull-local")
        .arg(&src)
        .arg(&commit)
        .output()
        .unwrap();
    assert!(st.status.success());
    // The child's CPU is not in our rusage: report wall only.
    eprintln!("ostree pull-local: wall {:.2}s", w.elapsed().as_secs_f64());
    let _ = c;

    // libostree's pull in this process (CPU of all its threads measured).
    let inproc = tmp.path().join("inproc");
    let repo = init_archive(&inproc);
    let (w, c) = (Instant::now(), cpu_secs());
    let dict = glib::VariantDict::new(None);
    dict.insert_value("refs", &vec![commit.clone()].to_variant());
    dict.insert_value("gpg-verify", &false.to_variant());
    repo.pull_with_options(
        &format!("file://{}", src.canonicalize().unwrap().display()),
        &dict.end(),
        None,
        gio::Cancellable::NONE,
    )
    .unwrap();
    let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_secs() - c);
    eprintln!(
        "libostree pull in-process: wall {wall:.2}s cpu {cpu:.2}s cpu/wall {:.2}",
        cpu / wall
    );

    let dest = tmp.path().join("export");
    let (w, c) = (Instant::now(), cpu_secs());
    ostree_composer::export::export(&ostree_composer::export::ExportOptions {
        src_repo: src.clone(),
        dest: dest.clone(),
        ref_: r#ref.clone(),
        commit: commit.clone(),
        gpg_key: None,
        gpg_homedir: None,
        static_delta: false,
        deflated_ahead: None,
    })
    .unwrap();
    let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_secs() - c);
    eprintln!(
        "export: wall {wall:.2}s cpu {cpu:.2}s cpu/wall {:.2}",
        cpu / wall
    );
    assert_eq!(common::compose_fixture::rev(&dest, &r#ref), commit);
    common::compose_fixture::ostree(&dest, &["fsck"]);
}

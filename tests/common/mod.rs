//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod compose_fixture;
pub mod registry;
pub mod rpmfixture;

use std::path::PathBuf;

/// `../shared` beside the checkout (CI always has it).
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

/// Run `cmd` and return its stdout; panic with its status and output when it
/// fails.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The built binary under test.
pub fn composer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ostree-composer"))
}

/// Where `../shared/bench/make-rpm-corpus` builds corpus `tier` (medium,
/// large) for the tests: kept between runs, since the first build downloads
/// the .debs.
pub fn corpus_dir(tier: &str) -> PathBuf {
    std::env::var_os("OSTREE_COMPOSER_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/ostree-composer-corpus"))
        .join(tier)
}

/// Build (or bring up to date) corpus `tier` in [`corpus_dir`].
pub fn build_corpus(shared: &std::path::Path, tier: &str) -> PathBuf {
    let out = corpus_dir(tier);
    let t = std::time::Instant::now();
    let st = std::process::Command::new(shared.join("bench/make-rpm-corpus"))
        .arg("--list")
        .arg(shared.join(format!("bench/corpus-{tier}.txt")))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running make-rpm-corpus");
    assert!(st.success(), "make-rpm-corpus failed");
    eprintln!("corpus-{tier} ready in {:.1}s", t.elapsed().as_secs_f64());
    out
}

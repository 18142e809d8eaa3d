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

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

/// The built binary under test.
pub fn composer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ostree-composer"))
}

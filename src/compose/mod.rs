//! The compose pipeline: runs the stages in order, handing typed values on.

pub mod composejson;
pub mod inputhash;
pub mod version;

use crate::cli::{EncapsulateArgs, OneShotArgs, TreeArgs};
use anyhow::Result;

/// `compose tree`.
pub fn run_compose_tree(_args: TreeArgs) -> Result<()> {
    Err(crate::exit::unsupported(
        "compose tree: pipeline not wired yet",
    ))
}

/// `compose container-encapsulate`.
pub fn run_container_encapsulate(_args: EncapsulateArgs) -> Result<()> {
    Err(crate::exit::unsupported(
        "compose container-encapsulate: not wired yet",
    ))
}

/// The one-shot command.
pub fn run_oneshot(_args: OneShotArgs) -> Result<()> {
    Err(crate::exit::unsupported("one-shot compose: not wired yet"))
}

//! Command line definitions (clap).

pub fn run() -> anyhow::Result<()> {
    Ok(())
}

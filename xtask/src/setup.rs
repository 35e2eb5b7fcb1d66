//! `cargo xtask setup`: installs what a fresh machine lacks. Idempotent.
use anyhow::Result;

pub fn run() -> Result<()> {
    Ok(())
}

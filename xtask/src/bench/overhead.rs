//! Placeholder until the benchmark lands.
use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> Result<()> {
    bail!("this benchmark is not built yet")
}

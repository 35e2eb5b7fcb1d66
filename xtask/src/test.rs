//! `cargo xtask test`: set up, then run every test the way CI does: formatting, unit tests,
//! and the privileged kernel and end-to-end tests (a skip is a failure with `--require-kernel`,
//! which CI passes).
use std::process::Command;

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {
    /// Fail instead of skipping when the kernel tests cannot run (CI sets this).
    #[arg(long, env = "SONDE_REQUIRE_KERNEL", value_parser = clap::builder::FalseyValueParser::new())]
    require_kernel: bool,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    no_setup: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.no_setup {
        crate::setup::run()?;
    }
    cargo(&["fmt", "--all", "--", "--check"], args)?;
    // Lints do not need the kernel object: skip its (separate) build for the check profile.
    cargo_env(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        args,
        &[("AYA_BUILD_SKIP", "1")],
    )?;
    // The end-to-end tests run the real `sonde` binary: build it first, so that they never
    // test a stale one.
    cargo(&["build", "-p", "sonde", "--bins"], args)?;
    // The saturation test measures what users run: the release build.
    cargo(
        &["build", "--release", "-p", "sonde", "--bin", "sonde"],
        args,
    )?;
    cargo(&["test", "--workspace", "--no-fail-fast"], args)?;
    Ok(())
}

fn cargo(argv: &[&str], args: &Args) -> Result<()> {
    cargo_env(argv, args, &[])
}

fn cargo_env(argv: &[&str], args: &Args, env: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask test: cargo {}", argv.join(" "));
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(argv).envs(env.iter().copied());
    if args.require_kernel {
        cmd.env("SONDE_REQUIRE_KERNEL", "1");
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", argv.join(" "));
    }
    Ok(())
}

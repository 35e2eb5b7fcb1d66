//! Builds the kernel objects (agent-ebpf, and the benchmark's reference tracer) with aya-build
//! and leaves them in OUT_DIR for `ebpf/object.rs` to embed. With `AYA_BUILD_SKIP=1` empty
//! placeholders are written instead, so the pure modules build and test without nightly or
//! bpf-linker; loading then fails clearly.
//! `SONDE_EBPF_TOOLCHAIN` picks the toolchain for the BPF build (default: `nightly`).
//!
//! aya-build replays the inner cargo's whole log as `cargo:warning` lines, which cargo shows
//! on every build. The log is captured instead, and shown only when the inner build fails.
use std::{
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::PathBuf,
};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=SONDE_EBPF_TOOLCHAIN");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let objects = [out_dir.join("agent-ebpf"), out_dir.join("reference")];
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if !skip {
        let meta = cargo_metadata::MetadataCommand::new()
            .no_deps()
            .exec()
            .context("cargo metadata")?;
        let pkg = meta
            .packages
            .into_iter()
            .find(|p| p.name.as_str() == "agent-ebpf")
            .ok_or_else(|| anyhow!("agent-ebpf package not found"))?;
        let root = pkg
            .manifest_path
            .parent()
            .ok_or_else(|| anyhow!("agent-ebpf manifest has no parent"))?;
        let toolchain_name = std::env::var("SONDE_EBPF_TOOLCHAIN").ok();
        let toolchain = match toolchain_name.as_deref() {
            Some(name) if !name.is_empty() => Toolchain::Custom(name),
            _ => Toolchain::default(),
        };
        let (built, log) = quietly(&out_dir, || {
            aya_build::build_ebpf(
                [Package {
                    name: pkg.name.as_str(),
                    root_dir: root.as_str(),
                    ..Default::default()
                }],
                toolchain,
            )
        })?;
        // Cargo still needs the build script's directives; the replayed log is dropped.
        for line in log.lines().filter(|l| !l.starts_with("cargo:warning=")) {
            println!("{line}");
        }
        if let Err(e) = built {
            let replay: Vec<&str> = log
                .lines()
                .filter_map(|l| l.strip_prefix("cargo:warning="))
                .collect();
            return Err(e.context(format!(
                "building the kernel programs failed; its log:\n{}",
                replay.join("\n")
            )));
        }
    }
    for object in &objects {
        if !object.exists() {
            std::fs::write(object, []).context("write eBPF placeholder")?;
        }
    }
    Ok(())
}

/// Run `f` with this process's stdout sent to a file, and return what it wrote there.
fn quietly<T>(out_dir: &std::path::Path, f: impl FnOnce() -> T) -> anyhow::Result<(T, String)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out_dir.join("aya-build.log"))
        .context("create the eBPF build log")?;
    std::io::stdout().flush()?;
    // SAFETY: dup/dup2 on valid descriptors; stdout is restored before returning.
    let saved = unsafe { libc::dup(1) };
    if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 1) } < 0 {
        anyhow::bail!(
            "cannot redirect stdout: {}",
            std::io::Error::last_os_error()
        );
    }
    let result = f();
    std::io::stdout().flush()?;
    // SAFETY: `saved` is the descriptor duplicated above.
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    let mut log = String::new();
    file.rewind()?;
    file.read_to_string(&mut log)?;
    Ok((result, log))
}

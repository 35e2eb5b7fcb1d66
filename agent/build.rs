//! Builds the kernel objects (agent-ebpf, and the benchmark's reference tracer) with aya-build
//! and leaves them in OUT_DIR for `ebpf/object.rs` to embed. With `AYA_BUILD_SKIP=1` empty
//! placeholders are written instead, so the pure modules build and test without nightly or
//! bpf-linker; loading then fails clearly.
//! `SONDE_EBPF_TOOLCHAIN` picks the toolchain for the BPF build (default: `nightly`).
use std::path::PathBuf;

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
        aya_build::build_ebpf(
            [Package {
                name: pkg.name.as_str(),
                root_dir: root.as_str(),
                ..Default::default()
            }],
            toolchain,
        )?;
    }
    for object in &objects {
        if !object.exists() {
            std::fs::write(object, []).context("write eBPF placeholder")?;
        }
    }
    Ok(())
}

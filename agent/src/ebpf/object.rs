//! The one place the kernel objects are embedded (built by `agent/build.rs` with aya-build).

/// The agent-ebpf object, or an empty slice when built with `AYA_BUILD_SKIP=1`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

/// Whether this build carries real kernel programs.
pub fn is_built() -> bool {
    !OBJECT.is_empty()
}

/// The reference tracer of `cargo xtask bench overhead --reference` (empty when skipped).
#[cfg(feature = "reference-tracer")]
pub static REFERENCE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reference"));

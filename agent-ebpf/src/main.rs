//! Entry of Sonde's kernel programs. The real programs exist only for the BPF target, so that
//! `cargo build/test/clippy --workspace` on the host still works.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
// The kernel programs build with nightly (aya-build); the atomic OR of `probes::select`
// needs the intrinsic.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}

//! Rebuild the kernel object when bpf-linker changes; never fail when it is absent (the
//! host-side build of this crate, and `AYA_BUILD_SKIP=1` builds, do not need it).
fn main() {
    // Set by aya-build for the kernel build: the CPU whose registers the probes read.
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\"))");
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found; only the host stub is built"),
    }
}

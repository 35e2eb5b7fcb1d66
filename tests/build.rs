//! Generates the Tempo gRPC client of `src/tempo.rs` from `proto/`, with protox (a protobuf
//! compiler in Rust: no protoc needed).
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["tempopb.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .include_file("tempopb_client.rs")
        .compile_fds(fds)?;
    Ok(())
}

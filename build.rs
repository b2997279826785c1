//! Generates the demo's gRPC types from `proto/` with a vendored `protoc`,
//! so a fresh machine builds with `cargo` alone.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(&["proto/codename.proto"], &["proto"])?;
    Ok(())
}

//! Generates the echo service from `proto/echo.proto` with a vendored
//! `protoc`, so a fresh machine builds with `cargo` alone. Every `bytes`
//! field becomes `bytes::Bytes`, so payloads are shared, never copied.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/echo.proto"], &["proto"])?;
    Ok(())
}

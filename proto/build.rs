//! Compiles the `.proto` files with protox, a pure-Rust protobuf compiler, so building needs no
//! system `protoc`. Messages get prost structs, services get tonic stubs, and every message gets
//! serde impls in the protobuf JSON mapping (pbjson) for the static snapshot file and `/config`.

use std::path::PathBuf;

const PROTOS: &[&str] = &["discovery.proto", "identity.proto", "transport.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Well-known types come from pbjson-types, which adds their JSON mapping.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .out_dir(&out_dir)
        .register_descriptors(&descriptor_bytes)?
        .build(&[".strait"])?;
    Ok(())
}

//! Generates the gRPC client and server code from `proto/` (needs `protoc`, which
//! `test.sh` installs from Debian's `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/jumpgate/auth/v1/auth.proto"], &["proto"])?;
    Ok(())
}

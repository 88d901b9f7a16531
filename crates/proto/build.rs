//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler), so building ballot
//! needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files =
        ["proto/kv.proto", "proto/auth.proto", "proto/rpc.proto", "proto/v3lock.proto", "proto/v3election.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}

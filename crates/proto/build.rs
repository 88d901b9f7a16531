//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler), so building ballot
//! needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files =
        ["proto/kv.proto", "proto/auth.proto", "proto/rpc.proto", "proto/v3lock.proto", "proto/v3election.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // Serde impls with the proto3 JSON mapping etcd's JSON gateway uses: proto field names
    // (`create_revision`, `ID`), 64-bit integers as strings, bytes as base64, enums by name,
    // default values left out; on input both field names and unknown fields are accepted.
    pbjson_build::Builder::new()
        .register_descriptors(&prost::Message::encode_to_vec(&descriptors))?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}

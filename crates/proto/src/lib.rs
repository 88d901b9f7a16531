//! # ballot-proto: the wire
//!
//! The etcd v3 client API (KV, Watch, Lease, Cluster, Maintenance, Auth, Lock, Election) as generated
//! Rust types, clients and servers. The `.proto` files in `proto/` follow the published etcd API
//! message for message and field for field; ballot's own peer protocol is not protobuf (see
//! `ballot-server`'s transport). Every message also has serde impls with the proto3 JSON mapping
//! of etcd's JSON gateway (proto field names, 64-bit integers as strings, bytes as base64).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `mvccpb`: key-values and events.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// `v3lockpb`: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// `v3electionpb`: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

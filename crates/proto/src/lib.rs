//! # ballot-proto: the wire
//!
//! The etcd v3 client API (KV, Watch, Lease, Cluster, Maintenance, Auth, Lock, Election) as generated
//! Rust types, clients and servers. The `.proto` files in `proto/` follow the published etcd API
//! message for message and field for field; ballot's own peer protocol is not protobuf (see
//! `ballot-server`'s transport).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `mvccpb`: key-values and events.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// `v3lockpb`: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// `v3electionpb`: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

//! # ballot-server: the service
//!
//! One ballot member as a process: the Raft loop that drives a [`ballot_node::Replica`]
//! ([`driver`]), the peer [`transport`], the etcd v3 gRPC services ([`api`]) and the HTTP
//! endpoints ([`http`]), assembled by [`server::run`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// The injected bug `stale-reads`: linearizable reads are served from the local store
/// without a ReadIndex barrier (a partitioned member answers with stale data).
#[cfg(feature = "fault-injection")]
pub static STALE_READS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub mod api;
pub mod auth;
pub mod clock;
pub mod codec;
pub mod compactor;
pub mod console;
pub mod corrupt;
pub mod driver;
pub mod etcd_snapshot;
pub mod h2_authority;
pub mod http;
pub mod listener;
pub mod members;
pub mod membership;
pub mod metrics;
pub mod ports;
pub mod restore;
pub mod server;
pub mod timestamp;
pub mod tls;
pub mod transport;
pub mod zk;

pub use server::{run, ServerConfig};

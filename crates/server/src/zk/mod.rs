//! The ZooKeeper front end (see `docs/zookeeper.md`): ZooKeeper 3.8's client protocol on its
//! own port, served from the same Raft log and store as the etcd API.
//!
//! - [`connection`]: one client connection: the handshake (sessions are leases), requests in
//!   order, replies and watch events on one ordered queue.
//! - [`ops`]: what each request does: reads from this member's store, writes through the log.
//! - [`watches`]: the member's watch table, fed by one hub watcher over the tree.
//! - [`words`]: the four-letter words (`ruok`, `srvr`, `mntr`, …).
//! - [`sweep`]: the leader's deletion of emptied containers and expired TTL nodes.
//! - [`client`]: a small blocking client, for `ballot zk`, tests and benchmarks.

pub mod client;
pub mod connection;
pub mod ops;
pub mod sweep;
pub mod watches;
pub mod words;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::api::Handle;

/// The session timeouts a member grants, ms (ZooKeeper's defaults with its sample
/// configuration's 2 s tick: 2 and 20 ticks).
pub const TIMEOUT_MIN_MS: i32 = 4_000;
/// See [`TIMEOUT_MIN_MS`].
pub const TIMEOUT_MAX_MS: i32 = 40_000;

/// The front end's settings.
#[derive(Debug, Clone, Default)]
pub struct ZkConfig {
    /// `super:<digest>`: a client that authenticates with the digest whose id this is passes
    /// every ACL check (ZooKeeper's `superDigest`).
    pub super_digest: Option<String>,
}

/// A connection's number on this member.
pub type ConnId = u64;

/// What the member knows of one open connection (for `cons`, `stat` and closing a session's
/// connections when it ends).
pub struct ConnEntry {
    /// The client's address.
    pub peer: SocketAddr,
    /// Its session (0 before the handshake ends).
    pub session: i64,
    /// Negotiated timeout, ms.
    pub timeout_ms: i32,
    /// Its ordered queue of frames to send; dropping the sender's last clone closes it.
    pub out: mpsc::Sender<Out>,
    /// Requests received.
    pub received: Arc<AtomicU64>,
    /// Frames sent.
    pub sent: Arc<AtomicU64>,
}

/// One item of a connection's outbound queue.
#[derive(Debug)]
pub enum Out {
    /// A frame to write.
    Frame(Vec<u8>),
    /// Close the connection (after what was queued before).
    Close,
}

/// Request latency, as ZooKeeper's `srvr` reports it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    /// Fewest ms.
    pub min: u64,
    /// Most ms.
    pub max: u64,
    /// Sum of ms.
    pub total: u64,
    /// Requests timed.
    pub count: u64,
}

/// The state one member's ZooKeeper front end shares between connections.
pub struct Front {
    /// The member.
    pub handle: Handle,
    /// Settings.
    pub config: ZkConfig,
    /// Open connections.
    pub connections: Mutex<HashMap<ConnId, ConnEntry>>,
    /// The watch table and its progress.
    pub watches: watches::Table,
    /// When the front end started.
    pub started: Instant,
    /// Requests received, all connections.
    pub received: AtomicU64,
    /// Frames sent, all connections.
    pub sent: AtomicU64,
    /// Request latency.
    pub latency: Mutex<Latency>,
    /// The next connection number.
    next_conn: AtomicU64,
}

impl Front {
    /// The front end of `handle`'s member.
    pub fn new(handle: Handle, config: ZkConfig) -> Arc<Front> {
        Arc::new(Front {
            handle,
            config,
            connections: Mutex::new(HashMap::new()),
            watches: watches::Table::default(),
            started: Instant::now(),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            latency: Mutex::new(Latency::default()),
            next_conn: AtomicU64::new(1),
        })
    }

    /// The open connections, locked.
    pub fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, ConnEntry>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one request's latency.
    pub fn observe(&self, took: std::time::Duration) {
        let ms = took.as_millis() as u64;
        let mut latency = self.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        latency.min = if latency.count == 0 { ms } else { latency.min.min(ms) };
        latency.max = latency.max.max(ms);
        latency.total += ms;
        latency.count += 1;
    }

    /// Closes every connection of `session` on this member (its session ended), except `keep`.
    pub fn close_session(&self, session: i64, keep: Option<ConnId>) {
        for (id, entry) in self.connections().iter() {
            if entry.session == session && Some(*id) != keep {
                let _ = entry.out.try_send(Out::Close);
            }
        }
    }

    /// Closes every connection (the watch table lost events: clients reconnect and set their
    /// watches again from their last zxid).
    pub fn close_all(&self) {
        for entry in self.connections().values() {
            let _ = entry.out.try_send(Out::Close);
        }
    }
}

/// Accepts ZooKeeper clients on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, handle: Handle, config: ZkConfig) {
    let front = Front::new(handle, config);
    tokio::spawn(watches::dispatch(front.clone()));
    tokio::spawn(sweep::run(front.clone()));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let id = front.next_conn.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection::run(front.clone(), id, stream, peer));
            }
            Err(error) => {
                tracing::warn!(%error, "ZooKeeper listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

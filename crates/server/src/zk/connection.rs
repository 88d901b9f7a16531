//! One ZooKeeper client connection.
//!
//! After the handshake, requests are handled one at a time in the order they arrive, so
//! replies leave in request order and a read sees the connection's earlier writes (ZooKeeper's
//! per-client FIFO order). Replies and watch events share one queue, written by a task of its
//! own; a reply waits until every watch event up to the tree state it shows is queued.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballot_mvcc::Command;
use ballot_zk::codes::JUTE_MAX_BUFFER;
use ballot_zk::frame::{self, four_letter_word, framed, Next};
use ballot_zk::jute::Jute;
use ballot_zk::records::{ConnectRequest, ConnectResponse, Id, ReplyHeader, RequestHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{ConnEntry, ConnId, Front, Out, TIMEOUT_MAX_MS, TIMEOUT_MIN_MS};

/// Frames a connection may have queued before it counts as too slow and is closed.
const QUEUE_FRAMES: usize = 8192;

/// How long a new connection may take to send its handshake (ZooKeeper's
/// `sessionlessCnxnTimeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads length-prefixed frames.
struct Frames {
    half: OwnedReadHalf,
    buffer: Vec<u8>,
}

impl Frames {
    /// Reads until the buffer holds at least `len` bytes; false at end of stream.
    async fn fill(&mut self, len: usize) -> std::io::Result<bool> {
        while self.buffer.len() < len {
            let mut chunk = [0u8; 16 * 1024];
            let read = self.half.read(&mut chunk).await?;
            if read == 0 {
                return Ok(false);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
        Ok(true)
    }

    /// The next frame's payload; `None` at end of stream or on a frame past the limit (the
    /// connection is then closed without an answer, as ZooKeeper does).
    async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            match frame::next(&self.buffer, JUTE_MAX_BUFFER) {
                Next::Frame { len } => {
                    let payload = self.buffer[4..4 + len].to_vec();
                    self.buffer.drain(..4 + len);
                    return Ok(Some(payload));
                }
                Next::Need(len) => {
                    if !self.fill(len).await? {
                        return Ok(None);
                    }
                }
                Next::TooLong(len) => {
                    tracing::debug!(len, "ZooKeeper client sent a frame past jute.maxbuffer; closing");
                    return Ok(None);
                }
            }
        }
    }
}

/// A connection's state after the handshake, as requests see it.
pub struct Conn {
    /// The front end.
    pub front: Arc<Front>,
    /// This connection.
    pub id: ConnId,
    /// Its session.
    pub session: i64,
    /// Negotiated timeout, ms.
    pub timeout_ms: i32,
    /// The connection's identities: `ip:<address>`, then what `addauth` added.
    pub ids: Vec<Id>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its outbound queue.
    pub out: mpsc::Sender<Out>,
    /// The highest zxid sent (replies never go back).
    pub last_zxid: i64,
    /// When the session's lease was last renewed from this connection.
    last_renewal: Instant,
    /// Requests received.
    received: Arc<AtomicU64>,
}

impl Conn {
    /// Queues a frame; false if the connection is closing.
    pub async fn send(&self, frame: Vec<u8>) -> bool {
        self.front.sent.fetch_add(1, Ordering::Relaxed);
        self.out.send(Out::Frame(frame)).await.is_ok()
    }

    /// Queues a reply: its header's zxid is `revision` (never below one sent before), and it
    /// waits for the watch events of every tree change up to `follows`.
    pub async fn reply(&mut self, xid: i32, err: i32, revision: i64, follows: i64, body: &[u8]) -> bool {
        self.front.watches.delivered_through(follows).await;
        self.last_zxid = self.last_zxid.max(revision);
        let mut payload = ReplyHeader { xid, zxid: self.last_zxid, err }.encode();
        payload.extend_from_slice(body);
        self.send(framed(&payload)).await
    }

    /// Renews the session's lease, at most every third of the timeout; a lease found gone
    /// closes the connection (the session expired).
    fn touch(&mut self) {
        if self.last_renewal.elapsed() < Duration::from_millis(self.timeout_ms as u64 / 3) {
            return;
        }
        self.last_renewal = Instant::now();
        let (handle, session, out) = (self.front.handle.clone(), self.session, self.out.clone());
        tokio::spawn(async move {
            if let Ok(answer) = handle.keep_alive(session).await {
                if answer.value <= 0 {
                    let _ = out.send(Out::Close).await;
                }
            }
        });
    }
}

/// Serves one connection until it closes.
pub async fn run(front: Arc<Front>, id: ConnId, stream: TcpStream, peer: SocketAddr) {
    let (read_half, mut write_half) = stream.into_split();
    let mut frames = Frames { half: read_half, buffer: Vec::new() };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.fill(4)).await {
        Ok(Ok(true)) => {}
        _ => return,
    }
    if let Some(word) = four_letter_word(&frames.buffer) {
        let text = super::words::answer(&front, word).await;
        let _ = write_half.write_all(text.as_bytes()).await;
        let _ = write_half.shutdown().await;
        return;
    }
    let connect = match tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next()).await {
        Ok(Ok(Some(payload))) => match ConnectRequest::decode(&payload) {
            Ok(connect) => connect,
            Err(error) => return tracing::debug!(%error, "ZooKeeper handshake malformed"),
        },
        _ => return,
    };
    let Some((session, timeout_ms, response)) = handshake(&front, &connect).await else {
        // Behind the client, or the member cannot serve: close without an answer, and the
        // client tries another member.
        return;
    };
    let frame = framed(&response.encode());
    if write_half.write_all(&frame).await.is_err() || session == 0 {
        // An invalid session: the answer says so, then the connection closes.
        let _ = write_half.shutdown().await;
        return;
    }
    let (out_tx, out_rx) = mpsc::channel(QUEUE_FRAMES);
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    front.connections().insert(
        id,
        ConnEntry { peer, session, timeout_ms, out: out_tx.clone(), received: received.clone(), sent: sent.clone() },
    );
    // ZooKeeper closes a session's other connections when it moves to a new one.
    front.close_session(session, Some(id));
    let writer = tokio::spawn(write_queue(write_half, out_rx, sent));
    let revision = front.handle.reader().revision().unwrap_or(0);
    let mut conn = Conn {
        front: front.clone(),
        id,
        session,
        timeout_ms,
        ids: vec![Id { scheme: "ip".into(), id: peer.ip().to_string() }],
        peer,
        out: out_tx,
        last_zxid: revision.max(connect.last_zxid_seen),
        last_renewal: Instant::now(),
        received,
    };
    // A client that sends nothing (not even pings) for twice its timeout is gone; its session
    // expires on its own.
    let idle = Duration::from_millis(timeout_ms as u64 * 2);
    loop {
        let payload = tokio::select! {
            next = tokio::time::timeout(idle, frames.next()) => match next {
                Ok(Ok(Some(payload))) => payload,
                _ => break,
            },
            () = conn.out.closed() => break,
        };
        let started = Instant::now();
        conn.received.fetch_add(1, Ordering::Relaxed);
        front.received.fetch_add(1, Ordering::Relaxed);
        conn.touch();
        let Ok(header) = RequestHeader::decode(payload.get(..8).unwrap_or(&[])) else { break };
        let keep_going = super::ops::execute(&mut conn, header, &payload[8..]).await;
        front.observe(started.elapsed());
        if !keep_going {
            let _ = conn.out.send(Out::Close).await;
            break;
        }
    }
    front.connections().remove(&id);
    front.watches.remove_conn(id);
    drop(conn);
    let _ = writer.await;
}

/// Writes a connection's queue in order, flushing when it runs dry, until told to close.
async fn write_queue(half: OwnedWriteHalf, mut queue: mpsc::Receiver<Out>, sent: Arc<AtomicU64>) {
    let mut writer = BufWriter::new(half);
    while let Some(item) = queue.recv().await {
        match item {
            Out::Frame(frame) => {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Out::Close => break,
        }
        if queue.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Sixteen unpredictable bytes (a session's password).
fn random_bytes() -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes)).is_err() {
        // Without the system's source, time and a counter mixed: unique, if guessable.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes[..16].copy_from_slice(&nanos.to_be_bytes());
    }
    bytes
}

/// A fresh session id: positive, from the random source (ZooKeeper puts its server id in the
/// top byte; ballot's sessions are leases, whose ids are any positive number).
fn new_session_id() -> i64 {
    let bytes = random_bytes();
    let id = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) & i64::MAX;
    id.max(1)
}

/// The handshake: a new session opened through the log, or an existing one resumed. `None`:
/// close without answering (the member stayed behind the client, or cannot reach a leader).
/// A member behind the client waits for it as a causal read does (ZooKeeper refuses at once;
/// the client then tries the next server).
async fn handshake(front: &Front, connect: &ConnectRequest) -> Option<(i64, i32, ConnectResponse)> {
    let handle = &front.handle;
    if let Err(refused) = handle.caught_up(Some(connect.last_zxid_seen)).await {
        tracing::debug!(
            seen = connect.last_zxid_seen,
            "ZooKeeper client is ahead of this member: {}",
            refused.message()
        );
        return None;
    }
    let timeout_ms = connect.time_out.clamp(TIMEOUT_MIN_MS, TIMEOUT_MAX_MS);
    let ttl = (i64::from(timeout_ms) + 999) / 1000;
    let ttl = ttl.max(handle.limits.lease_ttl_min);
    let read_only = connect.read_only.map(|_| false);
    let answer = |session: i64, password: Vec<u8>| ConnectResponse {
        protocol_version: 0,
        time_out: if session == 0 { 0 } else { timeout_ms },
        session_id: session,
        passwd: Some(password),
        read_only,
    };
    if connect.session_id == 0 {
        let (session, password) = (new_session_id(), random_bytes());
        let command = Command::ZkSession { id: session, ttl, password: password.clone() };
        match handle.propose(command).await {
            Ok(applied) if applied.value.result.is_ok() => {
                return Some((session, timeout_ms, answer(session, password)));
            }
            Ok(applied) => tracing::warn!(result = ?applied.value.result, "opening a ZooKeeper session failed"),
            Err(error) => tracing::debug!(?error, "opening a ZooKeeper session failed"),
        }
        return None;
    }
    let session = connect.session_id;
    let mut stored = handle.reader().zk_session(session).ok()?;
    if stored.is_none() {
        // Opened on a member this one has not caught up with yet?
        handle.barrier().await.ok()?;
        stored = handle.reader().zk_session(session).ok()?;
    }
    let shown = connect.passwd.clone().unwrap_or_default();
    match stored {
        Some(password) if password == shown => {
            // Renewed in the background: a reconnection during an election (its member died)
            // is answered at once, from this member's state, and the renewal waits for the
            // new leader.
            let handle = handle.clone();
            tokio::spawn(async move { handle.keep_alive(session).await });
            Some((session, timeout_ms, answer(session, password)))
        }
        _ => Some((0, 0, answer(0, vec![0; 16]))),
    }
}

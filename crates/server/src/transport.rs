//! Peer transport: Raft messages between members over TCP.
//!
//! Every frame is `[len u32][version u8][payload]` (`len` counts version and payload). A
//! connection opens with a hello frame naming the stream kind, the cluster id and both member
//! ids; a member of another cluster is refused and the refusal logged. Each member keeps one
//! long-lived connection per peer for ordinary messages, reconnecting with backoff, and sends
//! snapshots on a connection of their own, in chunks, so heartbeats never queue behind them.
//! Sending never blocks the Raft loop: messages go into a bounded queue per peer, and a full
//! queue drops the message (Raft retries) and reports the peer unreachable.
//!
//! The acceptor answers every hello with one byte: accepted, refused, or removed (the caller
//! was removed from the cluster: it stops for good). Peers come and go with membership
//! changes: a peer's senders start with the first message to it and end once it has left
//! the member table.
//!
//! A member that joins an existing cluster first asks a peer for the member table with a
//! query hello ([`query_members`]): it learns the cluster id and its own id (the one
//! `MemberAdd` gave the peer URLs it was started with).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballot_node::PeerMessage as Message;
use ballot_raft::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::codec::{self, Reader, Writer};
use crate::driver::{Inbox, Input};
use crate::members::Members;

/// The protocol version in every frame; a peer speaking another is refused.
pub const VERSION: u8 = 2;
/// Largest frame accepted (a batch of appends is bounded far below this by Raft's own limits).
const FRAME_BYTES_MAX: usize = 64 << 20;
/// Snapshot chunk size on the wire.
const CHUNK_BYTES: usize = 1 << 20;
/// Messages queued per peer before new ones are dropped.
const QUEUE_MAX: usize = 4096;

const STREAM_MESSAGES: u8 = 0;
const STREAM_SNAPSHOT: u8 = 1;
const STREAM_QUERY: u8 = 2;

/// The acceptor's answers to a hello.
const HELLO_ACCEPTED: u8 = 0;
const HELLO_REFUSED: u8 = 1;
const HELLO_REMOVED: u8 = 2;

/// Who is connecting, checked by the acceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hello {
    stream: u8,
    cluster_id: u64,
    from: NodeId,
    to: NodeId,
    client_urls: String,
}

impl Hello {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.stream);
        w.u64(self.cluster_id);
        w.u64(self.from);
        w.u64(self.to);
        w.bytes(self.client_urls.as_bytes());
        w.out
    }

    fn decode(input: &[u8]) -> Result<Hello, codec::DecodeError> {
        let mut r = Reader::new(input);
        let hello = Hello {
            stream: r.u8()?,
            cluster_id: r.u64()?,
            from: r.u64()?,
            to: r.u64()?,
            client_urls: String::from_utf8(r.bytes()?).map_err(|_| codec::DecodeError("client urls"))?,
        };
        r.finish()?;
        Ok(hello)
    }
}

/// Bytes a frame adds to its payload: the length and the version.
const FRAME_HEADER_BYTES: usize = 5;

async fn write_frame<W: AsyncWriteExt + Unpin>(out: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len() + 1).map_err(|_| std::io::Error::other("frame too large"))?;
    out.write_all(&len.to_be_bytes()).await?;
    out.write_all(&[VERSION]).await?;
    out.write_all(payload).await
}

async fn read_frame<R: AsyncReadExt + Unpin>(input: &mut R) -> std::io::Result<Vec<u8>> {
    let len = input.read_u32().await? as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(std::io::Error::other(format!("frame length {len} out of bounds")));
    }
    let version = input.read_u8().await?;
    if version != VERSION {
        return Err(std::io::Error::other(format!("peer protocol version {version}, ours is {VERSION}")));
    }
    let mut payload = vec![0; len - 1];
    input.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Queues to the peers; cheap to clone into the Raft loop.
#[derive(Clone)]
pub struct Transport {
    peers: Arc<Mutex<HashMap<NodeId, PeerQueues>>>,
    local: Local,
    runtime: tokio::runtime::Handle,
}

#[derive(Clone)]
struct PeerQueues {
    messages: mpsc::Sender<Message>,
    snapshots: mpsc::Sender<Message>,
}

/// What a connection needs to know about this member.
#[derive(Clone)]
struct Local {
    cluster_id: u64,
    id: NodeId,
    client_urls: String,
    inbox: Inbox,
    members: Members,
    /// TLS to peers (`--peer-cert-file` …), if configured.
    tls: Option<Arc<crate::tls::ClientTls>>,
    /// Bytes sent, by peer.
    metrics: Arc<crate::metrics::Metrics>,
}

/// A peer connection, plain or TLS.
pub trait PeerStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> PeerStream for T {}

/// Connects to the peer port at `address`, over TLS if `tls` is given.
async fn connect(address: &str, tls: Option<&crate::tls::ClientTls>) -> std::io::Result<Box<dyn PeerStream>> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))??;
    stream.set_nodelay(true)?;
    Ok(match tls {
        Some(tls) => Box::new(tls.connect(stream, address).await?),
        None => Box::new(stream),
    })
}

impl Transport {
    /// A transport for member `id`; call from inside the Tokio runtime its senders run on.
    pub fn start(
        cluster_id: u64,
        id: NodeId,
        client_urls: String,
        members: Members,
        inbox: Inbox,
        tls: Option<Arc<crate::tls::ClientTls>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Transport {
        let local = Local { cluster_id, id, client_urls, inbox, members, tls, metrics };
        Transport { peers: Arc::default(), local, runtime: tokio::runtime::Handle::current() }
    }

    fn start_peer(&self, peer: NodeId) -> PeerQueues {
        // The peer's failure series exist from the first message on, at zero (the mixin's
        // members-down alert then has data before anything fails).
        let _ = self.local.metrics.peer_sent_failures.get_or_create(&vec![("To", format!("{peer:x}"))]);
        let (messages, rx) = mpsc::channel(QUEUE_MAX);
        self.runtime.spawn(send_loop(self.local.clone(), peer, STREAM_MESSAGES, rx));
        let (snapshots, rx) = mpsc::channel(4);
        self.runtime.spawn(send_loop(self.local.clone(), peer, STREAM_SNAPSHOT, rx));
        PeerQueues { messages, snapshots }
    }

    /// Queues a message; false if it was dropped (unknown peer or full queue).
    pub fn send(&self, message: Message) -> bool {
        let to = message.to();
        if to == self.local.id || self.local.members.peer_address(to).is_none() {
            return false;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let queues = peers.entry(to).or_insert_with(|| self.start_peer(to));
        if queues.messages.is_closed() {
            // Its senders ended (it had left the table); it is back with an address: start over.
            *queues = self.start_peer(to);
        }
        let queue = if message.is_snapshot() { &queues.snapshots } else { &queues.messages };
        queue.try_send(message).is_ok()
    }
}

/// Asks the member at `address` for the cluster id and the member table (a joining member's
/// first step). Returns the cluster id, the members and the removed ids.
pub async fn query_members(
    address: &str,
    tls: Option<&crate::tls::ClientTls>,
) -> anyhow::Result<(u64, Vec<ballot_mvcc::MemberRecord>, Vec<NodeId>)> {
    let mut stream = connect(address, tls).await?;
    let hello = Hello { stream: STREAM_QUERY, cluster_id: 0, from: 0, to: 0, client_urls: String::new() };
    write_frame(&mut stream, &hello.encode()).await?;
    let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream)).await??;
    let (cluster_id, rest) = frame.split_at_checked(8).ok_or_else(|| anyhow::anyhow!("short member table"))?;
    let cluster_id = u64::from_be_bytes(cluster_id.try_into().expect("8 bytes"));
    let ballot_mvcc::Command::Members(changes) = ballot_mvcc::command_codec::decode(rest)? else {
        anyhow::bail!("the peer answered with something other than a member table");
    };
    let (mut members, mut removed) = (Vec::new(), Vec::new());
    for change in changes {
        match change {
            ballot_mvcc::MemberChange::Upsert(record) => members.push(record),
            ballot_mvcc::MemberChange::Remove(id) => removed.push(id),
            _ => anyhow::bail!("unexpected entry in the member table"),
        }
    }
    Ok((cluster_id, members, removed))
}

/// The member table as [`query_members`] receives it.
fn encode_member_table(cluster_id: u64, members: &Members) -> Vec<u8> {
    let mut changes: Vec<ballot_mvcc::MemberChange> =
        members.list().iter().map(|member| ballot_mvcc::MemberChange::Upsert(member.clone())).collect();
    changes.extend(members.removed().into_iter().map(ballot_mvcc::MemberChange::Remove));
    let mut out = cluster_id.to_be_bytes().to_vec();
    out.extend(ballot_mvcc::command_codec::encode(&ballot_mvcc::Command::Members(changes)));
    out
}

/// Accepts peer connections and hands their messages to the Raft loop.
pub async fn serve(
    listener: TcpListener,
    cluster_id: u64,
    id: NodeId,
    members: Members,
    inbox: Inbox,
    tls: Option<Arc<crate::tls::ServerTls>>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (inbox, members, tls, metrics) = (inbox.clone(), members.clone(), tls.clone(), metrics.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream: Box<dyn PeerStream> = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => Box::new(stream),
                    Err(error) => return tracing::warn!(%remote, %error, "TLS handshake with a peer failed"),
                },
                None => Box::new(stream),
            };
            if let Err(error) = receive(stream, cluster_id, id, members, inbox, metrics).await {
                tracing::debug!(%remote, %error, "peer connection closed");
            }
        });
    }
}

async fn receive(
    mut stream: Box<dyn PeerStream>,
    cluster_id: u64,
    id: NodeId,
    members: Members,
    inbox: Inbox,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<()> {
    let hello = Hello::decode(&read_frame(&mut stream).await?)?;
    if hello.stream == STREAM_QUERY {
        write_frame(&mut stream, &encode_member_table(cluster_id, &members)).await?;
        return Ok(());
    }
    let answer = if hello.cluster_id != cluster_id {
        tracing::error!(
            peer = hello.from,
            their_cluster = format!("{:x}", hello.cluster_id),
            our_cluster = format!("{:x}", cluster_id),
            "refusing a peer from another cluster (its cluster id is not ours)"
        );
        HELLO_REFUSED
    } else if members.is_removed(hello.from) {
        tracing::warn!(peer = format!("{:x}", hello.from), "refusing a removed member; telling it so");
        HELLO_REMOVED
    } else if hello.to != id || !members.contains(hello.from) {
        tracing::error!(
            peer = hello.from,
            to = hello.to,
            "refusing a peer connection meant for another member or from a non-member"
        );
        HELLO_REFUSED
    } else {
        HELLO_ACCEPTED
    };
    write_frame(&mut stream, &[answer]).await?;
    if answer != HELLO_ACCEPTED {
        return Ok(());
    }
    members.set_client_urls(hello.from, &hello.client_urls);
    let received = metrics.peer_received_bytes.get_or_create(&vec![("From", format!("{:x}", hello.from))]).clone();
    let mut input = tokio::io::BufReader::new(stream);
    loop {
        let frame = read_frame(&mut input).await?;
        received.inc_by((frame.len() + FRAME_HEADER_BYTES) as u64);
        let message = if hello.stream == STREAM_SNAPSHOT {
            let total = Reader::new(&frame).u64()? as usize;
            let mut whole = Vec::with_capacity(total.min(FRAME_BYTES_MAX));
            while whole.len() < total {
                let chunk = read_frame(&mut input).await?;
                received.inc_by((chunk.len() + FRAME_HEADER_BYTES) as u64);
                whole.extend(chunk);
            }
            codec::decode(&whole)?
        } else {
            codec::decode(&frame)?
        };
        if members.is_removed(hello.from) {
            // Removed while connected: close, so its next hello hears that it was removed.
            anyhow::bail!("peer {:x} was removed from the cluster", hello.from);
        }
        if message.from() != hello.from || message.to() != id {
            anyhow::bail!("message from {} to {} on the connection of {}", message.from(), message.to(), hello.from);
        }
        if inbox.send(Input::Peer(message)).is_err() {
            return Ok(());
        }
    }
}

async fn send_loop(local: Local, peer: NodeId, stream_kind: u8, mut queue: mpsc::Receiver<Message>) {
    let mut backoff = Duration::from_millis(50);
    let mut logged_down = false;
    loop {
        let Some(address) = local.members.peer_address(peer) else { return };
        let connection = connect(&address, local.tls.as_deref()).await;
        let mut stream = match connection {
            Ok(stream) => stream,
            Err(error) => {
                if !logged_down {
                    tracing::info!(peer = format!("{peer:x}"), %address, %error, "peer unreachable; retrying with backoff");
                    logged_down = true;
                }
                let _ = local.inbox.send(Input::Unreachable(peer));
                // Drop what queued up meanwhile: Raft resends what still matters.
                while let Ok(message) = queue.try_recv() {
                    if message.is_snapshot() {
                        let _ = local.inbox.send(Input::SnapshotStatus(peer, false));
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let hello = Hello {
            stream: stream_kind,
            cluster_id: local.cluster_id,
            from: local.id,
            to: peer,
            client_urls: local.client_urls.clone(),
        };
        let mut out = BufWriter::new(&mut stream);
        if write_frame(&mut out, &hello.encode()).await.is_err() || out.flush().await.is_err() {
            tokio::time::sleep(backoff).await;
            continue;
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), read_frame(out.get_mut())).await;
        match answer {
            Ok(Ok(answer)) if answer == [HELLO_ACCEPTED] => {}
            Ok(Ok(answer)) if answer == [HELLO_REMOVED] => {
                tracing::error!(peer = format!("{peer:x}"), "the peer says this member was removed from the cluster");
                let _ = local.inbox.send(Input::Removed);
                return;
            }
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        }
        if stream_kind == STREAM_MESSAGES {
            tracing::info!(peer = format!("{peer:x}"), %address, "peer connected");
        }
        logged_down = false;
        backoff = Duration::from_millis(50);
        let sent = local.metrics.peer_sent_bytes.get_or_create(&vec![("To", format!("{peer:x}"))]).clone();
        let result = if stream_kind == STREAM_SNAPSHOT {
            send_snapshots(&mut out, peer, &local, &mut queue, &sent).await
        } else {
            send_messages(&mut out, &mut queue, &sent).await
        };
        match result {
            Ok(()) => return, // the queue closed: shutting down
            Err(error) => {
                tracing::debug!(peer, %error, "peer connection lost");
                let _ = local.inbox.send(Input::Unreachable(peer));
            }
        }
    }
}

/// Writes messages as they come, flushing once the queue is momentarily empty (one syscall for
/// a burst of messages).
async fn send_messages<W: AsyncWriteExt + Unpin>(
    out: &mut W,
    queue: &mut mpsc::Receiver<Message>,
    sent: &prometheus_client::metrics::counter::Counter,
) -> std::io::Result<()> {
    while let Some(message) = queue.recv().await {
        let frame = codec::encode(&message);
        write_frame(out, &frame).await?;
        sent.inc_by((frame.len() + FRAME_HEADER_BYTES) as u64);
        while let Ok(message) = queue.try_recv() {
            let frame = codec::encode(&message);
            write_frame(out, &frame).await?;
            sent.inc_by((frame.len() + FRAME_HEADER_BYTES) as u64);
        }
        out.flush().await?;
    }
    Ok(())
}

async fn send_snapshots<W: AsyncWriteExt + Unpin>(
    out: &mut W,
    peer: NodeId,
    local: &Local,
    queue: &mut mpsc::Receiver<Message>,
    sent_bytes: &prometheus_client::metrics::counter::Counter,
) -> std::io::Result<()> {
    while let Some(message) = queue.recv().await {
        let bytes = codec::encode(&message);
        sent_bytes.inc_by((bytes.len() + FRAME_HEADER_BYTES * (1 + bytes.len().div_ceil(CHUNK_BYTES))) as u64);
        let mut header = Writer::default();
        header.u64(bytes.len() as u64);
        let sent = async {
            write_frame(out, &header.out).await?;
            for chunk in bytes.chunks(CHUNK_BYTES) {
                write_frame(out, chunk).await?;
            }
            out.flush().await
        }
        .await;
        let delivered = sent.is_ok();
        tracing::info!(peer = format!("{peer:x}"), bytes = bytes.len(), delivered, "snapshot sent");
        let _ = local.inbox.send(Input::SnapshotStatus(peer, delivered));
        sent?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let hello = Hello { stream: 1, cluster_id: 7, from: 2, to: 3, client_urls: "http://127.0.0.1:2379".into() };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        assert!(Hello::decode(&hello.encode()[..10]).is_err());
    }

    #[tokio::test]
    async fn frames_with_a_wrong_version_or_length_are_errors() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, b"abc").await.unwrap();
        assert_eq!(read_frame(&mut buffer.as_slice()).await.unwrap(), b"abc");
        buffer[4] = VERSION + 1;
        assert!(read_frame(&mut buffer.as_slice()).await.is_err());
        let huge = (FRAME_BYTES_MAX as u32 + 1).to_be_bytes();
        assert!(read_frame(&mut huge.as_slice()).await.is_err());
    }
}

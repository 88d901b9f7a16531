//! The client port's connections: accepted here rather than by tonic, so that the no-delay
//! option is ours to set and TLS is ours to terminate (with certificates that reload).
//!
//! On a TLS port, a connection whose first byte is not a TLS handshake is a plain-text client
//! at the wrong door: it is answered, not dropped, with an error that says so (a gRPC status
//! for gRPC clients, a 400 for HTTP/1), by a small server of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::h2_authority::AuthorityFix;
use crate::tls::{ServerTls, PLAINTEXT_REFUSED, TLS_HANDSHAKE_BYTE};

/// A client connection, plain or TLS, read through the `:authority` filter (see
/// [`crate::h2_authority`]), its bytes counted for `etcd_network_client_grpc_*_bytes_total`.
pub struct ClientStream {
    io: Io,
    counters: ByteCounters,
    turn: WriteTurn,
}

/// Where a connection is in its write turn. The first write after a flush waits until the
/// runtime's worker has run the other tasks that were ready (a deferred wake, as
/// [`tokio::task::yield_now`] arranges; the worker fires those at the latest every 61 tasks),
/// or until [`WRITE_TURN_POLLS_MAX`] other wakes came first: responses that other tasks finish
/// for the same connection meanwhile join the same write. Without it, each response woke the
/// connection's task, which ran next and wrote that one frame alone: with 100 watchers on 4
/// connections, one `writev` (and one loopback TCP segment) per event, a quarter of the
/// members' CPU. grpc-go's writer yields in the same way before flushing a small batch.
enum WriteTurn {
    /// Nothing written since the last flush.
    Idle,
    /// Waiting for the deferred wake (its flag) or enough other wakes.
    Yielding { deferred: Arc<DeferredWake>, polls: u32 },
    /// Writing until the next flush.
    Writing,
}

/// Sets its flag before waking the task that yielded, so that a wake from elsewhere (another
/// response for the connection) is told apart from the runtime's deferred one.
struct DeferredWake {
    woken: std::sync::atomic::AtomicBool,
    waker: std::task::Waker,
}

impl std::task::Wake for DeferredWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake_by_ref();
    }
}

/// Wakes from elsewhere after which a yielded write goes out anyway: bounds how many responses
/// wait for one write.
const WRITE_TURN_POLLS_MAX: u32 = 32;

enum Io {
    Plain(AuthorityFix<TcpStream>),
    Tls(Box<AuthorityFix<tokio_rustls::server::TlsStream<TcpStream>>>),
}

/// The byte counters of the client port.
#[derive(Clone)]
pub struct ByteCounters {
    /// Bytes read from clients.
    pub received: prometheus_client::metrics::counter::Counter,
    /// Bytes written to clients.
    pub sent: prometheus_client::metrics::counter::Counter,
}

impl ClientStream {
    fn new(io: Io, counters: ByteCounters) -> Self {
        ClientStream { io, counters, turn: WriteTurn::Idle }
    }

    /// Ready once this write turn may write (see [`WriteTurn`]).
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.turn {
            WriteTurn::Idle => {
                let deferred = Arc::new(DeferredWake {
                    woken: std::sync::atomic::AtomicBool::new(false),
                    waker: cx.waker().clone(),
                });
                let waker = std::task::Waker::from(deferred.clone());
                let mut yielded = std::pin::pin!(tokio::task::yield_now());
                if yielded.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                    self.turn = WriteTurn::Writing;
                    return Poll::Ready(());
                }
                self.turn = WriteTurn::Yielding { deferred, polls: 0 };
                Poll::Pending
            }
            WriteTurn::Yielding { deferred, polls } => {
                *polls += 1;
                if deferred.woken.load(std::sync::atomic::Ordering::Acquire) || *polls >= WRITE_TURN_POLLS_MAX {
                    self.turn = WriteTurn::Writing;
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            WriteTurn::Writing => Poll::Ready(()),
        }
    }

    fn io(self: Pin<&mut Self>) -> Pin<&mut (dyn AsyncReadWrite + '_)> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream),
            Io::Tls(stream) => Pin::new(stream.as_mut()),
        }
    }
}

/// What the client stream's two kinds have in common.
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> AsyncReadWrite for T {}

/// What requests learn of their connection (in their extensions).
#[derive(Clone, Debug)]
pub struct ClientConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The client's verified certificate chain (mutual TLS), leaf first.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl tonic::transport::server::Connected for ClientStream {
    type ConnectInfo = ClientConnInfo;

    fn connect_info(&self) -> ClientConnInfo {
        match &self.io {
            Io::Plain(stream) => ClientConnInfo { remote: stream.get_ref().peer_addr().ok(), certs: None },
            Io::Tls(stream) => {
                let (tcp, session) = stream.get_ref().get_ref();
                ClientConnInfo {
                    remote: tcp.peer_addr().ok(),
                    certs: session.peer_certificates().map(|certs| Arc::new(certs.to_vec())),
                }
            }
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.as_mut().io().poll_read(cx, buf);
        self.counters.received.inc_by((buf.filled().len() - before) as u64);
        polled
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_turn(cx));
        let polled = self.as_mut().io().poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &polled {
            self.counters.sent.inc_by(*written as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = std::task::ready!(self.as_mut().io().poll_flush(cx));
        self.turn = WriteTurn::Idle;
        Poll::Ready(flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_turn(cx));
        let polled = self.as_mut().io().poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = &polled {
            self.counters.sent.inc_by(*written as u64);
        }
        polled
    }

    /// No: told that writes are vectored, HTTP/2 (h2) sends every DATA frame of more than
    /// 256 bytes in a write of its own (it chains the payload instead of copying it); told
    /// otherwise, it copies payloads up to 1 KiB into its buffer, so the responses of many
    /// streams on one connection leave in one write (with 100 watchers of one prefix on 4
    /// connections, each event was a write and a loopback segment of its own).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// A stream of accepted connections.
pub type Incoming<T> = tokio_stream::wrappers::ReceiverStream<std::io::Result<T>>;

/// Accepts on `listener`: connections for the services, and (on a TLS port) plain-text ones to
/// be refused.
pub fn accept(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    counters: ByteCounters,
) -> (Incoming<ClientStream>, Incoming<TcpStream>) {
    let (clients, clients_rx) = mpsc::channel(64);
    let (plain, plain_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait, rather than spin.
                    tracing::warn!(%error, "accepting a client connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without no-delay, small responses wait for the client's delayed ACK (~40 ms).
            let _ = stream.set_nodelay(true);
            let Some(tls) = tls.clone() else {
                let stream = ClientStream::new(Io::Plain(AuthorityFix::new(stream)), counters.clone());
                if clients.send(Ok(stream)).await.is_err() {
                    return;
                }
                continue;
            };
            // Handshakes run on their own tasks: a slow client must not hold up the others.
            let (clients, plain, counters) = (clients.clone(), plain.clone(), counters.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let peeked = tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut first)).await;
                if !matches!(peeked, Ok(Ok(1))) {
                    return;
                }
                if first[0] != TLS_HANDSHAKE_BYTE {
                    tracing::debug!(%remote, "plain-text client on the TLS port");
                    let _ = plain.send(Ok(stream)).await;
                    return;
                }
                match tls.accept(stream).await {
                    Ok(stream) => {
                        let stream = ClientStream::new(Io::Tls(Box::new(AuthorityFix::new(stream))), counters);
                        drop(clients.send(Ok(stream)).await)
                    }
                    Err(error) if error.to_string().contains("UnsupportedCertVersion") => tracing::warn!(
                        %remote,
                        "TLS handshake with a client failed: its certificate is X.509 version 1, which ballot \
                         does not accept (etcd does); issue a version 3 certificate (OpenSSL writes v3 when the \
                         certificate has any extension, e.g. -addext extendedKeyUsage=clientAuth)"
                    ),
                    Err(error) => tracing::info!(%remote, %error, "TLS handshake with a client failed"),
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(clients_rx), tokio_stream::wrappers::ReceiverStream::new(plain_rx))
}

/// Answers every request of plain-text clients on a TLS port with an error naming the problem.
pub async fn refuse_plaintext(incoming: Incoming<TcpStream>) {
    async fn refuse(request: axum::extract::Request) -> axum::response::Response {
        use axum::response::IntoResponse;
        let grpc = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        if grpc {
            // A trailers-only gRPC response: status UNAVAILABLE with the reason.
            (
                axum::http::StatusCode::OK,
                [("content-type", "application/grpc"), ("grpc-status", "14"), ("grpc-message", PLAINTEXT_REFUSED)],
            )
                .into_response()
        } else {
            (axum::http::StatusCode::BAD_REQUEST, format!("{PLAINTEXT_REFUSED}\n")).into_response()
        }
    }
    let router = axum::Router::new().fallback(refuse);
    let served = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming(incoming)
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the plain-text refusal server stopped");
    }
}

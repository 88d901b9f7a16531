//! The fault-injecting network: a user-space TCP proxy in front of every member's peer port
//! and client port, cutting or delaying traffic per directed link.
//!
//! Why a proxy rather than network namespaces with `tc netem`: it needs no privileges, runs
//! wherever the tests run (CI containers often lack `CAP_NET_ADMIN`), and works the same for
//! ballot and for etcd. A member advertises its proxy's address as its peer URL, so every
//! peer connection to it passes through the proxy, which learns who is calling from the
//! connection's first bytes (ballot's hello frame names the sender; etcd's peer requests carry
//! `X-Server-From`).
//!
//! A cut link stalls: its bytes are held, not dropped, as a partitioned TCP connection stalls
//! while the kernel retransmits. The sender's buffers fill, its writes block, and its
//! messages queue and drop as they would on a real partition; once the link heals, what was
//! held arrives late. Bytes flowing back on a connection belong to the reverse link (an etcd
//! member receives its peer's messages on the response of the stream it opened).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The harness's clients, as one end of a link.
pub const CLIENTS: usize = usize::MAX;
/// A caller the proxy could not identify (it is never cut).
const UNKNOWN: usize = usize::MAX - 1;

/// Which links are cut or slow, shared by every proxy.
#[derive(Clone, Default)]
pub struct Net {
    inner: Arc<Mutex<Rules>>,
}

#[derive(Default)]
struct Rules {
    cut: HashSet<(usize, usize)>,
    delay: HashMap<(usize, usize), Duration>,
    /// Member id → node index (ids change when a member is replaced).
    ids: HashMap<u64, usize>,
}

impl Net {
    /// Cuts the directed link `from → to`.
    pub fn cut(&self, from: usize, to: usize) {
        self.inner.lock().expect("rules").cut.insert((from, to));
    }

    /// Slows the directed link `from → to` by `delay` per chunk.
    pub fn slow(&self, from: usize, to: usize, delay: Duration) {
        self.inner.lock().expect("rules").delay.insert((from, to), delay);
    }

    /// Restores every link.
    pub fn heal(&self) {
        let mut rules = self.inner.lock().expect("rules");
        rules.cut.clear();
        rules.delay.clear();
    }

    /// Records that member `id` is node `index`.
    pub fn name(&self, id: u64, index: usize) {
        self.inner.lock().expect("rules").ids.insert(id, index);
    }

    fn index(&self, id: Option<u64>) -> usize {
        match id {
            Some(id) => self.inner.lock().expect("rules").ids.get(&id).copied().unwrap_or(UNKNOWN),
            None => UNKNOWN,
        }
    }

    fn state(&self, link: (usize, usize)) -> (bool, Duration) {
        let rules = self.inner.lock().expect("rules");
        (rules.cut.contains(&link), rules.delay.get(&link).copied().unwrap_or_default())
    }

    /// Starts a proxy to `target` for node `to`; returns the address it listens on. Peer
    /// proxies identify callers; client proxies treat every caller as [`CLIENTS`].
    pub async fn proxy(&self, to: usize, target: SocketAddr, peers: bool) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let net = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let net = net.clone();
                tokio::spawn(async move {
                    let _ = relay(net, stream, to, target, peers).await;
                });
            }
        });
        Ok(address)
    }
}

/// Bytes read to identify a caller before giving up (an unidentified caller is never cut).
const IDENTIFY_BYTES_MAX: usize = 16 * 1024;

async fn relay(net: Net, mut inbound: TcpStream, to: usize, target: SocketAddr, peers: bool) -> std::io::Result<()> {
    let _ = inbound.set_nodelay(true);
    let mut first = Vec::new();
    let caller = if peers {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(id) = identify(&first) {
                break Some(id);
            }
            if first.len() >= IDENTIFY_BYTES_MAX || first.ends_with(b"\r\n\r\n") {
                break None;
            }
            let read = tokio::time::timeout(Duration::from_secs(2), inbound.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
                Err(_) => break None,
            }
        }
    } else {
        None
    };
    let outbound = TcpStream::connect(target).await?;
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, mut out_write) = outbound.into_split();
    out_write.write_all(&first).await?;
    let from = move |net: &Net| if peers { net.index(caller) } else { CLIENTS };
    let forward = pump(net.clone(), in_read, out_write, move |net| (from(net), to));
    let back = pump(net.clone(), out_read, in_write, move |net| (to, from(net)));
    // Either side closing ends both (a killed member's connections go with it).
    tokio::select! {
        _ = forward => {}
        _ = back => {}
    }
    Ok(())
}

/// The member id a connection's first bytes name: ballot's hello frame
/// (`[len u32][version u8][stream u8][cluster u64][from u64]…`) or an etcd peer request's
/// `X-Server-From` header (hex).
fn identify(first: &[u8]) -> Option<u64> {
    if first.len() >= 22 && first.first() == Some(&0) && !first.starts_with(b"GET") {
        return Some(u64::from_be_bytes(first[14..22].try_into().ok()?));
    }
    let text = std::str::from_utf8(&first[..first.len().min(IDENTIFY_BYTES_MAX)]).ok()?;
    let header = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-server-from").then(|| value.trim().to_string())
    })?;
    u64::from_str_radix(&header, 16).ok()
}

async fn pump(
    net: Net,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: impl Fn(&Net) -> (usize, usize),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        wait_while_cut(&net, &link).await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let (_, delay) = net.state(link(&net));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Cut while these bytes were in flight: they wait for the link to heal.
        wait_while_cut(&net, &link).await;
        to.write_all(&buf[..n]).await?;
    }
}

async fn wait_while_cut(net: &Net, link: &impl Fn(&Net) -> (usize, usize)) {
    while net.state(link(net)).0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_identified_by_their_first_bytes() {
        let mut hello = vec![0, 0, 0, 40, 2, 0];
        hello.extend_from_slice(&7u64.to_be_bytes());
        hello.extend_from_slice(&0xabcdu64.to_be_bytes());
        assert_eq!(identify(&hello), Some(0xabcd));
        let request = b"GET /raft/stream/message/1 HTTP/1.1\r\nHost: x\r\nX-Server-From: 8e9e05c52164694d\r\n\r\n";
        assert_eq!(identify(request), Some(0x8e9e_05c5_2164_694d));
        assert_eq!(identify(b"GET /version HTTP/1.1\r\n\r\n"), None);
    }
}

//! A cluster of real `ballot serve` processes on loopback ports, for process tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

/// Heartbeat and election timeout of test clusters, milliseconds (short, to keep tests quick).
pub const HEARTBEAT_MS: u64 = 50;
/// Election timeout of test clusters.
pub const ELECTION_MS: u64 = 500;

/// One member process.
pub struct Member {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// `--initial-cluster` of a member that joins an existing cluster.
    pub joining: Option<String>,
}

/// A cluster whose processes are killed when it is dropped.
pub struct Cluster {
    pub members: Vec<Member>,
    pub dir: PathBuf,
    initial_cluster: String,
    extra: Vec<String>,
    /// TLS for the test's own clients (set by [`Cluster::use_tls`]).
    tls: Option<tonic::transport::ClientTlsConfig>,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free loopback ports, outside the range outgoing connections take theirs from
/// (a restarted member binds its old port again).
pub fn free_ports(n: usize) -> Vec<u16> {
    ballot_server::ports::free_loopback_ports(n).unwrap()
}

impl Cluster {
    /// Starts `n` members with extra `ballot serve` flags.
    pub fn start(test: &str, n: usize, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(test, n, extra);
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    /// `--initial-cluster` of the founding members.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// Ports and data dirs of `n` members, none started.
    pub fn prepare(test: &str, n: usize, extra: &[&str]) -> Cluster {
        let dir = std::env::temp_dir().join(format!("ballot-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("http://127.0.0.1:{}", ports[2 * i - 2]),
                peer: format!("http://127.0.0.1:{}", ports[2 * i - 1]),
                data_dir: dir.join(format!("m{i}")),
                log: dir.join(format!("m{i}.log")),
                child: None,
                joining: None,
            })
            .collect();
        let initial_cluster = members.iter().map(|m| format!("{}={}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        Cluster { members, dir, initial_cluster, extra: extra.iter().map(|s| s.to_string()).collect(), tls: None }
    }

    /// Makes every URL https:// (the members need TLS flags in `extra`), and connects the
    /// test's clients with `tls`.
    pub fn use_tls(&mut self, tls: tonic::transport::ClientTlsConfig) {
        for member in &mut self.members {
            member.client = member.client.replace("http://", "https://");
            member.peer = member.peer.replace("http://", "https://");
        }
        self.initial_cluster =
            self.members.iter().map(|m| format!("{}={}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        self.tls = Some(tls);
    }

    /// An endpoint for member `i`'s client URL (with the test's TLS, if any).
    pub fn endpoint(&self, i: usize) -> tonic::transport::Endpoint {
        let endpoint = Channel::from_shared(self.members[i].client.clone()).unwrap();
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).unwrap(),
            None => endpoint,
        }
    }

    /// Starts (or restarts, with the same data dir) member `i`.
    pub fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    /// [`Cluster::spawn`] with flags for this start only.
    pub fn spawn_with(&mut self, i: usize, once: &[&str]) {
        let member = &self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&member.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ballot"))
            .arg("serve")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &member.client, "--advertise-client-urls", &member.client])
            .args(["--listen-peer-urls", &member.peer, "--initial-advertise-peer-urls", &member.peer])
            .args(["--initial-cluster", member.joining.as_deref().unwrap_or(&self.initial_cluster)])
            .args(["--initial-cluster-state", if member.joining.is_some() { "existing" } else { "new" }])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string(), "--election-timeout", &ELECTION_MS.to_string()])
            .args(&self.extra)
            .args(once)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ballot starts");
        self.members[i].child = Some(child);
    }

    /// A new member's ports and data dir (not started, not added): returns its index.
    pub fn new_member(&mut self) -> usize {
        let i = self.members.len() + 1;
        let ports = free_ports(2);
        self.members.push(Member {
            name: format!("m{i}"),
            client: format!("http://127.0.0.1:{}", ports[0]),
            peer: format!("http://127.0.0.1:{}", ports[1]),
            data_dir: self.dir.join(format!("m{i}")),
            log: self.dir.join(format!("m{i}.log")),
            child: None,
            joining: None,
        });
        i - 1
    }

    /// Starts member `i` to join the cluster that `member add` told about its peer URL, given
    /// the running members `with` (as `--initial-cluster`).
    pub fn spawn_joining(&mut self, i: usize, with: &[usize]) {
        let mut cluster: Vec<String> =
            with.iter().map(|j| format!("{}={}", self.members[*j].name, self.members[*j].peer)).collect();
        cluster.push(format!("{}={}", self.members[i].name, self.members[i].peer));
        self.members[i].joining = Some(cluster.join(","));
        self.spawn(i);
    }

    /// Waits (bounded) for member `i` to exit by itself; its exit status.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.members[i].child.as_mut()?.try_wait().unwrap() {
                self.members[i].child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to member `i`'s process.
    pub fn signal(&self, i: usize, signal: &str) {
        let child = self.members[i].child.as_ref().expect("running");
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// kill -9 of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM to member `i`; waits (bounded) for it to exit and returns whether it exited cleanly.
    pub fn terminate(&mut self, i: usize) -> bool {
        let Some(mut child) = self.members[i].child.take() else { return false };
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        false
    }

    /// A gRPC channel to member `i`.
    pub async fn channel(&self, i: usize) -> Channel {
        let url = self.members[i].client.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.endpoint(i).connect().await {
                Ok(channel) => return channel,
                Err(error) if Instant::now() > deadline => panic!("{url}: {error}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A KV client to member `i`.
    pub async fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i).await)
    }

    /// Member `i`'s status, if it answers.
    pub async fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        self.members[i].child.as_ref()?;
        let channel = self.endpoint(i).connect().await.ok()?;
        let mut client = MaintenanceClient::new(channel);
        let response =
            tokio::time::timeout(Duration::from_secs(1), client.status(pb::StatusRequest {})).await.ok()?.ok()?;
        Some(response.into_inner())
    }

    /// Waits until a running member leads and every running member agrees; returns its index.
    pub async fn leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            let mut ids = Vec::new();
            for i in 0..self.members.len() {
                if let Some(status) = self.status(i).await {
                    leaders.push(status.leader);
                    ids.push((status.header.unwrap().member_id, i));
                }
            }
            let agreed = !leaders.is_empty() && leaders.iter().all(|l| *l != 0 && *l == leaders[0]);
            if agreed {
                if let Some((_, i)) = ids.iter().find(|(id, _)| *id == leaders[0]) {
                    return *i;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Member `i`'s client URL.
    #[allow(dead_code)] // not every test file uses it
    pub fn client_url(&self, i: usize) -> &str {
        &self.members[i].client
    }

    /// Restores member `i`'s data dir from a snapshot file (`ballot snapshot restore`), as a
    /// member of this cluster; what the command printed.
    pub fn restore(&self, i: usize, snapshot: &std::path::Path) -> String {
        let member = &self.members[i];
        let output = Command::new(env!("CARGO_BIN_EXE_ballot"))
            .arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--initial-cluster", &self.initial_cluster, "--initial-advertise-peer-urls", &member.peer])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Member `i`'s hash of its keys at `revision` (HashKV), if it answers.
    pub async fn hash_at(&self, i: usize, revision: i64) -> Option<u32> {
        let mut client = MaintenanceClient::new(self.channel(i).await);
        Some(client.hash_kv(pb::HashKvRequest { revision }).await.ok()?.into_inner().hash)
    }

    /// Waits (30 s at most) until member `follower` has `revision`, then checks that every
    /// member's hash at it is the leader's and that the follower caught up by a snapshot.
    pub async fn assert_caught_up_by_snapshot(&self, follower: usize, leader: usize, revision: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status(follower).await.is_none_or(|s| s.header.unwrap().revision < revision) {
            assert!(Instant::now() < deadline, "the follower did not catch up:\n{}", self.log(follower));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let expected = self.hash_at(leader, revision).await.unwrap();
        for i in 0..self.members.len() {
            assert_eq!(self.hash_at(i, revision).await, Some(expected), "member {i} diverged");
        }
        assert!(self.log(follower).contains("snapshot installed"), "the follower was behind the compacted log");
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A put request.
pub fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

/// A single-key range request.
pub fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: key.into(), ..Default::default() }
}

/// One HTTP/1.1 exchange; the body of a chunked answer is its chunks joined.
pub async fn http(address: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = token.map(|token| ("Authorization", token)).into_iter().collect();
    let (status, raw) = http_raw(address, method, path, body, &headers).await;
    let text = String::from_utf8_lossy(&raw);
    let value = serde_json::from_str(text.trim()).unwrap_or(Value::String(text.into_owned()));
    (status, value)
}

/// An HTTP/1.1 request with `headers`: the status and the body's bytes.
pub async fn http_raw(address: &str, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await.expect("an answer").unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") { unchunk_bytes(rest) } else { rest.to_vec() };
    (status, body)
}

/// The body of a chunked transfer, as bytes.
fn unchunk_bytes(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < line_end + 2 + size {
            break;
        }
        body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = &rest[(line_end + 4 + size).min(rest.len())..];
    }
    body
}

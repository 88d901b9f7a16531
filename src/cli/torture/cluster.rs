//! The members under test: real `ballot serve` (or `etcd`) processes on loopback, each with
//! its own data dir, its peer and client ports behind the fault-injecting proxies; and what
//! the nemesis does to them (kill, restart, pause, replace).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::{cluster_client::ClusterClient, maintenance_client::MaintenanceClient};
use tokio::process::{Child, Command};

use super::net::Net;
use crate::cli::connect::{Conn, Dialer};

/// What runs the members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `ballot serve`, this executable, with extra flags.
    Ballot(PathBuf, Vec<String>),
    /// Debian's `etcd`.
    Etcd,
}

/// The certificate files of a cluster whose client ports use TLS: the members serve `cert`
/// and require clients to present a certificate from `ca`; torture's clients present `cert`
/// too (so it must carry IP 127.0.0.1 and allow both uses).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA bundle.
    pub ca: PathBuf,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// How the harness reaches its members: TLS on their client ports or not, and the user the
/// workload runs as once authentication is on.
#[derive(Clone)]
pub struct Security {
    /// TLS on the client ports.
    pub tls: Option<TlsFiles>,
    /// The workload's user and password: auth is enabled, with `root` (same password) for the
    /// harness's own calls.
    pub user: Option<(String, String)>,
    /// Dials with the TLS settings, as nobody.
    pub dialer: Dialer,
}

/// One member.
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its member id (changes when it is replaced).
    pub id: u64,
    /// Where it really listens for peers.
    peer_port: u16,
    /// Where it really listens for clients (the harness's own control calls go here).
    pub client_port: u16,
    /// Its peer proxy: its advertised peer URL.
    peer_proxy: SocketAddr,
    /// Its client proxy: where the workload's clients connect.
    pub client_proxy: SocketAddr,
    /// Where it really serves ZooKeeper clients (ballot only).
    zk_port: u16,
    /// Its ZooKeeper proxy.
    pub zk_proxy: SocketAddr,
    /// Data dir generation (a replaced member starts from an empty one).
    generation: u32,
    child: Option<Child>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
}

/// The cluster.
pub struct Cluster {
    /// What runs the members.
    pub target: Target,
    /// The members.
    pub nodes: Vec<Node>,
    /// The network between them.
    pub net: Net,
    dir: PathBuf,
    /// TLS and auth.
    pub security: Security,
    /// The harness's own dialer: as nobody until auth is on, then as root.
    control_dialer: Dialer,
    /// When the harness last logged in as root.
    last_login: std::sync::Mutex<Option<std::time::Instant>>,
    /// libfaketime, when the clock nemesis runs: members start under it, each with a clock
    /// file of its own ([`Cluster::skew_clock`]).
    libfaketime: Option<PathBuf>,
}

/// Where Debian's libfaketime may be (the multi-threaded variant).
const LIBFAKETIME: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];

/// libfaketime on this machine, if installed.
pub fn find_libfaketime() -> Option<PathBuf> {
    LIBFAKETIME.iter().map(PathBuf::from).find(|path| path.exists())
}

/// Control-plane calls never wait long: a paused member would hold them forever.
const CONTROL_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often the harness logs in again as root: a restarted member may have forgotten the
/// token (logins are bcrypt-slow on purpose, so not one per call).
const LOGIN_EVERY: Duration = Duration::from_secs(10);

impl Cluster {
    /// Starts `n` members with their proxies; data and logs under `dir`.
    pub async fn start(
        target: Target,
        n: usize,
        dir: PathBuf,
        security: Security,
        libfaketime: Option<PathBuf>,
    ) -> anyhow::Result<Cluster> {
        let net = Net::default();
        let mut nodes = Vec::new();
        let ports = ballot_server::ports::free_loopback_ports(3 * n)?;
        for i in 0..n {
            let (peer_port, client_port, zk_port) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let peer_proxy = net.proxy(i, SocketAddr::from(([127, 0, 0, 1], peer_port)), true).await?;
            let client_proxy = net.proxy(i, SocketAddr::from(([127, 0, 0, 1], client_port)), false).await?;
            let zk_proxy = net.proxy(i, SocketAddr::from(([127, 0, 0, 1], zk_port)), false).await?;
            nodes.push(Node {
                name: format!("t{}", i + 1),
                id: 0,
                peer_port,
                client_port,
                peer_proxy,
                client_proxy,
                zk_port,
                zk_proxy,
                generation: 0,
                child: None,
                paused: false,
            });
        }
        std::fs::create_dir_all(&dir)?;
        let control_dialer = security.dialer.clone();
        let last_login = std::sync::Mutex::new(None);
        let mut cluster = Cluster { target, nodes, net, dir, security, control_dialer, last_login, libfaketime };
        let initial = cluster.initial_cluster(None);
        for i in 0..n {
            cluster.skew_clock(i, 0, 1.0)?;
            cluster.spawn(i, &initial, false)?;
        }
        cluster.learn_ids(Duration::from_secs(30)).await?;
        if let Some((user, password)) = cluster.security.user.clone() {
            cluster.enable_auth(&user, &password).await.context("turning authentication on")?;
        }
        Ok(cluster)
    }

    /// Creates `root` and the workload's user (a role with read and write on every key),
    /// turns authentication on, and from then on makes the harness's calls as root.
    async fn enable_auth(&mut self, user: &str, password: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let channel = loop {
            if let Some(leader) = self.leader().await {
                if let Some(channel) = self.control(leader).await {
                    break channel;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no leader answered within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut auth = ballot_proto::etcdserverpb::auth_client::AuthClient::new(channel);
        let add = |name: &str| pb::AuthUserAddRequest {
            name: name.to_string(),
            password: password.to_string(),
            ..Default::default()
        };
        let grant = |user: &str, role: &str| pb::AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
        auth.user_add(add("root")).await?;
        auth.role_add(pb::AuthRoleAddRequest { name: "root".into() }).await?;
        auth.user_grant_role(grant("root", "root")).await?;
        if user != "root" {
            auth.user_add(add(user)).await?;
            auth.role_add(pb::AuthRoleAddRequest { name: "torture".into() }).await?;
            // Every key: from the smallest key to "\0" as the range end (etcd's "all keys").
            let permission = ballot_proto::authpb::Permission {
                perm_type: ballot_proto::authpb::permission::Type::Readwrite as i32,
                key: vec![0],
                range_end: vec![0],
            };
            let request = pb::AuthRoleGrantPermissionRequest { name: "torture".into(), perm: Some(permission) };
            auth.role_grant_permission(request).await?;
            auth.user_grant_role(grant(user, "torture")).await?;
        }
        auth.auth_enable(pb::AuthEnableRequest {}).await?;
        // The run is only as secured as it says: a write without a token must now be refused.
        let anonymous = self.control(0).await.context("member t1 does not answer")?;
        let put = pb::PutRequest { key: b"torture-anonymous".to_vec(), ..Default::default() };
        if ballot_proto::etcdserverpb::kv_client::KvClient::new(anonymous).put(put).await.is_ok() {
            bail!("authentication is on, yet a write without a token was accepted");
        }
        self.control_dialer = self.security.dialer.as_user("root", password);
        Ok(())
    }

    /// The scheme of the client ports.
    fn client_scheme(&self) -> &'static str {
        if self.security.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn peer_url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].peer_proxy)
    }

    /// `name=peer-url,…` of every member (or of the members but `without`).
    fn initial_cluster(&self, without: Option<usize>) -> String {
        (0..self.nodes.len())
            .filter(|i| Some(*i) != without)
            .map(|i| format!("{}={}", self.nodes[i].name, self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        let node = &self.nodes[i];
        self.dir.join(format!("{}.{}", node.name, node.generation))
    }

    /// The log of member `i`.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.nodes[i].name))
    }

    fn spawn(&mut self, i: usize, initial_cluster: &str, existing: bool) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let peer_listen = format!("http://127.0.0.1:{}", node.peer_port);
        let client = format!("{}://127.0.0.1:{}", self.client_scheme(), node.client_port);
        let peer_url = self.peer_url(i);
        let state = if existing { "existing" } else { "new" };
        let mut command = match &self.target {
            Target::Ballot(exe, extra) => {
                let mut command = Command::new(exe);
                command.arg("serve").args(extra);
                command.args(["--listen-zk-urls", &format!("127.0.0.1:{}", node.zk_port)]);
                if let Some(library) = &self.libfaketime {
                    // The wall clock only (CLOCK_REALTIME, which entry stamps and token
                    // expiry read), re-read from the file at every call; the monotonic clocks
                    // stay true, and the lease clock's rate has its own test-only file.
                    let (wall, lease) = self.clock_files(i);
                    command
                        .env("LD_PRELOAD", library)
                        .env("FAKETIME_TIMESTAMP_FILE", wall)
                        .env("FAKETIME_NO_CACHE", "1")
                        .env("DONT_FAKE_MONOTONIC", "1")
                        .env("BALLOT_FAULT_LEASE_CLOCK_FILE", lease);
                }
                command
            }
            Target::Etcd => Command::new("etcd"),
        };
        command
            .args(["--name", &node.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_listen, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "torture"]);
        if let Some(tls) = &self.security.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", node.name))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Member `i`'s clock files: its wall-clock offset (libfaketime's format) and its lease
    /// clock's rate (honoured by builds with `--features fault-injection`).
    fn clock_files(&self, i: usize) -> (PathBuf, PathBuf) {
        let name = &self.nodes[i].name;
        (self.dir.join(format!("{name}.clock")), self.dir.join(format!("{name}.lease-rate")))
    }

    /// Sets member `i`'s wall clock `offset_s` seconds from true time and its lease clock to
    /// run at `lease_rate` (1: true rate); it reads them on its next clock reading (the lease
    /// rate within 100 ms). Nothing without the clock nemesis.
    pub fn skew_clock(&self, i: usize, offset_s: i64, lease_rate: f64) -> anyhow::Result<()> {
        if self.libfaketime.is_none() {
            return Ok(());
        }
        let (wall, lease) = self.clock_files(i);
        std::fs::write(&wall, format!("{offset_s:+}\n")).with_context(|| format!("writing {}", wall.display()))?;
        std::fs::write(&lease, format!("{lease_rate}\n")).with_context(|| format!("writing {}", lease.display()))?;
        Ok(())
    }

    /// A connection to member `i`'s real client port (the harness's control plane, which the
    /// nemesis never cuts), as root once authentication is on.
    pub async fn control(&self, i: usize) -> Option<Conn> {
        let address = format!("127.0.0.1:{}", self.nodes[i].client_port);
        let endpoint = self.control_dialer.endpoint(&address).ok()?.connect_timeout(CONTROL_TIMEOUT);
        let channel = tokio::time::timeout(CONTROL_TIMEOUT, endpoint.connect()).await.ok()?.ok()?;
        if self.control_dialer.logs_in() {
            let due = self.last_login.lock().expect("login time").is_none_or(|at| at.elapsed() >= LOGIN_EVERY);
            if due {
                tokio::time::timeout(CONTROL_TIMEOUT * 4, self.control_dialer.login(&channel)).await.ok()?.ok()?;
                *self.last_login.lock().expect("login time") = Some(std::time::Instant::now());
            }
        }
        Some(self.control_dialer.wrap(channel))
    }

    /// Learns every member's id from the member list (and tells the proxies).
    async fn learn_ids(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for i in 0..self.nodes.len() {
                let Some(channel) = self.control(i).await else { continue };
                let mut client = ClusterClient::new(channel);
                let call = client.member_list(pb::MemberListRequest::default());
                let Ok(Ok(list)) = tokio::time::timeout(CONTROL_TIMEOUT, call).await else { continue };
                let members = list.into_inner().members;
                for member in &members {
                    for j in 0..self.nodes.len() {
                        if member.peer_ur_ls.contains(&self.peer_url(j)) {
                            self.nodes[j].id = member.id;
                            self.net.name(member.id, j);
                        }
                    }
                }
                if self.nodes.iter().all(|node| node.id != 0) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the members did not all answer MemberList within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The member that says it leads, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused || self.nodes[i].child.is_none() {
                continue;
            }
            let Some(channel) = self.control(i).await else { continue };
            let mut client = MaintenanceClient::new(channel);
            let call = client.status(pb::StatusRequest {});
            if let Ok(Ok(status)) = tokio::time::timeout(CONTROL_TIMEOUT, call).await {
                let status = status.into_inner();
                if status.leader != 0 && status.leader == status.header.map_or(0, |h| h.member_id) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// kill -9.
    pub async fn kill(&mut self, i: usize) {
        self.resume(i);
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].child.is_some() {
            return Ok(());
        }
        // A member that joined (a replaced one) restarts as it started: joining an existing
        // cluster (its id came from MemberAdd, not from the flags).
        let initial = self.initial_cluster(None);
        let joined = self.nodes[i].generation > 0;
        self.spawn(i, &initial, joined)
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(pid) = self.nodes[i].child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status();
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        if !self.nodes[i].paused {
            self.signal(i, "-STOP");
            self.nodes[i].paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused {
            self.signal(i, "-CONT");
            self.nodes[i].paused = false;
        }
    }

    /// True if member `i`'s process has exited by itself.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.nodes[i].child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// Replaces member `i`: removes it through another member, wipes its data, adds it back
    /// (a new member id) and starts it empty, joining the running cluster.
    pub async fn replace(&mut self, i: usize) -> anyhow::Result<String> {
        let old = self.nodes[i].id;
        let via = (0..self.nodes.len())
            .find(|j| *j != i && !self.nodes[*j].paused && self.nodes[*j].child.is_some())
            .context("no other member runs")?;
        let channel = self.control(via).await.context("the member to go through does not answer")?;
        let mut client = ClusterClient::new(channel);
        let removed =
            tokio::time::timeout(Duration::from_secs(10), client.member_remove(pb::MemberRemoveRequest { id: old }))
                .await;
        match removed {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => bail!("removing {old:x}: {}", status.message()),
            Err(_) => bail!("removing {old:x}: timed out"),
        }
        self.kill(i).await;
        self.nodes[i].generation += 1;
        let request = pb::MemberAddRequest { peer_ur_ls: vec![self.peer_url(i)], is_learner: false };
        // The removal must be applied before the add (one change at a time): retry a while.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let added = loop {
            match tokio::time::timeout(Duration::from_secs(10), client.member_add(request.clone())).await {
                Ok(Ok(response)) => break response.into_inner(),
                _ if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(300)).await,
                Ok(Err(status)) => bail!("adding {} back: {}", self.nodes[i].name, status.message()),
                Err(_) => bail!("adding {} back: timed out", self.nodes[i].name),
            }
        };
        let id = added.member.map_or(0, |m| m.id);
        self.nodes[i].id = id;
        self.net.name(id, i);
        let initial = self.initial_cluster(None);
        self.spawn(i, &initial, true)?;
        Ok(format!("member {} replaced: {old:x} removed, {id:x} added with an empty data dir", self.nodes[i].name))
    }

    /// Stops every member (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.signal(i, "-TERM");
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }

    /// Removes the data dirs (kept when a run fails).
    pub fn remove_data(&self) {
        for i in 0..self.nodes.len() {
            for generation in 0..=self.nodes[i].generation {
                let _ = std::fs::remove_dir_all(self.dir.join(format!("{}.{generation}", self.nodes[i].name)));
            }
        }
    }
}

//! Putting a member together: flags → identity → replica, Raft loop, transport, gRPC and HTTP.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ballot_mvcc::{command_codec, Command, MemberChange, Store};
use ballot_node::{Consensus, Engine, Replica};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::{v3electionpb, v3lockpb};
use ballot_raft::{ConfState, Config, NodeId};
use ballot_storage::{FsDisk, WalOptions};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::api::{self, Handle, Limits};
use crate::compactor::AutoCompaction;
use crate::driver::{self, Input, Settings};
use crate::members::{self, Member, Members};
use crate::metrics::Metrics;
use crate::transport::{self, Transport};

/// A member's configuration, with etcd's flag names where the concept is the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Human-readable name of this member.
    pub name: String,
    /// Where the log and the database live.
    pub data_dir: PathBuf,
    /// URL to listen on for clients (gRPC and HTTP).
    pub listen_client_urls: String,
    /// Client URLs announced to other members and clients.
    pub advertise_client_urls: String,
    /// URL to listen on for peers.
    pub listen_peer_urls: String,
    /// Peer URLs of this member, as in `initial_cluster`.
    pub initial_advertise_peer_urls: String,
    /// `name=peer-url,…` of every founding member.
    pub initial_cluster: String,
    /// `new` (founding) or `existing` (joining).
    pub initial_cluster_state: String,
    /// Mixed into the ids so that two clusters with the same members differ.
    pub initial_cluster_token: String,
    /// Heartbeat interval (one Raft tick), milliseconds.
    pub heartbeat_interval: u64,
    /// Election timeout, milliseconds.
    pub election_timeout: u64,
    /// Database size that raises the NOSPACE alarm, bytes.
    pub quota_backend_bytes: u64,
    /// Largest request, bytes.
    pub max_request_bytes: usize,
    /// Most operations in one txn.
    pub max_txn_ops: usize,
    /// Applied entries between snapshots (log compactions).
    pub snapshot_count: u64,
    /// The database's page cache in this process, bytes; the OS page cache holds the rest of
    /// the file (shared and reclaimable, unlike the process's own memory).
    pub backend_cache_bytes: usize,
    /// `periodic` or `revision` (etcd's `--auto-compaction-mode`).
    pub auto_compaction_mode: String,
    /// How much history to keep: a duration (or hours) or a revision count; 0 turns it off.
    pub auto_compaction_retention: String,
    /// Promote a learner as soon as it has caught up with the leader.
    pub auto_promote_learners: bool,
    /// Restart as the only member of the cluster, keeping what committed (etcd's
    /// `--force-new-cluster`; see `ballot_node::Replica::force_new_cluster`).
    pub force_new_cluster: bool,
    /// Leader lease reads (see `ballot_raft::Config::lease_read`).
    pub lease_reads: bool,
    /// The consensus engine: `raft`, `paxos` or `paxos:Q1/Q2` (see `ballot_node::Consensus`).
    /// Chosen when the cluster is founded and recorded in the data dir.
    pub consensus: String,
    /// How long a causal read waits for this member to apply the revision its client has seen
    /// (a duration such as `1s` or `500ms`), before it is refused.
    pub max_causal_wait: String,
    /// The leader refuses writes while its next entry stamp would be ahead of its wall clock
    /// by more than this (a duration such as `500ms`; `0` turns the check off).
    pub max_clock_skew: String,
    /// How often the leader compares members' `hash_kv` (a duration such as `5m`; 0 turns the
    /// check off), etcd's `--experimental-corrupt-check-time`.
    pub experimental_corrupt_check_time: String,
    /// `simple`, or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…` (etcd's `--auth-token`).
    pub auth_token: String,
    /// Seconds a simple token lives after its last use (etcd's `--auth-token-ttl`).
    pub auth_token_ttl: u64,
    /// PEM certificate for the client port (TLS on it when set).
    pub cert_file: Option<PathBuf>,
    /// PEM key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// CA that client certificates are verified against (and that forwarded requests trust).
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca_file`.
    pub client_cert_auth: bool,
    /// PEM certificate for the peer port (TLS between members when set).
    pub peer_cert_file: Option<PathBuf>,
    /// PEM key of `peer_cert_file`.
    pub peer_key_file: Option<PathBuf>,
    /// CA that peers' certificates are verified against.
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require a certificate from connecting peers (signed by `peer_trusted_ca_file`).
    pub peer_client_cert_auth: bool,
    /// Where the ZooKeeper front end listens (`host:port`, an optional `tcp://` before it);
    /// empty: off.
    pub listen_zk_urls: String,
    /// ZooKeeper's `superDigest` (`super:<base64 sha1>`): who authenticates with its password
    /// passes every znode ACL.
    pub zk_super_digest: Option<String>,
    /// The web console changes nothing, whoever asks (`--ui-read-only`).
    pub ui_read_only: bool,
    /// The control endpoint of the `ballot agent` whose gossip fleet the console shows
    /// (`--ui-agent`).
    pub ui_agent: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "default".into(),
            data_dir: PathBuf::from("default.ballot"),
            listen_client_urls: "http://127.0.0.1:2379".into(),
            advertise_client_urls: "http://127.0.0.1:2379".into(),
            listen_peer_urls: "http://127.0.0.1:2380".into(),
            initial_advertise_peer_urls: "http://127.0.0.1:2380".into(),
            initial_cluster: "default=http://127.0.0.1:2380".into(),
            initial_cluster_state: "new".into(),
            initial_cluster_token: "ballot-cluster".into(),
            heartbeat_interval: 100,
            election_timeout: 1000,
            quota_backend_bytes: 2 << 30,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            snapshot_count: 10_000,
            backend_cache_bytes: 16 << 20,
            auto_compaction_mode: "periodic".into(),
            auto_compaction_retention: "0".into(),
            auto_promote_learners: false,
            force_new_cluster: false,
            lease_reads: false,
            consensus: "raft".into(),
            max_causal_wait: "1s".into(),
            max_clock_skew: "500ms".into(),
            experimental_corrupt_check_time: "0".into(),
            auth_token: "simple".into(),
            auth_token_ttl: 300,
            cert_file: None,
            key_file: None,
            trusted_ca_file: None,
            client_cert_auth: false,
            peer_cert_file: None,
            peer_key_file: None,
            peer_trusted_ca_file: None,
            peer_client_cert_auth: false,
            listen_zk_urls: String::new(),
            zk_super_digest: None,
            ui_read_only: false,
            ui_agent: None,
        }
    }
}

/// Who a data directory belongs to, written when it is first used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    name: String,
    member_id: String,
    cluster_id: String,
    /// Set when the member learns it was removed: it never starts again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    /// The cluster's consensus engine (a data dir from before the choice existed runs Raft).
    #[serde(default = "raft_engine")]
    consensus: String,
    /// A Multi-Paxos cluster's voters (hex ids): its fixed membership, needed before the log
    /// is read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    voters: Vec<String>,
}

fn raft_engine() -> String {
    "raft".into()
}

impl Identity {
    pub(crate) fn new(name: &str, member_id: NodeId, cluster_id: u64) -> Identity {
        Identity {
            name: name.to_string(),
            member_id: format!("{member_id:x}"),
            cluster_id: format!("{cluster_id:x}"),
            removed: false,
            consensus: raft_engine(),
            voters: Vec::new(),
        }
    }

    /// A Multi-Paxos cluster's voters as recorded (empty for Raft, which keeps its own).
    fn paxos_voters(&self) -> anyhow::Result<ConfState> {
        let parse =
            |hex: &String| u64::from_str_radix(hex, 16).with_context(|| format!("{IDENTITY_FILE}: bad id {hex}"));
        Ok(ConfState::with_voters(self.voters.iter().map(parse).collect::<anyhow::Result<Vec<_>>>()?))
    }

    fn ids(&self) -> anyhow::Result<(NodeId, u64)> {
        let parse = |hex: &str| u64::from_str_radix(hex, 16).with_context(|| format!("{IDENTITY_FILE}: bad id {hex}"));
        Ok((parse(&self.member_id)?, parse(&self.cluster_id)?))
    }

    pub(crate) fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

pub(crate) const IDENTITY_FILE: &str = "member.json";

/// The founding members, this member's id among them (refused if the flags do not name it
/// there), and the cluster id they make.
pub(crate) fn founding(config: &ServerConfig) -> anyhow::Result<(Vec<Member>, NodeId, u64)> {
    let table = founders(config)?;
    let token = config.initial_cluster_token.as_str();
    let id = members::member_id(&config.name, &split_urls(&config.initial_advertise_peer_urls), token);
    if !table.iter().any(|member| member.id == id) {
        bail!(
            "--name {} with --initial-advertise-peer-urls {} is not in --initial-cluster {}",
            config.name,
            config.initial_advertise_peer_urls,
            config.initial_cluster
        );
    }
    let cluster_id = members::cluster_id(table.iter().map(|member| member.id), token);
    Ok((table, id, cluster_id))
}

/// The founding members `--initial-cluster` names, with the ids their names, peer URLs and the
/// cluster token give them.
pub(crate) fn founders(config: &ServerConfig) -> anyhow::Result<Vec<Member>> {
    let founders = members::parse_initial_cluster(&config.initial_cluster).map_err(anyhow::Error::msg)?;
    let token = config.initial_cluster_token.as_str();
    Ok(founders
        .iter()
        .map(|(name, urls)| Member {
            id: members::member_id(name, urls, token),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
            is_learner: false,
        })
        .collect())
}

fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_string).collect()
}

/// How long a stopping member waits for open client calls (watch and keep-alive streams
/// among them) before it drops their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a member until `shutdown` resolves; then a leader hands leadership over and stops.
pub async fn run(config: ServerConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    if config.heartbeat_interval == 0 || config.election_timeout < 5 * config.heartbeat_interval {
        bail!("--election-timeout must be at least 5 × --heartbeat-interval (and the interval non-zero)");
    }
    let auto_compaction = AutoCompaction::parse(&config.auto_compaction_mode, &config.auto_compaction_retention)
        .map_err(|error| anyhow::anyhow!(error))?;
    let max_causal_wait = crate::compactor::parse_period(&config.max_causal_wait).ok_or_else(|| {
        anyhow::anyhow!("--max-causal-wait {:?} is not a duration such as 1s or 500ms", config.max_causal_wait)
    })?;
    let corrupt_check = crate::compactor::parse_period(&config.experimental_corrupt_check_time).ok_or_else(|| {
        anyhow::anyhow!(
            "--experimental-corrupt-check-time {:?} is not a duration such as 5m or 30s",
            config.experimental_corrupt_check_time
        )
    })?;
    if config.auth_token_ttl == 0 {
        bail!("--auth-token-ttl must be at least 1 second");
    }
    let tokens = Arc::new(crate::auth::Tokens::new(
        crate::auth::TokenKind::parse(&config.auth_token)?,
        Duration::from_secs(config.auth_token_ttl),
    ));
    let tls = Tls::of(&config)?;
    let (table, founding_id, founding_cluster) = founding(&config)?;
    // The founding membership entry: the same on every founder (names and peer URLs from the
    // flags; each member publishes its client URLs through the log once running).
    let founders: Vec<MemberChange> = table.iter().map(|member| MemberChange::Upsert(member.clone())).collect();
    let peer_urls = split_urls(&config.initial_advertise_peer_urls);
    let joining = config.initial_cluster_state == "existing";
    if !joining && config.initial_cluster_state != "new" {
        bail!("--initial-cluster-state must be new or existing, not {}", config.initial_cluster_state);
    }
    let client_urls = config.advertise_client_urls.clone();
    let consensus = Consensus::parse(&config.consensus).map_err(anyhow::Error::msg)?;
    if consensus != Consensus::Raft && joining {
        bail!("a member cannot join a --consensus paxos cluster: its membership is fixed when it is founded");
    }

    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let identity_path = config.data_dir.join(IDENTITY_FILE);
    let restarting = identity_path.exists();
    let store = Store::open_with_cache(&config.data_dir.join("db"), config.backend_cache_bytes)
        .map_err(|error| anyhow::anyhow!("opening the database: {error}"))?;
    let (mut identity, members) = if restarting {
        let found: Identity = serde_json::from_slice(&std::fs::read(&identity_path)?)
            .with_context(|| format!("reading {}", identity_path.display()))?;
        if found.removed {
            bail!(
                "member {} ({}) was removed from cluster {}; it cannot rejoin with this data dir: \
                 add it again with `member add` and start it with an empty --data-dir",
                found.name,
                found.member_id,
                found.cluster_id
            );
        }
        // A founding member's flags must describe the member the data dir belongs to; a member
        // that joined has an id MemberAdd chose, which no flag describes: its name must match.
        let expected = Identity {
            name: config.name.clone(),
            member_id: format!("{founding_id:x}"),
            cluster_id: format!("{founding_cluster:x}"),
            removed: false,
            // Checked on their own below, with a message that says what differs.
            consensus: found.consensus.clone(),
            voters: found.voters.clone(),
        };
        if (!joining && found != expected) || found.name != config.name {
            bail!(
                "data dir {} belongs to member {} ({}) of cluster {}, but the flags describe member {} ({}) of cluster {}; refusing to start",
                config.data_dir.display(),
                found.name,
                found.member_id,
                found.cluster_id,
                expected.name,
                expected.member_id,
                expected.cluster_id
            );
        }
        (found, Members::new(table))
    } else if joining {
        join(&config, &table, &peer_urls, tls.peer_client.as_deref()).await?
    } else {
        (Identity::new(&config.name, founding_id, founding_cluster), Members::new(table))
    };
    let (id, cluster_id) = identity.ids()?;
    // The replicated table, once there is one, replaces what the flags said.
    let (records, removed) = store.members().map_err(|error| anyhow::anyhow!("reading the member table: {error}"))?;
    if !records.is_empty() {
        members.replace(records, removed, &[]);
    }
    members.set_client_urls(id, &client_urls);

    let heartbeat = Duration::from_millis(config.heartbeat_interval);
    let election_ticks = (config.election_timeout / config.heartbeat_interval) as u32;
    let mut raft_config = Config::new(id);
    raft_config.election_ticks = election_ticks;
    raft_config.seed = id ^ cluster_id;
    raft_config.tick_interval_ns = heartbeat.as_nanos() as u64;
    raft_config.lease_read = config.lease_reads;
    raft_config.max_clock_skew_ms = match config.max_clock_skew.trim() {
        "0" => 0,
        text => crate::compactor::parse_period(text)
            .ok_or_else(|| anyhow::anyhow!("--max-clock-skew {text:?} is not a duration such as 500ms or 2s"))?
            .as_millis() as u64,
    };
    if restarting && Consensus::parse(&identity.consensus).map_err(anyhow::Error::msg)? != consensus {
        bail!(
            "data dir {} belongs to a cluster running --consensus {}; refusing to start it with --consensus {consensus}",
            config.data_dir.display(),
            identity.consensus
        );
    }
    let paxos = consensus != Consensus::Raft;
    if paxos && config.force_new_cluster {
        bail!("--force-new-cluster is not supported with --consensus paxos: the Multi-Paxos engine runs a fixed membership");
    }
    let disk = FsDisk::open(&config.data_dir.join("wal"), true)?;
    let options = WalOptions::default();
    if config.force_new_cluster && !restarting {
        bail!("--force-new-cluster restarts a member from its data dir, and {} has none", config.data_dir.display());
    }
    let replica = if config.force_new_cluster {
        tracing::warn!(
            member = format!("{id:x}"),
            "--force-new-cluster: restarting as the only member; what committed is kept, every other member is dropped"
        );
        Replica::force_new_cluster(raft_config, disk, options, store, config.snapshot_count)?
    } else if restarting {
        let voters = identity.paxos_voters()?;
        Replica::restart_engine(consensus, &voters, raft_config, disk, options, store, config.snapshot_count)?
    } else {
        let replica = if joining {
            Replica::new(raft_config, ConfState::default(), disk, options, store, config.snapshot_count)?
        } else {
            let context = command_codec::encode(&Command::Members(founders));
            let initial = ConfState::with_voters(members.list().iter().map(|member| member.id));
            if paxos {
                identity.voters = initial.voters.iter().map(|id| format!("{id:x}")).collect();
            }
            let engine = Engine::new(consensus, raft_config, initial, context)?;
            Replica::new_engine(engine, disk, options, store, config.snapshot_count)?
        };
        identity.consensus = consensus.to_string();
        identity.write(&identity_path)?;
        replica
    };

    let peer_listener = TcpListener::bind(members::url_address(&config.listen_peer_urls).map_err(anyhow::Error::msg)?)
        .await
        .with_context(|| format!("listening for peers on {}", config.listen_peer_urls))?;
    let client_address = members::url_address(&config.listen_client_urls).map_err(anyhow::Error::msg)?;
    let client_listener = TcpListener::bind(&client_address)
        .await
        .with_context(|| format!("listening for clients on {client_address}"))?;
    let zk_listener = match config.listen_zk_urls.trim() {
        "" => None,
        url => {
            let address = url.split(',').next().unwrap_or(url).trim_start_matches("tcp://").to_string();
            let listener = TcpListener::bind(&address)
                .await
                .with_context(|| format!("listening for ZooKeeper clients on {address}"))?;
            Some(listener)
        }
    };

    let metrics = Arc::new(Metrics::default());
    metrics.set_server_id(id);
    let (inbox, inbox_rx) = std::sync::mpsc::channel();
    let term = Arc::new(AtomicU64::new(replica.engine().term()));
    let (applied_tx, applied) = tokio::sync::watch::channel(replica.store().revision());
    let reader = replica.store().reader();
    let (removed_tx, mut removed_rx) = tokio::sync::watch::channel(false);
    let corrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let settings = Settings {
        id,
        tick: heartbeat,
        quota_bytes: config.quota_backend_bytes,
        term: term.clone(),
        applied: applied_tx,
        auto_compaction,
        election: Duration::from_millis(config.election_timeout),
        name: config.name.clone(),
        client_urls: split_urls(&client_urls),
        auto_promote_learners: config.auto_promote_learners,
        members: members.clone(),
        removed: removed_tx,
        backend_cache_bytes: config.backend_cache_bytes,
        corrupt: corrupt.clone(),
        tokens: tokens.clone(),
    };
    let transport_members = members.clone();
    let transport_metrics = metrics.clone();
    let raft_thread = driver::start(
        replica,
        settings,
        |inbox| {
            Transport::start(
                cluster_id,
                id,
                client_urls.clone(),
                transport_members,
                inbox,
                tls.peer_client.clone(),
                transport_metrics,
            )
        },
        metrics.clone(),
        (inbox.clone(), inbox_rx),
    );
    tokio::spawn(transport::serve(
        peer_listener,
        cluster_id,
        id,
        members.clone(),
        inbox.clone(),
        tls.peer_server.clone(),
        metrics.clone(),
    ));

    let limits = Limits {
        request_bytes_max: config.max_request_bytes,
        txn_ops_max: config.max_txn_ops,
        request_timeout: Duration::from_secs(7),
        // etcd's minimum: 1.5 election timeouts, rounded up to whole seconds.
        lease_ttl_min: (config.election_timeout * 3 / 2).div_ceil(1000) as i64,
    };
    let handle = Handle::new(
        inbox.clone(),
        cluster_id,
        id,
        members.clone(),
        limits,
        metrics.clone(),
        api::Local {
            reader,
            term,
            applied,
            max_causal_wait,
            corrupt,
            scratch_dir: scratch_dir(&config.data_dir)?,
            tokens,
            forward_tls: tls.forward.clone(),
            client_cert_auth: config.client_cert_auth,
        },
    );
    if !corrupt_check.is_zero() {
        tokio::spawn(crate::corrupt::run(handle.clone(), corrupt_check));
    }
    if let Some(listener) = zk_listener {
        let zk = crate::zk::ZkConfig { super_digest: config.zk_super_digest.clone() };
        tokio::spawn(crate::zk::serve(listener, handle.clone(), zk));
    }
    let message_bytes_max = config.max_request_bytes + 512 * 1024;
    let grpc = |service| api::grpc::Grpc::new(service, handle.clone());
    let routes = tonic::service::Routes::new(
        pb::kv_server::KvServer::new(grpc(api::kv::Kv { handle: handle.clone() }))
            .max_decoding_message_size(message_bytes_max)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        pb::watch_server::WatchServer::new(api::grpc::Grpc::new(
            api::watch::Watch { handle: handle.clone() },
            handle.clone(),
        ))
        .max_decoding_message_size(message_bytes_max),
    )
    .add_service(pb::lease_server::LeaseServer::new(api::grpc::Grpc::new(
        api::lease::Lease { handle: handle.clone() },
        handle.clone(),
    )))
    .add_service(pb::cluster_server::ClusterServer::new(api::grpc::Grpc::new(
        api::cluster::Cluster { handle: handle.clone() },
        handle.clone(),
    )))
    .add_service(pb::maintenance_server::MaintenanceServer::new(api::grpc::Grpc::new(
        api::maintenance::Maintenance { handle: handle.clone() },
        handle.clone(),
    )))
    .add_service(pb::auth_server::AuthServer::new(api::grpc::Grpc::new(
        api::auth::Auth { handle: handle.clone() },
        handle.clone(),
    )))
    .add_service(v3lockpb::lock_server::LockServer::new(api::grpc::Grpc::new(
        api::lock::Lock { handle: handle.clone() },
        handle.clone(),
    )))
    .add_service(v3electionpb::election_server::ElectionServer::new(api::grpc::Grpc::new(
        api::election::Election { handle: handle.clone() },
        handle.clone(),
    )));
    let gateway = api::gateway::router(Arc::new(api::gateway::Services::new(handle.clone())));
    let router = routes
        .into_axum_router()
        .merge(crate::http::router(handle.clone()))
        .merge(crate::console::router(handle.clone(), config.ui_read_only, config.ui_agent.clone()))
        .merge(gateway)
        .fallback(api::gateway::fallback);

    tracing::info!(
        name = config.name,
        member = format!("{id:x}"),
        cluster = format!("{cluster_id:x}"),
        client = config.listen_client_urls,
        peer = config.listen_peer_urls,
        restarting,
        "ballot member started"
    );
    let counters = crate::listener::ByteCounters {
        received: metrics.client_received_bytes.clone(),
        sent: metrics.client_sent_bytes.clone(),
    };
    let (incoming, plaintext) = crate::listener::accept(client_listener, tls.client.clone(), counters);
    if tls.client.is_some() {
        tokio::spawn(crate::listener::refuse_plaintext(plaintext));
    }
    // Stopping: first hand leadership over while still serving (requests in flight finish, and
    // followers forward new ones to the next leader), then drain the client connections, then
    // stop the loop.
    let step_down_timeout = Duration::from_millis(config.election_timeout * 2);
    let step_down_inbox = inbox.clone();
    let removed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let removed_flag = removed.clone();
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            _ = removed_rx.wait_for(|removed| *removed) => {
                removed_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = draining_tx.send(());
                return;
            }
        }
        tracing::info!("stopping");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if step_down_inbox.send(Input::StepDown(step_down_timeout, done_tx)).is_ok() {
            let _ = tokio::time::timeout(step_down_timeout + Duration::from_secs(1), done_rx).await;
        }
        let _ = draining_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, signal);
    // Draining waits for every open call to end, and a watch or keep-alive stream only ends
    // when its client goes: past DRAIN_TIMEOUT the remaining connections are dropped (their
    // clients see the connection close and move to another member, as with etcd's stop).
    let drained = async {
        if draining_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = serve => served.context("serving clients")?,
        () = drained => tracing::info!(after = ?DRAIN_TIMEOUT, "closing the client streams still open"),
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    if inbox.send(Input::Shutdown(done_tx)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
    }
    drop(raft_thread);
    if removed.load(std::sync::atomic::Ordering::SeqCst) {
        Identity { removed: true, ..identity }.write(&identity_path)?;
        bail!("member {} ({id:x}) was removed from the cluster; it stopped and will not start again", config.name);
    }
    tracing::info!("stopped");
    Ok(())
}

/// A member joining an existing cluster (`--initial-cluster-state existing`) asks the other
/// members in `--initial-cluster` for the member table, and finds itself in it by its peer
/// URLs (`MemberAdd` gave them an id).
async fn join(
    config: &ServerConfig,
    table: &[Member],
    peer_urls: &[String],
    tls: Option<&crate::tls::ClientTls>,
) -> anyhow::Result<(Identity, Members)> {
    let mut failures = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for member in table.iter().filter(|member| member.name != config.name) {
            let Some(address) = member.peer_urls.first().and_then(|url| members::url_address(url).ok()) else {
                continue;
            };
            match transport::query_members(&address, tls).await {
                Ok((cluster_id, records, removed)) => {
                    let known = Members::default();
                    known.replace(records, removed, &[]);
                    let Some(me) = known.find_by_peer_urls(peer_urls) else {
                        bail!(
                            "the cluster (asked at {address}) has no member with peer URLs {}: \
                             add this member first (`etcdctl member add {} --peer-urls={}`)",
                            peer_urls.join(","),
                            config.name,
                            peer_urls.join(",")
                        );
                    };
                    tracing::info!(member = format!("{:x}", me.id), cluster = format!("{cluster_id:x}"), "joining");
                    return Ok((Identity::new(&config.name, me.id, cluster_id), known));
                }
                Err(error) => failures.push(format!("{address}: {error}")),
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!("cannot join: no member of --initial-cluster answered ({})", failures.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The TLS configurations the flags ask for.
struct Tls {
    /// The client port's.
    client: Option<Arc<crate::tls::ServerTls>>,
    /// For requests forwarded to the leader's client port.
    forward: Option<tonic::transport::ClientTlsConfig>,
    /// The peer port's.
    peer_server: Option<Arc<crate::tls::ServerTls>>,
    /// For connections to peers.
    peer_client: Option<Arc<crate::tls::ClientTls>>,
}

impl Tls {
    fn of(config: &ServerConfig) -> anyhow::Result<Tls> {
        use crate::tls::{ClientTls, ServerTls, TlsFiles};
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>, what: &str| match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            _ => Err(anyhow::anyhow!("--{what}cert-file and --{what}key-file go together")),
        };
        let https = |urls: &str| split_urls(urls).iter().all(|url| url.starts_with("https://"));
        let mut tls = Tls { client: None, forward: None, peer_server: None, peer_client: None };
        if let Some((cert, key)) = pair(&config.cert_file, &config.key_file, "")? {
            if !https(&config.listen_client_urls) || !https(&config.advertise_client_urls) {
                bail!("with --cert-file, the client URLs must be https:// (they are {})", config.listen_client_urls);
            }
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                trusted_ca: config.trusted_ca_file.clone(),
                client_cert_auth: config.client_cert_auth,
            };
            tls.client = Some(Arc::new(ServerTls::server(files)?));
            // Forwarded requests present this member's certificate, and trust the CA.
            let mut forward = tonic::transport::ClientTlsConfig::new().identity(tonic::transport::Identity::from_pem(
                std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?,
                std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
            ));
            if let Some(ca) = &config.trusted_ca_file {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                forward = forward.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            tls.forward = Some(forward);
        } else if config.client_cert_auth || https(&config.listen_client_urls) {
            bail!("TLS on the client port (https:// URLs, --client-cert-auth) needs --cert-file and --key-file");
        }
        if let Some((cert, key)) = pair(&config.peer_cert_file, &config.peer_key_file, "peer-")? {
            if !https(&config.listen_peer_urls) || !https(&config.initial_advertise_peer_urls) {
                bail!("with --peer-cert-file, the peer URLs must be https:// (they are {})", config.listen_peer_urls);
            }
            let files = TlsFiles {
                cert,
                key,
                trusted_ca: config.peer_trusted_ca_file.clone(),
                client_cert_auth: config.peer_client_cert_auth,
            };
            tls.peer_server = Some(Arc::new(ServerTls::server(files.clone())?));
            tls.peer_client = Some(Arc::new(ClientTls::client(files).context(
                "connecting to peers over TLS needs --peer-trusted-ca-file (the CA of the peers' certificates)",
            )?));
        } else if config.peer_client_cert_auth || https(&config.listen_peer_urls) {
            bail!("TLS on the peer port (https:// URLs, --peer-client-cert-auth) needs --peer-cert-file and --peer-key-file");
        }
        Ok(tls)
    }
}

/// The data dir's `tmp`, emptied: what a request left there when the member stopped is of no
/// use.
fn scratch_dir(data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("tmp");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

//! `ballot serve` (and `ballot` with no arguments): run one member.
//!
//! Settings come from, in rising priority: defaults (a single member on 127.0.0.1:2379/2380
//! with data in `./default.ballot`, as etcd's), a TOML file (`--config-file`, keys are the flag
//! names), `BALLOT_*` environment variables, and flags.

use std::path::PathBuf;

use anyhow::Context;
use ballot_server::ServerConfig;
use clap::Args;

/// Flags of `ballot serve`, named as etcd's.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flag names).
    #[arg(long, env = "BALLOT_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Human-readable name of this member.
    #[arg(long, env = "BALLOT_NAME")]
    pub name: Option<String>,
    /// Directory for the log and database (default: ./<name>.ballot).
    #[arg(long, env = "BALLOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URL to serve clients on (gRPC, /health, /metrics, /status).
    #[arg(long, env = "BALLOT_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: Option<String>,
    /// Client URLs to announce.
    #[arg(long, env = "BALLOT_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// URL to listen on for peers.
    #[arg(long, env = "BALLOT_LISTEN_PEER_URLS")]
    pub listen_peer_urls: Option<String>,
    /// This member's peer URLs, as listed in --initial-cluster.
    #[arg(long, env = "BALLOT_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Founding members: name=peer-url,...
    #[arg(long, env = "BALLOT_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// new (founding) or existing (joining).
    #[arg(long, env = "BALLOT_INITIAL_CLUSTER_STATE", value_parser = ["new", "existing"])]
    pub initial_cluster_state: Option<String>,
    /// Distinguishes clusters with the same members.
    #[arg(long, env = "BALLOT_INITIAL_CLUSTER_TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// Heartbeat interval in milliseconds.
    #[arg(long, env = "BALLOT_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// Election timeout in milliseconds.
    #[arg(long, env = "BALLOT_ELECTION_TIMEOUT")]
    pub election_timeout: Option<u64>,
    /// Backend size that raises the NOSPACE alarm, in bytes.
    #[arg(long, env = "BALLOT_QUOTA_BACKEND_BYTES")]
    pub quota_backend_bytes: Option<u64>,
    /// Largest client request, in bytes.
    #[arg(long, env = "BALLOT_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Most operations in one txn.
    #[arg(long, env = "BALLOT_MAX_TXN_OPS")]
    pub max_txn_ops: Option<usize>,
    /// Break linearizability on purpose: `stale-reads` serves linearizable reads locally,
    /// without ReadIndex (needs a build with `--features fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[arg(long)]
    pub inject_bug: Option<String>,
    /// Applied entries between snapshots.
    #[arg(long, env = "BALLOT_SNAPSHOT_COUNT")]
    pub snapshot_count: Option<u64>,
    /// The database's page cache in the process, in bytes (ballot's own setting; default 16 MiB).
    #[arg(long, env = "BALLOT_BACKEND_CACHE_BYTES")]
    pub backend_cache_bytes: Option<usize>,
    /// Automatic compaction: `periodic` (keep a time's worth of history) or `revision` (keep a
    /// number of revisions).
    #[arg(long, env = "BALLOT_AUTO_COMPACTION_MODE")]
    pub auto_compaction_mode: Option<String>,
    /// History kept by automatic compaction: a duration such as `1h` or `30m` (a bare number is
    /// hours) in periodic mode, a revision count in revision mode; 0 (the default) turns it off.
    #[arg(long, env = "BALLOT_AUTO_COMPACTION_RETENTION")]
    pub auto_compaction_retention: Option<String>,
    /// Promote a learner as soon as it has caught up with the leader (members added as voters
    /// are always promoted so).
    #[arg(long, env = "BALLOT_AUTO_PROMOTE_LEARNERS")]
    pub auto_promote_learners: bool,
    /// Recovery after a majority of the members is lost for good: restart this member from its
    /// data dir as the only member of its cluster, keeping everything that committed (etcd's
    /// --force-new-cluster). Then add members back with `member add`; never restart the
    /// dropped members with their old data. Start once with it, then without it.
    #[arg(long, env = "BALLOT_FORCE_NEW_CLUSTER")]
    pub force_new_cluster: bool,
    /// Serve linearizable reads on the leader from its lease, without a heartbeat round, while
    /// the lease holds (the election timeout less two heartbeats, measured on CLOCK_BOOTTIME).
    /// Faster, but safe only while members' clock rates differ by less than that margin.
    #[arg(long, env = "BALLOT_LEASE_READS")]
    pub lease_reads: bool,
    /// The consensus engine, chosen when the cluster is founded and recorded in the data dir:
    /// raft (the default), paxos (Multi-Paxos; a fixed membership: member add, remove and
    /// promote and move-leader are refused with Unimplemented), or paxos:Q1/Q2 (flexible
    /// quorums, e.g. paxos:4/2 on five members). Every member must give the same.
    #[arg(long, env = "BALLOT_CONSENSUS")]
    pub consensus: Option<String>,
    /// How long a causal read (one carrying `ballot-min-revision`) waits for this member to
    /// apply the revision its client has seen, before it is refused: `1s` (the default), `500ms`.
    #[arg(long, env = "BALLOT_MAX_CAUSAL_WAIT")]
    pub max_causal_wait: Option<String>,
    /// The leader refuses writes while the timestamp of its next log entry (a hybrid logical
    /// clock) would be ahead of its wall clock by more than this: `500ms` (the default), `2s`;
    /// `0` turns the check off. Stamps say when each revision was written (`get --as-of`).
    #[arg(long, env = "BALLOT_MAX_CLOCK_SKEW")]
    pub max_clock_skew: Option<String>,
    /// How often the leader compares the members' `hash_kv` and raises the CORRUPT alarm on a
    /// mismatch: a duration such as `5m` or `30s`; 0 (the default) turns the check off.
    #[arg(long, env = "BALLOT_EXPERIMENTAL_CORRUPT_CHECK_TIME")]
    pub experimental_corrupt_check_time: Option<String>,
    /// Auth tokens: `simple` (the default: random, known to members through the log) or
    /// `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m` (signed).
    #[arg(long, env = "BALLOT_AUTH_TOKEN")]
    pub auth_token: Option<String>,
    /// Seconds a simple token lives after its last use (default 300).
    #[arg(long, env = "BALLOT_AUTH_TOKEN_TTL")]
    pub auth_token_ttl: Option<u64>,
    /// PEM certificate of the client port: TLS on it (the client URLs must be https://).
    /// Reloaded when the file changes.
    #[arg(long, env = "BALLOT_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of --cert-file.
    #[arg(long, env = "BALLOT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle that client certificates must chain to.
    #[arg(long, env = "BALLOT_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by --trusted-ca-file (mutual TLS).
    #[arg(long, env = "BALLOT_CLIENT_CERT_AUTH")]
    pub client_cert_auth: bool,
    /// PEM certificate of the peer port: TLS between members (the peer URLs must be https://).
    #[arg(long, env = "BALLOT_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// PEM private key of --peer-cert-file.
    #[arg(long, env = "BALLOT_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// PEM CA bundle that peers' certificates must chain to (needed with --peer-cert-file).
    #[arg(long, env = "BALLOT_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require a certificate from connecting peers (mutual TLS between members).
    #[arg(long, env = "BALLOT_PEER_CLIENT_CERT_AUTH")]
    pub peer_client_cert_auth: bool,
    /// Serve ZooKeeper's client protocol at this address (e.g. 127.0.0.1:2181); off unless
    /// given.
    #[arg(long, env = "BALLOT_LISTEN_ZK_URLS")]
    pub listen_zk_urls: Option<String>,
    /// ZooKeeper's superDigest, `super:<base64 sha1 of super:password>`: a client that
    /// authenticates as that user passes every znode ACL.
    #[arg(long, env = "BALLOT_ZK_SUPER_DIGEST")]
    pub zk_super_digest: Option<String>,
    /// The web console (/ui) changes nothing: no put, delete or operation, whoever asks.
    #[arg(long, env = "BALLOT_UI_READ_ONLY")]
    pub ui_read_only: bool,
    /// The control endpoint of a `ballot agent` beside this member (its --rpc-addr, e.g.
    /// 127.0.0.1:7373): the console's Agents view shows that agent's gossip fleet.
    #[arg(long, env = "BALLOT_UI_AGENT")]
    pub ui_agent: Option<String>,
}

impl ServeArgs {
    /// The configuration: file, then environment and flags over it.
    pub fn config(self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => ServerConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(value) = self.$field { config.$field = value; })* };
        }
        let name_given = self.name.is_some();
        let data_dir_given = self.data_dir.is_some();
        set!(
            name,
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token,
            heartbeat_interval,
            election_timeout,
            quota_backend_bytes,
            max_request_bytes,
            max_txn_ops,
            snapshot_count,
            backend_cache_bytes,
            auto_compaction_mode,
            auto_compaction_retention,
            experimental_corrupt_check_time,
            auth_token,
            auth_token_ttl,
            listen_zk_urls,
            max_causal_wait,
            max_clock_skew,
            consensus
        );
        config.auto_promote_learners |= self.auto_promote_learners;
        config.force_new_cluster |= self.force_new_cluster;
        config.lease_reads |= self.lease_reads;
        macro_rules! set_option {
            ($($field:ident),*) => { $(if self.$field.is_some() { config.$field = self.$field; })* };
        }
        set_option!(
            cert_file,
            key_file,
            trusted_ca_file,
            peer_cert_file,
            peer_key_file,
            peer_trusted_ca_file,
            zk_super_digest,
            ui_agent
        );
        config.client_cert_auth |= self.client_cert_auth;
        config.peer_client_cert_auth |= self.peer_client_cert_auth;
        config.ui_read_only |= self.ui_read_only;
        if name_given && !data_dir_given && self.config_file.is_none() {
            config.data_dir = PathBuf::from(format!("{}.ballot", config.name));
        }
        Ok(config)
    }
}

/// Runs a member until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::cli::init_logging();
    #[cfg(feature = "fault-injection")]
    match args.inject_bug.as_deref() {
        None => {}
        Some("stale-reads") => {
            eprintln!("INJECTED BUG: linearizable reads are served locally, without ReadIndex");
            ballot_server::STALE_READS.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Some(other) => anyhow::bail!("unknown --inject-bug {other:?} (stale-reads)"),
    }
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(ballot_server::run(config, shutdown_signal()))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

//! Prometheus metrics of one member on `/metrics`, under etcd 3.4's names, labels and meanings,
//! so that etcd's published alerts and dashboards (the etcd mixin) work on ballot unchanged;
//! ballot's own, where etcd has none, carry the `ballot_` prefix. The gRPC server metrics are
//! go-grpc-prometheus's (`grpc_server_*`), every method's series created at zero as there.
//!
//! Departures, each because the library (prometheus-client) encodes OpenMetrics: counters whose
//! etcd name lacks `_total` (`etcd_server_health_success`, `etcd_server_health_failures`) are
//! gauges here; help texts end with one period. Values read from the member's state (leader,
//! indexes, sizes, revisions) are refreshed at each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a family: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// What kind of RPC a gRPC method is (go-grpc-prometheus's `grpc_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcType {
    /// One request, one answer.
    Unary,
    /// One request, a stream of answers.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

impl GrpcType {
    fn name(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// Every method ballot serves over gRPC, as (service, method, type), for series made at zero.
pub const GRPC_METHODS: &[(&str, &str, GrpcType)] = &[
    ("etcdserverpb.KV", "Range", GrpcType::Unary),
    ("etcdserverpb.KV", "Put", GrpcType::Unary),
    ("etcdserverpb.KV", "DeleteRange", GrpcType::Unary),
    ("etcdserverpb.KV", "Txn", GrpcType::Unary),
    ("etcdserverpb.KV", "Compact", GrpcType::Unary),
    ("etcdserverpb.Watch", "Watch", GrpcType::BidiStream),
    ("etcdserverpb.Lease", "LeaseGrant", GrpcType::Unary),
    ("etcdserverpb.Lease", "LeaseRevoke", GrpcType::Unary),
    ("etcdserverpb.Lease", "LeaseKeepAlive", GrpcType::BidiStream),
    ("etcdserverpb.Lease", "LeaseTimeToLive", GrpcType::Unary),
    ("etcdserverpb.Lease", "LeaseLeases", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberAdd", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberRemove", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberUpdate", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberList", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberPromote", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Alarm", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Status", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Defragment", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Hash", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "HashKV", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Snapshot", GrpcType::ServerStream),
    ("etcdserverpb.Maintenance", "MoveLeader", GrpcType::Unary),
    ("etcdserverpb.Auth", "AuthEnable", GrpcType::Unary),
    ("etcdserverpb.Auth", "AuthDisable", GrpcType::Unary),
    ("etcdserverpb.Auth", "AuthStatus", GrpcType::Unary),
    ("etcdserverpb.Auth", "Authenticate", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserAdd", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserGet", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserList", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserDelete", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserChangePassword", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserGrantRole", GrpcType::Unary),
    ("etcdserverpb.Auth", "UserRevokeRole", GrpcType::Unary),
    ("etcdserverpb.Auth", "RoleAdd", GrpcType::Unary),
    ("etcdserverpb.Auth", "RoleGet", GrpcType::Unary),
    ("etcdserverpb.Auth", "RoleList", GrpcType::Unary),
    ("etcdserverpb.Auth", "RoleDelete", GrpcType::Unary),
    ("etcdserverpb.Auth", "RoleGrantPermission", GrpcType::Unary),
    ("etcdserverpb.Auth", "RoleRevokePermission", GrpcType::Unary),
    ("v3lockpb.Lock", "Lock", GrpcType::Unary),
    ("v3lockpb.Lock", "Unlock", GrpcType::Unary),
    ("v3electionpb.Election", "Campaign", GrpcType::Unary),
    ("v3electionpb.Election", "Proclaim", GrpcType::Unary),
    ("v3electionpb.Election", "Leader", GrpcType::Unary),
    ("v3electionpb.Election", "Observe", GrpcType::ServerStream),
    ("v3electionpb.Election", "Resign", GrpcType::Unary),
];

/// gRPC status codes as Go spells them (`codes.Code.String()`), by number.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The member's metrics.
pub struct Metrics {
    registry: Registry,
    // ---- etcd_server_*
    /// 1 while a leader is known.
    pub has_leader: Gauge,
    /// 1 while this member leads.
    pub is_leader: Gauge,
    /// 1 while this member is a learner.
    pub is_learner: Gauge,
    /// Leader changes seen.
    pub leader_changes: Counter,
    /// The commit index.
    pub proposals_committed: Gauge,
    /// The applied index.
    pub proposals_applied: Gauge,
    /// Proposals of this member waiting for their entry to apply.
    pub proposals_pending: Gauge,
    /// Proposals that failed (timed out, dropped by Raft, the member stopping).
    pub proposals_failed: Counter,
    /// Batches of committed entries that took longer than 100 ms to apply (etcd's warning).
    pub slow_apply: Counter,
    /// Read barriers that failed or timed out.
    pub read_indexes_failed: Counter,
    /// Raft messages to peers that could not be queued.
    pub heartbeat_send_failures: Counter,
    /// `--quota-backend-bytes`.
    pub quota_backend_bytes: Gauge,
    /// `/health` answered healthy / not.
    pub health_success: Gauge,
    /// See `health_success`.
    pub health_failures: Gauge,
    server_id: Family<Labels, Gauge>,
    // ---- etcd_disk_*
    /// WAL fsync latency.
    pub fsync_seconds: Histogram,
    /// Latency of making the state machine's database durable.
    pub backend_commit_seconds: Histogram,
    /// Defragmentation time.
    pub defrag_seconds: Histogram,
    // ---- etcd_mvcc_* and etcd_debugging_mvcc_*
    /// Database file size.
    pub db_size_bytes: Gauge,
    /// Database pages in use.
    pub db_size_in_use_bytes: Gauge,
    /// Live keys.
    pub keys: Gauge,
    /// Active watchers.
    pub watchers: Gauge,
    /// The store's revision.
    pub current_revision: Gauge,
    /// The store's compact revision.
    pub compact_revision: Gauge,
    /// Puts, deletes, ranges and txns this member served.
    pub mvcc_ops: Family<Labels, Counter>,
    // ---- etcd_network_*
    /// Bytes to and from peers, and failures, by peer id (hex).
    pub peer_sent_bytes: Family<Labels, Counter>,
    /// See `peer_sent_bytes`.
    pub peer_received_bytes: Family<Labels, Counter>,
    /// See `peer_sent_bytes`.
    pub peer_sent_failures: Family<Labels, Counter>,
    /// Heartbeat round trips, by peer (measured by the leader).
    pub peer_round_trip_seconds: Family<Labels, Histogram>,
    /// Bytes to and from clients.
    pub client_sent_bytes: Counter,
    /// See `client_sent_bytes`.
    pub client_received_bytes: Counter,
    // ---- grpc_server_*
    grpc_started: Family<Labels, Counter>,
    grpc_handled: Family<Labels, Counter>,
    grpc_received: Family<Labels, Counter>,
    grpc_sent: Family<Labels, Counter>,
    grpc_seconds: Family<Labels, Histogram>,
    /// Each method's counters (shared with the families above), found without allocating.
    grpc_methods: std::collections::HashMap<(&'static str, &'static str), GrpcMethod>,
    // ---- ballot_*
    /// Raft messages queued to peers.
    pub messages_sent: Counter,
    /// Entries applied to the state machine.
    pub applied_entries: Counter,
    /// This member's wall clock offset from the leader's, ms (leader minus member, from the
    /// last heartbeat; 0 on the leader).
    pub clock_offset_ms: Gauge,
    /// How far this member's next entry stamp would be ahead of its wall clock, ms.
    pub hlc_ahead_ms: Gauge,
    /// Causal reads that waited for this member to apply the revision their client had seen.
    pub causal_waits: Counter,
    /// Causal reads refused because this member stayed behind for `--max-causal-wait`.
    pub causal_refused: Counter,
    /// Time from a write's arrival to its answer.
    pub write_seconds: Histogram,
    /// Time to apply one batch of committed entries.
    pub apply_seconds: Histogram,
    /// When the store's costly figures (pages in use, keys) were last read.
    pub store_read_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// etcd's help text, without the final period the library adds back.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// etcd's disk latency buckets: 1 ms to 8.192 s.
fn disk_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// go-grpc-prometheus's buckets (client_golang's defaults). etcd has this histogram only with
/// `--metrics=extensive`; ballot always does, so the mixin's latency alert has data.
fn grpc_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

fn peer_rtt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let peer_rtt: Family<Labels, Histogram> = Family::new_with_constructor(peer_rtt_histogram);
        let metrics = Metrics {
            registry: Registry::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            is_learner: Gauge::default(),
            leader_changes: Counter::default(),
            proposals_committed: Gauge::default(),
            proposals_applied: Gauge::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            slow_apply: Counter::default(),
            read_indexes_failed: Counter::default(),
            heartbeat_send_failures: Counter::default(),
            quota_backend_bytes: Gauge::default(),
            health_success: Gauge::default(),
            health_failures: Gauge::default(),
            server_id: Family::default(),
            fsync_seconds: disk_buckets(),
            backend_commit_seconds: disk_buckets(),
            defrag_seconds: Histogram::new(exponential_buckets(0.1, 2.0, 13)),
            db_size_bytes: Gauge::default(),
            db_size_in_use_bytes: Gauge::default(),
            keys: Gauge::default(),
            watchers: Gauge::default(),
            current_revision: Gauge::default(),
            compact_revision: Gauge::default(),
            mvcc_ops: Family::default(),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
            peer_sent_failures: Family::default(),
            peer_round_trip_seconds: peer_rtt,
            client_sent_bytes: Counter::default(),
            client_received_bytes: Counter::default(),
            grpc_started: Family::default(),
            grpc_handled: Family::default(),
            grpc_received: Family::default(),
            grpc_sent: Family::default(),
            grpc_seconds: Family::new_with_constructor(grpc_histogram),
            grpc_methods: std::collections::HashMap::new(),
            messages_sent: Counter::default(),
            applied_entries: Counter::default(),
            clock_offset_ms: Gauge::default(),
            hlc_ahead_ms: Gauge::default(),
            causal_waits: Counter::default(),
            causal_refused: Counter::default(),
            write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            apply_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 18)),
            store_read_at: std::sync::Mutex::new(None),
        };
        metrics.registered()
    }
}

impl Metrics {
    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "etcd_server_has_leader",
            help("Whether or not a leader exists. 1 is existence, 0 is not."),
            self.has_leader.clone(),
        );
        r.register(
            "etcd_server_is_leader",
            help("Whether or not this member is a leader. 1 if is, 0 otherwise."),
            self.is_leader.clone(),
        );
        r.register(
            "etcd_server_is_learner",
            help("Whether or not this member is a learner. 1 if is, 0 otherwise."),
            self.is_learner.clone(),
        );
        r.register(
            "etcd_server_leader_changes_seen",
            help("The number of leader changes seen."),
            self.leader_changes.clone(),
        );
        r.register(
            "etcd_server_proposals_committed_total",
            help("The total number of consensus proposals committed."),
            self.proposals_committed.clone(),
        );
        r.register(
            "etcd_server_proposals_applied_total",
            help("The total number of consensus proposals applied."),
            self.proposals_applied.clone(),
        );
        r.register(
            "etcd_server_proposals_pending",
            help("The current number of pending proposals to commit."),
            self.proposals_pending.clone(),
        );
        r.register(
            "etcd_server_proposals_failed",
            help("The total number of failed proposals seen."),
            self.proposals_failed.clone(),
        );
        r.register(
            "etcd_server_slow_apply",
            help("The total number of slow apply requests (likely overloaded from slow disk)."),
            self.slow_apply.clone(),
        );
        r.register(
            "etcd_server_read_indexes_failed",
            help("The total number of failed read indexes seen."),
            self.read_indexes_failed.clone(),
        );
        r.register(
            "etcd_server_heartbeat_send_failures",
            help("The total number of leader heartbeat send failures (likely overloaded from slow disk)."),
            self.heartbeat_send_failures.clone(),
        );
        r.register(
            "etcd_server_quota_backend_bytes",
            help("Current backend storage quota size in bytes."),
            self.quota_backend_bytes.clone(),
        );
        r.register(
            "etcd_server_health_success",
            help("The total number of successful health checks"),
            self.health_success.clone(),
        );
        r.register(
            "etcd_server_health_failures",
            help("The total number of failed health checks"),
            self.health_failures.clone(),
        );
        r.register(
            "etcd_server_id",
            help("Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."),
            self.server_id.clone(),
        );
        r.register(
            "etcd_disk_wal_fsync_duration_seconds",
            help("The latency distributions of fsync called by WAL."),
            self.fsync_seconds.clone(),
        );
        r.register(
            "etcd_disk_backend_commit_duration_seconds",
            help("The latency distributions of commit called by backend."),
            self.backend_commit_seconds.clone(),
        );
        r.register(
            "etcd_disk_backend_defrag_duration_seconds",
            help("The latency distribution of backend defragmentation."),
            self.defrag_seconds.clone(),
        );
        r.register(
            "etcd_mvcc_db_total_size_in_bytes",
            help("Total size of the underlying database physically allocated in bytes."),
            self.db_size_bytes.clone(),
        );
        r.register(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            help("Total size of the underlying database physically allocated in bytes."),
            self.db_size_bytes.clone(),
        );
        r.register(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            help("Total size of the underlying database logically in use in bytes."),
            self.db_size_in_use_bytes.clone(),
        );
        r.register("etcd_debugging_mvcc_keys_total", help("Total number of keys."), self.keys.clone());
        r.register("etcd_debugging_mvcc_watcher_total", help("Total number of watchers."), self.watchers.clone());
        r.register(
            "etcd_debugging_mvcc_current_revision",
            help("The current revision of store."),
            self.current_revision.clone(),
        );
        r.register(
            "etcd_debugging_mvcc_compact_revision",
            help("The revision of the last compaction in store."),
            self.compact_revision.clone(),
        );
        for (op, name) in [("put", "puts"), ("delete", "deletes"), ("range", "ranges"), ("txn", "txns")] {
            let counter = self.mvcc_ops.get_or_create(&vec![("op", op.to_string())]).clone();
            r.register(format!("etcd_mvcc_{op}"), format!("Total number of {name} seen by this member"), counter);
        }
        r.register(
            "etcd_network_peer_sent_bytes",
            help("The total number of bytes sent to peers."),
            self.peer_sent_bytes.clone(),
        );
        r.register(
            "etcd_network_peer_received_bytes",
            help("The total number of bytes received from peers."),
            self.peer_received_bytes.clone(),
        );
        r.register(
            "etcd_network_peer_sent_failures",
            help("The total number of send failures from peers."),
            self.peer_sent_failures.clone(),
        );
        r.register(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            self.peer_round_trip_seconds.clone(),
        );
        r.register(
            "etcd_network_client_grpc_sent_bytes",
            help("The total number of bytes sent to grpc clients."),
            self.client_sent_bytes.clone(),
        );
        r.register(
            "etcd_network_client_grpc_received_bytes",
            help("The total number of bytes received from grpc clients."),
            self.client_received_bytes.clone(),
        );
        r.register(
            "grpc_server_started",
            help("Total number of RPCs started on the server."),
            self.grpc_started.clone(),
        );
        r.register(
            "grpc_server_handled",
            help("Total number of RPCs completed on the server, regardless of success or failure."),
            self.grpc_handled.clone(),
        );
        r.register(
            "grpc_server_msg_received",
            help("Total number of RPC stream messages received on the server."),
            self.grpc_received.clone(),
        );
        r.register(
            "grpc_server_msg_sent",
            help("Total number of gRPC stream messages sent by the server."),
            self.grpc_sent.clone(),
        );
        r.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            self.grpc_seconds.clone(),
        );
        r.register_collector(Box::new(Versions));
        r.register_collector(Box::new(ProcessMetrics));
        let ballot = r.sub_registry_with_prefix("ballot");
        ballot.register("peer_messages_sent", "Raft messages queued to peers", self.messages_sent.clone());
        ballot.register("applied_entries", "Log entries applied to the state machine", self.applied_entries.clone());
        ballot.register(
            "clock_offset_milliseconds",
            "The leader's wall clock minus this member's, at the last heartbeat (0 on the leader)",
            self.clock_offset_ms.clone(),
        );
        ballot.register(
            "hlc_ahead_milliseconds",
            "How far this member's next log entry stamp would be ahead of its wall clock",
            self.hlc_ahead_ms.clone(),
        );
        ballot.register(
            "causal_read_waits",
            "Causal reads that waited for this member to apply the revision their client had seen",
            self.causal_waits.clone(),
        );
        ballot.register(
            "causal_reads_refused",
            "Causal reads refused because this member stayed behind for --max-causal-wait",
            self.causal_refused.clone(),
        );
        ballot.register("write_seconds", "Latency of writes, arrival to answer", self.write_seconds.clone());
        ballot.register("apply_seconds", "Time to apply a batch of committed entries", self.apply_seconds.clone());
        // Every method's series exist from the start, at zero, as with go-grpc-prometheus.
        for (service, method, kind) in GRPC_METHODS {
            let labels = grpc_labels(*kind, service, method);
            let handled = GRPC_CODES.map(|code| {
                let mut handled = labels.clone();
                handled.push(("grpc_code", code.to_string()));
                self.grpc_handled.get_or_create(&handled).clone()
            });
            let counters = GrpcMethod {
                kind: *kind,
                seconds: self.grpc_seconds.get_or_create(&labels).clone(),
                started: self.grpc_started.get_or_create(&labels).clone(),
                received: self.grpc_received.get_or_create(&labels).clone(),
                sent: self.grpc_sent.get_or_create(&labels).clone(),
                handled,
            };
            self.grpc_methods.insert((*service, *method), counters);
        }
        self
    }

    /// Names this member in `etcd_server_id`.
    pub fn set_server_id(&self, id: u64) {
        self.server_id.get_or_create(&vec![("server_id", format!("{id:x}"))]).set(1);
    }

    /// Counts an operation of the store (`put`, `delete`, `range`, `txn`).
    pub fn mvcc_op(&self, op: &'static str) {
        self.mvcc_ops.get_or_create(&vec![("op", op.to_string())]).inc();
    }

    /// The counters of a gRPC method (one of [`GRPC_METHODS`]).
    pub fn grpc(&self, service: &'static str, method: &'static str) -> &GrpcMethod {
        self.grpc_methods.get(&(service, method)).unwrap_or_else(|| panic!("{service}/{method} is not in GRPC_METHODS"))
    }

    /// The exposition, OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The go-grpc-prometheus counters of one gRPC method.
#[derive(Clone)]
pub struct GrpcMethod {
    kind: GrpcType,
    seconds: Histogram,
    started: Counter,
    received: Counter,
    sent: Counter,
    handled: [Counter; 17],
}

impl GrpcMethod {
    /// The call began (and, for a unary or server-streaming one, its request arrived).
    pub fn started(&self) {
        self.started.inc();
        if self.kind != GrpcType::BidiStream {
            self.received.inc();
        }
    }

    /// A message of a client stream arrived.
    pub fn received(&self) {
        self.received.inc();
    }

    /// A message went to the client.
    pub fn sent(&self) {
        self.sent.inc();
    }

    /// The call, begun at `started`, ended with `code`.
    pub fn handled(&self, code: tonic::Code, started: std::time::Instant) {
        self.handled.get(code as usize).unwrap_or(&self.handled[2]).inc();
        self.seconds.observe(started.elapsed().as_secs_f64());
    }
}

fn grpc_labels(kind: GrpcType, service: &str, method: &str) -> Labels {
    vec![
        ("grpc_type", kind.name().to_string()),
        ("grpc_service", service.to_string()),
        ("grpc_method", method.to_string()),
    ]
}

/// `etcd_server_version`, `etcd_cluster_version`: 1 with the version as a label.
#[derive(Debug)]
struct Versions;

impl Collector for Versions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let version = crate::api::maintenance::API_VERSION;
        let cluster = version.rsplit_once('.').map_or(version, |(major_minor, _)| major_minor);
        for (name, text, label, value) in [
            (
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version",
                "server_version",
                version,
            ),
            (
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                "cluster_version",
                cluster,
            ),
        ] {
            let gauge = ConstGauge::new(1i64);
            let mut metric = encoder.encode_descriptor(name, text, None, gauge.metric_type())?;
            let labels = [(label, value)];
            gauge.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The `process_*` metrics every Prometheus client library exports, read from `/proc`.
#[derive(Debug)]
struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = process_stats() else { return Ok(()) };
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, text, value) in [
            ("process_open_fds", "Number of open file descriptors", process.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", process.max_fds),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", process.virtual_bytes),
            ("process_resident_memory_bytes", "Resident memory size in bytes", process.resident_bytes),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                process.start_time_seconds,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, text, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    open_fds: f64,
    max_fds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    start_time_seconds: f64,
}

/// This process's figures from `/proc` (Linux; `None` elsewhere).
fn process_stats() -> Option<ProcessStats> {
    // Clock ticks per second: 100 on every Linux ballot runs on (USER_HZ is fixed by the ABI).
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|value| value.parse::<f64>().ok());
    let page = 4096.0;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
        limits.lines().find(|line| line.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
    });
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / TICKS,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as f64).unwrap_or(0.0),
        max_fds: max_fds.unwrap_or(0.0),
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        start_time_seconds: boot_time + field(22)? / TICKS,
    })
}

/// The shared metrics of a member.
pub type Shared = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_names_come_out_as_etcd_writes_them() {
        let metrics = Metrics::default();
        metrics.set_server_id(0x7339c4e5e833c029);
        metrics.leader_changes.inc();
        metrics.grpc("etcdserverpb.KV", "Range").started();
        metrics.grpc("etcdserverpb.KV", "Range").handled(tonic::Code::Cancelled, std::time::Instant::now());
        let text = metrics.render();
        for expected in [
            "etcd_server_has_leader 0",
            "etcd_server_leader_changes_seen_total 1",
            "etcd_server_proposals_committed_total 0",
            "etcd_server_id{server_id=\"7339c4e5e833c029\"} 1",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 0",
            "etcd_mvcc_put_total 0",
            "grpc_server_started_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Range\"} 1",
            "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Range\",grpc_code=\"Canceled\"} 1",
            "grpc_server_handled_total{grpc_type=\"bidi_stream\",grpc_service=\"etcdserverpb.Watch\",grpc_method=\"Watch\",grpc_code=\"Unavailable\"} 0",
            "etcd_server_version{server_version=\"3.4.0\"} 1",
            "etcd_cluster_version{cluster_version=\"3.4\"} 1",
            "process_resident_memory_bytes",
            "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.\n",
            "ballot_write_seconds_bucket",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}

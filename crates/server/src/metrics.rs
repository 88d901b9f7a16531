//! Prometheus metrics of one member, served as text on `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The member's metrics.
pub struct Metrics {
    registry: Registry,
    /// Proposals accepted by Raft on this member.
    pub proposals: Counter,
    /// Entries applied to the state machine.
    pub applied_entries: Counter,
    /// Raft messages queued to peers.
    pub messages_sent: Counter,
    /// Leader changes seen.
    pub leader_changes: Counter,
    /// Active watchers.
    pub watchers: Gauge,
    /// Database size in bytes (updated on scrape).
    pub db_size_bytes: Gauge,
    /// WAL fsync latency.
    pub fsync_seconds: Histogram,
    /// Time from a write's arrival to its answer.
    pub write_seconds: Histogram,
    /// Time to apply one batch of committed entries.
    pub apply_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ballot");
        let metrics = Metrics {
            proposals: Counter::default(),
            applied_entries: Counter::default(),
            messages_sent: Counter::default(),
            leader_changes: Counter::default(),
            watchers: Gauge::default(),
            db_size_bytes: Gauge::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            apply_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 18)),
            registry: Registry::default(),
        };
        registry.register("proposals", "Proposals accepted by Raft on this member", metrics.proposals.clone());
        registry.register(
            "applied_entries",
            "Log entries applied to the state machine",
            metrics.applied_entries.clone(),
        );
        registry.register("peer_messages_sent", "Raft messages queued to peers", metrics.messages_sent.clone());
        registry.register("leader_changes", "Leader changes seen by this member", metrics.leader_changes.clone());
        registry.register("watchers", "Active watchers on this member", metrics.watchers.clone());
        registry.register("db_size_bytes", "State machine database size", metrics.db_size_bytes.clone());
        registry.register("wal_fsync_seconds", "Write-ahead log fsync latency", metrics.fsync_seconds.clone());
        registry.register("write_seconds", "Latency of writes, arrival to answer", metrics.write_seconds.clone());
        registry.register("apply_seconds", "Time to apply a batch of committed entries", metrics.apply_seconds.clone());
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

//! The web console: `/ui` on every member's client port, same listener and TLS.
//!
//! The page (`console/page.html`: HTML, CSS and script in one file, built into the binary; no
//! JavaScript toolchain and no library) shows the cluster and the keys, live:
//! - **Cluster** comes from `/ui/cluster`, a server-sent event stream: this member asks every
//!   member in its table for its status (etcd's `Maintenance.Status`, over the same channels
//!   forwarded requests use) every half second and pushes the view whenever it changed (and
//!   every three seconds regardless, so a client sees the stream alive). `/ui/cluster.json` is
//!   the same view once.
//! - **Keys** go through the JSON gateway (`/v3/kv/range`, `/v3/watch`) from the page itself,
//!   so they are read with the same checks as any client's request.
//! - **Leases** come from `/ui/leases`, another event stream: every lease with its time to live
//!   and keys, gathered each second through the Lease service (so with the caller's
//!   credentials and checks) and pushed when it changed. Locks and elections are keys under
//!   their name, read and watched through the gateway: the holder is the oldest key, its create
//!   revision the fencing token.
//! - **Metrics** come from `/ui/metrics`, a third event stream: once a second, this member's
//!   own metrics (the ones `/metrics` serves, under etcd's names) turned into rates and mean
//!   latencies over the last second.
//! - **ZooKeeper** comes from `/ui/zk?path=…`, a fourth stream: one znode and the live sessions
//!   (see [`zk`]).
//! - **Agents** comes from `/ui/agents`, a fifth stream: the gossip fleet as the `ballot agent`
//!   beside this member knows it (see [`agents`]).
//! - **Operations** and put/delete go through `POST /ui/act/…`, guarded against read-only
//!   mode, cross-site forgery and the caller's permissions (see [`actions`]); the page logs in
//!   through the JSON gateway's `/v3/auth/authenticate` and sends the token as `Authorization`.

mod actions;
mod agents;
mod zk;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use serde::Serialize;

use crate::api::caller::Caller;
use crate::api::Handle;
use crate::driver::{LeaderChange, MembershipChange};

/// The page, built into the binary.
const PAGE: &str = include_str!("console/page.html");

/// How often the cluster view is gathered for a stream.
const GATHER_EVERY: Duration = Duration::from_millis(500);

/// A stream sends the view at least this often, changed or not (round-trip times, which change
/// at every gathering, do not count as a change, so they are this fresh).
const RESEND_EVERY: Duration = Duration::from_secs(3);

/// How often the leases are gathered for a stream (their time to live is in whole seconds).
const LEASES_EVERY: Duration = Duration::from_secs(1);

/// How often the metrics view gets a sample.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// How long a member's status may take before the view shows it unreachable.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);

/// The console's routes (`read_only`: `--ui-read-only`; `agent`: `--ui-agent`).
pub fn router(handle: Handle, read_only: bool, agent: Option<String>) -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/cluster", get(cluster_stream))
        .route("/ui/cluster.json", get(cluster_once))
        .route("/ui/leases", get(lease_stream))
        .route("/ui/metrics", get(metrics_stream))
        .route("/ui/zk", get(zk::stream))
        .route("/ui/agents", get(agents::stream))
        .route("/ui/session", get(actions::session))
        .route("/ui/act/{what}", post(actions::act))
        .with_state(actions::Console::new(handle, read_only, agent))
}

/// `no-store`: a page left for another is dropped, not kept in the browser's back-forward cache
/// with its streams open (they count against the browser's six connections to this host).
async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], PAGE)
}

/// A response of server-sent events.
fn event_stream(
    events: impl tokio_stream::Stream<Item = Result<String, Infallible>> + Send + 'static,
) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(events))
}

/// Server-sent events of kind `kind`: what `gather` reads every `every`, sent when its
/// `settled` form changed since the last one sent, and at least every [`RESEND_EVERY`]
/// (`Ok(None)`: nothing read this time). A gathering that fails sends its reason as an `error`
/// event and ends the stream.
fn changes_stream<T, F, Fut>(
    kind: &'static str,
    every: Duration,
    settled: fn(&T) -> T,
    mut gather: F,
) -> impl IntoResponse
where
    T: Serialize + PartialEq + Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Option<T>, tonic::Status>> + Send,
{
    let events = crate::api::async_stream(move |tx| async move {
        let mut last: Option<T> = None;
        let mut sent_at = Instant::now();
        loop {
            match gather().await {
                Ok(Some(view)) => {
                    let key = settled(&view);
                    if Some(&key) != last.as_ref() || sent_at.elapsed() >= RESEND_EVERY {
                        if tx.send(event(kind, &view)).await.is_err() {
                            return;
                        }
                        sent_at = Instant::now();
                        last = Some(key);
                    }
                }
                Ok(None) => {}
                Err(status) => {
                    let _ = tx.send(event("error", &serde_json::json!({ "message": status.message() }))).await;
                    return;
                }
            }
            tokio::time::sleep(every).await;
        }
    });
    event_stream(events)
}

/// One server-sent event of kind `kind` carrying `data` as JSON.
fn event(kind: &str, data: &impl Serialize) -> Result<String, Infallible> {
    Ok(format!("event: {kind}\ndata: {}\n\n", serde_json::to_string(data).unwrap_or_default()))
}

/// One member as the view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct MemberView {
    id: String,
    name: String,
    client_url: String,
    is_learner: bool,
    /// It answered its status in time.
    reachable: bool,
    is_leader: bool,
    term: u64,
    commit: u64,
    applied: u64,
    revision: i64,
    db_size: i64,
    /// Alarms and other errors it reports.
    errors: Vec<String>,
    /// How long its status took to come back to the serving member, in ms (0: unreachable).
    rtt_ms: f64,
}

/// The cluster as this member sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct ClusterView {
    /// The member serving the page.
    member: String,
    leader: String,
    consensus: &'static str,
    quota_bytes: u64,
    members: Vec<MemberView>,
    leader_changes: Vec<LeaderChangeView>,
    membership_changes: Vec<MembershipChangeView>,
}

impl ClusterView {
    /// The view without what changes at every gathering (round-trip times), to tell whether
    /// anything else changed.
    fn settled(&self) -> ClusterView {
        let mut view = self.clone();
        view.members.iter_mut().for_each(|member| member.rtt_ms = 0.0);
        view
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct MembershipChangeView {
    at_ms: u64,
    member: String,
    name: String,
    change: &'static str,
}

impl From<MembershipChange> for MembershipChangeView {
    fn from(change: MembershipChange) -> Self {
        let MembershipChange { at_ms, member, name, change } = change;
        MembershipChangeView { at_ms, member: format!("{member:x}"), name, change }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct LeaderChangeView {
    at_ms: u64,
    leader: String,
    term: u64,
}

impl From<LeaderChange> for LeaderChangeView {
    fn from(change: LeaderChange) -> Self {
        LeaderChangeView { at_ms: change.at_ms, leader: format!("{:x}", change.leader), term: change.term }
    }
}

/// Asks member `id` for its status (bounded by [`STATUS_TIMEOUT`]), and how long it took.
async fn status_of(handle: &Handle, id: u64) -> Option<(pb::StatusResponse, Duration)> {
    let channel = handle.leader_channel(&Caller::default(), id).ok()?;
    let mut client = MaintenanceClient::new(channel);
    let asked = Instant::now();
    let answer = tokio::time::timeout(STATUS_TIMEOUT, client.status(pb::StatusRequest {})).await;
    Some((answer.ok()?.ok()?.into_inner(), asked.elapsed()))
}

async fn gather(handle: &Handle) -> Option<ClusterView> {
    let (member, leader, consensus, quota_bytes, changes, membership) = handle
        .query(|core| {
            let changes: Vec<LeaderChange> = core.leader_history.iter().copied().collect();
            let membership: Vec<MembershipChange> = core.membership_history.iter().cloned().collect();
            let engine = core.replica.engine().consensus_name();
            (core.id(), core.leader(), engine, core.quota_bytes(), changes, membership)
        })
        .await
        .ok()?;
    let members = handle.members.list();
    let asked: Vec<_> = members
        .iter()
        .map(|m| {
            let handle = handle.clone();
            let id = m.id;
            tokio::spawn(async move { status_of(&handle, id).await })
        })
        .collect();
    let mut views = Vec::with_capacity(members.len());
    for (member, asked) in members.into_iter().zip(asked) {
        let (status, rtt) = asked.await.ok().flatten().unzip();
        let header = status.as_ref().and_then(|s| s.header).unwrap_or_default();
        views.push(MemberView {
            id: format!("{:x}", member.id),
            name: member.name.clone(),
            client_url: member.client_urls.first().cloned().unwrap_or_default(),
            is_learner: member.is_learner,
            reachable: status.is_some(),
            is_leader: status.as_ref().is_some_and(|s| s.leader == member.id),
            term: status.as_ref().map_or(0, |s| s.raft_term),
            commit: status.as_ref().map_or(0, |s| s.raft_index),
            applied: status.as_ref().map_or(0, |s| s.raft_applied_index),
            revision: header.revision,
            db_size: status.as_ref().map_or(0, |s| s.db_size),
            errors: status.map(|s| s.errors).unwrap_or_default(),
            rtt_ms: rtt.map_or(0.0, |rtt| (rtt.as_secs_f64() * 10_000.0).round() / 10.0),
        });
    }
    Some(ClusterView {
        member: format!("{member:x}"),
        leader: format!("{leader:x}"),
        consensus,
        quota_bytes,
        members: views,
        leader_changes: changes.into_iter().map(LeaderChangeView::from).collect(),
        membership_changes: membership.into_iter().map(MembershipChangeView::from).collect(),
    })
}

async fn cluster_once(State(handle): State<Handle>) -> impl IntoResponse {
    Json(gather(&handle).await)
}

/// One lease as the view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct LeaseView {
    id: String,
    ttl: i64,
    granted_ttl: i64,
    keys: Vec<String>,
}

/// Every lease, through the Lease service with the caller's credentials.
async fn gather_leases(leases: &crate::api::lease::Lease, caller: &Caller) -> Result<Vec<LeaseView>, tonic::Status> {
    let listed = leases.lease_leases(caller, pb::LeaseLeasesRequest {}).await?;
    let mut views = Vec::new();
    for lease in listed.leases {
        let request = pb::LeaseTimeToLiveRequest { id: lease.id, keys: true };
        let live = leases.lease_time_to_live(caller, request).await?;
        if live.ttl < 0 {
            continue; // revoked or expired meanwhile
        }
        let keys = live.keys.iter().map(|key| String::from_utf8_lossy(key).into_owned()).collect();
        views.push(LeaseView { id: format!("{:x}", lease.id), ttl: live.ttl, granted_ttl: live.granted_ttl, keys });
    }
    Ok(views)
}

/// The leases as server-sent events (`event: leases`), pushed when they change; an `error`
/// event (and the end) if the caller may not read them.
async fn lease_stream(State(handle): State<Handle>, request: Request) -> impl IntoResponse {
    let caller = actions::caller_of(&handle, &request);
    changes_stream("leases", LEASES_EVERY, Vec::clone, move || {
        let (leases, caller) = (crate::api::lease::Lease { handle: handle.clone() }, caller.clone());
        async move { gather_leases(&leases, &caller).await.map(Some) }
    })
}

/// The sum of every series of metric `name` in Prometheus's text format (0 if none).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The figures one second of the metrics view shows, from two readings of `/metrics`.
#[derive(Debug, Serialize)]
struct MetricsSample {
    at_ms: u64,
    writes_per_s: f64,
    reads_per_s: f64,
    /// Mean WAL fsync over the second, ms (0 if none).
    fsync_ms: f64,
    /// Mean time to apply a batch of entries, ms (0 if none).
    apply_ms: f64,
    proposals_pending: f64,
    watchers: f64,
}

fn sample(before: &str, after: &str, seconds: f64) -> MetricsSample {
    let delta = |name: &str| (metric(after, name) - metric(before, name)).max(0.0);
    let rate = |names: &[&str]| names.iter().map(|name| delta(name)).sum::<f64>() / seconds.max(1e-3);
    let mean_ms = |name: &str| {
        let count = delta(&format!("{name}_count"));
        if count > 0.0 {
            1000.0 * delta(&format!("{name}_sum")) / count
        } else {
            0.0
        }
    };
    MetricsSample {
        at_ms: crate::driver::wall_clock_ms(),
        writes_per_s: rate(&["etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total"]),
        reads_per_s: rate(&["etcd_mvcc_range_total"]),
        fsync_ms: mean_ms("etcd_disk_wal_fsync_duration_seconds"),
        apply_ms: mean_ms("ballot_apply_seconds"),
        proposals_pending: metric(after, "etcd_server_proposals_pending"),
        watchers: metric(after, "etcd_debugging_mvcc_watcher_total"),
    }
}

/// This member's metrics as server-sent events (`event: metrics`), one sample a second.
async fn metrics_stream(State(handle): State<Handle>) -> impl IntoResponse {
    let events = crate::api::async_stream(move |tx| async move {
        let read = |handle: Handle| async move {
            let _ = handle.query(|core| core.refresh_metrics()).await;
            (Instant::now(), handle.metrics.render())
        };
        let mut before = read(handle.clone()).await;
        loop {
            tokio::time::sleep(METRICS_EVERY).await;
            let after = read(handle.clone()).await;
            let figures = sample(&before.1, &after.1, after.0.duration_since(before.0).as_secs_f64());
            if tx.send(event("metrics", &figures)).await.is_err() {
                return;
            }
            before = after;
        }
    });
    event_stream(events)
}

/// The cluster view as server-sent events (`event: cluster`), pushed when it changes.
async fn cluster_stream(State(handle): State<Handle>) -> impl IntoResponse {
    changes_stream("cluster", GATHER_EVERY, ClusterView::settled, move || {
        let handle = handle.clone();
        async move { Ok(gather(&handle).await) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_rates_and_mean_latencies_over_the_interval() {
        let before = "etcd_mvcc_put_total 10\netcd_mvcc_txn_total 2\netcd_mvcc_range_total 100\n\
                      etcd_disk_wal_fsync_duration_seconds_sum 0.5\netcd_disk_wal_fsync_duration_seconds_count 100\n\
                      ballot_apply_seconds_sum 1\nballot_apply_seconds_count 10\n";
        let after =
            "etcd_mvcc_put_total 30\netcd_mvcc_txn_total 2\netcd_mvcc_delete_total 4\netcd_mvcc_range_total 160\n\
                     etcd_disk_wal_fsync_duration_seconds_sum 0.54\netcd_disk_wal_fsync_duration_seconds_count 110\n\
                     ballot_apply_seconds_sum 1\nballot_apply_seconds_count 10\n\
                     etcd_server_proposals_pending 3\netcd_debugging_mvcc_watcher_total{x=\"1\"} 5\n";
        let figures = sample(before, after, 2.0);
        assert_eq!(figures.writes_per_s, 12.0);
        assert_eq!(figures.reads_per_s, 30.0);
        assert!((figures.fsync_ms - 4.0).abs() < 1e-9, "{figures:?}");
        assert_eq!(figures.apply_ms, 0.0, "no batch applied in the interval");
        assert_eq!((figures.proposals_pending, figures.watchers), (3.0, 5.0));
        assert_eq!(metric(after, "etcd_mvcc_put"), 0.0, "a name matches whole");
    }
}

//! The differential check of the etcd API (run by `compat/diff_etcd.sh`): the same sequence of
//! requests, through every gRPC service, to etcd 3.4 and to ballot started side by side (one
//! member each, fresh), and the answers compared after normalizing what must differ (member
//! and cluster ids, raft terms, lease ids, sizes, versions). Revisions are compared as they are:
//! the same operations from a fresh store must give the same ones.
//!
//! Every step's answers are turned into proto3 JSON (the gateway's mapping) and compared as
//! values; an error is compared by its gRPC code and message. Differences that are known and
//! explained are listed in `docs/etcd-differences.md` (a line "- `step`: why"); any other
//! difference fails the check.
//!
//! `cargo run --example diff_etcd -- ETCD_URL BALLOT_URL DIFFERENCES_FILE`

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::auth_client::AuthClient;
use ballot_proto::etcdserverpb::cluster_client::ClusterClient;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use ballot_proto::etcdserverpb::lease_client::LeaseClient;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use ballot_proto::etcdserverpb::watch_client::WatchClient;
use ballot_proto::v3electionpb::election_client::ElectionClient;
use ballot_proto::v3lockpb::lock_client::LockClient;
use ballot_proto::{v3electionpb, v3lockpb};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// One server under test.
struct Side {
    name: &'static str,
    channel: Channel,
    /// Lease ids this side granted, in order (steps that need "the lease of step N").
    leases: Vec<i64>,
    /// An auth token, once logged in.
    token: Option<String>,
}

/// The outcome of one step on one side, normalized.
type Outcome = Value;

struct Check {
    etcd: Side,
    ballot: Side,
    known: BTreeMap<String, String>,
    steps: usize,
    known_seen: BTreeSet<String>,
    unexplained: Vec<String>,
    /// Each side's ids, numbered by first appearance.
    etcd_ids: BTreeMap<String, usize>,
    ballot_ids: BTreeMap<String, usize>,
}

fn key(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// Ids that differ between servers by nature: numbered by first appearance on each side.
const ID_FIELDS: [&str; 7] = ["ID", "id", "member_id", "memberID", "leader", "target_id", "lease"];

/// Fields that differ by nature and are dropped before comparing.
const DROPPED_FIELDS: [&str; 13] = [
    "cluster_id",
    "raft_term",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "version",
    "token",
    "peerURLs",
    "clientURLs",
    "name",
    "blob",
];

/// Normalizes an answer: ids numbered by first appearance (`ids` is per side), fields that
/// differ by nature dropped.
fn normalize(value: Value, ids: &mut BTreeMap<String, usize>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(field, _)| !DROPPED_FIELDS.contains(&field.as_str()))
                .map(|(field, value)| {
                    let value = if ID_FIELDS.contains(&field.as_str()) && !value.is_object() {
                        let next = ids.len() + 1;
                        let text = value.to_string();
                        Value::String(format!("<id {}>", *ids.entry(text).or_insert(next)))
                    } else {
                        normalize(value, ids)
                    };
                    (field, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|item| normalize(item, ids)).collect()),
        other => other,
    }
}

fn outcome<T: serde::Serialize>(result: Result<T, Status>, ids: &mut BTreeMap<String, usize>) -> Outcome {
    match result {
        Ok(message) => normalize(serde_json::to_value(&message).expect("messages serialize"), ids),
        Err(status) => {
            serde_json::json!({ "error": { "code": format!("{:?}", status.code()), "message": status.message() } })
        }
    }
}

impl Side {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.parse().expect("a token is ASCII"));
        }
        request
    }

    fn lease(&self, n: usize) -> i64 {
        self.leases.get(n).copied().unwrap_or(424242)
    }
}

/// Runs `call` on both sides (etcd first) and compares the answers.
macro_rules! step {
    ($check:expr, $name:expr, |$side:ident| $call:expr) => {{
        let check: &mut Check = $check;
        let etcd = {
            let $side = &mut check.etcd;
            $call
        };
        let ballot = {
            let $side = &mut check.ballot;
            $call
        };
        check.compare($name, etcd, ballot);
    }};
}

impl Check {
    fn compare<T: serde::Serialize>(&mut self, name: &str, etcd: Result<T, Status>, ballot: Result<T, Status>) {
        let etcd = outcome(etcd, &mut self.etcd_ids);
        let ballot = outcome(ballot, &mut self.ballot_ids);
        self.record(name, etcd, ballot);
    }

    fn record(&mut self, name: &str, etcd: Outcome, ballot: Outcome) {
        self.steps += 1;
        if etcd == ballot {
            println!("same  {name}");
            return;
        }
        if let Some(why) = self.known.get(name) {
            println!("known {name}: {why}");
            self.known_seen.insert(name.to_string());
            return;
        }
        println!("DIFF  {name}\n  etcd:   {etcd}\n  ballot: {ballot}");
        self.unexplained.push(name.to_string());
    }
}

fn put(k: &str, v: &str) -> pb::PutRequest {
    pb::PutRequest { key: key(k), value: key(v), ..Default::default() }
}

fn range(k: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: key(k), ..Default::default() }
}

fn prefix(k: &str) -> pb::RangeRequest {
    let mut end = key(k);
    *end.last_mut().expect("a prefix") += 1;
    pb::RangeRequest { key: key(k), range_end: end, ..Default::default() }
}

fn compare_value(k: &str, v: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Value as i32,
        key: key(k),
        range_end: vec![],
        target_union: Some(pb::compare::TargetUnion::Value(key(v))),
    }
}

fn op_put(k: &str, v: &str) -> pb::RequestOp {
    pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put(k, v))) }
}

fn op_range(k: &str) -> pb::RequestOp {
    pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(range(k))) }
}

fn op_delete(k: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key(k),
            prev_kv: true,
            ..Default::default()
        })),
    }
}

/// Answers of a watch stream: after sending `requests` (with a pause between them, and
/// `between` run after each), whatever arrives until the stream is quiet for `quiet`.
async fn watch_session(
    side: &mut Side,
    requests: Vec<pb::WatchRequest>,
    writes: Vec<pb::PutRequest>,
    quiet: Duration,
) -> Result<Vec<pb::WatchResponse>, Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut requests = requests.into_iter();
    // etcd's server answers the call (its headers) with its first message: send the first
    // request before waiting for the call to open.
    if let Some(first) = requests.next() {
        tx.send(first).await.map_err(|_| Status::internal("stream closed"))?;
    }
    let mut client = WatchClient::new(side.channel.clone());
    let mut responses = client.watch(side.request(tokio_stream::wrappers::ReceiverStream::new(rx))).await?.into_inner();
    let mut got = Vec::new();
    while let Ok(Some(Ok(response))) = tokio::time::timeout(quiet, responses.next()).await {
        got.push(response);
    }
    for request in requests {
        tx.send(request).await.map_err(|_| Status::internal("stream closed"))?;
        while let Ok(Some(Ok(response))) = tokio::time::timeout(quiet, responses.next()).await {
            got.push(response);
        }
    }
    let mut kv = KvClient::new(side.channel.clone());
    for write in writes {
        kv.put(write).await?;
    }
    while let Ok(Some(Ok(response))) = tokio::time::timeout(quiet, responses.next()).await {
        got.push(response);
    }
    Ok(got)
}

fn create(k: &str, start_revision: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key(k),
            start_revision,
            ..Default::default()
        })),
    }
}

fn cancel(watch_id: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id })),
    }
}

fn progress() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
    }
}

async fn kv_steps(check: &mut Check) {
    step!(check, "kv: put a new key", |s| KvClient::new(s.channel.clone())
        .put(put("a", "1"))
        .await
        .map(|r| r.into_inner()));
    step!(check, "kv: put with prev_kv", |s| {
        let request = pb::PutRequest { prev_kv: true, ..put("a", "2") };
        KvClient::new(s.channel.clone()).put(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: put ignore_value", |s| {
        let request = pb::PutRequest { key: key("a"), ignore_value: true, ..Default::default() };
        KvClient::new(s.channel.clone()).put(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: put ignore_value on a missing key", |s| {
        let request = pb::PutRequest { key: key("nope"), ignore_value: true, ..Default::default() };
        KvClient::new(s.channel.clone()).put(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: put with an unknown lease", |s| {
        let request = pb::PutRequest { lease: 123_456, ..put("b", "x") };
        KvClient::new(s.channel.clone()).put(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: put with an empty key", |s| KvClient::new(s.channel.clone())
        .put(put("", "x"))
        .await
        .map(|r| r.into_inner()));
    for (k, v) in [("b", "1"), ("c", "1"), ("d/1", "x"), ("d/2", "y"), ("d/3", "z")] {
        step!(check, &format!("kv: put {k}"), |s| KvClient::new(s.channel.clone())
            .put(put(k, v))
            .await
            .map(|r| r.into_inner()));
    }
    step!(check, "kv: range one key", |s| KvClient::new(s.channel.clone())
        .range(range("a"))
        .await
        .map(|r| r.into_inner()));
    step!(check, "kv: range a missing key", |s| KvClient::new(s.channel.clone())
        .range(range("zz"))
        .await
        .map(|r| r.into_inner()));
    step!(check, "kv: range a prefix", |s| KvClient::new(s.channel.clone())
        .range(prefix("d/"))
        .await
        .map(|r| r.into_inner()));
    step!(check, "kv: range with limit (more, count)", |s| {
        let request = pb::RangeRequest { limit: 2, ..prefix("d/") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range sorted by value, descending", |s| {
        let request = pb::RangeRequest {
            sort_order: pb::range_request::SortOrder::Descend as i32,
            sort_target: pb::range_request::SortTarget::Value as i32,
            ..prefix("d/")
        };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range keys_only", |s| {
        let request = pb::RangeRequest { keys_only: true, ..prefix("d/") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range count_only", |s| {
        let request = pb::RangeRequest { count_only: true, ..prefix("d/") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range everything (from \\0)", |s| {
        let request = pb::RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range at a past revision", |s| {
        let request = pb::RangeRequest { revision: 2, ..range("a") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range at a future revision", |s| {
        let request = pb::RangeRequest { revision: 1000, ..range("a") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range serializable", |s| {
        let request = pb::RangeRequest { serializable: true, ..range("a") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range with an empty key", |s| KvClient::new(s.channel.clone())
        .range(range(""))
        .await
        .map(|r| r.into_inner()));
    step!(check, "kv: range with revision filters", |s| {
        let request = pb::RangeRequest { min_mod_revision: 5, max_create_revision: 7, ..prefix("d/") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: txn that succeeds", |s| {
        let request = pb::TxnRequest {
            compare: vec![compare_value("a", "2")],
            success: vec![op_put("e", "1"), op_range("a")],
            failure: vec![op_put("f", "1")],
        };
        KvClient::new(s.channel.clone()).txn(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: txn that fails, with a delete", |s| {
        let request = pb::TxnRequest {
            compare: vec![compare_value("a", "no")],
            success: vec![op_put("e", "2")],
            failure: vec![op_delete("c"), op_range("c")],
        };
        KvClient::new(s.channel.clone()).txn(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: txn that fails with no failure ops", |s| {
        let request = pb::TxnRequest {
            compare: vec![compare_value("a", "no")],
            success: vec![op_put("e", "2")],
            failure: vec![],
        };
        KvClient::new(s.channel.clone()).txn(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: nested txn", |s| {
        let inner = pb::TxnRequest { compare: vec![], success: vec![op_put("g", "1")], failure: vec![] };
        let request = pb::TxnRequest {
            compare: vec![],
            success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestTxn(inner)) }],
            failure: vec![],
        };
        KvClient::new(s.channel.clone()).txn(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: txn with a duplicate key", |s| {
        let request =
            pb::TxnRequest { compare: vec![], success: vec![op_put("h", "1"), op_put("h", "2")], failure: vec![] };
        KvClient::new(s.channel.clone()).txn(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: txn with too many operations", |s| {
        let ops = (0..200).map(|i| op_put(&format!("many{i}"), "v")).collect();
        let request = pb::TxnRequest { compare: vec![], success: ops, failure: vec![] };
        KvClient::new(s.channel.clone()).txn(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: delete a key with prev_kv", |s| {
        let request = pb::DeleteRangeRequest { key: key("b"), prev_kv: true, ..Default::default() };
        KvClient::new(s.channel.clone()).delete_range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: delete a missing key", |s| {
        let request = pb::DeleteRangeRequest { key: key("zz"), ..Default::default() };
        KvClient::new(s.channel.clone()).delete_range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: delete a prefix", |s| {
        let range = prefix("d/");
        let request = pb::DeleteRangeRequest { key: range.key, range_end: range.range_end, ..Default::default() };
        KvClient::new(s.channel.clone()).delete_range(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: compact a future revision", |s| {
        let request = pb::CompactionRequest { revision: 1000, physical: false };
        KvClient::new(s.channel.clone()).compact(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: compact", |s| {
        let request = pb::CompactionRequest { revision: 4, physical: true };
        KvClient::new(s.channel.clone()).compact(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: compact an older revision again", |s| {
        let request = pb::CompactionRequest { revision: 3, physical: false };
        KvClient::new(s.channel.clone()).compact(request).await.map(|r| r.into_inner())
    });
    step!(check, "kv: range a compacted revision", |s| {
        let request = pb::RangeRequest { revision: 2, ..range("a") };
        KvClient::new(s.channel.clone()).range(request).await.map(|r| r.into_inner())
    });
}

async fn watch_steps(check: &mut Check) {
    let quiet = Duration::from_millis(400);
    step!(check, "watch: create, then events of two puts", |s| {
        watch_session(s, vec![create("w", 0)], vec![put("w", "1"), put("w", "2")], quiet).await
    });
    step!(check, "watch: from a past revision (history first)", |s| {
        watch_session(s, vec![create("w", 0)], vec![], quiet)
            .await
            .and(watch_session(s, vec![create("w", 1000)], vec![], quiet).await)
    });
    step!(check, "watch: from a compacted revision, then again from the compact revision", |s| {
        watch_session(s, vec![create("a", 1), cancel(0), create("a", 4)], vec![put("a", "3")], quiet).await
    });
    step!(check, "watch: two watches, one cancelled, a cancel of an unknown id", |s| {
        watch_session(
            s,
            vec![create("x", 0), create("y", 0), cancel(0), cancel(77)],
            vec![put("x", "1"), put("y", "1")],
            quiet,
        )
        .await
    });
    step!(check, "watch: prev_kv and a NOPUT filter", |s| {
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: key("w"),
                prev_kv: true,
                filters: vec![pb::watch_create_request::FilterType::Noput as i32],
                ..Default::default()
            })),
        };
        let session = watch_session(s, vec![create], vec![put("w", "3")], quiet).await;
        let deleted = KvClient::new(s.channel.clone())
            .delete_range(pb::DeleteRangeRequest { key: key("w"), ..Default::default() })
            .await
            .map(|r| r.into_inner());
        session.and_then(|session| deleted.map(|deleted| (session, deleted)))
    });
    step!(check, "watch: a progress request", |s| watch_session(s, vec![create("p", 0), progress()], vec![], quiet)
        .await);
    step!(check, "watch: a client-chosen id, and the same id again", |s| {
        let chosen = |k: &str| pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: key(k),
                watch_id: 7,
                ..Default::default()
            })),
        };
        watch_session(s, vec![chosen("q"), chosen("r")], vec![], quiet).await
    });
}

async fn lease_steps(check: &mut Check) {
    step!(check, "lease: grant", |s| {
        let granted = LeaseClient::new(s.channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 }).await;
        if let Ok(granted) = &granted {
            s.leases.push(granted.get_ref().id);
        }
        granted.map(|r| r.into_inner())
    });
    step!(check, "lease: grant a chosen id", |s| {
        let granted =
            LeaseClient::new(s.channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 7777 }).await;
        if let Ok(granted) = &granted {
            s.leases.push(granted.get_ref().id);
        }
        granted.map(|r| r.into_inner())
    });
    step!(check, "lease: grant an id already taken", |s| {
        LeaseClient::new(s.channel.clone())
            .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 7777 })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "lease: grant a TTL below the minimum", |s| {
        let granted = LeaseClient::new(s.channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl: 1, id: 0 }).await;
        if let Ok(granted) = &granted {
            s.leases.push(granted.get_ref().id);
        }
        granted.map(|r| r.into_inner())
    });
    // The key goes on the lease whose id was chosen: a key's lease is in the history, which
    // HashKV hashes (with a random id the hashes would differ by nature).
    step!(check, "lease: put a key on the lease", |s| {
        let request = pb::PutRequest { lease: s.lease(1), ..put("leased", "v") };
        KvClient::new(s.channel.clone()).put(request).await.map(|r| r.into_inner())
    });
    step!(check, "lease: time to live with keys", |s| {
        let request = pb::LeaseTimeToLiveRequest { id: s.lease(1), keys: true };
        LeaseClient::new(s.channel.clone()).lease_time_to_live(request).await.map(|r| r.into_inner())
    });
    step!(check, "lease: time to live of an unknown lease", |s| {
        let request = pb::LeaseTimeToLiveRequest { id: 99, keys: false };
        LeaseClient::new(s.channel.clone()).lease_time_to_live(request).await.map(|r| r.into_inner())
    });
    step!(check, "lease: leases", |s| {
        LeaseClient::new(s.channel.clone()).lease_leases(pb::LeaseLeasesRequest {}).await.map(|r| {
            let mut leases = r.into_inner();
            leases.leases.sort_by_key(|lease| lease.id);
            leases.leases.iter_mut().for_each(|lease| lease.id = 0);
            leases
        })
    });
    step!(check, "lease: keep-alive stream (two renewals, an unknown lease)", |s| {
        let requests = [s.lease(1), s.lease(1), 99].map(|id| pb::LeaseKeepAliveRequest { id });
        let opened =
            LeaseClient::new(s.channel.clone()).lease_keep_alive(s.request(tokio_stream::iter(requests))).await;
        match opened {
            Ok(stream) => {
                let answers: Vec<_> = stream.into_inner().take(3).collect().await;
                answers.into_iter().collect::<Result<Vec<_>, _>>()
            }
            Err(status) => Err(status),
        }
    });
    step!(check, "lease: revoke", |s| {
        let request = pb::LeaseRevokeRequest { id: s.lease(0) };
        LeaseClient::new(s.channel.clone()).lease_revoke(request).await.map(|r| r.into_inner())
    });
    step!(check, "lease: revoke an unknown lease", |s| {
        LeaseClient::new(s.channel.clone())
            .lease_revoke(pb::LeaseRevokeRequest { id: 99 })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "lease: revoke with keys (deletes them)", |s| {
        let request = pb::LeaseRevokeRequest { id: s.lease(1) };
        let revoked = LeaseClient::new(s.channel.clone()).lease_revoke(request).await.map(|r| r.into_inner());
        let found = KvClient::new(s.channel.clone()).range(range("leased")).await.map(|r| r.into_inner());
        revoked.and_then(|revoked| found.map(|found| (revoked, found)))
    });
}

async fn cluster_steps(check: &mut Check) {
    step!(check, "cluster: member list", |s| {
        ClusterClient::new(s.channel.clone())
            .member_list(pb::MemberListRequest::default())
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "cluster: remove an unknown member", |s| {
        ClusterClient::new(s.channel.clone())
            .member_remove(pb::MemberRemoveRequest { id: 1234 })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "cluster: promote an unknown member", |s| {
        ClusterClient::new(s.channel.clone())
            .member_promote(pb::MemberPromoteRequest { id: 1234 })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "cluster: update an unknown member", |s| {
        let request = pb::MemberUpdateRequest { id: 1234, peer_ur_ls: vec!["http://127.0.0.1:1".into()] };
        ClusterClient::new(s.channel.clone()).member_update(request).await.map(|r| r.into_inner())
    });
    step!(check, "cluster: add a member with a bad URL", |s| {
        let request = pb::MemberAddRequest { peer_ur_ls: vec!["not a url".into()], is_learner: true };
        ClusterClient::new(s.channel.clone()).member_add(request).await.map(|r| r.into_inner())
    });
}

async fn maintenance_steps(check: &mut Check) {
    step!(check, "maintenance: status", |s| {
        MaintenanceClient::new(s.channel.clone()).status(pb::StatusRequest {}).await.map(|r| r.into_inner())
    });
    step!(check, "maintenance: hash kv at the current revision", |s| {
        MaintenanceClient::new(s.channel.clone())
            .hash_kv(pb::HashKvRequest { revision: 0 })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "maintenance: hash kv at a past revision", |s| {
        MaintenanceClient::new(s.channel.clone())
            .hash_kv(pb::HashKvRequest { revision: 6 })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "maintenance: hash kv at every revision since the compaction", |s| {
        let mut hashes = Vec::new();
        for revision in 4..=23 {
            let request = pb::HashKvRequest { revision };
            let hash = MaintenanceClient::new(s.channel.clone()).hash_kv(request).await.map(|r| r.into_inner().hash);
            hashes.push(format!("{revision}:{}", hash.map_or_else(|e| e.message().to_string(), |h| h.to_string())));
        }
        Ok::<_, Status>(hashes)
    });
    step!(check, "maintenance: hash (of the backend file)", |s| {
        MaintenanceClient::new(s.channel.clone()).hash(pb::HashRequest {}).await.map(|r| {
            let mut hash = r.into_inner();
            hash.hash = 0;
            hash
        })
    });
    step!(check, "maintenance: alarm list (none)", |s| {
        let request = pb::AlarmRequest { action: 0, member_id: 0, alarm: 0 };
        MaintenanceClient::new(s.channel.clone()).alarm(request).await.map(|r| r.into_inner())
    });
    step!(check, "maintenance: alarm activate, list, deactivate, deactivate again, list", |s| {
        let member_id = MaintenanceClient::new(s.channel.clone())
            .status(pb::StatusRequest {})
            .await
            .map(|r| r.into_inner().header.map_or(0, |h| h.member_id))
            .unwrap_or(0);
        let mut answers = Vec::new();
        for (action, alarm) in [(1, 1), (0, 0), (2, 1), (2, 1), (2, 0), (0, 0)] {
            let request = pb::AlarmRequest { action, member_id, alarm };
            answers.push(MaintenanceClient::new(s.channel.clone()).alarm(request).await.map(|r| r.into_inner()));
        }
        answers.into_iter().collect::<Result<Vec<_>, _>>()
    });
    step!(check, "maintenance: defragment", |s| {
        MaintenanceClient::new(s.channel.clone()).defragment(pb::DefragmentRequest {}).await.map(|r| r.into_inner())
    });
    step!(check, "maintenance: move leader to an unknown member", |s| {
        let request = pb::MoveLeaderRequest { target_id: 1234 };
        MaintenanceClient::new(s.channel.clone()).move_leader(request).await.map(|r| r.into_inner())
    });
    step!(check, "maintenance: snapshot stream (no header; the last message says 0 bytes remain)", |s| {
        let opened = MaintenanceClient::new(s.channel.clone()).snapshot(pb::SnapshotRequest {}).await;
        match opened {
            Ok(stream) => {
                let messages: Result<Vec<_>, _> = stream.into_inner().collect::<Vec<_>>().await.into_iter().collect();
                messages.map(|messages| {
                    let last = messages.last().map(|m| (m.remaining_bytes, m.header.is_some(), m.blob.len()));
                    let headers = messages.iter().filter(|m| m.header.is_some()).count();
                    serde_json::json!({ "last": last, "messages_with_header": headers })
                })
            }
            Err(status) => Err(status),
        }
    });
}

async fn lock_election_steps(check: &mut Check) {
    step!(check, "lock: lease for the recipes", |s| {
        let granted = LeaseClient::new(s.channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 }).await;
        if let Ok(granted) = &granted {
            s.leases.push(granted.get_ref().id);
        }
        granted.map(|r| r.into_inner())
    });
    step!(check, "lock: lock", |s| {
        let request = v3lockpb::LockRequest { name: key("mylock"), lease: s.lease(3) };
        LockClient::new(s.channel.clone()).lock(request).await.map(|r| {
            let mut locked = r.into_inner();
            locked.key = locked.key.split(|b| *b == b'/').next().unwrap_or_default().to_vec();
            locked
        })
    });
    step!(check, "lock: unlock a key that is not held", |s| {
        LockClient::new(s.channel.clone())
            .unlock(v3lockpb::UnlockRequest { key: key("mylock/none") })
            .await
            .map(|r| r.into_inner())
    });
    step!(check, "lock: lock with an unknown lease", |s| {
        let request = v3lockpb::LockRequest { name: key("other"), lease: 99 };
        LockClient::new(s.channel.clone()).lock(request).await.map(|r| r.into_inner())
    });
    step!(check, "election: leader of an election with none", |s| {
        let request = v3electionpb::LeaderRequest { name: key("e1") };
        ElectionClient::new(s.channel.clone()).leader(request).await.map(|r| r.into_inner())
    });
    step!(check, "election: campaign, leader, proclaim, observe, resign", |s| {
        let mut election = ElectionClient::new(s.channel.clone());
        let campaign = v3electionpb::CampaignRequest { name: key("e1"), lease: s.lease(3), value: key("v1") };
        // A candidate's key names its lease (`e1/<lease id>`), which differs by nature.
        let unnamed = |mut answer: v3electionpb::LeaderResponse| {
            if let Some(kv) = answer.kv.as_mut() {
                kv.key = key("e1/");
            }
            answer
        };
        match election.campaign(campaign).await {
            Ok(campaigned) => {
                let leader = campaigned.into_inner().leader;
                let now = election
                    .leader(v3electionpb::LeaderRequest { name: key("e1") })
                    .await
                    .map(|r| unnamed(r.into_inner()));
                let proclaim = v3electionpb::ProclaimRequest { leader: leader.clone(), value: key("v2") };
                let proclaimed = election.proclaim(proclaim).await.map(|r| r.into_inner());
                let observed = match election.observe(v3electionpb::LeaderRequest { name: key("e1") }).await {
                    Ok(stream) => tokio::time::timeout(Duration::from_secs(2), stream.into_inner().next())
                        .await
                        .ok()
                        .flatten()
                        .transpose()
                        .map(|answer| answer.map(unnamed)),
                    Err(status) => Err(status),
                };
                let resigned = election.resign(v3electionpb::ResignRequest { leader }).await.map(|r| r.into_inner());
                Ok(serde_json::json!({
                    "leader": serde_json::to_value(now.ok()).unwrap_or_default(),
                    "proclaimed": serde_json::to_value(proclaimed.ok()).unwrap_or_default(),
                    "observed": serde_json::to_value(observed.ok()).unwrap_or_default(),
                    "resigned": serde_json::to_value(resigned.ok()).unwrap_or_default(),
                }))
            }
            Err(status) => Err(status),
        }
    });
    step!(check, "election: proclaim without leadership", |s| {
        let leader = v3electionpb::LeaderKey { name: key("e1"), key: key("e1/nobody"), rev: 1, lease: 1 };
        let request = v3electionpb::ProclaimRequest { leader: Some(leader), value: key("v") };
        ElectionClient::new(s.channel.clone()).proclaim(request).await.map(|r| r.into_inner())
    });
}

async fn auth_steps(check: &mut Check) {
    let auth = |s: &Side| AuthClient::new(s.channel.clone());
    step!(check, "auth: status", |s| auth(s)
        .auth_status(s.request(pb::AuthStatusRequest {}))
        .await
        .map(|r| r.into_inner()));
    step!(check, "auth: authenticate while auth is off", |s| {
        let request = pb::AuthenticateRequest { name: "root".into(), password: "pw".into() };
        auth(s).authenticate(request).await.map(|r| r.into_inner())
    });
    step!(check, "auth: enable without a root user", |s| auth(s)
        .auth_enable(pb::AuthEnableRequest {})
        .await
        .map(|r| r.into_inner()));
    step!(check, "auth: add root", |s| {
        let request = pb::AuthUserAddRequest { name: "root".into(), password: "pw".into(), ..Default::default() };
        auth(s).user_add(request).await.map(|r| r.into_inner())
    });
    step!(check, "auth: add root again", |s| {
        let request = pb::AuthUserAddRequest { name: "root".into(), password: "pw".into(), ..Default::default() };
        auth(s).user_add(request).await.map(|r| r.into_inner())
    });
    step!(check, "auth: add a user with an empty name", |s| {
        auth(s).user_add(pb::AuthUserAddRequest::default()).await.map(|r| r.into_inner())
    });
    step!(check, "auth: enable without the root role", |s| auth(s)
        .auth_enable(pb::AuthEnableRequest {})
        .await
        .map(|r| r.into_inner()));
    step!(check, "auth: grant root the root role", |s| {
        let request = pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
        auth(s).user_grant_role(request).await.map(|r| r.into_inner())
    });
    step!(check, "auth: add role reader, grant it /r/", |s| {
        let added = auth(s).role_add(pb::AuthRoleAddRequest { name: "reader".into() }).await.map(|r| r.into_inner());
        let perm = ballot_proto::authpb::Permission { perm_type: 0, key: key("/r/"), range_end: key("/r0") };
        let request = pb::AuthRoleGrantPermissionRequest { name: "reader".into(), perm: Some(perm) };
        let granted = auth(s).role_grant_permission(request).await.map(|r| r.into_inner());
        added.and_then(|added| granted.map(|granted| (added, granted)))
    });
    step!(check, "auth: add alice with the reader role", |s| {
        let request = pb::AuthUserAddRequest { name: "alice".into(), password: "a".into(), ..Default::default() };
        let added = auth(s).user_add(request).await.map(|r| r.into_inner());
        let request = pb::AuthUserGrantRoleRequest { user: "alice".into(), role: "reader".into() };
        let granted = auth(s).user_grant_role(request).await.map(|r| r.into_inner());
        added.and_then(|added| granted.map(|granted| (added, granted)))
    });
    step!(check, "auth: user get, user list, role get, role list", |s| {
        let user = auth(s).user_get(pb::AuthUserGetRequest { name: "alice".into() }).await.map(|r| r.into_inner());
        let users = auth(s).user_list(pb::AuthUserListRequest {}).await.map(|r| r.into_inner());
        let role = auth(s).role_get(pb::AuthRoleGetRequest { role: "reader".into() }).await.map(|r| r.into_inner());
        let roles = auth(s).role_list(pb::AuthRoleListRequest {}).await.map(|r| r.into_inner());
        Ok::<_, Status>(serde_json::json!([
            serde_json::to_value(user.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(users.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(role.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(roles.map_err(|e| e.message().to_string())).unwrap_or_default(),
        ]))
    });
    step!(check, "auth: get a missing user", |s| {
        auth(s).user_get(pb::AuthUserGetRequest { name: "nobody".into() }).await.map(|r| r.into_inner())
    });
    step!(check, "auth: enable", |s| auth(s).auth_enable(pb::AuthEnableRequest {}).await.map(|r| r.into_inner()));
    step!(check, "auth: put without a token", |s| KvClient::new(s.channel.clone())
        .put(put("/r/x", "1"))
        .await
        .map(|r| r.into_inner()));
    step!(check, "auth: put with a forged token", |s| {
        let mut request = Request::new(put("/r/x", "1"));
        request.metadata_mut().insert("token", "forged.1".parse().expect("ASCII"));
        KvClient::new(s.channel.clone()).put(request).await.map(|r| r.into_inner())
    });
    step!(check, "auth: authenticate with a wrong password", |s| {
        let request = pb::AuthenticateRequest { name: "alice".into(), password: "wrong".into() };
        auth(s).authenticate(request).await.map(|r| r.into_inner())
    });
    step!(check, "auth: alice reads /r/ and may not write it", |s| {
        let request = pb::AuthenticateRequest { name: "alice".into(), password: "a".into() };
        match auth(s).authenticate(request).await {
            Ok(token) => {
                s.token = Some(token.into_inner().token);
                let read =
                    KvClient::new(s.channel.clone()).range(s.request(range("/r/x"))).await.map(|r| r.into_inner());
                let write =
                    KvClient::new(s.channel.clone()).put(s.request(put("/r/x", "1"))).await.map(|r| r.into_inner());
                let elsewhere =
                    KvClient::new(s.channel.clone()).range(s.request(range("/s/x"))).await.map(|r| r.into_inner());
                Ok(serde_json::json!([
                    serde_json::to_value(read.map_err(|e| e.message().to_string())).unwrap_or_default(),
                    serde_json::to_value(write.map_err(|e| e.message().to_string())).unwrap_or_default(),
                    serde_json::to_value(elsewhere.map_err(|e| e.message().to_string())).unwrap_or_default(),
                ]))
            }
            Err(status) => Err(status),
        }
    });
    step!(check, "auth: root disables auth", |s| {
        let request = pb::AuthenticateRequest { name: "root".into(), password: "pw".into() };
        match auth(s).authenticate(request).await {
            Ok(token) => {
                s.token = Some(token.into_inner().token);
                let disabled = auth(s).auth_disable(s.request(pb::AuthDisableRequest {})).await.map(|r| r.into_inner());
                s.token = None;
                disabled
            }
            Err(status) => Err(status),
        }
    });
    step!(check, "auth: revoke, delete role and users", |s| {
        let revoke =
            pb::AuthRoleRevokePermissionRequest { role: "reader".into(), key: key("/r/"), range_end: key("/r0") };
        let revoked = auth(s).role_revoke_permission(revoke).await.map(|r| r.into_inner());
        let unrole = pb::AuthUserRevokeRoleRequest { name: "alice".into(), role: "reader".into() };
        let unroled = auth(s).user_revoke_role(unrole).await.map(|r| r.into_inner());
        let password =
            pb::AuthUserChangePasswordRequest { name: "alice".into(), password: "b".into(), ..Default::default() };
        let changed = auth(s).user_change_password(password).await.map(|r| r.into_inner());
        let deleted_role =
            auth(s).role_delete(pb::AuthRoleDeleteRequest { role: "reader".into() }).await.map(|r| r.into_inner());
        let deleted =
            auth(s).user_delete(pb::AuthUserDeleteRequest { name: "alice".into() }).await.map(|r| r.into_inner());
        Ok::<_, Status>(serde_json::json!([
            serde_json::to_value(revoked.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(unroled.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(changed.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(deleted_role.map_err(|e| e.message().to_string())).unwrap_or_default(),
            serde_json::to_value(deleted.map_err(|e| e.message().to_string())).unwrap_or_default(),
        ]))
    });
}

/// The known differences: "- `step`: why" lines of the differences file.
fn known_differences(path: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {path}: {error}"));
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("- `")?;
            let (step, why) = rest.split_once("`:")?;
            Some((step.to_string(), why.trim().to_string()))
        })
        .collect()
}

async fn connect(url: &str) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(url.to_string()).expect("a URL").connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot reach {url}");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, etcd_url, ballot_url, differences] = &args[..] else {
        eprintln!("usage: diff_etcd ETCD_URL BALLOT_URL DIFFERENCES_FILE");
        return std::process::ExitCode::from(2);
    };
    let side = |name, channel| Side { name, channel, leases: Vec::new(), token: None };
    let mut check = Check {
        etcd: side("etcd", connect(etcd_url).await),
        ballot: side("ballot", connect(ballot_url).await),
        known: known_differences(differences),
        steps: 0,
        known_seen: BTreeSet::new(),
        unexplained: Vec::new(),
        etcd_ids: BTreeMap::new(),
        ballot_ids: BTreeMap::new(),
    };
    println!("comparing {} and {}", check.etcd.name, check.ballot.name);
    kv_steps(&mut check).await;
    watch_steps(&mut check).await;
    lease_steps(&mut check).await;
    cluster_steps(&mut check).await;
    maintenance_steps(&mut check).await;
    lock_election_steps(&mut check).await;
    auth_steps(&mut check).await;
    let stale: Vec<&String> =
        check.known.keys().filter(|step| !step.starts_with("gateway:") && !check.known_seen.contains(*step)).collect();
    for step in &stale {
        println!("note: `{step}` is listed as a known difference but now answers the same (or is not a step)");
    }
    println!(
        "{} steps: {} the same, {} known differences, {} unexplained",
        check.steps,
        check.steps - check.known_seen.len() - check.unexplained.len(),
        check.known_seen.len(),
        check.unexplained.len()
    );
    if check.unexplained.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

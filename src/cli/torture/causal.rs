//! The causal workload: each client is a causal session that sends every operation to a
//! member chosen at random, reads without the leader (serializable ranges and read-only txns),
//! and records the revision of every answer. With `--consistency causal` (the default for this
//! workload) every request carries the session's highest revision, and the history must
//! satisfy the session guarantees and the reads' values must match their revisions
//! (`ballot_check::session`); it need not be linearizable. With `--consistency serializable`
//! the same reads are plain serializable ones, and a lagging member (a partition, a pause, or
//! only the time a follower takes to learn of a commit) breaks read-your-writes or monotonic
//! reads: the checker must say so.

use std::sync::atomic::Ordering;

use ballot_check::EventType;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use serde_json::{json, Value};

use super::nemesis::Rng;
use super::workload::{timed, value_of, Context};

/// Runs one causal session until the stop flag is set.
pub async fn run_client(ctx: Context, client: usize, rng: &mut Rng) {
    let dialer = ctx.dialer.fresh();
    let session = dialer.session.clone();
    let channels: Vec<_> = ctx
        .proxies
        .iter()
        .map(|address| {
            let endpoint = dialer.endpoint(&address.to_string()).expect("a loopback URL");
            (endpoint.connect_timeout(std::time::Duration::from_secs(1)).connect_lazy(), address)
        })
        .collect();
    let id = client as u64;
    let mut process = id;
    let mut counter = 0i64;
    let mut logged_in = !dialer.logs_in();
    let record = |process: u64, kind: EventType, f: &str, key: &str, value: Value, revision: Option<i64>| {
        ctx.recorder.record_in_session(process, kind, f, key, value, Some(id), revision);
    };
    while !ctx.stop.load(Ordering::Relaxed) {
        let (raw, _) = &channels[rng.below(channels.len())];
        if !logged_in {
            logged_in = dialer.login(raw).await.is_ok();
            if !logged_in {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        }
        let mut kv = KvClient::new(dialer.wrap(raw.clone()));
        let key = format!("k{}", rng.below(ctx.keys));
        counter += 1;
        match rng.below(10) {
            0..=5 => {
                let range = pb::RangeRequest {
                    key: key.clone().into_bytes(),
                    serializable: dialer.serializable(),
                    ..Default::default()
                };
                record(process, EventType::Invoke, "read", &key, Value::Null, None);
                // A quarter of the reads go as read-only txns, the other read path.
                let answer = if rng.below(4) == 0 {
                    let op = pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(range)) };
                    let txn = pb::TxnRequest { compare: vec![], success: vec![op], failure: vec![] };
                    timed(kv.txn(txn)).await.map(|response| {
                        let kvs = match response.responses.into_iter().next().and_then(|r| r.response) {
                            Some(pb::response_op::Response::ResponseRange(range)) => range.kvs,
                            _ => Vec::new(),
                        };
                        (response.header, kvs)
                    })
                } else {
                    timed(kv.range(range)).await.map(|response| (response.header, response.kvs))
                };
                match answer {
                    Ok((header, kvs)) if session.saw(header.as_ref()).is_ok() => {
                        let value = kvs.first().map_or(Value::Null, |kv| value_of(&kv.value));
                        let revision = header.map(|h| h.revision);
                        record(process, EventType::Ok, "read", &key, value, revision);
                    }
                    // A read changes nothing: a failed one certainly had no effect.
                    _ => record(process, EventType::Fail, "read", &key, Value::Null, None),
                }
            }
            _ => {
                let fresh = (client as i64 + 1) * 1_000_000_000 + counter;
                record(process, EventType::Invoke, "write", &key, json!(fresh), None);
                let put = pb::PutRequest {
                    key: key.clone().into_bytes(),
                    value: fresh.to_string().into_bytes(),
                    ..Default::default()
                };
                match timed(kv.put(put)).await {
                    Ok(response) if session.saw(response.header.as_ref()).is_ok() => {
                        let revision = response.header.map(|h| h.revision);
                        record(process, EventType::Ok, "write", &key, json!(fresh), revision);
                    }
                    _ => {
                        // It may still take effect: later operations belong to a new process
                        // (the session goes on; its guarantees cover only what it saw).
                        record(process, EventType::Info, "write", &key, json!(fresh), None);
                        process += ctx.clients as u64;
                    }
                }
            }
        }
    }
}

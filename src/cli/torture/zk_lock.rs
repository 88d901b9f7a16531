//! The `zk-lock` workload: kazoo's lock recipe through the members' ZooKeeper ports (behind
//! the fault-injecting proxies). Each client opens a session, creates an ephemeral sequential
//! node under the lock node, and holds the lock when its node is the lowest; otherwise it
//! watches its predecessor and looks again when that goes. Holding, it writes its token (the
//! node's sequence number) to the fence node in a multi that also checks its own lock node
//! still stands, then releases by deleting its node.
//!
//! Checked: no two holds overlap while both sessions were certainly alive (a reply came less
//! than half a session timeout before the hold ended); the fenced writes' tokens increase in
//! zxid order; and once every client has gone and every session has closed or expired, the
//! lock node has no children (every acquisition was released or expired).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ballot_check::EventType;
use ballot_server::zk::client::{Client, ZkError};
use ballot_zk::codes::{op, ErrorCode};
use ballot_zk::multi::{MultiOp, MultiRequest, MultiResult};
use ballot_zk::records::{CheckVersionRequest, SetDataRequest};
use serde_json::{json, Value};

use super::nemesis::Rng;
use super::workload::{Context, Hold, OPERATION_TIMEOUT};

/// The lock's node.
pub const LOCK_NODE: &str = "/torture-lock";
/// The node written under the lock.
pub const FENCE_NODE: &str = "/torture-fence";
/// The clients' session timeout.
pub const SESSION_TIMEOUT_MS: i32 = 6_000;

const EPHEMERAL_SEQUENTIAL: i32 = 3;

/// Creates the lock and fence nodes (through member `address`), retried while the cluster
/// elects.
pub fn setup(address: SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = (|| -> Result<(), ZkError> {
            let mut client = Client::connect(&address.to_string(), SESSION_TIMEOUT_MS)?;
            for path in [LOCK_NODE, FENCE_NODE] {
                match client.create(path, b"0", 0) {
                    Ok(_) | Err(ZkError::Code(ErrorCode::NodeExists)) => {}
                    Err(error) => return Err(error),
                }
            }
            client.close()
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(error) if std::time::Instant::now() > deadline => anyhow::bail!("creating the lock node: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The sequence number ending a sequential node's name.
fn sequence(name: &str) -> Option<i64> {
    name.rsplit('-').next()?.parse().ok()
}

/// One client, on a thread of its own (the ZooKeeper client blocks), until the run stops.
pub fn run(ctx: Context, client: usize) {
    let mut rng = Rng::new(ctx.seed ^ (client as u64).wrapping_mul(0x2000_0003));
    let mut node = client % ctx.zk_proxies.len();
    let mut process = client as u64;
    // The operation in flight, if any: the one an error leaves unknown.
    let mut open: Option<(&'static str, Value)> = None;
    let recorder = ctx.recorder.clone();
    let invoke = |open: &mut Option<(&'static str, Value)>, process: u64, f: &'static str, value: Value| {
        recorder.record(process, EventType::Invoke, f, "lock", value.clone());
        *open = Some((f, value));
    };
    let complete = |open: &mut Option<(&'static str, Value)>, process: u64, kind: EventType, value: Value| {
        if let Some((f, _)) = open.take() {
            ctx.recorder.record(process, kind, f, "lock", value);
        }
    };
    while !ctx.stop.load(Ordering::Relaxed) {
        let Ok(mut session) = Client::connect(&ctx.zk_proxies[node].to_string(), SESSION_TIMEOUT_MS) else {
            node = (node + 1) % ctx.zk_proxies.len();
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if session.set_timeout(OPERATION_TIMEOUT).is_err() {
            continue;
        }
        // Rounds on this session until something fails; then a new session elsewhere (the old
        // one, and any node it holds, expires on its own).
        let mut last_reply = ctx.recorder.now();
        let outcome: Result<(), ZkError> = (|| {
            while !ctx.stop.load(Ordering::Relaxed) {
                invoke(&mut open, process, "lock", Value::Null);
                let mine = session.create(&format!("{LOCK_NODE}/lock-"), b"", EPHEMERAL_SEQUENTIAL)?;
                last_reply = ctx.recorder.now();
                let name = mine.rsplit('/').next().unwrap_or_default().to_string();
                let token = sequence(&name).unwrap_or(-1);
                // Wait until ours is the lowest, watching the node just before it.
                loop {
                    if ctx.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let (mut children, _) = session.children(LOCK_NODE, false)?;
                    last_reply = ctx.recorder.now();
                    children.sort_by_key(|child| sequence(child));
                    let position = children.iter().position(|child| *child == name);
                    let Some(position) = position else {
                        // Our node is gone: the session expired under us.
                        return Err(ZkError::Code(ErrorCode::SessionExpired));
                    };
                    if position == 0 {
                        break;
                    }
                    let before = format!("{LOCK_NODE}/{}", children[position - 1]);
                    if session.exists(&before, true)?.is_some() {
                        session.next_event(Duration::from_millis(1000))?;
                    }
                    last_reply = ctx.recorder.now();
                }
                let acquired = ctx.recorder.now();
                complete(&mut open, process, EventType::Ok, json!(token));
                // The fenced write: only while our lock node stands.
                let fence = MultiRequest {
                    ops: vec![
                        MultiOp::Check(CheckVersionRequest { path: mine.clone(), version: -1 }),
                        MultiOp::SetData(SetDataRequest {
                            path: FENCE_NODE.into(),
                            data: Some(token.to_string().into_bytes()),
                            version: -1,
                        }),
                    ],
                };
                invoke(&mut open, process, "fence", json!(token));
                match session.multi(&fence) {
                    Ok(answer) => {
                        last_reply = ctx.recorder.now();
                        match answer.results.get(1) {
                            Some(MultiResult::SetData(stat)) => {
                                ctx.recorder.fences.lock().expect("fences").push((stat.mzxid, token));
                                complete(&mut open, process, EventType::Ok, json!(token));
                            }
                            _ => complete(&mut open, process, EventType::Fail, json!(token)),
                        }
                    }
                    Err(error) => {
                        ctx.recorder.holds.lock().expect("holds").push(Hold {
                            client,
                            token,
                            granted: last_reply,
                            acquired,
                            releasing: ctx.recorder.now(),
                        });
                        return Err(error);
                    }
                }
                std::thread::sleep(rng.millis(20, 200));
                let releasing = ctx.recorder.now();
                ctx.recorder.holds.lock().expect("holds").push(Hold {
                    client,
                    token,
                    granted: last_reply,
                    acquired,
                    releasing,
                });
                invoke(&mut open, process, "unlock", json!(token));
                session.delete(&mine, -1)?;
                complete(&mut open, process, EventType::Ok, json!(token));
                last_reply = ctx.recorder.now();
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                let value = open.as_ref().map_or(Value::Null, |(_, value)| value.clone());
                complete(&mut open, process, EventType::Info, value);
                let _ = session.call(op::CLOSE_SESSION, &[]);
            }
            Err(_) => {
                // Whatever was in flight may still happen: a new process, on another member.
                let value = open.as_ref().map_or(Value::Null, |(_, value)| value.clone());
                complete(&mut open, process, EventType::Info, value);
                process += ctx.clients as u64;
                node = (node + 1) % ctx.zk_proxies.len();
            }
        }
    }
}

/// The fenced writes' violations: tokens that did not increase in the order of the zxids at
/// which they were written.
pub fn check_fences(fences: &[(i64, i64)]) -> Vec<String> {
    let mut in_order = fences.to_vec();
    in_order.sort_unstable();
    in_order
        .windows(2)
        .filter(|pair| pair[1].1 <= pair[0].1)
        .map(|pair| {
            format!(
                "fenced writes went from token {} (zxid {}) to token {} (zxid {}): not increasing",
                pair[0].1, pair[0].0, pair[1].1, pair[1].0
            )
        })
        .collect()
}

/// Waits (bounded) until the lock node has no children: every hold released or expired.
pub fn wait_released(address: SocketAddr, within: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + within;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        match Client::connect(&address.to_string(), SESSION_TIMEOUT_MS) {
            Ok(mut client) => {
                let children = client.children(LOCK_NODE, false);
                let _ = client.close();
                match children {
                    Ok((children, _)) if children.is_empty() => return Ok(()),
                    Ok((children, _)) => last = format!("still under {LOCK_NODE}: {children:?}"),
                    Err(error) => last = error.to_string(),
                }
            }
            Err(error) => last = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("locks neither released nor expired {} s after the run: {last}", within.as_secs()))
}

//! The workloads: clients that run operations through the fault-injecting proxies and record
//! every invocation and completion in a history, and the checks of what the linearizability
//! checker does not cover (fencing tokens, mutual exclusion, revoked leases).
//!
//! An operation that times out or fails in transit is recorded as `info` (it may have
//! happened), never as `fail`, unless the answer proves it did not happen (a txn whose compare
//! failed, or a read, which changes nothing). After an `info`, the client continues as a new
//! process, as its old operation may still take effect at any later time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballot_check::{Event, EventType};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use ballot_proto::etcdserverpb::{kv_client::KvClient, lease_client::LeaseClient};
use ballot_proto::v3lockpb::{lock_client::LockClient, LockRequest, UnlockRequest};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::cli::connect::{Conn, Dialer};

use super::nemesis::Rng;

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// read / write / cas on a few keys.
    Register,
    /// get / put / delete / txn (cas) on a few keys.
    Kv,
    /// Lock, write a fencing token under the lock, unlock.
    Lock,
    /// Grant, put with the lease, revoke, read.
    Lease,
    /// kazoo's lock recipe over the ZooKeeper protocol (see `zk_lock`).
    ZkLock,
    /// Reads and writes through a random member per operation, in causal sessions (see
    /// `causal`).
    Causal,
}

impl Workload {
    /// Parses a workload name.
    pub fn parse(text: &str) -> anyhow::Result<Workload> {
        Ok(match text {
            "register" => Workload::Register,
            "kv" => Workload::Kv,
            "lock" => Workload::Lock,
            "lease" => Workload::Lease,
            "zk-lock" => Workload::ZkLock,
            "causal" => Workload::Causal,
            other => anyhow::bail!("unknown workload {other:?} (register, kv, lock, lease, zk-lock, causal)"),
        })
    }
}

/// How long an operation may take before it is recorded as unknown.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// The lock workload's lease TTL, seconds.
const LOCK_TTL: i64 = 10;
/// The lock everyone takes.
const LOCK_NAME: &[u8] = b"torture-lock";
/// The key written under the lock, with the holder's fencing token.
pub const FENCE_KEY: &[u8] = b"torture-fence";

/// The shared history and the lock and lease workloads' own records.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    /// Lock holds, for the mutual exclusion check.
    pub holds: Mutex<Vec<Hold>>,
    /// Lease keys read after their lease was revoked: (key, lease, read result present).
    pub after_revoke: Mutex<Vec<(String, i64, bool)>>,
    /// Leases whose revoke was acknowledged, with their key.
    pub revoked: Mutex<Vec<(String, i64)>>,
    /// The zk-lock workload's fenced writes: (zxid, token).
    pub fences: Mutex<Vec<(i64, i64)>>,
}

/// One lock hold whose acquisition was acknowledged.
#[derive(Clone, Debug)]
pub struct Hold {
    /// The client.
    pub client: usize,
    /// The fencing token (the lock key's create revision).
    pub token: i64,
    /// When the lease was granted (ns).
    pub granted: u64,
    /// When Lock returned (ns): held from before this.
    pub acquired: u64,
    /// When Unlock was invoked (ns): held until after this.
    pub releasing: u64,
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            holds: Mutex::new(Vec::new()),
            after_revoke: Mutex::new(Vec::new()),
            revoked: Mutex::new(Vec::new()),
            fences: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records one event of the history.
    pub fn record(&self, process: u64, kind: EventType, f: &str, key: &str, value: Value) {
        self.record_in_session(process, kind, f, key, value, None, None);
    }

    /// Records one event of a causal session's history: its session, and on a completion the
    /// revision of the answer.
    #[allow(clippy::too_many_arguments)]
    pub fn record_in_session(
        &self,
        process: u64,
        kind: EventType,
        f: &str,
        key: &str,
        value: Value,
        session: Option<u64>,
        revision: Option<i64>,
    ) {
        let time = self.now();
        let event = Event { process, kind, f: f.into(), key: key.into(), value, time, session, revision };
        self.events.lock().expect("history").push(event);
    }

    /// The history so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("history").clone()
    }
}

/// What each client needs.
#[derive(Clone)]
pub struct Context {
    /// The workload.
    pub workload: Workload,
    /// The members' client proxies.
    pub proxies: Vec<SocketAddr>,
    /// The members' ZooKeeper proxies.
    pub zk_proxies: Vec<SocketAddr>,
    /// Number of clients.
    pub clients: usize,
    /// Number of keys.
    pub keys: usize,
    /// Set when the run ends.
    pub stop: Arc<AtomicBool>,
    /// The history.
    pub recorder: Arc<Recorder>,
    /// The workload's seed.
    pub seed: u64,
    /// Dials the proxies with the cluster's TLS settings, as the workload's user.
    pub dialer: Dialer,
}

/// An operation's answer, or why there was none, within [`OPERATION_TIMEOUT`].
pub(super) async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("timed out".into()),
    }
}

/// A client's connection to one member, moved to the next member after an error.
struct Session {
    ctx: Context,
    client: usize,
    process: u64,
    node: usize,
    /// This client's own login.
    dialer: Dialer,
    raw: Channel,
    channel: Conn,
    /// Log in before the next operation (at the start, and after a failover: the member may
    /// have forgotten the token, as a restarted one does).
    needs_login: bool,
}

impl Session {
    fn new(ctx: Context, client: usize) -> Session {
        let node = client % ctx.proxies.len();
        let dialer = ctx.dialer.fresh();
        let raw = Self::lazy(&dialer, ctx.proxies[node]);
        let channel = dialer.wrap(raw.clone());
        let needs_login = dialer.logs_in();
        Session { ctx, client, process: client as u64, node, dialer, raw, channel, needs_login }
    }

    fn lazy(dialer: &Dialer, address: SocketAddr) -> Channel {
        dialer
            .endpoint(&address.to_string())
            .expect("a loopback URL")
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy()
    }

    /// After an unknown outcome: a new process on the next member.
    fn failed_over(&mut self) {
        self.process += self.ctx.clients as u64;
        self.node = (self.node + 1) % self.ctx.proxies.len();
        self.raw = Self::lazy(&self.dialer, self.ctx.proxies[self.node]);
        self.channel = self.dialer.wrap(self.raw.clone());
        self.needs_login = self.dialer.logs_in();
    }

    /// Logs in if due, failing over until a member lets it (or the run ends). Logins are not
    /// operations of the history: nothing is recorded.
    async fn ready(&mut self) {
        while self.needs_login && !self.ctx.stop.load(Ordering::Relaxed) {
            match self.dialer.login(&self.raw).await {
                Ok(()) => self.needs_login = false,
                Err(_) => {
                    self.failed_over();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn kv(&self) -> KvClient<Conn> {
        KvClient::new(self.channel.clone())
    }

    fn invoke(&self, f: &str, key: &str, value: Value) {
        self.ctx.recorder.record(self.process, EventType::Invoke, f, key, value);
    }

    fn complete(&self, kind: EventType, f: &str, key: &str, value: Value) {
        self.ctx.recorder.record(self.process, kind, f, key, value);
    }
}

/// A stored value as the history records it (a number, or null).
pub(super) fn value_of(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes).ok().and_then(|text| text.parse::<i64>().ok()).map_or(Value::Null, Value::from)
}

fn compare_value(key: &[u8], expected: &[u8], result: CompareResult) -> pb::Compare {
    pb::Compare {
        result: result as i32,
        target: CompareTarget::Value as i32,
        key: key.to_vec(),
        range_end: vec![],
        target_union: Some(TargetUnion::Value(expected.to_vec())),
    }
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

/// Runs one client until the stop flag is set.
pub async fn run_client(ctx: Context, client: usize) {
    let mut rng = Rng::new(ctx.seed ^ (client as u64).wrapping_mul(0x1000_0001));
    let mut session = Session::new(ctx.clone(), client);
    match ctx.workload {
        Workload::Register | Workload::Kv => register_client(&mut session, &mut rng).await,
        Workload::Lock => lock_client(&mut session, &mut rng).await,
        Workload::Lease => lease_client(&mut session, &mut rng).await,
        Workload::ZkLock => {
            let _ = tokio::task::spawn_blocking(move || super::zk_lock::run(ctx, client)).await;
        }
        Workload::Causal => super::causal::run_client(ctx, client, &mut rng).await,
    }
}

async fn register_client(session: &mut Session, rng: &mut Rng) {
    let ctx = session.ctx.clone();
    let mut counter = 0i64;
    let mut known: HashMap<String, i64> = HashMap::new();
    while !ctx.stop.load(Ordering::Relaxed) {
        session.ready().await;
        let key = format!("k{}", rng.below(ctx.keys));
        counter += 1;
        let fresh = (session.client as i64 + 1) * 1_000_000_000 + counter;
        let choice = rng.below(10);
        match choice {
            0..=3 => {
                session.invoke("read", &key, Value::Null);
                let request = pb::RangeRequest { key: key.clone().into_bytes(), ..Default::default() };
                match timed(session.kv().range(request)).await {
                    Ok(response) => {
                        let value = response.kvs.first().map_or(Value::Null, |kv| value_of(&kv.value));
                        if let Some(v) = value.as_i64() {
                            known.insert(key.clone(), v);
                        }
                        session.complete(EventType::Ok, "read", &key, value);
                    }
                    Err(_) => {
                        // A read changes nothing: a failed one certainly had no effect.
                        session.complete(EventType::Fail, "read", &key, Value::Null);
                        session.failed_over();
                    }
                }
            }
            4..=6 => {
                session.invoke("write", &key, json!(fresh));
                let request = pb::PutRequest {
                    key: key.clone().into_bytes(),
                    value: fresh.to_string().into_bytes(),
                    ..Default::default()
                };
                match timed(session.kv().put(request)).await {
                    Ok(_) => {
                        known.insert(key.clone(), fresh);
                        session.complete(EventType::Ok, "write", &key, json!(fresh));
                    }
                    Err(_) => {
                        session.complete(EventType::Info, "write", &key, json!(fresh));
                        session.failed_over();
                    }
                }
            }
            9 if ctx.workload == Workload::Kv => {
                session.invoke("delete", &key, Value::Null);
                let request = pb::DeleteRangeRequest { key: key.clone().into_bytes(), ..Default::default() };
                match timed(session.kv().delete_range(request)).await {
                    Ok(_) => {
                        known.remove(&key);
                        session.complete(EventType::Ok, "delete", &key, Value::Null);
                    }
                    Err(_) => {
                        session.complete(EventType::Info, "delete", &key, Value::Null);
                        session.failed_over();
                    }
                }
            }
            _ => {
                let expected = known.get(&key).copied().unwrap_or(fresh - 1);
                let pair = json!([expected, fresh]);
                session.invoke("cas", &key, pair.clone());
                let request = pb::TxnRequest {
                    compare: vec![compare_value(key.as_bytes(), expected.to_string().as_bytes(), CompareResult::Equal)],
                    success: vec![put_op(key.as_bytes(), fresh.to_string().as_bytes(), 0)],
                    failure: vec![],
                };
                match timed(session.kv().txn(request)).await {
                    Ok(response) if response.succeeded => {
                        known.insert(key.clone(), fresh);
                        session.complete(EventType::Ok, "cas", &key, pair);
                    }
                    Ok(_) => {
                        known.remove(&key);
                        session.complete(EventType::Fail, "cas", &key, pair);
                    }
                    Err(_) => {
                        session.complete(EventType::Info, "cas", &key, pair);
                        session.failed_over();
                    }
                }
            }
        }
    }
}

/// A fencing token as the fence key holds it: zero-padded, so byte order is number order.
pub fn token_text(token: i64) -> String {
    format!("{token:020}")
}

async fn lock_client(session: &mut Session, rng: &mut Rng) {
    let ctx = session.ctx.clone();
    while !ctx.stop.load(Ordering::Relaxed) {
        session.ready().await;
        let granted = ctx.recorder.now();
        session.invoke("grant", "lease", json!(LOCK_TTL));
        let lease = match timed(
            LeaseClient::new(session.channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl: LOCK_TTL, id: 0 }),
        )
        .await
        {
            Ok(response) => {
                session.complete(EventType::Ok, "grant", "lease", json!(response.id));
                response.id
            }
            Err(_) => {
                session.complete(EventType::Info, "grant", "lease", Value::Null);
                session.failed_over();
                continue;
            }
        };
        session.invoke("lock", "lock", json!(lease));
        let request = LockRequest { name: LOCK_NAME.to_vec(), lease };
        let key =
            match tokio::time::timeout(Duration::from_secs(6), LockClient::new(session.channel.clone()).lock(request))
                .await
            {
                Ok(Ok(response)) => response.into_inner().key,
                _ => {
                    session.complete(EventType::Info, "lock", "lock", Value::Null);
                    let _ = timed(
                        LeaseClient::new(session.channel.clone()).lease_revoke(pb::LeaseRevokeRequest { id: lease }),
                    )
                    .await;
                    session.failed_over();
                    continue;
                }
            };
        let acquired = ctx.recorder.now();
        // The fencing token: the lock key's create revision (it orders the holders).
        let token = match timed(session.kv().range(pb::RangeRequest { key: key.clone(), ..Default::default() })).await {
            Ok(response) => response.kvs.first().map_or(0, |kv| kv.create_revision),
            Err(_) => 0,
        };
        session.complete(EventType::Ok, "lock", "lock", json!(token));
        if token > 0 {
            // Write the token under the lock: only while the lock key still stands, and only
            // over a smaller token (the fence a storage service would apply).
            let fence = pb::TxnRequest {
                compare: vec![
                    pb::Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Create as i32,
                        key: key.clone(),
                        range_end: vec![],
                        target_union: Some(TargetUnion::CreateRevision(token)),
                    },
                    compare_value(FENCE_KEY, token_text(token).as_bytes(), CompareResult::Less),
                ],
                success: vec![put_op(FENCE_KEY, token_text(token).as_bytes(), 0)],
                failure: vec![],
            };
            session.invoke("fence", "fence", json!(token));
            match timed(session.kv().txn(fence)).await {
                Ok(response) => session.complete(
                    if response.succeeded { EventType::Ok } else { EventType::Fail },
                    "fence",
                    "fence",
                    json!(token),
                ),
                Err(_) => session.complete(EventType::Info, "fence", "fence", json!(token)),
            }
        }
        tokio::time::sleep(rng.millis(20, 200)).await;
        let releasing = ctx.recorder.now();
        session.invoke("unlock", "lock", json!(token));
        let released = timed(LockClient::new(session.channel.clone()).unlock(UnlockRequest { key })).await.is_ok();
        session.complete(if released { EventType::Ok } else { EventType::Info }, "unlock", "lock", json!(token));
        if token > 0 {
            ctx.recorder.holds.lock().expect("holds").push(Hold {
                client: session.client,
                token,
                granted,
                acquired,
                releasing,
            });
        }
        let _ =
            timed(LeaseClient::new(session.channel.clone()).lease_revoke(pb::LeaseRevokeRequest { id: lease })).await;
        if !released {
            session.failed_over();
        }
    }
}

async fn lease_client(session: &mut Session, rng: &mut Rng) {
    let ctx = session.ctx.clone();
    let mut counter = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        session.ready().await;
        counter += 1;
        let key = format!("lease/{}/{counter}", session.client);
        session.invoke("grant", &key, json!(10));
        let lease = match timed(
            LeaseClient::new(session.channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl: 10, id: 0 }),
        )
        .await
        {
            Ok(response) => {
                session.complete(EventType::Ok, "grant", &key, json!(response.id));
                response.id
            }
            Err(_) => {
                session.complete(EventType::Info, "grant", &key, Value::Null);
                session.failed_over();
                continue;
            }
        };
        session.invoke("put", &key, json!(lease));
        let put = pb::PutRequest { key: key.clone().into_bytes(), value: b"1".to_vec(), lease, ..Default::default() };
        if timed(session.kv().put(put)).await.is_err() {
            session.complete(EventType::Info, "put", &key, json!(lease));
            session.failed_over();
            continue;
        }
        session.complete(EventType::Ok, "put", &key, json!(lease));
        tokio::time::sleep(rng.millis(0, 100)).await;
        session.invoke("revoke", &key, json!(lease));
        match timed(LeaseClient::new(session.channel.clone()).lease_revoke(pb::LeaseRevokeRequest { id: lease })).await
        {
            Ok(_) => {
                session.complete(EventType::Ok, "revoke", &key, json!(lease));
                ctx.recorder.revoked.lock().expect("revoked").push((key.clone(), lease));
            }
            Err(_) => {
                session.complete(EventType::Info, "revoke", &key, json!(lease));
                session.failed_over();
                continue;
            }
        }
        // Read it back (from any member the client now talks to): it must be gone.
        session.invoke("read", &key, Value::Null);
        match timed(session.kv().range(pb::RangeRequest { key: key.clone().into_bytes(), ..Default::default() })).await
        {
            Ok(response) => {
                let present = !response.kvs.is_empty();
                session.complete(EventType::Ok, "read", &key, json!(present));
                ctx.recorder.after_revoke.lock().expect("reads").push((key, lease, present));
            }
            Err(_) => {
                session.complete(EventType::Fail, "read", &key, Value::Null);
                session.failed_over();
            }
        }
    }
}

/// The lock workload's violations: two acknowledged holds that overlap while both leases
/// were certainly alive, or fencing tokens that did not only increase.
pub fn check_lock(recorder: &Recorder, fence_values: &[i64]) -> Vec<String> {
    check_holds(recorder, fence_values, Duration::from_secs(LOCK_TTL as u64))
}

/// [`check_lock`] with `ttl`: how long after `granted` a hold is certainly still alive.
pub fn check_holds(recorder: &Recorder, fence_values: &[i64], ttl: Duration) -> Vec<String> {
    let mut violations = Vec::new();
    for pair in fence_values.windows(2) {
        if pair[1] <= pair[0] {
            violations.push(format!("fencing tokens went from {} to {}: not strictly increasing", pair[0], pair[1]));
        }
    }
    let ttl = ttl.as_nanos() as u64;
    let holds = recorder.holds.lock().expect("holds");
    // A hold is certain from `acquired` to `releasing` if its lease cannot have expired by
    // then: it was granted less than a TTL before.
    let certain: Vec<&Hold> = holds.iter().filter(|h| h.releasing.saturating_sub(h.granted) < ttl).collect();
    for (i, a) in certain.iter().enumerate() {
        for b in &certain[i + 1..] {
            if a.acquired < b.releasing && b.acquired < a.releasing {
                violations.push(format!(
                    "clients {} (token {}) and {} (token {}) both held the lock between {} and {} ms",
                    a.client,
                    a.token,
                    b.client,
                    b.token,
                    a.acquired.max(b.acquired) / 1_000_000,
                    a.releasing.min(b.releasing) / 1_000_000
                ));
            }
        }
    }
    let mut tokens: Vec<i64> = holds.iter().map(|h| h.token).collect();
    tokens.sort_unstable();
    for pair in tokens.windows(2) {
        if pair[0] == pair[1] {
            violations.push(format!("two holders got the same fencing token {}", pair[0]));
        }
    }
    violations
}

/// The lease workload's violations: a key read back after its lease's revoke was
/// acknowledged, or still there at the end.
pub fn check_lease(recorder: &Recorder, remaining: &[String]) -> Vec<String> {
    let mut violations = Vec::new();
    for (key, lease, present) in recorder.after_revoke.lock().expect("reads").iter() {
        if *present {
            violations.push(format!("{key} was read after its lease {lease:x} was revoked"));
        }
    }
    let revoked = recorder.revoked.lock().expect("revoked");
    for key in remaining {
        if let Some((_, lease)) = revoked.iter().find(|(k, _)| k == key) {
            violations.push(format!("{key} outlived its revoked lease {lease:x}"));
        }
    }
    violations
}

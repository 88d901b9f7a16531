//! The etcd v3 API, below any protocol. Each service takes a [`Caller`] (who is asking) and
//! etcd's request message, and answers etcd's response message or etcd's error: it validates
//! the request (sizes, key ranges, limits), then proposes a command through the Raft loop, reads
//! after a ReadIndex barrier, or queries the loop. Writes that reach a follower are forwarded
//! to the leader's client endpoint, so clients can talk to any member.
//!
//! The front ends are translators over these services: [`grpc`] (tonic's servers) and
//! [`gateway`] (etcd's JSON gateway). Neither decides anything.

pub mod auth;
pub mod caller;
pub mod cluster;
pub mod convert;
pub mod election;
pub mod gateway;
pub mod grpc;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballot_mvcc::{Applied, Command, RangeRequest, RangeResponse, Reader, TxnRequest, TxnResponse};
use ballot_proto::etcdserverpb::ResponseHeader;
use ballot_raft::NodeId;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use caller::{Caller, MIN_REVISION};

use crate::auth::{Identity, TokenError, Tokens};
use crate::driver::{Answer, ApiError, Inbox, Input, Query, Reply};
use crate::members::Members;
use crate::metrics::Metrics;

/// Limits on requests, as etcd's flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request (`--max-request-bytes`).
    pub request_bytes_max: usize,
    /// Most operations in one txn (`--max-txn-ops`).
    pub txn_ops_max: usize,
    /// How long a request may wait for its result.
    pub request_timeout: Duration,
    /// Smallest lease TTL granted, seconds.
    pub lease_ttl_min: i64,
}

/// Ranges limited to at most this many keys are read on the request's own task; larger ones on
/// a blocking thread.
const RANGE_INLINE_LIMIT: i64 = 1000;

/// A range short enough to serve on a runtime worker: one key, or a small limit.
fn range_is_short(request: &RangeRequest) -> bool {
    request.range_end.is_empty() || (1..=RANGE_INLINE_LIMIT).contains(&request.limit)
}

/// Every range of a read-only txn (both branches, nested txns) is short.
fn txn_ranges_are_short(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| match op {
        ballot_mvcc::RequestOp::Range(range) => range_is_short(range),
        ballot_mvcc::RequestOp::Txn(nested) => txn_ranges_are_short(nested),
        ballot_mvcc::RequestOp::Put(_) | ballot_mvcc::RequestOp::DeleteRange(_) => true,
    })
}
/// Most forwards of one request.
const FORWARDS_MAX: u8 = 3;

/// What every service needs: the way to the Raft loop, and who we are.
#[derive(Clone)]
pub struct Handle {
    inbox: Inbox,
    /// Cluster id for headers.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: NodeId,
    /// The member table.
    pub members: Members,
    /// Request limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// What requests read without going through the loop.
    local: Local,
}

/// The member's state that requests read without going through the loop.
#[derive(Clone)]
pub struct Local {
    /// Reads the store.
    pub reader: Reader,
    /// The current term, as the loop last published it.
    pub term: Arc<AtomicU64>,
    /// The store's revision, as the loop last published it (causal reads wait on it).
    pub applied: tokio::sync::watch::Receiver<i64>,
    /// `--max-causal-wait`.
    pub max_causal_wait: Duration,
    /// The CORRUPT alarm is raised (the loop checks each tick): reads are refused, as etcd does.
    pub corrupt: Arc<std::sync::atomic::AtomicBool>,
    /// Where files built for a request go (an etcd-format snapshot); emptied at start.
    pub scratch_dir: std::path::PathBuf,
    /// This member's auth tokens.
    pub tokens: Arc<Tokens>,
    /// TLS for requests forwarded to the leader's client URL (https://), if the client port
    /// has TLS.
    pub forward_tls: Option<tonic::transport::ClientTlsConfig>,
    /// `--client-cert-auth`: a client certificate's common name is the user when there is no
    /// token.
    pub client_cert_auth: bool,
}

/// etcd's gRPC status for an error.
pub fn status(error: ApiError) -> Status {
    use ballot_mvcc::Error as E;
    let code = match &error {
        ApiError::NotLeader(_) => Code::FailedPrecondition,
        ApiError::NoLeader | ApiError::Stopped | ApiError::Timeout => Code::Unavailable,
        ApiError::TooManyRequests => Code::ResourceExhausted,
        ApiError::ClockSkew(_) => Code::Unavailable,
        ApiError::Unsupported(_) => Code::Unimplemented,
        ApiError::Mvcc(error) => match error {
            E::Compacted | E::FutureRevision => Code::OutOfRange,
            E::LeaseNotFound => Code::NotFound,
            E::LeaseExists => Code::FailedPrecondition,
            E::InvalidLeaseId | E::KeyNotFound | E::DuplicateKey | E::ReservedKey => Code::InvalidArgument,
            E::NoSpace => Code::ResourceExhausted,
            E::Corrupt => Code::DataLoss,
            E::Storage(_) => Code::Internal,
            E::PermissionDenied => Code::PermissionDenied,
            E::InvalidAuthToken => Code::Unauthenticated,
            E::UserEmpty | E::AuthOldRevision | E::AuthFailed | E::RoleEmpty | E::InvalidAuthMgmt => {
                Code::InvalidArgument
            }
            E::AuthNotEnabled
            | E::UserAlreadyExists
            | E::UserNotFound
            | E::RoleAlreadyExists
            | E::RoleNotFound
            | E::RoleNotGranted
            | E::PermissionNotGranted
            | E::RootUserNotExist
            | E::RootRoleNotExist => Code::FailedPrecondition,
        },
    };
    Status::new(code, error.to_string())
}

/// An `InvalidArgument` with etcd's message.
pub fn invalid(message: &str) -> Status {
    Status::invalid_argument(message)
}

impl Handle {
    /// A handle on the loop.
    pub fn new(
        inbox: Inbox,
        cluster_id: u64,
        member_id: NodeId,
        members: Members,
        limits: Limits,
        metrics: Arc<Metrics>,
        local: Local,
    ) -> Handle {
        Handle { inbox, cluster_id, member_id, members, limits, metrics, channels: Arc::default(), local }
    }

    /// This member's auth tokens.
    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.local.tokens
    }

    /// Whether a client certificate's common name is the user (`--client-cert-auth`): front
    /// ends read it when they fill a [`Caller`].
    pub fn client_cert_auth(&self) -> bool {
        self.local.client_cert_auth
    }

    /// The user `caller` is: the one its token names (nobody without one). A token this member
    /// does not know may be a login it has not applied yet: it is looked up again after a
    /// ReadIndex barrier (the login was committed before the client had the token).
    pub async fn identity(&self, caller: &Caller) -> Result<Identity, Status> {
        // Credentials are looked at even while this member has authentication off: it may not
        // have applied an enable yet that the client has seen, and the checks after the
        // request's barrier must then know who it is.
        let enabled = self.local.reader.auth_enabled();
        let invalid = || {
            if enabled {
                Err(status(ApiError::Mvcc(ballot_mvcc::Error::InvalidAuthToken)))
            } else {
                // With authentication off, etcd ignores tokens.
                Ok(Identity::default())
            }
        };
        if let Some(token) = &caller.token {
            return match self.local.tokens.check(token) {
                Ok(identity) => Ok(identity),
                Err(TokenError::Unknown) if self.local.tokens.is_simple() => {
                    self.barrier().await?;
                    self.local.tokens.check(token).or_else(|_| invalid())
                }
                Err(_) => invalid(),
            };
        }
        if let Some(signed) = &caller.forwarded_identity {
            let key = self.authorize(|auth| auth.forward_key())?;
            return match key.and_then(|key| crate::auth::verify_forwarded(&key, signed)) {
                Some(identity) => Ok(identity),
                None => invalid(),
            };
        }
        if let Some(user) = &caller.certificate_user {
            // Checked against the state at each request: no token to grow old.
            return Ok(Identity { user: user.clone(), revision: u64::MAX });
        }
        Ok(Identity::default())
    }

    /// What a request forwarded to the leader must carry for a user this member identified by
    /// certificate (tokens travel as they are).
    fn forward_identity(&self, caller: &Caller) -> Option<tonic::metadata::AsciiMetadataValue> {
        if let Some(signed) = &caller.forwarded_identity {
            return signed.parse().ok();
        }
        let user = caller.certificate_user.as_ref()?;
        let key = self.local.reader.auth(|auth| auth.forward_key()).ok()??;
        crate::auth::sign_forwarded(&key, user)?.parse().ok()
    }

    /// Runs `check` on this member's auth state; its error becomes etcd's status.
    pub fn authorize<T>(
        &self,
        check: impl FnOnce(&ballot_mvcc::ReadAuth) -> Result<T, ballot_mvcc::Error>,
    ) -> Result<T, Status> {
        self.local.reader.auth(check).map_err(|error| status(ApiError::Mvcc(error)))
    }

    /// Refuses unless `identity` may read `[key, range_end)` (as of this member's state).
    pub fn check_read(&self, identity: &Identity, key: &[u8], range_end: &[u8]) -> Result<(), Status> {
        if !self.local.reader.auth_enabled() {
            return Ok(());
        }
        let kind = ballot_mvcc::auth::PermissionKind::Read;
        self.authorize(|auth| auth.check_range(&identity.user, identity.revision, kind, key, range_end))
    }

    /// Refuses unless `identity` is a valid user (any, when authentication is on).
    pub fn check_user(&self, identity: &Identity) -> Result<(), Status> {
        if !self.local.reader.auth_enabled() {
            return Ok(());
        }
        self.authorize(|auth| auth.identify(&identity.user, identity.revision).map(|_| ()))
    }

    /// Refuses unless `identity` has the root role, after a ReadIndex barrier (so a role revoked
    /// anywhere before this request began counts).
    pub async fn check_admin(&self, identity: &Identity) -> Result<(), Status> {
        if !self.local.reader.auth_enabled() {
            return Ok(());
        }
        self.barrier().await?;
        self.authorize(|auth| auth.check_admin(&identity.user, identity.revision))
    }

    /// Sends an input to the loop.
    pub fn send(&self, input: Input) -> Result<(), Status> {
        self.inbox.send(input).map_err(|_| status(ApiError::Stopped))
    }

    /// A response header.
    pub fn header(&self, revision: i64, term: u64) -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: self.cluster_id, member_id: self.member_id, revision, raft_term: term })
    }

    /// Waits for an answer within the request timeout.
    async fn wait<T>(&self, rx: oneshot::Receiver<Result<Answer<T>, ApiError>>) -> Result<Answer<T>, ApiError> {
        match tokio::time::timeout(self.limits.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ApiError::Stopped),
            Err(_) => Err(ApiError::Timeout),
        }
    }

    /// Runs `query` on the loop thread and returns what it produced.
    pub async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut crate::driver::Core) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        let boxed: Query = Box::new(move |core| {
            let _ = tx.send(query(core));
        });
        self.send(Input::Query(boxed))?;
        match tokio::time::timeout(self.limits.request_timeout, rx).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(status(ApiError::Stopped)),
            Err(_) => Err(status(ApiError::Timeout)),
        }
    }

    /// Sends the input `make` builds around a reply channel and waits for the answer, again
    /// while no leader is known or the leader is handing over (both pass within an election),
    /// until the request timeout.
    async fn ask<T>(&self, make: impl Fn(Reply<T>) -> Input) -> Result<Answer<T>, ApiError> {
        let deadline = Instant::now() + self.limits.request_timeout;
        loop {
            let (tx, rx) = oneshot::channel();
            self.send(make(tx)).map_err(|_| ApiError::Stopped)?;
            match self.wait(rx).await {
                Err(ApiError::NoLeader | ApiError::TooManyRequests) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    }

    /// A ReadIndex barrier: what follows sees every change committed before it began.
    pub async fn barrier(&self) -> Result<(), Status> {
        let passed = self.ask(Input::ReadBarrier).await;
        if passed.is_err() {
            self.metrics.read_indexes_failed.inc();
        }
        passed.map(|_| ()).map_err(status)
    }

    /// Proposes `command` on behalf of `identity`: the state machine checks its permission.
    pub async fn propose_as(&self, identity: &Identity, command: Command) -> Result<Answer<Applied>, ApiError> {
        self.propose(as_user(identity, command)).await
    }

    /// Proposes a write; `Err(NotLeader)` tells the caller to forward.
    pub async fn propose(&self, command: Command) -> Result<Answer<Applied>, ApiError> {
        let started = Instant::now();
        let result = self.ask(|tx| Input::Propose(command.clone(), tx)).await;
        self.metrics.write_seconds.observe(started.elapsed().as_secs_f64());
        // Refused here to be forwarded is not a failure; no result (timeout, a proposal Raft
        // dropped, the member stopping) is.
        if matches!(result, Err(ApiError::Timeout | ApiError::TooManyRequests | ApiError::Stopped | ApiError::NoLeader))
        {
            self.metrics.proposals_failed.inc();
        }
        result
    }

    /// The current term, as the loop last published it.
    pub fn term(&self) -> u64 {
        self.local.term.load(Ordering::Relaxed)
    }

    /// Reads the store without the loop.
    pub fn reader(&self) -> &Reader {
        &self.local.reader
    }

    /// An endpoint for another member's client URL, with TLS if the URL is https://.
    pub fn endpoint(&self, url: &str) -> Result<tonic::transport::Endpoint, Status> {
        let endpoint = Channel::from_shared(url.to_string()).map_err(|_| status(ApiError::NoLeader))?;
        match (&self.local.forward_tls, url.starts_with("https://")) {
            (Some(tls), true) => {
                endpoint.tls_config(tls.clone()).map_err(|error| Status::internal(format!("TLS to {url}: {error}")))
            }
            _ => Ok(endpoint),
        }
    }

    /// Where files built for a request go.
    pub fn scratch_dir(&self) -> &std::path::Path {
        &self.local.scratch_dir
    }

    /// A linearizable read: a ReadIndex barrier through the loop, then the range read here.
    pub async fn read(&self, identity: &Identity, request: RangeRequest) -> Result<Answer<RangeResponse>, Status> {
        #[cfg(feature = "fault-injection")]
        if crate::STALE_READS.load(Ordering::Relaxed) {
            self.check_read(identity, &request.key, &request.range_end)?;
            return self.range(request).await.map_err(status);
        }
        self.barrier().await?;
        self.check_read(identity, &request.key, &request.range_end)?;
        self.range(request).await.map_err(status)
    }

    /// Serves a range from the store on this task, or on a blocking thread if it may be long
    /// (no limit, or a large one), so a big range does not hold up a runtime worker.
    async fn range(&self, request: RangeRequest) -> Result<Answer<RangeResponse>, ApiError> {
        if self.local.corrupt.load(Ordering::Relaxed) {
            return Err(ApiError::Mvcc(ballot_mvcc::Error::Corrupt));
        }
        let short = range_is_short(&request);
        let reader = self.local.reader.clone();
        let read = move || reader.range(&request);
        let result =
            if short { read() } else { tokio::task::spawn_blocking(read).await.map_err(|_| ApiError::Stopped)? };
        let (value, revision) = result.map_err(ApiError::Mvcc)?;
        Ok(Answer { value, revision, term: self.local.term.load(Ordering::Relaxed) })
    }

    /// A txn that only reads, served at a read point instead of through the log (etcd does the
    /// same): after a ReadIndex barrier unless `serializable` (every range in it is), then at
    /// this member's current revision, on a blocking thread if any range may be long.
    pub async fn read_only_txn(
        &self,
        identity: &Identity,
        request: TxnRequest,
        serializable: bool,
        min_revision: Option<i64>,
    ) -> Result<Answer<TxnResponse>, Status> {
        if serializable {
            self.caught_up(min_revision).await?;
        } else {
            self.barrier().await?;
        }
        if self.local.reader.auth_enabled() {
            self.authorize(|auth| auth.check_read_only_txn(&identity.user, identity.revision, &request))?;
        }
        if self.local.corrupt.load(Ordering::Relaxed) {
            return Err(status(ApiError::Mvcc(ballot_mvcc::Error::Corrupt)));
        }
        let short = txn_ranges_are_short(&request);
        let reader = self.local.reader.clone();
        let read = move || reader.read_only_txn(&request);
        let result = if short {
            read()
        } else {
            tokio::task::spawn_blocking(read).await.map_err(|_| status(ApiError::Stopped))?
        };
        let (value, revision) = result.map_err(|error| status(ApiError::Mvcc(error)))?;
        Ok(Answer { value, revision, term: self.local.term.load(Ordering::Relaxed) })
    }

    /// Waits until this member has applied at least `min_revision` (a causal read: the client
    /// has seen that revision, from this member or another), for at most `--max-causal-wait`.
    /// A member that stays behind refuses with `Unavailable`, so that clients try another
    /// member, as they do for one that is down; it never answers with older state.
    pub async fn caught_up(&self, min_revision: Option<i64>) -> Result<(), Status> {
        let Some(wanted) = min_revision.filter(|&revision| revision > 0) else { return Ok(()) };
        let mut applied = self.local.applied.clone();
        if *applied.borrow_and_update() >= wanted {
            return Ok(());
        }
        self.metrics.causal_waits.inc();
        let wait = self.local.max_causal_wait;
        let waited =
            tokio::time::timeout(wait, applied.wait_for(|&revision| revision >= wanted)).await.map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(status(ApiError::Stopped)),
            Err(_) => {
                self.metrics.causal_refused.inc();
                let have = *applied.borrow();
                Err(Status::unavailable(causal_refusal(wanted, have, wait)))
            }
        }
    }

    /// A lease keep-alive through the leader's log.
    pub async fn keep_alive(&self, lease: i64) -> Result<Answer<i64>, ApiError> {
        self.ask(|tx| Input::KeepAlive(lease, tx)).await
    }

    /// A serializable read from the local store, without going through the loop; causal if
    /// `min_revision` is set (see [`Handle::caught_up`]).
    pub async fn read_local(
        &self,
        identity: &Identity,
        request: RangeRequest,
        min_revision: Option<i64>,
    ) -> Result<Answer<RangeResponse>, Status> {
        self.caught_up(min_revision).await?;
        self.check_read(identity, &request.key, &request.range_end)?;
        self.range(request).await.map_err(status)
    }

    /// A channel to the leader's client endpoint, for forwarding a request of `caller`, or the
    /// error to return. Every request sent on it carries the caller's credentials and one more
    /// forward.
    pub fn leader_channel(&self, caller: &Caller, leader: NodeId) -> Result<ForwardChannel, Status> {
        if caller.forwards >= FORWARDS_MAX {
            return Err(status(ApiError::NotLeader(leader)));
        }
        let member = self.members.get(leader).ok_or_else(|| status(ApiError::NoLeader))?;
        let url = member.client_urls.first().cloned().ok_or_else(|| status(ApiError::NoLeader))?;
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match channels.get(&url) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = self.endpoint(&url)?.connect_timeout(Duration::from_secs(1)).connect_lazy();
                    channels.insert(url, channel.clone());
                    channel
                }
            }
        };
        let forwarding = Forwarding {
            token: caller.token.as_deref().and_then(|token| token.parse().ok()),
            identity: self.forward_identity(caller),
            forwards: (caller.forwards + 1).to_string().parse().expect("digits are valid metadata"),
        };
        Ok(tonic::service::interceptor::InterceptedService::new(channel, forwarding))
    }
}

tokio::task_local! {
    /// Metadata a service adds to its answer, beyond etcd's messages (which revision and
    /// time an as-of read used): the gRPC front end sends it as response metadata, the JSON
    /// gateway as response headers. Set up per call by [`with_answer_metadata`].
    static ANSWER_METADATA: std::cell::RefCell<Vec<(&'static str, String)>>;
}

/// Adds `key: value` to the answer of the call under way (nothing outside a call).
pub fn add_answer_metadata(key: &'static str, value: String) {
    let _ = ANSWER_METADATA.try_with(|metadata| metadata.borrow_mut().push((key, value)));
}

/// Runs one call of a service, collecting the metadata it adds to its answer.
pub async fn with_answer_metadata<T>(call: impl std::future::Future<Output = T>) -> (T, Vec<(&'static str, String)>) {
    ANSWER_METADATA
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let answer = call.await;
            (answer, ANSWER_METADATA.with(|metadata| metadata.take()))
        })
        .await
}

/// The message of a causal read refused by a member that stayed behind.
fn causal_refusal(wanted: i64, applied: i64, waited: Duration) -> String {
    format!(
        "ballot: causal read needs revision {wanted}, this member has applied revision {applied} \
         after waiting {}ms (--max-causal-wait); try another member",
        waited.as_millis()
    )
}

/// A channel to the leader that carries the caller's credentials on each request.
pub type ForwardChannel = tonic::service::interceptor::InterceptedService<Channel, Forwarding>;

/// The metadata a forwarded request carries: the caller's token, the user a member vouches
/// for, and the forward count.
#[derive(Clone)]
pub struct Forwarding {
    token: Option<tonic::metadata::AsciiMetadataValue>,
    identity: Option<tonic::metadata::AsciiMetadataValue>,
    forwards: tonic::metadata::AsciiMetadataValue,
}

impl tonic::service::Interceptor for Forwarding {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let metadata = request.metadata_mut();
        if let Some(token) = &self.token {
            metadata.insert(crate::auth::TOKEN_METADATA, token.clone());
        }
        if let Some(identity) = &self.identity {
            metadata.insert(crate::auth::FORWARDED_IDENTITY, identity.clone());
        }
        metadata.insert(caller::FORWARDED, self.forwards.clone());
        Ok(request)
    }
}

/// `command` on behalf of `identity`.
pub fn as_user(identity: &Identity, command: Command) -> Command {
    Command::AsUser { user: identity.user.clone(), revision: identity.revision, command: Box::new(command) }
}

/// Checks an encoded request against `--max-request-bytes`.
pub fn check_size(handle: &Handle, encoded_len: usize) -> Result<(), Status> {
    if encoded_len > handle.limits.request_bytes_max {
        return Err(invalid("etcdserver: request is too large"));
    }
    Ok(())
}

/// A response stream fed by a task through a channel.
pub fn async_stream<T, F, Fut>(producer: F) -> std::pin::Pin<Box<dyn tokio_stream::Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub use ballot_mvcc::read::prefix_end;

impl Handle {
    /// [`Handle::apply`] on behalf of `identity`.
    pub async fn apply_as(
        &self,
        identity: &Identity,
        command: Command,
    ) -> Result<(ballot_mvcc::Response, i64, u64), Status> {
        self.apply(as_user(identity, command)).await
    }

    /// Proposes a command on this member (the leader) and returns the state machine's answer.
    pub async fn apply(&self, command: Command) -> Result<(ballot_mvcc::Response, i64, u64), Status> {
        let answer = self.propose(command).await.map_err(|error| match error {
            ApiError::NotLeader(_) => Status::unavailable("etcdserver: leader changed"),
            other => status(other),
        })?;
        let response = answer.value.result.map_err(|error| status(ApiError::Mvcc(error)))?;
        Ok((response, answer.revision, answer.term))
    }

    /// Waits until `key` is deleted, watching from revision `after + 1`.
    pub async fn wait_deleted(&self, key: Vec<u8>, after: i64) -> Result<(), Status> {
        self.wait_event(key, Vec::new(), after, |event| event.kind == ballot_mvcc::EventKind::Delete).await
    }

    /// Waits for a change in `[key, range_end)` that `wanted` accepts, from revision `after + 1`.
    pub async fn wait_event(
        &self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        after: i64,
        wanted: impl Fn(&ballot_mvcc::Event) -> bool,
    ) -> Result<(), Status> {
        let (events, mut from_hub) = tokio::sync::mpsc::channel(16);
        let (tx, rx) = oneshot::channel();
        let request = ballot_mvcc::WatchRequest { key, range_end, start_revision: after + 1, ..Default::default() };
        self.send(Input::Watch(request, events, tx))?;
        let (watch, _) =
            rx.await.map_err(|_| status(ApiError::Stopped))?.map_err(|error| status(ApiError::Mvcc(error)))?;
        let result = loop {
            match from_hub.recv().await {
                Some(out) if out.events.iter().any(&wanted) => break Ok(()),
                Some(out) if out.cancelled.is_some() => {
                    break Err(status(ApiError::Mvcc(ballot_mvcc::Error::Compacted)))
                }
                Some(_) => {}
                None => break Err(status(ApiError::Stopped)),
            }
        };
        let _ = self.send(Input::Unwatch(watch));
        result
    }
}

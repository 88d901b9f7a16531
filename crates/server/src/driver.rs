//! The driver: one thread that owns the replica and runs its loop, and one that fsyncs.
//!
//! The Raft loop thread owns the [`Replica`] (Raft, WAL, store), the watch hub and the lease
//! timers; everything else talks to it through its inbox. Each turn it takes what arrived,
//! ticks when due, and moves the replica on: it writes the next `Ready` to the log, sends what
//! may leave at once (a leader's appends go out while its own fsync runs), and hands the fsync
//! to the WAL thread (or, while fsyncs are fast, runs it itself: see `INLINE_FSYNC_MAX`).
//! While that fsync runs the loop keeps stepping messages, ticking and sending heartbeats, so
//! a slow disk never starves the cluster of heartbeats; proposals that arrive meanwhile wait
//! in Raft's log and form the next batch (group commit). When the WAL
//! thread reports the fsync done, the loop sends what waited for durability (votes, append
//! acks), applies what committed and answers the waiting requests by request id.
//!
//! Leases expire on the leader's clock: every member keeps a deadline per lease, set when it
//! applies the lease's grant or checkpoint; the leader proposes the revoke of an expired lease.
//! A keep-alive is a checkpoint through the log, so a new leader knows each lease's deadline
//! to within the replication delay: a leader change neither resets nor cuts a lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use ballot_mvcc::{AlarmKind, Applied, Cancelled, Command, Event, WatchHub, WatchId, WatchRequest};
use ballot_node::PeerMessage;
use ballot_node::{Finished, Replica, RequestId};
use ballot_raft::{NodeId, Role};
use ballot_storage::{FsDisk, SyncTask};
use tokio::sync::{mpsc, oneshot};

use crate::compactor::{AutoCompaction, Compactor};
use crate::members::Members;
use crate::membership::{self, LastHeard};
use crate::metrics::Metrics;
use crate::transport::Transport;
use std::sync::Arc;

/// The Raft loop's inbox.
pub type Inbox = std_mpsc::Sender<Input>;

/// An answer with the state it was given at (for response headers).
#[derive(Debug)]
pub struct Answer<T> {
    /// The result.
    pub value: T,
    /// Store revision.
    pub revision: i64,
    /// Raft term.
    pub term: u64,
}

/// Where an answer goes.
pub type Reply<T> = oneshot::Sender<Result<Answer<T>, ApiError>>;

/// Why a request got no result from this member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Another member leads (the API forwards the request there).
    #[error("etcdserver: not leader")]
    NotLeader(NodeId),
    /// No leader is known right now.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The state machine's answer is an error.
    #[error("{0}")]
    Mvcc(ballot_mvcc::Error),
    /// The member is stopping or stopped.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// No result in time (the outcome is unknown).
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Raft refused the proposal for now (a leader transfer, too much uncommitted data).
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// The leader's clock is behind the stamps in its log by more than `--max-clock-skew`.
    #[error("ballot: {0}")]
    ClockSkew(String),
    /// The consensus engine does not do this (Multi-Paxos: membership changes, leader moves).
    #[error("ballot: {0}")]
    Unsupported(String),
}

/// The wall clock in milliseconds since the Unix epoch (0 if it reads before the epoch).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

impl From<ballot_raft::Error> for ApiError {
    fn from(error: ballot_raft::Error) -> Self {
        match error {
            ballot_raft::Error::NotLeader { leader: Some(leader) } => ApiError::NotLeader(leader),
            ballot_raft::Error::NotLeader { leader: None } => ApiError::NoLeader,
            ballot_raft::Error::ClockSkew { .. } => {
                // The operator must hear of this: writes stop until the clocks agree again.
                tracing::warn!("refusing a write: {error} (--max-clock-skew)");
                ApiError::ClockSkew(error.to_string())
            }
            ballot_raft::Error::Unsupported(why) => ApiError::Unsupported(why),
            _ => ApiError::TooManyRequests,
        }
    }
}

/// What a watch stream receives from the loop.
#[derive(Debug)]
pub struct WatchOut {
    /// The hub's id of the watcher.
    pub watch: WatchId,
    /// Events, in revision order.
    pub events: Vec<Event>,
    /// Set when the watcher ended.
    pub cancelled: Option<Cancelled>,
    /// Store revision when sent.
    pub revision: i64,
}

/// One watch stream's share of a turn's events, with room reserved in its channel.
type WatchDelivery = (mpsc::OwnedPermit<WatchOut>, WatchOut);

/// Starts the task that hands out watch deliveries from within the runtime, if there is one.
fn watch_dispatcher() -> Option<mpsc::UnboundedSender<Vec<WatchDelivery>>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (dispatch, mut deliveries) = mpsc::unbounded_channel::<Vec<WatchDelivery>>();
    runtime.spawn(async move {
        while let Some(batch) = deliveries.recv().await {
            for (permit, out) in batch {
                permit.send(out);
            }
        }
    });
    Some(dispatch)
}

/// A closure run on the loop thread with the loop's state (for reads of status, leases, hashes).
pub type Query = Box<dyn FnOnce(&mut Core) + Send>;

/// What the Raft loop takes.
pub enum Input {
    /// A message from a peer.
    Peer(PeerMessage),
    /// A peer could not be reached.
    Unreachable(NodeId),
    /// A snapshot to a peer was delivered or not.
    SnapshotStatus(NodeId, bool),
    /// A write to propose (on the leader).
    Propose(Command, Reply<Applied>),
    /// A linearizable read.
    ReadBarrier(Reply<()>),
    /// A keep-alive of a lease: answers the renewed TTL (0 if the lease does not exist).
    KeepAlive(i64, Reply<i64>),
    /// A new watcher; its events go to the stream's channel.
    Watch(WatchRequest, mpsc::Sender<WatchOut>, oneshot::Sender<Result<(WatchId, i64), ballot_mvcc::Error>>),
    /// A watcher ends.
    Unwatch(WatchId),
    /// Read-only work on the loop's state.
    Query(Query),
    /// The WAL thread finished an fsync.
    Synced(std::io::Result<()>, Duration),
    /// Before stopping: a leader hands leadership to the most up-to-date voter and answers once
    /// it no longer leads (or the timeout passed); anyone else answers at once.
    StepDown(Duration, oneshot::Sender<()>),
    /// Stop the loop (after the last fsync), making the store durable.
    Shutdown(oneshot::Sender<()>),
    /// A peer says this member was removed from the cluster.
    Removed,
    /// Defragment the store online; answered when the compacted copy has taken its place.
    Defragment(oneshot::Sender<Result<DefragReport, String>>),
    /// The compacted copy of a defragmentation is made (on its own thread).
    DefragCopied(Result<ballot_mvcc::Store, ballot_mvcc::Error>),
}

/// What a defragmentation did.
#[derive(Debug, Clone)]
pub struct DefragReport {
    /// The store file's length before, bytes.
    pub bytes_before: u64,
    /// And after.
    pub bytes_after: u64,
    /// From the request to the swap.
    pub took: Duration,
    /// The longest the loop spent in one step of bringing the copy up to date (or the swap):
    /// the longest stall of applying and serving the defragmentation caused.
    pub longest_step: Duration,
}

/// A defragmentation under way.
struct Defrag {
    waiters: Vec<oneshot::Sender<Result<DefragReport, String>>>,
    started: Instant,
    bytes_before: u64,
    longest_step: Duration,
    /// The copy is being made on its own thread.
    copying: bool,
}

/// Why a defragmentation did not finish when the state changed under it.
const ABANDONED: &str = "ballot: defragment abandoned: a snapshot from the leader replaced the store; retry";

/// An apply batch slower than this counts in `etcd_server_slow_apply_total` (etcd's
/// warning threshold).
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// A turn of the loop slower than this is logged with where its time went: every client's
/// writes waited for it.
const SLOW_TURN: Duration = Duration::from_millis(40);

/// At most one warning a second of a kind, with the number held back since the last: a slow
/// disk must show in the log without flooding it.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    held_back: u64,
}

impl WarnLimiter {
    /// `Some(held back since the last warning)` if a warning may go out now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// Where one turn of the loop spent its time (see [`SLOW_TURN`]).
#[derive(Debug, Default)]
struct TurnTimes {
    /// Fsyncs of the log run on the loop (see [`INLINE_FSYNC_MAX`]).
    fsync: Duration,
    /// Applying committed entries and answering what waited for them.
    apply: Duration,
}

/// Entries replayed into a defragmentation's copy per loop turn.
const DEFRAG_STEP_ENTRIES: u64 = 2048;

/// What the loop needs besides the replica.
pub struct Settings {
    /// This member.
    pub id: NodeId,
    /// Tick length (the heartbeat interval).
    pub tick: Duration,
    /// Database size that raises the NOSPACE alarm.
    pub quota_bytes: u64,
    /// The current term, published for response headers built off the loop thread.
    pub term: Arc<AtomicU64>,
    /// The store's revision, published after each turn for causal reads waiting to see it.
    pub applied: tokio::sync::watch::Sender<i64>,
    /// Automatic compaction of the history.
    pub auto_compaction: AutoCompaction,
    /// The election timeout (members heard from within it count as started).
    pub election: Duration,
    /// This member's name and client URLs, published through the log when they differ from
    /// the member table's.
    pub name: String,
    /// See `name`.
    pub client_urls: Vec<String>,
    /// Promote learners as soon as they have caught up (`--auto-promote-learners`).
    pub auto_promote_learners: bool,
    /// The member table (this member's copy of the replicated one).
    pub members: Members,
    /// Set once this member learns it was removed from the cluster: the server stops.
    pub removed: tokio::sync::watch::Sender<bool>,
    /// The page cache of a defragmentation's copy (`--backend-cache-bytes`).
    pub backend_cache_bytes: usize,
    /// Set while the CORRUPT alarm is raised, for reads served off the loop to refuse.
    pub corrupt: Arc<std::sync::atomic::AtomicBool>,
    /// This member's auth tokens: applied logins are registered here.
    pub tokens: Arc<crate::auth::Tokens>,
}

/// A stop request taken from the inbox.
enum Stop {
    StepDown(Duration, oneshot::Sender<()>),
    Now(oneshot::Sender<()>),
}

enum Waiter {
    Write(Reply<Applied>),
    KeepAlive(i64, Reply<i64>),
}

/// The loop's state.
pub struct Core {
    /// The replica.
    pub replica: Replica<FsDisk>,
    /// Watchers of this member.
    pub hub: WatchHub,
    /// Lease deadlines on this member's clock.
    pub lease_deadlines: HashMap<i64, Instant>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    settings: Settings,
    transport: Transport,
    watch_streams: HashMap<WatchId, mpsc::Sender<WatchOut>>,
    /// A task on the runtime that hands out a turn's watch deliveries (see
    /// [`Core::deliver_watches`]); `None` outside a runtime (tests).
    watch_dispatch: Option<mpsc::UnboundedSender<Vec<WatchDelivery>>>,
    waiting: HashMap<RequestId, Waiter>,
    reads: HashMap<RequestId, Reply<()>>,
    revoking: HashMap<i64, Instant>,
    next_request: RequestId,
    syncing: bool,
    /// A running average of the WAL's fsync time (see [`INLINE_FSYNC_MAX`]).
    fsync_average: Duration,
    /// Inputs taken in this turn of the loop: more than [`INLINE_INPUTS_MAX`] means load, when
    /// overlapping the fsync with Raft work pays more than saving the hand-offs.
    turn_inputs: usize,
    /// This turn's time in fsyncs and apply.
    turn_times: TurnTimes,
    /// Limits the slow-fsync and slow-turn warnings.
    slow_fsync_warnings: WarnLimiter,
    slow_turn_warnings: WarnLimiter,
    sync_queue: std_mpsc::Sender<SyncTask>,
    leader: NodeId,
    /// The latest leader changes this member saw, oldest first (the console's timeline).
    pub leader_history: std::collections::VecDeque<LeaderChange>,
    /// The latest membership changes this member applied, oldest first (the console's timeline).
    pub membership_history: std::collections::VecDeque<MembershipChange>,
    compactor: Compactor,
    /// When the pages in use were last counted for the quota.
    quota_walked_at: Option<(Instant, u64)>,
    /// When each peer was last heard from.
    last_heard: LastHeard,
    /// Heartbeats sent and not yet answered (peer round-trip times).
    heartbeats: HeartbeatTimes,
    /// When this member last published its name and client URLs.
    published_at: Option<Instant>,
    /// The request id of this member's last publication, until one is applied in this run.
    publishing: Option<RequestId>,
    /// A publication of this run was applied.
    published: bool,
    /// A defragmentation under way.
    defrag: Option<Defrag>,
    /// The store has a member table (see `seed_member_table`).
    table_seeded: bool,
    /// The loop's own inbox (for work it hands to other threads).
    inbox: Inbox,
    /// Followers whose snapshot image is being built or sent (see `send_snapshot`).
    images_in_flight: Arc<std::sync::Mutex<std::collections::HashSet<NodeId>>>,
    /// When this leader last handed leadership over for its clock (see `hand_over_for_clock`).
    clock_handover_at: Option<Instant>,
}

/// Leader changes (and, apart, membership changes) a member remembers for the console.
const LEADER_HISTORY_MAX: usize = 64;

/// A change to the member table as this member applied it.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct MembershipChange {
    /// Wall-clock time this member applied it, ms since the epoch.
    pub at_ms: u64,
    /// The member changed.
    pub member: NodeId,
    /// Its name (empty until it published one).
    pub name: String,
    /// `added as a learner`, `added as a voter`, `promoted` or `removed`.
    pub change: &'static str,
}

/// What changed between two member tables.
pub fn membership_changes(
    before: &[crate::members::Member],
    after: &[crate::members::Member],
) -> Vec<(NodeId, String, &'static str)> {
    let mut changes = Vec::new();
    for member in after {
        match before.iter().find(|old| old.id == member.id) {
            None if member.is_learner => changes.push((member.id, member.name.clone(), "added as a learner")),
            None => changes.push((member.id, member.name.clone(), "added as a voter")),
            Some(old) if old.is_learner && !member.is_learner => {
                changes.push((member.id, member.name.clone(), "promoted"))
            }
            Some(_) => {}
        }
    }
    for old in before.iter().filter(|old| after.iter().all(|member| member.id != old.id)) {
        changes.push((old.id, old.name.clone(), "removed"));
    }
    changes
}

/// A leader change as this member saw it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LeaderChange {
    /// Wall-clock time, ms since the epoch.
    pub at_ms: u64,
    /// The new leader (0: none known).
    pub leader: NodeId,
    /// The term (or Multi-Paxos ballot) then.
    pub term: u64,
}

impl Core {
    /// The backend quota, bytes (`--quota-backend-bytes`).
    pub fn quota_bytes(&self) -> u64 {
        self.settings.quota_bytes
    }

    /// Term of the replica.
    pub fn term(&self) -> u64 {
        self.replica.engine().term()
    }

    /// The known leader (0 if none).
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.settings.id
    }

    /// The view of the cluster membership checks take (see [`membership::View`]).
    pub fn membership_view(&self) -> membership::View<'_> {
        membership::View {
            engine: self.replica.engine(),
            members: &self.settings.members,
            active: self.last_heard.active(self.settings.id, Instant::now(), self.settings.election * 2),
        }
    }

    /// Reloads the member table from the store after a change was applied. A removed member
    /// stays addressable while Raft's configuration still has it (it may have to vote in the
    /// joint configuration); this member stops once it is removed and out of the committed
    /// configuration. Committed, not the latest: a leader that appended the end of a joint
    /// configuration without itself must replicate it until it commits, or the joint
    /// configuration, which still counts this member, could be left without a majority.
    fn reload_members(&mut self) {
        let (records, removed) = match self.replica.store().members() {
            Ok(table) => table,
            Err(error) => panic!("member table: {error}"),
        };
        if records.is_empty() {
            // A store from before the member table: the flags' table stands.
            return;
        }
        let conf = self.replica.engine().committed_conf_state();
        let in_conf = |id: &NodeId| conf.is_voter(*id) || conf.learners.contains(id) || conf.learners_next.contains(id);
        let departing: Vec<NodeId> = removed.iter().copied().filter(in_conf).collect();
        let gone: Vec<NodeId> = removed.iter().copied().filter(|id| !in_conf(id)).collect();
        let before = self.settings.members.list();
        let now = wall_clock_ms();
        for (member, name, change) in membership_changes(&before, &records) {
            if self.membership_history.len() == LEADER_HISTORY_MAX {
                self.membership_history.pop_front();
            }
            self.membership_history.push_back(MembershipChange { at_ms: now, member, name, change });
        }
        self.settings.members.replace(records, gone.clone(), &departing);
        if gone.contains(&self.settings.id) {
            self.on_removed();
        }
    }

    fn on_removed(&mut self) {
        if !*self.settings.removed.borrow() {
            tracing::error!(
                member = format!("{:x}", self.settings.id),
                "this member was removed from the cluster; stopping for good"
            );
            let _ = self.settings.removed.send(true);
        }
    }

    /// The leader promotes a learner that caught up if it was added as a voter (or any, with
    /// `--auto-promote-learners`).
    fn promote_caught_up(&mut self) {
        if !self.replica.engine().is_leader() || self.replica.engine().raft().is_none() {
            return;
        }
        self.seed_member_table();
        let view = self.membership_view();
        if let Some(record) = view.next_promotion(self.settings.auto_promote_learners) {
            let id = record.id;
            if self.replica.engine_mut().propose_conf_change(membership::promote(record)).is_ok() {
                tracing::info!(member = format!("{id:x}"), "promoting a learner that caught up");
            }
        }
    }

    /// A cluster founded before the member table existed has none in its stores: its leader
    /// writes the table the flags describe, once, through the log (so that later membership
    /// changes start from the founders, not from nothing).
    fn seed_member_table(&mut self) {
        if self.table_seeded {
            return;
        }
        match self.replica.store().members() {
            Ok((records, _)) if !records.is_empty() => self.table_seeded = true,
            Ok(_) => {
                let founders: Vec<ballot_mvcc::MemberChange> = self
                    .settings
                    .members
                    .list()
                    .iter()
                    .map(|member| ballot_mvcc::MemberChange::Upsert(member.clone()))
                    .collect();
                if founders.is_empty() {
                    return;
                }
                tracing::info!(members = founders.len(), "writing the member table the flags describe");
                let id = self.request_id();
                let _ = self.replica.propose(id, &Command::Members(founders));
            }
            Err(error) => panic!("member table: {error}"),
        }
    }

    /// A member publishes its name and client URLs through the log once at every start, as etcd
    /// publishes its attributes (retrying until it is applied), and again whenever the
    /// replicated table has others: every member then lists every member's client URLs
    /// (clients discover endpoints from the member list). The replicated table is what counts,
    /// not this member's view, which learns client URLs from the peers that connect to it.
    fn publish_self(&mut self, now: Instant) {
        let Ok((records, _)) = self.replica.store().members() else { return };
        let Some(me) = records.iter().find(|record| record.id == self.settings.id) else { return };
        let stale = !self.published || me.name != self.settings.name || me.client_urls != self.settings.client_urls;
        let recently = self.published_at.is_some_and(|at| now.duration_since(at) < Duration::from_secs(3));
        if stale && !recently && self.leader != 0 {
            self.published_at = Some(now);
            let publish = Command::Members(vec![ballot_mvcc::MemberChange::Publish {
                id: self.settings.id,
                name: self.settings.name.clone(),
                client_urls: self.settings.client_urls.clone(),
            }]);
            let id = self.request_id();
            if self.replica.propose(id, &publish).is_ok() {
                self.publishing = Some(id);
                tracing::debug!(urls = ?self.settings.client_urls, "publishing this member's name and client URLs");
            }
        }
    }

    fn answer<T>(&self, value: T) -> Answer<T> {
        Answer { value, revision: self.replica.store().revision(), term: self.term() }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request = self.next_request.wrapping_add(1);
        self.next_request
    }

    fn send(&mut self, messages: Vec<PeerMessage>) {
        for mut message in messages {
            let to = message.to();
            self.metrics.messages_sent.inc();
            if message.snapshot_mut().is_some_and(|snapshot| snapshot.data.is_empty()) {
                self.send_snapshot(message);
                continue;
            }
            let heartbeat = message.heartbeat_round();
            if self.transport.send(message) {
                if let Some(round) = heartbeat {
                    self.heartbeats.sent(to, round, Instant::now());
                }
            } else {
                self.metrics.peer_sent_failures.get_or_create(&vec![("To", format!("{to:x}"))]).inc();
                if heartbeat.is_some() {
                    self.metrics.heartbeat_send_failures.inc();
                }
                self.replica.engine_mut().report_unreachable(to);
            }
        }
    }

    /// Builds a snapshot's image from a reader of the store on a thread of its own and sends it
    /// from there: at a million keys the image is hundreds of MiB and takes seconds to read,
    /// which on this thread would stop heartbeats, appends and every client's writes. One image
    /// per follower at a time: a resend that Raft asks for meanwhile (its snapshot timeout) is
    /// dropped, the one under way will arrive. A failure is reported to Raft, which retries.
    fn send_snapshot(&mut self, mut message: PeerMessage) {
        let to = message.to();
        let in_flight = self.images_in_flight.clone();
        if !in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(to) {
            return;
        }
        let reader = self.replica.store().reader();
        let transport = self.transport.clone();
        let inbox = self.inbox.clone();
        let spawned = std::thread::Builder::new().name("snapshot-image".into()).spawn(move || {
            let started = Instant::now();
            let image = reader.snapshot_chunks(1 << 20).and_then(|chunks| {
                let mut image = Vec::new();
                for chunk in chunks {
                    image.extend(chunk?);
                }
                Ok(image)
            });
            let delivered = match image {
                Ok(image) => {
                    tracing::info!(
                        to = format!("{to:x}"),
                        bytes = image.len(),
                        seconds = started.elapsed().as_secs_f64(),
                        "sending a snapshot"
                    );
                    if let Some(snapshot) = message.snapshot_mut() {
                        snapshot.data = image;
                    }
                    transport.send(message)
                }
                Err(error) => {
                    tracing::warn!(to = format!("{to:x}"), %error, "could not read the store for a snapshot");
                    false
                }
            };
            in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&to);
            if !delivered {
                let _ = inbox.send(Input::SnapshotStatus(to, false));
            }
        });
        if spawned.is_err() {
            self.images_in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&to);
            self.replica.engine_mut().report_snapshot(to, false);
        }
    }

    /// Refreshes the metrics read from the loop's state (at each scrape).
    pub fn refresh_metrics(&self) {
        let metrics = &self.metrics;
        let engine = self.replica.engine();
        let store = self.replica.store();
        metrics.has_leader.set(i64::from(self.leader != 0));
        metrics.is_leader.set(i64::from(engine.is_leader()));
        metrics.is_learner.set(i64::from(engine.conf_state().learners.contains(&self.settings.id)));
        metrics.proposals_committed.set(engine.committed() as i64);
        metrics.proposals_applied.set(self.replica.applied() as i64);
        metrics.proposals_pending.set(self.waiting.len() as i64);
        metrics.watchers.set(self.hub.len() as i64);
        metrics.current_revision.set(store.revision());
        metrics.compact_revision.set(store.compact_revision());
        metrics.db_size_bytes.set(store.size_bytes().unwrap_or(0) as i64);
        metrics.quota_backend_bytes.set(self.settings.quota_bytes as i64);
    }

    fn handle(&mut self, input: Input) -> Option<Stop> {
        match input {
            Input::Peer(message) => {
                let now = Instant::now();
                let from = message.from();
                self.last_heard.heard(from, now);
                if let Some(round) = message.heartbeat_answer_round() {
                    if let Some(took) = self.heartbeats.answered(from, round, now) {
                        let peer = vec![("To", format!("{from:x}"))];
                        self.metrics.peer_round_trip_seconds.get_or_create(&peer).observe(took.as_secs_f64());
                    }
                }
                // A message Raft refuses (misaddressed, stale) is dropped: peers are not trusted
                // to be right, only to be authenticated members.
                if let Err(error) = self.replica.engine_mut().step(message) {
                    tracing::debug!(%error, "peer message dropped");
                }
            }
            Input::Unreachable(peer) => self.replica.engine_mut().report_unreachable(peer),
            Input::SnapshotStatus(peer, delivered) => self.replica.engine_mut().report_snapshot(peer, delivered),
            Input::Propose(command, reply) => {
                let id = self.request_id();
                match self.replica.propose(id, &command) {
                    Ok(()) => drop(self.waiting.insert(id, Waiter::Write(reply))),
                    Err(error) => drop(reply.send(Err(error.into()))),
                }
            }
            Input::ReadBarrier(reply) => {
                let id = self.request_id();
                match self.replica.read_barrier(id) {
                    Ok(()) => drop(self.reads.insert(id, reply)),
                    Err(error) => drop(reply.send(Err(error.into()))),
                }
            }
            Input::KeepAlive(lease, reply) => self.keep_alive(lease, reply),
            Input::Watch(request, stream, reply) => {
                let created = self.hub.watch(self.replica.store(), request);
                if let Ok(id) = created {
                    self.watch_streams.insert(id, stream);
                    self.metrics.watchers.set(self.hub.len() as i64);
                }
                let _ = reply.send(created.map(|id| (id, self.replica.store().revision())));
                // A watcher from the past gets its history now, not at the next tick.
                self.deliver_watches();
            }
            Input::Unwatch(id) => {
                self.hub.cancel(id);
                self.watch_streams.remove(&id);
                self.metrics.watchers.set(self.hub.len() as i64);
            }
            Input::Query(query) => query(self),
            Input::Synced(result, elapsed) => {
                self.syncing = false;
                self.synced(result, elapsed);
            }
            Input::StepDown(timeout, done) => return Some(Stop::StepDown(timeout, done)),
            Input::Shutdown(done) => return Some(Stop::Now(done)),
            Input::Removed => self.on_removed(),
            Input::Defragment(reply) => self.defragment(reply),
            Input::DefragCopied(copy) => self.defrag_copied(copy),
        }
        None
    }

    /// Starts a defragmentation (or joins the one under way): the copy is made on a thread of
    /// its own; [`Core::defrag_step`] then brings it up to date a bounded step per loop turn.
    fn defragment(&mut self, reply: oneshot::Sender<Result<DefragReport, String>>) {
        if let Some(defrag) = self.defrag.as_mut() {
            return defrag.waiters.push(reply);
        }
        let Some((reader, path)) = self.replica.begin_defrag() else {
            return drop(reply.send(Err("ballot: this member's store is not on a file".into())));
        };
        let bytes_before = self.replica.store().size_bytes().unwrap_or(0);
        tracing::info!(bytes = bytes_before, "defragmenting: copying the store");
        self.defrag = Some(Defrag {
            waiters: vec![reply],
            started: Instant::now(),
            bytes_before,
            longest_step: Duration::ZERO,
            copying: true,
        });
        let (inbox, cache) = (self.inbox.clone(), self.settings.backend_cache_bytes);
        let spawned = std::thread::Builder::new().name("defrag".into()).spawn(move || {
            let copy = reader.compacted_copy(&path, cache);
            drop(reader);
            let _ = inbox.send(Input::DefragCopied(copy));
        });
        if let Err(error) = spawned {
            self.defrag_failed(format!("ballot: defragment: {error}"));
        }
    }

    fn defrag_copied(&mut self, copy: Result<ballot_mvcc::Store, ballot_mvcc::Error>) {
        let Some(defrag) = self.defrag.as_mut() else { return };
        defrag.copying = false;
        match copy.map(|copy| self.replica.defrag_copied(copy)) {
            Ok(true) => {}
            Ok(false) => self.defrag_failed(ABANDONED.into()),
            Err(error) => self.defrag_failed(format!("ballot: defragment: {error}")),
        }
    }

    fn defrag_failed(&mut self, why: String) {
        self.replica.abandon_defrag();
        tracing::warn!(why, "defragmentation failed");
        for waiter in self.defrag.take().map(|defrag| defrag.waiters).unwrap_or_default() {
            let _ = waiter.send(Err(why.clone()));
        }
    }

    /// One bounded step of bringing the copy up to date, and the swap once it is.
    fn defrag_step(&mut self) {
        let Some(defrag) = self.defrag.as_ref() else { return };
        if defrag.copying {
            return;
        }
        if !self.replica.defragmenting() {
            return self.defrag_failed(ABANDONED.into());
        }
        let started = Instant::now();
        let old = match self.replica.defrag_step(DEFRAG_STEP_ENTRIES) {
            Ok(old) => old,
            Err(error) => panic!("the replica cannot go on: {error}"),
        };
        let swapped = old.is_some();
        if let Some(old) = old {
            // Closing the old database syncs its file: not on the loop.
            let _ = std::thread::Builder::new().name("defrag-close".into()).spawn(move || drop(old));
        }
        let defrag = self.defrag.as_mut().expect("checked above");
        let took = started.elapsed();
        tracing::debug!(took_ms = took.as_secs_f64() * 1000.0, swapped, "defragment step");
        defrag.longest_step = defrag.longest_step.max(took);
        if swapped {
            let defrag = self.defrag.take().expect("checked above");
            self.metrics.defrag_seconds.observe(defrag.started.elapsed().as_secs_f64());
            let report = DefragReport {
                bytes_before: defrag.bytes_before,
                bytes_after: self.replica.store().size_bytes().unwrap_or(0),
                took: defrag.started.elapsed(),
                longest_step: defrag.longest_step,
            };
            tracing::info!(
                bytes_before = report.bytes_before,
                bytes_after = report.bytes_after,
                took_ms = report.took.as_millis() as u64,
                longest_step_ms = report.longest_step.as_secs_f64() * 1000.0,
                "defragmented"
            );
            for waiter in defrag.waiters {
                let _ = waiter.send(Ok(report.clone()));
            }
        }
    }

    fn keep_alive(&mut self, lease: i64, reply: Reply<i64>) {
        let ttl = match self.replica.store().lease(lease) {
            Ok(Some(info)) => info.lease.ttl,
            Ok(None) => return drop(reply.send(Ok(self.answer(0)))),
            Err(error) => return drop(reply.send(Err(ApiError::Mvcc(error)))),
        };
        let id = self.request_id();
        match self.replica.propose(id, &Command::LeaseCheckpoint { id: lease, remaining_ttl: ttl }) {
            Ok(()) => drop(self.waiting.insert(id, Waiter::KeepAlive(ttl, reply))),
            Err(error) => drop(reply.send(Err(error.into()))),
        }
    }

    /// Moves the replica on as far as it goes without waiting for the disk.
    fn drive(&mut self) -> Result<(), ballot_node::NodeError> {
        if self.syncing {
            let messages = self.replica.take_messages(crate::clock::now())?;
            self.send(messages);
            return Ok(());
        }
        while let Some(written) = self.replica.next_ready(crate::clock::now())? {
            if let Some(soft) = written.soft_state {
                self.on_soft_state(soft.leader, soft.role);
            }
            self.send(written.messages);
            if written.must_sync {
                if let Some(task) = self.replica.detach_sync()? {
                    if self.fsync_average <= INLINE_FSYNC_MAX && self.turn_inputs <= INLINE_INPUTS_MAX {
                        let started = Instant::now();
                        let result = task();
                        let took = started.elapsed();
                        self.turn_times.fsync += took;
                        self.synced(result, took);
                        continue;
                    }
                    self.syncing = true;
                    self.sync_queue.send(task).expect("the WAL thread outlives the loop");
                    return Ok(());
                }
            }
            self.finish();
        }
        Ok(())
    }

    /// The fsync of the written `Ready` finished (on the WAL thread or, when fsyncs are fast,
    /// right here: see [`INLINE_FSYNC_MAX`]): on to what waited for it.
    fn synced(&mut self, result: std::io::Result<()>, elapsed: Duration) {
        self.metrics.fsync_seconds.observe(elapsed.as_secs_f64());
        if elapsed > SLOW_TURN {
            if let Some(held_back) = self.slow_fsync_warnings.allow(Instant::now()) {
                tracing::warn!(took_ms = elapsed.as_millis() as u64, more_since_last_warning = held_back, "slow fsync");
            }
        }
        if let Err(error) = result {
            // Whether the data reached the disk is unknown after a failed fsync; going on could
            // acknowledge what is lost. Stop, as etcd does.
            panic!("fsync of the write-ahead log failed: {error}");
        }
        self.fsync_average = (self.fsync_average * 7 + elapsed) / 8;
        self.finish();
    }

    fn finish(&mut self) {
        let started = Instant::now();
        let finished = match self.replica.finish() {
            Ok(finished) => finished,
            Err(error) => panic!("the replica cannot go on: {error}"),
        };
        if !finished.committed.is_empty() {
            let took = started.elapsed();
            self.metrics.apply_seconds.observe(took.as_secs_f64());
            if took > SLOW_APPLY {
                self.metrics.slow_apply.inc();
            }
        }
        self.on_finished(finished);
        self.turn_times.apply += started.elapsed();
    }

    fn on_soft_state(&mut self, leader: NodeId, role: Role) {
        if leader != self.leader {
            self.metrics.leader_changes.inc();
            tracing::info!(leader = format!("{leader:x}"), term = self.term(), role = ?role, "leader changed");
            self.leader = leader;
            if self.leader_history.len() == LEADER_HISTORY_MAX {
                self.leader_history.pop_front();
            }
            self.leader_history.push_back(LeaderChange { at_ms: wall_clock_ms(), leader, term: self.term() });
            // A read waiting for a ReadIndex answer may never get one from a deposed leader;
            // reads are safe to repeat, so send them back to be retried with the new leader.
            for (_, reply) in self.reads.drain() {
                let _ = reply.send(Err(ApiError::NoLeader));
            }
        }
    }

    fn on_finished(&mut self, finished: Finished) {
        self.send(finished.messages);
        self.metrics.applied_entries.inc_by(finished.committed.len() as u64);
        let now = Instant::now();
        if finished.installed_snapshot.is_some() {
            tracing::info!(index = finished.installed_snapshot, "snapshot installed");
            self.hub.restored();
            self.reload_leases(now);
        }
        if finished.members_changed {
            self.reload_members();
        }
        for (lease, remaining) in finished.leases {
            match remaining {
                Some(seconds) => {
                    self.lease_deadlines.insert(lease, now + Duration::from_secs(seconds.max(0) as u64));
                    self.revoking.remove(&lease);
                }
                None => {
                    self.lease_deadlines.remove(&lease);
                    self.revoking.remove(&lease);
                }
            }
        }
        // Watchers hear of a change before its writer hears back, as in etcd (whose watchable
        // store notifies inside the apply): a client that reacts to its acknowledgement never
        // races ahead of the event.
        // A login's token is good here before its client hears back.
        self.settings.tokens.register(finished.logins);
        if !finished.events.is_empty() {
            if let Err(error) = self.hub.notify(self.replica.store(), &finished.events) {
                panic!("watch hub: {error}");
            }
        }
        self.deliver_watches();
        let term = self.term();
        for (id, applied) in finished.writes {
            if self.publishing == Some(id) && applied.result.is_ok() {
                self.published = true;
            }
            let revision = applied.revision;
            match self.waiting.remove(&id) {
                Some(Waiter::Write(reply)) => {
                    let result = applied.result.clone().map(|_| Answer { value: applied, revision, term });
                    let _ = reply.send(result.map_err(ApiError::Mvcc));
                }
                Some(Waiter::KeepAlive(ttl, reply)) => {
                    let ttl = if applied.result.is_ok() { ttl } else { 0 };
                    let _ = reply.send(Ok(Answer { value: ttl, revision, term }));
                }
                None => {}
            }
        }
        for id in finished.barriers {
            if let Some(reply) = self.reads.remove(&id) {
                let _ = reply.send(Ok(self.answer(())));
            }
        }
    }

    /// Sends buffered watch events to streams with room for them; the rest wait in the hub.
    /// Hands each watch stream the events buffered for it, if its channel has room (a slow
    /// stream's events wait in the hub, which bounds them). A turn's deliveries go to the
    /// runtime in one message when there are several: woken one by one from this thread, each
    /// stream's task was scheduled, ran and had its response written before the next was woken
    /// (the wake preempts this thread on a busy machine), so every event went out in a write of
    /// its own; woken together from within the runtime, the responses for one connection leave
    /// in one write (see `listener::WriteTurn`).
    fn deliver_watches(&mut self) {
        if self.watch_streams.is_empty() {
            return;
        }
        let _ = self.hub.catch_up(self.replica.store(), 64);
        let revision = self.replica.store().revision();
        let mut closed = Vec::new();
        let mut deliveries = Vec::new();
        for (&watch, stream) in &self.watch_streams {
            if stream.is_closed() {
                closed.push(watch);
                continue;
            }
            let Ok(permit) = stream.clone().try_reserve_owned() else { continue };
            match self.hub.take(watch) {
                Some((events, cancelled)) if !events.is_empty() || cancelled.is_some() => {
                    if cancelled.is_some() {
                        closed.push(watch);
                    }
                    deliveries.push((permit, WatchOut { watch, events, cancelled, revision }));
                }
                _ => {}
            }
        }
        match &self.watch_dispatch {
            Some(dispatch) if deliveries.len() > 1 => {
                if let Err(returned) = dispatch.send(deliveries) {
                    returned.0.into_iter().for_each(|(permit, out)| drop(permit.send(out)));
                }
            }
            _ => deliveries.into_iter().for_each(|(permit, out)| drop(permit.send(out))),
        }
        for watch in closed {
            self.hub.cancel(watch);
            self.watch_streams.remove(&watch);
        }
    }

    fn reload_leases(&mut self, now: Instant) {
        self.lease_deadlines.clear();
        self.revoking.clear();
        if let Ok(leases) = self.replica.store().leases() {
            for lease in leases {
                let remaining = if lease.remaining_ttl > 0 { lease.remaining_ttl } else { lease.ttl };
                self.lease_deadlines.insert(lease.id, now + Duration::from_secs(remaining.max(0) as u64));
            }
        }
    }

    /// Once per turn with ticks due (`ticks` counts every tick since start): the leader revokes
    /// expired leases; every member drops abandoned waiters.
    fn on_tick(&mut self, ticks: u64, due: u64) {
        let now = Instant::now();
        let engine = self.replica.engine();
        let offset_ms = if engine.is_leader() { Some(0) } else { engine.clock_offset_ms() };
        if let Some(offset_ms) = offset_ms {
            self.metrics.clock_offset_ms.set(offset_ms);
        }
        self.metrics.hlc_ahead_ms.set(engine.hlc().ahead_ms() as i64);
        self.hand_over_for_clock(now);
        if self.replica.engine().is_leader() {
            let expired: Vec<i64> = self
                .lease_deadlines
                .iter()
                .filter(|(lease, deadline)| {
                    **deadline <= now
                        && self
                            .revoking
                            .get(lease)
                            .is_none_or(|since| now.duration_since(*since) > Duration::from_secs(3))
                })
                .map(|(lease, _)| *lease)
                .collect();
            for lease in expired {
                let id = self.request_id();
                if self.replica.propose(id, &Command::LeaseRevoke { id: lease }).is_ok() {
                    tracing::debug!(lease, "lease expired; revoking");
                    self.revoking.insert(lease, now);
                }
            }
            if let Some(revision) = self.compactor.poll(now, self.replica.store().revision()) {
                // Through the log like a client's Compact; a revision already compacted is
                // refused by the state machine and changes nothing.
                let id = self.request_id();
                if self.replica.propose(id, &Command::Compact { revision }).is_ok() {
                    tracing::info!(revision, "auto-compaction: compacting the history");
                }
            }
        } else {
            self.compactor.pause();
        }
        // A compaction goes on while no entries come, a few bounded steps per tick.
        while now.elapsed() < Duration::from_millis(10) {
            match self.replica.step_compaction() {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => panic!("the replica cannot go on: {error}"),
            }
        }
        self.publish_self(now);
        let corrupt = self
            .replica
            .store()
            .alarms()
            .is_ok_and(|alarms| alarms.iter().any(|(kind, _)| *kind == AlarmKind::Corrupt));
        self.settings.corrupt.store(corrupt, Ordering::Relaxed);
        // The store is made durable every tick, as etcd's backend commits every 100 ms: the
        // commit writes and syncs what changed since the last one, on this thread, so its cost
        // grows with the interval. Once a second, and skipped while a WAL fsync was in flight
        // (under load: nearly always), it held seconds of changes, and the durable commit that
        // precedes each log compaction stalled every write for 100-200 ms. Applied entries are
        // durable in the log before they are applied, so the store never gets ahead of it.
        let started = Instant::now();
        if let Err(error) = self.replica.make_store_durable() {
            panic!("state machine: {error}");
        }
        self.metrics.backend_commit_seconds.observe(started.elapsed().as_secs_f64());
        if ticks / 10 != (ticks - due) / 10 {
            self.check_quota();
            self.promote_caught_up();
            let abandoned: Vec<RequestId> = self
                .waiting
                .iter()
                .filter(|(_, waiter)| match waiter {
                    Waiter::Write(reply) => reply.is_closed(),
                    Waiter::KeepAlive(_, reply) => reply.is_closed(),
                })
                .map(|(id, _)| *id)
                .collect();
            for id in abandoned {
                self.waiting.remove(&id);
                self.replica.forget_proposal(id);
            }
            self.reads.retain(|_, reply| !reply.is_closed());
            self.heartbeats.forget_older_than(Instant::now() - Duration::from_secs(10));
        }
        self.deliver_watches();
    }

    /// The leader raises the NOSPACE alarm (through the log, so every member refuses writes)
    /// once the database outgrows the quota; an operator disarms it after freeing space. The
    /// file's length is checked each time (cheap); only when it is over the quota are the pages
    /// in use counted (a walk of the whole database, so at most every 30 s unless the file has
    /// grown since): after a compaction the file keeps its length, but what is in use may be
    /// back under the quota.
    fn check_quota(&mut self) {
        if !self.replica.engine().is_leader() {
            return;
        }
        let store = self.replica.store();
        let raised = store.alarms().is_ok_and(|alarms| alarms.iter().any(|(kind, _)| *kind == AlarmKind::NoSpace));
        let quota = self.settings.quota_bytes;
        let size = store.size_bytes().unwrap_or(0);
        if raised || size <= quota {
            return;
        }
        // Walk again after 30 s, or as soon as the file has grown since the last walk: redb
        // grows its file ahead of use, so a walk can find the pages in use under the quota
        // just before writes fill them (waiting 30 s then let writes run far past it).
        let now = Instant::now();
        if self.quota_walked_at.is_some_and(|(at, len)| now.duration_since(at) < Duration::from_secs(30) && size <= len)
        {
            return;
        }
        self.quota_walked_at = Some((now, size));
        let over = store.size_in_use_bytes().is_ok_and(|used| used > quota);
        if over {
            tracing::warn!(quota = self.settings.quota_bytes, "database over its quota: raising the NOSPACE alarm");
            let id = self.request_id();
            let alarm = Command::Alarm { activate: true, kind: AlarmKind::NoSpace, member_id: self.settings.id };
            let _ = self.replica.propose(id, &alarm);
        }
    }

    /// A leader whose wall clock is behind its log's stamps by more than `--max-clock-skew`
    /// refuses writes (see `ballot_raft::Error::ClockSkew`); rather than stay leader and refuse
    /// them until its clock catches up, it hands leadership to an up-to-date member, whose
    /// clock may agree with the stamps (at most once per two election timeouts, so that a cluster
    /// whose clocks all disagree does not pass leadership around in a loop).
    fn hand_over_for_clock(&mut self, now: Instant) {
        // Only Raft bounds its stamps by the leader's clock and can hand leadership over.
        let Some(raft) = self.replica.engine().raft() else { return };
        let (ahead, bound) = (raft.hlc().ahead_ms(), raft.config().max_clock_skew_ms);
        if bound == 0 || ahead <= bound || raft.soft_state().role != Role::Leader {
            return;
        }
        if self.clock_handover_at.is_some_and(|at| now.duration_since(at) < self.settings.election * 2) {
            return;
        }
        self.clock_handover_at = Some(now);
        if let Some(target) = self.best_transferee() {
            tracing::warn!(
                ahead_ms = ahead,
                bound_ms = bound,
                target = format!("{target:x}"),
                "this leader's wall clock is behind its log's timestamps: handing leadership over"
            );
            let _ = self.replica.engine_mut().transfer_leader(target);
        }
    }

    /// The voter a leader hands leadership to (before stopping or leaving): the most up to
    /// date other one heard from lately; `None` if this member does not lead or has no such
    /// voter.
    pub fn best_transferee(&self) -> Option<NodeId> {
        // A Multi-Paxos leader cannot hand over: its successor is elected.
        let raft = self.replica.engine().raft()?;
        if raft.soft_state().role != Role::Leader {
            return None;
        }
        let id = self.settings.id;
        // Only a voter heard from lately: a dead one may still show the best progress.
        let active = self.last_heard.active(id, Instant::now(), self.settings.election * 2);
        raft.conf_state()
            .voters
            .iter()
            .filter(|voter| **voter != id && active.contains(voter))
            .filter_map(|voter| Some((raft.progress_of(*voter)?.match_index, *voter)))
            .max()
            .map(|(_, voter)| voter)
    }
}

/// When the heartbeats of each round went to each peer, until answered: the leader's measure of
/// peer round trips (`etcd_network_peer_round_trip_time_seconds`).
#[derive(Default)]
struct HeartbeatTimes {
    sent: HashMap<(NodeId, u64), Instant>,
}

impl HeartbeatTimes {
    fn sent(&mut self, peer: NodeId, round: u64, at: Instant) {
        self.sent.insert((peer, round), at);
    }

    /// The round trip of an answered heartbeat (once).
    fn answered(&mut self, peer: NodeId, round: u64, now: Instant) -> Option<Duration> {
        self.sent.remove(&(peer, round)).map(|at| now.duration_since(at))
    }

    /// Forgets heartbeats never answered.
    fn forget_older_than(&mut self, oldest: Instant) {
        self.sent.retain(|_, at| *at >= oldest);
    }
}

/// Starts the WAL thread and the Raft loop thread; returns the loop's inbox.
pub fn start(
    replica: Replica<FsDisk>,
    settings: Settings,
    transport_for: impl FnOnce(Inbox) -> Transport,
    metrics: Arc<Metrics>,
    inbox: (Inbox, std_mpsc::Receiver<Input>),
) -> std::thread::JoinHandle<()> {
    let (inbox_tx, inbox_rx) = inbox;
    let mut replica = replica;
    replica.detach_images();
    let transport = transport_for(inbox_tx.clone());
    let (sync_tx, sync_rx) = std_mpsc::channel::<SyncTask>();
    let wal_inbox = inbox_tx.clone();
    std::thread::Builder::new()
        .name("wal-sync".into())
        .spawn(move || {
            for task in sync_rx {
                let start = Instant::now();
                let result = task();
                if wal_inbox.send(Input::Synced(result, start.elapsed())).is_err() {
                    return;
                }
            }
        })
        .expect("spawn the WAL thread");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let auto_compaction = settings.auto_compaction;
    let mut core = Core {
        // Request ids travel in log entries and a follower's proposals are forwarded to the
        // leader, so they must differ across members and incarnations: start from the clock,
        // spread by the member id.
        next_request: seed.wrapping_mul(settings.id | 1),
        replica,
        hub: WatchHub::new(4096),
        lease_deadlines: HashMap::new(),
        metrics,
        settings,
        transport,
        watch_streams: HashMap::new(),
        watch_dispatch: watch_dispatcher(),
        waiting: HashMap::new(),
        reads: HashMap::new(),
        revoking: HashMap::new(),
        syncing: false,
        fsync_average: INLINE_FSYNC_MAX * 2,
        turn_inputs: 0,
        turn_times: TurnTimes::default(),
        slow_fsync_warnings: WarnLimiter::default(),
        slow_turn_warnings: WarnLimiter::default(),
        sync_queue: sync_tx,
        leader: 0,
        leader_history: std::collections::VecDeque::new(),
        membership_history: std::collections::VecDeque::new(),
        compactor: Compactor::new(auto_compaction),
        quota_walked_at: None,
        last_heard: LastHeard::default(),
        heartbeats: HeartbeatTimes::default(),
        published_at: None,
        publishing: None,
        published: false,
        defrag: None,
        table_seeded: false,
        inbox: inbox_tx.clone(),
        images_in_flight: Arc::default(),
        clock_handover_at: None,
    };
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            core.reload_leases(Instant::now());
            core.reload_members();
            // A panic here means the member cannot go on (a failed fsync, a broken store): the
            // process exits, so that a supervisor restarts it from its disk, rather than serving
            // on without a loop behind it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(core, inbox_rx))).is_err() {
                tracing::error!("the Raft loop stopped on a fatal error; exiting");
                std::process::exit(70);
            }
        })
        .expect("spawn the Raft loop")
}

/// While the WAL's fsyncs average at most this, the loop runs them itself instead of handing
/// them to the WAL thread: two thread hand-offs (there and back) cost more than such an fsync,
/// and they are on every write's path (a leader's and each follower's). A slow disk (its
/// average above this) gets the WAL thread, so the loop keeps stepping and heartbeating while
/// an fsync waits; one slow fsync done here holds the loop for its duration at most.
const INLINE_FSYNC_MAX: Duration = Duration::from_micros(400);

/// ... and while the loop is not busy: under load (many inputs per turn) the WAL thread's
/// fsync overlaps with the loop's work on the next batch, which is worth more than the
/// hand-offs (measured: at 256 clients an fsync on the loop cost 10% of the throughput).
const INLINE_INPUTS_MAX: usize = 2;

/// Ticks delivered at most in one turn after a stall: more would leave Raft where this many
/// does (its longest timer, the randomized election timeout, is under two election timeouts;
/// snapshot resends wait two), at the cost of a burst of heartbeats and campaigns.
const CATCH_UP_ELECTIONS_MAX: u64 = 4;

/// Ticks whose time has come by `now` on the schedule `next_tick`, which moves past them.
fn ticks_due(next_tick: &mut Instant, now: Instant, tick: Duration) -> u64 {
    if now < *next_tick {
        return 0;
    }
    let due = 1 + ((now - *next_tick).as_nanos() / tick.as_nanos().max(1)) as u64;
    *next_tick += tick * due.min(u32::MAX as u64) as u32;
    due
}

fn run(mut core: Core, inbox: std_mpsc::Receiver<Input>) {
    let tick = core.settings.tick;
    let election_ticks = (core.settings.election.as_nanos() / tick.as_nanos().max(1)).max(1) as u64;
    let mut next_tick = crate::clock::tick_instant() + tick;
    let mut ticks: u64 = 0;
    let mut stepping_down: Option<(Instant, oneshot::Sender<()>)> = None;
    let mut stopping: Option<oneshot::Sender<()>> = None;
    loop {
        let wait = next_tick.saturating_duration_since(crate::clock::tick_instant());
        let first = match inbox.recv_timeout(wait) {
            Ok(input) => Some(input),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Time first: every tick whose time has come, before the inputs that waited meanwhile
        // (the driver contract in ballot-raft's docs). After a stall (the process stopped, a
        // slow fsync or apply on this thread) that is many ticks, none dropped.
        let turn_began = Instant::now();
        core.turn_times = TurnTimes::default();
        // The wall clock for the stamps of entries this member appends as leader (the core
        // reads no clock; see ballot_raft::hlc).
        core.replica.engine_mut().observe_wall_clock(wall_clock_ms());
        let due = ticks_due(&mut next_tick, crate::clock::tick_instant(), tick);
        if due > 0 {
            if due > 1 {
                tracing::debug!(ticks = due, "the loop fell behind; delivering the ticks it owes");
            }
            for _ in 0..due.min(CATCH_UP_ELECTIONS_MAX * election_ticks) {
                core.replica.engine_mut().tick();
            }
            ticks += due;
            core.on_tick(ticks, due);
        }
        let ticked = Instant::now();
        // Take what else arrived, bounded so ticks stay on time under load.
        core.turn_inputs = 0;
        for input in first.into_iter().chain(std::iter::from_fn(|| inbox.try_recv().ok()).take(4096)) {
            core.turn_inputs += 1;
            match core.handle(input) {
                Some(Stop::StepDown(timeout, done)) => {
                    let mut deadline = Instant::now();
                    if let Some(target) = core.best_transferee() {
                        tracing::info!(target = format!("{target:x}"), "stopping: handing leadership over first");
                        if core.replica.engine_mut().transfer_leader(target).is_ok() {
                            deadline += timeout;
                        }
                    }
                    stepping_down = Some((deadline, done));
                }
                Some(Stop::Now(done)) => stopping = Some(done),
                None => {}
            }
        }
        let handled = Instant::now();
        if let Err(error) = core.drive() {
            panic!("the replica cannot go on: {error}");
        }
        let driven = Instant::now();
        core.defrag_step();
        let turn = turn_began.elapsed();
        if let Some(held_back) = (turn > SLOW_TURN).then(|| core.slow_turn_warnings.allow(Instant::now())).flatten() {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let TurnTimes { fsync, apply } = core.turn_times;
            tracing::warn!(
                took_ms = ms(turn),
                ticks_ms = ms(ticked - turn_began),
                inputs_ms = ms(handled - ticked),
                inputs = core.turn_inputs,
                drive_ms = ms(driven - handled),
                fsync_ms = ms(fsync),
                apply_ms = ms(apply),
                defrag_ms = ms(driven.elapsed()),
                more_since_last_warning = held_back,
                "a turn of the Raft loop took long (every write waited for it)"
            );
        }
        core.settings.term.store(core.term(), Ordering::Relaxed);
        let revision = core.replica.store().revision();
        core.settings.applied.send_if_modified(|published| std::mem::replace(published, revision) != revision);
        if let Some((deadline, _)) = &stepping_down {
            // Done once another member leads: proposals forwarded here meanwhile were held and
            // have been passed on to it (see ballot-raft's held proposals).
            let soft = core.replica.engine().soft_state();
            let handed_over = soft.role != Role::Leader && soft.leader != 0;
            if handed_over || Instant::now() >= *deadline {
                let (_, done) = stepping_down.take().expect("checked");
                let _ = done.send(());
            }
        }
        if stopping.is_some() && !core.syncing {
            let _ = core.replica.make_store_durable();
            let _ = stopping.take().expect("checked").send(());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_table_names_each_member_added_promoted_or_removed() {
        let member = |id: u64, is_learner: bool| crate::members::Member {
            id,
            name: format!("m{id}"),
            is_learner,
            ..Default::default()
        };
        let before = [member(1, false), member(2, true), member(3, false)];
        let after = [member(1, false), member(2, false), member(4, true), member(5, false)];
        let changes = membership_changes(&before, &after);
        assert_eq!(
            changes,
            [
                (2, "m2".to_string(), "promoted"),
                (4, "m4".to_string(), "added as a learner"),
                (5, "m5".to_string(), "added as a voter"),
                (3, "m3".to_string(), "removed"),
            ]
        );
        assert!(membership_changes(&after, &after).is_empty(), "an unchanged table is no change");
    }

    #[test]
    fn warnings_are_held_back_to_one_a_second_and_counted() {
        let mut limiter = WarnLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.allow(start), Some(0));
        assert_eq!(limiter.allow(start + Duration::from_millis(10)), None);
        assert_eq!(limiter.allow(start + Duration::from_millis(999)), None);
        assert_eq!(limiter.allow(start + Duration::from_millis(1000)), Some(2));
        assert_eq!(limiter.allow(start + Duration::from_millis(2500)), Some(0));
    }

    #[test]
    fn every_tick_owed_after_a_stall_is_due_and_the_schedule_keeps_its_phase() {
        let tick = Duration::from_millis(100);
        let start = Instant::now();
        let mut next = start + tick;
        assert_eq!(ticks_due(&mut next, start + Duration::from_millis(50), tick), 0);
        assert_eq!(ticks_due(&mut next, start + Duration::from_millis(100), tick), 1);
        assert_eq!(next, start + Duration::from_millis(200));
        // Stopped for 5.05 s: the ticks at 0.2, 0.3, … 5.1 s are owed, 50 of them.
        assert_eq!(ticks_due(&mut next, start + Duration::from_millis(5_150), tick), 50);
        assert_eq!(next, start + Duration::from_millis(5_200), "the next tick stays on the schedule");
    }
}

//! The simulation: one thread, one seeded random source, virtual time, and an event queue.
//! Nodes, clients and the nemesis only act when an event for them comes due, so a seed fixes
//! the whole run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ballot_check::{Event, EventType};
use ballot_node::{Engine, PeerMessage};
use ballot_raft::rng::Rng;
use ballot_raft::{ConfState, Config, Error as RaftError, NodeId, Role};

use crate::client::{completion_event, invoke_event, Outstanding, SimClient};
use crate::config::SimConfig;
use crate::invariants::Invariants;
use crate::kv::{command, read_request, result_of, value_of, KvOp, KvResult, RequestId};
use crate::network::{Network, NetworkProfile};
use crate::node::{ClientId, SimNode, TICK_US, WALL_EPOCH_MS, WALL_OFFSET_MAX_MS};

/// The simulated leaders' `max_clock_skew_ms`: larger than two wall-clock offsets apart, so a
/// leader never refuses a write for its clock (the refusal has its own tests in ballot-raft).
const STAMP_SKEW_MAX_MS: u64 = 1000;
use crate::trace::Trace;
use ballot_storage::WalOptions;

mod nemesis;
#[cfg(test)]
mod tests;
mod timeline;
mod zk;

const MS: u64 = 1_000_000;
/// A client gives up on a request after this long and records an unknown outcome.
const CLIENT_TIMEOUT_NS: u64 = 500 * MS;
/// Bound on the heal phase: a leader and progress must come within this much virtual time.
const HEAL_DEADLINE_NS: u64 = 60_000 * MS;
/// Redirects a client follows for one request before giving up on it. Generous: the request's
/// timeout is what normally ends a request that finds no leader (as it does for a real client).
const REDIRECTS_MAX: u32 = 64;
/// Members the cluster may grow to (initial voters plus joiners).
const JOINERS_MAX: u64 = 4;

/// How client operations ended.
#[derive(Debug, Default, Clone, Copy)]
struct Outcomes {
    ok: u64,
    fail: u64,
    info: u64,
}

/// A reply from a node to a client.
#[derive(Clone, Debug)]
enum Reply {
    Done(KvResult),
    /// Certainly not done: not the leader (with a hint), or the leader refused it.
    Refused(Option<NodeId>),
}

#[derive(Clone, Debug)]
enum Action {
    /// A node's next tick is due (if `chain` is still the node's chain of tick events).
    Tick {
        node: NodeId,
        chain: u64,
    },
    /// A message arrives. `incarnation`: for a forwarded proposal, the receiver's incarnation
    /// when it was sent; the copy is lost if the receiver restarted since (see `send`).
    Deliver {
        message: PeerMessage,
        incarnation: Option<u64>,
    },
    Request {
        node: NodeId,
        client: ClientId,
        request_id: RequestId,
        key: u8,
        op: KvOp,
    },
    Response {
        client: ClientId,
        request_id: RequestId,
        reply: Reply,
    },
    DiskSynced {
        node: NodeId,
        incarnation: u64,
    },
    ClientWake(ClientId),
    ClientTimeout {
        client: ClientId,
        request_id: RequestId,
    },
    Nemesis,
    Restart(NodeId),
    /// A ZooKeeper client picks its next request.
    ZkWake(zk::ZkClientId),
    /// A ZooKeeper request reaches a member.
    ZkRequest {
        node: NodeId,
        client: zk::ZkClientId,
        request_id: RequestId,
        op: zk::ZkOp,
    },
    /// A member's answer reaches a ZooKeeper client.
    ZkResponse {
        client: zk::ZkClientId,
        request_id: RequestId,
        reply: zk::ZkReply,
    },
    ZkTimeout {
        client: zk::ZkClientId,
        request_id: RequestId,
    },
}

/// A scheduled action; ordered by (time, sequence) so ties break deterministically.
#[derive(Debug)]
struct Scheduled {
    time: u64,
    sequence: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.sequence).cmp(&(other.time, other.sequence))
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct SimReport {
    /// The run's seed.
    pub seed: u64,
    /// Safety and liveness violations (empty: the run passed).
    pub violations: Vec<String>,
    /// Expected outcomes worth reporting that are not violations (a cluster that lost a
    /// majority for good cannot elect a leader, and must not).
    pub notes: Vec<String>,
    /// The client history.
    pub history: Vec<Event>,
    /// The linearizability violation, if the checker found one.
    pub linearizability: Option<Box<ballot_check::Violation>>,
    /// Hash of the event trace: equal for equal runs.
    pub trace_hash: u64,
    /// The trace text (with `trace` on).
    pub trace: Vec<String>,
    /// Operations that completed ok / failed / ended unknown.
    pub ops_ok: u64,
    /// Operations that certainly did not happen.
    pub ops_fail: u64,
    /// Operations with unknown outcome.
    pub ops_info: u64,
    /// ZooKeeper operations answered.
    pub zk_ops: u64,
    /// Faults injected.
    pub faults: u64,
    /// Virtual time at the end, in ms.
    pub virtual_ms: u64,
    /// The faults as intervals of virtual time (for the report's plots).
    pub fault_intervals: Vec<ballot_check::report::Fault>,
    /// Leader and membership changes, and the final heal.
    pub marks: Vec<ballot_check::report::Mark>,
}

/// The whole simulated world.
pub struct World {
    config: SimConfig,
    rng: Rng,
    now: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: BTreeMap<NodeId, SimNode>,
    clients: Vec<SimClient>,
    network: Network,
    invariants: Invariants,
    history: Vec<Event>,
    trace: Trace,
    next_process: u64,
    next_value: u64,
    /// Latest value each client saw per key (for plausible cas expectations).
    last_seen: BTreeMap<u8, Option<u64>>,
    healed: bool,
    heal_at: u64,
    faults_injected: u64,
    joiners: u64,
    /// Completed operations: ok, certainly not done, unknown.
    outcomes: Outcomes,
    /// The node whose disk had a bit flipped, if any: it must refuse to start from it.
    flipped: Option<NodeId>,
    /// Leader leases are on in this run: every node then runs check-quorum, which leases need
    /// of every voter (a voter that ignores leases may elect a new leader during one).
    lease_reads: bool,
    /// See [`SimReport::notes`].
    notes: Vec<String>,
    /// The ZooKeeper clients and what their answers showed.
    zk: zk::ZkState,
    /// Faults and notable instants, for the report.
    timeline: timeline::Timeline,
}

impl World {
    /// Builds the cluster and clients for `config`.
    pub fn new(config: SimConfig) -> World {
        let mut rng = Rng::new(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5151);
        let profile = if config.faults.network { NetworkProfile::faulty(&mut rng) } else { NetworkProfile::reliable() };
        let mut world = World {
            rng,
            now: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            nodes: BTreeMap::new(),
            clients: Vec::new(),
            network: Network::new(profile),
            invariants: Invariants::new(config.consensus != ballot_node::Consensus::Raft),
            history: Vec::new(),
            trace: Trace::new(config.trace),
            next_process: config.clients as u64,
            next_value: 1,
            last_seen: BTreeMap::new(),
            healed: false,
            heal_at: 0,
            faults_injected: 0,
            joiners: 0,
            outcomes: Outcomes::default(),
            flipped: None,
            lease_reads: false,
            notes: Vec::new(),
            zk: zk::ZkState::default(),
            timeline: timeline::Timeline::default(),
            config,
        };
        world.lease_reads = world.rng.chance(1, 4);
        let voters: Vec<NodeId> = (1..=world.config.nodes as u64).collect();
        for id in voters.clone() {
            world.add_node(id, ConfState::with_voters(voters.iter().copied()));
        }
        for client in 0..world.config.clients as u64 {
            let guess = *world.rng.pick(&voters).expect("at least one node");
            world.clients.push(SimClient::new(client, guess));
            let start = world.rng.range(0, 50 * MS);
            world.schedule(start, Action::ClientWake(client));
        }
        world.start_zk_clients();
        if world.config.faults.any() {
            let first = world.rng.range(100 * MS, 400 * MS);
            world.schedule(first, Action::Nemesis);
        }
        world
    }

    fn raft_config(&mut self, id: NodeId) -> Config {
        let mut config = Config::new(id);
        config.seed = self.rng.next_u64();
        config.pre_vote = true;
        config.check_quorum = self.lease_reads || self.rng.chance(3, 4);
        config.lease_read = self.lease_reads && self.rng.chance(3, 4);
        config.tick_interval_ns = TICK_US * 1000;
        config.max_clock_skew_ms = STAMP_SKEW_MAX_MS;
        config.inflight_messages_max = self.rng.range(1, 64) as usize;
        config.append_bytes_max = self.rng.range(64, 4096);
        #[cfg(any(test, feature = "fault-injection"))]
        {
            config.injected_bug = self.config.bug;
        }
        config
    }

    fn add_node(&mut self, id: NodeId, initial: ConfState) {
        let config = self.raft_config(id);
        let skew = if self.config.faults.skew { self.rng.range(0, 101) as i64 - 50 } else { 0 };
        let tick_us = (TICK_US as i64 * (1000 + skew) / 1000) as u64;
        let compact_every = self.rng.range(10, 200);
        let wal_options = WalOptions { segment_bytes: self.rng.range(2_048, 65_536), repair: false, zero_fill: false };
        let mut node = SimNode::new(self.config.consensus, config, initial, tick_us, compact_every, wal_options);
        #[cfg(any(test, feature = "fault-injection"))]
        if self.config.paxos_first_reported {
            node.paxos_first_reported = true;
            node.engine_mut().expect("a new node runs").inject_paxos_first_reported();
        }
        if self.config.faults.skew {
            node.wall_offset_ms = self.rng.range(0, 2 * WALL_OFFSET_MAX_MS as u64 + 1) as i64 - WALL_OFFSET_MAX_MS;
        }
        node.next_tick_at = self.now + self.rng.range(0, tick_us * 1000);
        self.nodes.insert(id, node);
        self.start_tick_chain(id);
    }

    /// Schedules the node's next tick as the start of a new chain of tick events.
    fn start_tick_chain(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("exists");
        node.tick_chain += 1;
        let (at, chain) = (node.next_tick_at, node.tick_chain);
        self.schedule_at(at, Action::Tick { node: id, chain });
    }

    fn schedule(&mut self, delay_ns: u64, action: Action) {
        self.schedule_at(self.now + delay_ns, action);
    }

    fn schedule_at(&mut self, time: u64, action: Action) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled { time, sequence: self.sequence, action }));
    }

    /// Runs the fault phase, heals, runs until the cluster recovers, and checks everything.
    pub fn run(mut self) -> SimReport {
        let mut steps = 0;
        while steps < self.config.steps && self.invariants.violations.is_empty() {
            if !self.step() {
                break;
            }
            steps += 1;
            if steps.is_multiple_of(512) {
                self.check_logs();
            }
        }
        if self.invariants.violations.is_empty() {
            self.heal();
            self.run_until_recovered();
        }
        self.check_logs();
        self.finish()
    }

    fn step(&mut self) -> bool {
        let Some(Reverse(scheduled)) = self.queue.pop() else { return false };
        self.now = scheduled.time;
        if let Some(node) = scheduled_node(&scheduled.action) {
            if let Some(until) = self.nodes.get(&node).and_then(|n| n.paused_until) {
                if until > self.now {
                    // A paused process handles nothing; everything for it waits until it
                    // resumes (a tick event too: it wakes the node when the pause ends).
                    self.schedule_at(until, scheduled.action);
                    return true;
                }
                // `resume` delivers every tick owed and starts a new chain of tick events, so
                // a tick event that waited for the pause is spent.
                self.resume(node);
                if matches!(scheduled.action, Action::Tick { .. }) {
                    return true;
                }
            }
        }
        self.handle(scheduled.action);
        true
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::Tick { node, chain } => self.on_tick(node, chain),
            Action::Deliver { message, incarnation } => self.on_deliver(message, incarnation),
            Action::Request { node, client, request_id, key, op } => self.on_request(node, client, request_id, key, op),
            Action::Response { client, request_id, reply } => self.on_response(client, request_id, reply),
            Action::DiskSynced { node, incarnation } => self.on_disk_synced(node, incarnation),
            Action::ClientWake(client) => self.on_client_wake(client),
            Action::ClientTimeout { client, request_id } => self.on_client_timeout(client, request_id),
            Action::Nemesis => self.on_nemesis(),
            Action::Restart(id) => self.on_restart(id),
            Action::ZkWake(client) => self.on_zk_wake(client),
            Action::ZkRequest { node, client, request_id, op } => self.on_zk_request(node, client, request_id, op),
            Action::ZkResponse { client, request_id, reply } => self.on_zk_response(client, request_id, reply),
            Action::ZkTimeout { client, request_id } => self.on_zk_timeout(client, request_id),
        }
    }

    // ------------------------------------------------------------------ nodes

    fn on_tick(&mut self, id: NodeId, chain: u64) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if !node.is_up() || node.tick_chain != chain {
            return;
        }
        self.deliver_owed_ticks(id);
        let node = &self.nodes[&id];
        let (at, chain) = (node.next_tick_at, node.tick_chain);
        self.schedule_at(at, Action::Tick { node: id, chain });
        self.drive(id);
    }

    /// Every tick whose time has come, as the driver contract in `ballot_raft`'s docs asks.
    fn deliver_owed_ticks(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("exists");
        let wall = node.wall_ms(now);
        if let Some(engine) = node.engine_mut() {
            engine.observe_wall_clock(wall);
        }
        while node.next_tick_at <= now {
            node.tick();
            node.next_tick_at += node.tick_ns();
        }
    }

    /// A paused node resumes. Its clock kept running while it was stopped, so every tick it
    /// missed is delivered first, before any message that waited (the driver contract in
    /// `ballot_raft`'s docs), and its ticks go on from its schedule.
    fn resume(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("exists");
        if node.paused_until.take().is_none() {
            return;
        }
        if node.is_up() {
            self.deliver_owed_ticks(id);
            self.start_tick_chain(id);
        }
        self.drive(id);
    }

    fn on_deliver(&mut self, message: PeerMessage, incarnation: Option<u64>) {
        let to = message.to();
        if incarnation.is_some_and(|sent_to| self.nodes.get(&to).is_some_and(|node| node.incarnation != sent_to)) {
            return;
        }
        let Some(engine) = self.nodes.get_mut(&to).and_then(|n| n.engine_mut()) else { return };
        self.trace.record(
            self.now,
            format_args!("deliver {} {}->{} t{}", message.kind_name(), message.from(), to, message.term()),
        );
        if let Err(error) = engine.step(message) {
            self.invariants.violations.push(format!("node {to} refused a well-formed message: {error}"));
        }
        self.drive(to);
    }

    fn send(&mut self, message: PeerMessage) {
        if self.network.is_cut(message.from(), message.to()) {
            return;
        }
        // A forwarded proposal is not idempotent: its receiver drops duplicates by memory
        // (ballot-raft's `forwarded.rs`), which a restart wipes. The server's TCP streams never
        // duplicate; this network does, so the copies in flight to a node are lost when it
        // restarts, as bytes in a stream are when its process dies. Raft's own messages are
        // idempotent and may arrive late whatever happened meanwhile, harsher than TCP.
        let incarnation =
            if message.is_proposal() { self.nodes.get(&message.to()).map(|node| node.incarnation) } else { None };
        for delay in self.network.fates(&mut self.rng) {
            self.schedule(delay, Action::Deliver { message: message.clone(), incarnation });
        }
    }

    /// Takes `Ready`s from a node until it has none or one waits for the disk.
    fn drive(&mut self, id: NodeId) {
        loop {
            let node = self.nodes.get_mut(&id).expect("node exists");
            let incarnation = node.incarnation;
            let clock = node.clock(self.now);
            let Some(replica) = node.replica.as_mut() else { return };
            let written = match replica.next_ready(clock) {
                Ok(Some(written)) => written,
                Ok(None) => {
                    // While the disk works on the last Ready, what needs no persistence
                    // (heartbeats and their answers, appends, read-index traffic) still leaves,
                    // as the server does it.
                    match replica.take_messages(clock) {
                        Ok(messages) => messages.into_iter().for_each(|message| self.send(message)),
                        Err(error) => self.invariants.violations.push(format!("node {id}: {error}")),
                    }
                    return;
                }
                Err(error) => {
                    self.invariants.violations.push(format!("node {id}: {error}"));
                    return;
                }
            };
            if written.soft_state.is_some_and(|soft| soft.role == Role::Leader) {
                let engine = replica.engine();
                let term = engine.term();
                let found = self.invariants.violations.len();
                match engine {
                    Engine::Raft(raw) => self.invariants.on_leader(id, term, raw.raft().log()),
                    Engine::Paxos(paxos, _) => self.invariants.on_paxos_leader(id, term, paxos),
                }
                self.trace.record(self.now, format_args!("node {id} leads term {term}"));
                self.timeline.mark(self.now, format!("node {id} leads term {term}"));
                if self.invariants.violations.len() > found {
                    for line in self.node_states() {
                        self.trace.record(self.now, format_args!("{line}"));
                    }
                }
            }
            // The leader's appends leave now, while its own disk works (DESIGN.md §3).
            for message in written.messages {
                self.send(message);
            }
            if !written.must_sync {
                self.finish_ready(id);
                continue;
            }
            let latency =
                if self.rng.chance(1, 50) { self.rng.range(20, 80) * MS } else { self.rng.range(100_000, 3 * MS) };
            self.schedule(latency, Action::DiskSynced { node: id, incarnation });
            return;
        }
    }

    fn on_disk_synced(&mut self, id: NodeId, incarnation: u64) {
        let Some(node) = self.nodes.get(&id) else { return };
        if node.incarnation != incarnation || !node.is_up() {
            return;
        }
        self.finish_ready(id);
        self.drive(id);
    }

    /// Everything after the Ready's writes are durable: acks out, entries applied, results and
    /// reads back to their clients.
    fn finish_ready(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let replica = node.replica.as_mut().expect("running");
        let term = replica.engine().term();
        let finished = match replica.finish() {
            Ok(finished) => finished,
            Err(error) => {
                self.invariants.violations.push(format!("node {id}: {error}"));
                return;
            }
        };
        for message in finished.messages {
            self.send(message);
        }
        let true_ms = WALL_EPOCH_MS + self.now / 1_000_000;
        for entry in &finished.committed {
            self.invariants.on_apply(id, entry, term);
            // A stamp is never further ahead of true time than a leader's clock can be, plus
            // the bound a leader keeps its stamps within.
            let bound = (WALL_OFFSET_MAX_MS as u64 + STAMP_SKEW_MAX_MS) as i64;
            let ahead = ballot_raft::hlc::physical_ms(entry.stamp) as i64 - true_ms as i64;
            if entry.stamp != 0 && ahead > bound {
                self.invariants.violations.push(format!(
                    "HLC: entry {} is stamped {ahead} ms ahead of true time (bound {bound} ms)",
                    entry.index
                ));
            }
        }
        self.feed_watch(id, finished.installed_snapshot.is_some(), &finished.events);
        let mut replies = Vec::new();
        for (request_id, applied) in finished.writes {
            let node = self.nodes.get_mut(&id).expect("node exists");
            let Some((client, _)) = node.pending_writes.remove(&request_id) else {
                self.on_zk_applied(id, request_id, applied);
                continue;
            };
            match applied.result {
                Ok(response) => replies.push((client, request_id, Reply::Done(result_of(&response)))),
                Err(error) => self.invariants.violations.push(format!("node {id}: a client command failed: {error}")),
            }
        }
        if self.config.zk_clients > 0 {
            self.check_zk_tree(id);
        }
        let node = self.nodes.get_mut(&id).expect("node exists");
        for (request_id, read) in finished.reads {
            let Some((client, key)) = node.pending_reads.remove(&request_id) else { continue };
            match read {
                Ok(response) => {
                    let value = response.kvs.first().and_then(|kv| value_of(&kv.value));
                    self.trace.record(
                        self.now,
                        format_args!(
                            "node {id} serves read {request_id:x} k{key}={value:?} (revision {}, applied {})",
                            node.replica.as_ref().map_or(0, |replica| replica.store().revision()),
                            node.applied()
                        ),
                    );
                    replies.push((client, request_id, Reply::Done(KvResult::Value(value))));
                }
                Err(error) => self.invariants.violations.push(format!("node {id}: a read failed: {error}")),
            }
        }
        self.maybe_leave(id);
        for (client, request_id, reply) in replies {
            self.reply(client, request_id, reply);
        }
    }

    /// Feeds the member's watcher and, now and then (a slow consumer), checks what it delivers:
    /// every revision once, in order, none missing, each as the store's history has it.
    fn feed_watch(&mut self, id: NodeId, restored: bool, events: &[ballot_mvcc::Event]) {
        let drain = self.rng.chance(1, 3);
        let node = self.nodes.get_mut(&id).expect("node exists");
        let (Some(replica), Some((hub, watch_id))) = (node.replica.as_ref(), node.watch.as_mut()) else { return };
        let store = replica.store();
        if restored {
            hub.restored();
        }
        let fed = hub.notify(store, events).and_then(|()| hub.catch_up(store, 4));
        if let Err(error) = fed {
            self.invariants.violations.push(format!("node {id}: watch failed: {error}"));
            return;
        }
        if !drain {
            return;
        }
        let Some((delivered, cancelled)) = hub.take(*watch_id) else { return };
        if let Some(cancelled) = cancelled {
            self.invariants.violations.push(format!("node {id}: watch cancelled: {cancelled:?}"));
            return;
        }
        for event in delivered {
            let revision = event.kv.mod_revision;
            // Revisions skipped must be ones that changed no watched key (ZooKeeper writes).
            let skipped = (node.watch_next..revision).find(|r| changed_watched_keys(store, *r));
            if revision < node.watch_next || skipped.is_some() {
                self.invariants.violations.push(format!(
                    "node {id}: watch delivered revision {revision}, expected {} (gap or duplicate)",
                    skipped.unwrap_or(node.watch_next)
                ));
                return;
            }
            node.watch_next = revision + 1;
            let at = ballot_mvcc::RangeRequest { key: event.kv.key.clone(), revision, ..Default::default() };
            let stored = store.range(&at).map(|r| r.kvs.into_iter().next());
            let expected = match event.kind {
                ballot_mvcc::EventKind::Put => Some(event.kv.clone()),
                ballot_mvcc::EventKind::Delete => None,
            };
            if stored.as_ref().ok() != Some(&expected) {
                self.invariants.violations.push(format!(
                    "node {id}: watch event at revision {revision} does not match the store: {event:?} vs {stored:?}"
                ));
                return;
            }
        }
    }

    /// A node that sees itself removed stops for good, as a removed member does: when its
    /// member table (applied state) records its removal and the committed configuration no
    /// longer has it. Only that positive evidence counts: a node that restarted from a disk
    /// behind its join (a learner whose snapshot was not yet durable) has a configuration
    /// without itself, yet was never removed. And only a committed configuration: a leader
    /// that appended the end of a joint configuration without itself must stay until that
    /// commits, or the joint one, which still counts it, may be left without a majority (the
    /// server decides the same way).
    fn maybe_leave(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let replica = node.replica.as_ref().expect("running");
        let conf = replica.engine().committed_conf_state();
        if conf.is_joint() || conf.members().contains(&id) {
            return;
        }
        let removed = match replica.store().members() {
            Ok((_, removed)) => removed.contains(&id),
            Err(error) => {
                self.invariants.violations.push(format!("node {id}: member table: {error}"));
                return;
            }
        };
        if removed {
            node.removed = true;
            node.stop();
            self.trace.record(self.now, format_args!("node {id} removed; stops"));
        }
    }

    fn on_request(&mut self, id: NodeId, client: ClientId, request_id: RequestId, key: u8, op: KvOp) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let Some(replica) = node.replica.as_mut() else { return };
        let result = match command(key, &op) {
            None => replica.read(request_id, read_request(key)).map(|()| {
                node.pending_reads.insert(request_id, (client, key));
            }),
            Some(command) => replica.propose(request_id, &command).map(|()| {
                node.pending_writes.insert(request_id, (client, key));
            }),
        };
        match result {
            Ok(()) => self.drive(id),
            Err(RaftError::NotLeader { leader }) => self.reply(client, request_id, Reply::Refused(leader)),
            Err(_) => self.reply(client, request_id, Reply::Refused(None)),
        }
    }

    fn reply(&mut self, client: ClientId, request_id: RequestId, reply: Reply) {
        // Replies cross the same lossy network (but not partitions: clients sit beside nodes).
        for delay in self.network.client_fates(&mut self.rng) {
            self.schedule(delay, Action::Response { client, request_id, reply: reply.clone() });
        }
    }

    fn on_restart(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if node.is_up() || node.removed || node.corrupt.is_some() {
            return;
        }
        if let Err(error) = node.restart() {
            // Refusing to start from a damaged disk is the right outcome; the node stays down.
            self.trace.record(self.now, format_args!("node {id} refuses to start: {error}"));
            return;
        }
        if self.flipped == Some(id) {
            self.invariants.violations.push(format!("node {id} started from a disk with a flipped bit"));
        }
        node.next_tick_at = self.now + node.tick_ns();
        match node.engine().expect("running") {
            Engine::Raft(raw) => {
                let log = raw.raft().log();
                let (first, last, last_term, committed) =
                    (log.first_index(), log.last_index(), log.last_term(), log.committed());
                self.trace.record(
                    self.now,
                    format_args!(
                        "node {id} restarts: log {first}..={last} (last term {last_term}), commit {committed}"
                    ),
                );
            }
            Engine::Paxos(paxos, _) => {
                let (first, last) = (paxos.snapshot_meta().index + 1, paxos.last_index());
                let (promised, committed) = (paxos.promised(), paxos.commit());
                self.trace.record(
                    self.now,
                    format_args!("node {id} restarts: slots {first}..={last}, promised {promised}, commit {committed}"),
                );
            }
        }
        self.start_tick_chain(id);
        self.drive(id);
    }

    // ------------------------------------------------------------------ clients

    fn on_client_wake(&mut self, client: ClientId) {
        let state = &self.clients[client as usize];
        if state.outstanding.is_some() || (self.healed && state.ok_after_heal) {
            // After healing, a client that has succeeded stops, so the cluster can converge.
            return;
        }
        let key = self.rng.range(0, self.config.keys as u64) as u8;
        let op = match self.rng.range(0, 100) {
            0..40 => KvOp::Read,
            40..70 => {
                self.next_value += 1;
                KvOp::Write(self.next_value)
            }
            70..78 => KvOp::Delete,
            _ => {
                self.next_value += 1;
                let expected = self.last_seen.get(&key).copied().flatten();
                KvOp::Cas { expected, new: self.next_value }
            }
        };
        let now = self.now;
        let state = &mut self.clients[client as usize];
        let request_id = state.next_request_id();
        state.invoked_at = now;
        self.history.push(invoke_event(state.process, key, &op, now));
        state.outstanding = Some(Outstanding { request_id, key, op: op.clone(), redirects: 0 });
        let node = state.leader_guess;
        self.send_request(node, client, request_id, key, op);
        self.schedule(CLIENT_TIMEOUT_NS, Action::ClientTimeout { client, request_id });
    }

    fn send_request(&mut self, node: NodeId, client: ClientId, request_id: RequestId, key: u8, op: KvOp) {
        for delay in self.network.client_fates(&mut self.rng) {
            self.schedule(delay, Action::Request { node, client, request_id, key, op: op.clone() });
        }
    }

    fn on_response(&mut self, client: ClientId, request_id: RequestId, reply: Reply) {
        let now = self.now;
        let state = &mut self.clients[client as usize];
        let Some(outstanding) = state.outstanding.clone() else { return };
        if outstanding.request_id != request_id {
            return;
        }
        match reply {
            Reply::Refused(hint) => {
                if outstanding.redirects >= REDIRECTS_MAX {
                    // A refusal proves only that this copy was not proposed; a duplicate of the
                    // request may have been. Giving up is an unknown outcome, like a timeout.
                    self.give_up(client);
                    return;
                }
                let guess = match hint {
                    Some(leader) => leader,
                    None => *self.rng.pick(&self.node_ids()).expect("nodes exist"),
                };
                let state = &mut self.clients[client as usize];
                state.leader_guess = guess;
                state.outstanding.as_mut().expect("checked").redirects += 1;
                // Follow a hint at once the first times; otherwise (no hint, or hints that keep
                // bouncing) back off before trying again, as a real client would.
                let redirects = self.clients[client as usize].outstanding.as_ref().map_or(0, |o| o.redirects);
                let backoff = if hint.is_some() && redirects <= 3 { 0 } else { self.rng.range(5, 30) * MS };
                for delay in self.network.client_fates(&mut self.rng) {
                    let action = Action::Request {
                        node: guess,
                        client,
                        request_id,
                        key: outstanding.key,
                        op: outstanding.op.clone(),
                    };
                    self.schedule_at(now + backoff + delay, action);
                }
            }
            Reply::Done(KvResult::Swapped(false)) => self.complete(client, EventType::Fail, None),
            Reply::Done(result) => {
                if let KvResult::Value(value) = result {
                    self.last_seen.insert(outstanding.key, value);
                } else if let KvOp::Write(value) | KvOp::Cas { new: value, .. } = outstanding.op {
                    self.last_seen.insert(outstanding.key, Some(value));
                } else if outstanding.op == KvOp::Delete {
                    self.last_seen.insert(outstanding.key, None);
                }
                self.complete(client, EventType::Ok, Some(result));
            }
        }
    }

    fn on_client_timeout(&mut self, client: ClientId, request_id: RequestId) {
        let state = &self.clients[client as usize];
        let Some(outstanding) = &state.outstanding else { return };
        if outstanding.request_id != request_id {
            return;
        }
        self.give_up(client);
    }

    /// Ends the outstanding operation without an answer.
    fn give_up(&mut self, client: ClientId) {
        let Some(outstanding) = &self.clients[client as usize].outstanding else { return };
        // A read that never answered changed nothing; a write or cas may have happened.
        let kind = if outstanding.op == KvOp::Read { EventType::Fail } else { EventType::Info };
        self.complete(client, kind, None);
        let guess = *self.rng.pick(&self.node_ids()).expect("nodes exist");
        self.clients[client as usize].leader_guess = guess;
    }

    fn complete(&mut self, client: ClientId, kind: EventType, result: Option<KvResult>) {
        let now = self.now;
        let healed = self.healed;
        let state = &mut self.clients[client as usize];
        let outstanding = state.outstanding.take().expect("an operation in progress");
        self.history.push(completion_event(state.process, outstanding.key, &outstanding.op, kind, result, now));
        match kind {
            EventType::Ok => {
                self.outcomes.ok += 1;
                if healed && state.invoked_at >= self.heal_at {
                    state.ok_after_heal = true;
                }
            }
            EventType::Fail => self.outcomes.fail += 1,
            _ => {
                self.outcomes.info += 1;
                state.process = self.next_process;
                self.next_process += 1;
            }
        }
        let think = self.rng.range(0, 20 * MS);
        self.schedule(think, Action::ClientWake(client));
    }

    fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| !n.removed).map(|(id, _)| *id).collect()
    }
}

/// True if revision `r` changed a key the simulated watcher watches (`k…`): the keys live at
/// `r` differ from those at `r - 1`. Unknown below the compaction: assumed not.
fn changed_watched_keys(store: &ballot_mvcc::Store, r: i64) -> bool {
    let at = |revision| {
        let request =
            ballot_mvcc::RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), revision, ..Default::default() };
        store.range(&request).map(|found| found.kvs)
    };
    match (at(r), at(r - 1)) {
        (Ok(now), Ok(before)) => now != before,
        _ => false,
    }
}

fn scheduled_node(action: &Action) -> Option<NodeId> {
    match action {
        Action::Tick { node: id, .. } | Action::DiskSynced { node: id, .. } => Some(*id),
        Action::Deliver { message, .. } => Some(message.to()),
        Action::Request { node, .. } | Action::ZkRequest { node, .. } => Some(*node),
        _ => None,
    }
}

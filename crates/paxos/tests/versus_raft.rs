//! Raft and Multi-Paxos side by side, as pure cores in one deterministic network with virtual
//! time: the same members, latencies, ticks and workload for both. What it measures (messages
//! and bytes per committed entry, commit latency, time from a leader's crash to the next
//! commit) is printed by the ignored test `comparison`:
//!
//! ```sh
//! cargo test --release -p ballot-paxos --test versus_raft -- --ignored --nocapture comparison
//! ```
//!
//! and summed up in `docs/paxos.md`. The other tests check that both engines do the work, so
//! the figures come from runs that completed. Bytes are estimated alike for both (a fixed
//! header per message, each entry's payload plus a fixed header, snapshot data), not encoded.

use std::collections::{BTreeMap, BTreeSet};

use ballot_paxos::multi;
use ballot_raft::{ConfState, Monotonic, NodeId, RawNode, Role};

/// One virtual millisecond per step; a tick is 100 of them, as in ballot's defaults.
const TICK_MS: u64 = 100;
const HEADER: u64 = 32;

enum Msg {
    Raft(ballot_raft::Message),
    Paxos(multi::Message),
}

impl Msg {
    fn ends(&self) -> (NodeId, NodeId) {
        match self {
            Msg::Raft(m) => (m.from, m.to),
            Msg::Paxos(m) => (m.from, m.to),
        }
    }

    fn bytes(&self) -> u64 {
        use ballot_raft::MessageBody as R;
        use multi::Body as P;
        let entries = |es: &[ballot_raft::Entry]| es.iter().map(|e| e.size_bytes()).sum::<u64>();
        HEADER
            + match self {
                Msg::Raft(m) => match &m.body {
                    R::Append { entries: es, .. } => entries(es),
                    R::InstallSnapshot { snapshot } => snapshot.data.len() as u64,
                    R::Propose { entries: es } => es.iter().map(|e| e.len() as u64 + 24).sum(),
                    _ => 0,
                },
                Msg::Paxos(m) => match &m.body {
                    P::Accept { entries: es, .. } | P::Promise { entries: es, .. } => entries(es),
                    P::Snapshot { snapshot } => snapshot.data.len() as u64,
                    P::Propose { entries: es } => es.iter().map(|e| e.len() as u64 + 24).sum(),
                    _ => 0,
                },
            }
    }
}

/// Either engine, driven alike.
trait Engine {
    fn tick(&mut self);
    fn deliver(&mut self, message: Msg);
    fn propose(&mut self, data: Vec<u8>) -> bool;
    fn leads(&self) -> bool;
    /// Carries out every ready: the messages to send and the payloads applied.
    fn drain(&mut self, now_ms: u64) -> (Vec<Msg>, Vec<Vec<u8>>);
}

struct RaftEngine(RawNode);

impl Engine for RaftEngine {
    fn tick(&mut self) {
        self.0.tick();
    }
    fn deliver(&mut self, message: Msg) {
        if let Msg::Raft(m) = message {
            let _ = self.0.step(m);
        }
    }
    fn propose(&mut self, data: Vec<u8>) -> bool {
        self.0.propose(data).is_ok()
    }
    fn leads(&self) -> bool {
        self.0.raft().soft_state().role == Role::Leader
    }
    fn drain(&mut self, now_ms: u64) -> (Vec<Msg>, Vec<Vec<u8>>) {
        let (mut out, mut applied) = (Vec::new(), Vec::new());
        while self.0.has_ready() {
            let ready = self.0.ready(Monotonic::from_nanos(now_ms * 1_000_000));
            out.extend(ready.messages.into_iter().chain(ready.messages_after_persist).map(Msg::Raft));
            applied.extend(ready.committed_entries.into_iter().map(|e| e.data));
            self.0.advance();
        }
        (out, applied)
    }
}

struct PaxosEngine(multi::Replica);

impl Engine for PaxosEngine {
    fn tick(&mut self) {
        self.0.tick();
    }
    fn deliver(&mut self, message: Msg) {
        if let Msg::Paxos(m) = message {
            let _ = self.0.step(m);
        }
    }
    fn propose(&mut self, data: Vec<u8>) -> bool {
        self.0.soft_state().role == Role::Leader && self.0.propose(data).is_ok()
    }
    fn leads(&self) -> bool {
        self.0.soft_state().role == Role::Leader
    }
    fn drain(&mut self, _now_ms: u64) -> (Vec<Msg>, Vec<Vec<u8>>) {
        let (mut out, mut applied) = (Vec::new(), Vec::new());
        while self.0.has_ready() {
            let ready = self.0.ready();
            out.extend(ready.messages.into_iter().chain(ready.messages_after_persist).map(Msg::Paxos));
            applied.extend(ready.committed_entries.into_iter().map(|e| e.data));
            self.0.advance();
        }
        (out, applied)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Raft,
    Paxos { q1: usize, q2: usize },
}

struct Cluster {
    nodes: BTreeMap<NodeId, Box<dyn Engine>>,
    down: BTreeSet<NodeId>,
    /// (arrival ms, sequence) → message.
    wire: BTreeMap<(u64, u64), Msg>,
    sequence: u64,
    now: u64,
    /// One-way latency of each member's links, ms (a link takes the larger of its two ends).
    latency: BTreeMap<NodeId, u64>,
    messages: u64,
    bytes: u64,
    /// When the leader applied each payload.
    applied_at: BTreeMap<Vec<u8>, u64>,
}

impl Cluster {
    fn new(kind: Kind, latency: &[u64], seed: u64) -> Cluster {
        let voters: Vec<NodeId> = (1..=latency.len() as u64).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let engine: Box<dyn Engine> = match kind {
                    Kind::Raft => {
                        let mut config = ballot_raft::Config::new(id);
                        config.seed = seed * 100 + id;
                        config.tick_interval_ns = TICK_MS * 1_000_000;
                        Box::new(RaftEngine(RawNode::new(config, ConfState::with_voters(voters.clone())).unwrap()))
                    }
                    Kind::Paxos { q1, q2 } => {
                        let mut config = multi::Config::new(id, voters.clone());
                        config.seed = seed * 100 + id;
                        config.phase1_quorum = q1;
                        config.phase2_quorum = q2;
                        Box::new(PaxosEngine(multi::Replica::new(config).unwrap()))
                    }
                };
                (id, engine)
            })
            .collect();
        Cluster {
            nodes,
            down: BTreeSet::new(),
            wire: BTreeMap::new(),
            sequence: 0,
            now: 0,
            latency: voters.iter().map(|&id| (id, latency[id as usize - 1])).collect(),
            messages: 0,
            bytes: 0,
            applied_at: BTreeMap::new(),
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes.iter().find(|(id, n)| !self.down.contains(id) && n.leads()).map(|(id, _)| *id)
    }

    fn drain(&mut self, id: NodeId) {
        let (out, applied) = self.nodes.get_mut(&id).unwrap().drain(self.now);
        let leads = self.nodes[&id].leads();
        for message in out {
            let (from, to) = message.ends();
            self.messages += 1;
            self.bytes += message.bytes();
            let delay = self.latency[&from].max(self.latency[&to]);
            self.sequence += 1;
            self.wire.insert((self.now + delay, self.sequence), message);
        }
        if leads {
            for data in applied {
                self.applied_at.entry(data).or_insert(self.now);
            }
        }
    }

    /// One virtual millisecond: deliveries due, then ticks due (each member's tick phase is
    /// offset by its id, as real members' clocks are).
    fn step(&mut self) {
        self.now += 1;
        while let Some(entry) = self.wire.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let message = entry.remove();
            let to = message.ends().1;
            if self.down.contains(&to) {
                continue;
            }
            self.nodes.get_mut(&to).unwrap().deliver(message);
            self.drain(to);
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.down.contains(&id) && (self.now + id * 17).is_multiple_of(TICK_MS) {
                self.nodes.get_mut(&id).unwrap().tick();
                self.drain(id);
            }
        }
    }

    /// Runs until `done`, at most `limit_ms`; false if it never held.
    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let end = self.now + limit_ms;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn elect(&mut self) -> NodeId {
        assert!(self.run_until(60_000, |c| c.leader().is_some()), "no leader within a minute");
        // Let the new leader settle (Raft's first no-op, Paxos's reign no-op).
        self.run_until(500, |_| false);
        self.leader().expect("still leading")
    }

    /// Proposes `data` at the leader; the virtual ms until the leader applied it.
    fn commit_one(&mut self, data: Vec<u8>) -> Option<u64> {
        let start = self.now;
        let leader = self.leader()?;
        if !self.nodes.get_mut(&leader).unwrap().propose(data.clone()) {
            return None;
        }
        self.drain(leader);
        self.run_until(10_000, |c| c.applied_at.contains_key(&data)).then(|| self.applied_at[&data] - start)
    }
}

/// What one engine did on one workload.
#[derive(Debug, Default)]
struct Figures {
    latency_ms: f64,
    messages_per_entry: f64,
    bytes_per_entry: f64,
    recovery_ms: f64,
}

/// `entries` proposals one at a time, then the same with `window` in flight, then the
/// leader crashed `crashes` times (over different seeds): each until the next commit.
fn measure(kind: Kind, latency: &[u64], entries: u64, window: u64, crashes: u64) -> (Figures, Figures) {
    let mut sequential = Figures::default();
    let mut pipelined = Figures::default();
    // The first seed whose leader is one of the nearest members: a far leader would measure
    // the distance, not the protocol.
    let nearest = *latency.iter().min().expect("members");
    let mut cluster = (1..)
        .map(|seed| {
            let mut cluster = Cluster::new(kind, latency, seed);
            let leader = cluster.elect();
            (cluster, leader)
        })
        .find(|(cluster, leader)| cluster.latency[leader] == nearest)
        .map(|(cluster, _)| cluster)
        .expect("some seed");
    let (messages, bytes) = (cluster.messages, cluster.bytes);
    let mut total = 0;
    for i in 0..entries {
        total += cluster.commit_one(format!("one-{i:06}").into_bytes()).expect("committed");
    }
    sequential.latency_ms = total as f64 / entries as f64;
    sequential.messages_per_entry = (cluster.messages - messages) as f64 / entries as f64;
    sequential.bytes_per_entry = (cluster.bytes - bytes) as f64 / entries as f64;

    let (messages, bytes, start) = (cluster.messages, cluster.bytes, cluster.now);
    let leader = cluster.leader().expect("leads");
    let mut proposed: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut next = 0;
    while (cluster.applied_at.len() as u64) < entries + entries {
        let outstanding = proposed.keys().filter(|d| !cluster.applied_at.contains_key(*d)).count() as u64;
        for _ in outstanding..window {
            if next == entries {
                break;
            }
            let data = format!("many-{next:06}").into_bytes();
            assert!(cluster.nodes.get_mut(&leader).unwrap().propose(data.clone()));
            proposed.insert(data, cluster.now);
            next += 1;
        }
        cluster.drain(leader);
        cluster.step();
        assert!(cluster.now < start + 600_000, "the pipelined run stalled");
    }
    pipelined.latency_ms =
        proposed.iter().map(|(d, at)| (cluster.applied_at[d] - at) as f64).sum::<f64>() / entries as f64;
    pipelined.messages_per_entry = (cluster.messages - messages) as f64 / entries as f64;
    pipelined.bytes_per_entry = (cluster.bytes - bytes) as f64 / entries as f64;

    let mut recovery = 0;
    for seed in 0..crashes {
        let mut cluster = Cluster::new(kind, latency, seed + 2);
        let leader = cluster.elect();
        cluster.commit_one(b"before".to_vec()).expect("committed");
        cluster.down.insert(leader);
        let crashed_at = cluster.now;
        let data = format!("after-{seed}").into_bytes();
        let mut done = false;
        while !done && cluster.now < crashed_at + 60_000 {
            match cluster.leader() {
                Some(new_leader) => {
                    cluster.nodes.get_mut(&new_leader).unwrap().propose(data.clone());
                    cluster.drain(new_leader);
                    done = cluster.run_until(2_000, |c| c.applied_at.contains_key(&data));
                }
                None => cluster.step(),
            }
        }
        assert!(done, "{kind:?} seed {seed}: no commit within a minute of the leader's crash");
        recovery += cluster.applied_at[&data] - crashed_at;
    }
    sequential.recovery_ms = recovery as f64 / crashes.max(1) as f64;
    (sequential, pipelined)
}

#[test]
fn both_engines_commit_one_at_a_time_pipelined_and_after_a_leaders_crash() {
    for kind in [Kind::Raft, Kind::Paxos { q1: 0, q2: 0 }] {
        let (one, many) = measure(kind, &[1, 1, 1], 20, 8, 2);
        assert!(one.latency_ms >= 2.0, "{kind:?}: a commit needs a round trip: {one:?}");
        assert!(many.messages_per_entry < one.messages_per_entry, "{kind:?}: batching saves messages");
    }
}

#[test]
fn flexible_quorums_commit_without_waiting_for_the_far_members() {
    let far = [1, 1, 20, 20, 20];
    let (majority, _) = measure(Kind::Paxos { q1: 0, q2: 0 }, &far, 20, 1, 1);
    let (flexible, _) = measure(Kind::Paxos { q1: 4, q2: 2 }, &far, 20, 1, 1);
    assert!(flexible.latency_ms < majority.latency_ms, "{flexible:?} vs {majority:?}");
}

#[test]
#[ignore]
fn comparison() {
    let setups: [(&str, &[u64]); 2] =
        [("3 members, 1 ms links", &[1, 1, 1]), ("5 members, three 20 ms away", &[1, 1, 20, 20, 20])];
    println!("| setup | engine | commit latency, 1 client (ms) | msgs/entry, 1 | bytes/entry, 1 | latency, 64 in flight (ms) | msgs/entry, 64 | bytes/entry, 64 | leader crash to next commit (ms, mean of 20) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, latency) in setups {
        let mut kinds = vec![("Raft", Kind::Raft), ("Multi-Paxos", Kind::Paxos { q1: 0, q2: 0 })];
        if latency.len() == 5 {
            kinds.push(("Multi-Paxos, q1 4 / q2 2", Kind::Paxos { q1: 4, q2: 2 }));
        }
        for (engine, kind) in kinds {
            let (one, many) = measure(kind, latency, 500, 64, 20);
            println!(
                "| {name} | {engine} | {:.1} | {:.2} | {:.0} | {:.1} | {:.2} | {:.0} | {:.0} |",
                one.latency_ms,
                one.messages_per_entry,
                one.bytes_per_entry,
                many.latency_ms,
                many.messages_per_entry,
                many.bytes_per_entry,
                one.recovery_ms
            );
        }
    }
}

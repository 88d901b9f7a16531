//! Replicas in a deterministic simulated network: messages lost, duplicated, reordered and
//! held back to arrive long after (stale ballots), replicas crashed (keeping only what they
//! persisted, and sometimes losing power after sending a ready's messages but before its
//! writes), restarted, partitioned, compacting their logs, their clocks ticking at rates up to
//! five times apart.
//! Checked after every step: no two replicas ever apply different values at one slot, every
//! value applied was proposed, every confirmed read index covers every slot chosen before the
//! read began; and at the end, once healed, the replicas agree and commit again.

use std::collections::{BTreeMap, BTreeSet};

use ballot_raft::rng::Rng;
use ballot_raft::{Entry, HardState, Index, NodeId, Role, Snapshot};

use super::*;
use crate::Pick;

/// What a replica's disk holds.
#[derive(Default, Clone)]
struct Disk {
    hard: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

struct Node {
    replica: Replica,
    disk: Disk,
    /// The state machine: every applied value by slot (rebuilt from the snapshot on restart).
    applied: Vec<Vec<u8>>,
    up: bool,
    /// Reads asked and not yet answered: context → the highest slot chosen anywhere when asked.
    reads: BTreeMap<Vec<u8>, Index>,
}

struct World {
    rng: Rng,
    config: Box<dyn Fn(NodeId) -> Config>,
    nodes: BTreeMap<NodeId, Node>,
    net: Vec<Message>,
    /// Messages held back, released all at once later: stale messages from old ballots.
    held: Vec<Message>,
    /// Faults on (off while settling).
    faults: bool,
    /// Ticks each replica takes per tick step: clocks running at different rates.
    speed: BTreeMap<NodeId, u32>,
    /// Each replica's side of the current partition (all 0: none).
    side: BTreeMap<NodeId, u8>,
    chosen: BTreeMap<Index, Vec<u8>>,
    proposed: BTreeSet<Vec<u8>>,
    next_proposal: u64,
    next_read: u64,
    reads_confirmed: u64,
    messages: u64,
}

fn encode(values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn decode(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    while !data.is_empty() {
        let len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        values.push(data[4..4 + len].to_vec());
        data = &data[4 + len..];
    }
    values
}

impl World {
    fn new(seed: u64, voters: &[NodeId], config: impl Fn(NodeId) -> Config + 'static) -> World {
        let nodes = voters
            .iter()
            .map(|&id| {
                let replica = Replica::new(config(id)).unwrap();
                (id, Node { replica, disk: Disk::default(), applied: Vec::new(), up: true, reads: BTreeMap::new() })
            })
            .collect();
        World {
            rng: Rng::new(seed),
            config: Box::new(config),
            nodes,
            net: Vec::new(),
            held: Vec::new(),
            faults: true,
            speed: voters.iter().map(|&id| (id, 1)).collect(),
            side: voters.iter().map(|&id| (id, 0)).collect(),
            chosen: BTreeMap::new(),
            proposed: BTreeSet::new(),
            next_proposal: 0,
            next_read: 0,
            reads_confirmed: 0,
            messages: 0,
        }
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn highest_commit(&self) -> Index {
        self.nodes.values().filter(|n| n.up).map(|n| n.replica.commit()).max().unwrap_or(0)
    }

    /// Carries out `id`'s readies until it has none, checking what it applies.
    fn drain(&mut self, id: NodeId) -> Result<(), String> {
        loop {
            let node = self.nodes.get_mut(&id).unwrap();
            if !node.up || !node.replica.has_ready() {
                return Ok(());
            }
            let ready = node.replica.ready();
            self.net.extend(ready.messages.iter().cloned());
            // Power lost after sending, before the disk had any of this ready: most likely
            // (one in ten) when the ready carries a new promise, where losing it matters most.
            let odds = if ready.hard_state.is_some_and(|h| h.term != node.disk.hard.term) { 10 } else { 100 };
            if self.faults && self.rng.chance(1, odds) {
                node.up = false;
                return Ok(());
            }
            if let Some(snapshot) = &ready.snapshot {
                node.disk.entries.retain(|e| e.index > snapshot.meta.index);
                node.disk.snapshot = snapshot.clone();
            }
            if let Some(first) = ready.entries.first() {
                let stored_first = node.disk.snapshot.meta.index + 1;
                node.disk.entries.retain(|e| e.index < first.index);
                let last = node.disk.entries.last().map_or(node.disk.snapshot.meta.index, |e| e.index);
                assert!(first.index > stored_first - 1 && first.index <= last + 1, "a gap in the stored log");
                node.disk.entries.extend(ready.entries.iter().cloned());
            }
            if let Some(hard) = ready.hard_state {
                node.disk.hard = hard;
            }
            self.net.extend(ready.messages_after_persist.iter().cloned());
            if let Some(snapshot) = &ready.snapshot {
                node.applied = decode(&snapshot.data);
                for (i, value) in node.applied.iter().enumerate() {
                    check_chosen(&mut self.chosen, i as Index + 1, value, id)?;
                }
            }
            for entry in &ready.committed_entries {
                if entry.index != node.applied.len() as Index + 1 {
                    return Err(format!("replica {id} applied slot {} after {}", entry.index, node.applied.len()));
                }
                if !entry.data.is_empty() && !self.proposed.contains(&entry.data) {
                    return Err(format!("replica {id} applied {:?}, never proposed", entry.data));
                }
                check_chosen(&mut self.chosen, entry.index, &entry.data, id)?;
                node.applied.push(entry.data.clone());
            }
            for read in &ready.read_states {
                if let Some(floor) = node.reads.remove(&read.context) {
                    if read.index < floor {
                        return Err(format!(
                            "replica {id}: a read confirmed at slot {} though slot {floor} was chosen before it began",
                            read.index
                        ));
                    }
                    self.reads_confirmed += 1;
                }
            }
            node.replica.advance();
        }
    }

    fn deliver(&mut self, at: usize) -> Result<(), String> {
        let message = self.net.swap_remove(at);
        if self.faults {
            if self.rng.chance(1, 20) {
                return Ok(());
            }
            if self.rng.chance(1, 20) {
                self.net.push(message.clone());
            }
            if self.rng.chance(1, 10) {
                self.held.push(message);
                return Ok(());
            }
        }
        let to = message.to;
        if !self.nodes[&to].up || self.side[&message.from] != self.side[&to] {
            return Ok(());
        }
        self.messages += 1;
        self.nodes.get_mut(&to).unwrap().replica.step(message).map_err(|e| e.to_string())?;
        self.drain(to)
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).unwrap().up = false;
    }

    fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let config = (self.config)(id);
        let node = self.nodes.get_mut(&id).unwrap();
        let state = RestartState {
            hard_state: node.disk.hard,
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
            applied: node.disk.snapshot.meta.index,
        };
        node.replica = Replica::restart(config, state).map_err(|e| e.to_string())?;
        node.applied = decode(&node.disk.snapshot.data);
        node.reads.clear();
        node.up = true;
        self.drain(id)
    }

    fn propose(&mut self, id: NodeId) -> Result<(), String> {
        self.next_proposal += 1;
        let data = format!("p{}", self.next_proposal).into_bytes();
        self.proposed.insert(data.clone());
        let _ = self.nodes.get_mut(&id).unwrap().replica.propose(data);
        self.drain(id)
    }

    fn read(&mut self, id: NodeId) -> Result<(), String> {
        self.next_read += 1;
        let context = format!("r{}", self.next_read).into_bytes();
        let floor = self.highest_commit();
        let node = self.nodes.get_mut(&id).unwrap();
        if node.replica.read_index(context.clone()).is_ok() {
            node.reads.insert(context, floor);
        }
        self.drain(id)
    }

    fn compact(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).unwrap();
        let applied = node.replica.applied();
        if applied == 0 {
            return Ok(());
        }
        let data = encode(&node.applied[..applied as usize]);
        if let Ok(meta) = node.replica.compact(applied, data.clone()) {
            node.disk.entries.retain(|e| e.index > meta.index);
            node.disk.snapshot = Snapshot { meta, data };
        }
        Ok(())
    }

    /// One random step.
    fn step(&mut self) -> Result<(), String> {
        let ids = self.ids();
        let id = *self.rng.pick(&ids).unwrap();
        let roll = self.rng.range(0, 100);
        match roll {
            0..=64 if !self.net.is_empty() => {
                let at = self.rng.range(0, self.net.len() as u64) as usize;
                self.deliver(at)
            }
            0..=74 => {
                if self.nodes[&id].up {
                    for _ in 0..self.speed[&id] {
                        self.nodes.get_mut(&id).unwrap().replica.tick();
                    }
                }
                self.drain(id)
            }
            75..=86 if self.nodes[&id].up => self.propose(id),
            87..=90 if self.nodes[&id].up => self.read(id),
            91..=92 if self.nodes[&id].up => {
                self.crash(id);
                Ok(())
            }
            91..=95 if !self.nodes[&id].up => self.restart(id),
            96 => {
                for id in self.ids() {
                    let side = self.rng.range(0, 2) as u8;
                    self.side.insert(id, side);
                }
                Ok(())
            }
            97 => {
                self.side.values_mut().for_each(|s| *s = 0);
                self.net.append(&mut self.held);
                Ok(())
            }
            98 if self.nodes[&id].up => self.compact(id),
            99 => {
                self.net.append(&mut self.held);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Heals everything and runs until a fresh proposal is applied everywhere.
    fn settle(&mut self) -> Result<(), String> {
        self.faults = false;
        self.side.values_mut().for_each(|s| *s = 0);
        self.net.append(&mut self.held);
        for id in self.ids() {
            if !self.nodes[&id].up {
                self.restart(id)?;
            }
        }
        let last = format!("final{}", self.next_proposal).into_bytes();
        self.proposed.insert(last.clone());
        let mut proposed_at = None;
        for round in 0..3000 {
            for id in self.ids() {
                self.nodes.get_mut(&id).unwrap().replica.tick();
                self.drain(id)?;
            }
            while !self.net.is_empty() {
                let message = self.net.remove(0);
                let to = message.to;
                self.messages += 1;
                self.nodes.get_mut(&to).unwrap().replica.step(message).map_err(|e| e.to_string())?;
                self.drain(to)?;
            }
            let leader =
                self.nodes.values().find(|n| n.replica.soft_state().role == Role::Leader).map(|n| n.replica.id());
            if let Some(leader) = leader {
                if proposed_at.is_none_or(|at| round > at + 50) {
                    proposed_at = Some(round);
                    let _ = self.nodes.get_mut(&leader).unwrap().replica.propose(last.clone());
                    self.drain(leader)?;
                }
            }
            let done = self.nodes.values().all(|n| n.applied.contains(&last));
            if done {
                let first = &self.nodes.values().next().unwrap().applied;
                let least = self.nodes.values().map(|n| n.applied.len()).min().unwrap();
                if self.nodes.values().any(|n| n.applied[..least] != first[..least]) {
                    return Err("replicas applied different sequences".into());
                }
                return Ok(());
            }
        }
        Err(format!(
            "no progress after healing: {:#?}",
            self.nodes.values().map(|n| n.replica.describe()).collect::<Vec<_>>()
        ))
    }
}

fn check_chosen(chosen: &mut BTreeMap<Index, Vec<u8>>, slot: Index, value: &[u8], id: NodeId) -> Result<(), String> {
    match chosen.get(&slot) {
        Some(known) if known != value => Err(format!(
            "agreement violated at slot {slot}: replica {id} applied {:?}, another {:?}",
            String::from_utf8_lossy(value),
            String::from_utf8_lossy(known)
        )),
        Some(_) => Ok(()),
        None => {
            chosen.insert(slot, value.to_vec());
            Ok(())
        }
    }
}

/// One simulated run; the error says what went wrong.
fn run(seed: u64, n: u64, steps: usize, tune: impl Fn(&mut Config) + 'static) -> Result<World, String> {
    let voters: Vec<NodeId> = (1..=n).collect();
    let all = voters.clone();
    let mut world = World::new(seed, &voters, move |id| {
        let mut config = Config::new(id, all.clone());
        config.seed = seed.wrapping_mul(31).wrapping_add(id);
        // Short timeouts: many elections per run, so many phase-1 recoveries to get wrong.
        config.election_tick = 4;
        config.max_batch = 4;
        config.max_inflight = 16;
        tune(&mut config);
        config
    });
    for id in world.ids() {
        let speed = world.rng.range(1, 6) as u32;
        world.speed.insert(id, speed);
    }
    for _ in 0..steps {
        world.step()?;
    }
    world.settle()?;
    Ok(world)
}

#[test]
fn one_replica_leads_itself_and_commits() {
    let mut world = run(1, 1, 0, |_| {}).unwrap();
    world.propose(1).unwrap();
    assert!(world.nodes[&1].applied.contains(&b"p1".to_vec()));
}

#[test]
fn three_replicas_elect_a_leader_commit_and_serve_reads_without_faults() {
    let voters = [1, 2, 3];
    let mut world = World::new(7, &voters, move |id| Config::new(id, voters));
    world.faults = false;
    for _ in 0..40 {
        for id in voters {
            world.nodes.get_mut(&id).unwrap().replica.tick();
            world.drain(id).unwrap();
        }
        while !world.net.is_empty() {
            world.deliver(0).unwrap();
        }
    }
    let leader = world.nodes.values().find(|n| n.replica.soft_state().role == Role::Leader).unwrap().replica.id();
    world.propose(leader).unwrap();
    world.read(leader).unwrap();
    for _ in 0..10 {
        while !world.net.is_empty() {
            world.deliver(0).unwrap();
        }
        for id in voters {
            world.nodes.get_mut(&id).unwrap().replica.tick();
            world.drain(id).unwrap();
        }
    }
    assert!(world.nodes.values().all(|n| n.applied.contains(&b"p1".to_vec())));
    assert_eq!(world.reads_confirmed, 1);
}

#[test]
fn random_faults_never_break_agreement_three_replicas() {
    for seed in 0..300 {
        if let Err(error) = run(seed, 3, 3000, |_| {}) {
            panic!("seed {seed}: {error}");
        }
    }
}

#[test]
fn random_faults_never_break_agreement_five_replicas_and_flexible_quorums() {
    for seed in 0..100 {
        if let Err(error) = run(seed, 5, 3000, |_| {}) {
            panic!("seed {seed} (majorities): {error}");
        }
        // Phase 2 on 2 of 5, phase 1 on 4 of 5.
        if let Err(error) = run(seed, 5, 3000, |c| {
            c.phase1_quorum = 4;
            c.phase2_quorum = 2;
        }) {
            panic!("seed {seed} (flexible 4/2): {error}");
        }
    }
}

#[test]
fn the_simulation_catches_the_chapters_pick_rule() {
    let caught =
        (0..300).find_map(|seed| run(seed, 3, 3000, |c| c.pick = Pick::FirstReported).err().map(|e| (seed, e)));
    let (seed, error) = caught.expect("the first-reported rule should break agreement in some seed");
    assert!(error.contains("agreement violated"), "seed {seed}: {error}");
}

#[test]
fn a_leaders_stamps_increase_and_a_new_leader_stamps_above_what_it_recovered() {
    let voters = [1, 2, 3];
    let mut world = World::new(3, &voters, move |id| Config::new(id, voters));
    world.faults = false;
    let elect = |world: &mut World| {
        for _ in 0..60 {
            for id in world.ids() {
                if world.nodes[&id].up {
                    world.nodes.get_mut(&id).unwrap().replica.observe_wall_clock(1_000);
                    world.nodes.get_mut(&id).unwrap().replica.tick();
                    world.drain(id).unwrap();
                }
            }
            while !world.net.is_empty() {
                world.deliver(0).unwrap();
            }
            let leader = world.nodes.values().find(|n| n.up && n.replica.soft_state().role == Role::Leader);
            if let Some(leader) = leader {
                return leader.replica.id();
            }
        }
        panic!("no leader");
    };
    let first = elect(&mut world);
    for _ in 0..3 {
        world.propose(first).unwrap();
    }
    while !world.net.is_empty() {
        world.deliver(0).unwrap();
    }
    let seen = world.nodes[&first].replica.hlc().last();
    world.crash(first);
    let second = elect(&mut world);
    world.propose(second).unwrap();
    while !world.net.is_empty() {
        world.deliver(0).unwrap();
    }
    let disk = &world.nodes[&second].disk.entries;
    let stamps: Vec<u64> = disk.iter().filter(|e| !e.data.is_empty()).map(|e| e.stamp).collect();
    assert_eq!(stamps.len(), 4, "{disk:?}");
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    assert!(stamps[3] > seen, "the new leader stamps above the stamps it recovered");
    assert_eq!(ballot_raft::hlc::physical_ms(stamps[0]), 1_000);
}

#[test]
fn quorums_that_do_not_intersect_are_refused() {
    let mut config = Config::new(1, [1, 2, 3, 4, 5]);
    config.phase1_quorum = 2;
    config.phase2_quorum = 3;
    assert!(Replica::new(config).is_err());
    assert!(Replica::new(Config::new(9, [1, 2, 3])).is_err());
}

/// The long soak: `BALLOT_PAXOS_SEEDS=N cargo test --release -p ballot-paxos -- --ignored soak`
/// (2000 seeds by default) on 3 and 5 replicas, with majorities and with flexible quorums.
#[test]
#[ignore]
fn soak() {
    let seeds: u64 = std::env::var("BALLOT_PAXOS_SEEDS").map_or(2000, |s| s.parse().expect("a number of seeds"));
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let runs: [(u64, usize, usize); 3] = [(3, 0, 0), (5, 0, 0), (5, 4, 2)];
        for (n, q1, q2) in runs {
            if let Err(error) = run(seed, n, 3000, move |c| {
                c.phase1_quorum = q1;
                c.phase2_quorum = q2;
            }) {
                failures.push(format!("seed {seed}, {n} replicas, quorums {q1}/{q2}: {error}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failing runs: {failures:#?}", failures.len());
    eprintln!("{seeds} seeds x 3 setups: no violation");
}

//! Scenario tests, each keyed to a rule of the Raft paper or thesis, run on a tiny synchronous
//! cluster harness (instant delivery, instant disks, links that can be cut).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::*;

struct Cluster {
    nodes: BTreeMap<NodeId, RawNode>,
    /// Directed links that drop messages.
    cut: BTreeSet<(NodeId, NodeId)>,
    inbox: VecDeque<Message>,
    /// Every message delivered, for assertions.
    delivered: Vec<Message>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Durable state per node, as a disk would hold it.
    disks: BTreeMap<NodeId, RestartState>,
    /// Drop every append acknowledgement.
    drop_acks: bool,
    /// Drop every snapshot message.
    drop_snapshots: bool,
    /// Drop appends that carry the empty conf change (the leave of a joint configuration).
    drop_leave: bool,
    /// The drivers' clock, nanoseconds: one tick's length per round of ticks.
    clock_ns: u64,
    /// Drop every message this accepts.
    drop_if: Option<fn(&Message) -> bool>,
}

/// The length of a tick on the harness's clock (the default `Config::tick_interval_ns`).
const TICK_NS: u64 = 100_000_000;

fn config(id: NodeId) -> Config {
    let mut config = Config::new(id);
    config.seed = 42;
    config
}

impl Cluster {
    fn new(size: u64) -> Cluster {
        Self::with_config(size, config)
    }

    fn with_config(size: u64, make: impl Fn(NodeId) -> Config) -> Cluster {
        let voters: Vec<NodeId> = (1..=size).collect();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            inbox: VecDeque::new(),
            delivered: Vec::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            disks: BTreeMap::new(),
            drop_acks: false,
            drop_snapshots: false,
            drop_leave: false,
            clock_ns: 0,
            drop_if: None,
        };
        for id in 1..=size {
            cluster.add_node(id, ConfState::with_voters(voters.iter().copied()), make(id));
        }
        cluster
    }

    fn add_node(&mut self, id: NodeId, initial: ConfState, config: Config) {
        self.nodes.insert(id, RawNode::new(config, initial).unwrap());
        self.disks.insert(id, RestartState::default());
        self.applied.insert(id, Vec::new());
    }

    fn node(&mut self, id: NodeId) -> &mut RawNode {
        self.nodes.get_mut(&id).unwrap()
    }

    fn role(&self, id: NodeId) -> Role {
        self.nodes[&id].raft().soft_state().role
    }

    fn term(&self, id: NodeId) -> Term {
        self.nodes[&id].raft().term()
    }

    fn isolate(&mut self, id: NodeId) {
        for other in self.nodes.keys().copied().collect::<Vec<_>>() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Carries out every Ready and delivers every message until the cluster is quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                busy |= self.handle_ready(id);
            }
            while let Some(message) = self.inbox.pop_front() {
                busy = true;
                if self.cut.contains(&(message.from, message.to)) {
                    continue;
                }
                if self.drop_acks && matches!(message.body, MessageBody::AppendResponse { .. }) {
                    continue;
                }
                if self.drop_snapshots && matches!(message.body, MessageBody::InstallSnapshot { .. }) {
                    continue;
                }
                if self.drop_if.is_some_and(|drop| drop(&message)) {
                    continue;
                }
                if self.drop_leave {
                    if let MessageBody::Append { entries, .. } = &message.body {
                        if entries.iter().any(|e| e.kind == EntryKind::ConfChange && e.data.is_empty()) {
                            continue;
                        }
                    }
                }
                self.delivered.push(message.clone());
                if let Some(node) = self.nodes.get_mut(&message.to) {
                    node.step(message).unwrap();
                }
            }
            if !busy {
                return;
            }
        }
        panic!("cluster did not settle");
    }

    fn handle_ready(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).unwrap();
        if !node.has_ready() {
            return false;
        }
        let ready = node.ready(Monotonic::from_nanos(self.clock_ns));
        self.inbox.extend(ready.messages);
        let disk = self.disks.get_mut(&id).unwrap();
        if let Some(snapshot) = ready.snapshot {
            disk.entries.clear();
            disk.snapshot = snapshot;
        }
        if let Some(first) = ready.entries.first() {
            let keep = (first.index - disk.snapshot.meta.index - 1) as usize;
            disk.entries.truncate(keep);
            disk.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hard_state) = ready.hard_state {
            disk.hard_state = hard_state;
        }
        self.inbox.extend(ready.messages_after_persist);
        self.applied.get_mut(&id).unwrap().extend(ready.committed_entries);
        self.reads.entry(id).or_default().extend(ready.read_states);
        self.nodes.get_mut(&id).unwrap().advance();
        true
    }

    fn tick(&mut self, id: NodeId, ticks: u32) {
        for _ in 0..ticks {
            self.clock_ns += TICK_NS;
            self.node(id).tick();
            self.settle();
        }
    }

    fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.clock_ns += TICK_NS;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node(id).tick();
            }
            self.settle();
        }
    }

    /// Elects `id` after the old leader is gone: the others forget it (so their leases do not
    /// block the vote), then `id` alone ticks until it leads.
    fn elect_new(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            self.node(other).forget_leader();
        }
        self.elect(id);
    }

    /// Ticks `id` alone until it leads.
    fn elect(&mut self, id: NodeId) {
        for _ in 0..100 {
            if self.role(id) == Role::Leader {
                return;
            }
            self.tick(id, 1);
        }
        panic!("node {id} did not become leader");
    }

    fn applied_data(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.applied[&id]
            .iter()
            .filter(|e| e.kind == EntryKind::Normal && !e.data.is_empty())
            .map(|e| e.data.clone())
            .collect()
    }

    fn restart(&mut self, id: NodeId) {
        let state = self.disks[&id].clone();
        self.nodes.insert(id, RawNode::restart(config(id), state).unwrap());
        self.applied.insert(id, Vec::new());
    }
}

// ------------------------------------------------------------------- elections

#[test]
fn section_5_2_a_node_that_times_out_is_elected_by_a_majority() {
    let mut cluster = Cluster::new(3);
    let term = cluster.term(1);
    cluster.elect(1);
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.nodes[&2].raft().soft_state().leader, 1);
    assert_eq!(cluster.term(1), term + 1);
}

#[test]
fn election_timeouts_are_randomized_between_t_and_2t() {
    let mut seen = BTreeSet::new();
    for seed in 0..50 {
        let mut config = Config::new(1);
        config.seed = seed;
        config.pre_vote = false;
        let mut node = RawNode::new(config, ConfState::with_voters([1, 2, 3])).unwrap();
        let mut ticks = 0;
        while node.raft().soft_state().role == Role::Follower {
            node.tick();
            ticks += 1;
        }
        assert!((10..20).contains(&ticks), "timeout {ticks} outside [10, 20)");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts should vary with the seed: {seen:?}");
}

#[test]
fn section_5_4_1_a_voter_rejects_a_candidate_with_a_less_up_to_date_log() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.node(1).propose(b"a".to_vec()).unwrap();
    cluster.settle();
    cluster.heal();
    // Node 3 lacks entry 2; its request for votes must fail even though its term is higher.
    let raft_before = cluster.term(1);
    cluster.isolate(1);
    cluster.node(2).forget_leader();
    cluster.tick(3, 40);
    assert_ne!(cluster.role(3), Role::Leader);
    cluster.elect_new(2);
    assert_eq!(cluster.role(2), Role::Leader, "node 2 has the longer log and wins");
    assert!(cluster.term(2) > raft_before);
}

#[test]
fn a_candidate_steps_down_when_a_majority_refuses() {
    let mut cluster = Cluster::with_config(3, |id| {
        let mut config = config(id);
        config.pre_vote = false;
        config.check_quorum = false;
        config
    });
    cluster.elect(1);
    cluster.isolate(3);
    cluster.node(1).propose(b"a".to_vec()).unwrap();
    cluster.settle();
    cluster.heal();
    // Node 3 lacks entry 2: both others refuse it, and it gives up at once.
    let term = cluster.term(3);
    while cluster.term(3) == term {
        cluster.tick(3, 1);
    }
    assert_eq!(cluster.role(3), Role::Follower);
    assert_ne!(cluster.role(1), Role::Leader, "the higher term deposed the old leader");
}

#[test]
fn pre_vote_keeps_a_rejoining_partitioned_node_from_bumping_the_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.term(1);
    cluster.isolate(3);
    cluster.tick(3, 100);
    assert_eq!(cluster.term(3), term, "pre-vote failed, so the term did not move");
    cluster.heal();
    cluster.tick_all(5);
    assert_eq!(cluster.role(1), Role::Leader, "the healthy leader was not deposed");
    assert_eq!(cluster.term(1), term);
}

#[test]
fn without_pre_vote_a_rejoining_node_disrupts_the_term() {
    // The contrast case: proves the pre-vote test above tests something.
    let mut cluster = Cluster::with_config(3, |id| {
        let mut config = config(id);
        config.pre_vote = false;
        config.check_quorum = false;
        config
    });
    cluster.elect(1);
    let term = cluster.term(1);
    cluster.isolate(3);
    cluster.tick(3, 100);
    assert!(cluster.term(3) > term);
}

#[test]
fn check_quorum_a_leader_that_cannot_hear_a_majority_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.tick(1, 25);
    assert_eq!(cluster.role(1), Role::Follower);
}

#[test]
fn check_quorum_followers_in_lease_ignore_a_disruptive_candidate() {
    let mut cluster = Cluster::with_config(3, |id| {
        let mut config = config(id);
        config.pre_vote = false;
        config
    });
    cluster.elect(1);
    let term = cluster.term(1);
    // Node 3 campaigns while 2 still hears from 1: 2 must not vote and must not change term.
    cluster.cut.insert((1, 3));
    cluster.tick(3, 30);
    assert_eq!(cluster.term(2), term);
    assert_eq!(cluster.role(1), Role::Leader);
}

// ------------------------------------------------------------------- replication

#[test]
fn section_5_3_committed_entries_are_applied_everywhere_in_order() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    for i in 0..5u8 {
        cluster.node(1).propose(vec![i]).unwrap();
    }
    cluster.settle();
    cluster.tick_all(1);
    let expected: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i]).collect();
    for id in 1..=3 {
        assert_eq!(cluster.applied_data(id), expected, "node {id}");
    }
}

#[test]
fn proposals_between_readies_travel_in_one_append() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.delivered.clear();
    let batch: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i]).collect();
    for data in batch {
        cluster.node(1).propose(data).unwrap();
    }
    cluster.settle();
    let appends: Vec<usize> = cluster
        .delivered
        .iter()
        .filter(|m| m.from == 1 && m.to == 2)
        .filter_map(|m| match &m.body {
            MessageBody::Append { entries, .. } if !entries.is_empty() => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![100], "one append carried all 100 proposals");
}

#[test]
fn proposals_on_a_follower_are_refused_with_the_leader_hint_without_forwarding() {
    let mut cluster = Cluster::with_config(3, |id| Config { forward_proposals: false, ..config(id) });
    cluster.elect(1);
    assert_eq!(cluster.node(2).propose(vec![1]), Err(Error::NotLeader { leader: Some(1) }));
}

#[test]
fn a_follower_forwards_proposals_to_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    assert_eq!(cluster.node(2).propose_batch(vec![b"a".to_vec(), b"b".to_vec()]), Ok(0), "forwarded: no index yet");
    cluster.settle();
    for id in 1..=3 {
        let data = cluster.applied_data(id);
        assert_eq!(data[data.len() - 2..], [b"a".to_vec(), b"b".to_vec()], "node {id}");
    }
    // A follower that knows no leader still refuses.
    let mut lonely = RawNode::new(config(9), ConfState::with_voters([9, 10, 11])).unwrap();
    assert_eq!(lonely.propose(vec![1]), Err(Error::NotLeader { leader: None }));
    // A duplicated forward (the network delivered the message twice) is appended once: the
    // simulator found the double apply this caused (seeds 160 and 311 of 3-node `--faults all`).
    let before = cluster.node(1).raft().log().last_index();
    let forward =
        Message { from: 2, to: 1, term: cluster.term(1), body: MessageBody::Propose { entries: vec![b"c".to_vec()] } };
    cluster.node(1).step(forward.clone()).unwrap();
    cluster.node(1).step(forward).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).raft().log().last_index(), before + 1);
    // A leader ignores proposals forwarded by a stranger.
    let leader_last = cluster.node(1).raft().log().last_index();
    let stranger =
        Message { from: 42, to: 1, term: cluster.term(1), body: MessageBody::Propose { entries: vec![vec![7]] } };
    cluster.node(1).step(stranger).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).raft().log().last_index(), leader_last);
}

#[test]
fn proposals_forwarded_during_a_leader_transfer_reach_the_new_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.node(1).transfer_leader(2).unwrap();
    // Arrives while the transfer is under way: neither appended nor dropped, but held.
    let forward =
        Message { from: 3, to: 1, term: cluster.term(1), body: MessageBody::Propose { entries: vec![b"x".to_vec()] } };
    cluster.node(1).step(forward).unwrap();
    cluster.settle();
    assert_eq!(cluster.role(2), Role::Leader);
    for id in 1..=3 {
        assert_eq!(cluster.applied_data(id).last().unwrap(), b"x", "node {id}");
    }
}

#[test]
fn pipelining_is_bounded_by_the_in_flight_window() {
    let mut cluster = Cluster::with_config(3, |id| {
        let mut config = config(id);
        config.inflight_messages_max = 3;
        config
    });
    cluster.elect(1);
    cluster.isolate(2);
    // Node 2 is in Replicate but acks nothing: at most 3 appends go out unanswered.
    for i in 0..10u8 {
        cluster.node(1).propose(vec![i]).unwrap();
        cluster.settle();
    }
    let progress = cluster.nodes[&1].raft().progress_of(2).unwrap();
    assert_eq!(progress.inflights.len(), 3);
    assert!(progress.is_paused());
    cluster.heal();
    cluster.tick_all(2);
    assert_eq!(cluster.applied_data(2).len(), 10);
}

#[test]
fn fast_backtracking_skips_a_conflicting_term_in_one_round_trip() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    // The old leader appends 50 entries nobody else gets.
    for i in 0..50u8 {
        cluster.node(1).propose(vec![i]).unwrap();
    }
    cluster.settle();
    cluster.heal();
    cluster.isolate(1);
    cluster.elect_new(2);
    assert_eq!(cluster.role(2), Role::Leader);
    cluster.node(2).propose(b"new".to_vec()).unwrap();
    cluster.settle();
    cluster.heal();
    cluster.delivered.clear();
    cluster.tick(2, 1);
    let rejections = cluster
        .delivered
        .iter()
        .filter(|m| m.from == 1 && matches!(m.body, MessageBody::AppendResponse { reject: true, .. }))
        .count();
    assert!(rejections <= 2, "needed {rejections} rejected probes for a 50-entry conflict");
    assert_eq!(cluster.applied_data(1).last().unwrap(), b"new");
}

#[test]
fn section_5_4_2_a_leader_does_not_commit_an_old_term_entry_by_counting_replicas() {
    // Figure 8: entry 2 of term 1 is on a majority, but the new leader (term 3) must not
    // count it committed until an entry of its own term is.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.elect_new(2);
    assert_eq!(cluster.role(2), Role::Leader);
    let leader2_term = cluster.term(2);
    // Node 2 appends an entry of its term but loses leadership before replicating it.
    cluster.isolate(2);
    cluster.node(2).propose(b"x".to_vec()).unwrap();
    cluster.settle();
    let raft = cluster.nodes[&2].raft();
    assert_eq!(raft.log().term(raft.log().last_index()), Some(leader2_term));
    assert!(raft.log().committed() < raft.log().last_index());
    // Now only node 2's own persistence counts: a lone replica never commits it.
    let committed_before = raft.log().committed();
    cluster.tick(2, 5);
    assert_eq!(cluster.nodes[&2].raft().log().committed(), committed_before);
}

#[test]
fn commit_waits_for_the_leaders_own_disk() {
    let mut node = RawNode::new(config(1), ConfState::with_voters([1])).unwrap();
    while node.raft().soft_state().role != Role::Leader {
        node.tick();
    }
    let ready = node.ready(Monotonic::default());
    let noop = ready.entries.last().unwrap().index;
    assert!(ready.committed_entries.iter().all(|e| e.index < noop), "nothing of the term commits before it is durable");
    node.advance();
    let ready = node.ready(Monotonic::default());
    assert_eq!(ready.committed_entries.last().unwrap().index, noop, "the no-op commits once persisted");
    node.advance();
}

#[test]
fn follower_acks_wait_for_persistence() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.node(1).propose(b"a".to_vec()).unwrap();
    let now = Monotonic::from_nanos(cluster.clock_ns);
    let ready = cluster.node(1).ready(now);
    cluster.node(1).advance();
    let append = ready.messages.into_iter().find(|m| m.to == 2).unwrap();
    cluster.node(2).step(append).unwrap();
    let ready = cluster.node(2).ready(now);
    assert!(ready.messages.iter().all(|m| !matches!(m.body, MessageBody::AppendResponse { .. })));
    assert!(ready
        .messages_after_persist
        .iter()
        .any(|m| matches!(m.body, MessageBody::AppendResponse { reject: false, .. })));
    cluster.node(2).advance();
}

// ------------------------------------------------------------------- snapshots

#[test]
fn section_7_a_follower_behind_the_compacted_log_gets_the_snapshot() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..10u8 {
        cluster.node(1).propose(vec![i]).unwrap();
    }
    cluster.settle();
    let applied = cluster.nodes[&1].raft().log().applied();
    cluster.node(1).compact(applied, b"state".to_vec()).unwrap();
    cluster.heal();
    cluster.delivered.clear();
    cluster.tick_all(2);
    assert!(cluster.delivered.iter().any(|m| m.to == 3 && matches!(m.body, MessageBody::InstallSnapshot { .. })));
    assert_eq!(cluster.disks[&3].snapshot.data, b"state");
    assert_eq!(cluster.nodes[&3].raft().log().committed(), cluster.nodes[&1].raft().log().committed());
    cluster.node(1).propose(b"after".to_vec()).unwrap();
    cluster.settle();
    cluster.tick_all(1);
    assert_eq!(cluster.applied_data(3).last().unwrap(), b"after");
}

#[test]
fn a_lost_snapshot_is_sent_again() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..5u8 {
        cluster.node(1).propose(vec![i]).unwrap();
    }
    cluster.settle();
    let applied = cluster.nodes[&1].raft().log().applied();
    cluster.node(1).compact(applied, b"state".to_vec()).unwrap();
    // Heartbeats reach node 3 but every snapshot is lost for a while.
    cluster.heal();
    cluster.drop_snapshots = true;
    cluster.tick_all(3);
    assert!(matches!(cluster.nodes[&1].raft().progress_of(3).unwrap().state, ProgressState::Snapshot { .. }));
    cluster.drop_snapshots = false;
    cluster.tick_all(25);
    assert_eq!(cluster.disks[&3].snapshot.data, b"state", "the snapshot was sent again and installed");
}

#[test]
fn a_restarted_node_resumes_from_snapshot_and_log() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    for i in 0..6u8 {
        cluster.node(1).propose(vec![i]).unwrap();
    }
    cluster.settle();
    cluster.tick_all(1);
    let applied = cluster.nodes[&2].raft().log().applied();
    cluster.node(2).compact(applied - 3, b"img".to_vec()).unwrap();
    {
        let disk = cluster.disks.get_mut(&2).unwrap();
        let snapshot = cluster.nodes[&2].raft().snapshot.clone();
        let drop = (snapshot.meta.index - disk.snapshot.meta.index) as usize;
        disk.entries.drain(..drop);
        disk.snapshot = snapshot;
    }
    let before = cluster.nodes[&2].raft().hard_state();
    cluster.restart(2);
    assert_eq!(cluster.nodes[&2].raft().hard_state(), before);
    cluster.tick_all(1);
    // Replays from the snapshot: the three entries after it are applied again.
    assert_eq!(cluster.applied_data(2), vec![vec![3], vec![4], vec![5]]);
}

// ------------------------------------------------------------------- reads

#[test]
fn section_6_4_read_index_confirms_leadership_with_one_round_for_many_reads() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.tick_all(1);
    cluster.delivered.clear();
    for i in 0..20u8 {
        cluster.node(1).read_index(vec![i]).unwrap();
    }
    cluster.settle();
    let reads = &cluster.reads[&1];
    assert_eq!(reads.len(), 20);
    assert!(reads.iter().all(|r| r.index == cluster.nodes[&1].raft().log().committed()));
    let heartbeats = cluster.delivered.iter().filter(|m| matches!(m.body, MessageBody::Heartbeat { .. })).count();
    assert_eq!(heartbeats, 2, "one round (to each follower) for 20 reads");
}

#[test]
fn read_index_on_an_isolated_leader_never_answers() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.tick_all(1);
    cluster.isolate(1);
    cluster.node(1).read_index(b"r".to_vec()).unwrap();
    cluster.tick(1, 5);
    assert!(cluster.reads.get(&1).is_none_or(|r| r.is_empty()));
}

#[test]
fn a_follower_forwards_read_index_to_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.tick_all(1);
    cluster.node(2).read_index(b"f".to_vec()).unwrap();
    cluster.settle();
    let reads = &cluster.reads[&2];
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].context, b"f");
    assert_eq!(reads[0].index, cluster.nodes[&1].raft().log().committed());
}

#[test]
fn reads_wait_for_the_first_commit_of_the_term() {
    let mut cluster = Cluster::new(3);
    // Votes get through but append acks do not, so the new leader's no-op cannot commit.
    cluster.drop_acks = true;
    cluster.elect(1);
    cluster.node(1).read_index(b"r".to_vec()).unwrap();
    cluster.tick(1, 3);
    assert!(cluster.reads.get(&1).is_none_or(|r| r.is_empty()), "no read before the term's first commit");
    cluster.drop_acks = false;
    cluster.tick_all(2);
    let read = cluster.reads[&1].iter().find(|r| r.context == b"r").unwrap();
    assert!(read.index >= 1, "the read waits for the no-op at index 1");
}

#[test]
fn lease_reads_need_check_quorum() {
    let mut config = Config::new(1);
    config.lease_read = true;
    config.check_quorum = false;
    assert!(config.validate().is_err());
}

/// Three nodes that answer reads from the leader's lease.
fn lease_read_cluster() -> Cluster {
    Cluster::with_config(3, |id| {
        let mut config = config(id);
        config.lease_read = true;
        config
    })
}

#[test]
fn lease_reads_answer_without_a_round_while_the_lease_holds() {
    let mut cluster = lease_read_cluster();
    cluster.elect(1);
    cluster.tick_all(2);
    cluster.isolate(1);
    cluster.delivered.clear();
    cluster.node(1).read_index(b"lease".to_vec()).unwrap();
    cluster.settle();
    assert!(cluster.reads[&1].iter().any(|r| r.context == b"lease"), "served from the lease");
    // After the lease runs out, reads need a round again (which an isolated leader cannot get).
    cluster.tick(1, 9);
    cluster.node(1).read_index(b"late".to_vec()).unwrap();
    cluster.settle();
    assert!(!cluster.reads[&1].iter().any(|r| r.context == b"late"));
}

#[test]
fn a_lease_is_measured_on_the_clock_not_in_ticks() {
    // A leader whose driver stalled (stopped process, slow disk on its loop) gets no ticks for a
    // while; its lease must still end when the clock says, or it would answer from stale state
    // while the others elect a new leader.
    let mut cluster = lease_read_cluster();
    cluster.elect(1);
    cluster.tick_all(2);
    cluster.isolate(1);
    cluster.node(1).read_index(b"fresh".to_vec()).unwrap();
    cluster.settle();
    assert!(cluster.reads[&1].iter().any(|r| r.context == b"fresh"), "served from the lease");
    // Time passes with no tick at all: the lease (8 ticks from the last confirmed round) runs out.
    cluster.clock_ns += 9 * TICK_NS;
    cluster.node(1).read_index(b"stalled".to_vec()).unwrap();
    cluster.settle();
    assert!(
        !cluster.reads[&1].iter().any(|r| r.context == b"stalled"),
        "a stalled clock of ticks must not stretch the lease"
    );
    assert_eq!(cluster.role(1), Role::Leader, "no tick came, so check-quorum has not deposed it");
}

#[test]
fn a_lease_read_is_judged_when_the_ready_is_taken() {
    // The read arrives while the lease holds by the last reading, but the Ready is taken later,
    // after the lease ended: it is the later reading that counts.
    let mut cluster = lease_read_cluster();
    cluster.elect(1);
    cluster.tick_all(2);
    cluster.isolate(1);
    cluster.node(1).read_index(b"late".to_vec()).unwrap();
    cluster.clock_ns += 20 * TICK_NS;
    cluster.settle();
    assert!(!cluster.reads[&1].iter().any(|r| r.context == b"late"));
}

#[test]
fn a_restarted_follower_honours_a_lease_it_may_have_confirmed() {
    // Node 3 answers leader 1's heartbeats, restarts at once and so forgets node 1. Node 2,
    // cut off from the leader, asks for votes: node 3 must refuse for an election timeout, or
    // node 2 could win while node 1 still serves reads from a lease node 3 helped confirm.
    let mut cluster = lease_read_cluster();
    cluster.elect(1);
    cluster.tick_all(2);
    cluster.cut.insert((1, 2));
    cluster.cut.insert((2, 1));
    cluster.restart(3);
    cluster.tick(2, 25);
    assert_ne!(cluster.role(2), Role::Leader, "node 3 refused while it might owe node 1 its lease");
    cluster.cut.insert((1, 3));
    cluster.cut.insert((3, 1));
    cluster.tick_all(30);
    assert!(cluster.role(2) == Role::Leader || cluster.role(3) == Role::Leader, "after the guard, an election");
}

// ------------------------------------------------------------------- membership

fn change(steps: &[ConfChangeStep]) -> ConfChange {
    ConfChange { steps: steps.to_vec(), ..Default::default() }
}

#[test]
fn add_a_learner_then_promote_it() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.add_node(4, ConfState::default(), config(4));
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddLearner(4)])).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    let conf = cluster.nodes[&1].raft().conf_state().clone();
    assert!(conf.learners.contains(&4) && !conf.is_joint());
    assert!(!conf.is_voter(4));
    cluster.node(1).propose(b"to-learner".to_vec()).unwrap();
    cluster.settle();
    cluster.tick_all(1);
    assert_eq!(cluster.applied_data(4).last().unwrap(), b"to-learner");
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddVoter(4)])).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    let conf = cluster.nodes[&4].raft().conf_state().clone();
    assert!(conf.voters.contains(&4) && !conf.is_joint());
}

#[test]
fn one_membership_change_at_a_time() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(2);
    cluster.isolate(3);
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddLearner(4)])).unwrap();
    assert_eq!(
        cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddLearner(5)])),
        Err(Error::ConfChangePending)
    );
}

#[test]
fn joint_consensus_needs_both_majorities_to_commit() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    for id in 4..=6 {
        cluster.add_node(id, ConfState::default(), config(id));
    }
    // Replace 2 and 3 by 4, 5 and 6 in one change: C_old = {1,2,3}, C_new = {1,4,5,6}.
    let replace = [
        ConfChangeStep::Remove(2),
        ConfChangeStep::Remove(3),
        ConfChangeStep::AddVoter(4),
        ConfChangeStep::AddVoter(5),
        ConfChangeStep::AddVoter(6),
    ];
    cluster.node(1).propose_conf_change(change(&replace)).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    let conf = cluster.nodes[&1].raft().conf_state().clone();
    assert_eq!(conf.voters, [1, 4, 5, 6].into());
    assert!(!conf.is_joint());
    // C_new alone now decides: the old members can be gone.
    cluster.isolate(2);
    cluster.isolate(3);
    cluster.node(1).propose(b"new-config".to_vec()).unwrap();
    cluster.settle();
    cluster.tick_all(1);
    assert_eq!(cluster.applied_data(5).last().unwrap(), b"new-config");
}

#[test]
fn in_a_joint_configuration_the_old_majority_is_still_required() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    for id in 4..=5 {
        cluster.add_node(id, ConfState::default(), config(id));
    }
    cluster.isolate(2);
    cluster.isolate(3);
    // With C_old's other members cut off, C_old,new can never commit, so nothing else can.
    cluster
        .node(1)
        .propose_conf_change(change(&[
            ConfChangeStep::Remove(2),
            ConfChangeStep::Remove(3),
            ConfChangeStep::AddVoter(4),
            ConfChangeStep::AddVoter(5),
        ]))
        .unwrap();
    cluster.settle();
    let committed = cluster.nodes[&1].raft().log().committed();
    cluster.node(1).propose(b"stuck".to_vec()).unwrap();
    cluster.tick(1, 3);
    assert_eq!(cluster.nodes[&1].raft().log().committed(), committed);
    assert!(cluster.nodes[&1].raft().conf_state().is_joint());
}

#[test]
fn a_removed_leader_steps_down_once_the_new_configuration_commits() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::Remove(1)])).unwrap();
    cluster.settle();
    cluster.tick_all(1);
    assert_ne!(cluster.role(1), Role::Leader);
    for _ in 0..60 {
        cluster.tick_all(1);
        if cluster.role(2) == Role::Leader || cluster.role(3) == Role::Leader {
            break;
        }
    }
    assert!(cluster.role(2) == Role::Leader || cluster.role(3) == Role::Leader);
    assert!(!cluster.nodes[&2].raft().conf_state().is_voter(1));
}

#[test]
fn a_truncated_conf_change_rolls_the_configuration_back() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddLearner(9)])).unwrap();
    cluster.settle();
    assert!(cluster.nodes[&1].raft().conf_state().is_joint());
    cluster.elect_new(2);
    cluster.node(2).propose(b"y".to_vec()).unwrap();
    cluster.settle();
    cluster.heal();
    cluster.tick_all(3);
    assert_eq!(cluster.role(1), Role::Follower);
    let conf = cluster.nodes[&1].raft().conf_state().clone();
    assert!(!conf.is_joint() && !conf.learners.contains(&9));
}

#[test]
fn section_4_1_a_server_left_out_of_an_uncommitted_configuration_still_campaigns() {
    // C_old = {1,2,3}, C_new = {1,2,4}; node 1 is gone for good. Leader 3 appends the leave entry
    // (C_new) but it reaches nobody, and 3 loses leadership. Nodes 2 and 4 are still joint and
    // need 3 for C_old's majority; 3 refuses them (its log is longer). Only if 3 campaigns can the
    // cluster go on.
    let mut cluster = Cluster::new(3);
    cluster.add_node(4, ConfState::default(), config(4));
    cluster.elect(3);
    cluster.node(3).propose_conf_change(change(&[ConfChangeStep::AddLearner(4)])).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    cluster.isolate(1);
    cluster.drop_leave = true;
    cluster.node(3).propose_conf_change(change(&[ConfChangeStep::Remove(3), ConfChangeStep::AddVoter(4)])).unwrap();
    cluster.settle();
    let conf = cluster.nodes[&3].raft().conf_state().clone();
    assert!(!conf.is_joint() && !conf.is_voter(3), "3 holds C_new: {conf:?}");
    assert!(cluster.nodes[&2].raft().conf_state().is_joint(), "2 is still joint");
    // 3 loses leadership; the leave entry is lost with it.
    cluster.isolate(3);
    cluster.tick(3, 25);
    cluster.drop_leave = false;
    cluster.heal();
    cluster.isolate(1);
    for _ in 0..200 {
        cluster.tick_all(1);
        let leader = [2, 4].into_iter().find(|id| cluster.role(*id) == Role::Leader);
        if leader.is_some() && !cluster.nodes[&2].raft().conf_state().is_joint() {
            return;
        }
    }
    panic!("no leader of C_new: {:?}", [2, 3, 4].map(|id| (id, cluster.role(id))));
}

// ------------------------------------------------------------------- leader transfer

#[test]
fn leader_transfer_hands_over_to_a_caught_up_voter() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.node(1).propose(b"a".to_vec()).unwrap();
    cluster.settle();
    cluster.node(1).transfer_leader(3).unwrap();
    cluster.settle();
    assert_eq!(cluster.role(3), Role::Leader);
    assert_eq!(cluster.role(1), Role::Follower);
}

#[test]
fn leader_transfer_waits_for_the_target_to_catch_up() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.node(1).propose(b"a".to_vec()).unwrap();
    cluster.settle();
    cluster.node(1).transfer_leader(3).unwrap();
    assert!(matches!(cluster.node(1).propose(b"b".to_vec()), Err(Error::ProposalDropped(_))));
    cluster.heal();
    cluster.tick_all(1);
    assert_eq!(cluster.role(3), Role::Leader);
    assert_eq!(cluster.applied_data(3), vec![b"a".to_vec()]);
}

#[test]
fn leader_transfer_to_a_learner_is_refused() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    assert_eq!(cluster.node(1).transfer_leader(7), Err(Error::InvalidTransfer(7)));
}

// ------------------------------------------------------------------- input validation

#[test]
fn misaddressed_messages_are_errors_not_panics() {
    let mut node = RawNode::new(config(1), ConfState::with_voters([1, 2, 3])).unwrap();
    let message = Message { from: 2, to: 5, term: 1, body: MessageBody::TimeoutNow };
    assert!(node.step(message).is_err());
    let message = Message { from: 0, to: 1, term: 1, body: MessageBody::TimeoutNow };
    assert!(node.step(message).is_err());
}

#[test]
fn malformed_conf_change_payloads_are_rejected() {
    assert!(ConfChange::decode(&[1, 2, 3]).is_err());
    assert!(ConfChange::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    assert!(ConfChange::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(), "node id 0");
    let change = change(&[ConfChangeStep::Remove(3), ConfChangeStep::AddLearner(4)]);
    assert_eq!(ConfChange::decode(&change.encode()).unwrap(), change);
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut cluster = Cluster::new(5);
        cluster.tick_all(30);
        let leader = (1..=5).find(|id| cluster.role(*id) == Role::Leader).unwrap();
        cluster.node(leader).propose(b"d".to_vec()).unwrap();
        cluster.settle();
        format!("{:?}", cluster.delivered)
    };
    assert_eq!(run(), run());
}

// ------------------------------------------------------------------- forced recovery

#[test]
fn a_survivor_forced_alone_keeps_what_committed_and_leads_a_cluster_of_one() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.node(1).propose(b"committed".to_vec()).unwrap();
    cluster.settle();
    // Nodes 2 and 3 are gone for good; node 1 appends one more entry, which can never commit.
    cluster.isolate(1);
    cluster.node(1).propose(b"never committed".to_vec()).unwrap();
    cluster.settle();
    let mut state = cluster.disks[&1].clone();
    let commit = state.hard_state.commit;
    assert!(state.entries.last().unwrap().index > commit, "an uncommitted entry is on disk");
    let entry = state.force_alone(1, 0, |dropped| format!("{dropped:?}").into_bytes()).unwrap();
    assert_eq!(entry.index, commit + 1, "the forced configuration replaces what did not commit");
    assert_eq!(ConfChange::decode(&entry.data).unwrap().context, b"[2, 3]");
    assert_eq!(state.hard_state.commit, entry.index);
    let mut node = RawNode::restart(config(1), state).unwrap();
    assert_eq!(node.raft().conf_state(), &ConfState::with_voters([1]));
    for _ in 0..30 {
        node.tick();
    }
    assert_eq!(node.raft().soft_state().role, Role::Leader, "a lone voter elects itself");
    node.propose(b"after".to_vec()).unwrap();
    let mut applied = Vec::new();
    for _ in 0..4 {
        if node.has_ready() {
            let ready = node.ready(Monotonic::default());
            applied.extend(ready.committed_entries.into_iter().map(|e| e.data));
            node.advance();
        }
    }
    assert!(applied.contains(&b"committed".to_vec()) && applied.contains(&b"after".to_vec()));
    assert!(!applied.contains(&b"never committed".to_vec()));
}

#[test]
fn a_forced_configuration_is_never_proposed_and_needs_a_member() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let forced = ConfChange { steps: vec![ConfChangeStep::ForceAlone(1)], ..Default::default() };
    assert!(matches!(cluster.node(1).propose_conf_change(forced), Err(Error::InvalidConfChange(_))));
    let mut state = cluster.disks[&1].clone();
    assert!(state.force_alone(9, 0, |_| Vec::new()).is_err(), "node 9 was never a member");
}

#[test]
fn a_learner_campaigns_when_the_voters_cannot_elect_one_of_themselves() {
    // Voters 1, 2, 3 and learner 4. The scenario a long soak found: a stale leader appends a
    // change that makes the learner a voter; the learner alone holds an entry of a later term;
    // the voters left cannot elect one of themselves.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.add_node(4, ConfState::default(), config(4));
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddLearner(4)])).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    // Node 1, cut off, still believes it leads, and appends the promotion of 4 (joint).
    cluster.isolate(1);
    cluster.node(1).propose_conf_change(change(&[ConfChangeStep::AddVoter(4)])).unwrap();
    cluster.settle();
    assert!(cluster.nodes[&1].raft().conf_state().is_joint());
    // Node 2 is elected with 3's vote; its entries reach learner 4, never 3. Then 2 is gone.
    cluster.drop_if =
        Some(|message| message.from == 2 && message.to == 3 && matches!(message.body, MessageBody::Append { .. }));
    cluster.elect_new(2);
    cluster.tick(2, 1);
    let (last_2, last_4) = (cluster.nodes[&2].raft().log().last_term(), cluster.nodes[&4].raft().log().last_term());
    assert_eq!(last_4, last_2, "the learner has the new leader's entry");
    assert!(cluster.nodes[&3].raft().log().last_term() < last_2, "voter 3 has not");
    cluster.heal();
    cluster.drop_if = None;
    cluster.isolate(2);
    // 1 needs 4's vote (joint), which 4 refuses (later term); 3 needs 1's, which 1 refuses
    // (shorter log). Only the learner can break it.
    for _ in 0..120 {
        for id in [1, 3, 4] {
            cluster.node(id).tick();
        }
        cluster.clock_ns += TICK_NS;
        cluster.settle();
        if [1, 3].iter().any(|id| cluster.role(*id) == Role::Leader) {
            break;
        }
    }
    let leader = [1, 3].into_iter().find(|id| cluster.role(*id) == Role::Leader).expect("a voter leads again");
    assert!(!cluster.nodes[&leader].raft().conf_state().is_joint(), "the stale joint configuration was overwritten");
    assert!(
        cluster.delivered.iter().any(|m| m.from == 4 && matches!(m.body, MessageBody::Append { .. })),
        "the learner led to repair the logs"
    );
    cluster.node(leader).propose(b"after".to_vec()).unwrap();
    cluster.settle();
    cluster.tick(leader, 1);
    assert_eq!(cluster.applied_data(3).last().unwrap(), b"after");
}

// ------------------------------------------------------------------- entry stamps (HLC)

#[test]
fn stamps_increase_along_the_log_across_a_leader_whose_clock_is_behind() {
    let mut cluster = Cluster::new(3);
    // Node 1's clock is a second ahead of node 2's.
    cluster.node(1).observe_wall_clock(1_000_000 + 1_000);
    cluster.node(2).observe_wall_clock(1_000_000);
    cluster.node(3).observe_wall_clock(1_000_000);
    cluster.elect(1);
    for i in 0..3u8 {
        cluster.node(1).propose(vec![i]).unwrap();
    }
    cluster.settle();
    cluster.node(1).observe_wall_clock(1_000_000 + 1_001);
    cluster.isolate(1);
    cluster.elect_new(2);
    cluster.node(2).propose(vec![9]).unwrap();
    cluster.settle();
    cluster.tick_all(1);
    let stamps: Vec<u64> = cluster.applied[&3].iter().map(|entry| entry.stamp).collect();
    assert!(stamps.len() >= 5, "{stamps:?}");
    assert!(stamps.windows(2).all(|pair| pair[0] < pair[1]), "stamps go back: {stamps:?}");
    // The new leader's stamps follow the old one's, ahead of its own clock by about a second.
    let last = *stamps.last().unwrap();
    assert_eq!(crate::hlc::physical_ms(last), 1_001_000);
    assert_eq!(cluster.node(2).raft().hlc().ahead_ms(), 1_000);
}

#[test]
fn a_leader_refuses_to_stamp_further_ahead_of_its_clock_than_the_bound() {
    let mut cluster = Cluster::with_config(3, |id| Config { max_clock_skew_ms: 500, ..config(id) });
    cluster.node(1).observe_wall_clock(2_000_000);
    cluster.elect(1);
    cluster.node(1).propose(vec![1]).unwrap();
    cluster.settle();
    // The wall clock steps back two seconds (an NTP step): stamps stay ahead of it; writes
    // are refused until it has caught up.
    cluster.node(1).observe_wall_clock(1_998_000);
    assert_eq!(cluster.node(1).propose(vec![2]), Err(Error::ClockSkew { ahead_ms: 2_000, max_ms: 500 }));
    cluster.node(1).observe_wall_clock(1_999_600);
    cluster.node(1).propose(vec![3]).unwrap();
}

#[test]
fn followers_learn_their_offset_from_the_leaders_heartbeats() {
    let mut cluster = Cluster::new(3);
    cluster.node(1).observe_wall_clock(5_000);
    cluster.node(2).observe_wall_clock(4_750);
    cluster.elect(1);
    cluster.tick_all(2);
    assert_eq!(cluster.node(2).raft().clock_offset_ms(), Some(250));
    // A follower without a wall clock reading knows no offset.
    assert_eq!(cluster.node(3).raft().clock_offset_ms(), None);
}

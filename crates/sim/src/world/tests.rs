//! Tests of the simulator's own fault model, on hand-built scenarios.

use ballot_mvcc::MemberChange;
use ballot_raft::{ConfChange, ConfChangeStep, ConfState, NodeId, Role};

use super::{World, MS};
use crate::config::{Faults, SimConfig};
use crate::node::{member_record, members_context};

/// A world with no nemesis: the test is the nemesis.
fn quiet(seed: u64) -> World {
    World::new(SimConfig { faults: Faults::default(), ..SimConfig::new(seed) })
}

impl World {
    fn run_until(&mut self, time: u64) {
        while self.now < time && self.step() {}
    }

    fn run_for(&mut self, duration_ns: u64) {
        self.run_until(self.now + duration_ns);
    }

    fn assert_no_violations(&self) {
        assert!(self.invariants.violations.is_empty(), "{:?}", self.invariants.violations);
    }
}

#[test]
fn a_node_paused_twice_gets_every_tick_it_missed() {
    // Seed 109863 of the long soak: node 3 paused for 1466 ms, then, 308 ms into that pause,
    // paused again for 54 ms. The second pause used to replace the first, and the node resumed
    // with the ticks of the second only: a leader that believed its lease still held.
    let mut paused = quiet(1);
    let mut steady = quiet(1);
    paused.run_until(500 * MS);
    let start = paused.now;
    paused.pause(3, 1466 * MS);
    paused.run_for(308 * MS);
    paused.pause(3, 54 * MS);
    assert_eq!(paused.nodes[&3].paused_until, Some(start + 1466 * MS), "a second pause extends, never shortens");
    let end = start + 1466 * MS + 200 * MS;
    paused.run_until(end);
    steady.run_until(end);
    assert_eq!(paused.nodes[&3].paused_until, None, "resumed");
    assert_eq!(
        paused.nodes[&3].ticks_delivered, steady.nodes[&3].ticks_delivered,
        "the paused node got every tick of its schedule, as one that never stopped"
    );
    paused.assert_no_violations();
}

#[test]
fn a_paused_node_resumes_even_when_nothing_reaches_it() {
    let mut world = quiet(2);
    world.run_until(500 * MS);
    let others: Vec<NodeId> = vec![2, 3];
    world.network.split(&[1], &others);
    world.pause(1, 300 * MS);
    world.run_for(400 * MS);
    assert_eq!(world.nodes[&1].paused_until, None, "its own tick event woke it");
}

#[test]
fn a_member_restarted_from_a_disk_behind_its_join_is_not_taken_for_removed() {
    // Seeds 309208 and 507618 of the long soaks: a learner that crashed before its join was
    // durable restarted with no configuration, and the simulator stopped it for good as
    // "removed"; once promoted, the cluster had lost a voter it counted on.
    let mut world = quiet(3);
    world.run_until(2_000 * MS);
    let leader = world.leader().expect("a leader after 2 s");
    world.add_node(4, ConfState::default());
    let change = ConfChange {
        steps: vec![ConfChangeStep::AddLearner(4)],
        context: members_context(vec![MemberChange::Upsert(member_record(4, true))]),
    };
    world
        .nodes
        .get_mut(&leader)
        .and_then(|n| n.engine_mut())
        .expect("runs")
        .propose_conf_change(change)
        .expect("accepted");
    world.drive(leader);
    world.run_for(2_000 * MS);
    let committed = world.nodes[&leader].engine().expect("runs").committed();
    assert!(world.nodes[&4].applied() >= committed.saturating_sub(5), "the learner caught up");
    // It crashes, and its disk and store come back empty, as if nothing of the join was durable.
    let mut rng = ballot_raft::rng::Rng::new(9);
    let node = world.nodes.get_mut(&4).expect("exists");
    node.crash(&mut rng);
    node.disk_at_rest = Some(ballot_storage::SimDisk::new());
    node.store_file = ballot_mvcc::SimFile::new();
    world.on_restart(4);
    world.run_for(3_000 * MS);
    let node = &world.nodes[&4];
    assert!(!node.removed && node.is_up(), "a member that was never removed keeps running");
    assert!(node.engine().expect("runs").conf_state().learners.contains(&4), "and learns its place again");
    world.assert_no_violations();
}

#[test]
fn the_nemesis_does_not_reconfigure_through_a_paused_leader() {
    let mut world = quiet(4);
    world.run_until(2_000 * MS);
    let leader = world.leader().expect("a leader");
    assert_eq!(world.nodes[&leader].engine().unwrap().role(), Role::Leader);
    world.pause(leader, 1_000 * MS);
    assert_eq!(world.reachable_leader(), None, "a paused leader takes no request");
}

#[test]
fn a_forwarded_proposal_in_flight_is_lost_when_its_receiver_restarts() {
    // Seed 103006 of a long soak: a duplicate of a forwarded write reached its receiver after
    // it restarted (its memory of forwarded proposals gone), went on to the next leader and
    // was applied a second time, after later writes. Over TCP a copy never outlives its stream.
    let mut world = quiet(5);
    world.run_until(2_000 * MS);
    let leader = world.leader().expect("a leader");
    let follower = if leader == 1 { 2 } else { 1 };
    let term = world.nodes[&leader].engine().unwrap().term();
    let write = ballot_mvcc::Command::Put(ballot_mvcc::PutRequest {
        key: b"dup".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    });
    let entries = vec![ballot_node::encode_proposal(777, &write)];
    let body = ballot_raft::MessageBody::Propose { entries };
    world.send(ballot_raft::Message { from: follower, to: leader, term, body }.into());
    let mut rng = ballot_raft::rng::Rng::new(9);
    world.nodes.get_mut(&leader).unwrap().crash(&mut rng);
    world.on_restart(leader);
    world.run_for(3_000 * MS);
    for node in world.nodes.values() {
        let dup = node
            .replica
            .as_ref()
            .unwrap()
            .store()
            .range(&ballot_mvcc::RangeRequest { key: b"dup".to_vec(), ..Default::default() });
        assert!(dup.unwrap().kvs.is_empty(), "node {}: the copy sent before the restart was applied", node.id);
    }
    world.assert_no_violations();
}

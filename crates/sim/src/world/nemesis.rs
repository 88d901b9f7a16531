//! The nemesis injects faults during the fault phase; then everything heals and the cluster
//! must recover, and the run is judged.
//!
//! Faults overlap, and each overlap is either modelled as the real world would have it or
//! never drawn:
//!
//! | overlap | here |
//! |---|---|
//! | a pause of a paused node | drawn; extends the pause, never shortens it. On resuming the node gets every tick of its schedule whose time has come (a long soak found the second pause overwriting the first, and a leader that resumed with 308 ms of ticks lost) |
//! | a crash of a paused node | drawn; kill -9 of a stopped process: the pause ends with the process, the downtime counts from the crash, and the restart starts a new tick schedule |
//! | two crashes | drawn, of two different nodes (a crash picks among running nodes): both down at once, each restarting on its own |
//! | a crash while partitioned | drawn; the partition is the network's, so the node comes back behind the same cut links until the network heals |
//! | skew while paused or down | skew is a node's clock rate for the whole run; its clock runs on at that rate while it is paused (`SimNode::clock`) |
//! | a membership change or transfer while the leader is paused | never drawn: the nemesis acts through the leader's API, and a request to a stopped process would only wait in its socket (`reachable_leader`) |
//! | a membership change of a paused or crashed member | drawn; it learns of its removal when it runs again, from its own log or member table |
//! | a bit flip | only on a crashed node's disk at rest, at most one node per run; that node stays down for good. With at least three voters always, the others remain a majority of every configuration |
//! | a majority lost for good | cannot be drawn with the rules above; if it ever happens (a future fault, a bug in the fault model), the run reports it as an expected outcome with the operator's remedy, not as a liveness failure |

use ballot_check::model::RegisterModel;
use ballot_check::{pair_operations, Limits, Verdict};
use ballot_mvcc::{MemberChange, MemberRecord};
use ballot_raft::{ConfChange, ConfChangeStep, ConfState, NodeId, Role};

use crate::node::{member_record, members_context};
use ballot_node::Engine;

use super::{Action, SimReport, World, HEAL_DEADLINE_NS, JOINERS_MAX, MS};
use crate::network::NetworkProfile;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Partition,
    Heal,
    Crash,
    Pause,
    Membership,
    Transfer,
}

impl World {
    pub(super) fn on_nemesis(&mut self) {
        if self.healed {
            return;
        }
        let faults = self.config.faults;
        let mut choices = Vec::new();
        if faults.partition {
            choices.extend([Fault::Partition, Fault::Partition, Fault::Heal]);
        }
        if faults.crash || faults.bitflip {
            choices.push(Fault::Crash);
        }
        if faults.pause {
            choices.push(Fault::Pause);
        }
        if faults.membership {
            choices.push(Fault::Membership);
        }
        if faults.transfer {
            choices.push(Fault::Transfer);
        }
        let Some(fault) = self.rng.pick(&choices).copied() else { return };
        // Multi-Paxos runs a fixed membership and replaces leaders by elections only: those
        // draws inject nothing, so the other faults come as often as in a Raft run (a long soak
        // found seeds where, drawn instead, crashes and pauses left so few operations complete
        // that the checker's search hit its limit on the unknown ones).
        if matches!(fault, Fault::Membership | Fault::Transfer) && self.config.consensus != ballot_node::Consensus::Raft
        {
            let next = self.rng.range(50 * MS, 500 * MS);
            self.schedule(next, Action::Nemesis);
            return;
        }
        match fault {
            Fault::Partition => self.partition(),
            Fault::Heal => {
                self.network.heal();
                self.trace.record(self.now, format_args!("nemesis: heal network"));
                self.timeline.network(self.now, None);
            }
            Fault::Crash => self.crash_one(),
            Fault::Pause => self.pause_one(),
            Fault::Membership => self.change_membership(),
            Fault::Transfer => self.transfer_leadership(),
        }
        self.faults_injected += 1;
        let next = self.rng.range(50 * MS, 500 * MS);
        self.schedule(next, Action::Nemesis);
    }

    fn shuffled_nodes(&mut self) -> Vec<NodeId> {
        let mut ids = self.node_ids();
        for i in (1..ids.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        ids
    }

    fn partition(&mut self) {
        self.network.heal();
        let ids = self.shuffled_nodes();
        if ids.len() < 2 {
            return;
        }
        match self.rng.range(0, 4) {
            0 => {
                let at = self.rng.range(1, ids.len() as u64) as usize;
                self.network.split(&ids[..at], &ids[at..]);
                let what = format!("split {:?} | {:?}", &ids[..at], &ids[at..]);
                self.trace.record(self.now, format_args!("nemesis: {what}"));
                self.timeline.network(self.now, Some(what));
            }
            1 => {
                let leader = self.leader().unwrap_or(ids[0]);
                let rest: Vec<NodeId> = ids.iter().copied().filter(|id| *id != leader).collect();
                self.network.split(&[leader], &rest);
                self.trace.record(self.now, format_args!("nemesis: isolate {leader}"));
                self.timeline.network(self.now, Some(format!("isolate {leader}")));
            }
            2 => {
                let links = self.rng.range(1, ids.len() as u64 * 2);
                for _ in 0..links {
                    let from = *self.rng.pick(&ids).expect("non-empty");
                    let to = *self.rng.pick(&ids).expect("non-empty");
                    if from != to {
                        self.network.cut_one_way(from, to);
                    }
                }
                let what = format!("{} one-way cuts", self.network.cut_count());
                self.trace.record(self.now, format_args!("nemesis: {what}"));
                self.timeline.network(self.now, Some(what));
            }
            _ => {
                // A bridge: one node sees both sides, which cannot see each other.
                if ids.len() < 3 {
                    return;
                }
                let bridge = ids[0];
                let at = self.rng.range(2, ids.len() as u64) as usize;
                self.network.split(&ids[1..at], &ids[at..]);
                let what = format!("bridge {bridge} between {:?} and {:?}", &ids[1..at], &ids[at..]);
                self.trace.record(self.now, format_args!("nemesis: {what}"));
                self.timeline.network(self.now, Some(what));
            }
        }
    }

    fn crash_one(&mut self) {
        let up: Vec<NodeId> = self.node_ids().into_iter().filter(|id| self.nodes[id].is_up()).collect();
        let Some(id) = self.rng.pick(&up).copied() else { return };
        let node = self.nodes.get_mut(&id).expect("exists");
        node.crash(&mut self.rng);
        self.trace.record(self.now, format_args!("nemesis: crash {id}"));
        // At most one damaged disk per run: the cluster must keep a quorum of good ones.
        if self.config.faults.bitflip && self.flipped.is_none() && self.rng.chance(1, 4) {
            let (suffix, margin) = if self.rng.chance(1, 4) { (".snap", 0) } else { (".wal", 4096) };
            let disk = self.nodes.get_mut(&id).and_then(|n| n.disk_at_rest.as_mut()).expect("a crashed node's disk");
            if let Some((file, offset)) = disk.flip_synced_bit(&mut self.rng, suffix, margin) {
                self.trace.record(self.now, format_args!("nemesis: flip a bit of {id}'s {file} at byte {offset}"));
                self.flipped = Some(id);
            }
        }
        let downtime = self.rng.range(20 * MS, 2_000 * MS);
        self.schedule(downtime, Action::Restart(id));
        self.timeline.fault(self.now, self.now + downtime, format!("crash {id}"));
    }

    /// Stops a running node (SIGSTOP) for a while. A node already paused may be drawn again: its
    /// pause is extended (never shortened), and when it resumes it gets every tick it missed
    /// since the first pause began (see `World::resume`).
    fn pause_one(&mut self) {
        let up: Vec<NodeId> = self.node_ids().into_iter().filter(|id| self.nodes[id].is_up()).collect();
        let Some(id) = self.rng.pick(&up).copied() else { return };
        let duration = self.rng.range(20 * MS, 1_500 * MS);
        self.pause(id, duration);
    }

    /// Pauses node `id` for `duration_ns` from now, or extends its pause to end then.
    pub(super) fn pause(&mut self, id: NodeId, duration_ns: u64) {
        let until = self.now + duration_ns;
        let node = self.nodes.get_mut(&id).expect("exists");
        let extended = node.paused_until.is_some();
        let until = node.paused_until.map_or(until, |paused| paused.max(until));
        node.paused_until = Some(until);
        let what = if extended { "extend the pause of" } else { "pause" };
        self.trace.record(self.now, format_args!("nemesis: {what} {id} until {}ms", until / MS));
        self.timeline.fault(self.now, until, format!("pause {id}"));
    }

    /// The leader a nemesis acting through the API may reach: one that is not paused (a request
    /// to a stopped process would only wait in its socket; the nemesis does something else).
    pub(super) fn reachable_leader(&self) -> Option<NodeId> {
        self.leader().filter(|id| self.nodes[id].paused_until.is_none())
    }

    /// The leader of the highest term among running nodes.
    pub(super) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|node| node.engine().map(|engine| (node.id, engine)))
            .filter(|(_, engine)| engine.role() == Role::Leader)
            .max_by_key(|(_, engine)| engine.term())
            .map(|(id, _)| id)
    }

    fn change_membership(&mut self) {
        let Some(leader) = self.reachable_leader() else { return };
        let conf = self.nodes[&leader].engine().expect("leader runs").conf_state().clone();
        if conf.is_joint() {
            return;
        }
        let voters: Vec<NodeId> = conf.voters.iter().copied().collect();
        let learners: Vec<NodeId> = conf.learners.iter().copied().collect();
        let mut options = Vec::new();
        if self.joiners < JOINERS_MAX {
            options.push("add-learner");
        }
        if !learners.is_empty() {
            options.extend(["promote", "replace"]);
        }
        if voters.len() > 3 {
            options.extend(["remove", "demote"]);
        }
        let Some(choice) = self.rng.pick(&options).copied() else { return };
        let (steps, table) = match choice {
            "add-learner" => {
                self.joiners += 1;
                let id = self.config.nodes as u64 + self.joiners;
                self.add_node(id, ConfState::default());
                (vec![ConfChangeStep::AddLearner(id)], vec![MemberChange::Upsert(member_record(id, true))])
            }
            "promote" => {
                let id = *self.rng.pick(&learners).expect("non-empty");
                (vec![ConfChangeStep::AddVoter(id)], vec![MemberChange::Upsert(member_record(id, false))])
            }
            "replace" => {
                let (out, into) =
                    (*self.rng.pick(&voters).expect("non-empty"), *self.rng.pick(&learners).expect("non-empty"));
                (
                    vec![ConfChangeStep::Remove(out), ConfChangeStep::AddVoter(into)],
                    vec![MemberChange::Remove(out), MemberChange::Upsert(member_record(into, false))],
                )
            }
            "remove" => {
                let id = *self.rng.pick(&voters).expect("non-empty");
                (vec![ConfChangeStep::Remove(id)], vec![MemberChange::Remove(id)])
            }
            _ => {
                let id = *self.rng.pick(&voters).expect("non-empty");
                (vec![ConfChangeStep::AddLearner(id)], vec![MemberChange::Upsert(member_record(id, true))])
            }
        };
        // The entry carries the member-table change, as the server's do: every member must
        // end with the table its configuration implies (checked at recovery).
        let change = ConfChange { steps: steps.clone(), context: members_context(table) };
        let engine = self.nodes.get_mut(&leader).and_then(|n| n.engine_mut()).expect("leader runs");
        let outcome = engine.propose_conf_change(change);
        self.trace.record(self.now, format_args!("nemesis: {choice} {steps:?} via {leader}: {outcome:?}"));
        self.timeline.mark(self.now, format!("{choice} {steps:?} via {leader}: {outcome:?}"));
        self.drive(leader);
    }

    fn transfer_leadership(&mut self) {
        let Some(leader) = self.reachable_leader() else { return };
        let engine = self.nodes.get_mut(&leader).and_then(|n| n.engine_mut()).expect("leader runs");
        let voters: Vec<NodeId> = engine.conf_state().voters.iter().copied().filter(|id| *id != leader).collect();
        let Some(target) = self.rng.pick(&voters).copied() else { return };
        let engine = self.nodes.get_mut(&leader).and_then(|n| n.engine_mut()).expect("leader runs");
        let outcome = engine.transfer_leader(target);
        self.trace.record(self.now, format_args!("nemesis: transfer {leader} -> {target}: {outcome:?}"));
        self.timeline.mark(self.now, format!("transfer {leader} -> {target}: {outcome:?}"));
        self.drive(leader);
    }

    /// Ends every fault: links restored, the network reliable, crashed nodes restarted,
    /// paused nodes resumed.
    pub(super) fn heal(&mut self) {
        self.healed = true;
        self.heal_at = self.now;
        self.network.heal();
        self.network.profile = NetworkProfile::reliable();
        self.trace.record(self.now, format_args!("heal everything"));
        self.timeline.heal(self.now);
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.nodes[&id].paused_until.is_some() {
                self.resume(id);
            }
            let node = self.nodes.get_mut(&id).expect("exists");
            if !node.is_up() && !node.removed && node.corrupt.is_none() {
                self.schedule(0, Action::Restart(id));
            }
        }
    }

    /// After healing, the cluster must elect a leader, serve every client, and bring every
    /// member up to date, within a bounded virtual time.
    pub(super) fn run_until_recovered(&mut self) {
        let deadline = self.heal_at + HEAL_DEADLINE_NS;
        let mut steps = 0u64;
        while self.now < deadline && self.invariants.violations.is_empty() {
            if !self.step() {
                break;
            }
            steps += 1;
            if steps.is_multiple_of(64) && self.recovered().is_ok() {
                return;
            }
        }
        if let Err(why) = self.recovered() {
            let waited = HEAL_DEADLINE_NS as f64 / 1e9;
            match self.quorum_gone_for_good() {
                Some(gone) => self.notes.push(format!(
                    "expected: no leader {waited:.1}s after healing because {gone}; Raft cannot go on without a \
                     majority, and an operator recovers with `ballot serve --force-new-cluster` on a survivor"
                )),
                None => {
                    self.invariants.violations.push(format!("liveness: {waited:.1}s after healing, {why}"));
                    for line in self.node_states() {
                        self.trace.record(self.now, format_args!("{line}"));
                    }
                }
            }
        }
    }

    /// Each node's Raft state, for the trace of a run that did not recover or broke a rule.
    pub(super) fn node_states(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|node| match node.engine() {
                Some(Engine::Paxos(paxos, _)) => format!(
                    "state of node {}: {:?} promised {} leader {} last {} commit {} applied {}",
                    node.id,
                    paxos.soft_state().role,
                    paxos.promised(),
                    paxos.soft_state().leader,
                    paxos.last_index(),
                    paxos.commit(),
                    paxos.applied()
                ),
                Some(Engine::Raft(raw)) => {
                    let raft = raw.raft();
                    let log = raft.log();
                    format!(
                        "state of node {}: {:?} term {} vote {} leader {} last {} (term {}) commit {} applied {} conf {:?}",
                        node.id,
                        raft.soft_state().role,
                        raft.term(),
                        raft.hard_state().vote,
                        raft.soft_state().leader,
                        log.last_index(),
                        log.last_term(),
                        log.committed(),
                        log.applied(),
                        raft.conf_state()
                    )
                }
                None => format!("state of node {}: down (removed {}, corrupt {:?})", node.id, node.removed, node.corrupt),
            })
            .collect()
    }

    /// Why no leader can ever be elected again, if that is so: in the configuration of every
    /// running node, the voters that can still run (neither refusing a corrupt disk nor
    /// removed) are no majority. Then a stalled cluster is the right outcome, not a bug.
    fn quorum_gone_for_good(&self) -> Option<String> {
        let alive = |id: &NodeId| self.nodes.get(id).is_some_and(|n| n.is_up());
        let mut described = Vec::new();
        for node in self.nodes.values().filter(|n| n.is_up()) {
            let conf = node.engine().expect("running").conf_state();
            let has_majority = |voters: &std::collections::BTreeSet<NodeId>| {
                voters.is_empty() || voters.iter().filter(|id| alive(id)).count() * 2 > voters.len()
            };
            if has_majority(&conf.voters) && has_majority(&conf.voters_outgoing) {
                return None;
            }
            described.push(format!("node {}'s configuration {:?}", node.id, conf));
        }
        let down: Vec<String> = self
            .nodes
            .values()
            .filter(|n| !n.is_up())
            .map(|n| match &n.corrupt {
                Some(_) => format!("{} (corrupt disk)", n.id),
                None if n.removed => format!("{} (removed)", n.id),
                None => format!("{} (down)", n.id),
            })
            .collect();
        Some(format!(
            "a majority of every configuration is gone for good ({}; down: {})",
            described.join(", "),
            down.join(", ")
        ))
    }

    fn recovered(&self) -> Result<(), String> {
        let leader = self.leader().ok_or("no leader")?;
        let engine = self.nodes[&leader].engine().expect("leader runs");
        if !engine.conf_state().is_voter(leader) {
            return Err(format!("leader {leader} is not a voter"));
        }
        let waiting: Vec<u64> = self.clients.iter().filter(|c| !c.ok_after_heal).map(|c| c.id).collect();
        if !waiting.is_empty() {
            return Err(format!("clients {waiting:?} completed no operation"));
        }
        let committed = engine.committed();
        let lagging: Vec<NodeId> = engine
            .conf_state()
            .members()
            .into_iter()
            .filter(|id| self.nodes.get(id).is_some_and(|n| n.corrupt.is_none() && n.applied() < committed))
            .collect();
        if !lagging.is_empty() {
            return Err(format!("members {lagging:?} have not applied index {committed}"));
        }
        // Every member's table is the one the configuration implies.
        let conf = engine.conf_state();
        if !conf.is_joint() {
            let mut expected: Vec<MemberRecord> = conf.voters.iter().map(|id| member_record(*id, false)).collect();
            expected.extend(conf.learners.iter().map(|id| member_record(*id, true)));
            expected.sort_by_key(|record| record.id);
            for id in conf.members() {
                let Some(replica) =
                    self.nodes.get(&id).filter(|n| n.corrupt.is_none()).and_then(|n| n.replica.as_ref())
                else {
                    continue;
                };
                let table = replica.store().members().map(|(records, _)| records);
                if table.as_ref() != Ok(&expected) {
                    return Err(format!(
                        "member {id}'s member table {table:?} is not the configuration's {expected:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_logs(&mut self) {
        for node in self.nodes.values() {
            match node.engine() {
                Some(Engine::Raft(raw)) => self.invariants.check_log(node.id, raw.raft().log()),
                Some(Engine::Paxos(paxos, _)) => self.invariants.check_paxos_log(node.id, paxos),
                None => {}
            }
        }
    }

    /// Checks the history and builds the report.
    pub(super) fn finish(mut self) -> SimReport {
        self.check_zk_sequences();
        let mut linearizability = None;
        match pair_operations(&self.history) {
            Err(error) => self.invariants.violations.push(format!("history malformed: {error}")),
            Ok(operations) => match ballot_check::check(&RegisterModel::kv(), &operations, Limits::default()) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable(violation) => {
                    self.invariants
                        .violations
                        .push(format!("linearizability: key {} has no linearization", violation.key));
                    linearizability = Some(violation);
                }
                Verdict::Unknown { key } => {
                    self.invariants.violations.push(format!("linearizability: search limit reached on key {key}"));
                }
            },
        }
        let (fault_intervals, marks) = std::mem::take(&mut self.timeline).finish(self.now);
        SimReport {
            fault_intervals,
            marks,
            seed: self.config.seed,
            violations: self.invariants.violations,
            notes: self.notes,
            history: self.history,
            linearizability,
            trace_hash: self.trace.hash(),
            trace: self.trace.into_lines(),
            ops_ok: self.outcomes.ok,
            ops_fail: self.outcomes.fail,
            ops_info: self.outcomes.info,
            zk_ops: self.zk.completed,
            faults: self.faults_injected,
            virtual_ms: self.now / MS,
        }
    }
}

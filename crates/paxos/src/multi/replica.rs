//! One Multi-Paxos replica: acceptor, learner, and proposer when it leads.

use std::collections::{BTreeMap, BTreeSet};

use ballot_raft::forwarded::Forwarded;
use ballot_raft::hlc::Hlc;
use ballot_raft::rng::Rng;
use ballot_raft::{
    ConfState, Entry, EntryKind, Error, HardState, Index, NodeId, ReadContext, ReadState, Role, Snapshot, SnapshotMeta,
    SoftState, NO_NODE,
};

use super::log::Log;
use super::{Body, Config, Message, Ready, RestartState};
use crate::{pick_per_slot, Ballot, Ballots};

/// A campaign for `ballot`: phase 1 under way.
#[derive(Debug)]
struct Campaign {
    ballot: Ballot,
    /// The first slot asked about (the commit index at the start, plus one).
    from_slot: Index,
    /// The replica's own promise is durable.
    self_promised: bool,
    /// Usable promises by acceptor: its commit index and its reports.
    promises: BTreeMap<NodeId, (Index, Vec<Entry>)>,
}

/// What the leader knows of one acceptor.
#[derive(Debug)]
struct Peer {
    /// The next slot to send.
    next: Index,
    /// The end of the prefix it shares with the leader, acknowledged durably.
    matched: Index,
    /// The end of that prefix as last reported, durable or not: where the window of slots
    /// sent ahead of acknowledgement starts.
    reported: Index,
    /// The prefix its previous heartbeat answer reported.
    heartbeat_through: Index,
    /// Heard from since the last check-quorum.
    active: bool,
}

/// A read waiting for its confirmation round.
#[derive(Debug)]
struct PendingRead {
    index: Index,
    context: ReadContext,
    requester: NodeId,
    round: u64,
    acks: BTreeSet<NodeId>,
}

/// The leader's state for its ballot.
#[derive(Debug)]
struct Lead {
    ballot: Ballot,
    /// The no-op that opened the reign: reads wait until it is chosen.
    start: Index,
    peers: BTreeMap<NodeId, Peer>,
    /// The end of the leader's own durable prefix under its ballot.
    self_matched: Index,
    heartbeat_elapsed: u32,
    check_elapsed: u32,
    round: u64,
    reads: Vec<PendingRead>,
    /// Reads asked before the reign's no-op was chosen.
    early_reads: Vec<(ReadContext, NodeId)>,
    /// Proposals arrived since accepts were last sent.
    broadcast: bool,
}

/// What an outstanding [`Ready`] handed out.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    promised: Ballot,
    /// The last slot handed out to persist, with the ballot led at the time (if leading).
    persisted: Option<(Index, Option<Ballot>)>,
    applied: Index,
}

/// A Multi-Paxos replica driven by its caller (see the module docs).
#[derive(Debug)]
pub struct Replica {
    config: Config,
    /// Forwarded proposals seen lately, so a duplicated `Propose` is not proposed twice (see
    /// `ballot_raft::forwarded`: a network that duplicates would apply a write twice).
    forwarded: Forwarded,
    ballots: Ballots,
    /// The voters, sorted: ballot `b` belongs to `voters[ballots.owner(b)]`.
    voters: Vec<NodeId>,
    /// This replica's position among them: the ballots it owns.
    position: u64,
    quorums: (usize, usize),
    /// Highest ballot promised (durable).
    promised: Ballot,
    /// Highest ballot seen in any message.
    highest_seen: Ballot,
    /// Every slot up to it holds its chosen value.
    commit: Index,
    /// Handed out to apply.
    applied: Index,
    log: Log,
    /// The latest snapshot, sent to acceptors and candidates behind it.
    snapshot: Snapshot,
    pending_snapshot: Option<Snapshot>,
    role: Role,
    leader: NodeId,
    /// The end of the prefix this acceptor shares with the leader of `good_ballot`.
    good: Index,
    good_ballot: Ballot,
    election_elapsed: u32,
    timeout: u32,
    rng: Rng,
    /// Stamps the leader's new entries above every stamp this replica has seen.
    hlc: Hlc,
    campaign: Option<Campaign>,
    lead: Option<Lead>,
    messages: Vec<Message>,
    after_persist: Vec<Message>,
    read_states: Vec<ReadState>,
    prev_soft: SoftState,
    prev_hard: HardState,
    outstanding: Option<Outstanding>,
}

impl Replica {
    /// A brand-new replica.
    pub fn new(config: Config) -> Result<Replica, Error> {
        Self::restart(config, RestartState::default())
    }

    /// A brand-new founding replica whose slot 1 holds `genesis` (the founding configuration
    /// and member table), identical on every founder and so chosen by construction, as Raft's
    /// bootstrap entry is committed on every founder. The first [`Ready`] persists and applies
    /// it.
    pub fn bootstrap(config: Config, genesis: Entry) -> Result<Replica, Error> {
        assert_eq!(genesis.index, 1, "the genesis entry fills slot 1");
        let mut replica = Self::new(config)?;
        replica.log.put(genesis);
        replica.commit = 1;
        replica.good = 1;
        Ok(replica)
    }

    /// A replica restarted from its durable state.
    pub fn restart(config: Config, state: RestartState) -> Result<Replica, Error> {
        config.validate()?;
        let mut voters = config.voters.clone();
        voters.sort_unstable();
        let position = voters.iter().position(|v| *v == config.id).expect("validated") as u64;
        let mut rng = Rng::new(config.seed);
        let timeout = config.election_tick + rng.range(0, config.election_tick as u64) as u32;
        let snapshot_index = state.snapshot.meta.index;
        let mut hlc = Hlc::default();
        hlc.witness(state.entries.iter().map(|e| e.stamp).max().unwrap_or(0));
        let log = Log::new(state.snapshot.meta.clone(), state.entries);
        let commit = state.hard_state.commit.clamp(snapshot_index, log.last());
        let hard = HardState { term: state.hard_state.term, vote: NO_NODE, commit };
        Ok(Replica {
            forwarded: Forwarded::default(),
            ballots: Ballots::new(voters.len() as u64),
            position,
            voters,
            quorums: config.quorums(),
            promised: hard.term,
            highest_seen: hard.term,
            commit,
            applied: state.applied.clamp(snapshot_index, commit),
            log,
            snapshot: state.snapshot,
            pending_snapshot: None,
            role: Role::Follower,
            leader: NO_NODE,
            good: commit,
            good_ballot: 0,
            election_elapsed: 0,
            timeout,
            rng,
            hlc,
            campaign: None,
            lead: None,
            messages: Vec::new(),
            after_persist: Vec::new(),
            read_states: Vec::new(),
            prev_soft: SoftState { leader: NO_NODE, role: Role::Follower },
            prev_hard: hard,
            outstanding: None,
            config,
        })
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Leader and role.
    pub fn soft_state(&self) -> SoftState {
        SoftState { leader: self.leader, role: self.role }
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The commit index: every slot up to it is chosen and known here.
    pub fn commit(&self) -> Index {
        self.commit
    }

    /// The last slot with an accepted value.
    pub fn last_index(&self) -> Index {
        self.log.last()
    }

    /// The slot handed out to apply last.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The voters, as a configuration (fixed: membership is not log state here).
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Accepted entries in slots `from..=to` still in the log (not compacted), in order.
    pub fn entries(&self, from: Index, to: Index) -> Vec<Entry> {
        self.log.slice(from, to)
    }

    /// The latest snapshot's metadata.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot.meta
    }

    /// Switches the rule a new leader picks each slot's value by (the chapter's bug, to show
    /// that a simulation catches it).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn set_pick(&mut self, pick: crate::Pick) {
        self.config.pick = pick;
    }

    /// Drops the image of an installed snapshot: the caller's state machine holds it, and
    /// builds a new image when an acceptor needs one.
    pub fn forget_snapshot_data(&mut self) {
        self.snapshot.data = Vec::new();
    }

    /// Messages that need no persistence, produced while a [`Ready`] is outstanding (a
    /// leader's heartbeats and accepts go on while its disk is slow).
    pub fn take_messages(&mut self) -> Vec<Message> {
        if self.lead.as_ref().is_some_and(|l| l.broadcast) {
            self.broadcast_accepts();
        }
        std::mem::take(&mut self.messages)
    }

    /// Takes a reading of the wall clock (ms since the epoch) for the next stamps.
    pub fn observe_wall_clock(&mut self, ms: u64) {
        self.hlc.observe_wall(ms);
    }

    /// Takes in a stamp known to be in the past (the store's newest, at a restart).
    pub fn witness_stamp(&mut self, stamp: u64) {
        self.hlc.witness(stamp);
    }

    /// The replica's hybrid logical clock.
    pub fn hlc(&self) -> Hlc {
        self.hlc
    }

    /// Proposes `data`: appended under the leader's ballot, or forwarded to the leader.
    ///
    /// The leader stamps it with its hybrid logical clock, above every stamp it has seen, so a
    /// leader's own entries are stamped in increasing order. Unlike Raft's, a Multi-Paxos log
    /// need not be stamped in increasing order across leaders: a slot re-proposed after a
    /// leader change keeps its first proposer's stamp, which may be above a later slot's
    /// stamp from another leader that had not seen it, and hole-filling no-ops carry stamp 0.
    /// A state machine that orders by stamp must not assume them increasing.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), Error> {
        if let Some(lead) = &mut self.lead {
            let stamp = self.hlc.issue();
            let entry = Entry { term: lead.ballot, index: self.log.last() + 1, kind: EntryKind::Normal, data, stamp };
            self.log.put(entry);
            lead.broadcast = true;
            return Ok(());
        }
        if self.leader == NO_NODE {
            return Err(Error::NotLeader { leader: None });
        }
        self.send(self.leader, Body::Propose { entries: vec![data] });
        Ok(())
    }

    /// Asks for a read index; answered through a `ReadState` with `context`.
    pub fn read_index(&mut self, context: ReadContext) -> Result<(), Error> {
        if self.lead.is_some() {
            self.begin_read(context, self.config.id);
            return Ok(());
        }
        if self.leader == NO_NODE {
            return Err(Error::NotLeader { leader: None });
        }
        self.send(self.leader, Body::ReadIndex { context });
        Ok(())
    }

    /// One tick of time.
    pub fn tick(&mut self) {
        if let Some(lead) = &mut self.lead {
            lead.heartbeat_elapsed += 1;
            lead.check_elapsed += 1;
            if lead.check_elapsed >= self.config.election_tick {
                lead.check_elapsed = 0;
                let active = 1 + lead.peers.values().filter(|p| p.active).count();
                lead.peers.values_mut().for_each(|p| p.active = false);
                if active < self.quorums.1 {
                    self.stand_down(NO_NODE);
                    return;
                }
            }
            if lead.heartbeat_elapsed >= self.config.heartbeat_tick {
                lead.heartbeat_elapsed = 0;
                self.heartbeat();
            }
            return;
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.timeout {
            self.campaign();
        }
    }

    /// Takes one message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        let Message { from, to, ballot, body } = message;
        if to != self.config.id || from == self.config.id || !self.config.voters.contains(&from) {
            return Err(Error::MisaddressedMessage { from, to });
        }
        self.highest_seen = self.highest_seen.max(ballot);
        match body {
            Body::Prepare { from_slot } => self.on_prepare(from, ballot, from_slot),
            Body::Promise { commit, compacted, entries } => self.on_promise(from, ballot, commit, compacted, entries),
            Body::Nack { promised } => self.on_nack(ballot, promised),
            Body::Accept { entries, commit } => self.on_accept(from, ballot, entries, commit),
            Body::Accepted { through } => self.on_acknowledged(from, ballot, through, false),
            Body::Refused { through } => self.on_acknowledged(from, ballot, through, true),
            Body::Heartbeat { commit, round } => self.on_heartbeat(from, ballot, commit, round),
            Body::HeartbeatAck { round, through } => self.on_heartbeat_ack(from, ballot, round, through),
            Body::Snapshot { snapshot } => self.on_snapshot(from, ballot, snapshot),
            Body::Propose { entries } => {
                for data in self.forwarded.admit(from, entries) {
                    // A proposal that finds no leader is dropped: its proposer learns the
                    // outcome only by applying the log, as with Raft.
                    let _ = if self.lead.is_some() || self.leader != from { self.propose(data) } else { Ok(()) };
                }
            }
            Body::ReadIndex { context } => {
                if self.lead.is_some() {
                    self.begin_read(context, from);
                }
            }
            Body::ReadIndexResponse { context, index } => self.read_states.push(ReadState { index, context }),
        }
        Ok(())
    }

    /// Whether a [`Ready`] has something in it.
    pub fn has_ready(&self) -> bool {
        self.outstanding.is_none()
            && (self.soft_state() != self.prev_soft
                || self.hard_state() != self.prev_hard
                || self.pending_snapshot.is_some()
                || self.log.has_unstable()
                || !self.messages.is_empty()
                || !self.after_persist.is_empty()
                || self.commit > self.applied
                || !self.read_states.is_empty()
                || self.lead.as_ref().is_some_and(|l| l.broadcast))
    }

    /// What the caller must do now (see [`Ready`]); acknowledge it with [`Replica::advance`].
    pub fn ready(&mut self) -> Ready {
        assert!(self.outstanding.is_none(), "ready called twice without advance");
        if self.lead.as_ref().is_some_and(|l| l.broadcast) {
            self.broadcast_accepts();
        }
        let mut ready = Ready::default();
        let soft = self.soft_state();
        if soft != self.prev_soft {
            ready.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hard = self.hard_state();
        if hard != self.prev_hard {
            ready.promised_changed = hard.term != self.prev_hard.term;
            ready.hard_state = Some(hard);
            self.prev_hard = hard;
        }
        ready.snapshot = self.pending_snapshot.take();
        let mut applied = self.applied;
        if let Some(snapshot) = &ready.snapshot {
            applied = applied.max(snapshot.meta.index);
        }
        ready.entries = self.log.take_unstable();
        ready.messages = std::mem::take(&mut self.messages);
        ready.messages_after_persist = std::mem::take(&mut self.after_persist);
        if self.commit > applied {
            ready.committed_entries = self.log.slice(applied + 1, self.commit);
            applied = self.commit;
        }
        ready.read_states = std::mem::take(&mut self.read_states);
        let persisted = ready.entries.last().map(|e| (e.index, self.lead.as_ref().map(|l| l.ballot)));
        self.outstanding = Some(Outstanding { promised: self.promised, persisted, applied });
        ready
    }

    /// Acknowledges the outstanding [`Ready`]: persisted, sent and applied.
    pub fn advance(&mut self) {
        let Some(done) = self.outstanding.take() else { return };
        self.applied = self.applied.max(done.applied);
        if let Some(campaign) = &mut self.campaign {
            if done.promised == campaign.ballot {
                campaign.self_promised = true;
            }
        }
        if let (Some(lead), Some((last, Some(ballot)))) = (&mut self.lead, done.persisted) {
            if lead.ballot == ballot {
                lead.self_matched = lead.self_matched.max(last);
            }
        }
        self.maybe_lead();
        self.maybe_commit();
    }

    /// Compacts the log up to `index` (applied and acknowledged) into a snapshot holding
    /// `data`; returns its metadata, for the caller to store with it.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) -> Result<SnapshotMeta, Error> {
        if index <= self.log.snapshot().index {
            return Err(Error::SnapshotOutOfDate);
        }
        if index > self.applied {
            return Err(Error::CompactBeyondApplied { index, applied: self.applied });
        }
        let meta = SnapshotMeta {
            index,
            term: self.log.ballot_at(index),
            conf_state: ConfState::with_voters(self.config.voters.iter().copied()),
        };
        self.log.compact(meta.clone(), false);
        self.snapshot = Snapshot { meta: meta.clone(), data };
        Ok(meta)
    }

    /// The replica's inner state, for failing tests.
    #[cfg(test)]
    pub(super) fn describe(&self) -> String {
        let peers = self.lead.as_ref().map(|l| {
            l.peers.iter().map(|(id, p)| format!("{id}: next {} matched {}", p.next, p.matched)).collect::<Vec<_>>()
        });
        format!(
            "{}: promised {} commit {} applied {} last {} snapshot {} good {}@{} role {:?} leader {} peers {peers:?}",
            self.config.id,
            self.promised,
            self.commit,
            self.applied,
            self.log.last(),
            self.log.snapshot().index,
            self.good,
            self.good_ballot,
            self.role,
            self.leader
        )
    }

    fn hard_state(&self) -> HardState {
        HardState { term: self.promised, vote: NO_NODE, commit: self.commit }
    }

    fn send(&mut self, to: NodeId, body: Body) {
        let ballot = self.lead.as_ref().map_or(self.promised, |l| l.ballot);
        self.messages.push(Message { from: self.config.id, to, ballot, body });
    }

    fn reply(&mut self, to: NodeId, ballot: Ballot, body: Body, after_persist: bool) {
        let message = Message { from: self.config.id, to, ballot, body };
        if after_persist {
            self.after_persist.push(message);
        } else {
            self.messages.push(message);
        }
    }

    fn others(&self) -> Vec<NodeId> {
        self.config.voters.iter().copied().filter(|v| *v != self.config.id).collect()
    }

    fn owner(&self, ballot: Ballot) -> NodeId {
        self.voters[self.ballots.owner(ballot) as usize]
    }

    fn reset_timeout(&mut self) {
        self.election_elapsed = 0;
        self.timeout = self.config.election_tick + self.rng.range(0, self.config.election_tick as u64) as u32;
    }

    /// Leaves any campaign or reign: a follower of `leader` (or of nobody yet).
    fn stand_down(&mut self, leader: NodeId) {
        self.lead = None;
        self.campaign = None;
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_timeout();
    }

    /// A message of `ballot` from its leader: promise it and follow.
    fn follow(&mut self, ballot: Ballot) {
        self.promised = self.promised.max(ballot);
        let leader = self.owner(ballot);
        if self.lead.is_some() || self.campaign.is_some() || self.leader != leader {
            self.stand_down(leader);
        }
        self.election_elapsed = 0;
        if self.good_ballot != ballot {
            self.good_ballot = ballot;
            self.good = self.commit;
        }
    }

    /// A live leader was heard from within the election timeout (or this replica leads).
    fn lease_holds(&self) -> bool {
        self.lead.is_some() || (self.leader != NO_NODE && self.election_elapsed < self.config.election_tick)
    }

    fn campaign(&mut self) {
        let ballot = self.ballots.next_owned(self.position, self.promised.max(self.highest_seen));
        self.stand_down(NO_NODE);
        self.promised = ballot;
        self.role = Role::Candidate;
        let from_slot = self.commit + 1;
        self.campaign = Some(Campaign { ballot, from_slot, self_promised: false, promises: BTreeMap::new() });
        for to in self.others() {
            self.reply(to, ballot, Body::Prepare { from_slot }, false);
        }
    }

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Index) {
        if ballot < self.promised {
            self.reply(from, ballot, Body::Nack { promised: self.promised }, false);
            return;
        }
        if ballot > self.promised {
            if self.lease_holds() {
                return;
            }
            self.stand_down(NO_NODE);
            self.promised = ballot;
        } else if self.owner(ballot) == self.config.id {
            return;
        }
        let compacted = self.log.snapshot().index;
        let promise =
            Body::Promise { commit: self.commit, compacted, entries: self.log.slice(from_slot, self.log.last()) };
        self.reply(from, ballot, promise, true);
        if compacted >= from_slot {
            let snapshot = self.snapshot.clone();
            self.reply(from, ballot, Body::Snapshot { snapshot }, false);
        }
    }

    fn on_promise(&mut self, from: NodeId, ballot: Ballot, commit: Index, compacted: Index, entries: Vec<Entry>) {
        let Some(campaign) = &mut self.campaign else { return };
        if campaign.ballot != ballot || compacted >= campaign.from_slot {
            return;
        }
        campaign.promises.insert(from, (commit, entries));
        self.maybe_lead();
    }

    fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        if promised <= ballot {
            return;
        }
        let leading = self.lead.as_ref().is_some_and(|l| l.ballot == ballot);
        let campaigning = self.campaign.as_ref().is_some_and(|c| c.ballot == ballot);
        if leading || campaigning {
            self.stand_down(NO_NODE);
        }
    }

    /// With its own durable promise and a phase-1 quorum, the candidate leads: every slot
    /// past its commit index takes the highest-ballot value reported (or a no-op), all under
    /// the new ballot, then one no-op opens the reign.
    fn maybe_lead(&mut self) {
        let Some(campaign) = &self.campaign else { return };
        if !campaign.self_promised || campaign.promises.len() + 1 < self.quorums.0 {
            return;
        }
        let campaign = self.campaign.take().expect("checked");
        let ballot = campaign.ballot;
        let own = self.log.slice(self.commit + 1, self.log.last());
        let reports = campaign
            .promises
            .values()
            .flat_map(|(_, entries)| entries.iter())
            .chain(own.iter())
            .filter(|e| e.index > self.commit)
            .map(|e| (e.index, e.term, e));
        let picked = pick_per_slot(reports, self.config.pick);
        self.hlc.witness(picked.values().map(|e| e.stamp).max().unwrap_or(0));
        let highest = picked.keys().next_back().copied().unwrap_or(self.commit).max(self.commit);
        let mut chosen_again = Vec::new();
        for slot in self.commit + 1..=highest {
            let entry = match picked.get(&slot) {
                Some(e) => Entry { term: ballot, index: slot, kind: e.kind, data: e.data.clone(), stamp: e.stamp },
                None => no_op(ballot, slot),
            };
            chosen_again.push(entry);
        }
        for entry in chosen_again {
            self.log.put(entry);
        }
        let start = highest + 1;
        self.log.put(Entry { stamp: self.hlc.issue(), ..no_op(ballot, start) });
        let peers = self
            .others()
            .into_iter()
            .map(|id| {
                let (next, matched) = match campaign.promises.get(&id) {
                    Some((commit, _)) => (commit + 1, *commit),
                    None => (self.commit + 1, 0),
                };
                (id, Peer { next, matched, reported: next - 1, heartbeat_through: 0, active: true })
            })
            .collect();
        self.role = Role::Leader;
        self.leader = self.config.id;
        self.lead = Some(Lead {
            ballot,
            start,
            peers,
            self_matched: self.commit,
            heartbeat_elapsed: 0,
            check_elapsed: 0,
            round: 0,
            reads: Vec::new(),
            early_reads: Vec::new(),
            broadcast: true,
        });
    }

    fn broadcast_accepts(&mut self) {
        if let Some(lead) = &mut self.lead {
            lead.broadcast = false;
        }
        for to in self.others() {
            self.send_accepts(to);
        }
    }

    /// Sends `to` the next run of slots (or the snapshot, if it is behind the compaction point).
    fn send_accepts(&mut self, to: NodeId) {
        let Some(lead) = &mut self.lead else { return };
        let ballot = lead.ballot;
        let peer = lead.peers.get_mut(&to).expect("a voter");
        if peer.next <= self.log.snapshot().index {
            peer.next = self.log.snapshot().index + 1;
            let snapshot = self.snapshot.clone();
            self.reply(to, ballot, Body::Snapshot { snapshot }, false);
            return;
        }
        let window_end = peer.matched.max(peer.reported) + self.config.max_inflight;
        let end = self.log.last().min(peer.next + self.config.max_batch as u64 - 1).min(window_end);
        if peer.next > end {
            return;
        }
        let mut entries = self.log.slice(peer.next, end);
        for entry in &mut entries {
            // Chosen values below the commit index are proposed again under this ballot: a
            // value chosen at some ballot is the only one any higher ballot may propose.
            entry.term = ballot;
        }
        peer.next = end + 1;
        let commit = self.commit.min(peer.matched);
        self.reply(to, ballot, Body::Accept { entries, commit }, false);
    }

    fn on_accept(&mut self, from: NodeId, ballot: Ballot, entries: Vec<Entry>, commit: Index) {
        if ballot < self.promised {
            self.reply(from, ballot, Body::Nack { promised: self.promised }, false);
            return;
        }
        self.follow(ballot);
        if let Some(first) = entries.first() {
            if first.index > self.good + 1 {
                self.reply(from, ballot, Body::Refused { through: self.good }, false);
                return;
            }
            for entry in entries {
                if entry.index <= self.commit {
                    continue;
                }
                self.good = self.good.max(entry.index);
                self.hlc.witness(entry.stamp);
                self.log.put(Entry { term: ballot, ..entry });
            }
        }
        self.commit = self.commit.max(commit.min(self.good));
        self.reply(from, ballot, Body::Accepted { through: self.good }, true);
    }

    /// The leader's record of `from`, marked as heard from, if this replica leads `ballot`.
    fn heard_from(&mut self, from: NodeId, ballot: Ballot) -> Option<&mut Peer> {
        let lead = self.lead.as_mut().filter(|lead| lead.ballot == ballot)?;
        let peer = lead.peers.get_mut(&from).expect("a voter");
        peer.active = true;
        Some(peer)
    }

    fn on_acknowledged(&mut self, from: NodeId, ballot: Ballot, through: Index, refused: bool) {
        let Some(peer) = self.heard_from(from, ballot) else { return };
        peer.reported = through;
        if !refused {
            // A refusal's `through` may not be durable yet: it says where to resend from.
            peer.matched = peer.matched.max(through);
        }
        peer.next = if refused { through + 1 } else { peer.next.max(through + 1) };
        self.maybe_commit();
        self.send_accepts(from);
    }

    fn maybe_commit(&mut self) {
        let Some(lead) = &self.lead else { return };
        let mut matched: Vec<Index> = lead.peers.values().map(|p| p.matched).collect();
        matched.push(lead.self_matched);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let chosen = matched[self.quorums.1 - 1].min(self.log.last());
        if chosen <= self.commit {
            return;
        }
        self.commit = chosen;
        let lead = self.lead.as_mut().expect("checked");
        if self.commit >= lead.start && !lead.early_reads.is_empty() {
            for (context, requester) in std::mem::take(&mut lead.early_reads) {
                self.begin_read(context, requester);
            }
        }
    }

    fn heartbeat(&mut self) {
        let Some(lead) = &self.lead else { return };
        let (ballot, round) = (lead.ballot, lead.round);
        let beats: Vec<(NodeId, Index)> = lead.peers.iter().map(|(id, p)| (*id, self.commit.min(p.matched))).collect();
        for (to, commit) in beats {
            self.reply(to, ballot, Body::Heartbeat { commit, round }, false);
        }
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Index, round: u64) {
        if ballot < self.promised {
            self.reply(from, ballot, Body::Nack { promised: self.promised }, false);
            return;
        }
        self.follow(ballot);
        self.commit = self.commit.max(commit.min(self.good));
        self.reply(from, ballot, Body::HeartbeatAck { round, through: self.good }, false);
    }

    fn on_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, round: u64, through: Index) {
        let Some(peer) = self.heard_from(from, ballot) else { return };
        // `through` may not be durable yet, so it only says where to resend from, never what
        // counts as accepted. Resend only when two answers in a row report the same prefix
        // behind what was sent: the last Accept (or its answer) was lost. A single answer
        // behind is usually just the Accepts still in flight, and resending them would double
        // the traffic to far acceptors.
        peer.reported = through;
        if through + 1 < peer.next && through == peer.heartbeat_through {
            peer.next = through.max(peer.matched) + 1;
        }
        peer.heartbeat_through = through;
        let q2 = self.quorums.1;
        let lead = self.lead.as_mut().expect("heard_from checked it");
        let mut confirmed = Vec::new();
        lead.reads.retain_mut(|read| {
            if read.round <= round {
                read.acks.insert(from);
            }
            let done = read.acks.len() >= q2;
            if done {
                confirmed.push((read.index, std::mem::take(&mut read.context), read.requester));
            }
            !done
        });
        for (index, context, requester) in confirmed {
            self.answer_read(index, context, requester);
        }
        self.send_accepts(from);
    }

    fn begin_read(&mut self, context: ReadContext, requester: NodeId) {
        let q2 = self.quorums.1;
        let id = self.config.id;
        let Some(lead) = &mut self.lead else { return };
        if self.commit < lead.start {
            lead.early_reads.push((context, requester));
            return;
        }
        if q2 == 1 {
            self.answer_read(self.commit, context, requester);
            return;
        }
        lead.round += 1;
        let read =
            PendingRead { index: self.commit, context, requester, round: lead.round, acks: BTreeSet::from([id]) };
        lead.reads.push(read);
        lead.heartbeat_elapsed = 0;
        self.heartbeat();
    }

    fn answer_read(&mut self, index: Index, context: ReadContext, requester: NodeId) {
        if requester == self.config.id {
            self.read_states.push(ReadState { index, context });
        } else {
            let ballot = self.lead.as_ref().map_or(self.promised, |l| l.ballot);
            self.reply(requester, ballot, Body::ReadIndexResponse { context, index }, false);
        }
    }

    fn on_snapshot(&mut self, from: NodeId, ballot: Ballot, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        if index > self.commit {
            self.log.compact(snapshot.meta.clone(), true);
            self.commit = index;
            self.good = self.good.max(index);
            self.snapshot = snapshot.clone();
            self.pending_snapshot = Some(snapshot);
        }
        // An acknowledgement only to this ballot's leader.
        if ballot == self.promised && self.owner(ballot) == from && self.lead.is_none() {
            self.follow(ballot);
            self.reply(from, ballot, Body::Accepted { through: self.good }, true);
        }
    }
}

/// The no-op that fills a hole or opens a reign.
fn no_op(ballot: Ballot, slot: Index) -> Entry {
    Entry { term: ballot, index: slot, kind: EntryKind::Normal, data: Vec::new(), stamp: 0 }
}

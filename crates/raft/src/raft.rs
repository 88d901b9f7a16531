//! The Raft state machine: roles, terms, votes, replication, commit, reads, transfer.
//!
//! Inputs are `step` (a message), `tick` (time), and the leader-side requests (`propose`,
//! `read_index`, `propose_conf_change`, `transfer_leader`). Outputs are recorded, never
//! performed: messages in two queues (those that may leave at once and those that may leave
//! only after the hard state and entries are durable, thesis §3.8), entries to persist, and
//! committed entries to apply. `RawNode` packages them into a `Ready`.

use std::collections::{BTreeMap, VecDeque};

use crate::config::{Config, InjectedBug};
use crate::forwarded::{Forwarded, HELD_MAX};
use crate::hlc::Hlc;
use crate::log::RaftLog;
use crate::membership::{apply_change, ConfHistory};
use crate::progress::{Progress, ProgressState};
use crate::quorum::{joint_index, joint_vote, VoteResult};
use crate::rng::Rng;
use crate::types::*;
use crate::Error;

/// A ReadIndex request waiting for leadership to be confirmed.
#[derive(Clone, Debug)]
struct ReadRequest {
    /// Who asked: this node (answered with a `ReadState`) or a follower (answered by message).
    from: NodeId,
    context: ReadContext,
}

/// One heartbeat round that will confirm a batch of reads once a quorum echoes it.
#[derive(Clone, Debug)]
struct ReadRound {
    round: u64,
    index: Index,
    requests: Vec<ReadRequest>,
}

/// The Raft state of one node. Driven through [`crate::RawNode`].
#[derive(Debug)]
pub struct Raft {
    pub(crate) config: Config,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) leader: NodeId,
    pub(crate) role: Role,
    pub(crate) log: RaftLog,
    pub(crate) conf: ConfHistory,
    /// The latest snapshot (sent to followers behind the compacted log).
    pub(crate) snapshot: Snapshot,
    /// Leader only: one entry per member, this node included.
    progress: BTreeMap<NodeId, Progress>,
    /// Candidate only: answers received.
    votes: BTreeMap<NodeId, bool>,
    pub(crate) messages: Vec<Message>,
    pub(crate) messages_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    election_timeout: u32,
    /// Ticks since this node started (snapshot resends, the restart guard of leases).
    ticks: u64,
    /// The latest reading of the driver's clock (see [`Monotonic`]): never later than now, so
    /// a heartbeat round stamped with it was sent no earlier than its stamp.
    clock: Monotonic,
    /// Set at a restart (not for a new node): this node may have confirmed a leader's lease
    /// before it stopped, and forgot that leader, so it refuses to help elect another for an
    /// election timeout (see [`Raft::in_leader_lease`]).
    pub(crate) restarted: bool,
    rng: Rng,
    /// Proposals appended since the last broadcast; sent together in one append.
    broadcast_pending: bool,
    uncommitted_bytes: u64,
    leader_transferee: Option<NodeId>,
    /// Index of this leader's first entry: until it commits, no reads and no conf changes.
    term_start_index: Index,
    heartbeat_round: u64,
    /// When each recent heartbeat round was sent, on the driver's clock (for the lease).
    round_sent_at: VecDeque<(u64, Monotonic)>,
    /// Reads waiting for this leader's first commit.
    reads_before_commit: Vec<ReadRequest>,
    reads_queued: Vec<ReadRequest>,
    /// Reads the lease may answer, checked against a fresh clock reading at the next flush.
    reads_lease: Vec<ReadRequest>,
    read_rounds: VecDeque<ReadRound>,
    /// Lease-read validity: the lease holds while the driver's clock reads less than this.
    lease_until: Monotonic,
    /// Proposals forwarded to this node, to drop duplicated messages.
    forwarded: Forwarded,
    /// Forwarded proposals waiting for a leader that can take them: this node while no transfer
    /// is under way, or the leader this node follows (see [`Raft::release_held`]).
    held: Vec<Vec<u8>>,
    /// Set once a leader transfer started in this term: no more lease reads until a new term.
    lease_void_in_term: bool,
    /// Stamps entries as leader; follows the stamps in the log as follower.
    hlc: Hlc,
    /// Follower: the leader's wall clock minus this node's, from the last heartbeat (ms).
    clock_offset_ms: Option<i64>,
}

const ROUND_HISTORY_MAX: usize = 128;

/// Election timeouts a learner waits, beyond its own, before it campaigns (see
/// [`Raft::election_due`]).
const LEARNER_CAMPAIGN_ELECTIONS: u32 = 3;

impl Raft {
    /// A node restored from persisted state (all of which may be empty for a new node).
    pub(crate) fn new(
        config: Config,
        hard_state: HardState,
        snapshot: Snapshot,
        entries: Vec<Entry>,
        applied: Index,
    ) -> Result<Raft, Error> {
        config.validate()?;
        let mut hlc = Hlc::default();
        hlc.witness(entries.last().map_or(0, |entry| entry.stamp));
        let log = RaftLog::restore(&snapshot.meta, entries, hard_state.commit, applied);
        let mut conf = ConfHistory::new(snapshot.meta.conf_state.clone());
        conf.observe(log.entries_from(log.first_index()));
        let rng = Rng::new(config.seed ^ config.id.rotate_left(32));
        let mut raft = Raft {
            term: hard_state.term,
            vote: hard_state.vote,
            leader: NO_NODE,
            role: Role::Follower,
            log,
            conf,
            snapshot,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            read_states: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: config.election_ticks,
            ticks: 0,
            clock: Monotonic::default(),
            restarted: true,
            rng,
            broadcast_pending: false,
            uncommitted_bytes: 0,
            leader_transferee: None,
            term_start_index: 0,
            heartbeat_round: 0,
            round_sent_at: VecDeque::new(),
            reads_before_commit: Vec::new(),
            reads_queued: Vec::new(),
            reads_lease: Vec::new(),
            read_rounds: VecDeque::new(),
            lease_until: Monotonic::default(),
            forwarded: Forwarded::default(),
            held: Vec::new(),
            lease_void_in_term: false,
            hlc,
            clock_offset_ms: None,
            config,
        };
        raft.reset_election_timeout();
        Ok(raft)
    }

    fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration in force (the latest in the log).
    pub fn conf_state(&self) -> &ConfState {
        self.conf.current()
    }

    /// The current hard state.
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed() }
    }

    /// The current soft state.
    pub fn soft_state(&self) -> SoftState {
        SoftState { leader: self.leader, role: self.role }
    }

    /// May this node start an election?
    fn promotable(&self) -> bool {
        if self.log.pending_snapshot().is_some() {
            return false;
        }
        if self.conf.current().is_voter(self.id()) {
            return true;
        }
        // Thesis §4.1: a server left out of its latest configuration still starts elections while
        // that configuration is uncommitted, because it may be needed to commit it (it does not
        // count its own vote). Otherwise a leader that appended C_new without itself and then
        // lost leadership can hold the only copy of C_new while C_old cannot form a majority
        // without it: the simulator found exactly that deadlock.
        let index = self.conf.current_index();
        index > self.log.committed() && index > 0 && self.conf.at(index - 1).is_voter(self.id())
    }

    /// Time to campaign: a voter (see [`Raft::promotable`]) after its election timeout; a
    /// learner only after [`LEARNER_CAMPAIGN_ELECTIONS`] more election timeouts without a
    /// leader, when the voters have had every chance to elect one of themselves.
    ///
    /// Why a learner campaigns at all: with configurations in force from the moment they are
    /// appended, the voters can be stuck for good while a learner holds what they need. The
    /// simulator found one: a stale leader appended a joint configuration that makes learner
    /// L a voter; the only other voter alive has a shorter log, so it cannot win the stale
    /// leader's vote, and the stale leader needs L's vote for the new half, which L refuses
    /// because it holds an entry of a later term. L, campaigning under its own configuration,
    /// wins both voters (its log is the most up to date), overwrites the stale entry, commits
    /// an entry of its term, and steps down (a leader that is no voter does once it has
    /// committed). Safe as any candidacy: votes still come only from voters, each granted only
    /// to a log at least as up to date as the voter's.
    fn election_due(&self) -> bool {
        if self.promotable() {
            return self.election_elapsed >= self.election_timeout;
        }
        let conf = self.conf.current();
        let learner = conf.learners.contains(&self.id()) && !conf.voters.is_empty();
        let patience = LEARNER_CAMPAIGN_ELECTIONS * self.config.election_ticks;
        learner && self.log.pending_snapshot().is_none() && self.election_elapsed >= self.election_timeout + patience
    }

    fn reset_election_timeout(&mut self) {
        let low = self.config.election_ticks as u64;
        self.election_timeout = self.rng.range(low, 2 * low) as u32;
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    /// Routes a message: answers that promise something about our durable state (a vote, an
    /// append ack) and our own vote requests wait for persistence; the rest may go at once.
    fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let after_persist = matches!(
            body,
            MessageBody::AppendResponse { .. }
                | MessageBody::VoteResponse { pre_vote: false, .. }
                | MessageBody::Vote { pre_vote: false, .. }
        );
        let message = Message { from: self.id(), to, term, body };
        if after_persist {
            self.messages_after_persist.push(message);
        } else {
            self.messages.push(message);
        }
    }

    // ---------------------------------------------------------------- role transitions

    fn reset(&mut self, term: Term) {
        assert!(term >= self.term, "node {}: term would go back from {} to {term}", self.config.id, self.term);
        if term != self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        self.leader = NO_NODE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_election_timeout();
        self.votes.clear();
        self.progress.clear();
        self.leader_transferee = None;
        self.broadcast_pending = false;
        self.uncommitted_bytes = 0;
        self.reads_before_commit.clear();
        self.reads_queued.clear();
        self.reads_lease.clear();
        self.read_rounds.clear();
        self.round_sent_at.clear();
        self.lease_until = Monotonic::default();
        self.lease_void_in_term = false;
    }

    fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        // A pre-candidate changes neither term nor vote: a refused pre-vote leaves no trace.
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        let term = self.term + 1;
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = self.id();
    }

    fn become_leader(&mut self) {
        assert!(self.role == Role::Candidate, "only a candidate can become leader");
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.id();
        let last = self.log.last_index();
        for id in self.conf.current().members() {
            self.add_progress(id, last + 1);
        }
        // The no-op of §5.4.2 / §8: commits everything before it and lets reads proceed.
        self.term_start_index = last + 1;
        if !self.config.has_bug(InjectedBug::CommitPreviousTerm) {
            self.append_entries(vec![(EntryKind::Normal, Vec::new())]);
        }
        self.bcast_append();
    }

    fn add_progress(&mut self, id: NodeId, next_index: Index) {
        let is_learner = !self.conf.current().is_voter(id);
        let mut progress = Progress::new(next_index, self.config.inflight_messages_max, is_learner);
        if id == self.id() {
            progress.match_index = self.log.persisted();
            progress.become_replicate();
            progress.next_index = self.log.last_index() + 1;
        }
        progress.recent_active = true;
        self.progress.insert(id, progress);
    }

    /// Makes the leader's progress set follow the configuration in force.
    fn sync_progress_with_conf(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let members = self.conf.current().members();
        self.progress.retain(|id, _| members.contains(id));
        let next = self.log.last_index() + 1;
        for id in members {
            if !self.progress.contains_key(&id) {
                self.add_progress(id, next);
            }
        }
        let conf = self.conf.current().clone();
        for (id, progress) in self.progress.iter_mut() {
            progress.is_learner = !conf.is_voter(*id);
        }
    }

    // ---------------------------------------------------------------- time

    /// Advances time by one tick.
    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed += 1;
            if self.election_due() {
                self.election_elapsed = 0;
                self.campaign(!self.config.pre_vote, false);
            }
        }
        self.release_held();
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, NO_NODE);
                return;
            }
            // A transfer that has not finished within an election timeout is abandoned.
            self.leader_transferee = None;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            for progress in self.progress.values_mut() {
                progress.probe_sent = false;
            }
            self.start_heartbeat_round();
        }
    }

    /// Check-quorum: did a quorum answer since the last check? Resets the marks for the next one.
    fn quorum_recently_active(&mut self) -> bool {
        let id = self.id();
        let votes: BTreeMap<NodeId, bool> =
            self.progress.iter().map(|(peer, progress)| (*peer, *peer == id || progress.recent_active)).collect();
        for (peer, progress) in self.progress.iter_mut() {
            progress.recent_active = *peer == id;
        }
        let conf = self.conf.current();
        joint_vote(&conf.voters, &conf.voters_outgoing, &votes) == VoteResult::Won
    }

    // ---------------------------------------------------------------- elections

    /// Starts an election (or a pre-vote round when `skip_pre_vote` is false).
    fn campaign(&mut self, skip_pre_vote: bool, leader_transfer: bool) {
        let pre_vote = !skip_pre_vote;
        if pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let id = self.id();
        self.votes.insert(id, true);
        if self.poll() == VoteResult::Won {
            if pre_vote {
                self.campaign(true, leader_transfer);
            } else {
                self.become_leader();
            }
            return;
        }
        let term = if pre_vote { self.term + 1 } else { self.term };
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = {
            let conf = self.conf.current();
            conf.voters.union(&conf.voters_outgoing).copied().filter(|v| *v != id).collect()
        };
        for voter in voters {
            let body = MessageBody::Vote { pre_vote, last_index, last_term, leader_transfer };
            self.send_with_term(voter, term, body);
        }
    }

    fn poll(&self) -> VoteResult {
        let conf = self.conf.current();
        joint_vote(&conf.voters, &conf.voters_outgoing, &self.votes)
    }

    /// True if this node heard from a leader recently enough that it must not help depose it,
    /// or restarted less than an election timeout ago (it may have answered a leader's heartbeat
    /// just before it stopped and forgot which leader that was: a leader counting on that answer
    /// for its lease must not be deposed with this node's vote meanwhile).
    fn in_leader_lease(&self) -> bool {
        let election_ticks = self.config.election_ticks;
        let heard_lately = self.leader != NO_NODE && self.election_elapsed < election_ticks;
        let restarted_lately = self.restarted && self.ticks < election_ticks as u64;
        self.config.check_quorum && (heard_lately || restarted_lately)
    }

    fn handle_vote_request(&mut self, message: &Message, pre_vote: bool, last_index: Index, last_term: Term) {
        let can_vote = self.vote == message.from
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (pre_vote && message.term > self.term);
        let log_ok = self.log.is_up_to_date(last_index, last_term) || self.config.has_bug(InjectedBug::VoteIgnoresLog);
        if can_vote && log_ok {
            // A granted pre-vote answers in the probed term, so the candidate counts it.
            self.send_with_term(message.from, message.term, MessageBody::VoteResponse { pre_vote, reject: false });
            if !pre_vote {
                self.election_elapsed = 0;
                self.vote = message.from;
            }
        } else {
            self.send(message.from, MessageBody::VoteResponse { pre_vote, reject: true });
        }
    }

    // ---------------------------------------------------------------- step

    /// Handles one message from a peer.
    pub(crate) fn step(&mut self, message: Message) -> Result<(), Error> {
        if message.from == NO_NODE || message.to != self.id() {
            return Err(Error::MisaddressedMessage { from: message.from, to: message.to });
        }
        if let MessageBody::Propose { entries } = message.body {
            // A client request, not protocol state: its term neither deposes this node nor makes
            // it stale. One sent to this node as the leader of a past term is taken and passed
            // on: if this node appended it then, this is a duplicate, which the memory of
            // forwarded proposals drops (see `forwarded.rs` for what the transport must keep).
            self.hold_forwarded(message.from, entries);
            self.release_held();
            return Ok(());
        }
        if !self.step_term(&message) {
            return Ok(());
        }
        match message.body {
            MessageBody::Vote { pre_vote, last_index, last_term, .. } => {
                self.handle_vote_request(&message, pre_vote, last_index, last_term);
            }
            _ => match self.role {
                Role::Leader => self.step_leader(message),
                Role::Candidate | Role::PreCandidate => self.step_candidate(message),
                Role::Follower => self.step_follower(message),
            },
        }
        self.release_held();
        Ok(())
    }

    /// Takes proposals a member forwarded, each once (a duplicated message is recognised).
    fn hold_forwarded(&mut self, from: NodeId, entries: Vec<Vec<u8>>) {
        if !self.conf.current().members().contains(&from) {
            return;
        }
        let entries = self.forwarded.admit(from, entries);
        let room = HELD_MAX.saturating_sub(self.held.len());
        self.held.extend(entries.into_iter().take(room));
    }

    /// Forwarded proposals were appended nowhere yet, so they may move on: a leader appends
    /// them (after a leader transfer that did not happen), a follower passes them to the leader
    /// it knows. Meanwhile (a transfer under way, an election) they wait here instead of being
    /// dropped, so a leader handing over does not make its followers' clients time out.
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        match self.role {
            Role::Leader if self.leader_transferee.is_none() => {
                let held = std::mem::take(&mut self.held);
                // Refused only past the uncommitted-bytes bound: dropped, the proposers time out.
                let _ = self.propose(held);
            }
            Role::Follower if self.leader != NO_NODE => {
                let (leader, entries) = (self.leader, std::mem::take(&mut self.held));
                self.send(leader, MessageBody::Propose { entries });
            }
            _ => {}
        }
    }

    /// Term rules common to every role (§5.1). Returns false if the message is to be dropped.
    fn step_term(&mut self, message: &Message) -> bool {
        if message.term > self.term {
            if let MessageBody::Vote { leader_transfer, .. } = message.body {
                // Thesis §4.2.3: a node that hears from a live leader ignores disruptive candidates.
                if self.in_leader_lease() && !leader_transfer {
                    return false;
                }
            }
            match message.body {
                MessageBody::Vote { pre_vote: true, .. } => {}
                MessageBody::VoteResponse { pre_vote: true, reject: false } => {}
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(message.term, message.from);
                }
                _ => self.become_follower(message.term, NO_NODE),
            }
            return true;
        }
        if message.term < self.term {
            match message.body {
                // A stale leader (e.g. back from a partition) learns the new term and steps down.
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                    if self.config.check_quorum || self.config.pre_vote =>
                {
                    self.send(
                        message.from,
                        MessageBody::AppendResponse { reject: false, index: 0, hint_index: 0, hint_term: 0 },
                    );
                }
                MessageBody::Vote { pre_vote: true, .. } => {
                    self.send(message.from, MessageBody::VoteResponse { pre_vote: true, reject: true });
                }
                _ => {}
            }
            return false;
        }
        true
    }

    fn step_leader(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            MessageBody::AppendResponse { reject, index, hint_index, hint_term } => {
                self.handle_append_response(from, reject, index, hint_index, hint_term);
            }
            MessageBody::HeartbeatResponse { round } => self.handle_heartbeat_response(from, round),
            MessageBody::ReadIndex { context } => self.handle_read_request(ReadRequest { from, context }),
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                panic!(
                    "leader {} of term {} got {:?} from {from} in the same term",
                    self.id(),
                    self.term,
                    message.body.kind_name()
                );
            }
            _ => {}
        }
    }

    fn step_candidate(&mut self, message: Message) {
        match message.body {
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                self.become_follower(message.term, message.from);
                self.step_follower(message);
            }
            MessageBody::VoteResponse { pre_vote, reject } => {
                if pre_vote != (self.role == Role::PreCandidate) {
                    return;
                }
                self.votes.insert(message.from, !reject);
                match self.poll() {
                    VoteResult::Won if pre_vote => self.campaign(true, false),
                    VoteResult::Won => self.become_leader(),
                    VoteResult::Lost => self.become_follower(self.term, NO_NODE),
                    VoteResult::Pending => {}
                }
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            MessageBody::Append { prev_index, prev_term, entries, commit } => {
                self.election_elapsed = 0;
                self.leader = from;
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            MessageBody::Heartbeat { commit, round, clock_ms } => {
                self.election_elapsed = 0;
                self.leader = from;
                let own = self.hlc.wall_ms();
                self.clock_offset_ms = (clock_ms > 0 && own > 0).then(|| clock_ms as i64 - own as i64);
                self.log.commit_to(commit.min(self.log.last_index()));
                self.send(from, MessageBody::HeartbeatResponse { round });
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.election_elapsed = 0;
                self.leader = from;
                self.handle_snapshot(from, snapshot);
            }
            MessageBody::TimeoutNow if self.promotable() => self.campaign(true, true),
            MessageBody::ReadIndexResponse { context, index } => {
                self.read_states.push(ReadState { index, context });
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- replication, follower side

    fn handle_append(&mut self, from: NodeId, prev_index: Index, prev_term: Term, entries: Vec<Entry>, commit: Index) {
        // Only a follower's log is ever overwritten; a leader's log is append-only (§5.3).
        assert_ne!(self.role, Role::Leader, "a leader must never take entries from another node");
        let committed = self.log.committed();
        if prev_index < committed {
            // Everything up to our commit index is known to match; ack that much.
            self.send(
                from,
                MessageBody::AppendResponse { reject: false, index: committed, hint_index: 0, hint_term: 0 },
            );
            return;
        }
        if self.log.matches(prev_index, prev_term) {
            let last_new = prev_index + entries.len() as u64;
            self.hlc.witness(entries.iter().map(|entry| entry.stamp).max().unwrap_or(0));
            if let Some(first_written) = self.log.append_from_leader(entries) {
                self.conf.truncate_from(first_written);
                self.conf.observe(self.log.entries_from(first_written));
            }
            self.log.commit_to(commit.min(last_new));
            self.send(
                from,
                MessageBody::AppendResponse { reject: false, index: last_new, hint_index: 0, hint_term: 0 },
            );
        } else {
            let (hint_index, hint_term) =
                self.log.find_conflict_by_term(prev_index.min(self.log.last_index()), prev_term);
            self.send(from, MessageBody::AppendResponse { reject: true, index: prev_index, hint_index, hint_term });
        }
    }

    fn handle_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        if index <= self.log.committed() {
            let committed = self.log.committed();
            self.send(
                from,
                MessageBody::AppendResponse { reject: false, index: committed, hint_index: 0, hint_term: 0 },
            );
            return;
        }
        if self.log.matches(index, term) {
            // We already have the entries; just learn that they are committed.
            self.log.commit_to(index);
        } else {
            self.conf.reset(&snapshot.meta);
            self.snapshot = Snapshot { meta: snapshot.meta.clone(), data: snapshot.data.clone() };
            self.log.restore_snapshot(snapshot);
        }
        let committed = self.log.committed();
        self.send(from, MessageBody::AppendResponse { reject: false, index: committed, hint_index: 0, hint_term: 0 });
    }

    // ---------------------------------------------------------------- replication, leader side

    /// Appends new entries as leader; they are broadcast at the next `Ready`, all in one append.
    fn append_entries(&mut self, payloads: Vec<(EntryKind, Vec<u8>)>) -> Index {
        let mut index = self.log.last_index();
        let entries: Vec<Entry> = payloads
            .into_iter()
            .map(|(kind, data)| {
                index += 1;
                Entry { term: self.term, index, kind, data, stamp: self.hlc.issue() }
            })
            .collect();
        self.uncommitted_bytes += entries.iter().map(Entry::size_bytes).sum::<u64>();
        self.conf.observe(&entries);
        let has_conf_change = entries.iter().any(|e| e.kind == EntryKind::ConfChange);
        self.log.append(entries);
        if has_conf_change {
            self.sync_progress_with_conf();
        }
        let id = self.id();
        if let Some(progress) = self.progress.get_mut(&id) {
            progress.next_index = index + 1;
        }
        self.broadcast_pending = true;
        // A lone voter commits as soon as its own disk has the entries (see `on_persisted`).
        index
    }

    /// Sends whatever appends are pending and starts a confirmation round for queued reads.
    /// Called by `RawNode` before building a `Ready`.
    pub(crate) fn flush_broadcast(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.bcast_append();
        }
        if !self.reads_queued.is_empty() && self.read_rounds.is_empty() {
            self.start_heartbeat_round();
        }
    }

    /// Forgets the known leader (e.g. the transport knows it is gone), so this follower stops
    /// honouring its lease and can vote at once. The term does not change. Not for clusters with
    /// lease reads: the leader may be alive and counting on this follower's promise.
    pub(crate) fn forget_leader(&mut self) {
        if self.role == Role::Follower {
            self.leader = NO_NODE;
        }
    }

    fn bcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().filter(|id| *id != self.id()).collect();
        for peer in peers {
            self.send_append(peer, false);
        }
    }

    /// Sends one append (or the snapshot) to `to` if its progress allows. An empty append is
    /// sent only when probing or when `send_if_empty` (to carry a new commit index).
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(progress) = self.progress.get(&to) else { return false };
        if progress.is_paused() {
            return false;
        }
        let prev_index = progress.next_index - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            return self.send_snapshot(to);
        };
        let entries = self.log.slice(progress.next_index, self.log.last_index() + 1, self.config.append_bytes_max);
        if entries.is_empty() && !send_if_empty && progress.state == ProgressState::Replicate {
            return false;
        }
        let last = prev_index + entries.len() as u64;
        let count = entries.len();
        let commit = self.log.committed();
        self.send(to, MessageBody::Append { prev_index, prev_term, entries, commit });
        self.progress.get_mut(&to).expect("checked above").sent_append(last, count);
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let snapshot = self.snapshot.clone();
        let index = snapshot.meta.index;
        let progress = self.progress.get_mut(&to).expect("caller checked");
        progress.become_snapshot(index);
        progress.snapshot_sent_tick = self.ticks;
        self.send(to, MessageBody::InstallSnapshot { snapshot });
        true
    }

    fn handle_append_response(&mut self, from: NodeId, reject: bool, index: Index, hint_index: Index, hint_term: Term) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        if reject {
            // Skip the follower's whole conflicting term in one step (§5.3, "optimization").
            let next_probe =
                if hint_term > 0 { self.log.find_conflict_by_term(hint_index, hint_term).0 } else { hint_index };
            let progress = self.progress.get_mut(&from).expect("present");
            if progress.maybe_decrease_to(index, next_probe) {
                if progress.state == ProgressState::Replicate {
                    progress.become_probe();
                }
                self.send_append(from, false);
            }
            return;
        }
        if !progress.maybe_update(index) {
            return;
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot { index: snapshot_index } if progress.match_index >= snapshot_index => {
                progress.become_probe();
            }
            ProgressState::Replicate => progress.inflights.free_to(index),
            ProgressState::Snapshot { .. } => {}
        }
        if self.maybe_commit() {
            self.bcast_append_with_commit();
        } else {
            while self.send_append(from, false) {}
        }
        if self.leader_transferee == Some(from) && self.progress[&from].match_index == self.log.last_index() {
            self.send(from, MessageBody::TimeoutNow);
        }
    }

    fn bcast_append_with_commit(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().filter(|id| *id != self.id()).collect();
        for peer in peers {
            self.send_append(peer, true);
        }
    }

    /// Advances the commit index to what a quorum has, if that entry is of the current term
    /// (§5.4.2: entries of earlier terms are committed only indirectly). Returns true if it moved.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let conf = self.conf.current();
        let progress = &self.progress;
        let index = joint_index(&conf.voters, &conf.voters_outgoing, &|id| progress.get(&id).map(|p| p.match_index));
        if index <= self.log.committed() || index == Index::MAX {
            return false;
        }
        let current_term = self.log.term(index) == Some(self.term);
        if !current_term && !self.config.has_bug(InjectedBug::CommitPreviousTerm) {
            return false;
        }
        self.log.commit_to(index);
        self.on_commit_advanced();
        true
    }

    fn on_commit_advanced(&mut self) {
        let committed = self.log.committed();
        if committed >= self.term_start_index && !self.reads_before_commit.is_empty() {
            for request in std::mem::take(&mut self.reads_before_commit) {
                self.handle_read_request(request);
            }
        }
        let conf_index = self.conf.current_index();
        if committed >= conf_index {
            let conf = self.conf.current().clone();
            if conf.is_joint() {
                // C_old,new is committed: move on to C_new.
                self.append_entries(vec![(EntryKind::ConfChange, ConfChange::default().encode())]);
            } else if !conf.is_voter(self.id()) {
                // §4.2.2: a leader that is not part of C_new steps down once C_new is committed;
                // and a learner that led to repair the voters' logs (see `election_due`) once
                // an entry of its term committed.
                self.become_follower(self.term, NO_NODE);
            }
        }
    }

    // ---------------------------------------------------------------- persistence feedback

    /// The caller made entries up to (index, term) durable.
    pub(crate) fn on_persisted(&mut self, index: Index, term: Term) {
        self.log.persisted_to(index, term);
        let id = self.id();
        let persisted = self.log.persisted();
        if self.role == Role::Leader {
            if let Some(progress) = self.progress.get_mut(&id) {
                progress.maybe_update(persisted);
            }
            if self.maybe_commit() {
                self.bcast_append_with_commit();
            }
        }
    }

    /// Committed entries were handed out to apply.
    pub(crate) fn on_applied(&mut self, index: Index, bytes: u64) {
        self.log.applied_to(index);
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(bytes);
    }

    // ---------------------------------------------------------------- client requests

    /// Appends a batch of proposals to the leader's log. Returns the index of the last one, or 0
    /// when a follower forwarded them to the leader ([`Config::forward_proposals`]).
    pub(crate) fn propose(&mut self, payloads: Vec<Vec<u8>>) -> Result<Index, Error> {
        if self.role == Role::Follower && self.leader != NO_NODE && self.config.forward_proposals {
            let leader = self.leader;
            self.send(leader, MessageBody::Propose { entries: payloads });
            return Ok(0);
        }
        self.check_can_propose()?;
        self.check_clock()?;
        let bytes: u64 = payloads.iter().map(|p| p.len() as u64 + 24).sum();
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + bytes > self.config.uncommitted_bytes_max {
            return Err(Error::ProposalDropped("too many uncommitted bytes".into()));
        }
        Ok(self.append_entries(payloads.into_iter().map(|data| (EntryKind::Normal, data)).collect()))
    }

    /// Refuses to stamp entries further ahead of this leader's wall clock than
    /// [`Config::max_clock_skew_ms`]: the clocks of the members disagree by more than the
    /// operator promised (or this leader's clock stepped back), and stamps would no longer say
    /// when a write happened.
    fn check_clock(&self) -> Result<(), Error> {
        let (ahead_ms, max_ms) = (self.hlc.ahead_ms(), self.config.max_clock_skew_ms);
        if max_ms > 0 && ahead_ms > max_ms {
            return Err(Error::ClockSkew { ahead_ms, max_ms });
        }
        Ok(())
    }

    /// Takes a reading of the wall clock (ms since the epoch) for the next stamps.
    pub(crate) fn observe_wall_clock(&mut self, ms: u64) {
        self.hlc.observe_wall(ms);
    }

    /// Takes in a stamp known to be in the past (the store's newest, at a restart).
    pub(crate) fn witness_stamp(&mut self, stamp: u64) {
        self.hlc.witness(stamp);
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's hybrid logical clock.
    pub fn hlc(&self) -> Hlc {
        self.hlc
    }

    /// Follower: the leader's wall clock minus this node's at the last heartbeat, in ms.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.clock_offset_ms
    }

    fn check_can_propose(&self) -> Result<(), Error> {
        if self.role != Role::Leader {
            let leader = (self.leader != NO_NODE).then_some(self.leader);
            return Err(Error::NotLeader { leader });
        }
        if self.leader_transferee.is_some() {
            return Err(Error::ProposalDropped("leadership transfer in progress".into()));
        }
        Ok(())
    }

    /// Proposes a membership change (one at a time; see [`crate::membership`]).
    pub(crate) fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, Error> {
        self.check_can_propose()?;
        if change.steps.is_empty() {
            return Err(Error::InvalidConfChange("an empty change is only proposed by the leader itself".into()));
        }
        if change.steps.iter().any(|step| matches!(step, ConfChangeStep::ForceAlone(_))) {
            return Err(Error::InvalidConfChange("a forced configuration is never proposed (see force_alone)".into()));
        }
        let committed = self.log.committed();
        if committed < self.term_start_index || self.conf.current_index() > committed || self.conf.current().is_joint()
        {
            return Err(Error::ConfChangePending);
        }
        apply_change(self.conf.current(), &change)?;
        Ok(self.append_entries(vec![(EntryKind::ConfChange, change.encode())]))
    }

    /// Starts handing leadership to `target` (thesis §3.10).
    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: (self.leader != NO_NODE).then_some(self.leader) });
        }
        if target == self.id() || self.leader_transferee == Some(target) {
            return Ok(());
        }
        if !self.conf.current().voters.contains(&target) {
            return Err(Error::InvalidTransfer(target));
        }
        self.leader_transferee = Some(target);
        self.election_elapsed = 0;
        // The transferee's election ignores followers' leases, so this leader's lease is void
        // for the rest of the term (a TimeoutNow may arrive late, after the transfer was abandoned).
        self.lease_void_in_term = true;
        if self.progress[&target].match_index == self.log.last_index() {
            self.send(target, MessageBody::TimeoutNow);
        } else {
            self.send_append(target, false);
        }
        Ok(())
    }

    /// Asks for a linearizable read index. On a follower the request is forwarded to the leader.
    pub(crate) fn read_index(&mut self, context: ReadContext) -> Result<(), Error> {
        match self.role {
            Role::Leader => {
                let id = self.id();
                self.handle_read_request(ReadRequest { from: id, context });
                Ok(())
            }
            _ if self.leader != NO_NODE => {
                let leader = self.leader;
                self.send(leader, MessageBody::ReadIndex { context });
                Ok(())
            }
            _ => Err(Error::NotLeader { leader: None }),
        }
    }

    fn handle_read_request(&mut self, request: ReadRequest) {
        if self.log.committed() < self.term_start_index {
            // §6.4: the commit index is only known once an entry of this term has committed.
            self.reads_before_commit.push(request);
            return;
        }
        let index = self.log.committed();
        let conf = self.conf.current();
        let lone_voter = conf.voters.len() == 1 && conf.voters.contains(&self.id()) && !conf.is_joint();
        if lone_voter || self.config.has_bug(InjectedBug::ReadIndexWithoutQuorum) {
            self.answer_read(request, index);
            return;
        }
        if self.lease_may_hold(self.clock) {
            // Judged at the next flush, against a clock reading taken then: the last reading
            // may be old (the process may have stopped since), and a lease must never be
            // judged by a clock that stood still.
            self.reads_lease.push(request);
            return;
        }
        // The round starts at the next flush, so reads that arrive together share it.
        self.reads_queued.push(request);
    }

    /// True if the leader lease holds at `now` (lease reads on, not voided by a transfer).
    fn lease_may_hold(&self, now: Monotonic) -> bool {
        self.config.lease_read && !self.lease_void_in_term && now < self.lease_until
    }

    /// Takes a reading of the driver's clock: answers the reads waiting on the lease if it
    /// still holds (or sends them to a confirmation round), then flushes what is pending.
    pub(crate) fn flush(&mut self, now: Monotonic) {
        assert!(now >= self.clock, "node {}: the clock went back from {:?} to {now:?}", self.id(), self.clock);
        self.clock = now;
        if !self.reads_lease.is_empty() {
            let reads = std::mem::take(&mut self.reads_lease);
            if self.role == Role::Leader && self.lease_may_hold(now) {
                let index = self.log.committed();
                for request in reads {
                    self.answer_read(request, index);
                }
            } else {
                self.reads_queued.extend(reads);
            }
        }
        self.flush_broadcast();
    }

    /// True if reads wait for a clock reading (see [`Raft::flush`]).
    pub(crate) fn has_lease_reads(&self) -> bool {
        !self.reads_lease.is_empty()
    }

    fn answer_read(&mut self, request: ReadRequest, index: Index) {
        if request.from == self.id() {
            self.read_states.push(ReadState { index, context: request.context });
        } else {
            self.send(request.from, MessageBody::ReadIndexResponse { context: request.context, index });
        }
    }

    /// Broadcasts a heartbeat that starts a new confirmation round; queued reads join it.
    fn start_heartbeat_round(&mut self) {
        self.heartbeat_round += 1;
        let round = self.heartbeat_round;
        // Stamped with the latest reading, which is no later than the moment these heartbeats
        // leave (they go out after this call returns): a lease counted from the stamp ends no
        // later than one counted from the true sending time.
        self.round_sent_at.push_back((round, self.clock));
        if self.round_sent_at.len() > ROUND_HISTORY_MAX {
            self.round_sent_at.pop_front();
        }
        if !self.reads_queued.is_empty() {
            let requests = std::mem::take(&mut self.reads_queued);
            self.read_rounds.push_back(ReadRound { round, index: self.log.committed(), requests });
        }
        let id = self.id();
        if let Some(progress) = self.progress.get_mut(&id) {
            progress.heartbeat_round_acked = round;
        }
        let peers: Vec<NodeId> = self.progress.keys().copied().filter(|p| *p != id).collect();
        for peer in peers {
            let commit = self.log.committed().min(self.progress[&peer].match_index);
            self.send(peer, MessageBody::Heartbeat { commit, round, clock_ms: self.hlc.wall_ms() });
        }
        self.confirm_rounds();
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        progress.probe_sent = false;
        progress.heartbeat_round_acked = progress.heartbeat_round_acked.max(round);
        // Appends may have been lost: make room for one more so a stalled pipeline restarts.
        if progress.state == ProgressState::Replicate && progress.inflights.is_full() {
            progress.inflights.free_first();
        }
        // The follower is alive but the snapshot never arrived (lost, or the follower restarted):
        // send it again rather than wait for a report that may never come.
        let snapshot_timeout_ticks = 2 * self.config.election_ticks as u64;
        if matches!(progress.state, ProgressState::Snapshot { .. })
            && self.ticks >= progress.snapshot_sent_tick + snapshot_timeout_ticks
        {
            progress.abandon_snapshot();
        }
        if progress.match_index < self.log.last_index() {
            // Even an empty append helps here: if the follower lacks what we think is in
            // flight, it rejects and we fall back to probing.
            self.send_append(from, true);
        }
        self.confirm_rounds();
    }

    /// Answers every read whose round a quorum has echoed, and extends the lease.
    fn confirm_rounds(&mut self) {
        let conf = self.conf.current();
        let progress = &self.progress;
        let confirmed =
            joint_index(&conf.voters, &conf.voters_outgoing, &|id| progress.get(&id).map(|p| p.heartbeat_round_acked));
        if confirmed == Index::MAX {
            return;
        }
        if let Some((_, sent_at)) = self.round_sent_at.iter().find(|(round, _)| *round == confirmed) {
            // Followers that answered round `confirmed` will not vote for another candidate for
            // election_ticks (their own clocks) after they received it, which is after `sent_at`.
            let lease_ticks = (self.config.election_ticks - self.config.lease_drift_ticks) as u64;
            let until = sent_at.plus_nanos(lease_ticks.saturating_mul(self.config.tick_interval_ns));
            self.lease_until = self.lease_until.max(until);
        }
        while self.read_rounds.front().is_some_and(|r| r.round <= confirmed) {
            let round = self.read_rounds.pop_front().expect("checked");
            for request in round.requests {
                self.answer_read(request, round.index);
            }
        }
    }

    // ---------------------------------------------------------------- snapshots

    /// The caller took a snapshot of the state machine at `index` (applied); entries up to it
    /// are dropped and the snapshot is kept to send to followers that fall behind.
    pub(crate) fn compact(&mut self, index: Index, data: Vec<u8>) -> Result<(), Error> {
        let term = self.log.term(index).ok_or(Error::SnapshotOutOfDate)?;
        let conf_state = self.conf.at(index).clone();
        self.log.compact(index)?;
        self.conf.compact(index);
        self.snapshot = Snapshot { meta: SnapshotMeta { index, term, conf_state }, data };
        Ok(())
    }

    /// The caller could not deliver a snapshot (or it was delivered): resume probing.
    pub(crate) fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        if let Some(progress) = self.progress.get_mut(&to) {
            if let ProgressState::Snapshot { .. } = progress.state {
                if delivered {
                    // Probe right after the snapshot; the follower's ack will confirm it.
                    progress.become_probe();
                } else {
                    progress.abandon_snapshot();
                }
            }
        }
    }

    /// A message to `to` could not be delivered: go back to probing so nothing is assumed sent.
    pub(crate) fn report_unreachable(&mut self, to: NodeId) {
        if let Some(progress) = self.progress.get_mut(&to) {
            if progress.state == ProgressState::Replicate {
                progress.become_probe();
            }
        }
    }

    /// The configuration in force at the commit index: the one every member will agree on.
    pub fn committed_conf_state(&self) -> &ConfState {
        self.conf.at(self.log.committed())
    }

    /// The latest snapshot (index 0 if none was taken).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The leader's view of a follower (for tests and status).
    pub fn progress_of(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The log (read-only).
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
}

//! The caller's interface: inputs in, `Ready` out, `advance` to acknowledge.

use crate::raft::Raft;
use crate::types::*;
use crate::{Config, Error};

/// Everything the caller must do, in the order given in the crate docs.
#[derive(Debug, Default)]
pub struct Ready {
    /// Leader or role changed.
    pub soft_state: Option<SoftState>,
    /// Term, vote or commit changed: persist before sending `messages_after_persist`.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader: persist it and install it before applying anything else.
    pub snapshot: Option<Snapshot>,
    /// Entries to persist. Stored entries at or after `entries[0].index` are replaced.
    pub entries: Vec<Entry>,
    /// Messages that may be sent at once, before persisting.
    pub messages: Vec<Message>,
    /// Messages that may be sent only after everything above is durable.
    pub messages_after_persist: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed read indexes.
    pub read_states: Vec<ReadState>,
    /// The term or the vote changed (not only the commit index).
    term_or_vote_changed: bool,
}

impl Ready {
    /// True if something must be synced to disk before `messages_after_persist` go out: new
    /// entries, a snapshot, a new term or vote. A hard state whose only change is the commit
    /// index is written but need not be synced (etcd's rule): the commit index is a hint that the
    /// leader repeats, an acknowledgement never promises it, and after a crash that loses it the
    /// node restarts with an older one and learns the newer one again.
    pub fn must_sync(&self) -> bool {
        self.term_or_vote_changed || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

/// What `advance` must acknowledge for the outstanding `Ready`.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    persisted_last: Option<(Index, Term)>,
    applied_last: Option<Index>,
    applied_bytes: u64,
}

/// Durable state a node restarts from.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Latest snapshot (default: none, index 0 with the initial configuration).
    pub snapshot: Snapshot,
    /// Entries after the snapshot, in order.
    pub entries: Vec<Entry>,
    /// Highest index already applied to a durable state machine (0 to replay from the snapshot).
    pub applied: Index,
}

impl RestartState {
    /// Recovery after a majority of the configuration was lost for good (etcd's
    /// `--force-new-cluster`): this member becomes the one voter of its configuration. Entries
    /// after the commit index are dropped (they may never have committed); one entry is appended
    /// at the next index, in the current term, that sets the configuration to `id` alone
    /// ([`ConfChangeStep::ForceAlone`]), with the context `context` makes from the members it
    /// drops; and the hard state commits it. The caller persists `entries` from the returned
    /// entry's index on and the hard state, durably, before restarting from this state.
    ///
    /// `applied` is what the state machine has durably applied: committed, even if the commit
    /// index the hard state kept is older. The members dropped must never rejoin with their old
    /// data (their logs may hold other entries at the forced index): they are added again as
    /// new members, as in etcd.
    pub fn force_alone(
        &mut self,
        id: NodeId,
        applied: Index,
        context: impl FnOnce(&[NodeId]) -> Vec<u8>,
    ) -> Result<Entry, Error> {
        let snapshot_index = self.snapshot.meta.index;
        let last = snapshot_index + self.entries.len() as u64;
        let commit = self.hard_state.commit.max(applied).clamp(snapshot_index, last);
        self.entries.truncate((commit - snapshot_index) as usize);
        let mut history = crate::membership::ConfHistory::new(self.snapshot.meta.conf_state.clone());
        history.observe(&self.entries);
        let conf = history.current();
        if !conf.members().contains(&id) {
            return Err(Error::InvalidConfChange(format!(
                "node {id} is not a member of the configuration at the commit index ({conf:?})"
            )));
        }
        let dropped: Vec<NodeId> = conf.members().into_iter().filter(|member| *member != id).collect();
        let term = self.hard_state.term.max(self.entries.last().map_or(self.snapshot.meta.term, |e| e.term));
        let change = ConfChange { steps: vec![ConfChangeStep::ForceAlone(id)], context: context(&dropped) };
        let stamp = self.entries.last().map_or(0, |e| e.stamp) + 1;
        let entry = Entry { term, index: commit + 1, kind: EntryKind::ConfChange, data: change.encode(), stamp };
        self.entries.push(entry.clone());
        self.hard_state = HardState { term, vote: self.hard_state.vote, commit: entry.index };
        Ok(entry)
    }
}

/// A Raft node driven by its caller.
#[derive(Debug)]
pub struct RawNode {
    raft: Raft,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    outstanding: Option<Outstanding>,
}

impl RawNode {
    /// A brand-new node. A founding member passes the initial membership: its log then starts
    /// with one committed entry (index 1, term 1) that adds those members, identical on every
    /// founder, so nodes that join later learn the membership from the log itself. A node that
    /// will join an existing cluster passes an empty `ConfState` and waits for a leader.
    pub fn new(config: Config, initial: ConfState) -> Result<RawNode, Error> {
        Self::new_with_context(config, initial, Vec::new())
    }

    /// [`RawNode::new`], with a context recorded in the founding membership entry (identical
    /// on every founder, like the membership itself).
    pub fn new_with_context(config: Config, initial: ConfState, context: Vec<u8>) -> Result<RawNode, Error> {
        if initial.is_joint() || !initial.learners_next.is_empty() {
            return Err(Error::InvalidConfChange("the initial membership cannot be joint".into()));
        }
        let mut state = RestartState::default();
        if !initial.voters.is_empty() {
            let steps = initial
                .voters
                .iter()
                .map(|id| ConfChangeStep::AddVoter(*id))
                .chain(initial.learners.iter().map(|id| ConfChangeStep::AddLearner(*id)))
                .collect();
            let bootstrap = Entry {
                stamp: 0,
                term: 1,
                index: 1,
                kind: EntryKind::ConfChange,
                data: ConfChange { steps, context }.encode(),
            };
            state.entries = vec![bootstrap];
            state.hard_state = HardState { term: 1, vote: NO_NODE, commit: 1 };
        } else if !initial.learners.is_empty() {
            return Err(Error::InvalidConfChange("the initial membership needs a voter".into()));
        }
        let mut node = Self::restart(config, state)?;
        // Nothing of the bootstrap state is on disk yet: the first Ready carries all of it.
        node.prev_hard_state = HardState::default();
        // A new node never answered a leader, so it has no lease to honour after its start.
        node.raft.restarted = false;
        node.raft.log.mark_unpersisted_from(1);
        Ok(node)
    }

    /// Forgets the known leader so this follower can vote at once (see etcd's ForgetLeader).
    pub fn forget_leader(&mut self) {
        self.raft.forget_leader();
    }

    /// A node restarted from its durable state.
    pub fn restart(config: Config, state: RestartState) -> Result<RawNode, Error> {
        let raft = Raft::new(config, state.hard_state, state.snapshot, state.entries, state.applied)?;
        Ok(RawNode { prev_soft_state: raft.soft_state(), prev_hard_state: raft.hard_state(), raft, outstanding: None })
    }

    /// The state machine, for inspection.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Takes a reading of the wall clock (ms since the Unix epoch) for the stamps of the
    /// entries this node appends as leader ([`crate::hlc`]). The core reads no clock: the
    /// driver passes it in, as it passes ticks.
    pub fn observe_wall_clock(&mut self, ms: u64) {
        self.raft.observe_wall_clock(ms);
    }

    /// Takes in a stamp known to be in the past (the state machine's newest, at a restart
    /// from a snapshot that left no entries): later stamps come after it.
    pub fn witness_stamp(&mut self, stamp: u64) {
        self.raft.witness_stamp(stamp);
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        self.raft.step(message)
    }

    /// Proposes one command. Returns its log index.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Index, Error> {
        self.raft.propose(vec![data])
    }

    /// Proposes many commands at once; they travel in one append. Returns the last index.
    pub fn propose_batch(&mut self, batch: Vec<Vec<u8>>) -> Result<Index, Error> {
        self.raft.propose(batch)
    }

    /// Proposes a membership change.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, Error> {
        self.raft.propose_conf_change(change)
    }

    /// Requests a linearizable read index; the answer comes back as a `ReadState` with `context`.
    pub fn read_index(&mut self, context: ReadContext) -> Result<(), Error> {
        self.raft.read_index(context)
    }

    /// Asks the leader to hand leadership to `target`.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        self.raft.transfer_leader(target)
    }

    /// Drops the log up to `index` (≤ applied) after the caller snapshotted its state there.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) -> Result<(), Error> {
        self.raft.compact(index, data)
    }

    /// Drops the image held with the latest snapshot (its metadata stays). For an application
    /// whose state machine is durable on its own and builds the image when one is sent: the
    /// snapshot messages this node sends then carry empty data for the application to fill.
    pub fn forget_snapshot_data(&mut self) {
        self.raft.snapshot.data = Vec::new();
    }

    /// Reports whether a snapshot sent to `to` arrived.
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        self.raft.report_snapshot(to, delivered);
    }

    /// Reports that `to` could not be reached.
    pub fn report_unreachable(&mut self, to: NodeId) {
        self.raft.report_unreachable(to);
    }

    /// Takes the messages that need no persistence (heartbeats and their answers, a leader's
    /// appends, read-index traffic) while a `Ready` is outstanding, so a slow disk does not hold
    /// them back. Messages that must wait for persistence stay for the next `Ready`. `now` is a
    /// reading of the driver's clock taken for this call (see [`Monotonic`]).
    pub fn take_messages(&mut self, now: Monotonic) -> Vec<Message> {
        self.raft.flush(now);
        std::mem::take(&mut self.raft.messages)
    }

    /// True if a `Ready` is waiting (and none is outstanding).
    pub fn has_ready(&mut self) -> bool {
        if self.outstanding.is_some() {
            return false;
        }
        self.raft.flush_broadcast();
        let raft = &self.raft;
        raft.soft_state() != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || raft.log.pending_snapshot().is_some()
            || raft.log.has_unsent_entries()
            || !raft.messages.is_empty()
            || !raft.messages_after_persist.is_empty()
            || raft.log.has_next_committed_entries()
            || !raft.read_states.is_empty()
            || raft.has_lease_reads()
    }

    /// Takes the pending work. `now` is a reading of the driver's clock taken for this call
    /// (see [`Monotonic`]): reads the leader lease may answer are judged against it. Panics if
    /// the previous `Ready` was not advanced, or if `now` is earlier than a reading passed before.
    pub fn ready(&mut self, now: Monotonic) -> Ready {
        assert!(self.outstanding.is_none(), "ready() called before advance() of the previous Ready");
        self.raft.flush(now);
        let raft = &mut self.raft;
        let mut ready = Ready::default();
        let soft = raft.soft_state();
        if soft != self.prev_soft_state {
            ready.soft_state = Some(soft);
            self.prev_soft_state = soft;
        }
        let hard = raft.hard_state();
        assert!(
            hard.term >= self.prev_hard_state.term && hard.commit >= self.prev_hard_state.commit,
            "hard state went back: {:?} after {:?}",
            hard,
            self.prev_hard_state
        );
        if hard != self.prev_hard_state {
            ready.term_or_vote_changed =
                hard.term != self.prev_hard_state.term || hard.vote != self.prev_hard_state.vote;
            ready.hard_state = Some(hard);
            self.prev_hard_state = hard;
        }
        ready.snapshot = raft.log.take_pending_snapshot();
        ready.entries = raft.log.unpersisted_entries();
        raft.log.mark_sent_for_persist();
        if ready.snapshot.is_none() {
            ready.committed_entries = raft.log.next_committed_entries(raft.config.apply_bytes_max);
        }
        ready.messages = std::mem::take(&mut raft.messages);
        ready.messages_after_persist = std::mem::take(&mut raft.messages_after_persist);
        ready.read_states = std::mem::take(&mut raft.read_states);
        let persisted_last = ready
            .entries
            .last()
            .map(|e| (e.index, e.term))
            .or_else(|| ready.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term)));
        self.outstanding = Some(Outstanding {
            persisted_last,
            applied_last: ready.committed_entries.last().map(|e| e.index),
            applied_bytes: ready.committed_entries.iter().map(Entry::size_bytes).sum(),
        });
        ready
    }

    /// Acknowledges the outstanding `Ready`: its entries are durable and its committed entries
    /// applied (or at least handed to the state machine in order).
    pub fn advance(&mut self) {
        let outstanding = self.outstanding.take().expect("advance() without an outstanding Ready");
        if let Some((index, term)) = outstanding.persisted_last {
            self.raft.on_persisted(index, term);
        }
        if let Some(index) = outstanding.applied_last {
            self.raft.on_applied(index, outstanding.applied_bytes);
        }
    }
}

//! # Multi-Paxos as a replica engine
//!
//! The same contract as `ballot-raft`'s `RawNode`: inputs in ([`Replica::tick`],
//! [`Replica::step`], [`Replica::propose`], [`Replica::read_index`]), a [`Ready`] out that the
//! caller carries out in order, [`Replica::advance`] to acknowledge it. The durable state is
//! stored in Raft's shapes so one write-ahead log serves both engines: a
//! [`HardState`]'s `term` is the highest ballot promised and its `commit` the highest slot
//! below which every slot's chosen value is known; an [`Entry`]'s `index` is its slot and its
//! `term` the ballot at which this acceptor accepted it.
//!
//! ## The protocol
//! - **Ballots** are owned by position in the fixed voter list ([`crate::Ballots`]), so two
//!   replicas never propose under one ballot, and `(slot, ballot)` names one value.
//! - **Phase 1, once for every future slot**: a replica whose election timer runs out takes the
//!   next ballot it owns and sends `Prepare { from_slot: commit + 1 }`. An acceptor that has not
//!   promised a higher ballot (and has not heard from a live leader within its election
//!   timeout: a leader lease, so a replica that was cut off cannot depose a working leader on
//!   its return) promises, durably, and reports every accepted `(slot, ballot, value)` from
//!   `from_slot` on. With a phase-1 quorum of promises the replica leads: each slot above its
//!   commit index takes the value of the highest-ballot report ([`crate::pick()`], the rule
//!   the chapter's sketch gets wrong), slots nobody reported below the highest reported one
//!   become no-ops (holes), and all of them are proposed again under the new ballot, followed
//!   by one no-op that marks the start of its reign.
//! - **Phase 2, per slot, pipelined**: the leader sends `Accept` with runs of consecutive slots
//!   (batched, up to a window beyond what each acceptor acknowledged). A value is chosen once a
//!   phase-2 quorum accepted it under the leader's ballot; the leader's commit index is the
//!   highest slot every slot up to which is chosen, and slots are applied in order.
//! - **Acceptors keep a contiguous log**: an acceptor accepts a run only if it starts at most
//!   one past the prefix it already shares with this ballot's leader (refusing is always safe:
//!   it is a lost message), and never forgets an accepted value: overwriting slot `s` leaves
//!   the slots after it in place, and the [`Ready`] re-emits them so a log stored by "replace
//!   from the first entry on" keeps them. (Raft's log matching property lets it truncate
//!   there; Paxos has no such property, and an accepted value that is dropped can unchoose
//!   a chosen one.)
//! - **Chosen values are proposals too**: the leader sends values it knows are chosen (below
//!   its commit index) under its own ballot. That is a legal proposal: every proposal at a
//!   ballot above the one that chose a value carries that value.
//! - **Liveness**: randomized election timeouts (the dueling proposers of the chapter back off
//!   by different amounts), a candidate that meets a higher ballot stands down, and a leader
//!   that has not heard from a phase-2 quorum within an election timeout steps down
//!   (check-quorum).
//! - **Reads** (ReadIndex): the leader records its commit index, once it has committed the
//!   no-op of its reign, and confirms with a heartbeat round answered by a phase-2 quorum: a
//!   leader with a higher ballot needs promises from a phase-1 quorum, which meets every
//!   phase-2 quorum, so none had finished phase 1 when the read began.
//! - **Snapshots**: the caller compacts applied slots into a snapshot; an acceptor behind a
//!   leader's compaction point, or a candidate behind an acceptor's, is sent the snapshot (it
//!   holds only chosen values, so anyone may send it). Slots after a snapshot stay accepted.
//! - **Flexible quorums** (Howard et al.): phase-1 and phase-2 quorum sizes may be any pair
//!   that intersect (`q1 + q2 > n`).
//!
//! Membership is fixed: the voter list is configuration, not log state.

mod log;
mod replica;
#[cfg(test)]
mod tests;

pub use replica::Replica;

use ballot_raft::{Entry, HardState, Index, NodeId, ReadContext, ReadState, Snapshot, SoftState};

use crate::{Ballot, Pick};

/// How a replica is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica.
    pub id: NodeId,
    /// Every voter, this one included; ballots are owned by position in the sorted list.
    pub voters: Vec<NodeId>,
    /// Ticks without a leader's word before campaigning (randomized in `[e, 2e)`).
    pub election_tick: u32,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: u32,
    /// Seed of the replica's randomness (election timeouts).
    pub seed: u64,
    /// Promises a candidate needs (0: a majority).
    pub phase1_quorum: usize,
    /// Acceptances that choose a value (0: a majority).
    pub phase2_quorum: usize,
    /// Most slots in one `Accept`.
    pub max_batch: usize,
    /// Most slots sent to an acceptor beyond what it acknowledged.
    pub max_inflight: u64,
    /// How a new leader picks each slot's value ([`Pick::HighestBallot`] outside tests).
    pub pick: Pick,
}

impl Config {
    /// Defaults for replica `id` of `voters`.
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Config {
        Config {
            id,
            voters: voters.into_iter().collect(),
            election_tick: 10,
            heartbeat_tick: 1,
            seed: id,
            phase1_quorum: 0,
            phase2_quorum: 0,
            max_batch: 64,
            max_inflight: 1024,
            pick: Pick::HighestBallot,
        }
    }

    /// The (phase 1, phase 2) quorum sizes.
    pub fn quorums(&self) -> (usize, usize) {
        let majority = self.voters.len() / 2 + 1;
        let or_majority = |q: usize| if q == 0 { majority } else { q };
        (or_majority(self.phase1_quorum), or_majority(self.phase2_quorum))
    }

    /// Checks the values against each other.
    pub fn validate(&self) -> Result<(), ballot_raft::Error> {
        let invalid = |why: String| Err(ballot_raft::Error::InvalidConfig(why));
        let mut voters = self.voters.clone();
        voters.sort_unstable();
        voters.dedup();
        if voters.len() != self.voters.len() || voters.contains(&ballot_raft::NO_NODE) {
            return invalid(format!("voters must be distinct and non-zero: {:?}", self.voters));
        }
        if !voters.contains(&self.id) {
            return invalid(format!("replica {} is not among the voters {voters:?}", self.id));
        }
        let n = voters.len();
        let (q1, q2) = self.quorums();
        if q1 > n || q2 > n || q1 + q2 <= n {
            return invalid(format!(
                "quorums {q1} (phase 1) and {q2} (phase 2) of {n} must be at most {n} and intersect"
            ));
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return invalid("election_tick must exceed heartbeat_tick > 0".into());
        }
        if self.max_batch == 0 || self.max_inflight == 0 {
            return invalid("max_batch and max_inflight must be positive".into());
        }
        Ok(())
    }
}

/// A message between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The ballot the message belongs to.
    pub ballot: Ballot,
    /// What it says.
    pub body: Body,
}

/// The kinds of message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Phase 1a: promise `ballot` and report what you accepted from `from_slot` on.
    Prepare {
        /// The first slot the candidate does not know to be chosen.
        from_slot: Index,
    },
    /// Phase 1b: a promise of `ballot`.
    Promise {
        /// The acceptor's commit index.
        commit: Index,
        /// The acceptor's snapshot index: slots up to it are compacted, so not reported. A
        /// promise whose `compacted` reaches the candidate's `from_slot` cannot be used; the
        /// acceptor sends its snapshot along.
        compacted: Index,
        /// Accepted values from `from_slot` on: `index` the slot, `term` the ballot.
        entries: Vec<Entry>,
    },
    /// `ballot` is refused: the receiver promised `promised`, higher.
    Nack {
        /// The receiver's promised ballot.
        promised: Ballot,
    },
    /// Phase 2a for a run of consecutive slots.
    Accept {
        /// The values, each labelled with `ballot`.
        entries: Vec<Entry>,
        /// The leader's commit index, capped at what it knows the receiver holds.
        commit: Index,
    },
    /// Phase 2b: every slot up to `through` holds this ballot's leader's value.
    Accepted {
        /// The end of the prefix shared with the leader.
        through: Index,
    },
    /// An `Accept` that would leave a gap: resend from `through + 1`.
    Refused {
        /// The end of the prefix shared with the leader.
        through: Index,
    },
    /// The leader is alive; `round` numbers a read confirmation.
    Heartbeat {
        /// The leader's commit index, capped at what it knows the receiver holds.
        commit: Index,
        /// The confirmation round.
        round: u64,
    },
    /// Answer to a heartbeat.
    HeartbeatAck {
        /// The heartbeat's round.
        round: u64,
        /// The end of the prefix shared with the leader.
        through: Index,
    },
    /// Chosen state up to its index.
    Snapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// A replica forwards its clients' proposals to the leader.
    Propose {
        /// The payloads, in order.
        entries: Vec<Vec<u8>>,
    },
    /// A replica asks the leader for a read index.
    ReadIndex {
        /// The replica's context, echoed back.
        context: ReadContext,
    },
    /// The leader's answer to [`Body::ReadIndex`].
    ReadIndexResponse {
        /// The replica's context.
        context: ReadContext,
        /// The index the read must wait for.
        index: Index,
    },
}

impl Body {
    /// A short name for traces and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Body::Prepare { .. } => "Prepare",
            Body::Promise { .. } => "Promise",
            Body::Nack { .. } => "Nack",
            Body::Accept { .. } => "Accept",
            Body::Accepted { .. } => "Accepted",
            Body::Refused { .. } => "Refused",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatAck { .. } => "HeartbeatAck",
            Body::Snapshot { .. } => "Snapshot",
            Body::Propose { .. } => "Propose",
            Body::ReadIndex { .. } => "ReadIndex",
            Body::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}

/// Everything the caller must do, in this order: send `messages`; persist `snapshot`,
/// `entries` (replacing every stored entry at or after the first one's index) and
/// `hard_state`, and sync if [`Ready::must_sync`]; only then send `messages_after_persist`
/// (promises and acceptances are promises of durability); install the snapshot, apply
/// `committed_entries` in order and serve `read_states` once applied reaches theirs; call
/// [`Replica::advance`].
#[derive(Debug, Default)]
pub struct Ready {
    /// Leader or role changed.
    pub soft_state: Option<SoftState>,
    /// Promised ballot or commit index changed.
    pub hard_state: Option<HardState>,
    /// A snapshot to persist and install before anything is applied.
    pub snapshot: Option<Snapshot>,
    /// Entries to persist; stored entries from `entries[0].index` on are replaced.
    pub entries: Vec<Entry>,
    /// Messages that may leave at once.
    pub messages: Vec<Message>,
    /// Messages that may leave only once everything above is durable.
    pub messages_after_persist: Vec<Message>,
    /// Chosen entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed read indexes.
    pub read_states: Vec<ReadState>,
    /// The promised ballot changed (not only the commit index).
    promised_changed: bool,
}

impl Ready {
    /// True if something must be synced before `messages_after_persist` leave: entries, a
    /// snapshot or a new promise. A commit index alone need not be (as in Raft: it is a hint
    /// the leader repeats).
    pub fn must_sync(&self) -> bool {
        self.promised_changed || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

/// Durable state a replica restarts from.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Last persisted hard state (`term`: promised ballot).
    pub hard_state: HardState,
    /// Latest snapshot.
    pub snapshot: Snapshot,
    /// Entries after the snapshot, in order, contiguous.
    pub entries: Vec<Entry>,
    /// Highest slot already applied to a durable state machine.
    pub applied: Index,
}

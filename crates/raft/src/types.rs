//! The data Raft exchanges and persists: entries, hard state, snapshots, messages.

use std::collections::BTreeSet;

/// A member's identity. Zero means "none" and is never a valid member.
pub type NodeId = u64;
/// A Raft term (§5.1). Terms only grow.
pub type Term = u64;
/// A position in the log; the first entry has index 1.
pub type Index = u64;

/// Marker for "no node" in `vote` and `leader` fields.
pub const NO_NODE: NodeId = 0;

/// A reading of the driver's monotonic clock: nanoseconds from an origin the driver fixes for
/// the life of the node. The core reads no clock; it measures real time (only the leader lease)
/// against readings the driver passes to [`crate::RawNode::ready`] and
/// [`crate::RawNode::take_messages`], each taken at the call, never earlier. The clock must
/// keep running while the process is stopped or the machine sleeps (a suspended leader whose
/// clock stood still would think its lease still held), and readings never go back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Monotonic(u64);

impl Monotonic {
    /// The reading `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Monotonic {
        Monotonic(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// This reading plus `nanos` (saturating).
    pub const fn plus_nanos(self, nanos: u64) -> Monotonic {
        Monotonic(self.0.saturating_add(nanos))
    }
}

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Application data, opaque to Raft. Empty data is the no-op a new leader appends.
    Normal,
    /// An encoded [`ConfChange`]; Raft applies it itself when the entry is handed out to apply.
    ConfChange,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position in the log.
    pub index: Index,
    /// Normal data or a membership change.
    pub kind: EntryKind,
    /// Payload (application command or encoded conf change).
    pub data: Vec<u8>,
    /// The leader's hybrid-logical-clock stamp ([`crate::hlc`]): strictly increasing along the
    /// log; 0 for entries written before stamps existed.
    pub stamp: u64,
}

impl Entry {
    /// Bytes this entry counts for in size limits (payload plus a fixed header).
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// State that must be on stable storage before messages that depend on it are sent (§5, Figure 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Latest term this server has seen.
    pub term: Term,
    /// Candidate voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// Highest index known committed. Persisted so a restart need not re-learn it.
    pub commit: Index,
}

/// The membership as of some log position: voters (one set, or two during joint consensus) and learners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    /// Voters of the incoming (or only) configuration.
    pub voters: BTreeSet<NodeId>,
    /// Voters of the outgoing configuration; non-empty only in a joint configuration.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Non-voting members that receive the log.
    pub learners: BTreeSet<NodeId>,
    /// Nodes that become learners when the joint configuration is left (demoted voters still
    /// vote in the outgoing configuration until then).
    pub learners_next: BTreeSet<NodeId>,
}

impl ConfState {
    /// A plain configuration with the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState { voters: voters.into_iter().collect(), ..ConfState::default() }
    }

    /// True while in a joint configuration (C_old,new).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Every node that takes part in replication, voter or learner.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.voters.iter().copied().collect();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all.extend(self.learners_next.iter().copied());
        all
    }

    /// True if the node votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeStep {
    /// Add a voter, or promote a learner to voter.
    AddVoter(NodeId),
    /// Add a learner, or demote a voter to learner.
    AddLearner(NodeId),
    /// Remove a node entirely.
    Remove(NodeId),
    /// Recovery after a majority was lost for good: the configuration becomes this one voter
    /// alone, whatever it was (joint or not). Never proposed: only written into a survivor's
    /// own log, as a committed entry, by an operator's forced restart (etcd's
    /// `--force-new-cluster`); see [`crate::RestartState::force_alone`].
    ForceAlone(NodeId),
}

/// A membership change. Any non-empty change runs through joint consensus (§6 of the Raft
/// thesis): the leader enters C_old,new and, once that is applied, proposes the empty change
/// that leaves it. The empty change is only valid in a joint configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfChange {
    /// The steps, all applied at once.
    pub steps: Vec<ConfChangeStep>,
    /// Opaque to Raft: what the application records with the change (e.g. the new member's
    /// address), handed back with the committed entry.
    pub context: Vec<u8>,
}

impl ConfChange {
    /// Encodes the change as entry data: one tag byte and a big-endian id per step, then, if
    /// there is a context, tag 4, its big-endian length (8 bytes) and the context.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.steps.len() * 9 + self.context.len() + 9);
        for step in &self.steps {
            let (tag, id) = match *step {
                ConfChangeStep::AddVoter(id) => (1u8, id),
                ConfChangeStep::AddLearner(id) => (2u8, id),
                ConfChangeStep::Remove(id) => (3u8, id),
                ConfChangeStep::ForceAlone(id) => (5u8, id),
            };
            out.push(tag);
            out.extend_from_slice(&id.to_be_bytes());
        }
        if !self.context.is_empty() {
            out.push(4);
            out.extend_from_slice(&(self.context.len() as u64).to_be_bytes());
            out.extend_from_slice(&self.context);
        }
        out
    }

    /// Decodes entry data written by [`ConfChange::encode`].
    pub fn decode(mut data: &[u8]) -> Result<ConfChange, crate::Error> {
        let mut change = ConfChange::default();
        while let Some((&tag, rest)) = data.split_first() {
            let word: [u8; 8] =
                rest.get(..8).and_then(|w| w.try_into().ok()).ok_or(crate::Error::MalformedConfChange)?;
            let value = u64::from_be_bytes(word);
            data = &rest[8..];
            if tag == 4 {
                let len = usize::try_from(value).map_err(|_| crate::Error::MalformedConfChange)?;
                if len == 0 || len != data.len() {
                    return Err(crate::Error::MalformedConfChange);
                }
                change.context = data.to_vec();
                break;
            }
            if value == NO_NODE {
                return Err(crate::Error::MalformedConfChange);
            }
            change.steps.push(match tag {
                1 => ConfChangeStep::AddVoter(value),
                2 => ConfChangeStep::AddLearner(value),
                3 => ConfChangeStep::Remove(value),
                5 => ConfChangeStep::ForceAlone(value),
                _ => return Err(crate::Error::MalformedConfChange),
            });
        }
        Ok(change)
    }
}

/// Where a snapshot sits in the log and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// Last log index the snapshot covers.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// Membership as of `index`.
    pub conf_state: ConfState,
}

/// A state-machine image at `meta.index`, opaque to Raft.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// The application's serialized state.
    pub data: Vec<u8>,
}

/// A message between Raft nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Sender's term (for pre-vote requests: the term the sender would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// Identifies one ReadIndex request; chosen by the caller of `read_index`.
pub type ReadContext = Vec<u8>;

/// The kinds of Raft message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote (§5.2), or its pre-vote probe (thesis §9.6) when `pre_vote` is set.
    Vote {
        /// Pre-vote: ask "would you vote for me", changing no state.
        pre_vote: bool,
        /// Index of the candidate's last entry.
        last_index: Index,
        /// Term of the candidate's last entry.
        last_term: Term,
        /// Set when a leader transfer asked for this election: voters skip their leader lease.
        leader_transfer: bool,
    },
    /// Answer to [`MessageBody::Vote`].
    VoteResponse {
        /// Answer to a pre-vote.
        pre_vote: bool,
        /// True if the vote is refused.
        reject: bool,
    },
    /// AppendEntries (§5.3).
    Append {
        /// Index of the entry before `entries`.
        prev_index: Index,
        /// Term of that entry.
        prev_term: Term,
        /// New entries, in order.
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: Index,
    },
    /// Answer to [`MessageBody::Append`] or [`MessageBody::InstallSnapshot`].
    AppendResponse {
        /// True if the follower's log did not match at the probed index.
        reject: bool,
        /// On success: the follower's last index matching the leader. On reject: the rejected prev_index.
        index: Index,
        /// On reject: where the leader should probe next (index, term), so it skips a whole
        /// conflicting term in one round trip.
        hint_index: Index,
        /// Term of the follower's entry at `hint_index` (0 if none).
        hint_term: Term,
    },
    /// Leader's periodic heartbeat; `round` identifies a ReadIndex / lease confirmation round.
    Heartbeat {
        /// min(leader commit, follower match): never tells a follower to commit what it lacks.
        commit: Index,
        /// The confirmation round this heartbeat belongs to.
        round: u64,
        /// The leader's wall clock when it sent the heartbeat (ms since the epoch; 0: unknown),
        /// from which followers estimate their offset from the leader.
        clock_ms: u64,
    },
    /// Answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// Echo of the heartbeat's round.
        round: u64,
    },
    /// InstallSnapshot (§7).
    InstallSnapshot {
        /// The snapshot to install.
        snapshot: Snapshot,
    },
    /// A follower asks the leader for a read index on behalf of its client.
    ReadIndex {
        /// The follower's context, echoed back.
        context: ReadContext,
    },
    /// Leader's answer to [`MessageBody::ReadIndex`].
    ReadIndexResponse {
        /// The follower's context.
        context: ReadContext,
        /// The commit index the read must wait for.
        index: Index,
    },
    /// Leader transfer: start an election now (thesis §3.10).
    TimeoutNow,
    /// A follower hands its clients' proposals to the leader, which appends them as its own
    /// (or drops them: the proposer learns the outcome only by applying the log).
    Propose {
        /// The proposals' payloads, in order.
        entries: Vec<Vec<u8>>,
    },
}

impl MessageBody {
    /// A short name for traces and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            MessageBody::Vote { pre_vote: true, .. } => "PreVote",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::Propose { .. } => "Propose",
        }
    }
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes; term not yet bumped.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads the current term.
    Leader,
}

/// Volatile state worth reporting when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The known leader, or [`NO_NODE`].
    pub leader: NodeId,
    /// This node's role.
    pub role: Role,
}

/// A completed ReadIndex request: the read may be served once `applied >= index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// Commit index at the time leadership was confirmed.
    pub index: Index,
    /// The caller's context from `read_index`.
    pub context: ReadContext,
}

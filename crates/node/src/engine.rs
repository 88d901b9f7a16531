//! The consensus engine behind a replica: Raft ([`RawNode`]) or Multi-Paxos
//! ([`multi::Replica`]), one contract for both.
//!
//! Both engines take ticks, messages, proposals and read requests, and hand out a ready (state
//! to persist, messages, chosen entries to apply, confirmed reads) that the replica carries out
//! in order before acknowledging it. Both keep their durable state in Raft's shapes (a hard
//! state, entries, snapshots), so the write-ahead log, the store and the drivers do not know
//! which engine runs. What only one engine has stays behind [`Engine::raft`]: membership
//! changes, leader transfers, per-follower progress and the clock offsets Raft's heartbeats
//! carry. Multi-Paxos runs a fixed voter list; asking it for a membership change or a transfer
//! gets [`ballot_raft::Error::Unsupported`] with the reason.

use std::fmt;

use ballot_paxos::multi;
use ballot_raft::hlc::Hlc;
use ballot_raft::{
    ConfChange, ConfChangeStep, ConfState, Config, Entry, EntryKind, Error, HardState, Index, Message, MessageBody,
    Monotonic, NodeId, Raft, RawNode, ReadContext, ReadState, RestartState, Role, Snapshot, SnapshotMeta, SoftState,
};

/// Which consensus protocol a cluster runs; fixed when the cluster is founded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consensus {
    /// Raft (the default): membership changes, leader transfers, lease reads.
    #[default]
    Raft,
    /// Multi-Paxos on a fixed voter list, with phase-1 and phase-2 quorum sizes (0: a
    /// majority; flexible quorums need only intersect).
    Paxos {
        /// Promises a candidate needs.
        phase1: usize,
        /// Acceptances that choose a value.
        phase2: usize,
    },
}

impl Consensus {
    /// Parses `raft`, `paxos`, or `paxos:Q1/Q2` (flexible quorums, e.g. `paxos:4/2` on five).
    pub fn parse(text: &str) -> Result<Consensus, String> {
        let text = text.trim();
        if text == "raft" {
            return Ok(Consensus::Raft);
        }
        if text == "paxos" {
            return Ok(Consensus::Paxos { phase1: 0, phase2: 0 });
        }
        let quorums = text.strip_prefix("paxos:").and_then(|q| q.split_once('/'));
        if let Some((q1, q2)) = quorums {
            if let (Ok(phase1), Ok(phase2)) = (q1.parse(), q2.parse()) {
                return Ok(Consensus::Paxos { phase1, phase2 });
            }
        }
        Err(format!("unknown consensus engine '{text}' (known: raft, paxos, paxos:Q1/Q2)"))
    }
}

impl fmt::Display for Consensus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consensus::Raft => write!(f, "raft"),
            Consensus::Paxos { phase1: 0, phase2: 0 } => write!(f, "paxos"),
            Consensus::Paxos { phase1, phase2 } => write!(f, "paxos:{phase1}/{phase2}"),
        }
    }
}

/// A message between replicas, of either engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// Raft's.
    Raft(Message),
    /// Multi-Paxos's.
    Paxos(multi::Message),
}

impl PeerMessage {
    /// Sender.
    pub fn from(&self) -> NodeId {
        match self {
            PeerMessage::Raft(m) => m.from,
            PeerMessage::Paxos(m) => m.from,
        }
    }

    /// Addressee.
    pub fn to(&self) -> NodeId {
        match self {
            PeerMessage::Raft(m) => m.to,
            PeerMessage::Paxos(m) => m.to,
        }
    }

    /// The sender's Raft term, or the ballot a Multi-Paxos message belongs to.
    pub fn term(&self) -> u64 {
        match self {
            PeerMessage::Raft(m) => m.term,
            PeerMessage::Paxos(m) => m.ballot,
        }
    }

    /// A short name of its kind, for traces and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            PeerMessage::Raft(m) => m.body.kind_name(),
            PeerMessage::Paxos(m) => m.body.kind_name(),
        }
    }

    /// The snapshot it carries, if it is one (sent on a stream of its own, its image built
    /// when empty).
    pub fn snapshot_mut(&mut self) -> Option<&mut Snapshot> {
        match self {
            PeerMessage::Raft(Message { body: MessageBody::InstallSnapshot { snapshot }, .. }) => Some(snapshot),
            PeerMessage::Paxos(multi::Message { body: multi::Body::Snapshot { snapshot }, .. }) => Some(snapshot),
            _ => None,
        }
    }

    /// The round of a leader's heartbeat (for round-trip times).
    pub fn heartbeat_round(&self) -> Option<u64> {
        match self {
            PeerMessage::Raft(Message { body: MessageBody::Heartbeat { round, .. }, .. }) => Some(*round),
            PeerMessage::Paxos(multi::Message { body: multi::Body::Heartbeat { round, .. }, .. }) => Some(*round),
            _ => None,
        }
    }

    /// The round of a heartbeat this message answers.
    pub fn heartbeat_answer_round(&self) -> Option<u64> {
        match self {
            PeerMessage::Raft(Message { body: MessageBody::HeartbeatResponse { round }, .. }) => Some(*round),
            PeerMessage::Paxos(multi::Message { body: multi::Body::HeartbeatAck { round, .. }, .. }) => Some(*round),
            _ => None,
        }
    }

    /// True if it carries a snapshot.
    pub fn is_snapshot(&self) -> bool {
        matches!(
            self,
            PeerMessage::Raft(Message { body: MessageBody::InstallSnapshot { .. }, .. })
                | PeerMessage::Paxos(multi::Message { body: multi::Body::Snapshot { .. }, .. })
        )
    }

    /// True if it forwards client proposals (a delivery the simulator ties to the sender's
    /// incarnation).
    pub fn is_proposal(&self) -> bool {
        matches!(
            self,
            PeerMessage::Raft(Message { body: MessageBody::Propose { .. }, .. })
                | PeerMessage::Paxos(multi::Message { body: multi::Body::Propose { .. }, .. })
        )
    }
}

impl From<Message> for PeerMessage {
    fn from(message: Message) -> Self {
        PeerMessage::Raft(message)
    }
}

impl From<multi::Message> for PeerMessage {
    fn from(message: multi::Message) -> Self {
        PeerMessage::Paxos(message)
    }
}

/// What a replica must do, in order (the engines' readies, one shape; see
/// [`ballot_raft::Ready`]).
#[derive(Debug, Default)]
pub struct EngineReady {
    /// Leader or role changed.
    pub soft_state: Option<SoftState>,
    /// Durable state to write.
    pub hard_state: Option<HardState>,
    /// A snapshot to persist and install before applying anything else.
    pub snapshot: Option<Snapshot>,
    /// Entries to persist; stored entries from `entries[0].index` on are replaced.
    pub entries: Vec<Entry>,
    /// Messages that may leave at once.
    pub messages: Vec<PeerMessage>,
    /// Messages that may leave only once everything above is durable.
    pub messages_after_persist: Vec<PeerMessage>,
    /// Entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed read indexes.
    pub read_states: Vec<ReadState>,
    /// The write must be synced before `messages_after_persist` leave.
    pub must_sync: bool,
}

fn wrap<M: Into<PeerMessage>>(messages: Vec<M>) -> Vec<PeerMessage> {
    messages.into_iter().map(Into::into).collect()
}

/// The engine of one replica.
// One engine per replica, made once and never moved: the size difference costs nothing, and
// boxing would put an indirection on every call into either engine.
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    /// Raft.
    Raft(RawNode),
    /// Multi-Paxos, with its voters as a configuration (fixed).
    Paxos(multi::Replica, ConfState),
}

/// A Multi-Paxos replica's configuration from Raft's (ticks, seed) and the voters.
fn paxos_config(phase1: usize, phase2: usize, config: &Config, voters: &ConfState) -> multi::Config {
    let mut paxos = multi::Config::new(config.id, voters.voters.iter().copied());
    paxos.election_tick = config.election_ticks;
    paxos.heartbeat_tick = config.heartbeat_ticks;
    paxos.seed = config.seed;
    paxos.phase1_quorum = phase1;
    paxos.phase2_quorum = phase2;
    paxos
}

/// The reason Multi-Paxos gives for what it does not do.
fn paxos_unsupported(what: &str) -> Error {
    Error::Unsupported(format!(
        "{what} is not supported with --consensus paxos: the Multi-Paxos engine runs a fixed membership \
         and replaces a leader only by an election"
    ))
}

impl Engine {
    /// A brand-new engine: `initial` holds the founding voters (empty for a Raft member that
    /// joins an existing cluster; Paxos has no joining members). `context` rides in Raft's
    /// first membership entry.
    pub fn new(consensus: Consensus, config: Config, initial: ConfState, context: Vec<u8>) -> Result<Engine, Error> {
        match consensus {
            Consensus::Raft => Ok(Engine::Raft(RawNode::new_with_context(config, initial, context)?)),
            Consensus::Paxos { phase1, phase2 } => {
                if initial.voters.is_empty() {
                    return Err(paxos_unsupported("joining a running cluster"));
                }
                // Slot 1 holds the founding configuration in Raft's bootstrap form, so the
                // member table fills from `context` as it does under Raft.
                let steps = initial.voters.iter().map(|id| ConfChangeStep::AddVoter(*id)).collect();
                let data = ConfChange { steps, context }.encode();
                let genesis = Entry { term: 0, index: 1, kind: EntryKind::ConfChange, data, stamp: 0 };
                let replica = multi::Replica::bootstrap(paxos_config(phase1, phase2, &config, &initial), genesis)?;
                Ok(Engine::Paxos(replica, initial))
            }
        }
    }

    /// An engine restarted from its durable state; `voters` is Paxos's fixed configuration
    /// (Raft reads its own from the log).
    pub fn restart(
        consensus: Consensus,
        config: Config,
        voters: &ConfState,
        state: RestartState,
    ) -> Result<Engine, Error> {
        match consensus {
            Consensus::Raft => Ok(Engine::Raft(RawNode::restart(config, state)?)),
            Consensus::Paxos { phase1, phase2 } => {
                let paxos = paxos_config(phase1, phase2, &config, voters);
                let state = multi::RestartState {
                    hard_state: state.hard_state,
                    snapshot: state.snapshot,
                    entries: state.entries,
                    applied: state.applied,
                };
                let replica = multi::Replica::restart(paxos, state)?;
                let conf = ConfState::with_voters(replica.voters().iter().copied());
                Ok(Engine::Paxos(replica, conf))
            }
        }
    }

    /// Which engine this is.
    pub fn consensus_name(&self) -> &'static str {
        match self {
            Engine::Raft(_) => "raft",
            Engine::Paxos(..) => "paxos",
        }
    }

    /// Raft's own state, for what only Raft has (progress, membership, transfers); `None`
    /// under Multi-Paxos.
    pub fn raft(&self) -> Option<&Raft> {
        match self {
            Engine::Raft(node) => Some(node.raft()),
            Engine::Paxos(..) => None,
        }
    }

    /// Switches the chapter's bug into a Multi-Paxos engine: a new leader takes each slot's
    /// first reported value, not the highest ballot's (does nothing to Raft).
    #[cfg(feature = "fault-injection")]
    pub fn inject_paxos_first_reported(&mut self) {
        if let Engine::Paxos(replica, _) = self {
            replica.set_pick(ballot_paxos::Pick::FirstReported);
        }
    }

    /// One tick of time.
    pub fn tick(&mut self) {
        match self {
            Engine::Raft(node) => node.tick(),
            Engine::Paxos(replica, _) => replica.tick(),
        }
    }

    /// Takes one message from a peer; a message of the other engine is refused.
    pub fn step(&mut self, message: PeerMessage) -> Result<(), Error> {
        match (self, message) {
            (Engine::Raft(node), PeerMessage::Raft(message)) => node.step(message),
            (Engine::Paxos(replica, _), PeerMessage::Paxos(message)) => replica.step(message),
            (engine, message) => Err(Error::Unsupported(format!(
                "a {} message from {} reached a member running {}",
                message.kind_name(),
                message.from(),
                engine.consensus_name()
            ))),
        }
    }

    /// Proposes `data`.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), Error> {
        match self {
            Engine::Raft(node) => node.propose(data).map(|_| ()),
            Engine::Paxos(replica, _) => replica.propose(data),
        }
    }

    /// Asks for a read index, answered in a ready's `read_states` under `context`.
    pub fn read_index(&mut self, context: ReadContext) -> Result<(), Error> {
        match self {
            Engine::Raft(node) => node.read_index(context),
            Engine::Paxos(replica, _) => replica.read_index(context),
        }
    }

    /// Proposes a membership change (Raft only).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, Error> {
        match self {
            Engine::Raft(node) => node.propose_conf_change(change),
            Engine::Paxos(..) => Err(paxos_unsupported("a membership change")),
        }
    }

    /// Hands leadership to `target` (Raft only).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        match self {
            Engine::Raft(node) => node.transfer_leader(target),
            Engine::Paxos(..) => Err(paxos_unsupported("moving the leader")),
        }
    }

    /// Ok under Raft; under Multi-Paxos, the error that says `what` is not supported.
    pub fn check_raft(&self, what: &str) -> Result<(), Error> {
        match self {
            Engine::Raft(_) => Ok(()),
            Engine::Paxos(..) => Err(paxos_unsupported(what)),
        }
    }

    /// The transport could not reach `to` (Raft slows its appends; Paxos needs nothing).
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Engine::Raft(node) = self {
            node.report_unreachable(to);
        }
    }

    /// A snapshot to `to` was delivered or failed.
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        if let Engine::Raft(node) = self {
            node.report_snapshot(to, delivered);
        }
    }

    /// A reading of the wall clock for the next stamps.
    pub fn observe_wall_clock(&mut self, ms: u64) {
        match self {
            Engine::Raft(node) => node.observe_wall_clock(ms),
            Engine::Paxos(replica, _) => replica.observe_wall_clock(ms),
        }
    }

    /// A stamp known to be in the past (the store's newest).
    pub fn witness_stamp(&mut self, stamp: u64) {
        match self {
            Engine::Raft(node) => node.witness_stamp(stamp),
            Engine::Paxos(replica, _) => replica.witness_stamp(stamp),
        }
    }

    /// The hybrid logical clock that stamps new entries.
    pub fn hlc(&self) -> Hlc {
        match self {
            Engine::Raft(node) => node.raft().hlc(),
            Engine::Paxos(replica, _) => replica.hlc(),
        }
    }

    /// This member's estimate of its clock's offset from the leader's, ms (Raft's heartbeats
    /// carry the leader's clock; Multi-Paxos's do not).
    pub fn clock_offset_ms(&self) -> Option<i64> {
        match self {
            Engine::Raft(node) => node.raft().clock_offset_ms(),
            Engine::Paxos(..) => None,
        }
    }

    /// Leader and role.
    pub fn soft_state(&self) -> SoftState {
        match self {
            Engine::Raft(node) => node.raft().soft_state(),
            Engine::Paxos(replica, _) => replica.soft_state(),
        }
    }

    /// This member's role.
    pub fn role(&self) -> Role {
        self.soft_state().role
    }

    /// True if this member leads.
    pub fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }

    /// Raft's term, or the ballot Multi-Paxos promised: both only grow, and a new leader
    /// always has a higher one.
    pub fn term(&self) -> u64 {
        match self {
            Engine::Raft(node) => node.raft().term(),
            Engine::Paxos(replica, _) => replica.promised(),
        }
    }

    /// The commit index.
    pub fn committed(&self) -> Index {
        match self {
            Engine::Raft(node) => node.raft().log().committed(),
            Engine::Paxos(replica, _) => replica.commit(),
        }
    }

    /// The configuration in force.
    pub fn conf_state(&self) -> &ConfState {
        match self {
            Engine::Raft(node) => node.raft().conf_state(),
            Engine::Paxos(_, conf) => conf,
        }
    }

    /// The configuration of the last committed membership entry.
    pub fn committed_conf_state(&self) -> &ConfState {
        match self {
            Engine::Raft(node) => node.raft().committed_conf_state(),
            Engine::Paxos(_, conf) => conf,
        }
    }

    /// The latest snapshot's metadata.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        match self {
            Engine::Raft(node) => &node.raft().snapshot().meta,
            Engine::Paxos(replica, _) => replica.snapshot_meta(),
        }
    }

    /// The last applied index the engine knows of.
    pub fn applied(&self) -> Index {
        match self {
            Engine::Raft(node) => node.raft().log().applied(),
            Engine::Paxos(replica, _) => replica.applied(),
        }
    }

    /// The highest index that may be compacted: applied and durable in the log. (A Paxos
    /// replica applies only slots its replica has handed out to persist, and the replica
    /// syncs a ready's entries before applying them.)
    pub fn compactable(&self) -> Index {
        match self {
            Engine::Raft(node) => node.raft().log().persisted().min(node.raft().log().applied()),
            Engine::Paxos(replica, _) => replica.applied(),
        }
    }

    /// Entries `from..to` (end exclusive) still in the log.
    pub fn entries(&self, from: Index, to: Index) -> Vec<Entry> {
        match self {
            Engine::Raft(node) => node.raft().log().slice(from, to, u64::MAX),
            Engine::Paxos(replica, _) => replica.entries(from, to.saturating_sub(1)),
        }
    }

    /// True if a ready has something in it.
    pub fn has_ready(&mut self) -> bool {
        match self {
            Engine::Raft(node) => node.has_ready(),
            Engine::Paxos(replica, _) => replica.has_ready(),
        }
    }

    /// The next ready (see [`EngineReady`]); `now` judges Raft's leader lease.
    pub fn ready(&mut self, now: Monotonic) -> EngineReady {
        // The two readies have the same fields but for their message types.
        macro_rules! convert {
            ($ready:expr) => {{
                let ready = $ready;
                EngineReady {
                    must_sync: ready.must_sync(),
                    soft_state: ready.soft_state,
                    hard_state: ready.hard_state,
                    snapshot: ready.snapshot,
                    entries: ready.entries,
                    messages: wrap(ready.messages),
                    messages_after_persist: wrap(ready.messages_after_persist),
                    committed_entries: ready.committed_entries,
                    read_states: ready.read_states,
                }
            }};
        }
        match self {
            Engine::Raft(node) => convert!(node.ready(now)),
            Engine::Paxos(replica, _) => convert!(replica.ready()),
        }
    }

    /// Messages that need no persistence, produced while a ready is outstanding.
    pub fn take_messages(&mut self, now: Monotonic) -> Vec<PeerMessage> {
        match self {
            Engine::Raft(node) => wrap(node.take_messages(now)),
            Engine::Paxos(replica, _) => wrap(replica.take_messages()),
        }
    }

    /// Acknowledges the outstanding ready.
    pub fn advance(&mut self) {
        match self {
            Engine::Raft(node) => node.advance(),
            Engine::Paxos(replica, _) => replica.advance(),
        }
    }

    /// Compacts the log through `index` into a snapshot whose image is the store itself;
    /// returns the snapshot's metadata.
    pub fn compact(&mut self, index: Index) -> Result<SnapshotMeta, Error> {
        match self {
            Engine::Raft(node) => {
                node.compact(index, Vec::new())?;
                Ok(node.raft().snapshot().meta.clone())
            }
            Engine::Paxos(replica, _) => replica.compact(index, Vec::new()),
        }
    }

    /// Drops an installed snapshot's image (the store holds it).
    pub fn forget_snapshot_data(&mut self) {
        match self {
            Engine::Raft(node) => node.forget_snapshot_data(),
            Engine::Paxos(replica, _) => replica.forget_snapshot_data(),
        }
    }
}

//! # ballot-node: one replica
//!
//! A consensus engine (Raft from [`ballot_raft`], or Multi-Paxos from [`ballot_paxos`]; see
//! [`engine`]), its write-ahead log ([`ballot_storage`]) and the state machine
//! ([`ballot_mvcc`]) tied together, with no I/O of its own beyond the `Disk` it is given and no
//! clock: the simulator and the server are two drivers of this same code.
//!
//! A driver feeds it time (`engine_mut().tick()`, and a clock reading with each `next_ready` and
//! `take_messages`), messages (`engine_mut().step()`), proposals
//! ([`Replica::propose`]) and reads ([`Replica::read`]), and runs its work in two phases:
//! [`Replica::next_ready`] writes a `Ready` to the log (not yet durable) and returns the messages
//! that may leave at once; after the disk has synced (the driver decides when, and may step and
//! tick meanwhile), [`Replica::finish`] makes the write durable, then returns the messages that
//! promise durability, the results of applied proposals and served reads, by request id.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod engine;

use std::collections::BTreeMap;

use ballot_mvcc::{command_codec, Applied, Command, Event, MemberChange, RangeRequest, RangeResponse, Store};
use ballot_raft::{
    ConfChange, ConfChangeStep, ConfState, Config, Entry, EntryKind, Index, Monotonic, RestartState, Snapshot,
    SoftState,
};
use ballot_storage::{Batch, Disk, PendingSync, SyncTask, Wal, WalOptions};
pub use engine::{Consensus, Engine, EngineReady, PeerMessage};

/// Identifies a client request; carried in the log entry so the result finds its waiter.
pub type RequestId = u64;

/// Why the replica cannot go on: its disk or store failed. The member must stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The write-ahead log failed.
    #[error("log: {0}")]
    Log(#[from] ballot_storage::Error),
    /// The state machine failed.
    #[error("state machine: {0}")]
    Store(ballot_mvcc::Error),
    /// Raft refused its own persisted state.
    #[error("raft: {0}")]
    Raft(#[from] ballot_raft::Error),
    /// The log was compacted past what the state machine holds durably: the store file lost
    /// writes it had made durable (or belongs to another member). Refuse to start.
    #[error(
        "state machine at applied index {store} is behind the log, which starts after index {snapshot}: \
         the store file lost durable writes or is not this member's"
    )]
    StoreBehind {
        /// The store's durable applied index.
        store: Index,
        /// The log's snapshot index.
        snapshot: Index,
    },
}

/// What may leave as soon as a `Ready` is written (before it is durable).
#[derive(Debug, Default)]
pub struct Written {
    /// Messages that may be sent now (the leader's appends among them).
    pub messages: Vec<PeerMessage>,
    /// Leader or role changed.
    pub soft_state: Option<SoftState>,
    /// The write must be synced before [`Replica::finish`]; if false, call it at once.
    pub must_sync: bool,
}

/// What a finished `Ready` produced.
#[derive(Debug, Default)]
pub struct Finished {
    /// Messages that promise durability (votes, append acks): sent only now.
    pub messages: Vec<PeerMessage>,
    /// The committed entries applied, in order (for observers such as the simulator's checks).
    pub committed: Vec<Entry>,
    /// Results of this replica's proposals, by request id.
    pub writes: Vec<(RequestId, Applied)>,
    /// Results of reads, by request id.
    pub reads: Vec<(RequestId, Result<RangeResponse, ballot_mvcc::Error>)>,
    /// Read barriers passed ([`Replica::read_barrier`]): the store now holds everything a
    /// linearizable read begun before the request must see.
    pub barriers: Vec<RequestId>,
    /// Events of the applied changes, for a watch hub.
    pub events: Vec<Event>,
    /// Logins applied, for the server's token keeper.
    pub logins: Vec<ballot_mvcc::auth::Login>,
    /// A snapshot from the leader replaced the state.
    pub installed_snapshot: Option<Index>,
    /// The member table or the configuration changed (a membership entry or member update
    /// applied, or a snapshot installed): a driver reloads the table from the store.
    pub members_changed: bool,
    /// Leases granted or checkpointed (with their remaining TTL in seconds) or revoked (`None`),
    /// in log order, so a driver can keep its expiry timers in step with the state machine.
    pub leases: Vec<(i64, Option<i64>)>,
}

/// A `Ready` written to the log and waiting to be made durable.
struct InFlight {
    ready: EngineReady,
    pending: PendingSync,
    /// Its sync was handed to the driver ([`Replica::detach_sync`]).
    detached: bool,
    /// It must be synced before it is finished; if not, a later sync of the same segment covers
    /// it (fsync makes the whole file durable).
    must_sync: bool,
}

/// One replica.
pub struct Replica<D: Disk> {
    engine: Engine,
    wal: Wal<D>,
    store: Store,
    applied: Index,
    in_flight: Option<InFlight>,
    proposed: BTreeMap<RequestId, ()>,
    /// Linearizable reads waiting for their read index; `None` for a bare barrier.
    reads: BTreeMap<RequestId, Option<RangeRequest>>,
    reads_waiting: Vec<(Index, RequestId)>,
    compact_every: u64,
    /// While a defragmentation runs, the log is not compacted past this index: the copy is
    /// brought up to date from the log.
    compaction_pin: Option<Index>,
    /// The compacted copy being brought up to date, and the last entry replayed into it.
    defrag: Option<(Store, Index)>,
    /// Snapshots leave without an image; the driver builds it off its thread (see
    /// [`Replica::detach_images`]).
    images_detached: bool,
}

/// Entry data of a proposal: the request id, then the command.
pub fn encode_proposal(request_id: RequestId, command: &Command) -> Vec<u8> {
    let mut out = request_id.to_be_bytes().to_vec();
    out.extend(command_codec::encode(command));
    out
}

/// Closes a defragmentation's copy and deletes its file.
fn discard(copy: Store) {
    let path = copy.path().map(std::path::Path::to_path_buf);
    drop(copy);
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

/// The command an applied entry carries, with the request id of a client's proposal; `None`
/// for an entry that changes nothing in the store (a new leader's empty entry).
fn command_of(entry: &Entry) -> Option<(Option<RequestId>, Command)> {
    if entry.kind == EntryKind::ConfChange {
        return member_changes(entry).map(|command| (None, command));
    }
    if entry.data.is_empty() {
        return None;
    }
    // Entries come from our own log, written by a leader that encoded them: a command that does
    // not decode is a bug or corruption, not input to tolerate.
    let (request_id, command) =
        decode_proposal(&entry.data).unwrap_or_else(|| panic!("entry {} does not hold a command", entry.index));
    Some((Some(request_id), command))
}

/// The member-table changes a membership entry makes: those in its context (an encoded
/// [`Command::Members`]), and the removal of every member it removes (so a removed id is
/// remembered even when the context says nothing of it).
fn member_changes(entry: &Entry) -> Option<Command> {
    // Our own log, as for commands: a change that does not decode is corruption.
    let change = ConfChange::decode(&entry.data)
        .unwrap_or_else(|error| panic!("membership entry {} is corrupt: {error}", entry.index));
    let mut changes = match command_codec::decode(&change.context) {
        Ok(Command::Members(changes)) => changes,
        _ if change.context.is_empty() => Vec::new(),
        _ => panic!("membership entry {} carries a context that is not a member change", entry.index),
    };
    for step in &change.steps {
        if let ConfChangeStep::Remove(id) = step {
            if !changes.contains(&MemberChange::Remove(*id)) {
                changes.push(MemberChange::Remove(*id));
            }
        }
    }
    (!changes.is_empty()).then_some(Command::Members(changes))
}

/// Splits entry data back into request id and command.
pub fn decode_proposal(data: &[u8]) -> Option<(RequestId, Command)> {
    let request_id = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    Some((request_id, command_codec::decode(&data[8..]).ok()?))
}

impl<D: Disk> Replica<D> {
    /// A founding member (non-empty `initial`) or a joining one (empty), on an empty disk.
    pub fn new(
        config: Config,
        initial: ConfState,
        disk: D,
        options: WalOptions,
        store: Store,
        compact_every: u64,
    ) -> Result<Self, NodeError> {
        Self::new_with_context(config, initial, Vec::new(), disk, options, store, compact_every)
    }

    /// [`Replica::new`] for a founding member whose first membership entry carries `context`:
    /// an encoded [`Command::Members`] that fills the member table (identical on every founder).
    pub fn new_with_context(
        config: Config,
        initial: ConfState,
        context: Vec<u8>,
        disk: D,
        options: WalOptions,
        store: Store,
        compact_every: u64,
    ) -> Result<Self, NodeError> {
        let engine = Engine::new(Consensus::Raft, config, initial, context)?;
        Self::new_engine(engine, disk, options, store, compact_every)
    }

    /// A founding member running `engine` (built by [`Engine::new`]), on an empty disk.
    pub fn new_engine(
        engine: Engine,
        disk: D,
        options: WalOptions,
        store: Store,
        compact_every: u64,
    ) -> Result<Self, NodeError> {
        let (wal, _) = Wal::open(disk, options)?;
        Ok(Self::assemble(engine, wal, store, 0, compact_every))
    }

    /// A member restarting from its disk. A state machine behind the log's snapshot gets the
    /// snapshot; the log replays above what the state machine has durably applied.
    pub fn restart(
        config: Config,
        disk: D,
        options: WalOptions,
        store: Store,
        compact_every: u64,
    ) -> Result<Self, NodeError> {
        Self::restart_engine(Consensus::Raft, &ConfState::default(), config, disk, options, store, compact_every)
    }

    /// [`Replica::restart`] with the engine the member's cluster runs; `voters` is a
    /// Multi-Paxos cluster's fixed membership (Raft reads its own from the log).
    pub fn restart_engine(
        consensus: Consensus,
        voters: &ConfState,
        config: Config,
        disk: D,
        options: WalOptions,
        store: Store,
        compact_every: u64,
    ) -> Result<Self, NodeError> {
        let (wal, state, store) = Self::recover(disk, options, store)?;
        let engine = Engine::restart(consensus, config, voters, state)?;
        Self::resume(engine, wal, store, compact_every)
    }

    /// [`Replica::restart`] as the one voter of a new configuration, after a majority of the
    /// old one was lost for good (etcd's `--force-new-cluster`; see
    /// [`RestartState::force_alone`]): what committed is kept, what did not is dropped, and the
    /// member table loses every other member. The change is durable before this returns.
    pub fn force_new_cluster(
        config: Config,
        disk: D,
        options: WalOptions,
        store: Store,
        compact_every: u64,
    ) -> Result<Self, NodeError> {
        let (mut wal, mut state, store) = Self::recover(disk, options, store)?;
        let members_dropped = |dropped: &[ballot_raft::NodeId]| {
            let changes = dropped.iter().map(|id| MemberChange::Remove(*id)).collect();
            command_codec::encode(&Command::Members(changes))
        };
        let entry = state.force_alone(config.id, state.applied, members_dropped)?;
        let batch = Batch {
            installed_snapshot: None,
            entries: std::slice::from_ref(&entry),
            hard_state: Some(state.hard_state),
        };
        wal.append(batch)?;
        let engine = Engine::restart(Consensus::Raft, config, &ConfState::default(), state)?;
        Self::resume(engine, wal, store, compact_every)
    }

    /// Opens the log and brings the store up to the log's snapshot: the durable state to
    /// restart from.
    fn recover(disk: D, options: WalOptions, mut store: Store) -> Result<(Wal<D>, RestartState, Store), NodeError> {
        let (wal, recovered) = Wal::open(disk, options)?;
        let mut snapshot = recovered.snapshot.unwrap_or_else(Snapshot::default);
        if snapshot.meta.index > store.applied_index() {
            // Only a snapshot received from a leader carries an image (it was saved before being
            // installed); a local compaction's is metadata over the store, durable first.
            if snapshot.data.is_empty() {
                return Err(NodeError::StoreBehind { store: store.applied_index(), snapshot: snapshot.meta.index });
            }
            store.install_snapshot([std::mem::take(&mut snapshot.data)]).map_err(NodeError::Store)?;
        }
        snapshot.data = Vec::new();
        let applied = snapshot.meta.index.max(store.applied_index());
        let state = RestartState { hard_state: recovered.hard_state, applied, snapshot, entries: recovered.entries };
        Ok((wal, state, store))
    }

    fn resume(mut engine: Engine, wal: Wal<D>, store: Store, compact_every: u64) -> Result<Self, NodeError> {
        // Stamps continue after the store's newest, even when a snapshot left no entries.
        engine.witness_stamp(store.reader().last_stamp().map_err(NodeError::Store)?);
        let applied = engine.applied();
        Ok(Self::assemble(engine, wal, store, applied, compact_every))
    }

    fn assemble(engine: Engine, wal: Wal<D>, store: Store, applied: Index, compact_every: u64) -> Self {
        Replica {
            engine,
            wal,
            store,
            applied,
            in_flight: None,
            proposed: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_waiting: Vec::new(),
            compact_every: compact_every.max(1),
            compaction_pin: None,
            defrag: None,
            images_detached: false,
        }
    }

    /// The consensus engine (read-only).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The consensus engine, to tick, step, change membership, transfer leadership.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The state machine (read-only).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Last index applied.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// True while a written `Ready` waits for [`Replica::finish`].
    pub fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Proposes a command; its result comes back in [`Finished::writes`] under `request_id`.
    pub fn propose(&mut self, request_id: RequestId, command: &Command) -> Result<(), ballot_raft::Error> {
        self.engine.propose(encode_proposal(request_id, command))?;
        self.proposed.insert(request_id, ());
        Ok(())
    }

    /// Stops waiting for a proposal's result (its client gave up). A proposal a leader dropped is
    /// never applied, so without this its id would stay forever.
    pub fn forget_proposal(&mut self, request_id: RequestId) {
        self.proposed.remove(&request_id);
    }

    /// A linearizable read: served once a read index is confirmed and applied.
    pub fn read(&mut self, request_id: RequestId, request: RangeRequest) -> Result<(), ballot_raft::Error> {
        self.wait_read_index(request_id, Some(request))
    }

    /// A linearizable read barrier: reported in [`Finished::barriers`] once a read index is
    /// confirmed and applied. The caller then reads the store itself, through a
    /// [`ballot_mvcc::Reader`] on another thread, so reads do not queue behind applying.
    pub fn read_barrier(&mut self, request_id: RequestId) -> Result<(), ballot_raft::Error> {
        self.wait_read_index(request_id, None)
    }

    fn wait_read_index(
        &mut self,
        request_id: RequestId,
        request: Option<RangeRequest>,
    ) -> Result<(), ballot_raft::Error> {
        self.engine.read_index(request_id.to_be_bytes().to_vec())?;
        self.reads.insert(request_id, request);
        Ok(())
    }

    /// Takes the next `Ready` (if none is in flight) and writes it to the log, not yet durable.
    /// `now` is a reading of the driver's monotonic clock taken for this call (the leader lease
    /// is judged against it; see [`ballot_raft::Monotonic`]).
    pub fn next_ready(&mut self, now: Monotonic) -> Result<Option<Written>, NodeError> {
        if self.in_flight.is_some() || !self.engine.has_ready() {
            return Ok(None);
        }
        let mut ready = self.engine.ready(now);
        if let Some(snapshot) = &ready.snapshot {
            self.wal.save_snapshot(snapshot)?;
        }
        let batch = Batch {
            installed_snapshot: ready.snapshot.as_ref().map(|s| &s.meta),
            entries: &ready.entries,
            hard_state: ready.hard_state,
        };
        let pending = self.wal.write(batch)?;
        let must_sync = ready.must_sync || pending.began_segment();
        let mut messages = std::mem::take(&mut ready.messages);
        self.attach_images(&mut messages)?;
        let written = Written { messages, soft_state: ready.soft_state, must_sync };
        self.in_flight = Some(InFlight { ready, pending, detached: false, must_sync });
        Ok(Some(written))
    }

    /// Hands out the fsync of the written `Ready` as a task the driver runs on its own thread;
    /// the driver calls [`Replica::finish`] only after the task succeeded (a failed fsync stops
    /// the member). `None` if nothing is in flight or the disk cannot detach its syncs (then
    /// `finish` syncs in place).
    pub fn detach_sync(&mut self) -> Result<Option<SyncTask>, NodeError> {
        let Some(in_flight) = self.in_flight.as_mut() else { return Ok(None) };
        let task = self.wal.detach_sync(&in_flight.pending)?;
        in_flight.detached = task.is_some();
        Ok(task)
    }

    /// Messages that need no persistence, produced while a `Ready` is in flight (heartbeats keep
    /// going while the disk is slow). `now` as for [`Replica::next_ready`].
    pub fn take_messages(&mut self, now: Monotonic) -> Result<Vec<PeerMessage>, NodeError> {
        let mut messages = self.engine.take_messages(now);
        self.attach_images(&mut messages)?;
        Ok(messages)
    }

    /// Fills the snapshots this replica sends with an image of its store. Raft keeps only the
    /// snapshot's metadata (see [`Replica::maybe_compact`]); the image is built when a follower
    /// needs one, at the store's applied index, which is at or past the snapshot's: the
    /// follower's store then skips the entries it already holds as they arrive, as etcd's
    /// consistent index does.
    fn attach_images(&self, messages: &mut [PeerMessage]) -> Result<(), NodeError> {
        if self.images_detached {
            return Ok(());
        }
        for message in messages {
            if let Some(snapshot) = message.snapshot_mut() {
                if snapshot.data.is_empty() {
                    let mut image = Vec::new();
                    for chunk in self.store.snapshot_chunks(1 << 20).map_err(NodeError::Store)? {
                        image.extend(chunk.map_err(NodeError::Store)?);
                    }
                    snapshot.data = image;
                }
            }
        }
        Ok(())
    }

    /// From now on the snapshots this replica sends leave without an image (their data empty):
    /// the driver builds it from a [`ballot_mvcc::Reader`] on another thread, so that reading a
    /// large store (seconds at a million keys) does not stop the thread that drives Raft. The
    /// image is then at whatever applied index the store has reached, at or past the
    /// snapshot's, as with an image built here.
    pub fn detach_images(&mut self) {
        self.images_detached = true;
    }

    /// Makes the state machine's applied state durable (it is otherwise committed lazily: the
    /// log holds the truth, and a restart replays what the store lost).
    pub fn make_store_durable(&mut self) -> Result<(), NodeError> {
        self.store.make_durable().map_err(NodeError::Store)
    }

    /// The written `Ready` is to be made durable and finished: fsync, then everything that
    /// depends on durability, then apply and advance.
    pub fn finish(&mut self) -> Result<Finished, NodeError> {
        let Some(InFlight { ready, pending, detached, must_sync }) = self.in_flight.take() else {
            return Ok(Finished::default());
        };
        if detached {
            self.wal.synced(pending);
        } else if must_sync {
            self.wal.sync(pending)?;
        }
        let mut finished = Finished { messages: ready.messages_after_persist, ..Finished::default() };
        self.attach_images(&mut finished.messages)?;
        if let Some(snapshot) = ready.snapshot {
            // Installed durably; the image need not stay in memory (it is rebuilt from the store
            // if this member ever sends a snapshot).
            self.store.install_snapshot([snapshot.data]).map_err(NodeError::Store)?;
            self.engine.forget_snapshot_data();
            // The snapshot's revisions carry stamps this node's log never showed it: should it
            // lead, its stamps must come after them.
            self.engine.witness_stamp(self.store.reader().last_stamp().map_err(NodeError::Store)?);
            // A copy of the old state is of no use any more.
            self.abandon_defrag();
            self.applied = snapshot.meta.index;
            finished.installed_snapshot = Some(snapshot.meta.index);
            finished.members_changed = true;
        }
        let mut batch = Vec::new();
        let mut stamps = Vec::new();
        let mut ids = Vec::new();
        for entry in &ready.committed_entries {
            assert_eq!(entry.index, self.applied + 1, "entries are applied in order");
            self.applied = entry.index;
            // Even a change without a table change (leaving a joint configuration) changes who
            // is still in Raft's configuration.
            finished.members_changed |= entry.kind == EntryKind::ConfChange;
            if let Some((request_id, command)) = command_of(entry) {
                finished.members_changed |= matches!(command.inner(), Command::Members(_));
                batch.push((entry.index, command));
                stamps.push(entry.stamp);
                ids.push(request_id);
            }
        }
        let newest = ready.committed_entries.iter().map(|entry| entry.stamp).max().unwrap_or(0);
        let results = self.store.apply_stamped(&batch, &stamps, newest).map_err(NodeError::Store)?;
        for ((_, command), applied) in batch.iter().zip(&results) {
            let succeeded = matches!(applied, Some(Applied { result: Ok(_), .. }));
            match *command.inner() {
                // A ZooKeeper session is a lease too: its deadline starts when it opens.
                Command::LeaseGrant { id, ttl } | Command::ZkSession { id, ttl, .. } if succeeded => {
                    finished.leases.push((id, Some(ttl)))
                }
                Command::LeaseCheckpoint { id, remaining_ttl } if succeeded => {
                    finished.leases.push((id, Some(remaining_ttl)))
                }
                Command::LeaseRevoke { id } if succeeded => finished.leases.push((id, None)),
                _ => {}
            }
        }
        for (request_id, applied) in ids.into_iter().zip(results) {
            if let (Some(request_id), Some(applied)) = (request_id, applied) {
                if self.proposed.remove(&request_id).is_some() {
                    finished.writes.push((request_id, applied));
                }
            }
        }
        finished.events = self.store.take_events();
        finished.logins = self.store.take_logins();
        finished.committed = ready.committed_entries;
        for read_state in &ready.read_states {
            let request_id = u64::from_be_bytes(read_state.context.as_slice().try_into().expect("our 8-byte context"));
            self.reads_waiting.push((read_state.index, request_id));
        }
        self.engine.advance();
        let applied = self.applied;
        let (due, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reads_waiting).into_iter().partition(|(index, _)| *index <= applied);
        self.reads_waiting = waiting;
        for (_, request_id) in due {
            match self.reads.remove(&request_id) {
                Some(Some(request)) => finished.reads.push((request_id, self.store.range(&request))),
                Some(None) => finished.barriers.push(request_id),
                None => {}
            }
        }
        self.maybe_compact()?;
        Ok(finished)
    }

    /// Compacts the log once enough was applied. The store is made durable first, so it holds
    /// everything up to the compaction point by itself: the snapshot is metadata only, and no
    /// image of the store is built or kept unless a follower needs one
    /// ([`Replica::attach_images`]). The log's file work (the snapshot file, the marker's
    /// fsync, removing covered segments) runs on the WAL's compaction thread
    /// ([`Wal::begin_compaction`]); a new compaction waits for the last to end.
    fn maybe_compact(&mut self) -> Result<(), NodeError> {
        self.wal.advance_compaction()?;
        if self.wal.compacting() {
            return Ok(());
        }
        let snapshot_index = self.engine.snapshot_meta().index;
        // The store's applied index counts commands only: entries after its last one (a new
        // leader's empty entry, a membership change) stay in the log for a restart to replay.
        // It can also run ahead of Raft's after installing a leader's image.
        let index = self.store.applied_index().min(self.applied).min(self.compaction_pin.unwrap_or(Index::MAX));
        if index < snapshot_index + self.compact_every || self.engine.compactable() < index {
            return Ok(());
        }
        self.store.make_durable().map_err(NodeError::Store)?;
        if let Ok(meta) = self.engine.compact(index) {
            self.wal.begin_compaction(&Snapshot { meta, data: Vec::new() })?;
        }
        Ok(())
    }

    /// Runs one bounded step of a compaction in progress without waiting for new entries (the
    /// steps otherwise ride on applied batches, and an idle member has none). True while more
    /// remains.
    pub fn step_compaction(&mut self) -> Result<bool, NodeError> {
        if !self.store.compacting() {
            return Ok(false);
        }
        self.store.apply_batch(&[]).map_err(NodeError::Store)?;
        Ok(self.store.compacting())
    }

    /// Begins a defragmentation: the log is not compacted past the store's applied index until
    /// it ends, so a copy of the store taken from now on can be brought up to date from the log.
    /// Returns a reader to copy the store from (on another thread, with
    /// [`ballot_mvcc::Reader::compacted_copy`]) and the file to copy it into; `None` if one is
    /// under way already or the store is not on a file.
    pub fn begin_defrag(&mut self) -> Option<(ballot_mvcc::Reader, std::path::PathBuf)> {
        if self.compaction_pin.is_some() {
            return None;
        }
        let path = self.store.defrag_path()?;
        self.compaction_pin = Some(self.store.applied_index().min(self.applied));
        Some((self.store.reader(), path))
    }

    /// True while a defragmentation is under way.
    pub fn defragmenting(&self) -> bool {
        self.compaction_pin.is_some()
    }

    /// The compacted copy is made: [`Replica::defrag_step`] brings it up to date. False if the
    /// defragmentation was abandoned meanwhile (the copy is dropped).
    pub fn defrag_copied(&mut self, copy: Store) -> bool {
        let replayed = copy.applied_index();
        let pin = self.compaction_pin.unwrap_or(Index::MAX);
        if replayed < pin || replayed > self.applied {
            // Abandoned (and maybe begun again), or a copy of another state: not ours to use.
            discard(copy);
            return false;
        }
        self.defrag = Some((copy, replayed));
        true
    }

    /// Abandons a defragmentation under way (its copy is deleted).
    pub fn abandon_defrag(&mut self) {
        self.compaction_pin = None;
        if let Some((copy, _)) = self.defrag.take() {
            discard(copy);
        }
    }

    /// Replays up to `entries_max` applied entries into the copy (one write transaction), and
    /// once it has everything the store has, swaps it in. Bounded so that applying and serving
    /// stall for one step at a time, however long the copy took. Once swapped, returns the old
    /// store, for the caller to drop (closing it syncs its file: see
    /// [`Store::replace_with`]).
    pub fn defrag_step(&mut self, entries_max: u64) -> Result<Option<Store>, NodeError> {
        let Some((copy, replayed)) = self.defrag.as_mut() else { return Ok(None) };
        if *replayed < self.applied {
            let to = (*replayed + entries_max).min(self.applied) + 1;
            let entries = self.engine.entries(*replayed + 1, to);
            let Some(last) = entries.last().map(|entry| entry.index) else {
                // The log no longer has what the copy needs (it cannot happen while pinned).
                self.abandon_defrag();
                return Ok(None);
            };
            let newest = entries.iter().map(|entry| entry.stamp).max().unwrap_or(0);
            let (batch, stamps): (Vec<(Index, Command)>, Vec<u64>) = entries
                .iter()
                .filter_map(|entry| command_of(entry).map(|(_, command)| ((entry.index, command), entry.stamp)))
                .unzip();
            copy.apply_stamped(&batch, &stamps, newest).map_err(NodeError::Store)?;
            copy.take_events();
            *replayed = last;
            if *replayed < self.applied {
                return Ok(None);
            }
        }
        let (copy, _) = self.defrag.take().expect("checked above");
        self.compaction_pin = None;
        self.store.replace_with(copy).map(Some).map_err(NodeError::Store)
    }

    /// Stops the replica, giving its disk back (for a restart, or a simulated crash).
    pub fn into_disk(self) -> D {
        self.wal.into_disk()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_mvcc::{PutRequest, Response};
    use ballot_raft::rng::Rng;
    use ballot_raft::Role;
    use ballot_storage::SimDisk;

    fn options() -> WalOptions {
        WalOptions { segment_bytes: 4096, repair: false, zero_fill: false }
    }

    fn single(compact_every: u64) -> Replica<SimDisk> {
        let replica = Replica::new(
            Config::new(1),
            ConfState::with_voters([1]),
            SimDisk::new(),
            options(),
            Store::in_memory().unwrap(),
            compact_every,
        );
        replica.unwrap()
    }

    /// Runs every Ready to completion (a lone member: nothing to send).
    fn settle(replica: &mut Replica<SimDisk>) -> Finished {
        let mut all = Finished::default();
        while let Some(written) = replica.next_ready(Monotonic::default()).unwrap() {
            assert!(written.messages.is_empty());
            let finished = replica.finish().unwrap();
            all.writes.extend(finished.writes);
            all.reads.extend(finished.reads);
            all.barriers.extend(finished.barriers);
            all.committed.extend(finished.committed);
        }
        all
    }

    fn elect(replica: &mut Replica<SimDisk>) {
        while replica.engine().role() != Role::Leader {
            replica.engine_mut().tick();
            settle(replica);
        }
        settle(replica);
    }

    fn put(key: &str, value: &str) -> Command {
        Command::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
    }

    #[test]
    fn a_proposal_is_applied_and_answered_by_request_id() {
        let mut replica = single(1000);
        elect(&mut replica);
        replica.propose(7, &put("a", "1")).unwrap();
        replica.propose(8, &put("a", "2")).unwrap();
        let finished = settle(&mut replica);
        let answered: Vec<(RequestId, i64)> =
            finished.writes.iter().map(|(id, applied)| (*id, applied.revision)).collect();
        assert_eq!(answered, [(7, 2), (8, 3)]);
        assert!(matches!(finished.writes[0].1.result, Ok(Response::Put(_))));
    }

    #[test]
    fn a_read_is_served_after_its_read_index_is_applied() {
        let mut replica = single(1000);
        elect(&mut replica);
        replica.propose(1, &put("k", "v")).unwrap();
        settle(&mut replica);
        replica.read(2, RangeRequest { key: "k".into(), ..Default::default() }).unwrap();
        let finished = settle(&mut replica);
        assert_eq!(finished.reads.len(), 1);
        let (id, response) = &finished.reads[0];
        assert_eq!(*id, 2);
        assert_eq!(response.as_ref().unwrap().kvs[0].value, b"v");
    }

    #[test]
    fn a_read_barrier_passes_once_its_read_index_is_applied() {
        let mut replica = single(1000);
        elect(&mut replica);
        replica.propose(1, &put("k", "v")).unwrap();
        replica.read_barrier(2).unwrap();
        let finished = settle(&mut replica);
        assert_eq!(finished.barriers, [2]);
        assert!(finished.reads.is_empty());
        let (response, _) =
            replica.store().reader().range(&RangeRequest { key: "k".into(), ..Default::default() }).unwrap();
        assert_eq!(response.kvs[0].value, b"v", "the write before the barrier is visible after it");
    }

    #[test]
    fn a_restart_after_a_crash_keeps_everything_acknowledged_and_compacts() {
        let mut file = ballot_mvcc::SimFile::new();
        let store = Store::on_sim_file(file.clone()).unwrap();
        let mut replica =
            Replica::new(Config::new(1), ConfState::with_voters([1]), SimDisk::new(), options(), store, 5).unwrap();
        elect(&mut replica);
        for i in 0..32u64 {
            replica.propose(i, &put(&format!("k{i}"), "v")).unwrap();
            settle(&mut replica);
        }
        let snapshot = replica.engine().raft().unwrap().snapshot().clone();
        assert!(snapshot.meta.index > 0, "the log was compacted");
        assert!(snapshot.data.is_empty(), "a local compaction keeps no image of the store");
        assert!(replica.applied() > snapshot.meta.index, "some entries live only in the log and the volatile store");
        let hash = replica.store().hash_kv(0).unwrap();
        let reopen = file.crash();
        let mut disk = replica.into_disk();
        disk.crash(&mut Rng::new(3));
        let store = Store::on_sim_file(reopen).unwrap();
        let mut restarted = Replica::restart(Config::new(1), disk.clone(), options(), store, 5).unwrap();
        elect(&mut restarted);
        assert_eq!(
            restarted.store().hash_kv(0).unwrap().0,
            hash.0,
            "durable store plus replayed log give the same state"
        );
        restarted.propose(99, &put("after", "restart")).unwrap();
        assert_eq!(settle(&mut restarted).writes.len(), 1);

        // A store that lost what it had made durable cannot be completed from a compacted log.
        let refused = Replica::restart(Config::new(1), disk, options(), Store::in_memory().unwrap(), 5);
        assert!(matches!(refused, Err(NodeError::StoreBehind { store: 0, .. })), "{:?}", refused.err());
    }

    #[test]
    fn a_paxos_replica_applies_reads_compacts_and_restarts_through_the_same_log_and_store() {
        let paxos = Consensus::Paxos { phase1: 0, phase2: 0 };
        let voters = ConfState::with_voters([1]);
        let mut file = ballot_mvcc::SimFile::new();
        let store = Store::on_sim_file(file.clone()).unwrap();
        let engine = Engine::new(paxos, Config::new(1), voters.clone(), Vec::new()).unwrap();
        let mut replica = Replica::new_engine(engine, SimDisk::new(), options(), store, 5).unwrap();
        elect(&mut replica);
        for i in 0..32u64 {
            replica.propose(i, &put(&format!("k{i}"), "v")).unwrap();
            assert_eq!(settle(&mut replica).writes.len(), 1, "proposal {i} is applied and answered");
        }
        replica.read(100, RangeRequest { key: "k31".into(), ..Default::default() }).unwrap();
        let finished = settle(&mut replica);
        assert_eq!(finished.reads[0].1.as_ref().unwrap().kvs[0].value, b"v");
        assert!(replica.engine().snapshot_meta().index > 0, "the log was compacted");
        assert!(
            replica.engine_mut().transfer_leader(1).is_err() && replica.engine().raft().is_none(),
            "what only Raft has is refused"
        );
        let hash = replica.store().hash_kv(0).unwrap();
        let reopen = file.crash();
        let mut disk = replica.into_disk();
        disk.crash(&mut Rng::new(5));
        let store = Store::on_sim_file(reopen).unwrap();
        let mut restarted = Replica::restart_engine(paxos, &voters, Config::new(1), disk, options(), store, 5).unwrap();
        elect(&mut restarted);
        assert_eq!(restarted.store().hash_kv(0).unwrap().0, hash.0, "nothing applied is lost");
        restarted.propose(99, &put("after", "restart")).unwrap();
        assert_eq!(settle(&mut restarted).writes.len(), 1);
    }

    #[test]
    fn proposals_on_a_follower_are_refused_with_the_leader() {
        let mut replica = Replica::new(
            Config::new(2),
            ConfState::with_voters([1, 2, 3]),
            SimDisk::new(),
            options(),
            Store::in_memory().unwrap(),
            100,
        )
        .unwrap();
        assert!(matches!(replica.propose(1, &put("a", "1")), Err(ballot_raft::Error::NotLeader { .. })));
        assert!(matches!(
            replica.read(2, RangeRequest::default()),
            Err(ballot_raft::Error::NotLeader { leader: None })
        ));
    }

    #[test]
    fn membership_entries_fill_the_member_table() {
        let record = |id: u64| ballot_mvcc::MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://127.0.0.1:{id}")],
            ..Default::default()
        };
        let founding = command_codec::encode(&Command::Members(vec![MemberChange::Upsert(record(1))]));
        let mut replica = Replica::new_with_context(
            Config::new(1),
            ConfState::with_voters([1]),
            founding,
            SimDisk::new(),
            options(),
            Store::in_memory().unwrap(),
            100,
        )
        .unwrap();
        elect(&mut replica);
        assert_eq!(replica.store().members().unwrap().0, [record(1)]);
        let add = Command::Members(vec![MemberChange::Upsert(record(2))]);
        let change = ConfChange { steps: vec![ConfChangeStep::AddLearner(2)], context: command_codec::encode(&add) };
        // The learner never answers: its messages are dropped.
        let run = |replica: &mut Replica<SimDisk>| {
            while replica.next_ready(Monotonic::default()).unwrap().is_some() {
                replica.finish().unwrap();
            }
        };
        replica.engine_mut().propose_conf_change(change).unwrap();
        run(&mut replica);
        assert_eq!(replica.store().members().unwrap().0, [record(1), record(2)]);
        // A removal without a context still removes the member from the table, for good.
        let remove = ConfChange { steps: vec![ConfChangeStep::Remove(2)], context: Vec::new() };
        replica.engine_mut().propose_conf_change(remove).unwrap();
        run(&mut replica);
        assert_eq!(replica.store().members().unwrap(), (vec![record(1)], vec![2]));
    }

    #[test]
    fn a_survivor_forced_into_a_new_cluster_keeps_its_data_and_serves_alone() {
        let record = |id: u64| ballot_mvcc::MemberRecord { id, name: format!("m{id}"), ..Default::default() };
        let founders = (1..=3).map(|id| MemberChange::Upsert(record(id))).collect();
        let founding = command_codec::encode(&Command::Members(founders));
        let store_file = ballot_mvcc::SimFile::new();
        let mut replica = Replica::new_with_context(
            Config::new(1),
            ConfState::with_voters([1, 2, 3]),
            founding,
            SimDisk::new(),
            options(),
            Store::on_sim_file(store_file.clone()).unwrap(),
            100,
        )
        .unwrap();
        // Members 2 and 3 are gone for good (whatever this one sends is lost): no leader.
        let unanswered = |replica: &mut Replica<SimDisk>| {
            while replica.next_ready(Monotonic::default()).unwrap().is_some() {
                replica.finish().unwrap();
            }
        };
        for _ in 0..50 {
            replica.engine_mut().tick();
            unanswered(&mut replica);
        }
        replica.make_store_durable().unwrap();
        assert_ne!(replica.engine().role(), Role::Leader);
        let disk = replica.into_disk();
        let store = Store::on_sim_file(store_file).unwrap();
        let mut replica = Replica::force_new_cluster(Config::new(1), disk, options(), store, 100).unwrap();
        settle(&mut replica);
        assert_eq!(replica.store().members().unwrap(), (vec![record(1)], vec![2, 3]));
        elect(&mut replica);
        replica.propose(5, &put("after", "force")).unwrap();
        assert_eq!(settle(&mut replica).writes.len(), 1, "a write commits with one voter");
    }

    #[test]
    fn a_defragmentation_swaps_in_a_smaller_copy_brought_up_to_date_from_the_log() {
        let dir = std::env::temp_dir().join(format!("ballot-node-defrag-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db")).unwrap();
        let mut replica =
            Replica::new(Config::new(1), ConfState::with_voters([1]), SimDisk::new(), options(), store, 10_000)
                .unwrap();
        elect(&mut replica);
        let big = "x".repeat(4000);
        for i in 0..400u64 {
            replica.propose(i, &put(&format!("k{i:03}"), &big)).unwrap();
            settle(&mut replica);
        }
        let delete = Command::DeleteRange(ballot_mvcc::DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            prev_kv: false,
        });
        replica.propose(1000, &delete).unwrap();
        settle(&mut replica);
        replica.propose(1001, &Command::Compact { revision: replica.store().revision() }).unwrap();
        settle(&mut replica);
        for i in 0..10u64 {
            replica.propose(2000 + i, &put("tick", "t")).unwrap(); // compaction proceeds in steps
            settle(&mut replica);
        }
        replica.make_store_durable().unwrap();
        let reader = replica.store().reader();
        let before = replica.store().size_bytes().unwrap();

        let (from, path) = replica.begin_defrag().unwrap();
        assert!(replica.begin_defrag().is_none(), "one at a time");
        let copy = from.compacted_copy(&path, 1 << 20).unwrap();
        // The live store goes on while the copy is made.
        for i in 0..30u64 {
            replica.propose(3000 + i, &put(&format!("after{i}"), "v")).unwrap();
            settle(&mut replica);
        }
        assert!(replica.defrag_copied(copy));
        let mut steps = 0;
        while replica.defrag_step(8).unwrap().is_none() {
            steps += 1;
            assert!(steps < 100);
        }
        assert!(steps >= 3, "brought up to date in bounded steps ({steps})");
        assert!(!replica.defragmenting());
        assert!(!path.exists(), "the copy took the store's place");
        let after = replica.store().size_bytes().unwrap();
        assert!(after * 4 < before, "the file shrank: {before} -> {after} bytes");
        let (response, _) = reader.range(&RangeRequest { key: b"after29".to_vec(), ..Default::default() }).unwrap();
        assert_eq!(response.kvs.len(), 1, "a reader taken before the swap reads the new file");
        replica.propose(9999, &put("later", "v")).unwrap();
        assert_eq!(settle(&mut replica).writes.len(), 1);
        let hash = replica.store().hash_kv(0).unwrap();
        drop((replica, reader, from));
        let reopened = Store::open(&dir.join("db")).unwrap();
        assert_eq!(reopened.hash_kv(0).unwrap(), hash, "the swapped-in file is the store after a restart");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! One simulated member: a `ballot-node` replica (Raft or Multi-Paxos, the production WAL on a `SimDisk`, the
//! mvcc store on redb's in-memory backend) plus the simulator's view of it: which clients wait
//! for what, its clock rate, pauses, crashes. What survives a crash is exactly what the
//! `SimDisk` kept.

use std::collections::BTreeMap;

use ballot_mvcc::{MemberChange, MemberRecord, SimFile, Store, WatchHub, WatchId, WatchRequest};
use ballot_node::{Consensus, Engine, Replica};
use ballot_raft::{ConfState, Config, Index, Monotonic, NodeId};
use ballot_storage::{SimDisk, WalOptions};

use crate::kv::RequestId;

/// A client waiting for an answer.
pub type ClientId = u64;

/// A member in the simulation.
pub struct SimNode {
    /// Node id.
    pub id: NodeId,
    /// How far this node's wall clock is from true time, ms (within ±[`WALL_OFFSET_MAX_MS`]).
    pub wall_offset_ms: i64,
    /// Raft config (reused at every restart; a Multi-Paxos engine takes its ticks and seed).
    pub config: Config,
    /// The consensus engine the cluster runs.
    pub consensus: Consensus,
    /// The founding voters: a Multi-Paxos cluster's fixed membership, given at every restart.
    pub voters: ConfState,
    /// The running replica; `None` while crashed or stopped.
    pub replica: Option<Replica<SimDisk>>,
    /// The disk while the node is down.
    pub disk_at_rest: Option<SimDisk>,
    /// WAL options (segment size) for every reopen.
    pub wal_options: WalOptions,
    /// Bumped at each crash so stale disk completions are ignored.
    pub incarnation: u64,
    /// Clients waiting for writes this node proposed, by request id.
    pub pending_writes: BTreeMap<RequestId, (ClientId, u8)>,
    /// Clients waiting for reads, by request id.
    pub pending_reads: BTreeMap<RequestId, (ClientId, u8)>,
    /// Virtual microseconds per tick (clock skew: the node's clock runs at
    /// [`TICK_US`]` / tick_us` of the virtual clock's rate).
    pub tick_us: u64,
    /// Virtual time (ns) of the node's next tick. Ticks are owed by this schedule, whatever
    /// happens to the events that deliver them: a node back from a pause gets every tick whose
    /// time has come, however its pauses overlapped.
    pub next_tick_at: u64,
    /// Generation of the node's chain of tick events: a restart or a resume starts a new
    /// chain, and events of an older one are ignored (so a node never ticks twice as fast).
    pub tick_chain: u64,
    /// Paused until this virtual time (ns), if paused.
    pub paused_until: Option<u64>,
    /// Ticks delivered since the node was created (across restarts).
    pub ticks_delivered: u64,
    /// Left the cluster (removed and stopped for good).
    pub removed: bool,
    /// Compact the log after this many applied entries.
    pub compact_every: u64,
    /// Refused to start from a corrupted disk; stays down (an operator must replace it).
    pub corrupt: Option<String>,
    /// A watcher on every client key, with a small buffer and a slow consumer, and the next
    /// revision its consumer expects (kept across crashes, as a reconnecting client keeps it).
    pub watch: Option<(WatchHub, WatchId)>,
    /// Next revision the watcher's consumer expects.
    pub watch_next: i64,
    /// The store's file: survives crashes with what the store made durable.
    pub store_file: SimFile,
    /// Ticks since the store was last made durable.
    ticks_since_durable: u32,
    /// The chapter's Paxos bug is switched in at every (re)start.
    #[cfg(any(test, feature = "fault-injection"))]
    pub paxos_first_reported: bool,
}

/// Nominal virtual time per tick, µs: with 10 election ticks, a 100 ms election timeout. A
/// node's clock (see [`SimNode::clock`]) counts this much per tick of its own.
pub const TICK_US: u64 = 10_000;

/// The wall clock at virtual time 0, ms since the epoch (2026-01-01T00:00:00Z): entry stamps
/// then look like real ones.
pub const WALL_EPOCH_MS: u64 = 1_767_225_600_000;

/// Largest offset of a node's wall clock from true time, ms (NTP keeps real clocks closer).
pub const WALL_OFFSET_MAX_MS: i64 = 250;

/// Ticks between the store's durable commits (a server makes its store durable every second).
const STORE_DURABLE_TICKS: u32 = 10;

/// Events a simulated watcher buffers before it must catch up from storage.
const WATCH_BUFFER_EVENTS: usize = 8;

/// A watcher on every client key (`k0`, `k1`, …) from `start_revision`.
fn start_watch(replica: &Replica<SimDisk>, start_revision: i64) -> Option<(WatchHub, WatchId)> {
    let mut hub = WatchHub::new(WATCH_BUFFER_EVENTS);
    let request = WatchRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), start_revision, ..Default::default() };
    let id = hub.watch(replica.store(), request).ok()?;
    Some((hub, id))
}

/// The member-table record of simulated node `id` (names and URLs follow from the id, so the
/// table a configuration implies is known).
pub fn member_record(id: NodeId, is_learner: bool) -> MemberRecord {
    MemberRecord {
        id,
        name: format!("n{id}"),
        peer_urls: vec![format!("sim://{id}")],
        client_urls: Vec::new(),
        is_learner,
    }
}

/// The context of a membership entry that makes `changes` to the member table.
pub fn members_context(changes: Vec<MemberChange>) -> Vec<u8> {
    ballot_mvcc::command_codec::encode(&ballot_mvcc::Command::Members(changes))
}

fn store(file: &SimFile) -> Result<Store, String> {
    Store::on_sim_file(file.clone()).map_err(|error| format!("store: {error}"))
}

impl SimNode {
    /// A brand-new node with the given initial membership (empty for a joining node).
    pub fn new(
        consensus: Consensus,
        config: Config,
        initial: ConfState,
        tick_us: u64,
        compact_every: u64,
        wal_options: WalOptions,
    ) -> SimNode {
        let store_file = SimFile::new();
        let store = store(&store_file).expect("a store opens on an empty file");
        // Founders carry the member table in their first entry, as the server's do.
        let founders = initial.voters.iter().map(|id| MemberChange::Upsert(member_record(*id, false))).collect();
        let context = if initial.voters.is_empty() { Vec::new() } else { members_context(founders) };
        let voters = initial.clone();
        let engine = Engine::new(consensus, config.clone(), initial, context).expect("a valid engine config");
        let replica = Replica::new_engine(engine, SimDisk::new(), wal_options.clone(), store, compact_every)
            .expect("a new replica on an empty disk");
        SimNode {
            id: config.id,
            wall_offset_ms: 0,
            config,
            consensus,
            voters,
            replica: Some(replica),
            disk_at_rest: None,
            wal_options,
            incarnation: 0,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            tick_us,
            next_tick_at: 0,
            tick_chain: 0,
            paused_until: None,
            ticks_delivered: 0,
            removed: false,
            compact_every,
            corrupt: None,
            watch: None,
            watch_next: 0,
            store_file,
            ticks_since_durable: 0,
            #[cfg(any(test, feature = "fault-injection"))]
            paxos_first_reported: false,
        }
        .with_watch()
    }

    fn with_watch(mut self) -> SimNode {
        let replica = self.replica.as_ref().expect("running");
        self.watch_next = replica.store().revision() + 1;
        self.watch = start_watch(replica, self.watch_next);
        self
    }

    /// True if the node is running (not crashed, not removed).
    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// The consensus engine, if running.
    pub fn engine(&self) -> Option<&Engine> {
        self.replica.as_ref().map(Replica::engine)
    }

    /// The consensus engine, if running.
    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        self.replica.as_mut().map(Replica::engine_mut)
    }

    /// The node's monotonic clock at virtual time `now` (ns): it runs at the node's own rate
    /// (skew), and on through pauses, as a process's clock does.
    pub fn clock(&self, now: u64) -> Monotonic {
        Monotonic::from_nanos((now as u128 * TICK_US as u128 / self.tick_us as u128) as u64)
    }

    /// The node's wall clock at virtual time `now` (ns), ms since the epoch: true time plus
    /// its offset (the rate is NTP-disciplined; the tick-rate skew models the monotonic clock).
    pub fn wall_ms(&self, now: u64) -> u64 {
        (WALL_EPOCH_MS as i64 + (now / 1_000_000) as i64 + self.wall_offset_ms) as u64
    }

    /// The length of one of this node's ticks in virtual time, ns.
    pub fn tick_ns(&self) -> u64 {
        self.tick_us * 1000
    }

    /// One tick of the node's clock: Raft's, and now and then a durable commit of the store.
    pub fn tick(&mut self) {
        let Some(replica) = self.replica.as_mut() else { return };
        replica.engine_mut().tick();
        self.ticks_delivered += 1;
        self.ticks_since_durable += 1;
        if self.ticks_since_durable >= STORE_DURABLE_TICKS {
            self.ticks_since_durable = 0;
            replica.make_store_durable().expect("the simulated store file never fails");
        }
    }

    /// Last index applied (0 while down).
    pub fn applied(&self) -> Index {
        self.replica.as_ref().map_or(0, Replica::applied)
    }

    /// Loses everything volatile; the disk keeps a random prefix of its unsynced writes.
    pub fn crash(&mut self, rng: &mut ballot_raft::rng::Rng) {
        self.incarnation += 1;
        self.pending_writes.clear();
        self.pending_reads.clear();
        self.paused_until = None;
        self.watch = None;
        if let Some(replica) = self.replica.take() {
            // The store's file dies first, so nothing the dropped store does reaches it.
            self.store_file.crash();
            let mut disk = replica.into_disk();
            disk.crash(rng);
            self.disk_at_rest = Some(disk);
        }
    }

    /// Switches the run's deliberate bugs into a (re)started replica.
    #[cfg_attr(not(any(test, feature = "fault-injection")), allow(unused_variables))]
    fn switch_in_bugs(&self, replica: &mut Replica<SimDisk>) {
        #[cfg(any(test, feature = "fault-injection"))]
        if self.paxos_first_reported {
            replica.engine_mut().inject_paxos_first_reported();
        }
    }

    /// Stops for good (removed from the cluster); keeps nothing running.
    pub fn stop(&mut self) {
        self.replica = None;
    }

    /// Restarts from the disk. A disk the WAL finds corrupt keeps the node down, as it must.
    pub fn restart(&mut self) -> Result<(), String> {
        let disk = self.disk_at_rest.take().expect("a stopped node has its disk");
        let restarted = store(&self.store_file).and_then(|store| {
            let config = self.config.clone();
            Replica::restart_engine(
                self.consensus,
                &self.voters,
                config,
                disk,
                self.wal_options.clone(),
                store,
                self.compact_every,
            )
            .map_err(|error| error.to_string())
        });
        match restarted {
            Ok(mut replica) => {
                self.switch_in_bugs(&mut replica);
                // The consumer resumes where it stopped: history first, then live events.
                self.watch = start_watch(&replica, self.watch_next);
                self.replica = Some(replica);
                Ok(())
            }
            Err(error) => {
                self.corrupt = Some(error.clone());
                Err(error)
            }
        }
    }
}

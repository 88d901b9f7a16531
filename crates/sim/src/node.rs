//! One simulated replica: a Raft node, its disk, its state machine and the client requests it
//! is answering. What survives a crash is exactly what `SimDisk` kept.

use std::collections::BTreeMap;

use ballot_raft::{ConfState, Config, Index, NodeId, RawNode, Ready, RestartState, Snapshot};
use ballot_storage::{PendingSync, SimDisk, Wal, WalOptions};

use ballot_mvcc::Store;

use crate::kv::RequestId;

/// A client waiting for an answer.
pub type ClientId = u64;

/// A replica in the simulation.
#[derive(Debug)]
pub struct SimNode {
    /// Node id.
    pub id: NodeId,
    /// Raft config (reused at every restart).
    pub config: Config,
    /// `None` while crashed or stopped.
    pub raft: Option<RawNode>,
    /// The node's write-ahead log (the production code) on its simulated disk, while running.
    pub wal: Option<Wal<SimDisk>>,
    /// The disk while the node is down.
    pub disk_at_rest: Option<SimDisk>,
    /// WAL options (segment size) for every reopen.
    pub wal_options: WalOptions,
    /// The state machine: the real mvcc store on redb's in-memory backend (rebuilt from the
    /// snapshot and the log after a crash).
    pub kv: Store,
    /// Last index applied to `kv`.
    pub applied: Index,
    /// A `Ready` whose writes are waiting for fsync.
    pub in_flight: Option<(Ready, PendingSync)>,
    /// Bumped at each crash so stale disk completions are ignored.
    pub incarnation: u64,
    /// Writes this node proposed, by request id.
    pub pending_writes: BTreeMap<RequestId, (ClientId, u8)>,
    /// Reads waiting for a read index, by request id.
    pub pending_reads: BTreeMap<RequestId, (ClientId, u8)>,
    /// Reads whose index is known, waiting for `applied` to reach it.
    pub reads_waiting: Vec<(Index, RequestId)>,
    /// Virtual microseconds per tick (clock skew).
    pub tick_us: u64,
    /// Paused until this virtual time (ns), if paused.
    pub paused_until: Option<u64>,
    /// When the current pause began.
    pub paused_at: Option<u64>,
    /// Has been a member of the committed configuration.
    pub was_member: bool,
    /// Left the cluster (removed and stopped for good).
    pub removed: bool,
    /// Compact the log after this many applied entries.
    pub compact_every: u64,
    /// Refused to start from a corrupted disk; stays down (an operator must replace it).
    pub corrupt: Option<String>,
}

impl SimNode {
    /// A brand-new node with the given initial membership (empty for a joining node).
    pub fn new(
        config: Config,
        initial: ConfState,
        tick_us: u64,
        compact_every: u64,
        wal_options: WalOptions,
    ) -> SimNode {
        let raft = RawNode::new(config.clone(), initial).expect("valid simulated config");
        let (wal, _) = Wal::open(SimDisk::new(), wal_options.clone()).expect("an empty disk opens");
        SimNode {
            id: config.id,
            config,
            raft: Some(raft),
            wal: Some(wal),
            disk_at_rest: None,
            wal_options,
            kv: Store::in_memory().expect("an in-memory store opens"),
            applied: 0,
            in_flight: None,
            incarnation: 0,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            reads_waiting: Vec::new(),
            tick_us,
            paused_until: None,
            paused_at: None,
            was_member: false,
            removed: false,
            compact_every,
            corrupt: None,
        }
    }

    /// True if the node is running (not crashed, not removed).
    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }

    /// Loses everything volatile; the disk keeps a random prefix of its unsynced writes.
    pub fn crash(&mut self, rng: &mut ballot_raft::rng::Rng) {
        self.raft = None;
        self.in_flight = None;
        self.incarnation += 1;
        self.pending_writes.clear();
        self.pending_reads.clear();
        self.reads_waiting.clear();
        self.kv = Store::in_memory().expect("an in-memory store opens");
        self.applied = 0;
        self.paused_until = None;
        self.paused_at = None;
        if let Some(wal) = self.wal.take() {
            let mut disk = wal.into_disk();
            disk.crash(rng);
            self.disk_at_rest = Some(disk);
        }
    }

    /// Restarts from the disk: the WAL recovers, the snapshot image is loaded, and the log
    /// replays above it. A disk the WAL finds corrupt keeps the node down, as it must.
    pub fn restart(&mut self) -> Result<(), String> {
        let disk = self.disk_at_rest.take().expect("a stopped node has its disk");
        let (wal, recovered) = match Wal::open(disk, self.wal_options.clone()) {
            Ok(opened) => opened,
            Err(error) => {
                self.corrupt = Some(error.to_string());
                return Err(error.to_string());
            }
        };
        let snapshot = recovered.snapshot.unwrap_or_else(Snapshot::default);
        self.kv = restore_store(&snapshot.data)?;
        self.applied = snapshot.meta.index;
        let state = RestartState {
            hard_state: recovered.hard_state,
            applied: snapshot.meta.index,
            snapshot,
            entries: recovered.entries,
        };
        self.raft = Some(RawNode::restart(self.config.clone(), state).map_err(|e| e.to_string())?);
        self.wal = Some(wal);
        Ok(())
    }
}

/// A store holding a snapshot image (empty data: a new, empty store).
pub fn restore_store(image: &[u8]) -> Result<Store, String> {
    let mut store = Store::in_memory().map_err(|e| e.to_string())?;
    if !image.is_empty() {
        store.install_snapshot([image.to_vec()]).map_err(|e| e.to_string())?;
    }
    Ok(store)
}

/// The store's image as one byte string (the simulator's snapshots are small).
pub fn store_image(store: &Store) -> Vec<u8> {
    store.snapshot_chunks(1 << 20).expect("a read transaction").flat_map(|chunk| chunk.expect("readable")).collect()
}

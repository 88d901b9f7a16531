//! The store: applies committed commands in batches (one redb write transaction per batch, the
//! applied index written in the same transaction), serves reads, compacts history in bounded
//! steps, and hashes its content so replicas can be compared.

use std::collections::HashMap;
use std::path::Path;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::codec::{main_of, revision_key, Record};
use crate::counts;
use crate::etcd_format;
use crate::key_index::KeyIndex;
use crate::read::{read_index, View};
use crate::types::*;
use crate::write::{write_index, Writer};
use crate::{storage_error, Error};

use crate::tables::{
    self, Open, LEASES, LEASE_KEYS, META, META_APPLIED, META_COMPACT, META_COMPACT_CURSOR, META_REVISION, OLD_INDEX,
    OLD_LATEST, REVS,
};

/// What [`Reader`]s read: the database and its key index, both swapped by a defragmentation.
type Shared = (Arc<Database>, Arc<RwLock<KeyIndex>>);

/// Default page cache of a file-backed store.
pub const CACHE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Revisions of history examined per applied batch while a compaction is in progress, so that
/// a huge compaction never stalls applying.
pub const COMPACTION_BATCH_REVISIONS: usize = 1024;

/// The replicated key-value state machine of one member.
pub struct Store {
    /// Only the store writes.
    db: Arc<Database>,
    /// The key index of `db` (see [`crate::key_index`]); only the store changes it.
    index: Arc<RwLock<KeyIndex>>,
    /// What [`Reader`]s read: `db` and `index`, swapped for new ones by a defragmentation.
    readers: Arc<RwLock<Shared>>,
    /// The database file, if on a file (for its size).
    path: Option<std::path::PathBuf>,
    revision: i64,
    compact_revision: i64,
    /// Next main revision the physical compaction will examine (< compact_revision: in progress).
    compaction_cursor: i64,
    applied_index: u64,
    durable_applied_index: u64,
    /// Events of applied changes not yet taken by the watch hub.
    events: Vec<crate::watch::Event>,
    /// Logins applied and not yet taken by the server's token keeper.
    logins: Vec<crate::auth::Login>,
    /// Whether authentication is on, as of the last applied batch (shared with [`Reader`]s, so
    /// requests skip the auth tables while it is off).
    auth_enabled: Arc<AtomicBool>,
    /// The oldest revision with a stamp, once looked up (`i64::MAX`: none); `None`: unknown.
    oldest_stamped: Option<i64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("revision", &self.revision)
            .field("compact_revision", &self.compact_revision)
            .field("applied_index", &self.applied_index)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in a file, with the default page cache.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Self::open_with_cache(path, CACHE_BYTES_DEFAULT)
    }

    /// Opens (or creates) the store in a file with a page cache of `cache_bytes`: the store's
    /// resident memory is about this much, whatever the data size (the OS page cache holds the
    /// rest of the file, shared and reclaimable).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, Error> {
        // A copy a defragmentation left behind when the member stopped before the swap.
        let _ = std::fs::remove_file(defrag_path(path));
        let db = Database::builder().set_cache_size(cache_bytes).create(path).map_err(storage_error)?;
        Self::from_database(db, Some(path.to_path_buf()))
    }

    /// A store in memory (the simulator's: same code, no file).
    pub fn in_memory() -> Result<Store, Error> {
        let db =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(storage_error)?;
        Self::from_database(db, None)
    }

    /// A store on a simulated file that loses unsynced writes on a crash (the simulator's).
    pub fn on_sim_file(file: crate::SimFile) -> Result<Store, Error> {
        let db = Database::builder().create_with_backend(file).map_err(storage_error)?;
        Self::from_database(db, None)
    }

    fn from_database(db: Database, path: Option<std::path::PathBuf>) -> Result<Store, Error> {
        let txn = db.begin_write().map_err(storage_error)?;
        let index;
        // Create every table so reads never meet a missing one; drop the on-disk index of a store
        // written before it moved to memory; a store written before the count index existed gets
        // it built once.
        {
            let mut tables = Open::write(&txn)?;
            index = build_index(&tables.revs, &tables.meta)?;
            if tables.counts.is_empty().map_err(storage_error)? && index.live_count() > 0 {
                counts::rebuild(&mut tables.counts, &index)?;
            }
        }
        txn.delete_table(OLD_INDEX).map_err(storage_error)?;
        txn.delete_table(OLD_LATEST).map_err(storage_error)?;
        txn.commit().map_err(storage_error)?;
        let db = Arc::new(db);
        let index = Arc::new(RwLock::new(index));
        let mut store = Store {
            readers: Arc::new(RwLock::new((db.clone(), index.clone()))),
            index,
            db,
            path,
            revision: 1,
            compact_revision: 0,
            compaction_cursor: 0,
            applied_index: 0,
            durable_applied_index: 0,
            events: Vec::new(),
            logins: Vec::new(),
            auth_enabled: Arc::default(),
            oldest_stamped: None,
        };
        store.reload()?;
        store.durable_applied_index = store.applied_index;
        Ok(store)
    }

    /// Reads the metadata back (after opening or installing a snapshot).
    pub(crate) fn reload(&mut self) -> Result<(), Error> {
        self.oldest_stamped = None;
        let meta = Meta::read(&self.db.begin_read().map_err(storage_error)?)?;
        self.applied_index = meta.applied_index;
        self.revision = meta.revision;
        self.compact_revision = meta.compact_revision;
        self.compaction_cursor = meta.compaction_cursor;
        self.auth_enabled.store(self.reader().auth(|auth| auth.status())?.0, Ordering::SeqCst);
        Ok(())
    }

    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Commits `txn`, which replaces the whole history, and swaps in its key index: under the
    /// readers' lock, so that no reader pairs a transaction of the new history with the old
    /// index or the other way round (readers already under way keep the old index with their
    /// old transaction).
    pub(crate) fn commit_with_index(&mut self, txn: redb::WriteTransaction, index: KeyIndex) -> Result<(), Error> {
        let mut shared = self.readers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        txn.commit().map_err(storage_error)?;
        self.index = Arc::new(RwLock::new(index));
        shared.1 = Arc::clone(&self.index);
        Ok(())
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Reads below this revision fail.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Last log index applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Last log index whose effects are durable (after a crash, replay starts above it).
    pub fn durable_applied_index(&self) -> u64 {
        self.durable_applied_index
    }

    /// Applies a batch of committed commands in one write transaction. An entry at or below the
    /// applied index was applied before (replay after a restart) and is skipped (`None`). The
    /// commit is not durable by itself: see [`Store::make_durable`].
    pub fn apply_batch(&mut self, batch: &[(u64, Command)]) -> Result<Vec<Option<Applied>>, Error> {
        self.apply_stamped(batch, &[], 0)
    }

    /// [`Store::apply_batch`], each command with its entry's stamp (`stamps[i]` for
    /// `batch[i]`; missing or 0: none): a command that makes a revision records the revision's
    /// stamp, for reads as of a time ([`Reader::revision_at`]). `newest` is the newest stamp
    /// of every entry applied with the batch, commands or not ([`tables::META_LAST_STAMP`]).
    ///
    /// A revision never records a stamp below the newest one applied before it: it records
    /// that one instead (the time it became visible, not the time it was proposed). A Raft log
    /// is stamped in increasing order, so this changes nothing there; a Multi-Paxos log is not
    /// (a slot re-proposed by a later leader keeps its first proposer's stamp), and a revision
    /// recorded under an earlier stamp than the one before it would let a read as of a time
    /// see a write made after that time.
    pub fn apply_stamped(
        &mut self,
        batch: &[(u64, Command)],
        stamps: &[u64],
        newest: u64,
    ) -> Result<Vec<Option<Applied>>, Error> {
        // Nothing to apply and no compaction in progress: no transaction at all.
        if batch.iter().all(|(index, _)| *index <= self.applied_index) && !self.compacting() {
            return Ok(vec![None; batch.len()]);
        }
        let mut made: Vec<(u64, i64)> = Vec::new();
        let mut txn = self.db.begin_write().map_err(storage_error)?;
        txn.set_durability(Durability::None).map_err(storage_error)?;
        let mut results = Vec::with_capacity(batch.len());
        let key_index = Arc::clone(&self.index);
        {
            let Open { revs, leases, lease_keys, mut meta, alarms, counts, members, members_removed, auth } =
                Open::write(&txn)?;
            let mut others = Others { alarms, members, members_removed, auth, logins: Vec::new() };
            let mut auth_changed = false;
            let mut writer = Writer {
                revs,
                index: &key_index,
                leases,
                lease_keys,
                counts,
                revision: self.revision,
                compact_revision: self.compact_revision,
                changes: 0,
                events: Vec::new(),
            };
            let mut applied_index = self.applied_index;
            let stamped = newest > 0 || stamps.iter().any(|stamp| *stamp > 0);
            let known_stamp = if stamped {
                meta.get(tables::META_LAST_STAMP).map_err(storage_error)?.map_or(0, |v| v.value())
            } else {
                0
            };
            let mut floor = known_stamp;
            // Alarms change only through Alarm commands: look once per batch, again after one.
            let mut no_space = tables::no_space(&others.alarms)?;
            let mut corrupt = tables::corrupt(&others.alarms)?;
            for (position, (index, command)) in batch.iter().enumerate() {
                if *index <= applied_index {
                    results.push(None);
                    continue;
                }
                let revision_before = writer.revision;
                applied_index = *index;
                let result = if corrupt && refused_when_corrupt(command) {
                    Err(Error::Corrupt)
                } else {
                    self.execute(&mut writer, &mut others, no_space, command)
                };
                auth_changed |= matches!(command.inner(), Command::Auth(_));
                if matches!(command.inner(), Command::Alarm { .. }) {
                    no_space = tables::no_space(&others.alarms)?;
                    corrupt = tables::corrupt(&others.alarms)?;
                }
                let result = match result {
                    Err(Error::Storage(message)) => return Err(Error::Storage(message)),
                    // A refused command must leave no trace: etcd validates before writing, and
                    // so do the write paths here; a change made before an error is a bug.
                    Err(error) => {
                        assert_eq!(writer.changes, 0, "a failed command changed the store: {command:?}");
                        Err(error)
                    }
                    ok => ok,
                };
                let revision = writer.finish_command();
                let stamp = stamps.get(position).copied().unwrap_or(0);
                if stamp > 0 {
                    floor = floor.max(stamp);
                    if revision > revision_before {
                        made.push((floor, revision));
                    }
                }
                results.push(Some(Applied { result, revision }));
            }
            let cursor = compact_step(&mut writer, self.compact_revision, self.compaction_cursor)?;
            meta.insert(META_APPLIED, applied_index).map_err(storage_error)?;
            if stamped && floor.max(newest) > known_stamp {
                meta.insert(tables::META_LAST_STAMP, floor.max(newest)).map_err(storage_error)?;
            }
            meta.insert(META_REVISION, writer.revision as u64).map_err(storage_error)?;
            meta.insert(META_COMPACT, writer.compact_revision as u64).map_err(storage_error)?;
            meta.insert(META_COMPACT_CURSOR, cursor as u64).map_err(storage_error)?;
            self.revision = writer.revision;
            self.compact_revision = writer.compact_revision;
            self.compaction_cursor = cursor;
            self.applied_index = applied_index;
            self.events.append(&mut writer.events);
            self.logins.append(&mut others.logins);
            // Written when the batch made stamped revisions, or compaction left stamps to trim
            // (each batch trims a bounded number).
            if !made.is_empty() || self.stamps_below(writer.compact_revision) {
                self.oldest_stamped = Some(record_stamps(&txn, &made, writer.compact_revision)?);
            }
            if auth_changed {
                self.auth_enabled.store(others.auth.status()?.0, Ordering::SeqCst);
            }
        }
        txn.commit().map_err(storage_error)?;
        Ok(results)
    }

    /// Whether stamps of compacted revisions may remain (checked cheaply: the store remembers
    /// the oldest stamped revision once it has looked).
    fn stamps_below(&mut self, compact_revision: i64) -> bool {
        match self.oldest_stamped {
            Some(oldest) => oldest < compact_revision,
            None => {
                let oldest = self
                    .db
                    .begin_read()
                    .ok()
                    .and_then(|read| read.open_table(tables::STAMPS).ok())
                    .and_then(|table| table.first().ok().flatten().map(|(_, revision)| revision.value()));
                self.oldest_stamped = Some(oldest.unwrap_or(i64::MAX));
                oldest.is_some_and(|oldest| oldest < compact_revision)
            }
        }
    }

    fn execute(
        &self,
        writer: &mut Writer,
        others: &mut Others,
        no_space: bool,
        command: &Command,
    ) -> Result<Response, Error> {
        // Under NOSPACE, etcd refuses what adds data (puts, txns with puts, lease grants) and
        // allows what frees it (deletes, revokes, compaction).
        if no_space && adds_data(command) {
            return Err(Error::NoSpace);
        }
        Ok(match command {
            Command::AsUser { user, revision, command } => {
                others.auth.check_command(user, *revision, command, &writer.lease_keys)?;
                return self.execute(writer, others, no_space, command);
            }
            Command::Auth(auth) => {
                crate::auth::apply(&mut others.auth, auth, &mut others.logins)?;
                Response::Done
            }
            Command::Members(changes) => {
                for change in changes {
                    others.change_member(change)?;
                }
                Response::Done
            }
            Command::Alarm { activate, kind, member_id } => {
                let alarms = &mut others.alarms;
                let key = (alarm_code(*kind), *member_id);
                let was_raised = if *activate {
                    alarms.insert(key, ()).map_err(storage_error)?.is_some()
                } else {
                    alarms.remove(key).map_err(storage_error)?.is_some()
                };
                Response::Alarm { was_raised }
            }
            // The API refuses keys under the znode prefix before proposing; applying refuses
            // them again so that no path around the API can damage the tree.
            Command::Put(put) if crate::read::reserved(&put.key) => return Err(Error::ReservedKey),
            Command::DeleteRange(delete) if crate::read::reserved(&delete.key) => return Err(Error::ReservedKey),
            Command::Put(put) => Response::Put(writer.put(put)?),
            Command::DeleteRange(delete) => Response::DeleteRange(writer.delete_range(delete)?),
            Command::Txn(txn) => {
                crate::write::check_reserved(txn)?;
                Response::Txn(writer.txn(txn)?)
            }
            Command::Compact { revision } => {
                if *revision > writer.revision {
                    return Err(Error::FutureRevision);
                }
                if *revision <= writer.compact_revision {
                    return Err(Error::Compacted);
                }
                writer.compact_revision = *revision;
                write_index(writer.index).set_compact_revision(*revision);
                Response::Done
            }
            Command::LeaseGrant { id, ttl } => {
                writer.lease_grant(*id, *ttl)?;
                Response::Done
            }
            Command::LeaseRevoke { id } => {
                writer.lease_revoke(*id)?;
                Response::Done
            }
            Command::LeaseCheckpoint { id, remaining_ttl } => {
                writer.lease_checkpoint(*id, *remaining_ttl)?;
                Response::Done
            }
            Command::Zk(write) => Response::Zk(writer.zk(write)?),
            Command::ZkSession { id, ttl, password } => {
                writer.zk_session(*id, *ttl, password)?;
                Response::Done
            }
        })
    }

    /// Makes everything applied so far durable (one fsync). The caller decides when: at most
    /// every ~100 ms or N entries (DESIGN.md §4); the WAL holds the truth meanwhile.
    pub fn make_durable(&mut self) -> Result<(), Error> {
        let mut txn = self.db.begin_write().map_err(storage_error)?;
        txn.set_durability(Durability::Immediate).map_err(storage_error)?;
        txn.commit().map_err(storage_error)?;
        self.durable_applied_index = self.applied_index;
        Ok(())
    }

    /// The events of everything applied since the last call, in revision order (for
    /// [`crate::WatchHub::notify`]).
    pub fn take_events(&mut self) -> Vec<crate::watch::Event> {
        std::mem::take(&mut self.events)
    }

    /// The logins applied since the last call (for the server's token keeper).
    pub fn take_logins(&mut self) -> Vec<crate::auth::Login> {
        std::mem::take(&mut self.logins)
    }

    /// The member table (by id) and the ids of removed members.
    pub fn members(&self) -> Result<(Vec<MemberRecord>, Vec<u64>), Error> {
        let read = self.db.begin_read().map_err(storage_error)?;
        let members = read.open_table(tables::MEMBERS).map_err(storage_error)?;
        let mut records = Vec::new();
        for item in members.iter().map_err(storage_error)? {
            let (_, value) = item.map_err(storage_error)?;
            records.push(
                crate::command_codec::decode_member(value.value())
                    .map_err(|error| Error::Storage(format!("member table: {error}")))?,
            );
        }
        let removed = read.open_table(tables::MEMBERS_REMOVED).map_err(storage_error)?;
        let removed = removed
            .iter()
            .map_err(storage_error)?
            .map(|item| item.map(|(id, _)| id.value()).map_err(storage_error))
            .collect::<Result<_, _>>()?;
        Ok((records, removed))
    }

    /// The raised alarms, as (kind, member id).
    pub fn alarms(&self) -> Result<Vec<(AlarmKind, u64)>, Error> {
        alarms_in(&self.db.begin_read().map_err(storage_error)?)
    }

    /// The backend's size: what the space quota is checked against (as etcd checks its bbolt
    /// file's size). On a file, the file's length: O(1), where counting allocated pages walks
    /// every page of the database (a 450 ms stall of the Raft loop at 180 MB with a small
    /// cache). In memory, the allocated pages.
    pub fn size_bytes(&self) -> Result<u64, Error> {
        if let Some(path) = &self.path {
            return std::fs::metadata(path).map(|meta| meta.len()).map_err(|error| Error::Storage(error.to_string()));
        }
        self.size_in_use_bytes()
    }

    /// Bytes of allocated pages: what the file would shrink to. Costly (it walks every page of
    /// the database): for the rare moment the file is over its quota.
    pub fn size_in_use_bytes(&self) -> Result<u64, Error> {
        let txn = self.db.begin_write().map_err(storage_error)?;
        let stats = txn.stats().map_err(storage_error)?;
        let bytes = stats.allocated_pages() * stats.page_size() as u64;
        txn.abort().map_err(storage_error)?;
        Ok(bytes)
    }

    /// True while a compaction is still removing history.
    pub fn compacting(&self) -> bool {
        self.compaction_cursor < self.compact_revision
    }

    /// A handle for reads from other threads, alongside the thread that applies.
    pub fn reader(&self) -> Reader {
        Reader { readers: Arc::clone(&self.readers), auth_enabled: Arc::clone(&self.auth_enabled) }
    }

    /// The store's file (`None` off a file).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file a defragmentation copies this store into (`None` off a file).
    pub fn defrag_path(&self) -> Option<std::path::PathBuf> {
        self.path.as_deref().map(defrag_path)
    }

    /// Takes the place of this store with `copy`, a compacted copy made by
    /// [`Reader::compacted_copy`] and brought up to date since: the copy is made durable and
    /// renamed over this store's file (then the directory synced), and readers turn to it. A
    /// crash before the rename leaves this store's file in place (the copy is removed at the
    /// next open); after it, the copy is the store.
    ///
    /// Returns the old store: dropping it closes its database, which writes and syncs what it
    /// had not made durable, so a caller on a latency-sensitive thread drops it elsewhere.
    pub fn replace_with(&mut self, mut copy: Store) -> Result<Store, Error> {
        let (Some(path), Some(from)) = (self.path.clone(), copy.path.clone()) else {
            return Err(Error::Storage("only a store on a file is defragmented".into()));
        };
        let io = |error: std::io::Error| Error::Storage(format!("defragment: {error}"));
        copy.make_durable()?;
        std::fs::rename(&from, &path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        }
        copy.path = Some(path);
        copy.events = std::mem::take(&mut self.events);
        copy.logins = std::mem::take(&mut self.logins);
        // Readers handed out keep seeing the switch: the copy shares the same flag.
        self.auth_enabled.store(copy.auth_enabled.load(Ordering::SeqCst), Ordering::SeqCst);
        copy.auth_enabled = Arc::clone(&self.auth_enabled);
        *self.readers.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = (copy.db.clone(), copy.index.clone());
        copy.readers = Arc::clone(&self.readers);
        Ok(std::mem::replace(self, copy))
    }

    /// etcd's Range, at the current revision or a past one.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        let read = self.db.begin_read().map_err(storage_error)?;
        range_in(&read, &self.index, request, self.revision, self.compact_revision)
    }

    /// A lease and the keys attached to it, or `None` if it does not exist.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseInfo>, Error> {
        let read = self.db.begin_read().map_err(storage_error)?;
        let leases = read.open_table(LEASES).map_err(storage_error)?;
        let Some(entry) = leases.get(id).map_err(storage_error)? else { return Ok(None) };
        let (ttl, remaining_ttl) = entry.value();
        let keys = tables::attached_keys(&read.open_table(LEASE_KEYS).map_err(storage_error)?, id)?;
        Ok(Some(LeaseInfo { lease: Lease { id, ttl, remaining_ttl }, keys }))
    }

    /// Every lease.
    pub fn leases(&self) -> Result<Vec<Lease>, Error> {
        let read = self.db.begin_read().map_err(storage_error)?;
        let leases = read.open_table(LEASES).map_err(storage_error)?;
        leases
            .iter()
            .map_err(storage_error)?
            .map(|item| {
                let (id, value) = item.map_err(storage_error)?;
                let (ttl, remaining_ttl) = value.value();
                Ok(Lease { id: id.value(), ttl, remaining_ttl })
            })
            .collect()
    }

    /// etcd's HashKV: a checksum of all history up to `revision` (0: current), with the
    /// compact revision it covers. Replicas at the same applied index agree, and so does etcd
    /// holding the same history (see [`hash_in`]).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), Error> {
        let (hash, compact_revision, _) = hash_in(&self.db.begin_read().map_err(storage_error)?, revision)?;
        Ok((hash, compact_revision))
    }
}

/// The hash of the history up to `revision` (0: the current one) as one read transaction sees
/// it: (hash, compact revision, current revision).
///
/// It is etcd's: CRC-32C of `key`, then of each revision's etcd bytes (the bbolt key and the
/// `mvccpb.KeyValue`, see [`crate::etcd_format`]) in revision order. At or below the compact
/// revision only what etcd's index keeps for `revision` counts: a key's newest state at or
/// below `revision`, if not a tombstone. Compaction removes the rest in steps that depend on
/// how each member's entries were batched, so what is left of it differs from member to member
/// while a compaction runs. One departure: etcd counts everything left below the compact
/// revision when no key at all is live at `revision`; that sum depends on compaction's
/// progress, so here it is never counted (the hashes then differ from etcd's, never between
/// members).
fn hash_in(read: &redb::ReadTransaction, revision: i64) -> Result<(u32, i64, i64), Error> {
    let meta = Meta::read(read)?;
    // As etcd: a revision asked for by number must be above the compact revision (the
    // current one, asked for as 0, may equal it).
    if revision > 0 && revision <= meta.compact_revision {
        return Err(Error::Compacted);
    }
    let revision = if revision <= 0 { meta.revision } else { revision };
    if revision > meta.revision {
        return Err(Error::FutureRevision);
    }
    let revs = read.open_table(REVS).map_err(storage_error)?;
    let compact = meta.compact_revision;
    let upto = ..revision_key(revision + 1, 0);
    // Each key's newest main revision at or below `revision`, from this transaction alone (the
    // key index may be ahead of it, and compacted further).
    let mut newest: HashMap<Vec<u8>, i64> = HashMap::new();
    for item in revs.range(upto).map_err(storage_error)? {
        let (key, value) = item.map_err(storage_error)?;
        let (_, _, _, _, name) = crate::codec::decode_head(value.value())?;
        match newest.get_mut(name) {
            Some(main) => *main = main_of(key.value()),
            None => {
                newest.insert(name.to_vec(), main_of(key.value()));
            }
        }
    }
    let mut hash = crc32c::crc32c(b"key");
    for item in revs.range(upto).map_err(storage_error)? {
        let (key, value) = item.map_err(storage_error)?;
        let (main, sub) = (main_of(key.value()), key.value() as u64 as i64);
        let record = Record::decode(value.value())?;
        // At or below the compact revision: only a key's newest state, if not a tombstone.
        if main <= compact && (record.tombstone || newest.get(&record.key) != Some(&main)) {
            continue;
        }
        hash = crc32c::crc32c_append(hash, &etcd_format::revision_bytes(main, sub, record.tombstone));
        hash = crc32c::crc32c_append(hash, &etcd_format::encode_key_value(&record, main));
    }
    Ok((hash, compact, meta.revision))
}

/// The key index of a store's history, with the store's compact revision.
fn build_index(
    revs: &impl ReadableTable<u128, &'static [u8]>,
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<KeyIndex, Error> {
    let mut index = KeyIndex::new();
    for item in revs.iter().map_err(storage_error)? {
        let (key, value) = item.map_err(storage_error)?;
        let (main, sub) = (main_of(key.value()), key.value() as u64 as i64);
        let (tombstone, create_revision, version, lease, name) = crate::codec::decode_head(value.value())?;
        index.record(name, main, sub, (!tombstone).then_some((create_revision, version, lease)));
    }
    let compact = meta.get(META_COMPACT).map_err(storage_error)?.map_or(0, |v| v.value());
    index.set_compact_revision(compact as i64);
    Ok(index)
}

/// What etcd refuses under the CORRUPT alarm: everything that reads or changes the key space
/// or leases' lives; alarms, lease checkpoints and member changes (to replace the member at
/// fault) go on.
fn refused_when_corrupt(command: &Command) -> bool {
    !matches!(
        command.inner(),
        Command::Alarm { .. } | Command::LeaseCheckpoint { .. } | Command::Members(_) | Command::Auth(_)
    )
}

/// The tables besides the history's that commands change.
struct Others<'t> {
    alarms: redb::Table<'t, (u8, u64), ()>,
    members: redb::Table<'t, u64, &'static [u8]>,
    members_removed: redb::Table<'t, u64, ()>,
    auth: tables::WriteAuth<'t>,
    logins: Vec<crate::auth::Login>,
}

impl Others<'_> {
    fn member(&self, id: u64) -> Result<Option<MemberRecord>, Error> {
        let Some(value) = self.members.get(id).map_err(storage_error)? else { return Ok(None) };
        let record = crate::command_codec::decode_member(value.value())
            .map_err(|error| Error::Storage(format!("member table: {error}")))?;
        Ok(Some(record))
    }

    fn change_member(&mut self, change: &MemberChange) -> Result<(), Error> {
        let updated = match change {
            MemberChange::Upsert(record) => {
                if self.members_removed.get(record.id).map_err(storage_error)?.is_some() {
                    return Ok(());
                }
                Some(record.clone())
            }
            MemberChange::Remove(id) => {
                self.members.remove(*id).map_err(storage_error)?;
                self.members_removed.insert(*id, ()).map_err(storage_error)?;
                None
            }
            MemberChange::SetPeerUrls { id, peer_urls } => {
                self.member(*id)?.map(|record| MemberRecord { peer_urls: peer_urls.clone(), ..record })
            }
            MemberChange::Publish { id, name, client_urls } => self.member(*id)?.map(|record| MemberRecord {
                name: name.clone(),
                client_urls: client_urls.clone(),
                ..record
            }),
        };
        if let Some(record) = updated {
            let bytes = crate::command_codec::encode_member(&record);
            self.members.insert(record.id, bytes.as_slice()).map_err(storage_error)?;
        }
        Ok(())
    }
}

fn alarm_code(kind: AlarmKind) -> u8 {
    match kind {
        AlarmKind::NoSpace => tables::NO_SPACE_CODE,
        AlarmKind::Corrupt => tables::CORRUPT_CODE,
    }
}

fn adds_data(command: &Command) -> bool {
    fn puts(ops: &[RequestOp]) -> bool {
        ops.iter().any(|op| match op {
            RequestOp::Put(_) => true,
            RequestOp::Txn(txn) => puts(&txn.success) || puts(&txn.failure),
            _ => false,
        })
    }
    match command.inner() {
        Command::Put(_) | Command::LeaseGrant { .. } | Command::ZkSession { .. } => true,
        Command::Txn(txn) => puts(&txn.success) || puts(&txn.failure),
        Command::Zk(write) => write.ops.iter().any(|op| !matches!(op, ballot_zk::tree::Op::Delete { .. })),
        _ => false,
    }
}

/// Removes up to [`COMPACTION_BATCH_REVISIONS`] revisions of history below `compact_revision`,
/// starting at `cursor`; returns the new cursor. A key's newest revision at or below the compact
/// revision is kept (reads at the compact revision still see it) unless it is a tombstone.
fn compact_step(writer: &mut Writer, compact_revision: i64, cursor: i64) -> Result<i64, Error> {
    if cursor >= compact_revision {
        return Ok(cursor);
    }
    let candidates: Vec<(u128, Record)> = writer
        .revs
        .range(revision_key(cursor, 0)..revision_key(compact_revision + 1, 0))
        .map_err(storage_error)?
        .take(COMPACTION_BATCH_REVISIONS)
        .map(|item| {
            let (key, value) = item.map_err(storage_error)?;
            Ok((key.value(), Record::decode(value.value())?))
        })
        .collect::<Result<_, Error>>()?;
    let done = candidates.len() < COMPACTION_BATCH_REVISIONS;
    let mut next = cursor;
    for (revision, record) in &candidates {
        let main = main_of(*revision);
        next = main;
        // Anything older of this key is superseded by this revision (itself at or below the
        // compact revision), including revisions a previous compaction kept below its cursor.
        let older = read_index(writer.index).older_than(&record.key, main);
        for old in older {
            writer.revs.remove(revision_key(old.main, old.sub)).map_err(storage_error)?;
            write_index(writer.index).remove(&record.key, old.main);
        }
        // Superseded by a newer revision of the same key at or below the compact revision?
        let superseded = read_index(writer.index).has_revision_between(&record.key, main, compact_revision);
        if superseded || record.tombstone {
            writer.revs.remove(*revision).map_err(storage_error)?;
            write_index(writer.index).remove(&record.key, main);
        }
    }
    if done {
        return Ok(compact_revision);
    }
    // Resume at the last main revision seen (its remaining sub revisions are examined again,
    // harmlessly: what was kept is kept again).
    Ok(next)
}

/// Reads the store from any thread, each read in its own redb read transaction: it sees the
/// state of some applied batch, at least every batch applied before the read began. A server
/// serves its reads with one so they need not queue behind the thread that applies.
#[derive(Clone)]
pub struct Reader {
    readers: Arc<RwLock<Shared>>,
    auth_enabled: Arc<AtomicBool>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// The newest revision stamped at or before `stamp` (see [`StampedRevision`]).
    pub fn revision_at(&self, stamp: u64) -> Result<Option<StampedRevision>, Error> {
        let read = self.readers.read().unwrap_or_else(|poisoned| poisoned.into_inner()).0.begin_read();
        revision_at_in(&read.map_err(storage_error)?, stamp)
    }

    /// A consistent image of the store, in chunks, from any thread (see
    /// [`Store::snapshot_chunks`]); the read transaction lives as long as the iterator.
    pub fn snapshot_chunks(&self, chunk_bytes: usize) -> Result<crate::SnapshotChunks, Error> {
        crate::SnapshotChunks::of(&self.db(), chunk_bytes)
    }

    /// [`Store::hash_kv`] from any thread, with the store's revision it was computed at:
    /// (hash, compact revision, current revision).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), Error> {
        hash_in(&self.db().begin_read().map_err(storage_error)?, revision)
    }

    /// Whether authentication is on, as of the last applied batch.
    pub fn auth_enabled(&self) -> bool {
        self.auth_enabled.load(Ordering::SeqCst)
    }

    /// Runs `read` on the auth tables of one read transaction (see [`crate::auth`]).
    pub fn auth<T>(&self, read: impl FnOnce(&ReadAuth) -> Result<T, Error>) -> Result<T, Error> {
        let txn = self.db().begin_read().map_err(storage_error)?;
        let tables = crate::auth::AuthTables {
            auth: txn.open_table(tables::AUTH).map_err(storage_error)?,
            users: txn.open_table(tables::AUTH_USERS).map_err(storage_error)?,
            roles: txn.open_table(tables::AUTH_ROLES).map_err(storage_error)?,
        };
        read(&tables)
    }

    fn db(&self) -> Arc<Database> {
        self.shared().0
    }

    fn shared(&self) -> Shared {
        self.readers.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// A compacted copy of the store in a new file at `path` (replaced if it exists), with a
    /// page cache of `cache_bytes`: what a defragmentation swaps in. Copied from one read
    /// transaction, so it holds the store as of one applied index; the live store goes on
    /// meanwhile, and the copy must be brought up to date before the swap.
    pub fn compacted_copy(&self, path: &Path, cache_bytes: usize) -> Result<Store, Error> {
        let io = |error: std::io::Error| Error::Storage(format!("defragment: {error}"));
        if path.exists() {
            std::fs::remove_file(path).map_err(io)?;
        }
        let db = Database::builder().set_cache_size(cache_bytes).create(path).map_err(storage_error)?;
        let mut copy = Store::from_database(db, Some(path.to_path_buf()))?;
        let mut failed = None;
        // The copy's pages are synced as it grows, a slice at a time: left to the end, gigabytes
        // of dirty pages would be flushed at once, and the member's log fsyncs would wait
        // behind them (ext4 orders its journal after dirty data).
        let file = std::fs::File::open(path).map_err(io)?;
        let mut unsynced = 0usize;
        let chunks = self.snapshot_chunks(4 << 20)?.map_while(|chunk| match chunk {
            Ok(chunk) => {
                unsynced += chunk.len();
                if unsynced >= COPY_SYNC_BYTES {
                    unsynced = 0;
                    if let Err(error) = file.sync_data() {
                        failed = Some(Error::Storage(format!("defragment: {error}")));
                        return None;
                    }
                }
                Some(chunk)
            }
            Err(error) => {
                failed = Some(error);
                None
            }
        });
        let installed = copy.install_snapshot(chunks);
        if let Some(error) = failed {
            return Err(error);
        }
        installed?;
        Ok(copy)
    }

    /// The newest revision's stamp (0: no stamped revision), from which a restarted leader's
    /// clock continues.
    pub fn last_stamp(&self) -> Result<u64, Error> {
        last_stamp_in(&self.db().begin_read().map_err(storage_error)?)
    }

    /// The store's revision as of the last applied batch.
    pub fn revision(&self) -> Result<i64, Error> {
        Ok(Meta::read(&self.db().begin_read().map_err(storage_error)?)?.revision)
    }

    /// The raised alarms, as (kind, member id).
    pub fn alarms(&self) -> Result<Vec<(AlarmKind, u64)>, Error> {
        alarms_in(&self.db().begin_read().map_err(storage_error)?)
    }

    /// Live keys.
    pub fn keys_total(&self) -> Result<u64, Error> {
        Ok(read_index(&self.shared().1).live_count())
    }

    /// The bytes of the pages the tables use, from one read transaction (off the applying
    /// thread, unlike [`Store::size_in_use_bytes`], which counts exactly but walks every page
    /// under the write lock): what a defragmented file would roughly need. Costly on a large
    /// store (it visits every page of every table): callers cache it.
    pub fn size_in_use_estimate(&self) -> Result<u64, Error> {
        use redb::ReadableTableMetadata;
        /// redb's page size (its default, which ballot keeps).
        const PAGE_BYTES: u64 = 4096;
        let read = self.db().begin_read().map_err(storage_error)?;
        let mut pages = 0;
        for handle in read.list_tables().map_err(storage_error)? {
            let stats = read.open_untyped_table(handle).map_err(storage_error)?.stats().map_err(storage_error)?;
            pages += stats.leaf_pages() + stats.branch_pages();
        }
        Ok(pages * PAGE_BYTES)
    }

    /// etcd's Range, at the current revision or a past one, and the store's revision it was
    /// served at (for the response header).
    pub fn range(&self, request: &RangeRequest) -> Result<(RangeResponse, i64), Error> {
        self.at_current_revision(|view| view.range(request))
    }

    /// A txn that only reads ([`crate::read::is_read_only`]), served at the current revision
    /// without going through the log; with the store's revision it was served at.
    pub fn read_only_txn(&self, request: &TxnRequest) -> Result<(TxnResponse, i64), Error> {
        self.at_current_revision(|view| view.read_only_txn(request))
    }

    /// Runs `read_with` on a view at the store's current revision, and gives that revision.
    /// The read transaction begins under the readers' lock, so it and the key index belong
    /// together (a snapshot install swaps both under that lock).
    fn at_current_revision<T>(
        &self,
        read_with: impl FnOnce(&ReadView<'_>) -> Result<T, Error>,
    ) -> Result<(T, i64), Error> {
        let (read, index) = {
            let shared = self.readers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            (shared.0.begin_read().map_err(storage_error)?, Arc::clone(&shared.1))
        };
        let meta = Meta::read(&read)?;
        Ok((in_view(&read, &index, meta.revision, meta.compact_revision, read_with)?, meta.revision))
    }
}

/// A revision found by its time: the newest revision stamped at or before the time asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StampedRevision {
    /// The revision.
    pub revision: i64,
    /// Its entry's stamp (hybrid logical clock: ms since the epoch << 16, plus a counter).
    pub stamp: u64,
}

/// Looks up the newest revision stamped at or before `stamp` in a read transaction; `Ok(None)`
/// if every kept stamp is later. `Compacted` if the revision found is below the compact
/// revision, or if compaction removed the stamps that would have answered.
fn revision_at_in(read: &redb::ReadTransaction, stamp: u64) -> Result<Option<StampedRevision>, Error> {
    let table = match read.open_table(tables::STAMPS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(storage_error(error)),
    };
    let meta = Meta::read(read)?;
    let found = table.range(..=stamp).map_err(storage_error)?.next_back().transpose().map_err(storage_error)?;
    match found {
        Some((stamp, revision)) if revision.value() >= meta.compact_revision => {
            Ok(Some(StampedRevision { revision: revision.value(), stamp: stamp.value() }))
        }
        Some(_) => Err(Error::Compacted),
        None if meta.compact_revision > 1 => Err(Error::Compacted),
        None => Ok(None),
    }
}

/// The newest stamp of any applied entry in a read transaction (0: none).
fn last_stamp_in(read: &redb::ReadTransaction) -> Result<u64, Error> {
    let meta = read.open_table(tables::META).map_err(storage_error)?;
    let entry = meta.get(tables::META_LAST_STAMP).map_err(storage_error)?.map_or(0, |v| v.value());
    let revision = match read.open_table(tables::STAMPS) {
        Ok(table) => table.last().map_err(storage_error)?.map_or(0, |(stamp, _)| stamp.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(error) => return Err(storage_error(error)),
    };
    Ok(entry.max(revision))
}

/// Stamp rows removed per applied batch once their revisions are compacted.
const STAMP_TRIM_BATCH: usize = 1024;

/// Writes the stamps of the revisions a batch made and trims those of compacted revisions;
/// returns the oldest stamped revision left (`i64::MAX`: none).
fn record_stamps(txn: &redb::WriteTransaction, made: &[(u64, i64)], compact_revision: i64) -> Result<i64, Error> {
    let mut table = txn.open_table(tables::STAMPS).map_err(storage_error)?;
    for (stamp, revision) in made {
        table.insert(stamp, revision).map_err(storage_error)?;
    }
    let compacted: Vec<u64> = table
        .iter()
        .map_err(storage_error)?
        .take(STAMP_TRIM_BATCH)
        .map_while(|item| item.ok().filter(|(_, revision)| revision.value() < compact_revision).map(|(s, _)| s.value()))
        .collect();
    for stamp in compacted {
        table.remove(stamp).map_err(storage_error)?;
    }
    let oldest = table.first().map_err(storage_error)?.map_or(i64::MAX, |(_, revision)| revision.value());
    Ok(oldest)
}

/// The raised alarms in a read transaction, as (kind, member id).
fn alarms_in(read: &redb::ReadTransaction) -> Result<Vec<(AlarmKind, u64)>, Error> {
    let alarms = read.open_table(tables::ALARMS).map_err(storage_error)?;
    alarms
        .iter()
        .map_err(storage_error)?
        .map(|item| {
            let (key, _) = item.map_err(storage_error)?;
            let (code, member) = key.value();
            let kind = if code == alarm_code(AlarmKind::NoSpace) { AlarmKind::NoSpace } else { AlarmKind::Corrupt };
            Ok((kind, member))
        })
        .collect()
}

/// The auth tables in a read transaction.
pub type ReadAuth = crate::auth::AuthTables<
    redb::ReadOnlyTable<&'static str, u64>,
    redb::ReadOnlyTable<&'static str, &'static [u8]>,
    redb::ReadOnlyTable<&'static str, &'static [u8]>,
>;

/// How much of a defragmentation's copy is written between syncs of its file.
const COPY_SYNC_BYTES: usize = 32 << 20;

/// Where a defragmentation copies the store at `path`.
fn defrag_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("defrag")
}

/// The store's metadata as one read transaction sees it.
struct Meta {
    applied_index: u64,
    revision: i64,
    compact_revision: i64,
    compaction_cursor: i64,
}

impl Meta {
    fn read(read: &redb::ReadTransaction) -> Result<Meta, Error> {
        let meta = read.open_table(META).map_err(storage_error)?;
        let get =
            |name: &str| -> Result<u64, Error> { Ok(meta.get(name).map_err(storage_error)?.map_or(0, |v| v.value())) };
        Ok(Meta {
            applied_index: get(META_APPLIED)?,
            // etcd starts at revision 1: the first write is revision 2.
            revision: get(META_REVISION)?.max(1) as i64,
            compact_revision: get(META_COMPACT)? as i64,
            compaction_cursor: get(META_COMPACT_CURSOR)? as i64,
        })
    }
}

/// etcd's Range in a read transaction, at a store revision and compact revision.
fn range_in(
    read: &redb::ReadTransaction,
    index: &RwLock<KeyIndex>,
    request: &RangeRequest,
    revision: i64,
    compact_revision: i64,
) -> Result<RangeResponse, Error> {
    in_view(read, index, revision, compact_revision, |view| view.range(request))
}

/// A read transaction's view at `revision`.
type ReadView<'a> = View<'a, redb::ReadOnlyTable<u128, &'static [u8]>, redb::ReadOnlyTable<&'static [u8], u64>>;

/// Runs `read_with` on a view of `read` at `revision`.
fn in_view<T>(
    read: &redb::ReadTransaction,
    index: &RwLock<KeyIndex>,
    revision: i64,
    compact_revision: i64,
    read_with: impl FnOnce(&ReadView<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let revs = read.open_table(REVS).map_err(storage_error)?;
    let counts = read.open_table(tables::COUNTS).map_err(storage_error)?;
    read_with(&View { index, revs: &revs, counts: &counts, revision, compact_revision })
}

#[cfg(test)]
mod reader_behind_the_index {
    use super::*;

    fn put(store: &mut Store, index: u64, key: &str, value: &str) {
        let put = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        store.apply_batch(&[(index, Command::Put(put))]).unwrap();
    }

    fn value_at(read: &redb::ReadTransaction, store: &Store, key: &str, revision: i64) -> Result<Vec<String>, Error> {
        let meta = Meta::read(read)?;
        let request = RangeRequest { key: key.into(), revision, ..Default::default() };
        let got = range_in(read, &store.index, &request, meta.revision, meta.compact_revision)?;
        Ok(got.kvs.into_iter().map(|kv| String::from_utf8(kv.value).unwrap()).collect())
    }

    /// A read transaction taken before later writes, deletes and a finished compaction reads
    /// its own revision through the index the writer has moved on (what a reader off the
    /// applying thread meets when a batch lands during its read).
    #[test]
    fn a_transaction_older_than_the_index_reads_its_own_revision() {
        let mut store = Store::in_memory().unwrap();
        put(&mut store, 1, "a", "1"); // revision 2
        put(&mut store, 2, "a", "2"); // 3
        put(&mut store, 3, "b", "1"); // 4
        let old = store.db.begin_read().unwrap();
        put(&mut store, 4, "a", "3"); // 5
        let delete = DeleteRangeRequest { key: b"b".to_vec(), ..Default::default() };
        store.apply_batch(&[(5, Command::DeleteRange(delete))]).unwrap(); // 6
        store.apply_batch(&[(6, Command::Compact { revision: 3 })]).unwrap();
        put(&mut store, 7, "c", "1"); // 7: the batch after a compaction removes its history
        assert!(!store.compacting(), "the compaction finished");
        assert!(read_index(&store.index).older_than(b"a", 3).is_empty(), "revision 2 of a is gone");
        assert_eq!(value_at(&old, &store, "a", 0).unwrap(), vec!["2"]);
        assert_eq!(value_at(&old, &store, "b", 0).unwrap(), vec!["1"]);
        assert_eq!(value_at(&old, &store, "a", 3).unwrap(), vec!["2"]);
        // Below the compaction the writer applied, the old transaction's read fails as compacted
        // rather than missing what the index no longer has.
        assert_eq!(value_at(&old, &store, "a", 2), Err(Error::Compacted));
        let new = store.db.begin_read().unwrap();
        assert_eq!(value_at(&new, &store, "a", 0).unwrap(), vec!["3"]);
        assert_eq!(value_at(&new, &store, "b", 0).unwrap(), Vec::<String>::new());
        assert_eq!(value_at(&new, &store, "b", 5).unwrap(), vec!["1"]);
    }
}

#[cfg(test)]
mod stamps {
    use super::*;

    fn put(key: &str) -> Command {
        Command::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })
    }

    #[test]
    fn each_revision_keeps_its_entrys_stamp_and_is_found_by_time() {
        let mut store = Store::in_memory().unwrap();
        // A lease grant makes no revision: its stamp is not kept.
        let batch = [(1, put("a")), (2, Command::LeaseGrant { id: 7, ttl: 60 }), (3, put("b"))];
        store.apply_stamped(&batch, &[100, 150, 200], 200).unwrap(); // revisions 2 and 3
        store.apply_batch(&[(4, put("c"))]).unwrap(); // revision 4, unstamped
        store.apply_stamped(&[(5, put("d"))], &[300], 300).unwrap(); // revision 5
        let reader = store.reader();
        let at = |stamp| reader.revision_at(stamp).unwrap().map(|found| (found.revision, found.stamp));
        assert_eq!(at(99), None);
        assert_eq!(
            (at(100), at(199), at(200), at(299), at(u64::MAX)),
            (Some((2, 100)), Some((2, 100)), Some((3, 200)), Some((3, 200)), Some((5, 300)))
        );
        assert_eq!(reader.last_stamp().unwrap(), 300);
        // Compaction past revision 3 trims its stamp: a time that only it answered is compacted.
        store.apply_batch(&[(6, Command::Compact { revision: 4 })]).unwrap();
        store.apply_stamped(&[(7, put("e"))], &[400], 450).unwrap();
        let reader = store.reader();
        assert_eq!(reader.revision_at(250), Err(Error::Compacted));
        assert_eq!(reader.revision_at(50), Err(Error::Compacted));
        assert_eq!(reader.revision_at(350).unwrap().map(|found| found.revision), Some(5));
        assert_eq!(reader.revision_at(400).unwrap().map(|found| found.revision), Some(6));
        // The newest entry stamp counts even where no revision kept it (a no-op after it).
        assert_eq!(reader.last_stamp().unwrap(), 450);
        // A snapshot image carries the stamps and the newest entry stamp.
        let image: Vec<Vec<u8>> = store.snapshot_chunks(256).unwrap().collect::<Result<_, _>>().unwrap();
        let mut copy = Store::in_memory().unwrap();
        copy.apply_stamped(&[(1, put("z"))], &[999_999], 999_999).unwrap();
        copy.install_snapshot(image).unwrap();
        let reader = copy.reader();
        assert_eq!(reader.revision_at(350).unwrap().map(|found| found.revision), Some(5));
        assert_eq!(reader.revision_at(250), Err(Error::Compacted));
        assert_eq!(reader.last_stamp().unwrap(), 450, "the copy's own stamps are gone with its state");
    }

    #[test]
    fn a_stamp_below_the_newest_one_is_recorded_as_the_newest() {
        // A Multi-Paxos log: slot 2 was re-proposed with its first proposer's stamp, 150, after
        // slot 1 was stamped 200 by a leader that had not seen it.
        let mut store = Store::in_memory().unwrap();
        store.apply_stamped(&[(1, put("a")), (2, put("b"))], &[200, 150], 200).unwrap(); // revisions 2, 3
        store.apply_stamped(&[(3, put("c"))], &[180], 180).unwrap(); // revision 4
        let reader = store.reader();
        let at = |stamp| reader.revision_at(stamp).unwrap().map(|found| found.revision);
        assert_eq!(at(160), None, "nothing was visible at 160: the first write came at 200");
        assert_eq!(at(200), Some(4), "all three were applied by the time 200 had been seen");
        assert_eq!(reader.last_stamp().unwrap(), 200);
    }

    #[test]
    fn a_store_without_stamps_answers_none() {
        let mut store = Store::in_memory().unwrap();
        store.apply_batch(&[(1, put("a"))]).unwrap();
        assert_eq!(store.reader().revision_at(u64::MAX), Ok(None));
        assert_eq!(store.reader().last_stamp(), Ok(0));
    }
}

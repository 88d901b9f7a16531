//! The write-ahead log: segment files of records, group commit, truncation of a conflicting
//! suffix, compaction, and recovery.
//!
//! Segments are named `{sequence:016x}-{first_index:016x}.wal` and preallocated; each starts
//! with a header record, then the current hard state and snapshot marker (so older segments
//! never hold the only copy of either), then whatever batches follow. A batch that does not fit
//! starts a new segment; the old one is synced first, so only the newest segment can ever have
//! a torn tail.
//!
//! # Recovery (one decision per record, in file order)
//!
//! | what is at the offset | where | decision |
//! |---|---|---|
//! | a valid record | anywhere | apply it |
//! | zeros to the end of the file | anywhere | clean end of the segment |
//! | an invalid record, and the file's last non-zero byte lies inside it | newest segment | torn write: cut the file there |
//! | an invalid record followed by more written bytes | anywhere | corruption: refuse to open, naming file and offset (with `repair`: cut there, drop later segments) |
//! | an invalid record | older segment | corruption (older segments were synced before the next began) |
//! | no valid header, only zeros | newest segment | a segment whose creation did not complete: remove it |
//!
//! An entry record at an index at or below the last one replaces the tail from there (a new
//! leader overwrote a conflicting suffix); a gap is corruption.

use ballot_raft::{Entry, HardState, Index, Snapshot, SnapshotMeta, Term};

use crate::disk::{Disk, SyncTask, TwinDisk, ZERO_FILL_CHUNK_BYTES};
use crate::record::{self, DecodeError, Record, FORMAT_VERSION, HEADER_BYTES};
use crate::{snapshot, Error};

/// Segment file suffix.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Marks a directory as ballot's.
const META_FILE: &str = "BALLOT";
const META_CONTENT: &[u8] = b"ballot data directory, format 1\n";
/// The next segment, zero-filled ahead of need (renamed to its segment name when one starts).
/// Its `.tmp` suffix keeps it out of recovery, which reads segment names only.
const SPARE_FILE: &str = "next-segment.tmp";

/// Tunables.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size each segment is preallocated to; a new segment starts when a batch does not fit.
    pub segment_bytes: u64,
    /// On corruption, cut the log at the damaged record instead of refusing to open, losing
    /// everything after it. Only when an operator asks for it.
    pub repair: bool,
    /// Write zeros over a new segment (and sync them) instead of leaving it sparse, so that
    /// later fsyncs flush data only, not block allocations: on ext4 this makes large group
    /// commits markedly cheaper (see BENCHMARKS.md). Costs one write of `segment_bytes` per
    /// segment, done ahead of need on a thread of its own when the disk allows (see
    /// [`Wal::prepare_spare`]).
    pub zero_fill: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: 64 * 1024 * 1024, repair: false, zero_fill: true }
    }
}

/// What one `Ready` asks to persist, written with one append and one fsync (group commit).
#[derive(Clone, Copy, Debug, Default)]
pub struct Batch<'a> {
    /// A snapshot installed from the leader; the log is replaced by it. Save the snapshot file
    /// with [`Wal::save_snapshot`] before writing the batch.
    pub installed_snapshot: Option<&'a SnapshotMeta>,
    /// Entries; any stored entry at or after the first one's index is replaced.
    pub entries: &'a [Entry],
    /// The new hard state, if it changed.
    pub hard_state: Option<HardState>,
}

/// Written but not yet durable. Only [`Wal::sync`] turns it into [`Durable`].
#[must_use = "nothing is durable until it is synced"]
#[derive(Debug)]
pub struct PendingSync {
    last: Option<(Index, Term)>,
    segments: Vec<String>,
    directory: bool,
}

impl PendingSync {
    /// The write began a new segment: its directory entry must be synced before anything
    /// written later can be trusted, so this write cannot be left unsynced.
    pub fn began_segment(&self) -> bool {
        self.directory
    }
}

/// Proof that a batch reached stable storage: returned only after fsync succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Last entry of the batch, if it had entries.
    pub last: Option<(Index, Term)>,
}

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The newest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot, in order.
    pub entries: Vec<Entry>,
    /// What a torn tail or a repair cut away, for the log.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Segment {
    name: String,
    sequence: u64,
    /// Highest entry index written to it (0 if none).
    max_index: Index,
    /// Written bytes (the next record goes here).
    end: u64,
    capacity: u64,
}

/// The write-ahead log of one node.
#[derive(Debug)]
pub struct Wal<D: Disk> {
    disk: D,
    options: WalOptions,
    /// Oldest first; the last is the one being written.
    segments: Vec<Segment>,
    hard_state: HardState,
    snapshot_index: Index,
    snapshot_term: Term,
    last_index: Index,
    last_term: Term,
    /// The thread zero-filling [`SPARE_FILE`], if one was started and not yet used.
    spare: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// Segments that began as a prepared spare (the others were created in place).
    spares_used: u64,
    /// A compaction whose file work is under way on another thread.
    compaction: Option<Compaction>,
}

/// A log compaction begun with [`Wal::begin_compaction`], one step of it running on the
/// `wal-compact` thread. Dropping it waits for that step, so the directory's lock (which the
/// thread's twin disk shares) is free once the log is gone.
#[derive(Debug)]
struct Compaction {
    index: Index,
    term: Term,
    /// False while the snapshot file is saved; true once the marker is written and the
    /// segments it covers are being removed.
    removing: bool,
    worker: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Compaction {
    fn finished(&self) -> bool {
        self.worker.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Waits for the step under way and gives its outcome.
    fn join(&mut self) -> Result<(), Error> {
        match self.worker.take().map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(Error::Io {
                path: format!("compaction to {}", self.index),
                source: std::io::Error::other("the compaction thread panicked"),
            }),
        }
    }
}

impl Drop for Compaction {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Syncs the segment holding the new snapshot marker, then removes the segments it covers: the
/// marker must be durable before they go, or a crash could leave entries after a snapshot
/// whose term no record confirms (and recovery would drop them).
fn remove_covered(disk: &mut (impl Disk + ?Sized), active: &str, covered: &[String]) -> Result<(), Error> {
    let location = disk.location();
    let io = |name: &str| {
        let path = format!("{location}/{name}");
        move |source| Error::Io { path, source }
    };
    disk.sync(active).map_err(io(active))?;
    if covered.is_empty() {
        return Ok(());
    }
    for name in covered {
        disk.remove(name).map_err(io(name))?;
    }
    disk.sync_dir().map_err(io("."))
}

fn segment_name(sequence: u64, first_index: Index) -> String {
    format!("{sequence:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<(u64, Index)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (sequence, first) = stem.split_once('-')?;
    Some((u64::from_str_radix(sequence, 16).ok()?, u64::from_str_radix(first, 16).ok()?))
}

impl<D: Disk> Wal<D> {
    fn io(&self, name: &str) -> impl Fn(std::io::Error) -> Error + '_ {
        let path = format!("{}/{name}", self.disk.location());
        move |source| Error::Io { path: path.clone(), source }
    }

    /// Opens the log in `disk`, creating an empty one if the directory is empty.
    pub fn open(mut disk: D, options: WalOptions) -> Result<(Wal<D>, Recovered), Error> {
        let location = disk.location();
        let io = |source| Error::Io { path: location.clone(), source };
        let names = disk.list().map_err(io)?;
        if !names.iter().any(|n| n == META_FILE) {
            if let Some(foreign) = names.iter().find(|n| !n.ends_with(".tmp")) {
                return Err(Error::Foreign { dir: location.clone(), found: foreign.clone() });
            }
            disk.create(META_FILE, 0).map_err(io)?;
            disk.write_at(META_FILE, 0, META_CONTENT).map_err(io)?;
            disk.sync(META_FILE).map_err(io)?;
            disk.sync_dir().map_err(io)?;
        } else if disk.read(META_FILE).map_err(io)? != META_CONTENT {
            return Err(Error::Foreign { dir: location.clone(), found: format!("{META_FILE} of another format") });
        }
        let mut wal = Wal {
            disk,
            options,
            segments: Vec::new(),
            hard_state: HardState::default(),
            snapshot_index: 0,
            snapshot_term: 0,
            last_index: 0,
            last_term: 0,
            spare: None,
            spares_used: 0,
            compaction: None,
        };
        let (recovered, unmarked) = wal.recover()?;
        if wal.segments.is_empty() {
            // A new segment names the snapshot in its first records.
            let next = wal.last_index + 1;
            wal.start_segment(1, next)?;
            let pending = PendingSync { last: None, segments: vec![wal.active().name.clone()], directory: true };
            wal.sync(pending)?;
        } else if let Some(replaces_log) = unmarked {
            wal.mark_snapshot(replaces_log)?;
        }
        wal.prepare_spare();
        Ok((wal, recovered))
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("an open WAL always has a segment")
    }

    /// Replays the log. Besides what it recovered, it says whether the snapshot file it adopted
    /// is missing from the log (`Some(replaces_log)`: see [`Wal::mark_snapshot`]).
    fn recover(&mut self) -> Result<(Recovered, Option<bool>), Error> {
        let location = self.disk.location();
        let mut recovered = Recovered { snapshot: snapshot::load_latest(&mut self.disk)?, ..Recovered::default() };
        let mut names: Vec<(u64, Index, String)> = self
            .disk
            .list()
            .map_err(|source| Error::Io { path: location.clone(), source })?
            .into_iter()
            .filter_map(|name| parse_segment_name(&name).map(|(sequence, first)| (sequence, first, name)))
            .collect();
        names.sort();
        // Segments below the snapshot may be gone: entries at or below its index are skipped,
        // and the log must continue right after it.
        let file_floor = recovered.snapshot.as_ref().map_or(0, |s| s.meta.index);
        let mut replay = Replay { file_floor, term_at_floor: None, marker: None, entries: Vec::new() };
        let count = names.len();
        let mut position = 0;
        while position < count {
            let (sequence, _, name) = names[position].clone();
            let newest = position + 1 == count;
            let bytes = self.disk.read(&name).map_err(self.io(&name))?;
            let outcome = self.replay_segment(&name, &bytes, newest, &mut replay, &mut recovered)?;
            match outcome {
                SegmentEnd::Clean { end, max_index } => {
                    self.segments.push(Segment { name, sequence, max_index, end, capacity: bytes.len() as u64 });
                }
                SegmentEnd::Unborn => {
                    self.disk.remove(&name).map_err(self.io(&name))?;
                    self.disk.sync_dir().map_err(self.io(&name))?;
                    recovered.notes.push(format!("removed {name}: its creation never completed"));
                }
                SegmentEnd::Repaired { end, max_index } => {
                    self.segments.push(Segment { name, sequence, max_index, end, capacity: bytes.len() as u64 });
                    for (_, _, later) in names.drain(position + 1..) {
                        self.disk.remove(&later).map_err(self.io(&later))?;
                        recovered.notes.push(format!("repair removed {later}"));
                    }
                    self.disk.sync_dir().map_err(self.io("."))?;
                    break;
                }
            }
            position += 1;
        }
        let mut entries = std::mem::take(&mut replay.entries);
        let unmarked = self.settle_snapshot(replay.marker, replay.term_at_floor, &mut entries, &mut recovered)?;
        self.last_index = entries.last().map_or(self.snapshot_index, |e| e.index);
        self.last_term = entries.last().map_or(self.snapshot_term, |e| e.term);
        recovered.entries = entries;
        recovered.hard_state = self.hard_state;
        Ok((recovered, unmarked))
    }

    /// Writes the log's marker for the snapshot adopted at recovery, durably, before anything
    /// is appended after it. Without it the next recovery would judge the entries appended
    /// after the snapshot as the first did the old ones (they do not follow a snapshot the log
    /// never named) and drop them, acknowledged as they were. `replaces_log` is true when the
    /// older entries were found void, so that replay voids them again.
    fn mark_snapshot(&mut self, replaces_log: bool) -> Result<(), Error> {
        self.write_marker(self.snapshot_index, self.snapshot_term, replaces_log).map(drop)
    }

    /// Appends a snapshot marker to the active segment and syncs it; returns the segment's name.
    fn write_marker(&mut self, index: Index, term: Term, replaces_log: bool) -> Result<String, Error> {
        let name = self.write_marker_unsynced(index, term, replaces_log)?;
        self.disk.sync(&name).map_err(self.io(&name))?;
        Ok(name)
    }

    fn write_marker_unsynced(&mut self, index: Index, term: Term, replaces_log: bool) -> Result<String, Error> {
        let mut bytes = Vec::new();
        record::encode(&Record::Snapshot { index, term, replaces_log }, &mut bytes);
        let active = self.segments.last_mut().expect("a segment");
        let (name, offset) = (active.name.clone(), active.end);
        active.end += bytes.len() as u64;
        self.disk.write_at(&name, offset, &bytes).map_err(self.io(&name))?;
        Ok(name)
    }

    /// Reconciles the snapshot file with the log's snapshot marker. Returns `Some(replaces_log)`
    /// when the log does not name the snapshot file it adopts (a crash came between saving the
    /// file and writing the marker).
    fn settle_snapshot(
        &mut self,
        marker: Option<(Index, Term)>,
        term_at_floor: Option<Term>,
        entries: &mut Vec<Entry>,
        recovered: &mut Recovered,
    ) -> Result<Option<bool>, Error> {
        let file = recovered.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term));
        match (marker, file) {
            (Some((index, _)), None) => {
                return Err(Error::MissingSnapshot { dir: self.disk.location(), index });
            }
            (Some((marker_index, _)), Some((file_index, _))) if marker_index > file_index => {
                return Err(Error::MissingSnapshot { dir: self.disk.location(), index: marker_index });
            }
            _ => {}
        }
        let mut unmarked = None;
        if let Some((index, term)) = file {
            // Entries after the snapshot are only ours if the log agrees with it at its index
            // (a snapshot installed from the leader whose marker never reached the log voids them).
            let marked = marker == Some((index, term));
            let agrees = marked || term_at_floor == Some(term);
            entries.retain(|e| e.index > index);
            if !agrees && !entries.is_empty() {
                recovered.notes.push(format!("dropped {} entries that do not follow snapshot {index}", entries.len()));
                entries.clear();
            }
            if !marked {
                unmarked = Some(!agrees);
            }
            self.snapshot_index = index;
            self.snapshot_term = term;
        }
        if let Some(first) = entries.first() {
            if first.index != self.snapshot_index + 1 {
                return Err(Error::Corrupt {
                    file: self.disk.location(),
                    offset: 0,
                    reason: format!("log starts at {} but the snapshot ends at {}", first.index, self.snapshot_index),
                });
            }
        }
        Ok(unmarked)
    }

    fn replay_segment(
        &mut self,
        name: &str,
        bytes: &[u8],
        newest: bool,
        replay: &mut Replay,
        recovered: &mut Recovered,
    ) -> Result<SegmentEnd, Error> {
        let file = format!("{}/{name}", self.disk.location());
        let corrupt =
            |offset: usize, reason: String| Error::Corrupt { file: file.clone(), offset: offset as u64, reason };
        let header_bytes = match record::decode(bytes) {
            Ok((Record::SegmentHeader { version, .. }, _)) if version != FORMAT_VERSION => {
                return Err(Error::UnsupportedVersion { file, found: version, supported: FORMAT_VERSION });
            }
            Ok((Record::SegmentHeader { .. }, size)) => size,
            Ok(_) => return Err(corrupt(0, "segment does not start with a header".into())),
            // Created (its name made durable, perhaps by another file's directory sync) but its
            // first write never completed: nothing past the header was written.
            Err(_) if newest && bytes.iter().rposition(|b| *b != 0).is_none_or(|p| p < SEGMENT_HEADER_BYTES) => {
                return Ok(SegmentEnd::Unborn);
            }
            Err(error) => return Err(corrupt(0, format!("bad segment header: {error}"))),
        };
        let last_written = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        let mut offset = header_bytes;
        let mut max_index = 0;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            if record::is_unwritten(rest) && offset >= last_written {
                break;
            }
            match record::decode(rest) {
                Ok((record, size)) => {
                    self.apply(record, replay, &mut max_index).map_err(|reason| corrupt(offset, reason))?;
                    offset += size;
                }
                Err(error) => {
                    // A torn write leaves a prefix of its batch and zeros: nothing valid after it.
                    // A valid record further on means damage in the middle of the log.
                    let torn =
                        newest && error != DecodeError::Malformed && !valid_record_after(bytes, offset, last_written);
                    if torn {
                        self.cut(name, offset as u64, last_written as u64)?;
                        recovered.notes.push(format!("{file}: cut a torn write at byte {offset}"));
                        return Ok(SegmentEnd::Clean { end: offset as u64, max_index });
                    }
                    if self.options.repair {
                        self.cut(name, offset as u64, bytes.len() as u64)?;
                        recovered.notes.push(format!(
                            "{file}: repair cut the log at byte {offset} ({error}); everything after it is lost"
                        ));
                        return Ok(SegmentEnd::Repaired { end: offset as u64, max_index });
                    }
                    return Err(corrupt(offset, error.to_string()));
                }
            }
        }
        Ok(SegmentEnd::Clean { end: offset as u64, max_index })
    }

    fn apply(&mut self, record: Record, replay: &mut Replay, max_index: &mut Index) -> Result<(), String> {
        match record {
            Record::SegmentHeader { .. } => return Err("a segment header in the middle of a segment".into()),
            Record::HardState(state) => self.hard_state = state,
            Record::Snapshot { index, term, replaces_log } => {
                let Replay { marker, entries, .. } = replay;
                if replaces_log {
                    entries.clear();
                    // Earlier segments hold only void entries now: let compaction remove them.
                    for segment in &mut self.segments {
                        segment.max_index = 0;
                    }
                    *max_index = 0;
                } else {
                    entries.retain(|e| e.index > index);
                }
                if marker.is_none_or(|(old, _)| index >= old) {
                    *marker = Some((index, term));
                }
            }
            Record::Entry(entry) => {
                *max_index = (*max_index).max(entry.index);
                if entry.index == replay.file_floor {
                    replay.term_at_floor = Some(entry.term);
                }
                let floor = replay.marker.map_or(0, |(index, _)| index).max(replay.file_floor);
                let entries = &mut replay.entries;
                if entry.index <= floor {
                    // Covered by the snapshot, but the write still replaced everything after it:
                    // any entry buffered so far (all above the floor) was overwritten.
                    entries.clear();
                    return Ok(());
                }
                let next = entries.last().map_or(floor + 1, |e| e.index + 1);
                if entry.index > next {
                    return Err(format!("entry {} follows entry {}: a gap in the log", entry.index, next - 1));
                }
                entries.truncate(entries.partition_point(|e| e.index < entry.index));
                entries.push(entry);
            }
        }
        Ok(())
    }

    /// Zeroes `[from, to)` of a segment and syncs it, so the cut survives another crash.
    fn cut(&mut self, name: &str, from: u64, to: u64) -> Result<(), Error> {
        if to > from {
            let zeros = vec![0u8; (to - from) as usize];
            self.disk.write_at(name, from, &zeros).map_err(self.io(name))?;
            self.disk.sync(name).map_err(self.io(name))?;
        }
        Ok(())
    }

    /// Starts zero-filling the next segment's file on a thread of its own, so starting a
    /// segment does not stall the thread that writes the log: writing and syncing 64 MiB of
    /// zeros takes 100-200 ms, during which no batch could be written (a stall of every
    /// client's writes). Without zero-filling, or on a disk that cannot hand the work out (the
    /// simulator's), segments are created in place.
    fn prepare_spare(&mut self) {
        if !self.options.zero_fill || self.spare.is_some() {
            return;
        }
        if let Ok(Some(task)) = self.disk.detached_zero_filled(SPARE_FILE, self.options.segment_bytes) {
            self.spare = std::thread::Builder::new().name("wal-prepare".into()).spawn(task).ok();
        }
    }

    /// Gives the prepared spare file the name `name` if it is ready: true then. A spare still
    /// being filled is left to finish (the segment is created in place); one that failed is
    /// dropped, and another is prepared after this segment starts.
    fn take_spare(&mut self, name: &str) -> Result<bool, Error> {
        match self.spare.take() {
            Some(filling) if filling.is_finished() => match filling.join() {
                Ok(Ok(())) => {
                    self.disk.rename(SPARE_FILE, name).map_err(self.io(name))?;
                    self.spares_used += 1;
                    Ok(true)
                }
                Ok(Err(_)) | Err(_) => Ok(false),
            },
            still_filling => {
                self.spare = still_filling;
                Ok(false)
            }
        }
    }

    fn start_segment(&mut self, sequence: u64, first_index: Index) -> Result<(), Error> {
        let name = segment_name(sequence, first_index);
        let capacity = self.options.segment_bytes;
        if self.take_spare(&name)? {
            // Zeros written and synced by the spare's thread; the rename is made durable with
            // the directory sync that follows a new segment.
        } else {
            self.create_segment_file(&name, capacity)?;
        }
        let mut bytes = Vec::new();
        record::encode(&Record::SegmentHeader { version: FORMAT_VERSION, sequence, first_index }, &mut bytes);
        record::encode(&Record::HardState(self.hard_state), &mut bytes);
        if self.snapshot_index > 0 {
            let marker = Record::Snapshot { index: self.snapshot_index, term: self.snapshot_term, replaces_log: false };
            record::encode(&marker, &mut bytes);
        }
        self.disk.write_at(&name, 0, &bytes).map_err(self.io(&name))?;
        self.segments.push(Segment { name, sequence, max_index: 0, end: bytes.len() as u64, capacity });
        self.prepare_spare();
        Ok(())
    }

    /// Creates a segment's file in place, preallocated (and zero-filled if configured).
    fn create_segment_file(&mut self, name: &str, capacity: u64) -> Result<(), Error> {
        self.disk.create(name, capacity).map_err(self.io(name))?;
        if self.options.zero_fill {
            let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES.min(capacity as usize)];
            let mut offset = 0;
            while offset < capacity {
                let len = zeros.len().min((capacity - offset) as usize);
                self.disk.write_at(name, offset, &zeros[..len]).map_err(self.io(name))?;
                offset += len as u64;
            }
            self.disk.sync(name).map_err(self.io(name))?;
        }
        Ok(())
    }

    /// Writes a batch (not yet durable). Entries must continue the log or overwrite part of its
    /// uncompacted tail.
    pub fn write(&mut self, batch: Batch) -> Result<PendingSync, Error> {
        let mut bytes = Vec::new();
        let mut last_index = self.last_index;
        let mut floor = self.snapshot_index;
        if let Some(meta) = batch.installed_snapshot {
            let marker = Record::Snapshot { index: meta.index, term: meta.term, replaces_log: true };
            record::encode(&marker, &mut bytes);
            last_index = meta.index;
            floor = meta.index;
        }
        if let Some(first) = batch.entries.first() {
            if first.index <= floor || first.index > last_index + 1 {
                return Err(Error::InvalidAppend { first: first.index, last: last_index, snapshot: floor });
            }
        }
        bytes.reserve(batch.entries.iter().map(|e| e.data.len() + HEADER_BYTES + 17).sum());
        for entry in batch.entries {
            record::encode_entry(entry, &mut bytes);
        }
        if let Some(state) = batch.hard_state {
            record::encode(&Record::HardState(state), &mut bytes);
        }
        let mut pending = PendingSync { last: None, segments: Vec::new(), directory: false };
        if bytes.is_empty() {
            return Ok(pending);
        }
        let active = self.active();
        if active.end + bytes.len() as u64 > active.capacity && active.end > HEADER_BYTES as u64 * 8 {
            // Seal the full segment before the next one exists: only the newest can be torn.
            let sealed = active.name.clone();
            let sequence = active.sequence + 1;
            self.disk.sync(&sealed).map_err(self.io(&sealed))?;
            let first = batch.entries.first().map_or(self.last_index + 1, |e| e.index);
            self.start_segment(sequence, first)?;
            pending.directory = true;
        }
        let active = self.segments.last_mut().expect("a segment");
        let (name, offset) = (active.name.clone(), active.end);
        active.end += bytes.len() as u64;
        if let Some(last) = batch.entries.last() {
            active.max_index = active.max_index.max(last.index);
        }
        self.disk.write_at(&name, offset, &bytes).map_err(self.io(&name))?;
        pending.segments.push(name);
        if let Some(meta) = batch.installed_snapshot {
            self.snapshot_index = meta.index;
            self.snapshot_term = meta.term;
            self.last_index = meta.index;
            self.last_term = meta.term;
            // Everything written before the marker is void now.
            let active_name = self.active().name.clone();
            for segment in self.segments.iter_mut().filter(|s| s.name != active_name) {
                segment.max_index = 0;
            }
        }
        if let Some(last) = batch.entries.last() {
            self.last_index = last.index;
            self.last_term = last.term;
            pending.last = Some((last.index, last.term));
        }
        if let Some(state) = batch.hard_state {
            self.hard_state = state;
        }
        Ok(pending)
    }

    /// Makes a written batch durable: fsync of the segment(s) and, after a new segment began,
    /// of the directory.
    pub fn sync(&mut self, pending: PendingSync) -> Result<Durable, Error> {
        for name in &pending.segments {
            self.disk.sync(name).map_err(self.io(name))?;
        }
        if pending.directory {
            self.disk.sync_dir().map_err(self.io("."))?;
        }
        Ok(Durable { last: pending.last })
    }

    /// The fsyncs of a written batch as one task for another thread, or `None` if the disk cannot
    /// hand them out (then call [`Wal::sync`]). After the task succeeded, [`Wal::synced`] gives
    /// the proof of durability.
    pub fn detach_sync(&mut self, pending: &PendingSync) -> Result<Option<SyncTask>, Error> {
        let mut tasks = Vec::new();
        let names = pending.segments.iter().map(|name| Some(name.as_str()));
        for name in names.chain(pending.directory.then_some(None)) {
            let task = self.disk.detached_sync(name);
            match task.map_err(self.io(name.unwrap_or(".")))? {
                Some(task) => tasks.push(task),
                None => return Ok(None),
            }
        }
        Ok(Some(Box::new(move || tasks.into_iter().try_for_each(|task| task()))))
    }

    /// Proof of durability for a batch whose detached sync task succeeded.
    pub fn synced(&mut self, pending: PendingSync) -> Durable {
        Durable { last: pending.last }
    }

    /// Writes and syncs a batch: one write, one fsync.
    pub fn append(&mut self, batch: Batch) -> Result<Durable, Error> {
        let pending = self.write(batch)?;
        self.sync(pending)
    }

    /// Saves a snapshot file durably (before compacting to it or installing it). A compaction
    /// under way is finished first: it saves a snapshot file of its own.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        self.settle_compaction()?;
        snapshot::save(&mut self.disk, snapshot)
    }

    /// Records that the snapshot at (index, term) covers the log up to `index` and deletes the
    /// segments that hold nothing newer. The snapshot file must already be saved.
    pub fn compact(&mut self, index: Index, term: Term) -> Result<(), Error> {
        self.settle_compaction()?;
        if let Some((active, covered)) = self.cover(index, term)? {
            remove_covered(&mut self.disk, &active, &covered)?;
        }
        Ok(())
    }

    /// Compacts the log to `snapshot` as [`Wal::save_snapshot`] and [`Wal::compact`] do, with
    /// the file work on a thread of its own when the disk can hand it out: saving the snapshot
    /// file takes three fsyncs and removing the covered segments unlinks files of tens of MiB
    /// and syncs the directory, which under write load took up to 100 ms, a stall of every
    /// write. [`Wal::advance_compaction`] moves it on between steps. False (and nothing done)
    /// while an earlier compaction is still under way.
    pub fn begin_compaction(&mut self, snapshot: &Snapshot) -> Result<bool, Error> {
        self.advance_compaction()?;
        if self.compaction.is_some() {
            return Ok(false);
        }
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        if !self.compaction_due(index)? {
            return Ok(true);
        }
        let owned = snapshot.clone();
        match self.detach(&[], move |disk| snapshot::save(&mut **disk, &owned))? {
            Some(worker) => self.compaction = Some(Compaction { index, term, removing: false, worker: Some(worker) }),
            None => {
                snapshot::save(&mut self.disk, snapshot)?;
                self.compact(index, term)?;
            }
        }
        Ok(true)
    }

    /// Moves a compaction under way on if its current step has finished: once its snapshot
    /// file is saved, writes the marker and starts removing the covered segments; once they are
    /// removed, ends it. Cheap when none is under way or its step is still running.
    pub fn advance_compaction(&mut self) -> Result<(), Error> {
        if self.compaction.as_ref().is_some_and(Compaction::finished) {
            self.end_compaction_step()?;
        }
        Ok(())
    }

    /// True while a compaction begun with [`Wal::begin_compaction`] is under way.
    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Waits for a compaction under way to end.
    pub fn settle_compaction(&mut self) -> Result<(), Error> {
        while self.compaction.is_some() {
            self.end_compaction_step()?;
        }
        Ok(())
    }

    fn end_compaction_step(&mut self) -> Result<(), Error> {
        let Some(mut compaction) = self.compaction.take() else { return Ok(()) };
        compaction.join()?;
        if compaction.removing {
            return Ok(());
        }
        let Some((active, covered)) = self.cover(compaction.index, compaction.term)? else { return Ok(()) };
        let (owned_active, owned_covered) = (active.clone(), covered.clone());
        match self.detach(&covered, move |disk| remove_covered(&mut **disk, &owned_active, &owned_covered))? {
            Some(worker) => {
                compaction.removing = true;
                compaction.worker = Some(worker);
                self.compaction = Some(compaction);
                Ok(())
            }
            None => remove_covered(&mut self.disk, &active, &covered),
        }
    }

    /// True if compacting to `index` has something to do; an error past the log's end.
    fn compaction_due(&self, index: Index) -> Result<bool, Error> {
        if index > self.last_index && index > self.snapshot_index {
            return Err(Error::InvalidAppend { first: index, last: self.last_index, snapshot: self.snapshot_index });
        }
        Ok(index > self.snapshot_index)
    }

    /// Runs `work` on a `wal-compact` thread with a twin of the disk (this handle's files in
    /// `releasing` closed first); `None` if the disk has no twin or no thread could start.
    fn detach(
        &mut self,
        releasing: &[String],
        work: impl FnOnce(&mut TwinDisk) -> Result<(), Error> + Send + 'static,
    ) -> Result<Option<std::thread::JoinHandle<Result<(), Error>>>, Error> {
        let Some(mut twin) = self.disk.twin(releasing).map_err(self.io("."))? else { return Ok(None) };
        Ok(std::thread::Builder::new().name("wal-compact".into()).spawn(move || work(&mut twin)).ok())
    }

    /// Writes the marker of the snapshot at (index, term), not yet synced, and forgets the
    /// segments it covers. Gives the segment holding the marker and the covered ones (to be
    /// removed by [`remove_covered`]), or `None` if the log is compacted that far already.
    fn cover(&mut self, index: Index, term: Term) -> Result<Option<(String, Vec<String>)>, Error> {
        if !self.compaction_due(index)? {
            return Ok(None);
        }
        let active = self.write_marker_unsynced(index, term, false)?;
        self.snapshot_index = index;
        self.snapshot_term = term;
        let covered: Vec<String> =
            self.segments.iter().filter(|s| s.name != active && s.max_index <= index).map(|s| s.name.clone()).collect();
        self.segments.retain(|s| !covered.contains(&s.name));
        Ok(Some((active, covered)))
    }

    /// Segments that began as a spare zero-filled ahead of need (for tests and metrics).
    pub fn spares_used(&self) -> u64 {
        self.spares_used
    }

    /// True once no spare is being filled (for tests: the next segment can use it).
    pub fn spare_settled(&self) -> bool {
        self.spare.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The disk, for tests that crash it.
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Gives the disk back (closing the log).
    pub fn into_disk(self) -> D {
        self.disk
    }
}

/// How far past a damaged record recovery looks for a valid one (bounds the work on garbage).
const SCAN_AFTER_DAMAGE_BYTES: usize = 1024 * 1024;

/// True if some valid record starts after `offset` (within the scan window and the written
/// part of the file).
fn valid_record_after(bytes: &[u8], offset: usize, last_written: usize) -> bool {
    let end = last_written.min(offset + SCAN_AFTER_DAMAGE_BYTES);
    ((offset + 1)..end).any(|start| {
        let window = &bytes[start..end];
        record::declared_len(window).is_some_and(|len| len + HEADER_BYTES <= window.len())
            && record::decode(window).is_ok()
    })
}

/// Bytes of an encoded segment header record.
const SEGMENT_HEADER_BYTES: usize = HEADER_BYTES + 26;

/// What replay has learned so far.
struct Replay {
    /// Index of the snapshot file: entries at or below it are covered.
    file_floor: Index,
    /// Term of the last entry written at `file_floor`, if the log still holds one.
    term_at_floor: Option<Term>,
    /// The newest snapshot marker in the log.
    marker: Option<(Index, Term)>,
    /// Entries after the floor, in order.
    entries: Vec<Entry>,
}

enum SegmentEnd {
    Clean { end: u64, max_index: Index },
    Unborn,
    Repaired { end: u64, max_index: Index },
}

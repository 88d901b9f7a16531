//! Snapshot images: a consistent copy of the store at its applied index, as a stream of chunks
//! (sent to a follower behind the compacted log), and their atomic installation.
//!
//! The image holds the metadata, the alarms, the member table, the leases and the `revs` history; `index`, `latest` and
//! `lease_keys` are derived from the history on install (as etcd rebuilds its key index), so the
//! image carries each key-value once. Items: `[kind u8][len u32][payload]`; the last item holds a
//! crc32c of everything before it, checked before anything is committed.

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::codec::{main_of, revision_key, Latest, Record};
use crate::store::Store;
use crate::tables;
use crate::{storage_error, Error};

const MAGIC: &[u8; 8] = b"BALLOTMV";
const VERSION: u16 = 1;
const ITEM_HEADER: u8 = 1;
const ITEM_LEASE: u8 = 2;
const ITEM_REVISION: u8 = 3;
const ITEM_END: u8 = 4;
const ITEM_ALARM: u8 = 5;
const ITEM_MEMBER: u8 = 6;
const ITEM_MEMBER_REMOVED: u8 = 7;

/// Position of an export.
enum Stage {
    Header,
    Leases { after: Option<i64> },
    Revisions { after: Option<u128> },
    End,
    Done,
}

/// The chunks of one image, read lazily from one read transaction (a consistent view).
pub struct SnapshotChunks {
    read: ReadTransaction,
    stage: Stage,
    chunk_bytes: usize,
    crc: u32,
}

impl SnapshotChunks {
    /// The image of the database as of now (one read transaction, held until the last chunk).
    pub(crate) fn of(db: &redb::Database, chunk_bytes: usize) -> Result<SnapshotChunks, Error> {
        let read = db.begin_read().map_err(storage_error)?;
        Ok(SnapshotChunks { read, stage: Stage::Header, chunk_bytes: chunk_bytes.max(64), crc: 0 })
    }
}

fn item(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

impl SnapshotChunks {
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        while out.len() < self.chunk_bytes {
            match self.stage {
                Stage::Header => {
                    let meta = self.read.open_table(tables::META).map_err(storage_error)?;
                    let mut payload = MAGIC.to_vec();
                    payload.extend_from_slice(&VERSION.to_be_bytes());
                    for name in tables::META_NAMES {
                        let value = meta.get(name).map_err(storage_error)?.map_or(0, |v| v.value());
                        payload.extend_from_slice(&value.to_be_bytes());
                    }
                    item(out, ITEM_HEADER, &payload);
                    // Alarms are few (two kinds per member): all in the header's chunk.
                    let alarms = self.read.open_table(tables::ALARMS).map_err(storage_error)?;
                    for entry in alarms.iter().map_err(storage_error)? {
                        let (key, _) = entry.map_err(storage_error)?;
                        let (code, member) = key.value();
                        let mut payload = vec![code];
                        payload.extend_from_slice(&member.to_be_bytes());
                        item(out, ITEM_ALARM, &payload);
                    }
                    // So are members: a member that joins by snapshot learns the table from it.
                    let members = self.read.open_table(tables::MEMBERS).map_err(storage_error)?;
                    for entry in members.iter().map_err(storage_error)? {
                        let (_, value) = entry.map_err(storage_error)?;
                        item(out, ITEM_MEMBER, value.value());
                    }
                    let removed = self.read.open_table(tables::MEMBERS_REMOVED).map_err(storage_error)?;
                    for entry in removed.iter().map_err(storage_error)? {
                        let (id, _) = entry.map_err(storage_error)?;
                        item(out, ITEM_MEMBER_REMOVED, &id.value().to_be_bytes());
                    }
                    self.stage = Stage::Leases { after: None };
                }
                Stage::Leases { after } => {
                    let leases = self.read.open_table(tables::LEASES).map_err(storage_error)?;
                    let start = after.map_or(i64::MIN, |id| id.saturating_add(1));
                    let mut last = None;
                    if after != Some(i64::MAX) {
                        for entry in leases.range(start..).map_err(storage_error)? {
                            let (id, value) = entry.map_err(storage_error)?;
                            let (ttl, remaining) = value.value();
                            let mut payload = id.value().to_be_bytes().to_vec();
                            payload.extend_from_slice(&ttl.to_be_bytes());
                            payload.extend_from_slice(&remaining.to_be_bytes());
                            item(out, ITEM_LEASE, &payload);
                            last = Some(id.value());
                            if out.len() >= self.chunk_bytes {
                                break;
                            }
                        }
                    }
                    self.stage = match last {
                        Some(id) if out.len() >= self.chunk_bytes => Stage::Leases { after: Some(id) },
                        _ => Stage::Revisions { after: None },
                    };
                }
                Stage::Revisions { after } => {
                    let revs = self.read.open_table(tables::REVS).map_err(storage_error)?;
                    let mut last = None;
                    let start = after.map_or(0, |key| key + 1);
                    if after != Some(u128::MAX) {
                        for entry in revs.range(start..).map_err(storage_error)? {
                            let (key, value) = entry.map_err(storage_error)?;
                            let mut payload = key.value().to_be_bytes().to_vec();
                            payload.extend_from_slice(value.value());
                            item(out, ITEM_REVISION, &payload);
                            last = Some(key.value());
                            if out.len() >= self.chunk_bytes {
                                break;
                            }
                        }
                    }
                    self.stage = match last {
                        Some(key) if out.len() >= self.chunk_bytes => Stage::Revisions { after: Some(key) },
                        _ => Stage::End,
                    };
                }
                Stage::End => {
                    let crc = crc32c::crc32c_append(self.crc, out);
                    item(out, ITEM_END, &crc.to_be_bytes());
                    self.stage = Stage::Done;
                    return Ok(());
                }
                Stage::Done => return Ok(()),
            }
        }
        Ok(())
    }
}

impl Iterator for SnapshotChunks {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if matches!(self.stage, Stage::Done) {
            return None;
        }
        let mut out = Vec::with_capacity(self.chunk_bytes + 1024);
        if let Err(error) = self.fill(&mut out) {
            self.stage = Stage::Done;
            return Some(Err(error));
        }
        if !matches!(self.stage, Stage::Done) {
            self.crc = crc32c::crc32c_append(self.crc, &out);
        }
        Some(Ok(out))
    }
}

impl Store {
    /// The image of the store as it is now, in chunks of about `chunk_bytes`.
    pub fn snapshot_chunks(&self, chunk_bytes: usize) -> Result<SnapshotChunks, Error> {
        SnapshotChunks::of(self.database(), chunk_bytes)
    }

    /// Replaces the whole state with an image, atomically: either all of it is installed or,
    /// on any error (a damaged or truncated image), nothing changes.
    pub fn install_snapshot(&mut self, chunks: impl IntoIterator<Item = Vec<u8>>) -> Result<(), Error> {
        let bad = |why: &str| Error::Storage(format!("snapshot image: {why}"));
        let mut stream: Vec<u8> = Vec::new();
        let mut crc = 0u32;
        let mut header: Option<[u64; 4]> = None;
        let mut ended = false;
        let txn = self.database().begin_write().map_err(storage_error)?;
        {
            let mut t = tables::Open::write(&txn)?;
            t.clear()?;
            for chunk in chunks {
                stream.extend_from_slice(&chunk);
                let mut at = 0;
                while let Some((kind, payload, size)) = next_item(&stream[at..]) {
                    if ended {
                        // A saved snapshot file pads the image with zeros (see the Maintenance
                        // API's stream); anything else after the end is damage.
                        if stream[at..].iter().all(|byte| *byte == 0) {
                            at = stream.len();
                            break;
                        }
                        return Err(bad("data after the end"));
                    }
                    if kind == ITEM_END {
                        let expected = u32::from_be_bytes(payload.try_into().map_err(|_| bad("malformed end"))?);
                        let covered = crc32c::crc32c_append(crc, &stream[..at]);
                        if covered != expected {
                            return Err(bad("checksum mismatch"));
                        }
                        ended = true;
                        at += size;
                        continue;
                    }
                    match kind {
                        ITEM_HEADER => header = Some(decode_header(payload).ok_or_else(|| bad("malformed header"))?),
                        ITEM_LEASE if header.is_some() => {
                            t.install_lease(payload).ok_or_else(|| bad("malformed lease"))??
                        }
                        ITEM_REVISION if header.is_some() => t.install_revision(payload)?,
                        ITEM_ALARM if header.is_some() && payload.len() == 9 => {
                            let member = u64::from_be_bytes(payload[1..].try_into().expect("8 bytes"));
                            t.alarms.insert((payload[0], member), ()).map_err(storage_error)?;
                        }
                        ITEM_MEMBER if header.is_some() => {
                            let record =
                                crate::command_codec::decode_member(payload).map_err(|_| bad("malformed member"))?;
                            t.members.insert(record.id, payload).map_err(storage_error)?;
                        }
                        ITEM_MEMBER_REMOVED if header.is_some() && payload.len() == 8 => {
                            let id = u64::from_be_bytes(payload.try_into().expect("8 bytes"));
                            t.members_removed.insert(id, ()).map_err(storage_error)?;
                        }
                        _ => return Err(bad("unexpected item")),
                    }
                    at += size;
                }
                crc = crc32c::crc32c_append(crc, &stream[..at]);
                stream.drain(..at);
            }
            if !ended || !stream.iter().all(|byte| *byte == 0) {
                return Err(bad("truncated"));
            }
            let [applied, revision, compact, cursor] = header.ok_or_else(|| bad("no header"))?;
            t.write_meta(applied, revision, compact, cursor)?;
            crate::counts::rebuild(&mut t.counts, &t.latest)?;
        }
        txn.commit().map_err(storage_error)?;
        self.reload()?;
        Ok(())
    }
}

fn next_item(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let len = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?) as usize;
    let payload = bytes.get(5..5 + len)?;
    Some((bytes[0], payload, 5 + len))
}

fn decode_header(payload: &[u8]) -> Option<[u64; 4]> {
    if payload.len() != 10 + 32 || &payload[..8] != MAGIC || payload[8..10] != VERSION.to_be_bytes() {
        return None;
    }
    let at = |slot: usize| u64::from_be_bytes(payload[10 + slot * 8..18 + slot * 8].try_into().expect("8 bytes"));
    Some([at(0), at(1), at(2), at(3)])
}

impl tables::Open<'_> {
    fn install_lease(&mut self, payload: &[u8]) -> Option<Result<(), Error>> {
        if payload.len() != 24 {
            return None;
        }
        let at = |slot: usize| i64::from_be_bytes(payload[slot * 8..slot * 8 + 8].try_into().expect("8 bytes"));
        Some(self.leases.insert(at(0), (at(1), at(2))).map(|_| ()).map_err(storage_error))
    }

    /// One history record; records arrive in revision order, so the last one seen for a key is
    /// its current state.
    fn install_revision(&mut self, payload: &[u8]) -> Result<(), Error> {
        let bad = || Error::Storage("snapshot image: malformed revision".into());
        let key = u128::from_be_bytes(payload.get(..16).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let record = Record::decode(&payload[16..])?;
        let (main, sub) = (main_of(key), (key & u64::MAX as u128) as i64);
        self.revs.insert(revision_key(main, sub), &payload[16..]).map_err(storage_error)?;
        self.index.insert((record.key.as_slice(), main as u64), sub as u64).map_err(storage_error)?;
        let previous =
            self.latest.get(record.key.as_slice()).map_err(storage_error)?.map(|v| Latest::decode(v.value()));
        if let Some(previous) = previous {
            let previous = previous?;
            if previous.lease != 0 {
                self.lease_keys.remove((previous.lease, record.key.as_slice())).map_err(storage_error)?;
            }
        }
        if record.tombstone {
            self.latest.remove(record.key.as_slice()).map_err(storage_error)?;
        } else {
            let latest = Latest {
                main,
                sub,
                create_revision: record.create_revision,
                version: record.version,
                lease: record.lease,
            };
            self.latest.insert(record.key.as_slice(), latest.encode().as_slice()).map_err(storage_error)?;
            if record.lease != 0 {
                self.lease_keys.insert((record.lease, record.key.as_slice()), ()).map_err(storage_error)?;
            }
        }
        Ok(())
    }
}

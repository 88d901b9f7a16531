//! Snapshot images: a consistent copy of the store at its applied index, as a stream of chunks
//! (sent to a follower behind the compacted log), and their atomic installation.
//!
//! The image holds the metadata, the alarms, the member table, users and roles, the leases and
//! the `revs` history; `index`, `latest` and
//! `lease_keys` are derived from the history on install (as etcd rebuilds its key index), so the
//! image carries each key-value once. Items: `[kind u8][len u32][payload]`; the last item holds a
//! crc32c of everything before it, checked before anything is committed.

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::codec::{main_of, revision_key, Record};
use crate::key_index::KeyIndex;
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
const ITEM_AUTH: u8 = 8;
const ITEM_USER: u8 = 9;
const ITEM_ROLE: u8 = 10;
const ITEM_STAMP: u8 = 11;
const ITEM_LAST_STAMP: u8 = 12;

/// Position of an export.
enum Stage {
    Header,
    Leases { after: Option<i64> },
    Revisions { after: Option<u128> },
    Stamps { after: Option<u64> },
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
                    let get = |name| -> Result<u64, Error> {
                        Ok(meta.get(name).map_err(storage_error)?.map_or(0, |v| v.value()))
                    };
                    let [applied, revision, compact, cursor] = tables::META_NAMES;
                    ImageItem::Header {
                        applied: get(applied)?,
                        revision: get(revision)?,
                        compact: get(compact)?,
                        cursor: get(cursor)?,
                    }
                    .encode_into(out);
                    // Alarms are few (two kinds per member): all in the header's chunk.
                    let alarms = self.read.open_table(tables::ALARMS).map_err(storage_error)?;
                    for entry in alarms.iter().map_err(storage_error)? {
                        let (key, _) = entry.map_err(storage_error)?;
                        let (code, member) = key.value();
                        ImageItem::Alarm { code, member }.encode_into(out);
                    }
                    // So are members: a member that joins by snapshot learns the table from it.
                    let members = self.read.open_table(tables::MEMBERS).map_err(storage_error)?;
                    for entry in members.iter().map_err(storage_error)? {
                        // The table holds the item's payload (an encoded member) as it is.
                        let (_, value) = entry.map_err(storage_error)?;
                        item(out, ITEM_MEMBER, value.value());
                    }
                    let removed = self.read.open_table(tables::MEMBERS_REMOVED).map_err(storage_error)?;
                    for entry in removed.iter().map_err(storage_error)? {
                        let (id, _) = entry.map_err(storage_error)?;
                        ImageItem::MemberRemoved(id.value()).encode_into(out);
                    }
                    // Users and roles are few too: an operator's list, not data.
                    let auth = self.read.open_table(tables::AUTH).map_err(storage_error)?;
                    let get = |name| Ok::<_, Error>(auth.get(name).map_err(storage_error)?.map_or(0, |v| v.value()));
                    let mut forward_key = Vec::new();
                    for name in crate::auth::AUTH_FORWARD_KEY {
                        if let Some(word) = auth.get(name).map_err(storage_error)? {
                            forward_key.extend_from_slice(&word.value().to_be_bytes());
                        }
                    }
                    ImageItem::Auth {
                        enabled: get(crate::auth::AUTH_ENABLED)? == 1,
                        revision: get(crate::auth::AUTH_REVISION)?,
                        forward_key,
                    }
                    .encode_into(out);
                    for (table, kind) in [(tables::AUTH_USERS, ITEM_USER), (tables::AUTH_ROLES, ITEM_ROLE)] {
                        let table = self.read.open_table(table).map_err(storage_error)?;
                        for entry in table.iter().map_err(storage_error)? {
                            let (_, value) = entry.map_err(storage_error)?;
                            item(out, kind, value.value());
                        }
                    }
                    let last_stamp = get_meta(&self.read, tables::META_LAST_STAMP)?;
                    if last_stamp > 0 {
                        ImageItem::LastStamp(last_stamp).encode_into(out);
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
                            ImageItem::Lease { id: id.value(), ttl, remaining }.encode_into(out);
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
                            // `ImageItem::Revision`'s layout, from the table's bytes as they
                            // are (no decoding on the way out).
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
                        _ => Stage::Stamps { after: None },
                    };
                }
                Stage::Stamps { after } => {
                    let mut last = None;
                    if after != Some(u64::MAX) {
                        let stamps = match self.read.open_table(tables::STAMPS) {
                            Ok(table) => Some(table),
                            Err(redb::TableError::TableDoesNotExist(_)) => None,
                            Err(error) => return Err(storage_error(error)),
                        };
                        let start = after.map_or(0, |stamp| stamp + 1);
                        for entry in stamps.iter().flat_map(|table| table.range(start..)).flatten() {
                            let (stamp, revision) = entry.map_err(storage_error)?;
                            ImageItem::Stamp { stamp: stamp.value(), revision: revision.value() }.encode_into(out);
                            last = Some(stamp.value());
                            if out.len() >= self.chunk_bytes {
                                break;
                            }
                        }
                    }
                    self.stage = match last {
                        Some(stamp) if out.len() >= self.chunk_bytes => Stage::Stamps { after: Some(stamp) },
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
        let txn = self.database().begin_write().map_err(storage_error)?;
        let mut index = KeyIndex::new();
        {
            let mut t = tables::Open::write(&txn)?;
            t.clear()?;
            let mut stamps = txn.open_table(tables::STAMPS).map_err(storage_error)?;
            stamps.retain(|_, _| false).map_err(storage_error)?;
            let mut last_stamp = 0;
            let mut parser = ImageParser::default();
            let mut header = None;
            for chunk in chunks {
                parser.feed(&chunk, &mut |item| {
                    match item {
                        ImageItem::Header { applied, revision, compact, cursor } => {
                            header = Some([applied, revision, compact, cursor])
                        }
                        ImageItem::Lease { id, ttl, remaining } => {
                            t.leases.insert(id, (ttl, remaining)).map_err(storage_error)?;
                        }
                        ImageItem::Revision { main, sub, record } => {
                            t.install_revision(&mut index, main, sub, &record)?
                        }
                        ImageItem::Alarm { code, member } => {
                            t.alarms.insert((code, member), ()).map_err(storage_error)?;
                        }
                        ImageItem::Member(record) => {
                            let encoded = crate::command_codec::encode_member(&record);
                            t.members.insert(record.id, encoded.as_slice()).map_err(storage_error)?;
                        }
                        ImageItem::MemberRemoved(id) => {
                            t.members_removed.insert(id, ()).map_err(storage_error)?;
                        }
                        ImageItem::Auth { enabled, revision, forward_key } => {
                            t.auth.auth.insert(crate::auth::AUTH_ENABLED, u64::from(enabled)).map_err(storage_error)?;
                            t.auth.auth.insert(crate::auth::AUTH_REVISION, revision).map_err(storage_error)?;
                            crate::auth::set_forward_key(&mut t.auth.auth, &forward_key)?;
                        }
                        ImageItem::User(user) => {
                            let bytes = crate::etcd_format::encode_user(&user);
                            t.auth.users.insert(user.name.as_str(), bytes.as_slice()).map_err(storage_error)?;
                        }
                        ImageItem::Role(role) => {
                            let bytes = crate::etcd_format::encode_role(&role);
                            t.auth.roles.insert(role.name.as_str(), bytes.as_slice()).map_err(storage_error)?;
                        }
                        ImageItem::Stamp { stamp, revision } => {
                            stamps.insert(stamp, revision).map_err(storage_error)?;
                        }
                        ImageItem::LastStamp(stamp) => last_stamp = stamp,
                    }
                    Ok(())
                })?;
            }
            parser.finish()?;
            let [applied, revision, compact, cursor] = header.ok_or_else(|| image_error("no header"))?;
            t.write_meta(applied, revision, compact, cursor)?;
            if last_stamp > 0 {
                t.meta.insert(tables::META_LAST_STAMP, last_stamp).map_err(storage_error)?;
            }
            index.set_compact_revision(compact as i64);
            crate::counts::rebuild(&mut t.counts, &index)?;
        }
        self.commit_with_index(txn, index)?;
        self.reload()?;
        Ok(())
    }
}

/// A counter of the `meta` table in a read transaction (0 if unset).
fn get_meta(read: &ReadTransaction, name: &str) -> Result<u64, Error> {
    let meta = read.open_table(tables::META).map_err(storage_error)?;
    let value = meta.get(name).map_err(storage_error)?.map_or(0, |v| v.value());
    Ok(value)
}

fn image_error(why: &str) -> Error {
    Error::Storage(format!("snapshot image: {why}"))
}

/// One item of a snapshot image. An image is a header, then alarms, members and removed
/// members, then leases in id order, then the history in revision order, then a checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageItem {
    /// The store's counters.
    Header {
        /// Last applied log index.
        applied: u64,
        /// Current revision.
        revision: u64,
        /// Compact revision.
        compact: u64,
        /// Where physical compaction is (equal to `compact` when it is done).
        cursor: u64,
    },
    /// A raised alarm: its table code and the member it concerns.
    Alarm {
        /// [`tables::NO_SPACE_CODE`] or [`tables::CORRUPT_CODE`].
        code: u8,
        /// The member.
        member: u64,
    },
    /// A member.
    Member(crate::MemberRecord),
    /// The id of a removed member.
    MemberRemoved(u64),
    /// The auth switch and revision.
    Auth {
        /// Authentication is on.
        enabled: bool,
        /// Auth revision.
        revision: u64,
        /// The members' forwarding key (32 bytes, or empty if there is none).
        forward_key: Vec<u8>,
    },
    /// A user.
    User(crate::auth::User),
    /// A role.
    Role(crate::auth::Role),
    /// A lease.
    Lease {
        /// Id.
        id: i64,
        /// Granted TTL in seconds.
        ttl: i64,
        /// Remaining TTL last checkpointed (0: none).
        remaining: i64,
    },
    /// A revision's entry stamp (see `tables::STAMPS`).
    Stamp {
        /// The stamp.
        stamp: u64,
        /// The revision.
        revision: i64,
    },
    /// The newest stamp of any applied entry (`tables::META_LAST_STAMP`).
    LastStamp(u64),
    /// A key's state written at (main, sub).
    Revision {
        /// Main revision.
        main: i64,
        /// Sub revision.
        sub: i64,
        /// The state.
        record: Record,
    },
}

impl ImageItem {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            ImageItem::Header { applied, revision, compact, cursor } => {
                let mut payload = MAGIC.to_vec();
                payload.extend_from_slice(&VERSION.to_be_bytes());
                for value in [applied, revision, compact, cursor] {
                    payload.extend_from_slice(&value.to_be_bytes());
                }
                item(out, ITEM_HEADER, &payload);
            }
            ImageItem::Alarm { code, member } => {
                let mut payload = vec![*code];
                payload.extend_from_slice(&member.to_be_bytes());
                item(out, ITEM_ALARM, &payload);
            }
            ImageItem::Member(record) => item(out, ITEM_MEMBER, &crate::command_codec::encode_member(record)),
            ImageItem::MemberRemoved(id) => item(out, ITEM_MEMBER_REMOVED, &id.to_be_bytes()),
            ImageItem::Auth { enabled, revision, forward_key } => {
                let mut payload = vec![u8::from(*enabled)];
                payload.extend_from_slice(&revision.to_be_bytes());
                payload.extend_from_slice(forward_key);
                item(out, ITEM_AUTH, &payload);
            }
            ImageItem::User(user) => item(out, ITEM_USER, &crate::etcd_format::encode_user(user)),
            ImageItem::Role(role) => item(out, ITEM_ROLE, &crate::etcd_format::encode_role(role)),
            ImageItem::Lease { id, ttl, remaining } => {
                let mut payload = id.to_be_bytes().to_vec();
                payload.extend_from_slice(&ttl.to_be_bytes());
                payload.extend_from_slice(&remaining.to_be_bytes());
                item(out, ITEM_LEASE, &payload);
            }
            ImageItem::Stamp { stamp, revision } => {
                let mut payload = stamp.to_be_bytes().to_vec();
                payload.extend_from_slice(&revision.to_be_bytes());
                item(out, ITEM_STAMP, &payload);
            }
            ImageItem::LastStamp(stamp) => item(out, ITEM_LAST_STAMP, &stamp.to_be_bytes()),
            ImageItem::Revision { main, sub, record } => {
                let mut payload = revision_key(*main, *sub).to_be_bytes().to_vec();
                payload.extend_from_slice(&record.encode());
                item(out, ITEM_REVISION, &payload);
            }
        }
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<ImageItem, Error> {
        let i64_at = |at: usize| i64::from_be_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
        Ok(match kind {
            ITEM_HEADER => {
                let [applied, revision, compact, cursor] =
                    decode_header(payload).ok_or_else(|| image_error("malformed header"))?;
                ImageItem::Header { applied, revision, compact, cursor }
            }
            ITEM_ALARM if payload.len() == 9 => ImageItem::Alarm { code: payload[0], member: i64_at(1) as u64 },
            ITEM_MEMBER => ImageItem::Member(
                crate::command_codec::decode_member(payload).map_err(|_| image_error("malformed member"))?,
            ),
            ITEM_MEMBER_REMOVED if payload.len() == 8 => ImageItem::MemberRemoved(i64_at(0) as u64),
            ITEM_AUTH if (payload.len() == 9 || payload.len() == 41) && payload[0] <= 1 => ImageItem::Auth {
                enabled: payload[0] == 1,
                revision: i64_at(1) as u64,
                forward_key: payload[9..].to_vec(),
            },
            ITEM_USER => {
                ImageItem::User(crate::etcd_format::decode_user(payload).map_err(|_| image_error("malformed user"))?)
            }
            ITEM_ROLE => {
                ImageItem::Role(crate::etcd_format::decode_role(payload).map_err(|_| image_error("malformed role"))?)
            }
            ITEM_LEASE if payload.len() == 24 => {
                ImageItem::Lease { id: i64_at(0), ttl: i64_at(8), remaining: i64_at(16) }
            }
            ITEM_REVISION if payload.len() >= 16 => {
                let key = u128::from_be_bytes(payload[..16].try_into().expect("16 bytes"));
                let record = Record::decode(&payload[16..]).map_err(|_| image_error("malformed revision"))?;
                ImageItem::Revision { main: main_of(key), sub: key as u64 as i64, record }
            }
            ITEM_STAMP if payload.len() == 16 => ImageItem::Stamp { stamp: i64_at(0) as u64, revision: i64_at(8) },
            ITEM_LAST_STAMP if payload.len() == 8 => ImageItem::LastStamp(i64_at(0) as u64),
            _ => return Err(image_error("unexpected item")),
        })
    }
}

/// Writes an image item by item (the image of a store built from elsewhere, e.g. an etcd
/// snapshot), ending it with its checksum.
pub struct ImageWriter<W: std::io::Write> {
    out: W,
    crc: u32,
    buffer: Vec<u8>,
}

impl<W: std::io::Write> ImageWriter<W> {
    /// An image written into `out`; the first item must be a [`ImageItem::Header`].
    pub fn new(out: W) -> Self {
        ImageWriter { out, crc: 0, buffer: Vec::with_capacity(1 << 16) }
    }

    /// Appends an item.
    pub fn push(&mut self, item: &ImageItem) -> std::io::Result<()> {
        item.encode_into(&mut self.buffer);
        if self.buffer.len() >= 1 << 16 {
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn flush_buffer(&mut self) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buffer);
        self.out.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }

    /// Ends the image with its checksum and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_buffer()?;
        let mut end = Vec::new();
        item(&mut end, ITEM_END, &self.crc.to_be_bytes());
        self.out.write_all(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads an image's items from its chunks, checking its checksum at the end.
#[derive(Default)]
pub struct ImageParser {
    stream: Vec<u8>,
    crc: u32,
    header: bool,
    ended: bool,
}

impl ImageParser {
    /// Takes the next chunk and calls `visit` with each item it completes.
    pub fn feed(&mut self, chunk: &[u8], visit: &mut dyn FnMut(ImageItem) -> Result<(), Error>) -> Result<(), Error> {
        self.stream.extend_from_slice(chunk);
        let mut at = 0;
        while let Some((kind, payload, size)) = next_item(&self.stream[at..]) {
            if self.ended {
                // A saved snapshot file pads the image with zeros (see the Maintenance API's
                // stream); anything else after the end is damage.
                if self.stream[at..].iter().all(|byte| *byte == 0) {
                    at = self.stream.len();
                    break;
                }
                return Err(image_error("data after the end"));
            }
            if kind == ITEM_END {
                let expected = u32::from_be_bytes(payload.try_into().map_err(|_| image_error("malformed end"))?);
                if crc32c::crc32c_append(self.crc, &self.stream[..at]) != expected {
                    return Err(image_error("checksum mismatch"));
                }
                self.ended = true;
                at += size;
                continue;
            }
            let item = ImageItem::decode(kind, payload)?;
            if matches!(item, ImageItem::Header { .. }) == self.header {
                return Err(image_error(if self.header { "a second header" } else { "no header first" }));
            }
            self.header = true;
            visit(item)?;
            at += size;
        }
        if !self.ended {
            self.crc = crc32c::crc32c_append(self.crc, &self.stream[..at]);
        }
        self.stream.drain(..at);
        Ok(())
    }

    /// Checks that the image ended with its checksum (and only zeros after it).
    pub fn finish(self) -> Result<(), Error> {
        if !self.ended || !self.stream.iter().all(|byte| *byte == 0) {
            return Err(image_error("truncated"));
        }
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
    /// One history record; records arrive in revision order, so the last one seen for a key is
    /// its current state.
    fn install_revision(&mut self, index: &mut KeyIndex, main: i64, sub: i64, record: &Record) -> Result<(), Error> {
        self.revs.insert(revision_key(main, sub), record.encode().as_slice()).map_err(storage_error)?;
        if let Some(previous) = index.latest(&record.key) {
            if previous.lease != 0 {
                self.lease_keys.remove((previous.lease, record.key.as_slice())).map_err(storage_error)?;
            }
        }
        let live = (!record.tombstone).then_some((record.create_revision, record.version, record.lease));
        index.record(&record.key, main, sub, live);
        if record.lease != 0 && !record.tombstone {
            self.lease_keys.insert((record.lease, record.key.as_slice()), ()).map_err(storage_error)?;
        }
        Ok(())
    }
}

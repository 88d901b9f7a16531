//! etcd's snapshot format: a bbolt database with etcd's buckets, followed by the SHA-256 of
//! the database (what `etcdctl snapshot save` writes). Import turns one into a ballot store
//! image; export turns a ballot store image into one, which `etcdctl snapshot status` and
//! `etcdctl snapshot restore` accept. The mapping is in `docs/etcd-snapshots.md`.
//!
//! | etcd bucket | ballot | both ways |
//! |---|---|---|
//! | `key`: revision bytes → `mvccpb.KeyValue` | the history (`revs`, and the indexes built from it) | yes |
//! | `lease`: id → `leasepb.Lease` | `leases` (attached keys come from the history) | yes |
//! | `meta`: `consistent_index`, `scheduledCompactRev`, `finishedCompactRev` | applied index, compact revision, compaction progress | yes |
//! | `alarm`: `AlarmMember` | `alarms` | yes |
//! | `members`, `members_removed` | the member table | exported; a restore replaces them |
//! | `cluster`: `clusterVersion` | — | exported as 3.4.0 |
//! | `auth`: `authEnabled`, `authRevision` | the auth switch and revision | yes |
//! | `authUsers`: name → `authpb.User`, `authRoles`: name → `authpb.Role` | users (bcrypt hashes as they are) and roles | yes |

use std::io::{BufWriter, Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context};
use ballot_bbolt::{Db, Writer, DEFAULT_PAGE_SIZE};
use ballot_mvcc::codec::Record;
use ballot_mvcc::etcd_format::{
    decode_alarm, decode_key_value, decode_lease, decode_role, decode_user, encode_alarm, encode_key_value,
    encode_lease, encode_role, encode_user, parse_revision_bytes, revision_bytes,
};
use ballot_mvcc::{tables, ImageItem, ImageParser, ImageWriter, MemberRecord};
use sha2::{Digest, Sha256};

/// Length of the SHA-256 that ends an etcd snapshot.
const HASH_BYTES: u64 = 32;
/// The cluster version an exported snapshot names (the API version ballot speaks).
const CLUSTER_VERSION: &[u8] = b"3.4.0";

/// True if `head` (a file's first bytes) starts like a bbolt database: a meta page with
/// bbolt's magic number.
pub fn is_etcd_snapshot(head: &[u8]) -> bool {
    head.len() >= 20 && head[8..10] == [0x04, 0x00] && head[16..20] == 0xED0C_DAEDu32.to_le_bytes()
}

/// What an import found.
#[derive(Debug, Default)]
pub struct Imported {
    /// The current revision.
    pub revision: i64,
    /// The compact revision.
    pub compact_revision: i64,
    /// History records (key revisions, tombstones included).
    pub revisions: u64,
    /// Leases.
    pub leases: u64,
    /// The etcd applied index (`consistent_index`).
    pub applied_index: u64,
    /// What the file holds that ballot does not carry, one line each.
    pub not_carried: Vec<String>,
}

/// Checks the SHA-256 that ends the etcd snapshot at `path` and returns the database's
/// length. As etcd does, a file whose length is not a multiple of 512 plus 32 has no hash: it
/// is refused unless `skip_hash_check` (a database file copied from a member's data dir).
pub fn verify_hash(path: &Path, skip_hash_check: bool) -> anyhow::Result<u64> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let has_hash = len % 512 == HASH_BYTES;
    if !has_hash {
        if skip_hash_check {
            return Ok(len);
        }
        bail!(
            "{}: the snapshot has no SHA-256 at its end (use --skip-hash-check for a copied database file)",
            path.display()
        );
    }
    let db_len = len - HASH_BYTES;
    if !skip_hash_check {
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut file).take(db_len), &mut hasher)?;
        let mut expected = [0u8; HASH_BYTES as usize];
        file.read_exact(&mut expected)?;
        if hasher.finalize().as_slice() != expected {
            bail!("{}: the snapshot's SHA-256 does not match its content: the file is damaged", path.display());
        }
    }
    Ok(db_len)
}

fn bbolt_error(path: &Path) -> impl Fn(ballot_bbolt::Error) -> anyhow::Error + '_ {
    move |error| anyhow::anyhow!("{}: {error}", path.display())
}

/// Reads the etcd snapshot at `path` (its first `db_len` bytes) and writes the equivalent
/// ballot store image into `image`. Everything is validated: a damaged file is an error that
/// says what is wrong, and nothing is written that did not decode.
pub fn import(path: &Path, db_len: u64, image: &Path) -> anyhow::Result<Imported> {
    let db = Db::open_file(path, Some(db_len)).map_err(bbolt_error(path))?;
    let mut imported = Imported::default();
    for required in [&b"key"[..], b"meta"] {
        if !db.has_bucket(required).map_err(bbolt_error(path))? {
            bail!("{}: no {:?} bucket: not an etcd v3 snapshot", path.display(), String::from_utf8_lossy(required));
        }
    }

    // The meta bucket: applied index and compaction.
    let (mut scheduled, mut finished) = (0i64, 0i64);
    db.for_each(b"meta", &mut |key, value| {
        let revision = || parse_revision_bytes(value).map(|(main, _, _)| main);
        match key {
            b"consistent_index" => {
                imported.applied_index = u64::from_be_bytes(value.try_into().map_err(|_| invalid("consistent_index"))?)
            }
            b"scheduledCompactRev" => scheduled = revision().ok_or_else(|| invalid("scheduledCompactRev"))?,
            b"finishedCompactRev" => finished = revision().ok_or_else(|| invalid("finishedCompactRev"))?,
            _ => {}
        }
        Ok(())
    })
    .map_err(bbolt_error(path))?;
    let compact = scheduled.max(finished);
    // An interrupted compaction resumes where it may have stopped, as etcd resumes it.
    let cursor = if finished >= compact { compact } else { finished };

    // First pass over the history: validate it and find the current revision.
    let mut last_main = 0i64;
    db.for_each(b"key", &mut |key, value| {
        let (main, _, _) = history_record(key, value)?;
        last_main = main;
        imported.revisions += 1;
        Ok(())
    })
    .map_err(bbolt_error(path))?;
    imported.revision = last_main.max(compact);
    imported.compact_revision = compact;

    let file = std::fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
    let mut out = ImageWriter::new(BufWriter::with_capacity(1 << 20, file));
    out.push(&ImageItem::Header {
        applied: imported.applied_index,
        revision: imported.revision as u64,
        compact: compact as u64,
        cursor: cursor as u64,
    })?;
    if db.has_bucket(b"alarm").map_err(bbolt_error(path))? {
        let mut alarms = Vec::new();
        db.for_each(b"alarm", &mut |key, _| {
            let (member, code) = decode_alarm(key).map_err(|why| invalid(&format!("alarm: {why}")))?;
            match u8::try_from(code) {
                Ok(code @ (tables::NO_SPACE_CODE | tables::CORRUPT_CODE)) => alarms.push((code, member)),
                _ => return Err(invalid(&format!("alarm type {code}"))),
            }
            Ok(())
        })
        .map_err(bbolt_error(path))?;
        alarms.sort();
        for (code, member) in alarms {
            out.push(&ImageItem::Alarm { code, member })?;
        }
    }
    if db.has_bucket(b"lease").map_err(bbolt_error(path))? {
        let mut leases = Vec::new();
        db.for_each(b"lease", &mut |key, value| {
            let (id, ttl, remaining) = decode_lease(value).map_err(|why| invalid(&format!("lease: {why}")))?;
            if key != id.to_be_bytes() {
                return Err(invalid(&format!("lease {id:x} stored under another id")));
            }
            leases.push((id, ttl, remaining));
            Ok(())
        })
        .map_err(bbolt_error(path))?;
        // ballot orders leases as signed integers, etcd's bucket as bytes.
        leases.sort();
        imported.leases = leases.len() as u64;
        for (id, ttl, remaining) in leases {
            out.push(&ImageItem::Lease { id, ttl, remaining })?;
        }
    }
    import_auth(&db, &mut out).map_err(bbolt_error(path))?;
    let mut write_error = None;
    db.for_each(b"key", &mut |key, value| {
        let (main, sub, record) = history_record(key, value)?;
        if let Err(error) = out.push(&ImageItem::Revision { main, sub, record }) {
            write_error = Some(error);
            return Err(invalid("writing the image failed"));
        }
        Ok(())
    })
    .map_err(|error| write_error.take().map_or_else(|| bbolt_error(path)(error), anyhow::Error::from))?;
    out.finish()?.into_inner().map_err(|error| error.into_error())?.sync_all()?;
    imported.not_carried = not_carried(&db).map_err(bbolt_error(path))?;
    Ok(imported)
}

/// The `auth`, `authUsers` and `authRoles` buckets, as image items.
fn import_auth<S: ballot_bbolt::Source + ?Sized, W: Write>(
    db: &Db<S>,
    out: &mut ImageWriter<W>,
) -> Result<(), ballot_bbolt::Error> {
    let mut items = Vec::new();
    let (mut enabled, mut revision) = (false, 0u64);
    if db.has_bucket(b"auth")? {
        db.for_each(b"auth", &mut |key, value| {
            match key {
                b"authEnabled" => enabled = value == [1],
                b"authRevision" => {
                    revision = u64::from_be_bytes(value.try_into().map_err(|_| invalid("authRevision"))?)
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    // etcd has no forwarding key: the import makes none; the next AuthEnable on ballot makes
    // one (see README "Securing a cluster").
    items.push(ImageItem::Auth { enabled, revision, forward_key: Vec::new() });
    for bucket in [&b"authUsers"[..], b"authRoles"] {
        if !db.has_bucket(bucket)? {
            continue;
        }
        db.for_each(bucket, &mut |key, value| {
            let item = if bucket == b"authUsers" {
                let user = decode_user(value).map_err(|why| invalid(&format!("user: {why}")))?;
                (user.name.as_bytes() == key).then_some(ImageItem::User(user))
            } else {
                let role = decode_role(value).map_err(|why| invalid(&format!("role: {why}")))?;
                (role.name.as_bytes() == key).then_some(ImageItem::Role(role))
            };
            items.push(item.ok_or_else(|| invalid("user or role stored under another name"))?);
            Ok(())
        })?;
    }
    for item in items {
        out.push(&item).map_err(|error| ballot_bbolt::Error::Invalid(format!("writing the image: {error}")))?;
    }
    Ok(())
}

fn invalid(what: &str) -> ballot_bbolt::Error {
    ballot_bbolt::Error::Invalid(format!("etcd content: malformed {what}"))
}

/// One entry of the `key` bucket as a ballot history record, checked for consistency.
fn history_record(key: &[u8], value: &[u8]) -> Result<(i64, i64, Record), ballot_bbolt::Error> {
    let (main, sub, tombstone) = parse_revision_bytes(key).ok_or_else(|| invalid("revision key"))?;
    let kv = decode_key_value(value).map_err(|why| invalid(&format!("key-value at revision {main}: {why}")))?;
    if main <= 0 || sub < 0 || kv.key.is_empty() || (!tombstone && (kv.mod_revision != main || kv.version <= 0)) {
        return Err(invalid(&format!("key-value at revision {main}")));
    }
    let record = Record {
        tombstone,
        create_revision: if tombstone { 0 } else { kv.create_revision },
        version: if tombstone { 0 } else { kv.version },
        lease: if tombstone { 0 } else { kv.lease },
        key: kv.key,
        value: if tombstone { Vec::new() } else { kv.value },
    };
    Ok((main, sub, record))
}

/// What an etcd snapshot holds that ballot does not carry.
fn not_carried<S: ballot_bbolt::Source + ?Sized>(db: &Db<S>) -> Result<Vec<String>, ballot_bbolt::Error> {
    let mut lines = Vec::new();
    let count = |bucket: &[u8]| -> Result<usize, ballot_bbolt::Error> {
        let mut n = 0;
        if db.has_bucket(bucket)? {
            db.for_each(bucket, &mut |_, _| {
                n += 1;
                Ok(())
            })?;
        }
        Ok(n)
    };
    let members = count(b"members")?;
    if members > 0 {
        lines.push(format!(
            "{members} members of the old cluster: replaced by --initial-cluster, as etcd's restore does"
        ));
    }
    Ok(lines)
}

/// etcd's JSON for a member in its `members` bucket.
#[derive(serde::Serialize)]
struct EtcdMember<'a> {
    id: u64,
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

/// The state of an export: the small tables are held until the history starts.
#[derive(Default)]
struct Small {
    header: Option<(u64, u64, u64)>,
    alarms: Vec<(Vec<u8>, Vec<u8>)>,
    members: Vec<(Vec<u8>, Vec<u8>)>,
    removed: Vec<(Vec<u8>, Vec<u8>)>,
    leases: Vec<(Vec<u8>, Vec<u8>)>,
    auth: Vec<(Vec<u8>, Vec<u8>)>,
    users: Vec<(Vec<u8>, Vec<u8>)>,
    roles: Vec<(Vec<u8>, Vec<u8>)>,
    written: bool,
}

impl Small {
    fn write<W: Write + Seek>(&mut self, writer: &mut Writer<W>) -> Result<(), ballot_bbolt::Error> {
        self.written = true;
        for (name, pairs) in [
            (&b"alarm"[..], &mut self.alarms),
            (b"members", &mut self.members),
            (b"members_removed", &mut self.removed),
            (b"lease", &mut self.leases),
            (b"auth", &mut self.auth),
            (b"authUsers", &mut self.users),
            (b"authRoles", &mut self.roles),
        ] {
            pairs.sort();
            writer.bucket(name)?;
            for (key, value) in pairs.iter() {
                writer.put(key, value)?;
            }
        }
        writer.bucket(b"cluster")?;
        writer.put(b"clusterVersion", CLUSTER_VERSION)?;
        writer.bucket(b"key")
    }
}

/// Writes the etcd snapshot database of a ballot store image (its chunks) into `out`, and
/// returns the database's length and its SHA-256 (which a snapshot file appends).
pub fn export<W: Write + Seek>(
    chunks: impl IntoIterator<Item = Result<Vec<u8>, ballot_mvcc::Error>>,
    out: W,
) -> anyhow::Result<(W, u64)> {
    let mut writer = Writer::new(out, DEFAULT_PAGE_SIZE)?;
    let mut small = Small::default();
    let mut parser = ImageParser::default();
    for chunk in chunks {
        let chunk = chunk.map_err(|error| anyhow::anyhow!("reading the store: {error}"))?;
        let mut failure: Option<ballot_bbolt::Error> = None;
        parser.feed(&chunk, &mut |item| {
            let result = export_item(&mut writer, &mut small, item);
            result.map_err(|error| {
                let message = error.to_string();
                failure = Some(error);
                ballot_mvcc::Error::Storage(message)
            })
        })?;
        if let Some(error) = failure {
            return Err(error.into());
        }
    }
    parser.finish()?;
    if !small.written {
        small.write(&mut writer)?;
    }
    let (applied, compact, cursor) = small.header.context("the image has no header")?;
    writer.bucket(b"meta")?;
    writer.put(b"consistent_index", &applied.to_be_bytes())?;
    if compact > 0 {
        if cursor >= compact {
            writer.put(b"finishedCompactRev", &revision_bytes(compact as i64, 0, false))?;
        }
        writer.put(b"scheduledCompactRev", &revision_bytes(compact as i64, 0, false))?;
    }
    Ok(writer.finish()?)
}

fn export_item<W: Write + Seek>(
    writer: &mut Writer<W>,
    small: &mut Small,
    item: ImageItem,
) -> Result<(), ballot_bbolt::Error> {
    match item {
        ImageItem::Header { applied, compact, cursor, .. } => small.header = Some((applied, compact, cursor)),
        ImageItem::Alarm { code, member } => small.alarms.push((encode_alarm(member, code), Vec::new())),
        ImageItem::Member(MemberRecord { id, name, peer_urls, client_urls, is_learner }) => {
            let json = serde_json::to_vec(&EtcdMember {
                id,
                peer_urls: &peer_urls,
                is_learner,
                name: &name,
                client_urls: &client_urls,
            })
            .expect("a member serializes");
            small.members.push((format!("{id:x}").into_bytes(), json));
        }
        ImageItem::MemberRemoved(id) => small.removed.push((format!("{id:x}").into_bytes(), b"removed".to_vec())),
        ImageItem::Lease { id, ttl, remaining } => {
            small.leases.push((id.to_be_bytes().to_vec(), encode_lease(id, ttl, remaining)))
        }
        ImageItem::Auth { enabled, revision, .. } => {
            small.auth.push((b"authEnabled".to_vec(), vec![u8::from(enabled)]));
            small.auth.push((b"authRevision".to_vec(), revision.to_be_bytes().to_vec()));
        }
        ImageItem::User(user) => small.users.push((user.name.clone().into_bytes(), encode_user(&user))),
        ImageItem::Role(role) => small.roles.push((role.name.clone().into_bytes(), encode_role(&role))),
        ImageItem::Revision { main, sub, record } => {
            if !small.written {
                small.write(writer)?;
            }
            writer.put(&revision_bytes(main, sub, record.tombstone), &encode_key_value(&record, main))?;
        }
        // Entry stamps have no place in etcd's format: reads as of a time start over there.
        ImageItem::Stamp { .. } | ImageItem::LastStamp(_) => {}
    }
    Ok(())
}

/// Writes a whole etcd snapshot file (database, then its SHA-256) of the store image `chunks`
/// at `path`, synced; returns its length.
pub fn save_file(
    chunks: impl IntoIterator<Item = Result<Vec<u8>, ballot_mvcc::Error>>,
    path: &Path,
) -> anyhow::Result<u64> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    let (file, len) = export(chunks, BufWriter::with_capacity(1 << 20, file))?;
    let mut file = file.into_inner().map_err(|error| error.into_error())?;
    file.set_len(len)?;
    file.rewind()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut file).take(len), &mut hasher)?;
    file.write_all(&hasher.finalize())?;
    file.sync_all()?;
    Ok(len + HASH_BYTES)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ballot_mvcc::{
        AlarmKind, Command, DeleteRangeRequest, MemberChange, PutRequest, RangeRequest, RequestOp, Store, TxnRequest,
    };

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("ballot-etcd-snapshot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn put(key: &str, value: &str, lease: i64) -> PutRequest {
        PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() }
    }

    /// A store with history, deletes, a txn (sub revisions), leases, a compaction, an alarm
    /// and a member.
    fn filled_store() -> Store {
        let mut store = Store::in_memory().unwrap();
        let mut commands = vec![
            Command::LeaseGrant { id: 0x7d7b_a21e, ttl: 600 },
            Command::LeaseGrant { id: 3, ttl: 30 },
            Command::LeaseCheckpoint { id: 3, remaining_ttl: 12 },
        ];
        for i in 0..400 {
            commands.push(Command::Put(put(&format!("/k/{:03}", i % 150), &"v".repeat(i % 50), 0)));
        }
        commands.push(Command::Put(put("/leased/a", "x", 0x7d7b_a21e)));
        commands.push(Command::Put(put("/leased/b", "y", 3)));
        commands.push(Command::DeleteRange(DeleteRangeRequest {
            key: b"/k/01".to_vec(),
            range_end: b"/k/02".to_vec(),
            ..Default::default()
        }));
        commands.push(Command::Compact { revision: 300 });
        commands.push(Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(put("/t/1", "one", 0)), RequestOp::Put(put("/t/2", "two", 0))],
            failure: vec![],
        }));
        commands.push(Command::Alarm { activate: true, kind: AlarmKind::NoSpace, member_id: 9 });
        commands.push(Command::Members(vec![MemberChange::Upsert(MemberRecord {
            id: 0xabc,
            name: "m".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec![],
            is_learner: false,
        })]));
        let batch: Vec<(u64, Command)> = commands.into_iter().enumerate().map(|(i, c)| (i as u64 + 1, c)).collect();
        store.apply_batch(&batch).unwrap();
        store
    }

    fn everything(store: &Store, revision: i64) -> Vec<ballot_mvcc::KeyValue> {
        let request = RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() };
        store.range(&request).unwrap().kvs
    }

    #[test]
    fn a_store_goes_to_etcd_format_and_back_unchanged() {
        let source = filled_store();
        let file = scratch("round-trip.db");
        let len = save_file(source.snapshot_chunks(1 << 12).unwrap(), &file).unwrap();
        assert_eq!(len % 512, HASH_BYTES, "a database of whole pages and its SHA-256");
        let db_len = verify_hash(&file, false).unwrap();
        let image = scratch("round-trip.image");
        let imported = import(&file, db_len, &image).unwrap();
        assert_eq!((imported.revision, imported.compact_revision), (source.revision(), source.compact_revision()));
        assert_eq!(imported.leases, 2);
        let mut copy = Store::in_memory().unwrap();
        copy.install_snapshot([std::fs::read(&image).unwrap()]).unwrap();
        assert_eq!(copy.revision(), source.revision());
        assert_eq!(copy.compact_revision(), source.compact_revision());
        assert_eq!(copy.applied_index(), source.applied_index());
        assert_eq!(everything(&copy, 0), everything(&source, 0));
        assert_eq!(everything(&copy, 350), everything(&source, 350));
        assert_eq!(copy.leases().unwrap(), source.leases().unwrap());
        assert_eq!(copy.hash_kv(0).unwrap(), source.hash_kv(0).unwrap());
        assert_eq!(copy.hash_kv(320).unwrap(), source.hash_kv(320).unwrap());
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&image);
    }

    #[test]
    fn a_damaged_snapshot_is_refused_with_a_reason() {
        let file = scratch("damaged.db");
        save_file(filled_store().snapshot_chunks(1 << 16).unwrap(), &file).unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[5 * 4096 + 100] ^= 0x55;
        std::fs::write(&file, &bytes).unwrap();
        let error = verify_hash(&file, false).unwrap_err().to_string();
        assert!(error.contains("SHA-256 does not match"), "{error}");
        std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
        let error = verify_hash(&file, false).unwrap_err().to_string();
        assert!(error.contains("no SHA-256"), "{error}");
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn damage_past_the_hash_check_gives_an_error_never_a_panic() {
        let file = scratch("fuzz.db");
        save_file(filled_store().snapshot_chunks(1 << 16).unwrap(), &file).unwrap();
        let pristine = std::fs::read(&file).unwrap();
        let db_len = pristine.len() - HASH_BYTES as usize;
        let image = scratch("fuzz.image");
        // A deterministic stream of damage (xorshift): flips in the pages etcd's content
        // lives in, as --skip-hash-check would let through.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut refused = 0;
        for _ in 0..200 {
            let mut bytes = pristine[..db_len].to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % db_len;
                bytes[at] ^= (next() as u8) | 1;
            }
            std::fs::write(&file, &bytes).unwrap();
            if let Err(error) = import(&file, db_len as u64, &image) {
                refused += 1;
                assert!(!error.to_string().is_empty());
            }
        }
        // Most flips land in unused page space; many do not.
        assert!(refused > 0);
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&image);
    }

    /// etcd 3.5 and 3.6 add keys to `meta` (term, confState, storageVersion): they are ignored.
    /// Users and roles come over with their bcrypt hashes.
    #[test]
    fn a_newer_etcd_layout_imports_with_its_users() {
        let file = scratch("etcd35.db");
        let out = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&file).unwrap();
        let mut writer = Writer::new(out, DEFAULT_PAGE_SIZE).unwrap();
        writer.bucket(b"auth").unwrap();
        writer.put(b"authEnabled", &[1]).unwrap();
        writer.put(b"authRevision", &5u64.to_be_bytes()).unwrap();
        writer.bucket(b"authRoles").unwrap();
        let role = ballot_mvcc::auth::Role { name: "reader".into(), permissions: vec![] };
        writer.put(b"reader", &encode_role(&role)).unwrap();
        writer.bucket(b"authUsers").unwrap();
        let root = ballot_mvcc::auth::User {
            name: "root".into(),
            password: "$2a$10$abcdefghijklmnopqrstuu".into(),
            roles: vec!["root".into()],
            no_password: false,
        };
        writer.put(b"root", &encode_user(&root)).unwrap();
        writer.bucket(b"key").unwrap();
        let first = Record {
            tombstone: false,
            create_revision: 2,
            version: 1,
            lease: 0,
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        };
        writer.put(&revision_bytes(2, 0, false), &encode_key_value(&first, 2)).unwrap();
        let gone = Record { tombstone: true, create_revision: 0, version: 0, value: vec![], ..first.clone() };
        writer.put(&revision_bytes(3, 0, true), &encode_key_value(&gone, 3)).unwrap();
        writer.bucket(b"meta").unwrap();
        writer.put(b"confState", br#"{"voters":[1]}"#).unwrap();
        writer.put(b"consistent_index", &7u64.to_be_bytes()).unwrap();
        writer.put(b"storageVersion", b"3.6.0").unwrap();
        writer.put(b"term", &2u64.to_be_bytes()).unwrap();
        let (mut out, len) = writer.finish().unwrap();
        out.set_len(len).unwrap();
        out.rewind().unwrap();
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut out).take(len), &mut hasher).unwrap();
        out.write_all(&hasher.finalize()).unwrap();
        drop(out);

        let db_len = verify_hash(&file, false).unwrap();
        let image = scratch("etcd35.image");
        let imported = import(&file, db_len, &image).unwrap();
        assert_eq!((imported.revision, imported.revisions, imported.applied_index), (3, 2, 7));
        assert!(imported.not_carried.is_empty(), "{:?}", imported.not_carried);
        let mut store = Store::in_memory().unwrap();
        store.install_snapshot([std::fs::read(&image).unwrap()]).unwrap();
        let auth = store.reader().auth(|auth| Ok((auth.status()?, auth.user("root")?, auth.role_names()?))).unwrap();
        assert_eq!(auth, ((true, 5), Some(root), vec!["reader".to_string()]));
        assert_eq!(store.revision(), 3);
        assert!(everything(&store, 0).is_empty());
        assert_eq!(everything(&store, 2)[0].value, b"1");
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&image);
    }
}

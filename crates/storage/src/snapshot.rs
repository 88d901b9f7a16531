//! Snapshot files: `{term:016x}-{index:016x}.snap`, written to a temporary name, synced,
//! renamed into place and made durable with a directory sync; a checksum covers the whole file
//! and is verified on load.
//!
//! Layout: magic `BALLOTSN`, version u16, index u64, term u64, the membership (four id lists,
//! each a u32 count then u64 ids), data length u64, data, crc32c u32 of everything before.

use std::collections::BTreeSet;

use ballot_raft::{ConfState, NodeId, Snapshot, SnapshotMeta};

use crate::disk::Disk;
use crate::Error;

const MAGIC: &[u8; 8] = b"BALLOTSN";
const VERSION: u16 = 1;
/// Suffix of snapshot files.
pub const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".snap.tmp";

fn file_name(meta: &SnapshotMeta) -> String {
    format!("{:016x}-{:016x}{SUFFIX}", meta.term, meta.index)
}

fn put_ids(out: &mut Vec<u8>, ids: &BTreeSet<NodeId>) {
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
}

/// Encodes a snapshot file.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let meta = &snapshot.meta;
    let mut out = Vec::with_capacity(snapshot.data.len() + 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    let conf = &meta.conf_state;
    for ids in [&conf.voters, &conf.voters_outgoing, &conf.learners, &conf.learners_next] {
        put_ids(&mut out, ids);
    }
    out.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&snapshot.data);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and verifies a snapshot file.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < 8 + 2 + 16 + 16 + 8 + 4 {
        return Err("file too short".into());
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes")) {
        return Err("checksum mismatch".into());
    }
    if &body[..8] != MAGIC {
        return Err("not a ballot snapshot".into());
    }
    let version = u16::from_le_bytes(body[8..10].try_into().expect("2 bytes"));
    if version != VERSION {
        return Err(format!("unsupported snapshot version {version} (this build reads {VERSION})"));
    }
    let mut at = 10;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let slice = body.get(at..at + n).ok_or("truncated")?;
        at += n;
        Ok(slice)
    };
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let index = u64_of(take(8)?);
    let term = u64_of(take(8)?);
    let mut lists = Vec::new();
    for _ in 0..4 {
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        if count > body.len() / 8 {
            return Err("impossible member count".into());
        }
        let ids: BTreeSet<NodeId> = (0..count).map(|_| take(8).map(u64_of)).collect::<Result<_, _>>()?;
        lists.push(ids);
    }
    let len = u64_of(take(8)?) as usize;
    let data = take(len)?.to_vec();
    if at != body.len() {
        return Err("trailing bytes".into());
    }
    let [voters, voters_outgoing, learners, learners_next]: [BTreeSet<NodeId>; 4] =
        lists.try_into().expect("four lists");
    let conf_state = ConfState { voters, voters_outgoing, learners, learners_next };
    Ok(Snapshot { meta: SnapshotMeta { index, term, conf_state }, data })
}

/// Writes the snapshot durably, then removes older snapshot files.
pub fn save(disk: &mut (impl Disk + ?Sized), snapshot: &Snapshot) -> Result<(), Error> {
    let name = file_name(&snapshot.meta);
    let temp = name.replace(SUFFIX, TEMP_SUFFIX);
    let bytes = encode(snapshot);
    let location = disk.location();
    let io = |source| Error::Io { path: format!("{location}/{temp}"), source };
    disk.create(&temp, 0).map_err(io)?;
    disk.write_at(&temp, 0, &bytes).map_err(io)?;
    disk.sync(&temp).map_err(io)?;
    disk.rename(&temp, &name).map_err(io)?;
    disk.sync_dir().map_err(io)?;
    for old in disk.list().map_err(io)? {
        if old.ends_with(SUFFIX) && old != name {
            disk.remove(&old).map_err(io)?;
        }
    }
    disk.sync_dir().map_err(io)?;
    Ok(())
}

/// Loads the newest snapshot, verifying it; removes leftover temporary files. A corrupt newest
/// snapshot is an error: the log below it may already be gone, so falling back is not safe.
pub fn load_latest(disk: &mut impl Disk) -> Result<Option<Snapshot>, Error> {
    let location = disk.location();
    let io = |source| Error::Io { path: location.clone(), source };
    let names = disk.list().map_err(io)?;
    for temp in names.iter().filter(|n| n.ends_with(TEMP_SUFFIX)) {
        disk.remove(temp).map_err(io)?;
    }
    let Some(newest) = names.iter().filter(|n| n.ends_with(SUFFIX)).max() else { return Ok(None) };
    let bytes = disk.read(newest).map_err(io)?;
    let snapshot =
        decode(&bytes).map_err(|reason| Error::CorruptSnapshot { file: format!("{location}/{newest}"), reason })?;
    if file_name(&snapshot.meta) != *newest {
        return Err(Error::CorruptSnapshot {
            file: format!("{location}/{newest}"),
            reason: "its content does not match its name".into(),
        });
    }
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;

    fn sample(index: u64) -> Snapshot {
        let conf_state = ConfState {
            voters: [1, 2, 3].into(),
            voters_outgoing: [1, 2].into(),
            learners: [4].into(),
            learners_next: [].into(),
        };
        Snapshot { meta: SnapshotMeta { index, term: 3, conf_state }, data: b"state machine image".to_vec() }
    }

    #[test]
    fn save_load_round_trip_and_old_files_go() {
        let mut disk = SimDisk::new();
        save(&mut disk, &sample(10)).unwrap();
        save(&mut disk, &sample(20)).unwrap();
        assert_eq!(load_latest(&mut disk).unwrap(), Some(sample(20)));
        assert_eq!(disk.list().unwrap().len(), 1);
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let bytes = encode(&sample(5));
        for position in 0..bytes.len() {
            let mut corrupted = bytes.clone();
            corrupted[position] ^= 0x10;
            assert!(decode(&corrupted).is_err(), "byte {position}");
        }
    }

    #[test]
    fn a_crash_during_save_leaves_the_old_snapshot_or_the_new_one() {
        for crash_at in 0..12 {
            let mut disk = SimDisk::new();
            save(&mut disk, &sample(10)).unwrap();
            disk.fail_after(crash_at);
            let _ = save(&mut disk, &sample(20));
            disk.crash(&mut ballot_raft::rng::Rng::new(crash_at));
            let loaded = load_latest(&mut disk).unwrap().expect("some snapshot survives");
            assert!(loaded == sample(10) || loaded == sample(20), "crash at {crash_at}: {loaded:?}");
        }
    }
}

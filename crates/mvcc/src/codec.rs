//! How keys and records are laid out in redb's tables.
//!
//! | table | key | value |
//! |---|---|---|
//! | `revs` | (main << 64) \| sub | [`Record`]: tombstone flag, create revision, version, lease, key, value |
//! | `leases` | lease id | (ttl, remaining ttl) |
//! | `lease_keys` | (lease id, key) | () |
//! | `meta` | name | u64 |
//!
//! `revs` is etcd's layout (history in revision order: what hashing, compaction and watch
//! catch-up scan). Which revisions each key has, and its current state, are held in memory
//! ([`crate::key_index`]), rebuilt from `revs` when the store opens: a write is one B-tree
//! insert. (Stores written before the index moved to memory had `index` and `latest` tables;
//! they are dropped at the first open.)

use crate::types::KeyValue;

/// A (main, sub) revision as one ordered integer.
pub fn revision_key(main: i64, sub: i64) -> u128 {
    ((main as u128) << 64) | sub as u128
}

/// The main revision of a `revs` key.
pub fn main_of(key: u128) -> i64 {
    (key >> 64) as i64
}

/// One entry of the `revs` table: a key's state written at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key was deleted at this revision.
    pub tombstone: bool,
    /// Create revision (0 for a tombstone).
    pub create_revision: i64,
    /// Version (0 for a tombstone).
    pub version: i64,
    /// Lease (0 for none).
    pub lease: i64,
    /// Key.
    pub key: Vec<u8>,
    /// Value (empty for a tombstone).
    pub value: Vec<u8>,
}

impl Record {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(29 + self.key.len() + self.value.len());
        out.push(self.tombstone as u8);
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.lease.to_be_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes a record written by [`Record::encode`]. The table is ours and written only by
    /// this code, so a malformed record means a damaged database.
    pub fn decode(bytes: &[u8]) -> Result<Record, crate::Error> {
        let damaged = || crate::Error::Storage("malformed revision record".into());
        let i64_at = |at: usize| -> Option<i64> { Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
        let key_len =
            u32::from_be_bytes(bytes.get(25..29).ok_or_else(damaged)?.try_into().map_err(|_| damaged())?) as usize;
        let key = bytes.get(29..29 + key_len).ok_or_else(damaged)?.to_vec();
        Ok(Record {
            tombstone: *bytes.first().ok_or_else(damaged)? == 1,
            create_revision: i64_at(1).ok_or_else(damaged)?,
            version: i64_at(9).ok_or_else(damaged)?,
            lease: i64_at(17).ok_or_else(damaged)?,
            key,
            value: bytes[29 + key_len..].to_vec(),
        })
    }

    /// The key-value this record describes at `mod_revision`.
    pub fn into_key_value(self, mod_revision: i64, keys_only: bool) -> KeyValue {
        KeyValue {
            key: self.key,
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: if keys_only { Vec::new() } else { self.value },
            lease: self.lease,
        }
    }
}

/// What the key index needs of an encoded [`Record`], without copying its value: tombstone,
/// create revision, version, lease and key.
pub fn decode_head(bytes: &[u8]) -> Result<(bool, i64, i64, i64, &[u8]), crate::Error> {
    let damaged = || crate::Error::Storage("malformed revision record".into());
    let i64_at = |at: usize| -> Option<i64> { Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
    let key_len =
        u32::from_be_bytes(bytes.get(25..29).ok_or_else(damaged)?.try_into().map_err(|_| damaged())?) as usize;
    let key = bytes.get(29..29 + key_len).ok_or_else(damaged)?;
    let tombstone = *bytes.first().ok_or_else(damaged)? == 1;
    Ok((
        tombstone,
        i64_at(1).ok_or_else(damaged)?,
        i64_at(9).ok_or_else(damaged)?,
        i64_at(17).ok_or_else(damaged)?,
        key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = Record {
            tombstone: false,
            create_revision: 3,
            version: 2,
            lease: 7,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        assert_eq!(decode_head(&record.encode()).unwrap(), (false, 3, 2, 7, &b"k"[..]));
        assert!(Record::decode(&[1, 2]).is_err());
        assert!(decode_head(&[1, 2]).is_err());
        assert!(revision_key(2, 0) > revision_key(1, u32::MAX as i64));
        assert_eq!(main_of(revision_key(5, 3)), 5);
    }
}

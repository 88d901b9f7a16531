//! Reads: ranges at the current revision (through `latest`, one lookup per returned key) and at
//! past revisions (through `index`), with etcd's limit, sort, filter, count and `more` rules.
//! Generic over redb's readable tables so a transaction's reads see its own writes.

use redb::ReadableTable;

use crate::codec::{revision_key, Latest, Record};
use crate::counts;
use crate::types::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::{storage_error, Error};

/// Which keys a request names (etcd's key / range_end convention).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Exactly one key.
    One(Vec<u8>),
    /// `[start, end)`, or `[start, ∞)` when `end` is `None`.
    Span(Vec<u8>, Option<Vec<u8>>),
    /// Nothing (range_end not above key).
    Nothing,
}

impl Keys {
    /// Interprets `key` and `range_end` as etcd does.
    pub fn of(key: &[u8], range_end: &[u8]) -> Keys {
        if range_end.is_empty() {
            Keys::One(key.to_vec())
        } else if range_end == [0] {
            Keys::Span(key.to_vec(), None)
        } else if range_end <= key {
            Keys::Nothing
        } else {
            Keys::Span(key.to_vec(), Some(range_end.to_vec()))
        }
    }

    /// True if `key` is among the keys.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Keys::One(one) => one == key,
            Keys::Span(start, end) => key >= start.as_slice() && end.as_ref().is_none_or(|end| key < end.as_slice()),
            Keys::Nothing => false,
        }
    }
}

/// A live key and where its current state is.
pub type LiveKey = (Vec<u8>, Latest);

/// The tables a read needs.
pub struct View<'a, L, I, R, C> {
    /// `latest` table.
    pub latest: &'a L,
    /// `index` table.
    pub index: &'a I,
    /// `revs` table.
    pub revs: &'a R,
    /// `counts` table.
    pub counts: &'a C,
    /// The revision the view is at.
    pub revision: i64,
    /// Reads below this revision fail.
    pub compact_revision: i64,
}

impl<'a, L, I, R, C> View<'a, L, I, R, C>
where
    C: ReadableTable<&'static [u8], u64>,
    L: ReadableTable<&'static [u8], &'static [u8]>,
    I: ReadableTable<(&'static [u8], u64), u64>,
    R: ReadableTable<u128, &'static [u8]>,
{
    /// The record at a revision.
    pub fn record(&self, main: i64, sub: i64) -> Result<Record, Error> {
        let bytes = self
            .revs
            .get(revision_key(main, sub))
            .map_err(storage_error)?
            .ok_or_else(|| Error::Storage(format!("revision {main}.{sub} is indexed but missing")))?;
        Record::decode(bytes.value())
    }

    /// The live keys at the current revision, in key order, with where their state is.
    pub fn live(&self, keys: &Keys) -> Result<Vec<LiveKey>, Error> {
        self.live_first(keys, usize::MAX)
    }

    /// The first `take` live keys (with their state), in key order.
    pub fn live_first(&self, keys: &Keys, take: usize) -> Result<Vec<LiveKey>, Error> {
        let mut out = Vec::new();
        match keys {
            Keys::Nothing => {}
            Keys::One(key) => {
                if let Some(value) = self.latest.get(key.as_slice()).map_err(storage_error)? {
                    if take > 0 {
                        out.push((key.clone(), Latest::decode(value.value())?));
                    }
                }
            }
            Keys::Span(start, end) => {
                let iter = match end {
                    Some(end) => self.latest.range::<&[u8]>(start.as_slice()..end.as_slice()),
                    None => self.latest.range::<&[u8]>(start.as_slice()..),
                }
                .map_err(storage_error)?;
                for item in iter.take(take) {
                    let (key, value) = item.map_err(storage_error)?;
                    out.push((key.value().to_vec(), Latest::decode(value.value())?));
                }
            }
        }
        Ok(out)
    }

    /// The live state of one key at the current revision.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        let Some(latest) = self.latest.get(key).map_err(storage_error)? else { return Ok(None) };
        let latest = Latest::decode(latest.value())?;
        Ok(Some(self.record(latest.main, latest.sub)?.into_key_value(latest.main, false)))
    }

    /// The keys live at a past `revision`, in key order, with their state.
    fn live_at(&self, keys: &Keys, revision: i64) -> Result<Vec<KeyValue>, Error> {
        let (start, end): (Vec<u8>, Option<Vec<u8>>) = match keys {
            Keys::Nothing => return Ok(Vec::new()),
            Keys::One(key) => {
                let mut next = key.clone();
                next.push(0);
                (key.clone(), Some(next))
            }
            Keys::Span(start, end) => (start.clone(), end.clone()),
        };
        let iter = match &end {
            Some(end) => self.index.range::<(&[u8], u64)>((start.as_slice(), 0)..(end.as_slice(), 0)),
            None => self.index.range::<(&[u8], u64)>((start.as_slice(), 0)..),
        }
        .map_err(storage_error)?;
        // Per key, the newest revision at or below `revision`.
        let mut chosen: Vec<(Vec<u8>, i64, i64)> = Vec::new();
        for item in iter {
            let (key, sub) = item.map_err(storage_error)?;
            let (key, main) = key.value();
            let main = main as i64;
            if main > revision {
                continue;
            }
            match chosen.last_mut() {
                Some(last) if last.0 == key => *last = (key.to_vec(), main, sub.value() as i64),
                _ => chosen.push((key.to_vec(), main, sub.value() as i64)),
            }
        }
        let mut out = Vec::new();
        for (_, main, sub) in chosen {
            let record = self.record(main, sub)?;
            if !record.tombstone {
                out.push(record.into_key_value(main, false));
            }
        }
        Ok(out)
    }

    /// etcd's Range.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        let revision = if request.revision <= 0 { self.revision } else { request.revision };
        if revision > self.revision {
            return Err(Error::FutureRevision);
        }
        if revision < self.compact_revision {
            return Err(Error::Compacted);
        }
        let keys = Keys::of(&request.key, &request.range_end);
        let filtered = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        let sort_order = match (request.sort_order, request.sort_target) {
            // Results come in key order; any other target means ascending unless told otherwise.
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        };
        let needs_all = filtered || sort_order != SortOrder::None;
        let limit = if request.limit > 0 { request.limit as usize } else { usize::MAX };
        let (count, mut kvs) = if revision == self.revision {
            // etcd reports the size of the whole range as `count`: the count index gives it
            // without visiting the keys past the limit.
            let take = match (needs_all, request.count_only) {
                (true, _) => usize::MAX,
                (false, true) => 0,
                (false, false) => limit.saturating_add(1),
            };
            let live = self.live_first(&keys, take)?;
            let count = if live.len() < take { live.len() } else { counts::count(self.counts, self.latest, &keys)? };
            let kvs = live
                .into_iter()
                .map(|(_, latest)| Ok(self.record(latest.main, latest.sub)?.into_key_value(latest.main, false)))
                .collect::<Result<Vec<_>, Error>>()?;
            (count, kvs)
        } else {
            let kvs = self.live_at(&keys, revision)?;
            (kvs.len(), kvs)
        };
        kvs.retain(|kv| {
            (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
                && (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
                && (request.min_create_revision == 0 || kv.create_revision >= request.min_create_revision)
                && (request.max_create_revision == 0 || kv.create_revision <= request.max_create_revision)
        });
        sort(&mut kvs, sort_order, request.sort_target);
        let more = kvs.len() > limit;
        kvs.truncate(limit);
        if request.count_only {
            kvs.clear();
        } else if request.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse { kvs, more, count: count as i64 })
    }
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    if order == SortOrder::None {
        return;
    }
    // Stable sorts keep key order among equal targets, as etcd's do.
    match target {
        SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_conventions() {
        assert_eq!(Keys::of(b"a", b""), Keys::One(b"a".to_vec()));
        assert_eq!(Keys::of(b"a", b"\0"), Keys::Span(b"a".to_vec(), None));
        assert_eq!(Keys::of(b"\0", b"\0"), Keys::Span(b"\0".to_vec(), None));
        assert_eq!(Keys::of(b"b", b"a"), Keys::Nothing);
        assert_eq!(Keys::of(b"a", b"a"), Keys::Nothing);
        let prefix = Keys::of(b"ab", b"ac");
        assert!(prefix.contains(b"ab") && prefix.contains(b"abz") && !prefix.contains(b"ac"));
    }
}

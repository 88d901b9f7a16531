//! Reads: ranges at the current revision or a past one (the key index finds each key's record
//! at the revision, `revs` holds it), with etcd's limit, sort, filter, count and `more` rules.
//! Generic over redb's readable tables so a transaction's reads see its own writes.

use std::sync::RwLock;

use redb::ReadableTable;

use crate::codec::{revision_key, Record};
use crate::counts;
use crate::key_index::KeyIndex;
use crate::types::{
    Compare, CompareResult, CompareTarget, KeyValue, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};
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
            Keys::Span(start, end) => {
                key >= start.as_slice() && end.as_ref().is_none_or(|end| key < end.as_slice()) && !hides(start, key)
            }
            Keys::Nothing => false,
        }
    }
}

/// True if a span starting at `start` does not see `key`: znode keys (under
/// [`crate::zk::ZNODE_PREFIX`]) belong to the ZooKeeper API, and a span reaches them only if it
/// starts among them. So an etcd range over everything (`"\0"` to the end) skips the tree, while
/// the ZooKeeper reads, whose spans start under the prefix, see it. (etcd's API refuses keys
/// under the prefix, so etcd clients never start a span there.)
pub fn hides(start: &[u8], key: &[u8]) -> bool {
    key.starts_with(crate::zk::ZNODE_PREFIX) && !start.starts_with(crate::zk::ZNODE_PREFIX)
}

/// The end of the range of keys that start with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// True if an etcd request may not name `key`: it lies under the znode prefix.
pub fn reserved(key: &[u8]) -> bool {
    key.starts_with(crate::zk::ZNODE_PREFIX)
}

/// The tables and index a read needs.
pub struct View<'a, R, C> {
    /// The key index (shared with the applying thread: locked per lookup).
    pub index: &'a RwLock<KeyIndex>,
    /// `revs` table.
    pub revs: &'a R,
    /// `counts` table, exact at `revision`.
    pub counts: &'a C,
    /// The revision the view is at.
    pub revision: i64,
    /// Reads below this revision fail.
    pub compact_revision: i64,
}

/// Locks the key index for reading (a panic elsewhere does not make it unreadable: it is only
/// changed by whole operations on the applying thread, which stops on any failure).
pub fn read_index(index: &RwLock<KeyIndex>) -> std::sync::RwLockReadGuard<'_, KeyIndex> {
    index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<'a, R, C> View<'a, R, C>
where
    C: ReadableTable<&'static [u8], u64>,
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

    /// The key-values of the first `take` keys live at `revision`, in key order.
    fn live_values(&self, keys: &Keys, revision: i64, take: usize) -> Result<Vec<KeyValue>, Error> {
        // The lock is held for the walk only, not for the reads of the records.
        let revs = read_index(self.index).live_at(keys, revision, take);
        revs.into_iter().map(|rev| Ok(self.record(rev.main, rev.sub)?.into_key_value(rev.main, false))).collect()
    }

    /// The live state of one key at the view's revision.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        Ok(self.live_values(&Keys::One(key.to_vec()), self.revision, 1)?.pop())
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
        // The compact revision of the index may be ahead of the transaction's (a compaction
        // applied since it began): below it, entries may be gone.
        if revision < read_index(self.index).compact_revision() {
            return Err(Error::Compacted);
        }
        let (count, mut kvs) = if revision == self.revision {
            // etcd reports the size of the whole range as `count`: the count index gives it
            // without visiting the keys past the limit.
            let take = match (needs_all, request.count_only) {
                (true, _) => usize::MAX,
                (false, true) => 0,
                (false, false) => limit.saturating_add(1),
            };
            let kvs = self.live_values(&keys, revision, take)?;
            let count = if kvs.len() < take {
                kvs.len()
            } else {
                counts::count(self.counts, &read_index(self.index), &keys, revision)?
            };
            (count, kvs)
        } else {
            let kvs = self.live_values(&keys, revision, usize::MAX)?;
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

impl<'a, R, C> View<'a, R, C>
where
    C: ReadableTable<&'static [u8], u64>,
    R: ReadableTable<u128, &'static [u8]>,
{
    /// Whether `compare` holds for every key it names, live at the view's revision. A missing
    /// key compares as a zero key-value, except that a value compare fails (etcd's rule).
    pub fn compare_holds(&self, compare: &Compare) -> Result<bool, Error> {
        let kvs = self.live_values(&Keys::of(&compare.key, &compare.range_end), self.revision, usize::MAX)?;
        if kvs.is_empty() {
            return Ok(!matches!(compare.target, CompareTarget::Value(_)) && compare_one(compare, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_one(compare, kv)))
    }

    /// A txn that only reads ([`is_read_only`]), at the view's revision: what the same txn
    /// answers when applied through the log at that revision, without an entry.
    pub fn read_only_txn(&self, request: &TxnRequest) -> Result<TxnResponse, Error> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.compare_holds(compare)? {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded { &request.success } else { &request.failure };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                RequestOp::Range(range) => ResponseOp::Range(self.range(range)?),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.read_only_txn(nested)?),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    return Err(Error::Storage("a write in a txn served as read-only".into()))
                }
            });
        }
        Ok(TxnResponse { succeeded, responses })
    }
}

/// True if every operation of the txn, in both branches and in nested txns, is a range: it can
/// be served at a read point instead of through the log (etcd does the same).
pub fn is_read_only(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(nested) => is_read_only(nested),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
}

fn compare_one(compare: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
        CompareResult::NotEqual => ordering != Ordering::Equal,
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

    #[test]
    fn znode_keys_are_seen_only_by_spans_that_start_among_them() {
        let znode = crate::zk::znode_key("/a");
        assert!(!Keys::of(b"\0", b"\0").contains(&znode), "an etcd range over everything");
        assert!(!Keys::of(b"\0", b"\x01").contains(&znode));
        let children = crate::zk::children_prefix("/");
        let end = prefix_end(&children);
        assert!(Keys::Span(children, Some(end)).contains(&znode), "the tree's own reads");
        assert!(Keys::One(znode.clone()).contains(&znode));
    }
}

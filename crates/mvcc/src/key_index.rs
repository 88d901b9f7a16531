//! The key index, in memory (etcd's `treeIndex`): for every key, the revisions of it that are
//! still in `revs`, and its current state when it is live.
//!
//! Why in memory: a put then costs one redb insert (its `revs` row) and a map update, where an
//! on-disk index costs two more B-tree inserts on every member (a quarter of the servers' CPU in
//! the put profile, BENCHMARKS.md). It is rebuilt from `revs` when a store opens or installs a
//! snapshot; `revs` stays the only truth on disk.
//!
//! Readers on other threads share it with the applying thread (behind a lock, held for one
//! lookup or one walk at a time). A reader reads at the revision of its redb read transaction
//! R, and the index may be ahead of R (a batch being applied): every lookup takes the newest
//! revision at or below the revision asked for, so what the writer added above R is invisible.
//! Compaction removes entries only below the compact revision, which it records first: a read
//! below it fails as compacted, and a read at or above it finds every revision it needs (a key's
//! newest revision at or below the compact revision is kept unless it is a tombstone).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::read::Keys;

/// One revision of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rev {
    /// Main revision.
    pub main: i64,
    /// Sub revision within the main one.
    pub sub: i64,
    /// The key was deleted at this revision.
    pub tombstone: bool,
}

/// A live key's current state: where its record is and what a write needs of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latest {
    /// Main revision of the last modification.
    pub main: i64,
    /// Sub revision.
    pub sub: i64,
    /// Create revision.
    pub create_revision: i64,
    /// Version.
    pub version: i64,
    /// Lease.
    pub lease: i64,
}

/// What the writer needs of a live key besides its last revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    create_revision: i64,
    version: i64,
    lease: i64,
}

/// One key's revisions (ascending by main revision; one per main revision) and its state.
#[derive(Clone, Debug, Default)]
struct History {
    revs: Vec<Rev>,
    live: Option<Live>,
}

impl History {
    /// The newest revision at or below `revision`.
    fn at(&self, revision: i64) -> Option<Rev> {
        self.revs.iter().rev().find(|rev| rev.main <= revision).copied()
    }

    /// The revision live at `revision`, if the key is live then.
    fn live_at(&self, revision: i64) -> Option<Rev> {
        self.at(revision).filter(|rev| !rev.tombstone)
    }
}

/// The in-memory key index of one store.
#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    keys: BTreeMap<Vec<u8>, History>,
    /// Reads below this revision fail (set when a compaction is applied, before any entry goes).
    compact_revision: i64,
    /// Keys live now.
    live_keys: u64,
}

impl KeyIndex {
    /// An empty index.
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// Records that `key` was written at (`main`, `sub`): a put with its new state, or a
    /// tombstone (`live` = `None`). Revisions arrive in increasing order per key.
    pub fn record(&mut self, key: &[u8], main: i64, sub: i64, live: Option<(i64, i64, i64)>) {
        let history = match self.keys.get_mut(key) {
            Some(history) => history,
            None => self.keys.entry(key.to_vec()).or_default(),
        };
        debug_assert!(history.revs.last().is_none_or(|last| last.main < main), "revisions out of order");
        history.revs.push(Rev { main, sub, tombstone: live.is_none() });
        let was_live = history.live.is_some();
        history.live = live.map(|(create_revision, version, lease)| Live { create_revision, version, lease });
        match (was_live, history.live.is_some()) {
            (false, true) => self.live_keys += 1,
            (true, false) => self.live_keys -= 1,
            _ => {}
        }
    }

    /// The current state of `key`, if it is live.
    pub fn latest(&self, key: &[u8]) -> Option<Latest> {
        let history = self.keys.get(key)?;
        let live = history.live?;
        let last = history.revs.last()?;
        Some(Latest {
            main: last.main,
            sub: last.sub,
            create_revision: live.create_revision,
            version: live.version,
            lease: live.lease,
        })
    }

    /// The live keys among `keys` now, in key order, with their state.
    pub fn live_latest(&self, keys: &Keys) -> Vec<(Vec<u8>, Latest)> {
        let mut out = Vec::new();
        self.walk(keys, |key, _| {
            if let Some(latest) = self.latest(key) {
                out.push((key.to_vec(), latest));
            }
            true
        });
        out
    }

    /// The first `take` keys among `keys` live at `revision`, in key order: the revision of
    /// each one's record.
    pub fn live_at(&self, keys: &Keys, revision: i64, take: usize) -> Vec<Rev> {
        let mut out = Vec::new();
        if take == 0 {
            return out;
        }
        self.walk(keys, |_, history| {
            if let Some(rev) = history.live_at(revision) {
                out.push(rev);
            }
            out.len() < take
        });
        out
    }

    /// How many keys in `[low, high)` (`high` = `None`: to the end) are live at `revision`.
    /// Znode keys are counted too: the count index's buckets do not know of them.
    pub fn count_live_at(&self, low: &[u8], high: Option<&[u8]>, revision: i64) -> usize {
        let mut count = 0;
        self.walk_all(low, high, |history| count += usize::from(history.live_at(revision).is_some()));
        count
    }

    /// The `n`-th (from 0) key live now at or after `from`.
    pub fn nth_live_from(&self, from: &[u8], n: usize) -> Option<Vec<u8>> {
        self.keys
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .filter(|(_, history)| history.live.is_some())
            .nth(n)
            .map(|(key, _)| key.clone())
    }

    /// Every key live now, in key order.
    pub fn live_keys_in_order(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().filter(|(_, history)| history.live.is_some()).map(|(key, _)| key.as_slice())
    }

    /// Calls `visit` on every key of `keys` in key order until it returns false.
    fn walk(&self, keys: &Keys, mut visit: impl FnMut(&[u8], &History) -> bool) {
        match keys {
            Keys::Nothing => {}
            Keys::One(key) => {
                if let Some(history) = self.keys.get(key.as_slice()) {
                    visit(key, history);
                }
            }
            Keys::Span(start, end) => {
                let high = match end {
                    Some(end) => Bound::Excluded(end.as_slice()),
                    None => Bound::Unbounded,
                };
                let mut keys = self.keys.range::<[u8], _>((Bound::Included(start.as_slice()), high));
                while let Some((key, history)) = keys.next() {
                    if crate::read::hides(start, key) {
                        // Skip the znode keys in one step rather than one by one.
                        let past = crate::read::prefix_end(crate::zk::ZNODE_PREFIX);
                        if end.as_ref().is_some_and(|end| end.as_slice() <= past.as_slice()) {
                            break;
                        }
                        keys = self.keys.range::<[u8], _>((Bound::Included(past.as_slice()), high));
                        continue;
                    }
                    if !visit(key, history) {
                        break;
                    }
                }
            }
        }
    }

    /// Calls `visit` on every key in `[low, high)`, znode keys included (the count index's
    /// buckets span them).
    fn walk_all(&self, low: &[u8], high: Option<&[u8]>, mut visit: impl FnMut(&History)) {
        let high = high.map_or(Bound::Unbounded, Bound::Excluded);
        for (_, history) in self.keys.range::<[u8], _>((Bound::Included(low), high)) {
            visit(history);
        }
    }

    /// Live keys now.
    pub fn live_count(&self) -> u64 {
        self.live_keys
    }

    /// Reads below this revision fail.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Records a compaction to `revision` before its entries are removed (see the module docs).
    pub fn set_compact_revision(&mut self, revision: i64) {
        self.compact_revision = self.compact_revision.max(revision);
    }

    /// The revisions of `key` below main revision `main`.
    pub fn older_than(&self, key: &[u8], main: i64) -> Vec<Rev> {
        self.keys
            .get(key)
            .map_or_else(Vec::new, |history| history.revs.iter().take_while(|rev| rev.main < main).copied().collect())
    }

    /// True if `key` has a revision in `(above, to]`.
    pub fn has_revision_between(&self, key: &[u8], above: i64, to: i64) -> bool {
        self.keys.get(key).is_some_and(|history| history.revs.iter().any(|rev| rev.main > above && rev.main <= to))
    }

    /// Forgets revision `main` of `key` (its record was removed by compaction). A key left with
    /// no revision is forgotten; it is never live then, since a live key's last revision stays.
    pub fn remove(&mut self, key: &[u8], main: i64) {
        let Some(history) = self.keys.get_mut(key) else { return };
        history.revs.retain(|rev| rev.main != main);
        if history.revs.is_empty() {
            debug_assert!(history.live.is_none(), "a live key lost its last revision");
            self.keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(a: &str, b: &str) -> Keys {
        Keys::Span(a.as_bytes().to_vec(), Some(b.as_bytes().to_vec()))
    }

    #[test]
    fn reads_see_the_newest_revision_at_or_below_theirs_and_skip_tombstones() {
        let mut index = KeyIndex::new();
        index.record(b"a", 2, 0, Some((2, 1, 0)));
        index.record(b"b", 3, 0, Some((3, 1, 7)));
        index.record(b"a", 4, 0, Some((2, 2, 0)));
        index.record(b"b", 5, 0, None);
        assert_eq!(index.live_count(), 1);
        let mains =
            |revision| index.live_at(&span("a", "z"), revision, usize::MAX).iter().map(|r| r.main).collect::<Vec<_>>();
        assert_eq!(mains(1), Vec::<i64>::new());
        assert_eq!(mains(3), vec![2, 3]);
        assert_eq!(mains(4), vec![4, 3]);
        assert_eq!(mains(5), vec![4]);
        assert_eq!(index.live_at(&span("a", "z"), 4, 1).len(), 1);
        assert_eq!(index.count_live_at(b"a", None, 3), 2);
        assert_eq!(index.latest(b"a"), Some(Latest { main: 4, sub: 0, create_revision: 2, version: 2, lease: 0 }));
        assert_eq!(index.latest(b"b"), None);
        assert_eq!(index.live_latest(&Keys::One(b"a".to_vec())).len(), 1);
    }

    #[test]
    fn compaction_forgets_revisions_and_then_keys() {
        let mut index = KeyIndex::new();
        index.record(b"a", 2, 0, Some((2, 1, 0)));
        index.record(b"a", 3, 0, None);
        assert_eq!(index.older_than(b"a", 3).len(), 1);
        assert!(index.has_revision_between(b"a", 2, 3));
        assert!(!index.has_revision_between(b"a", 3, 9));
        index.remove(b"a", 2);
        index.remove(b"a", 3);
        assert!(index.keys.is_empty());
        assert_eq!(index.nth_live_from(b"", 0), None);
    }
}

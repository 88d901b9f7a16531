//! An acceptor's log: the accepted value of every slot after the snapshot, contiguous.

use ballot_raft::{Entry, Index, SnapshotMeta, Term};

/// Accepted values by slot, and which of them are not yet handed out to persist.
#[derive(Debug)]
pub(super) struct Log {
    /// Slots up to `snapshot.index` are compacted.
    snapshot: SnapshotMeta,
    /// `entries[i]` is slot `snapshot.index + 1 + i`.
    entries: Vec<Entry>,
    /// The lowest slot changed since entries were last handed out.
    unstable_from: Option<Index>,
}

impl Log {
    /// A log restarted from what was persisted.
    pub fn new(snapshot: SnapshotMeta, entries: Vec<Entry>) -> Log {
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.index > snapshot.index).collect();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, snapshot.index + 1 + i as u64, "a stored log must be contiguous");
        }
        Log { snapshot, entries, unstable_from: None }
    }

    /// The compaction point.
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The last slot with an accepted value (the snapshot's if none after it).
    pub fn last(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    /// The accepted value of `slot`, if any and not compacted.
    pub fn get(&self, slot: Index) -> Option<&Entry> {
        let offset = slot.checked_sub(self.snapshot.index + 1)?;
        self.entries.get(offset as usize)
    }

    /// The ballot `slot` was accepted at (the snapshot's for the compaction point, 0 if none).
    pub fn ballot_at(&self, slot: Index) -> Term {
        if slot == self.snapshot.index {
            return self.snapshot.term;
        }
        self.get(slot).map_or(0, |e| e.term)
    }

    /// Slots `from..=to`, clipped to what the log holds.
    pub fn slice(&self, from: Index, to: Index) -> Vec<Entry> {
        let from = from.max(self.snapshot.index + 1);
        let to = to.min(self.last());
        if from > to {
            return Vec::new();
        }
        let start = (from - self.snapshot.index - 1) as usize;
        self.entries[start..=start + (to - from) as usize].to_vec()
    }

    /// Accepts `entry` at its slot, which is after the snapshot and at most one past the last.
    pub fn put(&mut self, entry: Entry) {
        let slot = entry.index;
        assert!(slot > self.snapshot.index && slot <= self.last() + 1, "slot {slot} outside the log");
        if slot == self.last() + 1 {
            self.entries.push(entry);
        } else {
            let offset = (slot - self.snapshot.index - 1) as usize;
            if self.entries[offset] == entry {
                return;
            }
            self.entries[offset] = entry;
        }
        self.unstable_from = Some(self.unstable_from.map_or(slot, |from| from.min(slot)));
    }

    /// The entries to persist: every slot from the lowest one changed to the last (the later
    /// ones unchanged but re-emitted, since the store replaces from the first one on).
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        match self.unstable_from.take() {
            Some(from) => self.slice(from, self.last()),
            None => Vec::new(),
        }
    }

    /// Whether entries wait to be handed out.
    pub fn has_unstable(&self) -> bool {
        self.unstable_from.is_some()
    }

    /// Drops the slots up to `meta.index` (all chosen): compaction, or a snapshot installed.
    /// Later slots stay accepted; after an installed snapshot they are handed out again, since
    /// the store may have dropped its whole log for it.
    pub fn compact(&mut self, meta: SnapshotMeta, reemit: bool) {
        assert!(meta.index >= self.snapshot.index, "a snapshot never goes back");
        if meta.index >= self.last() {
            self.entries.clear();
        } else {
            self.entries.drain(..(meta.index - self.snapshot.index) as usize);
        }
        self.snapshot = meta;
        let first = self.snapshot.index + 1;
        self.unstable_from = match self.unstable_from {
            _ if reemit && !self.entries.is_empty() => Some(first),
            Some(from) if !self.entries.is_empty() => Some(from.max(first)),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_raft::EntryKind;

    fn entry(index: Index, term: Term) -> Entry {
        Entry { term, index, kind: EntryKind::Normal, data: vec![index as u8], stamp: 0 }
    }

    #[test]
    fn overwriting_a_slot_keeps_and_re_emits_the_slots_after_it() {
        let mut log = Log::new(SnapshotMeta::default(), Vec::new());
        for slot in 1..=4 {
            log.put(entry(slot, 1));
        }
        assert_eq!(log.take_unstable().len(), 4);
        log.put(entry(2, 3));
        let unstable = log.take_unstable();
        assert_eq!(unstable.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(2, 3), (3, 1), (4, 1)]);
        assert_eq!(log.last(), 4);
    }

    #[test]
    fn a_snapshot_drops_chosen_slots_and_keeps_later_accepted_ones() {
        let mut log = Log::new(SnapshotMeta::default(), (1..=5).map(|s| entry(s, 1)).collect());
        log.compact(SnapshotMeta { index: 3, term: 1, ..Default::default() }, true);
        assert_eq!((log.get(3), log.get(4).map(|e| e.index), log.last()), (None, Some(4), 5));
        assert_eq!(log.take_unstable().len(), 2);
        log.compact(SnapshotMeta { index: 9, term: 2, ..Default::default() }, true);
        assert_eq!((log.last(), log.has_unstable(), log.ballot_at(9)), (9, false, 2));
    }
}

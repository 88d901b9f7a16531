//! The in-memory Raft log: entries after the latest snapshot, with the positions that say what
//! is durable, committed and applied.
//!
//! Invariants (checked by `assert_invariants`):
//! `snapshot_index <= applied <= committed <= last_index` and
//! `snapshot_index <= persisted <= last_index`.

use crate::types::{Entry, Index, Snapshot, SnapshotMeta, Term};

/// Entries after the snapshot plus the bookkeeping that ties them to storage and the state machine.
#[derive(Debug)]
pub struct RaftLog {
    /// Index and term of the last entry covered by the snapshot (0, 0 for a fresh log).
    snapshot_index: Index,
    snapshot_term: Term,
    /// `entries[i].index == snapshot_index + 1 + i`.
    entries: Vec<Entry>,
    /// Last index the caller has reported durable.
    persisted: Index,
    /// First index not yet handed to the caller for persistence.
    unsent_from: Index,
    /// Highest index known committed.
    committed: Index,
    /// Highest index handed to the caller to apply.
    applied: Index,
    /// A snapshot received from the leader that the caller must persist and install.
    pending_snapshot: Option<Snapshot>,
}

impl RaftLog {
    /// A log that starts after `snapshot` (or empty) with `entries` already on disk.
    pub fn restore(meta: &SnapshotMeta, entries: Vec<Entry>, committed: Index, applied: Index) -> Self {
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                meta.index + 1 + offset as u64,
                "restored entries must follow the snapshot without gaps"
            );
        }
        let last = meta.index + entries.len() as u64;
        let committed = committed.clamp(meta.index, last);
        let log = RaftLog {
            snapshot_index: meta.index,
            snapshot_term: meta.term,
            entries,
            persisted: last,
            unsent_from: last + 1,
            committed,
            applied: applied.clamp(meta.index, committed),
            pending_snapshot: None,
        };
        log.assert_invariants();
        log
    }

    fn assert_invariants(&self) {
        debug_assert!(self.snapshot_index <= self.applied, "{self:?}");
        debug_assert!(self.applied <= self.committed, "{self:?}");
        debug_assert!(self.committed <= self.last_index(), "{self:?}");
        debug_assert!(self.persisted <= self.last_index(), "{self:?}");
    }

    /// Index of the last entry (or the snapshot's index if there are no entries).
    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as u64
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// First index still held in memory (entries below it are compacted).
    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    /// Index covered by the latest snapshot.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// Highest committed index.
    pub fn committed(&self) -> Index {
        self.committed
    }

    /// Highest index handed out to apply.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Last index reported durable.
    pub fn persisted(&self) -> Index {
        self.persisted
    }

    /// Term of the entry at `index`: `None` if compacted away or beyond the end.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snapshot_index - 1) as usize].term)
    }

    /// True if the log has an entry at `index` with `term` (the §5.3 consistency check).
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// §5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries in `[from, to)` (clamped to what exists), at most `bytes_max` bytes but always at
    /// least one entry when any exists, so progress is never blocked by one large entry.
    pub fn slice(&self, from: Index, to: Index, bytes_max: u64) -> Vec<Entry> {
        let from = from.max(self.first_index());
        let to = to.min(self.last_index() + 1);
        let mut out = Vec::new();
        let mut bytes = 0;
        for index in from..to {
            let entry = &self.entries[(index - self.snapshot_index - 1) as usize];
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// Appends entries created by this node as leader.
    pub fn append(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            assert_eq!(entry.index, self.last_index() + 1, "leader appends must be contiguous");
            self.entries.push(entry);
        }
    }

    /// Follower side of AppendEntries after the consistency check passed: skips entries already
    /// present, truncates at the first conflict, appends the rest. Returns the index of the first
    /// entry written, if any was.
    pub fn append_from_leader(&mut self, entries: Vec<Entry>) -> Option<Index> {
        let mut new_from = None;
        for (position, entry) in entries.iter().enumerate() {
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                _ if entry.index <= self.snapshot_index => continue,
                _ => {
                    new_from = Some(position);
                    break;
                }
            }
        }
        let position = new_from?;
        let first = entries[position].index;
        assert!(
            first > self.committed,
            "a leader tried to overwrite committed entry {first} (committed {})",
            self.committed
        );
        self.truncate_from(first);
        self.append(entries.into_iter().skip(position).collect());
        Some(first)
    }

    /// The entries from `index` to the end, borrowed.
    pub fn entries_from(&self, index: Index) -> &[Entry] {
        let start = index.max(self.first_index()) - self.first_index();
        &self.entries[(start as usize).min(self.entries.len())..]
    }

    fn truncate_from(&mut self, index: Index) {
        if index > self.last_index() {
            return;
        }
        self.entries.truncate((index - self.snapshot_index - 1) as usize);
        self.persisted = self.persisted.min(index - 1);
        self.unsent_from = self.unsent_from.min(index);
    }

    /// Raises the commit index; never lowers it.
    pub fn commit_to(&mut self, index: Index) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(index <= self.last_index(), "commit {index} beyond last index {}", self.last_index());
        self.committed = index;
        true
    }

    /// Entries waiting to be handed out for persistence.
    pub fn unpersisted_entries(&self) -> Vec<Entry> {
        self.slice(self.unsent_from, self.last_index() + 1, u64::MAX)
    }

    /// Treats entries from `index` on as not yet durable (bootstrap entries made in memory).
    pub fn mark_unpersisted_from(&mut self, index: Index) {
        self.persisted = self.persisted.min(index.saturating_sub(1)).max(self.snapshot_index);
        self.unsent_from = self.unsent_from.min(index.max(self.first_index()));
    }

    /// True if some entries have not been handed out for persistence.
    pub fn has_unsent_entries(&self) -> bool {
        self.unsent_from <= self.last_index()
    }

    /// Marks everything up to the last index as handed out.
    pub fn mark_sent_for_persist(&mut self) {
        self.unsent_from = self.last_index() + 1;
    }

    /// The caller reports entries up to (index, term) durable. Ignored if the entry was since
    /// replaced (a new leader truncated it while it was being written).
    pub fn persisted_to(&mut self, index: Index, term: Term) {
        if index > self.persisted && self.matches(index, term) {
            self.persisted = index;
        }
    }

    /// Committed entries not yet handed out to apply, at most `bytes_max` bytes (at least one).
    pub fn next_committed_entries(&self, bytes_max: u64) -> Vec<Entry> {
        if self.pending_snapshot.is_some() {
            return Vec::new();
        }
        self.slice(self.applied + 1, self.committed + 1, bytes_max)
    }

    /// True if committed entries wait to be applied.
    pub fn has_next_committed_entries(&self) -> bool {
        self.pending_snapshot.is_none() && self.committed > self.applied
    }

    /// Marks entries up to `index` as handed out to apply.
    pub fn applied_to(&mut self, index: Index) {
        assert!(index <= self.committed, "applied {index} beyond commit {}", self.committed);
        self.applied = self.applied.max(index);
    }

    /// Drops entries up to and including `index` after the caller took a snapshot there.
    pub fn compact(&mut self, index: Index) -> Result<(), crate::Error> {
        if index <= self.snapshot_index {
            return Err(crate::Error::SnapshotOutOfDate);
        }
        if index > self.applied || index > self.persisted {
            return Err(crate::Error::CompactBeyondApplied { index, applied: self.applied.min(self.persisted) });
        }
        let term = self.term(index).expect("index within the log");
        self.entries.drain(..(index - self.snapshot_index) as usize);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.assert_invariants();
        Ok(())
    }

    /// Replaces the whole log with a snapshot from the leader (§7). The caller must persist and
    /// install it before anything else is applied.
    pub fn restore_snapshot(&mut self, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        assert!(meta.index > self.committed, "restoring an old snapshot");
        self.entries.clear();
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.committed = meta.index;
        self.applied = meta.index;
        self.persisted = meta.index;
        self.unsent_from = meta.index + 1;
        self.pending_snapshot = Some(snapshot);
        self.assert_invariants();
    }

    /// The snapshot waiting to be persisted and installed, if any.
    pub fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.pending_snapshot.as_ref()
    }

    /// The caller took the pending snapshot.
    pub fn take_pending_snapshot(&mut self) -> Option<Snapshot> {
        self.pending_snapshot.take()
    }

    /// For conflict hints (§5.3 optimization): the largest index `<= index` whose term is
    /// `<= term`, so the leader can skip every entry of a conflicting term at once.
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Some(found) if found > term => index -= 1,
                Some(found) => return (index, found),
                None => return (index, 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;

    fn entry(index: Index, term: Term) -> Entry {
        Entry { stamp: 0, term, index, kind: EntryKind::Normal, data: vec![] }
    }

    fn log_with_terms(terms: &[Term]) -> RaftLog {
        let entries = terms.iter().enumerate().map(|(i, t)| entry(i as u64 + 1, *t)).collect();
        RaftLog::restore(&SnapshotMeta::default(), entries, 0, 0)
    }

    #[test]
    fn conflict_truncates_the_suffix_and_keeps_the_prefix() {
        let mut log = log_with_terms(&[1, 1, 2, 2]);
        log.append_from_leader(vec![entry(3, 3), entry(4, 3), entry(5, 3)]);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.persisted(), 2, "the replaced suffix is no longer durable");
    }

    #[test]
    fn duplicate_append_is_a_no_op() {
        let mut log = log_with_terms(&[1, 1, 2]);
        log.append_from_leader(vec![entry(2, 1), entry(3, 2)]);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.persisted(), 3);
    }

    #[test]
    fn stale_persist_report_is_ignored_after_truncation() {
        let mut log = log_with_terms(&[1]);
        log.append(vec![entry(2, 1)]);
        log.append_from_leader(vec![entry(2, 2)]);
        log.persisted_to(2, 1);
        assert_eq!(log.persisted(), 1);
        log.persisted_to(2, 2);
        assert_eq!(log.persisted(), 2);
    }

    #[test]
    #[should_panic(expected = "overwrite committed")]
    fn overwriting_a_committed_entry_panics() {
        let mut log = log_with_terms(&[1, 1]);
        log.commit_to(2);
        log.append_from_leader(vec![entry(2, 2)]);
    }

    #[test]
    fn conflict_hint_skips_a_whole_term() {
        let log = log_with_terms(&[1, 1, 1, 4, 4, 4, 4]);
        assert_eq!(log.find_conflict_by_term(7, 3), (3, 1));
        assert_eq!(log.find_conflict_by_term(7, 4), (7, 4));
        assert_eq!(log.find_conflict_by_term(10, 2), (3, 1));
    }

    #[test]
    fn compaction_keeps_terms_at_the_boundary() {
        let mut log = log_with_terms(&[1, 2, 3]);
        log.commit_to(3);
        log.applied_to(2);
        assert!(log.compact(3).is_err(), "cannot compact past applied");
        log.compact(2).unwrap();
        assert_eq!(log.term(2), Some(2));
        assert_eq!(log.term(1), None);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.slice(1, 4, u64::MAX).len(), 1);
    }

    #[test]
    fn slice_respects_byte_limit_but_returns_one_entry() {
        let log = log_with_terms(&[1, 1, 1]);
        assert_eq!(log.slice(1, 4, 1).len(), 1);
        assert_eq!(log.slice(1, 4, 48).len(), 2);
    }

    #[test]
    fn up_to_date_compares_term_then_index() {
        let log = log_with_terms(&[1, 2]);
        assert!(log.is_up_to_date(1, 3));
        assert!(log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(1, 2));
        assert!(!log.is_up_to_date(9, 1));
    }
}

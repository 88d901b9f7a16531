//! Safety properties checked while a simulation runs (Raft paper, Figure 3):
//! election safety, log matching, leader completeness, state machine safety.
//!
//! A Multi-Paxos cluster is held to their Paxos forms, by content rather than by term: one
//! leader per ballot; a (slot, ballot) names one value; a leader holds, once phase 1 is over,
//! every value chosen at a lower ballot; every replica applies the same value at a slot. (A
//! chosen value is re-proposed under each new leader's ballot, so the ballot it carries differs
//! from replica to replica, and Multi-Paxos's stamps need not increase along the log: see
//! `ballot_paxos::multi::Replica::propose`.)

use std::collections::BTreeMap;

use ballot_paxos::multi;
use ballot_raft::{Entry, Index, NodeId, RaftLog, Term};

/// FNV-1a over bytes: a stable content hash for entries.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in bytes {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// An entry's content: data, kind and stamp (so the stamp is checked as the data is: an entry
/// is stamped once, by its leader, and never restamped).
fn entry_hash(entry: &Entry) -> u64 {
    fnv64(&entry.data) ^ (entry.kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ entry.stamp.rotate_left(17)
}

/// What has been observed so far, and every violation found.
#[derive(Debug, Default)]
pub struct Invariants {
    /// Election safety: the one leader of each term.
    leaders: BTreeMap<Term, NodeId>,
    /// State machine safety: what was applied at each index (by anyone).
    applied: BTreeMap<Index, (Term, u64)>,
    /// The stamp of each applied index: stamps strictly increase along the log.
    stamps: BTreeMap<Index, u64>,
    /// For each applied index, the lowest current term of a node that applied it: the entry was
    /// committed in that term or earlier.
    committed_by_term: BTreeMap<Index, Term>,
    /// Log matching, across all nodes and all time: (index, term) names one entry, whose
    /// predecessor has one term.
    entries: BTreeMap<(Index, Term), (u64, Term)>,
    /// Violations, in the order found.
    pub violations: Vec<String>,
    /// The cluster runs Multi-Paxos: entries are compared by content (see the module docs).
    paxos: bool,
}

impl Invariants {
    /// Nothing observed yet; `paxos` for a Multi-Paxos cluster.
    pub fn new(paxos: bool) -> Invariants {
        Invariants { paxos, ..Invariants::default() }
    }

    /// A node reports that it leads `term`.
    pub fn on_leader(&mut self, id: NodeId, term: Term, log: &RaftLog) {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => {
                self.violations.push(format!("election safety: nodes {other} and {id} both led term {term}"));
            }
            Some(_) => return,
            None => {}
        }
        // Leader completeness (§5.4): a leader of a later term than the one an entry was
        // committed in holds it. (A leader of an earlier term may surface late, e.g. after a
        // pause, and legitimately lack it.)
        for (index, (entry_term, _)) in self.applied.range(log.snapshot_index() + 1..) {
            if self.committed_by_term.get(index).is_some_and(|committed| term <= *committed) {
                continue;
            }
            if log.term(*index) != Some(*entry_term) {
                self.violations.push(format!(
                    "leader completeness: leader {id} of term {term} lacks committed entry {index} (term {entry_term}); has {:?}",
                    log.term(*index)
                ));
                return;
            }
        }
    }

    /// A node whose current term is `node_term` applied `entry`.
    pub fn on_apply(&mut self, id: NodeId, entry: &Entry, node_term: Term) {
        let committed = self.committed_by_term.entry(entry.index).or_insert(node_term);
        *committed = (*committed).min(node_term);
        let seen = (entry.term, entry_hash(entry));
        let differs = |existing: &(Term, u64)| if self.paxos { existing.1 != seen.1 } else { *existing != seen };
        match self.applied.get(&entry.index) {
            Some(existing) if differs(existing) => self.violations.push(format!(
                "state machine safety: node {id} applied (term {}, hash {:x}) at index {} where another applied (term {}, hash {:x})",
                seen.0, seen.1, entry.index, existing.0, existing.1
            )),
            Some(_) => {}
            None => {
                self.applied.insert(entry.index, seen);
                if !self.paxos {
                    self.check_stamp(entry);
                }
            }
        }
    }

    /// HLC: a stamped entry's stamp is above every stamped entry before it in the log and
    /// below every one after it.
    fn check_stamp(&mut self, entry: &Entry) {
        if entry.stamp == 0 {
            return;
        }
        let before = self.stamps.range(..entry.index).next_back().map(|(index, stamp)| (*index, *stamp));
        let after = self.stamps.range(entry.index + 1..).next().map(|(index, stamp)| (*index, *stamp));
        if let Some((index, stamp)) = before.filter(|(_, stamp)| *stamp >= entry.stamp) {
            self.violations.push(format!(
                "HLC: entry {} is stamped {:#x}, not after entry {index}'s {stamp:#x}",
                entry.index, entry.stamp
            ));
        }
        if let Some((index, stamp)) = after.filter(|(_, stamp)| *stamp <= entry.stamp) {
            self.violations.push(format!(
                "HLC: entry {} is stamped {:#x}, not before entry {index}'s {stamp:#x}",
                entry.index, entry.stamp
            ));
        }
        self.stamps.insert(entry.index, entry.stamp);
    }

    /// Records every entry of a node's log and checks it against all entries ever seen.
    pub fn check_log(&mut self, id: NodeId, log: &RaftLog) {
        for entry in log.entries_from(log.first_index()) {
            let previous_term = log.term(entry.index - 1).unwrap_or(0);
            let seen = (entry_hash(entry), previous_term);
            match self.entries.get(&(entry.index, entry.term)) {
                Some(existing) if *existing != seen => {
                    self.violations.push(format!(
                        "log matching: node {id} has a different entry at (index {}, term {})",
                        entry.index, entry.term
                    ));
                    return;
                }
                Some(_) => {}
                None => {
                    self.entries.insert((entry.index, entry.term), seen);
                }
            }
        }
        // Nothing a node applied may be missing or different in its own log (it may be compacted).
        if log.committed() < log.first_index() {
            return;
        }
        for (index, (term, _)) in self.applied.range(log.first_index()..=log.committed()) {
            if log.term(*index) != Some(*term) {
                self.violations.push(format!(
                    "node {id} committed index {index} but holds term {:?}, not {term}",
                    log.term(*index)
                ));
                return;
            }
        }
    }

    /// A Multi-Paxos replica reports that it leads `ballot` (phase 1 done): one leader per
    /// ballot, and it holds every value applied anywhere, unless that value may have been
    /// chosen only at its ballot or later.
    pub fn on_paxos_leader(&mut self, id: NodeId, ballot: Term, replica: &multi::Replica) {
        match self.leaders.insert(ballot, id) {
            Some(other) if other != id => {
                self.violations.push(format!("election safety: replicas {other} and {id} both led ballot {ballot}"));
                return;
            }
            Some(_) => return,
            None => {}
        }
        let first = replica.snapshot_meta().index + 1;
        let held: BTreeMap<Index, u64> =
            replica.entries(first, Index::MAX).iter().map(|entry| (entry.index, entry_hash(entry))).collect();
        for (index, (_, hash)) in self.applied.range(first..) {
            if self.committed_by_term.get(index).is_some_and(|committed| ballot <= *committed) {
                continue;
            }
            if held.get(index) != Some(hash) {
                self.violations.push(format!(
                    "leader completeness: leader {id} of ballot {ballot} lacks chosen slot {index} (hash {hash:x}); has {:?}",
                    held.get(index).map(|h| format!("{h:x}"))
                ));
                return;
            }
        }
    }

    /// Records a Multi-Paxos replica's accepted values and checks them: a (slot, ballot) names
    /// one value everywhere, and the replica's chosen prefix holds what was applied.
    pub fn check_paxos_log(&mut self, id: NodeId, replica: &multi::Replica) {
        let first = replica.snapshot_meta().index + 1;
        let entries = replica.entries(first, Index::MAX);
        for entry in &entries {
            let seen = (entry_hash(entry), 0);
            match self.entries.get(&(entry.index, entry.term)) {
                Some(existing) if *existing != seen => {
                    self.violations.push(format!(
                        "paxos: replica {id} accepted a different value at (slot {}, ballot {})",
                        entry.index, entry.term
                    ));
                    return;
                }
                Some(_) => {}
                None => {
                    self.entries.insert((entry.index, entry.term), seen);
                }
            }
        }
        for entry in entries.iter().take_while(|entry| entry.index <= replica.commit()) {
            if self.applied.get(&entry.index).is_some_and(|(_, hash)| *hash != entry_hash(entry)) {
                self.violations.push(format!(
                    "replica {id} knows slot {} as chosen but holds another value than was applied",
                    entry.index
                ));
                return;
            }
        }
    }

    /// Highest index applied anywhere.
    pub fn applied_max(&self) -> Index {
        self.applied.keys().next_back().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_raft::{EntryKind, SnapshotMeta};

    fn log(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                stamp: 0,
                term: *t,
                index: i as u64 + 1,
                kind: EntryKind::Normal,
                data: vec![i as u8],
            })
            .collect();
        RaftLog::restore(&SnapshotMeta::default(), entries, 0, 0)
    }

    #[test]
    fn two_leaders_in_one_term_is_a_violation() {
        let mut invariants = Invariants::default();
        invariants.on_leader(1, 5, &log(&[]));
        invariants.on_leader(1, 5, &log(&[]));
        assert!(invariants.violations.is_empty());
        invariants.on_leader(2, 5, &log(&[]));
        assert_eq!(invariants.violations.len(), 1);
    }

    #[test]
    fn applying_different_entries_at_one_index_is_a_violation() {
        let mut invariants = Invariants::default();
        let a = Entry { stamp: 0, term: 1, index: 1, kind: EntryKind::Normal, data: vec![1] };
        let b = Entry { stamp: 0, term: 1, index: 1, kind: EntryKind::Normal, data: vec![2] };
        invariants.on_apply(1, &a, 1);
        invariants.on_apply(2, &a, 1);
        assert!(invariants.violations.is_empty());
        invariants.on_apply(3, &b, 1);
        assert_eq!(invariants.violations.len(), 1);
    }

    #[test]
    fn a_leader_missing_a_committed_entry_is_a_violation() {
        let mut invariants = Invariants::default();
        invariants.on_apply(1, &Entry { stamp: 0, term: 1, index: 1, kind: EntryKind::Normal, data: vec![0] }, 2);
        invariants.on_leader(3, 2, &log(&[2]));
        assert!(invariants.violations.is_empty(), "a leader of the commit's term or earlier may lack it");
        invariants.on_leader(2, 3, &log(&[2]));
        assert!(invariants.violations[0].starts_with("leader completeness"));
    }
}

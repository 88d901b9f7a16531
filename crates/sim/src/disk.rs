//! A node's disk as the simulator models it: writes are buffered until `sync`; a crash keeps
//! only a random prefix of the unsynced writes (possibly cutting a batch of entries in the
//! middle: a torn tail), and loses the rest.

use ballot_raft::rng::Rng;
use ballot_raft::{Entry, HardState, RestartState, Snapshot};

/// One buffered write.
#[derive(Clone, Debug)]
enum Write {
    Snapshot(Snapshot),
    Entries(Vec<Entry>),
    HardState(HardState),
}

/// What survives crashes.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    durable: RestartState,
    unsynced: Vec<Write>,
}

impl SimDisk {
    /// Buffers a snapshot install (it replaces the log).
    pub fn write_snapshot(&mut self, snapshot: Snapshot) {
        self.unsynced.push(Write::Snapshot(snapshot));
    }

    /// Buffers entries; stored entries at or after the first one's index are replaced.
    pub fn write_entries(&mut self, entries: Vec<Entry>) {
        if !entries.is_empty() {
            self.unsynced.push(Write::Entries(entries));
        }
    }

    /// Buffers the hard state.
    pub fn write_hard_state(&mut self, hard_state: HardState) {
        self.unsynced.push(Write::HardState(hard_state));
    }

    /// Makes every buffered write durable.
    pub fn sync(&mut self) {
        for write in std::mem::take(&mut self.unsynced) {
            Self::apply(&mut self.durable, write);
        }
    }

    /// Saves a snapshot of the local state machine and drops the entries it covers. Modelled
    /// as atomic and durable (temp file, fsync, rename); only called with nothing unsynced.
    pub fn save_snapshot(&mut self, snapshot: Snapshot) {
        assert!(self.unsynced.is_empty(), "compaction with unsynced writes pending");
        let index = snapshot.meta.index;
        let durable = &mut self.durable;
        let drop = (index - durable.snapshot.meta.index) as usize;
        durable.entries.drain(..drop.min(durable.entries.len()));
        durable.snapshot = snapshot;
    }

    /// A crash: a random prefix of the unsynced writes survives, the last one possibly torn.
    pub fn crash(&mut self, rng: &mut Rng) {
        let writes = std::mem::take(&mut self.unsynced);
        let keep = rng.range(0, writes.len() as u64 + 1) as usize;
        for (position, write) in writes.into_iter().enumerate() {
            if position > keep {
                break;
            }
            if position == keep {
                // The write in progress: a prefix of a batch of entries may have reached the disk.
                if let Write::Entries(entries) = write {
                    let torn = rng.range(0, entries.len() as u64) as usize;
                    if torn > 0 {
                        Self::apply(&mut self.durable, Write::Entries(entries[..torn].to_vec()));
                    }
                }
                break;
            }
            Self::apply(&mut self.durable, write);
        }
    }

    fn apply(durable: &mut RestartState, write: Write) {
        match write {
            Write::Snapshot(snapshot) => {
                durable.entries.clear();
                durable.snapshot = snapshot;
            }
            Write::Entries(entries) => {
                let first = entries[0].index;
                let base = durable.snapshot.meta.index;
                assert!(first > base, "entries below the snapshot");
                let keep = (first - base - 1) as usize;
                assert!(
                    keep <= durable.entries.len(),
                    "a gap in the log: entry {first} after {}",
                    base + durable.entries.len() as u64
                );
                durable.entries.truncate(keep);
                durable.entries.extend(entries);
            }
            Write::HardState(hard_state) => durable.hard_state = hard_state,
        }
    }

    /// What a restarting node reads back.
    pub fn restart_state(&self) -> RestartState {
        let mut state = self.durable.clone();
        state.applied = state.snapshot.meta.index;
        // The hard state is written after the entries of its batch, so a prefix that holds it
        // holds them too.
        let last = state.snapshot.meta.index + state.entries.len() as u64;
        assert!(
            state.hard_state.commit <= last,
            "durable commit {} beyond durable log end {last}",
            state.hard_state.commit
        );
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_raft::EntryKind;

    fn entries(from: u64, to: u64) -> Vec<Entry> {
        (from..=to).map(|index| Entry { term: 1, index, kind: EntryKind::Normal, data: vec![] }).collect()
    }

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_may_not() {
        let mut lost_something = false;
        for seed in 0..50 {
            let mut disk = SimDisk::default();
            disk.write_entries(entries(1, 3));
            disk.sync();
            disk.write_entries(entries(4, 10));
            disk.crash(&mut Rng::new(seed));
            let state = disk.restart_state();
            assert!(state.entries.len() >= 3, "synced entries are never lost");
            for (i, entry) in state.entries.iter().enumerate() {
                assert_eq!(entry.index, i as u64 + 1, "what survives is a prefix");
            }
            lost_something |= state.entries.len() < 10;
        }
        assert!(lost_something, "some crash must lose unsynced entries");
    }
}

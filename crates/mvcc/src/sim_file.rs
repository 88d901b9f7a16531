//! A database file in memory that models what a crash does to a real one: writes since the
//! last `sync_data` are lost. The simulator opens each member's store on one of these, so a
//! crashed member restarts from what its store had made durable (and redb recovers from a file
//! whose non-durable commits vanished), exactly as a member on a real disk does.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;

/// Dirty-tracking granularity: a sync copies only the pages written since the last one.
const PAGE: usize = 4096;

#[derive(Default)]
struct State {
    /// What reads see: every write, synced or not.
    live: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Pages of `live` written since the last sync.
    dirty: BTreeSet<usize>,
    /// Bumped at each crash: handles from before it are dead (the process that held them is).
    generation: u64,
}

/// A crashable in-memory file; clones share it (the simulator keeps one across restarts).
/// After [`SimFile::crash`], clones taken before it fail every operation, so a store still
/// holding one cannot write anything more (not even on drop): take a fresh clone to reopen.
#[derive(Clone, Default)]
pub struct SimFile {
    state: Arc<Mutex<State>>,
    generation: u64,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("SimFile").field("len", &state.live.len()).field("dirty_pages", &state.dirty.len()).finish()
    }
}

impl SimFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// The machine lost power: everything not synced is gone, and every handle taken before
    /// now is dead. Returns the handle to reopen the file with.
    pub fn crash(&mut self) -> SimFile {
        let mut state = self.lock();
        let State { live, durable, dirty, generation } = &mut *state;
        live.clone_from(durable);
        dirty.clear();
        *generation += 1;
        let now = *generation;
        drop(state);
        self.generation = now;
        self.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain bytes behind: still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state, if this handle is still alive.
    fn live(&self) -> Result<MutexGuard<'_, State>, io::Error> {
        let state = self.lock();
        if state.generation != self.generation {
            return Err(io::Error::other("the simulated machine crashed; this handle is dead"));
        }
        Ok(state)
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "access past the end of the simulated file")
}

impl StorageBackend for SimFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.live()?.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let state = self.live()?;
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let source = state.live.get(start..start + out.len()).ok_or_else(out_of_range)?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut state = self.live()?;
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        let old = state.live.len();
        state.live.resize(len, 0);
        // A new length is metadata a crash can lose too: mark the pages it touches.
        let (low, high) = (old.min(len), old.max(len));
        state.dirty.extend(low / PAGE..high.div_ceil(PAGE).max(low / PAGE + 1));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut state = self.live()?;
        let State { live, durable, dirty, .. } = &mut *state;
        durable.resize(live.len(), 0);
        for page in std::mem::take(dirty) {
            let start = page * PAGE;
            if start >= live.len() {
                break;
            }
            let end = (start + PAGE).min(live.len());
            durable[start..end].copy_from_slice(&live[start..end]);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut state = self.live()?;
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let target = state.live.get_mut(start..start + data.len()).ok_or_else(out_of_range)?;
        target.copy_from_slice(data);
        if !data.is_empty() {
            state.dirty.extend(start / PAGE..(start + data.len()).div_ceil(PAGE));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_exactly_what_was_synced() {
        let mut file = SimFile::new();
        let old = file.clone();
        file.set_len(3 * PAGE as u64).unwrap();
        file.write(10, b"synced").unwrap();
        file.sync_data().unwrap();
        file.write(10, b"SYNCED").unwrap();
        file.write(2 * PAGE as u64, b"lost").unwrap();
        file.set_len(4 * PAGE as u64).unwrap();
        file.crash();
        assert!(old.write(0, b"from beyond").is_err(), "a handle from before the crash is dead");
        assert_eq!(file.len().unwrap(), 3 * PAGE as u64);
        let mut out = [0u8; 6];
        file.read(10, &mut out).unwrap();
        assert_eq!(&out, b"synced");
        let mut out = [0u8; 4];
        file.read(2 * PAGE as u64, &mut out).unwrap();
        assert_eq!(out, [0; 4]);
        assert!(file.read(4 * PAGE as u64 - 2, &mut out).is_err());
    }

    #[test]
    fn a_shrink_then_regrow_before_a_sync_reads_zeros_after_it() {
        let mut file = SimFile::new();
        file.set_len(2 * PAGE as u64).unwrap();
        file.write(PAGE as u64, b"old").unwrap();
        file.sync_data().unwrap();
        file.set_len(PAGE as u64).unwrap();
        file.set_len(2 * PAGE as u64).unwrap();
        file.sync_data().unwrap();
        file.crash();
        let mut out = [9u8; 3];
        file.read(PAGE as u64, &mut out).unwrap();
        assert_eq!(out, [0; 3]);
    }
}

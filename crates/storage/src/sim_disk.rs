//! An in-memory [`Disk`] that fails the way real disks do, for the simulator and for crash
//! tests: writes stay volatile until `sync`; names stay volatile until `sync_dir`; a crash keeps
//! a random prefix of each file's unsynced writes (cutting the last one short: a torn write) and
//! forgets unsynced names; a bit can rot in data that was synced. It can also be told to fail
//! after a number of operations, to crash at every point of a sequence.

use std::collections::BTreeMap;
use std::io;

use ballot_raft::rng::Rng;

use crate::disk::Disk;

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Content {
    /// Bytes up to the highest written offset; reads past it (up to `len`) are zeros.
    data: Vec<u8>,
    len: u64,
}

impl Content {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Write { offset, data } => {
                let end = *offset as usize + data.len();
                if self.data.len() < end {
                    self.data.resize(end, 0);
                }
                self.data[*offset as usize..end].copy_from_slice(data);
                self.len = self.len.max(end as u64);
            }
            Change::SetLen(len) => {
                self.data.truncate(*len as usize);
                self.len = *len;
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.resize(self.len as usize, 0);
        out
    }
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: Content,
    current: Content,
    unsynced: Vec<Change>,
}

/// The simulated disk. Cloning it copies the whole disk (for tests that branch).
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    files: BTreeMap<u64, SimFile>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    next_file: u64,
    operations: u64,
    /// Fail every operation after this many (a crash in the middle of a sequence).
    fail_after: Option<u64>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Makes every operation after the next `operations` fail, as if the machine died there.
    pub fn fail_after(&mut self, operations: u64) {
        self.fail_after = Some(self.operations + operations);
    }

    /// Operations performed so far.
    pub fn operations(&self) -> u64 {
        self.operations
    }

    fn step(&mut self) -> io::Result<()> {
        self.operations += 1;
        match self.fail_after {
            Some(limit) if self.operations > limit => Err(io::Error::other("simulated crash: the disk is gone")),
            _ => Ok(()),
        }
    }

    fn id(&self, name: &str) -> io::Result<u64> {
        self.names.get(name).copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name}")))
    }

    fn change(&mut self, name: &str, change: Change) -> io::Result<()> {
        self.step()?;
        let id = self.id(name)?;
        let file = self.files.get_mut(&id).expect("named files exist");
        file.current.apply(&change);
        file.unsynced.push(change);
        Ok(())
    }

    /// The machine loses power: each file keeps its synced content plus a random prefix of its
    /// unsynced writes, the last kept write possibly torn; unsynced names are forgotten.
    pub fn crash(&mut self, rng: &mut Rng) {
        self.fail_after = None;
        for file in self.files.values_mut() {
            let mut content = file.durable.clone();
            let keep = rng.range(0, file.unsynced.len() as u64 + 1) as usize;
            for (position, change) in file.unsynced.iter().enumerate() {
                if position < keep {
                    content.apply(change);
                } else if position == keep {
                    if let Change::Write { offset, data } = change {
                        let torn = rng.range(0, data.len() as u64 + 1) as usize;
                        content.apply(&Change::Write { offset: *offset, data: data[..torn].to_vec() });
                    }
                    break;
                }
            }
            // What survived is now what the platter holds.
            file.durable = content.clone();
            file.current = content;
            file.unsynced.clear();
        }
        self.names = self.durable_names.clone();
        let live: std::collections::BTreeSet<u64> = self.names.values().copied().collect();
        self.files.retain(|id, _| live.contains(id));
    }

    /// Flips one bit in synced data of a file whose name ends with `suffix`, away from the last
    /// `tail_margin` bytes of written data (where a flip could not be told from a torn write;
    /// see docs/storage.md). Returns the file and offset, or `None` if no such data exists.
    pub fn flip_synced_bit(&mut self, rng: &mut Rng, suffix: &str, tail_margin: u64) -> Option<(String, u64)> {
        let candidates: Vec<(String, u64, usize)> = self
            .durable_names
            .iter()
            .filter(|(name, _)| name.ends_with(suffix))
            .filter_map(|(name, id)| {
                let file = &self.files[id];
                let extent = file.durable.data.iter().rposition(|b| *b != 0)? as u64 + 1;
                // Only data that the current content still agrees with (synced, not rewritten).
                (extent > tail_margin + 64).then(|| (name.clone(), *id, (extent - tail_margin) as usize))
            })
            .collect();
        let (name, id, limit) = rng.pick(&candidates)?.clone();
        let offset = rng.range(0, limit as u64) as usize;
        let bit = 1u8 << rng.range(0, 8);
        let file = self.files.get_mut(&id).expect("exists");
        file.durable.data[offset] ^= bit;
        if offset < file.current.data.len() {
            file.current.data[offset] ^= bit;
        }
        Some((name, offset as u64))
    }
}

impl Disk for SimDisk {
    fn list(&mut self) -> io::Result<Vec<String>> {
        self.step()?;
        Ok(self.names.keys().cloned().collect())
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        self.step()?;
        let id = self.id(name)?;
        Ok(self.files[&id].current.bytes())
    }

    fn create(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.step()?;
        self.next_file += 1;
        let id = self.next_file;
        let mut file = SimFile::default();
        file.current.len = len;
        file.unsynced.push(Change::SetLen(len));
        self.files.insert(id, file);
        self.names.insert(name.to_string(), id);
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        self.change(name, Change::Write { offset, data: data.to_vec() })
    }

    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.change(name, Change::SetLen(len))
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.step()?;
        let id = self.id(name)?;
        let file = self.files.get_mut(&id).expect("named files exist");
        file.durable = file.current.clone();
        file.unsynced.clear();
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        self.step()?;
        self.durable_names = self.names.clone();
        let live: std::collections::BTreeSet<u64> =
            self.names.values().chain(self.durable_names.values()).copied().collect();
        self.files.retain(|id, _| live.contains(id));
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.step()?;
        let id = self.id(from)?;
        self.names.remove(from);
        self.names.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.step()?;
        self.id(name)?;
        self.names.remove(name);
        Ok(())
    }

    fn location(&self) -> String {
        "sim-disk".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_and_names_can_vanish_synced_ones_cannot() {
        let mut lost_data = false;
        let mut lost_name = false;
        for seed in 0..64 {
            let mut disk = SimDisk::new();
            disk.create("a", 0).unwrap();
            disk.write_at("a", 0, b"hello").unwrap();
            disk.sync("a").unwrap();
            disk.sync_dir().unwrap();
            disk.write_at("a", 5, b" world").unwrap();
            disk.create("b", 0).unwrap();
            disk.crash(&mut Rng::new(seed));
            let a = disk.read("a").unwrap();
            assert!(a.starts_with(b"hello"), "synced data survives");
            assert!(b"hello world".starts_with(&a), "what survives is a prefix: {a:?}");
            lost_data |= a.len() < 11;
            lost_name |= disk.list().unwrap() == vec!["a".to_string()];
        }
        assert!(lost_data && lost_name);
    }

    #[test]
    fn a_rename_is_durable_only_after_the_directory_sync() {
        let mut disk = SimDisk::new();
        disk.create("tmp", 0).unwrap();
        disk.write_at("tmp", 0, b"x").unwrap();
        disk.sync("tmp").unwrap();
        disk.sync_dir().unwrap();
        disk.rename("tmp", "final").unwrap();
        let mut crashed = disk.clone();
        crashed.crash(&mut Rng::new(1));
        assert_eq!(crashed.list().unwrap(), vec!["tmp".to_string()]);
        disk.sync_dir().unwrap();
        disk.crash(&mut Rng::new(1));
        assert_eq!(disk.list().unwrap(), vec!["final".to_string()]);
    }

    #[test]
    fn fail_after_stops_every_later_operation() {
        let mut disk = SimDisk::new();
        disk.fail_after(2);
        disk.create("a", 0).unwrap();
        disk.write_at("a", 0, b"x").unwrap();
        assert!(disk.sync("a").is_err());
        assert!(disk.list().is_err());
    }
}

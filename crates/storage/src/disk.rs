//! The file operations the log needs, behind a trait so the simulator can replace the real
//! filesystem with [`crate::SimDisk`] and run the very same WAL code under crashes.
//!
//! All files live in one directory and are named, not opened: implementations keep whatever
//! handles they need. Durability follows POSIX: data written to a file is durable after `sync`
//! of that file; a created, renamed or removed name is durable after `sync_dir`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A sync taken out of the disk to run on another thread (the server's WAL thread), so the
/// thread that owns the disk keeps working while the fsync waits on the device.
pub type SyncTask = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// A second handle on the same directory, for another thread (see [`Disk::twin`]).
pub type TwinDisk = Box<dyn Disk + Send>;

/// A directory of files with explicit durability.
pub trait Disk {
    /// Names of the files in the directory (not the lock file).
    fn list(&mut self) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates (or truncates) a file, preallocated to `len` bytes of zeros.
    fn create(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Writes `data` at `offset`.
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals in the directory durable.
    fn sync_dir(&mut self) -> io::Result<()>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// Where this disk lives, for error messages.
    fn location(&self) -> String;
    /// The same as `sync(name)` (or, for `None`, `sync_dir`) as a task for another thread, if
    /// this disk can hand one out; `Ok(None)` means "sync in place instead".
    fn detached_sync(&mut self, name: Option<&str>) -> io::Result<Option<SyncTask>> {
        let _ = name;
        Ok(None)
    }
    /// A task for another thread that creates (or truncates) `name` with `len` bytes of zeros
    /// written out and synced, if this disk can hand one out. The file is not to be touched
    /// through the disk until the task has finished.
    fn detached_zero_filled(&mut self, name: &str, len: u64) -> io::Result<Option<SyncTask>> {
        let _ = (name, len);
        Ok(None)
    }
    /// A handle on the same directory for another thread, if this disk can hand one out, after
    /// closing this handle's files named in `releasing` (which the twin is to remove: the last
    /// close of a removed file frees its blocks, and that should not happen here). The twin
    /// keeps the directory locked while it lives.
    fn twin(&mut self, releasing: &[String]) -> io::Result<Option<TwinDisk>> {
        let _ = releasing;
        Ok(None)
    }
}

/// Bytes of zeros written at a time when a file is zero-filled.
pub(crate) const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;

/// Pause between the chunks of a spare segment zero-filled ahead of need: 64 chunks take about
/// half a second, while a segment lasts seconds at the highest write rates measured.
const ZERO_FILL_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// The real filesystem: one directory, locked against a second process.
#[derive(Debug)]
pub struct FsDisk {
    dir: PathBuf,
    /// Held for the lifetime of the disk: the advisory lock on `LOCK`.
    _lock: File,
    files: BTreeMap<String, File>,
}

const LOCK_FILE: &str = "LOCK";

impl FsDisk {
    /// Opens `dir` (creating it if `create`), and takes its lock.
    pub fn open(dir: &Path, create: bool) -> Result<FsDisk, crate::Error> {
        let io_error = |source| crate::Error::Io { path: dir.display().to_string(), source };
        if !dir.exists() {
            if !create {
                return Err(crate::Error::MissingDirectory(dir.display().to_string()));
            }
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        if !dir.is_dir() {
            return Err(crate::Error::NotADirectory(dir.display().to_string()));
        }
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE)).map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(crate::Error::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io_error(source)),
        }
        Ok(FsDisk { dir: dir.to_path_buf(), _lock: lock, files: BTreeMap::new() })
    }

    fn file(&mut self, name: &str) -> io::Result<&File> {
        if !self.files.contains_key(name) {
            let file = OpenOptions::new().read(true).write(true).open(self.dir.join(name))?;
            self.files.insert(name.to_string(), file);
        }
        Ok(&self.files[name])
    }
}

impl Disk for FsDisk {
    fn list(&mut self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name != LOCK_FILE {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name))
    }

    fn create(&mut self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(self.dir.join(name))?;
        // Sparse preallocation: the tail reads as zeros, which recovery recognises as unused.
        file.set_len(len)?;
        self.files.insert(name.to_string(), file);
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all_at(data, offset)
    }

    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.file(name)?.set_len(len)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn detached_sync(&mut self, name: Option<&str>) -> io::Result<Option<SyncTask>> {
        Ok(Some(match name {
            Some(name) => {
                let file = self.file(name)?.try_clone()?;
                Box::new(move || file.sync_data())
            }
            None => {
                let dir = File::open(&self.dir)?;
                Box::new(move || dir.sync_all())
            }
        }))
    }

    fn detached_zero_filled(&mut self, name: &str, len: u64) -> io::Result<Option<SyncTask>> {
        self.files.remove(name);
        let path = self.dir.join(name);
        Ok(Some(Box::new(move || {
            let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
            let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES.min(len as usize)];
            let mut offset = 0;
            while offset < len {
                let chunk = zeros.len().min((len - offset) as usize);
                file.write_all_at(&zeros[..chunk], offset)?;
                offset += chunk as u64;
                // Paced, a chunk synced at a time: 64 MiB written and flushed at once held the
                // device for 100+ ms, and every member's log fsync (and with it every write:
                // the members fill segments in step, so they prepare spares together) waited.
                file.sync_data()?;
                std::thread::sleep(ZERO_FILL_PAUSE);
            }
            file.sync_data()
        })))
    }

    fn twin(&mut self, releasing: &[String]) -> io::Result<Option<TwinDisk>> {
        for name in releasing {
            self.files.remove(name);
        }
        // A duplicate of the lock file's descriptor shares its lock: the directory stays locked
        // until both handles are gone, so a reopen cannot race the twin's work.
        let twin = FsDisk { dir: self.dir.clone(), _lock: self._lock.try_clone()?, files: BTreeMap::new() };
        Ok(Some(Box::new(twin)))
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.files.remove(from);
        self.files.remove(to);
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.files.remove(name);
        std::fs::remove_file(self.dir.join(name))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

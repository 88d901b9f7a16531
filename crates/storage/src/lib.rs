//! # ballot-storage: the Raft log on disk
//!
//! A segmented write-ahead log of entries, hard state and snapshot markers ([`Wal`]), snapshot
//! files ([`snapshot`]), and the [`Disk`] they are written through: [`FsDisk`] in production,
//! [`SimDisk`] in the simulator and in crash tests, so both run the same code.
//!
//! Nothing is reported durable before its fsync returned: [`Wal::write`] gives a
//! [`PendingSync`], and only [`Wal::sync`] turns it into a [`Durable`].
//!
//! ```
//! use ballot_raft::{Entry, EntryKind, HardState};
//! use ballot_storage::{Batch, SimDisk, Wal, WalOptions};
//!
//! let (mut wal, recovered) = Wal::open(SimDisk::new(), WalOptions::default()).unwrap();
//! assert!(recovered.entries.is_empty());
//! let entries = [Entry { stamp: 0, term: 1, index: 1, kind: EntryKind::Normal, data: b"x".to_vec() }];
//! let durable = wal.append(Batch { entries: &entries, hard_state: Some(HardState { term: 1, vote: 1, commit: 0 }), ..Batch::default() }).unwrap();
//! assert_eq!(durable.last, Some((1, 1)));
//! let (_, recovered) = Wal::open(wal.into_disk(), WalOptions::default()).unwrap();
//! assert_eq!(recovered.entries, entries);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod disk;
pub mod record;
mod sim_disk;
pub mod snapshot;
mod wal;

#[cfg(test)]
mod tests;

pub use disk::{Disk, FsDisk, SyncTask, TwinDisk};
pub use sim_disk::SimDisk;
pub use wal::{Batch, Durable, PendingSync, Recovered, Wal, WalOptions, SEGMENT_SUFFIX};

/// Why the log could not be opened or written. Every variant names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error; the log's state is no longer trustworthy and the node must stop.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data directory does not exist (and was not to be created).
    #[error("data directory {0} does not exist")]
    MissingDirectory(String),
    /// The data directory path is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// Another process holds the directory's lock.
    #[error("data directory {0} is in use by another process (its LOCK is held)")]
    Locked(String),
    /// The directory holds files that are not ballot's.
    #[error("{dir} is not a ballot data directory (found {found}); refusing to use it")]
    Foreign {
        /// The directory.
        dir: String,
        /// A file that gave it away.
        found: String,
    },
    /// A damaged record before the tail of the log.
    #[error("corrupt write-ahead log: {file} at byte {offset}: {reason} (start with --repair to cut the log there, losing what follows)")]
    Corrupt {
        /// The segment file.
        file: String,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A damaged snapshot file.
    #[error("corrupt snapshot {file}: {reason}")]
    CorruptSnapshot {
        /// The snapshot file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The log says a snapshot exists that is not on disk.
    #[error("{dir}: the log was compacted to index {index} but that snapshot file is missing")]
    MissingSnapshot {
        /// The directory.
        dir: String,
        /// The snapshot's index.
        index: u64,
    },
    /// Written by a newer (or older) format.
    #[error("{file}: format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// Version found.
        found: u16,
        /// Version supported.
        supported: u16,
    },
    /// The caller tried to append entries that do not continue the log.
    #[error("entries starting at {first} do not continue the log (last {last}, snapshot {snapshot})")]
    InvalidAppend {
        /// First index of the batch.
        first: u64,
        /// Last index in the log.
        last: u64,
        /// Snapshot index.
        snapshot: u64,
    },
}

//! # ballot-mvcc: the replicated key-value state machine
//!
//! etcd v3's semantics — revisions, range, put, delete, txn, compaction, leases as data — on
//! redb. Deterministic: the same commands give the same state, responses and [`Store::hash_kv`]
//! on every member. No clock, no network, no Raft inside: lease expiry is decided outside and
//! arrives as a `LeaseRevoke` command.
//!
//! ```
//! use ballot_mvcc::{Command, PutRequest, RangeRequest, Store};
//! let mut store = Store::in_memory().unwrap();
//! let put = Command::Put(PutRequest { key: b"a".to_vec(), value: b"1".to_vec(), ..Default::default() });
//! let applied = store.apply_batch(&[(1, put)]).unwrap();
//! assert_eq!(applied[0].as_ref().unwrap().revision, 2);
//! let got = store.range(&RangeRequest { key: b"a".to_vec(), ..Default::default() }).unwrap();
//! assert_eq!(got.kvs[0].value, b"1");
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod codec;
pub mod command_codec;
pub mod counts;
pub mod etcd_format;
pub mod key_index;
pub mod read;
mod sim_file;
mod snapshot;
mod store;
pub mod tables;
mod types;
pub mod watch;
mod write;
pub mod zk;

#[cfg(test)]
mod tests;

pub use sim_file::SimFile;
pub use snapshot::{ImageItem, ImageParser, ImageWriter, SnapshotChunks};
pub use store::{ReadAuth, Reader, StampedRevision, Store, CACHE_BYTES_DEFAULT, COMPACTION_BATCH_REVISIONS};
pub use types::*;
pub use watch::{Cancelled, Event, EventKind, WatchHub, WatchId, WatchRequest};

/// Outcomes etcd reports as errors (with etcd's messages), and storage failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Reading or compacting below the compact revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// Reading or compacting above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// Granting a lease id that exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease id of 0 reached the state machine (the server picks ids before proposing).
    #[error("etcdserver: lease id must not be zero")]
    InvalidLeaseId,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A write while the NOSPACE alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A write while the CORRUPT alarm is raised (members disagree on the content).
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// A txn branch puts a key twice, or puts a key it also deletes.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// Authentication is on and the request names no user.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// The token was issued before the last change to users or roles: log in again.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// A login while authentication is off.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// Wrong user or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The token is unknown, expired or forged.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// UserAdd of an existing name.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExists,
    /// No such user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of an existing name.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExists,
    /// No such role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// RoleAdd without a name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Revoking a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// Revoking a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// AuthEnable without a root user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while the root user lacks the root role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// Deleting root, or taking the root role from root, while authentication is on.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// An etcd request names a key under the znode prefix, which only the ZooKeeper API writes.
    #[error("etcdserver: key is reserved for ZooKeeper znodes")]
    ReservedKey,
    /// The database failed; the member must stop.
    #[error("storage: {0}")]
    Storage(String),
}

pub(crate) fn storage_error(error: impl std::fmt::Display) -> Error {
    Error::Storage(error.to_string())
}

//! Requests and responses with etcd v3's meaning (names follow etcd's API; the gRPC mapping
//! lives in the server).

/// A key's state at some revision, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision of the key's creation (of its current generation).
    pub create_revision: i64,
    /// Revision of the last modification.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after the first put; reset by a delete).
    pub version: i64,
    /// The value (empty with `keys_only`).
    pub value: Vec<u8>,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// Order of a range's results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Key order (no sorting requested).
    #[default]
    None,
    /// Ascending by the sort target.
    Ascend,
    /// Descending by the sort target.
    Descend,
}

/// What to sort a range by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// etcd's RangeRequest. `range_end` empty means the single key; `[key, range_end)` otherwise;
/// `range_end == "\0"` means every key `>= key` (and `key == "\0"` with it means all keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range (exclusive), see above.
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// Read at this revision (0: the current one).
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Filters (0: none).
    pub min_mod_revision: i64,
    /// Filter.
    pub max_mod_revision: i64,
    /// Filter.
    pub min_create_revision: i64,
    /// Filter.
    pub max_create_revision: i64,
}

/// etcd's RangeResponse (without the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys.
    pub kvs: Vec<KeyValue>,
    /// True if more keys matched than `limit` allowed.
    pub more: bool,
    /// Number of keys in the range at that revision (before limit and filters, as etcd counts).
    pub count: i64,
}

/// etcd's PutRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Lease to attach (0: none).
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

/// etcd's PutResponse (without the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The previous key-value, if asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's DeleteRangeRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, as in [`RangeRequest`].
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// etcd's DeleteRangeResponse (without the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a compare relates the target to the given value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    /// `==`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// What a compare looks at, and the value to compare with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The version.
    Version(i64),
    /// The create revision.
    Create(i64),
    /// The mod revision.
    Mod(i64),
    /// The value.
    Value(Vec<u8>),
    /// The lease id.
    Lease(i64),
}

/// etcd's Compare: every key in `[key, range_end)` (or just `key`) must satisfy it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// Relation.
    pub result: CompareResult,
    /// Target and value.
    pub target: CompareTarget,
    /// Key.
    pub key: Vec<u8>,
    /// Range end, as in [`RangeRequest`].
    pub range_end: Vec<u8>,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A write.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// The result of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// A read's result.
    Range(RangeResponse),
    /// A write's result.
    Put(PutResponse),
    /// A delete's result.
    DeleteRange(DeleteRangeResponse),
    /// A nested transaction's result.
    Txn(TxnResponse),
}

/// etcd's TxnRequest: if every compare holds, run `success`, else `failure`; atomically, as one
/// revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Conditions.
    pub compare: Vec<Compare>,
    /// Operations if all hold.
    pub success: Vec<RequestOp>,
    /// Operations otherwise.
    pub failure: Vec<RequestOp>,
}

/// etcd's TxnResponse (without the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// True if the compares held.
    pub succeeded: bool,
    /// One response per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// A lease as the state machine keeps it: its granted TTL and the remaining TTL last
/// checkpointed through the log (expiry itself is decided by the leader's clock, outside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Lease id.
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Remaining TTL at the last checkpoint, seconds (equal to `ttl` before any checkpoint).
    pub remaining_ttl: i64,
}

/// A lease with the keys attached to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease.
    pub lease: Lease,
    /// Attached keys, in key order.
    pub keys: Vec<Vec<u8>>,
}

/// An alarm, as etcd's AlarmType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlarmKind {
    /// The backend passed its quota: writes are refused until space is freed and the alarm is
    /// disarmed.
    NoSpace,
    /// Replicas disagree on their content.
    Corrupt,
}

/// A command the log carries to the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Put.
    Put(PutRequest),
    /// Delete a key or range.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// Compact history below a revision.
    Compact {
        /// Revisions below this are removed; reads below it fail.
        revision: i64,
    },
    /// Grant a lease (the id is chosen before proposing, so every replica agrees).
    LeaseGrant {
        /// Non-zero id.
        id: i64,
        /// TTL, seconds.
        ttl: i64,
    },
    /// Revoke a lease and delete its keys in one revision.
    LeaseRevoke {
        /// Lease id.
        id: i64,
    },
    /// Raise (or, with `activate` false, disarm) an alarm for a member; replicated so every
    /// member refuses the same writes.
    Alarm {
        /// Raise or disarm.
        activate: bool,
        /// Which alarm.
        kind: AlarmKind,
        /// The member it concerns.
        member_id: u64,
    },
    /// Record a lease's remaining TTL, so a new leader neither extends nor cuts it.
    LeaseCheckpoint {
        /// Lease id.
        id: i64,
        /// Remaining TTL, seconds.
        remaining_ttl: i64,
    },
    /// Changes to the member table (carried by membership changes, `MemberUpdate`, and a
    /// member publishing its name and client URLs when it starts).
    Members(Vec<MemberChange>),
    /// A change to users, roles or the auth switch, or a login.
    Auth(crate::auth::AuthCommand),
    /// A ZooKeeper write (see `crate::zk`).
    Zk(ballot_zk::tree::Write),
    /// A new ZooKeeper session: a lease of `ttl` seconds whose id is the session's, and the
    /// session's password in a key attached to it (see `crate::zk`).
    ZkSession {
        /// Session id (= lease id).
        id: i64,
        /// Seconds.
        ttl: i64,
        /// The password a reconnecting client must show.
        password: Vec<u8>,
    },
    /// `command` on behalf of `user`, holding a token good for auth revision `revision`:
    /// refused when it is applied unless the user may run it (when authentication is on).
    AsUser {
        /// The user (empty: none was given).
        user: String,
        /// Auth revision the user's token was issued at.
        revision: u64,
        /// The command.
        command: Box<Command>,
    },
}

impl Command {
    /// The command itself, without the user it runs for.
    pub fn inner(&self) -> &Command {
        match self {
            Command::AsUser { command, .. } => command.inner(),
            other => other,
        }
    }
}

/// A member as the replicated member table holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRecord {
    /// Raft id.
    pub id: u64,
    /// Name (empty until the member has started and published it).
    pub name: String,
    /// Where peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it (empty until published).
    pub client_urls: Vec<String>,
    /// Added as a learner and not promoted since. A member added as a voter enters Raft as a
    /// learner until it has caught up, but its record says voter from the start.
    pub is_learner: bool,
}

/// One change to the member table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Add or replace a member.
    Upsert(MemberRecord),
    /// Remove a member for good: its id is remembered so it can never come back.
    Remove(u64),
    /// New peer URLs (`MemberUpdate`); nothing if the member is gone.
    SetPeerUrls {
        /// The member.
        id: u64,
        /// Its peer URLs.
        peer_urls: Vec<String>,
    },
    /// A member's name and client URLs, published by itself when it starts; nothing if gone.
    Publish {
        /// The member.
        id: u64,
        /// Its name.
        name: String,
        /// Its client URLs.
        client_urls: Vec<String>,
    },
}

/// What applying a command returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Put.
    Put(PutResponse),
    /// DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Txn.
    Txn(TxnResponse),
    /// Compact, grant, revoke, checkpoint.
    Done,
    /// An alarm raised or cleared: whether it was raised before.
    Alarm {
        /// The alarm was raised before the command.
        was_raised: bool,
    },
    /// A ZooKeeper write's results (a failed one changed nothing).
    Zk(crate::zk::ZkResult),
}

/// A response with the store's revision after the command (etcd's header revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The response, or the error etcd would return.
    pub result: Result<Response, crate::Error>,
    /// Store revision after applying.
    pub revision: i64,
}

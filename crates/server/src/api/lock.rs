//! The Lock service, built as etcd's is: a lock is a key `name/<lease>` attached to the caller's
//! lease; waiters queue by the key's create revision, and each waits for the deletion of the
//! key just before it. The holder's key's create revision is a fencing token: it only grows
//! from one holder to the next.

use ballot_mvcc::{
    Command, Compare, CompareResult, CompareTarget, PutRequest, RangeRequest, RequestOp, Response as Applied,
    SortOrder, SortTarget, TxnRequest,
};
use ballot_proto::v3lockpb as pb;
use ballot_proto::v3lockpb::lock_client::LockClient;
use ballot_raft::Role;
use tonic::Status;

use super::{prefix_end, Caller, Handle};
use crate::auth::Identity;

/// The Lock service.
pub struct Lock {
    /// The member.
    pub handle: Handle,
}

/// An error of the lock and election services as etcd returns them: its servers for these run
/// the KV API through a client and pass on its errors as plain ones, which gRPC reports as
/// Unknown, with the message.
pub fn plain(error: Status) -> Status {
    if error.code() == tonic::Code::Unknown {
        return error;
    }
    Status::unknown(error.message().to_string())
}

/// Queues `key` (with `value`) under `prefix` on `lease`; returns the key's create revision
/// once every key created before it under the prefix is gone. Shared with elections.
pub async fn acquire(
    handle: &Handle,
    identity: &Identity,
    prefix: &[u8],
    key: Vec<u8>,
    value: Vec<u8>,
    lease: i64,
) -> Result<(i64, u64), Status> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
            key: key.clone(),
            range_end: vec![],
        }],
        success: vec![RequestOp::Put(PutRequest { key: key.clone(), value, lease, ..Default::default() })],
        failure: vec![RequestOp::Range(RangeRequest { key: key.clone(), ..Default::default() })],
    };
    let (response, revision, term) = handle.apply_as(identity, Command::Txn(txn)).await?;
    let Applied::Txn(txn) = response else { return Err(Status::internal("a txn answered with another response")) };
    let mine = if txn.succeeded {
        revision
    } else {
        match txn.responses.first() {
            Some(ballot_mvcc::ResponseOp::Range(range)) if !range.kvs.is_empty() => range.kvs[0].create_revision,
            _ => return Err(Status::internal("the lock key vanished while queueing")),
        }
    };
    loop {
        let before = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            limit: 1,
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Create,
            max_create_revision: mine - 1,
            ..Default::default()
        };
        let answer = handle.read(identity, before).await?;
        let Some(previous) = answer.value.kvs.first() else { return Ok((mine, term)) };
        handle.wait_deleted(previous.key.clone(), answer.revision).await?;
    }
}

/// A channel to the leader for a recipe call, unless this member leads.
pub async fn leader_or_forward(handle: &Handle, caller: &Caller) -> Result<Option<super::ForwardChannel>, Status> {
    let (role, leader) = handle.query(|core| (core.replica.engine().role(), core.leader())).await?;
    if role == Role::Leader {
        return Ok(None);
    }
    if leader == 0 {
        return Err(Status::unavailable("etcdserver: no leader"));
    }
    handle.leader_channel(caller, leader).map(Some)
}

impl Lock {
    /// etcd's Lock: waits until the lock is held; the key's create revision is the fencing token.
    pub async fn lock(&self, caller: &Caller, message: pb::LockRequest) -> Result<pb::LockResponse, Status> {
        self.lock_as(caller, message).await.map_err(plain)
    }

    async fn lock_as(&self, caller: &Caller, message: pb::LockRequest) -> Result<pb::LockResponse, Status> {
        if let Some(channel) = leader_or_forward(&self.handle, caller).await? {
            return Ok(LockClient::new(channel).lock(message).await?.into_inner());
        }
        let identity = self.handle.identity(caller).await?;
        let pb::LockRequest { name, lease } = message;
        let mut prefix = name;
        prefix.push(b'/');
        let key: Vec<u8> = [prefix.as_slice(), format!("{lease:x}").as_bytes()].concat();
        let (revision, term) = acquire(&self.handle, &identity, &prefix, key.clone(), Vec::new(), lease).await?;
        Ok(pb::LockResponse { header: self.handle.header(revision, term), key })
    }

    /// etcd's Unlock.
    pub async fn unlock(&self, caller: &Caller, message: pb::UnlockRequest) -> Result<pb::UnlockResponse, Status> {
        self.unlock_as(caller, message).await.map_err(plain)
    }

    async fn unlock_as(&self, caller: &Caller, message: pb::UnlockRequest) -> Result<pb::UnlockResponse, Status> {
        if let Some(channel) = leader_or_forward(&self.handle, caller).await? {
            return Ok(LockClient::new(channel).unlock(message).await?.into_inner());
        }
        let identity = self.handle.identity(caller).await?;
        let key = message.key;
        let delete = ballot_mvcc::DeleteRangeRequest { key, ..Default::default() };
        let (_, revision, term) = self.handle.apply_as(&identity, Command::DeleteRange(delete)).await?;
        Ok(pb::UnlockResponse { header: self.handle.header(revision, term) })
    }
}

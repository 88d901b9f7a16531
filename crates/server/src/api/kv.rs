//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use ballot_mvcc::{Command, Response};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use ballot_raft::NodeId;
use prost::Message as _;
use tonic::Status;

use super::{check_size, convert, invalid, status, Caller, ForwardChannel, Handle};
use crate::auth::Identity;
use crate::driver::ApiError;

/// The KV service.
pub struct Kv {
    /// The member.
    pub handle: Handle,
}

/// etcd's checks on a key range: a key is required, and it may not lie under the znode prefix.
pub(crate) fn check_key(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(invalid("etcdserver: key is not provided"));
    }
    if ballot_mvcc::read::reserved(key) {
        return Err(super::status(crate::driver::ApiError::Mvcc(ballot_mvcc::Error::ReservedKey)));
    }
    Ok(())
}

/// Checks a txn's shape: the operation count and every nested key, as etcd does before
/// proposing.
fn check_txn(txn: &pb::TxnRequest, ops_max: usize) -> Result<(), Status> {
    if txn.success.len() > ops_max || txn.failure.len() > ops_max {
        return Err(invalid("etcdserver: too many operations in txn request"));
    }
    for compare in &txn.compare {
        check_key(&compare.key)?;
    }
    for op in txn.success.iter().chain(&txn.failure) {
        use pb::request_op::Request as R;
        match &op.request {
            Some(R::RequestRange(range)) => check_key(&range.key)?,
            Some(R::RequestPut(put)) => check_put(put)?,
            Some(R::RequestDeleteRange(delete)) => check_key(&delete.key)?,
            Some(R::RequestTxn(txn)) => check_txn(txn, ops_max)?,
            None => return Err(invalid("etcdserver: a txn operation is empty")),
        }
    }
    Ok(())
}

/// etcd's rule (`isTxnSerializable`): a read-only txn is served without a ReadIndex barrier
/// only if every operation of both branches is a serializable range.
fn all_ranges_serializable(txn: &pb::TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).all(|op| match &op.request {
        Some(pb::request_op::Request::RequestRange(range)) => range.serializable,
        _ => false,
    })
}

fn check_put(put: &pb::PutRequest) -> Result<(), Status> {
    check_key(&put.key)?;
    if put.ignore_value && !put.value.is_empty() {
        return Err(invalid("etcdserver: value is provided"));
    }
    if put.ignore_lease && put.lease != 0 {
        return Err(invalid("etcdserver: lease is provided"));
    }
    Ok(())
}

impl Kv {
    async fn write(&self, identity: &Identity, command: Command) -> Result<(Response, i64, u64), ApiError> {
        let answer = self.handle.propose_as(identity, command).await?;
        let response = answer.value.result.map_err(ApiError::Mvcc)?;
        Ok((response, answer.revision, answer.term))
    }

    fn leader(&self, caller: &Caller, leader: NodeId) -> Result<KvClient<ForwardChannel>, Status> {
        Ok(KvClient::new(self.handle.leader_channel(caller, leader)?))
    }

    /// etcd's Range.
    pub async fn range(&self, caller: &Caller, message: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        self.handle.metrics.mvcc_op("range");
        let identity = self.handle.identity(caller).await?;
        check_key(&message.key)?;
        let mut message = message;
        if let Some(time) = &caller.as_of {
            // The barrier (or the causal wait) came before the lookup: read here at once.
            message.revision = self.as_of_revision(&message, time, caller.min_revision).await?;
            let answer = self.handle.read_local(&identity, convert::range_request(&message), None).await?;
            return Ok(convert::range_response(answer.value, self.handle.header(answer.revision, answer.term)));
        }
        let range = convert::range_request(&message);
        let answer = if message.serializable {
            self.handle.read_local(&identity, range, caller.min_revision).await?
        } else {
            self.handle.read(&identity, range).await?
        };
        let header = self.handle.header(answer.revision, answer.term);
        Ok(convert::range_response(answer.value, header))
    }

    /// The revision a range as of `time` reads at: the newest stamped at or before it, once
    /// this member has applied everything committed before the request (a ReadIndex barrier;
    /// a serializable or causal read waits only as those do). Named in the answer's metadata.
    async fn as_of_revision(
        &self,
        message: &pb::RangeRequest,
        time: &str,
        min_revision: Option<i64>,
    ) -> Result<i64, Status> {
        use super::caller::{AS_OF_REVISION, AS_OF_STAMP, AS_OF_TIME};
        let Some(ms) = crate::timestamp::parse_ms(time) else {
            return Err(invalid(&format!(
                "ballot: as-of time {time:?} is neither RFC 3339 (2026-12-01T10:05:00Z) nor milliseconds since the epoch"
            )));
        };
        if message.revision != 0 {
            return Err(invalid("ballot: a read is as of a time or at a revision, not both"));
        }
        if message.serializable {
            self.handle.caught_up(min_revision).await?;
        } else {
            self.handle.barrier().await?;
        }
        // Every stamp within the millisecond counts as at or before it.
        let stamp = ballot_raft::hlc::stamp_of_ms(ms.saturating_add(1)).saturating_sub(1);
        match self.handle.reader().revision_at(stamp) {
            Ok(Some(found)) => {
                let stamped_ms = ballot_raft::hlc::physical_ms(found.stamp);
                super::add_answer_metadata(AS_OF_REVISION, found.revision.to_string());
                super::add_answer_metadata(AS_OF_TIME, crate::timestamp::format_ms(stamped_ms));
                super::add_answer_metadata(AS_OF_STAMP, found.stamp.to_string());
                Ok(found.revision)
            }
            Ok(None) => Err(invalid(&format!(
                "ballot: no revision is stamped at or before {} (the cluster's stamped history starts later)",
                crate::timestamp::format_ms(ms)
            ))),
            Err(error) => Err(status(ApiError::Mvcc(error))),
        }
    }

    /// etcd's Put.
    pub async fn put(&self, caller: &Caller, message: pb::PutRequest) -> Result<pb::PutResponse, Status> {
        self.handle.metrics.mvcc_op("put");
        check_size(&self.handle, message.encoded_len())?;
        check_put(&message)?;
        let identity = self.handle.identity(caller).await?;
        match self.write(&identity, Command::Put(convert::put_request(&message))).await {
            Ok((Response::Put(put), revision, term)) => Ok(pb::PutResponse {
                header: self.handle.header(revision, term),
                prev_kv: put.prev_kv.map(convert::kv),
            }),
            Ok(_) => Err(Status::internal("a put answered with another kind of response")),
            Err(ApiError::NotLeader(leader)) => Ok(self.leader(caller, leader)?.put(message).await?.into_inner()),
            Err(error) => Err(status(error)),
        }
    }

    /// etcd's DeleteRange.
    pub async fn delete_range(
        &self,
        caller: &Caller,
        message: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, Status> {
        self.handle.metrics.mvcc_op("delete");
        check_size(&self.handle, message.encoded_len())?;
        check_key(&message.key)?;
        let identity = self.handle.identity(caller).await?;
        match self.write(&identity, Command::DeleteRange(convert::delete_request(&message))).await {
            Ok((Response::DeleteRange(delete), revision, term)) => Ok(pb::DeleteRangeResponse {
                header: self.handle.header(revision, term),
                deleted: delete.deleted,
                prev_kvs: delete.prev_kvs.into_iter().map(convert::kv).collect(),
            }),
            Ok(_) => Err(Status::internal("a delete answered with another kind of response")),
            Err(ApiError::NotLeader(leader)) => {
                Ok(self.leader(caller, leader)?.delete_range(message).await?.into_inner())
            }
            Err(error) => Err(status(error)),
        }
    }

    /// etcd's Txn.
    pub async fn txn(&self, caller: &Caller, message: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        self.handle.metrics.mvcc_op("txn");
        check_size(&self.handle, message.encoded_len())?;
        check_txn(&message, self.handle.limits.txn_ops_max)?;
        let txn = convert::txn_request(&message).map_err(invalid)?;
        let identity = self.handle.identity(caller).await?;
        if ballot_mvcc::read::is_read_only(&txn) {
            // No entry in the log and no new revision, as through it; linearizable through a
            // ReadIndex barrier unless every range asks for serializable.
            let answer = self
                .handle
                .read_only_txn(&identity, txn, all_ranges_serializable(&message), caller.min_revision)
                .await?;
            return Ok(convert::txn_response(answer.value, self.handle.header(answer.revision, answer.term)));
        }
        match self.write(&identity, Command::Txn(txn)).await {
            Ok((Response::Txn(txn), revision, term)) => {
                Ok(convert::txn_response(txn, self.handle.header(revision, term)))
            }
            Ok(_) => Err(Status::internal("a txn answered with another kind of response")),
            Err(ApiError::NotLeader(leader)) => Ok(self.leader(caller, leader)?.txn(message).await?.into_inner()),
            Err(error) => Err(status(error)),
        }
    }

    /// etcd's Compact.
    pub async fn compact(
        &self,
        caller: &Caller,
        message: pb::CompactionRequest,
    ) -> Result<pb::CompactionResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        match self.write(&identity, Command::Compact { revision: message.revision }).await {
            Ok((_, revision, term)) => {
                if message.physical {
                    // etcd's `physical`: answer once the history is removed from this member
                    // (a large history takes a while: the client's deadline decides, within
                    // a bound).
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
                    while self.handle.query(|core| core.replica.store().compacting()).await? {
                        if std::time::Instant::now() >= deadline {
                            return Err(status(ApiError::Timeout));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
                Ok(pb::CompactionResponse { header: self.handle.header(revision, term) })
            }
            Err(ApiError::NotLeader(leader)) => Ok(self.leader(caller, leader)?.compact(message).await?.into_inner()),
            Err(error) => Err(status(error)),
        }
    }
}

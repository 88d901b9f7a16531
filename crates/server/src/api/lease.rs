//! The Lease service: grant, revoke, keep-alive (a stream), time-to-live, list.

use std::pin::Pin;
use std::time::Instant;

use ballot_mvcc::Command;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::lease_client::LeaseClient;
use ballot_raft::NodeId;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::{async_stream, status, Caller, ForwardChannel, Handle};
use crate::driver::ApiError;

/// etcd's largest TTL (about 285 years).
const TTL_MAX: i64 = 9_000_000_000;

/// The Lease service.
pub struct Lease {
    /// The member.
    pub handle: Handle,
}

impl Lease {
    /// A fresh positive lease id: time, member and a counter mixed, as etcd's request ids are.
    fn new_id(&self) -> i64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mixed =
            crate::members::hash64(&[&nanos.to_be_bytes(), &self.handle.member_id.to_be_bytes(), &count.to_be_bytes()]);
        ((mixed >> 1) as i64).max(1)
    }

    fn leader(&self, caller: &Caller, leader: NodeId) -> Result<LeaseClient<ForwardChannel>, Status> {
        Ok(LeaseClient::new(self.handle.leader_channel(caller, leader)?))
    }

    /// One keep-alive, forwarded to the leader when this member does not lead.
    async fn keep_alive_once(&self, caller: &Caller, id: i64) -> Result<pb::LeaseKeepAliveResponse, Status> {
        match self.handle.keep_alive(id).await {
            Ok(answer) => Ok(pb::LeaseKeepAliveResponse {
                header: self.handle.header(answer.revision, answer.term),
                id,
                ttl: answer.value,
            }),
            Err(ApiError::NotLeader(leader)) => {
                let outbound = tokio_stream::iter([pb::LeaseKeepAliveRequest { id }]);
                let mut responses = self.leader(caller, leader)?.lease_keep_alive(outbound).await?.into_inner();
                responses.message().await?.ok_or_else(|| status(ApiError::NoLeader))
            }
            Err(error) => Err(status(error)),
        }
    }

    /// etcd's LeaseGrant.
    pub async fn lease_grant(
        &self,
        caller: &Caller,
        mut message: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status> {
        if message.ttl > TTL_MAX {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let id = if message.id == 0 { self.new_id() } else { message.id };
        let ttl = message.ttl.max(self.handle.limits.lease_ttl_min);
        let identity = self.handle.identity(caller).await?;
        match self.handle.propose_as(&identity, Command::LeaseGrant { id, ttl }).await {
            Ok(answer) => {
                answer.value.result.map_err(|error| status(ApiError::Mvcc(error)))?;
                Ok(pb::LeaseGrantResponse {
                    header: self.handle.header(answer.revision, answer.term),
                    id,
                    ttl,
                    error: String::new(),
                })
            }
            Err(ApiError::NotLeader(leader)) => {
                message.id = id;
                Ok(self.leader(caller, leader)?.lease_grant(message).await?.into_inner())
            }
            Err(error) => Err(status(error)),
        }
    }

    /// etcd's LeaseRevoke.
    pub async fn lease_revoke(
        &self,
        caller: &Caller,
        message: pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        match self.handle.propose_as(&identity, Command::LeaseRevoke { id: message.id }).await {
            Ok(answer) => {
                answer.value.result.map_err(|error| status(ApiError::Mvcc(error)))?;
                Ok(pb::LeaseRevokeResponse { header: self.handle.header(answer.revision, answer.term) })
            }
            Err(ApiError::NotLeader(leader)) => {
                Ok(self.leader(caller, leader)?.lease_revoke(message).await?.into_inner())
            }
            Err(error) => Err(status(error)),
        }
    }

    /// etcd's LeaseKeepAlive: one answer per request on `inbound`, until it ends or one fails.
    pub async fn lease_keep_alive(
        &self,
        caller: &Caller,
        mut inbound: impl Stream<Item = pb::LeaseKeepAliveRequest> + Send + Unpin + 'static,
    ) -> Result<KeepAliveStream, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_user(&identity)?;
        let this = Lease { handle: self.handle.clone() };
        let caller = caller.clone();
        Ok(async_stream(move |tx| async move {
            while let Some(message) = inbound.next().await {
                let response = this.keep_alive_once(&caller, message.id).await;
                let failed = response.is_err();
                if tx.send(response).await.is_err() || failed {
                    return;
                }
            }
        }))
    }

    /// etcd's LeaseTimeToLive.
    pub async fn lease_time_to_live(
        &self,
        caller: &Caller,
        message: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_user(&identity)?;
        let pb::LeaseTimeToLiveRequest { id, keys } = message;
        let found = self
            .handle
            .query(move |core| {
                let info = core.replica.store().lease(id);
                let deadline = core.lease_deadlines.get(&id).copied();
                (info, deadline, core.replica.store().revision(), core.term())
            })
            .await?;
        let (info, deadline, revision, term) = found;
        let header = self.handle.header(revision, term);
        let Some(info) = info.map_err(|error| status(ApiError::Mvcc(error)))? else {
            return Ok(pb::LeaseTimeToLiveResponse { header, id, ttl: -1, ..Default::default() });
        };
        // Whole seconds left, rounded down, as etcd answers.
        let remaining = deadline
            .map_or(info.lease.ttl, |deadline| deadline.saturating_duration_since(Instant::now()).as_secs() as i64);
        Ok(pb::LeaseTimeToLiveResponse {
            header,
            id,
            ttl: remaining,
            granted_ttl: info.lease.ttl,
            // A ZooKeeper session's keys (its ephemerals, its password) are the tree's, not
            // etcd's: hidden as in ranges.
            keys: if keys {
                info.keys.into_iter().filter(|key| !ballot_mvcc::read::reserved(key)).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// etcd's LeaseLeases.
    pub async fn lease_leases(
        &self,
        caller: &Caller,
        _message: pb::LeaseLeasesRequest,
    ) -> Result<pb::LeaseLeasesResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_user(&identity)?;
        let (leases, revision, term) = self
            .handle
            .query(|core| (core.replica.store().leases(), core.replica.store().revision(), core.term()))
            .await?;
        let leases = leases.map_err(|error| status(ApiError::Mvcc(error)))?;
        Ok(pb::LeaseLeasesResponse {
            header: self.handle.header(revision, term),
            leases: leases.into_iter().map(|lease| pb::LeaseStatus { id: lease.id }).collect(),
        })
    }
}

/// The keep-alive response stream.
pub type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

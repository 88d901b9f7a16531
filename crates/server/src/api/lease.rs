//! The Lease service: grant, revoke, keep-alive (a stream), time-to-live, list.

use std::pin::Pin;
use std::time::Instant;

use ballot_mvcc::Command;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::lease_client::LeaseClient;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{async_stream, forwarded, status, with_forwards, Handle};
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

    /// One keep-alive, forwarded to the leader when this member does not lead.
    async fn keep_alive_once(
        &self,
        id: i64,
        forwards: u8,
        metadata: &tonic::metadata::MetadataMap,
        identity: Option<tonic::metadata::AsciiMetadataValue>,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        match self.handle.keep_alive(id).await {
            Ok(answer) => Ok(pb::LeaseKeepAliveResponse {
                header: self.handle.header(answer.revision, answer.term),
                id,
                ttl: answer.value,
            }),
            Err(ApiError::NotLeader(leader)) => {
                let mut outbound = with_forwards(tokio_stream::iter([pb::LeaseKeepAliveRequest { id }]), forwards);
                super::copy_token(metadata, &mut outbound);
                let channel = self.handle.leader_channel_for(&outbound, leader, identity)?;
                let mut responses = LeaseClient::new(channel).lease_keep_alive(forwarded(outbound)).await?.into_inner();
                responses.message().await?.ok_or_else(|| status(ApiError::NoLeader))
            }
            Err(error) => Err(status(error)),
        }
    }
}

/// The keep-alive response stream.
pub type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for Lease {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let message = request.get_ref();
        if message.ttl > TTL_MAX {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let id = if message.id == 0 { self.new_id() } else { message.id };
        let ttl = message.ttl.max(self.handle.limits.lease_ttl_min);
        let identity = self.handle.identity(&request).await?;
        match self.handle.propose_as(&identity, Command::LeaseGrant { id, ttl }).await {
            Ok(answer) => {
                answer.value.result.map_err(|error| status(ApiError::Mvcc(error)))?;
                Ok(Response::new(pb::LeaseGrantResponse {
                    header: self.handle.header(answer.revision, answer.term),
                    id,
                    ttl,
                    error: String::new(),
                }))
            }
            Err(ApiError::NotLeader(leader)) => {
                let channel = self.handle.leader_channel(&request, leader)?;
                let mut forward = forwarded(request);
                forward.get_mut().id = id;
                LeaseClient::new(channel).lease_grant(forward).await
            }
            Err(error) => Err(status(error)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        match self.handle.propose_as(&identity, Command::LeaseRevoke { id: request.get_ref().id }).await {
            Ok(answer) => {
                answer.value.result.map_err(|error| status(ApiError::Mvcc(error)))?;
                Ok(Response::new(pb::LeaseRevokeResponse { header: self.handle.header(answer.revision, answer.term) }))
            }
            Err(ApiError::NotLeader(leader)) => {
                let channel = self.handle.leader_channel(&request, leader)?;
                LeaseClient::new(channel).lease_revoke(forwarded(request)).await
            }
            Err(error) => Err(status(error)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let forwards = super::forwards(&request);
        let identity = self.handle.identity(&request).await?;
        self.handle.check_user(&identity)?;
        let metadata = request.metadata().clone();
        let forward_identity = self.handle.forward_identity(&request);
        let mut inbound = request.into_inner();
        let this = Lease { handle: self.handle.clone() };
        let outbound = async_stream(move |tx| async move {
            while let Some(Ok(message)) = inbound.next().await {
                let response = this.keep_alive_once(message.id, forwards, &metadata, forward_identity.clone()).await;
                let failed = response.is_err();
                if tx.send(response).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(outbound))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        self.handle.check_user(&identity)?;
        let pb::LeaseTimeToLiveRequest { id, keys } = request.into_inner();
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
            return Ok(Response::new(pb::LeaseTimeToLiveResponse { header, id, ttl: -1, ..Default::default() }));
        };
        let remaining = deadline.map_or(info.lease.ttl, |deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
        });
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header,
            id,
            ttl: remaining,
            granted_ttl: info.lease.ttl,
            keys: if keys { info.keys } else { Vec::new() },
        }))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        self.handle.check_user(&identity)?;
        let (leases, revision, term) = self
            .handle
            .query(|core| (core.replica.store().leases(), core.replica.store().revision(), core.term()))
            .await?;
        let leases = leases.map_err(|error| status(ApiError::Mvcc(error)))?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.handle.header(revision, term),
            leases: leases.into_iter().map(|lease| pb::LeaseStatus { id: lease.id }).collect(),
        }))
    }
}

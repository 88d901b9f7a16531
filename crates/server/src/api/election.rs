//! The Election service, built as etcd's is: candidates queue as keys `name/<lease>` on their
//! leases; the oldest key (lowest create revision) leads. The leader key's create revision is
//! the leadership's fencing token.

use ballot_mvcc::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    Response as Applied, SortOrder, SortTarget, TxnRequest,
};
use ballot_proto::v3electionpb as pb;
use ballot_proto::v3electionpb::election_client::ElectionClient;
use tonic::{Code, Status};

use super::lock::{acquire, leader_or_forward, plain};
use super::{async_stream, convert, prefix_end, Caller, Handle};
use crate::auth::Identity;

/// The Election service.
pub struct Election {
    /// The member.
    pub handle: Handle,
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

/// The current leader's key-value of election `name`, with the revision read at.
async fn leader_of(
    handle: &Handle,
    identity: &Identity,
    name: &[u8],
) -> Result<(Option<ballot_mvcc::KeyValue>, i64, u64), Status> {
    let prefix = prefix_of(name);
    let request = RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(&prefix),
        limit: 1,
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        ..Default::default()
    };
    let answer = handle.read(identity, request).await?;
    Ok((answer.value.kvs.into_iter().next(), answer.revision, answer.term))
}

fn holds(leader: &pb::LeaderKey) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(leader.rev),
        key: leader.key.clone(),
        range_end: vec![],
    }
}

/// The Observe response stream.
pub type ObserveStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::LeaderResponse, Status>> + Send>>;

impl Election {
    /// etcd's Campaign: waits until this candidate leads.
    pub async fn campaign(
        &self,
        caller: &Caller,
        message: pb::CampaignRequest,
    ) -> Result<pb::CampaignResponse, Status> {
        self.campaign_as(caller, message).await.map_err(plain)
    }

    async fn campaign_as(&self, caller: &Caller, message: pb::CampaignRequest) -> Result<pb::CampaignResponse, Status> {
        if let Some(channel) = leader_or_forward(&self.handle, caller).await? {
            return Ok(ElectionClient::new(channel).campaign(message).await?.into_inner());
        }
        let identity = self.handle.identity(caller).await?;
        let pb::CampaignRequest { name, lease, value } = message;
        let prefix = prefix_of(&name);
        let key: Vec<u8> = [prefix.as_slice(), format!("{lease:x}").as_bytes()].concat();
        let (rev, term) = acquire(&self.handle, &identity, &prefix, key.clone(), value, lease).await?;
        Ok(pb::CampaignResponse {
            header: self.handle.header(rev, term),
            leader: Some(pb::LeaderKey { name, key, rev, lease }),
        })
    }

    /// etcd's Proclaim.
    pub async fn proclaim(
        &self,
        caller: &Caller,
        message: pb::ProclaimRequest,
    ) -> Result<pb::ProclaimResponse, Status> {
        self.proclaim_as(caller, message).await.map_err(plain)
    }

    async fn proclaim_as(&self, caller: &Caller, message: pb::ProclaimRequest) -> Result<pb::ProclaimResponse, Status> {
        if let Some(channel) = leader_or_forward(&self.handle, caller).await? {
            return Ok(ElectionClient::new(channel).proclaim(message).await?.into_inner());
        }
        let identity = self.handle.identity(caller).await?;
        let pb::ProclaimRequest { leader, value } = message;
        let leader = leader.ok_or_else(|| Status::invalid_argument("election: a leader key is required"))?;
        let put = PutRequest { key: leader.key.clone(), value, lease: leader.lease, ..Default::default() };
        let txn = TxnRequest { compare: vec![holds(&leader)], success: vec![RequestOp::Put(put)], failure: vec![] };
        let (response, revision, term) = self.handle.apply_as(&identity, Command::Txn(txn)).await?;
        if !matches!(response, Applied::Txn(ref txn) if txn.succeeded) {
            // A plain error in etcd's election server: gRPC's Unknown.
            return Err(Status::unknown("election: not leader"));
        }
        Ok(pb::ProclaimResponse { header: self.handle.header(revision, term) })
    }

    /// etcd's Leader.
    pub async fn leader(&self, caller: &Caller, message: pb::LeaderRequest) -> Result<pb::LeaderResponse, Status> {
        self.leader_as(caller, message).await.map_err(plain)
    }

    async fn leader_as(&self, caller: &Caller, message: pb::LeaderRequest) -> Result<pb::LeaderResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let (kv, revision, term) = leader_of(&self.handle, &identity, &message.name).await?;
        let kv = kv.ok_or_else(|| Status::new(Code::Unknown, "election: no leader"))?;
        Ok(pb::LeaderResponse { header: self.handle.header(revision, term), kv: Some(convert::kv(kv)) })
    }

    /// etcd's Observe: the leader now, then each change of leader or of its value.
    pub async fn observe(&self, caller: &Caller, message: pb::LeaderRequest) -> Result<ObserveStream, Status> {
        let identity = self.handle.identity(caller).await?;
        let name = message.name;
        let handle = self.handle.clone();
        let stream = async_stream(move |tx| async move {
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                let (kv, revision, term) = match leader_of(&handle, &identity, &name).await {
                    Ok(found) => found,
                    Err(error) => return drop(tx.send(Err(plain(error))).await),
                };
                if let Some(kv) = kv {
                    let seen = (kv.key.clone(), kv.mod_revision);
                    if last.as_ref() != Some(&seen) {
                        last = Some(seen);
                        let response =
                            pb::LeaderResponse { header: handle.header(revision, term), kv: Some(convert::kv(kv)) };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                }
                let prefix = prefix_of(&name);
                if let Err(error) = handle.wait_event(prefix.clone(), prefix_end(&prefix), revision, |_| true).await {
                    return drop(tx.send(Err(plain(error))).await);
                }
            }
        });
        Ok(stream)
    }

    /// etcd's Resign.
    pub async fn resign(&self, caller: &Caller, message: pb::ResignRequest) -> Result<pb::ResignResponse, Status> {
        self.resign_as(caller, message).await.map_err(plain)
    }

    async fn resign_as(&self, caller: &Caller, message: pb::ResignRequest) -> Result<pb::ResignResponse, Status> {
        if let Some(channel) = leader_or_forward(&self.handle, caller).await? {
            return Ok(ElectionClient::new(channel).resign(message).await?.into_inner());
        }
        let identity = self.handle.identity(caller).await?;
        let leader = message.leader.ok_or_else(|| Status::invalid_argument("election: a leader key is required"))?;
        let delete = DeleteRangeRequest { key: leader.key.clone(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![holds(&leader)],
            success: vec![RequestOp::DeleteRange(delete)],
            failure: vec![],
        };
        let (_, revision, term) = self.handle.apply_as(&identity, Command::Txn(txn)).await?;
        Ok(pb::ResignResponse { header: self.handle.header(revision, term) })
    }
}

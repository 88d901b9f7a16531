//! The Cluster service. The membership is fixed by `--initial-cluster` for now: MemberList
//! works; changes answer `Unimplemented` and say so.

use ballot_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use super::Handle;

/// The Cluster service.
pub struct Cluster {
    /// The member.
    pub handle: Handle,
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "ballot: {what} is not implemented yet; the membership is fixed by --initial-cluster until membership changes land"
    ))
}

impl Cluster {
    async fn members(&self) -> Result<(Vec<pb::Member>, u64), Status> {
        let (learners, term) =
            self.handle.query(|core| (core.replica.raft().raft().conf_state().learners.clone(), core.term())).await?;
        let members = self
            .handle
            .members
            .list()
            .into_iter()
            .map(|member| pb::Member {
                id: member.id,
                name: member.name,
                peer_ur_ls: member.peer_urls,
                client_ur_ls: member.client_urls,
                is_learner: learners.contains(&member.id),
            })
            .collect();
        Ok((members, term))
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Cluster {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let (members, term) = self.members().await?;
        Ok(Response::new(pb::MemberListResponse { header: self.handle.header(0, term), members }))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}

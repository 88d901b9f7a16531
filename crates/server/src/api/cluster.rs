//! The Cluster service: the member list, and membership changes through Raft's joint
//! consensus (see [`crate::membership`]). Changes are decided by the leader, which checks them
//! against its view of the cluster: a follower forwards them there. A change answers once it
//! is applied and the joint configuration is left, so the next change may follow at once.

use std::time::{Duration, Instant};

use ballot_mvcc::{Command, MemberChange, MemberRecord};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::cluster_client::ClusterClient;
use ballot_raft::{ConfChange, NodeId, Role};
use tonic::Status;

use super::{status, Caller, Handle};
use crate::driver::{ApiError, Core};
use crate::members::Member;
use crate::membership::{self, errors};

/// The Cluster service.
pub struct Cluster {
    /// The member.
    pub handle: Handle,
}

fn to_pb(member: Member) -> pb::Member {
    pb::Member {
        id: member.id,
        name: member.name,
        peer_ur_ls: member.peer_urls,
        client_ur_ls: member.client_urls,
        is_learner: member.is_learner,
    }
}

/// Where a request is decided.
enum Route {
    Here,
    Leader(NodeId),
}

impl Cluster {
    /// Refuses a membership change on a Multi-Paxos cluster (fixed membership), with
    /// `Unimplemented` and the reason.
    async fn raft_only(&self) -> Result<(), Status> {
        let checked = self.handle.query(|core| core.replica.engine().check_raft("a membership change")).await?;
        checked.map_err(|error| status(ApiError::from(error)))
    }

    fn members(&self) -> Vec<pb::Member> {
        self.handle.members.list().into_iter().map(to_pb).collect()
    }

    /// Here if this member leads, else the leader (waiting up to the request timeout for one).
    async fn route(&self) -> Result<Route, Status> {
        let deadline = Instant::now() + self.handle.limits.request_timeout;
        loop {
            let (role, leader) = self.handle.query(|core| (core.replica.engine().role(), core.leader())).await?;
            if role == Role::Leader {
                return Ok(Route::Here);
            }
            if leader != 0 {
                return Ok(Route::Leader(leader));
            }
            if Instant::now() >= deadline {
                return Err(status(ApiError::NoLeader));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn client(&self, caller: &Caller, leader: NodeId) -> Result<ClusterClient<super::ForwardChannel>, Status> {
        Ok(ClusterClient::new(self.handle.leader_channel(caller, leader)?))
    }

    /// Proposes `change` on the leader after `check` passed there, then waits until `done`
    /// holds for the applied state and the configuration is no longer joint.
    async fn change(
        &self,
        check: impl FnOnce(&membership::View) -> Result<ConfChange, Status> + Send + 'static,
        done: impl Fn(&Core) -> bool + Send + Sync + Clone + 'static,
    ) -> Result<u64, Status> {
        let proposed = self
            .handle
            .query(move |core| {
                let change = {
                    let view = core.membership_view();
                    if !view.leads() {
                        return Err(Status::unavailable("etcdserver: leader changed"));
                    }
                    view.check_idle()?;
                    check(&view)?
                };
                core.replica.engine_mut().propose_conf_change(change).map_err(|error| match error {
                    ballot_raft::Error::ConfChangePending => errors::change_in_progress(),
                    ballot_raft::Error::InvalidConfChange(why) => Status::failed_precondition(format!("ballot: {why}")),
                    other => status(ApiError::from(other)),
                })
            })
            .await??;
        tracing::info!(index = proposed, "membership change proposed");
        let deadline = Instant::now() + self.handle.limits.request_timeout;
        loop {
            let done = done.clone();
            let (finished, term) = self
                .handle
                .query(move |core| {
                    let settled = core.replica.applied() >= proposed && !core.replica.engine().conf_state().is_joint();
                    (settled && done(core), core.term())
                })
                .await?;
            if finished {
                return Ok(term);
            }
            if Instant::now() >= deadline {
                return Err(status(ApiError::Timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Hands leadership to the most up-to-date other voter and waits until it leads.
    async fn hand_over(&self) -> Result<NodeId, Status> {
        let me = self.handle.member_id;
        let target = self
            .handle
            .query(move |core| {
                let target = core.best_transferee().ok_or_else(|| {
                    Status::failed_precondition("ballot: the leader is the only voter; it cannot be removed")
                })?;
                core.replica.engine_mut().transfer_leader(target).map_err(|error| status(ApiError::from(error)))?;
                Ok::<_, Status>(target)
            })
            .await??;
        tracing::info!(target = format!("{target:x}"), "removing the leader: handing leadership over first");
        let deadline = Instant::now() + self.handle.limits.request_timeout;
        loop {
            let leader = self.handle.query(|core| core.leader()).await?;
            if leader != 0 && leader != me {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(status(ApiError::Timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Cluster {
    /// etcd's MemberAdd: a voter enters as a learner and is promoted once it caught up.
    pub async fn member_add(
        &self,
        caller: &Caller,
        message: pb::MemberAddRequest,
    ) -> Result<pb::MemberAddResponse, Status> {
        self.raft_only().await?;
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        if let Route::Leader(leader) = self.route().await? {
            return Ok(self.client(caller, leader)?.member_add(message).await?.into_inner());
        }
        let pb::MemberAddRequest { peer_ur_ls: peer_urls, is_learner } = message;
        let record = MemberRecord {
            id: membership::new_member_id(&peer_urls, self.handle.cluster_id),
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        let id = record.id;
        let added = record.clone();
        let term = self
            .change(
                move |view| {
                    view.check_urls(&added.peer_urls, None)?;
                    view.check_add(added.is_learner)?;
                    Ok(membership::add(added))
                },
                move |core| core.membership_view().members.contains(id),
            )
            .await?;
        tracing::info!(member = format!("{id:x}"), urls = ?record.peer_urls, is_learner, "member added");
        let member = self.handle.members.get(id).map(to_pb);
        Ok(pb::MemberAddResponse { header: self.handle.header(0, term), member, members: self.members() })
    }

    /// etcd's MemberRemove (the leader hands leadership over first).
    pub async fn member_remove(
        &self,
        caller: &Caller,
        message: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse, Status> {
        self.raft_only().await?;
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        let id = message.id;
        if self.handle.members.get(id).is_none() {
            return Err(errors::not_found());
        }
        let leader = match self.route().await? {
            Route::Here if id == self.handle.member_id => {
                // Checked here first: an unsafe removal must not move leadership for nothing.
                self.handle.query(move |core| core.membership_view().check_remove(id)).await??;
                Some(self.hand_over().await?)
            }
            Route::Here => None,
            Route::Leader(leader) => Some(leader),
        };
        if let Some(leader) = leader {
            return Ok(self.client(caller, leader)?.member_remove(message).await?.into_inner());
        }
        let term = self
            .change(
                move |view| {
                    if view.members.get(id).is_none() {
                        return Err(errors::not_found());
                    }
                    view.check_remove(id)?;
                    Ok(membership::remove(id))
                },
                move |core| {
                    let conf = core.replica.engine().conf_state();
                    !conf.is_voter(id) && !conf.learners.contains(&id)
                },
            )
            .await?;
        tracing::info!(member = format!("{id:x}"), "member removed");
        Ok(pb::MemberRemoveResponse { header: self.handle.header(0, term), members: self.members() })
    }

    /// etcd's MemberUpdate.
    pub async fn member_update(
        &self,
        caller: &Caller,
        message: pb::MemberUpdateRequest,
    ) -> Result<pb::MemberUpdateResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        let pb::MemberUpdateRequest { id, peer_ur_ls: peer_urls } = message;
        let checked = peer_urls.clone();
        self.handle
            .query(move |core| {
                let view = core.membership_view();
                if view.members.get(id).is_none() {
                    return Err(errors::not_found());
                }
                view.check_urls(&checked, Some(id))
            })
            .await??;
        let update = Command::Members(vec![MemberChange::SetPeerUrls { id, peer_urls }]);
        let (_, _, term) = self.handle.apply_as(&identity, update).await?;
        tracing::info!(member = format!("{id:x}"), "member peer URLs updated");
        Ok(pb::MemberUpdateResponse { header: self.handle.header(0, term), members: self.members() })
    }

    /// etcd's MemberList.
    pub async fn member_list(
        &self,
        _caller: &Caller,
        _message: pb::MemberListRequest,
    ) -> Result<pb::MemberListResponse, Status> {
        let term = self.handle.query(|core| core.term()).await?;
        Ok(pb::MemberListResponse { header: self.handle.header(0, term), members: self.members() })
    }

    /// etcd's MemberPromote.
    pub async fn member_promote(
        &self,
        caller: &Caller,
        message: pb::MemberPromoteRequest,
    ) -> Result<pb::MemberPromoteResponse, Status> {
        self.raft_only().await?;
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        if let Route::Leader(leader) = self.route().await? {
            return Ok(self.client(caller, leader)?.member_promote(message).await?.into_inner());
        }
        let id = message.id;
        let term = self
            .change(
                move |view| {
                    view.check_promote(id)?;
                    let record = view.members.get(id).ok_or_else(errors::not_found)?;
                    Ok(membership::promote(record))
                },
                move |core| core.replica.engine().conf_state().voters.contains(&id),
            )
            .await?;
        tracing::info!(member = format!("{id:x}"), "learner promoted");
        Ok(pb::MemberPromoteResponse { header: self.handle.header(0, term), members: self.members() })
    }
}

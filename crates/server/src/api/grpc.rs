//! The gRPC front end: tonic's servers for etcd's services. Each method only translates: the
//! [`Caller`] from the request's metadata and connection, the message in, the answer out. What
//! a request does is decided by the services below, which the JSON gateway shares.

use ballot_proto::etcdserverpb as pb;
use ballot_proto::{v3electionpb, v3lockpb};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Auth;
use super::cluster::Cluster;
use super::election::{Election, ObserveStream};
use super::kv::Kv;
use super::lease::{KeepAliveStream, Lease};
use super::lock::Lock;
use super::maintenance::{Maintenance, SnapshotStream, SNAPSHOT_FORMAT_HEADER};
use super::watch::{Watch, WatchStream};
use super::{Caller, Handle};

/// A service of the API behind tonic's server trait.
pub struct Grpc<S> {
    service: S,
    handle: Handle,
}

impl<S> Grpc<S> {
    /// `service` served over gRPC.
    pub fn new(service: S, handle: Handle) -> Self {
        Grpc { service, handle }
    }

    fn caller<T>(&self, request: &Request<T>) -> Caller {
        Caller::of_grpc(request, self.handle.client_cert_auth())
    }
}

/// A client stream's messages, up to its first error (a broken stream ends like a closed one).
fn messages<T>(inbound: Streaming<T>) -> impl tokio_stream::Stream<Item = T> + Send + Unpin + 'static
where
    T: Send + 'static,
{
    inbound.map_while(Result::ok)
}

/// Implements a service trait whose unary methods all have the same shape; other items (the
/// streaming methods and their types) follow.
macro_rules! grpc_service {
    ($trait:path, $service:ty, unary { $($method:ident($request:ty) -> $response:ty;)* } $($extra:item)*) => {
        #[tonic::async_trait]
        impl $trait for Grpc<$service> {
            $(
                async fn $method(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    let caller = self.caller(&request);
                    self.service.$method(&caller, request.into_inner()).await.map(Response::new)
                }
            )*
            $($extra)*
        }
    };
}

grpc_service!(pb::kv_server::Kv, Kv, unary {
    range(pb::RangeRequest) -> pb::RangeResponse;
    put(pb::PutRequest) -> pb::PutResponse;
    delete_range(pb::DeleteRangeRequest) -> pb::DeleteRangeResponse;
    txn(pb::TxnRequest) -> pb::TxnResponse;
    compact(pb::CompactionRequest) -> pb::CompactionResponse;
});

grpc_service!(pb::watch_server::Watch, Watch, unary {}
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<pb::WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let caller = self.caller(&request);
        Ok(Response::new(self.service.watch(&caller, messages(request.into_inner())).await))
    }
);

grpc_service!(pb::lease_server::Lease, Lease, unary {
    lease_grant(pb::LeaseGrantRequest) -> pb::LeaseGrantResponse;
    lease_revoke(pb::LeaseRevokeRequest) -> pb::LeaseRevokeResponse;
    lease_time_to_live(pb::LeaseTimeToLiveRequest) -> pb::LeaseTimeToLiveResponse;
    lease_leases(pb::LeaseLeasesRequest) -> pb::LeaseLeasesResponse;
}
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let caller = self.caller(&request);
        self.service.lease_keep_alive(&caller, messages(request.into_inner())).await.map(Response::new)
    }
);

grpc_service!(pb::cluster_server::Cluster, Cluster, unary {
    member_add(pb::MemberAddRequest) -> pb::MemberAddResponse;
    member_remove(pb::MemberRemoveRequest) -> pb::MemberRemoveResponse;
    member_update(pb::MemberUpdateRequest) -> pb::MemberUpdateResponse;
    member_list(pb::MemberListRequest) -> pb::MemberListResponse;
    member_promote(pb::MemberPromoteRequest) -> pb::MemberPromoteResponse;
});

grpc_service!(pb::maintenance_server::Maintenance, Maintenance, unary {
    alarm(pb::AlarmRequest) -> pb::AlarmResponse;
    status(pb::StatusRequest) -> pb::StatusResponse;
    defragment(pb::DefragmentRequest) -> pb::DefragmentResponse;
    hash(pb::HashRequest) -> pb::HashResponse;
    hash_kv(pb::HashKvRequest) -> pb::HashKvResponse;
    move_leader(pb::MoveLeaderRequest) -> pb::MoveLeaderResponse;
}
    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let caller = self.caller(&request);
        let ballot_format =
            request.metadata().get(SNAPSHOT_FORMAT_HEADER).is_some_and(|value| value.as_bytes() == b"ballot");
        self.service.snapshot(&caller, ballot_format).await.map(Response::new)
    }
);

grpc_service!(pb::auth_server::Auth, Auth, unary {
    auth_enable(pb::AuthEnableRequest) -> pb::AuthEnableResponse;
    auth_disable(pb::AuthDisableRequest) -> pb::AuthDisableResponse;
    auth_status(pb::AuthStatusRequest) -> pb::AuthStatusResponse;
    authenticate(pb::AuthenticateRequest) -> pb::AuthenticateResponse;
    user_add(pb::AuthUserAddRequest) -> pb::AuthUserAddResponse;
    user_get(pb::AuthUserGetRequest) -> pb::AuthUserGetResponse;
    user_list(pb::AuthUserListRequest) -> pb::AuthUserListResponse;
    user_delete(pb::AuthUserDeleteRequest) -> pb::AuthUserDeleteResponse;
    user_change_password(pb::AuthUserChangePasswordRequest) -> pb::AuthUserChangePasswordResponse;
    user_grant_role(pb::AuthUserGrantRoleRequest) -> pb::AuthUserGrantRoleResponse;
    user_revoke_role(pb::AuthUserRevokeRoleRequest) -> pb::AuthUserRevokeRoleResponse;
    role_add(pb::AuthRoleAddRequest) -> pb::AuthRoleAddResponse;
    role_get(pb::AuthRoleGetRequest) -> pb::AuthRoleGetResponse;
    role_list(pb::AuthRoleListRequest) -> pb::AuthRoleListResponse;
    role_delete(pb::AuthRoleDeleteRequest) -> pb::AuthRoleDeleteResponse;
    role_grant_permission(pb::AuthRoleGrantPermissionRequest) -> pb::AuthRoleGrantPermissionResponse;
    role_revoke_permission(pb::AuthRoleRevokePermissionRequest) -> pb::AuthRoleRevokePermissionResponse;
});

grpc_service!(v3lockpb::lock_server::Lock, Lock, unary {
    lock(v3lockpb::LockRequest) -> v3lockpb::LockResponse;
    unlock(v3lockpb::UnlockRequest) -> v3lockpb::UnlockResponse;
});

grpc_service!(v3electionpb::election_server::Election, Election, unary {
    campaign(v3electionpb::CampaignRequest) -> v3electionpb::CampaignResponse;
    proclaim(v3electionpb::ProclaimRequest) -> v3electionpb::ProclaimResponse;
    leader(v3electionpb::LeaderRequest) -> v3electionpb::LeaderResponse;
    resign(v3electionpb::ResignRequest) -> v3electionpb::ResignResponse;
}
    type ObserveStream = ObserveStream;

    async fn observe(&self, request: Request<v3electionpb::LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let caller = self.caller(&request);
        self.service.observe(&caller, request.into_inner()).await.map(Response::new)
    }
);

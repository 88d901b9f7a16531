//! The gRPC front end: tonic's servers for etcd's services. Each method only translates: the
//! [`Caller`] from the request's metadata and connection, the message in, the answer out. What
//! a request does is decided by the services below, which the JSON gateway shares.

use ballot_proto::etcdserverpb as pb;
use ballot_proto::{v3electionpb, v3lockpb};
use std::time::Instant;

use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};

use super::auth::Auth;
use super::cluster::Cluster;
use super::election::{Election, ObserveStream};
use super::kv::Kv;
use super::lease::{KeepAliveStream, Lease};
use super::lock::Lock;
use super::maintenance::{Maintenance, SnapshotStream, SNAPSHOT_FORMAT_HEADER};
use super::watch::{Watch, WatchStream};
use super::{Caller, Handle};
use crate::metrics::GrpcMethod;

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

/// The gRPC service name of a service, for the metrics.
pub trait ServiceName {
    /// The name, as gRPC paths carry it (`etcdserverpb.KV`).
    const NAME: &'static str;
}

impl<S: ServiceName> Grpc<S> {
    /// The metrics of `method` of this service.
    fn counters(&self, method: &'static str) -> &GrpcMethod {
        self.handle.metrics.grpc(S::NAME, method)
    }
}

/// A client stream's messages, up to its first error (a broken stream ends like a closed one),
/// each counted in `grpc_server_msg_received_total`.
fn messages<T>(
    inbound: Streaming<T>,
    counters: GrpcMethod,
) -> impl tokio_stream::Stream<Item = T> + Send + Unpin + 'static
where
    T: Send + 'static,
{
    inbound.map_while(Result::ok).map(move |message| {
        counters.received();
        message
    })
}

/// A stream of answers, as the services return them.
type Answers<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// A server stream that counts what it sends and how it ends (`grpc_server_msg_sent_total`,
/// `grpc_server_handled_total`): OK at its end, the error's code at an error, Canceled when the
/// client went first, as go-grpc-prometheus counts them.
struct Counted<T> {
    inner: Answers<T>,
    counters: GrpcMethod,
    started: Instant,
    ended: bool,
}

impl<T: Send + 'static> Counted<T> {
    fn boxed(inner: Answers<T>, counters: GrpcMethod, started: Instant) -> Answers<T> {
        Box::pin(Counted { inner, counters, started, ended: false })
    }
}

impl<T> tokio_stream::Stream for Counted<T> {
    type Item = Result<T, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(_))) => self.counters.sent(),
            std::task::Poll::Ready(Some(Err(status))) if !self.ended => {
                self.ended = true;
                self.counters.handled(status.code(), self.started);
            }
            std::task::Poll::Ready(None) if !self.ended => {
                self.ended = true;
                self.counters.handled(Code::Ok, self.started);
            }
            _ => {}
        }
        polled
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        if !self.ended {
            self.counters.handled(Code::Cancelled, self.started);
        }
    }
}

/// Counts a unary call's outcome.
fn counted<T>(counters: &GrpcMethod, started: Instant, answer: Result<T, Status>) -> Result<Response<T>, Status> {
    match &answer {
        Ok(_) => {
            counters.handled(Code::Ok, started);
            counters.sent();
        }
        Err(status) => counters.handled(status.code(), started),
    }
    answer.map(Response::new)
}

/// Implements a service trait whose unary methods all have the same shape (`method(Request) ->
/// Response = "Name"`, with gRPC's method name for the metrics); other items (the streaming
/// methods and their types) follow.
macro_rules! grpc_service {
    ($trait:path, $service:ty, unary { $($method:ident($request:ty) -> $response:ty = $name:literal;)* } $($extra:item)*) => {
        #[tonic::async_trait]
        impl $trait for Grpc<$service> {
            $(
                async fn $method(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    let (counters, started) = (self.counters($name), Instant::now());
                    counters.started();
                    let caller = self.caller(&request);
                    let (answer, metadata) =
                        super::with_answer_metadata(self.service.$method(&caller, request.into_inner())).await;
                    counted(counters, started, answer).map(|mut response| {
                        for (key, value) in metadata {
                            if let Ok(value) = value.parse() {
                                response.metadata_mut().insert(key, value);
                            }
                        }
                        response
                    })
                }
            )*
            $($extra)*
        }
    };
}

/// A streaming call's answer, counted; a call that failed to open counts as handled.
fn counted_stream<T: Send + 'static>(
    counters: &GrpcMethod,
    started: Instant,
    opened: Result<Answers<T>, Status>,
) -> Result<Response<Answers<T>>, Status> {
    match opened {
        Ok(stream) => Ok(Response::new(Counted::boxed(stream, counters.clone(), started))),
        Err(status) => {
            counters.handled(status.code(), started);
            Err(status)
        }
    }
}

macro_rules! service_name {
    ($($service:ty = $name:literal),*) => {
        $(impl ServiceName for $service {
            const NAME: &'static str = $name;
        })*
    };
}

service_name!(
    Kv = "etcdserverpb.KV",
    Watch = "etcdserverpb.Watch",
    Lease = "etcdserverpb.Lease",
    Cluster = "etcdserverpb.Cluster",
    Maintenance = "etcdserverpb.Maintenance",
    Auth = "etcdserverpb.Auth",
    Lock = "v3lockpb.Lock",
    Election = "v3electionpb.Election"
);

grpc_service!(pb::kv_server::Kv, Kv, unary {
    range(pb::RangeRequest) -> pb::RangeResponse = "Range";
    put(pb::PutRequest) -> pb::PutResponse = "Put";
    delete_range(pb::DeleteRangeRequest) -> pb::DeleteRangeResponse = "DeleteRange";
    txn(pb::TxnRequest) -> pb::TxnResponse = "Txn";
    compact(pb::CompactionRequest) -> pb::CompactionResponse = "Compact";
});

grpc_service!(pb::watch_server::Watch, Watch, unary {}
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<pb::WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let counters = self.counters("Watch");
        let started = Instant::now();
        counters.started();
        let caller = self.caller(&request);
        let inbound = messages(request.into_inner(), counters.clone());
        counted_stream(counters, started, Ok(self.service.watch(&caller, inbound).await))
    }
);

grpc_service!(pb::lease_server::Lease, Lease, unary {
    lease_grant(pb::LeaseGrantRequest) -> pb::LeaseGrantResponse = "LeaseGrant";
    lease_revoke(pb::LeaseRevokeRequest) -> pb::LeaseRevokeResponse = "LeaseRevoke";
    lease_time_to_live(pb::LeaseTimeToLiveRequest) -> pb::LeaseTimeToLiveResponse = "LeaseTimeToLive";
    lease_leases(pb::LeaseLeasesRequest) -> pb::LeaseLeasesResponse = "LeaseLeases";
}
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let counters = self.counters("LeaseKeepAlive");
        let started = Instant::now();
        counters.started();
        let caller = self.caller(&request);
        let inbound = messages(request.into_inner(), counters.clone());
        counted_stream(counters, started, self.service.lease_keep_alive(&caller, inbound).await)
    }
);

grpc_service!(pb::cluster_server::Cluster, Cluster, unary {
    member_add(pb::MemberAddRequest) -> pb::MemberAddResponse = "MemberAdd";
    member_remove(pb::MemberRemoveRequest) -> pb::MemberRemoveResponse = "MemberRemove";
    member_update(pb::MemberUpdateRequest) -> pb::MemberUpdateResponse = "MemberUpdate";
    member_list(pb::MemberListRequest) -> pb::MemberListResponse = "MemberList";
    member_promote(pb::MemberPromoteRequest) -> pb::MemberPromoteResponse = "MemberPromote";
});

grpc_service!(pb::maintenance_server::Maintenance, Maintenance, unary {
    alarm(pb::AlarmRequest) -> pb::AlarmResponse = "Alarm";
    status(pb::StatusRequest) -> pb::StatusResponse = "Status";
    defragment(pb::DefragmentRequest) -> pb::DefragmentResponse = "Defragment";
    hash(pb::HashRequest) -> pb::HashResponse = "Hash";
    hash_kv(pb::HashKvRequest) -> pb::HashKvResponse = "HashKV";
    move_leader(pb::MoveLeaderRequest) -> pb::MoveLeaderResponse = "MoveLeader";
}
    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let (counters, started) = (self.counters("Snapshot"), Instant::now());
        counters.started();
        let caller = self.caller(&request);
        let ballot_format =
            request.metadata().get(SNAPSHOT_FORMAT_HEADER).is_some_and(|value| value.as_bytes() == b"ballot");
        counted_stream(counters, started, self.service.snapshot(&caller, ballot_format).await)
    }
);

grpc_service!(pb::auth_server::Auth, Auth, unary {
    auth_enable(pb::AuthEnableRequest) -> pb::AuthEnableResponse = "AuthEnable";
    auth_disable(pb::AuthDisableRequest) -> pb::AuthDisableResponse = "AuthDisable";
    auth_status(pb::AuthStatusRequest) -> pb::AuthStatusResponse = "AuthStatus";
    authenticate(pb::AuthenticateRequest) -> pb::AuthenticateResponse = "Authenticate";
    user_add(pb::AuthUserAddRequest) -> pb::AuthUserAddResponse = "UserAdd";
    user_get(pb::AuthUserGetRequest) -> pb::AuthUserGetResponse = "UserGet";
    user_list(pb::AuthUserListRequest) -> pb::AuthUserListResponse = "UserList";
    user_delete(pb::AuthUserDeleteRequest) -> pb::AuthUserDeleteResponse = "UserDelete";
    user_change_password(pb::AuthUserChangePasswordRequest) -> pb::AuthUserChangePasswordResponse = "UserChangePassword";
    user_grant_role(pb::AuthUserGrantRoleRequest) -> pb::AuthUserGrantRoleResponse = "UserGrantRole";
    user_revoke_role(pb::AuthUserRevokeRoleRequest) -> pb::AuthUserRevokeRoleResponse = "UserRevokeRole";
    role_add(pb::AuthRoleAddRequest) -> pb::AuthRoleAddResponse = "RoleAdd";
    role_get(pb::AuthRoleGetRequest) -> pb::AuthRoleGetResponse = "RoleGet";
    role_list(pb::AuthRoleListRequest) -> pb::AuthRoleListResponse = "RoleList";
    role_delete(pb::AuthRoleDeleteRequest) -> pb::AuthRoleDeleteResponse = "RoleDelete";
    role_grant_permission(pb::AuthRoleGrantPermissionRequest) -> pb::AuthRoleGrantPermissionResponse = "RoleGrantPermission";
    role_revoke_permission(pb::AuthRoleRevokePermissionRequest) -> pb::AuthRoleRevokePermissionResponse = "RoleRevokePermission";
});

grpc_service!(v3lockpb::lock_server::Lock, Lock, unary {
    lock(v3lockpb::LockRequest) -> v3lockpb::LockResponse = "Lock";
    unlock(v3lockpb::UnlockRequest) -> v3lockpb::UnlockResponse = "Unlock";
});

grpc_service!(v3electionpb::election_server::Election, Election, unary {
    campaign(v3electionpb::CampaignRequest) -> v3electionpb::CampaignResponse = "Campaign";
    proclaim(v3electionpb::ProclaimRequest) -> v3electionpb::ProclaimResponse = "Proclaim";
    leader(v3electionpb::LeaderRequest) -> v3electionpb::LeaderResponse = "Leader";
    resign(v3electionpb::ResignRequest) -> v3electionpb::ResignResponse = "Resign";
}
    type ObserveStream = ObserveStream;

    async fn observe(&self, request: Request<v3electionpb::LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let (counters, started) = (self.counters("Observe"), Instant::now());
        counters.started();
        let caller = self.caller(&request);
        counted_stream(counters, started, self.service.observe(&caller, request.into_inner()).await)
    }
);

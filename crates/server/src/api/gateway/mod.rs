//! etcd's JSON gateway (grpc-gateway) on the client port: every RPC of KV, Lease, Cluster,
//! Maintenance, Auth, Lock and Election at etcd 3.4's paths, under `/v3/` and `/v3beta/`, over
//! the same services as gRPC. Like the gRPC front end, it only translates: the [`Caller`] from
//! the headers (the token in `Authorization`, as etcd's gateway takes it) and the connection,
//! the request from JSON, the answer or etcd's error back to JSON.
//!
//! The JSON is proto3's mapping as etcd's gateway writes it (generated serde impls in
//! `ballot-proto`): proto field names (`create_revision`, `ID`), 64-bit integers as strings,
//! bytes as base64, enums by name, default values left out. Errors are
//! `{"error": …, "message": …, "code": …}` with the HTTP status grpc-gateway gives each gRPC
//! code. The streaming RPCs answer with a chunked stream of `{"result": …}` objects, one per
//! line (see [`stream`]). Departures from etcd's gateway are listed in `docs/server.md`.

mod stream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Code, Status};

use super::auth::Auth;
use super::cluster::Cluster;
use super::election::Election;
use super::kv::Kv;
use super::lease::Lease;
use super::lock::Lock;
use super::maintenance::{Maintenance, API_VERSION};
use super::watch::Watch;
use super::{Caller, Handle};

/// Every service, for the gateway's routes.
pub struct Services {
    /// KV.
    pub kv: Kv,
    /// Watch.
    pub watch: Watch,
    /// Lease.
    pub lease: Lease,
    /// Cluster.
    pub cluster: Cluster,
    /// Maintenance.
    pub maintenance: Maintenance,
    /// Auth.
    pub auth: Auth,
    /// Lock.
    pub lock: Lock,
    /// Election.
    pub election: Election,
    /// The member.
    pub handle: Handle,
}

impl Services {
    /// The services of the member `handle` reaches.
    pub fn new(handle: Handle) -> Services {
        Services {
            kv: Kv { handle: handle.clone() },
            watch: Watch { handle: handle.clone() },
            lease: Lease { handle: handle.clone() },
            cluster: Cluster { handle: handle.clone() },
            maintenance: Maintenance { handle: handle.clone() },
            auth: Auth { handle: handle.clone() },
            lock: Lock { handle: handle.clone() },
            election: Election { handle: handle.clone() },
            handle,
        }
    }

    /// The caller of an HTTP request.
    fn caller(&self, request: &Request) -> Caller {
        let connection = request.extensions().get::<crate::listener::ClientConnInfo>();
        Caller::of_http(request.headers(), connection, self.handle.client_cert_auth())
    }
}

type Shared = State<Arc<Services>>;

/// A unary route: the request decoded, the service's method called, its answer encoded.
macro_rules! unary {
    ($service:ident . $method:ident) => {
        post(|State(services): Shared, request: Request| async move {
            let caller = services.caller(&request);
            match decode(&services.handle, request.into_body()).await {
                Ok(message) => {
                    let (answer, metadata) =
                        crate::api::with_answer_metadata(services.$service.$method(&caller, message)).await;
                    let mut response = respond(answer);
                    for (key, value) in metadata {
                        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                            response.headers_mut().insert(key, value);
                        }
                    }
                    response
                }
                Err(status) => error_response(&status),
            }
        })
    };
}

/// The gateway's routes (mounted at `/v3` and `/v3beta`) and `/version`.
pub fn router(services: Arc<Services>) -> Router {
    let v3 = Router::new()
        .route("/kv/range", unary!(kv.range))
        .route("/kv/put", unary!(kv.put))
        .route("/kv/deleterange", unary!(kv.delete_range))
        .route("/kv/txn", unary!(kv.txn))
        .route("/kv/compaction", unary!(kv.compact))
        .route("/watch", post(stream::watch))
        .route("/lease/grant", unary!(lease.lease_grant))
        .route("/lease/revoke", unary!(lease.lease_revoke))
        .route("/kv/lease/revoke", unary!(lease.lease_revoke))
        .route("/lease/keepalive", post(stream::keep_alive))
        .route("/lease/timetolive", unary!(lease.lease_time_to_live))
        .route("/kv/lease/timetolive", unary!(lease.lease_time_to_live))
        .route("/lease/leases", unary!(lease.lease_leases))
        .route("/kv/lease/leases", unary!(lease.lease_leases))
        .route("/cluster/member/add", unary!(cluster.member_add))
        .route("/cluster/member/remove", unary!(cluster.member_remove))
        .route("/cluster/member/update", unary!(cluster.member_update))
        .route("/cluster/member/list", unary!(cluster.member_list))
        .route("/cluster/member/promote", unary!(cluster.member_promote))
        .route("/maintenance/alarm", unary!(maintenance.alarm))
        .route("/maintenance/status", unary!(maintenance.status))
        .route("/maintenance/defragment", unary!(maintenance.defragment))
        // etcd 3.4 annotates Hash and HashKV with the same path; Hash is the one that answers.
        .route("/maintenance/hash", unary!(maintenance.hash))
        .route("/maintenance/snapshot", post(stream::snapshot))
        .route("/maintenance/transfer-leadership", unary!(maintenance.move_leader))
        .route("/auth/enable", unary!(auth.auth_enable))
        .route("/auth/disable", unary!(auth.auth_disable))
        .route("/auth/authenticate", unary!(auth.authenticate))
        .route("/auth/user/add", unary!(auth.user_add))
        .route("/auth/user/get", unary!(auth.user_get))
        .route("/auth/user/list", unary!(auth.user_list))
        .route("/auth/user/delete", unary!(auth.user_delete))
        .route("/auth/user/changepw", unary!(auth.user_change_password))
        .route("/auth/user/grant", unary!(auth.user_grant_role))
        .route("/auth/user/revoke", unary!(auth.user_revoke_role))
        .route("/auth/role/add", unary!(auth.role_add))
        .route("/auth/role/get", unary!(auth.role_get))
        .route("/auth/role/list", unary!(auth.role_list))
        .route("/auth/role/delete", unary!(auth.role_delete))
        .route("/auth/role/grant", unary!(auth.role_grant_permission))
        .route("/auth/role/revoke", unary!(auth.role_revoke_permission))
        .route("/lock/lock", unary!(lock.lock))
        .route("/lock/unlock", unary!(lock.unlock))
        .route("/election/campaign", unary!(election.campaign))
        .route("/election/proclaim", unary!(election.proclaim))
        .route("/election/leader", unary!(election.leader))
        .route("/election/observe", post(stream::observe))
        .route("/election/resign", unary!(election.resign))
        .layer(axum::middleware::map_response(cors))
        .with_state(services);
    Router::new().nest("/v3", v3.clone()).nest("/v3beta", v3).route("/version", get(version))
}

/// What answers a path nothing serves: a gRPC call is Unimplemented (as tonic answers it); an
/// HTTP one is a 404, as etcd's mux says it (`Not Found` under `/v3/`, Go's 404 page elsewhere,
/// `/v3alpha/` included, which 3.4 does not serve).
pub async fn fallback(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        let unimplemented = Status::unimplemented(format!("ballot does not serve {}", request.uri().path()));
        return unimplemented.into_http().map(|_: ()| Body::empty());
    }
    let text = if request.uri().path().starts_with("/v3/") { "Not Found\n" } else { "404 page not found\n" };
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// `GET /version`, as etcd answers it (clients choose the API prefix from it, parsing both
/// values as dotted numbers).
async fn version() -> Response {
    let body = format!(r#"{{"etcdserver":"{API_VERSION}","etcdcluster":"{API_VERSION}"}}"#);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// etcd's default `--cors=*`: every gateway answer allows any origin, and a preflight
/// `OPTIONS` is answered (by the method router's 405 turned into an empty 200).
async fn cors(method: Method, mut response: Response) -> Response {
    if method == Method::OPTIONS && response.status() == StatusCode::METHOD_NOT_ALLOWED {
        response = StatusCode::OK.into_response();
    }
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    headers.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    response
}

/// A request message from its JSON body: an empty body is the empty message; only the first
/// JSON value counts (as with etcd's gateway); a body that is not the message is
/// `InvalidArgument`.
async fn decode<T: DeserializeOwned + Default>(handle: &Handle, body: Body) -> Result<T, Status> {
    let limit = handle.limits.request_bytes_max + 512 * 1024;
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| super::invalid("etcdserver: request is too large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut values = serde_json::Deserializer::from_slice(&bytes).into_iter::<T>();
    match values.next() {
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => Err(super::invalid(&error.to_string())),
        None => Ok(T::default()),
    }
}

/// A unary answer: the message as JSON, or etcd's error.
fn respond<T: Serialize>(answer: Result<T, Status>) -> Response {
    match answer.and_then(|message| to_json(&message)) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(status) => error_response(&status),
    }
}

fn to_json<T: Serialize>(message: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(message).map_err(|error| Status::internal(format!("encoding the answer: {error}")))
}

/// The HTTP status grpc-gateway (as etcd 3.4 ships it) gives a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// etcd's gateway error body: `{"error": message, "message": message, "code": code}`.
pub fn error_response(status: &Status) -> Response {
    let body = ErrorBody { error: status.message(), message: status.message(), code: status.code() as i32 };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (http_status(status.code()), [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// grpc-gateway's error body, its fields in its order.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

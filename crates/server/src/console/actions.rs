//! What the console changes, and who may.
//!
//! Every change goes through `POST /ui/act/<what>` on the serving member, and three guards
//! stand before it:
//! - **`--ui-read-only`**: every action is refused, whoever asks (for a cluster run with
//!   authentication off, where anyone who reaches the port could otherwise act).
//! - **Cross-site request forgery**: a request must carry this member's console session token
//!   in `x-ballot-console`. The page reads it from `GET /ui/session`, which a page of another
//!   origin cannot read (no CORS headers are served), and a form another site posts cannot set
//!   a header. A browser's `Origin`, when it sends one, must also name this host, and a request
//!   its browser marks `Sec-Fetch-Site: cross-site` is refused.
//! - **Who asks**: the caller's credentials (the token the page got from
//!   `/v3/auth/authenticate`, sent as `Authorization`, or a client certificate) go to the same
//!   services a gRPC request reaches, with their checks: put and delete need the key's write
//!   permission, and every operation the root role (the console asks for it even where etcd's
//!   API does not, as for compaction).
//!
//! `GET /ui/session` also tells the page what to show: whether authentication is on, who the
//! token names, whether that user is root (operations) or may write anything (put, delete).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ballot_mvcc::auth::PermissionKind;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::api::caller::Caller;
use crate::api::gateway::error_response;
use crate::api::Handle;

/// The header that carries the console's session token.
pub const SESSION_HEADER: &str = "x-ballot-console";

/// What the console's actions need: the member, its session token, and whether it may act.
#[derive(Clone)]
pub struct Console {
    /// The member.
    pub handle: Handle,
    /// The session token: random, per process.
    pub secret: Arc<str>,
    /// `--ui-read-only`.
    pub read_only: bool,
    /// `--ui-agent`: the control endpoint of the `ballot agent` whose fleet the console shows.
    pub agent: Option<String>,
}

impl axum::extract::FromRef<Console> for Handle {
    fn from_ref(console: &Console) -> Handle {
        console.handle.clone()
    }
}

impl Console {
    /// The console of `handle`, with a fresh session token.
    pub fn new(handle: Handle, read_only: bool, agent: Option<String>) -> Console {
        let mut bytes = [0u8; 24];
        // Without the OS's randomness there is no token to trust: no action then passes.
        let secret = match getrandom::fill(&mut bytes) {
            Ok(()) => bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>(),
            Err(_) => String::new(),
        };
        Console { handle, secret: secret.into(), read_only, agent }
    }

    /// Refuses a request that must not act (see the module's docs), with the reason.
    fn guard(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), Status> {
        if self.read_only {
            return Err(Status::permission_denied("the console is read-only on this member (--ui-read-only)"));
        }
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let token = text(SESSION_HEADER).unwrap_or_default();
        if self.secret.is_empty() || !constant_time_eq(token.as_bytes(), self.secret.as_bytes()) {
            return Err(Status::permission_denied(format!(
                "refused: no console session ({SESSION_HEADER}); actions come from the console's own page"
            )));
        }
        if text("sec-fetch-site") == Some("cross-site") {
            return Err(Status::permission_denied("refused: a cross-site request"));
        }
        if let Some(origin) = text(header::ORIGIN.as_str()) {
            // HTTP/1.1 names the host in `Host`; HTTP/2 (a browser over TLS) in `:authority`,
            // which arrives as the URI's authority.
            let host = text(header::HOST.as_str()).or_else(|| uri.authority().map(|a| a.as_str())).unwrap_or_default();
            if !same_origin(origin, host) {
                return Err(Status::permission_denied(format!("refused: a request from another origin ({origin})")));
            }
        }
        Ok(())
    }
}

/// True if a browser's `Origin` (`scheme://host[:port]`) names `host` (`host[:port]`).
fn same_origin(origin: &str, host: &str) -> bool {
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Compares without stopping at the first difference (the token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who sent `request` (its token or client certificate).
pub(super) fn caller_of(handle: &Handle, request: &Request) -> Caller {
    let connection = request.extensions().get::<crate::listener::ClientConnInfo>();
    Caller::of_http(request.headers(), connection, handle.client_cert_auth())
}

/// What the page needs to know before it shows anything that changes state.
#[derive(Debug, Serialize)]
struct Session {
    auth_enabled: bool,
    read_only: bool,
    /// The session token, for `x-ballot-console`.
    token: String,
    /// Who the caller's credentials name (empty: nobody, or authentication is off).
    user: String,
    /// With authentication on, the credentials were refused (expired or unknown).
    invalid: bool,
    /// May run operations (root role, or authentication off).
    root: bool,
    /// May write some key (a role with write permission, root, or authentication off).
    writer: bool,
}

/// `GET /ui/session`.
pub async fn session(State(console): State<Console>, request: Request) -> impl IntoResponse {
    let handle = &console.handle;
    let caller = caller_of(handle, &request);
    let auth_enabled = handle.reader().auth_enabled();
    let mut session = Session {
        auth_enabled,
        read_only: console.read_only,
        token: console.secret.to_string(),
        user: String::new(),
        invalid: false,
        root: !auth_enabled,
        writer: !auth_enabled,
    };
    if auth_enabled {
        match handle.identity(&caller).await {
            Ok(identity) if !identity.user.is_empty() => {
                session.root = handle.authorize(|auth| auth.check_admin(&identity.user, identity.revision)).is_ok();
                session.writer = session.root || may_write(handle, &identity.user);
                session.user = identity.user;
            }
            Ok(_) => {}
            Err(_) => session.invalid = true,
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(session))
}

/// True if one of `user`'s roles may write some key.
fn may_write(handle: &Handle, user: &str) -> bool {
    let roles = handle.authorize(|auth| auth.user(user)).ok().flatten().map(|user| user.roles).unwrap_or_default();
    roles.iter().any(|role| {
        handle
            .authorize(|auth| auth.role(role))
            .ok()
            .flatten()
            .is_some_and(|role| role.permissions.iter().any(|permission| permission.kind != PermissionKind::Read))
    })
}

#[derive(Deserialize)]
struct PutBody {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct KeyBody {
    key: String,
}

#[derive(Deserialize)]
struct RevisionBody {
    revision: i64,
}

#[derive(Deserialize)]
struct MemberBody {
    /// The member's id in hex, as the cluster view shows it.
    member: String,
}

#[derive(Deserialize)]
struct NewMemberBody {
    peer_url: String,
    #[serde(default)]
    learner: bool,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(body).map_err(|error| Status::invalid_argument(format!("console action: {error}")))
}

fn member_id(hex: &str) -> Result<u64, Status> {
    u64::from_str_radix(hex.trim(), 16)
        .ok()
        .filter(|id| *id != 0)
        .ok_or_else(|| Status::invalid_argument(format!("console action: {hex:?} is not a member id")))
}

/// `POST /ui/act/{what}`: one action, guarded (see the module's docs); the answer is JSON, an
/// error in the JSON gateway's shape and HTTP status.
pub async fn act(State(console): State<Console>, Path(what): Path<String>, request: Request) -> Response {
    if let Err(refused) = console.guard(request.headers(), request.uri()) {
        return error_response(&refused);
    }
    let handle = console.handle.clone();
    let caller = caller_of(&handle, &request);
    let limit = handle.limits.request_bytes_max + 64 * 1024;
    let body = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) => body,
        Err(_) => return error_response(&Status::invalid_argument("etcdserver: request is too large")),
    };
    if what == "snapshot" {
        return match snapshot(&handle, &caller).await {
            Ok(response) => response,
            Err(status) => error_response(&status),
        };
    }
    match run(&handle, &caller, &what, &body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(status) => error_response(&status),
    }
}

/// Runs action `what` for `caller` through the services a client's request reaches.
async fn run(handle: &Handle, caller: &Caller, what: &str, body: &[u8]) -> Result<serde_json::Value, Status> {
    let kv = crate::api::kv::Kv { handle: handle.clone() };
    let cluster = crate::api::cluster::Cluster { handle: handle.clone() };
    let maintenance_of = |id: u64| handle.leader_channel(caller, id).map(MaintenanceClient::new);
    if !matches!(what, "put" | "delete") {
        // Every operation needs root from the console, including compaction, which etcd's API
        // lets any user ask for.
        let identity = handle.identity(caller).await?;
        handle.check_admin(&identity).await?;
    }
    match what {
        "put" => {
            let PutBody { key, value } = parse(body)?;
            let request = pb::PutRequest { key: key.into_bytes(), value: value.into_bytes(), ..Default::default() };
            let answer = kv.put(caller, request).await?;
            Ok(json!({ "revision": answer.header.map_or(0, |header| header.revision) }))
        }
        "delete" => {
            let KeyBody { key } = parse(body)?;
            let answer =
                kv.delete_range(caller, pb::DeleteRangeRequest { key: key.into_bytes(), ..Default::default() }).await?;
            Ok(json!({ "deleted": answer.deleted }))
        }
        "compact" => {
            let RevisionBody { revision } = parse(body)?;
            kv.compact(caller, pb::CompactionRequest { revision, physical: true }).await?;
            Ok(json!({ "compacted": revision }))
        }
        "defragment" => {
            let MemberBody { member } = parse(body)?;
            maintenance_of(member_id(&member)?)?.defragment(pb::DefragmentRequest {}).await?;
            Ok(json!({ "defragmented": member }))
        }
        "move-leader" => {
            let MemberBody { member } = parse(body)?;
            let target_id = member_id(&member)?;
            let leader = handle.query(|core| core.leader()).await?;
            if leader == 0 {
                return Err(Status::unavailable("etcdserver: no leader"));
            }
            maintenance_of(leader)?.move_leader(pb::MoveLeaderRequest { target_id }).await?;
            Ok(json!({ "leader": member }))
        }
        "member-add" => {
            let NewMemberBody { peer_url, learner } = parse(body)?;
            let request = pb::MemberAddRequest { peer_ur_ls: vec![peer_url], is_learner: learner };
            let answer = cluster.member_add(caller, request).await?;
            Ok(json!({ "added": answer.member.map(|member| format!("{:x}", member.id)) }))
        }
        "member-remove" => {
            let MemberBody { member } = parse(body)?;
            cluster.member_remove(caller, pb::MemberRemoveRequest { id: member_id(&member)? }).await?;
            Ok(json!({ "removed": member }))
        }
        "member-promote" => {
            let MemberBody { member } = parse(body)?;
            cluster.member_promote(caller, pb::MemberPromoteRequest { id: member_id(&member)? }).await?;
            Ok(json!({ "promoted": member }))
        }
        other => Err(Status::not_found(format!("no console action {other:?}"))),
    }
}

/// The snapshot `etcdctl snapshot save` writes (etcd's format, its SHA-256 at the end), as a
/// download. The permission check runs before the first byte.
async fn snapshot(handle: &Handle, caller: &Caller) -> Result<Response, Status> {
    let maintenance = crate::api::maintenance::Maintenance { handle: handle.clone() };
    let stream = maintenance.snapshot(caller, false).await?;
    let bytes = stream.map(|message| {
        message
            .map(|message| axum::body::Bytes::from(message.blob))
            .map_err(|status| std::io::Error::other(status.message().to_string()))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"snapshot.db\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(bytes),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn an_origin_must_name_the_host_the_request_was_sent_to() {
        assert!(same_origin("http://127.0.0.1:2379", "127.0.0.1:2379"));
        assert!(same_origin("https://Console.Example:443", "console.example:443"));
        assert!(!same_origin("http://127.0.0.1:2380", "127.0.0.1:2379"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:2379"));
        assert!(!same_origin("null", ""), "no host known: refused");
    }

    #[test]
    fn a_member_id_is_nonzero_hex() {
        assert_eq!(member_id("a9f638ea1cfcf961").unwrap(), 0xa9f6_38ea_1cfc_f961);
        assert!(member_id("0").is_err());
        assert!(member_id("m1").is_err());
    }
}

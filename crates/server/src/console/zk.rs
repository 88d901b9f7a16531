//! The console's ZooKeeper view: one znode (its data, stat, ACL and children) and the live
//! sessions with their ephemeral nodes, from this member's store — the same tree the ZooKeeper
//! front end serves, whether or not this member listens for ZooKeeper clients.
//!
//! `GET /ui/zk?path=/a/b` is a stream of server-sent events (`event: zk`): the node and the
//! sessions, read once a second and pushed when they changed. The console has no ZooKeeper
//! identity: a node's data and children show only if its ACL lets anyone read it (as
//! `world:anyone` would), and with authentication on the caller must be a user.

use axum::extract::{Request, State};
use axum::response::IntoResponse;
use ballot_mvcc::zk::{path_of, ZK_META};
use ballot_mvcc::RangeRequest;
use ballot_proto::etcdserverpb as pb;
use ballot_zk::acl::{allows, Identities};
use ballot_zk::codes::perms;
use ballot_zk::tree::validate_path;
use serde::Serialize;
use tonic::Status;

use super::{changes_stream, LEASES_EVERY};
use crate::api::caller::Caller;
use crate::api::Handle;

/// A znode as the view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct NodeView {
    /// Its data in hex (absent: null data, or not readable).
    data: Option<String>,
    czxid: i64,
    mzxid: i64,
    pzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    aversion: i32,
    ephemeral_owner: String,
    data_length: i32,
    num_children: i32,
    /// `scheme:id perms`, perms as zkCli prints them (`cdrwa`).
    acl: Vec<String>,
}

/// A session as the view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct SessionView {
    id: String,
    ttl: i64,
    granted_ttl: i64,
    ephemerals: Vec<String>,
}

/// What one push carries.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct ZkView {
    path: String,
    /// The node (absent: no such node).
    node: Option<NodeView>,
    /// Anyone may read it (else data and children are withheld).
    readable: bool,
    children: Vec<String>,
    sessions: Vec<SessionView>,
}

/// zkCli's letters for permission bits.
fn perm_letters(bits: i32) -> String {
    [(perms::CREATE, 'c'), (perms::DELETE, 'd'), (perms::READ, 'r'), (perms::WRITE, 'w'), (perms::ADMIN, 'a')]
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, letter)| *letter)
        .collect()
}

/// Decodes `%XX` escapes (and `+`) in a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `path` query parameter of `request` (`/` if none).
fn path_param(request: &Request) -> String {
    let query = request.uri().query().unwrap_or_default();
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("path="))
        .map(percent_decode)
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// Reads the view of `path` for `caller`.
async fn gather(handle: &Handle, caller: &Caller, path: &str) -> Result<ZkView, Status> {
    let identity = handle.identity(caller).await?;
    handle.check_user(&identity)?;
    validate_path(path).map_err(|_| Status::invalid_argument(format!("not a znode path: {path:?}")))?;
    let read = handle.reader().znode(path, true).map_err(|error| Status::internal(error.to_string()))?;
    let anyone = Identities { ids: Vec::new() };
    let readable = read.node.as_ref().is_some_and(|node| allows(&node.acl, perms::READ, &anyone));
    let node = read.node.map(|node| {
        let stat = node.stat();
        NodeView {
            data: node
                .data
                .as_ref()
                .filter(|_| readable)
                .map(|data| data.iter().map(|byte| format!("{byte:02x}")).collect()),
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            pzxid: stat.pzxid,
            ctime: stat.ctime,
            mtime: stat.mtime,
            version: stat.version,
            aversion: stat.aversion,
            ephemeral_owner: format!("{:#x}", stat.ephemeral_owner),
            data_length: stat.data_length,
            num_children: stat.num_children,
            acl: node
                .acl
                .iter()
                .map(|acl| format!("{}:{} {}", acl.id.scheme, acl.id.id, perm_letters(acl.perms)))
                .collect(),
        }
    });
    let mut children = if readable { read.children } else { Vec::new() };
    children.sort();
    Ok(ZkView { path: path.to_string(), node, readable, children, sessions: sessions(handle, caller).await? })
}

/// Every live session: its lease's time to live and the ephemeral nodes attached to it.
async fn sessions(handle: &Handle, caller: &Caller) -> Result<Vec<SessionView>, Status> {
    let key = [ZK_META, b"session/"].concat();
    let request = RangeRequest {
        range_end: ballot_mvcc::read::prefix_end(&key),
        key: key.clone(),
        keys_only: true,
        ..RangeRequest::default()
    };
    let (found, _) = handle.reader().range(&request).map_err(|error| Status::internal(error.to_string()))?;
    let leases = crate::api::lease::Lease { handle: handle.clone() };
    let mut views = Vec::new();
    for kv in found.kvs {
        let Some(id) = kv.key[key.len()..].try_into().ok().map(i64::from_be_bytes) else { continue };
        let live = leases.lease_time_to_live(caller, pb::LeaseTimeToLiveRequest { id, keys: false }).await?;
        // The service hides a session's keys from etcd's clients (they are the tree's): they
        // are read from the store here.
        let attached = handle
            .query(move |core| core.replica.store().lease(id))
            .await?
            .map_err(|error| Status::internal(error.to_string()))?;
        let (true, Some(attached)) = (live.ttl >= 0, attached) else {
            continue; // closed or expired meanwhile
        };
        let mut ephemerals: Vec<String> =
            attached.keys.iter().filter_map(|key| path_of(key).map(str::to_string)).collect();
        ephemerals.sort();
        views.push(SessionView { id: format!("{id:#x}"), ttl: live.ttl, granted_ttl: live.granted_ttl, ephemerals });
    }
    Ok(views)
}

/// `GET /ui/zk?path=…`: the view as server-sent events, pushed when it changed; an `error`
/// event (and the end) if the caller may not read it.
pub async fn stream(State(handle): State<Handle>, request: Request) -> impl IntoResponse {
    let path = path_param(&request);
    let caller = super::actions::caller_of(&handle, &request);
    changes_stream("zk", LEASES_EVERY, ZkView::clone, move || {
        let (handle, caller, path) = (handle.clone(), caller.clone(), path.clone());
        async move { gather(&handle, &caller, &path).await.map(Some) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_print_as_zkcli_prints_them() {
        assert_eq!(perm_letters(perms::ALL), "cdrwa");
        assert_eq!(perm_letters(perms::READ | perms::WRITE), "rw");
        assert_eq!(perm_letters(0), "");
    }

    #[test]
    fn a_query_value_is_percent_decoded() {
        assert_eq!(percent_decode("%2Fapp%2Fa%20b"), "/app/a b");
        assert_eq!(percent_decode("/plain"), "/plain");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }
}

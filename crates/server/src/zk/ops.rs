//! What each ZooKeeper request does. Reads are served from this member's store at its applied
//! revision (ZooKeeper's guarantee: sequential consistency; `sync` makes the next read
//! linearizable); writes go through the Raft log as one `Command::Zk` each (a multi is one).
//! Checks run in ZooKeeper's order so that a request fails with ZooKeeper's error.

use ballot_mvcc::zk::{clock_key, path_of, ZnodeRead};
use ballot_mvcc::{Command, RangeRequest, Response};
use ballot_zk::acl::{self, Identities};
use ballot_zk::codes::{op, perms, xid, AddWatchMode, CreateMode, ErrorCode};
use ballot_zk::jute::Jute;
use ballot_zk::multi::{MultiOp, MultiRequest, MultiResponse, MultiResult};
use ballot_zk::records::{
    Acl, AllChildrenNumberResponse, AuthPacket, CheckVersionRequest, Children2Response, ChildrenResponse, ClientInfo,
    Create2Response, CreateRequest, CreateResponse, CreateTtlRequest, DeleteRequest, ErrorResponse, GetAclResponse,
    GetDataResponse, Id, PathRequest, PathWatchRequest, RequestHeader, SetAclRequest, SetDataRequest, SetWatches2,
    StatResponse, SyncResponse, WatchesRequest, WhoAmIResponse,
};
use ballot_zk::tree::{Done, Op, Write, Znode};

use super::connection::Conn;
use super::watches::{notification, Kind, Which};
use crate::driver::ApiError;

/// What a request answers: an error code and a body (empty on error), the revision for the
/// reply's zxid and the tree change it must not overtake.
struct Answer {
    err: ErrorCode,
    body: Vec<u8>,
    revision: i64,
    follows: i64,
}

impl Answer {
    fn ok(body: Vec<u8>, revision: i64, follows: i64) -> Answer {
        Answer { err: ErrorCode::Ok, body, revision, follows }
    }

    fn err(err: ErrorCode, revision: i64, follows: i64) -> Answer {
        Answer { err, body: Vec::new(), revision, follows }
    }
}

/// Why a request got no answer of its own.
enum Failed {
    /// An answer with this error, at the member's current state.
    Code(ErrorCode),
    /// Close the connection (the request was malformed, or the member cannot serve: the
    /// client reconnects, to this member or another).
    Close,
}

impl From<ErrorCode> for Failed {
    fn from(code: ErrorCode) -> Failed {
        Failed::Code(code)
    }
}

fn decode<T: Jute>(body: &[u8]) -> Result<T, Failed> {
    T::decode(body).map_err(|_| Failed::Code(ErrorCode::MarshallingError))
}

/// The member's revision and the tree's last change at it.
fn clock(conn: &Conn) -> Result<(i64, i64), Failed> {
    let request = RangeRequest { key: clock_key(), keys_only: true, ..RangeRequest::default() };
    let (found, revision) = conn.front.handle.reader().range(&request).map_err(|_| Failed::Close)?;
    Ok((revision, found.kvs.first().map_or(0, |kv| kv.mod_revision)))
}

/// Handles one request and queues its reply; false closes the connection.
pub async fn execute(conn: &mut Conn, header: RequestHeader, body: &[u8]) -> bool {
    let result = match header.op {
        op::PING => clock(conn).map(|(revision, follows)| Answer::ok(Vec::new(), revision, follows)),
        op::CLOSE_SESSION => {
            // The session's end must not close this connection before the reply is sent.
            if let Some(entry) = conn.front.connections().get_mut(&conn.id) {
                entry.session = 0;
            }
            let closed = conn.front.handle.propose(Command::LeaseRevoke { id: conn.session }).await;
            let revision = closed.map(|answer| answer.revision).unwrap_or(conn.last_zxid);
            conn.reply(header.xid, 0, revision, 0, &[]).await;
            return false;
        }
        op::AUTH => return auth(conn, header, body).await,
        op::SET_WATCHES | op::SET_WATCHES2 => set_watches(conn, header.op, body).await,
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => match create_op(header.op, body) {
            Ok(create) => write(conn, header.op, vec![create]).await,
            Err(failed) => Err(failed),
        },
        op::DELETE | op::SET_DATA | op::SET_ACL | op::CHECK => match single_op(header.op, body) {
            Ok(one) => write(conn, header.op, vec![one]).await,
            Err(failed) => Err(failed),
        },
        op::MULTI => multi(conn, body).await,
        op::MULTI_READ => multi_read(conn, body),
        op::EXISTS => exists(conn, body).await,
        op::GET_DATA => get_data(conn, body).await,
        op::GET_CHILDREN | op::GET_CHILDREN2 => get_children(conn, header.op, body).await,
        op::GET_ACL => get_acl(conn, body),
        op::GET_ALL_CHILDREN_NUMBER => all_children_number(conn, body),
        op::GET_EPHEMERALS => ephemerals(conn, body).await,
        op::SYNC => sync(conn, body).await,
        op::ADD_WATCH => add_watch(conn, body),
        op::CHECK_WATCHES | op::REMOVE_WATCHES => remove_watches(conn, header.op == op::REMOVE_WATCHES, body),
        op::WHO_AM_I => who_am_i(conn),
        op::RECONFIG => clock(conn).map(|(revision, _)| Answer::err(ErrorCode::ReconfigDisabled, revision, 0)),
        // ZooKeeper answers an unknown request with Unimplemented, then closes the connection.
        _ => {
            let Ok((revision, _)) = clock(conn) else { return false };
            conn.reply(header.xid, ErrorCode::Unimplemented.code(), revision, 0, &[]).await;
            return false;
        }
    };
    let answer = match result {
        Ok(answer) => answer,
        Err(Failed::Code(code)) => match clock(conn) {
            Ok((revision, follows)) => Answer::err(code, revision, follows),
            Err(_) => return false,
        },
        Err(Failed::Close) => return false,
    };
    let xid = if matches!(header.op, op::SET_WATCHES | op::SET_WATCHES2) { xid::SET_WATCHES } else { header.xid };
    conn.reply(xid, answer.err.code(), answer.revision, answer.follows, &answer.body).await
}

/// A create request of any of the four kinds as the tree's operation.
fn create_op(code: i32, body: &[u8]) -> Result<Op, Failed> {
    let (request, ttl_ms) = if code == op::CREATE_TTL {
        let request: CreateTtlRequest = decode(body)?;
        let CreateTtlRequest { path, data, acl, flags, ttl } = request;
        (CreateRequest { path, data, acl, flags }, ttl)
    } else {
        (decode::<CreateRequest>(body)?, -1)
    };
    if code == op::CREATE_CONTAINER && CreateMode::from_flags(request.flags) != Some(CreateMode::Container) {
        return Err(Failed::Code(ErrorCode::BadArguments));
    }
    Ok(Op::Create { path: request.path, data: request.data, acl: request.acl, flags: request.flags, ttl_ms })
}

/// delete, setData, setACL or check as the tree's operation.
fn single_op(code: i32, body: &[u8]) -> Result<Op, Failed> {
    Ok(match code {
        op::DELETE => {
            let request: DeleteRequest = decode(body)?;
            Op::Delete { path: request.path, version: request.version }
        }
        op::SET_DATA => {
            let request: SetDataRequest = decode(body)?;
            Op::SetData { path: request.path, data: request.data, version: request.version }
        }
        op::SET_ACL => {
            let request: SetAclRequest = decode(body)?;
            Op::SetAcl { path: request.path, acl: request.acl, version: request.version }
        }
        _ => {
            let request: CheckVersionRequest = decode(body)?;
            Op::Check { path: request.path, version: request.version }
        }
    })
}

/// Proposes a write and waits for its result: the operations' results, or the failing one's
/// index and code.
async fn propose(conn: &Conn, ops: Vec<Op>) -> Result<(Result<Vec<Done>, (usize, ErrorCode)>, i64), Failed> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let write = Write { ops, session: conn.session, ids: conn.ids.clone(), now_ms: now_ms as i64 };
    match conn.front.handle.propose(Command::Zk(write)).await {
        Ok(answer) => match answer.value.result {
            Ok(Response::Zk(result)) => Ok((result, answer.revision)),
            Ok(_) => Err(Failed::Close),
            // The store refused the write as a whole (no space, a corrupt cluster).
            Err(error) => {
                tracing::warn!(%error, "a ZooKeeper write was refused");
                Err(Failed::Code(ErrorCode::SystemError))
            }
        },
        Err(ApiError::Mvcc(error)) => {
            tracing::warn!(%error, "a ZooKeeper write was refused");
            Err(Failed::Code(ErrorCode::SystemError))
        }
        Err(error) => {
            tracing::debug!(?error, "a ZooKeeper write got no result; closing the connection");
            Err(Failed::Close)
        }
    }
}

/// One write request (not a multi): its result as ZooKeeper answers it.
async fn write(conn: &Conn, code: i32, ops: Vec<Op>) -> Result<Answer, Failed> {
    let (result, revision) = propose(conn, ops).await?;
    let done = match result {
        Ok(mut done) => done.pop().ok_or(Failed::Close)?,
        Err((_, failed)) => {
            let (now, follows) = clock(conn)?;
            return Ok(Answer::err(failed, now, follows));
        }
    };
    let body = match (code, done) {
        (op::CREATE, Done::Created { path, .. }) => CreateResponse { path }.encode(),
        (_, Done::Created { path, stat }) => Create2Response { path, stat }.encode(),
        (_, Done::DataSet(stat) | Done::AclSet(stat)) => StatResponse { stat }.encode(),
        (_, Done::Deleted | Done::Checked) => Vec::new(),
    };
    Ok(Answer::ok(body, revision, revision))
}

/// multi: the writes as one transaction, each answered (on failure: 0 before the failing one,
/// its code, RuntimeInconsistency after; the header's error stays 0).
async fn multi(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: MultiRequest = decode(body)?;
    if request.ops.iter().any(MultiOp::is_read) {
        return Err(Failed::Code(ErrorCode::MarshallingError));
    }
    if request.ops.is_empty() {
        let (revision, follows) = clock(conn)?;
        return Ok(Answer::ok(MultiResponse::default().encode(), revision, follows));
    }
    let mut ops = Vec::with_capacity(request.ops.len());
    let mut short_create = Vec::with_capacity(request.ops.len());
    for one in &request.ops {
        let (code, bytes) = match one {
            MultiOp::Create { op, request } => (*op, request.encode()),
            MultiOp::CreateTtl(request) => (op::CREATE_TTL, request.encode()),
            MultiOp::Delete(request) => (op::DELETE, request.encode()),
            MultiOp::SetData(request) => (op::SET_DATA, request.encode()),
            MultiOp::Check(request) => (op::CHECK, request.encode()),
            MultiOp::GetChildren(_) | MultiOp::GetData(_) => unreachable!("reads were refused above"),
        };
        let built = if matches!(code, op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL) {
            create_op(code, &bytes)?
        } else {
            single_op(code, &bytes)?
        };
        // In a multi, ZooKeeper answers a plain or create2 create of a plain node with its
        // path only; containers and TTL nodes with the path and the stat.
        let plain = match &built {
            Op::Create { flags, .. } => {
                CreateMode::from_flags(*flags).is_some_and(|mode| mode != CreateMode::Container && !mode.is_ttl())
            }
            _ => false,
        };
        short_create.push(plain);
        ops.push(built);
    }
    let len = ops.len();
    let (result, revision) = propose(conn, ops).await?;
    match result {
        Ok(done) => {
            let results = done
                .into_iter()
                .zip(short_create)
                .map(|(done, plain)| match done {
                    Done::Created { path, .. } if plain => MultiResult::Create(path),
                    Done::Created { path, stat } => MultiResult::Create2(path, stat),
                    Done::Deleted => MultiResult::Delete,
                    Done::DataSet(stat) | Done::AclSet(stat) => MultiResult::SetData(stat),
                    Done::Checked => MultiResult::Check,
                })
                .collect();
            Ok(Answer::ok(MultiResponse { results }.encode(), revision, revision))
        }
        Err((at, code)) => {
            let (now, follows) = clock(conn)?;
            Ok(Answer::ok(MultiResponse::failed(len, at, code).encode(), now, follows))
        }
    }
}

/// Reads a node (and its children's names) at this member's revision.
fn read(conn: &Conn, path: &str, children: bool) -> Result<ZnodeRead, Failed> {
    let mut read = conn.front.handle.reader().znode(path, children).map_err(|_| Failed::Close)?;
    if path == "/zookeeper/config" {
        if let Some(node) = read.node.as_mut() {
            node.data = Some(super::words::config_text(&conn.front).into_bytes());
        }
    }
    Ok(read)
}

fn who(conn: &Conn) -> Identities {
    Identities { ids: conn.ids.clone() }
}

/// A node found and readable by the connection, or ZooKeeper's error (NoNode, then NoAuth).
fn readable(conn: &Conn, read: &ZnodeRead, perm: i32) -> Result<Znode, ErrorCode> {
    let node = read.node.clone().ok_or(ErrorCode::NoNode)?;
    if !acl::allows(&node.acl, perm, &who(conn)) {
        return Err(ErrorCode::NoAuth);
    }
    Ok(node)
}

/// Reads `path` and, with `watch`, sets that watch on it if `wanted` accepts what was read, with
/// no change lost between the two: the watch is only set if no tree change after the read has
/// been dispatched yet, else the read is repeated.
async fn read_and_watch(
    conn: &Conn,
    path: &str,
    children: bool,
    watch: Option<Kind>,
    wanted: impl Fn(&ZnodeRead) -> bool,
) -> Result<ZnodeRead, Failed> {
    let Some(kind) = watch else { return read(conn, path, children) };
    for _ in 0..8 {
        let read = read(conn, path, children)?;
        if !wanted(&read) {
            return Ok(read);
        }
        conn.front.watches.delivered_through(read.last_change).await;
        if conn.front.watches.register(conn.id, kind, path, read.revision) {
            return Ok(read);
        }
    }
    // The tree changes faster than this loop: set it anyway (at worst it fires for a change
    // the read already shows).
    let read = read(conn, path, children)?;
    if wanted(&read) {
        conn.front.watches.add(conn.id, kind, path);
    }
    Ok(read)
}

async fn exists(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathWatchRequest = decode(body)?;
    if request.path.contains('\0') {
        return Err(Failed::Code(ErrorCode::BadArguments));
    }
    // exists sets its watch whether or not the node is there (it then fires on creation).
    let watch = request.watch.then_some(Kind::Data);
    let read = read_and_watch(conn, &request.path, false, watch, |_| true).await?;
    Ok(match read.node {
        Some(node) => Answer::ok(StatResponse { stat: node.stat() }.encode(), read.revision, read.last_change),
        None => Answer::err(ErrorCode::NoNode, read.revision, read.last_change),
    })
}

/// getData and getChildren set no watch on NoNode or NoAuth.
fn watchable(conn: &Conn) -> impl Fn(&ZnodeRead) -> bool + '_ {
    move |read| readable(conn, read, perms::READ).is_ok()
}

async fn get_data(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathWatchRequest = decode(body)?;
    let read = read_and_watch(conn, &request.path, false, request.watch.then_some(Kind::Data), watchable(conn)).await?;
    Ok(match readable(conn, &read, perms::READ) {
        Ok(node) => {
            let stat = node.stat();
            Answer::ok(GetDataResponse { data: node.data, stat }.encode(), read.revision, read.last_change)
        }
        Err(code) => Answer::err(code, read.revision, read.last_change),
    })
}

async fn get_children(conn: &Conn, code: i32, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathWatchRequest = decode(body)?;
    let read = read_and_watch(conn, &request.path, true, request.watch.then_some(Kind::Child), watchable(conn)).await?;
    let node = match readable(conn, &read, perms::READ) {
        Ok(node) => node,
        Err(code) => return Ok(Answer::err(code, read.revision, read.last_change)),
    };
    let body = if code == op::GET_CHILDREN2 {
        Children2Response { children: read.children, stat: node.stat() }.encode()
    } else {
        ChildrenResponse { children: read.children }.encode()
    };
    Ok(Answer::ok(body, read.revision, read.last_change))
}

fn get_acl(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathRequest = decode(body)?;
    let read = read(conn, &request.path, false)?;
    let node = match readable(conn, &read, perms::READ | perms::ADMIN) {
        Ok(node) => node,
        Err(code) => return Ok(Answer::err(code, read.revision, read.last_change)),
    };
    // Without ADMIN, digest ids are shown without their hash (as ZooKeeper masks them).
    let admin = acl::allows(&node.acl, perms::ADMIN, &who(conn));
    let acl: Vec<Acl> = node
        .acl
        .iter()
        .map(|entry| match entry.id.scheme.as_str() {
            "digest" if !admin => {
                let user = entry.id.id.split(':').next().unwrap_or("");
                Acl { perms: entry.perms, id: Id { scheme: "digest".into(), id: format!("{user}:x") } }
            }
            _ => entry.clone(),
        })
        .collect();
    Ok(Answer::ok(GetAclResponse { acl, stat: node.stat() }.encode(), read.revision, read.last_change))
}

fn all_children_number(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathRequest = decode(body)?;
    let read = read(conn, &request.path, false)?;
    if let Err(code) = readable(conn, &read, perms::READ) {
        return Ok(Answer::err(code, read.revision, read.last_change));
    }
    let total = conn.front.handle.reader().znode_descendants(&request.path).map_err(|_| Failed::Close)?;
    let body = AllChildrenNumberResponse { total_number: total as i32 }.encode();
    Ok(Answer::ok(body, read.revision, read.last_change))
}

/// getEphemerals: the session's ephemeral nodes whose path starts with the prefix (as plain
/// text, as ZooKeeper compares it).
async fn ephemerals(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathRequest = decode(body)?;
    let session = conn.session;
    let keys = conn
        .front
        .handle
        .query(move |core| core.replica.store().lease(session).ok().flatten().map(|info| info.keys))
        .await
        .map_err(|_| Failed::Close)?
        .unwrap_or_default();
    let prefix = if request.path == "/" { "" } else { request.path.as_str() };
    let children: Vec<String> =
        keys.iter().filter_map(|key| path_of(key)).filter(|path| path.starts_with(prefix)).map(String::from).collect();
    let (revision, follows) = clock(conn)?;
    Ok(Answer::ok(ChildrenResponse { children }.encode(), revision, follows))
}

/// sync: a ReadIndex barrier, so that what this member serves next is at least as new as
/// what the cluster had committed when the sync arrived.
async fn sync(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: PathRequest = decode(body)?;
    conn.front.handle.barrier().await.map_err(|_| Failed::Close)?;
    let (revision, follows) = clock(conn)?;
    Ok(Answer::ok(SyncResponse { path: request.path }.encode(), revision, follows))
}

/// multiRead: each read answered on its own (no watches set).
fn multi_read(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: MultiRequest = decode(body)?;
    if request.ops.iter().any(|one| !one.is_read()) {
        return Err(Failed::Code(ErrorCode::MarshallingError));
    }
    let (mut revision, mut follows) = (0, 0);
    let mut results = Vec::with_capacity(request.ops.len());
    for one in &request.ops {
        let (path, children) = match one {
            MultiOp::GetChildren(request) => (&request.path, true),
            MultiOp::GetData(request) => (&request.path, false),
            _ => unreachable!("only reads pass the check above"),
        };
        let read = read(conn, path, children)?;
        revision = revision.max(read.revision);
        follows = follows.max(read.last_change);
        results.push(match readable(conn, &read, perms::READ) {
            Ok(_) if children => MultiResult::GetChildren(read.children.clone()),
            Ok(node) => {
                let stat = node.stat();
                MultiResult::GetData(node.data, stat)
            }
            Err(code) => MultiResult::Error(code),
        });
    }
    Ok(Answer::ok(MultiResponse { results }.encode(), revision, follows))
}

fn add_watch(conn: &Conn, body: &[u8]) -> Result<Answer, Failed> {
    let request: ballot_zk::records::AddWatchRequest = decode(body)?;
    let kind = match AddWatchMode::from_mode(request.mode) {
        Some(AddWatchMode::Persistent) => Kind::Persistent,
        Some(AddWatchMode::PersistentRecursive) => Kind::Recursive,
        None => return Err(Failed::Code(ErrorCode::MarshallingError)),
    };
    conn.front.watches.add(conn.id, kind, &request.path);
    let (revision, follows) = clock(conn)?;
    Ok(Answer::ok(ErrorResponse { err: 0 }.encode(), revision, follows))
}

fn remove_watches(conn: &Conn, remove: bool, body: &[u8]) -> Result<Answer, Failed> {
    let request: WatchesRequest = decode(body)?;
    let which = Which::of(request.watcher_type).ok_or(Failed::Code(ErrorCode::MarshallingError))?;
    let (revision, follows) = clock(conn)?;
    if conn.front.watches.find(conn.id, &request.path, which, remove) {
        Ok(Answer::ok(Vec::new(), revision, follows))
    } else {
        Ok(Answer::err(ErrorCode::NoWatcher, revision, follows))
    }
}

fn who_am_i(conn: &Conn) -> Result<Answer, Failed> {
    // ZooKeeper lists them by scheme (`digest` before `ip`).
    let mut ids: Vec<&Id> = conn.ids.iter().collect();
    ids.sort_by(|a, b| a.scheme.cmp(&b.scheme));
    let client_info = ids
        .into_iter()
        .map(|id| ClientInfo {
            auth_scheme: id.scheme.clone(),
            user: match id.scheme.as_str() {
                "digest" => id.id.split(':').next().unwrap_or("").to_string(),
                _ => id.id.clone(),
            },
        })
        .collect();
    let (revision, follows) = clock(conn)?;
    Ok(Answer::ok(WhoAmIResponse { client_info }.encode(), revision, follows))
}

/// addauth: `digest` adds the id of `user:password` (and `super` when it is the super
/// digest's); `ip` adds nothing new. Any other scheme fails and closes the connection, as in
/// ZooKeeper. Answered with xid −4 and zxid 0.
async fn auth(conn: &mut Conn, header: RequestHeader, body: &[u8]) -> bool {
    let Ok(packet) = AuthPacket::decode(body) else { return false };
    let added = match packet.scheme.as_str() {
        "digest" => {
            let text = String::from_utf8_lossy(packet.auth.as_deref().unwrap_or_default()).into_owned();
            let id = acl::digest_id(&text);
            // ZooKeeper's superDigest is the digest id of `super:<password>`.
            let is_super = conn.front.config.super_digest.as_deref() == Some(id.as_str());
            let mut ids = vec![Id { scheme: "digest".into(), id }];
            if is_super {
                ids.push(Id { scheme: "super".into(), id: String::new() });
            }
            Some(ids)
        }
        "ip" => Some(Vec::new()),
        _ => None,
    };
    for id in added.iter().flatten() {
        if !conn.ids.contains(id) {
            conn.ids.push(id.clone());
        }
    }
    let err = if added.is_some() { 0 } else { ErrorCode::AuthFailed.code() };
    let payload = ballot_zk::records::ReplyHeader { xid: header.xid, zxid: 0, err }.encode();
    conn.send(ballot_zk::frame::framed(&payload)).await && added.is_some()
}

/// setWatches / setWatches2 after a reconnect: each watch fires now if its node changed since
/// the client's last zxid (as ZooKeeper decides it), else it is set again.
async fn set_watches(conn: &mut Conn, code: i32, body: &[u8]) -> Result<Answer, Failed> {
    let request: SetWatches2 = if code == op::SET_WATCHES2 {
        decode(body)?
    } else {
        let old: ballot_zk::records::SetWatches = decode(body)?;
        SetWatches2 {
            relative_zxid: old.relative_zxid,
            data_watches: old.data_watches,
            exist_watches: old.exist_watches,
            child_watches: old.child_watches,
            ..SetWatches2::default()
        }
    };
    let since = request.relative_zxid;
    use ballot_zk::codes::EventType as E;
    // What fires at once for each kind of watch, given the node as it is now (ZooKeeper's
    // rules); a watch that does not fire is set again.
    let data = |read: &ZnodeRead| match &read.node {
        None => Some(E::NodeDeleted),
        Some(node) if node.mzxid > since => Some(E::NodeDataChanged),
        Some(_) => None,
    };
    let exist = |read: &ZnodeRead| read.node.as_ref().map(|_| E::NodeCreated);
    let child = |read: &ZnodeRead| match &read.node {
        None => Some(E::NodeDeleted),
        Some(node) if node.pzxid > since => Some(E::NodeChildrenChanged),
        Some(_) => None,
    };
    type Fires<'a> = &'a (dyn Fn(&ZnodeRead) -> Option<E> + Sync);
    let lists: [(&Vec<String>, Kind, Fires); 3] = [
        (&request.data_watches, Kind::Data, &data),
        (&request.exist_watches, Kind::Data, &exist),
        (&request.child_watches, Kind::Child, &child),
    ];
    let mut fired = Vec::new();
    for (paths, kind, fires) in lists {
        for path in paths {
            let read = read_and_watch(conn, path, false, Some(kind), |read| fires(read).is_none()).await?;
            if let Some(event) = fires(&read) {
                fired.push((event, path));
            }
        }
    }
    for path in &request.persistent_watches {
        conn.front.watches.add(conn.id, Kind::Persistent, path);
    }
    for path in &request.persistent_recursive_watches {
        conn.front.watches.add(conn.id, Kind::Recursive, path);
    }
    for (event, path) in fired {
        conn.send(notification(event, path)).await;
    }
    let (revision, follows) = clock(conn)?;
    Ok(Answer::ok(Vec::new(), revision, follows))
}

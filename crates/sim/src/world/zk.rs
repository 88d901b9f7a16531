//! ZooKeeper clients in the simulation (`SimConfig::zk_clients`), beside the key-value ones,
//! under the same faults. Each opens a session (a lease, through the log), creates ephemeral and
//! persistent sequential nodes under `/q`, deletes its own, closes its session and opens another,
//! and reads `/q`'s children from the member it is connected to, as the ZooKeeper front end does
//! (a member behind the client's last zxid refuses it, and the client moves on).
//!
//! Checked while running, on every member after each batch it applies:
//! - an ephemeral node exists only while its session's lease does;
//! - every member's tree is the same at the same zxid (a hash per revision).
//!
//! Checked on the answers: sequence numbers are unique and, in zxid order, increasing per
//! parent; a session's zxids never go back; and a read shows the client's own ephemeral nodes
//! that it knows exist (read-your-writes, across member changes).

use std::collections::{BTreeMap, BTreeSet};

use ballot_mvcc::zk::{path_of, ZNODE_PREFIX};
use ballot_mvcc::{Applied, Command, RangeRequest, Response};
use ballot_raft::{Error as RaftError, NodeId};
use ballot_zk::codes::ErrorCode;
use ballot_zk::jute::Jute;
use ballot_zk::tree::{Done, Lifetime, Op, Write, Znode};

use super::{Action, World, MS};
use crate::invariants::fnv64;
use crate::kv::RequestId;

/// A ZooKeeper client's number.
pub type ZkClientId = u64;

/// The parent every client's nodes go under.
const PARENT: &str = "/q";

/// A ZooKeeper client's request.
#[derive(Clone, Debug)]
pub enum ZkOp {
    /// Open a session with this id.
    Open(i64),
    /// Create the parent (NodeExists is fine).
    Setup,
    /// Create an ephemeral sequential node under the parent.
    CreateEphemeral,
    /// Create a persistent sequential node under the parent.
    CreatePersistent,
    /// Delete one of the client's ephemeral nodes.
    Delete(String),
    /// Close the session (its lease is revoked).
    Close(i64),
    /// Read the parent's children on the connected member.
    Read,
}

/// A member's answer to a ZooKeeper client.
#[derive(Clone, Debug)]
pub enum ZkReply {
    /// Not proposed (no leader known, or refused): try again, maybe elsewhere.
    Refused(Option<NodeId>),
    /// The member is behind the client's last zxid: connect to another.
    Behind,
    /// Applied (or read) at `revision`.
    Done {
        /// The store revision (the reply's zxid).
        revision: i64,
        /// What happened.
        result: Result<ZkDone, ErrorCode>,
    },
}

/// What a ZooKeeper request did.
#[derive(Clone, Debug)]
pub enum ZkDone {
    /// A session opened, a node deleted, a session closed, the parent created.
    Done,
    /// A node created: its path and czxid.
    Created(String, i64),
    /// The parent's children.
    Read(Vec<String>),
}

/// One ZooKeeper client.
#[derive(Debug, Default)]
pub struct ZkClient {
    /// Its open session, if any.
    session: Option<i64>,
    /// Sessions opened so far (for fresh ids).
    sessions_opened: u64,
    /// The member it talks to.
    node: NodeId,
    /// The highest zxid it has seen.
    last_zxid: i64,
    /// The request in flight.
    outstanding: Option<(RequestId, ZkOp)>,
    /// Its ephemeral nodes it knows exist.
    own: BTreeSet<String>,
    /// Requests sent.
    sequence: u64,
    /// The parent is known to exist.
    parent_made: bool,
}

/// The ZooKeeper side of the world.
#[derive(Debug, Default)]
pub struct ZkState {
    /// The clients.
    pub clients: Vec<ZkClient>,
    /// Writes proposed for a client, by request id.
    pending: BTreeMap<RequestId, ZkClientId>,
    /// Sequential names created: name → czxid.
    created: BTreeMap<String, i64>,
    /// The hash of the tree at each revision, and the member that first had it.
    tree_at: BTreeMap<i64, (NodeId, u64)>,
    /// Completed operations.
    pub completed: u64,
}

/// A ZooKeeper client's request id: a bit of its own, the client, then a counter.
fn request_id(client: ZkClientId, sequence: u64) -> RequestId {
    (1 << 62) | (client << 40) | sequence
}

impl World {
    /// Starts the ZooKeeper clients.
    pub(super) fn start_zk_clients(&mut self) {
        let ids = self.node_ids();
        for client in 0..self.config.zk_clients as u64 {
            let node = *self.rng.pick(&ids).expect("nodes exist");
            self.zk.clients.push(ZkClient { node, ..ZkClient::default() });
            let start = self.rng.range(0, 50 * MS);
            self.schedule(start, Action::ZkWake(client));
        }
    }

    /// A client picks its next request.
    pub(super) fn on_zk_wake(&mut self, client: ZkClientId) {
        let healed = self.healed;
        let roll = self.rng.range(0, 100);
        let state = &mut self.zk.clients[client as usize];
        if state.outstanding.is_some() || (healed && self.zk.completed > 0 && state.session.is_none()) {
            return;
        }
        let op = match state.session {
            None => {
                state.sessions_opened += 1;
                ZkOp::Open(((client as i64 + 1) << 32) | state.sessions_opened as i64)
            }
            Some(_) if !state.parent_made => ZkOp::Setup,
            Some(session) => match roll {
                0..30 => ZkOp::CreateEphemeral,
                30..45 => ZkOp::CreatePersistent,
                45..60 if !state.own.is_empty() => {
                    let own: Vec<&String> = state.own.iter().collect();
                    ZkOp::Delete(own[roll as usize % own.len()].clone())
                }
                60..64 => ZkOp::Close(session),
                _ => ZkOp::Read,
            },
        };
        state.sequence += 1;
        let id = request_id(client, state.sequence);
        state.outstanding = Some((id, op.clone()));
        let node = state.node;
        self.send_zk_request(node, client, id, op);
        self.schedule(super::CLIENT_TIMEOUT_NS, Action::ZkTimeout { client, request_id: id });
    }

    fn send_zk_request(&mut self, node: NodeId, client: ZkClientId, request_id: RequestId, op: ZkOp) {
        for delay in self.network.client_fates(&mut self.rng) {
            self.schedule(delay, Action::ZkRequest { node, client, request_id, op: op.clone() });
        }
    }

    fn zk_reply(&mut self, client: ZkClientId, request_id: RequestId, reply: ZkReply) {
        for delay in self.network.client_fates(&mut self.rng) {
            self.schedule(delay, Action::ZkResponse { client, request_id, reply: reply.clone() });
        }
    }

    /// The write a request proposes (`None` for a read).
    fn zk_command(&self, client: ZkClientId, op: &ZkOp) -> Option<Command> {
        let session = self.zk.clients[client as usize].session.unwrap_or(0);
        let write = |ops: Vec<Op>| {
            Some(Command::Zk(Write { ops, session, ids: Vec::new(), now_ms: self.now as i64 / MS as i64 }))
        };
        let create = |flags: i32| Op::Create {
            path: format!("{PARENT}/n-"),
            data: None,
            acl: ballot_zk::acl::open_acl(),
            flags,
            ttl_ms: -1,
        };
        match op {
            ZkOp::Open(id) => Some(Command::ZkSession { id: *id, ttl: 1_000_000, password: vec![7; 16] }),
            ZkOp::Setup => write(vec![Op::Create {
                path: PARENT.into(),
                data: None,
                acl: ballot_zk::acl::open_acl(),
                flags: 0,
                ttl_ms: -1,
            }]),
            ZkOp::CreateEphemeral => write(vec![create(3)]),
            ZkOp::CreatePersistent => write(vec![create(2)]),
            ZkOp::Delete(path) => write(vec![Op::Delete { path: path.clone(), version: -1 }]),
            ZkOp::Close(id) => Some(Command::LeaseRevoke { id: *id }),
            ZkOp::Read => None,
        }
    }

    /// A request reaches a member.
    pub(super) fn on_zk_request(&mut self, id: NodeId, client: ZkClientId, request_id: RequestId, op: ZkOp) {
        let command = self.zk_command(client, &op);
        let last_zxid = self.zk.clients[client as usize].last_zxid;
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let Some(replica) = node.replica.as_mut() else { return };
        let Some(command) = command else {
            // A read, served here unless this member is behind the client.
            let store = replica.store();
            if store.revision() < last_zxid {
                return self.zk_reply(client, request_id, ZkReply::Behind);
            }
            let read = store.reader().znode(PARENT, true);
            let reply = match read {
                Ok(read) if read.node.is_none() => {
                    ZkReply::Done { revision: read.revision, result: Err(ErrorCode::NoNode) }
                }
                Ok(read) => ZkReply::Done { revision: read.revision, result: Ok(ZkDone::Read(read.children)) },
                Err(error) => {
                    self.invariants.violations.push(format!("node {id}: a znode read failed: {error}"));
                    return;
                }
            };
            return self.zk_reply(client, request_id, reply);
        };
        match replica.propose(request_id, &command) {
            Ok(()) => {
                self.zk.pending.insert(request_id, client);
                self.drive(id);
            }
            Err(RaftError::NotLeader { leader }) => self.zk_reply(client, request_id, ZkReply::Refused(leader)),
            Err(_) => self.zk_reply(client, request_id, ZkReply::Refused(None)),
        }
    }

    /// A write a ZooKeeper client proposed was applied on the member that proposed it.
    pub(super) fn on_zk_applied(&mut self, id: NodeId, request_id: RequestId, applied: Applied) -> bool {
        let Some(client) = self.zk.pending.remove(&request_id) else { return false };
        let result = match applied.result {
            Ok(Response::Zk(Ok(mut done))) => match done.pop() {
                Some(Done::Created { path, stat }) => Ok(ZkDone::Created(path, stat.czxid)),
                _ => Ok(ZkDone::Done),
            },
            Ok(Response::Zk(Err((_, code)))) => Err(code),
            Ok(_) => Ok(ZkDone::Done),
            Err(ballot_mvcc::Error::LeaseNotFound) => Err(ErrorCode::SessionExpired),
            Err(error) => {
                self.invariants.violations.push(format!("node {id}: a ZooKeeper command failed: {error}"));
                return true;
            }
        };
        self.zk_reply(client, request_id, ZkReply::Done { revision: applied.revision, result });
        true
    }

    /// An answer reaches its client.
    pub(super) fn on_zk_response(&mut self, client: ZkClientId, request_id: RequestId, reply: ZkReply) {
        let state = &mut self.zk.clients[client as usize];
        let Some((outstanding, op)) = state.outstanding.clone() else { return };
        if outstanding != request_id {
            return;
        }
        let (revision, result) = match reply {
            ZkReply::Refused(hint) => {
                // Not proposed: send it again, to the hinted leader or another member.
                let ids = self.node_ids();
                let node = hint.unwrap_or_else(|| *self.rng.pick(&ids).expect("nodes exist"));
                self.zk.clients[client as usize].node = node;
                let backoff = self.rng.range(5, 30) * MS;
                for delay in self.network.client_fates(&mut self.rng) {
                    let action = Action::ZkRequest { node, client, request_id, op: op.clone() };
                    self.schedule(backoff + delay, action);
                }
                return;
            }
            ZkReply::Behind => {
                let ids = self.node_ids();
                let node = *self.rng.pick(&ids).expect("nodes exist");
                self.zk.clients[client as usize].node = node;
                self.zk_finish(client);
                return;
            }
            ZkReply::Done { revision, result } => (revision, result),
        };
        let state = &mut self.zk.clients[client as usize];
        if revision < state.last_zxid {
            let last = state.last_zxid;
            self.invariants
                .violations
                .push(format!("zk client {client}: zxid went back from {last} to {revision} ({op:?})"));
        }
        let state = &mut self.zk.clients[client as usize];
        state.last_zxid = state.last_zxid.max(revision);
        match (&op, result) {
            (ZkOp::Open(id), Ok(_)) => {
                state.session = Some(*id);
                state.own.clear();
            }
            (ZkOp::Setup, Ok(_) | Err(ErrorCode::NodeExists)) => state.parent_made = true,
            (ZkOp::CreateEphemeral | ZkOp::CreatePersistent, Ok(ZkDone::Created(path, czxid))) => {
                if matches!(op, ZkOp::CreateEphemeral) {
                    state.own.insert(path.clone());
                }
                if self.zk.created.insert(path.clone(), czxid).is_some() {
                    self.invariants.violations.push(format!("zk: sequential name {path} created twice"));
                }
            }
            (ZkOp::Delete(path), Ok(_) | Err(ErrorCode::NoNode)) => {
                state.own.remove(path);
            }
            (ZkOp::Close(_), _) => {
                state.session = None;
                state.own.clear();
            }
            (ZkOp::Read, Ok(ZkDone::Read(children))) => {
                let names: BTreeSet<String> = children.iter().map(|name| format!("{PARENT}/{name}")).collect();
                let missing: Vec<&String> = state.own.difference(&names).collect();
                if !missing.is_empty() {
                    self.invariants.violations.push(format!(
                        "zk client {client}: read at zxid {revision} misses its own live ephemeral nodes {missing:?}"
                    ));
                }
            }
            (_, Err(ErrorCode::SessionExpired)) => {
                state.session = None;
                state.own.clear();
            }
            (_, Err(ErrorCode::NoNode)) => state.parent_made = false,
            _ => {}
        }
        self.zk.completed += 1;
        self.zk_finish(client);
    }

    /// A request got no answer in time: its outcome is unknown.
    pub(super) fn on_zk_timeout(&mut self, client: ZkClientId, request_id: RequestId) {
        let state = &mut self.zk.clients[client as usize];
        let Some((outstanding, op)) = state.outstanding.clone() else { return };
        if outstanding != request_id {
            return;
        }
        match op {
            // Perhaps done: what the client knew is no longer certain.
            ZkOp::Delete(path) => drop(state.own.remove(&path)),
            ZkOp::Open(_) | ZkOp::Close(_) => {
                state.session = None;
                state.own.clear();
            }
            _ => {}
        }
        let ids = self.node_ids();
        self.zk.clients[client as usize].node = *self.rng.pick(&ids).expect("nodes exist");
        self.zk_finish(client);
    }

    fn zk_finish(&mut self, client: ZkClientId) {
        self.zk.clients[client as usize].outstanding = None;
        let think = self.rng.range(0, 20 * MS);
        self.schedule(think, Action::ZkWake(client));
    }

    /// The tree's invariants on member `id`'s store, after it applied a batch.
    pub(super) fn check_zk_tree(&mut self, id: NodeId) {
        let Some(replica) = self.nodes.get(&id).and_then(|node| node.replica.as_ref()) else { return };
        let store = replica.store();
        let range_end = ballot_mvcc::read::prefix_end(ZNODE_PREFIX);
        let all = RangeRequest { key: ZNODE_PREFIX.to_vec(), range_end, ..Default::default() };
        let kvs = match store.range(&all) {
            Ok(found) => found.kvs,
            Err(error) => return self.invariants.violations.push(format!("node {id}: reading the tree: {error}")),
        };
        let revision = store.revision();
        let mut hash_input = Vec::new();
        for kv in &kvs {
            hash_input.extend_from_slice(&kv.key);
            hash_input.extend_from_slice(&kv.value);
            let Some(path) = path_of(&kv.key) else { continue };
            let Ok(node) = Znode::decode(&kv.value) else {
                return self.invariants.violations.push(format!("node {id}: znode {path} does not decode"));
            };
            if let Lifetime::Ephemeral { session } = node.lifetime {
                if !matches!(store.lease(session), Ok(Some(_))) {
                    self.invariants.violations.push(format!(
                        "node {id}: ephemeral {path} outlived its session {session:x} at zxid {revision}"
                    ));
                }
            }
        }
        let hash = fnv64(&hash_input);
        match self.zk.tree_at.get(&revision) {
            Some((first, seen)) if *seen != hash => self
                .invariants
                .violations
                .push(format!("members {first} and {id} have different trees at zxid {revision}")),
            Some(_) => {}
            None => {
                self.zk.tree_at.insert(revision, (id, hash));
            }
        }
    }

    /// At the end: per parent, sequence numbers increase in zxid order.
    pub(super) fn check_zk_sequences(&mut self) {
        let mut by_czxid: Vec<(i64, &String)> = self.zk.created.iter().map(|(name, czxid)| (*czxid, name)).collect();
        by_czxid.sort();
        let mut last: Option<(u64, &String)> = None;
        for (czxid, name) in by_czxid {
            let counter: u64 = name.rsplit('-').next().and_then(|digits| digits.parse().ok()).unwrap_or(0);
            if let Some((before, previous)) = last {
                if counter <= before {
                    self.invariants
                        .violations
                        .push(format!("zk: {name} (zxid {czxid}) was numbered after {previous} but not above it"));
                    return;
                }
            }
            last = Some((counter, name));
        }
    }
}

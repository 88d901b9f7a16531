//! The znode tree in the store (see `docs/zookeeper.md`): each znode is a key under
//! [`ZNODE_PREFIX`] whose value is the encoded [`Znode`], written by ZooKeeper commands through
//! [`ballot_zk::tree`]'s logic in the command's revision, so a ZooKeeper write's zxid is the
//! store revision it gets. An ephemeral node's key is attached to its session's lease; when the
//! lease goes (expiry or close), its nodes are deleted as ZooKeeper deletes them, with their
//! parents' child counts updated, in the revoke's revision.

use ballot_zk::acl::Identities;
use ballot_zk::codes::ErrorCode;
use ballot_zk::jute::Jute;
use ballot_zk::records::Id;
use ballot_zk::tree::{self, Context, Done, Lifetime, Op, Tree, Write, Znode};

use crate::types::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest};
use crate::write::Writer;
use crate::Error;

/// Keys of znodes start with this (NUL first, so no etcd-looking key is among them).
pub const ZNODE_PREFIX: &[u8] = b"\0zk\0";

/// Keys of the ZooKeeper API's own records (not znodes): depth 0xffff, then a name. No path
/// has that depth, and [`path_of`] reads none of them as a path.
pub const ZK_META: &[u8] = b"\0zk\0\xff\xff";

/// Put in every revision that changes the tree: its mod revision is the tree's last change, so
/// a read sees in the same transaction which watch events it must not overtake.
pub fn clock_key() -> Vec<u8> {
    [ZK_META, b"clock"].concat()
}

/// The key holding a session's password, attached to the session's lease.
pub fn session_key(session: i64) -> Vec<u8> {
    [ZK_META, b"session/", &session.to_be_bytes()].concat()
}

/// The key marking a container or TTL node, so the leader's sweep reads only those.
pub fn expiring_key(path: &str) -> Vec<u8> {
    [ZK_META, b"expiring", path.as_bytes()].concat()
}

/// The session whose password key this is.
pub fn session_of(key: &[u8]) -> Option<i64> {
    let id = key.strip_prefix(ZK_META)?.strip_prefix(b"session/")?;
    Some(i64::from_be_bytes(id.try_into().ok()?))
}

/// A ZooKeeper write's answer: each operation's result, or the failing one's index and code
/// (the store then changed nothing).
pub type ZkResult = Result<Vec<Done>, (usize, ErrorCode)>;

/// The depth of a path: `/` is 0, `/a` 1, `/a/b` 2.
fn depth(path: &str) -> u16 {
    if path == "/" {
        0
    } else {
        path.matches('/').count() as u16
    }
}

/// The key of the znode at `path`: the prefix, the depth (two bytes, big-endian) and the path.
/// With the depth first, a node's children are exactly one range (see [`children_prefix`]).
pub fn znode_key(path: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(ZNODE_PREFIX.len() + 2 + path.len());
    key.extend_from_slice(ZNODE_PREFIX);
    key.extend_from_slice(&depth(path).to_be_bytes());
    key.extend_from_slice(path.as_bytes());
    key
}

/// The key prefix of every child of `path` (and of nothing else); it always ends with `/`.
pub fn children_prefix(path: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(ZNODE_PREFIX.len() + 3 + path.len());
    key.extend_from_slice(ZNODE_PREFIX);
    key.extend_from_slice(&(depth(path) + 1).to_be_bytes());
    key.extend_from_slice(path.as_bytes());
    if path != "/" {
        key.push(b'/');
    }
    key
}

/// The path of a znode's key, if it is one.
pub fn path_of(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(ZNODE_PREFIX)?;
    std::str::from_utf8(rest.get(2..)?).ok().filter(|path| path.starts_with('/'))
}

/// The tree as a write transaction sees it.
struct WriterTree<'a, 't> {
    writer: &'a Writer<'t>,
}

impl Tree for WriterTree<'_, '_> {
    fn node(&self, path: &str) -> Option<Znode> {
        // Only ZooKeeper commands write under the prefix, so a value that does not decode is not
        // expected; it reads as absent (a create then replaces it) rather than stopping apply.
        let kv = self.writer.view().get(&znode_key(path)).ok()??;
        Znode::decode(&kv.value).ok()
    }

    fn session_alive(&self, session: i64) -> bool {
        session != 0 && self.writer.lease_exists(session).unwrap_or(false)
    }
}

impl Writer<'_> {
    /// A ZooKeeper write: its operations applied as one transaction in this command's revision.
    pub fn zk(&mut self, write: &Write) -> Result<ZkResult, Error> {
        let who = Identities { ids: write.ids.clone() };
        let context = Context { who: &who, session: write.session, zxid: self.revision + 1, now_ms: write.now_ms };
        let outcome = tree::apply(&WriterTree { writer: self }, &write.ops, &context);
        if outcome.result.is_ok() {
            self.write_znodes(outcome.changes)?;
        }
        Ok(outcome.result)
    }

    /// Opens a session: its lease and, attached to it, its password.
    pub fn zk_session(&mut self, id: i64, ttl: i64, password: &[u8]) -> Result<(), Error> {
        self.lease_grant(id, ttl)?;
        let put = PutRequest { key: session_key(id), value: password.to_vec(), lease: id, ..PutRequest::default() };
        self.put(&put)?;
        Ok(())
    }

    /// Writes a transaction's znode changes, and the tree's clock.
    fn write_znodes(&mut self, changes: std::collections::BTreeMap<String, Option<Znode>>) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        self.put(&PutRequest { key: clock_key(), ..PutRequest::default() })?;
        for (path, node) in changes {
            let key = znode_key(&path);
            match node {
                Some(node) => {
                    let lease = match node.lifetime {
                        Lifetime::Ephemeral { session } => session,
                        _ => 0,
                    };
                    let created = node.czxid == self.revision + 1;
                    if created && matches!(node.lifetime, Lifetime::Container | Lifetime::Ttl { .. }) {
                        self.put(&PutRequest { key: expiring_key(&path), ..PutRequest::default() })?;
                    }
                    self.put(&PutRequest { key, value: node.encode(), lease, ..PutRequest::default() })?;
                }
                None => {
                    self.delete_range(&DeleteRangeRequest { key, ..DeleteRangeRequest::default() })?;
                    if self.view().get(&expiring_key(&path))?.is_some() {
                        let marker = DeleteRangeRequest { key: expiring_key(&path), ..DeleteRangeRequest::default() };
                        self.delete_range(&marker)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes a session's ephemeral nodes as ZooKeeper does when a session ends (whatever their
    /// ACLs), updating their parents. Part of the session's lease revoke.
    pub(crate) fn end_session(&mut self, keys: &[Vec<u8>]) -> Result<(), Error> {
        let ops: Vec<Op> = keys
            .iter()
            .filter_map(|key| path_of(key))
            .map(|path| Op::Delete { path: path.into(), version: -1 })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        let root = Identities { ids: vec![Id { scheme: "super".into(), id: String::new() }] };
        let context = Context { who: &root, session: 0, zxid: self.revision + 1, now_ms: 0 };
        match tree::apply(&WriterTree { writer: self }, &ops, &context) {
            tree::Outcome { result: Ok(_), changes } => self.write_znodes(changes),
            // Ephemeral nodes have no children and their keys come from the lease: deleting them
            // cannot fail unless the tree is damaged, and then the store must not go on.
            tree::Outcome { result: Err((at, code)), .. } => {
                Err(Error::Storage(format!("ending a session: deleting {:?} failed with {code:?}", ops[at])))
            }
        }
    }
}

/// A node as a ZooKeeper read sees it, with its children's names, at one store revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZnodeRead {
    /// The node (`None`: no such node).
    pub node: Option<Znode>,
    /// Its children's names (not paths), in key order; empty unless asked for.
    pub children: Vec<String>,
    /// The revision read at (the reply header's zxid).
    pub revision: i64,
    /// The revision of the tree's last change at or below `revision` (0: never changed): a
    /// reply to this read must not reach the client before the watch events up to it.
    pub last_change: i64,
}

/// The names of the system nodes under `path` (present before any write materialized them).
fn system_children(path: &str) -> &'static [&'static str] {
    match path {
        "/" => &["zookeeper"],
        "/zookeeper" => &["config", "quota"],
        _ => &[],
    }
}

impl crate::Reader {
    /// Reads the znode at `path` (and, with `children`, its children's names) at one revision.
    pub fn znode(&self, path: &str, children: bool) -> Result<ZnodeRead, Error> {
        let node = RangeRequest { key: znode_key(path), ..RangeRequest::default() };
        let clock = RangeRequest { key: clock_key(), keys_only: true, ..RangeRequest::default() };
        let mut success = vec![RequestOp::Range(clock), RequestOp::Range(node)];
        if children {
            let start = children_prefix(path);
            success.push(RequestOp::Range(RangeRequest {
                range_end: crate::read::prefix_end(&start),
                key: start,
                keys_only: true,
                ..RangeRequest::default()
            }));
        }
        let (response, revision) = self.read_only_txn(&TxnRequest { success, ..TxnRequest::default() })?;
        let mut ranges = response.responses.into_iter().map(|op| match op {
            ResponseOp::Range(range) => range.kvs,
            _ => Vec::new(),
        });
        let last_change = ranges.next().unwrap_or_default().first().map_or(0, |kv| kv.mod_revision);
        let node = match ranges.next().unwrap_or_default().pop() {
            Some(kv) => {
                Some(Znode::decode(&kv.value).map_err(|error| Error::Storage(format!("znode {path}: {error}")))?)
            }
            None => tree::system_node(path),
        };
        let mut names: Vec<String> = ranges
            .next()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| path_of(&kv.key))
            .filter_map(|child| child.rsplit('/').next().map(str::to_string))
            .collect();
        if node.is_some() {
            for name in system_children(path) {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(ZnodeRead { node, children: names, revision, last_change })
    }

    /// The container and TTL nodes (the candidates of the leader's sweep).
    pub fn zk_expiring(&self) -> Result<Vec<String>, Error> {
        let key = [ZK_META, b"expiring"].concat();
        let range_end = crate::read::prefix_end(&key);
        let request = RangeRequest { key: key.clone(), range_end, keys_only: true, ..RangeRequest::default() };
        let found = self.range(&request)?.0.kvs;
        Ok(found.iter().filter_map(|kv| std::str::from_utf8(&kv.key[key.len()..]).ok().map(String::from)).collect())
    }

    /// The password of a live session, at this member's revision.
    pub fn zk_session(&self, session: i64) -> Result<Option<Vec<u8>>, Error> {
        let request = RangeRequest { key: session_key(session), ..RangeRequest::default() };
        Ok(self.range(&request)?.0.kvs.pop().map(|kv| kv.value))
    }

    /// How many nodes lie below `path` (children, theirs, and so on; system nodes included),
    /// one depth at a time: a depth with none has none below it either.
    pub fn znode_descendants(&self, path: &str) -> Result<i64, Error> {
        let count = |key: Vec<u8>, range_end: Vec<u8>| -> Result<i64, Error> {
            Ok(self.range(&RangeRequest { key, range_end, count_only: true, ..RangeRequest::default() })?.0.count)
        };
        let mut prefix = children_prefix(path);
        let depth_at = ZNODE_PREFIX.len();
        let mut total = 0;
        loop {
            let found = count(prefix.clone(), crate::read::prefix_end(&prefix))?;
            if found == 0 {
                break;
            }
            total += found;
            let depth = u16::from_be_bytes([prefix[depth_at], prefix[depth_at + 1]]) + 1;
            prefix[depth_at..depth_at + 2].copy_from_slice(&depth.to_be_bytes());
        }
        // System nodes count whether or not a write has stored them yet.
        for system in &tree::SYSTEM_PATHS[1..] {
            let below =
                if path == "/" { true } else { system.strip_prefix(path).is_some_and(|rest| rest.starts_with('/')) };
            if below && count(znode_key(system), Vec::new())? == 0 {
                total += 1;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use ballot_zk::acl::open_acl;
    use ballot_zk::records::Stat;

    use super::*;
    use crate::tests::Harness;
    use crate::{Command, RangeRequest, Response};

    /// ZooKeeper's view of the shared test harness.
    trait ZkHarness {
        fn zk(&mut self, session: i64, ops: Vec<Op>) -> (ZkResult, i64);
        fn node(&self, path: &str) -> Option<Znode>;
        fn children(&self, path: &str) -> Vec<String>;
    }

    impl ZkHarness for Harness {
        fn zk(&mut self, session: i64, ops: Vec<Op>) -> (ZkResult, i64) {
            let applied = self.apply(Command::Zk(Write { ops, session, ids: vec![], now_ms: 5_000 }));
            match applied.result {
                Ok(Response::Zk(result)) => (result, applied.revision),
                other => panic!("not a ZooKeeper answer: {other:?}"),
            }
        }

        fn node(&self, path: &str) -> Option<Znode> {
            let request = RangeRequest { key: znode_key(path), ..Default::default() };
            let kv = self.store.range(&request).unwrap().kvs.pop()?;
            Some(Znode::decode(&kv.value).unwrap())
        }

        fn children(&self, path: &str) -> Vec<String> {
            let start = children_prefix(path);
            let request = RangeRequest { range_end: crate::read::prefix_end(&start), key: start, ..Default::default() };
            self.store.range(&request).unwrap().kvs.iter().map(|kv| path_of(&kv.key).unwrap().to_string()).collect()
        }
    }

    fn create(path: &str, flags: i32) -> Op {
        Op::Create { path: path.into(), data: Some(b"v".to_vec()), acl: open_acl(), flags, ttl_ms: -1 }
    }

    fn stat_of(result: &ZkResult) -> Stat {
        match result {
            Ok(done) => match &done[0] {
                Done::Created { stat, .. } | Done::DataSet(stat) => stat.clone(),
                other => panic!("no stat in {other:?}"),
            },
            Err(error) => panic!("failed: {error:?}"),
        }
    }

    #[test]
    fn a_zookeeper_write_is_one_revision_and_its_zxid_is_that_revision() {
        let mut h = Harness::new();
        let (created, revision) = h.zk(0, vec![create("/app", 0)]);
        assert_eq!(revision, 2);
        assert_eq!(stat_of(&created).czxid, 2, "zxid = the revision the write got");
        let root = h.node("/").expect("the root is written with its new child");
        assert_eq!((root.num_children, root.pzxid), (2, 2), "/zookeeper and /app");
        let (set, revision) = h.zk(0, vec![Op::SetData { path: "/app".into(), data: None, version: 0 }]);
        assert_eq!((revision, stat_of(&set).mzxid, stat_of(&set).version), (3, 3, 1));
        // A failed write changes nothing and takes no revision.
        let (failed, revision) = h.zk(0, vec![create("/app/x", 0), create("/app", 0)]);
        assert_eq!(failed, Err((1, ErrorCode::NodeExists)));
        assert_eq!(revision, 3);
        assert!(h.node("/app/x").is_none());
        h.zk(0, vec![create("/app/x", 0), create("/app/y-", 2), create("/app/x/deep", 0)]).0.unwrap();
        assert_eq!(h.children("/app"), vec!["/app/x", "/app/y-0000000001"], "children only, not /app/x/deep");
    }

    #[test]
    fn ending_a_session_deletes_its_ephemeral_nodes_and_updates_their_parents() {
        let mut h = Harness::new();
        assert!(h.apply(Command::LeaseGrant { id: 77, ttl: 10 }).result.is_ok());
        h.zk(0, vec![create("/locks", 0)]).0.unwrap();
        assert_eq!(h.zk(78, vec![create("/locks/n-", 3)]).0, Err((0, ErrorCode::SessionExpired)), "no such session");
        let (first, _) = h.zk(77, vec![create("/locks/n-", 3), create("/locks/n-", 3)]);
        assert_eq!(stat_of(&first).ephemeral_owner, 77);
        h.zk(0, vec![create("/locks/keep", 0)]).0.unwrap();
        assert_eq!(h.node("/locks").unwrap().num_children, 3);
        let revoked = h.apply(Command::LeaseRevoke { id: 77 });
        assert!(revoked.result.is_ok());
        assert_eq!(h.children("/locks"), vec!["/locks/keep"]);
        let parent = h.node("/locks").unwrap();
        assert_eq!((parent.num_children, parent.pzxid), (1, revoked.revision), "in the revoke's revision");
        assert_eq!(parent.stat().cversion, 3 * 2 - 1);
        // The parent can be emptied and deleted as usual afterwards.
        h.zk(
            0,
            vec![
                Op::Delete { path: "/locks/keep".into(), version: -1 },
                Op::Delete { path: "/locks".into(), version: -1 },
            ],
        )
        .0
        .unwrap();
    }

    #[test]
    fn reads_see_a_node_and_its_children_at_one_revision_system_nodes_included() {
        let mut h = Harness::new();
        let reader = h.store.reader();
        let root = reader.znode("/", true).unwrap();
        assert_eq!(root.children, vec!["zookeeper"]);
        assert_eq!(root.node.unwrap().stat().cversion, -1);
        assert_eq!(reader.znode("/zookeeper", true).unwrap().children, vec!["config", "quota"]);
        h.zk(0, vec![create("/a", 0), create("/a/b", 0), create("/a/b/c", 0)]).0.unwrap();
        let a = h.store.reader().znode("/a", true).unwrap();
        assert_eq!((a.children.clone(), a.revision), (vec!["b".to_string()], 2));
        assert_eq!(a.node.unwrap().num_children, 1);
        let mut root = h.store.reader().znode("/", true).unwrap().children;
        root.sort();
        assert_eq!(root, vec!["a", "zookeeper"]);
        let missing = h.store.reader().znode("/nope", true).unwrap();
        assert_eq!((missing.node, missing.children), (None, Vec::new()));
    }

    #[test]
    fn etcd_requests_neither_see_nor_touch_the_tree() {
        use crate::types::{DeleteRangeRequest, RequestOp, TxnRequest};
        use crate::watch::{WatchHub, WatchRequest};
        let mut h = Harness::new();
        let mut hub = WatchHub::new(100);
        let everything = || RangeRequest { key: b"\0".to_vec(), range_end: b"\0".to_vec(), ..Default::default() };
        let watcher = hub
            .watch(&h.store, WatchRequest { key: b"\0".to_vec(), range_end: b"\0".to_vec(), ..Default::default() })
            .unwrap();
        h.apply(Command::Put(PutRequest { key: b"\0a".to_vec(), value: b"1".to_vec(), ..Default::default() }));
        h.zk(0, vec![create("/app", 0), create("/app/x", 0)]).0.unwrap();
        h.apply(Command::Put(PutRequest { key: b"z".to_vec(), value: b"2".to_vec(), ..Default::default() }));
        let events = h.store.take_events();
        hub.notify(&h.store, &events).unwrap();
        let all = h.store.range(&everything()).unwrap();
        let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, [b"\0a".as_slice(), b"z"], "znodes are not among etcd's keys");
        assert_eq!(all.count, 2);
        let counted = h.store.range(&RangeRequest { count_only: true, ..everything() }).unwrap();
        assert_eq!(counted.count, 2, "nor in its counts");
        let limited = h.store.range(&RangeRequest { limit: 1, ..everything() }).unwrap();
        assert_eq!((limited.count, limited.more), (2, true));
        let events = hub.take(watcher).unwrap().0;
        assert_eq!(events.iter().map(|e| e.kv.key.as_slice()).collect::<Vec<_>>(), [b"\0a".as_slice(), b"z"]);
        // Deleting everything leaves the tree whole.
        let deleted = h.apply(Command::DeleteRange(DeleteRangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            ..Default::default()
        }));
        assert!(matches!(deleted.result, Ok(Response::DeleteRange(ref d)) if d.deleted == 2));
        assert!(h.node("/app/x").is_some() && h.node("/app").unwrap().num_children == 1);
        // Naming a znode key in an etcd write is refused, whatever the path to the log.
        let key = znode_key("/app");
        let put = PutRequest { key: key.clone(), value: b"junk".to_vec(), ..Default::default() };
        assert_eq!(h.apply(Command::Put(put.clone())).result.map(|_| ()), Err(Error::ReservedKey));
        let delete = DeleteRangeRequest { key: key.clone(), ..Default::default() };
        assert_eq!(h.apply(Command::DeleteRange(delete)).result.map(|_| ()), Err(Error::ReservedKey));
        let nested = TxnRequest { success: vec![RequestOp::Put(put)], ..Default::default() };
        let txn = TxnRequest { failure: vec![RequestOp::Txn(nested)], ..Default::default() };
        assert_eq!(h.apply(Command::Txn(txn)).result.map(|_| ()), Err(Error::ReservedKey));
        assert!(h.node("/app").is_some());
    }

    #[test]
    fn a_session_is_a_lease_with_its_password_and_ends_with_it() {
        let mut h = Harness::new();
        let opened = h.apply(Command::ZkSession { id: 9, ttl: 10, password: b"secret".to_vec() });
        assert!(opened.result.is_ok());
        assert_eq!(h.store.reader().zk_session(9).unwrap(), Some(b"secret".to_vec()));
        h.zk(9, vec![create("/e", 1), create("/p", 0), create("/p/q", 0)]).0.unwrap();
        let read = h.store.reader().znode("/e", false).unwrap();
        assert_eq!(read.last_change, read.revision, "the tree's clock moves with each change");
        assert_eq!(h.store.reader().znode_descendants("/").unwrap(), 6, "/e, /p, /p/q and three system nodes");
        assert_eq!(h.store.reader().znode_descendants("/p").unwrap(), 1);
        assert!(h.apply(Command::LeaseRevoke { id: 9 }).result.is_ok());
        assert_eq!(h.store.reader().zk_session(9).unwrap(), None);
        assert!(h.node("/e").is_none() && h.node("/p/q").is_some());
        assert_eq!(session_of(&session_key(9)), Some(9));
        assert_eq!(path_of(&session_key(9)), None, "not a znode");
        assert_eq!(path_of(&clock_key()), None);
    }

    #[test]
    fn containers_and_ttl_nodes_are_listed_for_the_sweep_until_deleted() {
        let mut h = Harness::new();
        let ttl = Op::Create { path: "/t".into(), data: None, acl: open_acl(), flags: 5, ttl_ms: 1000 };
        h.zk(0, vec![create("/c", 4), ttl, create("/plain", 0)]).0.unwrap();
        h.zk(0, vec![Op::SetData { path: "/c".into(), data: None, version: -1 }]).0.unwrap();
        assert_eq!(h.store.reader().zk_expiring().unwrap(), ["/c", "/t"]);
        h.zk(0, vec![Op::Delete { path: "/c".into(), version: -1 }]).0.unwrap();
        assert_eq!(h.store.reader().zk_expiring().unwrap(), ["/t"]);
    }

    #[test]
    fn keys_put_depth_first_so_children_are_one_prefix() {
        assert_eq!(znode_key("/"), b"\0zk\0\0\0/".to_vec());
        assert_eq!(znode_key("/a/b"), b"\0zk\0\0\x02/a/b".to_vec());
        assert!(znode_key("/a").starts_with(&children_prefix("/")));
        assert!(znode_key("/a/b").starts_with(&children_prefix("/a")));
        assert!(!znode_key("/a/b/c").starts_with(&children_prefix("/a")), "a grandchild is not a child");
        assert!(!znode_key("/ab").starts_with(&children_prefix("/a")));
        assert_eq!(path_of(&znode_key("/x/y")), Some("/x/y"));
        assert_eq!(path_of(b"plain"), None);
    }
}

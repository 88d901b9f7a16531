//! The znode tree's write logic: what a create, delete, setData, setACL, check or multi does to
//! the tree, with ZooKeeper's checks in ZooKeeper's order (`PrepRequestProcessor`), so the
//! same request fails with the same error. Pure and deterministic: the store hands in a view of
//! the tree ([`Tree`]), the transaction's zxid and the leader's time, and gets back the results
//! and the nodes to write or remove, all in one revision. A multi is all or nothing.

use std::collections::BTreeMap;

use crate::acl::{self, Identities};
use crate::codes::{perms, CreateMode, ErrorCode};
use crate::jute::{DecodeError, Jute, Reader, Writer};
use crate::records::{Acl, Stat};

/// Who owns a node's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until deleted.
    Persistent,
    /// Until its session ends.
    Ephemeral {
        /// The session.
        session: i64,
    },
    /// Deleted once empty after having had a child.
    Container,
    /// Deleted when it has had no child and no change for `ttl_ms`.
    Ttl {
        /// Milliseconds.
        ttl_ms: i64,
    },
}

/// A znode as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Znode {
    /// Its data (null differs from empty).
    pub data: Option<Vec<u8>>,
    /// Its ACL.
    pub acl: Vec<Acl>,
    /// Who owns its lifetime.
    pub lifetime: Lifetime,
    /// The zxid of its creation.
    pub czxid: i64,
    /// The zxid of its last data change.
    pub mzxid: i64,
    /// The zxid of its last child change.
    pub pzxid: i64,
    /// Creation time, ms since the epoch (the leader's clock).
    pub ctime: i64,
    /// Last data change time.
    pub mtime: i64,
    /// Data changes.
    pub version: i32,
    /// ACL changes.
    pub aversion: i32,
    /// Children ever created (ZooKeeper's stored cversion; sequential names count from it).
    pub children_created: i32,
    /// Children now.
    pub num_children: i32,
}

impl Znode {
    fn new(data: Option<Vec<u8>>, acl: Vec<Acl>, lifetime: Lifetime, zxid: i64, now_ms: i64) -> Znode {
        Znode {
            data,
            acl,
            lifetime,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: now_ms,
            mtime: now_ms,
            version: 0,
            aversion: 0,
            children_created: 0,
            num_children: 0,
        }
    }

    /// Its [`Stat`] as ZooKeeper reports it: the child version counts creations and deletions
    /// (twice the creations less the children left), and only ephemeral nodes show an owner.
    pub fn stat(&self) -> Stat {
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.children_created.wrapping_mul(2).wrapping_sub(self.num_children),
            aversion: self.aversion,
            ephemeral_owner: match self.lifetime {
                Lifetime::Ephemeral { session } => session,
                _ => 0,
            },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: self.num_children,
            pzxid: self.pzxid,
        }
    }
}

/// Version of [`Znode`]'s stored encoding.
const ZNODE_FORMAT: i32 = 1;

impl Jute for Znode {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let format = reader.int()?;
        if format != ZNODE_FORMAT {
            return Err(DecodeError::Invalid(format!("znode format {format} (this build reads {ZNODE_FORMAT})")));
        }
        let data = reader.buffer()?;
        let acl = reader.vector()?;
        let lifetime = match (reader.int()?, reader.long()?) {
            (0, _) => Lifetime::Persistent,
            (1, session) => Lifetime::Ephemeral { session },
            (2, _) => Lifetime::Container,
            (3, ttl_ms) => Lifetime::Ttl { ttl_ms },
            (kind, _) => return Err(DecodeError::Invalid(format!("unknown znode lifetime {kind}"))),
        };
        Ok(Znode {
            data,
            acl,
            lifetime,
            czxid: reader.long()?,
            mzxid: reader.long()?,
            pzxid: reader.long()?,
            ctime: reader.long()?,
            mtime: reader.long()?,
            version: reader.int()?,
            aversion: reader.int()?,
            children_created: reader.int()?,
            num_children: reader.int()?,
        })
    }

    fn write(&self, writer: &mut Writer) {
        writer.int(ZNODE_FORMAT);
        writer.buffer(self.data.as_deref());
        writer.vector(&self.acl);
        let (kind, value) = match self.lifetime {
            Lifetime::Persistent => (0, 0),
            Lifetime::Ephemeral { session } => (1, session),
            Lifetime::Container => (2, 0),
            Lifetime::Ttl { ttl_ms } => (3, ttl_ms),
        };
        writer.int(kind);
        writer.long(value);
        for value in [self.czxid, self.mzxid, self.pzxid, self.ctime, self.mtime] {
            writer.long(value);
        }
        for value in [self.version, self.aversion, self.children_created, self.num_children] {
            writer.int(value);
        }
    }
}

/// The nodes every tree has from the start: they cannot be deleted.
pub const SYSTEM_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// A system node as it is before any write touched it (zero zxids and times, as in ZooKeeper;
/// `/zookeeper/config` readable by anyone and nothing more).
pub fn system_node(path: &str) -> Option<Znode> {
    let (children, acl) = match path {
        "/" => (1, acl::open_acl()),
        "/zookeeper" => (2, acl::open_acl()),
        "/zookeeper/quota" => (0, acl::open_acl()),
        "/zookeeper/config" => (0, vec![Acl { perms: perms::READ, ..acl::open_acl().remove(0) }]),
        _ => return None,
    };
    let mut node = Znode::new(Some(Vec::new()), acl, Lifetime::Persistent, 0, 0);
    node.num_children = children;
    Some(node)
}

/// What the apply logic reads of the store.
pub trait Tree {
    /// The node at `path`, if there is one (system nodes included: see [`system_node`]).
    fn node(&self, path: &str) -> Option<Znode>;
    /// True while the session is alive (ephemeral nodes need one).
    fn session_alive(&self, session: i64) -> bool;
}

/// One write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// create, create2, createContainer, createTTL (`ttl_ms` −1 unless a TTL mode).
    Create {
        /// The node, or the prefix of a sequential one's name.
        path: String,
        /// Its data.
        data: Option<Vec<u8>>,
        /// Its ACL as given (fixed up when applied).
        acl: Vec<Acl>,
        /// [`CreateMode`] flags.
        flags: i32,
        /// TTL of a TTL node, else −1.
        ttl_ms: i64,
    },
    /// delete.
    Delete {
        /// The node.
        path: String,
        /// Required version, −1 for any.
        version: i32,
    },
    /// setData.
    SetData {
        /// The node.
        path: String,
        /// New data.
        data: Option<Vec<u8>>,
        /// Required version, −1 for any.
        version: i32,
    },
    /// setACL.
    SetAcl {
        /// The node.
        path: String,
        /// New ACL.
        acl: Vec<Acl>,
        /// Required ACL version, −1 for any.
        version: i32,
    },
    /// check.
    Check {
        /// The node.
        path: String,
        /// Required version, −1 for any.
        version: i32,
    },
}

impl Jute for Op {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match reader.int()? {
            1 => Op::Create {
                path: reader.ustring()?,
                data: reader.buffer()?,
                acl: reader.vector()?,
                flags: reader.int()?,
                ttl_ms: reader.long()?,
            },
            2 => Op::Delete { path: reader.ustring()?, version: reader.int()? },
            3 => Op::SetData { path: reader.ustring()?, data: reader.buffer()?, version: reader.int()? },
            4 => Op::SetAcl { path: reader.ustring()?, acl: reader.vector()?, version: reader.int()? },
            5 => Op::Check { path: reader.ustring()?, version: reader.int()? },
            tag => return Err(DecodeError::Invalid(format!("unknown znode operation {tag}"))),
        })
    }

    fn write(&self, writer: &mut Writer) {
        match self {
            Op::Create { path, data, acl, flags, ttl_ms } => {
                writer.int(1);
                writer.ustring(path);
                writer.buffer(data.as_deref());
                writer.vector(acl);
                writer.int(*flags);
                writer.long(*ttl_ms);
            }
            Op::Delete { path, version } => {
                writer.int(2);
                writer.ustring(path);
                writer.int(*version);
            }
            Op::SetData { path, data, version } => {
                writer.int(3);
                writer.ustring(path);
                writer.buffer(data.as_deref());
                writer.int(*version);
            }
            Op::SetAcl { path, acl, version } => {
                writer.int(4);
                writer.ustring(path);
                writer.vector(acl);
                writer.int(*version);
            }
            Op::Check { path, version } => {
                writer.int(5);
                writer.ustring(path);
                writer.int(*version);
            }
        }
    }
}

/// A ZooKeeper write as the log carries it: the operations (a multi, or one), and what the
/// apply logic needs that the store does not know: the caller's session and identities, and
/// the leader's wall clock when it proposed the write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Write {
    /// The operations, all or nothing.
    pub ops: Vec<Op>,
    /// The caller's session.
    pub session: i64,
    /// The caller's identities (for ACL checks and `auth` entries).
    pub ids: Vec<crate::records::Id>,
    /// ms since the epoch, from the leader's clock.
    pub now_ms: i64,
}

impl Jute for Write {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Write { ops: reader.vector()?, session: reader.long()?, ids: reader.vector()?, now_ms: reader.long()? })
    }

    fn write(&self, writer: &mut Writer) {
        writer.vector(&self.ops);
        writer.long(self.session);
        writer.vector(&self.ids);
        writer.long(self.now_ms);
    }
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Created (with the sequential counter in the name).
    Created {
        /// The node's name.
        path: String,
        /// Its metadata.
        stat: Stat,
    },
    /// Deleted.
    Deleted,
    /// Data set: the new metadata.
    DataSet(Stat),
    /// ACL set: the new metadata.
    AclSet(Stat),
    /// The version matched.
    Checked,
}

/// Who writes and when: the caller's identities and session, the transaction's zxid (the
/// revision it will get) and the leader's clock when it was proposed.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The caller's identities.
    pub who: &'a Identities,
    /// The caller's session (ephemeral nodes belong to it).
    pub session: i64,
    /// The transaction's zxid.
    pub zxid: i64,
    /// Wall-clock time, ms since the epoch, chosen by the leader.
    pub now_ms: i64,
}

/// The outcome of a transaction: its results, or the failing operation's index and code; and,
/// when it succeeded, the nodes to write (`Some`) and remove (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One per operation, or the first failure.
    pub result: Result<Vec<Done>, (usize, ErrorCode)>,
    /// The changes to make in one revision (empty if the transaction failed).
    pub changes: BTreeMap<String, Option<Znode>>,
}

/// Applies `ops` as one transaction (a multi; a single operation is a multi of one).
pub fn apply(tree: &impl Tree, ops: &[Op], context: &Context<'_>) -> Outcome {
    let mut staged = Staged { tree, changes: BTreeMap::new() };
    let mut done = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        match staged.apply(op, context) {
            Ok(one) => done.push(one),
            Err(code) => return Outcome { result: Err((index, code)), changes: BTreeMap::new() },
        }
    }
    Outcome { result: Ok(done), changes: staged.changes }
}

/// The tree with this transaction's changes so far on top.
struct Staged<'t, T: Tree> {
    tree: &'t T,
    changes: BTreeMap<String, Option<Znode>>,
}

impl<T: Tree> Staged<'_, T> {
    fn get(&self, path: &str) -> Option<Znode> {
        match self.changes.get(path) {
            Some(staged) => staged.clone(),
            None => self.tree.node(path).or_else(|| system_node(path)),
        }
    }

    fn apply(&mut self, op: &Op, cx: &Context<'_>) -> Result<Done, ErrorCode> {
        match op {
            Op::Create { path, data, acl, flags, ttl_ms } => self.create(path, data, acl, *flags, *ttl_ms, cx),
            Op::Delete { path, version } => self.delete(path, *version, cx),
            Op::SetData { path, data, version } => {
                validate_path(path)?;
                let mut node = self.get(path).ok_or(ErrorCode::NoNode)?;
                check_perm(&node, perms::WRITE, cx)?;
                check_version(node.version, *version)?;
                node.data = data.clone();
                node.version = node.version.wrapping_add(1);
                node.mzxid = cx.zxid;
                node.mtime = cx.now_ms;
                let stat = node.stat();
                self.changes.insert(path.clone(), Some(node));
                Ok(Done::DataSet(stat))
            }
            Op::SetAcl { path, acl, version } => {
                validate_path(path)?;
                let fixed = acl::fix_up(acl, cx.who)?;
                let mut node = self.get(path).ok_or(ErrorCode::NoNode)?;
                check_perm(&node, perms::ADMIN, cx)?;
                check_version(node.aversion, *version)?;
                node.acl = fixed;
                node.aversion = node.aversion.wrapping_add(1);
                let stat = node.stat();
                self.changes.insert(path.clone(), Some(node));
                Ok(Done::AclSet(stat))
            }
            Op::Check { path, version } => {
                validate_path(path)?;
                let node = self.get(path).ok_or(ErrorCode::NoNode)?;
                check_perm(&node, perms::READ, cx)?;
                check_version(node.version, *version)?;
                Ok(Done::Checked)
            }
        }
    }

    fn create(
        &mut self,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[Acl],
        flags: i32,
        ttl_ms: i64,
        cx: &Context<'_>,
    ) -> Result<Done, ErrorCode> {
        let mode = CreateMode::from_flags(flags).ok_or(ErrorCode::BadArguments)?;
        let ttl_valid = if mode.is_ttl() { ttl_ms > 0 && ttl_ms <= 0x00FF_FFFF_FFFF } else { ttl_ms < 0 };
        if !ttl_valid {
            return Err(ErrorCode::BadArguments);
        }
        if mode.is_ephemeral() && !self.tree.session_alive(cx.session) {
            return Err(ErrorCode::SessionExpired);
        }
        let parent_path = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        let acl = acl::fix_up(acl, cx.who)?;
        let mut parent = self.get(parent_path).ok_or(ErrorCode::NoNode)?;
        check_perm(&parent, perms::CREATE, cx)?;
        let path =
            if mode.is_sequential() { format!("{path}{:010}", parent.children_created) } else { path.to_string() };
        validate_path(&path)?;
        if self.get(&path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if matches!(parent.lifetime, Lifetime::Ephemeral { .. }) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let lifetime = match mode {
            _ if mode.is_ephemeral() => Lifetime::Ephemeral { session: cx.session },
            CreateMode::Container => Lifetime::Container,
            _ if mode.is_ttl() => Lifetime::Ttl { ttl_ms },
            _ => Lifetime::Persistent,
        };
        let node = Znode::new(data.clone(), acl, lifetime, cx.zxid, cx.now_ms);
        let stat = node.stat();
        parent.children_created = parent.children_created.wrapping_add(1);
        parent.num_children += 1;
        parent.pzxid = cx.zxid;
        self.changes.insert(parent_path.to_string(), Some(parent));
        self.changes.insert(path.clone(), Some(node));
        Ok(Done::Created { path, stat })
    }

    fn delete(&mut self, path: &str, version: i32, cx: &Context<'_>) -> Result<Done, ErrorCode> {
        if SYSTEM_PATHS.contains(&path) {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        let mut parent = self.get(parent_path).ok_or(ErrorCode::NoNode)?;
        check_perm(&parent, perms::DELETE, cx)?;
        let node = self.get(path).ok_or(ErrorCode::NoNode)?;
        check_version(node.version, version)?;
        if node.num_children > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        parent.num_children -= 1;
        parent.pzxid = parent.pzxid.max(cx.zxid);
        self.changes.insert(parent_path.to_string(), Some(parent));
        self.changes.insert(path.to_string(), None);
        Ok(Done::Deleted)
    }
}

fn check_perm(node: &Znode, perm: i32, cx: &Context<'_>) -> Result<(), ErrorCode> {
    if acl::allows(&node.acl, perm, cx.who) {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth)
    }
}

fn check_version(current: i32, expected: i32) -> Result<(), ErrorCode> {
    if expected == -1 || expected == current {
        Ok(())
    } else {
        Err(ErrorCode::BadVersion)
    }
}

/// The parent of `path` as ZooKeeper derives it before any other check: everything before the
/// last `/` (`/` itself for a top-level node); `None` (BadArguments) without a `/` or with a
/// NUL.
pub fn parent_of(path: &str) -> Option<&str> {
    if path.contains('\0') {
        return None;
    }
    match path.rfind('/')? {
        0 => Some("/"),
        at => Some(&path[..at]),
    }
}

/// ZooKeeper's path rules (`PathUtils.validatePath`): absolute, no empty or relative (`.`,
/// `..`) component, no trailing `/` but on the root, and none of the characters it forbids
/// (controls, surrogates and private use, U+FFF0 and up, anything past the Basic Multilingual
/// Plane, which Java holds as surrogates).
pub fn validate_path(path: &str) -> Result<(), ErrorCode> {
    if !path.starts_with('/') {
        return Err(ErrorCode::BadArguments);
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(ErrorCode::BadArguments);
    }
    for component in path[1..].split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(ErrorCode::BadArguments);
        }
    }
    let forbidden = |c: char| {
        matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
            || c > '\u{ffff}'
    };
    if path.chars().any(forbidden) {
        return Err(ErrorCode::BadArguments);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::records::Id;

    /// An in-memory tree: what the store's view looks like to the logic.
    #[derive(Default)]
    struct Memory {
        nodes: BTreeMap<String, Znode>,
        sessions: BTreeSet<i64>,
        zxid: i64,
    }

    impl Tree for Memory {
        fn node(&self, path: &str) -> Option<Znode> {
            self.nodes.get(path).cloned()
        }
        fn session_alive(&self, session: i64) -> bool {
            self.sessions.contains(&session)
        }
    }

    impl Memory {
        fn run(&mut self, who: &Identities, ops: &[Op]) -> Result<Vec<Done>, (usize, ErrorCode)> {
            self.zxid += 1;
            let context = Context { who, session: 7, zxid: self.zxid, now_ms: 1_000 * self.zxid };
            let outcome = apply(self, ops, &context);
            for (path, node) in outcome.changes {
                match node {
                    Some(node) => drop(self.nodes.insert(path, node)),
                    None => drop(self.nodes.remove(&path)),
                }
            }
            outcome.result
        }

        fn one(&mut self, op: Op) -> Result<Done, ErrorCode> {
            self.run(&Identities::default(), &[op]).map(|mut done| done.remove(0)).map_err(|(_, code)| code)
        }
    }

    fn create(path: &str, flags: i32) -> Op {
        Op::Create { path: path.into(), data: Some(b"d".to_vec()), acl: acl::open_acl(), flags, ttl_ms: -1 }
    }

    fn created_path(done: Result<Done, ErrorCode>) -> String {
        match done {
            Ok(Done::Created { path, .. }) => path,
            other => panic!("not created: {other:?}"),
        }
    }

    #[test]
    fn sequential_names_count_every_child_ever_created() {
        let mut tree = Memory::default();
        tree.one(create("/lock", 0)).unwrap();
        assert_eq!(created_path(tree.one(create("/lock/n-", 2))), "/lock/n-0000000000");
        tree.one(create("/lock/plain", 0)).unwrap();
        assert_eq!(created_path(tree.one(create("/lock/n-", 2))), "/lock/n-0000000002");
        tree.one(Op::Delete { path: "/lock/plain".into(), version: -1 }).unwrap();
        assert_eq!(created_path(tree.one(create("/lock/n-", 2))), "/lock/n-0000000003", "deletes do not reuse numbers");
        let stat = tree.nodes["/lock"].stat();
        assert_eq!((stat.num_children, stat.cversion), (3, 4 * 2 - 3), "four creations, one deletion");
    }

    #[test]
    fn the_root_reports_as_a_fresh_zookeeper_does() {
        let root = system_node("/").unwrap().stat();
        assert_eq!((root.cversion, root.num_children, root.czxid), (-1, 1, 0));
        assert_eq!(system_node("/zookeeper").unwrap().stat().cversion, -2);
    }

    #[test]
    fn creates_fail_in_zookeepers_order() {
        let mut tree = Memory::default();
        assert_eq!(tree.one(create("/a/b", 0)), Err(ErrorCode::NoNode));
        assert_eq!(tree.one(create("/a", 9)), Err(ErrorCode::BadArguments), "unknown flags");
        assert_eq!(tree.one(create("a", 0)), Err(ErrorCode::BadArguments), "relative");
        assert_eq!(tree.one(create("/a/", 0)), Err(ErrorCode::NoNode), "the parent /a is missing first");
        tree.one(create("/a", 0)).unwrap();
        assert_eq!(tree.one(create("/a", 0)), Err(ErrorCode::NodeExists));
        assert_eq!(tree.one(create("/a/", 0)), Err(ErrorCode::BadArguments), "trailing slash");
        assert_eq!(tree.one(create("/a/.", 0)), Err(ErrorCode::BadArguments));
        assert_eq!(tree.one(create("/a/./b", 0)), Err(ErrorCode::NoNode), "its parent /a/. is looked up first");
        assert_eq!(tree.one(create("/a/x\u{1}", 0)), Err(ErrorCode::BadArguments));
        assert_eq!(tree.one(create("/a/😀", 0)), Err(ErrorCode::BadArguments), "outside the BMP");
        assert_eq!(tree.one(create("/e", 1)), Err(ErrorCode::SessionExpired), "no live session");
        tree.sessions.insert(7);
        tree.one(create("/e", 1)).unwrap();
        assert_eq!(tree.nodes["/e"].stat().ephemeral_owner, 7);
        assert_eq!(tree.one(create("/e/child", 0)), Err(ErrorCode::NoChildrenForEphemerals));
        let ttl = |ttl_ms| Op::Create { path: "/t".into(), data: None, acl: acl::open_acl(), flags: 5, ttl_ms };
        assert_eq!(tree.one(ttl(0)), Err(ErrorCode::BadArguments));
        let persistent_with_ttl =
            Op::Create { path: "/p".into(), data: None, acl: acl::open_acl(), flags: 0, ttl_ms: 5 };
        assert_eq!(tree.one(persistent_with_ttl), Err(ErrorCode::BadArguments));
        tree.one(ttl(60_000)).unwrap();
        assert_eq!(tree.nodes["/t"].stat().ephemeral_owner, 0, "TTL nodes show no owner");
        assert_eq!(tree.nodes["/t"].data, None, "null data stays null");
    }

    #[test]
    fn deletes_and_versions() {
        let mut tree = Memory::default();
        tree.one(create("/a", 0)).unwrap();
        tree.one(create("/a/b", 0)).unwrap();
        assert_eq!(tree.one(Op::Delete { path: "/a".into(), version: -1 }), Err(ErrorCode::NotEmpty));
        assert_eq!(tree.one(Op::Delete { path: "/a/c".into(), version: -1 }), Err(ErrorCode::NoNode));
        assert_eq!(tree.one(Op::Delete { path: "/zookeeper".into(), version: -1 }), Err(ErrorCode::BadArguments));
        let set = |version| Op::SetData { path: "/a/b".into(), data: Some(b"2".to_vec()), version };
        assert_eq!(tree.one(set(3)), Err(ErrorCode::BadVersion));
        let Ok(Done::DataSet(stat)) = tree.one(set(0)) else { panic!("set") };
        // Every transaction takes a zxid here, failed ones too: the set is the 7th.
        assert_eq!((stat.version, stat.mzxid, stat.czxid, stat.data_length), (1, 7, 2, 1));
        assert_eq!(tree.one(Op::Delete { path: "/a/b".into(), version: 0 }), Err(ErrorCode::BadVersion));
        tree.one(Op::Delete { path: "/a/b".into(), version: 1 }).unwrap();
        let a = tree.nodes["/a"].stat();
        assert_eq!((a.num_children, a.pzxid, a.mzxid), (0, 9, 1), "a child's deletion moves pzxid, not mzxid");
    }

    #[test]
    fn acls_are_enforced_on_the_parent_or_the_node_as_zookeeper_does() {
        let mut tree = Memory::default();
        let bob = Identities { ids: vec![Id { scheme: "digest".into(), id: acl::digest_id("bob:secret") }] };
        let mine = vec![Acl { perms: perms::ALL, id: Id { scheme: "auth".into(), id: String::new() } }];
        let op = Op::Create { path: "/private".into(), data: None, acl: mine.clone(), flags: 0, ttl_ms: -1 };
        assert_eq!(tree.run(&Identities::default(), std::slice::from_ref(&op)), Err((0, ErrorCode::InvalidAcl)));
        tree.run(&bob, &[op]).unwrap();
        assert_eq!(tree.nodes["/private"].acl[0].id.id, acl::digest_id("bob:secret"));
        let anyone = Identities::default();
        assert_eq!(tree.run(&anyone, &[create("/private/x", 0)]), Err((0, ErrorCode::NoAuth)));
        assert_eq!(
            tree.run(&anyone, &[Op::SetData { path: "/private".into(), data: None, version: -1 }]),
            Err((0, ErrorCode::NoAuth))
        );
        tree.run(&bob, &[create("/private/x", 0)]).unwrap();
        assert_eq!(
            tree.run(&anyone, &[Op::Delete { path: "/private/x".into(), version: -1 }]),
            Err((0, ErrorCode::NoAuth))
        );
        let set_acl = Op::SetAcl { path: "/private".into(), acl: acl::open_acl(), version: 0 };
        assert_eq!(tree.run(&anyone, std::slice::from_ref(&set_acl)), Err((0, ErrorCode::NoAuth)));
        let Ok(done) = tree.run(&bob, std::slice::from_ref(&set_acl)) else { panic!("setACL") };
        assert!(matches!(&done[0], Done::AclSet(stat) if stat.aversion == 1));
        assert_eq!(tree.run(&bob, &[set_acl]), Err((0, ErrorCode::BadVersion)));
    }

    #[test]
    fn a_multi_is_all_or_nothing_and_later_operations_see_earlier_ones() {
        let mut tree = Memory::default();
        let ops = [create("/m", 0), create("/m/a", 0), Op::Check { path: "/m/a".into(), version: 0 }];
        assert_eq!(tree.run(&Identities::default(), &ops).unwrap().len(), 3);
        let failing = [create("/n", 0), Op::SetData { path: "/m/a".into(), data: None, version: 5 }, create("/n/b", 0)];
        assert_eq!(tree.run(&Identities::default(), &failing), Err((1, ErrorCode::BadVersion)));
        assert!(!tree.nodes.contains_key("/n"), "nothing of a failed multi is applied");
        assert_eq!(tree.nodes["/m/a"].version, 0);
    }

    #[test]
    fn a_znode_round_trips_through_its_stored_encoding() {
        let mut node = Znode::new(None, acl::open_acl(), Lifetime::Ttl { ttl_ms: 5 }, 3, 4);
        node.num_children = 2;
        assert_eq!(Znode::decode(&node.encode()).unwrap(), node);
        node.lifetime = Lifetime::Ephemeral { session: -9 };
        node.data = Some(Vec::new());
        assert_eq!(Znode::decode(&node.encode()).unwrap(), node);
        let mut other_format = node.encode();
        other_format[3] = 9;
        assert!(Znode::decode(&other_format).is_err());
    }

    #[test]
    fn a_write_round_trips_as_the_log_carries_it() {
        let write = Write {
            ops: vec![
                create("/a", 3),
                Op::Delete { path: "/b".into(), version: 2 },
                Op::SetData { path: "/c".into(), data: None, version: -1 },
                Op::SetAcl { path: "/d".into(), acl: acl::open_acl(), version: 0 },
                Op::Check { path: "/e".into(), version: 1 },
            ],
            session: 42,
            ids: vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }],
            now_ms: 1_700_000_000_000,
        };
        assert_eq!(Write::decode(&write.encode()).unwrap(), write);
        let mut unknown = write.encode();
        unknown[7] = 9;
        assert!(Write::decode(&unknown).is_err());
    }

    #[test]
    fn paths_follow_zookeepers_rules() {
        for good in ["/", "/a", "/a/b.c", "/a/...", "/ü", "/a/-0000000001"] {
            assert_eq!(validate_path(good), Ok(()), "{good}");
        }
        for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/a/..", "/a/.", "/\u{0}", "/\u{7f}", "/\u{e000}", "/\u{fff0}"]
        {
            assert_eq!(validate_path(bad), Err(ErrorCode::BadArguments), "{bad:?}");
        }
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("a"), None);
    }
}

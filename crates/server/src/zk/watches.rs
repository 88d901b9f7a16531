//! The member's ZooKeeper watches: which connection watches which path and how, fed by one
//! hub watcher over the whole tree.
//!
//! A change to the tree is a revision of znode keys. Its events are translated to ZooKeeper's
//! (a new key is NodeCreated and its parent's NodeChildrenChanged, a removed key NodeDeleted
//! and the parent's NodeChildrenChanged, a stored data change NodeDataChanged) and sent to the
//! watching connections' queues. The table then records the revision as delivered: a reply
//! that shows the tree at or after a change waits for that (see `connection`), so a client
//! always sees an event before data newer than it, as ZooKeeper promises.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballot_mvcc::zk::{path_of, session_of, ZNODE_PREFIX};
use ballot_mvcc::{EventKind, WatchRequest};
use ballot_zk::codes::{EventType, STATE_SYNC_CONNECTED};
use ballot_zk::frame::framed;
use ballot_zk::jute::Jute;
use ballot_zk::records::{ReplyHeader, WatcherEvent};
use ballot_zk::tree::{parent_of, Znode};
use tokio::sync::{mpsc, oneshot};

use super::{ConnId, Front, Out};
use crate::driver::Input;

/// How a connection watches a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// getData or exists: one-shot, fires on create, delete and data change.
    Data,
    /// getChildren: one-shot, fires on the node's delete and its children's changes.
    Child,
    /// addWatch PERSISTENT: what a data and a child watch fire, and stays.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE: creates, deletes and data changes of the node and every
    /// node below it, and stays.
    Recursive,
}

/// Which watches removeWatches and checkWatches name (ZooKeeper's WatcherType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Children (1).
    Children,
    /// Data (2).
    Data,
    /// Any (3).
    Any,
}

impl Which {
    /// The wire value, if valid.
    pub fn of(value: i32) -> Option<Which> {
        match value {
            1 => Some(Which::Children),
            2 => Some(Which::Data),
            3 => Some(Which::Any),
            _ => None,
        }
    }

    fn covers(self, kind: Kind) -> bool {
        match self {
            Which::Any => true,
            Which::Children => kind != Kind::Data,
            Which::Data => kind != Kind::Child,
        }
    }
}

#[derive(Default)]
struct Paths {
    by_kind: HashMap<(Kind, String), HashSet<ConnId>>,
    /// The revision of the last tree change dispatched (under the same lock as the watches,
    /// so a watch is set either before a change is dispatched or knowingly after).
    through: i64,
}

/// The watch table and how far events have been handed to connections.
pub struct Table {
    paths: Mutex<Paths>,
    delivered: tokio::sync::watch::Sender<i64>,
}

impl Default for Table {
    fn default() -> Table {
        Table { paths: Mutex::default(), delivered: tokio::sync::watch::channel(0).0 }
    }
}

/// All the kinds, for scans.
const KINDS: [Kind; 4] = [Kind::Data, Kind::Child, Kind::Persistent, Kind::Recursive];

impl Table {
    fn paths(&self) -> std::sync::MutexGuard<'_, Paths> {
        self.paths.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a watch.
    pub fn add(&self, conn: ConnId, kind: Kind, path: &str) {
        self.paths().by_kind.entry((kind, path.to_string())).or_default().insert(conn);
    }

    /// Sets a watch for a node read at `read_revision`, unless a tree change after that
    /// revision was dispatched already (it would be missed): false then, and the caller
    /// reads again.
    pub fn register(&self, conn: ConnId, kind: Kind, path: &str, read_revision: i64) -> bool {
        let mut paths = self.paths();
        if paths.through > read_revision {
            return false;
        }
        paths.by_kind.entry((kind, path.to_string())).or_default().insert(conn);
        true
    }

    /// Records that the tree's changes up to `revision` are dispatched.
    fn advance(&self, revision: i64) {
        let mut paths = self.paths();
        paths.through = paths.through.max(revision);
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&self, conn: ConnId) {
        self.paths().by_kind.retain(|_, conns| {
            conns.remove(&conn);
            !conns.is_empty()
        });
    }

    /// True if `conn` has a watch on `path` that `which` names; with `remove`, removes them.
    pub fn find(&self, conn: ConnId, path: &str, which: Which, remove: bool) -> bool {
        let mut paths = self.paths();
        let mut found = false;
        for kind in KINDS.into_iter().filter(|kind| which.covers(*kind)) {
            let key = (kind, path.to_string());
            if let Some(conns) = paths.by_kind.get_mut(&key) {
                if (remove && conns.remove(&conn)) || (!remove && conns.contains(&conn)) {
                    found = true;
                }
                if conns.is_empty() {
                    paths.by_kind.remove(&key);
                }
            }
        }
        found
    }

    /// For `wchs`: connections with a data or child watch, paths watched, watches.
    pub fn summary(&self) -> (usize, usize, usize) {
        let paths = self.paths();
        let conns: HashSet<ConnId> = paths.by_kind.values().flatten().copied().collect();
        let distinct: HashSet<&String> = paths.by_kind.keys().map(|(_, path)| path).collect();
        (conns.len(), distinct.len(), paths.by_kind.values().map(HashSet::len).sum())
    }

    /// The paths `conn` watches, per kind (for `wchc`-like listings and tests).
    pub fn of_conn(&self, conn: ConnId) -> Vec<(Kind, String)> {
        let paths = self.paths();
        let mut out: Vec<(Kind, String)> = paths
            .by_kind
            .iter()
            .filter(|(_, conns)| conns.contains(&conn))
            .map(|((kind, path), _)| (*kind, path.clone()))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// Waits until the events of every tree change up to `revision` are in their connections'
    /// queues (bounded: a stuck dispatcher must not stop replies for long).
    pub async fn delivered_through(&self, revision: i64) {
        if *self.delivered.borrow() >= revision {
            return;
        }
        let mut delivered = self.delivered.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), delivered.wait_for(|through| *through >= revision)).await;
    }

    /// The connections a ZooKeeper event goes to, removing the one-shot watches it fires.
    fn fire(&self, event: EventType, path: &str) -> HashSet<ConnId> {
        let mut paths = self.paths();
        let mut to = HashSet::new();
        let mut take = |kind: Kind, path: &str, once: bool| {
            let key = (kind, path.to_string());
            if once {
                if let Some(conns) = paths.by_kind.remove(&key) {
                    to.extend(conns);
                }
            } else if let Some(conns) = paths.by_kind.get(&key) {
                to.extend(conns.iter().copied());
            }
        };
        match event {
            EventType::NodeCreated | EventType::NodeDataChanged => take(Kind::Data, path, true),
            EventType::NodeDeleted => {
                take(Kind::Data, path, true);
                take(Kind::Child, path, true);
            }
            EventType::NodeChildrenChanged => take(Kind::Child, path, true),
            EventType::None => {}
        }
        take(Kind::Persistent, path, false);
        if event != EventType::NodeChildrenChanged {
            for ancestor in ancestors(path) {
                take(Kind::Recursive, ancestor, false);
            }
        }
        to
    }
}

/// `path` and every node above it, up to `/`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |path| parent(path))
}

/// The parent of a node (`None` for `/`, which [`parent_of`] answers with itself).
fn parent(path: &str) -> Option<&str> {
    parent_of(path).filter(|_| path != "/")
}

/// A notification frame: reply header (−1, −1, 0), then the event with state SyncConnected.
pub fn notification(event: EventType, path: &str) -> Vec<u8> {
    let mut payload = ReplyHeader { xid: -1, zxid: -1, err: 0 }.encode();
    payload.extend(WatcherEvent { event_type: event as i32, state: STATE_SYNC_CONNECTED, path: path.into() }.encode());
    framed(&payload)
}

/// What one store event means to ZooKeeper clients.
enum Change {
    /// ZooKeeper events, in order.
    Events(Vec<(EventType, String)>),
    /// A session ended (its password key went with its lease).
    SessionEnded(i64),
    /// Nothing to tell (a parent's bookkeeping, the tree's clock).
    Nothing,
}

fn translate(event: &ballot_mvcc::Event) -> Change {
    let key = event.kv.key.as_slice();
    let Some(path) = path_of(key) else {
        return match (event.kind, session_of(key)) {
            (EventKind::Delete, Some(session)) => Change::SessionEnded(session),
            _ => Change::Nothing,
        };
    };
    let parent_changed = parent(path).map(|parent| (EventType::NodeChildrenChanged, parent.to_string()));
    match event.kind {
        EventKind::Delete => {
            Change::Events([(EventType::NodeDeleted, path.to_string())].into_iter().chain(parent_changed).collect())
        }
        EventKind::Put if event.kv.create_revision == event.kv.mod_revision => {
            Change::Events([(EventType::NodeCreated, path.to_string())].into_iter().chain(parent_changed).collect())
        }
        EventKind::Put => match Znode::decode(&event.kv.value) {
            Ok(node) if node.mzxid == event.kv.mod_revision => {
                Change::Events(vec![(EventType::NodeDataChanged, path.to_string())])
            }
            _ => Change::Nothing,
        },
    }
}

/// Feeds the watch table from the hub for as long as the member runs: one watcher over the
/// tree. If the hub ends it (its history was compacted before it caught up), events were lost:
/// every connection is closed, so clients reconnect and set their watches again.
pub async fn dispatch(front: Arc<Front>) {
    loop {
        let (tx, mut rx) = mpsc::channel(1024);
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = WatchRequest {
            key: ZNODE_PREFIX.to_vec(),
            range_end: crate::api::prefix_end(ZNODE_PREFIX),
            ..WatchRequest::default()
        };
        if front.handle.send(Input::Watch(request, tx, reply_tx)).is_err() {
            return;
        }
        let Ok(Ok((_, revision))) = reply_rx.await else { return };
        front.watches.advance(revision);
        front.watches.delivered.send_modify(|through| *through = (*through).max(revision));
        while let Some(out) = rx.recv().await {
            let mut through = 0;
            for event in &out.events {
                through = through.max(event.kv.mod_revision);
                // Before firing: a watch set from now on knows it may have missed this change.
                front.watches.advance(event.kv.mod_revision);
                match translate(event) {
                    Change::Events(events) => {
                        for (kind, path) in events {
                            let to = front.watches.fire(kind, &path);
                            if to.is_empty() {
                                continue;
                            }
                            let frame = notification(kind, &path);
                            let connections = front.connections();
                            for conn in to {
                                if let Some(entry) = connections.get(&conn) {
                                    // A connection that cannot take its events is closed
                                    // rather than given a gap; the client reconnects.
                                    if entry.out.try_send(Out::Frame(frame.clone())).is_err() {
                                        let _ = entry.out.try_send(Out::Close);
                                    }
                                }
                            }
                        }
                    }
                    Change::SessionEnded(session) => front.close_session(session, None),
                    Change::Nothing => {}
                }
            }
            front.watches.delivered.send_modify(|delivered| *delivered = (*delivered).max(through));
            if out.cancelled.is_some() {
                tracing::warn!("ZooKeeper watches fell behind a compaction; closing client connections");
                front.close_all();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_watches_fire_once_and_persistent_ones_stay() {
        let table = Table::default();
        table.add(1, Kind::Data, "/a");
        table.add(2, Kind::Child, "/");
        table.add(3, Kind::Persistent, "/a");
        table.add(4, Kind::Recursive, "/");
        assert_eq!(table.fire(EventType::NodeCreated, "/a"), HashSet::from([1, 3, 4]));
        assert_eq!(table.fire(EventType::NodeChildrenChanged, "/"), HashSet::from([2]), "recursive skips it");
        assert_eq!(table.fire(EventType::NodeDataChanged, "/a"), HashSet::from([3, 4]), "1 and 2 fired already");
        table.add(1, Kind::Data, "/a");
        table.add(1, Kind::Child, "/a");
        assert_eq!(table.fire(EventType::NodeDeleted, "/a"), HashSet::from([1, 3, 4]), "one event per connection");
        assert!(table.find(3, "/a", Which::Children, false));
        assert!(!table.find(3, "/a", Which::Data, false) || table.find(3, "/a", Which::Data, true));
        assert!(!table.find(1, "/a", Which::Any, false));
        table.remove_conn(4);
        assert!(table.fire(EventType::NodeCreated, "/b").is_empty());
        assert_eq!(ancestors("/a/b").collect::<Vec<_>>(), ["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/").collect::<Vec<_>>(), ["/"]);
    }

    #[test]
    fn a_notification_is_zookeepers_frame() {
        let frame = notification(EventType::NodeDeleted, "/x");
        assert_eq!(&frame[..4], &(16 + 4 + 4 + 4 + 2i32).to_be_bytes());
        assert_eq!(&frame[4..20], ReplyHeader { xid: -1, zxid: -1, err: 0 }.encode().as_slice());
    }
}

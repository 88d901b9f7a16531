//! The watch hub: a member's watchers (local state, not replicated), fed by the events each
//! applied batch produces, and caught up from the stored history when they start in the past or
//! fall behind.
//!
//! A watcher is either *synced* (it has every event up to the store's revision; new events are
//! appended to its buffer as they are applied) or *unsynced* (it needs history from
//! `next_revision` on, read from storage in bounded steps by [`WatchHub::catch_up`]). A synced
//! watcher whose buffer would pass `events_buffered_max` becomes unsynced instead of growing: a
//! slow consumer never blocks applying and never costs unbounded memory. Watchers on the same key
//! or range are grouped, so a put costs one check per distinct watched range, not per watcher.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use redb::ReadableDatabase;

use crate::codec::{main_of, revision_key, Record};
use crate::read::Keys;
use crate::store::Store;
use crate::tables;
use crate::types::KeyValue;
use crate::{storage_error, Error};

/// A watched key or range as `[start, end)`, `end` `None` for no end: watchers of the same
/// group are checked together.
type Group = (Vec<u8>, Option<Vec<u8>>);

/// Identifies a watcher on this member.
pub type WatchId = i64;

/// A change, as etcd's `mvccpb.Event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key's state after the change (for a delete: the key and the deletion's revision).
    pub kv: KeyValue,
    /// The state before, when the watcher asked for it and there was one.
    pub prev_kv: Option<KeyValue>,
}

/// What happened to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// etcd's WatchCreateRequest (the parts the hub needs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// Key.
    pub key: Vec<u8>,
    /// Range end, as for ranges.
    pub range_end: Vec<u8>,
    /// First revision to deliver (0: only changes after now).
    pub start_revision: i64,
    /// Attach the previous key-value to each event.
    pub prev_kv: bool,
    /// Skip puts.
    pub no_put: bool,
    /// Skip deletes.
    pub no_delete: bool,
}

/// Why a watcher ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Its next revision was compacted away before it caught up (etcd reports the compact
    /// revision so the client can restart from there).
    Compacted {
        /// The store's compact revision.
        compact_revision: i64,
    },
}

#[derive(Debug)]
struct Watcher {
    keys: Keys,
    group: Group,
    request: WatchRequest,
    /// Events ready for the consumer, in revision order.
    buffer: VecDeque<Event>,
    /// Unsynced: history from here on is still to be read. Synced: the first revision it may
    /// be given (a watcher started ahead of the store skips what is applied before it).
    next_revision: i64,
    synced: bool,
    cancelled: Option<Cancelled>,
}

/// Every watcher of one member.
#[derive(Debug)]
pub struct WatchHub {
    watchers: BTreeMap<WatchId, Watcher>,
    /// Synced watchers by watched key or range (end `None`: to infinity).
    groups: BTreeMap<Group, BTreeSet<WatchId>>,
    unsynced: BTreeSet<WatchId>,
    next_id: WatchId,
    events_buffered_max: usize,
    /// The store revision up to which synced watchers have been notified.
    notified_through: i64,
}

fn group_of(keys: &Keys) -> Group {
    match keys {
        Keys::One(key) => (key.clone(), Some(key.iter().copied().chain([0]).collect())),
        Keys::Span(start, end) => (start.clone(), end.clone()),
        Keys::Nothing => (Vec::new(), Some(Vec::new())),
    }
}

impl WatchHub {
    /// A hub whose watchers buffer at most `events_buffered_max` events each.
    pub fn new(events_buffered_max: usize) -> WatchHub {
        WatchHub {
            watchers: BTreeMap::new(),
            groups: BTreeMap::new(),
            unsynced: BTreeSet::new(),
            next_id: 1,
            events_buffered_max: events_buffered_max.max(1),
            notified_through: 0,
        }
    }

    /// Starts a watcher. A start revision in the past is served from history first.
    pub fn watch(&mut self, store: &Store, request: WatchRequest) -> Result<WatchId, Error> {
        if request.start_revision > 0 && request.start_revision < store.compact_revision() {
            return Err(Error::Compacted);
        }
        let keys = Keys::of(&request.key, &request.range_end);
        let next_revision = if request.start_revision <= 0 { store.revision() + 1 } else { request.start_revision };
        let id = self.next_id;
        self.next_id += 1;
        let group = group_of(&keys);
        let synced = next_revision > store.revision();
        let watcher = Watcher {
            keys,
            group: group.clone(),
            request,
            buffer: VecDeque::new(),
            next_revision,
            synced,
            cancelled: None,
        };
        self.watchers.insert(id, watcher);
        if synced {
            self.groups.entry(group).or_default().insert(id);
        } else {
            self.unsynced.insert(id);
        }
        Ok(id)
    }

    /// Stops a watcher.
    pub fn cancel(&mut self, id: WatchId) -> bool {
        let Some(watcher) = self.watchers.remove(&id) else { return false };
        self.unsynced.remove(&id);
        if let Some(group) = self.groups.get_mut(&watcher.group) {
            group.remove(&id);
            if group.is_empty() {
                self.groups.remove(&watcher.group);
            }
        }
        true
    }

    /// Number of watchers.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// True if there are no watchers.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Hands the events of an applied batch to the synced watchers they concern. The previous
    /// key-value, for watchers that asked for it, is looked up once per event (from `store`, in
    /// which the batch is applied).
    pub fn notify(&mut self, store: &Store, events: &[Event]) -> Result<(), Error> {
        self.notified_through = store.revision();
        if self.groups.is_empty() {
            return Ok(());
        }
        // Watchers that could not take an event, with the revision of the first one they missed.
        let mut overflowed: BTreeMap<WatchId, i64> = BTreeMap::new();
        for event in events {
            let mut with_previous: Option<Event> = None;
            let key = event.kv.key.as_slice();
            // Only groups that start at or before the key can contain it: those below the
            // smallest key after it (`None` sorts first, so `(key, None)` would miss `key` itself).
            let after_key: Group = (key.iter().copied().chain([0]).collect(), None);
            for ((start, end), ids) in self.groups.range::<Group, _>(..after_key) {
                if end.as_ref().is_some_and(|end| key >= end.as_slice()) || crate::read::hides(start, key) {
                    continue;
                }
                for id in ids {
                    let watcher = self.watchers.get_mut(id).expect("grouped watchers exist");
                    if overflowed.contains_key(id)
                        || !wants(&watcher.request, event)
                        || event.kv.mod_revision < watcher.next_revision
                    {
                        continue;
                    }
                    if watcher.buffer.len() >= self.events_buffered_max {
                        overflowed.insert(*id, event.kv.mod_revision);
                        continue;
                    }
                    if watcher.request.prev_kv {
                        if with_previous.is_none() {
                            with_previous = Some(Event { prev_kv: previous(store, event)?, ..event.clone() });
                        }
                        watcher.buffer.push_back(with_previous.clone().expect("just set"));
                    } else {
                        watcher.buffer.push_back(event.clone());
                    }
                }
            }
        }
        for (id, missed) in overflowed {
            self.demote(id, missed);
        }
        Ok(())
    }

    /// A synced watcher that could not take an event of revision `missed`: it keeps the whole
    /// revisions before it and will read the rest from storage.
    fn demote(&mut self, id: WatchId, missed: i64) {
        let watcher = self.watchers.get_mut(&id).expect("exists");
        watcher.buffer.retain(|e| e.kv.mod_revision < missed);
        watcher.next_revision = missed;
        watcher.synced = false;
        if let Some(group) = self.groups.get_mut(&watcher.group) {
            group.remove(&id);
            if group.is_empty() {
                let key = watcher.group.clone();
                self.groups.remove(&key);
            }
        }
        self.unsynced.insert(id);
    }

    /// The store's state was replaced by a snapshot: synced watchers never saw the revisions it
    /// skipped, so they go back to catching up from the restored history after the last
    /// revision they were notified of.
    pub fn restored(&mut self) {
        let synced: Vec<WatchId> = self.groups.values().flatten().copied().collect();
        for id in synced {
            let watcher = self.watchers.get_mut(&id).expect("grouped watchers exist");
            let from = watcher.next_revision.max(self.notified_through + 1);
            self.demote(id, from);
        }
    }

    /// Reads history for unsynced watchers, at most `revisions_max` revisions per watcher, into
    /// their buffers (never past `events_buffered_max`). A watcher that reaches the store's
    /// revision becomes synced; one whose history was compacted away is cancelled.
    pub fn catch_up(&mut self, store: &Store, revisions_max: usize) -> Result<(), Error> {
        let ids: Vec<WatchId> = self.unsynced.iter().copied().collect();
        for id in ids {
            let watcher = self.watchers.get_mut(&id).expect("unsynced watchers exist");
            if watcher.cancelled.is_some() {
                continue;
            }
            if watcher.next_revision < store.compact_revision() {
                watcher.cancelled = Some(Cancelled::Compacted { compact_revision: store.compact_revision() });
                self.unsynced.remove(&id);
                continue;
            }
            let room = self.events_buffered_max.saturating_sub(watcher.buffer.len());
            if room == 0 {
                continue;
            }
            let (events, next) = history(store, &watcher.keys, watcher.next_revision, revisions_max, room)?;
            for event in events {
                if wants(&watcher.request, &event) {
                    let with_prev = if watcher.request.prev_kv { previous(store, &event)? } else { None };
                    watcher.buffer.push_back(Event { prev_kv: with_prev, ..event });
                }
            }
            watcher.next_revision = next;
            if next > store.revision() {
                watcher.synced = true;
                self.unsynced.remove(&id);
                self.groups.entry(watcher.group.clone()).or_default().insert(id);
            }
        }
        Ok(())
    }

    /// Takes the buffered events of a watcher (the consumer's pace), with its cancellation if it
    /// was cancelled.
    pub fn take(&mut self, id: WatchId) -> Option<(Vec<Event>, Option<Cancelled>)> {
        let watcher = self.watchers.get_mut(&id)?;
        let events = watcher.buffer.drain(..).collect();
        Some((events, watcher.cancelled.clone()))
    }

    /// For a progress notification: the revision up to which the watcher has been given every
    /// event, or `None` while it is catching up.
    pub fn progress(&self, id: WatchId, store: &Store) -> Option<i64> {
        let watcher = self.watchers.get(&id)?;
        watcher.synced.then_some(store.revision())
    }
}

fn wants(request: &WatchRequest, event: &Event) -> bool {
    match event.kind {
        EventKind::Put => !request.no_put,
        EventKind::Delete => !request.no_delete,
    }
}

/// Events of `keys` from `from` on, whole revisions only, at most `revisions_max` revisions and
/// about `events_max` events. Returns them and the next revision to read.
fn history(
    store: &Store,
    keys: &Keys,
    from: i64,
    revisions_max: usize,
    events_max: usize,
) -> Result<(Vec<Event>, i64), Error> {
    let read = store.database().begin_read().map_err(storage_error)?;
    let revs = read.open_table(tables::REVS).map_err(storage_error)?;
    let mut events = Vec::new();
    let mut revisions = 0;
    let mut current = None;
    let mut next = from;
    for item in revs.range(revision_key(from, 0)..).map_err(storage_error)? {
        let (key, value) = item.map_err(storage_error)?;
        let main = main_of(key.value());
        if current != Some(main) {
            // A revision boundary: stop here if the budget is spent.
            if revisions >= revisions_max || events.len() >= events_max {
                return Ok((events, main));
            }
            current = Some(main);
            revisions += 1;
        }
        next = main + 1;
        let record = Record::decode(value.value())?;
        if !keys.contains(&record.key) {
            continue;
        }
        let kind = if record.tombstone { EventKind::Delete } else { EventKind::Put };
        events.push(Event { kind, kv: record.into_key_value(main, false), prev_kv: None });
    }
    Ok((events, next.max(store.revision() + 1)))
}

/// The key's state just before the event's revision.
fn previous(store: &Store, event: &Event) -> Result<Option<KeyValue>, Error> {
    if event.kv.mod_revision - 1 < store.compact_revision() {
        return Ok(None);
    }
    let request =
        crate::RangeRequest { key: event.kv.key.clone(), revision: event.kv.mod_revision - 1, ..Default::default() };
    Ok(store.range(&request)?.kvs.pop())
}

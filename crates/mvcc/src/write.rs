//! Writes inside one redb write transaction: put, delete, txn, lease revoke. Every change of one
//! command shares the command's main revision and takes the next sub revision; a command that
//! changes nothing leaves the revision alone (etcd's rule).

use std::sync::RwLock;

use redb::{ReadableTable, Table};

use crate::codec::{revision_key, Record};
use crate::counts;
use crate::key_index::{KeyIndex, Latest};
use crate::read::{read_index, Keys, View};
use crate::types::*;
use crate::watch::{Event, EventKind};
use crate::{storage_error, Error};

type RevsTable<'t> = Table<'t, u128, &'static [u8]>;
type CountsTable<'t> = Table<'t, &'static [u8], u64>;
/// A read view over a write transaction's own tables.
type WriteView<'a, 't> = View<'a, RevsTable<'t>, CountsTable<'t>>;

/// The tables a write changes, opened in one write transaction, and the key index.
pub struct Writer<'t> {
    /// `revs`.
    pub revs: RevsTable<'t>,
    /// The key index, changed along with `revs` (only by this thread).
    pub index: &'t RwLock<KeyIndex>,
    /// `leases`.
    pub leases: Table<'t, i64, (i64, i64)>,
    /// `lease_keys`.
    pub lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    /// `counts`.
    pub counts: CountsTable<'t>,
    /// Store revision before the current command.
    pub revision: i64,
    /// Reads below this fail.
    pub compact_revision: i64,
    /// Changes made by the current command (its new revision is `revision + 1` if any).
    pub changes: i64,
    /// Events of the changes made, for the watch hub.
    pub events: Vec<Event>,
}

impl<'t> Writer<'t> {
    pub(crate) fn view(&self) -> WriteView<'_, 't> {
        // A transaction reads its own writes: its revision includes them once there are any.
        let revision = if self.changes > 0 { self.revision + 1 } else { self.revision };
        View {
            index: self.index,
            revs: &self.revs,
            counts: &self.counts,
            revision,
            compact_revision: self.compact_revision,
        }
    }

    /// Ends the command: returns the store's revision after it.
    pub fn finish_command(&mut self) -> i64 {
        if self.changes > 0 {
            self.revision += 1;
            self.changes = 0;
        }
        self.revision
    }

    fn write_record(&mut self, record: &Record) -> Result<(i64, i64), Error> {
        let (main, sub) = (self.revision + 1, self.changes);
        self.revs.insert(revision_key(main, sub), record.encode().as_slice()).map_err(storage_error)?;
        let live = (!record.tombstone).then_some((record.create_revision, record.version, record.lease));
        write_index(self.index).record(&record.key, main, sub, live);
        self.changes += 1;
        Ok((main, sub))
    }

    /// The current state of `key`, if live.
    fn latest(&self, key: &[u8]) -> Option<Latest> {
        read_index(self.index).latest(key)
    }

    pub(crate) fn lease_exists(&self, id: i64) -> Result<bool, Error> {
        Ok(self.leases.get(id).map_err(storage_error)?.is_some())
    }

    /// Checks a put against the state before it runs (etcd validates before applying).
    fn check_put(&self, request: &PutRequest) -> Result<(), Error> {
        if request.lease != 0 && !request.ignore_lease && !self.lease_exists(request.lease)? {
            return Err(Error::LeaseNotFound);
        }
        if (request.ignore_value || request.ignore_lease) && self.latest(&request.key).is_none() {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    /// etcd's Put.
    pub fn put(&mut self, request: &PutRequest) -> Result<PutResponse, Error> {
        self.check_put(request)?;
        let current = self.latest(&request.key);
        // The previous value is read only when the request needs it.
        let previous = match current {
            Some(latest) if request.prev_kv || request.ignore_value => {
                Some(self.view().record(latest.main, latest.sub)?.into_key_value(latest.main, false))
            }
            _ => None,
        };
        let value = match (&previous, request.ignore_value) {
            (Some(previous), true) => previous.value.clone(),
            _ => request.value.clone(),
        };
        let lease = match (current, request.ignore_lease) {
            (Some(current), true) => current.lease,
            _ => request.lease,
        };
        let (create_revision, version) = match current {
            Some(current) => (current.create_revision, current.version + 1),
            None => (self.revision + 1, 1),
        };
        let record = Record { tombstone: false, create_revision, version, lease, key: request.key.clone(), value };
        let (main, _) = self.write_record(&record)?;
        if current.is_none() {
            counts::added(&mut self.counts, &read_index(self.index), &request.key)?;
        }
        let previous_lease = current.map_or(0, |c| c.lease);
        if previous_lease != 0 && previous_lease != lease {
            self.lease_keys.remove((previous_lease, request.key.as_slice())).map_err(storage_error)?;
        }
        if lease != 0 {
            self.lease_keys.insert((lease, request.key.as_slice()), ()).map_err(storage_error)?;
        }
        let kv = KeyValue { key: record.key, create_revision, mod_revision: main, version, value: record.value, lease };
        // A watcher that wants the previous key-value looks it up (see `WatchHub::notify`).
        self.events.push(Event { kind: EventKind::Put, kv, prev_kv: None });
        Ok(PutResponse { prev_kv: previous.filter(|_| request.prev_kv) })
    }

    fn delete_keys(&mut self, keys: &Keys, want_previous: bool) -> Result<DeleteRangeResponse, Error> {
        let live = read_index(self.index).live_latest(keys);
        let mut response = DeleteRangeResponse { deleted: live.len() as i64, prev_kvs: Vec::new() };
        for (key, latest) in live {
            if want_previous {
                response.prev_kvs.push(self.view().record(latest.main, latest.sub)?.into_key_value(latest.main, false));
            }
            let tombstone = Record {
                tombstone: true,
                create_revision: 0,
                version: 0,
                lease: 0,
                key: key.clone(),
                value: Vec::new(),
            };
            let (main, _) = self.write_record(&tombstone)?;
            let kv = KeyValue { key: key.clone(), mod_revision: main, ..KeyValue::default() };
            self.events.push(Event { kind: EventKind::Delete, kv, prev_kv: None });
            counts::removed(&mut self.counts, &key)?;
            if latest.lease != 0 {
                self.lease_keys.remove((latest.lease, key.as_slice())).map_err(storage_error)?;
            }
        }
        Ok(response)
    }

    /// etcd's DeleteRange.
    pub fn delete_range(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResponse, Error> {
        self.delete_keys(&Keys::of(&request.key, &request.range_end), request.prev_kv)
    }

    /// etcd's Txn: compares choose the branches (nested ones too) against the state before the
    /// txn; the chosen puts are validated; then the operations run in order, reads seeing the
    /// txn's own earlier writes.
    pub fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, Error> {
        check_duplicates(request)?;
        let path = self.choose_path(request)?;
        self.check_path(request, &path, &mut 0)?;
        self.run(request, &path, &mut 0)
    }

    fn compare_holds(&self, compare: &Compare) -> Result<bool, Error> {
        // The compares see the state before the txn: the writer's view at its revision.
        self.view().compare_holds(compare)
    }

    /// The branch taken at each txn, in depth-first order of the txns that run.
    fn choose_path(&self, request: &TxnRequest) -> Result<Vec<bool>, Error> {
        let mut path = Vec::new();
        self.choose_into(request, &mut path)?;
        Ok(path)
    }

    fn choose_into(&self, request: &TxnRequest, path: &mut Vec<bool>) -> Result<(), Error> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.compare_holds(compare)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        let branch = if succeeded { &request.success } else { &request.failure };
        for op in branch {
            if let RequestOp::Txn(nested) = op {
                self.choose_into(nested, path)?;
            }
        }
        Ok(())
    }

    fn check_path(&self, request: &TxnRequest, path: &[bool], at: &mut usize) -> Result<(), Error> {
        let branch = if path[*at] { &request.success } else { &request.failure };
        *at += 1;
        for op in branch {
            match op {
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::Txn(nested) => self.check_path(nested, path, at)?,
                RequestOp::Range(range) if range.revision > self.revision => return Err(Error::FutureRevision),
                RequestOp::Range(range) if range.revision > 0 && range.revision < self.compact_revision => {
                    return Err(Error::Compacted)
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn run(&mut self, request: &TxnRequest, path: &[bool], at: &mut usize) -> Result<TxnResponse, Error> {
        let succeeded = path[*at];
        *at += 1;
        let branch = if succeeded { &request.success } else { &request.failure };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                RequestOp::Range(range) => ResponseOp::Range(self.view().range(range)?),
                RequestOp::Put(put) => ResponseOp::Put(self.put(put)?),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete_range(delete)?),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.run(nested, path, at)?),
            });
        }
        Ok(TxnResponse { succeeded, responses })
    }

    /// Grants a lease.
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<(), Error> {
        if id == 0 {
            return Err(Error::InvalidLeaseId);
        }
        if self.lease_exists(id)? {
            return Err(Error::LeaseExists);
        }
        self.leases.insert(id, (ttl, ttl)).map_err(storage_error)?;
        Ok(())
    }

    /// Revokes a lease, deleting its keys in this command's revision.
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), Error> {
        if !self.lease_exists(id)? {
            return Err(Error::LeaseNotFound);
        }
        let (znodes, keys): (Vec<_>, Vec<_>) = crate::tables::attached_keys(&self.lease_keys, id)?
            .into_iter()
            .partition(|key| crate::zk::path_of(key).is_some());
        for key in keys {
            self.delete_keys(&Keys::One(key), false)?;
        }
        // A ZooKeeper session's ephemeral nodes go as ZooKeeper deletes them, parents updated.
        self.end_session(&znodes)?;
        self.leases.remove(id).map_err(storage_error)?;
        Ok(())
    }

    /// Records a lease's remaining TTL.
    pub fn lease_checkpoint(&mut self, id: i64, remaining_ttl: i64) -> Result<(), Error> {
        let ttl = match self.leases.get(id).map_err(storage_error)? {
            Some(entry) => entry.value().0,
            None => return Err(Error::LeaseNotFound),
        };
        self.leases.insert(id, (ttl, remaining_ttl.clamp(0, ttl))).map_err(storage_error)?;
        Ok(())
    }
}

/// Locks the key index for a change (see [`read_index`] on poisoning).
pub(crate) fn write_index(index: &RwLock<KeyIndex>) -> std::sync::RwLockWriteGuard<'_, KeyIndex> {
    index.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Refuses an etcd txn that names a key under the znode prefix, in a compare or any operation
/// (nested txns included): only ZooKeeper commands touch the tree.
pub(crate) fn check_reserved(request: &TxnRequest) -> Result<(), Error> {
    let compares = request.compare.iter().map(|compare| compare.key.as_slice());
    let ops = request.success.iter().chain(&request.failure).map(|op| match op {
        RequestOp::Range(range) => range.key.as_slice(),
        RequestOp::Put(put) => put.key.as_slice(),
        RequestOp::DeleteRange(delete) => delete.key.as_slice(),
        RequestOp::Txn(_) => b"",
    });
    if compares.chain(ops).any(crate::read::reserved) {
        return Err(Error::ReservedKey);
    }
    for op in request.success.iter().chain(&request.failure) {
        if let RequestOp::Txn(nested) = op {
            check_reserved(nested)?;
        }
    }
    Ok(())
}

/// etcd's rule: within one branch (and the branches of txns nested in it), a key may be put at
/// most once, and not also fall in a deleted range.
fn check_duplicates(request: &TxnRequest) -> Result<(), Error> {
    for branch in [&request.success, &request.failure] {
        check_branch(branch, &mut Vec::new(), &mut Vec::new())?;
    }
    Ok(())
}

fn check_branch(branch: &[RequestOp], puts: &mut Vec<Vec<u8>>, deletes: &mut Vec<Keys>) -> Result<(), Error> {
    let (puts_before, deletes_before) = (puts.len(), deletes.len());
    for op in branch {
        match op {
            RequestOp::Put(put) => {
                if puts.contains(&put.key) || deletes.iter().any(|d| d.contains(&put.key)) {
                    return Err(Error::DuplicateKey);
                }
                puts.push(put.key.clone());
            }
            RequestOp::DeleteRange(delete) => {
                let keys = Keys::of(&delete.key, &delete.range_end);
                if puts.iter().any(|p| keys.contains(p)) {
                    return Err(Error::DuplicateKey);
                }
                deletes.push(keys);
            }
            _ => {}
        }
    }
    for op in branch {
        if let RequestOp::Txn(nested) = op {
            for nested_branch in [&nested.success, &nested.failure] {
                let (p, d) = (puts.len(), deletes.len());
                check_branch(nested_branch, puts, deletes)?;
                puts.truncate(p);
                deletes.truncate(d);
            }
        }
    }
    puts.truncate(puts_before);
    deletes.truncate(deletes_before);
    Ok(())
}

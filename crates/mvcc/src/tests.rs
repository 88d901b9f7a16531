//! etcd's semantics, case by case, and random command sequences against a naive model.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::*;

/// A store in memory and the log index of the next command (shared with other modules' tests).
pub(crate) struct Harness {
    pub(crate) store: Store,
    index: u64,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        Harness { store: Store::in_memory().unwrap(), index: 0 }
    }

    pub(crate) fn apply(&mut self, command: Command) -> Applied {
        self.index += 1;
        self.store.apply_batch(&[(self.index, command)]).unwrap().pop().unwrap().unwrap()
    }

    fn put(&mut self, key: &str, value: &str) -> Applied {
        self.apply(put(key, value))
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        self.store.range(&RangeRequest { key: key.into(), ..Default::default() }).unwrap().kvs.pop()
    }

    fn range(&self, request: RangeRequest) -> RangeResponse {
        self.store.range(&request).unwrap()
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    crate::read::prefix_end(prefix.as_bytes())
}

#[test]
fn revisions_versions_and_create_revisions_follow_etcd() {
    let mut h = Harness::new();
    assert_eq!(h.store.revision(), 1, "a new store is at revision 1");
    assert_eq!(h.put("a", "1").revision, 2);
    assert_eq!(h.put("a", "2").revision, 3);
    let kv = h.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    let deleted = h.apply(Command::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() }));
    assert_eq!(deleted.revision, 4);
    assert!(h.get("a").is_none());
    h.put("a", "3");
    let kv = h.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1), "a delete resets version and create");
}

#[test]
fn a_write_that_changes_nothing_does_not_bump_the_revision() {
    let mut h = Harness::new();
    h.put("a", "1");
    let nothing = h.apply(Command::DeleteRange(DeleteRangeRequest { key: "zz".into(), ..Default::default() }));
    assert_eq!(nothing.revision, 2);
    let read_only = h.apply(Command::Txn(TxnRequest {
        success: vec![RequestOp::Range(RangeRequest { key: "a".into(), ..Default::default() })],
        ..Default::default()
    }));
    assert_eq!(read_only.revision, 2);
}

#[test]
fn range_end_edge_cases() {
    let mut h = Harness::new();
    for key in ["a", "ab", "abc", "b", "c"] {
        h.put(key, "v");
    }
    let all = h.range(RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() });
    assert_eq!(keys(&all), ["a", "ab", "abc", "b", "c"]);
    let from_b = h.range(RangeRequest { key: "b".into(), range_end: vec![0], ..Default::default() });
    assert_eq!(keys(&from_b), ["b", "c"]);
    let prefix = h.range(RangeRequest { key: "ab".into(), range_end: prefix_end("ab"), ..Default::default() });
    assert_eq!(keys(&prefix), ["ab", "abc"]);
    let backwards = h.range(RangeRequest { key: "c".into(), range_end: "a".into(), ..Default::default() });
    assert!(backwards.kvs.is_empty() && backwards.count == 0);
    let missing = h.range(RangeRequest { key: "zz".into(), ..Default::default() });
    assert!(missing.kvs.is_empty() && !missing.more);
}

#[test]
fn limit_sets_more_and_count_is_the_whole_range() {
    let mut h = Harness::new();
    for key in ["a", "b", "c", "d"] {
        h.put(key, "v");
    }
    let request = RangeRequest { key: vec![0], range_end: vec![0], limit: 2, ..Default::default() };
    let limited = h.range(request.clone());
    assert_eq!(keys(&limited), ["a", "b"]);
    assert!(limited.more);
    assert_eq!(limited.count, 4);
    let exact = h.range(RangeRequest { limit: 4, ..request.clone() });
    assert!(!exact.more);
    let count_only = h.range(RangeRequest { count_only: true, ..request.clone() });
    assert!(count_only.kvs.is_empty() && count_only.count == 4);
    let keys_only = h.range(RangeRequest { keys_only: true, limit: 0, ..request });
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn count_over_many_buckets_equals_the_live_keys_in_the_range() {
    let mut h = Harness::new();
    // Enough keys to split buckets several times, then deletes that empty some of them.
    let batch: Vec<(u64, Command)> = (0..5000).map(|i| (i + 1, put(&format!("k{i:05}"), "v"))).collect();
    h.store.apply_batch(&batch).unwrap();
    h.index = 5000;
    for i in (0..5000).filter(|i| i % 3 == 0 || (1200..2600).contains(i)) {
        h.apply(Command::DeleteRange(DeleteRangeRequest { key: format!("k{i:05}").into(), ..Default::default() }));
    }
    let live = |from: usize, to: usize| (from..to).filter(|i| !(i % 3 == 0 || (1200..2600).contains(i))).count();
    let bounds = [0, 1, 511, 512, 1023, 1024, 1500, 2047, 2600, 3333, 4999, 5000];
    for &from in &bounds {
        for &to in &bounds {
            let request = RangeRequest {
                key: format!("k{from:05}").into(),
                range_end: format!("k{to:05}").into(),
                limit: 3,
                ..Default::default()
            };
            let response = h.range(request);
            assert_eq!(response.count as usize, live(from, to.max(from)), "[{from}, {to})");
        }
    }
    let everything = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
    assert_eq!(h.range(everything).count as usize, live(0, 5000));
    let from_middle = RangeRequest { key: b"k02000".to_vec(), range_end: vec![0], limit: 1, ..Default::default() };
    assert_eq!(h.range(from_middle).count as usize, live(2000, 5000));
}

#[test]
fn sorting_and_filters() {
    let mut h = Harness::new();
    h.put("a", "3");
    h.put("b", "1");
    h.put("c", "2");
    h.put("b", "4");
    let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    let by_value = h.range(RangeRequest { sort_target: SortTarget::Value, ..all.clone() });
    assert_eq!(keys(&by_value), ["c", "a", "b"], "a target without an order sorts ascending");
    let by_mod_desc =
        h.range(RangeRequest { sort_target: SortTarget::Mod, sort_order: SortOrder::Descend, limit: 2, ..all.clone() });
    assert_eq!(keys(&by_mod_desc), ["b", "c"]);
    assert!(by_mod_desc.more);
    let key_desc = h.range(RangeRequest { sort_order: SortOrder::Descend, ..all.clone() });
    assert_eq!(keys(&key_desc), ["c", "b", "a"]);
    let recent = h.range(RangeRequest { min_mod_revision: 4, ..all.clone() });
    assert_eq!(keys(&recent), ["b", "c"]);
    let old_create = h.range(RangeRequest { max_create_revision: 3, ..all });
    assert_eq!(keys(&old_create), ["a", "b"]);
}

#[test]
fn reading_at_a_past_revision_and_compaction_errors() {
    let mut h = Harness::new();
    h.put("a", "1"); // 2
    h.put("a", "2"); // 3
    h.apply(Command::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() })); // 4
    h.put("b", "1"); // 5
    let at = |h: &Harness, revision| {
        h.range(RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() })
    };
    assert_eq!(at(&h, 2).kvs[0].value, b"1");
    assert_eq!(at(&h, 3).kvs[0].value, b"2");
    assert!(at(&h, 4).kvs.is_empty());
    assert_eq!(keys(&at(&h, 5)), ["b"]);
    let future = h.store.range(&RangeRequest { key: "a".into(), revision: 6, ..Default::default() });
    assert_eq!(future, Err(Error::FutureRevision));
    assert_eq!(future.unwrap_err().to_string(), "etcdserver: mvcc: required revision is a future revision");
    h.apply(Command::Compact { revision: 3 });
    let compacted = h.store.range(&RangeRequest { key: "a".into(), revision: 2, ..Default::default() });
    assert_eq!(compacted.unwrap_err().to_string(), "etcdserver: mvcc: required revision has been compacted");
    assert_eq!(at(&h, 3).kvs[0].value, b"2", "the compact revision itself stays readable");
    assert_eq!(h.apply(Command::Compact { revision: 3 }).result, Err(Error::Compacted));
    assert_eq!(h.apply(Command::Compact { revision: 99 }).result, Err(Error::FutureRevision));
}

#[test]
fn a_reader_on_another_thread_answers_as_the_store_does() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "2");
    h.apply(Command::Compact { revision: 2 });
    h.put("a", "3");
    let reader = h.store.reader();
    let requests = [
        RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() },
        RangeRequest { key: "a".into(), revision: 3, ..Default::default() },
        RangeRequest { key: "a".into(), revision: 1, ..Default::default() },
        RangeRequest { key: "a".into(), revision: 9, ..Default::default() },
        RangeRequest { key: vec![0], range_end: vec![0], limit: 1, count_only: true, ..Default::default() },
    ];
    let expected: Vec<_> = requests.iter().map(|request| h.store.range(request)).collect();
    let revision = h.store.revision();
    let answers = std::thread::spawn(move || requests.iter().map(|request| reader.range(request)).collect::<Vec<_>>())
        .join()
        .unwrap();
    for (answer, expected) in answers.into_iter().zip(expected) {
        assert_eq!(answer, expected.map(|response| (response, revision)));
    }
}

#[test]
fn put_options_prev_kv_ignore_value_ignore_lease() {
    let mut h = Harness::new();
    h.apply(Command::LeaseGrant { id: 7, ttl: 10 });
    h.apply(Command::Put(PutRequest { key: "k".into(), value: "v1".into(), lease: 7, ..Default::default() }));
    let applied = h.apply(Command::Put(PutRequest {
        key: "k".into(),
        value: "v2".into(),
        prev_kv: true,
        ignore_lease: true,
        ..Default::default()
    }));
    let Ok(Response::Put(response)) = applied.result else { panic!("{applied:?}") };
    assert_eq!(response.prev_kv.unwrap().value, b"v1");
    assert_eq!(h.get("k").unwrap().lease, 7, "ignore_lease keeps the lease");
    h.apply(Command::Put(PutRequest { key: "k".into(), ignore_value: true, ..Default::default() }));
    let kv = h.get("k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease),
        (&b"v2"[..], 0),
        "ignore_value keeps the value; the lease was not ignored"
    );
    let missing = h.apply(Command::Put(PutRequest { key: "nope".into(), ignore_value: true, ..Default::default() }));
    assert_eq!(missing.result.unwrap_err().to_string(), "etcdserver: key not found");
    let no_lease = h.apply(Command::Put(PutRequest { key: "x".into(), lease: 99, ..Default::default() }));
    assert_eq!(no_lease.result.unwrap_err().to_string(), "etcdserver: requested lease not found");
    assert!(h.get("x").is_none(), "a refused put leaves nothing");
}

#[test]
fn delete_returns_count_and_prev_kvs() {
    let mut h = Harness::new();
    for key in ["p/a", "p/b", "q"] {
        h.put(key, key);
    }
    let applied = h.apply(Command::DeleteRange(DeleteRangeRequest {
        key: "p/".into(),
        range_end: prefix_end("p/"),
        prev_kv: true,
    }));
    let Ok(Response::DeleteRange(response)) = applied.result else { panic!() };
    assert_eq!(response.deleted, 2);
    assert_eq!(
        response.prev_kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(),
        [b"p/a".to_vec(), b"p/b".to_vec()]
    );
    assert_eq!(applied.revision, 5, "one revision for the whole delete");
}

#[test]
fn txn_compares_including_missing_keys_and_ranges() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "1");
    let txn = |compare: Compare| {
        Command::Txn(TxnRequest {
            compare: vec![compare],
            success: vec![RequestOp::Put(PutRequest { key: "won".into(), value: "yes".into(), ..Default::default() })],
            failure: vec![RequestOp::Range(RangeRequest { key: "a".into(), ..Default::default() })],
        })
    };
    let succeeded = |applied: Applied| match applied.result {
        Ok(Response::Txn(response)) => response.succeeded,
        other => panic!("{other:?}"),
    };
    let missing_version = Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Version(0),
        key: "missing".into(),
        range_end: vec![],
    };
    assert!(succeeded(h.apply(txn(missing_version))), "a missing key has version 0");
    let missing_value = Compare {
        result: CompareResult::NotEqual,
        target: CompareTarget::Value("x".into()),
        key: "missing".into(),
        range_end: vec![],
    };
    assert!(!succeeded(h.apply(txn(missing_value))), "a value compare on a missing key fails");
    let all_ones = Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Value("1".into()),
        key: "a".into(),
        range_end: "c".into(),
    };
    assert!(succeeded(h.apply(txn(all_ones))));
    h.put("b", "2");
    let all_ones = Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Value("1".into()),
        key: "a".into(),
        range_end: "c".into(),
    };
    assert!(!succeeded(h.apply(txn(all_ones))), "every key of the range must match");
    let newer =
        Compare { result: CompareResult::Greater, target: CompareTarget::Mod(2), key: "b".into(), range_end: vec![] };
    assert!(succeeded(h.apply(txn(newer))));
}

#[test]
fn a_read_only_txn_off_the_log_answers_as_through_the_log() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "1");
    h.put("b", "2");
    h.apply(Command::Compact { revision: 2 });
    h.put("c", "3");
    let range = |key: &str, range_end: &str, revision: i64, limit: i64| {
        RequestOp::Range(RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            revision,
            limit,
            ..Default::default()
        })
    };
    let compare = |target: CompareTarget, key: &str, range_end: &str| Compare {
        result: CompareResult::Equal,
        target,
        key: key.into(),
        range_end: range_end.into(),
    };
    let txns = [
        TxnRequest {
            compare: vec![compare(CompareTarget::Value("1".into()), "a", "")],
            success: vec![range("a", "z", 0, 0), range("b", "", 3, 0)],
            failure: vec![range("a", "", 0, 0)],
        },
        TxnRequest {
            compare: vec![compare(CompareTarget::Version(1), "a", "c")],
            success: vec![range("a", "", 0, 0)],
            failure: vec![
                range("a", "z", 0, 1),
                RequestOp::Txn(TxnRequest {
                    compare: vec![compare(CompareTarget::Version(0), "missing", "")],
                    success: vec![range("c", "", 0, 0)],
                    failure: vec![],
                }),
            ],
        },
        TxnRequest {
            compare: vec![compare(CompareTarget::Value("x".into()), "missing", "")],
            success: vec![],
            failure: vec![range("a", "", 1, 0)],
        },
        TxnRequest { compare: vec![], success: vec![range("a", "", 99, 0)], failure: vec![] },
        TxnRequest { compare: vec![], success: vec![], failure: vec![] },
    ];
    let reader = h.store.reader();
    for txn in txns {
        assert!(read::is_read_only(&txn));
        let revision = h.store.revision();
        let off_the_log = reader.read_only_txn(&txn);
        let through_the_log = h.apply(Command::Txn(txn.clone()));
        assert_eq!(h.store.revision(), revision, "a read-only txn makes no revision");
        match through_the_log.result {
            Ok(Response::Txn(response)) => assert_eq!(off_the_log, Ok((response, revision)), "{txn:?}"),
            Err(error) => assert_eq!(off_the_log, Err(error), "{txn:?}"),
            Ok(other) => panic!("{other:?}"),
        }
    }
    let write = TxnRequest { compare: vec![], success: vec![], failure: vec![RequestOp::Put(PutRequest::default())] };
    assert!(!read::is_read_only(&write), "a write in either branch makes a txn a write");
}

#[test]
fn a_txn_is_one_revision_and_reads_its_own_writes() {
    let mut h = Harness::new();
    h.put("a", "1");
    let applied = h.apply(Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest { key: "x".into(), value: "1".into(), ..Default::default() }),
            RequestOp::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() }),
            RequestOp::Range(RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }),
            RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Put(PutRequest { key: "y".into(), value: "2".into(), ..Default::default() })],
                ..Default::default()
            }),
        ],
        failure: vec![],
    }));
    assert_eq!(applied.revision, 3);
    let Ok(Response::Txn(response)) = applied.result else { panic!() };
    let ResponseOp::Range(seen) = &response.responses[2] else { panic!() };
    assert_eq!(keys(seen), ["x"]);
    let y = h.get("y").unwrap();
    let x = h.get("x").unwrap();
    assert_eq!((x.mod_revision, y.mod_revision), (3, 3));
}

#[test]
fn a_txn_may_not_put_the_same_key_twice() {
    let mut h = Harness::new();
    let twice = Command::Txn(TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest { key: "k".into(), ..Default::default() }),
            RequestOp::Put(PutRequest { key: "k".into(), ..Default::default() }),
        ],
        ..Default::default()
    });
    assert_eq!(h.apply(twice).result.unwrap_err().to_string(), "etcdserver: duplicate key given in txn request");
    let put_and_delete = Command::Txn(TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest { key: "a".into(), range_end: "z".into(), ..Default::default() }),
            RequestOp::Put(PutRequest { key: "k".into(), ..Default::default() }),
        ],
        ..Default::default()
    });
    assert_eq!(h.apply(put_and_delete).result, Err(Error::DuplicateKey));
    let across_branches = Command::Txn(TxnRequest {
        success: vec![RequestOp::Put(PutRequest { key: "k".into(), ..Default::default() })],
        failure: vec![RequestOp::Put(PutRequest { key: "k".into(), ..Default::default() })],
        ..Default::default()
    });
    assert!(h.apply(across_branches).result.is_ok(), "the two branches never both run");
    let nested = Command::Txn(TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest { key: "n".into(), ..Default::default() }),
            RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Put(PutRequest { key: "n".into(), ..Default::default() })],
                ..Default::default()
            }),
        ],
        ..Default::default()
    });
    assert_eq!(h.apply(nested).result, Err(Error::DuplicateKey));
}

#[test]
fn revoking_a_lease_deletes_its_keys_in_one_revision() {
    let mut h = Harness::new();
    h.apply(Command::LeaseGrant { id: 5, ttl: 30 });
    for key in ["s/1", "s/2"] {
        h.apply(Command::Put(PutRequest { key: key.into(), value: "x".into(), lease: 5, ..Default::default() }));
    }
    h.put("other", "y");
    assert_eq!(h.store.lease(5).unwrap().unwrap().keys, [b"s/1".to_vec(), b"s/2".to_vec()]);
    // Deleting a lease's key detaches it.
    h.apply(Command::DeleteRange(DeleteRangeRequest { key: "s/2".into(), ..Default::default() }));
    assert_eq!(h.store.lease(5).unwrap().unwrap().keys, [b"s/1".to_vec()]);
    let before = h.store.revision();
    let revoked = h.apply(Command::LeaseRevoke { id: 5 });
    assert_eq!(revoked.revision, before + 1);
    assert!(h.get("s/1").is_none() && h.get("other").is_some());
    assert!(h.store.lease(5).unwrap().is_none());
    assert_eq!(
        h.apply(Command::LeaseRevoke { id: 5 }).result.unwrap_err().to_string(),
        "etcdserver: requested lease not found"
    );
    assert_eq!(h.apply(Command::LeaseGrant { id: 6, ttl: 1 }).result, Ok(Response::Done));
    assert_eq!(h.apply(Command::LeaseGrant { id: 6, ttl: 1 }).result, Err(Error::LeaseExists));
}

#[test]
fn lease_checkpoints_keep_the_remaining_ttl() {
    let mut h = Harness::new();
    h.apply(Command::LeaseGrant { id: 9, ttl: 60 });
    assert_eq!(h.store.leases().unwrap()[0].remaining_ttl, 60);
    h.apply(Command::LeaseCheckpoint { id: 9, remaining_ttl: 17 });
    assert_eq!(h.store.lease(9).unwrap().unwrap().lease, Lease { id: 9, ttl: 60, remaining_ttl: 17 });
    assert_eq!(h.apply(Command::LeaseCheckpoint { id: 1, remaining_ttl: 1 }).result, Err(Error::LeaseNotFound));
}

#[test]
fn compaction_runs_in_bounded_batches_and_keeps_what_reads_need() {
    let mut h = Harness::new();
    let writes = COMPACTION_BATCH_REVISIONS * 3;
    for i in 0..writes {
        h.put(&format!("k{}", i % 10), &i.to_string());
    }
    h.put("gone", "x");
    h.apply(Command::DeleteRange(DeleteRangeRequest { key: "gone".into(), ..Default::default() }));
    let compact_at = h.store.revision();
    let before = h.range(RangeRequest { key: vec![0], range_end: vec![0], revision: compact_at, ..Default::default() });
    h.apply(Command::Compact { revision: compact_at });
    assert!(h.store.compacting(), "a big compaction spans several batches");
    // Hashed at a revision above the compact one (at it, etcd says compacted, as here).
    assert_eq!(h.store.hash_kv(compact_at), Err(crate::Error::Compacted));
    h.put("marker", "m");
    let during = h.store.hash_kv(compact_at + 1).unwrap();
    for _ in 0..10 {
        if !h.store.compacting() {
            break;
        }
        h.put("tick", "t");
    }
    assert!(!h.store.compacting());
    let after = h.range(RangeRequest { key: vec![0], range_end: vec![0], revision: compact_at, ..Default::default() });
    assert_eq!(before.kvs, after.kvs, "reads at the compact revision see the same");
    assert_eq!(
        h.store.hash_kv(compact_at + 1).unwrap(),
        during,
        "the hash does not depend on how far the compaction has gone (members differ in that)"
    );
    let (hash, compacted) = h.store.hash_kv(0).unwrap();
    assert_eq!(compacted, compact_at);
    assert_ne!(hash, 0);
}

#[test]
fn a_second_compaction_removes_what_the_first_kept_once_it_is_deleted() {
    // Found by the model test: put b, compact (b's put is kept), delete b, compact again.
    let mut h = Harness::new();
    h.put("b", "1"); // 2
    h.put("x", "1"); // 3
    h.apply(Command::Compact { revision: 3 });
    h.apply(Command::DeleteRange(DeleteRangeRequest { key: "b".into(), ..Default::default() })); // 4
    h.put("x", "2"); // 5
    h.apply(Command::Compact { revision: 5 });
    h.put("y", "1"); // 6: revision 5 is now in the past, read through the index
    let at = |revision| h.range(RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() });
    assert_eq!(keys(&at(5)), ["x"], "b stays deleted");
    assert_eq!(keys(&at(0)), ["x", "y"]);
}

#[test]
fn same_commands_same_hash_and_replay_is_a_no_op() {
    let commands: Vec<(u64, Command)> = (1..=50).map(|i| (i, put(&format!("k{}", i % 7), &i.to_string()))).collect();
    let mut first = Store::in_memory().unwrap();
    let mut second = Store::in_memory().unwrap();
    first.apply_batch(&commands).unwrap();
    for chunk in commands.chunks(7) {
        second.apply_batch(chunk).unwrap();
    }
    assert_eq!(first.hash_kv(0).unwrap(), second.hash_kv(0).unwrap());
    let replayed = second.apply_batch(&commands[40..]).unwrap();
    assert!(replayed.iter().all(Option::is_none), "already applied entries are skipped");
    assert_eq!(first.hash_kv(0).unwrap(), second.hash_kv(0).unwrap());
    assert_eq!(first.hash_kv(20).unwrap().0, second.hash_kv(20).unwrap().0);
}

#[test]
fn reopen_after_durable_commit_keeps_state_and_applied_index() {
    let dir = std::env::temp_dir().join(format!("ballot-mvcc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db");
    let _ = std::fs::remove_file(&path);
    let hash = {
        let mut store = Store::open(&path).unwrap();
        store.apply_batch(&[(1, put("a", "1")), (2, put("b", "2"))]).unwrap();
        store.make_durable().unwrap();
        assert_eq!(store.durable_applied_index(), 2);
        store.hash_kv(0).unwrap()
    };
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.applied_index(), 2);
    assert_eq!(store.revision(), 3);
    assert_eq!(store.hash_kv(0).unwrap(), hash);
    let replay = store.apply_batch(&[(2, put("b", "2")), (3, put("c", "3"))]).unwrap();
    assert!(replay[0].is_none() && replay[1].is_some());
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----------------------------------------------------------------------------- the model

/// A deliberately naive etcd: every key's full history in a map, everything recomputed.
#[derive(Default, Debug)]
struct Model {
    revision: i64,
    compacted: i64,
    history: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
}

impl Model {
    fn new() -> Model {
        Model { revision: 1, ..Default::default() }
    }

    fn at(&self, key: &[u8], revision: i64) -> Option<KeyValue> {
        self.history.get(key)?.iter().rev().find(|(main, _)| *main <= revision).and_then(|(_, kv)| kv.clone())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        let revision = self.revision + 1;
        let previous = self.at(key, self.revision);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.map_or(1, |p| p.version + 1),
            value: value.to_vec(),
            lease: 0,
        };
        self.history.entry(key.to_vec()).or_default().push((revision, Some(kv)));
        self.revision = revision;
    }

    fn delete(&mut self, keys: &read::Keys) -> i64 {
        let live: Vec<Vec<u8>> =
            self.history.keys().filter(|k| keys.contains(k) && self.at(k, self.revision).is_some()).cloned().collect();
        if !live.is_empty() {
            self.revision += 1;
            for key in &live {
                self.history.get_mut(key).unwrap().push((self.revision, None));
            }
        }
        live.len() as i64
    }

    fn range(&self, keys: &read::Keys, revision: i64, limit: i64) -> Result<(Vec<KeyValue>, bool, i64), Error> {
        let revision = if revision == 0 { self.revision } else { revision };
        if revision > self.revision {
            return Err(Error::FutureRevision);
        }
        if revision < self.compacted {
            return Err(Error::Compacted);
        }
        let all: Vec<KeyValue> =
            self.history.keys().filter(|k| keys.contains(k)).filter_map(|k| self.at(k, revision)).collect();
        let count = all.len() as i64;
        let limit = if limit > 0 { limit as usize } else { usize::MAX };
        Ok((all.iter().take(limit).cloned().collect(), all.len() > limit, count))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    Range(u8, u8, i64, i64),
    Compact(i64),
    CasTxn(u8, u8, u8),
}

const KEYS: [&str; 6] = ["a", "ab", "b", "ba", "c", "d"];

fn key(i: u8) -> Vec<u8> {
    KEYS[i as usize % KEYS.len()].as_bytes().to_vec()
}

fn end(i: u8) -> Vec<u8> {
    match i % 4 {
        0 => Vec::new(),
        1 => vec![0],
        _ => KEYS[(i as usize / 4) % KEYS.len()].as_bytes().to_vec(),
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(k, e)| Op::Delete(k, e)),
        3 => (any::<u8>(), any::<u8>(), 0i64..40, 0i64..4).prop_map(|(k, e, r, l)| Op::Range(k, e, r, l)),
        1 => (0i64..40).prop_map(Op::Compact),
        1 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(k, expect, v)| Op::CasTxn(k, expect, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Random sequences give the model's answers, and reopening the database at random points
    /// (durable commit, then open again) changes nothing.
    #[test]
    fn the_store_agrees_with_the_model(ops in proptest::collection::vec(op_strategy(), 1..80), reopen_every in 5usize..30) {
        let dir = std::env::temp_dir().join(format!("ballot-mvcc-model-{}-{}", std::process::id(), ops.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        let _ = std::fs::remove_file(&path);
        let mut store = Store::open(&path).unwrap();
        let mut model = Model::new();
        for (position, op) in ops.iter().enumerate() {
            // Reads are not log entries; the others are, at index position + 1.
            let index = position as u64 + 1;
            match op {
                Op::Put(k, v) => {
                    let applied = store.apply_batch(&[(index, Command::Put(PutRequest { key: key(*k), value: vec![*v], ..Default::default() }))]).unwrap();
                    model.put(&key(*k), &[*v]);
                    prop_assert_eq!(applied[0].as_ref().unwrap().revision, model.revision);
                }
                Op::Delete(k, e) => {
                    let request = DeleteRangeRequest { key: key(*k), range_end: end(*e), prev_kv: false };
                    let applied = store.apply_batch(&[(index, Command::DeleteRange(request.clone()))]).unwrap();
                    let deleted = model.delete(&read::Keys::of(&request.key, &request.range_end));
                    let Some(Applied { result: Ok(Response::DeleteRange(response)), revision }) = applied[0].clone() else { panic!() };
                    prop_assert_eq!(response.deleted, deleted);
                    prop_assert_eq!(revision, model.revision);
                }
                Op::Range(k, e, r, l) => {
                    let request = RangeRequest { key: key(*k), range_end: end(*e), revision: *r, limit: *l, ..Default::default() };
                    let got = store.range(&request).map(|r| (r.kvs, r.more, r.count));
                    let expected = model.range(&read::Keys::of(&request.key, &request.range_end), *r, *l);
                    prop_assert_eq!(got, expected);
                }
                Op::Compact(r) => {
                    let applied = store.apply_batch(&[(index, Command::Compact { revision: *r })]).unwrap();
                    let expected = if *r > model.revision { Err(Error::FutureRevision) } else if *r <= model.compacted { Err(Error::Compacted) } else { model.compacted = *r; Ok(Response::Done) };
                    prop_assert_eq!(applied[0].as_ref().unwrap().result.clone(), expected);
                }
                Op::CasTxn(k, expect, v) => {
                    let compare = Compare { result: CompareResult::Equal, target: CompareTarget::Value(vec![*expect]), key: key(*k), range_end: vec![] };
                    let txn = TxnRequest { compare: vec![compare], success: vec![RequestOp::Put(PutRequest { key: key(*k), value: vec![*v], ..Default::default() })], failure: vec![] };
                    let applied = store.apply_batch(&[(index, Command::Txn(txn))]).unwrap();
                    let holds = model.at(&key(*k), model.revision).is_some_and(|kv| kv.value == [*expect]);
                    if holds {
                        model.put(&key(*k), &[*v]);
                    }
                    let Some(Applied { result: Ok(Response::Txn(response)), .. }) = applied[0].clone() else { panic!() };
                    prop_assert_eq!(response.succeeded, holds);
                }
            }
            if position % reopen_every == reopen_every - 1 {
                store.make_durable().unwrap();
                let hash = store.hash_kv(0).unwrap();
                let applied = store.applied_index();
                drop(store);
                store = Store::open(&path).unwrap();
                prop_assert_eq!(store.hash_kv(0).unwrap(), hash);
                prop_assert_eq!(store.applied_index(), applied);
            }
        }
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn without_a_durable_commit_reopen_finds_a_consistent_prefix() {
    let dir = std::env::temp_dir().join(format!("ballot-mvcc-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db");
    let _ = std::fs::remove_file(&path);
    let commands: Vec<(u64, Command)> = (1..=10).map(|i| (i, put(&format!("k{i}"), "v"))).collect();
    let mut hashes = BTreeMap::new();
    {
        let mut store = Store::open(&path).unwrap();
        for command in &commands[..5] {
            store.apply_batch(std::slice::from_ref(command)).unwrap();
            hashes.insert(store.applied_index(), store.hash_kv(0).unwrap());
        }
        store.make_durable().unwrap();
        for command in &commands[5..] {
            store.apply_batch(std::slice::from_ref(command)).unwrap();
            hashes.insert(store.applied_index(), store.hash_kv(0).unwrap());
        }
    }
    let store = Store::open(&path).unwrap();
    let applied = store.applied_index();
    assert!(applied >= 5, "the durable commit covered index 5, found {applied}");
    assert_eq!(store.hash_kv(0).unwrap(), hashes[&applied], "the state is exactly that of index {applied}");
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn populated() -> Harness {
    let mut h = Harness::new();
    h.apply(Command::LeaseGrant { id: 3, ttl: 30 });
    h.apply(Command::LeaseCheckpoint { id: 3, remaining_ttl: 12 });
    for i in 0..200 {
        let lease = if i % 5 == 0 { 3 } else { 0 };
        h.apply(Command::Put(PutRequest {
            key: format!("k{:03}", i % 40).into(),
            value: vec![i as u8; 50],
            lease,
            ..Default::default()
        }));
    }
    h.apply(Command::DeleteRange(DeleteRangeRequest {
        key: "k010".into(),
        range_end: "k015".into(),
        ..Default::default()
    }));
    let compact_at = h.store.revision() - 30;
    h.apply(Command::Compact { revision: compact_at });
    h.put("after", "compaction");
    h.apply(Command::Alarm { activate: true, kind: AlarmKind::Corrupt, member_id: 2 });
    h
}

fn image(store: &Store, chunk_bytes: usize) -> Vec<Vec<u8>> {
    store.snapshot_chunks(chunk_bytes).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn a_snapshot_image_installs_to_an_identical_store() {
    let source = populated();
    for chunk_bytes in [64, 1000, 1 << 20] {
        let chunks = image(&source.store, chunk_bytes);
        assert!(chunk_bytes > 100_000 || chunks.len() > 3, "small chunks split the image");
        let mut target = Harness::new();
        target.put("stale", "state");
        target.store.install_snapshot(chunks).unwrap();
        assert_eq!(target.store.hash_kv(0).unwrap(), source.store.hash_kv(0).unwrap());
        assert_eq!(target.store.applied_index(), source.store.applied_index());
        assert_eq!(target.store.revision(), source.store.revision());
        assert_eq!(target.store.compact_revision(), source.store.compact_revision());
        assert_eq!(target.store.leases().unwrap(), source.store.leases().unwrap());
        assert_eq!(target.store.alarms().unwrap(), [(AlarmKind::Corrupt, 2)]);
        assert_eq!(target.store.lease(3).unwrap(), source.store.lease(3).unwrap());
        let everything = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        assert_eq!(target.range(everything.clone()), source.range(everything.clone()));
        let past = RangeRequest { revision: source.store.compact_revision() + 5, ..everything };
        assert_eq!(target.range(past.clone()), source.range(past));
        assert!(target.get("stale").is_none(), "the old state is gone");
    }
}

#[test]
fn a_damaged_or_truncated_image_changes_nothing() {
    let source = populated();
    let chunks = image(&source.store, 512);
    let mut target = Harness::new();
    target.put("mine", "kept");
    let before = target.store.hash_kv(0).unwrap();
    let mut damaged = chunks.clone();
    damaged[2][40] ^= 0x01;
    assert!(target.store.install_snapshot(damaged).is_err());
    let mut truncated = chunks.clone();
    truncated.pop();
    assert!(target.store.install_snapshot(truncated).is_err());
    assert!(target.store.install_snapshot(vec![b"garbage".to_vec()]).is_err());
    let mut trailing = chunks.clone();
    trailing.push(vec![0, 0, 0, 0, 0, 1]);
    assert!(target.store.install_snapshot(trailing).is_err(), "data after the end");
    assert_eq!(target.store.hash_kv(0).unwrap(), before);
    assert_eq!(target.get("mine").unwrap().value, b"kept");
    // Zero padding after the end (as a saved snapshot file has) is not damage.
    let mut padded = chunks;
    padded.push(vec![0; 300]);
    target.store.install_snapshot(padded).unwrap();
    assert_eq!(target.store.hash_kv(0).unwrap(), source.store.hash_kv(0).unwrap());
}

// ----------------------------------------------------------------------------- watch

fn watch_prefix(hub: &mut WatchHub, store: &Store, prefix: &str, start_revision: i64) -> WatchId {
    hub.watch(
        store,
        WatchRequest { key: prefix.into(), range_end: prefix_end(prefix), start_revision, ..Default::default() },
    )
    .unwrap()
}

/// Applies a command and feeds its events to the hub, as the node does.
fn apply_and_notify(h: &mut Harness, hub: &mut WatchHub, command: Command) {
    h.apply(command);
    let events = h.store.take_events();
    hub.notify(&h.store, &events).unwrap();
}

fn revisions(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.kv.mod_revision).collect()
}

#[test]
fn a_watcher_sees_puts_and_deletes_of_its_range_with_prev_kv() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(1000);
    let id = hub
        .watch(
            &h.store,
            WatchRequest { key: "s/".into(), range_end: prefix_end("s/"), prev_kv: true, ..Default::default() },
        )
        .unwrap();
    apply_and_notify(&mut h, &mut hub, put("s/a", "1"));
    apply_and_notify(&mut h, &mut hub, put("other", "x"));
    apply_and_notify(&mut h, &mut hub, put("s/a", "2"));
    apply_and_notify(
        &mut h,
        &mut hub,
        Command::DeleteRange(DeleteRangeRequest { key: "s/a".into(), ..Default::default() }),
    );
    let (events, cancelled) = hub.take(id).unwrap();
    assert!(cancelled.is_none());
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Put, EventKind::Put, EventKind::Delete]);
    assert_eq!(revisions(&events), [2, 4, 5]);
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[2].prev_kv.as_ref().unwrap().value, b"2", "a delete carries what was deleted");
    assert_eq!(hub.progress(id, &h.store), Some(5));
}

#[test]
fn a_watcher_from_the_past_gets_history_then_live_events_without_gap_or_duplicate() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(1000);
    for i in 0..10 {
        apply_and_notify(&mut h, &mut hub, put("k", &i.to_string()));
    }
    let id = watch_prefix(&mut hub, &h.store, "k", 3);
    assert_eq!(hub.progress(id, &h.store), None, "catching up");
    // Live writes arrive while it is still unsynced.
    apply_and_notify(&mut h, &mut hub, put("k", "live-1"));
    hub.catch_up(&h.store, 4).unwrap();
    apply_and_notify(&mut h, &mut hub, put("k", "live-2"));
    for _ in 0..5 {
        hub.catch_up(&h.store, 4).unwrap();
    }
    apply_and_notify(&mut h, &mut hub, put("k", "live-3"));
    let (events, _) = hub.take(id).unwrap();
    assert_eq!(revisions(&events), (3..=14).collect::<Vec<_>>());
}

#[test]
fn filters_drop_puts_or_deletes() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(1000);
    let keys = |no_put, no_delete| WatchRequest { key: "k".into(), no_put, no_delete, ..Default::default() };
    let deletes_only = hub.watch(&h.store, keys(true, false)).unwrap();
    let puts_only = hub.watch(&h.store, keys(false, true)).unwrap();
    apply_and_notify(&mut h, &mut hub, put("k", "1"));
    apply_and_notify(
        &mut h,
        &mut hub,
        Command::DeleteRange(DeleteRangeRequest { key: "k".into(), ..Default::default() }),
    );
    assert_eq!(hub.take(deletes_only).unwrap().0.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Delete]);
    assert_eq!(hub.take(puts_only).unwrap().0.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Put]);
}

#[test]
fn a_slow_watcher_is_bounded_then_caught_up_from_storage_exactly() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(4);
    let slow = watch_prefix(&mut hub, &h.store, "k", 0);
    let fast = watch_prefix(&mut hub, &h.store, "k", 0);
    let mut fast_seen = Vec::new();
    let mut slow_seen = Vec::new();
    for i in 0..40 {
        // A txn: two keys in one revision.
        apply_and_notify(
            &mut h,
            &mut hub,
            Command::Txn(TxnRequest {
                success: vec![
                    RequestOp::Put(PutRequest { key: "k1".into(), value: vec![i], ..Default::default() }),
                    RequestOp::Put(PutRequest { key: "k2".into(), value: vec![i], ..Default::default() }),
                ],
                ..Default::default()
            }),
        );
        fast_seen.extend(hub.take(fast).unwrap().0);
        if i % 13 == 12 {
            // The slow consumer reads now and then; its buffer never held more than 4 events.
            hub.catch_up(&h.store, 8).unwrap();
            slow_seen.extend(hub.take(slow).unwrap().0);
        }
    }
    for _ in 0..20 {
        hub.catch_up(&h.store, 8).unwrap();
        slow_seen.extend(hub.take(slow).unwrap().0);
    }
    assert_eq!(fast_seen.len(), 80);
    assert_eq!(slow_seen, fast_seen, "the same events in the same order, none twice, none missing");
    assert_eq!(hub.progress(slow, &h.store), Some(h.store.revision()));
}

#[test]
fn compaction_ends_watchers_that_need_what_it_removed() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(2);
    for i in 0..10 {
        apply_and_notify(&mut h, &mut hub, put("k", &i.to_string()));
    }
    let behind = watch_prefix(&mut hub, &h.store, "k", 2);
    apply_and_notify(&mut h, &mut hub, Command::Compact { revision: 8 });
    assert_eq!(
        hub.watch(&h.store, WatchRequest { key: "k".into(), start_revision: 5, ..Default::default() }),
        Err(Error::Compacted)
    );
    hub.catch_up(&h.store, 100).unwrap();
    let (_, cancelled) = hub.take(behind).unwrap();
    assert_eq!(cancelled, Some(Cancelled::Compacted { compact_revision: 8 }));
    assert!(hub.cancel(behind));
    assert!(!hub.cancel(behind));
    assert!(hub.is_empty());
}

#[test]
fn ten_thousand_watchers_on_one_prefix_share_one_group() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(16);
    let ids: Vec<WatchId> = (0..10_000).map(|_| watch_prefix(&mut hub, &h.store, "svc/", 0)).collect();
    assert_eq!(hub.len(), 10_000);
    apply_and_notify(&mut h, &mut hub, put("unrelated", "x"));
    apply_and_notify(&mut h, &mut hub, put("svc/a", "up"));
    assert!(ids.iter().all(|id| revisions(&hub.take(*id).unwrap().0) == [3]));
}

#[test]
fn the_nospace_alarm_refuses_writes_but_not_deletes_or_compaction() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "2");
    assert!(h.store.size_bytes().unwrap() > 0);
    h.apply(Command::Alarm { activate: true, kind: AlarmKind::NoSpace, member_id: 7 });
    assert_eq!(h.store.alarms().unwrap(), [(AlarmKind::NoSpace, 7)]);
    assert_eq!(h.put("c", "3").result.unwrap_err().to_string(), "etcdserver: mvcc: database space exceeded");
    let txn_put = Command::Txn(TxnRequest {
        success: vec![RequestOp::Put(PutRequest { key: "d".into(), ..Default::default() })],
        ..Default::default()
    });
    assert_eq!(h.apply(txn_put).result, Err(Error::NoSpace));
    assert_eq!(h.apply(Command::LeaseGrant { id: 1, ttl: 5 }).result, Err(Error::NoSpace));
    assert!(h.apply(Command::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() })).result.is_ok());
    let revision = h.store.revision();
    assert!(h.apply(Command::Compact { revision }).result.is_ok());
    assert!(h.get("b").is_some(), "reads still work");
    h.apply(Command::Alarm { activate: false, kind: AlarmKind::NoSpace, member_id: 7 });
    assert!(h.store.alarms().unwrap().is_empty());
    assert!(h.put("c", "3").result.is_ok(), "disarmed: writes work again");
}

#[test]
fn a_watcher_started_ahead_skips_older_events_and_a_restore_resyncs() {
    let mut h = Harness::new();
    let mut hub = WatchHub::new(100);
    for i in 0..5 {
        apply_and_notify(&mut h, &mut hub, put("k", &i.to_string()));
    }
    // Started at revision 9, ahead of the store (6): revisions 7 and 8 are not for it.
    let ahead = hub.watch(&h.store, WatchRequest { key: "k".into(), start_revision: 9, ..Default::default() }).unwrap();
    let now = watch_prefix(&mut hub, &h.store, "k", 0);
    for i in 5..10 {
        apply_and_notify(&mut h, &mut hub, put("k", &i.to_string()));
    }
    assert_eq!(revisions(&hub.take(ahead).unwrap().0), [9, 10, 11]);
    assert_eq!(revisions(&hub.take(now).unwrap().0), [7, 8, 9, 10, 11]);
    // The state jumps ahead through a snapshot: the watchers catch up from its history.
    let mut source = Harness::new();
    for i in 0..15 {
        source.put("k", &i.to_string());
    }
    let image: Vec<Vec<u8>> = source.store.snapshot_chunks(256).unwrap().collect::<Result<_, _>>().unwrap();
    h.store.install_snapshot(image).unwrap();
    hub.restored();
    for _ in 0..5 {
        hub.catch_up(&h.store, 2).unwrap();
    }
    assert_eq!(revisions(&hub.take(now).unwrap().0), [12, 13, 14, 15, 16]);
}

#[test]
fn the_member_table_follows_its_changes_and_travels_in_snapshots() {
    let mut h = Harness::new();
    let record = |id: u64, learner: bool| MemberRecord {
        id,
        name: String::new(),
        peer_urls: vec![format!("http://127.0.0.1:{id}")],
        client_urls: vec![],
        is_learner: learner,
    };
    let revision = h.store.revision();
    h.apply(Command::Members(vec![MemberChange::Upsert(record(1, false)), MemberChange::Upsert(record(2, true))]));
    h.apply(Command::Members(vec![MemberChange::Publish {
        id: 2,
        name: "two".into(),
        client_urls: vec!["http://127.0.0.1:9".into()],
    }]));
    h.apply(Command::Members(vec![MemberChange::SetPeerUrls { id: 1, peer_urls: vec!["http://127.0.0.1:7".into()] }]));
    h.apply(Command::Members(vec![MemberChange::Remove(1)]));
    // A removed member never comes back, and changes to it are no-ops.
    h.apply(Command::Members(vec![MemberChange::Upsert(record(1, false))]));
    h.apply(Command::Members(vec![MemberChange::Publish { id: 1, name: "one".into(), client_urls: vec![] }]));
    assert_eq!(h.store.revision(), revision, "member changes are not key-value revisions");
    let (members, removed) = h.store.members().unwrap();
    assert_eq!(removed, [1]);
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "two");
    assert_eq!(members[0].client_urls, ["http://127.0.0.1:9"]);
    assert!(members[0].is_learner);

    let image: Vec<Vec<u8>> = h.store.snapshot_chunks(64).unwrap().collect::<Result<_, _>>().unwrap();
    let mut copy = Store::in_memory().unwrap();
    copy.install_snapshot(image).unwrap();
    assert_eq!(copy.members().unwrap(), (members, removed));
}

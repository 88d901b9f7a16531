//! Process tests of day-2 operations: automatic compaction, snapshot save, leader moves.

mod common;

use std::time::{Duration, Instant};

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::cluster_client::ClusterClient;
use common::{get, put, Cluster};
use sha2::{Digest, Sha256};

/// Runs the `ballot` command line against member `i`.
fn ballot(cluster: &Cluster, i: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(args)
        .args(["--endpoints", cluster.client_url(i)])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_compacts_history_older_than_the_retention() {
    let cluster = Cluster::start("autocompact", 1, &["--auto-compaction-retention", "2s"]);
    cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(0).await;
    let first = kv.put(put("k", "1")).await.unwrap().into_inner().header.unwrap().revision;
    kv.put(put("k", "2")).await.unwrap();
    let at_first = || pb_at(first);
    // Still readable at once: the history is younger than the retention.
    assert_eq!(kv.range(at_first()).await.unwrap().into_inner().kvs[0].value, b"1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Writes keep the revision moving, so there is always something newer to compact to.
        kv.put(put("tick", "x")).await.unwrap();
        match kv.range(at_first()).await {
            Err(status) if status.message().contains("required revision has been compacted") => break,
            Ok(_) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
        assert!(Instant::now() < deadline, "nothing was compacted:\n{}", cluster.log(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cluster.log(0).contains("auto-compaction"), "{}", cluster.log(0));
    // The current state is intact.
    assert_eq!(kv.range(get("k")).await.unwrap().into_inner().kvs[0].value, b"2");
}

#[test]
fn an_invalid_auto_compaction_setting_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["serve", "--data-dir"])
        .arg(std::env::temp_dir().join(format!("ballot-test-badcompact-{}", std::process::id())))
        .args(["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auto-compaction-retention \"1h\": not a revision count"), "{stderr}");
}

fn pb_at(revision: i64) -> ballot_proto::etcdserverpb::RangeRequest {
    ballot_proto::etcdserverpb::RangeRequest { revision, ..get("k") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_under_writes_restores_into_a_new_cluster_with_the_same_content() {
    let cluster = Cluster::start("snapsave", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(leader).await;
    for i in 0..200 {
        kv.put(put(&format!("key-{i:03}"), &"v".repeat(100))).await.unwrap();
    }
    // Writes continue while the snapshot streams (bounded in count).
    let mut writer = cluster.kv(leader).await;
    let load = tokio::spawn(async move {
        for i in 0..200 {
            writer.put(put(&format!("during-{i}"), "x")).await.unwrap();
        }
    });
    let file = std::env::temp_dir().join(format!("ballot-snapshot-{}.db", std::process::id()));
    let follower = (leader + 1) % 3;
    let output = ballot(&cluster, follower, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Snapshot saved at"));
    load.await.unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 200 * 100, "{} bytes", bytes.len());
    let (content, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(content.len() % 512, 0, "padded as etcd pads");
    assert_eq!(Sha256::digest(content).as_slice(), trailer);
    assert!(!file.with_extension("db.part").exists(), "the partial file is gone");

    // Disaster recovery: a new 3-member cluster from the file, with the source's content at
    // the snapshot's revision.
    let mut restored = Cluster::prepare("restored", 3, &[]);
    let mut revision = 0;
    for i in 0..3 {
        let said = restored.restore(i, &file);
        revision = said.split("revision ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    }
    for i in 0..3 {
        restored.spawn(i);
    }
    let new_leader = restored.leader(Duration::from_secs(20)).await;
    let everything = |revision| pb::RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() };
    let source = cluster.kv(leader).await.range(everything(revision)).await.unwrap().into_inner();
    let mut on_restored = restored.kv(new_leader).await;
    let copy = on_restored.range(everything(0)).await.unwrap().into_inner();
    assert_eq!(copy.header.unwrap().revision, revision);
    assert!(source.kvs.len() >= 200);
    assert_eq!(copy.kvs, source.kvs, "the restored cluster holds the source's content at the snapshot's revision");
    let members = ClusterClient::new(restored.channel(new_leader).await)
        .member_list(pb::MemberListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    let names: Vec<&str> = members.iter().map(|member| member.name.as_str()).collect();
    assert_eq!(names.len(), 3, "the new cluster's members replace the source's: {names:?}");
    on_restored.put(put("after-restore", "1")).await.expect("the restored cluster takes writes");
    std::fs::remove_file(&file).unwrap();

    // A damaged file is refused with a clear error.
    let damaged = std::env::temp_dir().join(format!("ballot-damaged-{}.db", std::process::id()));
    std::fs::write(&damaged, b"not a snapshot at all, but long enough to have a trailer").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["snapshot", "restore", damaged.to_str().unwrap(), "--data-dir"])
        .arg(restored.dir.join("never"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SHA-256"), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_file(&damaged).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_move_leader_hands_leadership_to_the_named_member() {
    let cluster = Cluster::start("moveleader", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let target = (leader + 1) % 3;
    let target_id = cluster.status(target).await.unwrap().header.unwrap().member_id;
    // Asked through a member that is not the leader: the command finds the leader itself.
    let via = (leader + 2) % 3;
    let output = ballot(&cluster, via, &["member", "move-leader", &format!("{target_id:x}")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(cluster.leader(Duration::from_secs(10)).await, target);
    let members = ClusterClient::new(cluster.channel(via).await)
        .member_list(pb::MemberListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 3);
    let refused = ballot(&cluster, via, &["member", "move-leader", "abc"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("abc is not a member"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_shrinks_the_file_while_writes_go_on() {
    use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    let cluster = Cluster::start("defrag", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(leader).await;
    let big = "x".repeat(8000);
    for i in 0..1000 {
        kv.put(put(&format!("big-{i:04}"), &big)).await.unwrap();
    }
    let all = pb::DeleteRangeRequest { key: b"big-".to_vec(), range_end: b"big.".to_vec(), prev_kv: false };
    let revision = kv.delete_range(all).await.unwrap().into_inner().header.unwrap().revision;
    // `physical`: answered once the history is gone from this member (steps run while idle).
    kv.compact(pb::CompactionRequest { revision, physical: true }).await.unwrap();
    let before = cluster.status(leader).await.unwrap().db_size;
    assert!(before > 8_000_000, "{before} bytes");

    // Writes go on through the defragmentation (bounded in count), each one timed.
    let mut writer = cluster.kv(leader).await;
    let load = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        for i in 0..400 {
            let started = Instant::now();
            writer.put(put(&format!("during-{i:03}"), "v")).await.unwrap();
            slowest = slowest.max(started.elapsed());
        }
        slowest
    });
    let mut maintenance = MaintenanceClient::new(cluster.channel(leader).await);
    maintenance.defragment(pb::DefragmentRequest {}).await.expect("defragment");
    let slowest = load.await.unwrap();
    let after = cluster.status(leader).await.unwrap().db_size;
    eprintln!("defragment: {before} -> {after} bytes; slowest write meanwhile {slowest:?}");
    assert!(after * 4 < before, "the file shrank: {before} -> {after}");
    assert!(cluster.log(leader).contains("defragmented"), "{}", cluster.log(leader));
    let during = pb::RangeRequest { key: b"during-".to_vec(), range_end: b"during.".to_vec(), ..Default::default() };
    assert_eq!(kv.range(during).await.unwrap().into_inner().kvs.len(), 400, "every write meanwhile is there");
    // The member still serves and takes writes on the new file, and the others agree with it.
    kv.put(put("after-defrag", "1")).await.unwrap();
    let follower = (leader + 1) % 3;
    let mut on_follower = MaintenanceClient::new(cluster.channel(follower).await);
    on_follower.defragment(pb::DefragmentRequest {}).await.expect("a follower defragments too");
    let revision = kv.put(put("last", "1")).await.unwrap().into_inner().header.unwrap().revision;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hash = |i| {
            let channel = cluster.channel(i);
            async move {
                MaintenanceClient::new(channel.await)
                    .hash_kv(pb::HashKvRequest { revision })
                    .await
                    .ok()
                    .map(|r| r.into_inner().hash)
            }
        };
        let (a, b) = (hash(leader).await, hash(follower).await);
        if a.is_some() && a == b {
            break;
        }
        assert!(Instant::now() < deadline, "hash_kv differs after defragmenting: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_history_differs_raises_the_corrupt_alarm() {
    use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    let mut cluster = Cluster::start("corrupt", 3, &["--experimental-corrupt-check-time", "1s"]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(leader).await;
    for i in 0..20 {
        kv.put(put(&format!("k{i}"), "v")).await.unwrap();
    }
    // Damage a follower's store while it is stopped: it takes a write no log holds, at the
    // next index, so after its restart it skips the entry the others apply there.
    let victim = (leader + 1) % 3;
    assert!(cluster.terminate(victim));
    {
        let mut store = ballot_mvcc::Store::open(&cluster.members[victim].data_dir.join("db")).unwrap();
        let index = store.applied_index() + 1;
        let rot = ballot_mvcc::PutRequest { key: b"rot".to_vec(), value: b"x".to_vec(), ..Default::default() };
        store.apply_batch(&[(index, ballot_mvcc::Command::Put(rot))]).unwrap();
        store.make_durable().unwrap();
    }
    cluster.spawn(victim);
    cluster.leader(Duration::from_secs(20)).await; // every member, the victim too, is up
    let mut on_victim = MaintenanceClient::new(cluster.channel(victim).await);
    let victim_id = on_victim.status(pb::StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id;
    for i in 0..5 {
        // The periodic check may raise the alarm before these land; writes are refused then.
        match kv.put(put(&format!("after{i}"), "v")).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::DataLoss => break,
            Err(status) => panic!("put: {status}"),
        }
    }
    let mut maintenance = MaintenanceClient::new(cluster.channel(leader).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alarms = maintenance
            .alarm(pb::AlarmRequest { action: 0, member_id: 0, alarm: 0 })
            .await
            .unwrap()
            .into_inner()
            .alarms;
        if alarms.iter().any(|alarm| alarm.alarm == pb::AlarmType::Corrupt as i32 && alarm.member_id == victim_id) {
            break;
        }
        assert!(Instant::now() < deadline, "no CORRUPT alarm: {alarms:?}\n{}", cluster.log(leader));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cluster.log(leader).contains("CORRUPTION"), "logged loudly");
    let refused = kv.put(put("more", "v")).await.expect_err("writes are refused under CORRUPT");
    assert_eq!(refused.code(), tonic::Code::DataLoss);
    assert_eq!(refused.message(), "etcdserver: corrupt cluster");
    tokio::time::sleep(Duration::from_millis(300)).await; // members see the alarm within a tick
    for i in 0..3 {
        let refused = cluster.kv(i).await.range(get("k1")).await.expect_err("reads are refused too");
        assert_eq!(refused.message(), "etcdserver: corrupt cluster");
    }
}

//! Membership changes on real processes: growing and shrinking under writes, learners that
//! catch up by snapshot, replacing a dead member, removing the leader.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::cluster_client::ClusterClient;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use common::{put, Cluster};
use tonic::transport::Channel;

async fn cluster_client(cluster: &Cluster, i: usize) -> ClusterClient<Channel> {
    ClusterClient::new(cluster.channel(i).await)
}

/// Adds member `i` (as a voter or learner) through member `via`, retrying while the cluster
/// says it is not ready (the previous member still catching up); returns its id.
async fn add(cluster: &Cluster, via: usize, i: usize, is_learner: bool) -> u64 {
    let mut client = cluster_client(cluster, via).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = pb::MemberAddRequest { peer_ur_ls: vec![cluster.members[i].peer.clone()], is_learner };
        match client.member_add(request).await {
            Ok(response) => return response.into_inner().member.unwrap().id,
            Err(status) if Instant::now() < deadline => {
                eprintln!("member add: {} (retrying)", status.message());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("member add never succeeded: {status}"),
        }
    }
}

async fn member_list(cluster: &Cluster, i: usize) -> Vec<pb::Member> {
    let mut client = cluster_client(cluster, i).await;
    client.member_list(pb::MemberListRequest::default()).await.unwrap().into_inner().members
}

async fn member_id(cluster: &Cluster, i: usize) -> u64 {
    cluster.status(i).await.expect("member answers").header.unwrap().member_id
}

/// Waits until member `i` answers status with Raft's voters including it (its applied index
/// at the leader's), i.e. it was promoted and caught up.
async fn wait_caught_up(cluster: &Cluster, i: usize, leader: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let (Some(status), Some(lead)) = (cluster.status(i).await, cluster.status(leader).await) {
            if status.leader != 0 && status.raft_applied_index + 5 >= lead.raft_applied_index {
                return;
            }
        }
        assert!(Instant::now() < deadline, "member {i} did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `w/NNNNN` keys in a loop through whichever listed member answers, until stopped;
/// records each acknowledged write.
fn start_writer(
    endpoints: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(BTreeMap<String, String>, usize)> {
    tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        let mut failed = 0;
        let started = Instant::now();
        let mut n = 0u32;
        let mut turn = 0usize;
        // Bounded in time and count.
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) && n < 100_000 {
            let urls = endpoints.lock().unwrap().clone();
            let url = urls[turn % urls.len()].clone();
            let key = format!("w/{n:05}");
            n += 1;
            let written = async {
                let channel = Channel::from_shared(url).unwrap().connect().await.ok()?;
                let mut client = KvClient::new(channel);
                let request = client.put(put(&key, &n.to_string()));
                tokio::time::timeout(Duration::from_secs(10), request).await.ok()?.ok()
            }
            .await;
            match written {
                Some(_) => drop(acked.insert(key, n.to_string())),
                None => {
                    failed += 1;
                    turn += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (acked, failed)
    })
}

/// Checks every acknowledged write is on member `i` and the members' `hash_kv` agree.
async fn check_converged(cluster: &Cluster, members: &[usize], acked: &BTreeMap<String, String>) {
    let mut kv = cluster.kv(members[0]).await;
    let all = pb::RangeRequest { key: b"w/".to_vec(), range_end: b"w0".to_vec(), ..Default::default() };
    let found = kv.range(all).await.unwrap().into_inner();
    let revision = found.header.unwrap().revision;
    let stored: BTreeMap<String, String> = found
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
        .collect();
    for (key, value) in acked {
        assert_eq!(stored.get(key), Some(value), "acknowledged write {key} lost");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut hashes = Vec::new();
        for &i in members {
            let mut client = MaintenanceClient::new(cluster.channel(i).await);
            let response = client.hash_kv(pb::HashKvRequest { revision }).await;
            hashes.push(response.ok().map(|response| response.into_inner().hash));
        }
        if hashes.iter().all(|hash| hash.is_some() && *hash == hashes[0]) {
            return;
        }
        assert!(Instant::now() < deadline, "hash_kv at {revision} differs: {hashes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_from_one_to_five_under_writes_and_shrink_to_three_removing_the_leader() {
    let mut cluster = Cluster::start("grow", 1, &[]);
    cluster.leader(Duration::from_secs(20)).await;
    let endpoints = Arc::new(Mutex::new(vec![cluster.members[0].client.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(endpoints.clone(), stop.clone());

    for _ in 0..4 {
        let i = cluster.new_member();
        let running: Vec<usize> = (0..i).collect();
        add(&cluster, 0, i, false).await;
        cluster.spawn_joining(i, &running);
        let leader = cluster.leader(Duration::from_secs(20)).await;
        wait_caught_up(&cluster, i, leader).await;
        endpoints.lock().unwrap().push(cluster.members[i].client.clone());
    }
    // Each member publishes its name once it has joined.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = member_list(&cluster, 4).await;
        assert_eq!(members.len(), 5);
        assert!(members.iter().all(|member| !member.is_learner));
        if members.iter().all(|member| !member.name.is_empty() && !member.client_ur_ls.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "names never published: {members:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Shrink: remove the leader first (it hands over, then leaves), then one more.
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let leader_id = member_id(&cluster, leader).await;
    let other = (0..5).find(|i| *i != leader).unwrap();
    let other_id = member_id(&cluster, other).await;
    let via = (0..5).find(|i| *i != leader && *i != other).unwrap();
    let removed_at = Instant::now();
    let mut client = cluster_client(&cluster, via).await;
    client.member_remove(pb::MemberRemoveRequest { id: leader_id }).await.expect("remove the leader");
    eprintln!("removed the leader in {:?}", removed_at.elapsed());
    client.member_remove(pb::MemberRemoveRequest { id: other_id }).await.expect("remove a follower");
    let kept: Vec<usize> = (0..5).filter(|i| *i != leader && *i != other).collect();
    *endpoints.lock().unwrap() = kept.iter().map(|i| cluster.members[*i].client.clone()).collect();
    for gone in [leader, other] {
        let status = cluster.wait_exit(gone, Duration::from_secs(15)).expect("a removed member stops");
        assert!(!status.success(), "a removed member exits with an error");
        assert!(cluster.log(gone).contains("removed from the cluster"), "{}", cluster.log(gone));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (acked, failed) = writer.await.unwrap();
    eprintln!("{} writes acknowledged, {failed} failed or timed out while membership changed", acked.len());
    assert!(acked.len() > 100, "writes went on: {}", acked.len());
    assert_eq!(member_list(&cluster, kept[0]).await.len(), 3);
    check_converged(&cluster, &kept, &acked).await;

    // A removed member refuses to start again with its data dir.
    cluster.spawn(leader);
    let status = cluster.wait_exit(leader, Duration::from_secs(10)).expect("it exits at once");
    assert!(!status.success());
    assert!(cluster.log(leader).contains("cannot rejoin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_behind_a_compacted_log_catches_up_by_snapshot_and_is_promoted() {
    let mut cluster = Cluster::start("learner", 3, &["--snapshot-count", "50"]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(leader).await;
    for i in 0..300 {
        kv.put(put(&format!("k{i:03}"), &"v".repeat(100))).await.unwrap();
    }
    let learner = cluster.new_member();
    let id = add(&cluster, leader, learner, true).await;
    let mut client = cluster_client(&cluster, leader).await;
    let early = client.member_promote(pb::MemberPromoteRequest { id }).await.expect_err("not started yet");
    assert_eq!(early.message(), "etcdserver: can only promote a learner member which is in sync with leader");
    let second = cluster.new_member();
    let refused = client
        .member_add(pb::MemberAddRequest { peer_ur_ls: vec![cluster.members[second].peer.clone()], is_learner: true })
        .await
        .expect_err("one learner at a time");
    assert_eq!(refused.message(), "etcdserver: too many learner members in cluster");
    // MemberUpdate: new peer URLs in the table (here of a member not started yet); a URL
    // another member has is refused.
    let moved = "http://127.0.0.1:9".to_string();
    let updated = client
        .member_update(pb::MemberUpdateRequest { id, peer_ur_ls: vec![moved.clone()] })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(updated.iter().find(|member| member.id == id).unwrap().peer_ur_ls, [moved]);
    let taken = cluster.members[0].peer.clone();
    let refused = client.member_update(pb::MemberUpdateRequest { id, peer_ur_ls: vec![taken] }).await.unwrap_err();
    assert_eq!(refused.message(), "etcdserver: Peer URLs already exists");
    let back = vec![cluster.members[learner].peer.clone()];
    client.member_update(pb::MemberUpdateRequest { id, peer_ur_ls: back }).await.unwrap();
    cluster.spawn_joining(learner, &[0, 1, 2]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.member_promote(pb::MemberPromoteRequest { id }).await {
            Ok(response) => {
                let members = response.into_inner().members;
                assert!(members.iter().all(|member| !member.is_learner), "{members:?}");
                break;
            }
            Err(status) => {
                assert!(Instant::now() < deadline, "never promoted: {status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(cluster.log(learner).contains("snapshot installed"), "the learner caught up by snapshot");
    let mut on_learner = cluster.kv(learner).await;
    let serializable = pb::RangeRequest { key: b"k299".to_vec(), serializable: true, ..Default::default() };
    assert_eq!(on_learner.range(serializable).await.unwrap().into_inner().kvs.len(), 1);
    let refused = client.member_promote(pb::MemberPromoteRequest { id }).await.expect_err("already a voter");
    assert_eq!(refused.message(), "etcdserver: can only promote a learner member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_replaced_while_the_cluster_serves() {
    let mut cluster = Cluster::start("replace", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let dead = (0..3).find(|i| *i != leader).unwrap();
    let dead_id = member_id(&cluster, dead).await;
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let endpoints = Arc::new(Mutex::new(alive.iter().map(|i| cluster.members[*i].client.clone()).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(endpoints.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(dead);

    let mut client = cluster_client(&cluster, alive[0]).await;
    let missing = client.member_remove(pb::MemberRemoveRequest { id: 0x1234 }).await.expect_err("no such member");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // With one voter down, removing a live one would leave one of two: refused (etcd's
    // --strict-reconfig-check).
    tokio::time::sleep(Duration::from_millis(2 * common::ELECTION_MS + 200)).await;
    let live_id = member_id(&cluster, alive[1]).await;
    let refused = client.member_remove(pb::MemberRemoveRequest { id: live_id }).await.expect_err("unsafe");
    assert_eq!(refused.message(), "etcdserver: re-configuration failed due to not enough started members");
    client.member_remove(pb::MemberRemoveRequest { id: dead_id }).await.expect("remove the dead member");
    let fresh = cluster.new_member();
    add(&cluster, alive[0], fresh, false).await;
    cluster.spawn_joining(fresh, &alive);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    wait_caught_up(&cluster, fresh, leader).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (acked, failed) = writer.await.unwrap();
    eprintln!("{} writes acknowledged, {failed} failed", acked.len());
    let members = member_list(&cluster, fresh).await;
    assert_eq!(members.len(), 3);
    assert!(!members.iter().any(|member| member.id == dead_id));
    check_converged(&cluster, &[alive[0], alive[1], fresh], &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_promote_learners_promotes_a_learner_once_it_caught_up() {
    let mut cluster = Cluster::start("autopromote", 3, &["--auto-promote-learners"]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let learner = cluster.new_member();
    let id = add(&cluster, leader, learner, true).await;
    assert!(member_list(&cluster, leader).await.iter().any(|member| member.id == id && member.is_learner));
    cluster.spawn_joining(learner, &[0, 1, 2]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while member_list(&cluster, leader).await.iter().any(|member| member.id == id && member.is_learner) {
        assert!(Instant::now() < deadline, "the learner was never promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.log(leader).contains("promoting a learner that caught up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_restarted_with_force_new_cluster_keeps_the_data_and_takes_new_members() {
    let mut cluster = Cluster::start("force", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(leader).await;
    for i in 0..20 {
        kv.put(put(&format!("k{i:02}"), "v")).await.unwrap();
    }
    // Two of three members are lost for good: the survivor can never elect a leader again.
    let survivor = (leader + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            cluster.kill(i);
        }
    }
    cluster.kill(survivor);
    cluster.spawn_with(survivor, &["--force-new-cluster"]);
    assert_eq!(cluster.leader(Duration::from_secs(20)).await, survivor, "it leads a cluster of one");
    assert_eq!(member_list(&cluster, survivor).await.len(), 1, "the lost members are dropped");
    let mut kv = cluster.kv(survivor).await;
    let all = pb::RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    assert_eq!(kv.range(all.clone()).await.unwrap().into_inner().kvs.len(), 20, "every committed write is kept");
    kv.put(put("after", "force")).await.expect("it takes writes alone");
    // Restarted without the flag it stays the cluster it became, and grows again.
    cluster.kill(survivor);
    cluster.spawn(survivor);
    cluster.leader(Duration::from_secs(20)).await;
    let newcomer = cluster.new_member();
    add(&cluster, survivor, newcomer, false).await;
    cluster.spawn_joining(newcomer, &[survivor]);
    wait_caught_up(&cluster, newcomer, survivor).await;
    assert_eq!(member_list(&cluster, survivor).await.len(), 2);
    let mut kv = cluster.kv(newcomer).await;
    assert_eq!(kv.range(all).await.unwrap().into_inner().kvs.len(), 20, "the newcomer has the data");
    kv.put(put("grown", "again")).await.expect("a cluster of two takes writes");
}

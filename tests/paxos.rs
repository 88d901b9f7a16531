//! Process tests of `ballot serve --consensus paxos`: real processes on loopback running the
//! Multi-Paxos engine behind the same etcd API.

mod common;

use std::time::{Duration, Instant};

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::cluster_client::ClusterClient;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use common::{get, put, Cluster};

const PAXOS: &[&str] = &["--consensus", "paxos"];

fn start(test: &str, extra: &[&str]) -> Cluster {
    let mut cluster = Cluster::prepare(test, 3, extra);
    for i in 0..3 {
        cluster.spawn_with(i, PAXOS);
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_paxos_cluster_serves_the_etcd_api_catches_up_a_follower_and_survives_its_leader() {
    let mut cluster = start("paxos-serve", &["--snapshot-count", "50"]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut kv = cluster.kv(followers[0]).await;
    kv.put(put("greeting", "hello")).await.expect("a follower forwards the write");
    let found = cluster.kv(followers[1]).await.range(get("greeting")).await.unwrap().into_inner();
    assert_eq!(found.kvs[0].value, b"hello", "a linearizable read on the other follower sees it");

    // A fixed membership: changes and leader moves are refused, and say why.
    let mut members = ClusterClient::new(cluster.channel(leader).await);
    let listed = members.member_list(pb::MemberListRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.members.len(), 3, "the founding table fills from slot 1");
    let add = pb::MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:9".into()], is_learner: false };
    let refused = members.member_add(add).await.expect_err("no membership changes");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    assert!(refused.message().contains("--consensus paxos"), "{}", refused.message());
    let target = cluster.status(followers[0]).await.unwrap().header.unwrap().member_id;
    let mut maintenance = MaintenanceClient::new(cluster.channel(leader).await);
    let moved = maintenance.move_leader(pb::MoveLeaderRequest { target_id: target }).await;
    assert_eq!(moved.expect_err("no leader moves").code(), tonic::Code::Unimplemented);

    // A follower killed while the log moves past its compaction point catches up by snapshot.
    let follower = followers[1];
    cluster.kill(follower);
    for i in 0..200 {
        kv.put(put(&format!("during{i:03}"), &"x".repeat(64))).await.unwrap();
    }
    cluster.spawn_with(follower, PAXOS);
    let revision = kv.put(put("last", "v")).await.unwrap().into_inner().header.unwrap().revision;
    cluster.assert_caught_up_by_snapshot(follower, leader, revision).await;

    // The leader dies: another is elected and nothing acknowledged is lost.
    cluster.kill(leader);
    let killed = Instant::now();
    let next = cluster.leader(Duration::from_secs(15)).await;
    eprintln!("a new Multi-Paxos leader {:?} after the kill -9", killed.elapsed());
    assert_ne!(next, leader);
    let mut kv = cluster.kv(next).await;
    let all = pb::RangeRequest { key: b"during".to_vec(), range_end: b"durinh".to_vec(), ..Default::default() };
    assert_eq!(kv.range(all).await.unwrap().into_inner().kvs.len(), 200, "every acknowledged write survives");
    kv.put(put("after", "failover")).await.expect("the cluster takes writes again");
}

#[test]
fn a_data_dir_refuses_the_other_engine_and_a_paxos_cluster_refuses_joiners() {
    let mut cluster = start("paxos-engine", &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let leader = cluster.leader(Duration::from_secs(20)).await;
        cluster.kv(leader).await.put(put("k", "v")).await.unwrap();
    });
    cluster.kill(0);
    cluster.spawn(0);
    let status = cluster.wait_exit(0, Duration::from_secs(10)).expect("a member with the other engine stops");
    assert!(!status.success());
    let log = cluster.log(0);
    assert!(log.contains("running --consensus paxos; refusing to start it with --consensus raft"), "{log}");

    let joiner = cluster.new_member();
    cluster.members[joiner].joining =
        Some(format!("{},m4={}", cluster.initial_cluster(), cluster.members[joiner].peer));
    cluster.spawn_with(joiner, PAXOS);
    let status = cluster.wait_exit(joiner, Duration::from_secs(10)).expect("a joiner stops");
    assert!(!status.success());
    assert!(cluster.log(joiner).contains("cannot join a --consensus paxos cluster"), "{}", cluster.log(joiner));
}

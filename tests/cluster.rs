//! Process tests: real `ballot serve` processes on loopback, driven through the etcd API.

mod common;

use std::time::{Duration, Instant};

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::watch_client::WatchClient;
use common::{get, put, Cluster, ELECTION_MS};

fn others(leader: usize, n: usize) -> Vec<usize> {
    (0..n).filter(|i| *i != leader).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_cluster_and_followers_take_writes() {
    let cluster = Cluster::start("form", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let followers = others(leader, 3);
    let mut first = cluster.kv(followers[0]).await;
    let response = first.put(put("greeting", "hello")).await.expect("a follower forwards the write").into_inner();
    assert!(response.header.unwrap().revision >= 2);
    // A linearizable read on the other follower sees the write at once.
    let mut second = cluster.kv(followers[1]).await;
    let found = second.range(get("greeting")).await.unwrap().into_inner();
    assert_eq!(found.kvs[0].value, b"hello");
    let members = ballot_proto::etcdserverpb::cluster_client::ClusterClient::new(cluster.channel(leader).await)
        .member_list(pb::MemberListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 3);
    assert!(members.members.iter().all(|m| m.client_ur_ls.len() == 1), "client URLs are learned: {members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_quickly_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start("failover", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let survivor = others(leader, 3)[0];
    let mut kv = cluster.kv(survivor).await;
    for i in 0..50 {
        kv.put(put(&format!("k{i:02}"), &i.to_string())).await.unwrap();
    }
    cluster.kill(leader);
    let killed = Instant::now();
    let new_leader = cluster.leader(Duration::from_secs(10)).await;
    let took = killed.elapsed();
    eprintln!("a new leader {took:?} after the kill -9 (election timeout {ELECTION_MS} ms)");
    assert_ne!(new_leader, leader);
    assert!(took < Duration::from_millis(3 * ELECTION_MS), "a new leader took {took:?}");
    let all = pb::RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    let found = kv.range(all).await.unwrap().into_inner();
    assert_eq!(found.kvs.len(), 50, "every acknowledged write survives");
    kv.put(put("after", "failover")).await.expect("the cluster takes writes again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_under_load_catches_up_by_snapshot_with_the_same_hash() {
    let mut cluster = Cluster::start("catchup", 3, &["--snapshot-count", "50"]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let follower = others(leader, 3)[0];
    let mut kv = cluster.kv(leader).await;
    for i in 0..20 {
        kv.put(put(&format!("before{i}"), "v")).await.unwrap();
    }
    cluster.kill(follower);
    for i in 0..300 {
        kv.put(put(&format!("during{i}"), &"x".repeat(100))).await.unwrap();
    }
    // The load goes on while the follower restarts and catches up (bounded in count and time).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load_kv = cluster.kv(leader).await;
    let load_stop = stop.clone();
    let load = tokio::spawn(async move {
        let started = Instant::now();
        let mut i = 0;
        while !load_stop.load(std::sync::atomic::Ordering::SeqCst)
            && i < 3000
            && started.elapsed() < Duration::from_secs(20)
        {
            load_kv.put(put(&format!("load{i}"), "v")).await.expect("writes go on during the catch-up");
            i += 1;
        }
        i
    });
    cluster.spawn(follower);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(load.await.unwrap() > 0);
    let revision = kv.put(put("last", "v")).await.unwrap().into_inner().header.unwrap().revision;
    cluster.assert_caught_up_by_snapshot(follower, leader, revision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_leadership_over_with_no_failed_request() {
    let mut cluster = Cluster::start("handover", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let rest = others(leader, 3);
    let mut writers = Vec::new();
    for (w, member) in rest.iter().enumerate() {
        let mut kv = cluster.kv(*member).await;
        writers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let started = Instant::now();
            let mut i = 0;
            // Bounded in count and time.
            while i < 400 && started.elapsed() < Duration::from_secs(8) {
                if let Err(error) = kv.put(put(&format!("w{w}-{i}"), "v")).await {
                    failures.push(error.to_string());
                }
                i += 1;
            }
            (i, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = Instant::now();
    assert!(cluster.terminate(leader), "the leader exits cleanly:\n{}", cluster.log(leader));
    let stop_took = stopped_at.elapsed();
    for writer in writers {
        let (done, failures) = writer.await.unwrap();
        assert!(done > 0);
        assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    }
    let new_leader = cluster.leader(Duration::from_secs(5)).await;
    assert_ne!(new_leader, leader);
    assert!(cluster.log(leader).contains("handing leadership over"), "{}", cluster.log(leader));
    assert!(stop_took < Duration::from_secs(5), "stopping took {stop_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_member_even_while_a_client_keeps_a_watch_open() {
    let mut cluster = Cluster::start("sigterm-watch", 1, &[]);
    let channel = cluster.channel(0).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = pb::WatchCreateRequest { key: b"w".to_vec(), ..Default::default() };
    tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
        .await
        .unwrap();
    let mut stream = WatchClient::new(channel).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap();
    assert!(stream.get_mut().message().await.unwrap().unwrap().created);
    // The client neither closes the stream nor goes away: draining must not wait for it.
    let stopped_at = Instant::now();
    assert!(cluster.terminate(0), "the member exits cleanly:\n{}", cluster.log(0));
    assert!(stopped_at.elapsed() < Duration::from_secs(8), "stopping took {:?}", stopped_at.elapsed());
    assert!(cluster.log(0).contains("closing the client streams still open"), "{}", cluster.log(0));
    drop(tx);
}

async fn time_to_live(cluster: &Cluster, i: usize, id: i64) -> i64 {
    let mut lease = ballot_proto::etcdserverpb::lease_client::LeaseClient::new(cluster.channel(i).await);
    lease.lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: false }).await.unwrap().into_inner().ttl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_neither_resets_nor_cuts_a_lease() {
    let mut cluster = Cluster::start("lease", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let survivor = others(leader, 3)[0];
    let mut leases = ballot_proto::etcdserverpb::lease_client::LeaseClient::new(cluster.channel(survivor).await);
    let granted = Instant::now();
    let lease = leases.lease_grant(pb::LeaseGrantRequest { ttl: 6, id: 0 }).await.unwrap().into_inner();
    let mut kv = cluster.kv(survivor).await;
    kv.put(pb::PutRequest { key: b"leased".to_vec(), value: b"v".to_vec(), lease: lease.id, ..Default::default() })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(leader);
    cluster.leader(Duration::from_secs(10)).await;
    let ttl = time_to_live(&cluster, survivor, lease.id).await;
    let elapsed = granted.elapsed().as_secs_f64();
    // Not reset to the full 6 s, not cut: what was left, rounded up.
    assert!((1..=5).contains(&ttl) && (ttl as f64) <= 6.0 - elapsed + 1.0, "ttl {ttl} after {elapsed:.1} s");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kv.range(get("leased")).await.unwrap().into_inner().kvs.is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expired_after = granted.elapsed();
    assert!(
        expired_after >= Duration::from_millis(5500) && expired_after < Duration::from_millis(8000),
        "a 6 s lease expired after {expired_after:?}"
    );
}

#[test]
fn a_peer_from_another_cluster_is_refused_with_a_clear_log_line() {
    let dir = std::env::temp_dir().join(format!("ballot-other-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = common::free_ports(4);
    let ours = format!("http://127.0.0.1:{}", ports[0]);
    let theirs = format!("http://127.0.0.1:{}", ports[1]);
    let serve = |name: &str, peer: &str, cluster: &str, token: &str| {
        let client = if name == "a" { ports[2] } else { ports[3] };
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
            .arg("serve")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir.join(name))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", cluster, "--initial-cluster-token", token])
            .stderr(log)
            .spawn()
            .unwrap()
    };
    // A one-member cluster, and a member of another cluster that lists the first one's peer URL.
    let mut a = serve("a", &ours, &format!("a={ours}"), "one");
    let mut b = serve("b", &theirs, &format!("a={ours},b={theirs}"), "two");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let log = std::fs::read_to_string(dir.join("a.log")).unwrap_or_default();
        if log.contains("refusing a peer from another cluster") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(refused.contains("refusing a peer from another cluster"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

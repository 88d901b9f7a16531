//! The read levels on real processes: causal reads on followers wait for the revision their
//! client has seen and refuse (naming both revisions) beyond `--max-causal-wait`; reads as of
//! a time find the revision written then, across leader changes, restarts and compaction.

mod common;

use std::time::{Duration, Instant};

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use ballot_server::api::caller::{AS_OF, AS_OF_REVISION, AS_OF_TIME, MIN_REVISION};
use common::{put, Cluster};

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A serializable read of `key` carrying `min_revision`: its value and header revision.
async fn causal_get(
    cluster: &Cluster,
    i: usize,
    key: &str,
    min_revision: i64,
) -> Result<(Vec<u8>, i64), tonic::Status> {
    let message = pb::RangeRequest { key: key.into(), serializable: true, ..Default::default() };
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(MIN_REVISION, min_revision.to_string().parse().unwrap());
    let answer = cluster.kv(i).await.range(request).await?.into_inner();
    let value = answer.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
    Ok((value, answer.header.unwrap().revision))
}

/// A read of `key` as of `ms`: its value and the revision the answer says it used.
async fn get_as_of(
    cluster: &Cluster,
    i: usize,
    key: &str,
    ms: u64,
    serializable: bool,
) -> Result<(Vec<u8>, i64), tonic::Status> {
    let message = pb::RangeRequest { key: key.into(), serializable, ..Default::default() };
    let mut request = tonic::Request::new(message);
    let time = ballot_server::timestamp::format_ms(ms);
    request.metadata_mut().insert(AS_OF, time.parse().unwrap());
    let answer = cluster.kv(i).await.range(request).await?;
    let used = answer
        .metadata()
        .get(AS_OF_REVISION)
        .expect("the answer names its revision")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(answer.metadata().get(AS_OF_TIME).is_some());
    let value = answer.into_inner().kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
    Ok((value, used))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_reads_wait_for_what_the_client_saw_and_refuse_beyond_the_bound() {
    let cluster = Cluster::start("causal", 3, &["--max-causal-wait", "400ms"]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let written = cluster.kv(leader).await.put(put("k", "1")).await.unwrap().into_inner().header.unwrap().revision;
    // Read your write on a follower: never older than the write.
    let (value, revision) = causal_get(&cluster, follower, "k", written).await.unwrap();
    assert_eq!((value.as_slice(), revision >= written), (&b"1"[..], true));
    // A revision not written yet: the read waits for it (a write lands 150 ms later).
    let later = tokio::spawn({
        let endpoint = cluster.endpoint(leader);
        async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut kv = pb::kv_client::KvClient::new(endpoint.connect().await.unwrap());
            kv.put(put("k", "2")).await.unwrap();
        }
    });
    let (value, revision) = causal_get(&cluster, follower, "k", written + 1).await.unwrap();
    assert_eq!((value.as_slice(), revision), (&b"2"[..], written + 1));
    later.await.unwrap();
    // Beyond what the cluster has: refused after the bound, with both revisions named.
    let started = Instant::now();
    let refused = causal_get(&cluster, follower, "k", written + 100).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains(&format!("needs revision {}", written + 100)), "{}", refused.message());
    assert!(refused.message().contains(&format!("has applied revision {}", written + 1)), "{}", refused.message());
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_as_of_a_time_hold_across_leader_changes_restarts_and_compaction() {
    let mut cluster = Cluster::start("as-of", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let mut times = Vec::new();
    let mut revisions = Vec::new();
    let mut current = leader;
    for round in 0..3 {
        let answer = cluster.kv(current).await.put(put("k", &format!("v{round}"))).await.unwrap().into_inner();
        revisions.push(answer.header.unwrap().revision);
        // A time after the write was acknowledged, and before the next one.
        tokio::time::sleep(Duration::from_millis(30)).await;
        times.push(wall_ms());
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Leadership moves between the writes: the next leader's stamps come after these.
        let target = (current + 1) % 3;
        let target_id = cluster.status(target).await.unwrap().header.unwrap().member_id;
        let mut maintenance = MaintenanceClient::new(cluster.channel(current).await);
        maintenance.move_leader(pb::MoveLeaderRequest { target_id }).await.unwrap();
        current = cluster.leader(Duration::from_secs(10)).await;
        assert_eq!(current, target);
    }
    for (round, (time, revision)) in times.iter().zip(&revisions).enumerate() {
        for member in 0..3 {
            let (value, used) = get_as_of(&cluster, member, "k", *time, member != current).await.unwrap();
            assert_eq!((value, used), (format!("v{round}").into_bytes(), *revision), "member {member}, round {round}");
        }
    }
    // Before the first write: nothing is stamped that early.
    let early = get_as_of(&cluster, current, "k", times[0] - 60_000, false).await.unwrap_err();
    assert_eq!(early.code(), tonic::Code::InvalidArgument, "{}", early.message());
    // A restarted member keeps its stamps.
    let restarted = (current + 1) % 3;
    cluster.kill(restarted);
    cluster.spawn(restarted);
    cluster.leader(Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (value, used) = loop {
        match get_as_of(&cluster, restarted, "k", times[1], true).await {
            Ok(answer) => break answer,
            Err(status) if Instant::now() < deadline => eprintln!("restarted member not ready: {}", status.message()),
            Err(status) => panic!("{status}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((value, used), (b"v1".to_vec(), revisions[1]));
    // Compacted past the first write: a read as of its time is refused as compacted, a later
    // one still answers.
    let mut kv = cluster.kv(current).await;
    kv.compact(pb::CompactionRequest { revision: revisions[1], physical: true }).await.unwrap();
    let compacted = get_as_of(&cluster, current, "k", times[0], false).await.unwrap_err();
    assert_eq!(compacted.code(), tonic::Code::OutOfRange, "{}", compacted.message());
    assert!(compacted.message().contains("compacted"), "{}", compacted.message());
    assert_eq!(get_as_of(&cluster, current, "k", times[1], false).await.unwrap(), (b"v1".to_vec(), revisions[1]));
    assert_eq!(get_as_of(&cluster, current, "k", times[2], false).await.unwrap(), (b"v2".to_vec(), revisions[2]));
    // As of a time and at a revision together: refused.
    let mut both = tonic::Request::new(pb::RangeRequest { key: b"k".to_vec(), revision: 2, ..Default::default() });
    both.metadata_mut().insert(AS_OF, times[1].to_string().parse().unwrap());
    let refused = cluster.kv(current).await.range(both).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

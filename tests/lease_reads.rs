//! The leader lease on real processes: a leader serving reads from its lease is stopped
//! (SIGSTOP) for longer than the election timeout while the others elect a new leader and take
//! a write; once it runs again it must not answer a read that misses that write. Its lease is
//! measured on the clock, which ran on while it was stopped, not in ticks, which did not come.

mod common;

use std::time::{Duration, Instant};

use ballot_proto::etcdserverpb::kv_client::KvClient;
use common::{get, put, Cluster, ELECTION_MS};
use tonic::transport::Channel;

/// Reads sent to the stopped leader in each round: the more, the likelier one is taken before
/// the messages from the new leader that depose it. (With the lease counted in ticks, a round
/// of 32 caught the stale read about half the time; three rounds, seven times in eight.)
const READS_WAITING: usize = 32;

async fn read_value(cluster: &Cluster, i: usize) -> Result<Vec<u8>, tonic::Status> {
    let mut kv = cluster.kv(i).await;
    let response = kv.range(get("k")).await?.into_inner();
    Ok(response.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default())
}

/// Reads `k` on `client` (bounded in time): the value, or why it failed.
async fn read_on(mut client: KvClient<Channel>) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(Duration::from_secs(15), client.range(get("k"))).await {
        Ok(Ok(response)) => Ok(response.into_inner().kvs.first().map(|kv| kv.value.clone()).unwrap_or_default()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_serves_no_stale_read_when_it_resumes() {
    let cluster = Cluster::start("lease-stall", 3, &["--lease-reads"]);
    let mut old = cluster.leader(Duration::from_secs(20)).await;
    cluster.kv(old).await.put(put("k", "0")).await.unwrap();
    for round in 1..=3 {
        let before = (round - 1).to_string().into_bytes();
        let after = round.to_string().into_bytes();
        // Reads on the leader are served from its lease (and see the last write).
        for _ in 0..10 {
            assert_eq!(read_value(&cluster, old).await.unwrap(), before);
        }
        // Connections made now and used once it is stopped: their reads wait in its sockets.
        let mut waiting = Vec::new();
        for _ in 0..READS_WAITING {
            waiting.push(cluster.kv(old).await);
        }
        cluster.signal(old, "STOP");
        let stopped = Instant::now();
        let new = cluster.leader(Duration::from_secs(20)).await;
        assert_ne!(new, old, "a new leader among the others");
        cluster.kv(new).await.put(put("k", &round.to_string())).await.expect("the new leader takes a write");
        let reads: Vec<_> = waiting.into_iter().map(|client| tokio::spawn(read_on(client))).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(stopped.elapsed() > Duration::from_millis(2 * ELECTION_MS), "stopped for longer than its lease");
        cluster.signal(old, "CONT");
        let mut answered = 0;
        for read in reads {
            match read.await.unwrap() {
                Ok(value) => {
                    assert_eq!(
                        value, after,
                        "round {round}: a read served after the resume missed an acknowledged write"
                    );
                    answered += 1;
                }
                Err(why) => eprintln!("a read on the resumed member failed (allowed): {why}"),
            }
        }
        eprintln!(
            "round {round}: {answered} of {READS_WAITING} reads waiting on the stopped leader answered, all up to date"
        );
        // It serves again, up to date, as a follower.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match read_value(&cluster, old).await {
                Ok(value) => {
                    assert_eq!(value, after);
                    break;
                }
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => panic!("the resumed member does not serve: {error}\n{}", cluster.log(old)),
            }
        }
        old = new;
    }
}

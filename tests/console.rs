//! The web console's server side on real processes: the page, the cluster view once and as a
//! stream of server-sent events that pushes a leader change. (The page itself is driven in
//! Chromium by `browser/console_check.py`.)

mod common;

use std::time::{Duration, Instant};

use common::{http, Cluster};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(cluster: &Cluster, i: usize) -> String {
    cluster.client_url(i).trim_start_matches("http://").to_string()
}

/// The cluster views a member's `/ui/cluster` stream pushes within `seconds`.
async fn pushed(address: &str, seconds: u64, during: impl std::future::Future<Output = ()>) -> Vec<Value> {
    let mut socket = TcpStream::connect(address).await.unwrap();
    let request = format!("GET /ui/cluster HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let reading = async {
        let mut raw = Vec::new();
        let mut buffer = [0u8; 8192];
        let until = Instant::now() + Duration::from_secs(seconds);
        while let Ok(Ok(n)) = tokio::time::timeout_at(until.into(), socket.read(&mut buffer)).await {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buffer[..n]);
        }
        raw
    };
    let (raw, ()) = tokio::join!(reading, during);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"), "{text}");
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("each event is a JSON view"))
        .collect()
}

fn leader_of(view: &Value) -> Option<String> {
    let members = view["members"].as_array()?;
    let leaders: Vec<&Value> = members.iter().filter(|m| m["is_leader"] == true).collect();
    (leaders.len() == 1).then(|| leaders[0]["id"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_serves_the_console_and_pushes_the_cluster_view_as_it_changes() {
    let mut cluster = Cluster::start("console", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let (status, page) = http(&address(&cluster, 0), "GET", "/ui", "", None).await;
    assert_eq!(status, 200);
    assert!(page.as_str().is_some_and(|html| html.contains("<title>ballot console</title>")));

    // A member publishes its client URL through the log once it runs; until then the view
    // cannot reach it. Wait (bounded) for all three.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, view) = loop {
        let (status, view) = http(&address(&cluster, 1), "GET", "/ui/cluster.json", "", None).await;
        let all = view["members"].as_array().is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["reachable"] == true));
        if all || Instant::now() >= deadline {
            break (status, view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200);
    assert_eq!(view["members"].as_array().map(Vec::len), Some(3), "{view}");
    assert!(view["members"].as_array().unwrap().iter().all(|m| m["reachable"] == true), "{view}");
    assert!(leader_of(&view).is_some(), "one leader: {view}");

    // Watched from a member that stays up, the stream shows the leader's death and its successor.
    let watcher = (leader + 1) % 3;
    let old = leader_of(&view).unwrap();
    let views = pushed(&address(&cluster, watcher), 8, async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.kill(leader);
    })
    .await;
    assert!(!views.is_empty(), "the stream pushed nothing");
    assert_eq!(leader_of(&views[0]).as_deref(), Some(old.as_str()), "the first view has the old leader");
    let last = views.last().unwrap();
    let new = leader_of(last).expect("a new leader in the last view");
    assert_ne!(new, old);
    let dead = last["members"].as_array().unwrap().iter().find(|m| m["id"] == old.as_str()).unwrap();
    assert_eq!(dead["reachable"], false, "{last}");
    assert!(
        last["leader_changes"].as_array().unwrap().iter().any(|c| c["leader"] == new.as_str()),
        "the timeline has the change: {last}"
    );
}

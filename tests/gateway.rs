//! etcd's JSON gateway on real members: every path answers, through a follower as through the
//! leader, with etcd's JSON, statuses and error bodies; a watch streams puts as they happen; a
//! keep-alive answers and ends; the token travels in `Authorization`. (compat/diff_gateway.py
//! compares the same answers with etcd 3.4's.)

mod common;

use std::time::{Duration, Instant};

use common::{http, Cluster};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn b64(text: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { TABLE[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

async fn post(address: &str, path: &str, body: Value) -> (u16, Value) {
    http(address, "POST", path, &body.to_string(), None).await
}

/// A streaming call: the objects of the answer, read as they come, for `seconds`, with
/// `during` run once the answer has begun.
async fn stream(
    address: &str,
    path: &str,
    body: Value,
    seconds: u64,
    during: impl std::future::Future<Output = ()>,
) -> Vec<Value> {
    let mut socket = TcpStream::connect(address).await.unwrap();
    let body = body.to_string();
    let request = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.contains("200"), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let reading = async {
        let mut objects = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut size_line = String::new();
        while Instant::now() < deadline {
            size_line.clear();
            match tokio::time::timeout(deadline - Instant::now(), reader.read_line(&mut size_line)).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => break,
            }
            let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            objects.push(serde_json::from_slice(&chunk[..size]).expect("each chunk is one JSON object"));
        }
        objects
    };
    let (objects, ()) = tokio::join!(reading, during);
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_gateway_serves_every_path_with_etcds_json() {
    let cluster = Cluster::start("gateway", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let address = cluster.client_url(follower).trim_start_matches("http://").to_string();
    let at = address.as_str();

    let (status, version) = http(at, "GET", "/version", "", None).await;
    assert_eq!((status, version), (200, json!({"etcdserver": "3.4.0", "etcdcluster": "3.4.0"})));

    // KV, forwarded by a follower, under /v3 and /v3beta; 64-bit integers as strings.
    let (status, put) = post(at, "/v3/kv/put", json!({"key": b64("a"), "value": b64("1")})).await;
    assert_eq!(status, 200);
    let revision: i64 = put["header"]["revision"].as_str().unwrap().parse().unwrap();
    let (_, put) = post(at, "/v3beta/kv/put", json!({"key": b64("a"), "value": b64("2"), "prev_kv": true})).await;
    assert_eq!(put["prev_kv"]["value"], b64("1"));
    let (_, range) = post(at, "/v3/kv/range", json!({"key": b64("a")})).await;
    assert_eq!(range["kvs"][0]["value"], b64("2"));
    assert_eq!(range["kvs"][0]["version"], "2");
    assert_eq!(range["count"], "1");
    let (_, old) = post(at, "/v3/kv/range", json!({"key": b64("a"), "revision": revision.to_string()})).await;
    assert_eq!(old["kvs"][0]["value"], b64("1"));
    let create_if_absent = json!({
        "compare": [{"target": "CREATE", "create_revision": 0, "key": b64("leader")}],
        "success": [{"request_put": {"key": b64("leader"), "value": b64("n1")}}]
    });
    let (_, txn) = post(at, "/v3/kv/txn", create_if_absent.clone()).await;
    assert_eq!(txn["succeeded"], true);
    let (_, txn) = post(at, "/v3/kv/txn", create_if_absent).await;
    assert!(txn.get("succeeded").is_none(), "false is left out: {txn}");
    let (_, deleted) = post(at, "/v3/kv/deleterange", json!({"key": b64("leader")})).await;
    assert_eq!(deleted["deleted"], "1");

    // Leases; the error clients re-grant on.
    let (_, grant) = post(at, "/v3/lease/grant", json!({"TTL": 30})).await;
    let lease = grant["ID"].as_str().expect("the id as a string").to_string();
    let (_, ttl) = post(at, "/v3/kv/lease/timetolive", json!({"ID": lease, "keys": true})).await;
    assert_eq!(ttl["grantedTTL"], "30");
    let (_, leases) = post(at, "/v3/lease/leases", json!({})).await;
    assert_eq!(leases["leases"][0]["ID"], lease);
    let (status, missing) = post(at, "/v3/kv/put", json!({"key": b64("l"), "value": b64("v"), "lease": "12345"})).await;
    assert_eq!(status, 404);
    assert_eq!(
        missing,
        json!({"error": "etcdserver: requested lease not found", "message": "etcdserver: requested lease not found", "code": 5})
    );
    let renewed = stream(at, "/v3/lease/keepalive", json!({"ID": lease}), 5, async {}).await;
    assert_eq!(renewed.len(), 1, "one answer, then the end: {renewed:?}");
    assert_eq!(renewed[0]["result"]["TTL"], "30");
    let (_, revoked) = post(at, "/v3/lease/revoke", json!({"ID": lease})).await;
    assert!(revoked["header"].is_object());

    // A watch: created first, then the events as they happen (a put has no type).
    let events = stream(at, "/v3/watch", json!({"create_request": {"key": b64("w")}}), 3, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        post(at, "/v3/kv/put", json!({"key": b64("w"), "value": b64("x")})).await;
        post(at, "/v3/kv/deleterange", json!({"key": b64("w")})).await;
    })
    .await;
    assert_eq!(events[0]["result"]["created"], true, "{events:?}");
    let kinds: Vec<Value> = events[1..]
        .iter()
        .flat_map(|e| e["result"]["events"].as_array().cloned().unwrap_or_default())
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(kinds, [Value::Null, json!("DELETE")], "{events:?}");

    // Cluster, Maintenance, Lock, Election.
    let (_, members) = post(at, "/v3/cluster/member/list", json!({})).await;
    let members = members["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["clientURLs"].as_array().is_some_and(|urls| urls.len() == 1)), "{members:?}");
    let (status, _) = post(at, "/v3/cluster/member/remove", json!({"ID": "1234"})).await;
    assert_eq!(status, 404);
    let (_, status_answer) = post(at, "/v3/maintenance/status", json!({})).await;
    assert_eq!(status_answer["version"], "3.4.0");
    let (_, alarms) = post(at, "/v3/maintenance/alarm", json!({"action": "GET"})).await;
    assert_eq!(alarms, json!({}));
    let (status, _) = post(at, "/v3/maintenance/hash", json!({})).await;
    assert_eq!(status, 200);
    let (_, grant) = post(at, "/v3/lease/grant", json!({"TTL": 30})).await;
    let lease = grant["ID"].as_str().unwrap().to_string();
    let (_, locked) = post(at, "/v3/lock/lock", json!({"name": b64("lk"), "lease": lease})).await;
    let (_, unlocked) = post(at, "/v3/lock/unlock", json!({"key": locked["key"]})).await;
    assert!(unlocked["header"].is_object(), "{unlocked}");
    let (_, campaign) =
        post(at, "/v3/election/campaign", json!({"name": b64("el"), "lease": lease, "value": b64("me")})).await;
    let (_, leader_now) = post(at, "/v3/election/leader", json!({"name": b64("el")})).await;
    assert_eq!(leader_now["kv"]["value"], b64("me"));
    let (_, resigned) = post(at, "/v3/election/resign", json!({"leader": campaign["leader"]})).await;
    assert!(resigned["header"].is_object(), "{resigned}");

    // Errors: a body that is not the message, a path nothing serves, a method that is not POST.
    let (status, bad) = http(at, "POST", "/v3/kv/range", "{\"key\":", None).await;
    assert_eq!((status, bad["code"].clone()), (400, json!(3)));
    let (status, _) = post(at, "/v3/kv/nothing", json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = http(at, "GET", "/v3/kv/range", "", None).await;
    assert_eq!(status, 405);

    // Auth: on, the token in Authorization; off again.
    post(at, "/v3/auth/user/add", json!({"name": "root", "password": "pw"})).await;
    post(at, "/v3/auth/user/grant", json!({"user": "root", "role": "root"})).await;
    let (status, _) = post(at, "/v3/auth/enable", json!({})).await;
    assert_eq!(status, 200);
    let (status, refused) = post(at, "/v3/kv/range", json!({"key": b64("a")})).await;
    assert_eq!((status, refused["message"].clone()), (400, json!("etcdserver: user name is empty")));
    let (_, login) = post(at, "/v3/auth/authenticate", json!({"name": "root", "password": "pw"})).await;
    let token = login["token"].as_str().unwrap().to_string();
    let (status, range) = http(at, "POST", "/v3/kv/range", &json!({"key": b64("a")}).to_string(), Some(&token)).await;
    assert_eq!((status, range["count"].clone()), (200, json!("1")));
    let (status, _) = http(at, "POST", "/v3/auth/disable", "{}", Some(&token)).await;
    assert_eq!(status, 200);
}

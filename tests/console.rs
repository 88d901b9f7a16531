//! The web console's server side on real processes: the page, the cluster view once and as a
//! stream of server-sent events that pushes a leader change; the session and the guarded
//! actions (forgery refused, permissions by role, `--ui-read-only`). (The page itself is driven
//! in Chromium by `browser/console_check.py`.)

mod common;

use std::time::{Duration, Instant};

use common::{http, http_raw, Cluster};
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

/// The console session token a member hands its page.
async fn console_token(address: &str, auth: Option<&str>) -> Value {
    let (status, session) = http(address, "GET", "/ui/session", "", auth).await;
    assert_eq!(status, 200, "{session}");
    session
}

/// A console action with the given headers: the status and the JSON answer.
async fn act(address: &str, what: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, raw) = http_raw(address, "POST", &format!("/ui/act/{what}"), &body.to_string(), headers).await;
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

async fn value_of(address: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({ "key": b64.encode(key) }).to_string();
    let (_, answer) = http(address, "POST", "/v3/kv/range", &body, None).await;
    let value = answer["kvs"][0]["value"].as_str()?;
    Some(String::from_utf8(b64.decode(value).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_need_the_session_and_the_users_permissions() {
    let cluster = Cluster::start("console-act", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let at = address(&cluster, leader);
    let session = console_token(&at, None).await;
    assert_eq!((session["auth_enabled"].clone(), session["root"].clone()), (Value::Bool(false), Value::Bool(true)));
    let token = session["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 32, "{session}");
    let put = serde_json::json!({ "key": "console/a", "value": "1" });

    // A forged request: no session token (a form another site posts), a wrong one, or the
    // right one from another origin.
    let (status, refused) = act(&at, "put", put.clone(), &[]).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("no console session"), "{refused}");
    assert_eq!(act(&at, "put", put.clone(), &[("x-ballot-console", "guess")]).await.0, 403);
    let evil = [("x-ballot-console", token.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(act(&at, "put", put.clone(), &evil).await.0, 403);
    let cross = [("x-ballot-console", token.as_str()), ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(act(&at, "put", put.clone(), &cross).await.0, 403);
    assert_eq!(value_of(&at, "console/a").await, None, "nothing forged was written");

    // The page's own request acts.
    let origin = format!("http://{at}");
    let ours = [("x-ballot-console", token.as_str()), ("Origin", origin.as_str())];
    let (status, answer) = act(&at, "put", put.clone(), &ours).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(value_of(&at, "console/a").await.as_deref(), Some("1"));

    // Authentication on: a reader may look, not act; root may act.
    for (path, body) in [
        ("/v3/auth/user/add", serde_json::json!({"name": "root", "password": "rootpw"})),
        ("/v3/auth/user/grant", serde_json::json!({"user": "root", "role": "root"})),
        ("/v3/auth/role/add", serde_json::json!({"name": "reader"})),
        (
            "/v3/auth/role/grant",
            serde_json::json!({"name": "reader", "perm": {"permType": "READ", "key": "AA==", "range_end": "AA=="}}),
        ),
        ("/v3/auth/user/add", serde_json::json!({"name": "viewer", "password": "viewerpw"})),
        ("/v3/auth/user/grant", serde_json::json!({"user": "viewer", "role": "reader"})),
        ("/v3/auth/enable", serde_json::json!({})),
    ] {
        let (status, answer) = http(&at, "POST", path, &body.to_string(), None).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let login = |name: &'static str, password: &'static str| {
        let at = at.clone();
        async move {
            let body = serde_json::json!({ "name": name, "password": password }).to_string();
            let (status, answer) = http(&at, "POST", "/v3/auth/authenticate", &body, None).await;
            assert_eq!(status, 200, "{answer}");
            answer["token"].as_str().unwrap().to_string()
        }
    };
    let viewer = login("viewer", "viewerpw").await;
    let root = login("root", "rootpw").await;
    let session = console_token(&at, Some(&viewer)).await;
    assert_eq!(session["user"], "viewer", "{session}");
    assert_eq!((session["root"].clone(), session["writer"].clone()), (Value::Bool(false), Value::Bool(false)));
    assert_eq!(console_token(&at, None).await["user"], "", "no token, nobody");
    assert_eq!(console_token(&at, Some(&root)).await["root"], true);

    let as_viewer = [("x-ballot-console", token.as_str()), ("Authorization", viewer.as_str())];
    let (status, refused) = act(&at, "put", put.clone(), &as_viewer).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("permission denied"), "{refused}");
    let (status, _) = act(&at, "compact", serde_json::json!({ "revision": 2 }), &as_viewer).await;
    assert_eq!(status, 403);
    let (status, _) = http_raw(&at, "POST", "/ui/act/snapshot", "{}", &as_viewer).await;
    assert_eq!(status, 403, "a snapshot needs root");
    let as_root = [("x-ballot-console", token.as_str()), ("Authorization", root.as_str())];
    let (status, answer) = act(&at, "put", serde_json::json!({ "key": "console/b", "value": "2" }), &as_root).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = act(&at, "compact", serde_json::json!({ "revision": 2 }), &as_root).await;
    assert_eq!(status, 200, "{answer}");
    let (status, snapshot) = http_raw(&at, "POST", "/ui/act/snapshot", "{}", &as_root).await;
    assert_eq!(status, 200);
    assert!(snapshot.len() > 4096 + 32, "a database and its SHA-256: {} bytes", snapshot.len());

    // Operations on other members: defragment a follower, and hand leadership to it.
    let follower = (leader + 1) % 3;
    let (_, view) = http(&at, "GET", "/ui/cluster.json", "", None).await;
    let follower_url = cluster.client_url(follower).to_string();
    let follower_id = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["client_url"] == follower_url.as_str())
        .map(|m| m["id"].as_str().unwrap().to_string())
        .expect("the follower in the view");
    let target = serde_json::json!({ "member": follower_id });
    let (status, answer) = act(&at, "defragment", target.clone(), &as_root).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(act(&at, "move-leader", target.clone(), &as_viewer).await.0, 403);
    let (status, answer) = act(&at, "move-leader", target, &as_root).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(cluster.leader(Duration::from_secs(10)).await, follower);
    let (status, _) = act(&at, "no-such-thing", serde_json::json!({}), &as_root).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_console_refuses_every_action() {
    let mut cluster = Cluster::start("console-ro", 1, &["--ui-read-only"]);
    cluster.leader(Duration::from_secs(20)).await;
    let at = address(&cluster, 0);
    let session = console_token(&at, None).await;
    assert_eq!(session["read_only"], true, "{session}");
    let token = session["token"].as_str().unwrap().to_string();
    let (status, refused) =
        act(&at, "put", serde_json::json!({ "key": "k", "value": "v" }), &[("x-ballot-console", &token)]).await;
    assert_eq!(status, 403);
    assert!(refused["message"].as_str().unwrap().contains("read-only"), "{refused}");
    assert_eq!(value_of(&at, "k").await, None);
    // Reading goes on.
    assert_eq!(http(&at, "GET", "/ui/cluster.json", "", None).await.0, 200);
    // A bad znode path ends the ZooKeeper view's stream with the reason.
    let (status, raw) = http_raw(&at, "GET", "/ui/zk?path=no-slash", "", &[]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("event: error") && text.contains("not a znode path"), "{text}");
    cluster.kill(0);
}

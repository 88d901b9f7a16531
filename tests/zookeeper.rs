//! The ZooKeeper front end on real processes: sessions that outlive their member and expire
//! after their client, ephemeral and sequential nodes seen from every member, watch events
//! ahead of newer data, the refusal of a client that is ahead of a member, the container
//! sweep, the four-letter words, and the etcd API kept out of the tree.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ballot_server::zk::client::{Client, ZkError};
use ballot_zk::codes::{ErrorCode, EventType};
use ballot_zk::multi::{MultiOp, MultiRequest, MultiResult};
use ballot_zk::records::{CheckVersionRequest, CreateRequest};
use common::{free_ports, put, Cluster};

const EPHEMERAL: i32 = 1;
const SEQUENTIAL: i32 = 2;
const EPHEMERAL_SEQUENTIAL: i32 = 3;
const CONTAINER: i32 = 4;

/// A cluster whose members serve ZooKeeper too; their ZooKeeper addresses.
fn zk_cluster(test: &str, n: usize) -> (Cluster, Vec<String>) {
    let mut cluster = Cluster::prepare(test, n, &[]);
    let addresses: Vec<String> = free_ports(n).iter().map(|port| format!("127.0.0.1:{port}")).collect();
    for (i, address) in addresses.iter().enumerate() {
        cluster.spawn_with(i, &["--listen-zk-urls", address]);
    }
    (cluster, addresses)
}

/// A new session at `address`, retried while the member starts or elects (bounded).
fn connect(address: &str, timeout_ms: i32) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(address, timeout_ms) {
            Ok(client) => return client,
            Err(error) if Instant::now() > deadline => panic!("{address}: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Polls `check` until it holds (bounded); false if it never did.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn code(result: Result<impl std::fmt::Debug, ZkError>) -> ErrorCode {
    match result {
        Err(ZkError::Code(code)) => code,
        other => panic!("expected a ZooKeeper error, got {other:?}"),
    }
}

#[test]
fn nodes_sessions_and_multi_as_zookeeper_has_them_on_every_member() {
    let (_cluster, zk) = zk_cluster("zk-nodes", 3);
    let mut a = connect(&zk[0], 10_000);
    let mut b = connect(&zk[1], 10_000);
    assert_eq!(a.create("/locks", b"", 0).unwrap(), "/locks");
    let first = a.create("/locks/n-", b"", EPHEMERAL_SEQUENTIAL).unwrap();
    let second = a.create("/locks/n-", b"", EPHEMERAL_SEQUENTIAL).unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("/locks/n-0000000000", "/locks/n-0000000001"));
    assert_eq!(a.create("/locks/p-", b"", SEQUENTIAL).unwrap(), "/locks/p-0000000002", "the parent's counter");
    assert_eq!(code(a.create("/locks", b"", 0)), ErrorCode::NodeExists);
    assert_eq!(code(a.create("/none/x", b"", 0)), ErrorCode::NoNode);
    assert_eq!(code(a.create(&first, b"", 0)), ErrorCode::NodeExists);
    assert_eq!(code(a.create(&format!("{first}/child"), b"", 0)), ErrorCode::NoChildrenForEphemerals);
    // Another member sees the same tree once it has caught up (sync).
    b.sync("/").unwrap();
    let (mut children, stat) = b.children("/locks", false).unwrap();
    children.sort();
    assert_eq!(children, ["n-0000000000", "n-0000000001", "p-0000000002"]);
    assert_eq!((stat.num_children, stat.cversion), (3, 3));
    let (_, owned) = b.get_data(&first, false).unwrap();
    assert_eq!(owned.ephemeral_owner, a.session);
    assert!(b.last_zxid >= a.last_zxid, "zxids are one order across members");
    // Versions: compare-and-set.
    let set = b.set_data("/locks", b"v1", 0).unwrap();
    assert_eq!(set.version, 1);
    assert_eq!(code(a.set_data("/locks", b"v2", 0)), ErrorCode::BadVersion);
    assert_eq!(code(a.delete("/locks", -1)), ErrorCode::NotEmpty);
    // A multi is all or nothing, each operation answered.
    let failing = MultiRequest {
        ops: vec![
            MultiOp::Create {
                op: 1,
                request: CreateRequest { path: "/m1".into(), data: None, acl: ballot_zk::acl::open_acl(), flags: 0 },
            },
            MultiOp::Check(CheckVersionRequest { path: "/locks".into(), version: 7 }),
        ],
    };
    let answer = a.multi(&failing).unwrap();
    assert_eq!(answer.results, [MultiResult::Error(ErrorCode::Ok), MultiResult::Error(ErrorCode::BadVersion)]);
    assert_eq!(a.exists("/m1", false).unwrap(), None);
    // Closing the session deletes its ephemerals, on every member.
    a.close().unwrap();
    b.sync("/").unwrap();
    assert_eq!(b.children("/locks", false).unwrap().0, ["p-0000000002"]);
}

#[test]
fn a_session_moves_to_another_member_and_expires_after_its_client_goes() {
    let (mut cluster, zk) = zk_cluster("zk-session", 3);
    let mut a = connect(&zk[0], 4_000);
    a.create("/e", b"mine", EPHEMERAL).unwrap();
    let (session, password, last_zxid) = (a.session, a.password.clone(), a.last_zxid);
    // Its member dies; the client resumes the session on another within the timeout.
    cluster.kill(0);
    drop(a);
    let resumed = eventually(Duration::from_secs(10), || {
        Client::resume(&zk[1], session, password.clone(), 4_000, last_zxid).is_ok_and(|mut client| {
            let alive = client.exists("/e", false).is_ok_and(|stat| stat.is_some_and(|s| s.ephemeral_owner == session));
            drop(client); // no closeSession: the client just goes
            alive
        })
    });
    assert!(resumed, "the session and its ephemeral node survive their member");
    // A wrong password is answered as an expired session.
    assert!(matches!(Client::resume(&zk[2], session, vec![1; 16], 4_000, 0), Err(ZkError::Expired)));
    // With no client pinging, the session expires on the leader's clock and its node goes.
    let mut b = connect(&zk[2], 10_000);
    assert!(
        eventually(Duration::from_secs(20), || b.exists("/e", false).is_ok_and(|stat| stat.is_none())),
        "the ephemeral node outlived its session"
    );
    assert!(matches!(Client::resume(&zk[2], session, password, 4_000, 0), Err(ZkError::Expired)));
}

#[test]
fn a_watch_event_arrives_before_any_reply_that_shows_the_change() {
    let (_cluster, zk) = zk_cluster("zk-watch", 3);
    let mut a = connect(&zk[0], 10_000);
    let mut b = connect(&zk[1], 10_000);
    a.create("/w", b"0", 0).unwrap();
    for round in 1..=20 {
        a.get_data("/w", true).unwrap();
        b.set_data("/w", round.to_string().as_bytes(), -1).unwrap();
        // Whatever `a` reads next, if it shows the new data, the event came first.
        loop {
            let (data, _) = a.get_data("/w", false).unwrap();
            if data.as_deref() == Some(round.to_string().as_bytes()) {
                let event = a.events.pop().expect("the event before the data");
                assert_eq!((event.event_type, event.path.as_str()), (EventType::NodeDataChanged as i32, "/w"));
                assert!(a.events.is_empty(), "a one-shot watch fires once");
                break;
            }
        }
    }
    // Child and existence watches, and a node created where an exists watch waited.
    assert_eq!(a.exists("/later", true).unwrap(), None);
    a.children("/w", true).unwrap();
    b.create("/later", b"", 0).unwrap();
    b.create("/w/c", b"", 0).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = a.next_event(Duration::from_secs(5)).unwrap().expect("two events");
        seen.push((event.event_type, event.path));
    }
    seen.sort();
    assert_eq!(
        seen,
        [(EventType::NodeCreated as i32, "/later".into()), (EventType::NodeChildrenChanged as i32, "/w".into())]
    );
}

#[test]
fn a_client_ahead_of_a_member_is_refused_and_oversized_frames_close_the_connection() {
    let (_cluster, zk) = zk_cluster("zk-refuse", 1);
    let a = connect(&zk[0], 10_000);
    // A client that saw a zxid the member has not reached must try another member.
    let ahead = Client::resume(&zk[0], a.session, a.password.clone(), 10_000, i64::MAX / 2);
    assert!(matches!(ahead, Err(ZkError::Io(_))), "{:?}", ahead.err());
    // A frame past jute.maxbuffer: the connection closes without an answer.
    let mut stream = std::net::TcpStream::connect(&zk[0]).unwrap();
    stream.write_all(&(2i32 << 20).to_be_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).unwrap(), 0, "closed");
    // Four-letter words.
    let word = |word: &str| {
        let mut stream = std::net::TcpStream::connect(&zk[0]).unwrap();
        stream.write_all(word.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    assert_eq!(word("ruok"), "imok");
    assert!(word("mntr").contains("zk_znode_count\t5\n"), "{}", word("mntr"));
    assert!(word("srvr").starts_with("Zookeeper version: 3.8.0"));
    assert!(word("envi").contains("zookeeper.version=3.8.0"));
}

#[test]
fn containers_are_swept_once_emptied_and_etcd_clients_never_see_the_tree() {
    let (cluster, zk) = zk_cluster("zk-sweep", 1);
    // A session whose client goes before its first ping still expires (its lease's deadline
    // starts when it opens, not at its first renewal).
    let mut brief = connect(&zk[0], 4_000);
    brief.create("/brief", b"", EPHEMERAL).unwrap();
    drop(brief);
    let mut a = connect(&zk[0], 10_000);
    a.create("/c", b"", CONTAINER).unwrap();
    a.create("/c/x", b"", 0).unwrap();
    a.create("/unused", b"", CONTAINER).unwrap();
    a.delete("/c/x", -1).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || a.exists("/c", false).is_ok_and(|stat| stat.is_none())),
        "the emptied container stayed"
    );
    assert!(a.exists("/unused", false).unwrap().is_some(), "a container that never had a child stays");
    assert!(
        eventually(Duration::from_secs(15), || a.exists("/brief", false).is_ok_and(|stat| stat.is_none())),
        "a session that never renewed its lease never expired"
    );
    // etcd's API: the tree is not among its keys, and its keys cannot be written.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut kv = cluster.kv(0).await;
        kv.put(put("plain", "1")).await.unwrap();
        let everything =
            ballot_proto::etcdserverpb::RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        let all = kv.range(everything).await.unwrap().into_inner();
        assert_eq!(all.kvs.iter().map(|kv| kv.key.as_slice()).collect::<Vec<_>>(), [b"plain".as_slice()]);
        assert_eq!(all.count, 1);
        let reserved = ballot_proto::etcdserverpb::PutRequest { key: b"\0zk\0\0\x01/c".to_vec(), ..Default::default() };
        let refused = kv.put(reserved).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    });
}

#[test]
fn the_tree_travels_in_a_snapshot_and_ballot_zk_shows_it() {
    let (cluster, zk) = zk_cluster("zk-snapshot", 1);
    let mut a = connect(&zk[0], 10_000);
    a.create("/app", b"config", 0).unwrap();
    a.create("/app/s-", b"", SEQUENTIAL).unwrap();
    a.set_data("/app", b"v2", 0).unwrap();
    let file = std::env::temp_dir().join(format!("ballot-zk-snapshot-{}.db", std::process::id()));
    let saved = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["snapshot", "save", file.to_str().unwrap(), "--endpoints", cluster.client_url(0)])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    // A new member restored from the file serves the same tree on its ZooKeeper port.
    let mut restored = Cluster::prepare("zk-restored", 1, &[]);
    restored.restore(0, &file);
    let address = format!("127.0.0.1:{}", free_ports(1)[0]);
    restored.spawn_with(0, &["--listen-zk-urls", &address]);
    let mut b = connect(&address, 10_000);
    let (data, stat) = b.get_data("/app", false).unwrap();
    assert_eq!((data.as_deref(), stat.version, stat.num_children), (Some(&b"v2"[..]), 1, 1));
    assert_eq!(b.children("/app", false).unwrap().0, ["s-0000000000"]);
    assert_eq!(b.create("/app/s-", b"", SEQUENTIAL).unwrap(), "/app/s-0000000001", "the counter came along");
    // `ballot zk` shows it to an operator.
    let ls = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["zk", "--server", &address, "ls", "/app"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "[s-0000000000, s-0000000001]\n");
    let stat = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["zk", "--server", &address, "stat", "/app"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&stat.stdout).contains("dataVersion = 1\n"));
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["zk", "--server", &address, "get", "/nope"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NoNode: /nope"));
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn watches_set_again_after_a_reconnect_fire_for_what_changed_meanwhile() {
    use ballot_zk::codes::op;
    use ballot_zk::jute::Jute;
    use ballot_zk::records::{PathRequest, SetWatches2, WatchesRequest};
    let (_cluster, zk) = zk_cluster("zk-setwatches", 2);
    let mut a = connect(&zk[0], 10_000);
    let mut b = connect(&zk[1], 10_000);
    a.create("/sw", b"0", 0).unwrap();
    a.create("/same", b"0", 0).unwrap();
    a.get_data("/sw", true).unwrap();
    // checkWatches / removeWatches (type 2: data) on the connection's own watches.
    let check = |path: &str| WatchesRequest { path: path.into(), watcher_type: 2 }.encode();
    a.call(op::CHECK_WATCHES, &check("/sw")).unwrap();
    assert_eq!(code(a.call(op::CHECK_WATCHES, &check("/same"))), ErrorCode::NoWatcher);
    // The connection drops; meanwhile /sw changes and /later appears.
    let (session, password, last_zxid) = (a.session, a.password.clone(), a.last_zxid);
    drop(a);
    b.set_data("/sw", b"1", -1).unwrap();
    b.create("/later", b"", 0).unwrap();
    b.sync("/").unwrap();
    // Back on another member, the client sets its watches again from its last zxid.
    let mut a = Client::resume(&zk[1], session, password, 10_000, last_zxid).unwrap();
    let watches = SetWatches2 {
        relative_zxid: last_zxid,
        data_watches: vec!["/sw".into(), "/same".into()],
        exist_watches: vec!["/later".into(), "/absent".into()],
        ..SetWatches2::default()
    };
    a.call(op::SET_WATCHES2, &watches.encode()).unwrap();
    let mut fired: Vec<(i32, String)> = a.events.drain(..).map(|event| (event.event_type, event.path)).collect();
    fired.sort();
    assert_eq!(
        fired,
        [(EventType::NodeCreated as i32, "/later".into()), (EventType::NodeDataChanged as i32, "/sw".into())],
        "what changed since the last zxid fires at once"
    );
    // The watches on what did not change are set again and fire later.
    b.set_data("/same", b"1", -1).unwrap();
    b.create("/absent", b"", 0).unwrap();
    let mut later = Vec::new();
    while later.len() < 2 {
        let event = a.next_event(Duration::from_secs(5)).unwrap().expect("two more events");
        later.push((event.event_type, event.path));
    }
    later.sort();
    assert_eq!(
        later,
        [(EventType::NodeCreated as i32, "/absent".into()), (EventType::NodeDataChanged as i32, "/same".into())]
    );
    // getAllChildrenNumber counts every node below, system nodes included.
    let (_, body) = a.call(op::GET_ALL_CHILDREN_NUMBER, &PathRequest { path: "/".into() }.encode()).unwrap();
    assert_eq!(ballot_zk::records::AllChildrenNumberResponse::decode(&body).unwrap().total_number, 3 + 4);
}

#[test]
fn multi_read_config_reconfig_ttl_nodes_and_the_super_and_ip_schemes() {
    use ballot_zk::codes::op;
    use ballot_zk::jute::Jute;
    use ballot_zk::multi::MultiResponse;
    use ballot_zk::records::{Acl, AuthPacket, CreateTtlRequest, Id, PathWatchRequest, ReconfigRequest};
    let mut cluster = Cluster::prepare("zk-misc", 1, &[]);
    let address = format!("127.0.0.1:{}", free_ports(1)[0]);
    // The super digest of `super:test` (ZooKeeper's documented example value).
    cluster.spawn_with(0, &["--listen-zk-urls", &address, "--zk-super-digest", "super:D/InIHSb7yEEbrWz8b9l71RjZJU="]);
    let mut a = connect(&address, 10_000);
    // multiRead: each read answered on its own.
    a.create("/r", b"data", 0).unwrap();
    let reads = MultiRequest {
        ops: vec![
            MultiOp::GetData(PathWatchRequest { path: "/r".into(), watch: false }),
            MultiOp::GetChildren(PathWatchRequest { path: "/nope".into(), watch: false }),
            MultiOp::GetChildren(PathWatchRequest { path: "/zookeeper".into(), watch: false }),
        ],
    };
    let (_, body) = a.call(op::MULTI_READ, &reads.encode()).unwrap();
    let results = MultiResponse::decode(&body).unwrap().results;
    assert!(
        matches!(&results[0], MultiResult::GetData(Some(data), stat) if data.as_slice() == b"data" && stat.version == 0)
    );
    assert_eq!(results[1], MultiResult::Error(ErrorCode::NoNode));
    assert!(matches!(&results[2], MultiResult::GetChildren(names) if names.len() == 2), "config and quota");
    // getConfig reads /zookeeper/config: ballot's members; reconfig is disabled.
    let (config, _) = a.get_data("/zookeeper/config", false).unwrap();
    let config = String::from_utf8(config.unwrap()).unwrap();
    assert!(config.starts_with("server.1=127.0.0.1:") && config.ends_with("version=0"), "{config}");
    let reconfig = ReconfigRequest {
        joining_servers: String::new(),
        leaving_servers: "2".into(),
        new_members: String::new(),
        cur_config_id: -1,
    };
    assert_eq!(code(a.call(op::RECONFIG, &reconfig.encode())), ErrorCode::ReconfigDisabled);
    // A TTL node unchanged for its TTL is swept; one with a child is not.
    let ttl = |path: &str| CreateTtlRequest {
        path: path.into(),
        data: None,
        acl: ballot_zk::acl::open_acl(),
        flags: 5,
        ttl: 1_000,
    };
    a.call(op::CREATE_TTL, &ttl("/ttl").encode()).unwrap();
    a.call(op::CREATE_TTL, &ttl("/ttl-kept").encode()).unwrap();
    a.create("/ttl-kept/child", b"", 0).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || a.exists("/ttl", false).is_ok_and(|stat| stat.is_none())),
        "the TTL node stayed"
    );
    assert!(a.exists("/ttl-kept", false).unwrap().is_some());
    // ip ACLs match the connection's address; the super user passes every ACL.
    let only = |scheme: &str, id: &str| vec![Acl { perms: 31, id: Id { scheme: scheme.into(), id: id.into() } }];
    a.create_with_acl("/mine", b"", only("ip", "127.0.0.0/8"), 0).unwrap();
    a.create_with_acl("/theirs", b"", only("ip", "10.0.0.1"), 0).unwrap();
    a.get_data("/mine", false).unwrap();
    assert_eq!(code(a.get_data("/theirs", false)), ErrorCode::NoAuth);
    let auth = AuthPacket { auth_type: 0, scheme: "digest".into(), auth: Some(b"super:test".to_vec()) };
    a.call(op::AUTH, &auth.encode()).unwrap();
    a.get_data("/theirs", false).expect("the super user reads anything");
    // /zookeeper/quota is there.
    assert!(a.exists("/zookeeper/quota", false).unwrap().is_some());
}

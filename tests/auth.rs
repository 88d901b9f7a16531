//! Authentication and access control on a cluster of real processes: tokens, refusals with
//! etcd's codes, permission checks on every API, revocation seen by every member at once, and
//! token expiry.

mod common;

use std::time::Duration;

use ballot_proto::authpb;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::auth_client::AuthClient;
use ballot_proto::etcdserverpb::cluster_client::ClusterClient;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use ballot_proto::etcdserverpb::lease_client::LeaseClient;
use ballot_proto::etcdserverpb::watch_client::WatchClient;
use ballot_proto::v3electionpb::election_client::ElectionClient;
use ballot_proto::v3lockpb::lock_client::LockClient;
use ballot_proto::{v3electionpb, v3lockpb};
use common::{get, put, Cluster};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// `message` carrying `token` as etcd clients send it.
fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("token", token.parse().unwrap());
    request
}

async fn login(channel: Channel, name: &str, password: &str) -> Result<String, tonic::Status> {
    let request = pb::AuthenticateRequest { name: name.into(), password: password.into() };
    Ok(AuthClient::new(channel).authenticate(request).await?.into_inner().token)
}

/// root (with the root role), and alice who may read `/a/` and write `/w/`; then auth on.
async fn set_up(channel: Channel) {
    let mut auth = AuthClient::new(channel);
    let user = |name: &str, password: &str| pb::AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    };
    auth.user_add(user("root", "rootpw")).await.unwrap();
    auth.user_grant_role(pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
    auth.user_add(user("alice", "alicepw")).await.unwrap();
    for (role, kind, key, end) in [("reader", 0, "/a/", "/a0"), ("writer", 1, "/w/", "/w0")] {
        auth.role_add(pb::AuthRoleAddRequest { name: role.into() }).await.unwrap();
        let perm = authpb::Permission { perm_type: kind, key: key.into(), range_end: end.into() };
        auth.role_grant_permission(pb::AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) })
            .await
            .unwrap();
        auth.user_grant_role(pb::AuthUserGrantRoleRequest { user: "alice".into(), role: role.into() }).await.unwrap();
    }
    // Not without a root user with the root role: etcd's rule.
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    (status.code(), status.message().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_are_enforced_on_every_api_and_revocation_reaches_every_member() {
    let cluster = Cluster::start("auth-rbac", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    set_up(cluster.channel(leader).await).await;

    // Without a token every API is refused: KV, lease, watch, auth management, maintenance.
    let mut kv = KvClient::new(cluster.channel(follower).await);
    let empty = (Code::InvalidArgument, "etcdserver: user name is empty".to_string());
    assert_eq!(code(kv.range(get("/a/x")).await), empty);
    assert_eq!(code(kv.put(put("/a/x", "1")).await), empty);
    let mut lease = LeaseClient::new(cluster.channel(follower).await);
    assert_eq!(code(lease.lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 }).await), empty);
    assert_eq!(code(lease.lease_leases(pb::LeaseLeasesRequest {}).await), empty);
    let mut auth = AuthClient::new(cluster.channel(follower).await);
    assert_eq!(code(auth.user_list(pb::AuthUserListRequest {}).await), empty);
    let mut maintenance =
        ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient::new(cluster.channel(follower).await);
    assert_eq!(code(maintenance.defragment(pb::DefragmentRequest {}).await), empty);
    assert_eq!(code(kv.txn(pb::TxnRequest::default()).await), empty);
    assert_eq!(
        code(kv.delete_range(pb::DeleteRangeRequest { key: b"/a/x".to_vec(), ..Default::default() }).await),
        empty
    );
    assert_eq!(code(kv.compact(pb::CompactionRequest { revision: 1, physical: false }).await), empty);
    assert_eq!(code(lease.lease_revoke(pb::LeaseRevokeRequest { id: 1 }).await), empty);
    assert_eq!(code(lease.lease_time_to_live(pb::LeaseTimeToLiveRequest { id: 1, keys: false }).await), empty);
    let keep_alive = lease.lease_keep_alive(tokio_stream::iter([pb::LeaseKeepAliveRequest { id: 1 }])).await;
    assert_eq!(code(keep_alive), empty);
    assert_eq!(code(auth.role_add(pb::AuthRoleAddRequest { name: "r".into() }).await), empty);
    assert_eq!(code(auth.auth_disable(pb::AuthDisableRequest {}).await), empty);
    let mut snapshot = maintenance.snapshot(pb::SnapshotRequest {}).await;
    if let Ok(stream) = &mut snapshot {
        // Refused before the first chunk, whichever way the stream reports it.
        let first = stream.get_mut().message().await;
        snapshot = first.map(|_| panic!("a snapshot without a token"));
    }
    assert_eq!(code(snapshot), empty);
    let mut cluster_api = ClusterClient::new(cluster.channel(follower).await);
    let add = pb::MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:1".into()], is_learner: true };
    assert_eq!(code(cluster_api.member_add(add).await), empty);
    // Lock and election pass etcd's errors on as plain errors: code Unknown, as etcd 3.4 does.
    let plain = (Code::Unknown, empty.1.clone());
    let mut lock = LockClient::new(cluster.channel(follower).await);
    assert_eq!(code(lock.lock(v3lockpb::LockRequest { name: b"/a/lock".to_vec(), lease: 0 }).await), plain);
    let mut election = ElectionClient::new(cluster.channel(follower).await);
    let campaign = v3electionpb::CampaignRequest { name: b"/a/e".to_vec(), lease: 0, value: b"me".to_vec() };
    assert_eq!(code(election.campaign(campaign).await), plain);
    assert_eq!(code(election.leader(v3electionpb::LeaderRequest { name: b"/a/e".to_vec() }).await), plain);
    let mut watch = WatchClient::new(cluster.channel(follower).await);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: b"/a/x".to_vec(),
            ..Default::default()
        })),
    };
    let mut refused = watch.watch(tokio_stream::iter([create])).await.unwrap().into_inner();
    let refused = refused.message().await.unwrap().unwrap();
    assert!(refused.canceled && refused.cancel_reason.contains("user name is empty"), "{refused:?}");
    // A forged or wrong token is etcd's `invalid auth token`, which clients answer by logging in.
    let invalid = (Code::Unauthenticated, "etcdserver: invalid auth token".to_string());
    assert_eq!(code(kv.range(with_token(get("/a/x"), "forged")).await), invalid);
    let failed = code(login(cluster.channel(follower).await, "alice", "wrong").await);
    assert_eq!(
        failed,
        (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password".into())
    );
    assert_eq!(code(login(cluster.channel(follower).await, "nobody", "x").await).0, Code::InvalidArgument);

    // root may do anything, through any member (a follower forwards writes with the token).
    let root = login(cluster.channel(follower).await, "root", "rootpw").await.unwrap();
    kv.put(with_token(put("/a/x", "1"), &root)).await.unwrap();
    kv.put(with_token(put("/b/x", "2"), &root)).await.unwrap();

    // alice, logged in on a follower: reads /a/, writes /w/, nothing else.
    let alice = login(cluster.channel(follower).await, "alice", "alicepw").await.unwrap();
    let denied = (Code::PermissionDenied, "etcdserver: permission denied".to_string());
    let got = kv.range(with_token(get("/a/x"), &alice)).await.unwrap().into_inner();
    assert_eq!(got.kvs[0].value, b"1");
    assert_eq!(code(kv.put(with_token(put("/a/x", "3"), &alice)).await), denied);
    assert_eq!(code(kv.range(with_token(get("/b/x"), &alice)).await), denied);
    let serializable = pb::RangeRequest { serializable: true, ..get("/b/x") };
    assert_eq!(code(kv.range(with_token(serializable, &alice)).await), denied);
    let whole = pb::RangeRequest { key: b"/a/".to_vec(), range_end: b"/b".to_vec(), ..Default::default() };
    assert_eq!(code(kv.range(with_token(whole, &alice)).await), denied, "a range wider than the grant");
    kv.put(with_token(put("/w/x", "4"), &alice)).await.unwrap();
    assert_eq!(
        code(
            kv.delete_range(with_token(pb::DeleteRangeRequest { key: b"/b/x".to_vec(), ..Default::default() }, &alice))
                .await
        ),
        denied
    );
    assert_eq!(code(auth.user_list(with_token(pb::AuthUserListRequest {}, &alice)).await), denied);
    assert_eq!(code(maintenance.defragment(with_token(pb::DefragmentRequest {}, &alice)).await), denied);

    // A txn is checked in both branches: a forbidden put in the branch that would not run
    // refuses the whole txn.
    let txn = |failure_key: &str| pb::TxnRequest {
        compare: vec![pb::Compare {
            key: b"/a/x".to_vec(),
            target: pb::compare::CompareTarget::Value as i32,
            result: pb::compare::CompareResult::Equal as i32,
            target_union: Some(pb::compare::TargetUnion::Value(b"1".to_vec())),
            ..Default::default()
        }],
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put("/w/y", "5"))) }],
        failure: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put(failure_key, "6"))) }],
    };
    assert_eq!(code(kv.txn(with_token(txn("/b/y"), &alice)).await), denied);
    assert!(kv.txn(with_token(txn("/w/z"), &alice)).await.unwrap().into_inner().succeeded);
    // A txn that only reads is served off the log, and checked the same way: every compare and
    // every range of both branches.
    let range = |key: &str| pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(get(key))) };
    let read_txn = |failure_key: &str| pb::TxnRequest {
        compare: vec![],
        success: vec![range("/a/x")],
        failure: vec![range(failure_key)],
    };
    assert_eq!(code(kv.txn(with_token(read_txn("/b/y"), &alice)).await), denied);
    let read = kv.txn(with_token(read_txn("/a/y"), &alice)).await.unwrap().into_inner();
    let Some(pb::response_op::Response::ResponseRange(got)) = &read.responses[0].response else { panic!("{read:?}") };
    assert_eq!(got.kvs[0].value, b"1", "the read-only txn on a follower reads the committed value");

    // A watch on a range alice cannot read is cancelled at creation, as etcd does.
    let mut watch = WatchClient::new(cluster.channel(follower).await);
    let create = |key: &str| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.into(),
            ..Default::default()
        })),
    };
    let requests = tokio_stream::iter([create("/b/x"), create("/a/x")]);
    let mut responses = watch.watch(with_token(requests, &alice)).await.unwrap().into_inner();
    let refused = responses.message().await.unwrap().unwrap();
    assert!(refused.canceled && refused.created && refused.watch_id == -1, "{refused:?}");
    assert!(refused.cancel_reason.contains("permission denied"), "{}", refused.cancel_reason);
    let accepted = responses.message().await.unwrap().unwrap();
    assert!(accepted.created && !accepted.canceled, "{accepted:?}");

    // Revoking the reader role (through the leader) stops alice's next read on every member:
    // her old token names an older auth revision, and with a new one the role is gone.
    let mut root_auth = AuthClient::new(cluster.channel(leader).await);
    let revoke = pb::AuthUserRevokeRoleRequest { name: "alice".into(), role: "reader".into() };
    root_auth.user_revoke_role(with_token(revoke, &root)).await.unwrap();
    let old = (Code::InvalidArgument, "etcdserver: revision of auth store is old".to_string());
    let alice_again = login(cluster.channel(leader).await, "alice", "alicepw").await.unwrap();
    for member in 0..3 {
        let mut kv = KvClient::new(cluster.channel(member).await);
        assert_eq!(code(kv.range(with_token(get("/a/x"), &alice)).await), old, "member {member}");
        assert_eq!(code(kv.range(with_token(get("/a/x"), &alice_again)).await), denied, "member {member}");
        kv.put(with_token(put("/w/x", "7"), &alice_again)).await.unwrap();
    }
    // root's token is old too: clients log in again, as etcd's do.
    let root = login(cluster.channel(follower).await, "root", "rootpw").await.unwrap();
    // root cannot be deleted, nor lose its role, while auth is on.
    let mgmt = (Code::InvalidArgument, "etcdserver: invalid auth management".to_string());
    assert_eq!(
        code(root_auth.user_delete(with_token(pb::AuthUserDeleteRequest { name: "root".into() }, &root)).await),
        mgmt
    );
    let users = root_auth.user_list(with_token(pb::AuthUserListRequest {}, &root)).await.unwrap().into_inner().users;
    assert_eq!(users, ["alice", "root"]);
    root_auth.auth_disable(with_token(pb::AuthDisableRequest {}, &root)).await.unwrap();
    KvClient::new(cluster.channel(follower).await).range(get("/b/x")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unused_simple_token_expires_and_a_used_one_lives_on() {
    let cluster = Cluster::start("auth-ttl", 1, &["--auth-token-ttl", "1"]);
    cluster.leader(Duration::from_secs(10)).await;
    set_up(cluster.channel(0).await).await;
    let mut kv = KvClient::new(cluster.channel(0).await);
    let used = login(cluster.channel(0).await, "alice", "alicepw").await.unwrap();
    let idle = login(cluster.channel(0).await, "alice", "alicepw").await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        kv.put(with_token(put("/w/k", "v"), &used)).await.unwrap();
    }
    let invalid = (Code::Unauthenticated, "etcdserver: invalid auth token".to_string());
    assert_eq!(code(kv.put(with_token(put("/w/k", "v"), &idle)).await), invalid);
    // The stored password is a salted bcrypt hash, never the password.
    let db = std::fs::read(cluster.members[0].data_dir.join("db")).unwrap();
    assert!(!db.windows(7).any(|window| window == b"alicepw"));
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_wrong_passwords_are_slowed_down() {
    let cluster = Cluster::start("auth-limit", 1, &[]);
    cluster.leader(Duration::from_secs(10)).await;
    set_up(cluster.channel(0).await).await;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes
            .push(login(cluster.channel(0).await, "root", "guess").await.map(|_| ()).map_err(|status| status.code()));
    }
    assert_eq!(outcomes[..3], [Err(Code::InvalidArgument); 3]);
    assert_eq!(outcomes[3], Err(Code::ResourceExhausted), "{outcomes:?}");
    // Another user is not held back by root's failures.
    login(cluster.channel(0).await, "alice", "alicepw").await.unwrap();
}

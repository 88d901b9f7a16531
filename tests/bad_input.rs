//! Bad input gets etcd's error, never a crash: each case against a real single-member process,
//! which must still answer afterwards.

mod common;

use std::time::Duration;

use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use bytes::{Buf, BufMut};
use common::{get, put, Cluster};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    let status = result.expect_err("the request must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

async fn still_serves(kv: &mut KvClient<Channel>) {
    kv.put(put("alive", "yes")).await.expect("the member still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_breaking_limits_get_etcds_errors() {
    let cluster = Cluster::start("limits", 1, &["--max-request-bytes", "10000"]);
    cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(0).await;

    let big = pb::PutRequest { key: b"big".to_vec(), value: vec![b'x'; 20_000], ..Default::default() };
    assert_status(kv.put(big).await, Code::InvalidArgument, "etcdserver: request is too large");

    let ops = (0..129)
        .map(|i| pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put(&format!("t{i}"), "v"))) });
    let txn = pb::TxnRequest { success: ops.collect(), ..Default::default() };
    assert_status(kv.txn(txn).await, Code::InvalidArgument, "etcdserver: too many operations in txn request");

    assert_status(kv.put(put("", "v")).await, Code::InvalidArgument, "etcdserver: key is not provided");
    assert_status(kv.range(get("")).await, Code::InvalidArgument, "etcdserver: key is not provided");

    let leased = pb::PutRequest { key: b"k".to_vec(), lease: 12345, ..Default::default() };
    assert_status(kv.put(leased).await, Code::NotFound, "etcdserver: requested lease not found");

    // range_end below key: an empty range, as in etcd.
    let backwards = pb::RangeRequest { key: b"z".to_vec(), range_end: b"a".to_vec(), ..Default::default() };
    assert!(kv.range(backwards).await.unwrap().into_inner().kvs.is_empty());

    let first = kv.put(put("c", "1")).await.unwrap().into_inner().header.unwrap().revision;
    let last = kv.put(put("c", "2")).await.unwrap().into_inner().header.unwrap().revision;
    kv.compact(pb::CompactionRequest { revision: last, physical: false }).await.unwrap();
    let old = pb::RangeRequest { key: b"c".to_vec(), revision: first, ..Default::default() };
    assert_status(kv.range(old).await, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted");
    let future = pb::RangeRequest { key: b"c".to_vec(), revision: last + 100, ..Default::default() };
    assert_status(kv.range(future).await, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision");

    still_serves(&mut kv).await;
}

/// Sends bytes as they are, so a test can send what no protobuf encoder would.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_refused_and_the_member_survives() {
    let cluster = Cluster::start("malformed", 1, &[]);
    cluster.leader(Duration::from_secs(20)).await;
    let mut grpc = tonic::client::Grpc::new(cluster.channel(0).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    // A field header promising a 2^60-byte string.
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x10];
    let result = grpc.unary(tonic::Request::new(garbage), path, Raw).await;
    let status = result.expect_err("malformed protobuf is refused");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    still_serves(&mut cluster.kv(0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backend_raises_nospace_and_refuses_writes_but_not_reads_or_deletes() {
    let cluster = Cluster::start("nospace", 1, &["--quota-backend-bytes", "300000"]);
    cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(0).await;
    let value = "x".repeat(50_000);
    let mut refused = None;
    for i in 0..200 {
        match kv.put(put(&format!("fill{i}"), &value)).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("writes are refused once the quota is passed");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "etcdserver: mvcc: database space exceeded");
    assert_eq!(kv.range(get("fill0")).await.unwrap().into_inner().kvs.len(), 1, "reads still work");
    let delete = pb::DeleteRangeRequest { key: b"fill0".to_vec(), ..Default::default() };
    assert_eq!(kv.delete_range(delete).await.unwrap().into_inner().deleted, 1, "deletes still work");
    let alarms = ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient::new(cluster.channel(0).await)
        .alarm(pb::AlarmRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alarms.alarms.len(), 1);
    assert_eq!(alarms.alarms[0].alarm, pb::AlarmType::Nospace as i32);
}

#[test]
fn a_data_dir_from_another_cluster_is_refused_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("ballot-foreign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let serve = |token: &str| {
        let ports = common::free_ports(2);
        let (port, peer) = (ports[0], format!("http://127.0.0.1:{}", ports[1]));
        std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}"), "--initial-cluster-token", token])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = serve("cluster-a");
    std::thread::sleep(Duration::from_millis(1500));
    std::process::Command::new("kill").arg("-TERM").arg(first.id().to_string()).status().unwrap();
    assert!(first.wait().unwrap().success());
    let second = serve("cluster-b").wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(stderr.contains("of cluster") && stderr.contains("refusing to start"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_watch_response_comes_in_fragments_when_the_watcher_allows_them() {
    let cluster = Cluster::start("fragments", 1, &["--max-request-bytes", "10000"]);
    cluster.leader(Duration::from_secs(20)).await;
    let mut kv = cluster.kv(0).await;
    for i in 0..30 {
        kv.put(put(&format!("big/{i:02}"), &"v".repeat(1000))).await.unwrap();
    }
    let create = pb::WatchCreateRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        prev_kv: true,
        fragment: true,
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
        .await
        .unwrap();
    let mut watch = ballot_proto::etcdserverpb::watch_client::WatchClient::new(cluster.channel(0).await);
    let mut responses = watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(responses.message().await.unwrap().unwrap().created);
    // One revision deletes 30 keys; with their previous values that is ~30 KB of events.
    let delete = pb::DeleteRangeRequest { key: b"big/".to_vec(), range_end: b"big0".to_vec(), prev_kv: false };
    kv.delete_range(delete).await.unwrap();
    let mut events = 0;
    let mut fragments = 0;
    loop {
        let response =
            tokio::time::timeout(Duration::from_secs(5), responses.message()).await.unwrap().unwrap().unwrap();
        events += response.events.len();
        fragments += 1;
        assert!(response.events.iter().all(|e| e.prev_kv.as_ref().is_some_and(|kv| kv.value.len() == 1000)));
        if !response.fragment {
            break;
        }
    }
    assert_eq!(events, 30);
    assert!(fragments > 1, "the revision was split");
    drop(tx);
}

//! The JSON mapping matches what etcd 3.4's gateway writes and accepts (bodies recorded from
//! etcd 3.4.23 and from Patroni's requests to it).

use ballot_proto::etcdserverpb as pb;
use ballot_proto::mvccpb;

#[test]
fn a_range_response_is_written_as_etcds_gateway_writes_it() {
    let response = pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            cluster_id: 324952591200643719,
            member_id: 3319814642761637952,
            revision: 2,
            raft_term: 2,
        }),
        kvs: vec![mvccpb::KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    assert_eq!(
        serde_json::to_string(&response).unwrap(),
        r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
    );
}

#[test]
fn a_put_event_has_no_type_and_a_delete_names_it() {
    let put = mvccpb::Event {
        r#type: 0,
        kv: Some(mvccpb::KeyValue { key: b"k".to_vec(), ..Default::default() }),
        prev_kv: None,
    };
    assert_eq!(serde_json::to_string(&put).unwrap(), r#"{"kv":{"key":"aw=="}}"#);
    let delete = mvccpb::Event { r#type: 1, ..put };
    assert_eq!(serde_json::to_string(&delete).unwrap(), r#"{"type":"DELETE","kv":{"key":"aw=="}}"#);
}

#[test]
fn patronis_requests_decode_with_either_field_name_and_ints_as_strings_or_numbers() {
    let txn: pb::TxnRequest = serde_json::from_str(
        r#"{"compare": [{"target": "MOD", "mod_revision": "15", "key": "L3N2Yy9sZWFkZXI="}], "success": [{"request_put": {"key": "a2V5", "value": "dg==", "lease": "2324035756446990698"}}], "unknown": 1}"#,
    )
    .unwrap();
    let compare = &txn.compare[0];
    assert_eq!(compare.target(), pb::compare::CompareTarget::Mod);
    assert_eq!(compare.target_union, Some(pb::compare::TargetUnion::ModRevision(15)));
    let Some(pb::request_op::Request::RequestPut(put)) = &txn.success[0].request else { panic!("a put") };
    assert_eq!(put.lease, 2324035756446990698);
    let range: pb::RangeRequest = serde_json::from_str(r#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":2}"#).unwrap();
    assert_eq!((range.range_end.as_slice(), range.limit), (&b"fop"[..], 2));
    let grant: pb::LeaseGrantRequest = serde_json::from_str(r#"{"TTL": 30}"#).unwrap();
    assert_eq!(grant.ttl, 30);
}

//! Between the wire types (`ballot-proto`) and the state machine's (`ballot-mvcc`).

use ballot_mvcc as m;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::mvccpb;

/// A key-value to the wire.
pub fn kv(kv: m::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// An event to the wire.
pub fn event(event: m::Event) -> mvccpb::Event {
    let kind = match event.kind {
        m::EventKind::Put => mvccpb::event::EventType::Put,
        m::EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event { r#type: kind as i32, kv: Some(kv(event.kv)), prev_kv: event.prev_kv.map(kv) }
}

/// A range request from the wire (`serializable` is the caller's business).
pub fn range_request(request: &pb::RangeRequest) -> m::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    m::RangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        limit: request.limit,
        revision: request.revision,
        sort_order: match request.sort_order() {
            SortOrder::None => m::SortOrder::None,
            SortOrder::Ascend => m::SortOrder::Ascend,
            SortOrder::Descend => m::SortOrder::Descend,
        },
        sort_target: match request.sort_target() {
            SortTarget::Key => m::SortTarget::Key,
            SortTarget::Version => m::SortTarget::Version,
            SortTarget::Create => m::SortTarget::Create,
            SortTarget::Mod => m::SortTarget::Mod,
            SortTarget::Value => m::SortTarget::Value,
        },
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

/// A range response to the wire.
pub fn range_response(response: m::RangeResponse, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: response.kvs.into_iter().map(kv).collect(),
        more: response.more,
        count: response.count,
    }
}

/// A put from the wire.
pub fn put_request(request: &pb::PutRequest) -> m::PutRequest {
    m::PutRequest {
        key: request.key.clone(),
        value: request.value.clone(),
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// A delete from the wire.
pub fn delete_request(request: &pb::DeleteRangeRequest) -> m::DeleteRangeRequest {
    m::DeleteRangeRequest { key: request.key.clone(), range_end: request.range_end.clone(), prev_kv: request.prev_kv }
}

/// A txn from the wire; `Err` names what is malformed.
pub fn txn_request(request: &pb::TxnRequest) -> Result<m::TxnRequest, &'static str> {
    let compare = request.compare.iter().map(compare).collect::<Result<_, _>>()?;
    let ops = |ops: &[pb::RequestOp]| ops.iter().map(request_op).collect::<Result<Vec<_>, _>>();
    Ok(m::TxnRequest { compare, success: ops(&request.success)?, failure: ops(&request.failure)? })
}

fn request_op(op: &pb::RequestOp) -> Result<m::RequestOp, &'static str> {
    use pb::request_op::Request;
    Ok(match op.request.as_ref().ok_or("etcdserver: a txn operation is empty")? {
        Request::RequestRange(range) => m::RequestOp::Range(range_request(range)),
        Request::RequestPut(put) => m::RequestOp::Put(put_request(put)),
        Request::RequestDeleteRange(delete) => m::RequestOp::DeleteRange(delete_request(delete)),
        Request::RequestTxn(txn) => m::RequestOp::Txn(txn_request(txn)?),
    })
}

fn compare(compare: &pb::Compare) -> Result<m::Compare, &'static str> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match CompareResult::try_from(compare.result).map_err(|_| "etcdserver: unknown compare result")? {
        CompareResult::Equal => m::CompareResult::Equal,
        CompareResult::Greater => m::CompareResult::Greater,
        CompareResult::Less => m::CompareResult::Less,
        CompareResult::NotEqual => m::CompareResult::NotEqual,
    };
    let target = CompareTarget::try_from(compare.target).map_err(|_| "etcdserver: unknown compare target")?;
    // The union may be absent for a zero value (proto3): the target field says which it is.
    let union = compare.target_union.clone();
    let target = match target {
        CompareTarget::Version => m::CompareTarget::Version(match union {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        CompareTarget::Create => m::CompareTarget::Create(match union {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        CompareTarget::Mod => m::CompareTarget::Mod(match union {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        CompareTarget::Value => m::CompareTarget::Value(match union {
            Some(TargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        CompareTarget::Lease => m::CompareTarget::Lease(match union {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
    };
    Ok(m::Compare { result, target, key: compare.key.clone(), range_end: compare.range_end.clone() })
}

/// A txn response to the wire (each nested response carries the same header).
pub fn txn_response(response: m::TxnResponse, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    use pb::response_op::Response;
    // As etcd fills them: each operation's answer has a header with the revision only, and a
    // nested txn's own header is empty.
    let revision = header.as_ref().map_or(0, |header| header.revision);
    let op_header = Some(pb::ResponseHeader { revision, ..Default::default() });
    let responses = response
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                m::ResponseOp::Range(range) => Response::ResponseRange(range_response(range, op_header)),
                m::ResponseOp::Put(put) => {
                    Response::ResponsePut(pb::PutResponse { header: op_header, prev_kv: put.prev_kv.map(kv) })
                }
                m::ResponseOp::DeleteRange(delete) => Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                    header: op_header,
                    deleted: delete.deleted,
                    prev_kvs: delete.prev_kvs.into_iter().map(kv).collect(),
                }),
                m::ResponseOp::Txn(txn) => {
                    let mut nested = txn_response(txn, op_header);
                    nested.header = Some(pb::ResponseHeader::default());
                    Response::ResponseTxn(nested)
                }
            }),
        })
        .collect();
    pb::TxnResponse { header, succeeded: response.succeeded, responses }
}

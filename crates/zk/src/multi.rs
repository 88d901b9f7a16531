//! `multi` (atomic writes) and `multiRead`: a sequence of operations, each after a
//! [`MultiHeader`], ended by a header of type −1 with `done` set; the answer is built the same
//! way from results.
//!
//! A failed transaction answers every operation: those before the failing one with error 0,
//! the failing one with its code, those after it with RuntimeInconsistency (−2); the reply
//! header's error stays 0 (clients read the results).

use crate::codes::{op, ErrorCode};
use crate::jute::{DecodeError, Jute, Reader, Writer};
use crate::record;
use crate::records::{
    CheckVersionRequest, Create2Response, CreateRequest, CreateResponse, CreateTtlRequest, DeleteRequest,
    GetDataResponse, PathWatchRequest, SetDataRequest, Stat, StatResponse,
};

record! {
    /// Before each operation and result of a multi.
    pub struct MultiHeader {
        /// The operation ([`crate::codes::op`]), −1 at the end.
        pub op: i32,
        /// Set on the end marker.
        pub done: bool,
        /// −1 in requests and at the end; a result's code in answers.
        pub err: i32,
    }
}

const END: MultiHeader = MultiHeader { op: -1, done: true, err: -1 };

/// One operation of a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create, create2 or createContainer (`op` says which the client sent).
    Create {
        /// The operation code sent.
        op: i32,
        /// The request.
        request: CreateRequest,
    },
    /// createTTL.
    CreateTtl(CreateTtlRequest),
    /// delete.
    Delete(DeleteRequest),
    /// setData.
    SetData(SetDataRequest),
    /// check.
    Check(CheckVersionRequest),
    /// getChildren (multiRead only).
    GetChildren(PathWatchRequest),
    /// getData (multiRead only).
    GetData(PathWatchRequest),
}

impl MultiOp {
    /// True for the reads a multiRead may hold (a multi holds only writes).
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    fn code(&self) -> i32 {
        match self {
            MultiOp::Create { op, .. } => *op,
            MultiOp::CreateTtl(_) => op::CREATE_TTL,
            MultiOp::Delete(_) => op::DELETE,
            MultiOp::SetData(_) => op::SET_DATA,
            MultiOp::Check(_) => op::CHECK,
            MultiOp::GetChildren(_) => op::GET_CHILDREN,
            MultiOp::GetData(_) => op::GET_DATA,
        }
    }
}

/// The operations of a multi or multiRead request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiRequest {
    /// In order.
    pub ops: Vec<MultiOp>,
}

impl Jute for MultiRequest {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut ops = Vec::new();
        loop {
            let header = MultiHeader::read(reader)?;
            if header.done {
                return Ok(MultiRequest { ops });
            }
            ops.push(match header.op {
                op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => {
                    MultiOp::Create { op: header.op, request: CreateRequest::read(reader)? }
                }
                op::CREATE_TTL => MultiOp::CreateTtl(CreateTtlRequest::read(reader)?),
                op::DELETE => MultiOp::Delete(DeleteRequest::read(reader)?),
                op::SET_DATA => MultiOp::SetData(SetDataRequest::read(reader)?),
                op::CHECK => MultiOp::Check(CheckVersionRequest::read(reader)?),
                op::GET_CHILDREN => MultiOp::GetChildren(PathWatchRequest::read(reader)?),
                op::GET_DATA => MultiOp::GetData(PathWatchRequest::read(reader)?),
                other => return Err(DecodeError::Invalid(format!("operation {other} cannot be part of a multi"))),
            });
        }
    }

    fn write(&self, writer: &mut Writer) {
        for one in &self.ops {
            MultiHeader { op: one.code(), done: false, err: -1 }.write(writer);
            match one {
                MultiOp::Create { request, .. } => request.write(writer),
                MultiOp::CreateTtl(request) => request.write(writer),
                MultiOp::Delete(request) => request.write(writer),
                MultiOp::SetData(request) => request.write(writer),
                MultiOp::Check(request) => request.write(writer),
                MultiOp::GetChildren(request) | MultiOp::GetData(request) => request.write(writer),
            }
        }
        END.write(writer);
    }
}

/// The result of one operation of a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// create: the node's name.
    Create(String),
    /// create2, createContainer, createTTL: name and metadata.
    Create2(String, Stat),
    /// delete.
    Delete,
    /// setData: the new metadata.
    SetData(Stat),
    /// check.
    Check,
    /// getChildren: the names.
    GetChildren(Vec<String>),
    /// getData: data and metadata.
    GetData(Option<Vec<u8>>, Stat),
    /// Failed, or (code 0) undone because another operation failed.
    Error(ErrorCode),
}

impl MultiResult {
    fn header(&self) -> MultiHeader {
        let (op, err) = match self {
            MultiResult::Create(_) => (op::CREATE, 0),
            MultiResult::Create2(..) => (op::CREATE2, 0),
            MultiResult::Delete => (op::DELETE, 0),
            MultiResult::SetData(_) => (op::SET_DATA, 0),
            MultiResult::Check => (op::CHECK, 0),
            MultiResult::GetChildren(_) => (op::GET_CHILDREN, 0),
            MultiResult::GetData(..) => (op::GET_DATA, 0),
            MultiResult::Error(code) => (op::ERROR, code.code()),
        };
        MultiHeader { op, done: false, err }
    }
}

/// The results of a multi or multiRead, in the order of its operations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    /// One per operation.
    pub results: Vec<MultiResult>,
}

impl MultiResponse {
    /// The answer to a transaction whose operation `failed` failed with `code`: everything
    /// before it undone (0), everything after it not tried (RuntimeInconsistency).
    pub fn failed(len: usize, failed: usize, code: ErrorCode) -> MultiResponse {
        let results = (0..len)
            .map(|i| match i.cmp(&failed) {
                std::cmp::Ordering::Less => MultiResult::Error(ErrorCode::Ok),
                std::cmp::Ordering::Equal => MultiResult::Error(code),
                std::cmp::Ordering::Greater => MultiResult::Error(ErrorCode::RuntimeInconsistency),
            })
            .collect();
        MultiResponse { results }
    }
}

impl Jute for MultiResponse {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut results = Vec::new();
        loop {
            let header = MultiHeader::read(reader)?;
            if header.done {
                return Ok(MultiResponse { results });
            }
            results.push(match header.op {
                op::CREATE => MultiResult::Create(CreateResponse::read(reader)?.path),
                op::CREATE2 => {
                    let response = Create2Response::read(reader)?;
                    MultiResult::Create2(response.path, response.stat)
                }
                op::DELETE => MultiResult::Delete,
                op::SET_DATA => MultiResult::SetData(StatResponse::read(reader)?.stat),
                op::CHECK => MultiResult::Check,
                op::GET_CHILDREN => MultiResult::GetChildren(reader.vector()?),
                op::GET_DATA => {
                    let response = GetDataResponse::read(reader)?;
                    MultiResult::GetData(response.data, response.stat)
                }
                op::ERROR => {
                    let err = reader.int()?;
                    let code = ErrorCode::from_code(err)
                        .ok_or_else(|| DecodeError::Invalid(format!("unknown error code {err}")))?;
                    MultiResult::Error(code)
                }
                other => return Err(DecodeError::Invalid(format!("unknown multi result type {other}"))),
            });
        }
    }

    fn write(&self, writer: &mut Writer) {
        for result in &self.results {
            result.header().write(writer);
            match result {
                MultiResult::Create(path) => writer.ustring(path),
                MultiResult::Create2(path, stat) => {
                    writer.ustring(path);
                    stat.write(writer);
                }
                MultiResult::Delete | MultiResult::Check => {}
                MultiResult::SetData(stat) => stat.write(writer),
                MultiResult::GetChildren(children) => writer.vector(children),
                MultiResult::GetData(data, stat) => {
                    writer.buffer(data.as_deref());
                    stat.write(writer);
                }
                MultiResult::Error(code) => writer.int(code.code()),
            }
        }
        END.write(writer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_round_trips_and_ends_with_the_marker() {
        let request = MultiRequest {
            ops: vec![
                MultiOp::Create {
                    op: op::CREATE,
                    request: CreateRequest { path: "/a".into(), data: Some(b"x".to_vec()), acl: vec![], flags: 0 },
                },
                MultiOp::SetData(SetDataRequest { path: "/a".into(), data: None, version: -1 }),
                MultiOp::Check(CheckVersionRequest { path: "/a".into(), version: 1 }),
                MultiOp::Delete(DeleteRequest { path: "/a".into(), version: -1 }),
            ],
        };
        let bytes = request.encode();
        assert_eq!(&bytes[bytes.len() - 9..], &[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(MultiRequest::decode(&bytes).unwrap(), request);
        assert_eq!(MultiRequest::decode(&END.encode()).unwrap(), MultiRequest::default(), "kazoo's empty multi");
    }

    #[test]
    fn a_failed_transaction_reports_every_operation() {
        let response = MultiResponse::failed(4, 1, ErrorCode::NodeExists);
        assert_eq!(
            response.results,
            vec![
                MultiResult::Error(ErrorCode::Ok),
                MultiResult::Error(ErrorCode::NodeExists),
                MultiResult::Error(ErrorCode::RuntimeInconsistency),
                MultiResult::Error(ErrorCode::RuntimeInconsistency),
            ]
        );
        assert_eq!(MultiResponse::decode(&response.encode()).unwrap(), response);
        let ok = MultiResponse {
            results: vec![
                MultiResult::Create("/a0000000001".into()),
                MultiResult::Create2("/b".into(), Stat::default()),
                MultiResult::Delete,
                MultiResult::SetData(Stat { version: 2, ..Stat::default() }),
                MultiResult::GetData(None, Stat::default()),
                MultiResult::GetChildren(vec!["x".into()]),
            ],
        };
        assert_eq!(MultiResponse::decode(&ok.encode()).unwrap(), ok);
    }

    #[test]
    fn an_operation_that_cannot_be_in_a_multi_is_refused() {
        let mut w = Writer::new();
        MultiHeader { op: op::SYNC, done: false, err: -1 }.write(&mut w);
        w.ustring("/a");
        assert!(matches!(MultiRequest::decode(&w.into_bytes()), Err(DecodeError::Invalid(_))));
    }
}

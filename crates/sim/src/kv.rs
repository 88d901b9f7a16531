//! What simulated clients ask for, and how it maps onto the real state machine
//! (`ballot-mvcc`): a read is a Range, a write a Put, a compare-and-set a Txn comparing the value
//! (or, for "absent", the version 0), a delete a DeleteRange.
//!
//! The replica (`ballot-node`) carries the client's request id in each entry, so the node that
//! proposed it can answer its client when it is applied. The state machine has
//! etcd's semantics: a request applied twice takes effect twice. So the simulated network never
//! duplicates client requests, and a client re-sends a request only after a node refused it,
//! which proves that copy was not proposed.

use ballot_mvcc::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, Response,
    TxnRequest,
};

/// A client's request id: unique per client request.
pub type RequestId = u64;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Read the value.
    Read,
    /// Set the value.
    Write(u64),
    /// Set to `new` if the value is `expected` (`None` = absent).
    Cas {
        /// Required current value.
        expected: Option<u64>,
        /// Value to set.
        new: u64,
    },
    /// Remove the key.
    Delete,
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult {
    /// A read's value.
    Value(Option<u64>),
    /// A write or delete took effect.
    Written,
    /// A cas took effect (true) or found another value (false).
    Swapped(bool),
}

/// The key's name in the store.
pub fn key_bytes(key: u8) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

/// Values are u64s, stored big-endian.
pub fn value_bytes(value: u64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

/// Reads a stored value back (`None` for bytes that are not a u64: never written by a client).
pub fn value_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The state-machine command for a write-type operation (`None` for a read).
pub fn command(key: u8, op: &KvOp) -> Option<Command> {
    let key = key_bytes(key);
    Some(match op {
        KvOp::Read => return None,
        KvOp::Write(value) => Command::Put(PutRequest { key, value: value_bytes(*value), ..Default::default() }),
        KvOp::Delete => Command::DeleteRange(DeleteRangeRequest { key, ..Default::default() }),
        KvOp::Cas { expected, new } => {
            let target = match expected {
                Some(value) => CompareTarget::Value(value_bytes(*value)),
                None => CompareTarget::Version(0),
            };
            let compare = Compare { result: CompareResult::Equal, target, key: key.clone(), range_end: Vec::new() };
            let put = PutRequest { key, value: value_bytes(*new), ..Default::default() };
            Command::Txn(TxnRequest { compare: vec![compare], success: vec![RequestOp::Put(put)], failure: vec![] })
        }
    })
}

/// The client-visible result of an applied command.
pub fn result_of(response: &Response) -> KvResult {
    match response {
        Response::Txn(txn) => KvResult::Swapped(txn.succeeded),
        _ => KvResult::Written,
    }
}

/// The read for a read operation.
pub fn read_request(key: u8) -> RangeRequest {
    RangeRequest { key: key_bytes(key), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_type_operation_is_one_command_and_reads_are_none() {
        for op in [
            KvOp::Write(7),
            KvOp::Delete,
            KvOp::Cas { expected: None, new: 3 },
            KvOp::Cas { expected: Some(2), new: 3 },
        ] {
            let command = command(4, &op).unwrap();
            let entry = ballot_node::encode_proposal(99, &command);
            assert_eq!(ballot_node::decode_proposal(&entry), Some((99, command)));
        }
        assert!(command(1, &KvOp::Read).is_none());
    }
}

//! The binary form of a [`Command`] in a Raft log entry. Compact and self-describing enough to
//! validate: decoding arbitrary bytes returns an error, never panics, and never allocates more
//! than the input could hold.
//!
//! Integers are big-endian; byte strings and lists are prefixed by a u32 length; each command,
//! operation and compare target starts with a tag byte. Nesting of transactions is bounded.

use crate::types::*;

/// Deepest transaction nesting accepted when decoding.
pub const TXN_DEPTH_MAX: usize = 16;

/// Why bytes are not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed command: {0}")]
pub struct DecodeError(&'static str);

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(v as u8);
    }
    fn len(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
}

/// Encodes a command.
pub fn encode(command: &Command) -> Vec<u8> {
    let mut out = Out(Vec::with_capacity(64));
    command_into(&mut out, command);
    out.0
}

fn command_into(out: &mut Out, command: &Command) {
    match command {
        Command::Put(put) => {
            out.u8(1);
            put_request(out, put);
        }
        Command::DeleteRange(delete) => {
            out.u8(2);
            delete_request(out, delete);
        }
        Command::Txn(txn) => {
            out.u8(3);
            txn_request(out, txn);
        }
        Command::Compact { revision } => {
            out.u8(4);
            out.i64(*revision);
        }
        Command::LeaseGrant { id, ttl } => {
            out.u8(5);
            out.i64(*id);
            out.i64(*ttl);
        }
        Command::LeaseRevoke { id } => {
            out.u8(6);
            out.i64(*id);
        }
        Command::LeaseCheckpoint { id, remaining_ttl } => {
            out.u8(7);
            out.i64(*id);
            out.i64(*remaining_ttl);
        }
        Command::Alarm { activate, kind, member_id } => {
            out.u8(8);
            out.bool(*activate);
            out.u8(match kind {
                AlarmKind::NoSpace => 1,
                AlarmKind::Corrupt => 2,
            });
            out.i64(*member_id as i64);
        }
        Command::Members(changes) => {
            out.u8(9);
            out.len(changes.len());
            for change in changes {
                member_change(out, change);
            }
        }
        Command::Auth(auth) => {
            out.u8(10);
            auth_command(out, auth);
        }
        Command::Zk(write) => {
            out.u8(12);
            out.bytes(&ballot_zk::jute::Jute::encode(write));
        }
        Command::ZkSession { id, ttl, password } => {
            out.u8(13);
            out.i64(*id);
            out.i64(*ttl);
            out.bytes(password);
        }
        Command::AsUser { user, revision, command } => {
            out.u8(11);
            out.bytes(user.as_bytes());
            out.i64(*revision as i64);
            command_into(out, command);
        }
    }
}

fn auth_command(out: &mut Out, command: &crate::auth::AuthCommand) {
    use crate::auth::AuthCommand as A;
    match command {
        A::Enable { forward_key } => {
            out.u8(1);
            out.bytes(forward_key);
        }
        A::Disable => out.u8(2),
        A::Authenticate { name, token_hash, checked_at } => {
            out.u8(3);
            out.bytes(name.as_bytes());
            out.bytes(token_hash);
            out.i64(*checked_at as i64);
        }
        A::UserAdd { name, password, no_password } => {
            out.u8(4);
            out.bytes(name.as_bytes());
            out.bytes(password.as_bytes());
            out.bool(*no_password);
        }
        A::UserDelete { name } => {
            out.u8(5);
            out.bytes(name.as_bytes());
        }
        A::UserChangePassword { name, password } => {
            out.u8(6);
            out.bytes(name.as_bytes());
            out.bytes(password.as_bytes());
        }
        A::UserGrantRole { user, role } => {
            out.u8(7);
            out.bytes(user.as_bytes());
            out.bytes(role.as_bytes());
        }
        A::UserRevokeRole { user, role } => {
            out.u8(8);
            out.bytes(user.as_bytes());
            out.bytes(role.as_bytes());
        }
        A::RoleAdd { name } => {
            out.u8(9);
            out.bytes(name.as_bytes());
        }
        A::RoleDelete { name } => {
            out.u8(10);
            out.bytes(name.as_bytes());
        }
        A::RoleGrantPermission { role, permission } => {
            out.u8(11);
            out.bytes(role.as_bytes());
            out.u8(permission.kind as u8);
            out.bytes(&permission.key);
            out.bytes(&permission.range_end);
        }
        A::RoleRevokePermission { role, key, range_end } => {
            out.u8(12);
            out.bytes(role.as_bytes());
            out.bytes(key);
            out.bytes(range_end);
        }
    }
}

fn read_auth_command(input: &mut In) -> Result<crate::auth::AuthCommand, DecodeError> {
    use crate::auth::{AuthCommand as A, Permission, PermissionKind};
    Ok(match input.u8()? {
        1 => A::Enable { forward_key: input.bytes()? },
        2 => A::Disable,
        3 => A::Authenticate { name: read_string(input)?, token_hash: input.bytes()?, checked_at: input.i64()? as u64 },
        4 => A::UserAdd { name: read_string(input)?, password: read_string(input)?, no_password: input.bool()? },
        5 => A::UserDelete { name: read_string(input)? },
        6 => A::UserChangePassword { name: read_string(input)?, password: read_string(input)? },
        7 => A::UserGrantRole { user: read_string(input)?, role: read_string(input)? },
        8 => A::UserRevokeRole { user: read_string(input)?, role: read_string(input)? },
        9 => A::RoleAdd { name: read_string(input)? },
        10 => A::RoleDelete { name: read_string(input)? },
        11 => {
            let role = read_string(input)?;
            let kind = PermissionKind::from_code(u64::from(input.u8()?)).ok_or(DecodeError("unknown permission"))?;
            A::RoleGrantPermission {
                role,
                permission: Permission { kind, key: input.bytes()?, range_end: input.bytes()? },
            }
        }
        12 => A::RoleRevokePermission { role: read_string(input)?, key: input.bytes()?, range_end: input.bytes()? },
        _ => return Err(DecodeError("unknown auth command")),
    })
}

fn strings(out: &mut Out, items: &[String]) {
    out.len(items.len());
    for item in items {
        out.bytes(item.as_bytes());
    }
}

fn member_record(out: &mut Out, record: &MemberRecord) {
    out.i64(record.id as i64);
    out.bytes(record.name.as_bytes());
    strings(out, &record.peer_urls);
    strings(out, &record.client_urls);
    out.bool(record.is_learner);
}

fn member_change(out: &mut Out, change: &MemberChange) {
    match change {
        MemberChange::Upsert(record) => {
            out.u8(1);
            member_record(out, record);
        }
        MemberChange::Remove(id) => {
            out.u8(2);
            out.i64(*id as i64);
        }
        MemberChange::SetPeerUrls { id, peer_urls } => {
            out.u8(3);
            out.i64(*id as i64);
            strings(out, peer_urls);
        }
        MemberChange::Publish { id, name, client_urls } => {
            out.u8(4);
            out.i64(*id as i64);
            out.bytes(name.as_bytes());
            strings(out, client_urls);
        }
    }
}

/// Encodes a member record (as the member table stores it).
pub fn encode_member(record: &MemberRecord) -> Vec<u8> {
    let mut out = Out(Vec::with_capacity(64));
    member_record(&mut out, record);
    out.0
}

/// Decodes a member record written by [`encode_member`].
pub fn decode_member(bytes: &[u8]) -> Result<MemberRecord, DecodeError> {
    let mut input = In(bytes);
    let record = read_member(&mut input)?;
    if !input.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(record)
}

fn read_string(input: &mut In) -> Result<String, DecodeError> {
    String::from_utf8(input.bytes()?).map_err(|_| DecodeError("a string is not UTF-8"))
}

fn read_strings(input: &mut In) -> Result<Vec<String>, DecodeError> {
    let n = input.len(4)?;
    (0..n).map(|_| read_string(input)).collect()
}

fn read_member(input: &mut In) -> Result<MemberRecord, DecodeError> {
    Ok(MemberRecord {
        id: input.i64()? as u64,
        name: read_string(input)?,
        peer_urls: read_strings(input)?,
        client_urls: read_strings(input)?,
        is_learner: input.bool()?,
    })
}

fn read_member_change(input: &mut In) -> Result<MemberChange, DecodeError> {
    Ok(match input.u8()? {
        1 => MemberChange::Upsert(read_member(input)?),
        2 => MemberChange::Remove(input.i64()? as u64),
        3 => MemberChange::SetPeerUrls { id: input.i64()? as u64, peer_urls: read_strings(input)? },
        4 => MemberChange::Publish {
            id: input.i64()? as u64,
            name: read_string(input)?,
            client_urls: read_strings(input)?,
        },
        _ => return Err(DecodeError("unknown member change")),
    })
}

fn put_request(out: &mut Out, put: &PutRequest) {
    out.bytes(&put.key);
    out.bytes(&put.value);
    out.i64(put.lease);
    out.bool(put.prev_kv);
    out.bool(put.ignore_value);
    out.bool(put.ignore_lease);
}

fn delete_request(out: &mut Out, delete: &DeleteRangeRequest) {
    out.bytes(&delete.key);
    out.bytes(&delete.range_end);
    out.bool(delete.prev_kv);
}

fn range_request(out: &mut Out, range: &RangeRequest) {
    out.bytes(&range.key);
    out.bytes(&range.range_end);
    out.i64(range.limit);
    out.i64(range.revision);
    out.u8(match range.sort_order {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    });
    out.u8(match range.sort_target {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    });
    out.bool(range.keys_only);
    out.bool(range.count_only);
    for filter in [range.min_mod_revision, range.max_mod_revision, range.min_create_revision, range.max_create_revision]
    {
        out.i64(filter);
    }
}

fn txn_request(out: &mut Out, txn: &TxnRequest) {
    out.len(txn.compare.len());
    for compare in &txn.compare {
        out.u8(match compare.result {
            CompareResult::Equal => 0,
            CompareResult::Greater => 1,
            CompareResult::Less => 2,
            CompareResult::NotEqual => 3,
        });
        match &compare.target {
            CompareTarget::Version(v) => {
                out.u8(0);
                out.i64(*v);
            }
            CompareTarget::Create(v) => {
                out.u8(1);
                out.i64(*v);
            }
            CompareTarget::Mod(v) => {
                out.u8(2);
                out.i64(*v);
            }
            CompareTarget::Value(v) => {
                out.u8(3);
                out.bytes(v);
            }
            CompareTarget::Lease(v) => {
                out.u8(4);
                out.i64(*v);
            }
        }
        out.bytes(&compare.key);
        out.bytes(&compare.range_end);
    }
    for branch in [&txn.success, &txn.failure] {
        out.len(branch.len());
        for op in branch {
            match op {
                RequestOp::Range(range) => {
                    out.u8(0);
                    range_request(out, range);
                }
                RequestOp::Put(put) => {
                    out.u8(1);
                    put_request(out, put);
                }
                RequestOp::DeleteRange(delete) => {
                    out.u8(2);
                    delete_request(out, delete);
                }
                RequestOp::Txn(nested) => {
                    out.u8(3);
                    txn_request(out, nested);
                }
            }
        }
    }
}

struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }
    /// A length, checked against what is left (each item takes at least `item_bytes_min`).
    fn len(&mut self, item_bytes_min: usize) -> Result<usize, DecodeError> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if n.saturating_mul(item_bytes_min.max(1)) > self.0.len() {
            return Err(DecodeError("length beyond the input"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }
}

/// Decodes a command written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
    let mut input = In(bytes);
    let command = read_command(&mut input, 0)?;
    if !input.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(command)
}

fn read_command(input: &mut In, depth: usize) -> Result<Command, DecodeError> {
    Ok(match input.u8()? {
        1 => Command::Put(read_put(input)?),
        2 => Command::DeleteRange(read_delete(input)?),
        3 => Command::Txn(read_txn(input, 0)?),
        4 => Command::Compact { revision: input.i64()? },
        5 => Command::LeaseGrant { id: input.i64()?, ttl: input.i64()? },
        6 => Command::LeaseRevoke { id: input.i64()? },
        7 => Command::LeaseCheckpoint { id: input.i64()?, remaining_ttl: input.i64()? },
        8 => {
            let activate = input.bool()?;
            let kind = match input.u8()? {
                1 => AlarmKind::NoSpace,
                2 => AlarmKind::Corrupt,
                _ => return Err(DecodeError("unknown alarm")),
            };
            Command::Alarm { activate, kind, member_id: input.i64()? as u64 }
        }
        9 => {
            let n = input.len(9)?;
            Command::Members((0..n).map(|_| read_member_change(input)).collect::<Result<_, _>>()?)
        }
        10 => Command::Auth(read_auth_command(input)?),
        12 => Command::Zk(
            <ballot_zk::tree::Write as ballot_zk::jute::Jute>::decode(&input.bytes()?)
                .map_err(|_| DecodeError("malformed znode write"))?,
        ),
        13 => Command::ZkSession { id: input.i64()?, ttl: input.i64()?, password: input.bytes()? },
        // One user per command: a wrapped wrapper is not a command anyone sends.
        11 if depth == 0 => Command::AsUser {
            user: read_string(input)?,
            revision: input.i64()? as u64,
            command: Box::new(read_command(input, depth + 1)?),
        },
        _ => return Err(DecodeError("unknown command")),
    })
}

fn read_put(input: &mut In) -> Result<PutRequest, DecodeError> {
    Ok(PutRequest {
        key: input.bytes()?,
        value: input.bytes()?,
        lease: input.i64()?,
        prev_kv: input.bool()?,
        ignore_value: input.bool()?,
        ignore_lease: input.bool()?,
    })
}

fn read_delete(input: &mut In) -> Result<DeleteRangeRequest, DecodeError> {
    Ok(DeleteRangeRequest { key: input.bytes()?, range_end: input.bytes()?, prev_kv: input.bool()? })
}

fn read_range(input: &mut In) -> Result<RangeRequest, DecodeError> {
    let key = input.bytes()?;
    let range_end = input.bytes()?;
    let limit = input.i64()?;
    let revision = input.i64()?;
    let sort_order = match input.u8()? {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => return Err(DecodeError("bad sort order")),
    };
    let sort_target = match input.u8()? {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => return Err(DecodeError("bad sort target")),
    };
    Ok(RangeRequest {
        key,
        range_end,
        limit,
        revision,
        sort_order,
        sort_target,
        keys_only: input.bool()?,
        count_only: input.bool()?,
        min_mod_revision: input.i64()?,
        max_mod_revision: input.i64()?,
        min_create_revision: input.i64()?,
        max_create_revision: input.i64()?,
    })
}

fn read_txn(input: &mut In, depth: usize) -> Result<TxnRequest, DecodeError> {
    if depth > TXN_DEPTH_MAX {
        return Err(DecodeError("transactions nested too deeply"));
    }
    let mut txn = TxnRequest::default();
    for _ in 0..input.len(10)? {
        let result = match input.u8()? {
            0 => CompareResult::Equal,
            1 => CompareResult::Greater,
            2 => CompareResult::Less,
            3 => CompareResult::NotEqual,
            _ => return Err(DecodeError("bad compare result")),
        };
        let target = match input.u8()? {
            0 => CompareTarget::Version(input.i64()?),
            1 => CompareTarget::Create(input.i64()?),
            2 => CompareTarget::Mod(input.i64()?),
            3 => CompareTarget::Value(input.bytes()?),
            4 => CompareTarget::Lease(input.i64()?),
            _ => return Err(DecodeError("bad compare target")),
        };
        txn.compare.push(Compare { result, target, key: input.bytes()?, range_end: input.bytes()? });
    }
    for branch in [&mut txn.success, &mut txn.failure] {
        for _ in 0..input.len(1)? {
            branch.push(match input.u8()? {
                0 => RequestOp::Range(read_range(input)?),
                1 => RequestOp::Put(read_put(input)?),
                2 => RequestOp::DeleteRange(read_delete(input)?),
                3 => RequestOp::Txn(read_txn(input, depth + 1)?),
                _ => return Err(DecodeError("unknown operation")),
            });
        }
    }
    Ok(txn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..8)
    }

    fn put() -> impl Strategy<Value = PutRequest> {
        (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, [a, b, c])| PutRequest {
            key,
            value,
            lease,
            prev_kv: a,
            ignore_value: b,
            ignore_lease: c,
        })
    }

    fn op() -> impl Strategy<Value = RequestOp> {
        let leaf = prop_oneof![
            put().prop_map(RequestOp::Put),
            (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| RequestOp::DeleteRange(
                DeleteRangeRequest { key, range_end, prev_kv }
            )),
            (bytes(), any::<i64>(), any::<bool>()).prop_map(|(key, limit, count_only)| RequestOp::Range(
                RangeRequest {
                    key,
                    limit,
                    count_only,
                    sort_order: SortOrder::Descend,
                    sort_target: SortTarget::Mod,
                    ..Default::default()
                }
            )),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            (proptest::collection::vec(inner.clone(), 0..4), proptest::collection::vec(inner, 0..4), bytes()).prop_map(
                |(success, failure, value)| {
                    let compare = vec![Compare {
                        result: CompareResult::NotEqual,
                        target: CompareTarget::Value(value),
                        key: b"k".to_vec(),
                        range_end: vec![],
                    }];
                    RequestOp::Txn(TxnRequest { compare, success, failure })
                },
            )
        })
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            put().prop_map(Command::Put),
            op().prop_map(|op| match op {
                RequestOp::Txn(txn) => Command::Txn(txn),
                RequestOp::Put(put) => Command::Put(put),
                RequestOp::DeleteRange(delete) => Command::DeleteRange(delete),
                RequestOp::Range(range) =>
                    Command::Txn(TxnRequest { success: vec![RequestOp::Range(range)], ..Default::default() }),
            }),
            any::<i64>().prop_map(|revision| Command::Compact { revision }),
            (any::<i64>(), any::<i64>()).prop_map(|(id, ttl)| Command::LeaseGrant { id, ttl }),
            any::<i64>().prop_map(|id| Command::LeaseRevoke { id }),
            (any::<i64>(), any::<i64>()).prop_map(|(id, remaining_ttl)| Command::LeaseCheckpoint { id, remaining_ttl }),
            (any::<bool>(), any::<bool>(), any::<u64>()).prop_map(|(activate, corrupt, member_id)| Command::Alarm {
                activate,
                kind: if corrupt { AlarmKind::Corrupt } else { AlarmKind::NoSpace },
                member_id,
            }),
            proptest::collection::vec(member_change(), 0..4).prop_map(Command::Members),
            (any::<i64>(), any::<i64>(), bytes()).prop_map(|(id, ttl, password)| Command::ZkSession {
                id,
                ttl,
                password
            }),
            ("/[a-z]{0,8}", any::<i64>(), any::<i32>(), proptest::option::of(bytes())).prop_map(
                |(path, session, version, data)| Command::Zk(ballot_zk::tree::Write {
                    ops: vec![
                        ballot_zk::tree::Op::SetData { path: path.clone(), data, version },
                        ballot_zk::tree::Op::Delete { path, version },
                    ],
                    session,
                    ids: vec![],
                    now_ms: session,
                })
            ),
        ]
    }

    fn member_change() -> impl Strategy<Value = MemberChange> {
        let urls = proptest::collection::vec("[a-z:/0-9.]{0,12}", 0..3);
        prop_oneof![
            (any::<u64>(), "[a-z0-9]{0,6}", urls.clone(), urls.clone(), any::<bool>()).prop_map(
                |(id, name, peer_urls, client_urls, is_learner)| MemberChange::Upsert(MemberRecord {
                    id,
                    name,
                    peer_urls,
                    client_urls,
                    is_learner
                })
            ),
            any::<u64>().prop_map(MemberChange::Remove),
            (any::<u64>(), urls.clone()).prop_map(|(id, peer_urls)| MemberChange::SetPeerUrls { id, peer_urls }),
            (any::<u64>(), "[a-z0-9]{0,6}", urls).prop_map(|(id, name, client_urls)| MemberChange::Publish {
                id,
                name,
                client_urls
            }),
        ]
    }

    proptest! {
        #[test]
        fn commands_round_trip(command in command()) {
            prop_assert_eq!(decode(&encode(&command)), Ok(command));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(command in command()) {
            let bytes = encode(&command);
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_allocating() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError("length beyond the input")));
    }
}

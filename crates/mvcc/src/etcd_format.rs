//! etcd's on-disk encodings of the key space, byte for byte: a revision as a bbolt key
//! (`main` and `sub` big-endian around `_`, then `t` for a tombstone) and a key's state as
//! the protobuf `mvccpb.KeyValue`, and a lease as `leasepb.Lease`. The hash of the history
//! ([`crate::Store::hash_kv`]) is computed over these, as etcd computes it, so the two agree on
//! the same content; etcd's snapshot files (see the server's `etcd_snapshot`) store them.

use crate::codec::Record;
use crate::KeyValue;

/// Bytes of a revision key without the tombstone mark.
pub const REVISION_BYTES: usize = 17;

/// A revision as etcd's `key` bucket keys it.
pub fn revision_bytes(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(REVISION_BYTES + 1);
    out.extend_from_slice(&main.to_be_bytes());
    out.push(b'_');
    out.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        out.push(b't');
    }
    out
}

/// Parses a `key` bucket key: (main, sub, tombstone), or `None` if it is not one.
pub fn parse_revision_bytes(bytes: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match bytes.len() {
        REVISION_BYTES => false,
        18 if bytes[17] == b't' => true,
        _ => return None,
    };
    if bytes[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(bytes[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(bytes[9..17].try_into().ok()?);
    Some((main, sub, tombstone))
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A proto3 int64 field (skipped when zero, as gogo/protobuf and prost write it).
fn int_field(out: &mut Vec<u8>, field: u32, value: i64) {
    if value != 0 {
        varint(out, u64::from(field << 3));
        varint(out, value as u64);
    }
}

/// A proto3 bytes field (skipped when empty).
fn bytes_field(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        varint(out, u64::from(field << 3 | 2));
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
}

/// `mvccpb.KeyValue` for `record` written at main revision `main`, as etcd stores it (a
/// tombstone holds the key alone).
pub fn encode_key_value(record: &Record, main: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + record.key.len() + record.value.len());
    bytes_field(&mut out, 1, &record.key);
    if record.tombstone {
        return out;
    }
    int_field(&mut out, 2, record.create_revision);
    int_field(&mut out, 3, main);
    int_field(&mut out, 4, record.version);
    bytes_field(&mut out, 5, &record.value);
    int_field(&mut out, 6, record.lease);
    out
}

/// The fields of a decoded protobuf message, by number: varints and byte strings. Unknown
/// fields are skipped (a newer etcd may add some); malformed input is an error.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().ok_or("a varint is cut short")?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is too long".into())
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let tag = read_varint(&mut bytes)?;
        let field = u32::try_from(tag >> 3).map_err(|_| "a field number is out of range")?;
        match tag & 7 {
            0 => out.push((field, Field::Varint(read_varint(&mut bytes)?))),
            1 => bytes = bytes.get(8..).ok_or("a fixed64 is cut short")?,
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?).map_err(|_| "a length is out of range")?;
                if len > bytes.len() {
                    return Err("a length runs past the end".into());
                }
                let (value, rest) = bytes.split_at(len);
                out.push((field, Field::Bytes(value)));
                bytes = rest;
            }
            5 => bytes = bytes.get(4..).ok_or("a fixed32 is cut short")?,
            kind => return Err(format!("wire type {kind}")),
        }
    }
    Ok(out)
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Decodes a `mvccpb.KeyValue`.
pub fn decode_key_value(bytes: &[u8]) -> Result<KeyValue, String> {
    let mut kv = KeyValue::default();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(key)) => kv.key = key.to_vec(),
            (2, Field::Varint(value)) => kv.create_revision = value as i64,
            (3, Field::Varint(value)) => kv.mod_revision = value as i64,
            (4, Field::Varint(value)) => kv.version = value as i64,
            (5, Field::Bytes(value)) => kv.value = value.to_vec(),
            (6, Field::Varint(value)) => kv.lease = value as i64,
            (1..=6, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(kv)
}

/// `leasepb.Lease` {ID, TTL, RemainingTTL}.
pub fn encode_lease(id: i64, ttl: i64, remaining: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    int_field(&mut out, 1, id);
    int_field(&mut out, 2, ttl);
    int_field(&mut out, 3, remaining);
    out
}

/// Decodes a `leasepb.Lease`: (id, ttl, remaining ttl).
pub fn decode_lease(bytes: &[u8]) -> Result<(i64, i64, i64), String> {
    let (mut id, mut ttl, mut remaining) = (0, 0, 0);
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Varint(value)) => id = value as i64,
            (2, Field::Varint(value)) => ttl = value as i64,
            (3, Field::Varint(value)) => remaining = value as i64,
            (1..=3, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {}
        }
    }
    Ok((id, ttl, remaining))
}

/// `etcdserverpb.AlarmMember` {MemberID, Alarm}: the `alarm` bucket's keys.
pub fn encode_alarm(member: u64, code: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    int_field(&mut out, 1, member as i64);
    int_field(&mut out, 2, i64::from(code));
    out
}

/// Decodes an `etcdserverpb.AlarmMember`: (member, alarm code).
pub fn decode_alarm(bytes: &[u8]) -> Result<(u64, u64), String> {
    let (mut member, mut code) = (0, 0);
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Varint(value)) => member = value,
            (2, Field::Varint(value)) => code = value,
            (1..=2, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {}
        }
    }
    Ok((member, code))
}

/// `authpb.User`: the `authUsers` bucket's values, and ballot's `auth_users` table's.
pub fn encode_user(user: &crate::auth::User) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    bytes_field(&mut out, 1, user.name.as_bytes());
    bytes_field(&mut out, 2, user.password.as_bytes());
    for role in &user.roles {
        varint(&mut out, 3 << 3 | 2);
        varint(&mut out, role.len() as u64);
        out.extend_from_slice(role.as_bytes());
    }
    if user.no_password {
        bytes_field(&mut out, 4, &[0x08, 0x01]);
    }
    out
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// Decodes an `authpb.User`.
pub fn decode_user(bytes: &[u8]) -> Result<crate::auth::User, String> {
    let mut user = crate::auth::User::default();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(name)) => user.name = utf8(name, "a user name")?,
            (2, Field::Bytes(password)) => user.password = utf8(password, "a password hash")?,
            (3, Field::Bytes(role)) => user.roles.push(utf8(role, "a role name")?),
            (4, Field::Bytes(options)) => {
                for (number, field) in fields(options)? {
                    if let (1, Field::Varint(value)) = (number, field) {
                        user.no_password = value != 0;
                    }
                }
            }
            (1..=4, _) => return Err(format!("user field {number} has the wrong wire type")),
            _ => {}
        }
    }
    if user.name.is_empty() {
        return Err("a user without a name".into());
    }
    user.roles.sort();
    user.roles.dedup();
    Ok(user)
}

/// `authpb.Role`: the `authRoles` bucket's values, and ballot's `auth_roles` table's.
pub fn encode_role(role: &crate::auth::Role) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    bytes_field(&mut out, 1, role.name.as_bytes());
    for permission in &role.permissions {
        let mut inner = Vec::with_capacity(16 + permission.key.len() + permission.range_end.len());
        int_field(&mut inner, 1, permission.kind as i64);
        bytes_field(&mut inner, 2, &permission.key);
        bytes_field(&mut inner, 3, &permission.range_end);
        varint(&mut out, 2 << 3 | 2);
        varint(&mut out, inner.len() as u64);
        out.extend_from_slice(&inner);
    }
    out
}

/// Decodes an `authpb.Role`.
pub fn decode_role(bytes: &[u8]) -> Result<crate::auth::Role, String> {
    let mut role = crate::auth::Role::default();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(name)) => role.name = utf8(name, "a role name")?,
            (2, Field::Bytes(inner)) => {
                let mut permission = crate::auth::Permission {
                    kind: crate::auth::PermissionKind::Read,
                    key: Vec::new(),
                    range_end: Vec::new(),
                };
                for (number, field) in fields(inner)? {
                    match (number, field) {
                        (1, Field::Varint(code)) => {
                            permission.kind = crate::auth::PermissionKind::from_code(code)
                                .ok_or_else(|| format!("permission type {code}"))?
                        }
                        (2, Field::Bytes(key)) => permission.key = key.to_vec(),
                        (3, Field::Bytes(end)) => permission.range_end = end.to_vec(),
                        (1..=3, _) => return Err(format!("permission field {number} has the wrong wire type")),
                        _ => {}
                    }
                }
                role.permissions.push(permission);
            }
            (1..=2, _) => return Err(format!("role field {number} has the wrong wire type")),
            _ => {}
        }
    }
    if role.name.is_empty() {
        return Err("a role without a name".into());
    }
    role.permissions.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_bytes_round_trip() {
        // From a snapshot etcd 3.4 wrote: put /a/1 v1 at revision 2.
        let record = Record {
            tombstone: false,
            create_revision: 2,
            version: 1,
            lease: 0,
            key: b"/a/1".to_vec(),
            value: b"v1".to_vec(),
        };
        let etcd = [0x0a, 0x04, 0x2f, 0x61, 0x2f, 0x31, 0x10, 0x02, 0x18, 0x02, 0x20, 0x01, 0x2a, 0x02, 0x76, 0x31];
        assert_eq!(encode_key_value(&record, 2), etcd);
        let decoded = decode_key_value(&etcd).unwrap();
        assert_eq!((decoded.key, decoded.mod_revision, decoded.value), (b"/a/1".to_vec(), 2, b"v1".to_vec()));
        let tombstone = Record { tombstone: true, create_revision: 0, version: 0, value: vec![], ..record };
        assert_eq!(encode_key_value(&tombstone, 8), [0x0a, 0x04, 0x2f, 0x61, 0x2f, 0x31]);
        assert_eq!(parse_revision_bytes(&revision_bytes(8, 3, true)), Some((8, 3, true)));
        assert_eq!(parse_revision_bytes(&revision_bytes(8, 0, false)), Some((8, 0, false)));
        assert_eq!(parse_revision_bytes(b"not a revision"), None);
        let lease = [0x08, 0x8c, 0xda, 0x9e, 0xe0, 0xe4, 0xc3, 0xe8, 0xbd, 0x7d, 0x10, 0xd8, 0x04];
        assert_eq!(decode_lease(&lease).unwrap(), (9041998927884692748, 600, 0));
        assert_eq!(encode_lease(9041998927884692748, 600, 0), lease);
        assert_eq!(decode_alarm(&encode_alarm(77, 1)).unwrap(), (77, 1));
        assert!(decode_key_value(&[0x0a, 0x09, 0x01]).is_err());
        assert!(decode_key_value(&[0x10, 0xff]).is_err());
    }

    #[test]
    fn users_and_roles_round_trip() {
        use crate::auth::*;
        let user = User {
            name: "alice".into(),
            password: "$2a$10$abcdefghijklmnopqrstuv".into(),
            roles: vec!["reader".into(), "root".into()],
            no_password: true,
        };
        assert_eq!(decode_user(&encode_user(&user)).unwrap(), user);
        let role = Role {
            name: "reader".into(),
            permissions: vec![
                Permission { kind: PermissionKind::Read, key: b"/a/".to_vec(), range_end: b"/a0".to_vec() },
                Permission { kind: PermissionKind::ReadWrite, key: b"/b".to_vec(), range_end: vec![] },
            ],
        };
        assert_eq!(decode_role(&encode_role(&role)).unwrap(), role);
        // etcd 3.4's bytes for role "r" with READ on "a".."b".
        let etcd = [0x0a, 0x01, b'r', 0x12, 0x06, 0x12, 0x01, b'a', 0x1a, 0x01, b'b'];
        let decoded = decode_role(&etcd).unwrap();
        assert_eq!(decoded.permissions[0].kind, PermissionKind::Read);
        assert_eq!(encode_role(&decoded), etcd);
        assert!(decode_role(&[0x12, 0x02, 0x08, 0x07]).is_err());
        assert!(decode_user(&[0x1a, 0x01, 0xff]).is_err());
    }
}

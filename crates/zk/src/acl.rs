//! ACLs as ZooKeeper checks them: which identities a connection holds, whether an ACL grants a
//! permission to them, how an ACL given in a create or setACL is validated and its `auth`
//! entries expanded, and the `digest` scheme's id (`user:base64(sha1(user:password))`).

use crate::codes::{perms, ErrorCode};
use crate::records::{Acl, Id};

/// ZooKeeper's open ACL: everyone may do everything.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// The identities behind one request: the connection's, plus `super` when it proved the super
/// digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identities {
    /// `ip:<address>` from the connection, and every id `addauth` added.
    pub ids: Vec<Id>,
}

impl Identities {
    /// True if one of the ids is the super user's (every check passes).
    pub fn is_super(&self) -> bool {
        self.ids.iter().any(|id| id.scheme == "super")
    }
}

/// True if `acl` grants `perm` to `who` (an empty ACL grants everything, as in ZooKeeper).
pub fn allows(acl: &[Acl], perm: i32, who: &Identities) -> bool {
    if acl.is_empty() || who.is_super() {
        return true;
    }
    acl.iter().filter(|entry| entry.perms & perm != 0).any(|entry| {
        (entry.id.scheme == "world" && entry.id.id == "anyone")
            || who.ids.iter().any(|id| id.scheme == entry.id.scheme && matches(&entry.id, &id.id))
    })
}

/// Whether a connection's id of the entry's scheme matches the entry.
fn matches(entry: &Id, id: &str) -> bool {
    match entry.scheme.as_str() {
        "ip" => ip_matches(&entry.id, id),
        _ => entry.id == id,
    }
}

/// An IPv4 address and prefix length, as an `ip` ACL names them (`a.b.c.d` or `a.b.c.d/bits`).
fn ipv4_net(text: &str) -> Option<(u32, u32)> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, bits.parse::<u32>().ok().filter(|b| *b <= 32)?),
        None => (text, 32),
    };
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    Some((u32::from(address), bits))
}

fn ip_matches(entry: &str, address: &str) -> bool {
    let (Some((net, bits)), Some((address, _))) = (ipv4_net(entry), ipv4_net(address)) else { return false };
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    net & mask == address & mask
}

/// The `digest` id of `user:password`: `user:` and the base64 of SHA-1 over the whole text.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    format!("{user}:{}", base64(&sha1(user_password.as_bytes())))
}

/// Checks and completes an ACL given in a create or setACL: duplicates dropped, `auth`
/// replaced by the caller's authenticated (digest) ids, every entry of a known scheme with a
/// valid id. InvalidAcl otherwise.
pub fn fix_up(acl: &[Acl], who: &Identities) -> Result<Vec<Acl>, ErrorCode> {
    if acl.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut fixed: Vec<Acl> = Vec::new();
    let mut push = |entry: Acl| {
        if !fixed.contains(&entry) {
            fixed.push(entry);
        }
    };
    for entry in acl {
        match entry.id.scheme.as_str() {
            "world" if entry.id.id == "anyone" => push(entry.clone()),
            "auth" => {
                let mut any = false;
                for id in who.ids.iter().filter(|id| id.scheme == "digest") {
                    any = true;
                    push(Acl { perms: entry.perms, id: id.clone() });
                }
                if !any {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if entry.id.id.matches(':').count() == 1 => push(entry.clone()),
            "ip" if ipv4_net(&entry.id.id).is_some() => push(entry.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(fixed)
}

/// SHA-1 (FIPS 180-4), for the digest scheme's ids: a dozen lines here instead of a crate for
/// one call on short strings.
fn sha1(message: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut padded = message.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    for block in padded.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(scheme: &str, id: &str) -> Id {
        Id { scheme: scheme.into(), id: id.into() }
    }

    #[test]
    fn sha1_and_base64_match_the_published_vectors() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn digest_ids_are_user_and_the_hash_of_user_colon_password() {
        // ZooKeeper's documentation's example: super:admin hashes to this.
        assert_eq!(digest_id("super:admin"), "super:xQJmxLMiHGwaqBvst5y6rkB6HQs=");
    }

    #[test]
    fn acls_grant_by_world_digest_and_ip_prefix() {
        let who = Identities { ids: vec![id("ip", "10.1.2.3"), id("digest", "bob:x")] };
        let acl = |scheme: &str, id_: &str, perms: i32| vec![Acl { perms, id: id(scheme, id_) }];
        assert!(allows(&acl("world", "anyone", perms::READ), perms::READ, &who));
        assert!(!allows(&acl("world", "anyone", perms::READ), perms::WRITE, &who));
        assert!(allows(&acl("digest", "bob:x", perms::ALL), perms::DELETE, &who));
        assert!(!allows(&acl("digest", "alice:y", perms::ALL), perms::READ, &who));
        assert!(allows(&acl("ip", "10.1.0.0/16", perms::READ), perms::READ, &who));
        assert!(!allows(&acl("ip", "10.2.0.0/16", perms::READ), perms::READ, &who));
        assert!(allows(&[], perms::ADMIN, &Identities::default()), "an empty ACL grants everything");
        let root = Identities { ids: vec![id("super", "")] };
        assert!(allows(&acl("digest", "alice:y", perms::READ), perms::ADMIN, &root));
    }

    #[test]
    fn fixing_up_expands_auth_and_refuses_what_zookeeper_refuses() {
        let who = Identities { ids: vec![id("ip", "127.0.0.1"), id("digest", "bob:h")] };
        let fixed = fix_up(&[Acl { perms: 31, id: id("auth", "") }], &who).unwrap();
        assert_eq!(fixed, vec![Acl { perms: 31, id: id("digest", "bob:h") }]);
        let nobody = Identities { ids: vec![id("ip", "127.0.0.1")] };
        assert_eq!(fix_up(&[Acl { perms: 31, id: id("auth", "") }], &nobody), Err(ErrorCode::InvalidAcl));
        assert_eq!(fix_up(&[], &who), Err(ErrorCode::InvalidAcl));
        assert_eq!(fix_up(&[Acl { perms: 1, id: id("world", "someone") }], &who), Err(ErrorCode::InvalidAcl));
        assert_eq!(fix_up(&[Acl { perms: 1, id: id("digest", "no-colon") }], &who), Err(ErrorCode::InvalidAcl));
        assert_eq!(fix_up(&[Acl { perms: 1, id: id("ip", "300.1.1.1") }], &who), Err(ErrorCode::InvalidAcl));
        assert_eq!(fix_up(&[Acl { perms: 1, id: id("x509", "cn") }], &who), Err(ErrorCode::InvalidAcl));
        let twice = [open_acl(), open_acl()].concat();
        assert_eq!(fix_up(&twice, &who).unwrap(), open_acl(), "duplicates dropped");
    }
}

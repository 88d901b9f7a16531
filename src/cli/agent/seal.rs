//! Gossip encryption with a shared key, as serf's `-encrypt`: AES-GCM over every datagram and
//! push-pull frame, a fresh random nonce each, so a member without the key can neither read
//! the fleet's gossip nor inject any (what it sends fails authentication and is dropped).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use anyhow::{bail, Context};
use base64::Engine;

/// The version byte of a sealed frame.
const SEALED: u8 = 1;
/// AES-GCM's nonce.
const NONCE_LEN: usize = 12;

/// Seals and opens frames; with no key, frames pass as they are.
#[derive(Clone)]
pub enum Sealer {
    /// No encryption.
    Plain,
    /// AES-128-GCM (a 16-byte key).
    Aes128(Box<Aes128Gcm>),
    /// AES-256-GCM (a 32-byte key).
    Aes256(Box<Aes256Gcm>),
}

impl Sealer {
    /// A sealer for `key`: base64 of 16 or 32 bytes (what `serf keygen` prints is 32), or none.
    pub fn new(key: Option<&str>) -> anyhow::Result<Sealer> {
        let Some(key) = key else { return Ok(Sealer::Plain) };
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(key.trim()).context("the encryption key is not base64")?;
        Ok(match bytes.len() {
            16 => Sealer::Aes128(Box::new(Aes128Gcm::new_from_slice(&bytes).expect("16 bytes"))),
            32 => Sealer::Aes256(Box::new(Aes256Gcm::new_from_slice(&bytes).expect("32 bytes"))),
            n => bail!("the encryption key must be 16 or 32 bytes, not {n}"),
        })
    }

    /// `frame`, sealed.
    pub fn seal(&self, frame: Vec<u8>) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        if matches!(self, Sealer::Plain) {
            return frame;
        }
        getrandom::fill(&mut nonce).expect("the system's random source works");
        let sealed = match self {
            Sealer::Plain => unreachable!("returned above"),
            Sealer::Aes128(cipher) => cipher.encrypt(Nonce::from_slice(&nonce), frame.as_slice()),
            Sealer::Aes256(cipher) => cipher.encrypt(Nonce::from_slice(&nonce), frame.as_slice()),
        }
        .expect("AES-GCM encrypts any frame this small");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The frame inside `bytes`, if it was sealed with this key (or, with none, as it is).
    pub fn open(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if matches!(self, Sealer::Plain) {
            return Some(bytes.to_vec());
        }
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != SEALED {
            return None;
        }
        let (nonce, sealed) = bytes[1..].split_at(NONCE_LEN);
        match self {
            Sealer::Plain => None,
            Sealer::Aes128(cipher) => cipher.decrypt(Nonce::from_slice(nonce), sealed).ok(),
            Sealer::Aes256(cipher) => cipher.decrypt(Nonce::from_slice(nonce), sealed).ok(),
        }
    }

    /// Bytes sealing adds to a frame.
    pub fn overhead(&self) -> usize {
        match self {
            Sealer::Plain => 0,
            _ => 1 + NONCE_LEN + 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "cg8StVXbQJ0gPvMd9o7yrg==";

    #[test]
    fn a_sealed_frame_opens_with_the_key_only() {
        let sealer = Sealer::new(Some(KEY)).unwrap();
        let sealed = sealer.seal(b"ping".to_vec());
        assert_eq!(sealed.len(), 4 + sealer.overhead());
        assert_eq!(sealer.open(&sealed).as_deref(), Some(&b"ping"[..]));
        let other = Sealer::new(Some("HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=")).unwrap();
        assert_eq!(other.open(&sealed), None);
        assert_eq!(sealer.open(b"ping"), None, "plain frames are refused");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open(&tampered), None);
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(Sealer::new(Some("not base64!")).is_err());
        let short = Sealer::new(Some("AAAA")).err().unwrap().to_string();
        assert!(short.contains("16 or 32 bytes"), "{short}");
    }
}

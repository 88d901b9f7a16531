//! # ballot-zk: ZooKeeper's client protocol
//!
//! The ZooKeeper 3.6–3.8 client protocol as bytes and records: the jute binary encoding
//! ([`jute`]), the protocol's numbers ([`codes`]), its records ([`records`], [`multi`]) and its
//! length-prefixed framing ([`frame`]); and the znode tree's write logic ([`tree`], with
//! [`acl`]), which the state machine calls. Pure: no I/O, no clock, no threads (see
//! `docs/zookeeper.md`).
//!
//! ```
//! use ballot_zk::jute::{Jute, Writer};
//! use ballot_zk::records::ReplyHeader;
//! let mut out = Writer::new();
//! ReplyHeader { xid: 7, zxid: 42, err: 0 }.write(&mut out);
//! assert_eq!(out.into_bytes().len(), 16);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod acl;
pub mod codes;
pub mod frame;
pub mod jute;
pub mod multi;
pub mod records;
pub mod tree;

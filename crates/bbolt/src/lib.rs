//! bbolt's file format, read and written without bbolt: what etcd's backend database and its
//! snapshots (`etcdctl snapshot save`) are made of.
//!
//! A file is an array of pages of one size (named in the meta pages). Pages 0 and 1 are meta
//! pages; the valid one with the higher transaction id is current. It names the root bucket's
//! root page, the freelist page and the high-water mark (the number of pages in use). Buckets
//! are B+trees of branch and leaf pages; a bucket small enough lives inline in its parent's
//! leaf value. Every integer is little-endian (bbolt writes its structs as the machine lays
//! them out, and etcd runs on little-endian machines).
//!
//! [`Db`] reads a file and checks everything it touches: a truncated, damaged or foreign file
//! gets an [`Error`] that says what is wrong and where, never a panic. [`Writer`] writes a
//! new file from buckets given in key order: a compact file that bbolt opens, checks
//! (`tx.Check`) and can go on writing to.

mod page;
mod read;
mod write;

pub use page::{Meta, DEFAULT_PAGE_SIZE};
pub use read::{Db, KeyVisitor, Source};
pub use write::Writer;

/// What is wrong with a file, or an I/O error reading or writing it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a bbolt database, or is damaged or truncated: the message says where.
    #[error("not a valid bbolt database: {0}")]
    Invalid(String),
    /// A bucket asked for is not in the file.
    #[error("no bucket named {0:?}")]
    NoBucket(String),
    /// Keys given to the writer out of order, or too long.
    #[error("bad input to the bbolt writer: {0}")]
    BadInput(String),
    /// Reading or writing the file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;

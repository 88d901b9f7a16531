//! Writing a new bbolt file from buckets given in key order.
//!
//! Leaves are filled to the page size and written as they fill; the branch levels above them,
//! the root bucket's leaf, the (empty) freelist and the two meta pages are written at the end.
//! Every page in use is reachable and none is free, so bbolt's `tx.Check` passes.

use std::io::{Seek, SeekFrom, Write};

use crate::page::{Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, FREELIST, HEADER, LEAF, MAX_KEY, META};
use crate::Error;

/// Writes a bbolt file.
pub struct Writer<W: Write + Seek> {
    out: W,
    page_size: usize,
    next_pgid: u64,
    buckets: Vec<(Vec<u8>, u64)>,
    open: Option<OpenBucket>,
}

/// Pages 0 and 1 are the metas, 2 the freelist; data starts at 3.
const FIRST_DATA_PAGE: u64 = 3;

impl<W: Write + Seek> Writer<W> {
    /// A writer of a new file into `out` (positioned anywhere; the file starts at offset 0).
    pub fn new(mut out: W, page_size: usize) -> Result<Self, Error> {
        if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
            return Err(Error::BadInput(format!("page size {page_size}")));
        }
        out.seek(SeekFrom::Start(FIRST_DATA_PAGE * page_size as u64))?;
        Ok(Writer { out, page_size, next_pgid: FIRST_DATA_PAGE, buckets: Vec::new(), open: None })
    }

    /// Starts top-level bucket `name` (ending the one before); its keys follow with
    /// [`Writer::put`], in increasing order.
    pub fn bucket(&mut self, name: &[u8]) -> Result<(), Error> {
        self.end_bucket()?;
        if name.is_empty() || name.len() > MAX_KEY {
            return Err(Error::BadInput(format!("bucket name of {} bytes", name.len())));
        }
        if self.buckets.iter().any(|(other, _)| other == name) {
            return Err(Error::BadInput(format!("bucket {:?} twice", String::from_utf8_lossy(name))));
        }
        self.open = Some(OpenBucket { name: name.to_vec(), leaf: Vec::new(), leaf_bytes: 0, leaves: Vec::new() });
        Ok(())
    }

    /// Adds a key to the open bucket; keys must strictly increase.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let mut open = self.open.take().ok_or_else(|| Error::BadInput("a key before any bucket".into()))?;
        let result = open.put(self, key, value);
        self.open = Some(open);
        result
    }

    /// Writes what is left of the open bucket and the branch levels above its leaves.
    fn end_bucket(&mut self) -> Result<(), Error> {
        let Some(mut open) = self.open.take() else { return Ok(()) };
        if !open.leaf.is_empty() || open.leaves.is_empty() {
            open.flush_leaf(self)?;
        }
        let mut level = std::mem::take(&mut open.leaves);
        while level.len() > 1 {
            let mut parents = Vec::new();
            for group in branch_groups(&level, self.page_size) {
                let id = self.page(BRANCH, group.len(), &branch_body(group))?;
                parents.push((group[0].0.clone(), id));
            }
            level = parents;
        }
        self.buckets.push((open.name, level[0].1));
        Ok(())
    }

    /// Writes one page (with overflow pages if `body` needs them); returns its id.
    fn page(&mut self, flags: u16, count: usize, body: &[u8]) -> Result<u64, Error> {
        let id = self.next_pgid;
        let pages = (HEADER + body.len()).div_ceil(self.page_size).max(1);
        self.write_page_at(id, flags, count, body, pages)?;
        self.next_pgid += pages as u64;
        Ok(id)
    }

    fn write_page_at(&mut self, id: u64, flags: u16, count: usize, body: &[u8], pages: usize) -> Result<(), Error> {
        let count = u16::try_from(count).map_err(|_| Error::BadInput(format!("{count} elements in one page")))?;
        let mut bytes = Vec::with_capacity(pages * self.page_size);
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&((pages - 1) as u32).to_le_bytes());
        bytes.extend_from_slice(body);
        bytes.resize(pages * self.page_size, 0);
        self.out.seek(SeekFrom::Start(id * self.page_size as u64))?;
        self.out.write_all(&bytes)?;
        Ok(())
    }

    /// Writes the root bucket, the freelist and the metas; returns the output and the file's
    /// length in bytes (pages in use × page size).
    pub fn finish(mut self) -> Result<(W, u64), Error> {
        self.end_bucket()?;
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let elements: Vec<(Vec<u8>, Vec<u8>, u32)> = buckets
            .into_iter()
            .map(|(name, root)| {
                let mut header = root.to_le_bytes().to_vec();
                header.extend_from_slice(&0u64.to_le_bytes());
                debug_assert_eq!(header.len(), BUCKET_HEADER);
                (name, header, BUCKET_LEAF)
            })
            .collect();
        let body = leaf_body(&elements);
        let root = self.page(LEAF, elements.len(), &body)?;
        let end = self.next_pgid;
        self.write_page_at(2, FREELIST, 0, &[], 1)?;
        for txid in 0..2u64 {
            let meta =
                Meta { page_size: self.page_size as u32, flags: 0, root, sequence: 0, freelist: 2, pgid: end, txid };
            self.write_page_at(txid, META, 0, &meta.encode(), 1)?;
        }
        let len = end * self.page_size as u64;
        self.out.seek(SeekFrom::Start(len))?;
        self.out.flush()?;
        Ok((self.out, len))
    }
}

/// The bucket being written.
struct OpenBucket {
    name: Vec<u8>,
    leaf: Vec<(Vec<u8>, Vec<u8>, u32)>,
    leaf_bytes: usize,
    /// (first key, page) of each leaf written.
    leaves: Vec<(Vec<u8>, u64)>,
}

impl OpenBucket {
    fn put<W: Write + Seek>(&mut self, writer: &mut Writer<W>, key: &[u8], value: &[u8]) -> Result<(), Error> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(Error::BadInput(format!("a key of {} bytes", key.len())));
        }
        if u32::try_from(value.len()).is_err() {
            return Err(Error::BadInput(format!("a value of {} bytes", value.len())));
        }
        let last = self.leaf.last().map(|(k, _, _)| k.as_slice()).or(self.leaves.last().map(|(k, _)| k.as_slice()));
        if last.is_some_and(|last| last >= key) {
            return Err(Error::BadInput(format!("key {:?} out of order", String::from_utf8_lossy(key))));
        }
        let size = ELEMENT + key.len() + value.len();
        if !self.leaf.is_empty() && HEADER + self.leaf_bytes + size > writer.page_size {
            self.flush_leaf(writer)?;
        }
        self.leaf.push((key.to_vec(), value.to_vec(), 0));
        self.leaf_bytes += size;
        Ok(())
    }

    fn flush_leaf<W: Write + Seek>(&mut self, writer: &mut Writer<W>) -> Result<(), Error> {
        let elements = std::mem::take(&mut self.leaf);
        self.leaf_bytes = 0;
        let id = writer.page(LEAF, elements.len(), &leaf_body(&elements))?;
        self.leaves.push((elements.first().map(|(k, _, _)| k.clone()).unwrap_or_default(), id));
        Ok(())
    }
}

/// Splits a level's children into branch pages of about equal size, each fitting one page
/// (unless one key alone overflows it) and none with a single child when it can be helped.
fn branch_groups(level: &[(Vec<u8>, u64)], page_size: usize) -> Vec<&[(Vec<u8>, u64)]> {
    let total: usize = level.iter().map(|(key, _)| ELEMENT + key.len()).sum();
    let pages = total.div_ceil(page_size - HEADER).max(1);
    let target = total.div_ceil(pages);
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, (key, _)) in level.iter().enumerate() {
        let size = ELEMENT + key.len();
        if index > start && (bytes + size > page_size - HEADER || bytes >= target) && level.len() - index > 1 {
            groups.push(&level[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    groups.push(&level[start..]);
    groups
}

/// A leaf page's body: the elements, then each key and value.
pub(crate) fn leaf_body(elements: &[(Vec<u8>, Vec<u8>, u32)]) -> Vec<u8> {
    let mut head = Vec::with_capacity(elements.len() * ELEMENT);
    let mut data = Vec::new();
    for (index, (key, value, flags)) in elements.iter().enumerate() {
        let pos = (elements.len() - index) * ELEMENT + data.len();
        head.extend_from_slice(&flags.to_le_bytes());
        head.extend_from_slice(&(pos as u32).to_le_bytes());
        head.extend_from_slice(&(key.len() as u32).to_le_bytes());
        head.extend_from_slice(&(value.len() as u32).to_le_bytes());
        data.extend_from_slice(key);
        data.extend_from_slice(value);
    }
    head.extend_from_slice(&data);
    head
}

/// A branch page's body: the elements (pos, key size, child), then each key.
fn branch_body(children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let mut head = Vec::with_capacity(children.len() * ELEMENT);
    let mut data = Vec::new();
    for (index, (key, child)) in children.iter().enumerate() {
        let pos = (children.len() - index) * ELEMENT + data.len();
        head.extend_from_slice(&(pos as u32).to_le_bytes());
        head.extend_from_slice(&(key.len() as u32).to_le_bytes());
        head.extend_from_slice(&child.to_le_bytes());
        data.extend_from_slice(key);
    }
    head.extend_from_slice(&data);
    head
}

#[cfg(test)]
impl<W: Write + Seek> Writer<W> {
    /// Writes a page as it is given (tests build unusual trees with it).
    pub(crate) fn test_page(&mut self, flags: u16, count: usize, body: &[u8]) -> u64 {
        self.page(flags, count, body).unwrap()
    }
}

#[cfg(test)]
impl Writer<std::io::Cursor<Vec<u8>>> {
    /// Finishes with `root` as the root bucket's page.
    pub(crate) fn test_finish_with_root(mut self, root: u64) -> Vec<u8> {
        let end = self.next_pgid;
        self.write_page_at(2, FREELIST, 0, &[], 1).unwrap();
        for txid in 0..2u64 {
            let meta =
                Meta { page_size: self.page_size as u32, flags: 0, root, sequence: 0, freelist: 2, pgid: end, txid };
            self.write_page_at(txid, META, 0, &meta.encode(), 1).unwrap();
        }
        let mut bytes = self.out.into_inner();
        bytes.truncate(end as usize * self.page_size);
        bytes
    }
}

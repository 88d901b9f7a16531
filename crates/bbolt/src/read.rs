//! Reading a bbolt file: the current meta, then buckets walked in key order, every page and
//! element checked against the file's bounds before it is used.

use std::collections::HashSet;

use crate::page::{
    u16_at, u32_at, u64_at, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, HEADER, LEAF, META, NO_FREELIST,
};
use crate::Error;

/// Deepest B+tree accepted: bbolt's trees are a few levels deep; a deeper one is a cycle or
/// damage, and the walk is recursive.
const DEPTH_MAX: usize = 64;
/// Page sizes tried for the second meta page when the first is damaged.
const PAGE_SIZES: [u32; 5] = [4096, 8192, 16384, 32768, 65536];

/// Called with each key and value of a bucket, in key order.
pub type KeyVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), Error> + 'a;
/// Called with each element of a tree: key, value, and whether the value is a bucket.
type ElementVisitor<'a> = dyn FnMut(&[u8], &[u8], bool) -> Result<(), Error> + 'a;

/// Bytes a reader can read at any offset: a file, or a buffer (tests).
pub trait Source {
    /// Length in bytes.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; the caller has checked the range is within `len`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// True if the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

/// A file, with the length to read of it (a snapshot file ends with a hash that is not part of
/// the database).
impl Source for (std::fs::File, u64) {
    fn len(&self) -> u64 {
        self.1
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
}

/// An open bbolt database.
pub struct Db<S: Source + ?Sized> {
    meta: Meta,
    page_size: usize,
    source: Box<S>,
}

fn invalid(why: impl Into<String>) -> Error {
    Error::Invalid(why.into())
}

/// Where a bucket's tree is: a root page, or an inline page held in its parent's value.
enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

impl<S: Source + ?Sized> Db<S> {
    /// Opens a database: picks the valid meta page with the higher transaction id, as bbolt
    /// does, and checks it against the file's length.
    pub fn open(source: Box<S>) -> Result<Db<S>, Error> {
        let len = source.len();
        let read_meta = |offset: u64| -> Result<Meta, String> {
            if offset + (HEADER + crate::page::META_BYTES) as u64 > len {
                return Err(format!("the file is {len} bytes: too short for a meta page at {offset}"));
            }
            let mut buf = [0u8; HEADER + crate::page::META_BYTES];
            source.read_at(offset, &mut buf).map_err(|e| e.to_string())?;
            if u16_at(&buf, 8) != Some(META) {
                return Err(format!("the page at {offset} is not a meta page"));
            }
            Meta::decode(&buf[HEADER..])
        };
        let first = read_meta(0);
        let sizes: Vec<u32> = match &first {
            Ok(meta) => vec![meta.page_size],
            Err(_) => PAGE_SIZES.to_vec(),
        };
        let mut second = Err("no second meta page".to_string());
        for size in sizes {
            second = read_meta(u64::from(size)).and_then(|meta| {
                if meta.page_size == size {
                    Ok(meta)
                } else {
                    Err(format!("meta page 1 names page size {}", meta.page_size))
                }
            });
            if second.is_ok() {
                break;
            }
        }
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if a.page_size != b.page_size {
                    return Err(invalid("the two meta pages name different page sizes"));
                }
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(a), Err(b)) => return Err(invalid(format!("meta page 0: {a}; meta page 1: {b}"))),
        };
        let page_size = meta.page_size as usize;
        if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
            return Err(invalid(format!("page size {page_size}")));
        }
        let needed = meta.pgid.checked_mul(page_size as u64).ok_or_else(|| invalid("high-water mark overflows"))?;
        if meta.pgid < 3 || needed > len {
            return Err(invalid(format!(
                "truncated: the meta page counts {} pages of {page_size} bytes ({needed} bytes), the file has {len}",
                meta.pgid
            )));
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(invalid(format!("the root bucket's page {} is outside the file", meta.root)));
        }
        if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
            return Err(invalid(format!("the freelist page {} is outside the file", meta.freelist)));
        }
        Ok(Db { meta, page_size, source })
    }

    /// The current meta.
    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// The size of the database in bytes (pages in use × page size), as `tx.Size()` says.
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size as u64
    }

    /// Reads page `id` whole (with its overflow pages) and checks its header.
    fn page(&self, id: u64) -> Result<Vec<u8>, Error> {
        if id < 2 || id >= self.meta.pgid {
            return Err(invalid(format!("a reference to page {id}, outside the {} pages in use", self.meta.pgid)));
        }
        let offset = id * self.page_size as u64;
        let mut header = [0u8; HEADER];
        self.source.read_at(offset, &mut header)?;
        let overflow = u64::from(u32_at(&header, 12).unwrap_or(0));
        if u64_at(&header, 0) != Some(id) {
            return Err(invalid(format!("page {id} says it is page {}", u64_at(&header, 0).unwrap_or(0))));
        }
        if id + overflow >= self.meta.pgid {
            return Err(invalid(format!("page {id} overflows past the pages in use ({overflow} more)")));
        }
        let mut page = vec![0u8; (overflow as usize + 1) * self.page_size];
        self.source.read_at(offset, &mut page)?;
        Ok(page)
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>, Error> {
        let mut names = Vec::new();
        self.walk(&Root::Page(self.meta.root), &mut |key, _, is_bucket| {
            if !is_bucket {
                return Err(invalid(format!("a plain key {:?} in the root bucket", String::from_utf8_lossy(key))));
            }
            names.push(key.to_vec());
            Ok(())
        })?;
        Ok(names)
    }

    /// Calls `visit(key, value)` for every key of top-level bucket `name`, in key order.
    /// Nested buckets are refused (etcd has none).
    pub fn for_each(&self, name: &[u8], visit: &mut KeyVisitor<'_>) -> Result<(), Error> {
        let root = self.bucket_root(name)?.ok_or_else(|| Error::NoBucket(String::from_utf8_lossy(name).into()))?;
        self.walk(&root, &mut |key, value, is_bucket| {
            if is_bucket {
                return Err(invalid(format!("a nested bucket {:?}", String::from_utf8_lossy(key))));
            }
            visit(key, value)
        })
    }

    /// True if top-level bucket `name` exists.
    pub fn has_bucket(&self, name: &[u8]) -> Result<bool, Error> {
        Ok(self.bucket_root(name)?.is_some())
    }

    fn bucket_root(&self, name: &[u8]) -> Result<Option<Root>, Error> {
        let mut found = None;
        self.walk(&Root::Page(self.meta.root), &mut |key, value, is_bucket| {
            if is_bucket && key == name {
                found = Some(bucket_value(key, value)?);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Walks a tree in key order, checking that keys strictly increase.
    fn walk(&self, root: &Root, visit: &mut ElementVisitor<'_>) -> Result<(), Error> {
        let mut seen = HashSet::new();
        let mut last: Option<Vec<u8>> = None;
        let mut checked = |key: &[u8], value: &[u8], is_bucket: bool| -> Result<(), Error> {
            if last.as_deref().is_some_and(|previous| previous >= key) {
                return Err(invalid(format!("keys out of order at {:?}", String::from_utf8_lossy(key))));
            }
            last = Some(key.to_vec());
            visit(key, value, is_bucket)
        };
        match root {
            Root::Page(id) => self.walk_page(*id, 0, &mut seen, &mut checked),
            Root::Inline(page) => {
                if u16_at(page, 8) != Some(LEAF) {
                    return Err(invalid("an inline bucket that is not a leaf"));
                }
                for_leaf(page, "an inline bucket", &mut checked)
            }
        }
    }

    fn walk_page(
        &self,
        id: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
        visit: &mut ElementVisitor<'_>,
    ) -> Result<(), Error> {
        if depth > DEPTH_MAX {
            return Err(invalid(format!("a tree deeper than {DEPTH_MAX} levels at page {id}")));
        }
        if !seen.insert(id) {
            return Err(invalid(format!("page {id} is referenced twice")));
        }
        let page = self.page(id)?;
        let where_ = format!("page {id}");
        match u16_at(&page, 8).unwrap_or(0) {
            LEAF => for_leaf(&page, &where_, visit),
            BRANCH => {
                let count = element_count(&page, &where_)?;
                let mut children = Vec::with_capacity(count);
                for index in 0..count {
                    let at = HEADER + index * ELEMENT;
                    let child = u64_at(&page, at + 8).unwrap_or(0);
                    element_bytes(&page, at, u32_at(&page, at), u32_at(&page, at + 4), 0, &where_)?;
                    children.push(child);
                }
                for child in children {
                    self.walk_page(child, depth + 1, seen, visit)?;
                }
                Ok(())
            }
            flags => Err(invalid(format!("page {id} has flags {flags:#x}, not a branch or leaf page"))),
        }
    }
}

impl Db<(std::fs::File, u64)> {
    /// Opens the file at `path`, reading its first `len` bytes (`None`: all of it).
    pub fn open_file(path: &std::path::Path, len: Option<u64>) -> Result<Self, Error> {
        let file = std::fs::File::open(path)?;
        let len = match len {
            Some(len) => len,
            None => file.metadata()?.len(),
        };
        Db::open(Box::new((file, len)))
    }
}

fn element_count(page: &[u8], where_: &str) -> Result<usize, Error> {
    let count = usize::from(u16_at(page, 10).ok_or_else(|| invalid(format!("{where_} is cut short")))?);
    if HEADER + count * ELEMENT > page.len() {
        return Err(invalid(format!("{where_} claims {count} elements, more than it holds")));
    }
    Ok(count)
}

/// The key and value of the element at `at`: `pos` counts from the element itself.
fn element_bytes<'p>(
    page: &'p [u8],
    at: usize,
    pos: Option<u32>,
    ksize: Option<u32>,
    vsize: u32,
    where_: &str,
) -> Result<(&'p [u8], &'p [u8]), Error> {
    let bad = || invalid(format!("{where_}: an element points outside the page"));
    let start = at.checked_add(pos.ok_or_else(bad)? as usize).ok_or_else(bad)?;
    let key_end = start.checked_add(ksize.ok_or_else(bad)? as usize).ok_or_else(bad)?;
    let value_end = key_end.checked_add(vsize as usize).ok_or_else(bad)?;
    if value_end > page.len() {
        return Err(bad());
    }
    Ok((&page[start..key_end], &page[key_end..value_end]))
}

fn for_leaf(page: &[u8], where_: &str, visit: &mut ElementVisitor<'_>) -> Result<(), Error> {
    let count = element_count(page, where_)?;
    for index in 0..count {
        let at = HEADER + index * ELEMENT;
        let flags = u32_at(page, at).unwrap_or(0);
        let vsize = u32_at(page, at + 12).unwrap_or(u32::MAX);
        let (key, value) = element_bytes(page, at, u32_at(page, at + 4), u32_at(page, at + 8), vsize, where_)?;
        visit(key, value, flags & BUCKET_LEAF != 0)?;
    }
    Ok(())
}

/// A bucket's value in its parent: the header, then the inline page if the root is 0.
fn bucket_value(name: &[u8], value: &[u8]) -> Result<Root, Error> {
    let root = u64_at(value, 0)
        .filter(|_| value.len() >= BUCKET_HEADER)
        .ok_or_else(|| invalid(format!("bucket {:?}: its header is cut short", String::from_utf8_lossy(name))))?;
    if root != 0 {
        return Ok(Root::Page(root));
    }
    if value.len() < BUCKET_HEADER + HEADER {
        return Err(invalid(format!("bucket {:?}: its inline page is cut short", String::from_utf8_lossy(name))));
    }
    Ok(Root::Inline(value[BUCKET_HEADER..].to_vec()))
}

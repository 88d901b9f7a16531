//! Page and meta layouts, shared by the reader and the writer.

/// The page size bbolt uses on the machines etcd runs on (the OS page size).
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// The magic number in every meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The file format version bbolt writes and reads.
pub const VERSION: u32 = 2;
/// Bytes in a page header: id u64, flags u16, count u16, overflow u32.
pub const HEADER: usize = 16;
/// Bytes in a branch element (pos u32, ksize u32, pgid u64) or a leaf element (flags u32,
/// pos u32, ksize u32, vsize u32).
pub const ELEMENT: usize = 16;
/// Bytes in a bucket's header in its parent's leaf value: root pgid u64, sequence u64.
pub const BUCKET_HEADER: usize = 16;
/// Page flags.
pub const BRANCH: u16 = 0x01;
/// A leaf page.
pub const LEAF: u16 = 0x02;
/// A meta page.
pub const META: u16 = 0x04;
/// The freelist page.
pub const FREELIST: u16 = 0x10;
/// A leaf element's flag: its value is a bucket.
pub const BUCKET_LEAF: u32 = 0x01;
/// The meta's freelist pgid when the freelist is not written (bbolt's NoFreelistSync).
pub const NO_FREELIST: u64 = u64::MAX;
/// Bytes of a meta (after the page header), the checksum last.
pub const META_BYTES: usize = 64;
/// bbolt's largest key.
pub const MAX_KEY: usize = 32 * 1024;

/// A meta page's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Page size of the file.
    pub page_size: u32,
    /// Flags (unused by bbolt; 0).
    pub flags: u32,
    /// Root page of the root bucket.
    pub root: u64,
    /// Sequence of the root bucket.
    pub sequence: u64,
    /// The freelist page, or [`NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: pages in use.
    pub pgid: u64,
    /// Transaction id.
    pub txid: u64,
}

/// FNV-1a, 64 bits: the meta page checksum.
pub fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A little-endian integer at `at` in `bytes`, if it is there.
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// A little-endian u32 at `at`.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// A little-endian u64 at `at`.
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

impl Meta {
    /// The meta as bbolt lays it out, with its checksum.
    pub fn encode(&self) -> [u8; META_BYTES] {
        let mut out = [0u8; META_BYTES];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&VERSION.to_le_bytes());
        out[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        for (at, value) in [(16, self.root), (24, self.sequence), (32, self.freelist), (40, self.pgid), (48, self.txid)]
        {
            out[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let checksum = fnv64a(&out[..56]);
        out[56..64].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Decodes and validates a meta (magic, version, checksum), or says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Meta, String> {
        let bytes = bytes.get(..META_BYTES).ok_or("the meta page is cut short")?;
        if u32_at(bytes, 0) != Some(MAGIC) {
            return Err("no bbolt magic number".into());
        }
        let version = u32_at(bytes, 4).unwrap_or(0);
        if version != VERSION {
            return Err(format!("format version {version}, not {VERSION}"));
        }
        if u64_at(bytes, 56) != Some(fnv64a(&bytes[..56])) {
            return Err("meta checksum mismatch".into());
        }
        let at = |offset| u64_at(bytes, offset).unwrap_or(0);
        Ok(Meta {
            page_size: u32_at(bytes, 8).unwrap_or(0),
            flags: u32_at(bytes, 12).unwrap_or(0),
            root: at(16),
            sequence: at(24),
            freelist: at(32),
            pgid: at(40),
            txid: at(48),
        })
    }
}

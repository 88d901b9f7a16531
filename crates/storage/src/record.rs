//! WAL records: `[len u32][crc32c u32][kind u8][payload]`, little-endian, where `len` is the
//! payload's length and the checksum covers the length bytes, the kind and the payload (so a
//! corrupted length is caught too). The decoder trusts nothing: a length is checked against the
//! bytes actually present before anything is allocated.

use ballot_raft::{Entry, EntryKind, HardState, Index, Term};

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 9;
/// Largest payload accepted (a 64 MiB entry is already far past any request limit).
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Identifies a segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"BALLOTWL";
/// Format version written and read by this build.
pub const FORMAT_VERSION: u16 = 1;

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// First record of every segment.
    SegmentHeader {
        /// Format version.
        version: u16,
        /// Segment sequence number.
        sequence: u64,
        /// Index of the first entry written to this segment.
        first_index: Index,
    },
    /// A log entry.
    Entry(Entry),
    /// Term, vote and commit.
    HardState(HardState),
    /// A snapshot at (index, term) now covers the log up to `index`; with `replaces_log`, it
    /// came from the leader and every entry written before it is void.
    Snapshot {
        /// Last index covered.
        index: Index,
        /// Its term.
        term: Term,
        /// True for an installed snapshot (the log was replaced), false for local compaction.
        replaces_log: bool,
    },
}

const KIND_HEADER: u8 = 1;
const KIND_ENTRY: u8 = 2;
const KIND_HARD_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared length.
    Truncated,
    /// The length is larger than any valid record.
    BadLength,
    /// The checksum does not match.
    BadChecksum,
    /// The checksum matches but the content is not a valid record.
    Malformed,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            DecodeError::Truncated => "record cut short",
            DecodeError::BadLength => "impossible record length",
            DecodeError::BadChecksum => "checksum mismatch",
            DecodeError::Malformed => "malformed record",
        };
        f.write_str(text)
    }
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends the encoding of an entry record (the hot path: no copy of the entry).
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    encode_entry_payload(entry, out);
    finish(out, start, KIND_ENTRY);
}

/// An entry's payload: term, index, a kind byte, then the stamp if it has one, then the data.
/// The kind byte says whether a stamp follows (2 and 3: stamped normal and conf-change
/// entries), so logs written before stamps existed (kinds 0 and 1) still read, with stamp 0.
fn encode_entry_payload(entry: &Entry, out: &mut Vec<u8>) {
    put_u64(out, entry.term);
    put_u64(out, entry.index);
    let kind = match entry.kind {
        EntryKind::Normal => 0,
        EntryKind::ConfChange => 1,
    };
    if entry.stamp == 0 {
        out.push(kind);
    } else {
        out.push(kind + STAMPED);
        put_u64(out, entry.stamp);
    }
    out.extend_from_slice(&entry.data);
}

/// Added to an entry's kind byte when a stamp follows it.
const STAMPED: u8 = 2;

/// Fills in the length, kind and checksum of the record that starts at `start`.
fn finish(out: &mut [u8], start: usize, kind: u8) {
    let len = (out.len() - start - HEADER_BYTES) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 8] = kind;
    let crc = checksum(&out[start..start + 4], &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the encoding of `record` to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    let kind = match record {
        Record::SegmentHeader { version, sequence, first_index } => {
            out.extend_from_slice(SEGMENT_MAGIC);
            out.extend_from_slice(&version.to_le_bytes());
            put_u64(out, *sequence);
            put_u64(out, *first_index);
            KIND_HEADER
        }
        Record::Entry(entry) => {
            encode_entry_payload(entry, out);
            KIND_ENTRY
        }
        Record::HardState(state) => {
            put_u64(out, state.term);
            put_u64(out, state.vote);
            put_u64(out, state.commit);
            KIND_HARD_STATE
        }
        Record::Snapshot { index, term, replaces_log } => {
            put_u64(out, *index);
            put_u64(out, *term);
            out.push(*replaces_log as u8);
            KIND_SNAPSHOT
        }
    };
    finish(out, start, kind);
}

fn checksum(len_bytes: &[u8], kind_and_payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), kind_and_payload)
}

/// True if the header at `bytes` is all zeros: preallocated space that was never written.
pub fn is_unwritten(bytes: &[u8]) -> bool {
    bytes.iter().take(HEADER_BYTES).all(|b| *b == 0)
}

/// The length a header at `bytes` declares, if the header is present.
pub fn declared_len(bytes: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    Some(len)
}

/// Decodes the record at the start of `bytes`; returns it and its encoded size.
pub fn decode(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::Truncated);
    }
    let len = declared_len(bytes).ok_or(DecodeError::Truncated)?;
    if len > PAYLOAD_BYTES_MAX {
        return Err(DecodeError::BadLength);
    }
    let total = HEADER_BYTES + len;
    if bytes.len() < total {
        return Err(DecodeError::Truncated);
    }
    let stored = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if checksum(&bytes[..4], &bytes[8..total]) != stored {
        return Err(DecodeError::BadChecksum);
    }
    let record = decode_payload(bytes[8], &bytes[HEADER_BYTES..total]).ok_or(DecodeError::Malformed)?;
    Ok((record, total))
}

fn decode_payload(kind: u8, payload: &[u8]) -> Option<Record> {
    let u64_at = |at: usize| -> Option<u64> { Some(u64::from_le_bytes(payload.get(at..at + 8)?.try_into().ok()?)) };
    match kind {
        KIND_HEADER => {
            if payload.len() != 26 || &payload[..8] != SEGMENT_MAGIC {
                return None;
            }
            let version = u16::from_le_bytes(payload[8..10].try_into().ok()?);
            Some(Record::SegmentHeader { version, sequence: u64_at(10)?, first_index: u64_at(18)? })
        }
        KIND_ENTRY => {
            let code = *payload.get(16)?;
            let kind = match code % STAMPED {
                0 => EntryKind::Normal,
                _ => EntryKind::ConfChange,
            };
            let (stamp, data_at) = match code {
                0 | 1 => (0, 17),
                2 | 3 => (u64_at(17)?, 25),
                _ => return None,
            };
            let index = u64_at(8)?;
            (index > 0).then_some(())?;
            let data = payload.get(data_at..)?.to_vec();
            Some(Record::Entry(Entry { term: u64_at(0)?, index, kind, data, stamp }))
        }
        KIND_HARD_STATE if payload.len() == 24 => {
            Some(Record::HardState(HardState { term: u64_at(0)?, vote: u64_at(8)?, commit: u64_at(16)? }))
        }
        KIND_SNAPSHOT if payload.len() == 17 => {
            let replaces_log = match payload[16] {
                0 => false,
                1 => true,
                _ => return None,
            };
            Some(Record::Snapshot { index: u64_at(0)?, term: u64_at(8)?, replaces_log })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::SegmentHeader { version: FORMAT_VERSION, sequence: 3, first_index: 17 },
            Record::Entry(Entry { stamp: 0, term: 2, index: 9, kind: EntryKind::ConfChange, data: b"change".to_vec() }),
            Record::Entry(Entry { stamp: 0, term: 2, index: 10, kind: EntryKind::Normal, data: vec![] }),
            Record::Entry(Entry { stamp: 7 << 16, term: 2, index: 11, kind: EntryKind::Normal, data: b"put".to_vec() }),
            Record::Entry(Entry { stamp: u64::MAX, term: 2, index: 12, kind: EntryKind::ConfChange, data: vec![] }),
            Record::HardState(HardState { term: 4, vote: 2, commit: 8 }),
            Record::Snapshot { index: 5, term: 1, replaces_log: true },
        ]
    }

    #[test]
    fn records_round_trip() {
        for record in samples() {
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            assert_eq!(decode(&bytes), Ok((record, bytes.len())));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        for record in samples() {
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            for bit in 0..bytes.len() * 8 {
                let mut corrupted = bytes.clone();
                corrupted[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&corrupted).is_err(), "flip of bit {bit} in {record:?} went unnoticed");
            }
        }
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, KIND_ENTRY];
        bytes.extend_from_slice(&[0; 32]);
        assert_eq!(decode(&bytes), Err(DecodeError::BadLength));
        let mut bytes = (PAYLOAD_BYTES_MAX as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 5]);
        assert_eq!(decode(&bytes), Err(DecodeError::Truncated));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Fuzzing the decoder: arbitrary bytes never panic, and whatever decodes re-encodes to
        /// the same bytes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((record, size)) = decode(&bytes) {
                let mut again = Vec::new();
                encode(&record, &mut again);
                prop_assert_eq!(&again[..], &bytes[..size]);
            }
        }

        /// Valid records with one byte overwritten at random are never mistaken for another record.
        #[test]
        fn damaged_records_are_rejected(index in 1u64..1000, data in proptest::collection::vec(any::<u8>(), 0..64), at in any::<usize>(), value in any::<u8>()) {
            let record = Record::Entry(Entry { stamp: 0, term: 1, index, kind: EntryKind::Normal, data });
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            let at = at % bytes.len();
            prop_assume!(bytes[at] != value);
            bytes[at] = value;
            prop_assert!(decode(&bytes).is_err());
        }
    }
}

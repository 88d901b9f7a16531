//! A count index over the live keys, so that etcd's `count` (every live key in a range, whatever
//! the limit) costs work proportional to the limit and the number of buckets the range spans,
//! not to the number of keys in it.
//!
//! The live keys are cut into buckets of consecutive keys; the `counts` table maps each bucket's
//! first key to its number of live keys (the first bucket starts at the empty key). A count of
//! `[a, b)` adds the counts of the buckets wholly inside and scans only the two buckets at the
//! edges, each at most `SPLIT_AT` keys. A bucket that grows past `SPLIT_AT` is split in half;
//! buckets emptied by deletes stay (a zero in the sum) until the next rebuild.

use redb::{ReadableTable, Table};

use crate::key_index::KeyIndex;
use crate::read::Keys;
use crate::zk::ZNODE_PREFIX;
use crate::{storage_error, Error};

/// Keys in a bucket before it splits.
pub const SPLIT_AT: u64 = 1024;

type Counts<'t> = Table<'t, &'static [u8], u64>;

/// The bucket holding `key`: its first key and count (the empty first bucket if none yet).
fn bucket_of(counts: &impl ReadableTable<&'static [u8], u64>, key: &[u8]) -> Result<(Vec<u8>, u64), Error> {
    match counts.range::<&[u8]>(..=key).map_err(storage_error)?.next_back() {
        Some(item) => {
            let (start, count) = item.map_err(storage_error)?;
            Ok((start.value().to_vec(), count.value()))
        }
        None => Ok((Vec::new(), 0)),
    }
}

/// Records that `key` became live (it is already live in `index`).
pub fn added(counts: &mut Counts, index: &KeyIndex, key: &[u8]) -> Result<(), Error> {
    let (start, count) = bucket_of(counts, key)?;
    let count = count + 1;
    if count <= SPLIT_AT {
        counts.insert(start.as_slice(), count).map_err(storage_error)?;
        return Ok(());
    }
    // Split: the second half starts at the key after the first half.
    let half = SPLIT_AT / 2;
    let middle = index.nth_live_from(&start, half as usize);
    let middle = middle.ok_or_else(|| Error::Storage("count index: bucket larger than its keys".into()))?;
    counts.insert(start.as_slice(), half).map_err(storage_error)?;
    counts.insert(middle.as_slice(), count - half).map_err(storage_error)?;
    Ok(())
}

/// Records that `key` is no longer live.
pub fn removed(counts: &mut Counts, key: &[u8]) -> Result<(), Error> {
    let (start, count) = bucket_of(counts, key)?;
    counts.insert(start.as_slice(), count.saturating_sub(1)).map_err(storage_error)?;
    Ok(())
}

/// Keys in `keys` live at `revision`, the revision `counts` is exact at (the index may be
/// ahead of it: its edge buckets are walked at `revision`).
pub fn count(
    counts: &impl ReadableTable<&'static [u8], u64>,
    index: &KeyIndex,
    keys: &Keys,
    revision: i64,
) -> Result<usize, Error> {
    let (start, end) = match keys {
        Keys::Nothing => return Ok(0),
        Keys::One(_) => return Ok(index.live_at(keys, revision, 1).len()),
        Keys::Span(start, end) => (start.as_slice(), end.as_deref()),
    };
    let total = count_span(counts, index, start, end, revision)?;
    if crate::read::reserved(start) {
        return Ok(total);
    }
    // A span that starts outside the znode keys does not see them (`read::hides`): take away
    // those it covers.
    let past = crate::read::prefix_end(ZNODE_PREFIX);
    let low = start.max(ZNODE_PREFIX);
    let high = end.map_or(past.as_slice(), |end| end.min(past.as_slice()));
    if low >= high {
        return Ok(total);
    }
    Ok(total - count_span(counts, index, low, Some(high), revision)?)
}

/// Keys in `[start, end)` live at `revision`, znode keys included.
fn count_span(
    counts: &impl ReadableTable<&'static [u8], u64>,
    index: &KeyIndex,
    start: &[u8],
    end: Option<&[u8]>,
    revision: i64,
) -> Result<usize, Error> {
    let (first, _) = bucket_of(counts, start)?;
    let buckets = match end {
        Some(end) => counts.range::<&[u8]>(first.as_slice()..end),
        None => counts.range::<&[u8]>(first.as_slice()..),
    }
    .map_err(storage_error)?;
    let buckets: Vec<(Vec<u8>, u64)> = buckets
        .map(|item| item.map(|(k, v)| (k.value().to_vec(), v.value())).map_err(storage_error))
        .collect::<Result<_, _>>()?;
    let mut total = 0usize;
    for (i, (bucket_start, bucket_count)) in buckets.iter().enumerate() {
        let bucket_end = match buckets.get(i + 1) {
            Some((next, _)) => Some(next.clone()),
            None => counts
                .range::<&[u8]>(bucket_start.as_slice()..)
                .map_err(storage_error)?
                .nth(1)
                .map(|item| item.map(|(k, _)| k.value().to_vec()).map_err(storage_error))
                .transpose()?,
        };
        let starts_inside = bucket_start.as_slice() >= start;
        let ends_inside = match (&bucket_end, end) {
            (_, None) => true,
            (Some(bucket_end), Some(end)) => bucket_end.as_slice() <= end,
            (None, Some(_)) => false,
        };
        if starts_inside && ends_inside {
            total += *bucket_count as usize;
            continue;
        }
        // An edge bucket: count its keys inside the range one by one (at most SPLIT_AT).
        let low = if starts_inside { bucket_start.as_slice() } else { start };
        let high = match (bucket_end.as_deref(), end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if high.is_some_and(|high| low >= high) {
            continue;
        }
        total += index.count_live_at(low, high, revision);
    }
    Ok(total)
}

/// Rebuilds the count index from the live keys of `index` (after a snapshot install, or on a
/// store that has none).
pub fn rebuild(counts: &mut Counts, index: &KeyIndex) -> Result<(), Error> {
    counts.retain(|_, _| false).map_err(storage_error)?;
    let mut bucket: Vec<u8> = Vec::new();
    let mut in_bucket = 0u64;
    for key in index.live_keys_in_order() {
        if in_bucket == SPLIT_AT / 2 {
            counts.insert(bucket.as_slice(), in_bucket).map_err(storage_error)?;
            bucket = key.to_vec();
            in_bucket = 0;
        }
        in_bucket += 1;
    }
    if in_bucket > 0 {
        counts.insert(bucket.as_slice(), in_bucket).map_err(storage_error)?;
    }
    Ok(())
}

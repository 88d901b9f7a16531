//! Group commit against the disk's raw fsync rate, measured in the same run on the same disk.
//!
//! `cargo bench -p ballot-storage --bench wal` (set `BALLOT_BENCH_DIR` to measure another disk;
//! the default is a directory under `target/`, which is on the project's disk).
//!
//! Prints, for batches of 1, 16 and 256 small entries: entries/s, MB/s, batches (fsyncs)/s,
//! and entries/s as a multiple of the raw fsync rate (a tight loop of a small write + fdatasync).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ballot_raft::{Entry, EntryKind};
use ballot_storage::{Batch, FsDisk, Wal, WalOptions};

const RUN: Duration = Duration::from_secs(3);
const ENTRY_BYTES: usize = 64;

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("BALLOT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-wal"));
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

/// Small write + fdatasync in a tight loop: the disk's floor for durable operations.
fn raw_fsync_rate() -> f64 {
    let dir = bench_dir("raw");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.join("raw")).unwrap();
    file.set_len(64 * 1024 * 1024).unwrap();
    let block = [7u8; ENTRY_BYTES];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < RUN {
        file.write_all_at(&block, count * ENTRY_BYTES as u64).unwrap();
        file.sync_data().unwrap();
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).unwrap();
    rate
}

/// Returns (entries/s, MB/s of payload, batches/s).
fn wal_rate(batch_size: u64) -> (f64, f64, f64) {
    let dir = bench_dir(&format!("wal-{batch_size}"));
    let disk = FsDisk::open(&dir, true).unwrap();
    let (mut wal, _) = Wal::open(disk, WalOptions::default()).unwrap();
    let payload = vec![7u8; ENTRY_BYTES];
    let started = Instant::now();
    let (mut next, mut batches) = (1u64, 0u64);
    while started.elapsed() < RUN {
        let batch: Vec<Entry> = (next..next + batch_size)
            .map(|index| Entry { stamp: 0, term: 1, index, kind: EntryKind::Normal, data: payload.clone() })
            .collect();
        wal.append(Batch { entries: &batch, ..Batch::default() }).unwrap();
        next += batch_size;
        batches += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let entries = (next - 1) as f64;
    drop(wal);
    std::fs::remove_dir_all(&dir).unwrap();
    (entries / seconds, entries * ENTRY_BYTES as f64 / seconds / 1e6, batches as f64 / seconds)
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("wal bench: run with `cargo bench -p ballot-storage --bench wal`");
        return;
    }
    let raw = raw_fsync_rate();
    println!("raw write+fdatasync: {raw:.0}/s ({ENTRY_BYTES}-byte writes)");
    println!("| batch | entries/s | MB/s | fsyncs/s | entries/s ÷ raw fsync/s |");
    println!("|---|---|---|---|---|");
    for batch in [1u64, 16, 256] {
        let (entries, megabytes, batches) = wal_rate(batch);
        println!("| {batch} | {entries:.0} | {megabytes:.2} | {batches:.0} | {:.1}× |", entries / raw);
    }
}

//! The state machine's own speed and footprint, with no Raft and no network.
//!
//! `cargo bench -p ballot-mvcc --bench mvcc` (a file-backed store under `target/`, or
//! `BALLOT_BENCH_DIR`). Prints applied puts/s for batches of 1 and 256, reads/s, the cost of a
//! put with 1, 100 and 10,000 watchers on one prefix, and memory and disk per key after
//! 1,000,000 keys of 256 bytes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ballot_mvcc::{Command, PutRequest, RangeRequest, Store, WatchHub, WatchRequest};

const VALUE_BYTES: usize = 256;

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("BALLOT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-mvcc"));
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn key(i: u64) -> Vec<u8> {
    format!("/registry/key/{i:08}").into_bytes()
}

fn put(i: u64, value: &[u8]) -> Command {
    Command::Put(PutRequest { key: key(i), value: value.to_vec(), ..Default::default() })
}

/// Applies `total` puts over `key_space` keys in batches; returns puts/s.
fn applied_puts(store: &mut Store, next_index: &mut u64, total: u64, batch: u64, key_space: u64) -> f64 {
    let value = vec![7u8; VALUE_BYTES];
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let commands: Vec<(u64, Command)> = (0..batch)
            .map(|i| {
                *next_index += 1;
                (*next_index, put((done + i).wrapping_mul(2_654_435_761) % key_space, &value))
            })
            .collect();
        store.apply_batch(&commands).unwrap();
        done += batch;
        // As a member does (every ~100 ms or N entries): this bounds redb's dirty pages.
        if (done / batch).is_multiple_of(64) {
            store.make_durable().unwrap();
        }
    }
    store.make_durable().unwrap();
    total as f64 / started.elapsed().as_secs_f64()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("mvcc bench: run with `cargo bench -p ballot-mvcc --bench mvcc`");
        return;
    }
    // Applied puts/s on 100k keys.
    let dir = bench_dir("puts");
    let mut store = Store::open(&dir.join("db")).unwrap();
    let mut index = 0;
    applied_puts(&mut store, &mut index, 100_000, 256, 100_000);
    let batched = applied_puts(&mut store, &mut index, 200_000, 256, 100_000);
    let single = applied_puts(&mut store, &mut index, 5_000, 1, 100_000);
    println!("applied puts/s (256 B values, 100k keys): batch 1: {single:.0}, batch 256: {batched:.0}");

    // Reads.
    let started = Instant::now();
    let mut reads = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        let request = RangeRequest { key: key((reads * 7919) % 100_000), ..Default::default() };
        assert_eq!(store.range(&request).unwrap().kvs.len(), 1);
        reads += 1;
    }
    let gets = reads as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut ranges = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        let start = key((ranges * 7919) % 99_000);
        let request = RangeRequest { key: start, range_end: vec![0], limit: 10, ..Default::default() };
        assert_eq!(store.range(&request).unwrap().kvs.len(), 10);
        ranges += 1;
    }
    let scans = ranges as f64 / started.elapsed().as_secs_f64();
    println!("reads/s: single key {gets:.0}; range of 10 (limit 10) {scans:.0}");
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();

    // Watch fan-out: the cost of one put's events with W watchers on the prefix it falls in,
    // and on a prefix it does not.
    for watchers in [1usize, 100, 10_000] {
        let mut store = Store::in_memory().unwrap();
        let mut hub = WatchHub::new(1024);
        let ids: Vec<_> = (0..watchers)
            .map(|_| {
                hub.watch(
                    &store,
                    WatchRequest { key: b"/svc/".to_vec(), range_end: b"/svc0".to_vec(), ..Default::default() },
                )
                .unwrap()
            })
            .collect();
        let value = vec![1u8; VALUE_BYTES];
        let rounds = 200u64;
        let (mut matching, mut other) = (Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            let inside = Command::Put(PutRequest {
                key: format!("/svc/{round}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            });
            let outside = Command::Put(PutRequest {
                key: format!("/other/{round}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            });
            store.apply_batch(&[(2 * round + 1, inside)]).unwrap();
            let events = store.take_events();
            let started = Instant::now();
            hub.notify(&store, &events).unwrap();
            for id in &ids {
                hub.take(*id);
            }
            matching += started.elapsed();
            store.apply_batch(&[(2 * round + 2, outside)]).unwrap();
            let events = store.take_events();
            let started = Instant::now();
            hub.notify(&store, &events).unwrap();
            other += started.elapsed();
        }
        println!(
            "watch fan-out, {watchers} watchers on one prefix: {:.2} µs per matching put (delivered to all), {:.3} µs per put elsewhere",
            matching.as_secs_f64() * 1e6 / rounds as f64,
            other.as_secs_f64() * 1e6 / rounds as f64
        );
    }

    // Footprint after 1M keys of 256 B.
    let dir = bench_dir("footprint");
    let before = rss_bytes();
    let mut store = Store::open(&dir.join("db")).unwrap();
    let mut index = 0;
    let rate = applied_puts(&mut store, &mut index, 1_000_000, 1000, 1_000_000);
    let after = rss_bytes();
    let disk = std::fs::metadata(dir.join("db")).unwrap().len();
    println!(
        "1M keys of 256 B loaded at {rate:.0} puts/s: file {:.1} MiB ({:.0} B/key), backend allocated {:.1} MiB, process RSS grew {:.1} MiB ({:.0} B/key)",
        disk as f64 / 1048576.0,
        disk as f64 / 1e6,
        store.size_bytes().unwrap() as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1e6
    );
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

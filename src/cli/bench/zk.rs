//! The ZooKeeper workloads of `ballot bench` (`zk-create`, `zk-set`, `zk-get`, `zk-watch`,
//! `zk-session`): the same client (ballot's blocking ZooKeeper client, one thread and one
//! session per client) against ballot's ZooKeeper port or ZooKeeper's, so both are measured
//! alike. `--endpoints` lists the ZooKeeper addresses; clients are spread over them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ballot_server::zk::client::{Client, ZkError};
use ballot_zk::codes::ErrorCode;

use super::{BenchArgs, Gaps, Random, Tally, Workload};

/// The session timeout the benchmark's clients ask for.
const SESSION_TIMEOUT_MS: i32 = 30_000;

/// Nodes the set and get workloads use at most (created before the clock starts).
const NODES_MAX: u64 = 1_000;

fn kind(error: &ZkError) -> String {
    match error {
        ZkError::Code(code) => format!("{code:?}"),
        other => other.to_string(),
    }
}

fn connect(address: &str) -> anyhow::Result<Client> {
    Client::connect(address, SESSION_TIMEOUT_MS).with_context(|| format!("connecting to ZooKeeper at {address}"))
}

/// Creates `path` unless it exists.
fn ensure(client: &mut Client, path: &str, data: &[u8]) -> anyhow::Result<()> {
    match client.create(path, data, 0) {
        Ok(_) | Err(ZkError::Code(ErrorCode::NodeExists)) => Ok(()),
        Err(error) => bail!("creating {path}: {error}"),
    }
}

/// The run's own parent node: runs never collide, and ZooKeeper and ballot start alike.
fn parent() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("/bench-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// The endpoints as `host:port`.
fn endpoints(args: &BenchArgs) -> Vec<String> {
    args.endpoints
        .split(',')
        .map(|e| e.trim().trim_start_matches("http://").to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Creates the run's nodes (before the clock starts); the run's parent node.
pub fn prepare(args: &BenchArgs) -> anyhow::Result<String> {
    let endpoints = endpoints(args);
    if endpoints.is_empty() || args.clients == 0 {
        bail!("--endpoints and --clients must be non-empty / positive");
    }
    let root = parent();
    let value = vec![b'v'; args.val_size];
    let nodes = args.key_space.clamp(1, NODES_MAX);
    {
        let mut setup = connect(&endpoints[0])?;
        ensure(&mut setup, &root, b"")?;
        if matches!(args.workload, Workload::ZkSet | Workload::ZkGet) {
            for i in 0..nodes {
                ensure(&mut setup, &format!("{root}/k{i}"), &value)?;
            }
        }
        if args.workload == Workload::ZkWatch {
            ensure(&mut setup, &format!("{root}/watched"), &value)?;
        }
        let _ = setup.close();
    }
    Ok(root)
}

/// Runs a ZooKeeper workload under `root` (from [`prepare`]); one tally per client.
pub fn run(
    args: &BenchArgs,
    root: &str,
    total: u64,
    deadline: Option<Instant>,
    done: Arc<AtomicU64>,
    gaps: Arc<Gaps>,
) -> anyhow::Result<Vec<Tally>> {
    let endpoints = endpoints(args);
    let root = root.to_string();
    let value = vec![b'v'; args.val_size];
    let nodes = args.key_space.clamp(1, NODES_MAX);
    if args.workload == Workload::ZkWatch {
        return watch_latency(args, &endpoints, &root, total, deadline, done);
    }
    let issued = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for client in 0..args.clients {
        let address = endpoints[client % endpoints.len()].clone();
        let (args, issued, done, gaps) = (args.clone(), issued.clone(), done.clone(), gaps.clone());
        let (root, value) = (root.clone(), value.clone());
        threads.push(std::thread::spawn(move || -> anyhow::Result<Tally> {
            let mut tally = Tally::default();
            let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1).wrapping_mul(0x1000_0000_01b3));
            let mut session = if args.workload == Workload::ZkSession { None } else { Some(connect(&address)?) };
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let began = Instant::now();
                let result: Result<(), ZkError> = match (args.workload, session.as_mut()) {
                    (Workload::ZkCreate, Some(session)) => session.create(&format!("{root}/c{n}"), &value, 0).map(drop),
                    (Workload::ZkSet, Some(session)) => {
                        session.set_data(&format!("{root}/k{}", random.below(nodes)), &value, -1).map(drop)
                    }
                    (Workload::ZkGet, Some(session)) => {
                        session.get_data(&format!("{root}/k{}", random.below(nodes)), false).map(drop)
                    }
                    // A session opened (through the log) and closed.
                    _ => Client::connect(&address, SESSION_TIMEOUT_MS).and_then(Client::close),
                };
                match result {
                    Ok(()) => tally.latencies_us.push(began.elapsed().as_micros() as u64),
                    Err(error) => *tally.errors.entry(kind(&error)).or_default() += 1,
                }
                gaps.completed();
                done.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(session) = session {
                let _ = session.close();
            }
            Ok(tally)
        }));
    }
    threads.into_iter().map(|thread| thread.join().map_err(|_| anyhow::anyhow!("a client panicked"))?).collect()
}

/// zk-watch: `--watchers` sessions each hold a data watch on one node; one writer sets it
/// `total` times, each time after every watcher has seen the last change and set its watch
/// again; latency from the setData's sending to each watcher's event.
fn watch_latency(
    args: &BenchArgs,
    endpoints: &[String],
    root: &str,
    total: u64,
    deadline: Option<Instant>,
    done: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Tally>> {
    let path = format!("{root}/watched");
    let started = Instant::now();
    let sent_ns = Arc::new(AtomicU64::new(0));
    let round = Arc::new(AtomicU64::new(0));
    let armed = Arc::new(AtomicU64::new(0));
    let rounds = if deadline.is_some() { u64::MAX } else { (total / args.watchers.max(1) as u64).max(1) };
    let mut watchers = Vec::new();
    for w in 0..args.watchers {
        let mut session = connect(&endpoints[w % endpoints.len()])?;
        let (path, sent_ns, round, armed, done) =
            (path.clone(), sent_ns.clone(), round.clone(), armed.clone(), done.clone());
        watchers.push(std::thread::spawn(move || -> anyhow::Result<Tally> {
            let mut tally = Tally::default();
            loop {
                session.get_data(&path, true).map_err(|error| anyhow::anyhow!("arming a watch: {error}"))?;
                armed.fetch_add(1, Ordering::SeqCst);
                match session.next_event(Duration::from_secs(10)) {
                    Ok(Some(_)) => {
                        let now = started.elapsed().as_nanos() as u64;
                        let sent = sent_ns.load(Ordering::SeqCst);
                        tally.latencies_us.push(now.saturating_sub(sent) / 1000);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err(error) => {
                        *tally.errors.entry(kind(&error)).or_default() += 1;
                        break;
                    }
                }
                if round.load(Ordering::SeqCst) == u64::MAX {
                    break;
                }
            }
            let _ = session.close();
            Ok(tally)
        }));
    }
    let mut writer = connect(&endpoints[0])?;
    let mut n = 0;
    while n < rounds && deadline.is_none_or(|d| Instant::now() < d) {
        // Every watcher armed again before the next change.
        let wait_until = Instant::now() + Duration::from_secs(10);
        while armed.load(Ordering::SeqCst) < (n + 1) * args.watchers as u64 && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_micros(200));
        }
        round.store(n, Ordering::SeqCst);
        n += 1;
        if n == rounds || deadline.is_some_and(|d| Instant::now() >= d) {
            round.store(u64::MAX, Ordering::SeqCst);
        }
        // Each event's clock runs from the setData's sending (an event can beat the reply).
        sent_ns.store(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
        writer.set_data(&path, b"x", -1).map_err(|error| anyhow::anyhow!("setting the watched node: {error}"))?;
    }
    round.store(u64::MAX, Ordering::SeqCst);
    let _ = writer.close();
    watchers.into_iter().map(|thread| thread.join().map_err(|_| anyhow::anyhow!("a watcher panicked"))?).collect()
}

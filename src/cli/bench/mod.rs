//! `ballot bench`: a load generator over the etcd v3 API, so the same command measures ballot
//! and etcd. Clients share `--conns` connections spread over the endpoints; each client runs one
//! request at a time; the report gives throughput, errors by kind, the latency distribution, the
//! longest time without a completion (a stall), and the CPU time the servers behind the
//! endpoints used per operation when they run on this machine ([`server_cpu`]).

mod server_cpu;
mod watch;
mod zk;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::{kv_client::KvClient, lease_client::LeaseClient};
use clap::{Args, ValueEnum};

use super::connect::{Conn, Dialer};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Puts of random keys over the key space.
    Put,
    /// Single-key ranges of random keys (after loading the key space).
    Range,
    /// Compare-and-swap on a few hot keys: read, then a txn on the read's mod revision.
    TxnCas,
    /// Latency from a put's acknowledgement to each watcher's event.
    WatchLatency,
    /// Events per second to `--watchers` watchers while `--clients` writers put as fast as
    /// they can; latency from a put's sending to each watcher's event.
    WatchFanout,
    /// Grant, keep-alive once, revoke.
    Lease,
    /// 90% linearizable ranges, 10% puts.
    Mixed,
    /// Puts every key of the key space once, in key order, in transactions of up to
    /// `LOAD_BATCH` puts (one operation each): a data set for later runs with `--loaded`.
    Load,
    /// ZooKeeper (the endpoints are ZooKeeper ports, ballot's or ZooKeeper's): creates of new
    /// nodes.
    ZkCreate,
    /// ZooKeeper: setData of random nodes (up to 1,000, created first).
    ZkSet,
    /// ZooKeeper: getData of random nodes (up to 1,000, created first).
    ZkGet,
    /// ZooKeeper: latency from a setData's sending to each of `--watchers` data watches'
    /// events.
    ZkWatch,
    /// ZooKeeper: sessions opened and closed.
    ZkSession,
}

impl Workload {
    /// True for the workloads that speak ZooKeeper's protocol.
    fn is_zk(self) -> bool {
        matches!(self, Workload::ZkCreate | Workload::ZkSet | Workload::ZkGet | Workload::ZkWatch | Workload::ZkSession)
    }
}

/// Puts per transaction of the load workload (etcd 3.4 allows 128 operations per txn).
const LOAD_BATCH: u64 = 100;

/// Flags of `ballot bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Endpoints (the global `--endpoints` flag).
    #[arg(skip)]
    pub endpoints: String,
    /// gRPC connections, spread over the endpoints.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients, spread over the connections.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Stop after this many operations (default 10,000 unless --duration is given).
    #[arg(long)]
    pub total: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Key size in bytes (longer only if the key space's numbers do not fit).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// The range workload's reads, from the global `--consistency` (l, c or s): a causal client
    /// sends the highest revision it has seen with each read.
    #[arg(skip)]
    pub reads: super::connect::Consistency,
    /// Watchers for watch-latency and watch-fanout.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// The key space is already loaded (by the load workload): range, mixed and txn-cas skip
    /// their own load.
    #[arg(long)]
    pub loaded: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One client's results.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
    cas_succeeded: u64,
}

/// Key number `i` of the key space: `bench/` and the number, zero-padded to `--key-size`; the
/// number alone (zero-padded) when the prefix does not fit; longer than `--key-size` only when the
/// key space's numbers do not fit in it. Every number of the key space gives a distinct key.
fn key(args: &BenchArgs, i: u64) -> Vec<u8> {
    const PREFIX: &str = "bench/";
    let digits = args.key_space.saturating_sub(1).max(1).ilog10() as usize + 1;
    if args.key_size >= PREFIX.len() + digits {
        format!("{PREFIX}{i:0width$}", width = args.key_size - PREFIX.len()).into_bytes()
    } else {
        format!("{i:0width$}", width = args.key_size.max(digits)).into_bytes()
    }
}

fn error_kind(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// A small, fast, seeded generator (xorshift*), one per client.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Runs the benchmark and prints the report.
pub fn run(endpoints: super::connect::Endpoints, mut args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let dialer = Dialer::new(&endpoints)?;
    args.endpoints = endpoints.endpoints;
    args.reads = dialer.consistency;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_async(args, dialer))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `--conns` connections over the endpoints, round robin; one login (if there is a user),
/// whose token every connection carries.
async fn connect_all(args: &BenchArgs, dialer: &Dialer) -> anyhow::Result<Vec<Conn>> {
    let endpoints: Vec<&str> = args.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    if endpoints.is_empty() || args.conns == 0 || args.clients == 0 {
        bail!("--endpoints, --conns and --clients must be non-empty / positive");
    }
    let mut channels = Vec::new();
    for i in 0..args.conns {
        let endpoint = endpoints[i % endpoints.len()];
        let channel = dialer
            .endpoint(endpoint)?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", dialer.url(endpoint)))?;
        if i == 0 {
            dialer.login(&channel).await?;
        }
        channels.push(dialer.wrap(channel));
    }
    Ok(channels)
}

async fn run_async(args: BenchArgs, dialer: Dialer) -> anyhow::Result<()> {
    if args.workload.is_zk() {
        return run_zk(args).await;
    }
    let channels = connect_all(&args, &dialer).await?;
    let total = if args.workload == Workload::Load { args.key_space.div_ceil(LOAD_BATCH) } else { total(&args) };
    if matches!(args.workload, Workload::Range | Workload::Mixed | Workload::TxnCas) && !args.loaded {
        load_key_space(&args, &channels[0]).await?;
    }
    // The clock starts after loading: --duration is the measured part alone.
    let measurement = Measurement::start(&args, total);
    let (deadline, done, gaps) = (measurement.deadline, measurement.done.clone(), measurement.gaps.clone());
    let issued = Arc::new(AtomicU64::new(0));
    let mut fanout = None;
    let tallies = if args.workload == Workload::WatchLatency {
        vec![watch::watch_latency(&args, &channels, total, deadline, done.clone()).await?]
    } else if args.workload == Workload::WatchFanout {
        let (tally, measured) = watch::watch_fanout(&args, &channels, total, deadline, done.clone()).await?;
        fanout = Some(measured);
        vec![tally]
    } else {
        let mut tasks = Vec::new();
        for client in 0..args.clients {
            let channel = channels[client % channels.len()].clone();
            let (args, issued, done, gaps) = (args.clone(), issued.clone(), done.clone(), gaps.clone());
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1).wrapping_mul(0x1000_0000_01b3));
                let mut kv = KvClient::new(channel.clone());
                let mut lease = LeaseClient::new(channel);
                let mut seen = 0;
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let began = Instant::now();
                    let result = one_op(&args, n, &mut kv, &mut lease, &mut random, &mut tally, &mut seen).await;
                    match result {
                        Ok(()) => tally.latencies_us.push(began.elapsed().as_micros() as u64),
                        Err(status) => *tally.errors.entry(error_kind(&status)).or_default() += 1,
                    }
                    gaps.completed();
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            }));
        }
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await?);
        }
        tallies
    };
    let gaps_mean_stalls = args.workload != Workload::WatchFanout && args.workload != Workload::WatchLatency;
    measurement.finish(&args, tallies, fanout, gaps_mean_stalls).await;
    Ok(())
}

/// Operations to run: `--total`, or unbounded with `--duration`, or 10,000.
fn total(args: &BenchArgs) -> u64 {
    match (args.total, args.duration) {
        (Some(total), _) => total,
        (None, Some(_)) => u64::MAX,
        (None, None) => 10_000,
    }
}

/// What every workload's measurement shares: the clock, the progress line, the servers' and
/// this process's CPU, the gaps between completions.
struct Measurement {
    deadline: Option<Instant>,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    server_cpu: Option<server_cpu::ServerCpu>,
    own_cpu: f64,
    started: Instant,
    progress: tokio::task::JoinHandle<()>,
    gaps: Arc<Gaps>,
}

impl Measurement {
    /// Starts the clock (and `--duration`) now.
    fn start(args: &BenchArgs, total: u64) -> Measurement {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        Measurement {
            deadline: args.duration.map(|seconds| started + Duration::from_secs(seconds)),
            progress: tokio::spawn(report_progress(done.clone(), stop.clone(), total)),
            done,
            stop,
            server_cpu: server_cpu::ServerCpu::start(&args.endpoints),
            own_cpu: server_cpu::own_seconds(),
            started,
            gaps: Arc::new(Gaps::new(started)),
        }
    }

    /// Stops the clock and prints the report (the longest gap only if gaps mean stalls).
    async fn finish(
        self,
        args: &BenchArgs,
        tallies: Vec<Tally>,
        fanout: Option<watch::Fanout>,
        gaps_mean_stalls: bool,
    ) {
        let elapsed = self.started.elapsed();
        let cpu = Cpu {
            server: self.server_cpu.map(|cpu| (cpu.processes(), cpu.seconds())),
            client_seconds: server_cpu::own_seconds() - self.own_cpu,
        };
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.progress.await;
        let longest_gap = gaps_mean_stalls.then(|| self.gaps.summary());
        print_report(args, tallies, elapsed, &cpu, longest_gap, fanout);
    }
}

/// A ZooKeeper workload ([`zk`]): its clients are threads with blocking sessions.
async fn run_zk(mut args: BenchArgs) -> anyhow::Result<()> {
    // Each client has a session, and so a connection, of its own.
    args.conns = if args.workload == Workload::ZkWatch { args.watchers } else { args.clients };
    let root = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || zk::prepare(&args)).await??
    };
    let total = total(&args);
    let measurement = Measurement::start(&args, total);
    let tallies = {
        let (args, deadline) = (args.clone(), measurement.deadline);
        let (done, gaps) = (measurement.done.clone(), measurement.gaps.clone());
        tokio::task::spawn_blocking(move || zk::run(&args, &root, total, deadline, done, gaps)).await??
    };
    measurement.finish(&args, tallies, None, args.workload != Workload::ZkWatch).await;
    Ok(())
}

/// The longest time between two completions (or from the start to the first): a stall of the
/// servers shows here even when percentiles hide it.
struct Gaps {
    started: Instant,
    last_ns: AtomicU64,
    longest_ns: AtomicU64,
    /// When the longest gap ended, from the start (approximate under races; for finding it in
    /// the servers' logs and metrics).
    longest_end_ns: AtomicU64,
    /// Gaps longer than [`STALL`].
    stalls: AtomicU64,
}

/// A gap between completions this long counts as a stall (issue 24's bound).
const STALL: Duration = Duration::from_millis(50);

impl Gaps {
    fn new(started: Instant) -> Gaps {
        Gaps {
            started,
            last_ns: AtomicU64::new(0),
            longest_ns: AtomicU64::new(0),
            longest_end_ns: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
        }
    }

    fn completed(&self) {
        let now = self.started.elapsed().as_nanos() as u64;
        let previous = self.last_ns.fetch_max(now, Ordering::Relaxed);
        let gap = now.saturating_sub(previous);
        if gap > STALL.as_nanos() as u64 {
            self.stalls.fetch_add(1, Ordering::Relaxed);
        }
        if self.longest_ns.fetch_max(gap, Ordering::Relaxed) < gap {
            self.longest_end_ns.store(now, Ordering::Relaxed);
        }
    }

    /// The longest gap, when it ended (from the start), and how many gaps were stalls.
    fn summary(&self) -> GapSummary {
        GapSummary {
            longest: Duration::from_nanos(self.longest_ns.load(Ordering::Relaxed)),
            ended: Duration::from_nanos(self.longest_end_ns.load(Ordering::Relaxed)),
            stalls: self.stalls.load(Ordering::Relaxed),
        }
    }
}

/// What [`Gaps`] saw.
struct GapSummary {
    longest: Duration,
    ended: Duration,
    stalls: u64,
}

/// CPU time used during the measured part.
struct Cpu {
    /// Server processes found on this machine and their CPU seconds.
    server: Option<(usize, f64)>,
    /// This process's CPU seconds.
    client_seconds: f64,
}

/// Puts every key of the key space once (for reads and CAS to find something).
async fn load_key_space(args: &BenchArgs, channel: &Conn) -> anyhow::Result<()> {
    let value = vec![b'v'; args.val_size];
    let keys: Vec<u64> = (0..args.key_space).collect();
    let mut tasks = Vec::new();
    for part in keys.chunks(keys.len().div_ceil(64).max(1)) {
        let (mut kv, part, value, args) = (KvClient::new(channel.clone()), part.to_vec(), value.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            for i in part {
                kv.put(pb::PutRequest { key: key(&args, i), value: value.clone(), ..Default::default() }).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Operation number `n` of one client, whose causal session has seen revision `seen`.
async fn one_op(
    args: &BenchArgs,
    n: u64,
    kv: &mut KvClient<Conn>,
    lease: &mut LeaseClient<Conn>,
    random: &mut Random,
    tally: &mut Tally,
    seen: &mut i64,
) -> Result<(), tonic::Status> {
    let value = || vec![b'v'; args.val_size];
    match args.workload {
        Workload::Put => {
            kv.put(pb::PutRequest {
                key: key(args, random.below(args.key_space)),
                value: value(),
                ..Default::default()
            })
            .await?;
        }
        Workload::Range => {
            let request = pb::RangeRequest {
                key: key(args, random.below(args.key_space)),
                serializable: args.reads != super::connect::Consistency::Linearizable,
                ..Default::default()
            };
            let mut request = tonic::Request::new(request);
            if args.reads == super::connect::Consistency::Causal && *seen > 0 {
                let revision = seen.to_string().parse().expect("digits are valid metadata");
                request.metadata_mut().insert(ballot_server::api::MIN_REVISION, revision);
            }
            let header = kv.range(request).await?.into_inner().header;
            *seen = (*seen).max(header.map_or(0, |h| h.revision));
        }
        Workload::Mixed => {
            let k = key(args, random.below(args.key_space));
            if random.below(10) == 0 {
                kv.put(pb::PutRequest { key: k, value: value(), ..Default::default() }).await?;
            } else {
                kv.range(pb::RangeRequest { key: k, ..Default::default() }).await?;
            }
        }
        Workload::TxnCas => {
            let k = key(args, random.below(args.key_space.min(8)));
            let current = kv.range(pb::RangeRequest { key: k.clone(), ..Default::default() }).await?.into_inner();
            let seen = current.kvs.first().map_or(0, |kv| kv.mod_revision);
            let compare = pb::Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Mod as i32,
                key: k.clone(),
                target_union: Some(pb::compare::TargetUnion::ModRevision(seen)),
                range_end: Vec::new(),
            };
            let put = pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: k,
                    value: value(),
                    ..Default::default()
                })),
            };
            let txn = pb::TxnRequest { compare: vec![compare], success: vec![put], failure: vec![] };
            if kv.txn(txn).await?.into_inner().succeeded {
                tally.cas_succeeded += 1;
            }
        }
        Workload::Lease => {
            let granted = lease.lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 }).await?.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.send(pb::LeaseKeepAliveRequest { id: granted.id }).await;
            let mut responses =
                lease.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
            responses.message().await?;
            drop(tx);
            lease.lease_revoke(pb::LeaseRevokeRequest { id: granted.id }).await?;
        }
        Workload::Load => {
            let first = n * LOAD_BATCH;
            let success = (first..(first + LOAD_BATCH).min(args.key_space))
                .map(|i| pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: key(args, i),
                        value: value(),
                        ..Default::default()
                    })),
                })
                .collect();
            kv.txn(pb::TxnRequest { compare: vec![], success, failure: vec![] }).await?;
        }
        Workload::WatchLatency | Workload::WatchFanout => unreachable!("measured in watch.rs"),
        Workload::ZkCreate | Workload::ZkSet | Workload::ZkGet | Workload::ZkWatch | Workload::ZkSession => {
            unreachable!("measured in zk.rs")
        }
    }
    Ok(())
}

async fn report_progress(done: Arc<AtomicU64>, stop: Arc<AtomicBool>, total: u64) {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = done.load(Ordering::Relaxed);
        let rate = n as f64 / started.elapsed().as_secs_f64();
        let line = if total == u64::MAX {
            format!("{n} ops, {rate:.0} ops/s")
        } else {
            format!("{n}/{total} ops, {rate:.0} ops/s")
        };
        if tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}

fn print_report(
    args: &BenchArgs,
    tallies: Vec<Tally>,
    elapsed: Duration,
    cpu: &Cpu,
    longest_gap: Option<GapSummary>,
    fanout: Option<watch::Fanout>,
) {
    let mut latencies: Vec<u64> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for tally in &tallies {
        for (kind, n) in &tally.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
    }
    let cas: u64 = tallies.iter().map(|t| t.cas_succeeded).sum();
    let ops = latencies.len() as u64;
    // For watch-fanout an operation is an event delivered, over the time events came.
    let seconds = fanout.as_ref().map_or(elapsed.as_secs_f64(), |f| f.seconds);
    let rate = ops as f64 / seconds;
    let per_op_us = |cpu_seconds: f64| if ops > 0 { cpu_seconds * 1e6 / ops as f64 } else { 0.0 };
    let at = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let workload = format!("{:?}", args.workload).to_lowercase();
    if args.json {
        let report = serde_json::json!({
            "workload": workload,
            "clients": args.clients,
            "conns": args.conns,
            "ops": ops,
            "errors": errors,
            "seconds": seconds,
            "ops_per_sec": rate,
            "server_cpu": cpu.server.map(|(processes, used)| serde_json::json!({
                "processes": processes, "seconds": used, "us_per_op": per_op_us(used),
            })),
            "client_cpu_us_per_op": per_op_us(cpu.client_seconds),
            "longest_gap_ms": longest_gap.as_ref().map(|gap| gap.longest.as_secs_f64() * 1000.0),
            "longest_gap_ended_s": longest_gap.as_ref().map(|gap| gap.ended.as_secs_f64()),
            "stalls_over_50ms": longest_gap.as_ref().map(|gap| gap.stalls),
            "puts": fanout.as_ref().map(|f| f.puts),
            "puts_per_sec": fanout.as_ref().map(|f| f.puts as f64 / f.seconds),
            "latency_ms": {
                "min": at(0.0), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)
            },
            "cas_success_rate": if args.workload == Workload::TxnCas && ops > 0 { Some(cas as f64 / ops as f64) } else { None },
        });
        println!("{report}");
        return;
    }
    println!("workload {workload}: {} clients over {} connections", args.clients, args.conns);
    match &fanout {
        Some(f) => println!(
            "{} puts, {ops} events delivered in {seconds:.2} s: {rate:.0} events/s ({:.0} puts/s)",
            f.puts,
            f.puts as f64 / f.seconds
        ),
        None => println!("ops {ops} in {seconds:.2} s: {rate:.0} ops/s"),
    }
    println!(
        "latency ms: min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        at(0.0),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    if let Some(gap) = longest_gap {
        println!(
            "longest time without a completion: {:.1} ms, ending {:.2} s in; {} gaps over {} ms",
            gap.longest.as_secs_f64() * 1000.0,
            gap.ended.as_secs_f64(),
            gap.stalls,
            STALL.as_millis()
        );
    }
    match cpu.server {
        Some((processes, used)) => println!(
            "CPU per op: servers {:.1} µs ({processes} processes, {used:.2} s), this client {:.1} µs",
            per_op_us(used),
            per_op_us(cpu.client_seconds)
        ),
        None => println!(
            "CPU per op: this client {:.1} µs; servers not measured (no process on this machine listens on the endpoints' ports)",
            per_op_us(cpu.client_seconds)
        ),
    }
    if args.workload == Workload::TxnCas && ops > 0 {
        println!("cas succeeded: {cas} of {ops} ({:.1}%)", 100.0 * cas as f64 / ops as f64);
    }
    if errors.is_empty() {
        println!("errors: none");
    }
    for (kind, n) in errors {
        println!("errors: {n} × {kind}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(flags: &[&str]) -> BenchArgs {
        Cli::parse_from([&["bench", "put"], flags].concat()).bench
    }

    #[test]
    fn every_number_of_the_key_space_is_a_distinct_key_of_the_asked_size() {
        for (flags, size) in [
            (&["--key-space", "100000"][..], 8),
            (&["--key-space", "1000000"][..], 8),
            (&["--key-space", "20", "--key-size", "16"][..], 16),
            (&["--key-space", "1000"][..], 8),
        ] {
            let args = args(flags);
            let keys: std::collections::BTreeSet<Vec<u8>> = (0..args.key_space).map(|i| key(&args, i)).collect();
            assert_eq!(keys.len() as u64, args.key_space, "{flags:?}");
            assert!(keys.iter().all(|k| k.len() == size), "{flags:?}");
        }
        assert_eq!(key(&args(&["--key-space", "100"]), 7), b"bench/07");
        assert_eq!(key(&args(&["--key-space", "100000"]), 7), b"00000007");
        // A key space whose numbers do not fit the size gets longer keys, never repeated ones.
        assert_eq!(key(&args(&["--key-space", "1000", "--key-size", "2"]), 999), b"999");
    }
}

//! `ballot sim`: run seeds of the deterministic simulator, in parallel across cores (each run
//! itself is single-threaded and deterministic).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use ballot_sim::{Faults, SimConfig, SimReport};

/// Arguments of `ballot sim`.
#[derive(clap::Args)]
pub struct SimArgs {
    /// Number of seeds to run (seeds FIRST..FIRST+N).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// Run this one seed only (replay).
    #[arg(long)]
    seed: Option<u64>,
    /// First seed when running many.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Initial voters: 3, 5 or 7 (default 3); with --gossip, the fleet's size (default 100).
    #[arg(long)]
    nodes: Option<usize>,
    /// Faults: all, none, or a list of network,partition,crash,pause,skew,membership,transfer.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Events in the fault phase of each run.
    #[arg(long, default_value_t = 20_000)]
    steps: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// ZooKeeper clients beside them (sessions, ephemeral and sequential nodes, reads from any
    /// member), with the tree's invariants checked.
    #[arg(long, default_value_t = 0)]
    zk_clients: usize,
    /// Print the event trace of the run (with --seed).
    #[arg(long)]
    trace: bool,
    /// Write the history (and a timeline of any violation) of failing seeds here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --seed: write a report of the run here: report.html (the verdict, every
    /// operation's latency and the throughput over virtual time, with faults shaded and leader
    /// changes marked) and its history.jsonl.
    #[arg(long, requires = "seed")]
    report: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Simulate a fleet of gossip agents instead of a Raft cluster (SWIM, Lifeguard, φ, and
    /// all-to-all heartbeats under the same faults).
    #[arg(long)]
    gossip: bool,
    #[command(flatten)]
    fleet: super::sim_gossip::FleetArgs,
    /// The chapter's atomic commit comparison instead of a cluster: 2pc, 3pc, raft-2pc or all,
    /// each on the same bank transfers under the same faults per seed (coordinator crashes,
    /// partitions, lost messages). 2PC's blocking and 3PC's split decisions are what it shows,
    /// not failures of the run: only a Raft-2PC violation exits 1.
    #[arg(long)]
    atomic_commit: Option<String>,
    /// The consensus engine: raft, paxos (Multi-Paxos on a fixed membership: the membership
    /// and transfer faults are not drawn), or paxos:Q1/Q2 (flexible quorums, e.g. paxos:4/2
    /// with --nodes 5).
    #[arg(long, default_value = "raft")]
    consensus: String,
    /// A long soak: stop at the first violation (workers finish the seed in hand), and report
    /// progress on stderr every minute. For 100,000 seeds and more, run it under `nohup … &`.
    #[arg(long)]
    soak: bool,
    /// Break Raft on purpose: vote-ignores-log, commit-previous-term, read-index-without-quorum;
    /// or, with --consensus paxos, Multi-Paxos: paxos-first-reported (the chapter's pick rule)
    /// (needs a build with `--features fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[arg(long)]
    inject_bug: Option<String>,
}

/// Runs the seeds; exit 1 on any violation.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    if let Some(protocols) = &args.atomic_commit {
        let seeds = match args.seed {
            Some(seed) => seed..seed + 1,
            None => args.first_seed..args.first_seed + args.seeds,
        };
        return run_atomic_commit(protocols, seeds);
    }
    if args.gossip {
        let seeds = match args.seed {
            Some(seed) => seed..seed + 1,
            None => args.first_seed..args.first_seed + args.seeds,
        };
        return super::sim_gossip::run(&args.fleet, args.nodes.unwrap_or(100), seeds, args.jobs);
    }
    let nodes = args.nodes.unwrap_or(3);
    if ![3, 5, 7].contains(&nodes) {
        anyhow::bail!("--nodes must be 3, 5 or 7");
    }
    let faults = Faults::parse(&args.faults).map_err(anyhow::Error::msg)?;
    let consensus = ballot_node::Consensus::parse(&args.consensus).map_err(anyhow::Error::msg)?;
    #[cfg(feature = "fault-injection")]
    let bug = match args.inject_bug.as_deref() {
        None => None,
        Some("vote-ignores-log") => Some(ballot_raft::InjectedBug::VoteIgnoresLog),
        Some("commit-previous-term") => Some(ballot_raft::InjectedBug::CommitPreviousTerm),
        Some("read-index-without-quorum") => Some(ballot_raft::InjectedBug::ReadIndexWithoutQuorum),
        Some("paxos-first-reported") if consensus != ballot_node::Consensus::Raft => None,
        Some("paxos-first-reported") => anyhow::bail!("paxos-first-reported needs --consensus paxos"),
        Some(other) => anyhow::bail!("unknown bug '{other}'"),
    };
    #[cfg(feature = "fault-injection")]
    let paxos_first_reported = args.inject_bug.as_deref() == Some("paxos-first-reported");
    let base = |seed| {
        let mut config = SimConfig::new(seed);
        config.nodes = nodes;
        config.faults = faults;
        config.steps = args.steps;
        config.clients = args.clients;
        config.zk_clients = args.zk_clients;
        config.trace = args.trace;
        config.consensus = consensus;
        #[cfg(feature = "fault-injection")]
        {
            config.bug = bug;
            config.paxos_first_reported = paxos_first_reported;
        }
        config
    };
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.first_seed..args.first_seed + args.seeds).collect(),
    };
    install_quiet_panic_hook();
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<(u64, Vec<String>)>> = Mutex::new(Vec::new());
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64));
    std::thread::scope(|scope| {
        if args.soak {
            scope.spawn(|| report_progress(&started, &done, &stop, seeds.len() as u64, jobs));
        }
        let workers: Vec<_> = (0..jobs.min(seeds.len()))
            .map(|_| {
                scope.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let position = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(seed) = seeds.get(position).copied() else { break };
                    let report = run_one(base(seed));
                    done.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut totals = totals.lock().expect("no panics hold this lock");
                        totals.0 += report.ops_ok;
                        totals.1 += report.ops_info;
                        totals.2 += report.faults;
                        totals.3 += report.notes.len() as u64;
                    }
                    for note in &report.notes {
                        println!("seed {seed}: {note}");
                    }
                    if args.trace {
                        for line in &report.trace {
                            println!("{line}");
                        }
                        println!("trace hash {:016x}", report.trace_hash);
                    }
                    if let Some(dir) = &args.report {
                        match write_report(dir, &report) {
                            Ok(path) => println!("seed {seed}: report in {}", path.display()),
                            Err(error) => eprintln!("could not write the report of seed {seed}: {error:#}"),
                        }
                    }
                    if !report.violations.is_empty() {
                        print_failure(&report, &args, faults);
                        if let Some(dir) = &args.out {
                            if let Err(error) = write_artifacts(dir, &report) {
                                eprintln!("could not write artifacts for seed {seed}: {error:#}");
                            }
                        }
                        failures.lock().expect("no panics hold this lock").push((seed, report.violations));
                        if args.soak {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures.into_inner().expect("threads joined");
    let (ok, info, fault_count, notes) = totals.into_inner().expect("threads joined");
    println!(
        "{} ops ok, {} unknown, {} faults injected; {:.1}s wall",
        ok,
        info,
        fault_count,
        started.elapsed().as_secs_f64()
    );
    let ran = done.into_inner();
    let stopped = if ran < seeds.len() as u64 { " (stopped at the first violation)" } else { "" };
    let expected = if notes > 0 { format!(", {notes} expected outcomes noted above") } else { String::new() };
    println!("{ran} seeds, {} violations{expected}{stopped}", failures.len());
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A soak's progress on stderr, once a minute (and at the end): seeds done, rate, time left.
fn report_progress(started: &Instant, done: &AtomicU64, stop: &AtomicBool, total: u64, jobs: usize) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if last.elapsed().as_secs() < 60 {
            continue;
        }
        last = Instant::now();
        let finished = done.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let rate = finished as f64 / elapsed.max(1e-9);
        let left = (total - finished.min(total)) as f64 / rate.max(1e-9);
        eprintln!(
            "soak: {finished}/{total} seeds, {rate:.1} seeds/s on {jobs} threads, {elapsed:.0}s so far, about {left:.0}s left"
        );
    }
}

thread_local! {
    /// Where the last panic on this thread happened (set by the quiet hook below).
    static PANIC_LOCATION: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Panics inside a simulated run are reported as violations with their location, not as
/// backtraces on stderr.
fn install_quiet_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
    }));
}

/// Runs one seed, turning a panic (a broken assertion in the code under test) into a violation.
fn run_one(config: SimConfig) -> SimReport {
    let seed = config.seed;
    match std::panic::catch_unwind(move || ballot_sim::run(config)) {
        Ok(report) => report,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let location = PANIC_LOCATION.with(|cell| cell.borrow().clone());
            let message = format!("{text} (at {location})");
            SimReport {
                seed,
                violations: vec![format!("panic: {message}")],
                notes: Vec::new(),
                history: Vec::new(),
                linearizability: None,
                trace_hash: 0,
                trace: Vec::new(),
                ops_ok: 0,
                ops_fail: 0,
                ops_info: 0,
                zk_ops: 0,
                faults: 0,
                virtual_ms: 0,
                fault_intervals: Vec::new(),
                marks: Vec::new(),
            }
        }
    }
}

fn print_failure(report: &SimReport, args: &SimArgs, faults: Faults) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "seed {} FAILED:", report.seed);
    for violation in &report.violations {
        let _ = writeln!(out, "  {violation}");
    }
    let _ = writeln!(
        out,
        "  replay: ballot sim --seed {} --consensus {} --nodes {} --faults {} --steps {} --clients {} --zk-clients {} --trace",
        report.seed,
        args.consensus,
        args.nodes.unwrap_or(3),
        faults,
        args.steps,
        args.clients,
        args.zk_clients
    );
}

/// Writes `report.html` and `history.jsonl` of one run into `dir`; returns the page's path.
fn write_report(dir: &std::path::Path, report: &SimReport) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let history: String = report.history.iter().map(|e| e.to_line() + "\n").collect();
    std::fs::write(dir.join("history.jsonl"), history)?;
    let mut links = Vec::new();
    if let Some(violation) = &report.linearizability {
        std::fs::write(dir.join("violation.html"), ballot_check::html::render_timeline(violation))?;
        links.push(("violation.html".to_string(), "the violation's timeline".to_string()));
    }
    let page = ballot_check::report::render(&ballot_check::report::RunReport {
        title: format!("ballot sim: seed {}", report.seed),
        verdict: format!(
            "{}: {} ops ok, {} failed, {} unknown, {} faults, {} ms of virtual time",
            if report.violations.is_empty() { "passed" } else { "FAILED" },
            report.ops_ok,
            report.ops_fail,
            report.ops_info,
            report.faults,
            report.virtual_ms
        ),
        passed: report.violations.is_empty(),
        violations: report.violations.clone(),
        events: &report.history,
        faults: report.fault_intervals.clone(),
        marks: report.marks.clone(),
        links,
        time_unit: "virtual s".to_string(),
    });
    let path = dir.join("report.html");
    std::fs::write(&path, page)?;
    Ok(path)
}

fn write_artifacts(dir: &std::path::Path, report: &SimReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let history: String = report.history.iter().map(|e| e.to_line() + "\n").collect();
    std::fs::write(dir.join(format!("seed-{}.jsonl", report.seed)), history)?;
    if let Some(violation) = &report.linearizability {
        std::fs::write(dir.join(format!("seed-{}.html", report.seed)), ballot_check::html::render_timeline(violation))?;
    }
    Ok(())
}

/// `--atomic-commit`: every seed under each protocol, summed into one markdown table row each.
fn run_atomic_commit(protocols: &str, seeds: std::ops::Range<u64>) -> anyhow::Result<ExitCode> {
    use ballot_sim::atomic_commit::{run, ticks_to_ms, Outcome, Protocol};
    let protocols = Protocol::parse(protocols).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    println!(
        "| protocol | seeds | transactions | committed | aborted | in doubt at the end | time blocked (s, all participants) | longest wait (s) | atomicity violations | seeds with money made or lost | first violating seed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for protocol in protocols {
        let mut total = Outcome::default();
        for seed in seeds.clone() {
            total.add(&run(protocol, seed));
        }
        let seconds = |ticks| ticks_to_ms(ticks) as f64 / 1000.0;
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} |",
            protocol.name(),
            seeds.end - seeds.start,
            total.transactions,
            total.committed,
            total.aborted,
            total.in_doubt,
            seconds(total.blocked_ticks),
            seconds(total.max_blocked_ticks),
            total.atomicity_violations,
            total.total_broken,
            total.first_violation.map_or("–".to_string(), |seed| seed.to_string()),
        );
        failed |= protocol == Protocol::RaftTwoPc && (total.atomicity_violations > 0 || total.in_doubt > 0);
    }
    eprintln!("{:.1} s", started.elapsed().as_secs_f64());
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

//! `ballot sim --gossip`: seeds of the fleet simulator, every chosen detector under the same
//! faults, summarised as one table row per detector (markdown, as BENCHMARKS.md keeps it).

use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ballot_gossip::sim::{mean_seconds, run as run_fleet, Report, Scenario, Variant, TICKS_PER_SECOND};

/// The fleet simulator's own flags.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// Detectors to compare: all, or a list of heartbeat,swim,lifeguard,phi.
    #[arg(long, default_value = "all")]
    variant: String,
    /// Members crashed when the faults begin (default: 5, or a tenth of a small fleet).
    #[arg(long)]
    crashes: Option<usize>,
    /// Members starved (stalls of 1–10 s) while the faults last (default: 1% of the fleet).
    #[arg(long)]
    slow: Option<usize>,
    /// Datagrams lost, percent.
    #[arg(long, default_value_t = 1.0)]
    loss_percent: f64,
    /// Cut the fleet in two halves for half of the fault phase.
    #[arg(long)]
    partition: bool,
    /// Seconds the faults last.
    #[arg(long, default_value_t = 60)]
    fault_seconds: u64,
}

/// Runs `seeds` for each chosen detector; exit 1 on any violation.
pub fn run(args: &FleetArgs, nodes: usize, seeds: Range<u64>, jobs: Option<usize>) -> anyhow::Result<ExitCode> {
    if nodes < 3 {
        anyhow::bail!("--nodes must be at least 3 for a fleet");
    }
    let variants: Vec<Variant> = if args.variant == "all" {
        Variant::ALL.to_vec()
    } else {
        args.variant
            .split(',')
            .map(|name| Variant::parse(name.trim()).ok_or_else(|| anyhow::anyhow!("unknown variant '{name}'")))
            .collect::<anyhow::Result<_>>()?
    };
    let scenario = |variant, seed| {
        let mut scenario = Scenario::standard(nodes, variant, seed);
        if let Some(crashes) = args.crashes {
            scenario.crashes = crashes;
        }
        if let Some(slow) = args.slow {
            scenario.slow = slow;
        }
        scenario.loss_ppm = (args.loss_percent * 10_000.0).round() as u64;
        scenario.partition = args.partition;
        scenario.fault_ticks = args.fault_seconds * TICKS_PER_SECOND;
        scenario
    };
    if scenario(Variant::Swim, 0).crashes + scenario(Variant::Swim, 0).slow >= nodes {
        anyhow::bail!("--crashes and --slow leave no healthy member");
    }
    let work: Vec<(Variant, u64)> =
        variants.iter().flat_map(|&variant| seeds.clone().map(move |seed| (variant, seed))).collect();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Variant, u64, Report)>> = Mutex::new(Vec::new());
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(work.len()) {
            scope.spawn(|| {
                while let Some(&(variant, seed)) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let report = run_fleet(&scenario(variant, seed));
                    for violation in &report.violations {
                        println!("{} seed {seed}: {violation}", variant.name());
                    }
                    results.lock().expect("no panics hold this lock").push((variant, seed, report));
                }
            });
        }
    });
    let results = results.into_inner().expect("threads joined");
    let first = scenario(variants[0], seeds.start);
    println!(
        "{nodes} members, {} seeds; {} crashed, {} starved, {}% loss{}, {} s of faults",
        seeds.end - seeds.start,
        first.crashes,
        first.slow,
        args.loss_percent,
        if args.partition { ", a partition" } else { "" },
        args.fault_seconds
    );
    println!();
    println!("| detector | first suspicion | first confirmed | known to 99% | known to all (worst) | healthy declared dead (members / declarations per run) | starved declared dead | messages / member / s | bytes / member / s | violations |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut violations = 0;
    for variant in &variants {
        let runs: Vec<&Report> = results.iter().filter(|(v, _, _)| v == variant).map(|(_, _, report)| report).collect();
        let detections = || runs.iter().flat_map(|report| report.detections.iter());
        let seconds = |value: Option<f64>| value.map_or("–".to_string(), |s| format!("{s:.1} s"));
        let worst = detections().filter_map(|d| d.known_all).max().map(|ticks| ticks as f64 / TICKS_PER_SECOND as f64);
        let undetected = detections().filter(|d| d.known_all.is_none()).count();
        let count = runs.len().max(1) as f64;
        let mean = |f: fn(&Report) -> f64| runs.iter().map(|report| f(report)).sum::<f64>() / count;
        let run_violations: usize = runs.iter().map(|report| report.violations.len()).sum();
        violations += run_violations;
        println!(
            "| {} | {} | {} | {} | {}{} | {:.2} / {:.2} | {:.2} | {:.1} | {:.0} | {} |",
            variant.name(),
            seconds(mean_seconds(detections().map(|d| d.first_suspicion))),
            seconds(mean_seconds(detections().map(|d| d.first_dead))),
            seconds(mean_seconds(detections().map(|d| d.known_99))),
            seconds(mean_seconds(detections().map(|d| d.known_all))),
            match (worst, undetected) {
                (_, n) if n > 0 => format!(" ({n} never known to all)"),
                (Some(worst), _) => format!(" ({worst:.1} s)"),
                (None, _) => String::new(),
            },
            mean(|report| report.false_dead_members as f64),
            mean(|report| report.false_dead_events as f64),
            mean(|report| report.starved_dead_members as f64),
            mean(|report| report.messages_per_member_second),
            mean(|report| report.bytes_per_member_second),
            run_violations,
        );
    }
    println!();
    println!("{:.1}s wall on {jobs} threads", started.elapsed().as_secs_f64());
    Ok(if violations == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

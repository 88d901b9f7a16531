//! `ballot model paxos`: every interleaving of single-decree Paxos (or, with `--slots`, of
//! Multi-Paxos's slot agreement) within small bounds, checked by ballot-paxos's model checker.

use std::process::ExitCode;
use std::time::Instant;

use ballot_paxos::model::{explore, multi, single, Limits, Outcome};
use ballot_paxos::Pick;

/// The protocols `ballot model` can explore.
#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Paxos: agreement and validity in every reachable state, under message loss,
    /// duplication and reordering; the shortest counterexample if one exists.
    Paxos(PaxosArgs),
}

/// Arguments of `ballot model paxos`.
#[derive(clap::Args)]
pub struct PaxosArgs {
    /// Acceptors (a majority is the quorum).
    #[arg(long, default_value_t = 3)]
    acceptors: usize,
    /// Proposers (leaders, with `--slots`), each owning every n-th ballot.
    #[arg(long, default_value_t = 2)]
    proposers: usize,
    /// Values a proposer may be asked to propose (single-decree only; in Multi-Paxos each
    /// leader proposes its own command, and holes are filled with no-ops).
    #[arg(long, default_value_t = 2)]
    values: u8,
    /// The highest ballot any proposer may start.
    #[arg(long, default_value_t = 3)]
    max_ballot: u64,
    /// Check Multi-Paxos with this many log slots instead of single-decree Paxos.
    #[arg(long)]
    slots: Option<usize>,
    /// Stop, without a verdict, after this many distinct states.
    #[arg(long, default_value_t = Limits::default().max_states)]
    max_states: u64,
    /// Break the protocol on purpose: `wrong-key` makes a proposer take the first reported
    /// accepted value instead of the highest-numbered proposal's (the chapter's sketch). Needs
    /// a build with `--features fault-injection`.
    #[arg(long)]
    inject_bug: Option<String>,
}

/// Runs the model checker; exit 0 if the properties hold in every state, 1 on a violation,
/// 2 when the state limit stopped the search.
pub fn run(command: ModelCommand) -> anyhow::Result<ExitCode> {
    let ModelCommand::Paxos(args) = command;
    let rule = rule(args.inject_bug.as_deref())?;
    if !(1..=5).contains(&args.acceptors) || !(1..=4).contains(&args.proposers) || args.max_ballot == 0 {
        anyhow::bail!("bounds out of range: --acceptors 1..=5, --proposers 1..=4, --max-ballot ≥ 1");
    }
    let limits = Limits { max_states: args.max_states };
    // Not a match: another crate's test build may switch in `Pick::FirstReported` where this
    // one's `fault-injection` feature is off.
    let rule_text = if rule == Pick::HighestBallot {
        "the value of the highest-numbered accepted proposal"
    } else {
        "the first accepted value reported (the injected bug)"
    };
    let (properties, started, outcome) = match args.slots {
        None => {
            if !(1..=4).contains(&args.values) {
                anyhow::bail!("--values must be 1..=4");
            }
            println!(
                "model: single-decree Paxos, {} acceptors, {} proposers, {} values, ballots 1..={}; a proposer takes {rule_text}",
                args.acceptors, args.proposers, args.values, args.max_ballot
            );
            let bounds = single::Bounds {
                acceptors: args.acceptors,
                proposers: args.proposers,
                values: args.values,
                max_ballot: args.max_ballot,
            };
            let started = Instant::now();
            (["agreement", "validity"].as_slice(), started, explore(&single::SingleDecree::new(bounds, rule), limits))
        }
        Some(slots) => {
            if !(1..=4).contains(&slots) {
                anyhow::bail!("--slots must be 1..=4");
            }
            println!(
                "model: Multi-Paxos, {} acceptors, {} leaders, {slots} slots, ballots 1..={}; a new leader re-proposes {rule_text} in each slot",
                args.acceptors, args.proposers, args.max_ballot
            );
            let bounds = multi::Bounds {
                acceptors: args.acceptors,
                leaders: args.proposers,
                slots,
                max_ballot: args.max_ballot,
            };
            let started = Instant::now();
            (["slot agreement"].as_slice(), started, explore(&multi::MultiPaxos::new(bounds, rule), limits))
        }
    };
    Ok(report(properties, started, &outcome))
}

/// The protocol's rule for a proposer's value, with the bug switched in if asked.
fn rule(bug: Option<&str>) -> anyhow::Result<Pick> {
    match bug {
        None => Ok(Pick::HighestBallot),
        #[cfg(feature = "fault-injection")]
        Some("wrong-key") => Ok(Pick::FirstReported),
        #[cfg(not(feature = "fault-injection"))]
        Some("wrong-key") => anyhow::bail!("this build has no injected bugs: build with --features fault-injection"),
        Some(other) => anyhow::bail!("unknown bug '{other}' (known: wrong-key)"),
    }
}

/// Prints the outcome; the exit code says the verdict.
fn report(properties: &[&str], started: Instant, outcome: &Outcome) -> ExitCode {
    println!(
        "states explored: {} (distinct, after symmetry reduction); transitions: {}; depth: {}; {:.1} s",
        outcome.states,
        outcome.transitions,
        outcome.depth,
        started.elapsed().as_secs_f64()
    );
    if let Some(violation) = &outcome.violation {
        println!("{}", violation.message);
        println!("shortest counterexample ({} steps):", violation.trace.len());
        for (step, line) in violation.trace.iter().enumerate() {
            println!("  {:>2}. {line}", step + 1);
        }
        let broken = properties
            .iter()
            .find(|p| violation.message.starts_with(&format!("{p} violated")))
            .unwrap_or(&properties[0]);
        for property in properties {
            let verdict = if property == broken { "violated" } else { "not decided (stopped at the first violation)" };
            println!("{property}: {verdict}");
        }
        return ExitCode::from(1);
    }
    if !outcome.complete {
        println!("stopped at --max-states before exploring every state");
        for property in properties {
            println!("{property}: unknown (no violation in the states explored)");
        }
        return ExitCode::from(2);
    }
    for property in properties {
        println!("{property}: holds");
    }
    ExitCode::SUCCESS
}

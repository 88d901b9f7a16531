//! `ballot check HISTORY.jsonl [--model M] [--html FILE]`: linearizability against a sequential
//! model, or the session guarantees and causal consistency (histories whose operations name
//! their session and the revision they returned).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ballot_check::model::RegisterModel;
use ballot_check::{Limits, Verdict};

/// Arguments of `ballot check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The history: one JSON event per line.
    history: PathBuf,
    /// Write an HTML timeline of a violation here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// What to check: `linearizable` (or `kv`: read/write/cas/delete), `register`
    /// (read/write/cas), `session` (read-your-writes, monotonic reads, monotonic writes,
    /// writes-follow-reads within each session) or `causal` (the session guarantees, and every
    /// read's value is the state at the revision it returned).
    #[arg(long, default_value = "register")]
    model: String,
    /// Search steps per key before answering "unknown".
    #[arg(long, default_value_t = Limits::default().steps_per_key_max)]
    steps_max: u64,
}

/// Runs the checker; exit 0 if linearizable, 1 if not, 2 if it could not decide.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.history).with_context(|| format!("reading {}", args.history.display()))?;
    let model = match args.model.as_str() {
        "register" => Some(RegisterModel::register()),
        "kv" | "linearizable" => Some(RegisterModel::kv()),
        "session" | "causal" => None,
        other => anyhow::bail!("unknown model '{other}' (known: linearizable, kv, register, session, causal)"),
    };
    let events = ballot_check::parse_history(&text).with_context(|| format!("parsing {}", args.history.display()))?;
    let operations = ballot_check::pair_operations(&events)?;
    let keys: std::collections::BTreeSet<&str> = operations.iter().map(|op| op.key.as_str()).collect();
    println!("{} events, {} operations on {} keys", events.len(), operations.len(), keys.len());
    let Some(model) = model else {
        return check_sessions(&operations, args.model == "causal", args.html.as_deref());
    };
    match ballot_check::check(&model, &operations, Limits { steps_per_key_max: args.steps_max }) {
        Verdict::Linearizable => {
            println!("linearizable: true");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::NotLinearizable(violation) => {
            println!("key {}: no linearization", violation.key);
            println!("longest linearizable prefix ({} operations):", violation.longest_prefix.len());
            for op in violation.longest_prefix.iter().rev().take(10).rev() {
                println!("  process {:>3} [{}, {}] {}", op.process, op.call, show_time(op.ret), op.describe());
            }
            println!("could not be placed after it:");
            for op in &violation.unplaced {
                println!("  process {:>3} [{}, {}] {}", op.process, op.call, show_time(op.ret), op.describe());
            }
            if let Some(path) = &args.html {
                std::fs::write(path, ballot_check::html::render_timeline(&violation))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("timeline written to {}", path.display());
            }
            println!("linearizable: false");
            Ok(ExitCode::from(1))
        }
        Verdict::Unknown { key } => {
            println!("search limit reached on key {key} (raise --steps-max)");
            println!("linearizable: unknown");
            Ok(ExitCode::from(2))
        }
    }
}

/// Checks the session guarantees (and, for `causal`, the reads' values at their revisions);
/// exit 0 if they hold, 1 if not.
fn check_sessions(
    operations: &[ballot_check::Operation],
    causal: bool,
    html: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use ballot_check::session::{check_snapshots, Guarantee};
    let named = operations.iter().filter(|op| op.session.is_some() && op.revision.is_some()).count();
    let sessions: std::collections::BTreeSet<u64> = operations.iter().filter_map(|op| op.session).collect();
    println!("{named} operations name their session and revision, in {} sessions", sessions.len());
    if named == 0 {
        anyhow::bail!(
            "no operation names its session and revision: nothing to check (is this a causal workload's history?)"
        );
    }
    let mut violations = ballot_check::session::check_sessions(operations, &Guarantee::ALL);
    if causal {
        violations.extend(check_snapshots(operations));
    }
    let verdict = if causal { "causal" } else { "session guarantees" };
    if violations.is_empty() {
        println!("{verdict}: true");
        return Ok(ExitCode::SUCCESS);
    }
    let by_id: std::collections::HashMap<usize, &ballot_check::Operation> =
        operations.iter().map(|op| (op.id, op)).collect();
    for violation in violations.iter().take(20) {
        let name = violation.guarantee.map_or("snapshot", |guarantee| guarantee.name());
        println!("{name} broken: {}", violation.explanation);
        for id in [violation.earlier, violation.later] {
            if let Some(op) = by_id.get(&id) {
                println!("  process {:>3} [{}, {}] {}", op.process, op.call, show_time(op.ret), op.describe());
            }
        }
    }
    if violations.len() > 20 {
        println!("... and {} more", violations.len() - 20);
    }
    if let Some(path) = html {
        std::fs::write(path, ballot_check::html::render_session_violations(operations, &violations))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("timeline written to {}", path.display());
    }
    println!("{verdict}: false");
    Ok(ExitCode::from(1))
}

fn show_time(time: u64) -> String {
    if time == u64::MAX {
        "?".to_string()
    } else {
        time.to_string()
    }
}

//! `ballot check HISTORY.jsonl [--html FILE]`.

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
    /// The sequential model: `register` (read/write/cas) or `kv` (adds delete).
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
        "register" => RegisterModel::register(),
        "kv" => RegisterModel::kv(),
        other => anyhow::bail!("unknown model '{other}' (known: register, kv)"),
    };
    let events = ballot_check::parse_history(&text).with_context(|| format!("parsing {}", args.history.display()))?;
    let operations = ballot_check::pair_operations(&events)?;
    let keys: std::collections::BTreeSet<&str> = operations.iter().map(|op| op.key.as_str()).collect();
    println!("{} events, {} operations on {} keys", events.len(), operations.len(), keys.len());
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

fn show_time(time: u64) -> String {
    if time == u64::MAX {
        "?".to_string()
    } else {
        time.to_string()
    }
}

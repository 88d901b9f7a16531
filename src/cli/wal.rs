//! `ballot wal`: inspect (and, if asked, repair) a data directory's write-ahead log.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ballot_raft::{Entry, EntryKind, HardState};
use ballot_storage::{Batch, FsDisk, Wal, WalOptions};

/// `ballot wal …`
#[derive(clap::Subcommand)]
pub enum WalCommand {
    /// Open the log the way a starting member does and report what it holds.
    Check(CheckArgs),
    /// Append batches forever, printing each durable index (used by the crash tests).
    #[command(hide = true)]
    AppendLoop(AppendLoopArgs),
}

/// Arguments of `ballot wal check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The member's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Cut the log at the first damaged record, losing everything after it. Only when you
    /// accept that loss: the member may then hold less than it acknowledged, so restore it
    /// from a healthy member (or remove and re-add it) rather than let it vote on its own.
    #[arg(long)]
    repair: bool,
}

/// Arguments of the hidden `ballot wal append-loop`.
#[derive(clap::Args)]
pub struct AppendLoopArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Entries per batch (one fsync per batch).
    #[arg(long, default_value_t = 16)]
    batch: u64,
    /// Segment size in bytes (small values exercise segment rollover).
    #[arg(long, default_value_t = 64 * 1024)]
    segment_bytes: u64,
}

/// Runs a `ballot wal` command.
pub fn run(command: WalCommand) -> anyhow::Result<ExitCode> {
    match command {
        WalCommand::Check(args) => check(args),
        WalCommand::AppendLoop(args) => append_loop(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let disk = FsDisk::open(&args.data_dir, false)?;
    let options = WalOptions { repair: args.repair, ..WalOptions::default() };
    let (_, recovered) = match Wal::open(disk, options) {
        Ok(opened) => opened,
        Err(error) => {
            println!("{error}");
            println!("wal: corrupt");
            return Ok(ExitCode::from(1));
        }
    };
    for note in &recovered.notes {
        println!("note: {note}");
    }
    let snapshot = recovered.snapshot.as_ref().map_or(0, |s| s.meta.index);
    let first = recovered.entries.first().map_or(snapshot + 1, |e| e.index);
    let last = recovered.entries.last().map_or(snapshot, |e| e.index);
    let HardState { term, vote, commit } = recovered.hard_state;
    println!("snapshot index {snapshot}; entries {first}..={last} ({} entries)", recovered.entries.len());
    println!("hard state: term {term}, vote {vote}, commit {commit}");
    println!("wal: ok");
    Ok(ExitCode::SUCCESS)
}

fn append_loop(args: AppendLoopArgs) -> anyhow::Result<ExitCode> {
    let disk = FsDisk::open(&args.data_dir, true)?;
    let options = WalOptions { segment_bytes: args.segment_bytes, ..WalOptions::default() };
    let (mut wal, recovered) = Wal::open(disk, options)?;
    let mut next = recovered.entries.last().map_or(1, |e| e.index + 1);
    let stdout = std::io::stdout();
    loop {
        let batch: Vec<Entry> = (next..next + args.batch)
            .map(|index| Entry {
                stamp: 0,
                term: 1,
                index,
                kind: EntryKind::Normal,
                data: format!("entry-{index}").into_bytes(),
            })
            .collect();
        let durable = wal.append(Batch { entries: &batch, ..Batch::default() })?;
        let (last, _) = durable.last.expect("a batch with entries");
        // Printed only after fsync returned: everything up to `last` must survive a kill -9.
        writeln!(stdout.lock(), "durable {last}").context("writing to stdout")?;
        next = last + 1;
    }
}

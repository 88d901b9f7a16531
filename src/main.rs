//! The `ballot` command line.

mod cli;

use clap::{Parser, Subcommand};

/// ballot: a coordination service on Raft, built to be proven correct.
#[derive(Parser)]
#[command(name = "ballot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run deterministic simulations of a faulty cluster and check every run.
    Sim(cli::sim::SimArgs),
    /// Check a history (JSON Lines) for linearizability.
    Check(cli::check::CheckArgs),
    /// Inspect or repair a data directory's write-ahead log.
    #[command(subcommand)]
    Wal(cli::wal::WalCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => cli::sim::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Wal(command) => cli::wal::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

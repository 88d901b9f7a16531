//! The `ballot` command line.

mod cli;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ballot: a coordination service on Raft, built to be proven correct.
#[derive(Parser)]
#[command(name = "ballot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    endpoints: cli::connect::Endpoints,
}

#[derive(Subcommand)]
enum Command {
    /// Run one member (with no subcommand at all: a single-member cluster on 127.0.0.1:2379).
    Serve(Box<cli::serve::ServeArgs>),
    /// Run a local cluster of child processes on loopback, to try ballot out.
    Dev(cli::dev::DevArgs),
    /// Load-test ballot (or etcd) over the etcd v3 API and report throughput and latency.
    Bench(cli::bench::BenchArgs),
    #[command(flatten)]
    Client(cli::client::ClientCommand),
    /// Run deterministic simulations of a faulty cluster and check every run.
    Sim(cli::sim::SimArgs),
    /// Jepsen-style fault testing of real processes: kill, pause, partition, replace members
    /// under a workload, then check the history and the members' convergence.
    Torture(cli::torture::TortureArgs),
    /// Check a history (JSON Lines) for linearizability.
    Check(cli::check::CheckArgs),
    /// Explore every state of a protocol within small bounds (Paxos), checking its invariants.
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Inspect or repair a data directory's write-ahead log.
    #[command(subcommand)]
    Wal(cli::wal::WalCommand),
    /// A gossip agent for every machine of a fleet (SWIM with Lifeguard; serf's job), with
    /// service registration into ballot; its subcommands talk to a running agent.
    Agent(cli::agent::AgentArgs),
    /// Look at or change the znode tree through a member's ZooKeeper port (ls, get, stat, …).
    Zk(cli::zk::ZkArgs),
}

/// A reader that stops early (`ballot get … | head -1`) closes the pipe: end quietly, as a
/// command killed by SIGPIPE does (Rust ignores the signal, so `println!` panics instead).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        None => cli::serve::run(cli::serve::ServeArgs::default()),
        Some(Command::Serve(args)) => cli::serve::run(*args),
        Some(Command::Dev(args)) => cli::dev::run(args),
        Some(Command::Bench(args)) => cli::bench::run(cli.endpoints, args),
        Some(Command::Client(command)) => cli::client::run(cli.endpoints, command),
        Some(Command::Sim(args)) => cli::sim::run(args),
        Some(Command::Torture(args)) => cli::torture::run(cli.endpoints, args),
        Some(Command::Check(args)) => cli::check::run(args),
        Some(Command::Model(command)) => cli::model::run(command),
        Some(Command::Wal(command)) => cli::wal::run(command),
        Some(Command::Zk(args)) => cli::zk::run(args),
        Some(Command::Agent(args)) => cli::agent::run(cli.endpoints, args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

//! Subcommands.

pub mod agent;
pub mod bench;
pub mod check;
pub mod client;
pub mod connect;
pub mod dev;
pub mod model;
pub mod ops;
pub mod serve;
pub mod sim;
pub mod sim_gossip;
pub mod torture;
pub mod txn;
pub mod wal;
pub mod zk;

/// Structured logs to stderr, filtered by `RUST_LOG` (default: info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

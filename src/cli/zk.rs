//! `ballot zk`: look at (and change) the znode tree through the ZooKeeper front end, the way an
//! operator uses zkCli: `ls`, `get`, `stat`, `create`, `set`, `delete`.

use anyhow::Context;
use ballot_server::zk::client::{Client, ZkError};
use ballot_zk::records::Stat;
use clap::{Args, Subcommand};

/// Flags of `ballot zk`.
#[derive(Args, Debug)]
pub struct ZkArgs {
    /// A member's ZooKeeper address (`ballot dev` serves 127.0.0.1:2181, 22181, 32181).
    #[arg(long, default_value = "127.0.0.1:2181", env = "BALLOT_ZK_SERVER")]
    pub server: String,
    /// What to do.
    #[command(subcommand)]
    pub command: ZkCommand,
}

/// The operations.
#[derive(Subcommand, Debug)]
pub enum ZkCommand {
    /// A node's children, sorted.
    Ls {
        /// The node.
        path: String,
    },
    /// A node's data (and, with --stat, its stat).
    Get {
        /// The node.
        path: String,
        /// Print the stat after the data.
        #[arg(long, short)]
        stat: bool,
    },
    /// A node's stat.
    Stat {
        /// The node.
        path: String,
    },
    /// Creates a node.
    Create {
        /// The node (the prefix of its name with --sequential).
        path: String,
        /// Its data.
        #[arg(default_value = "")]
        data: String,
        /// Sequential: a 10-digit counter is appended to the name.
        #[arg(long, short)]
        sequential: bool,
        /// Container: deleted once empty after having had a child.
        #[arg(long, short)]
        container: bool,
    },
    /// Sets a node's data.
    Set {
        /// The node.
        path: String,
        /// Its new data.
        data: String,
        /// The version it must have (-1: any).
        #[arg(long, short, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
    /// Deletes a node.
    Delete {
        /// The node.
        path: String,
        /// The version it must have (-1: any).
        #[arg(long, short, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
}

/// Prints a stat as zkCli does.
fn print_stat(stat: &Stat) {
    println!("cZxid = 0x{:x}", stat.czxid);
    println!("ctime = {}", stat.ctime);
    println!("mZxid = 0x{:x}", stat.mzxid);
    println!("mtime = {}", stat.mtime);
    println!("pZxid = 0x{:x}", stat.pzxid);
    println!("cversion = {}", stat.cversion);
    println!("dataVersion = {}", stat.version);
    println!("aclVersion = {}", stat.aversion);
    println!("ephemeralOwner = 0x{:x}", stat.ephemeral_owner);
    println!("dataLength = {}", stat.data_length);
    println!("numChildren = {}", stat.num_children);
}

/// Runs one operation in a session of its own.
pub fn run(args: ZkArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut client =
        Client::connect(&args.server, 10_000).with_context(|| format!("connecting to ZooKeeper at {}", args.server))?;
    let result: Result<(), ZkError> = (|| {
        match &args.command {
            ZkCommand::Ls { path } => {
                let (mut children, _) = client.children(path, false)?;
                children.sort();
                println!("[{}]", children.join(", "));
            }
            ZkCommand::Get { path, stat } => {
                let (data, node) = client.get_data(path, false)?;
                match data {
                    Some(data) => println!("{}", String::from_utf8_lossy(&data)),
                    None => println!("null"),
                }
                if *stat {
                    print_stat(&node);
                }
            }
            ZkCommand::Stat { path } => match client.exists(path, false)? {
                Some(stat) => print_stat(&stat),
                None => return Err(ZkError::Code(ballot_zk::codes::ErrorCode::NoNode)),
            },
            ZkCommand::Create { path, data, sequential, container } => {
                let flags = if *container { 4 } else { i32::from(*sequential) * 2 };
                println!("Created {}", client.create(path, data.as_bytes(), flags)?);
            }
            ZkCommand::Set { path, data, version } => {
                client.set_data(path, data.as_bytes(), *version)?;
            }
            ZkCommand::Delete { path, version } => client.delete(path, *version)?,
        }
        Ok(())
    })();
    let _ = client.close();
    match result {
        Ok(()) => Ok(std::process::ExitCode::SUCCESS),
        Err(ZkError::Code(code)) => {
            eprintln!("{code:?}: {}", args_path(&args.command));
            Ok(std::process::ExitCode::from(1))
        }
        Err(error) => Err(error.into()),
    }
}

fn args_path(command: &ZkCommand) -> &str {
    match command {
        ZkCommand::Ls { path }
        | ZkCommand::Get { path, .. }
        | ZkCommand::Stat { path }
        | ZkCommand::Create { path, .. }
        | ZkCommand::Set { path, .. }
        | ZkCommand::Delete { path, .. } => path,
    }
}

//! The CPU time that the servers behind the endpoints use during a benchmark, read from /proc so
//! that the same figure is taken for ballot and for etcd: the processes on this machine that
//! listen on the endpoints' ports (found through their sockets' inodes), and their user plus
//! system time, all threads included.

use std::collections::BTreeSet;
use std::fs;

/// The server processes and their CPU time when the measurement began.
pub struct ServerCpu {
    pids: Vec<u32>,
    started_ticks: u64,
}

impl ServerCpu {
    /// Starts measuring the processes listening on the endpoints' ports; `None` if none is on
    /// this machine (or /proc cannot tell).
    pub fn start(endpoints: &str) -> Option<ServerCpu> {
        let ports: BTreeSet<u16> = endpoints.split(',').filter_map(endpoint_port).collect();
        let pids = listening_pids(&ports);
        if pids.is_empty() {
            return None;
        }
        let started_ticks = pids.iter().filter_map(|&pid| cpu_ticks(pid)).sum();
        Some(ServerCpu { pids, started_ticks })
    }

    /// How many processes are measured.
    pub fn processes(&self) -> usize {
        self.pids.len()
    }

    /// CPU seconds the processes used since [`ServerCpu::start`] (a process that exited no
    /// longer counts, so the figure can only be low).
    pub fn seconds(&self) -> f64 {
        let now: u64 = self.pids.iter().filter_map(|&pid| cpu_ticks(pid)).sum();
        now.saturating_sub(self.started_ticks) as f64 / ticks_per_second()
    }
}

/// CPU seconds this process has used so far.
pub fn own_seconds() -> f64 {
    cpu_ticks(std::process::id()).unwrap_or(0) as f64 / ticks_per_second()
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// The port of `host:port`, `http://host:port` or `https://host:port` when the host is this
/// machine.
fn endpoint_port(endpoint: &str) -> Option<u16> {
    let address = endpoint.trim();
    let address = address.strip_prefix("http://").or_else(|| address.strip_prefix("https://")).unwrap_or(address);
    let (host, port) = address.rsplit_once(':')?;
    let local = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    local.then(|| port.parse().ok()).flatten()
}

/// The processes holding a listening TCP socket on one of `ports`.
fn listening_pids(ports: &BTreeSet<u16>) -> Vec<u32> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, ports));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut pids = Vec::new();
    for process in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .ok()
                .and_then(|target| socket_inode(&target.to_string_lossy()))
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// The inodes of the listening sockets on `ports` in a /proc/net/tcp table.
fn listening_inodes(table: &str, ports: &BTreeSet<u16>) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(fields.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            (*fields.get(3)? == LISTEN && ports.contains(&port)).then(|| fields.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// User plus system time of a process in clock ticks (fields 14 and 15 of /proc/PID/stat,
/// counted after the command name, which may itself hold spaces and parentheses).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_on_this_machine_give_their_ports() {
        assert_eq!(endpoint_port("127.0.0.1:2379"), Some(2379));
        assert_eq!(endpoint_port("https://127.0.0.2:22379"), Some(22379));
        assert_eq!(endpoint_port(" localhost:32379"), Some(32379));
        assert_eq!(endpoint_port("10.0.0.1:2379"), None);
        assert_eq!(endpoint_port("127.0.0.1"), None);
    }

    #[test]
    fn listening_sockets_are_picked_from_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n   \
            1: 0100007F:094B 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1\n   \
            2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, &BTreeSet::from([2379])), vec![4242]);
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn this_process_is_found_by_its_listener_and_its_cpu_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cpu = ServerCpu::start(&format!("127.0.0.1:{port}")).expect("the listener's process");
        assert_eq!(cpu.pids, vec![std::process::id()]);
        // Spin until the kernel has counted some CPU time (bounded: a loaded machine may give this
        // thread little of it).
        let spin = std::time::Instant::now();
        while cpu.seconds() < 0.05 && spin.elapsed() < std::time::Duration::from_secs(10) {
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        assert!(cpu.seconds() >= 0.05, "spinning counted: {} s", cpu.seconds());
    }
}

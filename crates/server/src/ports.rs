//! Picking free loopback ports for members that a test or `ballot torture` starts and restarts.
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range every
//! outgoing connection takes its local port from. A member killed and restarted on its old port
//! then races every client connection on the machine for it, and sometimes loses ("Address
//! already in use"). Ports below the ephemeral range are never handed out implicitly, so only
//! another picker could take one, and pickers start at random places in a wide range.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::TcpListener;

/// Lowest port considered (clear of the well-known and registered services most machines run).
const LOWEST: u16 = 10_000;

/// The kernel's ephemeral range where it can be read, else Linux's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|part| part.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// `n` distinct ports free on 127.0.0.1, below the ephemeral range when there is room there
/// (else above it), each checked by binding it; all are released on return.
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let (ephemeral_low, ephemeral_high) = ephemeral_range();
    let (low, high) = if ephemeral_low > LOWEST + 1_000 {
        (LOWEST, ephemeral_low - 1)
    } else {
        (ephemeral_high.saturating_add(1).max(LOWEST), u16::MAX)
    };
    let span = u32::from(high - low) + 1;
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    let mut held = Vec::with_capacity(n);
    for step in 0..span {
        if held.len() == n {
            break;
        }
        let port = low + ((start + step) % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    if held.len() < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("only {} of {n} loopback ports free in {low}..={high}", held.len()),
        ));
    }
    held.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let (ephemeral_low, ephemeral_high) = ephemeral_range();
        let ports = free_loopback_ports(8).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
        for port in ports {
            assert!(!(ephemeral_low..=ephemeral_high).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}

//! The clock the Raft core measures the leader lease on (see `ballot_raft::Monotonic`).
//!
//! It must keep running whenever real time passes: while the process is stopped (SIGSTOP, a
//! debugger, a long page-in) and while the machine is suspended, because the other members'
//! election timers run on meanwhile. Linux's CLOCK_MONOTONIC, behind std's `Instant`, stops
//! during suspend; CLOCK_BOOTTIME does not, so the lease is read from CLOCK_BOOTTIME where the
//! kernel has it and from `Instant` elsewhere.

use ballot_raft::Monotonic;

/// A reading of the lease clock, taken now.
pub fn now() -> Monotonic {
    Monotonic::from_nanos(read_nanos())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_nanos() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (time.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(time.tv_nsec as u64)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_nanos() -> u64 {
    use std::sync::OnceLock;
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_back_and_follow_real_time() {
        let first = now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = now();
        assert!(second >= first);
        let elapsed = second.nanos() - first.nanos();
        assert!((20_000_000..2_000_000_000).contains(&elapsed), "{elapsed} ns for a 20 ms sleep");
    }
}

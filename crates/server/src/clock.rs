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
    #[cfg(feature = "fault-injection")]
    return Monotonic::from_nanos(rate_fault::apply(read_nanos()));
    #[cfg(not(feature = "fault-injection"))]
    Monotonic::from_nanos(read_nanos())
}

/// The clock the Raft loop schedules its ticks on: `Instant` (CLOCK_MONOTONIC); in builds with
/// `--features fault-injection`, the lease clock, so that a clock-rate fault slows a member's
/// ticks and its lease alike, as a slow oscillator would.
pub fn tick_instant() -> std::time::Instant {
    #[cfg(feature = "fault-injection")]
    {
        use std::sync::OnceLock;
        static BASE: OnceLock<(std::time::Instant, u64)> = OnceLock::new();
        let (instant, nanos) = *BASE.get_or_init(|| (std::time::Instant::now(), now().nanos()));
        instant + std::time::Duration::from_nanos(now().nanos().saturating_sub(nanos))
    }
    #[cfg(not(feature = "fault-injection"))]
    std::time::Instant::now()
}

/// Test-only: a lease clock that runs at a rate read from a file, to break the lease's one
/// assumption (clock rates differ by less than its margin) on purpose. libfaketime cannot
/// reach this clock (it is read with a system call, not through libc), so `ballot torture`'s
/// clock nemesis writes the rate (`0.05`: a twentieth of real speed; `1`: normal) into the file
/// named by `BALLOT_FAULT_LEASE_CLOCK_FILE`. Only builds with `--features fault-injection`
/// have it.
#[cfg(feature = "fault-injection")]
mod rate_fault {
    use std::sync::Mutex;

    /// The file is read again at most this often (ns of real time).
    const REREAD_NS: u64 = 100_000_000;

    struct State {
        /// Real and faked readings at the last call, the rate since, and when the file was read.
        real: u64,
        faked: u64,
        rate: f64,
        read_at: u64,
    }

    static STATE: Mutex<Option<State>> = Mutex::new(None);

    /// The faked reading for real reading `real`: it advances at the file's rate, never back.
    pub fn apply(real: u64) -> u64 {
        let Some(path) = std::env::var_os("BALLOT_FAULT_LEASE_CLOCK_FILE") else { return real };
        let mut state = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = state.get_or_insert(State { real, faked: real, rate: 1.0, read_at: 0 });
        let elapsed = real.saturating_sub(state.real);
        state.faked += (elapsed as f64 * state.rate) as u64;
        state.real = real;
        if real.saturating_sub(state.read_at) >= REREAD_NS {
            state.read_at = real;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            state.rate = text.trim().parse::<f64>().ok().filter(|rate| (0.0..=10.0).contains(rate)).unwrap_or(1.0);
        }
        state.faked
    }
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

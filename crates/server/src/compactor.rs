//! Automatic compaction of the key-value history, as etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention`. Only the leader compacts (through the log, like any
//! `Compact` request); a member that loses leadership forgets its samples and starts over when
//! it leads again, so a leader change never compacts more than the policy keeps.
//!
//! - `periodic` with a retention (`"72h"`, `"30m"`, `"10s"`, or a bare number of hours): keeps
//!   at least that much time of history. Every tenth of the retention the leader notes the
//!   current revision; each time, it compacts to the newest revision noted at least a retention
//!   ago.
//! - `revision` with a count: every five minutes, compacts to the current revision minus the
//!   count, keeping that many revisions of history.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often the revision policy looks (etcd's revision compactor runs every 5 minutes).
const REVISION_CHECK: Duration = Duration::from_secs(300);

/// The policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// No automatic compaction (a retention of 0, etcd's default).
    Off,
    /// Keep at least this much time of history.
    Periodic(Duration),
    /// Keep this many revisions of history.
    Revision(i64),
}

impl AutoCompaction {
    /// Parses etcd's flag pair. Errors name the flag and the value.
    pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let retention = retention.trim();
        match mode {
            "periodic" => {
                let period = parse_period(retention).ok_or_else(|| {
                    format!("--auto-compaction-retention {retention:?}: not a duration (e.g. 1h, 30m, 10s, or hours)")
                })?;
                Ok(if period.is_zero() { AutoCompaction::Off } else { AutoCompaction::Periodic(period) })
            }
            "revision" => match retention.parse::<i64>() {
                Ok(0) => Ok(AutoCompaction::Off),
                Ok(count) if count > 0 => Ok(AutoCompaction::Revision(count)),
                _ => Err(format!("--auto-compaction-retention {retention:?}: not a revision count")),
            },
            other => Err(format!("--auto-compaction-mode {other:?}: expected periodic or revision")),
        }
    }
}

/// A bare number is hours (etcd's original meaning); otherwise segments like `1h30m`, `10s`,
/// `500ms`.
pub(crate) fn parse_period(text: &str) -> Option<Duration> {
    if let Ok(hours) = text.parse::<u64>() {
        return hours.checked_mul(3600).map(Duration::from_secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').filter(|&n| n > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(value * seconds).ok()?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The leader's compaction clock.
#[derive(Debug)]
pub struct Compactor {
    policy: AutoCompaction,
    /// (when, revision) noted by the periodic policy, oldest first.
    samples: VecDeque<(Instant, i64)>,
    next_check: Option<Instant>,
    last_target: i64,
}

impl Compactor {
    /// A compactor following `policy`.
    pub fn new(policy: AutoCompaction) -> Compactor {
        Compactor { policy, samples: VecDeque::new(), next_check: None, last_target: 0 }
    }

    /// This member stopped leading: start over when it leads again.
    pub fn pause(&mut self) {
        self.samples.clear();
        self.next_check = None;
    }

    /// Called by the leader on each tick with the store's revision; returns the revision to
    /// compact to when one is due.
    pub fn poll(&mut self, now: Instant, revision: i64) -> Option<i64> {
        let interval = match self.policy {
            AutoCompaction::Off => return None,
            AutoCompaction::Periodic(retention) => (retention / 10).max(Duration::from_millis(100)),
            AutoCompaction::Revision(_) => REVISION_CHECK,
        };
        let due = *self.next_check.get_or_insert(now);
        if now < due {
            return None;
        }
        self.next_check = Some(now + interval);
        let target = match self.policy {
            AutoCompaction::Off => return None,
            AutoCompaction::Periodic(retention) => {
                self.samples.push_back((now, revision));
                let cutoff = now.checked_sub(retention)?;
                let mut target = None;
                while let Some(&(at, noted)) = self.samples.front() {
                    if at > cutoff {
                        break;
                    }
                    target = Some(noted);
                    self.samples.pop_front();
                }
                // Keep the newest old-enough sample as the base for later rounds.
                if let Some(noted) = target {
                    self.samples.push_front((cutoff, noted));
                }
                target?
            }
            AutoCompaction::Revision(keep) => revision - keep,
        };
        (target > self.last_target && target > 1).then(|| {
            self.last_target = target;
            target
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_etcd_reads_them() {
        assert_eq!(AutoCompaction::parse("periodic", "0"), Ok(AutoCompaction::Off));
        assert_eq!(AutoCompaction::parse("periodic", "1"), Ok(AutoCompaction::Periodic(Duration::from_secs(3600))));
        assert_eq!(AutoCompaction::parse("periodic", "1h30m"), Ok(AutoCompaction::Periodic(Duration::from_secs(5400))));
        assert_eq!(AutoCompaction::parse("periodic", "2s"), Ok(AutoCompaction::Periodic(Duration::from_secs(2))));
        assert_eq!(AutoCompaction::parse("periodic", "1.5m"), Ok(AutoCompaction::Periodic(Duration::from_secs(90))));
        assert_eq!(AutoCompaction::parse("revision", "1000"), Ok(AutoCompaction::Revision(1000)));
        assert!(AutoCompaction::parse("periodic", "soon").unwrap_err().contains("not a duration"));
        assert!(AutoCompaction::parse("periodic", "5x").is_err());
        assert!(AutoCompaction::parse("revision", "-3").unwrap_err().contains("revision count"));
        assert!(AutoCompaction::parse("hourly", "1").unwrap_err().contains("periodic or revision"));
    }

    #[test]
    fn periodic_keeps_at_least_the_retention_of_history() {
        let mut compactor = Compactor::new(AutoCompaction::Periodic(Duration::from_secs(10)));
        let start = Instant::now();
        let mut compacted = Vec::new();
        // One revision per second for a minute, polled every 100 ms.
        for tenth in 0..600u64 {
            let now = start + Duration::from_millis(tenth * 100);
            let revision = 1 + (tenth / 10) as i64;
            if let Some(target) = compactor.poll(now, revision) {
                // The target was current at least 10 s ago.
                assert!(target <= revision - 10, "at {tenth}: compacted to {target} at revision {revision}");
                compacted.push(target);
            }
        }
        assert!(compacted.windows(2).all(|w| w[0] < w[1]), "{compacted:?}");
        assert!(*compacted.last().unwrap() >= 48, "it kept up: {compacted:?}");
        assert!(compacted.len() >= 40, "about once a second: {}", compacted.len());
    }

    #[test]
    fn revision_mode_keeps_the_count_and_a_paused_compactor_starts_over() {
        let mut compactor = Compactor::new(AutoCompaction::Revision(100));
        let start = Instant::now();
        assert_eq!(compactor.poll(start, 50), None, "nothing old enough");
        assert_eq!(compactor.poll(start + Duration::from_secs(1), 500), None, "not due yet");
        assert_eq!(compactor.poll(start + REVISION_CHECK, 500), Some(400));
        compactor.pause();
        let later = start + REVISION_CHECK * 2;
        assert_eq!(compactor.poll(later, 450), None, "never back below the last target");
        assert_eq!(compactor.poll(later + REVISION_CHECK, 900), Some(800));
        assert_eq!(Compactor::new(AutoCompaction::Off).poll(later, 900), None);
    }
}

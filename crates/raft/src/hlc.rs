//! A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014) for stamping log
//! entries. A stamp packs the wall clock in milliseconds (the high 48 bits) with a logical
//! counter (the low 16): the leader's next stamp is the larger of its wall clock and one past
//! the last stamp it knows of, so stamps strictly increase along the log even when a wall clock
//! steps back or a new leader's clock is behind the old one's, and they stay as close to real
//! time as the clocks allow. The core reads no clock: the wall clock arrives as an input
//! ([`crate::RawNode::observe_wall_clock`]); with none (0), stamps are purely logical.

/// Bits of a stamp that hold the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// The wall-clock part of a stamp, in milliseconds since the Unix epoch.
pub fn physical_ms(stamp: u64) -> u64 {
    stamp >> LOGICAL_BITS
}

/// The logical part of a stamp.
pub fn logical(stamp: u64) -> u64 {
    stamp & ((1 << LOGICAL_BITS) - 1)
}

/// The smallest stamp at wall-clock time `ms`.
pub fn stamp_of_ms(ms: u64) -> u64 {
    ms << LOGICAL_BITS
}

/// One member's clock: the last stamp it issued or saw in its log, and its wall clock's last
/// reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hlc {
    last: u64,
    wall_ms: u64,
}

impl Hlc {
    /// Takes a reading of the wall clock (milliseconds since the epoch; 0: none).
    pub fn observe_wall(&mut self, ms: u64) {
        self.wall_ms = ms;
    }

    /// The wall clock's last reading.
    pub fn wall_ms(&self) -> u64 {
        self.wall_ms
    }

    /// Takes in a stamp found in the log (another leader's): later stamps come after it.
    pub fn witness(&mut self, stamp: u64) {
        self.last = self.last.max(stamp);
    }

    /// The last stamp issued or witnessed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// How far the next stamp would be ahead of the wall clock, in milliseconds (0 when the
    /// wall clock leads, or is unknown).
    pub fn ahead_ms(&self) -> u64 {
        if self.wall_ms == 0 {
            return 0;
        }
        physical_ms(self.last + 1).saturating_sub(self.wall_ms)
    }

    /// Issues the next stamp (and remembers it as the last).
    pub fn issue(&mut self) -> u64 {
        self.last = (self.last + 1).max(stamp_of_ms(self.wall_ms));
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_follow_the_wall_clock_and_never_go_back() {
        let mut clock = Hlc::default();
        clock.observe_wall(1_000);
        let first = clock.issue();
        assert_eq!((physical_ms(first), logical(first)), (1_000, 0));
        // Same millisecond: the logical counter moves.
        let second = clock.issue();
        assert_eq!((physical_ms(second), logical(second)), (1_000, 1));
        // The wall clock steps back: stamps still increase, ahead of the wall clock.
        clock.observe_wall(900);
        let third = clock.issue();
        assert!(third > second);
        assert_eq!(clock.ahead_ms(), 100);
        // It catches up: physical time again.
        clock.observe_wall(1_200);
        assert_eq!(clock.issue(), stamp_of_ms(1_200));
        assert_eq!(clock.ahead_ms(), 0);
    }

    #[test]
    fn a_new_leader_behind_the_old_ones_clock_stamps_after_its_entries() {
        let mut old = Hlc::default();
        old.observe_wall(5_000);
        let stamp = old.issue();
        let mut new = Hlc::default();
        new.observe_wall(4_000);
        new.witness(stamp);
        assert!(new.issue() > stamp);
        assert_eq!(new.ahead_ms(), 1_000);
    }

    #[test]
    fn without_a_wall_clock_stamps_are_logical() {
        let mut clock = Hlc::default();
        assert_eq!((clock.issue(), clock.issue()), (1, 2));
        assert_eq!(clock.ahead_ms(), 0);
    }
}

//! The phi accrual failure detector (Hayashibara et al., 2004), as Cassandra and Akka use it:
//! instead of a yes/no verdict after a fixed timeout, a suspicion level φ that grows the longer
//! a peer stays silent, relative to how regularly it has been heard from. φ = −log10(P(a
//! heartbeat comes later than now)), with the inter-arrival times modelled as a normal
//! distribution over a window of recent samples; φ = 8 means a one-in-10⁸ chance that a
//! heartbeat this late is still coming from a live peer.

use std::collections::VecDeque;

/// The detector's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhiConfig {
    /// Suspect once φ exceeds this (8, as Cassandra and Akka).
    pub threshold: f64,
    /// Inter-arrival samples kept.
    pub window: usize,
    /// Floor of the standard deviation, ms: a peer heard at perfectly regular intervals would
    /// otherwise be suspected the moment one arrival is a little late.
    pub min_std_dev_ms: f64,
    /// Silence added to the mean that is still normal (a GC pause, a burst), ms.
    pub acceptable_pause_ms: f64,
    /// Samples assumed before the first real one: the expected interval, ms.
    pub first_interval_ms: f64,
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            threshold: 8.0,
            window: 1000,
            min_std_dev_ms: 100.0,
            acceptable_pause_ms: 0.0,
            first_interval_ms: 1000.0,
        }
    }
}

/// One peer's arrivals.
#[derive(Clone, Debug)]
pub struct PhiDetector {
    config: PhiConfig,
    intervals: VecDeque<f64>,
    sum: f64,
    sum_squares: f64,
    last_ms: Option<u64>,
}

impl PhiDetector {
    /// A detector that has heard nothing yet.
    pub fn new(config: PhiConfig) -> PhiDetector {
        PhiDetector { config, intervals: VecDeque::new(), sum: 0.0, sum_squares: 0.0, last_ms: None }
    }

    /// The peer was heard from at `now_ms` (an ack, a heartbeat).
    pub fn heard(&mut self, now_ms: u64) {
        match self.last_ms {
            None => {
                // Two samples around the expected interval give a mean and a spread to start.
                let first = self.config.first_interval_ms;
                let spread = first / 4.0;
                self.push(first - spread);
                self.push(first + spread);
            }
            Some(last) if now_ms > last => self.push((now_ms - last) as f64),
            Some(_) => {}
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |last| last.max(now_ms)));
    }

    /// Takes in one interval directly (a probe's round trip, when the detector judges how long
    /// an answer may take rather than how long a silence may last).
    pub fn sample(&mut self, interval_ms: f64) {
        self.push(interval_ms);
    }

    /// Samples taken in so far (within the window).
    pub fn samples(&self) -> usize {
        self.intervals.len()
    }

    fn push(&mut self, interval: f64) {
        if self.intervals.len() == self.config.window.max(1) {
            if let Some(old) = self.intervals.pop_front() {
                self.sum -= old;
                self.sum_squares -= old * old;
            }
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        self.sum_squares += interval * interval;
    }

    /// The suspicion level at `now_ms`: 0 right after an arrival, growing with the silence;
    /// 0 for a peer never heard from (nothing to judge yet).
    pub fn phi(&self, now_ms: u64) -> f64 {
        let Some(last) = self.last_ms else { return 0.0 };
        self.phi_after(now_ms.saturating_sub(last) as f64)
    }

    /// The suspicion level after `elapsed_ms` of waiting, judged against the samples (0 with
    /// none).
    pub fn phi_after(&self, elapsed_ms: f64) -> f64 {
        if self.intervals.is_empty() {
            return 0.0;
        }
        let n = self.intervals.len() as f64;
        let mean = self.sum / n + self.config.acceptable_pause_ms;
        let variance = (self.sum_squares / n - (self.sum / n).powi(2)).max(0.0);
        let std_dev = variance.sqrt().max(self.config.min_std_dev_ms);
        phi_normal(elapsed_ms, mean, std_dev)
    }

    /// Whether the peer is suspected at `now_ms`.
    pub fn suspects(&self, now_ms: u64) -> bool {
        self.phi(now_ms) > self.config.threshold
    }
}

/// −log10 of the probability that a normal(mean, std_dev) variable exceeds `elapsed`, with the
/// logistic approximation of the normal CDF that Akka uses (accurate to about 10⁻⁴, and free
/// of the cancellation that 1 − CDF suffers in the far tail).
fn phi_normal(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (elapsed - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(every_ms: u64, count: u64) -> PhiDetector {
        let mut detector = PhiDetector::new(PhiConfig { min_std_dev_ms: 10.0, ..PhiConfig::default() });
        for i in 0..count {
            detector.heard(i * every_ms);
        }
        detector
    }

    #[test]
    fn phi_grows_with_silence_and_crosses_the_threshold() {
        let detector = regular(1000, 100);
        let last = 99 * 1000;
        let phis: Vec<f64> = [0, 500, 1000, 1100, 1500, 3000].iter().map(|after| detector.phi(last + after)).collect();
        assert!(phis.windows(2).all(|pair| pair[0] <= pair[1]), "{phis:?}");
        assert!(!detector.suspects(last + 1000), "{phis:?}");
        assert!(detector.suspects(last + 3000), "{phis:?}");
    }

    #[test]
    fn a_jittery_peer_is_given_more_time_than_a_regular_one() {
        let steady = regular(1000, 200);
        let mut jittery = PhiDetector::new(PhiConfig { min_std_dev_ms: 10.0, ..PhiConfig::default() });
        let mut now = 0;
        for i in 0..200u64 {
            now += if i % 2 == 0 { 600 } else { 1400 };
            jittery.heard(now);
        }
        let silence = 1800;
        assert!(steady.suspects(199 * 1000 + silence));
        assert!(!jittery.suspects(now + silence), "phi {}", jittery.phi(now + silence));
    }

    #[test]
    fn a_peer_never_heard_from_is_not_judged() {
        let detector = PhiDetector::new(PhiConfig::default());
        assert_eq!(detector.phi(1_000_000), 0.0);
    }
}

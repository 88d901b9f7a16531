//! The run's faults as intervals and its notable instants (leader changes, membership
//! changes, the final heal), kept beside the trace for `ballot sim --report`'s plots. Recording
//! draws no randomness and changes nothing else, so runs stay identical with or without it.

use ballot_check::report::{Fault, Mark};

/// Faults and marks so far.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    faults: Vec<Fault>,
    marks: Vec<Mark>,
    /// The network fault in force: since when, and what.
    network: Option<(u64, String)>,
}

impl Timeline {
    /// The network's fault changes at `now`: the one in force ends, `what` (if any) begins.
    pub fn network(&mut self, now: u64, what: Option<String>) {
        if let Some((start_ns, what)) = self.network.take() {
            self.faults.push(Fault { start_ns, end_ns: now, what });
        }
        self.network = what.map(|what| (now, what));
    }

    /// A fault held from `start_ns` to `end_ns`.
    pub fn fault(&mut self, start_ns: u64, end_ns: u64, what: String) {
        self.faults.push(Fault { start_ns, end_ns, what });
    }

    /// Something worth marking happened at `at_ns`.
    pub fn mark(&mut self, at_ns: u64, what: String) {
        self.marks.push(Mark { at_ns, what });
    }

    /// Every fault ends at `now` (the final heal): the network's, and crashes and pauses
    /// planned to last longer.
    pub fn heal(&mut self, now: u64) {
        self.network(now, None);
        for fault in &mut self.faults {
            fault.end_ns = fault.end_ns.min(now);
        }
        self.mark(now, "heal everything".to_string());
    }

    /// Everything recorded, any fault still in force ending at `now`.
    pub fn finish(mut self, now: u64) -> (Vec<Fault>, Vec<Mark>) {
        self.network(now, None);
        (self.faults, self.marks)
    }
}

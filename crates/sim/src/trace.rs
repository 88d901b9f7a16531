//! The run's trace: every processed event is hashed (so two runs of a seed can be compared
//! byte for byte) and, when asked, kept as text.

use std::fmt::{self, Write};

/// FNV-1a hasher fed through `fmt::Write`, so events are hashed without allocating.
#[derive(Debug, Clone)]
struct FnvWriter(u64);

impl Write for FnvWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            self.0 ^= byte as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        Ok(())
    }
}

/// Hash and optional text of everything that happened.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: FnvWriter,
    lines: Option<Vec<String>>,
}

impl Trace {
    /// A trace that keeps text only if `keep_lines`.
    pub fn new(keep_lines: bool) -> Self {
        Trace { hash: FnvWriter(0xcbf2_9ce4_8422_2325), lines: keep_lines.then(Vec::new) }
    }

    /// Records one event at virtual time `time_ns`.
    pub fn record(&mut self, time_ns: u64, event: fmt::Arguments) {
        let _ = writeln!(self.hash, "{time_ns} {event}");
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>12.3}ms {event}", time_ns as f64 / 1e6));
        }
    }

    /// The hash of everything recorded.
    pub fn hash(&self) -> u64 {
        self.hash.0
    }

    /// The text, if kept.
    pub fn into_lines(self) -> Vec<String> {
        self.lines.unwrap_or_default()
    }
}

//! A self-contained HTML timeline of one key's history: one lane per process, a bar from
//! invocation to completion, placed operations in green, the ones that could not be placed in
//! red, unknown outcomes in grey running to the right edge.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::checker::Violation;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the violation as an HTML page.
pub fn render_timeline(violation: &Violation) -> String {
    let ops = &violation.operations;
    let placed: HashSet<usize> = violation.longest_prefix.iter().map(|op| op.id).collect();
    let unplaced: HashSet<usize> = violation.unplaced.iter().map(|op| op.id).collect();
    let order: BTreeMap<usize, usize> =
        violation.longest_prefix.iter().enumerate().map(|(position, op)| (op.id, position + 1)).collect();
    let start = ops.iter().map(|op| op.call).min().unwrap_or(0);
    let end =
        ops.iter().map(|op| if op.ret == u64::MAX { op.call } else { op.ret }).max().unwrap_or(start).max(start + 1);
    let processes: Vec<u64> = {
        let mut all: Vec<u64> = ops.iter().map(|op| op.process).collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let lane: BTreeMap<u64, usize> = processes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let (width, lane_height, left) = (1400.0, 28.0, 90.0);
    let scale = |t: u64| left + (t.saturating_sub(start) as f64 / (end - start) as f64) * (width - left - 40.0);
    let height = processes.len() as f64 * lane_height + 40.0;
    let mut svg = String::new();
    for (process, index) in &lane {
        let y = *index as f64 * lane_height + 20.0;
        let _ = write!(svg, r#"<text x="4" y="{:.0}" class="lane">process {process}</text>"#, y + 17.0);
    }
    for op in ops {
        let y = lane[&op.process] as f64 * lane_height + 20.0;
        let x0 = scale(op.call);
        let x1 = if op.ret == u64::MAX { width - 10.0 } else { scale(op.ret).max(x0 + 3.0) };
        let class = if unplaced.contains(&op.id) {
            "bad"
        } else if op.is_info() {
            "info"
        } else if placed.contains(&op.id) {
            "good"
        } else {
            "other"
        };
        let label = match order.get(&op.id) {
            Some(position) => format!("#{position} {}", op.describe()),
            None => op.describe(),
        };
        let _ = write!(
            svg,
            r#"<g class="{class}"><rect x="{x0:.1}" y="{y:.0}" width="{:.1}" height="22" rx="3"><title>{} [{}, {}]</title></rect><text x="{:.1}" y="{:.0}">{}</text></g>"#,
            x1 - x0,
            escape(&op.describe()),
            op.call,
            if op.ret == u64::MAX { "?".to_string() } else { op.ret.to_string() },
            x0 + 3.0,
            y + 15.0,
            escape(&label),
        );
    }
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>ballot check: key {key}</title>
<style>body{{font-family:sans-serif;margin:16px}} text{{font-size:11px}} .lane{{fill:#333}}
.good rect{{fill:#bfe5bf;stroke:#3a3}} .bad rect{{fill:#f4b6b6;stroke:#c00}} .info rect{{fill:#ddd;stroke:#888}}
.other rect{{fill:#e8e8ff;stroke:#66a}}</style></head><body>
<h2>Not linearizable: key <code>{key}</code></h2>
<p>Green: the longest linearizable prefix (numbered in linearization order). Red: operations that no
linearization could place. Grey: unknown outcome (may take effect at any time after invocation).
Blue: not reached. Hover a bar for its times.</p>
<svg width="{width}" height="{height:.0}" xmlns="http://www.w3.org/2000/svg">{svg}</svg>
</body></html>
"#,
        key = escape(&violation.key),
    )
}

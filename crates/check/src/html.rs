//! A self-contained HTML timeline of one key's history: one lane per process, a bar from
//! invocation to completion, placed operations in green, the ones that could not be placed in
//! red, unknown outcomes in grey running to the right edge.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::checker::Violation;
use crate::history::Operation;
use crate::session::SessionViolation;

/// `text` safe inside HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the violation as an HTML page.
pub fn render_timeline(violation: &Violation) -> String {
    let placed: HashSet<usize> = violation.longest_prefix.iter().map(|op| op.id).collect();
    let unplaced: HashSet<usize> = violation.unplaced.iter().map(|op| op.id).collect();
    let order: BTreeMap<usize, usize> =
        violation.longest_prefix.iter().enumerate().map(|(position, op)| (op.id, position + 1)).collect();
    let svg = lanes(&violation.operations, |op| {
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
        (class, label)
    });
    page(
        &format!("Not linearizable: key <code>{}</code>", escape(&violation.key)),
        "<p>Green: the longest linearizable prefix (numbered in linearization order). Red: operations that no
linearization could place. Grey: unknown outcome (may take effect at any time after invocation).
Blue: not reached. Hover a bar for its times.</p>",
        &svg,
    )
}

/// Renders broken session guarantees as an HTML page: the sessions involved, one lane each,
/// the operations of each violation in red, the rest of those sessions in green, and the
/// explanations above.
pub fn render_session_violations(operations: &[Operation], violations: &[SessionViolation]) -> String {
    let bad: HashSet<usize> = violations.iter().flat_map(|v| [v.earlier, v.later]).collect();
    let processes: HashSet<u64> =
        operations.iter().filter(|op| bad.contains(&op.id)).map(|op| op.session.unwrap_or(op.process)).collect();
    let shown: Vec<Operation> = operations
        .iter()
        .filter(|op| processes.contains(&op.session.unwrap_or(op.process)))
        .map(|op| Operation { process: op.session.unwrap_or(op.process), ..op.clone() })
        .collect();
    let svg = lanes(&shown, |op| {
        let class = if bad.contains(&op.id) {
            "bad"
        } else if op.is_info() {
            "info"
        } else {
            "good"
        };
        let label = match op.revision {
            Some(revision) => format!("{} @{revision}", op.describe()),
            None => op.describe(),
        };
        (class, label)
    });
    let mut intro = String::from(
        "<p>Red: operations of a broken guarantee (lanes are sessions; @N is the revision an answer carried).</p><ul>",
    );
    for violation in violations.iter().take(50) {
        let name = violation.guarantee.map_or("snapshot", |guarantee| guarantee.name());
        let _ = write!(intro, "<li><b>{name}</b>: {}</li>", escape(&violation.explanation));
    }
    intro.push_str("</ul>");
    page(&format!("{} session guarantee violation(s)", violations.len()), &intro, &svg)
}

/// An SVG of `ops` in lanes by process, each bar classed and labelled by `style`.
fn lanes<'a>(ops: &'a [Operation], style: impl Fn(&'a Operation) -> (&'static str, String)) -> String {
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
        let (class, label) = style(op);
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
    format!(r#"<svg width="{width}" height="{height:.0}" xmlns="http://www.w3.org/2000/svg">{svg}</svg>"#)
}

/// The page around a timeline.
fn page(heading: &str, intro: &str, svg: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>ballot check</title>
<style>body{{font-family:sans-serif;margin:16px}} text{{font-size:11px}} .lane{{fill:#333}}
.good rect{{fill:#bfe5bf;stroke:#3a3}} .bad rect{{fill:#f4b6b6;stroke:#c00}} .info rect{{fill:#ddd;stroke:#888}}
.other rect{{fill:#e8e8ff;stroke:#66a}}</style></head><body>
<h2>{heading}</h2>
{intro}
{svg}
</body></html>
"#
    )
}

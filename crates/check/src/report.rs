//! A self-contained HTML report of one fault-test run (`ballot torture`, `ballot sim`): the
//! verdict; every operation's latency against the time it was invoked, by outcome and kind,
//! with the nemesis's fault intervals shaded (Jepsen's latency graph); throughput over time
//! under the same shading; links to any violation's timeline. Plain SVG drawn here, no script
//! and nothing fetched: the file opens from disk.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::history::{Event, EventType};
use crate::html::escape;

/// A fault the nemesis held from `start_ns` to `end_ns` (on the history's clock).
#[derive(Clone, Debug)]
pub struct Fault {
    /// When it began.
    pub start_ns: u64,
    /// When it was healed.
    pub end_ns: u64,
    /// What it was ("partition n1 | n2 n3", "kill n2", …).
    pub what: String,
}

/// One instant worth marking (a leader change, a crash), drawn as a vertical line.
#[derive(Clone, Debug)]
pub struct Mark {
    /// When.
    pub at_ns: u64,
    /// What happened.
    pub what: String,
}

/// What a report shows.
#[derive(Clone, Debug, Default)]
pub struct RunReport<'a> {
    /// The page's heading.
    pub title: String,
    /// The verdict line ("linearizable: true, 1234 ops, 12 faults").
    pub verdict: String,
    /// Whether the run passed (colours the verdict).
    pub passed: bool,
    /// Each violation found, one line each.
    pub violations: Vec<String>,
    /// The history.
    pub events: &'a [Event],
    /// The faults, as intervals.
    pub faults: Vec<Fault>,
    /// Instants to mark.
    pub marks: Vec<Mark>,
    /// Links shown under the verdict: (href, text).
    pub links: Vec<(String, String)>,
    /// The time axis's unit, as shown ("s", or "virtual s" for the simulator).
    pub time_unit: String,
}

/// One completed (or abandoned) operation: what the charts draw.
#[derive(Clone, Debug, PartialEq)]
struct Completed {
    f: String,
    key: String,
    outcome: EventType,
    call: u64,
    ret: u64,
}

/// Pairs each invocation with its completion; an invocation never completed counts as `info`
/// at the end of the history.
fn completed(events: &[Event]) -> Vec<Completed> {
    let end = events.iter().map(|e| e.time).max().unwrap_or(0);
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut done = Vec::new();
    for event in events {
        if event.kind == EventType::Invoke {
            open.insert(event.process, event);
        } else if let Some(invoke) = open.remove(&event.process) {
            done.push(Completed {
                f: invoke.f.clone(),
                key: invoke.key.clone(),
                outcome: event.kind,
                call: invoke.time,
                ret: event.time.max(invoke.time),
            });
        }
    }
    for invoke in open.into_values() {
        done.push(Completed {
            f: invoke.f.clone(),
            key: invoke.key.clone(),
            outcome: EventType::Info,
            call: invoke.time,
            ret: end,
        });
    }
    done.sort_by_key(|op| op.call);
    done
}

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// The x axis shared by both charts: nanoseconds on the history's clock → pixels.
#[derive(Clone, Copy)]
struct TimeAxis {
    start: u64,
    end: u64,
}

impl TimeAxis {
    fn x(&self, t: u64) -> f64 {
        LEFT + (t.saturating_sub(self.start) as f64 / (self.end - self.start) as f64) * (WIDTH - LEFT - RIGHT)
    }

    /// Ticks at a round number of seconds, about ten of them, with their labels.
    fn ticks(&self) -> Vec<(f64, String)> {
        let span_s = (self.end - self.start) as f64 / 1e9;
        let step = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]
            .into_iter()
            .find(|step| span_s / step <= 12.0)
            .unwrap_or(1200.0);
        (0..)
            .map(|i| i as f64 * step)
            .take_while(|s| *s <= span_s)
            .map(|s| (self.x(self.start + (s * 1e9) as u64), format!("{s}")))
            .collect()
    }
}

/// Fault intervals and marks drawn behind a chart whose plot area spans `top..bottom`.
fn backdrop(out: &mut String, axis: TimeAxis, report: &RunReport, top: f64, bottom: f64) {
    for fault in &report.faults {
        let (x0, x1) = (axis.x(fault.start_ns), axis.x(fault.end_ns.max(fault.start_ns)));
        let _ = write!(
            out,
            r#"<rect class="fault" x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            bottom - top,
            escape(&fault.what)
        );
    }
    for mark in &report.marks {
        let x = axis.x(mark.at_ns);
        let _ = write!(
            out,
            r#"<line class="mark" x1="{x:.1}" x2="{x:.1}" y1="{top:.1}" y2="{bottom:.1}"><title>{}</title></line>"#,
            escape(&mark.what)
        );
    }
}

/// The x axis line, ticks and label under a plot area ending at `bottom`.
fn time_axis(out: &mut String, axis: TimeAxis, bottom: f64, unit: &str) {
    let _ =
        write!(out, r#"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{bottom:.1}" y2="{bottom:.1}"/>"#, WIDTH - RIGHT);
    for (x, label) in axis.ticks() {
        let _ = write!(
            out,
            r#"<line class="axis" x1="{x:.1}" x2="{x:.1}" y1="{bottom:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            bottom + 4.0,
            bottom + 16.0
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the start ({})</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        bottom + 32.0,
        escape(unit)
    );
}

fn outcome_class(outcome: EventType) -> &'static str {
    match outcome {
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        _ => "info",
    }
}

/// A marker of `shape` (by operation kind) at (x, y).
fn marker(out: &mut String, shape: usize, x: f64, y: f64, class: &str, title: &str) {
    let body = match shape % 4 {
        0 => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.6"/>"#),
        1 => format!(r#"<rect x="{:.1}" y="{:.1}" width="5" height="5"/>"#, x - 2.5, y - 2.5),
        2 => format!(r#"<path d="M{x:.1} {:.1}l3 5h-6z"/>"#, y - 3.0),
        _ => format!(r#"<path d="M{x:.1} {:.1}l3 3l-3 3l-3 -3z"/>"#, y - 3.0),
    };
    let _ = write!(out, r#"<g class="op {class}">{body}<title>{}</title></g>"#, escape(title));
}

/// The latency scatter plot: log-scale latency against invocation time.
fn latency_chart(ops: &[Completed], axis: TimeAxis, report: &RunReport, kinds: &[String]) -> String {
    let height = 380.0;
    let bottom = height - BOTTOM;
    let latency_ms = |op: &Completed| ((op.ret - op.call) as f64 / 1e6).max(0.01);
    let highest = ops.iter().map(latency_ms).fold(1.0_f64, f64::max);
    let (low_exp, high_exp) = (-2i32, highest.log10().ceil() as i32);
    let y = |ms: f64| bottom - (ms.log10() - low_exp as f64) / (high_exp - low_exp) as f64 * (bottom - TOP);
    let mut out = String::new();
    backdrop(&mut out, axis, report, TOP, bottom);
    let _ = write!(out, r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom:.1}"/>"#);
    for exp in low_exp..=high_exp {
        let (ms, at) = (10f64.powi(exp), y(10f64.powi(exp)));
        let label = if ms < 1.0 { format!("{ms}") } else { format!("{}", ms as u64) };
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{at:.1}" y2="{at:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            at + 4.0
        );
    }
    let _ = write!(
        out,
        r#"<text transform="rotate(-90)" x="{:.1}" y="14" text-anchor="middle">latency (ms, log scale)</text>"#,
        -(TOP + bottom) / 2.0
    );
    for op in ops {
        let shape = kinds.iter().position(|k| *k == op.f).unwrap_or(0);
        let title = format!(
            "{} {} {}: {:.2} ms at {:.3} {}",
            op.f,
            op.key,
            outcome_class(op.outcome),
            latency_ms(op),
            (op.call - axis.start) as f64 / 1e9,
            report.time_unit
        );
        marker(&mut out, shape, axis.x(op.call), y(latency_ms(op)), outcome_class(op.outcome), &title);
    }
    time_axis(&mut out, axis, bottom, &report.time_unit);
    format!(r#"<svg id="latency" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">{out}</svg>"#)
}

/// Completions per second over time, one line per outcome.
fn throughput_chart(ops: &[Completed], axis: TimeAxis, report: &RunReport) -> String {
    let height = 260.0;
    let bottom = height - BOTTOM;
    let buckets = 100usize;
    let width_ns = ((axis.end - axis.start) / buckets as u64).max(1);
    let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for op in ops {
        let bucket = (((op.ret - axis.start) / width_ns) as usize).min(buckets - 1);
        counts.entry(outcome_class(op.outcome)).or_insert_with(|| vec![0; buckets])[bucket] += 1;
    }
    let per_second = |count: u64| count as f64 * 1e9 / width_ns as f64;
    let peak = counts.values().flatten().map(|c| per_second(*c)).fold(1.0_f64, f64::max);
    // Round ticks (1, 2 or 5 times a power of ten), about four of them, the top one above the peak.
    let magnitude = 10f64.powf((peak / 4.0).log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| peak / s <= 5.0).unwrap_or(magnitude * 10.0);
    let steps = (peak / step).ceil().max(1.0) as u32;
    let highest = step * steps as f64;
    let y = |rate: f64| bottom - rate / highest * (bottom - TOP);
    let mut out = String::new();
    backdrop(&mut out, axis, report, TOP, bottom);
    let _ = write!(out, r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom:.1}"/>"#);
    for i in 0..=steps {
        let rate = step * i as f64;
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{rate}</text>"#,
            WIDTH - RIGHT,
            y(rate),
            y(rate),
            LEFT - 6.0,
            y(rate) + 4.0
        );
    }
    let _ = write!(
        out,
        r#"<text transform="rotate(-90)" x="{:.1}" y="14" text-anchor="middle">completions per {}</text>"#,
        -(TOP + bottom) / 2.0,
        escape(&report.time_unit)
    );
    for (class, series) in &counts {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, count)| {
                let t = axis.start + i as u64 * width_ns + width_ns / 2;
                format!("{:.1},{:.1}", axis.x(t), y(per_second(*count)))
            })
            .collect();
        let _ = write!(out, r#"<polyline class="rate {class}" points="{}"/>"#, points.join(" "));
    }
    time_axis(&mut out, axis, bottom, &report.time_unit);
    format!(r#"<svg id="throughput" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">{out}</svg>"#)
}

/// Renders the report as one HTML page.
pub fn render(report: &RunReport) -> String {
    let ops = completed(report.events);
    let start = report.events.iter().map(|e| e.time).min().unwrap_or(0);
    let end = report
        .events
        .iter()
        .map(|e| e.time)
        .chain(report.faults.iter().map(|f| f.end_ns))
        .chain(report.marks.iter().map(|m| m.at_ns))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let axis = TimeAxis { start, end };
    let mut kinds: Vec<String> = ops.iter().map(|op| op.f.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let count = |outcome: EventType| ops.iter().filter(|op| op.outcome == outcome).count();
    let mut legend = String::new();
    for (shape, kind) in kinds.iter().enumerate() {
        let mut icon = String::new();
        marker(&mut icon, shape, 8.0, 8.0, "key", kind);
        let _ =
            write!(legend, r#"<span class="legend"><svg width="16" height="16">{icon}</svg>{}</span>"#, escape(kind));
    }
    let mut head = String::new();
    let _ = write!(
        head,
        r#"<p class="verdict {}">{}</p>"#,
        if report.passed { "passed" } else { "failed" },
        escape(&report.verdict)
    );
    if !report.violations.is_empty() {
        head.push_str("<ul class=\"violations\">");
        for violation in &report.violations {
            let _ = write!(head, "<li>{}</li>", escape(violation));
        }
        head.push_str("</ul>");
    }
    for (href, text) in &report.links {
        let _ = write!(head, r#"<p><a href="{}">{}</a></p>"#, escape(href), escape(text));
    }
    let _ = write!(
        head,
        "<p>{} operations: {} ok, {} failed, {} unknown; {} fault interval(s) shaded.</p>",
        ops.len(),
        count(EventType::Ok),
        count(EventType::Fail),
        count(EventType::Info),
        report.faults.len()
    );
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:16px;color:#222}} h2{{margin:4px 0}} h3{{margin:18px 0 4px}}
svg text{{font-size:11px;fill:#444}} .axis{{stroke:#444}} .grid{{stroke:#e6e6e6}}
.verdict{{font-size:18px;font-weight:600;padding:6px 10px;border-radius:4px;display:inline-block}}
.verdict.passed{{background:#e3f4e3;color:#185c18}} .verdict.failed{{background:#fbe2e2;color:#8a1010}}
.fault{{fill:#f5c9a6;opacity:.45}} .mark{{stroke:#7a4fc4;stroke-dasharray:4 3}}
.op.ok{{fill:#2c7bb6}} .op.fail{{fill:#d7301f}} .op.info{{fill:#e6a100}} .op.key{{fill:#555}}
.rate{{fill:none;stroke-width:1.6}} .rate.ok{{stroke:#2c7bb6}} .rate.fail{{stroke:#d7301f}} .rate.info{{stroke:#e6a100}}
.legend{{margin-right:14px;white-space:nowrap}} .legend svg{{vertical-align:middle;margin-right:3px}}
.swatch{{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;vertical-align:middle}}
.chart svg{{width:100%;max-width:1100px;height:auto;display:block}}
</style></head><body>
<h2>{title}</h2>
{head}
<h3>Latency of every operation</h3>
<p>By invocation time; <span class="swatch" style="background:#2c7bb6"></span>ok
<span class="swatch" style="background:#d7301f"></span>failed
<span class="swatch" style="background:#e6a100"></span>unknown (timed out or cut off)
<span class="swatch" style="background:#f5c9a6"></span>a fault held (hover for which){marks_note}. Kinds: {legend}</p>
<div class="chart">{latency}</div>
<h3>Throughput</h3>
<div class="chart">{throughput}</div>
</body></html>
"#,
        title = escape(&report.title),
        latency = latency_chart(&ops, axis, report, &kinds),
        throughput = throughput_chart(&ops, axis, report),
        marks_note = if report.marks.is_empty() { "" } else { "; dashed lines: events (hover)" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: u64, kind: EventType, f: &str, time_ms: u64) -> Event {
        Event {
            process,
            kind,
            f: f.into(),
            key: "k".into(),
            value: serde_json::Value::Null,
            time: time_ms * 1_000_000,
            session: None,
            revision: None,
        }
    }

    #[test]
    fn every_operation_is_one_marker_and_every_fault_one_band() {
        let events = vec![
            event(0, EventType::Invoke, "read", 0),
            event(1, EventType::Invoke, "write", 1),
            event(0, EventType::Ok, "read", 3),
            event(1, EventType::Fail, "write", 900),
            event(0, EventType::Invoke, "cas", 1000),
            event(0, EventType::Info, "cas", 3000),
            event(2, EventType::Invoke, "read", 3500),
        ];
        let report = RunReport {
            title: "torture <seed 7>".into(),
            verdict: "linearizable: true".into(),
            passed: true,
            events: &events,
            faults: vec![Fault { start_ns: 500_000_000, end_ns: 2_000_000_000, what: "kill n2".into() }],
            marks: vec![Mark { at_ns: 1_200_000_000, what: "leader n1 → n3".into() }],
            links: vec![("violation.html".into(), "timeline".into())],
            time_unit: "s".into(),
            ..Default::default()
        };
        let page = render(&report);
        let latency = &page[page.find(r#"<svg id="latency""#).unwrap()..page.find(r#"<svg id="throughput""#).unwrap()];
        assert_eq!(latency.matches(r#"<g class="op ok">"#).count(), 1);
        assert_eq!(latency.matches(r#"<g class="op fail">"#).count(), 1);
        assert_eq!(latency.matches(r#"<g class="op info">"#).count(), 2, "the cut-off read is unknown too");
        assert_eq!(page.matches(r#"class="fault""#).count(), 2, "one band in each chart");
        assert_eq!(page.matches(r#"class="mark""#).count(), 2);
        assert!(page.contains("torture &lt;seed 7&gt;"), "titles are escaped");
        assert!(page.contains("4 operations: 1 ok, 1 failed, 2 unknown; 1 fault interval(s) shaded."));
        assert_eq!(page.matches("<polyline").count(), 3, "one throughput line per outcome");
        assert!(
            !page.contains("<script") && !page.contains("src=") && !page.contains(r#"href="http"#),
            "self-contained"
        );
    }

    #[test]
    fn latencies_are_placed_on_a_log_scale() {
        let ops = vec![
            Completed { f: "read".into(), key: "k".into(), outcome: EventType::Ok, call: 0, ret: 1_000_000 },
            Completed { f: "read".into(), key: "k".into(), outcome: EventType::Ok, call: 0, ret: 100_000_000 },
        ];
        let axis = TimeAxis { start: 0, end: 1_000_000_000 };
        let report = RunReport { time_unit: "s".into(), ..Default::default() };
        let svg = latency_chart(&ops, axis, &report, &["read".to_string()]);
        let ys: Vec<f64> = svg
            .match_indices(r#"cy=""#)
            .map(|(at, _)| svg[at + 4..].split('"').next().unwrap().parse().unwrap())
            .collect();
        // 1 ms and 100 ms: two decades apart out of the four from 0.01 ms to 100 ms.
        let per_decade = (380.0 - BOTTOM - TOP) / 4.0;
        assert!((ys[0] - ys[1] - 2.0 * per_decade).abs() < 0.5, "{ys:?}");
    }
}

//! `report.html`: one self-contained page (no network fetches): the violation heat map,
//! per-column invariant tables, staleness distributions drawn as SVG by `plotters`, and
//! the counterexamples with their timelines.

use std::fmt::Write as _;

use faultline_scenarios::compare::{Comparison, Counterexample};
use plotters::prelude::*;

use crate::markdown::{
    failed_run_lines, headline, legend, magnitude_row, percent, staleness, summary_cell, MAGNITUDE_HEADERS,
    NOT_APPLICABLE,
};
use crate::{escape_xml, mermaid};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}h2{margin-top:2em}\
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}.partial{background:#fff3cd;padding:8px;border:1px solid #e0c46c}\
.events td{text-align:left;font-family:monospace;font-size:12px}.chart{display:inline-block;margin:0 1em 1em 0}";

/// Green for no failing seeds, through yellow, to red for all.
fn heat(share: f64) -> String {
    if share == 0.0 {
        return "#e8f5e9".to_string();
    }
    let hue = 50.0 * (1.0 - share.clamp(0.0, 1.0));
    format!("hsl({hue:.0},85%,{:.0}%)", 80.0 - 20.0 * share)
}

/// Renders `report.html`.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>faultline: {}</title><style>{STYLE}</style></head><body>\n",
        escape_xml(&c.suite)
    );
    let _ = writeln!(
        out,
        "<h1>faultline comparison: {} suite</h1><p>{}.</p>",
        escape_xml(&c.suite),
        escape_xml(&headline(c))
    );
    if c.partial() {
        let _ = writeln!(
            out,
            "<p class=\"partial\"><b>Partial report</b>: the sweep was stopped after {} of {} runs.</p>",
            c.runs_done, c.runs_planned
        );
    }
    heat_map(&mut out, c);
    changed_settings(&mut out, c);
    requirements_section(&mut out, c);
    let _ = writeln!(
        out,
        "<h2>Staleness: share of commits visible at the target within a delay</h2>"
    );
    for col in &c.columns {
        let _ = writeln!(
            out,
            "<div class=\"chart\">{}</div>",
            staleness_chart(c, &col.name)
        );
    }
    for col in &c.columns {
        invariant_table(&mut out, c, &col.name, &col.faults, &col.seeds);
    }
    coverage_section(&mut out, c);
    let failed = failed_run_lines(c);
    if !failed.is_empty() {
        let _ = writeln!(
            out,
            "<h2>Failed runs</h2><p>These runs panicked or passed their budget instead of giving a verdict; they count in no other figure.</p><ul>"
        );
        for line in &failed {
            let _ = writeln!(out, "<li>{}</li>", escape_xml(line));
        }
        out.push_str("</ul>\n");
    }
    if !c.counterexamples.is_empty() {
        let _ = writeln!(
            out,
            "<h2>Counterexamples</h2><p>For each failing cell, its lowest failing seed.</p>"
        );
    }
    for ex in &c.counterexamples {
        counterexample(&mut out, ex);
    }
    out.push_str("</body></html>\n");
    out
}

fn coverage_section(out: &mut String, c: &Comparison) {
    let table = crate::markdown::coverage_table(c);
    let _ = write!(
        out,
        "<h2>Fault coverage</h2><p>How often a fault landed in each operation window, summed over the patterns of each column.</p><table><tr><th>window</th>"
    );
    for col in &c.columns {
        let _ = write!(out, "<th>{}</th>", escape_xml(&col.name));
    }
    out.push_str("</tr>\n");
    for (window, counts) in table.windows.iter().zip(&table.counts) {
        let _ = write!(out, "<tr><td>{}</td>", escape_xml(window));
        for n in counts {
            let _ = write!(
                out,
                "<td>{}</td>",
                if *n == 0 { "-".to_string() } else { n.to_string() }
            );
        }
        out.push_str("</tr>\n");
    }
    let _ = writeln!(
        out,
        "</table><p>{}</p>",
        escape_xml(&crate::markdown::coverage_verdict(&table))
    );
}

/// The rows that are presets with settings changed, and what changed.
fn changed_settings(out: &mut String, c: &Comparison) {
    let changed: Vec<_> = c.variants.iter().filter(|v| !v.settings.is_empty()).collect();
    if changed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>Variants with changed settings</h2><table><tr><th>pattern</th><th>preset</th><th>settings changed</th></tr>"
    );
    for v in changed {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_xml(&v.name),
            escape_xml(&v.preset),
            escape_xml(&v.settings.join(", "))
        );
    }
    let _ = writeln!(out, "</table>");
}

fn requirements_section(out: &mut String, c: &Comparison) {
    if c.requirements.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h2>Requirements: {}</h2><p>Per fault column, the patterns that met every requirement on every seed:</p><ul>",
        escape_xml(&c.requirements.join(", "))
    );
    for (column, met) in crate::markdown::requirement_answers(c) {
        let met = if met.is_empty() {
            "none".to_string()
        } else {
            met.join(", ")
        };
        let _ = write!(
            out,
            "<li><b>{}</b>: {}</li>",
            escape_xml(&column),
            escape_xml(&met)
        );
    }
    out.push_str("</ul><table><tr><th>pattern</th>");
    for col in &c.columns {
        let _ = write!(out, "<th>{}</th>", escape_xml(&col.name));
    }
    out.push_str("</tr>\n");
    let reqs = crate::markdown::requirements(c);
    for p in &c.patterns {
        let _ = write!(out, "<tr><td>{}</td>", escape_xml(p));
        for col in &c.columns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let standing = faultline_scenarios::requirements::standing(&reqs, cell);
            let colour = match standing {
                faultline_scenarios::requirements::Standing::Met => "#e8f5e9",
                faultline_scenarios::requirements::Standing::Missed(_) => "#ffcdd2",
                faultline_scenarios::requirements::Standing::Unknown(_) => "#eeeeee",
            };
            let _ = write!(
                out,
                "<td style=\"background:{colour};text-align:left\">{}</td>",
                escape_xml(&crate::markdown::standing_text(&standing))
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn heat_map(out: &mut String, c: &Comparison) {
    let _ = write!(
        out,
        "<h2>Which invariants broke, on what share of the seeds</h2><p>Letters: {}; each with the percentage of seeds it broke on.</p><table><tr><th>pattern</th>",
        escape_xml(&legend())
    );
    for col in &c.columns {
        let _ = write!(out, "<th>{}</th>", escape_xml(&col.name));
    }
    out.push_str("</tr>\n");
    for p in &c.patterns {
        let _ = write!(out, "<tr><td>{}</td>", escape_xml(p));
        for col in &c.columns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let broken: Vec<&str> = cell.seeds_by_invariant.keys().map(String::as_str).collect();
            let _ = write!(
                out,
                "<td style=\"background:{}\" title=\"{}\">{}</td>",
                heat(cell.failing_share()),
                escape_xml(&broken.join(", ")),
                escape_xml(&summary_cell(cell))
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn invariant_table(out: &mut String, c: &Comparison, column: &str, faults: &str, seeds: &str) {
    let _ = write!(
        out,
        "<h2>{} <small>(faults: {}, seeds {})</small></h2><table><tr><th>pattern</th>",
        escape_xml(column),
        escape_xml(faults),
        escape_xml(seeds)
    );
    for inv in &c.invariants {
        let _ = write!(out, "<th>{}</th>", escape_xml(inv));
    }
    out.push_str("<th>staleness p50</th><th>p99</th><th>availability</th><th>calls per action</th><th title=\"customers created and deleted between two observations of the target: never held, never welcomed\">unobserved</th></tr>\n");
    for p in &c.patterns {
        let cell = c.cell(column, p).expect("grid cell");
        let _ = write!(out, "<tr><td>{}</td>", escape_xml(p));
        for inv in &c.invariants {
            if !cell.applicable {
                let _ = write!(out, "<td>{NOT_APPLICABLE}</td>");
                continue;
            }
            let share = cell.share(inv);
            let _ = write!(
                out,
                "<td style=\"background:{}\">{}</td>",
                heat(share),
                percent(share)
            );
        }
        let _ = writeln!(
            out,
            "<td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}</td><td>{}</td></tr>",
            escape_xml(&staleness(cell, 50)),
            escape_xml(&staleness(cell, 99)),
            cell.availability() * 100.0,
            cell.calls_per_action(),
            cell.unobserved_customers
        );
    }
    out.push_str("</table>\n<p>How much, and how long (over all seeds; percentiles are histogram bucket bounds):</p><table><tr><th>pattern</th>");
    for h in MAGNITUDE_HEADERS {
        let _ = write!(out, "<th>{}</th>", escape_xml(h));
    }
    out.push_str("</tr>\n");
    for p in &c.patterns {
        let cell = c.cell(column, p).expect("grid cell");
        let _ = write!(out, "<tr><td>{}</td>", escape_xml(p));
        for value in magnitude_row(cell) {
            let _ = write!(out, "<td>{}</td>", escape_xml(&value));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<p>Why: each violation traced to the fault window hit nearest to it (a lost change to the next hit after its commit, anything else to the last hit before it).</p><table><tr><th>pattern</th><th>invariant</th><th>violations</th><th>traced to</th></tr>\n");
    for p in &c.patterns {
        let cell = c.cell(column, p).expect("grid cell");
        for (inv, n, causes) in crate::markdown::causes_rows(c, cell) {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{n}</td><td style=\"text-align:left\">{}</td></tr>",
                escape_xml(p),
                escape_xml(&inv),
                escape_xml(&causes)
            );
        }
    }
    out.push_str("</table>\n");
}

/// The cumulative staleness distribution of every pattern in one column, as SVG.
fn staleness_chart(c: &Comparison, column: &str) -> String {
    let buckets = c.staleness_buckets_ms.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{column}: commits visible within"), ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(0..buckets - 1, 0f64..1f64)?;
            let bounds = c.staleness_buckets_ms.clone();
            chart
                .configure_mesh()
                .x_labels(buckets)
                .x_label_formatter(&|i| match bounds.get(*i) {
                    Some(&b) if b == u64::MAX => "more".to_string(),
                    Some(&b) if b >= 1_000 => format!("{}s", b / 1_000),
                    Some(&b) => format!("{b}ms"),
                    None => String::new(),
                })
                .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
                .draw()?;
            for (i, p) in c.patterns.iter().enumerate() {
                let Some(cell) = c.cell(column, p) else { continue };
                let total: u64 = cell.staleness_ms.histogram.iter().sum();
                if total == 0 {
                    continue;
                }
                let color = Palette99::pick(i).to_rgba();
                let mut seen = 0;
                let points: Vec<(usize, f64)> = cell
                    .staleness_ms
                    .histogram
                    .iter()
                    .enumerate()
                    .map(|(b, n)| {
                        seen += n;
                        (b, seen as f64 / total as f64)
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                    .label(p.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw()?;
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            return format!("<p>chart unavailable: {}</p>", escape_xml(&e.to_string()));
        }
    }
    svg
}

fn counterexample(out: &mut String, ex: &Counterexample) {
    let v = &ex.violation;
    let _ = writeln!(
        out,
        "<h3>{} under {}: seed {}</h3><p><b>{} / {}</b> on <code>{}</code> at {} ms: {}</p><p>Replay: <code>{}</code> (trace hash <code>{}</code>)</p>",
        escape_xml(&ex.pattern),
        escape_xml(&ex.column),
        ex.seed,
        escape_xml(&v.invariant),
        escape_xml(&v.kind),
        escape_xml(&v.key),
        v.at_ms,
        escape_xml(&v.story),
        escape_xml(&ex.repro),
        escape_xml(&ex.trace_hash)
    );
    let _ = writeln!(out, "<pre>{}</pre>", escape_xml(&ex.faults.join("\n")));
    let _ = writeln!(
        out,
        "<p>Lineage of <code>{}</code>: its journey from the source's commit to the target and its welcome, with the faults.</p><table class=\"events\"><tr><th>ms</th><th>host</th><th>stage</th><th>detail</th></tr>",
        escape_xml(&v.key)
    );
    for step in faultline_scenarios::lineage::lineage(&ex.events, &v.key) {
        let _ = writeln!(
            out,
            "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            step.at_us as f64 / 1_000.0,
            escape_xml(&step.host),
            escape_xml(step.stage),
            escape_xml(&faultline_scenarios::lineage::shortened(&step.detail, 160))
        );
    }
    let _ = writeln!(
        out,
        "</table><details><summary>Mermaid sequence diagram</summary><pre>{}</pre></details>",
        escape_xml(&mermaid::render(ex))
    );
}

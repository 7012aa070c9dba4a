//! The terminal summary: the grid of failing shares, one row per pattern.

use std::fmt::Write as _;

use faultline_scenarios::compare::Comparison;

use crate::markdown::{headline, legend, summary_cell};

/// Renders the summary table.
pub fn render(c: &Comparison) -> String {
    let width = c.patterns.iter().map(|p| p.len()).max().unwrap_or(7).max(7);
    let column_width = c
        .columns
        .iter()
        .map(|col| col.name.len())
        .max()
        .unwrap_or(5)
        .max(11);
    let mut out = String::new();
    let _ = writeln!(out, "{} suite: {}", c.suite, headline(c));
    if c.partial() {
        let _ = writeln!(
            out,
            "PARTIAL: stopped after {} of {} runs",
            c.runs_done, c.runs_planned
        );
    }
    let _ = write!(
        out,
        "\nseeds with any violation, and which invariants broke ({})\n{:<width$}",
        legend(),
        "pattern"
    );
    for col in &c.columns {
        let _ = write!(out, "  {:>column_width$}", col.name);
    }
    out.push('\n');
    for p in &c.patterns {
        let _ = write!(out, "{p:<width$}");
        for col in &c.columns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let _ = write!(out, "  {:>column_width$}", summary_cell(cell));
        }
        out.push('\n');
    }
    out
}

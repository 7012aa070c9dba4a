//! The terminal summary: the grid of failing shares, one row per pattern.

use std::fmt::Write as _;

use faultline_scenarios::compare::Comparison;

use crate::markdown::{headline, legend, summary_cell};

/// Renders the summary table.
pub fn render(c: &Comparison) -> String {
    let width = c.patterns.iter().map(|p| p.len()).max().unwrap_or(7).max(7);
    // Each column as wide as its name or its widest cell.
    let widths: Vec<usize> = c
        .columns
        .iter()
        .map(|col| {
            c.patterns
                .iter()
                .map(|p| {
                    summary_cell(c.cell(&col.name, p).expect("grid cell"))
                        .chars()
                        .count()
                })
                .chain([col.name.len(), 5])
                .max()
                .unwrap_or(5)
        })
        .collect();
    let column_name_width = c.columns.iter().map(|col| col.name.len()).max().unwrap_or(0);
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
        "\nper invariant, the % of seeds it broke on ({})\n{:<width$}",
        legend(),
        "pattern"
    );
    for (col, w) in c.columns.iter().zip(&widths) {
        let _ = write!(out, "  {:>w$}", col.name);
    }
    out.push('\n');
    for p in &c.patterns {
        let _ = write!(out, "{p:<width$}");
        for (col, w) in c.columns.iter().zip(&widths) {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let _ = write!(out, "  {:>w$}", summary_cell(cell));
        }
        out.push('\n');
    }
    if !c.requirements.is_empty() {
        let _ = writeln!(
            out,
            "\nmet every requirement on every seed ({}):",
            c.requirements.join(", ")
        );
        for (column, met) in crate::markdown::requirement_answers(c) {
            let met = if met.is_empty() {
                "none".to_string()
            } else {
                met.join(", ")
            };
            let _ = writeln!(out, "  {column:<column_name_width$}  {met}");
        }
    }
    out
}

//! `report.md`: the comparison as a reviewer pastes it into a design document. A summary
//! matrix, one table per column with every invariant and the metrics, then each failing
//! cell's counterexample with its Mermaid sequence diagram and repro command.

use std::fmt::Write as _;

use faultline_scenarios::compare::{Cell, Comparison};
use faultline_scenarios::magnitudes::Spread;
use faultline_scenarios::requirements::{self, standing, Requirement, Standing};

use crate::mermaid;

/// A share as a whole percentage, `-` for none (so the failures stand out).
pub fn percent(share: f64) -> String {
    if share == 0.0 {
        "-".to_string()
    } else {
        format!("{:.0}%", (share * 100.0).max(1.0))
    }
}

/// One letter per invariant, for dense summaries.
pub const INVARIANT_CODES: [(&str, char); 7] = [
    ("convergence", 'C'),
    ("monotonic", 'M'),
    ("atomic-actions", 'A'),
    ("referential", 'R'),
    ("exactly-once-effects", 'E'),
    ("bounded-staleness", 'S'),
    ("liveness", 'L'),
];

/// Each invariant a cell broke, as its letter and the share of seeds it broke on
/// (`C3 M100`: convergence on 3% of the seeds, monotonic on all), in catalogue order.
pub fn codes(cell: &Cell) -> String {
    INVARIANT_CODES
        .iter()
        .filter(|(name, _)| cell.seeds_by_invariant.contains_key(*name))
        .map(|(name, c)| format!("{c}{}", percent(cell.share(name)).trim_end_matches('%')))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The legend of [`INVARIANT_CODES`].
pub fn legend() -> String {
    INVARIANT_CODES
        .iter()
        .map(|(name, c)| format!("{c} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a cell whose variant cannot feel its column's faults shows instead of a share:
/// not a pass, which would claim something was tested.
pub const NOT_APPLICABLE: &str = "n/a";

/// A summary cell: per invariant that broke, the share of seeds it broke on (`-` for
/// none), and how many runs failed instead of giving a verdict (`!N`); "n/a" when the
/// variant cannot feel the faults.
pub fn summary_cell(cell: &Cell) -> String {
    if !cell.applicable {
        return NOT_APPLICABLE.to_string();
    }
    let codes = codes(cell);
    let mut text = if codes.is_empty() { "-".to_string() } else { codes };
    if cell.runs_failed > 0 {
        let _ = write!(text, " !{}", cell.runs_failed);
    }
    text
}

/// The failed runs, one line each (cell, seed, kind, message, where, when, repro),
/// the lowest seeds of each cell; empty when no run failed.
pub fn failed_run_lines(c: &Comparison) -> Vec<String> {
    let mut lines = Vec::new();
    for cell in c.cells.iter().filter(|cell| cell.runs_failed > 0) {
        for run in &cell.failed_runs {
            let at = run.at_ms.map_or(String::new(), |ms| format!(" at {ms} ms"));
            let location = run
                .location
                .as_deref()
                .map_or(String::new(), |l| format!(" ({l})"));
            lines.push(format!(
                "{} under {}, seed {}: {}{at}: {}{location}. Replay: `{}`",
                cell.pattern,
                cell.column,
                run.seed,
                run.kind.name(),
                run.message,
                run.repro
            ));
        }
        let unlisted = cell.runs_failed - cell.failed_runs.len() as u64;
        if unlisted > 0 {
            lines.push(format!(
                "{} under {}: {unlisted} more failed run(s) at higher seeds",
                cell.pattern, cell.column
            ));
        }
    }
    lines
}

/// Per invariant a cell broke, in report order: its violations and the three windows
/// most of them are traced to, with their shares (`72% crash/after-commit-before-publish,
/// 20% (no window hit)`).
pub fn causes_rows(c: &Comparison, cell: &Cell) -> Vec<(String, u64, String)> {
    c.invariants
        .iter()
        .filter_map(|inv| cell.causes.get(inv).map(|windows| (inv, windows)))
        .map(|(inv, windows)| {
            let total: u64 = windows.values().sum();
            let mut ranked: Vec<(&String, &u64)> = windows.iter().collect();
            // Most first; ties in name order (the map's), so the text is stable.
            ranked.sort_by(|a, b| b.1.cmp(a.1));
            let mut parts: Vec<String> = ranked
                .iter()
                .take(3)
                .map(|(window, n)| format!("{}% {window}", (**n * 100 / total).max(1)))
                .collect();
            if ranked.len() > 3 {
                parts.push(format!("{} more", ranked.len() - 3));
            }
            (inv.clone(), total, parts.join(", "))
        })
        .collect()
}

/// The comparison's requirements, parsed back from their canonical form.
pub fn requirements(c: &Comparison) -> Vec<Requirement> {
    requirements::parse(&c.requirements.join(",")).unwrap_or_default()
}

/// A cell's standing against the requirements, in a few words.
pub fn standing_text(standing: &Standing) -> String {
    match standing {
        Standing::Met => "met".to_string(),
        Standing::Missed(what) => format!("missed: {}", what.join("; ")),
        Standing::Unknown(why) => format!("unknown: {why}"),
    }
}

/// Per column, the patterns that met every requirement on every seed.
pub fn requirement_answers(c: &Comparison) -> Vec<(String, Vec<String>)> {
    let reqs = requirements(c);
    c.columns
        .iter()
        .map(|col| {
            let met = c
                .patterns
                .iter()
                .filter(|p| {
                    let cell = c.cell(&col.name, p).expect("grid cell");
                    standing(&reqs, cell) == Standing::Met
                })
                .cloned()
                .collect();
            (col.name.clone(), met)
        })
        .collect()
}

/// A staleness percentile as a bucket bound.
pub fn staleness(cell: &Cell, pct: u64) -> String {
    bucket_bound(cell.staleness_percentile_ms(pct))
}

/// A percentile read off a histogram: the bound of its bucket.
fn bucket_bound(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(u64::MAX) => "> 10 s".to_string(),
        Some(ms) => format!("≤ {ms} ms"),
    }
}

/// A spread as `p50 / p99 / max`, `-` when empty.
fn spread(s: &Spread) -> String {
    let Some(max) = s.max else {
        return "-".to_string();
    };
    // A percentile is an upper bound (its bucket's, or the worst), exact only when
    // every sample is zero.
    let percentile = |p: Option<u64>| match p {
        _ if max == 0 => "0".to_string(),
        other => bucket_bound(other).trim_end_matches(" ms").to_string(),
    };
    format!("{} / {} / {max} ms", percentile(s.p50), percentile(s.p99))
}

/// The headers of the magnitudes table (after `pattern`).
pub const MAGNITUDE_HEADERS: [&str; 8] = [
    "semantics",
    "lost per 1000 changes",
    "applied 1× / 2× / 3× / 4+×",
    "doubled welcomes per 1000 customers",
    "fractured action seen (p50 / p99 / max)",
    "orphan seen (p50 / p99 / max)",
    "staleness max",
    "recovery after last heal (p50 / p99 / max)",
];

/// One row of the magnitudes table: how much went wrong in a cell, and how long.
pub fn magnitude_row(cell: &Cell) -> [String; 8] {
    let d = &cell.duplicate_deliveries;
    let semantics = if cell.applicable {
        cell.delivery_semantics.clone()
    } else {
        NOT_APPLICABLE.to_string()
    };
    [
        semantics,
        format!("{:.1}", cell.lost_per_1000),
        format!("{} / {} / {} / {}", d.once, d.twice, d.thrice, d.more),
        format!("{:.1}", d.doubled_effects_per_1000_customers),
        spread(&cell.fracture_window_ms.atomic_actions),
        spread(&cell.fracture_window_ms.referential),
        cell.staleness_ms
            .max
            .map_or("-".to_string(), |ms| format!("{ms} ms")),
        spread(&cell.recovery_ms),
    ]
}

/// The comparison's headline: grid size, seeds, and whether it is partial.
pub fn headline(c: &Comparison) -> String {
    let seeds: Vec<&str> = c.columns.iter().map(|col| col.seeds.as_str()).collect();
    let mut seeds_text = seeds.first().map_or(String::new(), |s| s.to_string());
    if seeds.iter().any(|s| Some(s) != seeds.first()) {
        seeds_text = "per column (see below)".to_string();
    }
    let failed = match c.runs_failed() {
        0 => String::new(),
        n => format!(", {n} failed without a verdict (`!N` in a cell)"),
    };
    format!(
        "{} patterns × {} fault columns, seeds {} per cell, {} runs{failed}",
        c.patterns.len(),
        c.columns.len(),
        seeds_text,
        c.runs_done
    )
}

/// The fault coverage of a sweep: every expected or reached window, with its count per
/// column (summed over the patterns), and the expected windows never reached.
pub struct CoverageTable {
    /// Window names, in order.
    pub windows: Vec<String>,
    /// Per window, per column, how often a fault landed in it.
    pub counts: Vec<Vec<u64>>,
    /// Expected windows the sweep never reached.
    pub missing: Vec<&'static str>,
}

/// The coverage table of `c`.
pub fn coverage_table(c: &Comparison) -> CoverageTable {
    let mut windows: Vec<String> = faultline_scenarios::compare::expected_windows()
        .iter()
        .map(|w| w.to_string())
        .chain(c.coverage().into_keys())
        .collect();
    windows.sort();
    windows.dedup();
    let counts = windows
        .iter()
        .map(|w| {
            c.columns
                .iter()
                .map(|col| {
                    c.cells
                        .iter()
                        .filter(|cell| cell.column == col.name)
                        .map(|cell| cell.coverage.get(w).copied().unwrap_or(0))
                        .sum()
                })
                .collect()
        })
        .collect();
    CoverageTable {
        windows,
        counts,
        missing: c.coverage_missing(),
    }
}

/// The sentence under the coverage table.
pub fn coverage_verdict(table: &CoverageTable) -> String {
    if table.missing.is_empty() {
        "Every expected window was reached.".to_string()
    } else {
        format!(
            "Never reached in this sweep (its verdicts say nothing about these): {}.",
            table.missing.join(", ")
        )
    }
}

/// A table header: `first`, then one right-aligned column per fault column.
fn column_header(out: &mut String, first: &str, c: &Comparison) {
    let _ = write!(out, "| {first} |");
    for col in &c.columns {
        let _ = write!(out, " {} |", col.name);
    }
    let _ = write!(out, "\n|---|");
    for _ in &c.columns {
        out.push_str("---:|");
    }
    out.push('\n');
}

/// What an operator would see beside the verdicts, for the patterns that stream the
/// source's log: how much log their slots held back, and runs in which a component
/// stopped on an error (loud, unlike silent loss). Nothing when no pattern streams it.
fn operations(out: &mut String, c: &Comparison, column: &str) {
    let rows: Vec<(&String, &Cell)> = c
        .patterns
        .iter()
        .map(|p| (p, c.cell(column, p).expect("grid cell")))
        .filter(|(_, cell)| {
            cell.source_log_retained_max_bytes.is_some() || cell.runs_with_failed_components > 0
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nOperations: the log the source's replication slots held back, and runs in which a component failed loudly (a connector whose position was gone):\n"
    );
    let _ = writeln!(
        out,
        "| pattern | log held back (max) | runs with a failed component |\n|---|---:|---:|"
    );
    for (p, cell) in rows {
        let held = cell
            .source_log_retained_max_bytes
            .map_or("-".to_string(), |b| format!("{} KiB", b.div_ceil(1024)));
        let _ = writeln!(out, "| {p} | {held} | {} |", cell.runs_with_failed_components);
    }
}

/// Renders `report.md`.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# faultline comparison: {} suite\n", c.suite);
    let _ = writeln!(out, "{}.\n", headline(c));
    if c.partial() {
        let _ = writeln!(
            out,
            "> **Partial report**: the sweep was stopped after {} of {} runs.\n",
            c.runs_done, c.runs_planned
        );
    }
    let _ = writeln!(out, "Each cell is the share of seeds on which an invariant broke (`-` = never). Every failing cell has a counterexample below with the command that replays it. *Unobserved* counts customers created and deleted between two observations of the target (never held there, so never welcomed): a property of state-transfer patterns, not a violation. `n/a`: the variant reads no wall clock, so a column of clock faults alone cannot reach it.\n");

    let _ = writeln!(
        out,
        "## Summary: which invariants broke, on what share of the seeds\n"
    );
    let _ = writeln!(
        out,
        "Letters: {}; each with the percentage of seeds it broke on.\n",
        legend()
    );
    column_header(&mut out, "pattern", c);
    for p in &c.patterns {
        let _ = write!(out, "| {p} |");
        for col in &c.columns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let _ = write!(out, " {} |", summary_cell(cell));
        }
        out.push('\n');
    }

    let changed: Vec<_> = c.variants.iter().filter(|v| !v.settings.is_empty()).collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "\n## Variants with changed settings\n");
        let _ = writeln!(out, "| pattern | preset | settings changed |\n|---|---|---|");
        for v in changed {
            let _ = writeln!(out, "| {} | {} | {} |", v.name, v.preset, v.settings.join(", "));
        }
    }

    if !c.requirements.is_empty() {
        let _ = writeln!(out, "\n## Requirements: {}\n", c.requirements.join(", "));
        let _ = writeln!(
            out,
            "Per fault column, the patterns that met every requirement on every seed:\n"
        );
        for (column, met) in requirement_answers(c) {
            let met = if met.is_empty() {
                "none".to_string()
            } else {
                met.join(", ")
            };
            let _ = writeln!(out, "- **{column}**: {met}");
        }
        out.push('\n');
        column_header(&mut out, "pattern", c);
        let reqs = requirements(c);
        for p in &c.patterns {
            let _ = write!(out, "| {p} |");
            for col in &c.columns {
                let cell = c.cell(&col.name, p).expect("grid cell");
                let _ = write!(out, " {} |", standing_text(&standing(&reqs, cell)));
            }
            out.push('\n');
        }
    }

    for col in &c.columns {
        let _ = writeln!(
            out,
            "\n## {} (faults: {}, seeds {})\n",
            col.name, col.faults, col.seeds
        );
        let _ = write!(out, "| pattern |");
        for inv in &c.invariants {
            let _ = write!(out, " {inv} |");
        }
        let _ = writeln!(
            out,
            " staleness p50 | staleness p99 | availability | calls per action | unobserved |"
        );
        let _ = write!(out, "|---|");
        for _ in 0..c.invariants.len() + 5 {
            out.push_str("---:|");
        }
        out.push('\n');
        for p in &c.patterns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let _ = write!(out, "| {p} |");
            for inv in &c.invariants {
                let share = if cell.applicable {
                    percent(cell.share(inv))
                } else {
                    NOT_APPLICABLE.to_string()
                };
                let _ = write!(out, " {share} |");
            }
            let _ = writeln!(
                out,
                " {} | {} | {:.1}% | {:.1} | {} |",
                staleness(cell, 50),
                staleness(cell, 99),
                cell.availability() * 100.0,
                cell.calls_per_action(),
                cell.unobserved_customers
            );
        }
        let _ = writeln!(
            out,
            "\nHow much, and how long (over all seeds; percentiles are histogram bucket bounds):\n"
        );
        let _ = write!(out, "| pattern |");
        for h in MAGNITUDE_HEADERS {
            let _ = write!(out, " {h} |");
        }
        let _ = write!(out, "\n|---|");
        for _ in MAGNITUDE_HEADERS {
            out.push_str("---:|");
        }
        out.push('\n');
        for p in &c.patterns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            let _ = write!(out, "| {p} |");
            for value in magnitude_row(cell) {
                let _ = write!(out, " {value} |");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "\nWhy: each violation traced to the fault window hit nearest to it (a lost change to the next hit after its commit, anything else to the last hit before it):\n");
        let _ = writeln!(
            out,
            "| pattern | invariant | violations | traced to |\n|---|---|---:|---|"
        );
        for p in &c.patterns {
            let cell = c.cell(&col.name, p).expect("grid cell");
            for (inv, n, causes) in causes_rows(c, cell) {
                let _ = writeln!(out, "| {p} | {inv} | {n} | {causes} |");
            }
        }
        operations(&mut out, c, &col.name);
    }

    let coverage = coverage_table(c);
    let _ = writeln!(out, "\n## Fault coverage\n");
    let _ = writeln!(out, "How often a fault landed in each operation window (fault / window), summed over the patterns of each column. A window never reached is a hole: no verdict above covers it.\n");
    column_header(&mut out, "window", c);
    for (window, counts) in coverage.windows.iter().zip(&coverage.counts) {
        let _ = write!(out, "| {window} |");
        for n in counts {
            let _ = write!(
                out,
                " {} |",
                if *n == 0 { "-".to_string() } else { n.to_string() }
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\n{}", coverage_verdict(&coverage));

    let failed = failed_run_lines(c);
    if !failed.is_empty() {
        let _ = writeln!(out, "\n## Failed runs\n");
        let _ = writeln!(out, "These runs panicked or passed their budget instead of giving a verdict; they count in no other figure.\n");
        for line in &failed {
            let _ = writeln!(out, "- {line}");
        }
    }

    if !c.counterexamples.is_empty() {
        let _ = writeln!(out, "\n## Counterexamples\n");
        let _ = writeln!(out, "For each failing cell, its lowest failing seed: the faults, the first violation, and the messages that touched the row's customer.");
    }
    for ex in &c.counterexamples {
        let v = &ex.violation;
        let _ = writeln!(
            out,
            "\n### {} under {}: seed {}\n",
            ex.pattern, ex.column, ex.seed
        );
        let _ = writeln!(
            out,
            "**{} / {}** on `{}` at {} ms: {}\n",
            v.invariant, v.kind, v.key, v.at_ms, v.story
        );
        let _ = writeln!(out, "Replay: `{}` (trace hash `{}`)\n", ex.repro, ex.trace_hash);
        let _ = writeln!(out, "Faults:\n\n```text");
        for f in &ex.faults {
            let _ = writeln!(out, "{f}");
        }
        let _ = writeln!(out, "```\n\nLineage of `{}`:\n", v.key);
        let _ = writeln!(out, "| ms | host | stage | detail |\n|---:|---|---|---|");
        for step in faultline_scenarios::lineage::lineage(&ex.events, &v.key) {
            let _ = writeln!(
                out,
                "| {:.1} | {} | {} | `{}` |",
                step.at_us as f64 / 1_000.0,
                step.host,
                step.stage,
                faultline_scenarios::lineage::shortened(&step.detail, 100).replace('|', "\\|")
            );
        }
        let _ = writeln!(out, "\n```mermaid\n{}```", mermaid::render(ex));
    }
    out
}

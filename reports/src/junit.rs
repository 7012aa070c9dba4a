//! JUnit XML for CI: one `<testsuite>` per suite scenario, one `<testcase>` per pattern
//! in it. A surprise is a `<failure>` carrying the seed, the violation and the command
//! that replays it; a run that failed instead of giving a verdict (a panic, a passed
//! budget) is an `<error>`, as test frameworks report a test that crashed.

use std::fmt::Write as _;

use faultline_scenarios::verdict::{CellResult, SuiteResult};

use crate::escape_xml;

/// Renders the suite's verdict as JUnit XML.
pub fn render(result: &SuiteResult) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    for cell in &result.cells {
        if !scenarios.contains(&cell.scenario.as_str()) {
            scenarios.push(&cell.scenario);
        }
    }
    let failures = result.surprises().count();
    let errors = result.cells.iter().filter(|c| c.runs_failed > 0).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">",
        escape_xml(&result.suite),
        result.cells.len()
    );
    for scenario in scenarios {
        let cells: Vec<_> = result.cells.iter().filter(|c| c.scenario == scenario).collect();
        let failing = cells.iter().filter(|c| c.is_surprise()).count();
        let erring = cells.iter().filter(|c| c.runs_failed > 0).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}/{}\" tests=\"{}\" failures=\"{failing}\" errors=\"{erring}\">",
            escape_xml(&result.suite),
            escape_xml(scenario),
            cells.len()
        );
        for cell in cells {
            let classname = format!("{}.{}", result.suite, cell.scenario);
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                escape_xml(&classname),
                escape_xml(cell.pattern)
            );
            if !cell.is_surprise() && cell.runs_failed == 0 {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            if let Some(why) = cell.surprises.first() {
                let mut detail = format!(
                    "{}\n\nseeds run: {}, failing: {}\n",
                    cell.surprises.join("\n"),
                    cell.seeds_run,
                    cell.seeds_failing
                );
                for (inv, run) in &cell.broken {
                    let _ = writeln!(detail, "{inv}: first on seed {} — repro: {}", run.seed, run.repro);
                    for v in run.examples.iter().filter(|v| v.invariant == *inv) {
                        let _ = writeln!(detail, "  {} on {} at {}: {}", v.kind, v.key, v.at, v.story);
                    }
                }
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"surprise\">{}</failure>",
                    escape_xml(why.lines().next().unwrap_or_default()),
                    escape_xml(&detail)
                );
            }
            if cell.runs_failed > 0 {
                error(&mut out, cell);
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The `<error>` of a cell whose runs failed: how many, and each kept one's seed,
/// message, location and repro command.
fn error(out: &mut String, cell: &CellResult) {
    let mut detail = format!(
        "{} of {} runs failed instead of giving a verdict\n",
        cell.runs_failed, cell.seeds_run
    );
    let mut first = String::new();
    for run in &cell.errors {
        let Some(e) = &run.error else { continue };
        let at = e.at_ms.map_or(String::new(), |ms| format!(" at {ms} ms"));
        let location = e.location.as_deref().map_or(String::new(), |l| format!(" ({l})"));
        let line = format!(
            "seed {}: {}{at}: {}{location}",
            run.seed,
            e.kind.name(),
            e.message
        );
        if first.is_empty() {
            first = line.clone();
        }
        let _ = writeln!(detail, "{line}\n  repro: {}", run.repro);
    }
    let _ = writeln!(
        out,
        "      <error message=\"{}\" type=\"run-failed\">{}</error>",
        escape_xml(&first),
        escape_xml(&detail)
    );
}

//! JUnit XML for CI: one `<testsuite>` per suite scenario, one `<testcase>` per pattern
//! in it. A surprise is a `<failure>` carrying the seed, the violation and the command
//! that replays it.

use std::fmt::Write as _;

use faultline_scenarios::verdict::SuiteResult;

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
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
        escape_xml(&result.suite),
        result.cells.len()
    );
    for scenario in scenarios {
        let cells: Vec<_> = result.cells.iter().filter(|c| c.scenario == scenario).collect();
        let failing = cells.iter().filter(|c| c.surprise.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}/{}\" tests=\"{}\" failures=\"{failing}\">",
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
            match &cell.surprise {
                None => out.push_str("/>\n"),
                Some(why) => {
                    let mut detail = format!(
                        "{why}\n\nseeds run: {}, failing: {}\n",
                        cell.seeds_run, cell.seeds_failing
                    );
                    for (inv, run) in &cell.broken {
                        let _ = writeln!(detail, "{inv}: first on seed {} — repro: {}", run.seed, run.repro);
                        for v in run.examples.iter().filter(|v| v.invariant == *inv) {
                            let _ = writeln!(detail, "  {} on {} at {}: {}", v.kind, v.key, v.at, v.story);
                        }
                    }
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"surprise\">{}</failure>\n    </testcase>\n",
                        escape_xml(why.lines().next().unwrap_or_default()),
                        escape_xml(&detail)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

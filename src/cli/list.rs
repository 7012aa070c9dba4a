//! `faultline list`: every registry, as text or JSON.

use std::process::ExitCode;

use faultline::patterns::bugs::BUGS;
use faultline::patterns::VARIANTS;
use faultline::scenarios::detection::detect;
use faultline::scenarios::sweep::default_jobs;
use faultline::scenarios::INVARIANTS;
use faultline::sim::PROFILES;
use serde::Serialize;

use super::{exit, Format};

/// Where each variant's real-world counterpart, settings and weaknesses are described.
const VARIANTS_DOC: &str = "docs/VARIANTS.md";

#[derive(Serialize)]
struct Named {
    name: &'static str,
    description: &'static str,
}

/// A planted bug, where it shows, and how often its invariant catches it.
#[derive(Serialize)]
struct BugEntry {
    name: &'static str,
    description: &'static str,
    variant: &'static str,
    profile: &'static str,
    breaks: &'static str,
    /// Seeds 0..N of the variant and profile, with the bug on.
    detection_seeds: u64,
    /// The share of those seeds on which `breaks` fired.
    detection_rate: f64,
    /// The seeds it fired on.
    caught_on: Vec<u64>,
}

pub fn list(format: Format, detection_seeds: u64) -> ExitCode {
    let named = |name, description| Named { name, description };
    let patterns: Vec<Named> = VARIANTS.iter().map(|v| named(v.name, v.description)).collect();
    let profiles: Vec<Named> = PROFILES.iter().map(|p| named(p.name, p.description)).collect();
    let invariants: Vec<Named> = INVARIANTS.iter().map(|i| named(i.name, i.description)).collect();
    let bugs: Vec<Named> = BUGS.iter().map(|b| named(b.name, b.description)).collect();
    match format {
        Format::Json => {
            // Measured, not claimed: each bug run over its seeds.
            if detection_seeds > 0 {
                eprintln!(
                    "measuring {} planted bugs over seeds 0..{detection_seeds} each (--detection-seeds 0 skips)",
                    BUGS.len()
                );
            }
            let bugs: Vec<BugEntry> = BUGS
                .iter()
                .map(|b| {
                    let found = detect(b, 0..detection_seeds, true, default_jobs());
                    BugEntry {
                        name: b.name,
                        description: b.description,
                        variant: b.variant,
                        profile: b.profile,
                        breaks: b.breaks,
                        detection_seeds: found.seeds,
                        detection_rate: found.rate(),
                        caught_on: found.caught_on,
                    }
                })
                .collect();
            let all = serde_json::json!({ "patterns": patterns, "variants_doc": VARIANTS_DOC, "profiles": profiles, "invariants": invariants, "bugs": bugs });
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("plain data serialises")
            );
        }
        Format::Text => {
            for (title, items) in [
                ("patterns", &patterns),
                ("profiles", &profiles),
                ("invariants", &invariants),
                ("planted bugs", &bugs),
            ] {
                println!("{title}:");
                for item in items {
                    println!("  {:<31} {}", item.name, item.description);
                }
                if title == "patterns" {
                    println!(
                        "  (each variant's real-world counterpart, settings and weaknesses: {VARIANTS_DOC})"
                    );
                }
                println!();
            }
        }
    }
    ExitCode::from(exit::OK)
}

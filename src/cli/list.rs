//! `faultline list`: every registry, as text or JSON.

use std::process::ExitCode;

use faultline::patterns::bugs::BUGS;
use faultline::patterns::VARIANTS;
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

pub fn list(format: Format) -> ExitCode {
    let named = |name, description| Named { name, description };
    let patterns: Vec<Named> = VARIANTS.iter().map(|v| named(v.name, v.description)).collect();
    let profiles: Vec<Named> = PROFILES.iter().map(|p| named(p.name, p.description)).collect();
    let invariants: Vec<Named> = INVARIANTS.iter().map(|i| named(i.name, i.description)).collect();
    let bugs: Vec<Named> = BUGS.iter().map(|b| named(b.name, b.description)).collect();
    match format {
        Format::Json => {
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

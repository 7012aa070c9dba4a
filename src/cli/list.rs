//! `faultline list`: every registry, as text or JSON.

use std::process::ExitCode;

use faultline::patterns::bugs::BUGS;
use faultline::patterns::settings::{Setting, Value, Values, SETTINGS};
use faultline::patterns::{Variant, VARIANTS};
use faultline::scenarios::detection::detect;
use faultline::scenarios::sweep::default_jobs;
use faultline::scenarios::INVARIANTS;
use faultline::sim::{FAULT_KINDS, PROFILES};
use serde::Serialize;

use super::{exit, resolve_variant, Format};

/// Where each variant's real-world counterpart, settings and weaknesses are described.
const VARIANTS_DOC: &str = "docs/VARIANTS.md";

#[derive(Serialize)]
struct Named {
    name: &'static str,
    description: &'static str,
}

/// A fault kind and the profiles whose plans may hold it.
#[derive(Serialize)]
struct FaultKindEntry {
    name: &'static str,
    description: &'static str,
    profiles: Vec<&'static str>,
}

fn fault_kinds() -> Vec<FaultKindEntry> {
    FAULT_KINDS
        .iter()
        .map(|k| FaultKindEntry {
            name: k.name,
            description: k.description,
            profiles: PROFILES
                .iter()
                .filter(|p| p.profile.kinds().contains(&k.name))
                .map(|p| p.name)
                .collect(),
        })
        .collect()
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
    let patterns: Vec<Named> = Variant::all()
        .iter()
        .map(|v| named(v.name, v.description))
        .collect();
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
            let all = serde_json::json!({ "patterns": patterns, "variants_doc": VARIANTS_DOC, "profiles": profiles, "fault_kinds": fault_kinds(), "invariants": invariants, "bugs": bugs });
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
                if title == "profiles" {
                    println!("fault kinds (in plans; the profiles that draw each):");
                    for k in fault_kinds() {
                        println!("  {:<31} {} [{}]", k.name, k.description, k.profiles.join(", "));
                    }
                    println!();
                }
            }
        }
    }
    ExitCode::from(exit::OK)
}

/// A setting's values as JSON: the kind and its bounds or words.
fn values_json(values: Values) -> serde_json::Value {
    match values {
        Values::Bool => serde_json::json!({ "kind": "bool" }),
        Values::Millis { min, max } => serde_json::json!({ "kind": "millis", "min": min, "max": max }),
        Values::MillisOrOff { min, max } => {
            serde_json::json!({ "kind": "millis-or-off", "min": min, "max": max })
        }
        Values::Count { min, max } => serde_json::json!({ "kind": "count", "min": min, "max": max }),
        Values::CountOrOff { min, max } => {
            serde_json::json!({ "kind": "count-or-off", "min": min, "max": max })
        }
        Values::Choice(words) => serde_json::json!({ "kind": "choice", "choices": words }),
    }
}

/// The presets' values of a setting, the most common first, each with its presets.
fn defaults(setting: &Setting) -> Vec<(Value, Vec<&'static str>)> {
    let mut groups: Vec<(Value, Vec<&'static str>)> = Vec::new();
    for v in VARIANTS {
        if let Some(value) = setting.get(&v.config) {
            match groups.iter_mut().find(|g| g.0 == value) {
                Some(group) => group.1.push(v.name),
                None => groups.push((value, vec![v.name])),
            }
        }
    }
    // Stable: ties keep registry order.
    groups.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    groups
}

/// `faultline list --settings [--pattern P]`: every setting with its values and defaults,
/// or one variant's settings with its values.
pub fn list_settings(format: Format, pattern: Option<&str>, settings: &[String]) -> ExitCode {
    let variant: Option<&'static Variant> = match pattern {
        None if !settings.is_empty() => {
            eprintln!("error: --set goes with --pattern: whose settings should change?");
            return ExitCode::from(exit::BAD_INPUT);
        }
        None => None,
        Some(name) => match resolve_variant(name, settings, &[]) {
            Ok(v) => Some(v),
            Err(code) => return code,
        },
    };
    match (format, variant) {
        (Format::Json, None) => {
            let all: Vec<serde_json::Value> = SETTINGS
                .iter()
                .map(|s| {
                    let defaults: serde_json::Map<String, serde_json::Value> = VARIANTS
                        .iter()
                        .filter_map(|v| {
                            s.get(&v.config)
                                .map(|value| (v.name.to_string(), value.to_string().into()))
                        })
                        .collect();
                    serde_json::json!({
                        "key": s.key,
                        "about": s.about,
                        "mirrors": s.mirrors,
                        "values": values_json(s.values),
                        "applies_to": s.presets(),
                        "defaults": defaults,
                    })
                })
                .collect();
            let json = serde_json::json!({ "settings": all });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("plain data serialises")
            );
        }
        (Format::Json, Some(v)) => {
            let all: Vec<serde_json::Value> = v
                .settings()
                .into_iter()
                .map(|(s, value)| {
                    let preset = Variant::by_name(v.preset).and_then(|p| s.get(&p.config));
                    serde_json::json!({
                        "key": s.key,
                        "value": value.to_string(),
                        "preset_value": preset.map(|p| p.to_string()),
                        "about": s.about,
                        "mirrors": s.mirrors,
                        "values": values_json(s.values),
                    })
                })
                .collect();
            let json = serde_json::json!({
                "pattern": v.name,
                "preset": v.preset,
                "description": v.description,
                "settings": all,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("plain data serialises")
            );
        }
        (Format::Text, None) => {
            println!("settings (change one with --set KEY=VALUE, or in a suite's [[variant]]; one pattern's: --pattern NAME):\n");
            for s in SETTINGS {
                println!("{}  ({})", s.key, s.values);
                println!("  {}", s.about);
                println!("  mirrors: {}", s.mirrors);
                let groups = defaults(s);
                let mut line = format!("  default: {}", groups[0].0);
                if groups.len() > 1 {
                    let others: Vec<String> = groups[1..]
                        .iter()
                        .map(|(value, presets)| format!("{value} in {}", presets.join(", ")))
                        .collect();
                    line.push_str(&format!("; {}", others.join("; ")));
                }
                println!("{line}");
                println!("  applies to: {}\n", s.presets().join(", "));
            }
        }
        (Format::Text, Some(v)) => {
            println!("{}: {}", v.name, v.description);
            if v.preset != v.name {
                println!("preset: {}", v.preset);
            }
            println!();
            let preset = Variant::by_name(v.preset).map(|p| p.config);
            for (s, value) in v.settings() {
                let was = preset.and_then(|p| s.get(&p)).filter(|p| *p != value);
                let value = match was {
                    Some(was) => format!("{value} (preset: {was})"),
                    None => value.to_string(),
                };
                println!("  {:<34} {:<24} {}", s.key, value, s.values);
            }
        }
    }
    ExitCode::from(exit::OK)
}

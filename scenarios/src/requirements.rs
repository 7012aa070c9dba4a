//! Requirements: what a team needs of an integration ("no lost changes, no doubled
//! welcomes, 99% of changes visible within a second"), judged per cell on every seed,
//! so that a comparison answers "which pattern may we use here".

use std::fmt;

use crate::compare::Cell;

/// One requirement on a cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    /// No committed change missing at the target at quiesce.
    NoLoss,
    /// No change applied more than once.
    NoDuplicates,
    /// No welcome sent more than once.
    NoDuplicateEffects,
    /// An invariant never broke (its name, as `faultline list` gives it).
    Holds(&'static str),
    /// Staleness at a percentile (50, 99) or the worst (`None`) at most this many ms.
    /// Percentiles are read off the histogram, so a bound between two bucket bounds is
    /// judged against the upper one: conservatively.
    Staleness {
        /// 50 or 99, or `None` for the worst.
        percentile: Option<u8>,
        /// The bound in ms.
        at_most_ms: u64,
    },
    /// The worst recovery after the last heal at most this many ms.
    RecoveryMax {
        /// The bound in ms.
        at_most_ms: u64,
    },
    /// At least this share of the attempted actions did not fail because of the
    /// integration, in percent.
    Availability {
        /// The bound, 0 to 100.
        at_least_pct: f64,
    },
}

/// Shorter names teams write for invariants.
const ALIASES: [(&str, &[&str]); 2] = [
    ("atomic", &["atomic-actions"]),
    ("converges", &["convergence", "liveness"]),
];

/// What `--require` accepts, for error messages and help.
pub const VOCABULARY: &str = "no-loss, no-duplicates, no-duplicate-effects, atomic, converges, an invariant's name \
(convergence, monotonic, atomic-actions, referential, exactly-once-effects, bounded-staleness, liveness), \
staleness-p50<=D, staleness-p99<=D, staleness-max<=D, recovery-max<=D (D like 500ms or 2s), availability>=P% (P like 99.9)";

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::NoLoss => write!(f, "no-loss"),
            Requirement::NoDuplicates => write!(f, "no-duplicates"),
            Requirement::NoDuplicateEffects => write!(f, "no-duplicate-effects"),
            Requirement::Holds(invariant) => write!(f, "{invariant}"),
            Requirement::Staleness {
                percentile: Some(p),
                at_most_ms,
            } => write!(f, "staleness-p{p}<={at_most_ms}ms"),
            Requirement::Staleness {
                percentile: None,
                at_most_ms,
            } => write!(f, "staleness-max<={at_most_ms}ms"),
            Requirement::RecoveryMax { at_most_ms } => write!(f, "recovery-max<={at_most_ms}ms"),
            Requirement::Availability { at_least_pct } => write!(f, "availability>={at_least_pct}%"),
        }
    }
}

/// A duration: `500ms`, `2s`, `1.5s`.
fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse().ok();
    }
    let seconds: f64 = text.strip_suffix('s')?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

/// Parses one requirement.
pub fn parse_one(text: &str) -> Result<Vec<Requirement>, String> {
    let text = text.trim();
    let bad = |why: &str| format!("requirement {text:?} {why}; requirements are: {VOCABULARY}");
    if let Some((name, bound)) = text.split_once("<=") {
        let at_most_ms =
            duration_ms(bound).ok_or_else(|| bad("has no duration after <= (write 500ms or 2s)"))?;
        let requirement = match name.trim() {
            "staleness-p50" => Requirement::Staleness {
                percentile: Some(50),
                at_most_ms,
            },
            "staleness-p99" => Requirement::Staleness {
                percentile: Some(99),
                at_most_ms,
            },
            "staleness-max" => Requirement::Staleness {
                percentile: None,
                at_most_ms,
            },
            "recovery-max" => Requirement::RecoveryMax { at_most_ms },
            _ => return Err(bad("is not known")),
        };
        return Ok(vec![requirement]);
    }
    if let Some((name, bound)) = text.split_once(">=") {
        if name.trim() != "availability" {
            return Err(bad("is not known"));
        }
        let at_least_pct: f64 = bound
            .trim()
            .trim_end_matches('%')
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=100.0).contains(p))
            .ok_or_else(|| bad("needs a percentage from 0 to 100 after >= (write 99.9%)"))?;
        return Ok(vec![Requirement::Availability { at_least_pct }]);
    }
    match text {
        "no-loss" => return Ok(vec![Requirement::NoLoss]),
        "no-duplicates" => return Ok(vec![Requirement::NoDuplicates]),
        "no-duplicate-effects" => return Ok(vec![Requirement::NoDuplicateEffects]),
        _ => {}
    }
    if let Some((_, invariants)) = ALIASES.iter().find(|(alias, _)| *alias == text) {
        return Ok(invariants.iter().map(|i| Requirement::Holds(i)).collect());
    }
    match crate::INVARIANTS.iter().find(|i| i.name == text) {
        Some(info) => Ok(vec![Requirement::Holds(info.name)]),
        None => Err(bad("is not known")),
    }
}

/// Parses a comma-separated list (`no-loss,atomic,staleness-p99<=1s`), in canonical
/// form and without repeats.
pub fn parse(text: &str) -> Result<Vec<Requirement>, String> {
    let mut out: Vec<Requirement> = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        for r in parse_one(part)? {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no requirement given; requirements are: {VOCABULARY}"));
    }
    Ok(out)
}

/// How a cell stands against a set of requirements.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing {
    /// Every requirement held on every seed.
    Met,
    /// These did not, each with what was seen.
    Missed(Vec<String>),
    /// The cell cannot say: the variant cannot feel the faults, or runs failed
    /// without a verdict.
    Unknown(String),
}

impl Requirement {
    /// What the cell shows against this requirement, when it is not met.
    pub fn missed_by(&self, cell: &Cell) -> Option<String> {
        let share = |invariant: &str| (cell.share(invariant) * 100.0).ceil() as u64;
        let over = |seen: Option<u64>, at_most_ms: u64| seen.filter(|ms| *ms > at_most_ms);
        match self {
            Requirement::NoLoss => (cell.changes_lost > 0)
                .then(|| format!("{self} ({} lost per 1000 changes)", cell.lost_per_1000)),
            Requirement::NoDuplicates => {
                let d = &cell.duplicate_deliveries;
                let twice_or_more = d.twice + d.thrice + d.more;
                (twice_or_more > 0)
                    .then(|| format!("{self} ({twice_or_more} changes applied more than once)"))
            }
            Requirement::NoDuplicateEffects => {
                let d = &cell.duplicate_deliveries;
                (d.doubled_effects > 0).then(|| format!("{self} ({} doubled welcomes)", d.doubled_effects))
            }
            Requirement::Holds(invariant) => cell
                .seeds_by_invariant
                .contains_key(*invariant)
                .then(|| format!("{invariant} (broke on {}% of seeds)", share(invariant))),
            Requirement::Staleness {
                percentile,
                at_most_ms,
            } => {
                let seen = match percentile {
                    Some(p) => cell.staleness_percentile_ms(u64::from(*p)),
                    None => cell.staleness_ms.max,
                };
                let unseen = cell.never_visible > 0 && percentile.is_none();
                if unseen {
                    return Some(format!(
                        "{self} ({} committed versions never visible)",
                        cell.never_visible
                    ));
                }
                over(seen, *at_most_ms).map(|ms| match percentile {
                    Some(p) => format!("{self} (p{p} in the bucket up to {})", bound_text(ms)),
                    None => format!("{self} (saw {})", bound_text(ms)),
                })
            }
            Requirement::RecoveryMax { at_most_ms } => {
                over(cell.recovery_ms.max, *at_most_ms).map(|ms| format!("{self} (saw {ms} ms)"))
            }
            Requirement::Availability { at_least_pct } => {
                let seen = cell.availability() * 100.0;
                (seen < *at_least_pct).then(|| format!("{self} (saw {seen:.1}%)"))
            }
        }
    }
}

fn bound_text(ms: u64) -> String {
    if ms == u64::MAX {
        "over 10 s".to_string()
    } else {
        format!("{ms} ms")
    }
}

/// How `cell` stands against `requirements`.
pub fn standing(requirements: &[Requirement], cell: &Cell) -> Standing {
    if !cell.applicable {
        return Standing::Unknown("n/a: the variant cannot feel these faults".to_string());
    }
    if cell.runs_failed > 0 {
        return Standing::Unknown(format!("{} run(s) failed without a verdict", cell.runs_failed));
    }
    let missed: Vec<String> = requirements.iter().filter_map(|r| r.missed_by(cell)).collect();
    if missed.is_empty() {
        Standing::Met
    } else {
        Standing::Missed(missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_parse_to_their_canonical_form() {
        let parsed =
            parse("no-loss, atomic,staleness-p99<=1s,availability>=99.5%,converges,no-loss").unwrap();
        let names: Vec<String> = parsed.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            names,
            [
                "no-loss",
                "atomic-actions",
                "staleness-p99<=1000ms",
                "availability>=99.5%",
                "convergence",
                "liveness"
            ]
        );
        // The canonical form reads back to the same requirements.
        assert_eq!(parse(&names.join(",")).unwrap(), parsed);
    }

    #[test]
    fn unknown_requirements_and_bad_bounds_name_the_vocabulary() {
        for (text, why) in [
            ("fast", "is not known"),
            ("staleness-p99<=soon", "has no duration"),
            ("availability>=120%", "needs a percentage"),
            ("latency<=1s", "is not known"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(
                error.contains(why) && error.contains("no-duplicate-effects"),
                "{error}"
            );
        }
        assert!(parse(" , ").unwrap_err().contains("no requirement given"));
    }
}

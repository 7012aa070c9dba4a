//! The lineage of one entity: its journey across the systems, from the source's commit
//! through the wire and the broker to the target's applies, recoveries and welcomes,
//! with the faults in between. Built from a counterexample's story events
//! ([`crate::compare::Counterexample::events`]), for `repro` and the reports.

use serde::Serialize;

use crate::compare::{names, StoryEvent};

/// A detail cut to `max` characters, for tables (a batch names every key it carries).
pub fn shortened(detail: &str, max: usize) -> String {
    match detail.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &detail[..at]),
        None => detail.to_string(),
    }
}

/// One step of an entity's journey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// When, in microseconds.
    pub at_us: u64,
    /// Where.
    pub host: String,
    /// What happened to the entity, in a few words.
    pub stage: &'static str,
    /// The trace event's detail.
    pub detail: String,
}

/// What a trace event did to the entity.
fn stage(kind: &str, detail: &str) -> &'static str {
    let message = |d: &str| {
        if d.contains(" produce ") {
            "publish"
        } else if d.contains(" welcome ") {
            "welcome"
        } else if d.contains(" GET ") {
            "read"
        } else {
            "write"
        }
    };
    match (kind, message(detail)) {
        ("commit", _) => "committed at the source",
        ("fault", _) => "fault",
        ("crash", _) => "crashed",
        ("restart", _) => "restarted",
        ("apply", _) => "applied at the target",
        ("target-recovered", _) => "target recovered",
        ("welcome", _) => "welcomed",
        ("send", "publish") => "published",
        ("send", "welcome") => "welcome sent",
        ("send", "read") => "read requested",
        ("send", _) => "sent to the target",
        ("deliver", "publish") => "reached the broker",
        ("deliver", "welcome") => "reached the notifier",
        ("deliver", "read") => "read reached the source",
        ("deliver", _) => "reached the target",
        ("response", _) => "answered",
        ("timeout", _) => "timed out",
        ("drop", _) => "lost on the wire",
        ("lost-response", _) => "response lost",
        ("late-arrival", _) => "arrived after its caller gave up",
        ("delay", _) => "held on the wire",
        ("duplicate", _) => "duplicated",
        ("gave-up", _) => "given up",
        ("publish-failed", _) => "publish failed",
        ("inbox-duplicate", _) => "skipped as a duplicate",
        _ => "other",
    }
}

/// The journey of `key` (`contact/235`) in `events`: from the first event naming the
/// row, every event naming it, the messages keyed by its customer (`key=235`), the RPC
/// events of those calls, and the faults. (Call ids restart with a process, so the
/// journey's start also keeps an earlier call of the same id out.)
pub fn lineage(events: &[StoryEvent], key: &str) -> Vec<Step> {
    let customer = key.rsplit('/').next().unwrap_or_default();
    let keyed = format!("key={customer}");
    let about = |e: &StoryEvent| names(&e.detail, key) || names(&e.detail, &keyed);
    let start = events.iter().position(about).unwrap_or(events.len());
    let events = &events[start..];
    let calls: std::collections::BTreeSet<(String, String)> = events
        .iter()
        .filter(|e| about(e))
        .filter_map(|e| crate::compare::call_key(&e.host, &e.kind, &e.detail))
        .collect();
    events
        .iter()
        .filter(|e| {
            matches!(e.kind.as_str(), "fault" | "crash" | "restart")
                || names(&e.detail, key)
                || names(&e.detail, &keyed)
                || crate::compare::call_key(&e.host, &e.kind, &e.detail).is_some_and(|k| calls.contains(&k))
        })
        .map(|e| Step {
            at_us: e.at_us,
            host: e.host.clone(),
            stage: stage(&e.kind, &e.detail),
            detail: e.detail.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: u64, host: &str, kind: &str, detail: &str) -> StoryEvent {
        StoryEvent {
            id: at_ms,
            at_us: at_ms * 1_000,
            host: host.to_string(),
            kind: kind.to_string(),
            detail: detail.to_string(),
        }
    }

    #[test]
    fn the_journey_keeps_the_row_its_messages_and_faults_and_drops_its_neighbours() {
        let events = vec![
            event(
                1,
                "source",
                "commit",
                "tx7 action=6 contact/235 v2, address/235 v2",
            ),
            event(
                2,
                "source",
                "send",
                "call=0.4 to=broker produce customer-entities/3 n=2 key=235 key=235",
            ),
            event(
                3,
                "broker",
                "deliver",
                "call=0.4 from=source produce customer-entities/3 n=2 key=235 key=235",
            ),
            event(4, "source", "response", "call=0.4 produced @12"),
            event(5, "target", "apply", "address/235 v2"),
            event(6, "target", "apply", "contact/2351 v1"),
            event(7, "world", "fault", "power-loss target"),
            event(8, "target", "apply", "contact/235 v2"),
        ];
        let steps = lineage(&events, "contact/235");
        let stages: Vec<&str> = steps.iter().map(|s| s.stage).collect();
        assert_eq!(
            stages,
            [
                "committed at the source",
                "published",
                "reached the broker",
                "answered",
                "fault",
                "applied at the target"
            ]
        );
    }
}

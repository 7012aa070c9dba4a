//! A counterexample as a Mermaid sequence diagram: hosts as participants, delivered
//! requests and responses as arrows, lost ones as crossed arrows, commits, applies and
//! faults as notes.

use std::fmt::Write as _;

use faultline_scenarios::compare::{call_key, Counterexample, StoryEvent};

/// Longest label shown on an arrow or a note.
const LABEL_CHARS_MAX: usize = 64;

/// Mermaid treats `;` as a line break and `#` as an entity start; keep labels plain.
fn label(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if matches!(c, ';' | '#' | '\n') { ',' } else { c })
        .collect();
    if clean.chars().count() > LABEL_CHARS_MAX {
        format!("{}…", clean.chars().take(LABEL_CHARS_MAX).collect::<String>())
    } else {
        clean
    }
}

/// What follows `call=ID to=X ` / `call=ID from=X ` / `call=ID `.
fn message_text(detail: &str) -> &str {
    let rest = detail
        .strip_prefix("call=")
        .map_or(detail, |r| r.split_once(' ').map_or("", |(_, r)| r));
    match rest.split_once(' ') {
        Some((first, tail)) if first.starts_with("to=") || first.starts_with("from=") => tail,
        _ => rest,
    }
}

fn field<'a>(detail: &'a str, name: &str) -> Option<&'a str> {
    detail.split(' ').find_map(|w| w.strip_prefix(name))
}

/// The participants in a fixed, readable order: source side left, target side right,
/// the brokers (`broker-1`..) between them in number order.
fn participants(events: &[StoryEvent]) -> Vec<String> {
    const ORDER: [&str; 4] = ["source", "connector", "broker", "target"];
    let mut hosts: Vec<String> = Vec::new();
    for place in ORDER {
        let mut here: Vec<String> = events
            .iter()
            .map(|e| e.host.clone())
            .filter(|h| h == place || h.strip_prefix(place).is_some_and(|n| n.starts_with('-')))
            .collect();
        here.sort();
        here.dedup();
        hosts.extend(here);
    }
    for e in events {
        if e.host != "world" && !hosts.contains(&e.host) {
            hosts.push(e.host.clone());
        }
    }
    hosts
}

/// Renders the diagram (without the surrounding code fence).
pub fn render(example: &Counterexample) -> String {
    let events = &example.events;
    let hosts = participants(events);
    let mut out = String::from("sequenceDiagram\n");
    for h in &hosts {
        let _ = writeln!(out, "    participant {h}");
    }
    let everyone = match (hosts.first(), hosts.last()) {
        (Some(a), Some(b)) if a != b => format!("{a},{b}"),
        (Some(a), _) => a.clone(),
        _ => return out,
    };
    for e in events {
        let ms = e.at_us / 1_000;
        match e.kind.as_str() {
            "deliver" => {
                if let Some(from) = field(&e.detail, "from=") {
                    let _ = writeln!(
                        out,
                        "    {from}->>{}: {ms}ms {}",
                        e.host,
                        label(message_text(&e.detail))
                    );
                }
            }
            "response" => {
                let server = events
                    .iter()
                    .find(|s| {
                        s.kind == "send"
                            && call_key(&s.host, &s.kind, &s.detail) == call_key(&e.host, &e.kind, &e.detail)
                    })
                    .and_then(|s| field(&s.detail, "to="));
                if let Some(server) = server {
                    let _ = writeln!(
                        out,
                        "    {server}-->>{}: {ms}ms {}",
                        e.host,
                        label(message_text(&e.detail))
                    );
                }
            }
            "drop" => {
                if let Some(to) = field(&e.detail, "to=") {
                    let _ = writeln!(
                        out,
                        "    {}-x{to}: {ms}ms LOST {}",
                        e.host,
                        label(message_text(&e.detail))
                    );
                }
            }
            "lost-response" => {
                if let Some(to) = field(&e.detail, "to=") {
                    let _ = writeln!(
                        out,
                        "    {}--x{to}: {ms}ms LOST reply {}",
                        e.host,
                        label(message_text(&e.detail))
                    );
                }
            }
            "timeout" | "call-error" => {
                // Drawn as the request that never got its answer, from its send.
                let key = call_key(&e.host, &e.kind, &e.detail);
                let send = events
                    .iter()
                    .find(|s| s.kind == "send" && call_key(&s.host, &s.kind, &s.detail) == key);
                match send.and_then(|s| field(&s.detail, "to=").map(|to| (s, to))) {
                    Some((s, to)) => {
                        let why = if e.kind == "timeout" {
                            "no answer"
                        } else {
                            "failed"
                        };
                        let _ = writeln!(
                            out,
                            "    {}-x{to}: {ms}ms {} ({why})",
                            e.host,
                            label(message_text(&s.detail))
                        );
                    }
                    None => {
                        let _ = writeln!(out, "    Note over {}: {ms}ms call {}", e.host, e.kind);
                    }
                }
            }
            "fault" => {
                let _ = writeln!(out, "    Note over {everyone}: {ms}ms FAULT {}", label(&e.detail));
            }
            "crash" | "restart" => {
                if hosts.contains(&e.host) {
                    let _ = writeln!(
                        out,
                        "    Note over {}: {ms}ms {} {}",
                        e.host,
                        e.kind.to_uppercase(),
                        label(&e.detail)
                    );
                }
            }
            "send" | "delay" | "duplicate" => {}
            other => {
                let _ = writeln!(
                    out,
                    "    Note over {}: {ms}ms {other} {}",
                    e.host,
                    label(&e.detail)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_scenarios::compare::FirstFailure;

    fn ev(host: &str, kind: &str, ms: u64, detail: &str) -> StoryEvent {
        StoryEvent {
            id: 0,
            at_us: ms * 1_000,
            host: host.into(),
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn requests_responses_losses_and_faults_become_arrows_and_notes() {
        let example = Counterexample {
            column: "crashes".into(),
            pattern: "push".into(),
            seed: 1,
            repro: String::new(),
            trace_hash: String::new(),
            faults: vec![],
            violation: FirstFailure {
                seed: 1,
                invariant: "convergence".into(),
                kind: "missing".into(),
                key: "customer/1".into(),
                at_ms: 5,
                story: String::new(),
            },
            events: vec![
                ev("source", "commit", 1, "tx1 action=0 customer/1 v1"),
                ev("source", "send", 1, "call=0.0 to=target PUT customer/1 v1"),
                ev("target", "deliver", 3, "call=0.0 from=source PUT customer/1 v1"),
                ev("target", "lost-response", 3, "call=0.0 to=source 200"),
                ev("world", "fault", 4, "crash source"),
                ev("source", "crash", 4, "process killed"),
                ev("source", "drop", 6, "call=0.1 to=target PUT customer/1 v2; #"),
            ],
        };
        let text = render(&example);
        assert_eq!(
            text,
            "sequenceDiagram\n    participant source\n    participant target\n    Note over source: 1ms commit tx1 action=0 customer/1 v1\n    source->>target: 3ms PUT customer/1 v1\n    target--xsource: 3ms LOST reply 200\n    Note over source,target: 4ms FAULT crash source\n    Note over source: 4ms CRASH process killed\n    source-xtarget: 6ms LOST PUT customer/1 v2, ,\n"
        );
    }
}

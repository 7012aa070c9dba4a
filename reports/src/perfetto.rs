//! A run's trace as Chrome trace-event JSON, which Perfetto's UI and chrome://tracing
//! open: one track per host, every event a short slice, faults as global instants, and
//! each RPC request drawn as a flow from its send to its delivery.

use std::collections::BTreeMap;

use faultline_scenarios::compare::call_key;
use faultline_sim::TraceEvent;
use serde_json::{json, Value};

/// Renders the events as a trace-event JSON document.
pub fn render(events: &[TraceEvent]) -> String {
    let mut tracks: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        let next = tracks.len() + 1;
        tracks.entry(&e.host).or_insert(next);
    }
    let mut out: Vec<Value> = tracks
        .iter()
        .map(|(host, tid)| json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": host}}))
        .collect();
    let mut flows: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in events {
        let tid = tracks[&*e.host];
        let ts = e.at.as_micros();
        if e.kind == "fault" {
            out.push(json!({"ph": "i", "s": "g", "name": format!("fault: {}", e.detail), "ts": ts, "pid": 1, "tid": tid}));
            continue;
        }
        out.push(json!({"ph": "X", "name": e.kind, "ts": ts, "dur": 1, "pid": 1, "tid": tid, "args": {"detail": e.detail, "id": e.id.0}}));
        match (e.kind, call_key(&e.host, e.kind, &e.detail)) {
            ("send", Some(key)) => {
                let id = flows.len() as u64 + 1;
                flows.insert(key, id);
                out.push(json!({"ph": "s", "name": "call", "cat": "rpc", "id": id, "ts": ts, "pid": 1, "tid": tid}));
            }
            ("deliver", Some(key)) => {
                if let Some(id) = flows.get(&key) {
                    out.push(json!({"ph": "f", "bp": "e", "name": "call", "cat": "rpc", "id": id, "ts": ts, "pid": 1, "tid": tid}));
                }
            }
            _ => {}
        }
    }
    serde_json::to_string(&json!({"traceEvents": out, "displayTimeUnit": "ms"}))
        .expect("json values serialise")
}

//! `faultline merge`: shard reports of one sweep into the report of the whole sweep.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use faultline::scenarios::compare::{merge, Comparison, SCHEMA_VERSION};

use super::exit;

/// A path given on the command line: a report.json, or a directory holding one.
fn report_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    }
}

pub fn merge_command(inputs: &[PathBuf], out: &Path) -> ExitCode {
    let mut reports = Vec::new();
    for input in inputs {
        let path = report_path(input);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(exit::BAD_INPUT);
            }
        };
        // The version first: a report from another version fails for that reason, not
        // for whichever field happens to differ.
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["schema_version"].as_u64());
        if let Some(version) = version.filter(|v| *v != u64::from(SCHEMA_VERSION)) {
            eprintln!(
                "error: {} has schema version {version}, this faultline reads {SCHEMA_VERSION}: merge with the version that wrote it",
                path.display()
            );
            return ExitCode::from(exit::BAD_INPUT);
        }
        match serde_json::from_str::<Comparison>(&text) {
            Ok(report) => reports.push((path.display().to_string(), report)),
            Err(e) => {
                eprintln!(
                    "error: {}:{}:{}: not a faultline report.json: {e}",
                    path.display(),
                    e.line(),
                    e.column()
                );
                return ExitCode::from(exit::BAD_INPUT);
            }
        }
    }
    let merged = match merge(reports) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::BAD_INPUT);
        }
    };
    match super::compare::write_reports(&merged, out) {
        code if code == ExitCode::from(exit::OK) => super::compare::failed_runs_exit(&merged),
        code => code,
    }
}

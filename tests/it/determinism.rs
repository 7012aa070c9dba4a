//! Determinism is the product: every variant replays bit for bit, on any thread, and a
//! golden file pins one trace hash per variant and profile so that any change in any
//! run's behaviour shows up as a failing test until it is explained and re-pinned.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use faultline::patterns::bugs::{BugSet, BUGS};
use faultline::patterns::{Variant, VARIANTS};
use faultline::scenarios::metrics::Metrics;
use faultline::scenarios::sweep::{default_jobs, sweep, sweep_fold};
use faultline::scenarios::{run, Outcome, RunOptions, RunSpec, Scenario};
use faultline::sim::{Ended, Profile, Seed, PROFILES};

use crate::run_seed;

/// Where the pinned hashes live, relative to the workspace root.
const GOLDEN: &str = "tests/it/golden/trace_hashes.txt";
/// The seed every pinned run uses.
const GOLDEN_SEED: u64 = 1;
/// Set to regenerate the golden file from this build.
const BLESS_VAR: &str = "FAULTLINE_BLESS";

#[test]
fn every_variant_replays_bit_for_bit_under_chaos_on_another_thread() {
    for variant in VARIANTS {
        let here = run_seed(variant.name, Profile::Chaos, 3);
        let name = variant.name;
        let there = std::thread::spawn(move || run_seed(name, Profile::Chaos, 3))
            .join()
            .expect("the run completes");
        assert_eq!(
            (here.trace_hash, &here.violations, here.metrics.applies),
            (there.trace_hash, &there.violations, there.metrics.applies),
            "{name} seed 3 under chaos is not deterministic"
        );
    }
}

/// Crossing idle stretches in one step is only a way of stepping: a run that steps
/// every tick must leave the same trace, for every variant, under faults (crashes
/// leave messages for stopped hosts, restarts start tasks, partitions hold links) and
/// without them.
#[test]
fn skipping_idle_stretches_leaves_every_variant_run_as_stepping_every_tick() {
    let every_tick = RunOptions {
        step_every_tick: true,
        ..RunOptions::default()
    };
    for variant in VARIANTS {
        for (profile, seed) in [(Profile::Chaos, 4), (Profile::None, 0)] {
            let spec = RunSpec::new(variant, Scenario::standard(), profile, Seed(seed));
            let skipping = run(&spec, RunOptions::default()).expect("the run completes");
            let stepping = run(&spec, every_tick).expect("the run completes");
            assert_eq!(
                (skipping.trace_hash, &skipping.violations, skipping.summary.end),
                (stepping.trace_hash, &stepping.violations, stepping.summary.end),
                "{} seed {seed} under {}: skipping idle stretches changed the run",
                variant.name,
                profile.name()
            );
            assert!(
                skipping.summary.steps < stepping.summary.steps,
                "{} under {}: no stretch was skipped",
                variant.name,
                profile.name()
            );
        }
    }
}

/// A run that can no longer progress ends where nothing can change any more, and is
/// judged as at its deadline: every verdict, anomaly, coverage count and metric must be
/// what running to the deadline gives (but the calls, which count only what was
/// simulated), and such a run must not have settled later. Every variant under every
/// profile, and every planted bug where it is planted (a defect must not hide work
/// from the probes either). `FAULTLINE_IDLE_SEEDS` widens the sweep (seeds per cell; 1
/// by default).
#[test]
fn ending_runs_that_cannot_progress_leaves_every_verdict_as_running_to_the_deadline() {
    let seeds: u64 = std::env::var("FAULTLINE_IDLE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let variants = VARIANTS.iter().flat_map(|v| {
        PROFILES.iter().flat_map(move |p| {
            (0..seeds).map(move |seed| RunSpec::new(v, Scenario::standard(), p.profile, Seed(seed)))
        })
    });
    // A bootstrap starts the target empty: the initial copy reports itself too.
    let bootstrap = Scenario {
        name: "bootstrap".to_string(),
        bootstrap: true,
        ..Scenario::standard()
    };
    let bootstraps = VARIANTS.iter().flat_map(|v| {
        let bootstrap = bootstrap.clone();
        (0..seeds).map(move |seed| RunSpec::new(v, bootstrap.clone(), Profile::Chaos, Seed(seed)))
    });
    let bugs = BUGS.iter().flat_map(|bug| {
        let variant = Variant::resolve(bug.variant, &[]).expect("the registry names real variants");
        let profile = Profile::from_name(bug.profile).expect("the registry names real profiles");
        (0..seeds).map(move |seed| RunSpec {
            bugs: BugSet::of(&[bug.bug]),
            ..RunSpec::new(variant, Scenario::standard(), profile, Seed(seed))
        })
    });
    let specs: Vec<RunSpec> = variants.chain(bootstraps).chain(bugs).collect();
    // Both runs keep their events: up to where the early one ended, they must be the
    // same run (a run to its deadline registers no probes, so this also shows that
    // reporting progress changes nothing).
    let early = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let to_deadline = RunOptions {
        keep_trace: true,
        run_to_deadline: true,
        ..RunOptions::default()
    };
    let mut differences = Vec::new();
    let mut ended_idle = 0;
    sweep_fold(
        specs.len(),
        default_jobs(),
        early,
        |i| specs[i].clone(),
        |spec, early| {
            // A planted bug may make a run fail (a panic, a runaway): the same either way.
            let (early, full) = match (early, run(spec, to_deadline)) {
                (Ok(early), Ok(full)) => (early, full),
                (Err(early), Err(full)) => {
                    let same = early.message == full.message;
                    return (
                        false,
                        (!same)
                            .then(|| format!("{} seed {}: failed differently", spec.variant.name, spec.seed)),
                    );
                }
                _ => {
                    return (
                        false,
                        Some(format!(
                            "{} seed {}: failed one way only",
                            spec.variant.name, spec.seed
                        )),
                    )
                }
            };
            let judged = |o: &Outcome| {
                let metrics = Metrics {
                    calls: 0,
                    calls_per_action: 0.0,
                    ..o.metrics.clone()
                };
                format!(
                    "{:?}",
                    (
                        &o.violations,
                        &o.unobserved,
                        &o.kafka_anomalies,
                        &o.coverage,
                        &o.causes,
                        metrics
                    )
                )
            };
            let idle = early.summary.ended == Ended::Idle;
            let prefix = full.trace.get(..early.trace.len()) == Some(&early.trace[..]);
            let differs = if !prefix {
                Some("its trace")
            } else if judged(&early) != judged(&full) {
                Some("its verdict")
            } else if idle && (full.summary.ended != Ended::Deadline || early.summary.end > full.summary.end)
            {
                Some("its end: it settled later")
            } else {
                None
            };
            let run = format!(
                "{} {} under {} seed {}",
                spec.scenario.name,
                spec.variant.name,
                spec.faults.name(),
                spec.seed
            );
            (idle, differs.map(|what| format!("{run}: {what}")))
        },
        |_, (idle, difference): (bool, Option<String>)| {
            ended_idle += usize::from(idle);
            differences.extend(difference);
        },
        |_| {},
        &AtomicBool::new(false),
    );
    assert!(
        differences.is_empty(),
        "ending early changed these runs:\n  {}",
        differences.join("\n  ")
    );
    // Runs that lose data under faults never converge: the sweep must contain some.
    assert!(ended_idle > 0, "no run ended early: the test compared nothing");
}

/// Keeping a run's events changes only what the run keeps: trace details written with
/// `record_fmt` are hashed as they are formatted when events are not kept, and must
/// hash as the kept text does.
#[test]
fn keeping_trace_events_leaves_every_variant_run_unchanged() {
    let keeping = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    for variant in VARIANTS {
        let spec = RunSpec::new(variant, Scenario::standard(), Profile::Chaos, Seed(5));
        let hashed = run(&spec, RunOptions::default()).expect("the run completes");
        let kept = run(&spec, keeping).expect("the run completes");
        assert_eq!(
            (hashed.trace_hash, &hashed.violations),
            (kept.trace_hash, &kept.violations),
            "{} seed 5 under chaos: keeping the trace changed the run",
            variant.name
        );
    }
}

/// A world that skips idle time enters a host's runtime only when the host has work,
/// and tokio reseeds its thread RNG at every entry: a fair `select!` (which draws from
/// it) would choose differently than in the run stepping every tick. Every `select!`
/// in the code that runs inside the world is therefore `biased;` (the rest of the rule
/// is in `clippy.toml`: no watch channels, no runtime-wide spawns).
#[test]
fn every_select_in_the_workspace_is_biased() {
    let files = sources(&[
        "sim/src",
        "patterns/src",
        "scenarios/src",
        "reports/src",
        "src",
        "examples",
    ]);
    assert!(files.len() > 20, "the scan found only {} files", files.len());
    let mut selects = 0;
    let mut fair = Vec::new();
    for source in &files {
        for (at, _) in source.text.match_indices("select! {") {
            selects += 1;
            let body = source.text[at + "select! {".len()..].trim_start();
            if !body.starts_with("biased;") {
                fair.push(source.place(at));
            }
        }
    }
    assert!(
        selects > 0,
        "no select! found: the scan looks in the wrong places"
    );
    assert!(fair.is_empty(), "select! without `biased;` at {fair:?}");
}

/// The wire encodes structs positionally: a field left out would shift every later
/// one. Every type that may travel on it (everything in `sim` and `patterns`) leaves
/// fields out of text only, through `faultline_sim::omit`, which writes them all while
/// a frame is encoded.
#[test]
fn every_skipped_field_in_the_simulated_systems_is_skipped_in_text_only() {
    let mut skips = 0;
    let mut positional_breakers = Vec::new();
    for source in &sources(&["sim/src", "patterns/src"]) {
        for (at, _) in source.text.match_indices("skip_serializing_if = \"") {
            skips += 1;
            let rest = &source.text[at + "skip_serializing_if = \"".len()..];
            let condition = &rest[..rest.find('"').unwrap_or(rest.len())];
            // omit.rs's own test names its functions unqualified.
            let in_text_only = condition.starts_with("faultline_sim::omit::")
                || (source.path.ends_with("sim/src/omit.rs") && !condition.contains("::"));
            if !in_text_only {
                positional_breakers.push(source.place(at));
            }
        }
        assert!(
            !source.text.contains("serde(skip_serializing)"),
            "{} skips a field everywhere, which no positional decoder can read back",
            source.path.display()
        );
    }
    assert!(
        skips > 0,
        "no skipped field found: the scan looks in the wrong places"
    );
    assert!(
        positional_breakers.is_empty(),
        "skip_serializing_if not through faultline_sim::omit at {positional_breakers:?}"
    );
}

/// A source file of the workspace and its text.
struct Source {
    path: std::path::PathBuf,
    text: String,
}

impl Source {
    /// `file:line` of byte `at`, relative to the workspace.
    fn place(&self, at: usize) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let line = self.text[..at].lines().count();
        format!(
            "{}:{line}",
            self.path.strip_prefix(root).unwrap_or(&self.path).display()
        )
    }
}

/// Every Rust file under the workspace's `dirs`, in path order.
fn sources(dirs: &[&str]) -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root.join(dir), &mut files);
    }
    files
        .into_iter()
        .map(|path| Source {
            text: std::fs::read_to_string(&path).expect("a source file reads"),
            path,
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.map(|e| e.expect("a directory entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `variant profile seed` → trace hash, for every variant under every profile.
fn current_hashes() -> BTreeMap<String, String> {
    let specs: Vec<RunSpec> = VARIANTS
        .iter()
        .flat_map(|v| {
            PROFILES
                .iter()
                .map(move |p| RunSpec::new(v, Scenario::standard(), p.profile, Seed(GOLDEN_SEED)))
        })
        .collect();
    let results = sweep(
        &specs,
        default_jobs(),
        |spec, outcome| {
            let hash = match outcome {
                Ok(o) => o.trace_hash.to_string(),
                Err(failure) => format!("failed: {failure}"),
            };
            (
                format!("{} {} {}", spec.variant.name, spec.faults.name(), spec.seed.0),
                hash,
            )
        },
        |_| {},
        &AtomicBool::new(false),
    );
    results
        .into_iter()
        .map(|r| r.expect("every run was done"))
        .collect()
}

#[test]
fn golden_trace_hashes_pin_every_variant_under_every_profile() {
    let current = current_hashes();
    let text: String = current
        .iter()
        .map(|(run, hash)| format!("{run} {hash}\n"))
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os(BLESS_VAR).is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    let pinned: BTreeMap<String, String> = pinned
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(run, hash)| (run.to_string(), hash.to_string()))
        .collect();
    let changed: Vec<String> = current
        .iter()
        .filter(|(run, hash)| pinned.get(*run) != Some(*hash))
        .map(|(run, hash)| {
            format!(
                "  {run}: pinned {}, now {hash}",
                pinned.get(run).map_or("nothing", String::as_str)
            )
        })
        .chain(
            pinned
                .keys()
                .filter(|run| !current.contains_key(*run))
                .map(|run| format!("  {run}: pinned, no longer run")),
        )
        .collect();
    assert!(
        changed.is_empty(),
        "trace hashes changed: these runs behave differently from when {GOLDEN} was written:\n{}\n\
         If the change is intended, explain it in the commit and regenerate the file:\n  \
         {BLESS_VAR}=1 cargo test --test it golden_trace_hashes",
        changed.join("\n")
    );
}

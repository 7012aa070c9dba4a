//! Fault profiles: named recipes that turn a seed into a [`FaultPlan`].
//!
//! A profile is a mix of fault kinds, each with an intensity (how often episodes start
//! and how long they last). Every episode is a pair of events, the fault and its heal,
//! and every episode ends by the end of the fault window, so a generated plan always
//! leaves the world whole before the quiesce window. Each kind and each target draws
//! from its own named stream: adding a host does not move another host's faults.
//!
//! Draws use integer arithmetic only; floating-point functions such as `ln` come from
//! the platform's libm and could differ between machines.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::disk::DiskFaultKind;
use crate::fault::{Fault, FaultEvent, FaultPlan, MessageFaultRates};
use crate::rng::{RngStreams, SimRng};
use crate::time::SimTime;

/// A named fault profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// No faults at all.
    None,
    /// Message loss, lost responses, duplicates and delays in windows.
    FlakyNet,
    /// Link partitions (two-way and one-way), holds and host pauses.
    Partitions,
    /// Process crashes and power losses, each followed by a restart.
    Crashes,
    /// Disk write errors, sync errors, disk-full windows, and power losses.
    Storage,
    /// Clock skew and drift steps.
    ClockSkew,
    /// Deploys of the hosts that handle inputs, one in two shipping a defect that the
    /// next deploy fixes: poison inputs, and the restarts deploys are; and rolling
    /// restarts of clusters, one member at a time.
    Ops,
    /// Every kind at once, at moderate rates.
    Chaos,
    /// Swarm testing: the seed draws which kinds are on and how hard.
    Swarm,
}

/// A profile's name and a one-line description, for `faultline list`.
pub struct ProfileInfo {
    /// The profile.
    pub profile: Profile,
    /// Its CLI name.
    pub name: &'static str,
    /// What it does, in one line.
    pub description: &'static str,
}

/// Every profile, in the order `faultline list` shows them.
pub const PROFILES: &[ProfileInfo] = &[
    ProfileInfo {
        profile: Profile::None,
        name: "none",
        description: "no faults: a fault-free world",
    },
    ProfileInfo {
        profile: Profile::FlakyNet,
        name: "flaky-net",
        description: "windows of lost requests, lost responses, duplicates and delays",
    },
    ProfileInfo {
        profile: Profile::Partitions,
        name: "partitions",
        description: "two-way and one-way partitions, held links and paused hosts",
    },
    ProfileInfo {
        profile: Profile::Crashes,
        name: "crashes",
        description: "process crashes and power losses, each followed by a restart",
    },
    ProfileInfo {
        profile: Profile::Storage,
        name: "storage",
        description: "disk write errors, sync errors, disk full, and power losses that tear unsynced writes",
    },
    ProfileInfo {
        profile: Profile::ClockSkew,
        name: "clock-skew",
        description: "per-host clock skew and drift steps",
    },
    ProfileInfo {
        profile: Profile::Ops,
        name: "ops",
        description: "deploys of the sink, each a stop and a restart; one in two ships a handler defect (poison records) that the next fixes; rolling restarts of the broker cluster",
    },
    ProfileInfo {
        profile: Profile::Chaos,
        name: "chaos",
        description: "every fault kind at once, at moderate rates",
    },
    ProfileInfo {
        profile: Profile::Swarm,
        name: "swarm",
        description: "swarm testing: each seed draws which fault kinds are on and at what rates",
    },
];

impl Profile {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        PROFILES
            .iter()
            .find(|p| p.profile == self)
            .expect("every profile is listed")
            .name
    }

    /// The profile called `name`, if any.
    pub fn from_name(name: &str) -> Option<Profile> {
        PROFILES.iter().find(|p| p.name == name).map(|p| p.profile)
    }

    /// Every profile name, for error messages.
    pub fn names() -> Vec<&'static str> {
        PROFILES.iter().map(|p| p.name).collect()
    }

    /// The fault kinds this profile's plans may hold, in [`crate::FAULT_KINDS`] order
    /// (swarm: every kind it can draw).
    pub fn kinds(self) -> Vec<&'static str> {
        let mix = match self {
            Profile::Swarm => FaultMix::every_kind(),
            other => FaultMix::of(other),
        };
        let kinds = mix.kinds();
        crate::FAULT_KINDS
            .iter()
            .map(|k| k.name)
            .filter(|k| kinds.contains(k))
            .collect()
    }

    /// The fault plan this profile draws for `seed`.
    pub fn generate(self, streams: &RngStreams, targets: &[FaultTarget], window: FaultWindow) -> FaultPlan {
        let mix = match self {
            Profile::Swarm => FaultMix::swarm(&mut streams.stream("faults/swarm")),
            other => FaultMix::of(other),
        };
        mix.generate(streams, targets, window)
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A host that faults may hit, and which kinds make sense for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultTarget {
    /// The host's name in the world.
    pub name: String,
    /// Whether its process may be crashed or powered off.
    pub crashable: bool,
    /// Whether it keeps data on its disk (disk faults and power losses matter).
    pub has_disk: bool,
    /// Whether it handles inputs a deployed defect can fail (the sink of an
    /// integration): the `ops` profile deploys to it.
    pub handles_inputs: bool,
    /// The cluster it is a member of, if any: a rolling restart (`ops`) stops and
    /// restarts the members one at a time, in name order.
    pub cluster: Option<String>,
}

/// The part of a run in which faults may be active; all heal by `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    /// The earliest instant a fault starts.
    pub start: SimTime,
    /// The instant by which every fault has healed.
    pub end: SimTime,
}

/// How often episodes of one fault kind start and how long they last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Intensity {
    /// Mean gap between the end of one episode and the start of the next, per target.
    mean_gap_ms: u64,
    min_len_ms: u64,
    max_len_ms: u64,
}

impl Intensity {
    const fn new(mean_gap_ms: u64, min_len_ms: u64, max_len_ms: u64) -> Self {
        Intensity {
            mean_gap_ms,
            min_len_ms,
            max_len_ms,
        }
    }

    /// The same kind at `pct` percent of its rate (gaps scaled inversely).
    fn rate_pct(self, pct: u64) -> Self {
        Intensity {
            mean_gap_ms: (self.mean_gap_ms * 100 / pct.max(1)).max(1),
            ..self
        }
    }

    /// Non-overlapping episodes inside the window, each `[start, end)`.
    fn episodes(self, rng: &mut SimRng, window: FaultWindow) -> Vec<(SimTime, SimTime)> {
        let mut out = Vec::new();
        let end_ms = window.end.as_millis();
        // A random phase for the first episode, so that rare kinds still land in short
        // windows; later gaps are drawn around the mean.
        let mut t = window.start.as_millis() + rng.gen_range(0..=self.mean_gap_ms);
        while t + self.min_len_ms <= end_ms {
            let len = rng.gen_range(self.min_len_ms..=self.max_len_ms);
            let stop = (t + len).min(end_ms);
            out.push((SimTime::from_millis(t), SimTime::from_millis(stop)));
            t = stop + gap(rng, self.mean_gap_ms);
        }
        out
    }
}

/// A gap drawn uniformly from half to one and a half times the mean.
fn gap(rng: &mut SimRng, mean_ms: u64) -> u64 {
    rng.gen_range(mean_ms / 2..=mean_ms + mean_ms / 2).max(1)
}

/// Which fault kinds are on, and how hard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FaultMix {
    message: Option<Intensity>,
    links: Option<Intensity>,
    pauses: Option<Intensity>,
    crashes: Option<Intensity>,
    /// Share of crash episodes that are power losses, in percent.
    power_loss_pct: u32,
    /// Crash only hosts with a disk (storage faults care for nothing else).
    crash_disk_hosts_only: bool,
    disk: Option<Intensity>,
    clock: Option<Intensity>,
    /// Deploys: each episode is a defective release, live until the next deploy.
    deploys: Option<Intensity>,
    /// Rolling restarts of each cluster: how often one starts (the mean gap only).
    rolls: Option<Intensity>,
    /// Purges of a cluster member's disk by its operators (retention cut short).
    purges: Option<Intensity>,
}

const MESSAGE: Intensity = Intensity::new(1_000, 200, 1_200);
/// One bad link (a congested route, a failing NIC) at a time, on top of `MESSAGE`: the
/// gap is for the whole world, spread over its directed links.
const LINK_MESSAGE: Intensity = Intensity::new(3_000, 200, 1_500);
const LINKS: Intensity = Intensity::new(2_500, 100, 1_500);
const PAUSES: Intensity = Intensity::new(4_000, 50, 600);
const CRASHES: Intensity = Intensity::new(2_000, 50, 800);
const DISK: Intensity = Intensity::new(2_000, 100, 800);
const CLOCK: Intensity = Intensity::new(2_000, 300, 2_000);
/// A defective release stays live 300 ms to 2 s (until the fix is out); one starts
/// every 3 s or so.
const DEPLOYS: Intensity = Intensity::new(3_000, 300, 2_000);
/// How long a deploy's restart keeps the process down.
const DEPLOY_DOWNTIME_MS: std::ops::RangeInclusive<u64> = 20..=100;
/// A rolling restart of a cluster starts within the first 1.5 s of the fault window
/// (a random phase), so one falls in a standard run; the next would start after its
/// end. Its length is its members' steps.
const ROLLS: Intensity = Intensity::new(1_500, 0, 0);
/// How long a rolling restart waits after a member's stop request before it kills the
/// process: time for a controlled shutdown (a broker hands its leaderships over).
const ROLL_STOP_GRACE_MS: u64 = 300;
/// How long it waits after a member is back before it stops the next: the operator's
/// wait for the member to catch up (Kafka's under-replicated partitions back to zero),
/// compressed like the sessions.
const ROLL_SETTLE_MS: u64 = 1_000;
/// An operator cuts a broker's retention to reclaim its disk for 0.5 to 3 s, every
/// 6 s or so per broker.
const PURGES: Intensity = Intensity::new(6_000, 500, 3_000);
/// How much data a purged member keeps: short enough to reach a reader that lags by a
/// few seconds (a consumer down, paused or blocked), never one that keeps up.
const PURGE_KEEP_MS: std::ops::RangeInclusive<u64> = 2_000..=5_000;
/// How long a deploy waits after its stop request (SIGTERM) before it kills the old
/// process: time for shutdown hooks (a consumer finishing its batch, committing and
/// leaving its group, which takes well under a second) in this simulation's
/// compressed time.
const DEPLOY_STOP_GRACE_MS: u64 = 100;

/// Message-fault rates for one episode: loss and lost responses in `loss_pct`,
/// duplicates in 0..=10%, delays in `delay_pct`, each delay up to a bound drawn from
/// `delay_max_ms` (drawn in that order).
fn draw_rates(
    rng: &mut SimRng,
    loss_pct: std::ops::RangeInclusive<i32>,
    delay_pct: std::ops::RangeInclusive<i32>,
    delay_max_ms: std::ops::RangeInclusive<u64>,
) -> MessageFaultRates {
    let mut pct = |range: std::ops::RangeInclusive<i32>| f64::from(rng.gen_range(range)) / 100.0;
    let loss = pct(loss_pct.clone());
    let lost_response = pct(loss_pct);
    let duplicate = pct(0..=10);
    let delay = pct(delay_pct);
    MessageFaultRates {
        loss,
        lost_response,
        duplicate,
        delay,
        delay_max_ms: rng.gen_range(delay_max_ms),
    }
}

impl FaultMix {
    fn of(profile: Profile) -> FaultMix {
        let none = FaultMix::default();
        match profile {
            Profile::None => none,
            Profile::FlakyNet => FaultMix {
                message: Some(MESSAGE),
                ..none
            },
            Profile::Partitions => FaultMix {
                links: Some(LINKS),
                pauses: Some(PAUSES),
                ..none
            },
            Profile::Crashes => FaultMix {
                crashes: Some(CRASHES),
                power_loss_pct: 30,
                ..none
            },
            Profile::Storage => FaultMix {
                disk: Some(DISK),
                crashes: Some(CRASHES.rate_pct(50)),
                power_loss_pct: 100,
                crash_disk_hosts_only: true,
                ..none
            },
            Profile::ClockSkew => FaultMix {
                clock: Some(CLOCK),
                ..none
            },
            Profile::Ops => FaultMix {
                deploys: Some(DEPLOYS),
                rolls: Some(ROLLS),
                ..none
            },
            Profile::Chaos => FaultMix {
                message: Some(MESSAGE.rate_pct(50)),
                links: Some(LINKS.rate_pct(50)),
                pauses: Some(PAUSES.rate_pct(50)),
                crashes: Some(CRASHES.rate_pct(50)),
                power_loss_pct: 30,
                disk: Some(DISK.rate_pct(50)),
                clock: Some(CLOCK.rate_pct(50)),
                crash_disk_hosts_only: false,
                deploys: Some(DEPLOYS.rate_pct(50)),
                rolls: Some(ROLLS.rate_pct(50)),
                purges: Some(PURGES.rate_pct(50)),
            },
            Profile::Swarm => unreachable!("swarm mixes are drawn, not fixed"),
        }
    }

    /// The kinds a plan drawn from this mix may hold.
    fn kinds(&self) -> std::collections::BTreeSet<&'static str> {
        let mut kinds = std::collections::BTreeSet::new();
        let mut on = |when: bool, names: &[&'static str]| {
            if when {
                kinds.extend(names);
            }
        };
        on(self.message.is_some(), &["message-faults", "link-message-faults"]);
        on(
            self.links.is_some(),
            &["partition", "partition-oneway", "heal", "hold", "release"],
        );
        on(self.pauses.is_some(), &["pause", "resume"]);
        if self.crashes.is_some() {
            on(true, &["restart"]);
            on(self.power_loss_pct < 100, &["crash"]);
            on(self.power_loss_pct > 0, &["power-loss"]);
        }
        on(self.disk.is_some(), &["disk-fault", "disk-heal"]);
        on(self.clock.is_some(), &["clock-skew"]);
        on(
            self.deploys.is_some(),
            &["stop", "crash", "restart", "defect", "defect-fixed"],
        );
        on(self.rolls.is_some(), &["stop", "crash", "restart"]);
        on(self.purges.is_some(), &["purge", "purge-lifted"]);
        kinds
    }

    /// Every kind swarm can turn on.
    fn every_kind() -> FaultMix {
        let on = Some(MESSAGE);
        FaultMix {
            message: on,
            links: on,
            pauses: on,
            crashes: on,
            power_loss_pct: 50,
            crash_disk_hosts_only: false,
            disk: on,
            clock: on,
            deploys: on,
            rolls: on,
            purges: on,
        }
    }

    /// Draws which kinds are on (each with even odds, at least one) and how often each
    /// fires (from a quarter to twice its base rate).
    fn swarm(rng: &mut SimRng) -> FaultMix {
        loop {
            let mut pick =
                |base: Intensity| rng.gen_bool(0.5).then(|| base.rate_pct(rng.gen_range(25..=200)));
            let mix = FaultMix {
                message: pick(MESSAGE),
                links: pick(LINKS),
                pauses: pick(PAUSES),
                crashes: pick(CRASHES),
                power_loss_pct: 0,
                crash_disk_hosts_only: false,
                disk: pick(DISK),
                clock: pick(CLOCK),
                deploys: pick(DEPLOYS),
                rolls: pick(ROLLS),
                purges: None,
            };
            let on = [
                mix.message,
                mix.links,
                mix.pauses,
                mix.crashes,
                mix.disk,
                mix.clock,
                mix.deploys,
                mix.rolls,
            ];
            if on.iter().any(Option::is_some) {
                let power_loss_pct = rng.gen_range(0..=100);
                // Drawn after the others, so that the kinds older than purges keep
                // each seed's draws.
                let purges = rng
                    .gen_bool(0.5)
                    .then(|| PURGES.rate_pct(rng.gen_range(25..=200)));
                return FaultMix {
                    power_loss_pct,
                    purges,
                    ..mix
                };
            }
        }
    }

    fn generate(&self, streams: &RngStreams, targets: &[FaultTarget], window: FaultWindow) -> FaultPlan {
        let mut events = Vec::new();
        let mut push = |at: SimTime, fault: Fault| events.push(FaultEvent { at, fault });

        if let Some(intensity) = self.message {
            let mut rng = streams.stream("faults/message");
            for (start, end) in intensity.episodes(&mut rng, window) {
                let rates = draw_rates(&mut rng, 0..=10, 0..=20, 5..=100);
                push(start, Fault::MessageFaults { rates });
                push(
                    end,
                    Fault::MessageFaults {
                        rates: MessageFaultRates::default(),
                    },
                );
            }
            // Bad links, each with its own stream so that adding a host does not move
            // the other links' episodes.
            let link_count = (targets.len() * targets.len().saturating_sub(1)).max(1) as u64;
            let per_link = Intensity {
                mean_gap_ms: LINK_MESSAGE.mean_gap_ms * link_count,
                ..LINK_MESSAGE
            };
            for from in targets {
                for to in targets.iter().filter(|t| t.name != from.name) {
                    let mut rng = streams.stream(&format!("faults/message/{}/{}", from.name, to.name));
                    for (start, end) in per_link.episodes(&mut rng, window) {
                        let rates = draw_rates(&mut rng, 5..=30, 10..=40, 20..=200);
                        let link = |rates| Fault::LinkMessageFaults {
                            from: from.name.clone(),
                            to: to.name.clone(),
                            rates,
                        };
                        push(start, link(rates));
                        push(end, link(MessageFaultRates::default()));
                    }
                }
            }
        }
        if let Some(intensity) = self.links {
            let pair_count = (targets.len() * targets.len().saturating_sub(1) / 2).max(1) as u64;
            let per_pair = Intensity {
                mean_gap_ms: intensity.mean_gap_ms * pair_count,
                ..intensity
            };
            for (i, a) in targets.iter().enumerate() {
                for b in &targets[i + 1..] {
                    let mut rng = streams.stream(&format!("faults/link/{}/{}", a.name, b.name));
                    for (start, end) in per_pair.episodes(&mut rng, window) {
                        let (a, b) = (a.name.clone(), b.name.clone());
                        let (on, off) = match rng.gen_range(0..10) {
                            0..=4 => (
                                Fault::Partition {
                                    a: a.clone(),
                                    b: b.clone(),
                                },
                                Fault::Heal { a, b },
                            ),
                            5..=7 => {
                                let (from, to) = if rng.gen_bool(0.5) {
                                    (a.clone(), b.clone())
                                } else {
                                    (b.clone(), a.clone())
                                };
                                (Fault::PartitionOneway { from, to }, Fault::Heal { a, b })
                            }
                            _ => (
                                Fault::Hold {
                                    a: a.clone(),
                                    b: b.clone(),
                                },
                                Fault::Release { a, b },
                            ),
                        };
                        push(start, on);
                        push(end, off);
                    }
                }
            }
        }
        // When each host is down for a crash episode: deploys and rolls keep out of them.
        let mut down_by_host: BTreeMap<&str, Vec<(SimTime, SimTime)>> = BTreeMap::new();
        for target in targets {
            let host = || target.name.clone();
            if let Some(intensity) = self.pauses {
                let mut rng = streams.stream(&format!("faults/pause/{}", target.name));
                for (start, end) in intensity.episodes(&mut rng, window) {
                    push(start, Fault::Pause { host: host() });
                    push(end, Fault::Resume { host: host() });
                }
            }
            let crashable = target.crashable && (target.has_disk || !self.crash_disk_hosts_only);
            // When the host is down for a crash episode: deploys keep out of them.
            let mut down: Vec<(SimTime, SimTime)> = Vec::new();
            if let (Some(intensity), true) = (self.crashes, crashable) {
                let mut rng = streams.stream(&format!("faults/crash/{}", target.name));
                for (start, end) in intensity.episodes(&mut rng, window) {
                    down.push((start, end));
                    let power_loss = target.has_disk && rng.gen_range(0..100) < self.power_loss_pct;
                    push(
                        start,
                        if power_loss {
                            Fault::PowerLoss { host: host() }
                        } else {
                            Fault::Crash { host: host() }
                        },
                    );
                    push(end, Fault::Restart { host: host() });
                }
            }
            if let (Some(intensity), true) = (self.disk, target.has_disk) {
                let mut rng = streams.stream(&format!("faults/disk/{}", target.name));
                for (start, end) in intensity.episodes(&mut rng, window) {
                    // Draws are fixed-width: a usize draw differs on 32-bit targets.
                    let kind = [
                        DiskFaultKind::WriteError,
                        DiskFaultKind::SyncError,
                        DiskFaultKind::Full,
                    ][rng.gen_range(0..3u32) as usize];
                    push(start, Fault::DiskFault { host: host(), kind });
                    push(end, Fault::DiskHeal { host: host(), kind });
                }
            }
            if let (Some(intensity), true) = (self.deploys, target.handles_inputs) {
                // A deploy is a restart with the new release: the defective one at the
                // episode's start, the fix at its end (both done by the window's end).
                let mut rng = streams.stream(&format!("faults/deploy/{}", target.name));
                let grace = Duration::from_millis(DEPLOY_STOP_GRACE_MS);
                let window = FaultWindow {
                    end: window.end - grace - Duration::from_millis(*DEPLOY_DOWNTIME_MS.end()),
                    ..window
                };
                for (start, end) in intensity.episodes(&mut rng, window) {
                    let deploys = [
                        (start, Fault::Defect { host: host() }),
                        (end, Fault::DefectFixed { host: host() }),
                    ]
                    .map(|(at, release)| {
                        let downtime = Duration::from_millis(rng.gen_range(DEPLOY_DOWNTIME_MS));
                        (at, at + grace + downtime, release)
                    });
                    // A deploy needs the host up: an episode meeting a crash is dropped
                    // whole, so no defect stays unfixed.
                    let meets_a_crash = deploys
                        .iter()
                        .any(|(from, to, _)| down.iter().any(|(d0, d1)| from <= d1 && d0 <= to));
                    if meets_a_crash {
                        continue;
                    }
                    for (at, restart_at, release) in deploys {
                        push(at, Fault::Stop { host: host() });
                        push(at + grace, Fault::Crash { host: host() });
                        push(at + grace, release);
                        push(restart_at, Fault::Restart { host: host() });
                    }
                }
            }
            down_by_host.insert(&target.name, down.clone());
            if let Some(intensity) = self.clock {
                let mut rng = streams.stream(&format!("faults/clock/{}", target.name));
                for (start, end) in intensity.episodes(&mut rng, window) {
                    let magnitude = rng.gen_range(5..=2_000);
                    let skew_ms = if rng.gen_bool(0.5) { magnitude } else { -magnitude };
                    let drift_ppm = rng.gen_range(-200..=200);
                    push(
                        start,
                        Fault::ClockSkew {
                            host: host(),
                            skew_ms,
                            drift_ppm,
                        },
                    );
                    push(
                        end,
                        Fault::ClockSkew {
                            host: host(),
                            skew_ms: 0,
                            drift_ppm: 0,
                        },
                    );
                }
            }
        }
        if let Some(intensity) = self.rolls {
            for (cluster, members) in clusters(targets) {
                let mut rng = streams.stream(&format!("faults/roll/{cluster}"));
                let grace = Duration::from_millis(ROLL_STOP_GRACE_MS);
                let step = grace + Duration::from_millis(*DEPLOY_DOWNTIME_MS.end() + ROLL_SETTLE_MS);
                let length = step.as_millis() as u64 * members.len() as u64;
                let whole = Intensity::new(intensity.mean_gap_ms, length, length);
                for (start, _) in whole.episodes(&mut rng, window) {
                    // Each member in turn: stop, kill after the grace, restart, and a
                    // wait before the next.
                    let steps: Vec<(&str, SimTime, SimTime)> = members
                        .iter()
                        .enumerate()
                        .map(|(i, member)| {
                            let at = start + step * i as u32;
                            let downtime = Duration::from_millis(rng.gen_range(DEPLOY_DOWNTIME_MS));
                            (member.as_str(), at, at + grace + downtime)
                        })
                        .collect();
                    // A member must be up for its turn: a roll meeting a crash is dropped
                    // whole.
                    let meets_a_crash = steps.iter().any(|(member, from, to)| {
                        down_by_host
                            .get(member)
                            .is_some_and(|down| down.iter().any(|(d0, d1)| from <= d1 && d0 <= to))
                    });
                    if meets_a_crash {
                        continue;
                    }
                    for (member, at, restart_at) in steps {
                        push(
                            at,
                            Fault::Stop {
                                host: member.to_string(),
                            },
                        );
                        push(
                            at + grace,
                            Fault::Crash {
                                host: member.to_string(),
                            },
                        );
                        push(
                            restart_at,
                            Fault::Restart {
                                host: member.to_string(),
                            },
                        );
                    }
                }
            }
        }
        if let Some(intensity) = self.purges {
            for target in targets.iter().filter(|t| t.cluster.is_some() && t.has_disk) {
                let mut rng = streams.stream(&format!("faults/purge/{}", target.name));
                for (start, end) in intensity.episodes(&mut rng, window) {
                    let keep_ms = rng.gen_range(PURGE_KEEP_MS);
                    let host = target.name.clone();
                    push(start, Fault::Purge { host, keep_ms });
                    push(
                        end,
                        Fault::PurgeLifted {
                            host: target.name.clone(),
                        },
                    );
                }
            }
        }
        FaultPlan::from_events(events)
    }
}

/// The clusters among `targets` and their crashable members, in name order.
fn clusters(targets: &[FaultTarget]) -> BTreeMap<&str, Vec<String>> {
    let mut clusters: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for target in targets.iter().filter(|t| t.crashable) {
        if let Some(cluster) = &target.cluster {
            clusters.entry(cluster).or_default().push(target.name.clone());
        }
    }
    for members in clusters.values_mut() {
        members.sort();
    }
    clusters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Seed;

    fn targets() -> Vec<FaultTarget> {
        vec![
            FaultTarget {
                name: "a".into(),
                crashable: true,
                has_disk: true,
                handles_inputs: true,
                cluster: None,
            },
            FaultTarget {
                name: "b".into(),
                crashable: true,
                has_disk: false,
                handles_inputs: false,
                cluster: Some("k".into()),
            },
            FaultTarget {
                name: "c".into(),
                crashable: false,
                has_disk: true,
                handles_inputs: false,
                cluster: None,
            },
            FaultTarget {
                name: "d".into(),
                crashable: true,
                has_disk: true,
                handles_inputs: false,
                cluster: Some("k".into()),
            },
        ]
    }

    const WINDOW: FaultWindow = FaultWindow {
        start: SimTime::from_millis(500),
        end: SimTime::from_millis(8_000),
    };

    fn plan(profile: Profile, seed: u64) -> FaultPlan {
        profile.generate(&RngStreams::new(Seed(seed)), &targets(), WINDOW)
    }

    #[test]
    fn every_generated_plan_is_valid_stays_in_its_window_and_heals_everything() {
        for info in PROFILES {
            for seed in 0..100 {
                let p = plan(info.profile, seed);
                p.validate(&["a", "b", "c", "d"], WINDOW.end)
                    .unwrap_or_else(|e| panic!("{} seed {seed}: {e}\n{p}", info.name));
                assert!(
                    p.unhealed().is_empty(),
                    "{} seed {seed} leaves {:?}",
                    info.name,
                    p.unhealed()
                );
                assert!(p
                    .events
                    .iter()
                    .all(|e| e.at >= WINDOW.start && e.at <= WINDOW.end));
            }
        }
    }

    #[test]
    fn profiles_produce_their_kinds_and_only_those() {
        let kinds = |profile: Profile| -> std::collections::BTreeSet<&'static str> {
            (0..50)
                .flat_map(|s| plan(profile, s).events)
                .map(|e| e.fault.kind_name())
                .collect()
        };
        // What each profile says it draws is what fifty of its plans hold.
        for info in PROFILES.iter().filter(|p| p.profile != Profile::Swarm) {
            assert_eq!(
                kinds(info.profile).into_iter().collect::<Vec<_>>(),
                {
                    let mut said = info.profile.kinds();
                    said.sort();
                    said
                },
                "{}",
                info.name
            );
        }
        assert!(kinds(Profile::None).is_empty());
        assert_eq!(
            kinds(Profile::Ops).into_iter().collect::<Vec<_>>(),
            ["crash", "defect", "defect-fixed", "restart", "stop"]
        );
        let storage = kinds(Profile::Storage);
        assert!(
            storage.contains("disk-fault") && storage.contains("power-loss") && !storage.contains("crash")
        );
        assert_eq!(
            Profile::Chaos.kinds().len(),
            crate::FAULT_KINDS.len(),
            "chaos uses every kind"
        );
        assert_eq!(Profile::Swarm.kinds().len(), crate::FAULT_KINDS.len());
        let swarm = kinds(Profile::Swarm);
        assert!(swarm.contains("purge") && swarm.iter().all(|k| Profile::Swarm.kinds().contains(k)));
    }

    #[test]
    fn a_rolling_restart_takes_a_clusters_members_down_one_at_a_time_after_a_stop() {
        let mut rolled = 0;
        for seed in 0..50 {
            let mut down: std::collections::BTreeSet<String> = Default::default();
            let mut stopped: BTreeMap<String, SimTime> = BTreeMap::new();
            for e in plan(Profile::Ops, seed).events {
                match &e.fault {
                    Fault::Stop { host } => {
                        stopped.insert(host.clone(), e.at);
                    }
                    Fault::Crash { host } if host == "b" || host == "d" => {
                        let asked = stopped
                            .remove(host)
                            .expect("a member is stopped before it is killed");
                        assert_eq!(
                            e.at.saturating_since(asked),
                            Duration::from_millis(ROLL_STOP_GRACE_MS)
                        );
                        down.insert(host.clone());
                        assert_eq!(down.len(), 1, "seed {seed}: two members down at once");
                    }
                    Fault::Restart { host } if host == "b" || host == "d" => {
                        down.remove(host);
                        rolled += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(
            rolled >= 50,
            "ops rolls the cluster in most runs: {rolled} member restarts"
        );
    }

    #[test]
    fn only_crashable_hosts_crash_and_only_disk_hosts_get_disk_faults() {
        for seed in 0..50 {
            for e in plan(Profile::Chaos, seed).events {
                match &e.fault {
                    Fault::Crash { host } | Fault::PowerLoss { host } => assert_ne!(host, "c"),
                    Fault::DiskFault { host, .. } => assert_ne!(host, "b"),
                    // Only a cluster member with a disk has data its operators purge.
                    Fault::Purge { host, .. } => assert_eq!(host, "d"),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn swarm_draws_different_fault_kinds_per_seed() {
        let mixes: std::collections::BTreeSet<Vec<&str>> = (0..30)
            .map(|s| {
                let mut kinds: Vec<_> = plan(Profile::Swarm, s)
                    .events
                    .iter()
                    .map(|e| e.fault.kind_name())
                    .collect();
                kinds.sort();
                kinds.dedup();
                kinds
            })
            .collect();
        assert!(mixes.len() >= 10, "only {} distinct swarm mixes", mixes.len());
    }

    #[test]
    fn same_seed_same_plan_different_seed_different_plan() {
        assert_eq!(plan(Profile::Chaos, 3), plan(Profile::Chaos, 3));
        assert_ne!(plan(Profile::Chaos, 3), plan(Profile::Chaos, 4));
    }

    #[test]
    fn names_round_trip() {
        for info in PROFILES {
            assert_eq!(Profile::from_name(info.name), Some(info.profile));
            assert_eq!(info.profile.name(), info.name);
        }
        assert_eq!(Profile::from_name("bogus"), None);
    }
}

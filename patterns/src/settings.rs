//! Settings: every design choice of the patterns' shared parts, by the name the real
//! system gives it, with its valid values. A variant is a preset (see [`crate::variants`])
//! with some settings overridden, from a suite's `[[variant]]` or `--set key=value`.
//!
//! A setting names a field of a pattern's configuration; it applies to a variant when
//! the variant's pattern has that field. Values are checked against the setting's range
//! or words before a run, so nothing half-valid reaches the world.

use std::fmt;

use crate::cdc::{CdcApply, SnapshotMode};
use crate::consumer::{CommitPoint, ConsumerConfig, ErrorPolicy, OffsetReset};
use crate::outbox::{RelayCursor, RelaySource};
use crate::queue::PublishPoint;
use crate::retry_queue::RetryPolicy;
use crate::systems::broker::{
    Acks, ClusterConfig, ProducerConfig, BROKER_HOSTS, FETCH_WAIT_MAX_MS, MAX_IN_FLIGHT_FOR_IDEMPOTENCE,
};
use crate::systems::source::OutboxEvents;
use crate::systems::target::{ApplyRule, WelcomeKey};
use crate::variants::{PatternConfig, VARIANTS};

/// The values a setting takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// `true` or `false`.
    Bool,
    /// A duration in milliseconds within bounds (also written `2s`, `500ms`, `1m`).
    Millis {
        /// The least.
        min: u64,
        /// The most.
        max: u64,
    },
    /// `off`, or a duration in milliseconds within bounds.
    MillisOrOff {
        /// The least.
        min: u64,
        /// The most.
        max: u64,
    },
    /// A whole number within bounds.
    Count {
        /// The least.
        min: u64,
        /// The most.
        max: u64,
    },
    /// `off`, or a whole number within bounds.
    CountOrOff {
        /// The least.
        min: u64,
        /// The most.
        max: u64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
}

impl fmt::Display for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Values::Bool => f.write_str("true or false"),
            Values::Millis { min, max } => write!(f, "milliseconds, {min} to {max}"),
            Values::MillisOrOff { min, max } => write!(f, "off, or milliseconds, {min} to {max}"),
            Values::Count { min, max } => write!(f, "a whole number, {min} to {max}"),
            Values::CountOrOff { min, max } => write!(f, "off, or a whole number, {min} to {max}"),
            Values::Choice(words) => write!(f, "one of {}", words.join(", ")),
        }
    }
}

/// A setting's value, in canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A switch.
    Bool(bool),
    /// Milliseconds or a count.
    Number(u64),
    /// Switched off (for [`Values::MillisOrOff`] and [`Values::CountOrOff`]).
    Off,
    /// One of the setting's words.
    Word(&'static str),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Off => f.write_str("off"),
            Value::Word(w) => f.write_str(w),
        }
    }
}

/// One setting changed from a preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The setting's key.
    pub key: &'static str,
    /// Its new value.
    pub value: Value,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Where a setting lives in a configuration: an accessor that finds the field in the
/// patterns that have it and `None` in the others.
#[derive(Clone, Copy)]
enum Field {
    Bool(fn(&mut PatternConfig) -> Option<&mut bool>),
    U64(fn(&mut PatternConfig) -> Option<&mut u64>),
    U32(fn(&mut PatternConfig) -> Option<&mut u32>),
    Usize(fn(&mut PatternConfig) -> Option<&mut usize>),
    OptionalU64(fn(&mut PatternConfig) -> Option<&mut Option<u64>>),
    Word {
        get: fn(&PatternConfig) -> Option<&'static str>,
        set: fn(&mut PatternConfig, &str) -> Option<()>,
    },
}

/// A design choice with its real-world name, valid values and the field it sets.
#[derive(Clone, Copy)]
pub struct Setting {
    /// The key, as `--set` and suites write it.
    pub key: &'static str,
    /// What it decides.
    pub about: &'static str,
    /// The real system's name for it, where there is one.
    pub mirrors: &'static str,
    /// Its valid values.
    pub values: Values,
    field: Field,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Setting {
    /// The setting called `key`.
    pub fn by_key(key: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.key == key)
    }

    /// Its value in `config`, or `None` when the pattern has no such choice.
    pub fn get(&self, config: &PatternConfig) -> Option<Value> {
        let mut copy = *config;
        let c = &mut copy;
        Some(match self.field {
            Field::Bool(at) => Value::Bool(*at(c)?),
            Field::U64(at) => Value::Number(*at(c)?),
            Field::U32(at) => Value::Number(u64::from(*at(c)?)),
            Field::Usize(at) => Value::Number(*at(c)? as u64),
            Field::OptionalU64(at) => at(c)?.map_or(Value::Off, Value::Number),
            Field::Word { get, .. } => Value::Word(get(config)?),
        })
    }

    /// Whether `config`'s pattern has this choice.
    pub fn applies_to(&self, config: &PatternConfig) -> bool {
        self.get(config).is_some()
    }

    /// The built-in presets it applies to, in registry order.
    pub fn presets(&self) -> Vec<&'static str> {
        VARIANTS
            .iter()
            .filter(|v| self.applies_to(&v.config))
            .map(|v| v.name)
            .collect()
    }

    /// Reads a value as a user writes it, or says what the setting takes.
    pub fn parse(&self, text: &str) -> Result<Value, SettingError> {
        let text = text.trim();
        let bad = || SettingError::BadValue {
            key: self.key.to_string(),
            value: text.to_string(),
            expected: self.values.to_string(),
        };
        let within = |n: u64, min: u64, max: u64| (min..=max).contains(&n).then_some(Value::Number(n));
        match self.values {
            Values::Bool => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(bad()),
            },
            Values::Millis { min, max } => millis(text).and_then(|n| within(n, min, max)).ok_or_else(bad),
            Values::MillisOrOff { .. } if text == "off" => Ok(Value::Off),
            Values::MillisOrOff { min, max } => {
                millis(text).and_then(|n| within(n, min, max)).ok_or_else(bad)
            }
            Values::CountOrOff { .. } if text == "off" => Ok(Value::Off),
            Values::Count { min, max } | Values::CountOrOff { min, max } => text
                .replace('_', "")
                .parse()
                .ok()
                .and_then(|n| within(n, min, max))
                .ok_or_else(bad),
            Values::Choice(words) => words
                .iter()
                .find(|w| **w == text)
                .map(|w| Value::Word(w))
                .ok_or_else(bad),
        }
    }

    /// Sets `value` (parsed by [`Setting::parse`]) in `config`; false when the pattern
    /// has no such choice.
    pub fn set(&self, config: &mut PatternConfig, value: Value) -> bool {
        let number = |v: Value| match v {
            Value::Number(n) => n,
            other => unreachable!("{}: {other:?} is not a number; parse checks", self.key),
        };
        match self.field {
            Field::Bool(at) => match (at(config), value) {
                (Some(field), Value::Bool(b)) => *field = b,
                (None, _) => return false,
                (_, other) => unreachable!("{}: {other:?} is not a switch; parse checks", self.key),
            },
            Field::U64(at) => match at(config) {
                Some(field) => *field = number(value),
                None => return false,
            },
            Field::U32(at) => match at(config) {
                Some(field) => *field = u32::try_from(number(value)).expect("bounds fit u32"),
                None => return false,
            },
            Field::Usize(at) => match at(config) {
                Some(field) => *field = usize::try_from(number(value)).expect("bounds fit usize"),
                None => return false,
            },
            Field::OptionalU64(at) => match at(config) {
                Some(field) => *field = (value != Value::Off).then(|| number(value)),
                None => return false,
            },
            Field::Word { set, .. } => {
                let Value::Word(word) = value else {
                    unreachable!("{}: {value:?} is not a word; parse checks", self.key)
                };
                return set(config, word).is_some();
            }
        }
        true
    }
}

/// `250`, `250ms`, `2s` or `1m`, in milliseconds.
fn millis(text: &str) -> Option<u64> {
    let text = text.replace('_', "");
    let (digits, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text.as_str(), 1)
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(scale)
}

/// Why a definition of a variant cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// No preset has this name.
    #[error("unknown preset {name:?}")]
    UnknownPreset {
        /// What was written.
        name: String,
    },
    /// No setting has this key.
    #[error("unknown setting {key:?}")]
    UnknownSetting {
        /// What was written.
        key: String,
        /// The preset it was meant for.
        preset: &'static str,
    },
    /// The value is not one the setting takes.
    #[error("{key} = {value:?} is not valid: it takes {expected}")]
    BadValue {
        /// The setting.
        key: String,
        /// What was written.
        value: String,
        /// What it takes.
        expected: String,
    },
    /// The preset's pattern has no such choice.
    #[error("{key} does not apply to {preset}")]
    NotApplicable {
        /// The setting.
        key: &'static str,
        /// The preset.
        preset: &'static str,
    },
    /// The same setting is given twice.
    #[error("{key} is set twice")]
    SetTwice {
        /// The setting.
        key: &'static str,
    },
    /// Two values that cannot go together.
    #[error("{message}")]
    Conflict {
        /// What clashes.
        message: String,
        /// How to make them fit.
        fix: String,
    },
    /// A `+` part of a variant's name that is not `key=value`.
    #[error("{part:?} in {name:?} is not a setting: write key=value")]
    Malformed {
        /// The part.
        part: String,
        /// The whole name.
        name: String,
    },
    /// A defined variant's name must be its own and plain.
    #[error("{name:?} cannot name a variant: {why}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl SettingError {
    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            SettingError::UnknownPreset { .. } => {
                format!("presets are: {}", crate::Variant::names().join(", "))
            }
            SettingError::UnknownSetting { key, preset } => {
                let config = crate::Variant::by_name(preset).map(|v| v.config);
                let keys: Vec<&str> = SETTINGS
                    .iter()
                    .filter(|s| config.is_none_or(|c| s.applies_to(&c)))
                    .map(|s| s.key)
                    .collect();
                let near = SETTINGS
                    .iter()
                    .filter(|s| similar(key, s.key))
                    .map(|s| format!("did you mean {}? ", s.key))
                    .next()
                    .unwrap_or_default();
                let whose = match config {
                    Some(_) => format!("{preset}'s settings"),
                    None => "settings".to_string(),
                };
                if keys.is_empty() {
                    return format!("{preset} has no settings: it is a pattern of its own");
                }
                format!(
                    "{near}{whose} are: {} (see `faultline list --settings`)",
                    keys.join(", ")
                )
            }
            SettingError::BadValue { key, .. } => {
                let example = Setting::by_key(key)
                    .and_then(|s| VARIANTS.iter().find_map(|v| s.get(&v.config)))
                    .map(|v| format!("e.g. {key} = {v}"))
                    .unwrap_or_default();
                example
            }
            SettingError::NotApplicable { key, .. } => {
                let presets = Setting::by_key(key).map(|s| s.presets()).unwrap_or_default();
                format!("it applies to: {}", presets.join(", "))
            }
            SettingError::SetTwice { .. } => "give each setting once".to_string(),
            SettingError::Conflict { fix, .. } => fix.clone(),
            SettingError::Malformed { .. } => {
                "write PATTERN+key=value, e.g. outbox-inbox+producer.linger.ms=0".to_string()
            }
            SettingError::BadName { .. } => {
                "give the variant its own name, e.g. the preset's name and what changes".to_string()
            }
        }
    }
}

/// Whether `a` is probably a misspelling of `b`: the same words in another separator,
/// its start or its last words, or one edit apart.
fn similar(a: &str, b: &str) -> bool {
    let words = |s: &str| s.replace(['_', '-'], ".");
    let part = a.len() >= 6 && (b.starts_with(a) || b.ends_with(&format!(".{a}")));
    if words(a) == words(b) || part {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()] <= 1
}

/// Checks what single settings cannot: values that must go together.
pub fn check(config: &PatternConfig) -> Result<(), SettingError> {
    let mut c = *config;
    if let Some(p) = producer(&mut c) {
        if p.retry_backoff_max_ms < p.retry_backoff_ms {
            return Err(SettingError::Conflict {
                message: format!(
                    "producer.retry.backoff.max.ms ({}) is below producer.retry.backoff.ms ({})",
                    p.retry_backoff_max_ms, p.retry_backoff_ms
                ),
                fix: "the wait doubles from the first to the longest: raise the longest or lower the first"
                    .to_string(),
            });
        }
        if p.idempotent && p.acks != Acks::All {
            return Err(SettingError::Conflict {
                message: format!(
                    "producer.acks = {} with producer.enable.idempotence = true",
                    if p.acks == Acks::None { "0" } else { "1" }
                ),
                fix: "idempotence needs every write acknowledged by all in-sync replicas (Kafka refuses this with a ConfigException): set producer.acks = all, or producer.enable.idempotence = false".to_string(),
            });
        }
        if p.idempotent && p.max_in_flight > MAX_IN_FLIGHT_FOR_IDEMPOTENCE {
            return Err(SettingError::Conflict {
                message: format!(
                    "producer.max.in.flight.requests.per.connection ({}) is above {MAX_IN_FLIGHT_FOR_IDEMPOTENCE} with producer.enable.idempotence = true",
                    p.max_in_flight
                ),
                fix: format!(
                    "the broker remembers a producer's last {MAX_IN_FLIGHT_FOR_IDEMPOTENCE} batches (Kafka 4.x refuses this with a ConfigException): set it to {MAX_IN_FLIGHT_FOR_IDEMPOTENCE} or less, or producer.enable.idempotence = false"
                ),
            });
        }
    }
    if let Some(k) = cluster(&mut c) {
        if k.min_insync_replicas > k.brokers {
            return Err(SettingError::Conflict {
                message: format!(
                    "topic.min.insync.replicas ({}) is above topic.replication.factor ({})",
                    k.min_insync_replicas, k.brokers
                ),
                fix: "no acks=all produce could ever be acknowledged: lower topic.min.insync.replicas or raise topic.replication.factor".to_string(),
            });
        }
    }
    if let PatternConfig::Outbox(o) = c {
        let marking_relay = o.relay == RelaySource::PollTable && o.cursor == RelayCursor::Unsent;
        if (o.relay_instances > 1 || o.relay_lease_ms.is_some()) && !marking_relay {
            return Err(SettingError::Conflict {
                message: "relay.instances and relay.lease.ms are for table-polling relays that mark what they sent; this relay is not one"
                    .to_string(),
                fix: "set relay.source = poll-table and relay.cursor = unsent, or leave relay.instances and relay.lease.ms unset".to_string(),
            });
        }
        if o.relay == RelaySource::TailLog && o.cursor != RelayCursor::Unsent {
            return Err(SettingError::Conflict {
                message:
                    "relay.cursor is the table-polling relay's; relay.source = tail-log keeps a log position"
                        .to_string(),
                fix: "set relay.source = poll-table, or leave relay.cursor unset".to_string(),
            });
        }
    }
    if let PatternConfig::Cdc(d) = c {
        if d.apply == crate::cdc::CdcApply::Transaction && d.consumer.instances > 1 {
            return Err(SettingError::Conflict {
                message: format!(
                    "consumer.instances = {} with cdc.apply = transaction",
                    d.consumer.instances
                ),
                fix: "a transaction's rows are spread over every partition, and its assembler must see them all in one process (a sink connector with tasks.max=1): set consumer.instances = 1, or cdc.apply = row-by-row".to_string(),
            });
        }
    }
    if let Some(r) = retry(&mut c) {
        if r.backoff_max_ms < r.backoff_initial_ms {
            return Err(SettingError::Conflict {
                message: format!(
                    "push.retry.backoff.max.ms ({}) is below push.retry.backoff.ms ({})",
                    r.backoff_max_ms, r.backoff_initial_ms
                ),
                fix: "the wait doubles from the first to the longest: raise the longest or lower the first"
                    .to_string(),
            });
        }
    }
    Ok(())
}

fn producer(c: &mut PatternConfig) -> Option<&mut ProducerConfig> {
    match c {
        PatternConfig::NotifyPull(n) => Some(&mut n.producer),
        PatternConfig::Queue(q) => Some(&mut q.producer),
        PatternConfig::Outbox(o) => Some(&mut o.producer),
        PatternConfig::Cdc(d) => Some(&mut d.producer),
        PatternConfig::FullCopy(_) | PatternConfig::Push(_) | PatternConfig::Custom(_) => None,
    }
}

fn consumer(c: &mut PatternConfig) -> Option<&mut ConsumerConfig> {
    match c {
        PatternConfig::NotifyPull(n) => Some(&mut n.consumer),
        PatternConfig::Queue(q) => Some(&mut q.consumer),
        PatternConfig::Outbox(o) => Some(&mut o.consumer),
        PatternConfig::Cdc(d) => Some(&mut d.consumer),
        PatternConfig::FullCopy(_) | PatternConfig::Push(_) | PatternConfig::Custom(_) => None,
    }
}

fn retry(c: &mut PatternConfig) -> Option<&mut RetryPolicy> {
    match c {
        PatternConfig::Push(p) => Some(&mut p.retry),
        _ => None,
    }
}

fn apply_rule(c: &mut PatternConfig) -> Option<&mut ApplyRule> {
    match c {
        PatternConfig::Push(p) => Some(&mut p.rule),
        PatternConfig::NotifyPull(n) => Some(&mut n.rule),
        PatternConfig::Queue(q) => Some(&mut q.rule),
        PatternConfig::Outbox(o) => Some(&mut o.rule),
        PatternConfig::Cdc(d) => Some(&mut d.rule),
        PatternConfig::FullCopy(_) | PatternConfig::Custom(_) => None,
    }
}

/// A setting whose field is an enum: the words and the values they stand for.
macro_rules! words {
    ($place:expr, { $($word:literal => $value:expr),+ $(,)? }) => {
        Field::Word {
            get: |c| {
                let mut copy = *c;
                let current = *$place(&mut copy)?;
                $(if current == $value { return Some($word); })+
                None
            },
            set: |c, word| {
                let field = $place(c)?;
                *field = match word {
                    $($word => $value,)+
                    _ => return None,
                };
                Some(())
            },
        }
    };
}

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;

/// Every setting, grouped by the part it belongs to, in the order `faultline list
/// --settings` shows them.
pub const SETTINGS: &[Setting] = &[
    // The Kafka producer (every broker-based pattern).
    Setting {
        key: "producer.enable.idempotence",
        about: "stamp records with a producer id and per-partition sequence, so the broker drops a retry whose first attempt it stored",
        mirrors: "Kafka producer enable.idempotence (true since 3.0; Kafka Connect's source tasks set false)",
        values: Values::Bool,
        field: Field::Bool(|c| producer(c).map(|p| &mut p.idempotent)),
    },
    Setting {
        key: "producer.max.in.flight.requests.per.connection",
        about: "produce requests awaiting their answer at once on the producer's connection; with more than one, a plain producer's retried batch lands after later ones",
        mirrors: "Kafka producer max.in.flight.requests.per.connection (5; at most 5 with idempotence; Kafka Connect's source tasks set 1)",
        values: Values::Count { min: 1, max: 100 },
        field: Field::Usize(|c| producer(c).map(|p| &mut p.max_in_flight)),
    },
    Setting {
        key: "producer.acks",
        about: "what the partition leader waits for before it answers: 0 nothing (the producer never hears), 1 its own log, all every in-sync replica",
        mirrors: "Kafka producer acks (all since 3.0; idempotence requires all)",
        values: Values::Choice(&["0", "1", "all"]),
        field: words!(producer_acks, {
            "0" => Acks::None,
            "1" => Acks::Leader,
            "all" => Acks::All,
        }),
    },
    Setting {
        key: "producer.linger.ms",
        about: "how long a record handed to the producer waits for others to join its batch",
        mirrors: "Kafka producer linger.ms (5 since 4.0, KIP-1030)",
        values: Values::Millis { min: 0, max: MINUTE_MS },
        field: Field::U64(|c| producer(c).map(|p| &mut p.linger_ms)),
    },
    Setting {
        key: "producer.batch.size",
        about: "bytes of keys and payloads one produce request carries at most",
        mirrors: "Kafka producer batch.size (16384)",
        values: Values::Count { min: 1, max: 1 << 20 },
        field: Field::Usize(|c| producer(c).map(|p| &mut p.batch_size)),
    },
    Setting {
        key: "producer.retry.backoff.ms",
        about: "the first wait before a failed produce is sent again; it doubles",
        mirrors: "Kafka producer retry.backoff.ms (100)",
        values: Values::Millis { min: 1, max: MINUTE_MS },
        field: Field::U64(|c| producer(c).map(|p| &mut p.retry_backoff_ms)),
    },
    Setting {
        key: "producer.retry.backoff.max.ms",
        about: "the longest wait between produce retries",
        mirrors: "Kafka producer retry.backoff.max.ms (1000)",
        values: Values::Millis { min: 1, max: 10 * MINUTE_MS },
        field: Field::U64(|c| producer(c).map(|p| &mut p.retry_backoff_max_ms)),
    },
    Setting {
        key: "producer.delivery.timeout.ms",
        about: "a record not acknowledged by then fails to the caller (and is lost unless the caller keeps it)",
        mirrors: "Kafka producer delivery.timeout.ms (120000; Kafka Connect's source tasks: Integer.MAX_VALUE)",
        values: Values::Millis { min: 1, max: i32::MAX as u64 },
        field: Field::U64(|c| producer(c).map(|p| &mut p.delivery_timeout_ms)),
    },
    // The target's consumer (every broker-based pattern).
    Setting {
        key: "consumer.offset.commit",
        about: "when the target's consumer commits a record's offset: after its effects are stored (at-least-once), before handling it (at-most-once), or automatically every consumer.auto.commit.interval.ms at a poll",
        mirrors: "the application's commitSync placement (enable.auto.commit=false), or enable.auto.commit=true (Kafka's default)",
        values: Values::Choice(&["after-processing", "before-processing", "auto"]),
        field: words!(consumer_commit, {
            "after-processing" => CommitPoint::AfterProcessing,
            "before-processing" => CommitPoint::BeforeProcessing,
            "auto" => CommitPoint::Auto,
        }),
    },
    Setting {
        key: "consumer.auto.commit.interval.ms",
        about: "with consumer.offset.commit = auto: how often the position is committed; a crash redelivers up to this much",
        mirrors: "Kafka consumer auto.commit.interval.ms (5000)",
        values: Values::Millis { min: 1, max: HOUR_MS },
        field: Field::U64(|c| consumer(c).map(|k| &mut k.auto_commit_interval_ms)),
    },
    Setting {
        key: "consumer.auto.offset.reset",
        about: "where the consumer goes when its position is out of range (deleted by retention, or past the end): the earliest record the partition still holds, or its end",
        mirrors: "Kafka consumer auto.offset.reset (latest by default; earliest here, the careful choice for an integration)",
        values: Values::Choice(&["earliest", "latest"]),
        field: words!(offset_reset, {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
        }),
    },
    Setting {
        key: "topic.retention.ms",
        about: "records older than this are deleted from the topic (checked every 250 ms); a consumer cut off longer loses them; off keeps them for the run",
        mirrors: "Kafka topic retention.ms (604800000, 7 days: longer than any run here, so off)",
        values: Values::MillisOrOff { min: 1, max: HOUR_MS },
        field: Field::OptionalU64(|c| cluster(c).map(|k| &mut k.retention_ms)),
    },
    Setting {
        key: "topic.retention.bytes",
        about: "bytes of keys and payloads a partition keeps: its oldest batches are deleted while the rest still hold this much (checked every 250 ms); a consumer further behind loses them; off keeps them",
        mirrors: "Kafka topic retention.bytes (-1: unlimited)",
        values: Values::CountOrOff { min: 1, max: 1 << 40 },
        field: Field::OptionalU64(|c| cluster(c).map(|k| &mut k.retention_bytes)),
    },
    Setting {
        key: "topic.cleanup.policy",
        about: "delete: records go only by retention; compact: the log cleaner also drops every record a later one of the same key supersedes, and tombstones after topic.delete.retention.ms (with topic.retention.ms set as well: compact,delete)",
        mirrors: "Kafka topic cleanup.policy (delete); the cleaner's min.cleanable.dirty.ratio 0.5 and log.cleaner.backoff.ms 15000 (compressed to 750)",
        values: Values::Choice(&["delete", "compact"]),
        field: words!(compact, {
            "delete" => false,
            "compact" => true,
        }),
    },
    Setting {
        key: "topic.delete.retention.ms",
        about: "with topic.cleanup.policy = compact: how long the cleaner keeps a tombstone after it first cleaned past it; a consumer further behind never reads the delete",
        mirrors: "Kafka topic delete.retention.ms (86400000, a day; compressed 20× to 4320000, longer than any run)",
        values: Values::Millis { min: 1, max: 4 * HOUR_MS },
        field: Field::U64(|c| cluster(c).map(|k| &mut k.delete_retention_ms)),
    },
    Setting {
        key: "broker.offsets.retention.ms",
        about: "a consumer group's committed offsets are deleted once it has had no member this long (checked every 250 ms); its consumers then start where consumer.auto.offset.reset says; off keeps them",
        mirrors: "Kafka broker offsets.retention.minutes (10080, 7 days: longer than any run here, so off), given in ms here; counted from when the group became empty (KIP-211)",
        values: Values::MillisOrOff { min: 1, max: HOUR_MS },
        field: Field::OptionalU64(|c| cluster(c).map(|k| &mut k.offsets_retention_ms)),
    },
    Setting {
        key: "topic.replication.factor",
        about: "replicas of each partition, one per broker host: the number of broker hosts",
        mirrors: "Kafka topic replication.factor (the broker's default.replication.factor is 1; production clusters use 3)",
        values: Values::Count { min: 1, max: BROKER_HOSTS.len() as u64 },
        field: Field::U32(|c| cluster(c).map(|k| &mut k.brokers)),
    },
    Setting {
        key: "topic.min.insync.replicas",
        about: "an acks=all produce is refused while fewer replicas are in sync, so an acknowledged record is on at least this many",
        mirrors: "Kafka topic min.insync.replicas (1 by default; 2 with 3 replicas is the careful setup)",
        values: Values::Count { min: 1, max: BROKER_HOSTS.len() as u64 },
        field: Field::U32(|c| cluster(c).map(|k| &mut k.min_insync_replicas)),
    },
    Setting {
        key: "topic.unclean.leader.election.enable",
        about: "with no in-sync replica alive, elect one that is out of sync (and lose what it lacks) instead of leaving the partition offline",
        mirrors: "Kafka topic unclean.leader.election.enable (false)",
        values: Values::Bool,
        field: Field::Bool(|c| cluster(c).map(|k| &mut k.unclean_leader_election)),
    },
    Setting {
        key: "broker.log.flush.interval.messages",
        about: "off: a batch counts as stored once in the page cache (the OS writes it back every 5 s), durability comes from replication; 1: fsync every batch first",
        mirrors: "Kafka broker log.flush.interval.messages (Long.MAX_VALUE: off)",
        values: Values::Choice(&["off", "1"]),
        field: words!(flush_every_batch, {
            "off" => false,
            "1" => true,
        }),
    },
    Setting {
        key: "broker.replica.lag.time.max.ms",
        about: "a follower that has not caught up with its leader for this long leaves the in-sync replicas",
        mirrors: "Kafka broker replica.lag.time.max.ms (30000; 1500 here, compressed like the sessions)",
        values: Values::Millis { min: 100, max: MINUTE_MS },
        field: Field::U64(|c| cluster(c).map(|k| &mut k.replica_lag_max_ms)),
    },
    Setting {
        key: "consumer.fetch.max.wait.ms",
        about: "how long an empty fetch waits at the broker for records (a long poll)",
        mirrors: "Kafka consumer fetch.max.wait.ms (500; 200 here)",
        values: Values::Millis { min: 0, max: FETCH_WAIT_MAX_MS },
        field: Field::U64(|c| consumer(c).map(|k| &mut k.fetch_wait_ms)),
    },
    Setting {
        key: "consumer.retry.backoff.ms",
        about: "the wait after a failed fetch, apply or commit before the consumer tries again from its committed offset",
        mirrors: "Kafka consumer retry.backoff.ms (100; 50 here)",
        values: Values::Millis { min: 1, max: MINUTE_MS },
        field: Field::U64(|c| consumer(c).map(|k| &mut k.retry_ms)),
    },
    Setting {
        key: "consumer.error.policy",
        about: "what the consumer does with a record whose handling keeps failing (a poison record): retry it for ever, skip it, or send it to a dead-letter topic that is replayed later",
        mirrors: "block: Kafka Connect errors.tolerance=none; skip: Spring Kafka DefaultErrorHandler's default; dead-letter: DeadLetterPublishingRecoverer, Connect errors.deadletterqueue.topic.name",
        values: Values::Choice(&["block", "skip", "dead-letter"]),
        field: words!(error_policy, {
            "block" => ErrorPolicy::Block,
            "skip" => ErrorPolicy::Skip,
            "dead-letter" => ErrorPolicy::DeadLetter,
        }),
    },
    Setting {
        key: "consumer.error.attempts",
        about: "attempts at a failing record before skip or dead-letter gives up on it",
        mirrors: "Spring Kafka DefaultErrorHandler FixedBackOff(0, 9): 10 attempts",
        values: Values::Count { min: 1, max: 1_000 },
        field: Field::U32(|c| consumer(c).map(|k| &mut k.error_attempts)),
    },
    Setting {
        key: "consumer.dead.letter.replay.ms",
        about: "how often the dead-letter topic is re-driven: each round applies, in order, the dead letters that now succeed",
        mirrors: "a scheduled DLT re-drive; Spring Kafka retry topics' delay",
        values: Values::Millis { min: 1, max: HOUR_MS },
        field: Field::U64(|c| consumer(c).map(|k| &mut k.dead_letter_replay_ms)),
    },
    Setting {
        key: "consumer.instances",
        about: "instances of the target's service in one consumer group, sharing the topic's partitions (range-assigned); the first runs beside the target's database, the others reach it over the network; a rebalance stops every instance's partitions until all have rejoined",
        mirrors: "the service's replica count (a Kubernetes Deployment's replicas) with Kafka's classic group protocol and RangeAssignor",
        values: Values::Count { min: 1, max: 1 + crate::hosts::TARGET_INSTANCES.len() as u64 },
        field: Field::U32(|c| consumer(c).map(|k| &mut k.instances)),
    },
    Setting {
        key: "consumer.group.instance.id",
        about: "static membership: each instance joins under its own instance id, so a restarted instance takes its partitions back without a rebalance (within the session), and a stopping one does not leave the group",
        mirrors: "Kafka consumer group.instance.id (KIP-345; unset by default: dynamic members)",
        values: Values::Choice(&["off", "per-instance"]),
        field: words!(static_membership, {
            "off" => false,
            "per-instance" => true,
        }),
    },
    Setting {
        key: "topic.partitions",
        about: "partitions of the pattern's topic, one consumer task each; a key always goes to the same partition",
        mirrors: "Kafka topic num.partitions",
        values: Values::Count { min: 1, max: 32 },
        field: Field::U32(|c| consumer(c).map(|k| &mut k.partitions)),
    },
    // Kafka Connect (the log-tailing relay, the CDC connector).
    Setting {
        key: "connect.offset.flush.interval.ms",
        about: "how often a source task's position is flushed; a restart replays from the last flush (outbox: with relay.source = tail-log)",
        mirrors: "Kafka Connect offset.flush.interval.ms (60000)",
        values: Values::Millis { min: 1, max: HOUR_MS },
        field: Field::U64(|c| match c {
            PatternConfig::Outbox(o) => Some(&mut o.offset_flush_interval_ms),
            PatternConfig::Cdc(d) => Some(&mut d.offset_flush_interval_ms),
            _ => None,
        }),
    },
    // The outbox relay.
    Setting {
        key: "relay.source",
        about: "where the outbox relay finds messages: polling the outbox table (marking each sent) or tailing the commit log",
        mirrors: "a polling publisher (Spring Modulith, MassTransit) or Debezium's outbox event router",
        values: Values::Choice(&["poll-table", "tail-log"]),
        field: words!(relay_source, {
            "poll-table" => RelaySource::PollTable,
            "tail-log" => RelaySource::TailLog,
        }),
    },
    Setting {
        key: "relay.cursor",
        about: "how the table-polling relay keeps its place: marking each message sent, the last id published, or the last id published below every open transaction's",
        mirrors: "unsent: Spring Modulith's completion date; last-id: watermill-sql before its fix; visible-id: watermill-sql's pg_snapshot_xmin",
        values: Values::Choice(&["unsent", "last-id", "visible-id"]),
        field: words!(relay_cursor, {
            "unsent" => RelayCursor::Unsent,
            "last-id" => RelayCursor::LastId,
            "visible-id" => RelayCursor::VisibleId,
        }),
    },
    Setting {
        key: "outbox.events",
        about: "how a transaction's outbox rows become messages: one per customer it wrote (each in its customer's partition, in order; an action over two customers applied in two local transactions), or one for the whole transaction (applied whole; the second customer's change travels in the first's partition)",
        mirrors: "per-aggregate: Debezium's outbox event router keying each event by aggregateid; per-transaction: one event per business action",
        values: Values::Choice(&["per-aggregate", "per-transaction"]),
        field: words!(outbox_events, {
            "per-aggregate" => OutboxEvents::PerAggregate,
            "per-transaction" => OutboxEvents::PerTransaction,
        }),
    },
    Setting {
        key: "relay.instances",
        about: "application instances each running the table-polling relay: the first beside the source's database, the others on hosts of their own (high availability)",
        mirrors: "replicas of a service with a polling publisher (Spring Modulith republishing, a hand-written relay)",
        values: Values::Count { min: 1, max: 4 },
        field: Field::U32(|c| outbox(c).map(|o| &mut o.relay_instances)),
    },
    Setting {
        key: "relay.lease.ms",
        about: "a lease in the source's database that a relay instance takes (and renews at half time) before it publishes, judged by its own clock; off: every instance publishes what it finds",
        mirrors: "ShedLock's lockAtMostFor (by the application's clock unless usingDbTime)",
        values: Values::MillisOrOff { min: 1, max: HOUR_MS },
        field: Field::OptionalU64(|c| outbox(c).map(|o| &mut o.relay_lease_ms)),
    },
    Setting {
        key: "relay.poll.interval.ms",
        about: "how often the relay polls the outbox table or the log when it found nothing",
        mirrors: "a polling publisher's interval; Debezium poll.interval.ms",
        values: Values::Millis { min: 1, max: MINUTE_MS },
        field: Field::U64(|c| outbox(c).map(|o| &mut o.relay_poll_ms)),
    },
    Setting {
        key: "relay.batch.size",
        about: "outbox messages the relay reads and publishes per round",
        mirrors: "a polling publisher's batch size; Debezium max.batch.size",
        values: Values::Count { min: 1, max: 10_000 },
        field: Field::Usize(|c| outbox(c).map(|o| &mut o.relay_batch_max)),
    },
    // The CDC connector and sink.
    Setting {
        key: "connector.snapshot.signal.ms",
        about: "at this instant the connector is signalled to take a blocking snapshot: streaming pauses, every live row is published as a read event, then streaming resumes where it paused; off sends no signal",
        mirrors: "a Debezium execute-snapshot signal of type blocking (ad-hoc blocking snapshots, Debezium 2.4+)",
        values: Values::MillisOrOff { min: 1, max: HOUR_MS },
        field: Field::OptionalU64(|c| match c {
            PatternConfig::Cdc(d) => Some(&mut d.snapshot_signal_ms),
            _ => None,
        }),
    },
    Setting {
        key: "connector.snapshot.mode",
        about: "what the connector does when the position in its offsets can no longer be streamed (its slot invalidated, the log removed): fail the task, or snapshot again and stream from the snapshot",
        mirrors: "Debezium snapshot.mode: initial (the default) or when_needed",
        values: Values::Choice(&["initial", "when_needed"]),
        field: words!(snapshot_mode, {
            "initial" => SnapshotMode::Initial,
            "when_needed" => SnapshotMode::WhenNeeded,
        }),
    },
    Setting {
        key: "connector.tombstones.on.delete",
        about: "after each delete event, publish a tombstone (the row's key, no value) so a compacted topic can drop the row's every record; the row-by-row sink deletes the row on it",
        mirrors: "Debezium tombstones.on.delete (true)",
        values: Values::Bool,
        field: Field::Bool(|c| match c {
            PatternConfig::Cdc(d) => Some(&mut d.tombstones_on_delete),
            _ => None,
        }),
    },
    Setting {
        key: "source.max.slot.wal.keep.size",
        about: "bytes of log a replication slot may hold back; a slot further behind its source's log end is invalidated at the next checkpoint and its log removed (CDC, and the outbox with relay.source = tail-log); off: a slot holds the log as long as its reader stays away",
        mirrors: "PostgreSQL max_slot_wal_keep_size (-1: unlimited)",
        values: Values::CountOrOff { min: 1, max: 1 << 40 },
        field: Field::OptionalU64(|c| log_retention(c).map(|r| &mut r.slot_max_keep_bytes)),
    },
    Setting {
        key: "source.checkpoint.timeout.ms",
        about: "how often the source checkpoints: invalidating slots past source.max.slot.wal.keep.size and removing the log no slot needs",
        mirrors: "PostgreSQL checkpoint_timeout (300000)",
        values: Values::Millis { min: 1, max: HOUR_MS },
        field: Field::U64(|c| log_retention(c).map(|r| &mut r.checkpoint_ms)),
    },
    Setting {
        key: "connector.poll.interval.ms",
        about: "how often the CDC connector reads the source's log when it found nothing",
        mirrors: "Debezium poll.interval.ms (500; 20 here)",
        values: Values::Millis { min: 1, max: MINUTE_MS },
        field: Field::U64(|c| match c {
            PatternConfig::Cdc(d) => Some(&mut d.connector_poll_ms),
            _ => None,
        }),
    },
    Setting {
        key: "cdc.apply",
        about: "how the sink applies row events: each as it comes, or whole transactions reassembled from their row events (ids in an inbox)",
        mirrors: "a JDBC sink per record, or one that buffers by Debezium's transaction metadata",
        values: Values::Choice(&["row-by-row", "transaction"]),
        field: words!(cdc_apply, {
            "row-by-row" => CdcApply::RowByRow,
            "transaction" => CdcApply::Transaction,
        }),
    },
    // The target.
    Setting {
        key: "target.apply.rule",
        about: "which incoming images the target takes: every one in arrival order, only newer versions, or the later writer's wall-clock stamp",
        mirrors: "a blind upsert, a versioned upsert (WHERE version < :v), last-writer-wins",
        values: Values::Choice(&["blind", "newer-version", "later-wall-clock"]),
        field: words!(apply_rule, {
            "blind" => ApplyRule::Blind,
            "newer-version" => ApplyRule::NewerVersion,
            "later-wall-clock" => ApplyRule::LaterWallClock,
        }),
    },
    Setting {
        key: "target.inbox",
        about: "the target keeps processed message ids in the apply's transaction and skips repeats; welcomes go out keyed from the same transaction",
        mirrors: "the inbox (idempotent consumer) pattern",
        values: Values::Bool,
        field: Field::Bool(|c| outbox(c).map(|o| &mut o.inbox)),
    },
    Setting {
        key: "target.inbox.cleanup.after.ms",
        about: "with an inbox (outbox: target.inbox; cdc: cdc.apply = transaction): entries older than this are deleted by a cleanup job, so a copy delivered later is applied again; off keeps them for the run",
        mirrors: "NServiceBus outbox TimeToKeepDeduplicationData (7 days), MassTransit DuplicateDetectionWindow (30 min)",
        values: Values::MillisOrOff { min: 1, max: HOUR_MS },
        field: Field::OptionalU64(|c| match c {
            PatternConfig::Outbox(o) => Some(&mut o.inbox_cleanup_after_ms),
            PatternConfig::Cdc(d) => Some(&mut d.inbox_cleanup_after_ms),
            _ => None,
        }),
    },
    Setting {
        key: "target.welcome.key",
        about: "the idempotency key on the target's welcomes, which the notification service honours: the handled message's id where an inbox stores the welcome (none without one), or one key per customer",
        mirrors: "an Idempotency-Key header (Stripe-style APIs), keyed by the message or by the business entity",
        values: Values::Choice(&["message", "customer"]),
        field: words!(welcome_key, {
            "message" => WelcomeKey::Message,
            "customer" => WelcomeKey::Customer,
        }),
    },
    // The push sender.
    Setting {
        key: "push.concurrency",
        about: "calls to the target in flight at once",
        mirrors: "an HTTP client's connection pool size",
        values: Values::Count { min: 1, max: 64 },
        field: Field::Usize(|c| retry(c).map(|r| &mut r.concurrency)),
    },
    Setting {
        key: "push.per.key.order",
        about: "a customer's calls go one at a time, in commit order",
        mirrors: "a webhook sender that orders per endpoint and entity",
        values: Values::Bool,
        field: Field::Bool(|c| retry(c).map(|r| &mut r.per_key_order)),
    },
    Setting {
        key: "push.retry.attempts",
        about: "attempts per call before it is given up (and the change lost)",
        mirrors: "a retry policy's max attempts (Polly, resilience4j)",
        values: Values::Count { min: 1, max: 1_000 },
        field: Field::U32(|c| retry(c).map(|r| &mut r.attempts_max)),
    },
    Setting {
        key: "push.retry.backoff.ms",
        about: "the first wait before a failed call is retried; it doubles",
        mirrors: "a retry policy's initial backoff",
        values: Values::Millis { min: 1, max: MINUTE_MS },
        field: Field::U64(|c| retry(c).map(|r| &mut r.backoff_initial_ms)),
    },
    Setting {
        key: "push.retry.backoff.max.ms",
        about: "the longest wait between retries of a call",
        mirrors: "a retry policy's maximum backoff",
        values: Values::Millis { min: 1, max: 10 * MINUTE_MS },
        field: Field::U64(|c| retry(c).map(|r| &mut r.backoff_max_ms)),
    },
    Setting {
        key: "push.queue.max",
        about: "calls the in-memory queue holds; more are dropped",
        mirrors: "a bounded in-process queue (a channel, an executor's queue)",
        values: Values::Count { min: 1, max: 1_000_000 },
        field: Field::Usize(|c| retry(c).map(|r| &mut r.queue_max)),
    },
    // Notification plus pull.
    Setting {
        key: "notify.dedup.window.ms",
        about: "collapse each fetched batch's notifications per key and wait this long before pulling; off pulls once per notification",
        mirrors: "a debounce before the fetch",
        values: Values::MillisOrOff { min: 1, max: MINUTE_MS },
        field: Field::OptionalU64(|c| match c {
            PatternConfig::NotifyPull(n) => Some(&mut n.dedup_window_ms),
            _ => None,
        }),
    },
    // Entities in queues.
    Setting {
        key: "queue.publish",
        about: "where the entity's message is published: after the commit, handed to the producer, or inside the operation (a failed publish rolls the action back)",
        mirrors: "a dual write after commit, or a synchronous send in the request handler",
        values: Values::Choice(&["after-commit", "in-operation"]),
        field: words!(publish_point, {
            "after-commit" => PublishPoint::AfterCommit,
            "in-operation" => PublishPoint::InOperation,
        }),
    },
    // Full copy.
    Setting {
        key: "full-copy.atomic.swap",
        about: "copy into staging and swap it in at once, or overwrite the target row by row",
        mirrors: "a load into a staging table and a rename, or a direct upsert job",
        values: Values::Bool,
        field: Field::Bool(|c| match c {
            PatternConfig::FullCopy(f) => Some(&mut f.atomic_swap),
            _ => None,
        }),
    },
    Setting {
        key: "full-copy.period.ms",
        about: "time from the end of one copy to the start of the next",
        mirrors: "the batch job's schedule",
        values: Values::Millis { min: 10, max: HOUR_MS },
        field: Field::U64(|c| match c {
            PatternConfig::FullCopy(f) => Some(&mut f.period_ms),
            _ => None,
        }),
    },
    Setting {
        key: "full-copy.row.write.ms",
        about: "time the in-place copy takes per row written (how long the half-loaded state is visible)",
        mirrors: "the load's throughput",
        values: Values::Millis { min: 0, max: 1_000 },
        field: Field::U64(|c| match c {
            PatternConfig::FullCopy(f) => Some(&mut f.row_write_ms),
            _ => None,
        }),
    },
    Setting {
        key: "full-copy.snapshot.timeout.ms",
        about: "how long the copy waits for the source's snapshot before it gives the round up",
        mirrors: "the extract query's timeout",
        values: Values::Millis { min: 1, max: MINUTE_MS },
        field: Field::U64(|c| match c {
            PatternConfig::FullCopy(f) => Some(&mut f.snapshot_timeout_ms),
            _ => None,
        }),
    },
];

fn offset_reset(c: &mut PatternConfig) -> Option<&mut OffsetReset> {
    consumer(c).map(|k| &mut k.auto_offset_reset)
}

fn cluster(c: &mut PatternConfig) -> Option<&mut ClusterConfig> {
    consumer(c).map(|k| &mut k.cluster)
}

fn compact(c: &mut PatternConfig) -> Option<&mut bool> {
    cluster(c).map(|k| &mut k.compact)
}

fn flush_every_batch(c: &mut PatternConfig) -> Option<&mut bool> {
    cluster(c).map(|k| &mut k.flush_every_batch)
}

fn producer_acks(c: &mut PatternConfig) -> Option<&mut Acks> {
    producer(c).map(|p| &mut p.acks)
}

fn error_policy(c: &mut PatternConfig) -> Option<&mut ErrorPolicy> {
    consumer(c).map(|k| &mut k.error_policy)
}

fn static_membership(c: &mut PatternConfig) -> Option<&mut bool> {
    consumer(c).map(|k| &mut k.static_membership)
}

fn consumer_commit(c: &mut PatternConfig) -> Option<&mut CommitPoint> {
    consumer(c).map(|k| &mut k.commit)
}

fn welcome_key(c: &mut PatternConfig) -> Option<&mut WelcomeKey> {
    match c {
        PatternConfig::FullCopy(f) => Some(&mut f.welcome_key),
        PatternConfig::Push(p) => Some(&mut p.welcome_key),
        PatternConfig::NotifyPull(n) => Some(&mut n.welcome_key),
        PatternConfig::Queue(q) => Some(&mut q.welcome_key),
        PatternConfig::Outbox(o) => Some(&mut o.welcome_key),
        PatternConfig::Cdc(d) => Some(&mut d.welcome_key),
        PatternConfig::Custom(_) => None,
    }
}

fn relay_source(c: &mut PatternConfig) -> Option<&mut RelaySource> {
    match c {
        PatternConfig::Outbox(o) => Some(&mut o.relay),
        _ => None,
    }
}

fn outbox(c: &mut PatternConfig) -> Option<&mut crate::outbox::OutboxConfig> {
    match c {
        PatternConfig::Outbox(o) => Some(o),
        _ => None,
    }
}

fn outbox_events(c: &mut PatternConfig) -> Option<&mut OutboxEvents> {
    outbox(c).map(|o| &mut o.events)
}

fn relay_cursor(c: &mut PatternConfig) -> Option<&mut RelayCursor> {
    outbox(c).map(|o| &mut o.cursor)
}

fn cdc_apply(c: &mut PatternConfig) -> Option<&mut CdcApply> {
    match c {
        PatternConfig::Cdc(d) => Some(&mut d.apply),
        _ => None,
    }
}

fn snapshot_mode(c: &mut PatternConfig) -> Option<&mut SnapshotMode> {
    match c {
        PatternConfig::Cdc(d) => Some(&mut d.snapshot_mode),
        _ => None,
    }
}

fn log_retention(c: &mut PatternConfig) -> Option<&mut crate::systems::source::LogRetention> {
    match c {
        PatternConfig::Outbox(o) => Some(&mut o.log_retention),
        PatternConfig::Cdc(d) => Some(&mut d.log_retention),
        _ => None,
    }
}

fn publish_point(c: &mut PatternConfig) -> Option<&mut PublishPoint> {
    match c {
        PatternConfig::Queue(q) => Some(&mut q.publish),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variant;

    #[test]
    fn every_setting_applies_to_a_preset_and_reads_back_what_it_sets() {
        for setting in SETTINGS {
            let presets = setting.presets();
            assert!(!presets.is_empty(), "{} applies to no preset", setting.key);
            let config = Variant::by_name(presets[0]).unwrap().config;
            let current = setting.get(&config).unwrap();
            // Each setting takes its current value, and a second valid value it reads back.
            let other = match setting.values {
                Values::Bool => Value::Bool(current != Value::Bool(true)),
                Values::Millis { min, max } | Values::Count { min, max } => {
                    Value::Number(if current == Value::Number(min) { max } else { min })
                }
                Values::MillisOrOff { min, .. } | Values::CountOrOff { min, .. } => {
                    if current == Value::Off {
                        Value::Number(min)
                    } else {
                        Value::Off
                    }
                }
                Values::Choice(words) => {
                    Value::Word(words.iter().find(|w| Value::Word(w) != current).unwrap())
                }
            };
            assert_eq!(
                setting.parse(&current.to_string()),
                Ok(current),
                "{}",
                setting.key
            );
            let mut changed = config;
            assert!(setting.set(&mut changed, other), "{}", setting.key);
            assert_eq!(setting.get(&changed), Some(other), "{}", setting.key);
            assert_ne!(changed, config, "{} changed nothing", setting.key);
        }
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), SETTINGS.len());
    }

    #[test]
    fn values_are_checked() {
        let linger = Setting::by_key("producer.linger.ms").unwrap();
        assert_eq!(linger.parse("2s"), Ok(Value::Number(2_000)));
        assert_eq!(linger.parse("250ms"), Ok(Value::Number(250)));
        assert_eq!(linger.parse("1m"), Ok(Value::Number(60_000)));
        assert!(linger.parse("2m").is_err(), "above the bound");
        assert!(linger.parse("soon").is_err());
        let dedup = Setting::by_key("notify.dedup.window.ms").unwrap();
        assert_eq!(dedup.parse("off"), Ok(Value::Off));
        assert!(dedup.parse("0").is_err(), "off is written off");
        let rule = Setting::by_key("target.apply.rule").unwrap();
        assert_eq!(rule.parse("newer-version"), Ok(Value::Word("newer-version")));
        assert!(rule.parse("newest").is_err());
    }

    #[test]
    fn a_variant_from_settings_differs_only_in_them() {
        let base = Variant::by_name("outbox-inbox").unwrap();
        let v = base
            .with_settings(&[
                ("connect.offset.flush.interval.ms", "5s"),
                ("producer.linger.ms", "0"),
            ])
            .unwrap();
        assert_eq!(
            v.name,
            "outbox-inbox+connect.offset.flush.interval.ms=5000+producer.linger.ms=0"
        );
        assert_eq!(v.preset, "outbox-inbox");
        let PatternConfig::Outbox(changed) = v.config else {
            panic!()
        };
        let PatternConfig::Outbox(preset) = base.config else {
            panic!()
        };
        assert_eq!(changed.offset_flush_interval_ms, 5_000);
        assert_eq!(changed.producer.linger_ms, 0);
        assert_eq!(
            crate::outbox::OutboxConfig {
                offset_flush_interval_ms: preset.offset_flush_interval_ms,
                producer: preset.producer,
                ..changed
            },
            preset
        );
        // The name reads back as the same variant, and defining it again gives the same one.
        assert!(std::ptr::eq(Variant::resolve(v.name, &[]).unwrap(), v));
        let again = base
            .with_settings(&[
                ("connect.offset.flush.interval.ms", "5000"),
                ("producer.linger.ms", "0"),
            ])
            .unwrap();
        assert!(std::ptr::eq(again, v));
    }

    #[test]
    fn a_defined_variant_extends_and_keeps_its_preset() {
        let ours = Variant::define("our-outbox", "outbox", &[("target.inbox", "true")], None).unwrap();
        assert_eq!(ours.description, "outbox with target.inbox=true");
        assert_eq!(ours.config, Variant::by_name("outbox-inbox").unwrap().config);
        let more = Variant::resolve("our-outbox+topic.partitions=1", &[ours]).unwrap();
        assert_eq!(more.preset, "outbox");
        assert_eq!(more.overrides.len(), 2);
        assert!(Variant::resolve("our-outbox", &[]).is_err(), "not a preset");
    }

    #[test]
    fn bad_definitions_say_why() {
        let push = Variant::by_name("push").unwrap();
        let message = |e: SettingError| format!("{e}\n  hint: {}", e.hint());
        insta::assert_snapshot!(message(push.with_settings(&[("producer.linger.ms", "0")]).unwrap_err()), @r"
            producer.linger.ms does not apply to push
              hint: it applies to: notify-pull, notify-pull-dedup, queue-after-commit, queue-fail-op, outbox, outbox-inbox, outbox-last-id, outbox-logtail, cdc-row, cdc-tx
            ");
        insta::assert_snapshot!(message(Variant::define("my push", "push", &[], None).unwrap_err()), @r#"
            "my push" cannot name a variant: a name is letters, digits, `-`, `_` and `.`
              hint: give the variant its own name, e.g. the preset's name and what changes
            "#);
        insta::assert_snapshot!(message(push.with_settings(&[("push.concurency", "2")]).unwrap_err()), @r#"
            unknown setting "push.concurency"
              hint: did you mean push.concurrency? push's settings are: target.apply.rule, target.welcome.key, push.concurrency, push.per.key.order, push.retry.attempts, push.retry.backoff.ms, push.retry.backoff.max.ms, push.queue.max (see `faultline list --settings`)
            "#);
        insta::assert_snapshot!(message(push.with_settings(&[("push.concurrency", "0")]).unwrap_err()), @r#"
            push.concurrency = "0" is not valid: it takes a whole number, 1 to 64
              hint: e.g. push.concurrency = 4
            "#);
        insta::assert_snapshot!(message(push.with_settings(&[("push.per.key.order", "yes")]).unwrap_err()), @r#"
            push.per.key.order = "yes" is not valid: it takes true or false
              hint: e.g. push.per.key.order = false
            "#);
        insta::assert_snapshot!(message(
            push.with_settings(&[("push.concurrency", "2"), ("push.concurrency", "3")]).unwrap_err()
        ), @r"
            push.concurrency is set twice
              hint: give each setting once
            ");
        insta::assert_snapshot!(message(
            push.with_settings(&[("push.retry.backoff.max.ms", "10"), ("push.retry.backoff.ms", "20")]).unwrap_err()
        ), @r"
            push.retry.backoff.max.ms (10) is below push.retry.backoff.ms (20)
              hint: the wait doubles from the first to the longest: raise the longest or lower the first
            ");
        let outbox = Variant::by_name("outbox").unwrap();
        insta::assert_snapshot!(message(
            outbox.with_settings(&[("producer.max.in.flight.requests.per.connection", "6")]).unwrap_err()
        ), @r"
            producer.max.in.flight.requests.per.connection (6) is above 5 with producer.enable.idempotence = true
              hint: the broker remembers a producer's last 5 batches (Kafka 4.x refuses this with a ConfigException): set it to 5 or less, or producer.enable.idempotence = false
            ");
        assert!(outbox
            .with_settings(&[
                ("producer.max.in.flight.requests.per.connection", "6"),
                ("producer.enable.idempotence", "false"),
            ])
            .is_ok());
        let logtail = Variant::by_name("outbox-logtail").unwrap();
        insta::assert_snapshot!(message(logtail.with_settings(&[("relay.lease.ms", "2s")]).unwrap_err()), @r"
            relay.instances and relay.lease.ms are for table-polling relays that mark what they sent; this relay is not one
              hint: set relay.source = poll-table and relay.cursor = unsent, or leave relay.instances and relay.lease.ms unset
            ");
        insta::assert_snapshot!(message(logtail.with_settings(&[("relay.cursor", "last-id")]).unwrap_err()), @r"
            relay.cursor is the table-polling relay's; relay.source = tail-log keeps a log position
              hint: set relay.source = poll-table, or leave relay.cursor unset
            ");
        insta::assert_snapshot!(message(Variant::define("push", "push", &[], None).unwrap_err()), @r#"
            "push" cannot name a variant: it is a preset's name
              hint: give the variant its own name, e.g. the preset's name and what changes
            "#);
        insta::assert_snapshot!(message(Variant::define("mine", "pushy", &[], None).unwrap_err()), @r#"
            unknown preset "pushy"
              hint: presets are: full-copy, full-copy-inplace, push, push-versioned, push-ordered, push-ordered-versioned, push-lww, notify-pull, notify-pull-dedup, queue-after-commit, queue-fail-op, outbox, outbox-inbox, outbox-last-id, outbox-logtail, cdc-row, cdc-tx
            "#);
        insta::assert_snapshot!(message(Variant::resolve("push+push.concurrency", &[]).unwrap_err()), @r#"
            "push.concurrency" in "push+push.concurrency" is not a setting: write key=value
              hint: write PATTERN+key=value, e.g. outbox-inbox+producer.linger.ms=0
            "#);
    }
}

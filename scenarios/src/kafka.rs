//! Kafka-level anomalies, named as Jepsen's Kafka checker names them, found in what the
//! clients saw: the records producers had acknowledged (with the offsets the brokers
//! gave them) and what consumers fetched. Nothing here asks a broker about its log.
//!
//! - *lost write*: an acknowledged record that no consumer read, though consumers read
//!   past its offset, or whose offset was later read as another record (the log was cut
//!   and written again: a leader change after an unclean election, or after the last
//!   in-sync replica lost its page cache).
//! - *duplicate*: one record (the same payload) at two offsets of a partition: a
//!   producer's retry without idempotence, or an application that sent it again.
//! - *poll skip*: a consumer's next fetch began past the offset after its last, over
//!   records it never read (`auto.offset.reset` to the end, or past what retention
//!   deleted).
//! - *non-monotonic poll*: a consumer's next fetch began at or before an offset it had
//!   read, without its going back on purpose (a reset to the earliest offset after the
//!   log it had read was cut).
//!
//! On a topic configured with `cleanup.policy=compact`, a record that a later record of
//! the same key superseded may be gone by design: never reading it is neither a lost
//! write nor a skip. A tombstone the cleaner dropped after `delete.retention.ms` is
//! superseded by nothing: jumping it is a poll skip.
//!
//! A violation of an invariant on a customer whose records met one of these says so in
//! its story ([`annotate`]): the invariant fired because of the broker.

use std::collections::{BTreeMap, BTreeSet};

use faultline_patterns::history::{History, KafkaRecord};
use faultline_sim::SimTime;

use crate::invariants::Violation;

/// One anomaly, at the record (or the first record) it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// Jepsen's name: `lost write`, `duplicate`, `poll skip`, `non-monotonic poll`.
    pub name: &'static str,
    /// When a client saw it happen.
    pub at: SimTime,
    /// The record's key (the partitioning key: a customer, or a row of one).
    pub key: String,
    /// What happened, for a person.
    pub detail: String,
}

/// The partition a record is in, as `topic/partition`.
fn partition_of(r: &KafkaRecord) -> String {
    format!("{}/{}", r.topic, r.partition)
}

/// The partition a record is in, as a key borrowed from the record.
type PartitionRef<'a> = (&'a str, u32);

fn partition_ref(r: &KafkaRecord) -> PartitionRef<'_> {
    (r.topic.as_str(), r.partition)
}

/// Every anomaly in the run's Kafka records, in the order found: lost writes, then
/// duplicates, then each reader's skips and backward polls.
pub fn anomalies(history: &History) -> Vec<Anomaly> {
    let compaction = Compaction::of(history);
    let reads: Vec<&KafkaRecord> = history.kafka_reads.iter().flat_map(|r| &r.records).collect();
    // What was read at each offset, and where each record was read, by partition as
    // the records name it (borrowed: a run reads tens of thousands of records).
    let mut read_at: BTreeMap<(PartitionRef, u64), BTreeSet<u64>> = BTreeMap::new();
    let mut read_where: BTreeMap<(PartitionRef, u64), BTreeSet<u64>> = BTreeMap::new();
    let mut read_max: BTreeMap<PartitionRef, u64> = BTreeMap::new();
    for r in &reads {
        let p = partition_ref(r);
        read_at.entry((p, r.offset)).or_default().insert(r.digest);
        read_where.entry((p, r.digest)).or_default().insert(r.offset);
        let max = read_max.entry(p).or_insert(r.offset);
        *max = (*max).max(r.offset);
    }
    let mut found = Vec::new();
    let (skips, backward) = reader_anomalies(history, &compaction);
    // Offsets some reader jumped over: a record there is skipped, not lost.
    let skipped: BTreeSet<(String, u64)> = skips
        .iter()
        .flat_map(|s| (s.from..s.to).map(|o| (s.partition.clone(), o)))
        .collect();
    for w in &history.kafka_writes {
        let here = partition_ref(w);
        let seen_here = read_at.get(&(here, w.offset));
        let read_elsewhere = read_where
            .get(&(here, w.digest))
            .is_some_and(|offsets| offsets.iter().any(|&o| o != w.offset));
        if read_elsewhere {
            continue;
        }
        let detail = match seen_here {
            // Read there as another record (perhaps after this one): the log was cut
            // and written again.
            Some(seen) if seen.iter().any(|&d| d != w.digest) => format!(
                "{}@{} acknowledged at {} ms, later read there as another record",
                partition_of(w),
                w.offset,
                w.at.as_millis()
            ),
            Some(_) => continue,
            None if compaction.superseded(w) => continue,
            None => {
                if read_max.get(&here).is_none_or(|&max| max <= w.offset) {
                    continue;
                }
                let p = partition_of(w);
                if skipped.contains(&(p.clone(), w.offset)) {
                    continue;
                }
                format!(
                    "{p}@{} acknowledged at {} ms, never read though later offsets were",
                    w.offset,
                    w.at.as_millis()
                )
            }
        };
        found.push(Anomaly {
            name: "lost write",
            at: w.at,
            key: w.key.clone(),
            detail,
        });
    }
    found.extend(duplicates(history));
    for s in skips {
        found.push(Anomaly {
            name: "poll skip",
            at: s.at,
            key: s.key,
            detail: format!(
                "{} read by {} jumped from {} to {} over records it never read",
                s.partition, s.reader, s.from, s.to
            ),
        });
    }
    found.extend(backward);
    found
}

/// A record stored at more offsets of a partition than the applications sent it (as
/// written or read): Kafka stored one send twice. An application that sends the same
/// payload again (a relay re-publishing, a notification of the same key) is not one.
fn duplicates(history: &History) -> Vec<Anomaly> {
    let mut offsets: BTreeMap<(String, u32, u64), (BTreeSet<u64>, &KafkaRecord)> = BTreeMap::new();
    let seen = history
        .kafka_writes
        .iter()
        .chain(history.kafka_reads.iter().flat_map(|r| &r.records));
    for r in seen {
        let entry = offsets
            .entry((r.topic.clone(), r.partition, r.digest))
            .or_insert((BTreeSet::new(), r));
        entry.0.insert(r.offset);
        if r.at < entry.1.at {
            entry.1 = r;
        }
    }
    offsets
        .into_iter()
        // A record never counted as sent (a producer that records nothing) counts once.
        .filter(|(key, (o, _))| o.len() as u64 > history.kafka_sends.get(key).copied().unwrap_or(0).max(1))
        .map(|(key, (o, first))| Anomaly {
            name: "duplicate",
            at: first.at,
            key: first.key.clone(),
            detail: format!(
                "one record sent {} time(s) at offsets {} of {}/{}",
                history.kafka_sends.get(&key).copied().unwrap_or(0).max(1),
                o.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                key.0,
                key.1
            ),
        })
        .collect()
}

/// What compaction may remove: on compacted topics, each partition's records by key,
/// from every record a client saw.
struct Compaction<'a> {
    /// The last offset at which each (partition, key) was seen.
    last: BTreeMap<(String, &'a str), u64>,
    /// Every offset a client saw a record at, with its key, by partition.
    keys: BTreeMap<(String, u64), &'a str>,
    topics: &'a BTreeSet<String>,
}

impl<'a> Compaction<'a> {
    fn of(history: &'a History) -> Compaction<'a> {
        let mut last: BTreeMap<(String, &str), u64> = BTreeMap::new();
        let mut keys = BTreeMap::new();
        let seen = history
            .kafka_writes
            .iter()
            .chain(history.kafka_reads.iter().flat_map(|r| &r.records))
            .filter(|r| history.kafka_compacted_topics.contains(&r.topic));
        for r in seen {
            let at = last.entry((partition_of(r), r.key.as_str())).or_insert(r.offset);
            *at = (*at).max(r.offset);
            keys.insert((partition_of(r), r.offset), r.key.as_str());
        }
        Compaction {
            last,
            keys,
            topics: &history.kafka_compacted_topics,
        }
    }

    /// Whether a later record of its key supersedes this one on a compacted topic.
    fn superseded(&self, r: &KafkaRecord) -> bool {
        self.topics.contains(&r.topic)
            && self
                .last
                .get(&(partition_of(r), r.key.as_str()))
                .is_some_and(|&last| last > r.offset)
    }

    /// Whether compaction explains a reader's jump over `from..to` of `partition` (of
    /// `topic`): every record known there was superseded.
    fn explains(&self, topic: &str, partition: &str, from: u64, to: u64) -> bool {
        self.topics.contains(topic)
            && (from..to).all(|offset| {
                self.keys.get(&(partition.to_string(), offset)).is_none_or(|key| {
                    self.last
                        .get(&(partition.to_string(), *key))
                        .is_some_and(|&last| last > offset)
                })
            })
    }
}

/// A reader's jump over offsets it never read.
struct Skip {
    partition: String,
    reader: String,
    at: SimTime,
    key: String,
    /// The first offset jumped over.
    from: u64,
    /// Where the reader went on (exclusive end of the jump).
    to: u64,
}

/// Each reader's fetches in order: forward jumps (poll skips) and backward ones it did
/// not make on purpose (non-monotonic polls).
fn reader_anomalies(history: &History, compaction: &Compaction) -> (Vec<Skip>, Vec<Anomaly>) {
    let mut last: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut skips = Vec::new();
    let mut backward = Vec::new();
    for read in &history.kafka_reads {
        let (Some(first), Some(end)) = (read.records.first(), read.records.last()) else {
            continue;
        };
        let p = partition_of(first);
        let previous = last.insert((read.reader.clone(), p.clone()), end.offset);
        // The first fetch should begin at the committed offset the reader started from.
        let expected = previous.map_or(read.start, |previous| previous + 1);
        if first.offset > expected && !compaction.explains(&first.topic, &p, expected, first.offset) {
            skips.push(Skip {
                partition: p,
                reader: read.reader.clone(),
                at: first.at,
                key: first.key.clone(),
                from: expected,
                to: first.offset,
            });
        } else if first.offset < expected && !read.rewound {
            backward.push(Anomaly {
                name: "non-monotonic poll",
                at: first.at,
                key: first.key.clone(),
                detail: format!(
                    "{p} read by {} went back from {} to {} without seeking",
                    read.reader,
                    expected - 1,
                    first.offset
                ),
            });
        }
    }
    (skips, backward)
}

/// The customer a key is about: `customer/7`, `contact/7` and `7` are all customer 7.
fn customer_of(key: &str) -> Option<&str> {
    let digits = key.rsplit(|c: char| !c.is_ascii_digit()).next()?;
    (!digits.is_empty()).then_some(digits)
}

/// Whether an anomaly of this name can make this invariant fire: records lost or
/// skipped lose changes and their effects, records twice or read backwards apply old
/// versions again and repeat effects; lateness is no anomaly of Kafka's.
fn can_cause(invariant: &str, anomaly: &str) -> bool {
    match invariant {
        "convergence" => anomaly != "non-monotonic poll",
        "monotonic" => matches!(anomaly, "duplicate" | "non-monotonic poll"),
        "exactly-once-effects" => anomaly != "non-monotonic poll",
        "liveness" => matches!(anomaly, "lost write" | "poll skip"),
        "bounded-staleness" => false,
        _ => true,
    }
}

/// Tells each violation's story which Kafka anomalies met its customer's records and
/// can cause it (up to two, the earliest first): for a change lost or diverged, any in
/// the run; for anything seen at an instant, those before it. An attribution by
/// customer and time, as [`crate::causes`] attributes by time: a hint where to look.
pub fn annotate(violations: &mut [Violation], anomalies: &[Anomaly]) {
    if anomalies.is_empty() {
        return;
    }
    let mut by_customer: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
    for a in anomalies {
        if let Some(customer) = customer_of(&a.key) {
            by_customer.entry(customer).or_default().push(a);
        }
    }
    for list in by_customer.values_mut() {
        list.sort_by_key(|a| a.at);
    }
    for v in violations.iter_mut() {
        let Some(list) = customer_of(&v.key).and_then(|c| by_customer.get(c)) else {
            continue;
        };
        let mut named: Vec<String> = Vec::new();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for a in list {
            if v.invariant != "convergence" && a.at > v.at {
                break;
            }
            if !can_cause(v.invariant, a.name) {
                continue;
            }
            if names.insert(a.name) {
                named.push(format!("{} ({})", a.name, a.detail));
            }
            if named.len() == 2 {
                break;
            }
        }
        if !named.is_empty() {
            v.story = format!("{}; Kafka: {}", v.story, named.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_patterns::history::KafkaRead;

    fn record(offset: u64, key: &str, digest: u64, at_ms: u64) -> KafkaRecord {
        KafkaRecord {
            at: SimTime::from_millis(at_ms),
            topic: "t".to_string(),
            partition: 0,
            offset,
            key: key.to_string(),
            digest,
        }
    }

    fn read(reader: &str, records: Vec<KafkaRecord>, rewound: bool) -> KafkaRead {
        KafkaRead {
            reader: reader.to_string(),
            start: records.first().map_or(0, |r| r.offset),
            rewound,
            records,
        }
    }

    fn names(history: &History) -> Vec<(&'static str, String)> {
        anomalies(history).into_iter().map(|a| (a.name, a.key)).collect()
    }

    #[test]
    fn a_clean_run_has_no_anomaly_and_an_unread_tail_is_not_lost() {
        let history = History {
            kafka_writes: vec![
                record(0, "1", 10, 1),
                record(1, "2", 11, 1),
                record(2, "3", 12, 1),
            ],
            kafka_reads: vec![read(
                "a",
                vec![record(0, "1", 10, 5), record(1, "2", 11, 5)],
                false,
            )],
            ..History::default()
        };
        assert!(anomalies(&history).is_empty(), "offset 2 was never read past");
    }

    #[test]
    fn an_offset_read_as_another_record_or_never_read_though_later_ones_were_is_a_lost_write() {
        let history = History {
            kafka_writes: vec![
                record(0, "1", 10, 1),
                record(1, "2", 11, 1),
                record(2, "3", 12, 1),
            ],
            // Offset 1 was read, then cut and written again with another record (reader c
            // reads it there); offset 2 vanished though a later offset was read (reader b
            // began at 3, its committed offset).
            kafka_reads: vec![
                read("a", vec![record(0, "1", 10, 5), record(1, "2", 11, 5)], false),
                read("c", vec![record(0, "1", 10, 7), record(1, "4", 99, 7)], false),
                read("b", vec![record(3, "5", 13, 6)], false),
            ],
            ..History::default()
        };
        assert_eq!(
            names(&history),
            vec![("lost write", "2".to_string()), ("lost write", "3".to_string())]
        );
    }

    #[test]
    fn on_a_compacted_topic_a_superseded_record_may_be_missed_but_a_dropped_tombstone_is_a_poll_skip() {
        // Key "1" written at 0 and again at 2; key "2" (a tombstone) at 1 and never
        // again; key "3" at 3.
        let writes = vec![
            record(0, "1", 10, 1),
            record(1, "2", 11, 1),
            record(2, "1", 12, 1),
            record(3, "3", 13, 1),
        ];
        // Reader a began at 0 and found only 1, 2, 3 (offset 0 cleaned away); reader b
        // began at 0 and found only 2, 3 (the tombstone at 1 dropped as well).
        let reads = vec![
            KafkaRead {
                start: 0,
                ..read(
                    "a",
                    vec![
                        record(1, "2", 11, 5),
                        record(2, "1", 12, 5),
                        record(3, "3", 13, 5),
                    ],
                    false,
                )
            },
            KafkaRead {
                start: 0,
                ..read("b", vec![record(2, "1", 12, 6), record(3, "3", 13, 6)], false)
            },
        ];
        let compacted = History {
            kafka_writes: writes.clone(),
            kafka_reads: reads.clone(),
            kafka_compacted_topics: ["t".to_string()].into(),
            ..History::default()
        };
        assert_eq!(names(&compacted), vec![("poll skip", "1".to_string())]);
        // On a topic kept by retention alone both jumps are skips.
        let deleted = History {
            kafka_writes: writes,
            kafka_reads: reads,
            ..History::default()
        };
        assert_eq!(
            names(&deleted),
            vec![("poll skip", "2".to_string()), ("poll skip", "1".to_string())]
        );
    }

    #[test]
    fn a_jump_forward_is_a_poll_skip_not_a_lost_write_and_a_jump_back_is_non_monotonic_unless_rewound() {
        let history = History {
            kafka_writes: (0..8).map(|o| record(o, &o.to_string(), 100 + o, 1)).collect(),
            kafka_reads: vec![
                read("a", vec![record(0, "0", 100, 2), record(1, "1", 101, 2)], false),
                // Reset to the end: 2..5 jumped over.
                read("a", vec![record(5, "5", 105, 3)], false),
                // The consumer goes back on purpose after a failed record: fine.
                read("a", vec![record(5, "5", 105, 4)], true),
                // Back to 0 without seeking: non-monotonic.
                read("a", vec![record(0, "0", 100, 5), record(6, "6", 106, 5)], false),
            ],
            ..History::default()
        };
        let found = anomalies(&history);
        let kinds: Vec<&str> = found.iter().map(|a| a.name).collect();
        assert_eq!(kinds, vec!["poll skip", "non-monotonic poll"], "{found:?}");
        assert!(
            found[0].detail.contains("jumped from 2 to 5"),
            "{}",
            found[0].detail
        );
    }

    #[test]
    fn a_first_fetch_past_the_committed_offset_is_a_poll_skip() {
        // The consumer started from its committed offset 1, but the broker had deleted
        // 1..3 (retention) and it was reset to the log's start.
        let history = History {
            kafka_writes: (1..5).map(|o| record(o, &o.to_string(), 100 + o, 1)).collect(),
            kafka_reads: vec![KafkaRead {
                start: 1,
                ..read("a", vec![record(3, "3", 103, 2), record(4, "4", 104, 2)], false)
            }],
            ..History::default()
        };
        let found = anomalies(&history);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].name, "poll skip");
        assert!(
            found[0].detail.contains("jumped from 1 to 3"),
            "{}",
            found[0].detail
        );
    }

    #[test]
    fn one_send_at_two_offsets_is_a_duplicate_and_two_sends_are_not() {
        let mut history = History {
            kafka_writes: vec![record(0, "1", 10, 1), record(1, "1", 10, 2)],
            ..History::default()
        };
        history.kafka_sends.insert(("t".to_string(), 0, 10), 1);
        let found = anomalies(&history);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "duplicate");
        assert_eq!(
            found[0].detail,
            "one record sent 1 time(s) at offsets 0, 1 of t/0"
        );
        // The application sent it twice (a relay re-publishing): Kafka kept each once.
        history.kafka_sends.insert(("t".to_string(), 0, 10), 2);
        assert!(anomalies(&history).is_empty());
    }

    #[test]
    fn a_violation_on_the_customer_names_the_anomaly_before_it() {
        let lost = Anomaly {
            name: "lost write",
            at: SimTime::from_millis(100),
            key: "7".to_string(),
            detail: "t/0@3 acknowledged at 100 ms, never read though later offsets were".to_string(),
        };
        let later = Anomaly {
            name: "duplicate",
            at: SimTime::from_millis(900),
            ..lost.clone()
        };
        let violation = |invariant, key: &str| Violation {
            invariant,
            kind: "k",
            key: key.to_string(),
            at: SimTime::from_millis(500),
            story: "story".to_string(),
            evidence: vec![],
        };
        let mut violations = vec![
            violation("referential", "contact/7"),
            violation("convergence", "customer/7"),
            violation("referential", "customer/8"),
            violation("bounded-staleness", "customer/7"),
        ];
        annotate(&mut violations, &[lost, later]);
        assert_eq!(violations[3].story, "story", "lateness is not Kafka's anomaly");
        assert_eq!(
            violations[0].story,
            "story; Kafka: lost write (t/0@3 acknowledged at 100 ms, never read though later offsets were)"
        );
        assert!(
            violations[1].story.contains("; duplicate ("),
            "convergence takes any"
        );
        assert_eq!(violations[2].story, "story", "another customer");
    }
}

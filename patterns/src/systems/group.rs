//! Consumer groups as Kafka's group coordinator keeps them (the classic protocol, with
//! eager rebalances): members, generations, and which member owns which partition.
//!
//! A member joins; the coordinator starts a rebalance and waits until every member it
//! knows has joined again (a member learns of the rebalance from its heartbeat's
//! answer, stops its partitions and rejoins) or has been dropped: its session expired
//! (`session.timeout.ms` without a heartbeat) or it did not rejoin within the rebalance
//! timeout (`max.poll.interval.ms`). Then a new generation starts, its partitions
//! assigned by range over the members in id order (Kafka's default `RangeAssignor`;
//! the classic protocol has the group's leader compute it and send it through
//! SyncGroup, here the coordinator computes the same assignment). A new group waits
//! `group.initial.rebalance.delay.ms` for more members before its first generation.
//!
//! A dynamic member's first join only reserves its id (KIP-394: Kafka answers a join
//! without a known member id `MEMBER_ID_REQUIRED` and keeps the id pending for a
//! session): it becomes a member, and starts a rebalance, when it joins again with it.
//! So a first join that arrives after its process died adds no member that would hold
//! partitions until its session ran out.
//!
//! Static membership (KIP-345, `group.instance.id`): a member that names its instance
//! and joins under a new member id (its process restarted) takes the place of the
//! instance's previous member at once, with the same partitions and no rebalance; the
//! previous member id is fenced. Static members do not leave the group when they stop,
//! so a restart within the session moves no partition.
//!
//! Fencing: a member's heartbeat or offset commit that names a generation other than the
//! current one is refused (ILLEGAL_GENERATION), and one from a member the coordinator
//! dropped is refused too (UNKNOWN_MEMBER_ID): the client's CommitFailedException. A
//! commit of the current generation is accepted while a rebalance is in progress, so
//! that members can commit what they handled before they give their partitions up.
//!
//! This module is the state machine alone, fed the simulated time; the broker that
//! leads `__consumer_offsets` runs it and writes each generation to that topic before
//! it answers, so that a coordinator that takes over continues it.

use std::collections::BTreeMap;

use faultline_sim::SimTime;
use serde::{Deserialize, Serialize};

/// `heartbeat.interval.ms` (3000 in Kafka; compressed 20× like the brokers' sessions).
pub const HEARTBEAT_INTERVAL_MS: u64 = 150;
/// `session.timeout.ms` (45000 in Kafka, compressed 20×).
pub const SESSION_TIMEOUT_MS: u64 = 2_250;
/// `max.poll.interval.ms` (300000 in Kafka, compressed 20×): the rebalance timeout, how
/// long the coordinator waits for a known member to rejoin.
pub const REBALANCE_TIMEOUT_MS: u64 = 15_000;
/// `group.initial.rebalance.delay.ms` (3000 in Kafka, compressed 20×).
pub const INITIAL_REBALANCE_DELAY_MS: u64 = 150;

/// A generation as the coordinator stores it: its number, the topic's partition count
/// it was assigned over, and each member's partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Bumped at every completed rebalance.
    pub generation: u64,
    /// The subscribed topic's partitions.
    pub partitions: u32,
    /// Each member's partitions, by member id.
    pub assignment: BTreeMap<String, Vec<u32>>,
    /// The static members' instance ids, by member id.
    #[serde(default, skip_serializing_if = "faultline_sim::omit::empty")]
    pub instances: BTreeMap<String, String>,
}

/// Why the coordinator refused a member's heartbeat or commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fenced {
    /// UNKNOWN_MEMBER_ID: the member was dropped (its session expired, or it did not
    /// rejoin in time); it must join as a new member.
    UnknownMember,
    /// ILLEGAL_GENERATION: the group moved on to another generation; the member must
    /// rejoin.
    IllegalGeneration,
    /// REBALANCE_IN_PROGRESS (heartbeats only): the member must give up its partitions
    /// and rejoin.
    RebalanceInProgress,
}

/// A join's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Join {
    /// The rebalance completed with the member in it.
    Joined {
        /// The new generation.
        generation: u64,
        /// The member's partitions in it.
        partitions: Vec<u32>,
    },
    /// The rebalance waits for other members (join again after a heartbeat interval).
    Pending,
    /// A dynamic member's first join: its id is reserved, and it joins again with it at
    /// once (KIP-394's MEMBER_ID_REQUIRED).
    MemberIdRequired,
}

#[derive(Clone, Debug)]
struct Member {
    /// Its last heartbeat, join or commit.
    last_seen: SimTime,
    /// It joined the rebalance in progress.
    rejoined: bool,
    /// Its `group.instance.id`, when static.
    instance: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Rebalance {
    /// When it started: members that have not rejoined by the rebalance timeout go.
    since: SimTime,
    /// No generation before this (a new group's initial delay).
    not_before: SimTime,
}

/// One consumer group (new and empty by default).
#[derive(Clone, Debug, Default)]
pub struct Group {
    current: Generation,
    members: BTreeMap<String, Member>,
    rebalance: Option<Rebalance>,
    /// The subscribed topic's partitions, as the members' joins name them.
    partitions: u32,
    /// A static member took its instance's place in the current generation, which is
    /// not stored yet: no one gets an answer until it is.
    unstored: bool,
    /// When its last member went (offsets retention counts from then).
    empty_since: Option<SimTime>,
    /// Ids answered MEMBER_ID_REQUIRED and not joined with yet, and since when (they
    /// lapse after a session, as Kafka's pending members do).
    pending_ids: BTreeMap<String, SimTime>,
}

impl Group {
    /// A group a new coordinator loaded from its last stored generation: its members
    /// are known again, their sessions started now.
    pub fn loaded(stored: Generation, now: SimTime) -> Group {
        let members = stored
            .assignment
            .keys()
            .map(|id| {
                (
                    id.clone(),
                    Member {
                        last_seen: now,
                        rejoined: false,
                        instance: stored.instances.get(id).cloned(),
                    },
                )
            })
            .collect();
        Group {
            partitions: stored.partitions,
            current: stored,
            members,
            rebalance: None,
            unstored: false,
            empty_since: None,
            pending_ids: BTreeMap::new(),
        }
    }

    /// The current generation.
    pub fn generation(&self) -> &Generation {
        &self.current
    }

    /// Whether the group has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// When the group lost its last member, if it has none since; `None` also when
    /// it never had one this coordinator saw.
    pub fn empty_since(&self) -> Option<SimTime> {
        self.empty_since.filter(|_| self.members.is_empty())
    }

    fn note_if_empty(&mut self, now: SimTime) {
        if self.members.is_empty() {
            self.empty_since.get_or_insert(now);
        }
    }

    /// Drops the members whose session expired or that did not rejoin within the
    /// rebalance timeout; answers their ids. Dropping a member starts a rebalance.
    pub fn expire(&mut self, now: SimTime) -> Vec<String> {
        let overdue = |member: &Member, rebalance: Option<Rebalance>| {
            now.saturating_since(member.last_seen).as_millis() as u64 >= SESSION_TIMEOUT_MS
                || rebalance.is_some_and(|r| {
                    !member.rejoined
                        && now.saturating_since(r.since).as_millis() as u64 >= REBALANCE_TIMEOUT_MS
                })
        };
        self.pending_ids
            .retain(|_, since| (now.saturating_since(*since).as_millis() as u64) < SESSION_TIMEOUT_MS);
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| overdue(m, self.rebalance))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.start_rebalance(now, now);
            self.note_if_empty(now);
        }
        gone
    }

    fn start_rebalance(&mut self, now: SimTime, not_before: SimTime) {
        if self.rebalance.is_none() {
            for member in self.members.values_mut() {
                member.rejoined = false;
            }
            self.rebalance = Some(Rebalance {
                since: now,
                not_before,
            });
        }
    }

    /// A member's join (a new member's first, or a member's answer to a rebalance) of a
    /// topic of `partitions` partitions, naming its `group.instance.id` when static.
    /// Answers its place in the current generation when it is in it and no rebalance is
    /// in progress.
    pub fn join(&mut self, member: &str, instance: Option<&str>, partitions: u32, now: SimTime) -> Join {
        self.expire(now);
        self.partitions = partitions;
        if let Some(instance) = instance {
            self.replace_static(member, instance, now);
        }
        match self.members.get_mut(member) {
            Some(known) => {
                known.last_seen = now;
                if self.rebalance.is_none() {
                    // A repeat of a join already answered: the same generation.
                    return self.place(member);
                }
                known.rejoined = true;
            }
            None => {
                if instance.is_none() && self.pending_ids.remove(member).is_none() {
                    self.pending_ids.insert(member.to_string(), now);
                    return Join::MemberIdRequired;
                }
                let not_before = if self.members.is_empty() && self.rebalance.is_none() {
                    now + std::time::Duration::from_millis(INITIAL_REBALANCE_DELAY_MS)
                } else {
                    now
                };
                self.start_rebalance(now, not_before);
                self.empty_since = None;
                self.members.insert(
                    member.to_string(),
                    Member {
                        last_seen: now,
                        rejoined: true,
                        instance: instance.map(str::to_string),
                    },
                );
            }
        }
        Join::Pending
    }

    /// A static member joining under a new id takes its instance's previous member's
    /// place (which is fenced from now on): in the current generation, when no
    /// rebalance is in progress (to be stored before anyone is answered), or in the
    /// rebalance.
    fn replace_static(&mut self, member: &str, instance: &str, now: SimTime) {
        let previous = self
            .members
            .iter()
            .find(|(id, m)| m.instance.as_deref() == Some(instance) && id.as_str() != member)
            .map(|(id, _)| id.clone());
        let Some(previous) = previous else {
            return;
        };
        let mut place = self.members.remove(&previous).expect("found above");
        place.last_seen = now;
        place.rejoined = self.rebalance.is_some();
        self.members.insert(member.to_string(), place);
        if self.rebalance.is_none() {
            if let Some(partitions) = self.current.assignment.remove(&previous) {
                self.current.assignment.insert(member.to_string(), partitions);
            }
            self.current.instances.remove(&previous);
            self.current
                .instances
                .insert(member.to_string(), instance.to_string());
            self.unstored = true;
        }
    }

    /// The generation the rebalance in progress would complete into now, when every
    /// remaining member has rejoined and the initial delay is over.
    pub fn ready(&self, now: SimTime) -> Option<Generation> {
        let Some(rebalance) = self.rebalance else {
            // A static member's new id in the current generation.
            return self.unstored.then(|| self.current.clone());
        };
        let all_in = self.members.values().all(|m| m.rejoined);
        (all_in && now >= rebalance.not_before).then(|| Generation {
            generation: self.current.generation + 1,
            partitions: self.partitions,
            assignment: range_assignment(self.members.keys(), self.partitions),
            instances: self
                .members
                .iter()
                .filter_map(|(id, m)| Some((id.clone(), m.instance.clone()?)))
                .collect(),
        })
    }

    /// Completes the rebalance into `next` (stored by now), if its members are still the
    /// group's; answers whether it did.
    pub fn complete(&mut self, next: Generation) -> bool {
        if self.unstored && self.rebalance.is_none() {
            if next != self.current {
                return false;
            }
            self.unstored = false;
            return true;
        }
        let same_members = next.assignment.keys().eq(self.members.keys());
        if self.rebalance.is_none() || !same_members || next.generation != self.current.generation + 1 {
            return false;
        }
        self.current = next;
        self.rebalance = None;
        self.unstored = false;
        for member in self.members.values_mut() {
            member.rejoined = false;
        }
        true
    }

    /// A join's answer once the rebalance it was waiting on was stored (or could not
    /// be): as [`Group::join`] for a member still in the group. A member that left or
    /// was dropped meanwhile is not taken back in: Kafka answers such a pending join
    /// `UNKNOWN_MEMBER_ID`, and a live member joins again as a new one.
    pub fn rejoin(&mut self, member: &str, instance: Option<&str>, partitions: u32, now: SimTime) -> Join {
        if !self.members.contains_key(member) {
            return Join::Pending;
        }
        self.join(member, instance, partitions, now)
    }

    /// A member's place in the current generation.
    fn place(&self, member: &str) -> Join {
        if self.unstored {
            return Join::Pending;
        }
        match self.current.assignment.get(member) {
            Some(partitions) => Join::Joined {
                generation: self.current.generation,
                partitions: partitions.clone(),
            },
            None => Join::Pending,
        }
    }

    /// A member leaves (LeaveGroup, sent as its process stops): the others rebalance at
    /// once rather than after its session.
    pub fn leave(&mut self, member: &str, now: SimTime) {
        if self.members.remove(member).is_some() {
            self.start_rebalance(now, now);
            self.note_if_empty(now);
        }
    }

    /// A member's heartbeat: refused when it is fenced or must rejoin.
    pub fn heartbeat(&mut self, member: &str, generation: u64, now: SimTime) -> Result<(), Fenced> {
        self.expire(now);
        let Some(known) = self.members.get_mut(member) else {
            return Err(Fenced::UnknownMember);
        };
        known.last_seen = now;
        if self.rebalance.is_some() {
            return Err(Fenced::RebalanceInProgress);
        }
        if generation != self.current.generation {
            return Err(Fenced::IllegalGeneration);
        }
        Ok(())
    }

    /// Whether an offset commit may be written: from a member of the current generation
    /// (a rebalance in progress allows it), or, without a member, only while the group
    /// has none (a consumer that assigns itself partitions, Kafka's `assign()`).
    pub fn may_commit(&mut self, member: Option<(&str, u64)>, now: SimTime) -> Result<(), Fenced> {
        self.expire(now);
        let Some((member, generation)) = member else {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(Fenced::UnknownMember)
            };
        };
        let Some(known) = self.members.get_mut(member) else {
            return Err(Fenced::UnknownMember);
        };
        // A commit counts as a sign of life, as Kafka's coordinator takes it.
        known.last_seen = now;
        if generation != self.current.generation {
            return Err(Fenced::IllegalGeneration);
        }
        Ok(())
    }
}

/// Kafka's `RangeAssignor` for one topic: members in id order, each a contiguous range,
/// the first `partitions % members` one partition more.
pub fn range_assignment<'a>(
    members: impl Iterator<Item = &'a String>,
    partitions: u32,
) -> BTreeMap<String, Vec<u32>> {
    let members: Vec<&String> = members.collect();
    let mut assignment = BTreeMap::new();
    if members.is_empty() {
        return assignment;
    }
    let n = members.len() as u32;
    let (each, extra) = (partitions / n, partitions % n);
    let mut next = 0;
    for (i, member) in members.into_iter().enumerate() {
        let count = each + u32::from((i as u32) < extra);
        assignment.insert(member.clone(), (next..next + count).collect());
        next += count;
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partitions every test's members subscribe to.
    const P: u32 = 4;

    fn joined(generation: u64, partitions: &[u32]) -> Join {
        Join::Joined {
            generation,
            partitions: partitions.to_vec(),
        }
    }

    fn ms(ms: u64) -> SimTime {
        SimTime::from_millis(ms)
    }

    /// A dynamic member's join as the client makes it: a first join answered
    /// MEMBER_ID_REQUIRED is sent again at once with the id.
    fn join(group: &mut Group, member: &str, now: SimTime) -> Join {
        match group.join(member, None, P, now) {
            Join::MemberIdRequired => group.join(member, None, P, now),
            answer => answer,
        }
    }

    /// Joins `member` and completes whatever is ready, as the coordinator does.
    fn join_and_complete(group: &mut Group, member: &str, now: SimTime) -> Join {
        let first = join(group, member, now);
        if let Some(next) = group.ready(now) {
            assert!(group.complete(next));
            return join(group, member, now);
        }
        first
    }

    /// A first join reserves its id without making a member (KIP-394): one from a
    /// process that died before it could join again starts no rebalance and holds no
    /// partition; the id lapses after a session.
    #[test]
    fn a_first_join_never_repeated_adds_no_member() {
        let mut group = Group::default();
        join_and_complete(&mut group, "a", ms(0));
        join_and_complete(&mut group, "a", ms(INITIAL_REBALANCE_DELAY_MS));
        assert_eq!(group.join("a", None, P, ms(200)), joined(1, &[0, 1, 2, 3]));
        // The late first join of a dead process.
        assert_eq!(group.join("ghost", None, P, ms(300)), Join::MemberIdRequired);
        assert_eq!(group.heartbeat("a", 1, ms(310)), Ok(()), "no rebalance");
        assert!(!group.members.contains_key("ghost"));
        // After a session its id is forgotten: a join with it is a first join again.
        assert_eq!(group.heartbeat("a", 1, ms(300 + SESSION_TIMEOUT_MS)), Ok(()));
        assert_eq!(
            group.join("ghost", None, P, ms(301 + SESSION_TIMEOUT_MS)),
            Join::MemberIdRequired
        );
        // A live client joins again at once and becomes a member.
        assert_eq!(
            group.join("ghost", None, P, ms(302 + SESSION_TIMEOUT_MS)),
            Join::Pending
        );
        assert!(group.members.contains_key("ghost"));
    }

    #[test]
    fn range_assignment_splits_partitions_in_member_order() {
        let members = ["b".to_string(), "a".to_string()];
        let mut sorted = members.to_vec();
        sorted.sort();
        let assignment = range_assignment(sorted.iter(), 5);
        assert_eq!(assignment["a"], vec![0, 1, 2]);
        assert_eq!(assignment["b"], vec![3, 4]);
        assert!(range_assignment(std::iter::empty(), 4).is_empty());
    }

    #[test]
    fn a_new_group_waits_the_initial_delay_then_every_member_gets_its_range() {
        let mut group = Group::default();
        assert_eq!(join(&mut group, "a", ms(0)), Join::Pending);
        assert_eq!(join(&mut group, "b", ms(10)), Join::Pending);
        assert_eq!(group.ready(ms(100)), None, "the initial delay is not over");
        let next = group.ready(ms(INITIAL_REBALANCE_DELAY_MS)).expect("both joined");
        assert!(group.complete(next));
        assert_eq!(join(&mut group, "a", ms(200)), joined(1, &[0, 1]));
        assert_eq!(join(&mut group, "b", ms(200)), joined(1, &[2, 3]));
        assert_eq!(group.heartbeat("a", 1, ms(300)), Ok(()));
    }

    /// A join waits while the coordinator stores the generation it completes; a member
    /// that leaves meanwhile (its process stopping) stays out: the stored generation no
    /// longer matches the group, and the join's answer does not take it back in.
    #[test]
    fn a_member_that_leaves_while_its_join_is_stored_is_not_taken_back_in() {
        let mut group = Group::default();
        join(&mut group, "a", ms(0));
        join_and_complete(&mut group, "b", ms(INITIAL_REBALANCE_DELAY_MS));
        group.leave("b", ms(300));
        assert_eq!(join(&mut group, "a", ms(310)), Join::Pending);
        let storing = group.ready(ms(310)).expect("a rejoined, b is gone");
        // While it is stored, c joins and stops at once: its leave lands before the
        // store completes, and its join is still waiting for an answer.
        assert_eq!(join(&mut group, "c", ms(320)), Join::Pending);
        group.leave("c", ms(330));
        assert!(group.complete(storing), "the same members as when it was built");
        assert_eq!(group.rejoin("c", None, P, ms(340)), Join::Pending);
        assert!(group.generation().assignment.keys().eq(["a"]));
        assert!(
            !group.members.contains_key("c"),
            "c left; its pending join keeps it out"
        );
        assert_eq!(group.rejoin("a", None, P, ms(340)), joined(2, &[0, 1, 2, 3]));
    }

    #[test]
    fn a_member_whose_session_expires_is_fenced_and_its_partitions_move() {
        let mut group = Group::default();
        join(&mut group, "a", ms(0));
        join_and_complete(&mut group, "b", ms(INITIAL_REBALANCE_DELAY_MS));
        // b heartbeats; a falls silent (paused) past the session.
        let mut now = 200;
        while now < SESSION_TIMEOUT_MS {
            assert_eq!(group.heartbeat("b", 1, ms(now)), Ok(()));
            now += HEARTBEAT_INTERVAL_MS;
        }
        assert_eq!(
            group.heartbeat("b", 1, ms(now)),
            Err(Fenced::RebalanceInProgress),
            "a's session expired: the group rebalances"
        );
        assert_eq!(
            join_and_complete(&mut group, "b", ms(now)),
            joined(2, &[0, 1, 2, 3])
        );
        // The zombie wakes up: its commit and heartbeat are refused.
        assert_eq!(
            group.may_commit(Some(("a", 1)), ms(now + 10)),
            Err(Fenced::UnknownMember)
        );
        assert_eq!(group.heartbeat("a", 1, ms(now + 10)), Err(Fenced::UnknownMember));
        assert_eq!(
            group.may_commit(Some(("b", 1)), ms(now + 10)),
            Err(Fenced::IllegalGeneration)
        );
        assert_eq!(group.may_commit(Some(("b", 2)), ms(now + 10)), Ok(()));
    }

    #[test]
    fn a_rebalance_waits_for_known_members_and_allows_their_commits_meanwhile() {
        let mut group = Group::default();
        join(&mut group, "a", ms(0));
        join_and_complete(&mut group, "a", ms(INITIAL_REBALANCE_DELAY_MS));
        // A second member arrives: a has to rejoin before generation 2.
        assert_eq!(join(&mut group, "b", ms(500)), Join::Pending);
        assert_eq!(group.ready(ms(500)), None);
        assert_eq!(group.heartbeat("a", 1, ms(550)), Err(Fenced::RebalanceInProgress));
        assert_eq!(
            group.may_commit(Some(("a", 1)), ms(560)),
            Ok(()),
            "what a handled before the rebalance may still be committed"
        );
        assert_eq!(group.may_commit(None, ms(560)), Err(Fenced::UnknownMember));
        assert_eq!(join_and_complete(&mut group, "a", ms(600)), joined(2, &[0, 1]));
        assert_eq!(join(&mut group, "b", ms(600)), joined(2, &[2, 3]));
    }

    #[test]
    fn a_group_is_empty_from_its_last_members_leave_or_expiry_until_someone_joins() {
        let mut group = Group::default();
        assert_eq!(group.empty_since(), None, "never had a member");
        join(&mut group, "a", ms(0));
        join_and_complete(&mut group, "b", ms(INITIAL_REBALANCE_DELAY_MS));
        group.leave("a", ms(300));
        assert_eq!(group.empty_since(), None, "b is still in");
        // b falls silent: empty from the moment its session is found expired.
        let late = 300 + SESSION_TIMEOUT_MS + 50;
        assert_eq!(group.expire(ms(late)), ["b".to_string()]);
        assert!(group.is_empty());
        assert_eq!(group.empty_since(), Some(ms(late)));
        group.expire(ms(late + 1_000));
        assert_eq!(group.empty_since(), Some(ms(late)), "counted from the first time");
        join(&mut group, "c", ms(late + 2_000));
        assert_eq!(group.empty_since(), None);
    }

    #[test]
    fn a_member_that_does_not_rejoin_in_time_is_dropped() {
        let mut group = Group::default();
        join(&mut group, "a", ms(0));
        join_and_complete(&mut group, "a", ms(INITIAL_REBALANCE_DELAY_MS));
        join(&mut group, "b", ms(1_000));
        // a keeps heartbeating (its session lives) but never rejoins.
        let mut now = 1_000;
        while now < 1_000 + REBALANCE_TIMEOUT_MS {
            let _ = group.heartbeat("a", 1, ms(now));
            join(&mut group, "b", ms(now));
            now += HEARTBEAT_INTERVAL_MS;
        }
        assert_eq!(group.heartbeat("a", 1, ms(now)), Err(Fenced::UnknownMember));
        assert_eq!(
            join_and_complete(&mut group, "b", ms(now)),
            joined(2, &[0, 1, 2, 3])
        );
    }

    #[test]
    fn a_static_member_restarting_takes_its_place_back_without_a_rebalance() {
        let mut group = Group::default();
        group.join("a#0", Some("a"), P, ms(0));
        group.join("b#0", Some("b"), P, ms(0));
        let next = group.ready(ms(INITIAL_REBALANCE_DELAY_MS)).expect("both joined");
        assert!(group.complete(next));
        // b's process restarts and joins under a new member id.
        assert_eq!(
            group.join("b#1", Some("b"), P, ms(500)),
            Join::Pending,
            "not stored yet"
        );
        let renamed = group.ready(ms(500)).expect("the new id is to be stored");
        assert_eq!(renamed.generation, 1, "no new generation");
        assert!(group.complete(renamed));
        assert_eq!(group.join("b#1", Some("b"), P, ms(510)), joined(1, &[2, 3]));
        assert_eq!(
            group.heartbeat("a#0", 1, ms(520)),
            Ok(()),
            "a goes on undisturbed"
        );
        assert_eq!(
            group.may_commit(Some(("b#0", 1)), ms(520)),
            Err(Fenced::UnknownMember)
        );
        assert_eq!(group.generation().instances["b#1"], "b");
    }

    #[test]
    fn a_member_that_leaves_starts_a_rebalance_at_once() {
        let mut group = Group::default();
        join(&mut group, "a", ms(0));
        join_and_complete(&mut group, "b", ms(INITIAL_REBALANCE_DELAY_MS));
        group.leave("b", ms(300));
        assert_eq!(group.heartbeat("a", 1, ms(310)), Err(Fenced::RebalanceInProgress));
        assert_eq!(
            join_and_complete(&mut group, "a", ms(320)),
            joined(2, &[0, 1, 2, 3])
        );
    }

    #[test]
    fn a_loaded_group_continues_its_generation_and_a_stale_completion_is_refused() {
        let stored = Generation {
            generation: 7,
            partitions: P,
            assignment: range_assignment(["a".to_string(), "b".to_string()].iter(), P),
            instances: BTreeMap::new(),
        };
        let mut group = Group::loaded(stored, ms(10_000));
        assert_eq!(group.heartbeat("a", 7, ms(10_100)), Ok(()));
        assert_eq!(
            group.may_commit(Some(("b", 6)), ms(10_100)),
            Err(Fenced::IllegalGeneration)
        );
        // A rebalance whose membership changed while its generation was being written
        // does not complete.
        join(&mut group, "c", ms(10_200));
        join(&mut group, "a", ms(10_200));
        join(&mut group, "b", ms(10_200));
        let next = group.ready(ms(10_200)).expect("all three joined");
        join(&mut group, "d", ms(10_250));
        assert!(!group.complete(next));
        assert_eq!(group.generation().generation, 7);
    }
}

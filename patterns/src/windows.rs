//! The operation windows components mark for fault coverage ([`faultline_sim::coverage`]),
//! and the coverage every sweep should reach.

use faultline_sim::coverage::windows as world;

/// The source wrote a commit record and waits for its sync.
pub const COMMIT_NOT_SYNCED: &str = "commit-not-synced";
/// The target wrote an apply's record and waits for its sync.
pub const APPLY_NOT_SYNCED: &str = "apply-not-synced";
/// Committed at the source, not yet handed to the other side (an after-commit queue
/// holds it).
pub const AFTER_COMMIT_BEFORE_PUBLISH: &str = "after-commit-before-publish";
/// The outbox relay published messages it has not yet marked sent.
pub const AFTER_PUBLISH_BEFORE_MARK_SENT: &str = "after-publish-before-mark-sent";
/// A Connect-style task published records past its last flushed position.
pub const AFTER_PUBLISH_BEFORE_POSITION_FLUSH: &str = "after-publish-before-position-flush";
/// A consumer applied records whose offset it has not committed.
pub const AFTER_APPLY_BEFORE_OFFSET_COMMIT: &str = "after-apply-before-offset-commit";
/// The target committed a change whose side effect is not yet acknowledged.
pub const AFTER_COMMIT_BEFORE_EFFECT: &str = "after-commit-before-effect";

/// Every fault/window pair a chaos sweep across the variants should reach. A pair never
/// reached is a hole in the testbed: the verdicts say nothing about it.
pub const EXPECTED: &[&str] = &[
    "crash/commit-not-synced",
    "power-loss/commit-not-synced",
    "power-loss/apply-not-synced",
    "crash/after-commit-before-publish",
    "power-loss/after-commit-before-publish",
    "crash/after-publish-before-mark-sent",
    "crash/after-publish-before-position-flush",
    "crash/after-apply-before-offset-commit",
    "power-loss/after-apply-before-offset-commit",
    "crash/after-commit-before-effect",
    world::POWER_LOSS_UNSYNCED_TAIL,
    world::POWER_LOSS_TORN_TAIL,
    world::SYNC_ERROR_READABLE_NOT_DURABLE,
    world::LOST_RESPONSE_AFTER_HANDLER,
    world::TIMEOUT_LATE_ARRIVAL,
];

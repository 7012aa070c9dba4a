//! faultline's deterministic world: a seeded network, disks, processes and clocks that
//! fail on purpose.
//!
//! The crate knows nothing about customers, brokers or integration patterns; it is a
//! reusable world in which any set of tokio services can run. Read the modules in this
//! order: [`time`] and [`rng`] (what fixes a run), [`trace`] (what a run leaves behind),
//! [`disk`], [`clock`] and [`rpc`] (what hosts use), [`fault`] and [`profile`] (what goes
//! wrong), and [`world`] (the driver that ties them together).
//!
//! Determinism rules the crate keeps and asks of its users: time only from the
//! simulation, randomness only from named streams, iteration only over ordered
//! collections, and no threads inside a run.

#![deny(missing_docs)]

// turmoil seeds each host's tokio runtime from the world RNG only under this cfg;
// without it two ready `select!` branches resolve differently from run to run, and a
// build would succeed but replay nothing. RUSTFLAGS in the environment replaces
// `.cargo/config.toml`'s flags instead of adding to them, so it must carry it too.
#[cfg(not(tokio_unstable))]
compile_error!(
    "faultline must be built with `--cfg tokio_unstable` (runs are not deterministic without it). \
     .cargo/config.toml sets it (rustflags and rustdocflags); a RUSTFLAGS or RUSTDOCFLAGS \
     environment variable replaces that setting: unset it, or add `--cfg tokio_unstable` to it."
);

mod capture;
pub mod clock;
pub mod coverage;
pub mod disk;
pub mod fault;
pub mod omit;
pub mod panic;
pub mod profile;
pub mod progress;
pub mod rng;
pub mod rpc;
pub mod time;
pub mod timer;
pub mod trace;
pub mod world;

pub use capture::TraceCapture;
pub use clock::{HostClock, WallTime};
pub use coverage::{Coverage, WindowGuard};
pub use disk::{
    Disk, DiskConfig, DiskError, DiskFaultKind, IoLatency, LogFile, LogPos, LogRecord, Recovered, Recovery,
    Replay,
};
pub use fault::{Fault, FaultEvent, FaultKindInfo, FaultPlan, MessageFaultRates, PlanError, FAULT_KINDS};
pub use panic::{BudgetExceeded, CaughtPanic};
pub use profile::{FaultTarget, FaultWindow, Profile, ProfileInfo, PROFILES};
pub use progress::Ended;
pub use rng::{RngStreams, Seed, SimRng};
pub use rpc::{serve, PipelinedClient, RpcClient, RpcError, RpcMessage};
pub use time::SimTime;
pub use trace::{EventId, Trace, TraceEvent, TraceHash};
pub use world::{HostCtx, HostResult, RunSummary, World, WorldConfig, WorldError};

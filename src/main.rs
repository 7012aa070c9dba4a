//! The `faultline` command line: a thin layer over the library crates
//! ([`faultline::cli`]).

use std::process::ExitCode;

/// Runs allocate and free small objects at every step; see the manifest for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    faultline::cli::main()
}

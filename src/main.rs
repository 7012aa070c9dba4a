//! The `faultline` command line: a thin layer over the library crates. Flags are parsed
//! here, resolved against the registries, and handed to `scenarios` (to run) and
//! `reports` (to render).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_default_sigpipe();
    cli::main(cli::Cli::parse())
}

/// A reader that closes the pipe early (`faultline list | head`) ends the process
/// quietly, as Unix tools do; Rust ignores SIGPIPE by default, so the next print would
/// panic instead. Reports are written before anything is printed about them.
#[cfg(unix)]
fn restore_default_sigpipe() {
    // SAFETY: changes a signal's disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}

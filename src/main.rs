//! The `faultline` command line: a thin layer over the library crates. Flags are parsed
//! here, resolved against the registries, and handed to `scenarios` (to run) and
//! `reports` (to render).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::main(cli::Cli::parse())
}

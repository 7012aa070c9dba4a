//! The `faultline` command line: a thin layer over the library crates
//! ([`faultline::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    faultline::cli::main()
}

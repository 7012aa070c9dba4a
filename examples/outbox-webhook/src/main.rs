//! `outbox-webhook`: faultline's command line with this crate's patterns registered.
//! Every command, flag and suite file works as with `faultline`, and the patterns
//! `outbox-webhook` and `outbox-webhook-naive` sit beside the built-in ones.

use std::process::ExitCode;

fn main() -> ExitCode {
    outbox_webhook::register();
    faultline::cli::main_as("outbox-webhook")
}

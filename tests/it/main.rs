//! Integration tests of the whole: one test binary (fast to link), one module per area.

mod bugs;
mod cli;
mod end_to_end;
mod properties;
mod reports;
mod shrink;
mod variants;

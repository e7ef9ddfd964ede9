//! The `tally` binary's library half: config loading ([`config`]), assembling the running
//! application ([`app`]), and the CLI commands ([`cli`], [`test_conversion`], [`erase`], [`container`]). `main.rs` only parses arguments and
//! maps results to exit codes, so end-to-end tests can start the same app in-process.

pub mod app;
pub mod cli;
pub mod config;
pub mod container;
pub mod erase;
pub mod telemetry;
pub mod test_conversion;

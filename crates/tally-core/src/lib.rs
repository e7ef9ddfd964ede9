//! tally's domain model, free of I/O: the canonical [`event::Event`], how raw JSON becomes one
//! ([`parse`], [`segment`]), the tracking plan ([`plan`]), identity normalisation and hashing
//! ([`identity`]), and the dedup and merge rules ([`dedup`], [`merge`]).
//!
//! Invariants kept here and relied on everywhere else:
//! - a parsed [`event::Event`] never holds a raw email address or phone number, only their
//!   SHA-256 forms;
//! - money is an exact decimal ([`rust_decimal::Decimal`]), never a float;
//! - time is a [`timestamp::Timestamp`] in Unix milliseconds (UTC), whatever the input form was.

pub mod clock;
pub mod consent;
pub mod currency;
pub mod dedup;
pub mod event;
pub mod identity;
pub mod merge;
pub mod money;
pub mod parse;
pub mod plan;
pub mod rejection;
pub mod retry;
pub mod route;
pub mod secret;
pub mod segment;
pub mod tcf;
pub mod timestamp;

pub use rejection::{Rejection, Warning};

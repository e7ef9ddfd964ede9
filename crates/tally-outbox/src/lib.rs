//! The dispatcher: for one destination, claim due deliveries from the store (leases, not
//! transactions), send them in batches through a [`Destination`], and settle each with the
//! [`RetryPolicy`]: delivered, retried later, dead-lettered past the platform's deadline, or
//! parked until the configuration is fixed.
//!
//! Invariants:
//! - no store transaction or lock is held while a destination is called;
//! - a crashed dispatcher's leases expire and another instance takes the deliveries over;
//! - each destination has its own dispatcher, so a slow or dead one delays no other.
//!
//! Before sending, each claimed delivery is checked against the destination's [`Route`]
//! (still mapped? past the platform's deadline?) and its consent ([`Resolved::decide`]):
//! withheld deliveries are settled without a request, with the consent they were judged under.
//!
//! Not here: what a platform's request looks like (connectors), HTTP.
//!
//! [`Route`]: tally_core::route::Route
//! [`Resolved::decide`]: tally_core::consent::Resolved::decide

mod dispatcher;
mod error;
#[cfg(test)]
mod tests;

pub use dispatcher::{Dispatcher, DispatcherConfig, RequestLimiter, request_limiter};
pub use error::OutboxError;
pub use tally_destinations::{AttemptSummary, Destination};

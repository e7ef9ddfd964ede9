//! Test helpers shared by tally's crates. Never a runtime dependency.
//!
//! [`FakeDestination`] is an HTTP server on `127.0.0.1:0` that answers from a script (status,
//! headers, body, delay), then a default reply, and records every request it received. Vendor
//! fakes (Meta, Google, GA4, TikTok) build on it with their auth checks and error shapes.

mod fake;

pub use fake::{Captured, FakeDestination, Reply};

//! Test helpers shared by tally's crates. Never a runtime dependency.
//!
//! [`FakeDestination`] is an HTTP server on `127.0.0.1:0` that answers from a script (status,
//! headers, body, delay), then a default reply, and records every request it received. The
//! vendor fakes (one module per platform) are as strict as the real APIs: auth, URL shape,
//! field names and types, hash formats, batch and age limits, and the real answer envelopes.
//! [`events`] builds test events through the real parser.

pub mod events;
mod fake;

pub mod fakes;

pub use fake::{Captured, FakeDestination, Handler, Reply};

//! HTTP routes: `events.rs` holds the event doors, `admin.rs` the admin API, `consent.rs`
//! revocation, `erase.rs` right to erasure, `health.rs` the health and metrics endpoints,
//! `tag.rs` the browser tag (`/tally.js`).

pub mod admin;
pub mod consent;
pub mod erase;
pub mod events;
pub mod health;
pub mod tag;

//! HTTP routes: `events.rs` holds the event doors, `admin.rs` the admin API, `consent.rs`
//! revocation, `erase.rs` right to erasure, `health.rs` the health and metrics endpoints,
//! `tag.rs` the browser tag (`/tally.js`), `container.rs` the tag container (admin API and
//! `/v1/container.js`).

pub mod admin;
pub mod consent;
pub mod container;
pub mod erase;
pub mod events;
pub mod health;
pub mod tag;

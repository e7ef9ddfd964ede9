//! HTTP routes: `events.rs` holds the event doors, `admin.rs` the admin API, `health.rs` the
//! health and metrics endpoints.

pub mod admin;
pub mod consent;
pub mod events;
pub mod health;

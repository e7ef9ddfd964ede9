//! Strict fakes of the platforms' APIs, one module per platform, each built on
//! [`FakeDestination::start_with`](crate::FakeDestination::start_with): scripted failures come
//! first, then the platform's own validation and answer envelopes, and a record of the events
//! it accepted.

pub mod data_manager;
pub mod ga4;
pub mod google_ads;
pub mod meta;
pub mod tiktok;
pub mod webhook;

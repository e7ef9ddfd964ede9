//! Destinations: what the dispatcher sends events through. A destination turns events into
//! one platform's requests and each answer into a [`Disposition`] per event.
//!
//! Destinations never touch the store and never decide retry timing: the outbox leases the
//! deliveries and applies the retry policy to the dispositions returned here. Nor do they
//! decide consent or event-name mapping: the dispatcher hands them [`Outgoing`] entries that
//! already say which platform name, value and identifiers may go out.
//!
//! Every connector lives in its own folder with the same inner shape:
//! `mod.rs` (the `Config` it reads from `[[destinations]]`, the connector and its
//! [`Destination`] impl), `payload.rs` (event → platform JSON), `response.rs` (platform answer →
//! dispositions).

use async_trait::async_trait;
use rust_decimal::Decimal;
use tally_core::event::Event;
use tally_core::retry::Disposition;

pub mod error;
pub mod http;
pub mod properties;
pub mod redact;
pub mod registry;
pub mod split;

pub mod ga4;
pub mod google_ads;
pub mod meta_capi;
pub mod tiktok;
pub mod webhook;

pub use error::DestinationError;
pub use registry::{KINDS, build, default_events, validate};

/// A platform connector as the dispatcher sees it.
#[async_trait]
pub trait Destination: Send + Sync + 'static {
    /// Configured name (deliveries are keyed by it).
    fn name(&self) -> &str;
    /// Most events per request the platform takes.
    fn max_batch(&self) -> usize;
    /// Sends the events; one disposition and summary per event, in the same order.
    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)>;
}

/// One event as it leaves for one destination.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The merged event.
    pub event: &'a Event,
    /// The event's name on the platform (from the destination's `events` mapping).
    pub name: &'a str,
    /// The conversion value to report (the destination's value property); currency is the
    /// event's.
    pub value: Option<Decimal>,
    /// False when consent allows only a send stripped of personal identifiers (hashed
    /// contact data, external/user IDs, IP, user agent, click IDs and ad cookies).
    pub identifiers: bool,
    /// Send in the platform's test mode (Meta/TikTok `test_event_code`, GA4
    /// `/debug/mp/collect`, Google `validateOnly`): a test event or a destination in test mode.
    pub test: bool,
}

/// What the ledger keeps of one attempt besides its disposition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptSummary {
    /// HTTP status, when a response came back.
    pub status: Option<u16>,
    /// A short description of the request and response, never containing a secret.
    pub text: String,
}

impl AttemptSummary {
    /// A summary for `status` with `text`.
    pub fn new(status: Option<u16>, text: impl Into<String>) -> Self {
        AttemptSummary {
            status,
            text: text.into(),
        }
    }
}

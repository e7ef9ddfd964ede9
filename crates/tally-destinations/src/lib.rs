//! Destinations: what the dispatcher sends events through. A destination turns events into
//! one platform's requests and each answer into a [`Disposition`] per event.
//!
//! Destinations never touch the store and never decide retry timing: the outbox leases the
//! deliveries and applies the retry policy to the dispositions returned here.

use async_trait::async_trait;
use tally_core::event::Event;
use tally_core::retry::Disposition;

/// A platform connector as the dispatcher sees it.
#[async_trait]
pub trait Destination: Send + Sync + 'static {
    /// Configured name (deliveries are keyed by it).
    fn name(&self) -> &str;
    /// Most events per request the platform takes.
    fn max_batch(&self) -> usize;
    /// Sends the events; one disposition and summary per event, in the same order.
    async fn send(&self, events: &[&Event]) -> Vec<(Disposition, AttemptSummary)>;
}

/// What the ledger keeps of one attempt besides its disposition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptSummary {
    /// HTTP status, when a response came back.
    pub status: Option<u16>,
    /// A short description of the request and response.
    pub text: String,
}

//! The outbox's one error type.

/// Why a dispatch round failed as a whole (individual attempts are dispositions, not errors).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The store could not lease or record; the round is retried on the next tick.
    #[error("store: {0}")]
    Store(#[from] tally_store::StoreError),
    /// The destination answered a different number of results than events it was given.
    #[error("destination {destination} answered {answered} results for {sent} events")]
    ResultCount {
        /// Destination name.
        destination: String,
        /// Events sent.
        sent: usize,
        /// Results received.
        answered: usize,
    },
}

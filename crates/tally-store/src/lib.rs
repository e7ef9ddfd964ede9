//! tally's durable store: the [`Store`] trait every backend implements, the embedded SQLite
//! backend ([`sqlite::SqliteStore`]), the PostgreSQL backend for several nodes
//! ([`postgres::PostgresStore`]), and a conformance suite that every backend must pass.
//!
//! Contract every backend keeps:
//! - [`Store::ingest`] returns outcomes only after its items are durably committed (synced); an
//!   error is never a false acknowledgement, but it does not prove nothing was committed (a
//!   connection lost during `COMMIT`, an fsync error): clients retry, and dedup answers a retry of
//!   a committed event `duplicate`;
//! - dedup decisions are made inside the write transaction with [`tally_core::dedup::decide`],
//!   so concurrent copies of one event yield exactly one `Accepted`;
//! - no lock or transaction is held across anything but the store's own I/O.
//!
//! Not here: parsing, plan checks and HTTP (the collector), delivery (the outbox).

pub mod container;
mod erase;
pub mod error;
pub mod migrate;
pub mod model;
pub mod postgres;
mod shared;
pub mod sqlite;
#[cfg(test)]
mod testsuite;

use async_trait::async_trait;
use tally_core::timestamp::Timestamp;

pub use container::{ContainerDraft, ContainerPublish, ContainerVersion, ContainerVersionInfo};
pub use error::StoreError;
pub use model::*;

/// The durable store behind the collector, the ledger and the CLI.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Deduplicates, merges and stores `items` in one durable commit; one outcome per item, in
    /// order. `now` is the dedup clock (windows are measured back from it).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Overloaded`] when nothing could be committed.
    async fn ingest(
        &self,
        now: Timestamp,
        items: Vec<IngestItem>,
    ) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Every stored event with this event ID (under any name), including events it was merged
    /// into as a duplicate with a different ID.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn ledger(&self, event_id: &str) -> Result<Vec<LedgerEntry>, StoreError>;

    /// Quarantine rows, oldest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn quarantine(
        &self,
        filter: QuarantineFilter,
    ) -> Result<Vec<QuarantineRecord>, StoreError>;

    /// Dedup figures per event name for copies received since `since`.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn dedup_stats(&self, since: Timestamp) -> Result<Vec<EventDedupStats>, StoreError>;

    /// Deliveries per destination and state.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError>;

    /// Up to `limit` deliveries in `state` (of one destination, if given), most recently
    /// changed first.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn deliveries_in_state(
        &self,
        state: DeliveryState,
        destination: Option<String>,
        limit: u32,
    ) -> Result<Vec<DeliverySummary>, StoreError>;

    /// The container's draft, if one was saved.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn container_draft(&self, container: &str) -> Result<Option<ContainerDraft>, StoreError>;

    /// Replaces the container's draft (durably, before returning).
    ///
    /// # Errors
    /// When it cannot be committed.
    async fn save_container_draft(
        &self,
        now: Timestamp,
        container: &str,
        document: &str,
    ) -> Result<(), StoreError>;

    /// Publishes a new version, numbered one past the newest (concurrent publishes from
    /// several nodes get distinct numbers); it is live from now on.
    ///
    /// # Errors
    /// When it cannot be committed.
    async fn publish_container(
        &self,
        now: Timestamp,
        container: &str,
        publish: ContainerPublish,
    ) -> Result<ContainerVersionInfo, StoreError>;

    /// Every published version of the container, newest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn container_versions(
        &self,
        container: &str,
    ) -> Result<Vec<ContainerVersionInfo>, StoreError>;

    /// One published version (`None`: the live one, the newest).
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn container_version(
        &self,
        container: &str,
        version: Option<u32>,
    ) -> Result<Option<ContainerVersion>, StoreError>;

    /// The live version's number, without its document (read on every page that asks for the
    /// container).
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn live_container_version(&self, container: &str) -> Result<Option<u32>, StoreError>;

    /// Whether the store can accept writes now (for `/healthz`); it must recover without a
    /// write, since a load balancer sends none to a node it took out of rotation. SQLite: a
    /// failed commit makes it unready until its cause is proved gone (a lack of room by a
    /// probe this call starts, rate-limited, that writes a margin beside the database;
    /// anything else by a commit that wrote rows; `sqlite/health.rs`); PostgreSQL asks the
    /// database.
    ///
    /// # Errors
    /// The reason it cannot.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and stops accepting new ones.
    async fn close(&self);

    /// Leases up to `limit` due deliveries of `destination` to `owner` until `lease_until`;
    /// with `gated`, live (non-test) deliveries only once the destination is live.
    ///
    /// # Errors
    /// As [`Store::ingest`].
    async fn claim(
        &self,
        now: Timestamp,
        destination: &str,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
        gated: bool,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let item = IngestItem::Claim {
            destination: destination.to_owned(),
            owner: owner.to_owned(),
            lease_until,
            limit,
            gated,
        };
        match self.ingest(now, vec![item]).await?.pop() {
            Some(IngestOutcome::Claimed(claimed)) => Ok(claimed),
            other => Err(StoreError::Corrupt {
                table: "deliveries",
                message: format!("claim answered {other:?}"),
            }),
        }
    }

    /// Declares `destination` live: its live deliveries may go out from now on.
    ///
    /// # Errors
    /// As [`Store::ingest`].
    async fn go_live(
        &self,
        now: Timestamp,
        destination: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        let item = IngestItem::GoLive {
            destination: destination.to_owned(),
            note: note.to_owned(),
        };
        match self.ingest(now, vec![item]).await?.pop() {
            Some(IngestOutcome::Live) => Ok(()),
            other => Err(StoreError::Corrupt {
                table: "live_destinations",
                message: format!("go-live answered {other:?}"),
            }),
        }
    }

    /// Withholds the person's pending deliveries and records the revocation; returns how
    /// many deliveries were cancelled.
    ///
    /// # Errors
    /// As [`Store::ingest`].
    async fn revoke(&self, now: Timestamp, revocation: Revocation) -> Result<u64, StoreError> {
        match self
            .ingest(now, vec![IngestItem::Revoke(revocation)])
            .await?
            .pop()
        {
            Some(IngestOutcome::Revoked { cancelled }) => Ok(cancelled),
            other => Err(StoreError::Corrupt {
                table: "deliveries",
                message: format!("revoke answered {other:?}"),
            }),
        }
    }

    /// Right to erasure: finds the person's events by `erasure.people` and by every key those
    /// events and the person's identity links carry (transitively, up to
    /// `erasure.max_rounds` rounds), and removes in one transaction the events, their copies,
    /// aliases, person keys, deliveries (every state) and attempts, the click memories of the
    /// person's visitor keys, their identity links and their quarantine rows. Revocations are
    /// kept. Returns what was removed.
    ///
    /// # Errors
    /// As [`Store::ingest`].
    async fn erase(&self, now: Timestamp, erasure: Erasure) -> Result<ErasureReport, StoreError> {
        match self
            .ingest(now, vec![IngestItem::Erase(erasure)])
            .await?
            .pop()
        {
            Some(IngestOutcome::Erased(report)) => Ok(report),
            other => Err(StoreError::Corrupt {
                table: "events",
                message: format!("erase answered {other:?}"),
            }),
        }
    }

    /// Puts stopped deliveries back in the queue; returns (requeued, left alone because past
    /// the platform's deadline).
    ///
    /// # Errors
    /// As [`Store::ingest`].
    async fn replay_deliveries(
        &self,
        now: Timestamp,
        filter: ReplayFilter,
    ) -> Result<(u64, u64), StoreError> {
        match self
            .ingest(now, vec![IngestItem::Replay(filter)])
            .await?
            .pop()
        {
            Some(IngestOutcome::Replayed { requeued, expired }) => Ok((requeued, expired)),
            other => Err(StoreError::Corrupt {
                table: "deliveries",
                message: format!("replay answered {other:?}"),
            }),
        }
    }

    /// Records attempt results; for each, whether it applied (false when the lease had passed
    /// to someone else).
    ///
    /// # Errors
    /// As [`Store::ingest`].
    async fn settle(
        &self,
        now: Timestamp,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<bool>, StoreError> {
        let items = settlements.into_iter().map(IngestItem::Settle).collect();
        self.ingest(now, items)
            .await?
            .into_iter()
            .map(|o| match o {
                IngestOutcome::Settled { applied } => Ok(applied),
                other => Err(StoreError::Corrupt {
                    table: "deliveries",
                    message: format!("settle answered {other:?}"),
                }),
            })
            .collect()
    }
}

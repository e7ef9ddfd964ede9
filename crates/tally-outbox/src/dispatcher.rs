//! One destination's dispatch loop.

use std::sync::Arc;
use std::time::Duration;

use tally_core::clock::Clock;
use tally_core::retry::{Disposition, Next, RetryPolicy};
use tally_core::timestamp::Timestamp;
use tally_destinations::{Destination, Outgoing};
use tally_store::{AttemptRecord, Settlement, Store};

use crate::OutboxError;

/// How a dispatcher claims and retries.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// This dispatcher's identity in leases (unique per process and destination).
    pub owner: String,
    /// How long a claimed delivery stays leased if the dispatcher dies mid-attempt.
    pub lease: Duration,
    /// How long to wait between polls when nothing is due.
    pub idle_poll: Duration,
    /// Retry schedule.
    pub retry: RetryPolicy,
}

/// One destination's dispatcher.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    destination: Arc<dyn Destination>,
    clock: Arc<dyn Clock>,
    config: DispatcherConfig,
}

impl Dispatcher {
    /// A dispatcher for `destination`.
    pub fn new(
        store: Arc<dyn Store>,
        destination: Arc<dyn Destination>,
        clock: Arc<dyn Clock>,
        config: DispatcherConfig,
    ) -> Self {
        Dispatcher {
            store,
            destination,
            clock,
            config,
        }
    }

    /// Claims one batch of due deliveries, sends it and settles every delivery in it. Returns
    /// how many deliveries were attempted (0 when nothing was due).
    ///
    /// # Errors
    /// When the store cannot lease or record, or the destination answers the wrong number of
    /// results; leased deliveries are then retaken after their lease expires.
    pub async fn run_once(&self) -> Result<usize, OutboxError> {
        let now = self.clock.now();
        let lease_until =
            Timestamp::from_millis(now.millis() + self.config.lease.as_millis() as i64);
        let batch = self
            .store
            .claim(
                now,
                self.destination.name(),
                &self.config.owner,
                lease_until,
                self.destination.max_batch() as u32,
            )
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let outgoing: Vec<Outgoing<'_>> = batch
            .iter()
            .map(|d| Outgoing {
                event: &d.event,
                name: &d.event.name,
                value: d.event.value,
                identifiers: true,
                test: d.event.test,
            })
            .collect();
        let results = self.destination.send(&outgoing).await;
        if results.len() != batch.len() {
            return Err(OutboxError::ResultCount {
                destination: self.destination.name().to_owned(),
                sent: batch.len(),
                answered: results.len(),
            });
        }
        let settled_at = self.clock.now();
        let settlements: Vec<Settlement> = batch
            .iter()
            .zip(results)
            .map(|(delivery, (disposition, summary))| {
                let next = self.config.retry.next(
                    &disposition,
                    delivery.attempts + 1,
                    settled_at,
                    delivery.deadline,
                    rand::random::<f64>(),
                );
                if let Next::DeadLetter(reason) | Next::NeedsFix(reason) = &next {
                    tracing::warn!(
                        destination = %self.destination.name(),
                        delivery_id = delivery.delivery_id,
                        event_id = %delivery.event.event_id,
                        reason = %reason,
                        "Delivery stopped."
                    );
                }
                Settlement {
                    delivery_id: delivery.delivery_id,
                    owner: self.config.owner.clone(),
                    next,
                    attempt: AttemptRecord {
                        at: settled_at,
                        outcome: outcome_name(&disposition).to_owned(),
                        status: summary.status,
                        summary: summary.text,
                    },
                }
            })
            .collect();
        let applied = self.store.settle(settled_at, settlements).await?;
        let stale = applied.iter().filter(|a| !**a).count();
        if stale > 0 {
            // Our lease expired mid-attempt and another dispatcher took over; its record wins.
            tracing::warn!(destination = %self.destination.name(), stale, "Settlements after an expired lease were ignored.");
        }
        Ok(batch.len())
    }

    /// Dispatches until `shutdown` resolves: back to back while work is due, polling at
    /// `idle_poll` when it is not, and after `idle_poll` when the store fails.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let wait = match self.run_once().await {
                Ok(0) => self.config.idle_poll,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(destination = %self.destination.name(), error = %e, "Dispatch round failed; will retry.");
                    self.config.idle_poll
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn outcome_name(d: &Disposition) -> &'static str {
    match d {
        Disposition::Succeeded => "succeeded",
        Disposition::Retry { .. } => "retry",
        Disposition::Dead { .. } => "dead",
        Disposition::NeedsFix { .. } => "needs_fix",
    }
}

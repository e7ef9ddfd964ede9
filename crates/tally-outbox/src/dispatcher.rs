//! One destination's dispatch loop.

use std::sync::Arc;
use std::time::Duration;

use tally_core::clock::Clock;
use tally_core::consent::{ConsentPolicy, Resolved, Verdict};
use tally_core::retry::{Disposition, Next, RetryPolicy};
use tally_core::route::Route;
use tally_core::timestamp::Timestamp;
use tally_destinations::{AttemptSummary, Destination, Outgoing};
use tally_store::{AttemptRecord, ClaimedDelivery, Settlement, Store};

use crate::OutboxError;

/// How a dispatcher claims and retries.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// This dispatcher's identity in leases (unique per process and destination).
    pub owner: String,
    /// How long a claimed delivery stays leased if the dispatcher dies mid-attempt; a send is
    /// abandoned (and retried) after three quarters of it, so no lease expires mid-send.
    pub lease: Duration,
    /// How long to wait between polls when nothing is due.
    pub idle_poll: Duration,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Which events go out under which name and value, and the consent they need.
    pub route: Route,
    /// What to assume for events without consent state.
    pub consent: ConsentPolicy,
}

/// A destination's request budget, shared by its dispatchers.
pub type RequestLimiter = governor::DefaultDirectRateLimiter;

/// A budget of `per_second` requests per second (bursts up to the same number).
pub fn request_limiter(per_second: std::num::NonZeroU32) -> Arc<RequestLimiter> {
    Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
        per_second,
    )))
}

/// One destination's dispatcher.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    destination: Arc<dyn Destination>,
    clock: Arc<dyn Clock>,
    pub(crate) config: DispatcherConfig,
    limiter: Option<Arc<RequestLimiter>>,
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
            limiter: None,
        }
    }

    /// Shares `limiter` (requests per second to this destination) with the destination's
    /// other dispatchers.
    pub fn with_limiter(mut self, limiter: Arc<RequestLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Claims one batch of due deliveries, decides each one's consent, sends those that may go
    /// and settles every delivery in the batch. Returns how many deliveries were settled (0
    /// when nothing was due).
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
                self.config.route.require_test_conversion,
            )
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let route = &self.config.route;
        let mut settlements = Vec::with_capacity(batch.len());
        let mut outgoing: Vec<Outgoing<'_>> = Vec::with_capacity(batch.len());
        let mut sent: Vec<(&ClaimedDelivery, String)> = Vec::with_capacity(batch.len());
        for delivery in &batch {
            let event = &delivery.event;
            let consent = Resolved::new(
                &event.consent,
                event.user.identity.country.as_deref(),
                &self.config.consent,
            );
            let mut audit = consent.audit();
            let stop = |next: Next, outcome: &str, audit: String| Settlement {
                delivery_id: delivery.delivery_id,
                owner: self.config.owner.clone(),
                attempt: AttemptRecord {
                    at: now,
                    outcome: outcome.to_owned(),
                    status: None,
                    summary: match &next {
                        Next::DeadLetter(r) | Next::NeedsFix(r) | Next::Withheld(r) => r.clone(),
                        _ => String::new(),
                    },
                    consent: Some(audit),
                },
                next,
            };
            if now > delivery.deadline {
                settlements.push(stop(
                    Next::DeadLetter(format!(
                        "the platform accepts this event only until {}; not sent",
                        delivery.deadline
                    )),
                    "dead",
                    audit,
                ));
                continue;
            }
            let Some(name) = route.platform_name(&event.name) else {
                settlements.push(stop(
                    Next::NeedsFix(format!(
                        "`{}` is not mapped for this destination any more; map it in `events` and replay",
                        event.name
                    )),
                    "needs_fix",
                    audit,
                ));
                continue;
            };
            let identifiers = match consent.decide(&route.consent) {
                Verdict::Withhold(reason) => {
                    settlements.push(stop(Next::Withheld(reason), "withheld", audit));
                    continue;
                }
                Verdict::Send => true,
                Verdict::SendWithoutIdentifiers(note) => {
                    audit.push_str("; ");
                    audit.push_str(&note);
                    false
                }
            };
            outgoing.push(Outgoing {
                event,
                name,
                value: route.value(event),
                identifiers,
                test: event.test || route.test_mode,
            });
            sent.push((delivery, audit));
        }
        if !outgoing.is_empty() {
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            // A send that outlives its lease could be claimed and sent again by another
            // dispatcher; give up well before, and retry (platforms dedup by event ID).
            let budget = self.config.lease.mul_f64(0.75);
            let results = match tokio::time::timeout(budget, self.destination.send(&outgoing)).await
            {
                Ok(results) => results,
                Err(_) => {
                    let reason = format!(
                        "sending took longer than {budget:?} (three quarters of the lease); retrying"
                    );
                    let summary = AttemptSummary::new(None, reason.clone());
                    vec![
                        (
                            Disposition::Retry {
                                reason,
                                retry_after: None,
                                overloaded: true,
                            },
                            summary,
                        );
                        outgoing.len()
                    ]
                }
            };
            if results.len() != outgoing.len() {
                return Err(OutboxError::ResultCount {
                    destination: self.destination.name().to_owned(),
                    sent: outgoing.len(),
                    answered: results.len(),
                });
            }
            let settled_at = self.clock.now();
            for ((delivery, audit), (disposition, summary)) in sent.into_iter().zip(results) {
                let next = self.config.retry.next(
                    &disposition,
                    delivery.attempts + 1,
                    settled_at,
                    delivery.deadline,
                    rand::random::<f64>(),
                );
                settlements.push(Settlement {
                    delivery_id: delivery.delivery_id,
                    owner: self.config.owner.clone(),
                    next,
                    attempt: AttemptRecord {
                        at: settled_at,
                        outcome: outcome_name(&disposition).to_owned(),
                        status: summary.status,
                        summary: summary.text,
                        consent: Some(audit),
                    },
                });
            }
        }
        for s in &settlements {
            if let Next::DeadLetter(reason) | Next::NeedsFix(reason) = &s.next {
                tracing::warn!(
                    destination = %self.destination.name(),
                    delivery_id = s.delivery_id,
                    reason = %reason,
                    "Delivery stopped."
                );
            }
        }
        let count = settlements.len();
        let applied = self.store.settle(self.clock.now(), settlements).await?;
        let stale = applied.iter().filter(|a| !**a).count();
        if stale > 0 {
            // Our lease expired mid-attempt (another dispatcher took over) or the delivery was
            // withheld by a revocation meanwhile; the store's record wins.
            tracing::warn!(destination = %self.destination.name(), stale, "Settlements no longer holding the lease were ignored.");
        }
        Ok(count)
    }

    /// Dispatches until `shutdown` resolves: back to back while full batches are due, otherwise
    /// every `idle_poll` (also after a store failure).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // Straight on only while a backlog fills whole batches: claiming again at once after a
            // partial batch would turn a trickle (or a destination failing fast) into many tiny
            // rounds that keep the store's writer from ever idling.
            let wait = match self.run_once().await {
                Ok(n) if n >= self.destination.max_batch() => Duration::ZERO,
                Ok(_) => self.config.idle_poll,
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

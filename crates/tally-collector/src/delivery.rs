//! Delivery planning at ingest: which destinations a new event goes to, when the first attempt
//! may happen (after the merge join window) and by when the platform must have it; and how
//! long the event's click IDs are remembered for its visitor.

use tally_core::consent::{ConsentPolicy, Resolved, Signal};
use tally_core::dedup::Candidate;
use tally_core::route::Route;
use tally_core::timestamp::Timestamp;
use tally_store::{IngestItem, PlannedDelivery};

/// The delivery side of the config, as ingest needs it.
#[derive(Clone, Debug, Default)]
pub struct DeliveryPlanner {
    /// Enabled destinations' routes.
    pub routes: Vec<Route>,
    /// How long click IDs are remembered for a visitor after the click, in milliseconds.
    pub click_id_ttl_ms: i64,
    /// What an event without consent state is taken to allow (`[consent]`).
    pub consent: ConsentPolicy,
}

impl DeliveryPlanner {
    /// The store item for an accepted candidate, with its deliveries planned from
    /// `received_at` (they are created only if the store finds the event new).
    pub fn item(
        &self,
        candidate: Candidate,
        replay_of: Option<i64>,
        received_at: Timestamp,
    ) -> IngestItem {
        let event = &candidate.event;
        let deliveries: Vec<PlannedDelivery> = self
            .routes
            .iter()
            .filter_map(|route| {
                let (not_before, deadline) = route.schedule(event, received_at)?;
                Some(PlannedDelivery {
                    destination: route.destination.clone(),
                    not_before,
                    deadline,
                    test: event.test || route.test_mode,
                })
            })
            .collect();
        // Remembering a click ID keeps an advertising identifier: only under ad_storage.
        let may_remember = self.click_id_ttl_ms > 0
            && !event.user.click_ids.is_empty()
            && Resolved::new(
                &event.consent,
                event.user.identity.country.as_deref(),
                &self.consent,
            )
            .granted(Signal::AdStorage);
        let remember_until = may_remember.then(|| {
            let clicked = event.user.click_ids.clicked_at.unwrap_or(event.timestamp);
            Timestamp::from_millis(clicked.millis().saturating_add(self.click_id_ttl_ms))
        });
        let item = IngestItem::event(candidate, replay_of).with_deliveries(deliveries);
        match remember_until {
            Some(until) => item.remember_click_ids_until(until),
            None => item,
        }
    }
}

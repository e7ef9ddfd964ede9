//! The collector's Prometheus metrics (names per STYLE.md: `tally_<subsystem>_<measure>_<unit>`).
//! Labels are bounded: door, outcome, rejection code — never an event ID.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-event counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `events`, `collect` or `segment`.
    pub door: &'static str,
    /// `accepted`, `duplicate` or `rejected`.
    pub outcome: &'static str,
}

/// Labels of the rejection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// Rejection code.
    pub code: String,
}

/// Labels of per-request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Door.
    pub door: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoorLabels {
    /// Door.
    pub door: &'static str,
}

/// Every collector metric, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// `tally_collector_events_total`.
    pub events: Family<EventLabels, Counter>,
    /// `tally_collector_rejections_total`.
    pub rejections: Family<RejectionLabels, Counter>,
    /// `tally_collector_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `tally_collector_request_duration_seconds`.
    pub request_duration: Family<DoorLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tally_collector");
        let events = Family::<EventLabels, Counter>::default();
        let rejections = Family::<RejectionLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<DoorLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "events",
            "Events answered, by door and outcome",
            events.clone(),
        );
        registry.register(
            "rejections",
            "Events rejected, by reason code",
            rejections.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by door and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to durable answer, by door",
            request_duration.clone(),
        );
        Metrics {
            registry,
            events,
            rejections,
            requests,
            request_duration,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

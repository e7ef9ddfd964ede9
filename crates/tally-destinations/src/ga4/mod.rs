//! The `ga4` connector: GA4 Measurement Protocol (`POST {endpoint}/mp/collect`).
//!
//! GA4 takes one client per request (`client_id`, `user_id`, `user_data` and `consent` are
//! request-level) and at most [`MAX_BATCH`] events per request, so a dispatcher batch (up to
//! [`DISPATCH_BATCH`] events) is grouped by client and cut into requests of at most 25 events
//! and under 130 kB, sent one after another. After a request is answered with a retryable
//! failure (429, 5xx, a timeout) the rest of the batch is not sent and gets the same retry.
//!
//! `/mp/collect` answers 2xx to everything and silently drops what it does not like, so the
//! connector checks names, params and ages itself before sending (see [`payload`]). With
//! `validate_before_send`, every live request is first posted to `/debug/mp/collect` and sent
//! only when the validator lists no messages; a request it complains about is halved until the
//! complaint is pinned to one event ([`crate::split::isolate`]), so the others still go.
//! Test events ([`Outgoing::test`]) go only to `/debug/mp/collect`: no messages is success,
//! any message is a failure, and GA4 records nothing either way.
//!
//! The `api_secret` travels in the query string, as the API is designed; the URL therefore
//! never appears in a summary or log.
//!
//! Not here: consent decisions and event-name mapping (the dispatcher's), IP and user agent
//! (GA4's `ip_override` is unconfirmed, so neither is sent), user properties.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tally_core::clock::{Clock, SystemClock};
use tally_core::retry::Disposition;
use tally_core::secret::Secret;
use url::Url;

use crate::http::{self, excerpt};
use crate::split::{BatchAnswer, isolate};
use crate::{AttemptSummary, Destination, DestinationError, Outgoing};

pub mod payload;
pub mod response;

use payload::{Envelope, EventObject};
use response::ValidationMessage;

/// The connector kind in `[[destinations]]`.
pub const KIND: &str = "ga4";

/// Most events GA4 takes in one request.
pub const MAX_BATCH: usize = 25;

/// Most events handed to one `send` ([`Destination::max_batch`]): large enough that a client's
/// burst fills whole requests, small enough that a batch of events from as many different
/// clients (one request each, sent in turn) finishes well within a dispatcher lease.
pub const DISPATCH_BATCH: usize = 100;

/// tally's standard event names → GA4 recommended events. `page_view` is reserved for the
/// Measurement Protocol and GA4 has no recommended event for subscribe, start_trial or
/// contact, so those are not mapped.
pub const DEFAULT_EVENTS: &[(&str, &str)] = &[
    ("purchase", "purchase"),
    ("lead", "generate_lead"),
    ("sign_up", "sign_up"),
    ("add_to_cart", "add_to_cart"),
    ("begin_checkout", "begin_checkout"),
    ("add_payment_info", "add_payment_info"),
    ("view_item", "view_item"),
    ("search", "search"),
];

/// The production Measurement Protocol host.
pub const DEFAULT_ENDPOINT: &str = "https://www.google-analytics.com";

/// A `ga4` destination's own keys. The Measurement Protocol has no API version in its URL, so
/// there is nothing to configure there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The web stream's measurement ID, `G-XXXXXXX` (not the numeric stream ID).
    pub measurement_id: String,
    /// A Measurement Protocol API secret (Admin › Data streams › the stream › Measurement
    /// Protocol API secrets).
    pub api_secret: Secret,
    /// Base URL; `/mp/collect` and `/debug/mp/collect` are appended. Default
    /// `https://www.google-analytics.com`; for EU data collection use
    /// `https://region1.google-analytics.com`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// First post every live request to `/debug/mp/collect` and send it only when the validator
    /// lists no messages. Catches what the connector's own checks miss, at twice the requests.
    #[serde(default)]
    pub validate_before_send: bool,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}

/// Builds a `ga4` destination named `name`.
///
/// # Errors
/// [`DestinationError::Config`] for a measurement ID not of the form `G-XXXXXXX`, an empty API
/// secret, or an endpoint that is not an http(s) URL without query or fragment.
pub fn build(
    name: &str,
    config: Config,
    client: reqwest::Client,
) -> Result<Connector, DestinationError> {
    let measurement_id = config.measurement_id.trim();
    let well_formed = measurement_id.strip_prefix("G-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    if !well_formed {
        return Err(DestinationError::config(
            "measurement_id",
            "must look like G-XXXXXXX (the web stream's measurement ID, not its stream ID)",
        ));
    }
    if config.api_secret.expose().trim().is_empty() {
        return Err(DestinationError::config(
            "api_secret",
            "must not be empty (create one under the data stream's Measurement Protocol API secrets)",
        ));
    }
    let base = Url::parse(config.endpoint.trim())
        .map_err(|e| DestinationError::config("endpoint", format!("not a URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
        return Err(DestinationError::config(
            "endpoint",
            "must be an http(s) URL with a host",
        ));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(DestinationError::config(
            "endpoint",
            "must not have a query or fragment",
        ));
    }
    let root = base.as_str().trim_end_matches('/');
    let url_for = |path: &str| -> Result<Url, DestinationError> {
        let mut url = Url::parse(&format!("{root}{path}"))
            .map_err(|e| DestinationError::config("endpoint", e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("measurement_id", measurement_id)
            .append_pair("api_secret", config.api_secret.expose());
        Ok(url)
    };
    Ok(Connector {
        name: name.to_owned(),
        client,
        collect_url: url_for("/mp/collect")?,
        debug_url: url_for("/debug/mp/collect")?,
        validate_before_send: config.validate_before_send,
        clock: Arc::new(SystemClock),
    })
}

/// A built `ga4` destination. Not `Debug`: its URLs hold the API secret.
pub struct Connector {
    name: String,
    client: reqwest::Client,
    collect_url: Url,
    debug_url: Url,
    validate_before_send: bool,
    clock: Arc<dyn Clock>,
}

impl Connector {
    /// Measures event ages (the 72-hour limit) against `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Posts a request body to `url`.
    async fn post(
        &self,
        url: &Url,
        envelope: &Envelope,
        events: &[EventObject],
    ) -> Result<http::Response, (Disposition, AttemptSummary)> {
        let body = payload::request_body(envelope, events);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        http::execute(
            self.client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
        )
        .await
    }

    /// Sends `part` live to `/mp/collect`.
    async fn collect(
        &self,
        envelope: &Envelope,
        part: &[Outgoing<'_>],
    ) -> Vec<(Disposition, AttemptSummary)> {
        let events: Vec<EventObject> = part.iter().map(payload::event_object).collect();
        let response = match self.post(&self.collect_url, envelope, &events).await {
            Ok(r) => r,
            Err(failure) => return http::same_for_all(part.len(), failure),
        };
        match response::status_disposition(&response) {
            Disposition::Succeeded => events
                .iter()
                .map(|e| {
                    let base = format!(
                        "HTTP {}: sent to /mp/collect (GA4 reports no errors; checked before sending)",
                        response.status
                    );
                    (Disposition::Succeeded, with_warnings(response.status, base, e))
                })
                .collect(),
            failure => http::same_for_all(part.len(), (failure, response.summary())),
        }
    }

    /// Posts `part` to `/debug/mp/collect`: the validator's messages, or the failure for every
    /// event when there was no validation report.
    async fn validate(
        &self,
        envelope: &Envelope,
        part: &[Outgoing<'_>],
    ) -> Result<(u16, Vec<ValidationMessage>, Vec<EventObject>), BatchAnswer> {
        let events: Vec<EventObject> = part.iter().map(payload::event_object).collect();
        let response = self
            .post(&self.debug_url, envelope, &events)
            .await
            .map_err(|failure| BatchAnswer::PerEvent(http::same_for_all(part.len(), failure)))?;
        let messages = response::validation_messages(&response)
            .map_err(|failure| BatchAnswer::PerEvent(http::same_for_all(part.len(), failure)))?;
        Ok((response.status, messages, events))
    }

    /// Test mode: validation only. A complaint rejects the request (and is pinned to its event
    /// by [`isolate`]); no complaint is success.
    async fn validate_only(&self, envelope: &Envelope, part: Vec<Outgoing<'_>>) -> BatchAnswer {
        match self.validate(envelope, &part).await {
            Err(answer) => answer,
            Ok((status, messages, _)) if !messages.is_empty() => {
                let (disposition, summary) = response::validation_failure(status, &messages);
                BatchAnswer::Rejected(disposition, summary)
            }
            Ok((status, _, events)) => BatchAnswer::PerEvent(
                events
                    .iter()
                    .map(|e| {
                        let base = format!(
                            "HTTP {status}: test mode, /debug/mp/collect found no problem (GA4 records nothing)"
                        );
                        (Disposition::Succeeded, with_warnings(status, base, e))
                    })
                    .collect(),
            ),
        }
    }

    /// `validate_before_send`: validation, then the live send when the validator is content.
    async fn validate_then_collect(
        &self,
        envelope: &Envelope,
        part: Vec<Outgoing<'_>>,
    ) -> BatchAnswer {
        match self.validate(envelope, &part).await {
            Err(answer) => answer,
            Ok((status, messages, _)) if !messages.is_empty() => {
                let (disposition, summary) = response::validation_failure(status, &messages);
                BatchAnswer::Rejected(disposition, summary)
            }
            Ok(_) => BatchAnswer::PerEvent(self.collect(envelope, &part).await),
        }
    }

    /// Delivers one request's worth of events sharing `envelope`.
    async fn deliver(
        &self,
        envelope: &Envelope,
        part: &[Outgoing<'_>],
    ) -> Vec<(Disposition, AttemptSummary)> {
        if envelope.test {
            isolate(part, |sub| self.validate_only(envelope, sub)).await
        } else if self.validate_before_send {
            isolate(part, |sub| self.validate_then_collect(envelope, sub)).await
        } else {
            self.collect(envelope, part).await
        }
    }
}

/// A per-event summary: `base`, then what was left out of the event.
fn with_warnings(status: u16, base: String, event: &EventObject) -> AttemptSummary {
    if event.warnings.is_empty() {
        return AttemptSummary::new(Some(status), base);
    }
    let text = format!("{base}; {}", event.warnings.join("; "));
    AttemptSummary::new(Some(status), excerpt(text.as_bytes()))
}

/// The result of an event stopped before sending.
fn stopped(disposition: Disposition) -> (Disposition, AttemptSummary) {
    let text = match &disposition {
        Disposition::Dead { reason }
        | Disposition::NeedsFix { reason }
        | Disposition::Retry { reason, .. } => format!("not sent: {reason}"),
        Disposition::Succeeded => "not sent".to_owned(),
    };
    (disposition, AttemptSummary::new(None, text))
}

/// Bytes allowed per event beyond its own JSON: the separating comma and an event-level
/// `timestamp_micros`.
const PER_EVENT_OVERHEAD: usize = 40;

/// Cuts one client's events (indices into the batch) into requests of at most [`MAX_BATCH`]
/// events and [`payload::MAX_BODY_BYTES`]; an event too large for a request on its own is
/// answered Dead in `results` instead.
fn requests(
    envelope: &Envelope,
    indices: &[usize],
    batch: &[Outgoing<'_>],
    results: &mut [Option<(Disposition, AttemptSummary)>],
) -> Vec<Vec<usize>> {
    // What a request adds around its events.
    let envelope_bytes =
        serde_json::to_vec(&payload::request_body(envelope, &[])).map_or(0, |b| b.len());
    let mut requests = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut size = envelope_bytes;
    for &i in indices {
        let event_bytes = serde_json::to_vec(&payload::event_object(&batch[i]).json)
            .map_or(0, |b| b.len())
            + PER_EVENT_OVERHEAD;
        if envelope_bytes + event_bytes >= payload::MAX_BODY_BYTES {
            results[i] = Some(stopped(Disposition::Dead {
                reason: format!(
                    "event is too large for GA4 ({event_bytes} bytes; a request must stay under 130 kB)"
                ),
            }));
            continue;
        }
        if current.len() == MAX_BATCH || size + event_bytes >= payload::MAX_BODY_BYTES {
            requests.push(std::mem::take(&mut current));
            size = envelope_bytes;
        }
        current.push(i);
        size += event_bytes;
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

#[async_trait]
impl Destination for Connector {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        DISPATCH_BATCH
    }

    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        let now = self.clock.now();
        let mut results: Vec<Option<(Disposition, AttemptSummary)>> = vec![None; batch.len()];
        // One group per client (and per test flag, identity, consent), in order of appearance.
        let mut groups: Vec<(Envelope, Vec<usize>)> = Vec::new();
        for (i, o) in batch.iter().enumerate() {
            match payload::check(o, now).and_then(|()| payload::envelope(o)) {
                Err(disposition) => results[i] = Some(stopped(disposition)),
                Ok(envelope) => match groups.iter_mut().find(|(e, _)| *e == envelope) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((envelope, vec![i])),
                },
            }
        }

        let mut halted: Option<(Disposition, AttemptSummary)> = None;
        for (envelope, members) in &groups {
            for request in requests(envelope, members, batch, &mut results) {
                if let Some(halt) = &halted {
                    for &i in &request {
                        results[i] = Some(halt.clone());
                    }
                    continue;
                }
                let part: Vec<Outgoing<'_>> = request.iter().map(|&i| batch[i]).collect();
                let answers = self.deliver(envelope, &part).await;
                for (&i, answer) in request.iter().zip(answers) {
                    if let (
                        None,
                        Disposition::Retry {
                            reason,
                            retry_after,
                            overloaded,
                        },
                    ) = (&halted, &answer.0)
                    {
                        let text = format!(
                            "not sent: an earlier GA4 request in this batch failed ({reason})"
                        );
                        halted = Some((
                            Disposition::Retry {
                                reason: text.clone(),
                                retry_after: *retry_after,
                                overloaded: *overloaded,
                            },
                            AttemptSummary::new(None, text),
                        ));
                    }
                    results[i] = Some(answer);
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    stopped(Disposition::Retry {
                        reason: "connector gave this event no result".into(),
                        retry_after: None,
                        overloaded: false,
                    })
                })
            })
            .collect()
    }
}

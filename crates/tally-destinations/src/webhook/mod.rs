//! The `webhook` connector: events as signed JSON to an endpoint of your own.
//!
//! Each request is `POST {url}` with `Content-Type: application/json`, the body described in
//! [`payload`] (`{"events":[...]}`, at most `max_batch` events), any configured static
//! `headers`, and:
//! - `X-Tally-Timestamp`: the Unix time in seconds when the request was signed;
//! - `X-Tally-Signature`: `sha256=` followed by the lowercase hex HMAC-SHA256 of
//!   `"{X-Tally-Timestamp}.{raw body}"`, keyed with the destination's `secret`;
//! - `Idempotency-Key`: the same for every attempt at the same events (see
//!   [`payload::idempotency_key`]), so a receiver can drop a retry it already processed.
//!
//! **Verifying a request** (receiver side):
//! 1. Read the raw body bytes before parsing them.
//! 2. Compute `HMAC-SHA256(secret, timestamp + "." + body)` with `timestamp` the
//!    `X-Tally-Timestamp` header exactly as sent, hex-encode it in lowercase and prefix
//!    `sha256=`.
//! 3. Compare with `X-Tally-Signature` in constant time; refuse (401) when they differ.
//! 4. Refuse a timestamp more than 5 minutes from your clock, so a captured request cannot be
//!    replayed later.
//! 5. Optionally remember `Idempotency-Key`s for a day and answer 2xx to a repeat without
//!    processing it again (each event also carries its own `event_id`).
//!
//! Answers: 2xx accepts every event of the request, `410 Gone` is permanent (Dead), a redirect
//! needs a fix (redirects are never followed), the rest is the default classification.
//!
//! Targets on private networks are refused unless `allow_private_networks = true` (see
//! [`guard`]): literal addresses and `localhost` names when the destination is built, every
//! other name when it is resolved, by this connector's own resolver. The guarded client also
//! ignores proxy settings, since a proxy would resolve the name itself, out of the guard's
//! sight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;
use tally_core::timestamp::Timestamp;
use url::Url;

use crate::http::{self, MAX_RESPONSE_BYTES};
use crate::{AttemptSummary, Destination, DestinationError, Outgoing};

pub mod guard;
pub mod payload;
pub mod response;

/// The connector kind in `[[destinations]]`.
pub const KIND: &str = "webhook";

/// The largest `max_batch` accepted.
pub const MAX_BATCH: usize = 1000;

/// `max_batch` when not configured.
pub const DEFAULT_MAX_BATCH: usize = 100;

/// `timeout_secs` when not configured.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// Longest `timeout_secs` accepted.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// The signing-time header.
pub const TIMESTAMP_HEADER: &str = "x-tally-timestamp";

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-tally-signature";

/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Shortest accepted secret: an HMAC key must not be guessable.
pub const MIN_SECRET_CHARS: usize = 16;

/// A webhook receives tally's standard names unchanged.
pub const DEFAULT_EVENTS: &[(&str, &str)] = &[
    ("purchase", "purchase"),
    ("lead", "lead"),
    ("sign_up", "sign_up"),
    ("add_to_cart", "add_to_cart"),
    ("begin_checkout", "begin_checkout"),
    ("add_payment_info", "add_payment_info"),
    ("view_item", "view_item"),
    ("search", "search"),
    ("subscribe", "subscribe"),
    ("start_trial", "start_trial"),
    ("contact", "contact"),
    ("page_view", "page_view"),
];

/// Headers the connector sets itself, which `headers` may not replace.
const OWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "host",
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
    IDEMPOTENCY_HEADER,
];

/// A `webhook` destination's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to post: an `http` or `https` URL without credentials or fragment.
    pub url: String,
    /// The HMAC-SHA256 key for `X-Tally-Signature`; at least 16 characters.
    pub secret: Secret,
    /// Allow targets on private, loopback, link-local and other non-public addresses. Off by
    /// default so a webhook cannot reach inside the network tally runs in.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Extra static headers sent with every request (an `Authorization` for the receiver, a
    /// routing key). Values are treated as secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Most events per request (1 to 1000, default 100).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Seconds to wait for the whole answer (1 to 300, default 10).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// Builds a `webhook` destination named `name`. With `allow_private_networks` it sends with
/// `client`; otherwise with a client of the same settings (no redirects, bounded timeouts) whose
/// resolver refuses private addresses and which ignores proxies.
///
/// # Errors
/// [`DestinationError::Config`] for a URL that is not http(s), carries credentials or a
/// fragment, or (without `allow_private_networks`) names a private address or `localhost`;
/// a secret shorter than 16 characters; a header that is malformed or one the connector sets
/// itself; `max_batch` or `timeout_secs` out of range. [`DestinationError::Client`] when the
/// guarded client cannot be built.
pub fn build(
    name: &str,
    config: Config,
    client: reqwest::Client,
) -> Result<Connector, DestinationError> {
    build_with_resolver(name, config, client, guard::PublicResolver::default())
}

/// [`build`] with the guard resolving names through `resolver` (tests give it their own
/// lookup table).
///
/// # Errors
/// As [`build`].
pub fn build_with_resolver(
    name: &str,
    config: Config,
    client: reqwest::Client,
    resolver: guard::PublicResolver,
) -> Result<Connector, DestinationError> {
    let url = Url::parse(config.url.trim())
        .map_err(|e| DestinationError::config("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(DestinationError::config(
            "url",
            "must be an http or https URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DestinationError::config(
            "url",
            "must not carry credentials; put them in `headers` (e.g. Authorization)",
        ));
    }
    if url.fragment().is_some() {
        return Err(DestinationError::config("url", "must not have a fragment"));
    }
    if !config.allow_private_networks {
        guard::check_host(&url).map_err(|refused| DestinationError::config("url", refused))?;
    }
    if config.secret.expose().chars().count() < MIN_SECRET_CHARS {
        return Err(DestinationError::config(
            "secret",
            format!("must be at least {MIN_SECRET_CHARS} characters (use a random string)"),
        ));
    }
    let mut headers = HeaderMap::new();
    for (key, value) in &config.headers {
        let header = format!("headers.{key}");
        let header_name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| DestinationError::config(&header, "not a valid header name"))?;
        if OWN_HEADERS.contains(&header_name.as_str()) {
            return Err(DestinationError::config(
                &header,
                "is set by the connector itself",
            ));
        }
        let mut header_value = HeaderValue::from_str(value.expose())
            .map_err(|_| DestinationError::config(&header, "not a valid header value"))?;
        header_value.set_sensitive(true);
        headers.insert(header_name, header_value);
    }
    if !(1..=MAX_BATCH).contains(&config.max_batch) {
        return Err(DestinationError::config(
            "max_batch",
            format!("must be between 1 and {MAX_BATCH}"),
        ));
    }
    if !(1..=MAX_TIMEOUT_SECS).contains(&config.timeout_secs) {
        return Err(DestinationError::config(
            "timeout_secs",
            format!("must be between 1 and {MAX_TIMEOUT_SECS}"),
        ));
    }
    let timeout = Duration::from_secs(config.timeout_secs);
    let client = if config.allow_private_networks {
        client
    } else {
        guarded_client(timeout, resolver)?
    };
    Ok(Connector {
        name: name.to_owned(),
        url,
        secret: config.secret,
        headers,
        max_batch: config.max_batch,
        timeout,
        client,
    })
}

/// [`http::client`]'s settings plus the [`guard::PublicResolver`] and no proxies.
fn guarded_client(
    timeout: Duration,
    resolver: guard::PublicResolver,
) -> Result<reqwest::Client, DestinationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .build()
        .map_err(|e| DestinationError::Client(e.to_string()))
}

/// A built `webhook` destination.
pub struct Connector {
    name: String,
    url: Url,
    secret: Secret,
    headers: HeaderMap,
    max_batch: usize,
    timeout: Duration,
    client: reqwest::Client,
}

impl Connector {
    /// Sends one request's worth of events.
    async fn post(&self, part: &[Outgoing<'_>]) -> (Disposition, AttemptSummary) {
        let body = payload::body(&self.name, part);
        let timestamp = Timestamp::now().secs();
        let signature = payload::signature(&self.secret, timestamp, &body);
        let request = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(
                IDEMPOTENCY_HEADER,
                payload::idempotency_key(&self.name, part),
            )
            .body(body);
        match execute(request).await {
            Ok(answer) => response::classify(&answer),
            Err(failure) => failure,
        }
    }
}

/// [`http::execute`], except that a target the guard refused is a NeedsFix rather than a
/// transport failure (`http::execute` does not expose the error it classifies).
async fn execute(
    request: reqwest::RequestBuilder,
) -> Result<http::Response, (Disposition, AttemptSummary)> {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) if guard::refused(&e) => {
            return Err((
                Disposition::NeedsFix {
                    reason: guard::REFUSED.into(),
                },
                AttemptSummary::new(None, format!("not sent: {}", guard::REFUSED)),
            ));
        }
        Err(e) => return Err(http::transport_failure(e)),
    };
    let status = response.status().as_u16();
    let retry_after = http::retry_after(response.headers());
    let mut body = Vec::new();
    // A receiver is anyone's server: read at most MAX_RESPONSE_BYTES of its answer.
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => return Err(http::transport_failure(e)),
        }
    }
    Ok(http::Response {
        status,
        retry_after,
        body,
    })
}

#[async_trait]
impl Destination for Connector {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        let mut results = Vec::with_capacity(batch.len());
        for part in batch.chunks(self.max_batch) {
            let result = self.post(part).await;
            results.extend(http::same_for_all(part.len(), result));
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tally_testkit::events;
    use tally_testkit::fakes::webhook::FakeWebhook;

    use super::*;

    const SECRET: &str = "whsec-0123456789abcdef";

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_sending() {
        let fake = FakeWebhook::start(SECRET).await;
        // Build with the flag (the build-time check refuses `localhost` by name), then swap in
        // the guarded client to exercise the check at connect time through a real send.
        let port = Url::parse(&fake.url()).unwrap().port().unwrap();
        let config = Config {
            url: format!("http://localhost:{port}/hooks/tally"),
            secret: Secret::new(SECRET),
            allow_private_networks: true,
            headers: BTreeMap::new(),
            max_batch: DEFAULT_MAX_BATCH,
            timeout_secs: 5,
        };
        let mut connector = build("hooks", config, reqwest::Client::new()).unwrap();
        let event = events::purchase("evt-1");
        let outgoing = Outgoing {
            event: &event,
            name: "purchase",
            value: event.value,
            identifiers: true,
            test: false,
        };
        assert_eq!(
            connector.send(&[outgoing]).await[0].0,
            Disposition::Succeeded,
            "reachable when allowed"
        );

        connector.client =
            guarded_client(Duration::from_secs(5), guard::PublicResolver::default()).unwrap();
        let results = connector.send(&[outgoing]).await;
        assert_eq!(
            results[0].0,
            Disposition::NeedsFix {
                reason: guard::REFUSED.into()
            }
        );
        assert_eq!(results[0].1.status, None);
        assert_eq!(
            fake.received().len(),
            1,
            "the refused request never arrived"
        );
        assert_eq!(fake.received()[0]["event_id"], json!("evt-1"));
    }
}

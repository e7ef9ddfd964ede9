//! The `tiktok` connector: TikTok's Events API 2.0 for a web pixel,
//! `POST {endpoint}/open_api/{api_version}/event/track/` with the token in the `Access-Token`
//! header (no `Bearer`) and a JSON body
//! `{"event_source": "web", "event_source_id": <pixel code>, "data": [...]}`.
//!
//! TikTok answers per request, and business errors come back as HTTP 200 with a non-zero
//! `code`. An invalid-parameter code fails the whole request, so requests go through
//! [`crate::split::isolate`], which halves a refused batch until the refusal is pinned to one
//! event; the rest are delivered. Test events (`Outgoing::test`) go in their own requests with
//! `test_event_code`.
//!
//! Not here: consent decisions and event-name mapping (the dispatcher's) and retry timing (the
//! outbox's).

mod payload;
mod response;

use async_trait::async_trait;
use serde::Deserialize;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;

use crate::split::{self, BatchAnswer};
use crate::{AttemptSummary, Destination, DestinationError, Outgoing, http};

/// The `kind` of this connector in `[[destinations]]`.
pub const KIND: &str = "tiktok";

/// Most events per request (a figure seen in one low-trust source; TikTok documents none that
/// we could confirm).
pub const MAX_BATCH: usize = 1000;

/// TikTok standard event names for tally's standard events.
pub const DEFAULT_EVENTS: &[(&str, &str)] = &[
    ("purchase", "CompletePayment"),
    ("add_to_cart", "AddToCart"),
    ("begin_checkout", "InitiateCheckout"),
    ("view_item", "ViewContent"),
    ("search", "Search"),
    ("add_payment_info", "AddPaymentInfo"),
    ("sign_up", "CompleteRegistration"),
    ("lead", "SubmitForm"),
    ("contact", "Contact"),
    ("subscribe", "Subscribe"),
];

/// TikTok's Business API host.
pub const DEFAULT_ENDPOINT: &str = "https://business-api.tiktok.com";

/// The Business API version used unless configured.
pub const DEFAULT_API_VERSION: &str = "v1.3";

/// The `test_event_code` used for test events when none is configured.
pub const DEFAULT_TEST_EVENT_CODE: &str = "TALLY_TEST";

/// The destination-specific keys of a `tiktok` destination.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The pixel code (`event_source_id`), letters and digits.
    pub pixel_code: String,
    /// An Events API access token for the pixel (Events Manager › Settings).
    pub access_token: Secret,
    /// Business API base URL; tests point it at a local fake.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Business API version, `vN.N`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Code from Events Manager › Test Events that test events are sent with; when unset,
    /// [`DEFAULT_TEST_EVENT_CODE`].
    #[serde(default)]
    pub test_event_code: Option<String>,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

/// Builds the connector named `name` from its configuration.
///
/// # Errors
/// [`DestinationError::Config`] naming the key when the pixel code is not letters and digits,
/// the token is empty or not a valid header value, the endpoint is not an http(s) URL, the API
/// version is not `vN.N`, or the test event code is empty.
pub fn build(
    name: &str,
    config: Config,
    client: reqwest::Client,
) -> Result<Connector, DestinationError> {
    if config.pixel_code.is_empty() || !config.pixel_code.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(DestinationError::config(
            "pixel_code",
            "must be the pixel code (letters and digits)",
        ));
    }
    let token = config.access_token.expose();
    let mut access_token = reqwest::header::HeaderValue::from_str(token)
        .ok()
        .filter(|_| !token.is_empty() && !token.chars().any(char::is_whitespace))
        .ok_or_else(|| {
            DestinationError::config("access_token", "must be a non-empty token without spaces")
        })?;
    access_token.set_sensitive(true);
    if !is_api_version(&config.api_version) {
        return Err(DestinationError::config(
            "api_version",
            format!(
                "{:?} is not a Business API version such as v1.3",
                config.api_version
            ),
        ));
    }
    let mut track_url = url::Url::parse(&config.endpoint)
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.has_host()
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .ok_or_else(|| {
            DestinationError::config("endpoint", "must be an http(s) URL without query")
        })?;
    track_url
        .path_segments_mut()
        .map_err(|()| DestinationError::config("endpoint", "must be an http(s) URL"))?
        .pop_if_empty()
        // The empty last segment keeps the trailing slash TikTok's path has.
        .extend([
            "open_api",
            config.api_version.as_str(),
            "event",
            "track",
            "",
        ]);
    let test_event_code = match config.test_event_code {
        Some(code) if code.trim().is_empty() => {
            return Err(DestinationError::config(
                "test_event_code",
                "must not be empty (leave it out to use TALLY_TEST)",
            ));
        }
        Some(code) => code,
        None => DEFAULT_TEST_EVENT_CODE.to_owned(),
    };
    Ok(Connector {
        name: name.to_owned(),
        client,
        track_url,
        access_token,
        token: config.access_token,
        pixel_code: config.pixel_code,
        test_event_code,
    })
}

fn is_api_version(s: &str) -> bool {
    s.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .bytes()
                    .chain(minor.bytes())
                    .all(|b| b.is_ascii_digit())
        })
}

/// A `tiktok` destination.
pub struct Connector {
    name: String,
    client: reqwest::Client,
    /// `{endpoint}/open_api/{version}/event/track/`.
    track_url: url::Url,
    /// The token as a header value marked sensitive (kept out of reqwest's debug output).
    access_token: reqwest::header::HeaderValue,
    /// The token itself, to scrub it from anything TikTok echoes back.
    token: Secret,
    pixel_code: String,
    test_event_code: String,
}

#[async_trait]
impl Destination for Connector {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        split::send_by_mode(
            batch,
            MAX_BATCH,
            |_| None,
            |sub, test| self.request(sub, test),
        )
        .await
    }
}

impl Connector {
    /// One request for `batch` (all live or all test events).
    async fn request(&self, batch: Vec<Outgoing<'_>>, test: bool) -> BatchAnswer {
        let test_event_code = test.then_some(self.test_event_code.as_str());
        let body = payload::request_body(&batch, &self.pixel_code, test_event_code);
        let request = self
            .client
            .post(self.track_url.clone())
            .header("Access-Token", self.access_token.clone())
            .json(&body);
        let answer = match http::execute(request).await {
            Ok(response) => response::classify(&response, batch.len()),
            Err(failure) => BatchAnswer::PerEvent(http::same_for_all(batch.len(), failure)),
        };
        answer.redact(self.token.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Config {
        toml::from_str(toml_text).expect("config parses")
    }

    fn base() -> String {
        "pixel_code = \"C4ABCDEF12345\"\naccess_token = \"tt-token\"\n".to_owned()
    }

    #[test]
    fn defaults_are_the_real_api() {
        let connector = build("tiktok", config(&base()), reqwest::Client::new()).expect("builds");
        assert_eq!(
            connector.track_url.as_str(),
            "https://business-api.tiktok.com/open_api/v1.3/event/track/"
        );
        assert_eq!(connector.test_event_code, "TALLY_TEST");
        assert_eq!(connector.max_batch(), 1000);
        assert!(connector.access_token.is_sensitive());
    }

    #[test]
    fn default_events_use_tiktok_standard_names() {
        let lookup = |name: &str| {
            DEFAULT_EVENTS
                .iter()
                .find(|(tally, _)| *tally == name)
                .map(|(_, tiktok)| *tiktok)
        };
        assert_eq!(lookup("purchase"), Some("CompletePayment"));
        assert_eq!(lookup("lead"), Some("SubmitForm"));
        assert_eq!(lookup("sign_up"), Some("CompleteRegistration"));
        assert_eq!(lookup("page_view"), None);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (
                "pixel_code = \"C4-1\"\naccess_token = \"t\"\n",
                "pixel_code",
            ),
            ("pixel_code = \"C4\"\naccess_token = \"\"\n", "access_token"),
            (
                "pixel_code = \"C4\"\naccess_token = \"a b\"\n",
                "access_token",
            ),
            (&(base() + "endpoint = \"mailto:x@y\"\n"), "endpoint"),
            (&(base() + "api_version = \"1.3\"\n"), "api_version"),
            (&(base() + "test_event_code = \" \"\n"), "test_event_code"),
        ];
        for (text, key) in cases {
            match build("tiktok", config(text), reqwest::Client::new()) {
                Err(DestinationError::Config { key: got, .. }) => assert_eq!(got, key, "{text}"),
                Err(other) => panic!("{text}: {other}"),
                Ok(_) => panic!("{text}: built"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>(&(base() + "pixel_id = \"1\"\n")).is_err());
    }
}

//! The `meta_capi` connector: Meta's Conversions API, `POST {endpoint}/{api_version}/{pixel_id}/events`
//! with the token in the `access_token` query parameter and a JSON body `{"data": [...]}`.
//!
//! Meta refuses a whole request when one event in it is bad (HTTP 400, Graph error code 100),
//! so requests go through [`crate::split::isolate`], which halves a refused batch until the
//! refusal is pinned to one event; the rest are delivered. Events that cannot be sent at all
//! (no customer information left, a website event without user agent or page URL) are settled
//! as dead before any request. Test events (`Outgoing::test`) go in their own requests with
//! `test_event_code`.
//!
//! Not here: consent decisions and event-name mapping (the dispatcher's), retry timing (the
//! outbox's), and the 7-day age limit (Meta's answer, subcode 2804003, settles such an event as
//! dead after isolation).

mod payload;
mod response;

use async_trait::async_trait;
use serde::Deserialize;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;

use crate::split::{self, BatchAnswer};
use crate::{AttemptSummary, Destination, DestinationError, Outgoing, http};

/// The `kind` of this connector in `[[destinations]]`.
pub const KIND: &str = "meta_capi";

/// Most events Meta takes in one request.
pub const MAX_BATCH: usize = 1000;

/// Meta standard event names for tally's standard events.
pub const DEFAULT_EVENTS: &[(&str, &str)] = &[
    ("purchase", "Purchase"),
    ("lead", "Lead"),
    ("sign_up", "CompleteRegistration"),
    ("add_to_cart", "AddToCart"),
    ("begin_checkout", "InitiateCheckout"),
    ("add_payment_info", "AddPaymentInfo"),
    ("view_item", "ViewContent"),
    ("search", "Search"),
    ("subscribe", "Subscribe"),
    ("start_trial", "StartTrial"),
    ("contact", "Contact"),
    ("page_view", "PageView"),
];

/// Meta's Graph API host.
pub const DEFAULT_ENDPOINT: &str = "https://graph.facebook.com";

/// The Graph API version used unless configured (Meta supports each for at least two years).
pub const DEFAULT_API_VERSION: &str = "v25.0";

/// The `test_event_code` used for test events when none is configured.
pub const DEFAULT_TEST_EVENT_CODE: &str = "TALLY_TEST";

/// `action_source` values Meta documents.
pub const ACTION_SOURCES: &[&str] = &[
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// The destination-specific keys of a `meta_capi` destination.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The pixel (dataset) ID, digits only.
    pub pixel_id: String,
    /// A Conversions API access token for the pixel (Events Manager › Settings).
    pub access_token: Secret,
    /// Graph API base URL; tests point it at a local fake.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Graph API version, `vNN.N`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Code from Events Manager › Test Events that test events are sent with; when unset,
    /// [`DEFAULT_TEST_EVENT_CODE`].
    #[serde(default)]
    pub test_event_code: Option<String>,
    /// Where the conversions happen, one of [`ACTION_SOURCES`]. Website events must carry the
    /// user agent and the page URL.
    #[serde(default = "default_action_source")]
    pub action_source: String,
    /// Flag every event for Limited Data Use (`data_processing_options: ["LDU"]`, country and
    /// state left for Meta to geolocate).
    #[serde(default)]
    pub limited_data_use: bool,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_action_source() -> String {
    "website".to_owned()
}

/// Builds the connector named `name` from its configuration.
///
/// # Errors
/// [`DestinationError::Config`] naming the key when the pixel ID is not digits, the token is
/// empty, the endpoint is not an http(s) URL, the API version is not `vNN.N`, the test event
/// code is empty, or the action source is not one Meta documents.
pub fn build(
    name: &str,
    config: Config,
    client: reqwest::Client,
) -> Result<Connector, DestinationError> {
    if config.pixel_id.is_empty() || !config.pixel_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DestinationError::config(
            "pixel_id",
            "must be the pixel's digits",
        ));
    }
    let token = config.access_token.expose();
    if token.trim().is_empty() || token.chars().any(char::is_whitespace) {
        return Err(DestinationError::config(
            "access_token",
            "must be a non-empty token without spaces",
        ));
    }
    if !is_api_version(&config.api_version) {
        return Err(DestinationError::config(
            "api_version",
            format!(
                "{:?} is not a Graph API version such as v25.0",
                config.api_version
            ),
        ));
    }
    let mut events_url = url::Url::parse(&config.endpoint)
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
    events_url
        .path_segments_mut()
        .map_err(|()| DestinationError::config("endpoint", "must be an http(s) URL"))?
        .pop_if_empty()
        .extend([
            config.api_version.as_str(),
            config.pixel_id.as_str(),
            "events",
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
    if !ACTION_SOURCES.contains(&config.action_source.as_str()) {
        return Err(DestinationError::config(
            "action_source",
            format!("must be one of {}", ACTION_SOURCES.join(", ")),
        ));
    }
    Ok(Connector {
        name: name.to_owned(),
        client,
        events_url,
        access_token: config.access_token,
        test_event_code,
        settings: payload::Settings {
            action_source: config.action_source,
            limited_data_use: config.limited_data_use,
        },
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

/// A `meta_capi` destination.
pub struct Connector {
    name: String,
    client: reqwest::Client,
    /// `{endpoint}/{version}/{pixel}/events`, without the token (it is added per request so the
    /// URL can never end up in a summary with it).
    events_url: url::Url,
    access_token: Secret,
    test_event_code: String,
    settings: payload::Settings,
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
            |o| payload::unsendable(o, &self.settings),
            |sub, test| self.request(sub, test),
        )
        .await
    }
}

impl Connector {
    /// One request for `batch` (all live or all test events).
    async fn request(&self, batch: Vec<Outgoing<'_>>, test: bool) -> BatchAnswer {
        let test_event_code = test.then_some(self.test_event_code.as_str());
        let body = payload::request_body(&batch, &self.settings, test_event_code);
        let request = self
            .client
            .post(self.events_url.clone())
            .query(&[("access_token", self.access_token.expose())])
            .json(&body);
        let answer = match http::execute(request).await {
            Ok(response) => response::classify(&response, batch.len()),
            Err(failure) => BatchAnswer::PerEvent(http::same_for_all(batch.len(), failure)),
        };
        answer.redact(self.access_token.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Config {
        toml::from_str(toml_text).expect("config parses")
    }

    fn base() -> String {
        "pixel_id = \"1234567890\"\naccess_token = \"EAAB\"\n".to_owned()
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[test]
    fn defaults_are_the_real_api() {
        let connector = build("meta", config(&base()), client()).expect("builds");
        assert_eq!(
            connector.events_url.as_str(),
            "https://graph.facebook.com/v25.0/1234567890/events"
        );
        assert_eq!(connector.test_event_code, "TALLY_TEST");
        assert_eq!(connector.settings.action_source, "website");
        assert!(!connector.settings.limited_data_use);
        assert_eq!(connector.max_batch(), 1000);
    }

    #[test]
    fn an_endpoint_with_a_path_keeps_it() {
        let text = base() + "endpoint = \"http://127.0.0.1:9/graph/\"\napi_version = \"v26.0\"\n";
        let connector = build("meta", config(&text), client()).expect("builds");
        assert_eq!(
            connector.events_url.as_str(),
            "http://127.0.0.1:9/graph/v26.0/1234567890/events"
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("pixel_id = \"12ab\"\naccess_token = \"t\"\n", "pixel_id"),
            ("pixel_id = \"1\"\naccess_token = \" \"\n", "access_token"),
            (&(base() + "endpoint = \"ftp://x\"\n"), "endpoint"),
            (&(base() + "endpoint = \"https://x/?a=1\"\n"), "endpoint"),
            (&(base() + "api_version = \"25.0\"\n"), "api_version"),
            (&(base() + "test_event_code = \"\"\n"), "test_event_code"),
            (&(base() + "action_source = \"web\"\n"), "action_source"),
        ];
        for (text, key) in cases {
            match build("meta", config(text), client()) {
                Err(DestinationError::Config { key: got, .. }) => assert_eq!(got, key, "{text}"),
                Err(other) => panic!("{text}: {other}"),
                Ok(_) => panic!("{text}: built"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = base() + "pixel = \"1\"\n";
        assert!(toml::from_str::<Config>(&text).is_err());
    }

    #[test]
    fn the_token_never_prints() {
        let text = format!("{:?}", config(&base()));
        assert!(!text.contains("EAAB"), "{text}");
    }
}

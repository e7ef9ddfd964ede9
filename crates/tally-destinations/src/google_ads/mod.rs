//! The `google_ads` connector: conversions into a Google Ads conversion action, through one of
//! two APIs chosen by `api`:
//!
//! - `data_manager` (the default): the Data Manager API's `events:ingest`, which takes click IDs
//!   and hashed user identifiers (enhanced conversions for leads) and fails fast: one bad event
//!   refuses the whole request, so refused requests are split by [`split::isolate`] until the bad
//!   event is pinned. One request per conversion action (each request has a single destination,
//!   so no `reference`/`destinationReferences` bookkeeping and no 10-destination limit), and test
//!   events in their own `validateOnly` requests.
//! - `upload_click_conversions` (legacy, for allowlisted accounts): the Google Ads API's
//!   `ConversionUploadService.UploadClickConversions` with `partialFailure`, whose per-row errors
//!   are mapped back to the events. It needs a click ID on every conversion.
//!
//! Not here: OAuth token refresh (a static `access_token` is used), conversion adjustments,
//! enhanced conversions for web, cart data and custom variables.
//!
//! Invariants: one result per event, in order; at most [`MAX_BATCH`] events per Data Manager
//! request and [`CLICK_CONVERSIONS_PER_REQUEST`] rows per Google Ads API request; the
//! access and developer tokens never appear in a summary or a reason; an event Google could not
//! match (no click ID and no identifier) is dead without being sent; the transaction/order ID is
//! the event's `order_id` property, else its `event_id`, so a resend is deduplicated by Google
//! and a duplicate answer counts as delivered (exactly once).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;

use crate::split::{self, BatchAnswer};
use crate::{AttemptSummary, Destination, DestinationError, Outgoing, http};

pub mod payload;
pub mod response;

use payload::Accounts;

/// The destination kind in `[[destinations]]`.
pub const KIND: &str = "google_ads";

/// Most events per request, the limit of both APIs; Data Manager requests use it in full.
pub const MAX_BATCH: usize = 2_000;

/// Most rows per `uploadClickConversions` request. The API takes [`MAX_BATCH`], but its answer
/// echoes every row (a result or an error with its location), and 2,000 of those outgrow the
/// shared read limit ([`http::MAX_RESPONSE_BYTES`], 256 KiB): the answer would be cut, every
/// row's fate unknown and the batch retried, again and again if its rows keep coming back
/// together. 500 rows keep even an all-failed answer well within the limit.
pub const CLICK_CONVERSIONS_PER_REQUEST: usize = 500;

/// tally's standard events that are conversions worth importing, under their own names: the
/// name only selects the conversion action (see [`Config::conversion_actions`]).
pub const DEFAULT_EVENTS: &[(&str, &str)] = &[
    ("purchase", "purchase"),
    ("lead", "lead"),
    ("sign_up", "sign_up"),
    ("begin_checkout", "begin_checkout"),
    ("add_to_cart", "add_to_cart"),
    ("add_payment_info", "add_payment_info"),
    ("subscribe", "subscribe"),
    ("start_trial", "start_trial"),
    ("contact", "contact"),
];

/// Default endpoint of the Data Manager API.
pub const DATA_MANAGER_ENDPOINT: &str = "https://datamanager.googleapis.com";
/// Default version of the Data Manager API.
pub const DATA_MANAGER_VERSION: &str = "v1";
/// Default endpoint of the Google Ads API.
pub const GOOGLE_ADS_ENDPOINT: &str = "https://googleads.googleapis.com";
/// Default version of the Google Ads API.
pub const GOOGLE_ADS_VERSION: &str = "v22";

/// Which Google API carries the conversions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Data Manager `events:ingest`: click IDs and/or hashed identifiers, no developer token.
    #[default]
    DataManager,
    /// Google Ads `customers/{id}:uploadClickConversions`: click IDs required; Google closed it
    /// to integrations that had not used it before.
    UploadClickConversions,
}

/// The `[[destinations]]` keys of a `google_ads` destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `data_manager` (default) or `upload_click_conversions` (legacy, allowlisted accounts).
    #[serde(default)]
    pub api: Api,
    /// The Google Ads account that owns the conversion actions (10 digits; hyphens allowed).
    pub customer_id: String,
    /// The manager account the token acts through, when it is not `customer_id` itself.
    #[serde(default)]
    pub login_customer_id: Option<String>,
    /// The conversion action (digits) for events not listed in `conversion_actions`.
    pub conversion_action_id: String,
    /// Conversion action per platform event name (after the `events` mapping), e.g.
    /// `{ purchase = "123", lead = "456" }`; overrides `conversion_action_id`.
    #[serde(default)]
    pub conversion_actions: BTreeMap<String, String>,
    /// OAuth 2 access token sent as `Authorization: Bearer` (scope `datamanager` or
    /// `adwords`). Token refresh is out of scope for now: this static token is used as is,
    /// and an expired one turns deliveries into `needs_fix` until it is replaced.
    pub access_token: Secret,
    /// Google Ads API developer token; required by `upload_click_conversions` only.
    #[serde(default)]
    pub developer_token: Option<Secret>,
    /// API base URL; defaults to the real endpoint of the chosen API.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// API version in the path: defaults to `v1` for Data Manager, `v22` for the Google Ads
    /// API.
    #[serde(default)]
    pub api_version: Option<String>,
}

/// Which conversion action each event goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversionActions {
    default: String,
    by_event: BTreeMap<String, String>,
}

impl ConversionActions {
    /// `default` for every event name not in `by_event`.
    pub fn new(default: String, by_event: BTreeMap<String, String>) -> Self {
        ConversionActions { default, by_event }
    }

    /// The conversion action ID for the platform event name `name`.
    pub fn for_event(&self, name: &str) -> &str {
        self.by_event.get(name).unwrap_or(&self.default)
    }
}

/// Where and how requests go.
enum Upload {
    /// Data Manager `events:ingest` at this URL.
    DataManager { url: String },
    /// Google Ads `uploadClickConversions` at this URL, with this developer token.
    ClickConversions {
        url: String,
        developer_token: Secret,
    },
}

/// A configured Google Ads destination.
pub struct Connector {
    name: String,
    accounts: Accounts,
    actions: ConversionActions,
    access_token: Secret,
    upload: Upload,
    client: reqwest::Client,
}

/// Validates `config` and builds the connector.
///
/// # Errors
///
/// [`DestinationError::Config`] for a customer ID that is not 10 digits, a conversion action ID
/// that is not digits, an empty access token, a missing developer token on the legacy API (or
/// one set for Data Manager, which does not use it), an endpoint that is not an http(s) URL, or
/// an API version that is not `v<digits>`.
pub fn build(
    name: &str,
    config: Config,
    client: reqwest::Client,
) -> Result<Connector, DestinationError> {
    let customer_id = customer_id("customer_id", &config.customer_id)?;
    let login_customer_id = config
        .login_customer_id
        .as_deref()
        .map(|id| customer_id_or_none("login_customer_id", id))
        .transpose()?
        .flatten();
    let default_action = action_id("conversion_action_id", &config.conversion_action_id)?;
    let mut by_event = BTreeMap::new();
    for (event, id) in &config.conversion_actions {
        let key = format!("conversion_actions.{event}");
        if event.trim().is_empty() {
            return Err(DestinationError::config(key, "event name is empty"));
        }
        by_event.insert(event.clone(), action_id(&key, id)?);
    }
    if config.access_token.expose().trim().is_empty() {
        return Err(DestinationError::config(
            "access_token",
            "is empty: set an OAuth 2 access token",
        ));
    }
    let upload = match config.api {
        Api::DataManager => {
            if config.developer_token.is_some() {
                return Err(DestinationError::config(
                    "developer_token",
                    "the Data Manager API takes no developer token: remove it, or set \
                     api = \"upload_click_conversions\"",
                ));
            }
            let endpoint = endpoint(config.endpoint.as_deref(), DATA_MANAGER_ENDPOINT)?;
            let version = version(config.api_version.as_deref(), DATA_MANAGER_VERSION)?;
            Upload::DataManager {
                url: format!("{endpoint}/{version}/events:ingest"),
            }
        }
        Api::UploadClickConversions => {
            let developer_token = match config.developer_token {
                Some(token) if !token.expose().trim().is_empty() => token,
                _ => {
                    return Err(DestinationError::config(
                        "developer_token",
                        "is required by api = \"upload_click_conversions\"",
                    ));
                }
            };
            let endpoint = endpoint(config.endpoint.as_deref(), GOOGLE_ADS_ENDPOINT)?;
            let version = version(config.api_version.as_deref(), GOOGLE_ADS_VERSION)?;
            Upload::ClickConversions {
                url: format!("{endpoint}/{version}/customers/{customer_id}:uploadClickConversions"),
                developer_token,
            }
        }
    };
    Ok(Connector {
        name: name.to_owned(),
        accounts: Accounts {
            customer_id,
            login_customer_id,
        },
        actions: ConversionActions::new(default_action, by_event),
        access_token: config.access_token,
        upload,
        client,
    })
}

/// A 10-digit customer ID with the hyphens Google's UI shows removed.
fn customer_id(key: &str, value: &str) -> Result<String, DestinationError> {
    let digits: String = value.trim().chars().filter(|c| *c != '-').collect();
    if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(DestinationError::config(
            key,
            "must be a 10-digit Google Ads customer ID (hyphens allowed, e.g. 123-456-7890)",
        ))
    }
}

/// Like [`customer_id`], with an empty value meaning "not set" (an env var left blank).
fn customer_id_or_none(key: &str, value: &str) -> Result<Option<String>, DestinationError> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        customer_id(key, value).map(Some)
    }
}

/// A conversion action ID: an int64 in decimal.
fn action_id(key: &str, value: &str) -> Result<String, DestinationError> {
    let value = value.trim();
    if !value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(DestinationError::config(
            key,
            "must be a conversion action ID (digits, as in the Google Ads UI's ctId)",
        ))
    }
}

/// The configured endpoint or `default`, as an http(s) base URL without a trailing slash.
fn endpoint(value: Option<&str>, default: &str) -> Result<String, DestinationError> {
    let text = value.unwrap_or(default).trim();
    let url = url::Url::parse(text)
        .map_err(|e| DestinationError::config("endpoint", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(DestinationError::config(
            "endpoint",
            "must be an http or https URL with a host",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(DestinationError::config(
            "endpoint",
            "must not carry a query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The configured API version or `default`, checked to be `v<digits>`.
fn version(value: Option<&str>, default: &str) -> Result<String, DestinationError> {
    let version = value.unwrap_or(default).trim();
    match version.strip_prefix('v') {
        Some(number) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(version.to_owned())
        }
        _ => Err(DestinationError::config(
            "api_version",
            "must look like v1 or v22",
        )),
    }
}

impl Connector {
    /// The API the connector was built for.
    fn api(&self) -> Api {
        match self.upload {
            Upload::DataManager { .. } => Api::DataManager,
            Upload::ClickConversions { .. } => Api::UploadClickConversions,
        }
    }

    /// One Data Manager request for events of one conversion action and one test flag.
    async fn ingest(
        &self,
        url: &str,
        events: Vec<Outgoing<'_>>,
        action: &str,
        validate_only: bool,
    ) -> BatchAnswer {
        let body = payload::data_manager_request(&self.accounts, action, &events, validate_only);
        let request = self
            .client
            .post(url)
            .bearer_auth(self.access_token.expose())
            .json(&body);
        match http::execute(request).await {
            Ok(answer) => response::data_manager(&answer, events.len(), validate_only),
            Err(failure) => BatchAnswer::PerEvent(http::same_for_all(events.len(), failure)),
        }
    }

    /// One `uploadClickConversions` request for events of one test flag.
    async fn upload_click_conversions(
        &self,
        url: &str,
        developer_token: &Secret,
        events: &[Outgoing<'_>],
        validate_only: bool,
    ) -> Vec<(Disposition, AttemptSummary)> {
        let body = payload::click_conversions_request(
            &self.accounts,
            &self.actions,
            events,
            validate_only,
        );
        let mut request = self
            .client
            .post(url)
            .bearer_auth(self.access_token.expose())
            .header("developer-token", developer_token.expose())
            .json(&body);
        if let Some(login) = &self.accounts.login_customer_id {
            request = request.header("login-customer-id", login);
        }
        match http::execute(request).await {
            Ok(answer) => response::click_conversions(&answer, events.len(), validate_only),
            Err(failure) => http::same_for_all(events.len(), failure),
        }
    }
}

#[async_trait]
impl Destination for Connector {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        match self.upload {
            Upload::DataManager { .. } => MAX_BATCH,
            Upload::ClickConversions { .. } => CLICK_CONVERSIONS_PER_REQUEST,
        }
    }

    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        let api = self.api();
        let mut results: Vec<Option<(Disposition, AttemptSummary)>> = vec![None; batch.len()];
        // Requests are per test flag (validateOnly is request-wide) and, on Data Manager, per
        // conversion action (one destination per request). Google Ads API rows each name their
        // own action, so there the action part of the key is left empty.
        let mut groups: BTreeMap<(bool, &str), Vec<usize>> = BTreeMap::new();
        for (i, outgoing) in batch.iter().enumerate() {
            if let Some(reason) = payload::unsendable(api, outgoing) {
                let summary = AttemptSummary::new(None, format!("not sent: {reason}"));
                results[i] = Some((Disposition::Dead { reason }, summary));
                continue;
            }
            let action = match api {
                Api::DataManager => self.actions.for_event(outgoing.name),
                Api::UploadClickConversions => "",
            };
            groups.entry((outgoing.test, action)).or_default().push(i);
        }
        for ((test, action), indices) in groups {
            for chunk in indices.chunks(self.max_batch()) {
                let events: Vec<Outgoing<'_>> = chunk.iter().map(|&i| batch[i]).collect();
                let answers = match &self.upload {
                    Upload::DataManager { url } => {
                        split::isolate(&events, |sub| self.ingest(url, sub, action, test)).await
                    }
                    Upload::ClickConversions {
                        url,
                        developer_token,
                    } => {
                        self.upload_click_conversions(url, developer_token, &events, test)
                            .await
                    }
                };
                for (&i, answer) in chunk.iter().zip(answers) {
                    results[i] = Some(answer);
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.expect("every event is answered by its group's request"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "customer_id = \"123-456-7890\"\nconversion_action_id = \"555\"\n\
             access_token = \"ya29.token\"\n{extra}"
        ))
        .unwrap()
    }

    fn error(config: Config) -> String {
        match build("ads", config, reqwest::Client::new()) {
            Ok(_) => panic!("config accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn data_manager_is_the_default_and_hyphens_leave_the_customer_id() {
        let connector = build("ads", config(""), reqwest::Client::new()).unwrap();
        assert_eq!(connector.api(), Api::DataManager);
        assert_eq!(connector.accounts.customer_id, "1234567890");
        match &connector.upload {
            Upload::DataManager { url } => {
                assert_eq!(url, "https://datamanager.googleapis.com/v1/events:ingest");
            }
            Upload::ClickConversions { .. } => panic!("legacy API chosen"),
        }
        assert_eq!(connector.max_batch(), 2_000);
    }

    #[test]
    fn the_legacy_api_needs_a_developer_token_and_builds_its_url() {
        let without = config("api = \"upload_click_conversions\"");
        assert!(error(without).starts_with("developer_token:"));
        let with = config(
            "api = \"upload_click_conversions\"\ndeveloper_token = \"dev\"\n\
             login_customer_id = \"111-222-3333\"\nendpoint = \"http://127.0.0.1:9/\"",
        );
        let connector = build("ads", with, reqwest::Client::new()).unwrap();
        assert_eq!(
            connector.accounts.login_customer_id.as_deref(),
            Some("1112223333")
        );
        match &connector.upload {
            Upload::ClickConversions { url, .. } => assert_eq!(
                url,
                "http://127.0.0.1:9/v22/customers/1234567890:uploadClickConversions"
            ),
            Upload::DataManager { .. } => panic!("Data Manager chosen"),
        }
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let bad = [
            ("customer_id = \"12345\"", "customer_id:"),
            ("login_customer_id = \"abc\"", "login_customer_id:"),
            ("conversion_action_id = \"ct-5\"", "conversion_action_id:"),
            (
                "conversion_actions = { lead = \"x\" }",
                "conversion_actions.lead:",
            ),
            ("access_token = \" \"", "access_token:"),
            ("developer_token = \"dev\"", "developer_token:"),
            ("endpoint = \"ftp://example.com\"", "endpoint:"),
            ("endpoint = \"https://x.example/?key=1\"", "endpoint:"),
            ("api_version = \"22\"", "api_version:"),
        ];
        for (line, key) in bad {
            // A later duplicate key would be a TOML error, so replace the defaults instead.
            let base = "customer_id = \"123-456-7890\"\nconversion_action_id = \"555\"\n\
                        access_token = \"ya29.token\"";
            let name = line.split(" =").next().unwrap();
            let kept: Vec<&str> = base
                .lines()
                .filter(|l| !l.starts_with(&format!("{name} =")))
                .collect();
            let config: Config = toml::from_str(&format!("{}\n{line}", kept.join("\n"))).unwrap();
            let message = error(config);
            assert!(message.starts_with(key), "{line}: {message}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<Config, _> = toml::from_str(
            "customer_id = \"1234567890\"\nconversion_action_id = \"5\"\n\
             access_token = \"t\"\npixel_id = \"1\"",
        );
        assert!(parsed.is_err());
    }

    #[test]
    fn per_event_actions_override_the_default() {
        let connector = build(
            "ads",
            config("conversion_actions = { lead = \"777\" }"),
            reqwest::Client::new(),
        )
        .unwrap();
        assert_eq!(connector.actions.for_event("lead"), "777");
        assert_eq!(connector.actions.for_event("purchase"), "555");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let text = format!("{:?}", config("developer_token = \"dev-secret\""));
        assert!(!text.contains("ya29.token") && !text.contains("dev-secret"));
    }
}

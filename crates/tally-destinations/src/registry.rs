//! From a `[[destinations]]` table to a running connector: one match over the kinds, so
//! adding a platform is one folder plus one arm here.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tally_core::clock::{Clock, SystemClock};

use crate::{Destination, DestinationError, ga4, google_ads, meta_capi, redact, tiktok, webhook};

/// Every destination kind tally delivers to.
pub const KINDS: &[&str] = &[
    meta_capi::KIND,
    google_ads::KIND,
    ga4::KIND,
    tiktok::KIND,
    webhook::KIND,
];

/// The kind's standard names for tally's standard events (used when a destination has no
/// `events` mapping).
pub fn default_events(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        meta_capi::KIND => meta_capi::DEFAULT_EVENTS,
        google_ads::KIND => google_ads::DEFAULT_EVENTS,
        ga4::KIND => ga4::DEFAULT_EVENTS,
        tiktok::KIND => tiktok::DEFAULT_EVENTS,
        webhook::KIND => webhook::DEFAULT_EVENTS,
        _ => &[],
    }
}

/// Builds the connector of `kind` named `name` from its own settings (the destination's keys
/// other than the common ones), sending with `client`; `clock` is the time connectors judge
/// event age by. The connector is wrapped in [`redact::Redacting`], so no reason or summary it
/// reports carries one of its credentials.
///
/// # Errors
/// The first invalid or missing setting, with its key.
pub fn build(
    kind: &str,
    name: &str,
    settings: toml::Table,
    client: &reqwest::Client,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Destination>, DestinationError> {
    let client = client.clone();
    let secrets = redact::secrets_of(&settings);
    let connector: Arc<dyn Destination> = match kind {
        meta_capi::KIND => Arc::new(meta_capi::build(name, parse(settings)?, client)?),
        google_ads::KIND => Arc::new(google_ads::build(name, parse(settings)?, client)?),
        ga4::KIND => Arc::new(ga4::build(name, parse(settings)?, client)?.with_clock(clock)),
        tiktok::KIND => Arc::new(tiktok::build(name, parse(settings)?, client)?),
        webhook::KIND => Arc::new(webhook::build(name, parse(settings)?, client)?),
        other => {
            return Err(DestinationError::config(
                "kind",
                format!("`{other}` is not one of {}", KINDS.join(", ")),
            ));
        }
    };
    Ok(Arc::new(redact::Redacting::new(connector, secrets)))
}

/// Checks a destination's settings without sending anything (`tally config check`).
///
/// # Errors
/// As [`build`].
pub fn validate(kind: &str, name: &str, settings: toml::Table) -> Result<(), DestinationError> {
    let client = crate::http::client(Duration::from_secs(1))?;
    build(kind, name, settings, &client, Arc::new(SystemClock)).map(|_| ())
}

fn parse<T: DeserializeOwned>(settings: toml::Table) -> Result<T, DestinationError> {
    serde_path_to_error::deserialize(toml::Value::Table(settings)).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // Serde names an unknown field in its message; use it as the key too.
        let key = if key.is_empty() {
            unknown_field(&message).unwrap_or_default()
        } else {
            key
        };
        DestinationError::config(key, message)
    })
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

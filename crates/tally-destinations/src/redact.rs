//! Keeping a destination's credentials out of everything it reports: [`Redacting`] wraps every
//! built connector and scrubs its own secrets (tokens, API secrets, the webhook's signing key
//! and header values) from each disposition reason and attempt summary, because platforms
//! echo requests back in error bodies and those reach the ledger, the admin API and the logs.
//!
//! Connectors that know their platform echoes the token also redact it themselves
//! (`BatchAnswer::redact`); this is the backstop for every kind, including an excerpt cut in
//! the middle of a secret.

use std::sync::Arc;

use async_trait::async_trait;
use tally_core::retry::Disposition;

use crate::{AttemptSummary, Destination, Outgoing};

/// Settings whose values are credentials, in any connector.
const SECRET_KEYS: &[&str] = &["access_token", "developer_token", "api_secret", "secret"];

/// What replaces a secret.
const MARK: &str = "[redacted]";

/// Shortest secret fragment removed at the end of a cut excerpt (shorter ones are too likely to
/// be ordinary text).
const MIN_FRAGMENT: usize = 4;

/// The credential values in a destination's own settings: the secret keys' values, and every
/// `headers` value (also without an `Authorization` scheme such as `Bearer `).
pub fn secrets_of(settings: &toml::Table) -> Vec<String> {
    let mut out: Vec<String> = SECRET_KEYS
        .iter()
        .filter_map(|k| settings.get(*k)?.as_str())
        .map(str::to_owned)
        .collect();
    if let Some(headers) = settings.get("headers").and_then(toml::Value::as_table) {
        for value in headers.values().filter_map(toml::Value::as_str) {
            out.push(value.to_owned());
            if let Some((_, credential)) = value.trim().split_once(' ') {
                out.push(credential.trim().to_owned());
            }
        }
    }
    out.retain(|s| s.chars().count() >= MIN_FRAGMENT);
    // Longest first, so a value is replaced whole before any part of it.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Replaces every secret in `text`, and a secret's beginning where an excerpt was cut (`…`).
pub fn scrub(text: String, secrets: &[String]) -> String {
    let mut text = text;
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MARK);
        }
    }
    if let Some(cut) = text.strip_suffix('…') {
        for secret in secrets {
            let prefix_at = secret
                .char_indices()
                .map(|(i, _)| i)
                .skip(MIN_FRAGMENT)
                .chain([secret.len()])
                .filter(|&end| cut.ends_with(&secret[..end]))
                .max();
            if let Some(end) = prefix_at {
                return format!("{}{MARK}…", &cut[..cut.len() - end]);
            }
        }
    }
    text
}

fn scrub_disposition(disposition: Disposition, secrets: &[String]) -> Disposition {
    match disposition {
        Disposition::Succeeded => Disposition::Succeeded,
        Disposition::Retry {
            reason,
            retry_after,
            overloaded,
        } => Disposition::Retry {
            reason: scrub(reason, secrets),
            retry_after,
            overloaded,
        },
        Disposition::Dead { reason } => Disposition::Dead {
            reason: scrub(reason, secrets),
        },
        Disposition::NeedsFix { reason } => Disposition::NeedsFix {
            reason: scrub(reason, secrets),
        },
    }
}

/// A connector whose reports never carry its own credentials.
pub struct Redacting {
    inner: Arc<dyn Destination>,
    secrets: Vec<String>,
}

impl Redacting {
    /// Wraps `inner`, scrubbing `secrets` (see [`secrets_of`]) from what it reports.
    pub fn new(inner: Arc<dyn Destination>, secrets: Vec<String>) -> Self {
        Redacting { inner, secrets }
    }
}

#[async_trait]
impl Destination for Redacting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        let results = self.inner.send(batch).await;
        if self.secrets.is_empty() {
            return results;
        }
        results
            .into_iter()
            .map(|(disposition, summary)| {
                (
                    scrub_disposition(disposition, &self.secrets),
                    AttemptSummary {
                        status: summary.status,
                        text: scrub(summary.text, &self.secrets),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn every_credential_setting_is_a_secret_and_nothing_else_is() {
        let s = secrets_of(&table(
            r#"
            pixel_id = "1234567890"
            endpoint = "https://graph.facebook.com"
            access_token = "tok-0123456789"
            api_secret = "api-0123456789"
            headers = { Authorization = "Bearer rcv-0123456789", X-Route = "eu" }
            "#,
        ));
        assert_eq!(
            s,
            [
                "Bearer rcv-0123456789",
                "tok-0123456789",
                "api-0123456789",
                "rcv-0123456789",
            ]
        );
    }

    #[test]
    fn secrets_are_replaced_whole_and_where_an_excerpt_cut_them() {
        let secrets = vec!["tok-0123456789".to_owned()];
        assert_eq!(
            scrub(
                "HTTP 401: bad token tok-0123456789 (tok-0123456789)".into(),
                &secrets
            ),
            "HTTP 401: bad token [redacted] ([redacted])"
        );
        assert_eq!(
            scrub("HTTP 401: {\"token\": \"tok-01234…".into(), &secrets),
            "HTTP 401: {\"token\": \"[redacted]…"
        );
        assert_eq!(scrub("ends with tok…".into(), &secrets), "ends with tok…");
        assert_eq!(scrub("HTTP 500: oops".into(), &secrets), "HTTP 500: oops");
    }
}

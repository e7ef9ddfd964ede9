//! The collector's config: sources (who may send, with which key, from where, how fast) and
//! request limits. Deserialised from `[[sources]]` and `[ingest]`; see `tally.default.toml`.

use serde::{Deserialize, Serialize};
use tally_core::event::SourceKind;
use tally_core::secret::Secret;

/// One `[[sources]]` entry: a client allowed to send events.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name used in the ledger and metrics.
    pub name: String,
    /// `browser` (public key, `/v1/collect`) or `server` (secret key, `/v1/events`).
    pub kind: SourceKind,
    /// The key clients present.
    pub key: Secret,
    /// Origins a browser source accepts (`https://shop.example`), or `["*"]`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Events per second this key may send (token bucket); absent = unlimited.
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// Burst size for the token bucket; defaults to twice the rate.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
}

/// `[ingest]`: request and event limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest accepted request body on the server doors, after decompression.
    pub max_body_bytes: usize,
    /// Largest accepted request body on the browser door, after decompression.
    pub max_browser_body_bytes: usize,
    /// Largest accepted single event.
    pub max_event_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Timestamps further ahead than this are rejected (closer ones are clamped).
    pub max_future_secs: u64,
    /// Timestamps older than this are rejected.
    pub max_age_days: u64,
    /// Header holding the client IP when tally runs behind a proxy (e.g. `x-forwarded-for`);
    /// empty = the connection's peer address.
    pub client_ip_header: String,
    /// How long a client may take to send a whole request body once its headers are in; a
    /// client trickling its body is cut off with 408 instead of holding the connection.
    pub body_read_timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 5 * 1024 * 1024,
            max_browser_body_bytes: 512 * 1024,
            max_event_bytes: 32 * 1024,
            max_batch_events: 10_000,
            max_future_secs: 3600,
            max_age_days: 90,
            client_ip_header: String::new(),
            body_read_timeout_ms: 30_000,
        }
    }
}

impl IngestConfig {
    /// The parse bounds these settings imply.
    pub fn parse_limits(&self) -> tally_core::parse::ParseLimits {
        tally_core::parse::ParseLimits {
            max_future_ms: (self.max_future_secs as i64).saturating_mul(1000),
            max_age_ms: (self.max_age_days as i64).saturating_mul(86_400_000),
            ..Default::default()
        }
    }
}

/// `[tag]`: the browser tag's settings on the collector side: the anonymous-ID cookie that
/// `/v1/collect` can renew from its own response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// Name of the anonymous-ID cookie; tally.js uses the same (`data-cookie` on its script tag
    /// when changed).
    pub cookie_name: String,
    /// The site domain tally shares with the shop (`shop.example` when tally runs at
    /// `t.shop.example`). When set, the browser door answers pages under it with a `Set-Cookie`
    /// that renews the anonymous ID as a server-set first-party cookie. Empty = no cookie: from
    /// another site it would be a third-party cookie, which browsers refuse.
    pub cookie_domain: String,
    /// Lifetime of that cookie in days (browsers cap cookies at 400).
    pub cookie_max_age_days: u32,
}

impl Default for TagConfig {
    fn default() -> Self {
        TagConfig {
            cookie_name: "tally_id".into(),
            cookie_domain: String::new(),
            cookie_max_age_days: 395,
        }
    }
}

//! The canonical event: the one shape every door (browser, server, Segment, import) produces and
//! every later stage (dedup, merge, store, delivery) consumes.
//!
//! This is also tally's storage format, so field names are stable: renaming one is a migration.
//! It never holds a raw email address or phone number (see [`crate::identity::HashedIdentity`]).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::currency::Currency;
use crate::identity::HashedIdentity;
use crate::timestamp::Timestamp;

/// Which door a copy of an event came through; decides who is authoritative when copies merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A page, through tally.js or the browser door (`/v1/collect`).
    Browser,
    /// A backend, through `/v1/events` or the Segment-compatible endpoints.
    Server,
}

impl SourceKind {
    /// The lowercase name used in config, storage and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Browser => "browser",
            SourceKind::Server => "server",
        }
    }
}

/// One conversion (or other tracked action), as accepted and merged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Planned event name (after alias resolution), e.g. `purchase`.
    pub name: String,
    /// Client-supplied idempotency key; generated (`evt_…`) when the client sent none.
    pub event_id: String,
    /// When the action happened, as the client reported it (clamped to receipt time when
    /// slightly in the future).
    pub timestamp: Timestamp,
    /// When tally first received this event.
    pub received_at: Timestamp,
    /// Name of the configured source the first copy came from.
    pub source: String,
    /// Kind of that source.
    pub source_kind: SourceKind,
    /// Who did it: hashed identifiers, anonymous ID, click IDs and browser context.
    #[serde(default, skip_serializing_if = "User::is_empty")]
    pub user: User,
    /// Conversion value, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Decimal>,
    /// ISO 4217 currency of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// Every other property the client sent (normalised `value`/`currency` included).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// The page the action happened on (browser copies, or servers that forward it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Page>,
    /// The consent state the event was collected under.
    #[serde(default, skip_serializing_if = "Consent::is_empty")]
    pub consent: Consent,
    /// A test conversion: goes only to destinations' test modes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// The person behind an event, as far as tally may know them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// First-party anonymous visitor ID (tally.js cookie, Segment `anonymousId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Normalised and hashed customer identifiers.
    #[serde(default, skip_serializing_if = "HashedIdentity::is_empty")]
    pub identity: HashedIdentity,
    /// Client IP address (not the backend's own address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Advertising click IDs and platform cookies.
    #[serde(default, skip_serializing_if = "ClickIds::is_empty")]
    pub click_ids: ClickIds,
}

impl User {
    /// True when nothing about the user is known.
    pub fn is_empty(&self) -> bool {
        self.anonymous_id.is_none()
            && self.identity.is_empty()
            && self.ip.is_none()
            && self.user_agent.is_none()
            && self.click_ids.is_empty()
    }
}

/// Click IDs from landing URLs and the platforms' first-party cookies. Values are kept exactly
/// as received: click IDs are case-sensitive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickIds {
    /// Google Ads click ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    /// Google Ads app click ID (iOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbraid: Option<String>,
    /// Google Ads web click ID (iOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wbraid: Option<String>,
    /// Meta click ID from the landing URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    /// Meta `_fbc` cookie value (`fb.1.<click ms>.<fbclid>`, 4 or 5 segments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    /// Meta `_fbp` browser ID cookie value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbp: Option<String>,
    /// TikTok click ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<String>,
    /// TikTok `_ttp` cookie value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttp: Option<String>,
    /// Microsoft Advertising click ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msclkid: Option<String>,
    /// GA4 client ID (from the `_ga` cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga_client_id: Option<String>,
    /// When the ad click happened (landing time), which `fbc` and click windows need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_at: Option<Timestamp>,
    /// Other platforms' click IDs (`li_fat_id`, `rdt_cid`, `ScCid`, …), kept as received.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, String>,
}

impl ClickIds {
    /// True when no click ID or cookie is present.
    pub fn is_empty(&self) -> bool {
        self.named().all(|(_, v)| v.is_none()) && self.clicked_at.is_none() && self.other.is_empty()
    }

    /// The typed fields by their wire names, in a fixed order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &Option<String>)> {
        [
            ("gclid", &self.gclid),
            ("gbraid", &self.gbraid),
            ("wbraid", &self.wbraid),
            ("fbclid", &self.fbclid),
            ("fbc", &self.fbc),
            ("fbp", &self.fbp),
            ("ttclid", &self.ttclid),
            ("ttp", &self.ttp),
            ("msclkid", &self.msclkid),
            ("ga_client_id", &self.ga_client_id),
        ]
        .into_iter()
    }

    /// Mutable access to a typed field by wire name.
    pub fn field_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "gclid" => &mut self.gclid,
            "gbraid" => &mut self.gbraid,
            "wbraid" => &mut self.wbraid,
            "fbclid" => &mut self.fbclid,
            "fbc" => &mut self.fbc,
            "fbp" => &mut self.fbp,
            "ttclid" => &mut self.ttclid,
            "ttp" | "_ttp" => &mut self.ttp,
            "msclkid" => &mut self.msclkid,
            "ga_client_id" | "client_id" => &mut self.ga_client_id,
            _ => return None,
        })
    }
}

/// Where the action happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Full page URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Referrer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// Document title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// One Consent Mode v2 signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentSignal {
    /// The user agreed.
    Granted,
    /// The user refused (or has not agreed where opt-in is required).
    Denied,
}

/// The consent snapshot an event was collected under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Consent Mode `ad_storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_storage: Option<ConsentSignal>,
    /// Consent Mode `analytics_storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics_storage: Option<ConsentSignal>,
    /// Consent Mode v2 `ad_user_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_user_data: Option<ConsentSignal>,
    /// Consent Mode v2 `ad_personalization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_personalization: Option<ConsentSignal>,
    /// IAB TCF v2 TC string, kept as received (decoded at delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcf: Option<String>,
}

impl Consent {
    /// True when the event carried no consent state at all.
    pub fn is_empty(&self) -> bool {
        self.signals().all(|(_, s)| s.is_none()) && self.tcf.is_none()
    }

    /// The four Consent Mode signals by name.
    pub fn signals(&self) -> impl Iterator<Item = (&'static str, Option<ConsentSignal>)> {
        [
            ("ad_storage", self.ad_storage),
            ("analytics_storage", self.analytics_storage),
            ("ad_user_data", self.ad_user_data),
            ("ad_personalization", self.ad_personalization),
        ]
        .into_iter()
    }

    /// Mutable access to a signal by name.
    pub fn signal_mut(&mut self, name: &str) -> Option<&mut Option<ConsentSignal>> {
        Some(match name {
            "ad_storage" => &mut self.ad_storage,
            "analytics_storage" => &mut self.analytics_storage,
            "ad_user_data" => &mut self.ad_user_data,
            "ad_personalization" => &mut self.ad_personalization,
            _ => return None,
        })
    }
}

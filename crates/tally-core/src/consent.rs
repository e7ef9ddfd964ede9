//! Consent decisions (C4): may this event go to this destination, whole or stripped of
//! personal identifiers?
//!
//! Each of the four Consent Mode v2 signals is resolved for an event in this order: the
//! explicit signal the event carried; else what its IAB TCF v2 string grants (via
//! [`crate::tcf`]); else the default for the event's region; else the global default. Each
//! destination declares the signals it requires ([`ConsentNeeds`]); a missing one withholds
//! the delivery (a consent gap), or, for signals the destination lists as strip-only, sends the
//! event without personal identifiers. The decision carries an audit line that the ledger keeps
//! with the delivery.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::event::{Consent, ConsentSignal};

/// One Consent Mode v2 signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Storage (cookies) for advertising.
    AdStorage,
    /// Storage for analytics.
    AnalyticsStorage,
    /// Sending user data to ad platforms for measurement.
    AdUserData,
    /// Personalised advertising (remarketing).
    AdPersonalization,
}

impl Signal {
    /// All four, in Consent Mode's order.
    pub const ALL: [Signal; 4] = [
        Signal::AdStorage,
        Signal::AnalyticsStorage,
        Signal::AdUserData,
        Signal::AdPersonalization,
    ];

    /// The Consent Mode name.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::AdStorage => "ad_storage",
            Signal::AnalyticsStorage => "analytics_storage",
            Signal::AdUserData => "ad_user_data",
            Signal::AdPersonalization => "ad_personalization",
        }
    }

    /// Reads a Consent Mode name.
    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    fn explicit(self, consent: &Consent) -> Option<ConsentSignal> {
        match self {
            Signal::AdStorage => consent.ad_storage,
            Signal::AnalyticsStorage => consent.analytics_storage,
            Signal::AdUserData => consent.ad_user_data,
            Signal::AdPersonalization => consent.ad_personalization,
        }
    }
}

/// EU member states plus Iceland, Liechtenstein and Norway (ISO 3166-1 alpha-2, lowercase):
/// the `eea` group in [`ConsentPolicy::regions`].
pub const EEA: [&str; 30] = [
    "at", "be", "bg", "cy", "cz", "de", "dk", "ee", "es", "fi", "fr", "gr", "hr", "hu", "ie", "is",
    "it", "li", "lt", "lu", "lv", "mt", "nl", "no", "pl", "pt", "ro", "se", "si", "sk",
];

/// What to assume for an event that carries no consent state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentPolicy {
    /// Whether a signal is granted when nothing else says (Consent Mode's own default is
    /// granted).
    pub default_granted: bool,
    /// Per region: lowercase ISO country code, or `eea` for every EEA country. A country's own
    /// entry wins over `eea`.
    pub regions: BTreeMap<String, bool>,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        ConsentPolicy {
            default_granted: true,
            regions: BTreeMap::new(),
        }
    }
}

impl ConsentPolicy {
    fn default_for(&self, country: Option<&str>) -> (bool, Basis) {
        if let Some(country) = country {
            if let Some(granted) = self.regions.get(country) {
                return (*granted, Basis::Region(country.to_owned()));
            }
            if let Some(granted) = self.regions.get("eea").filter(|_| EEA.contains(&country)) {
                return (*granted, Basis::Region("eea".into()));
            }
        }
        (self.default_granted, Basis::Default)
    }
}

/// What a destination needs before it may receive an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentNeeds {
    /// Without these granted, the event is not sent at all.
    pub required: Vec<Signal>,
    /// Without these granted, the event is sent stripped of personal identifiers.
    pub identifiers_need: Vec<Signal>,
    /// With a TCF string present, this IAB vendor must also have consent.
    pub tcf_vendor_id: Option<u16>,
}

impl ConsentNeeds {
    /// Each destination kind's built-in needs: ad platforms that use the data for advertising
    /// (Meta, TikTok) need ad storage and ad user data; Google Ads needs ad user data; GA4
    /// needs analytics storage and sends without identifiers when ad user data is denied; a
    /// webhook (the business's own system) needs nothing.
    pub fn for_kind(kind: &str) -> ConsentNeeds {
        let (required, identifiers_need) = match kind {
            "meta_capi" | "tiktok" => (vec![Signal::AdStorage, Signal::AdUserData], vec![]),
            "google_ads" => (vec![Signal::AdUserData], vec![]),
            "ga4" => (vec![Signal::AnalyticsStorage], vec![Signal::AdUserData]),
            _ => (vec![], vec![]),
        };
        ConsentNeeds {
            required,
            identifiers_need,
            tcf_vendor_id: None,
        }
    }
}

/// Why a resolved signal has its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The event carried the signal.
    Explicit,
    /// The event's TCF string.
    Tcf,
    /// The event's TCF string could not be decoded; treated as denied.
    TcfInvalid,
    /// The default for this region.
    Region(String),
    /// The global default.
    Default,
}

/// The four signals resolved for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    granted: [bool; 4],
    basis: [Basis; 4],
    tcf: Option<crate::tcf::TcString>,
}

impl Resolved {
    /// Resolves `consent` for an event from `country` (lowercase alpha-2, if known).
    pub fn new(consent: &Consent, country: Option<&str>, policy: &ConsentPolicy) -> Resolved {
        let tcf = consent.tcf.as_deref().map(crate::tcf::decode);
        let tcf_signals = match &tcf {
            Some(Ok(tc)) => Some(tc.google_consent_signals()),
            _ => None,
        };
        let mut granted = [false; 4];
        let mut basis = [
            Basis::Default,
            Basis::Default,
            Basis::Default,
            Basis::Default,
        ];
        for signal in Signal::ALL {
            let i = signal.index();
            (granted[i], basis[i]) = if let Some(explicit) = signal.explicit(consent) {
                (explicit == ConsentSignal::Granted, Basis::Explicit)
            } else if let Some(signals) = &tcf_signals {
                let value = match signal {
                    Signal::AdStorage => signals.ad_storage,
                    Signal::AnalyticsStorage => signals.analytics_storage,
                    Signal::AdUserData => signals.ad_user_data,
                    Signal::AdPersonalization => signals.ad_personalization,
                };
                (value, Basis::Tcf)
            } else if matches!(tcf, Some(Err(_))) {
                (false, Basis::TcfInvalid)
            } else {
                policy.default_for(country)
            };
        }
        Resolved {
            granted,
            basis,
            tcf: tcf.and_then(Result::ok),
        }
    }

    /// Whether `signal` is granted.
    pub fn granted(&self, signal: Signal) -> bool {
        self.granted[signal.index()]
    }

    /// Why `signal` has its value.
    pub fn basis(&self, signal: Signal) -> &Basis {
        &self.basis[signal.index()]
    }

    /// The decision for a destination with `needs`.
    pub fn decide(&self, needs: &ConsentNeeds) -> Verdict {
        let missing: Vec<Signal> = needs
            .required
            .iter()
            .copied()
            .filter(|s| !self.granted(*s))
            .collect();
        if !missing.is_empty() {
            return Verdict::Withhold(format!("consent: {} not granted", names(&missing)));
        }
        if let (Some(vendor), Some(tc)) = (needs.tcf_vendor_id, &self.tcf)
            && !tc.vendor_consent(vendor)
        {
            return Verdict::Withhold(format!("consent: TCF vendor {vendor} has no consent"));
        }
        let strip: Vec<Signal> = needs
            .identifiers_need
            .iter()
            .copied()
            .filter(|s| !self.granted(*s))
            .collect();
        if strip.is_empty() {
            Verdict::Send
        } else {
            Verdict::SendWithoutIdentifiers(format!(
                "consent: {} not granted, sent without identifiers",
                names(&strip)
            ))
        }
    }

    /// One line for the ledger: each signal, its value and where it came from.
    pub fn audit(&self) -> String {
        let mut out = String::new();
        for signal in Signal::ALL {
            if !out.is_empty() {
                out.push(' ');
            }
            let value = if self.granted(signal) {
                "granted"
            } else {
                "denied"
            };
            let _ = write!(out, "{}={value}", signal.as_str());
            match self.basis(signal) {
                Basis::Explicit => {}
                Basis::Tcf => out.push_str("(tcf)"),
                Basis::TcfInvalid => out.push_str("(tcf invalid)"),
                Basis::Region(r) => {
                    let _ = write!(out, "(default {r})");
                }
                Basis::Default => out.push_str("(default)"),
            }
        }
        out
    }
}

fn names(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// May the event go?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Yes, with everything.
    Send,
    /// Yes, without personal identifiers (the reason says which signal is missing).
    SendWithoutIdentifiers(String),
    /// No: a consent gap (the reason says which signal is missing).
    Withhold(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(pairs: &[(&str, ConsentSignal)]) -> Consent {
        let mut c = Consent::default();
        for (name, value) in pairs {
            *c.signal_mut(name).unwrap() = Some(*value);
        }
        c
    }

    use ConsentSignal::{Denied, Granted};

    #[test]
    fn explicit_signals_decide_per_destination_kind() {
        let policy = ConsentPolicy::default();
        let ads_denied = consent(&[
            ("ad_storage", Denied),
            ("ad_user_data", Denied),
            ("analytics_storage", Granted),
        ]);
        let r = Resolved::new(&ads_denied, None, &policy);
        assert_eq!(
            r.decide(&ConsentNeeds::for_kind("meta_capi")),
            Verdict::Withhold("consent: ad_storage, ad_user_data not granted".into())
        );
        assert!(matches!(
            r.decide(&ConsentNeeds::for_kind("google_ads")),
            Verdict::Withhold(_)
        ));
        assert!(matches!(
            r.decide(&ConsentNeeds::for_kind("ga4")),
            Verdict::SendWithoutIdentifiers(_)
        ));
        assert_eq!(r.decide(&ConsentNeeds::for_kind("webhook")), Verdict::Send);
        assert_eq!(
            r.audit(),
            "ad_storage=denied analytics_storage=granted ad_user_data=denied ad_personalization=granted(default)"
        );
    }

    #[test]
    fn regional_defaults_apply_only_without_state() {
        let policy = ConsentPolicy {
            default_granted: true,
            regions: [("eea".to_owned(), false), ("de".to_owned(), true)]
                .into_iter()
                .collect(),
        };
        let meta = ConsentNeeds::for_kind("meta_capi");
        let none = Consent::default();
        assert!(matches!(
            Resolved::new(&none, Some("fr"), &policy).decide(&meta),
            Verdict::Withhold(_)
        ));
        assert_eq!(
            Resolved::new(&none, Some("de"), &policy).decide(&meta),
            Verdict::Send,
            "a country's own entry wins over its group"
        );
        assert_eq!(
            Resolved::new(&none, Some("us"), &policy).decide(&meta),
            Verdict::Send
        );
        assert_eq!(
            Resolved::new(&none, None, &policy).decide(&meta),
            Verdict::Send
        );
        let granted = consent(&[("ad_storage", Granted), ("ad_user_data", Granted)]);
        assert_eq!(
            Resolved::new(&granted, Some("fr"), &policy).decide(&meta),
            Verdict::Send,
            "explicit state wins over the region's default"
        );
        assert!(
            Resolved::new(&none, Some("fr"), &policy)
                .audit()
                .contains("ad_storage=denied(default eea)")
        );
    }

    #[test]
    fn an_undecodable_tcf_string_denies_what_it_would_have_decided() {
        let c = Consent {
            tcf: Some("not a tc string!".into()),
            ..Consent::default()
        };
        let r = Resolved::new(&c, None, &ConsentPolicy::default());
        assert!(!r.granted(Signal::AdUserData));
        assert_eq!(r.basis(Signal::AdUserData), &Basis::TcfInvalid);
        assert!(matches!(
            r.decide(&ConsentNeeds::for_kind("meta_capi")),
            Verdict::Withhold(_)
        ));
    }

    /// A published TC string (LiveRamp iabconsent fixtures) consenting to purposes 1, 3, 4 and 7.
    const TCF_ADS_ONLY: &str =
        "COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA";

    #[test]
    fn a_tcf_string_decides_the_signals_the_event_did_not_state() {
        let tc = crate::tcf::decode(TCF_ADS_ONLY).unwrap();
        let consented_vendor = tc.vendor_consents().iter().next().expect("some vendor");
        let c = Consent {
            tcf: Some(TCF_ADS_ONLY.into()),
            ..Consent::default()
        };
        let policy = ConsentPolicy {
            default_granted: false,
            ..ConsentPolicy::default()
        };
        let r = Resolved::new(&c, Some("de"), &policy);
        assert_eq!(r.basis(Signal::AdUserData), &Basis::Tcf);
        assert_eq!(
            r.decide(&ConsentNeeds::for_kind("meta_capi")),
            Verdict::Send
        );
        assert!(
            matches!(
                r.decide(&ConsentNeeds::for_kind("ga4")),
                Verdict::Withhold(_)
            ),
            "purpose 8 (analytics) is not consented"
        );
        assert!(
            r.audit().contains("analytics_storage=denied(tcf)"),
            "{}",
            r.audit()
        );

        let explicit = Consent {
            analytics_storage: Some(ConsentSignal::Granted),
            ..c.clone()
        };
        let r = Resolved::new(&explicit, Some("de"), &policy);
        assert!(
            matches!(r.decide(&ConsentNeeds::for_kind("ga4")), Verdict::Send),
            "an explicit signal wins over the TCF string"
        );

        let mut vendor_bound = ConsentNeeds::for_kind("meta_capi");
        vendor_bound.tcf_vendor_id = Some(consented_vendor);
        assert_eq!(r.decide(&vendor_bound), Verdict::Send);
        let unconsented = (1..u16::MAX).find(|v| !tc.vendor_consent(*v)).unwrap();
        vendor_bound.tcf_vendor_id = Some(unconsented);
        assert_eq!(
            r.decide(&vendor_bound),
            Verdict::Withhold(format!("consent: TCF vendor {unconsented} has no consent"))
        );
    }

    #[test]
    fn signal_names_round_trip() {
        for s in Signal::ALL {
            assert_eq!(Signal::parse(s.as_str()), Some(s));
        }
        assert_eq!(Signal::parse("ad_click"), None);
    }
}

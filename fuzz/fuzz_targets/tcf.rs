//! The IAB TCF v2 consent-string decoder, and what consent resolution makes of its answer.
//!
//! Properties: `decode` never panics; a string it refuses never grants anything — with a
//! policy that grants by default, every signal resolves denied and every ad platform's
//! delivery is withheld; a string it accepts maps onto Consent Mode exactly as documented
//! (purpose consents 1, 3, 4, 7, 8), never claims a vendor above its own maximum ID, and
//! decodes the same whatever segments follow its core.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::consent::{ConsentNeeds, ConsentPolicy, Resolved, Signal, Verdict};
use tally_core::event::Consent;
use tally_core::tcf::decode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let consent = Consent {
        tcf: Some(text.to_owned()),
        ..Consent::default()
    };
    let resolved = Resolved::new(&consent, Some("de"), &ConsentPolicy::default());
    match decode(text) {
        Err(_) => {
            for signal in Signal::ALL {
                assert!(
                    !resolved.granted(signal),
                    "{signal:?} granted by a refused TC string {text:?}"
                );
            }
            for kind in ["meta_capi", "tiktok", "google_ads", "ga4"] {
                assert!(
                    matches!(
                        resolved.decide(&ConsentNeeds::for_kind(kind)),
                        Verdict::Withhold(_)
                    ),
                    "{kind} not withheld for a refused TC string"
                );
            }
        }
        Ok(tc) => {
            let p = |n| tc.purpose_consent(n);
            let signals = tc.google_consent_signals();
            assert_eq!(signals.ad_storage, p(1));
            assert_eq!(signals.ad_user_data, p(1) && p(7));
            assert_eq!(signals.ad_personalization, p(3) && p(4));
            assert_eq!(signals.analytics_storage, p(1) && p(8));
            assert_eq!(resolved.granted(Signal::AdStorage), signals.ad_storage);
            assert!(!tc.purpose_consent(0) && !tc.purpose_consent(25));
            for set in [tc.vendor_consents(), tc.vendor_legitimate_interests()] {
                let max = set.max_id();
                if max < u16::MAX {
                    assert!(!set.contains(max + 1));
                }
                assert!(!set.contains(0), "vendor 0 does not exist");
                assert!(set.iter().all(|id| id >= 1 && id <= max));
            }
            let core = text.split('.').next().unwrap_or_default();
            let core_only = decode(core).expect("the core of an accepted string decodes");
            assert_eq!(core_only.vendor_consents(), tc.vendor_consents());
            assert_eq!(core_only.google_consent_signals(), signals);
        }
    }
});

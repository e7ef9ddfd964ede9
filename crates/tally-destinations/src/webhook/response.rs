//! The receiver's answer → one disposition for the whole request.
//!
//! A webhook receiver answers for the request as a whole: 2xx accepts every event in it.
//! `410 Gone` says the endpoint is gone for good (Dead). A redirect is a failure that needs a
//! fix: redirects are never followed, since following one could lead to a private address.
//! Everything else is the default classification (408/429/5xx retried with `Retry-After`,
//! 401/403 need a fix, other 4xx dead).

use tally_core::retry::Disposition;

use crate::AttemptSummary;
use crate::http::Response;

/// The disposition and summary of the receiver's answer.
pub fn classify(response: &Response) -> (Disposition, AttemptSummary) {
    let disposition = match response.status {
        300..=399 => Disposition::NeedsFix {
            reason: "webhook answered a redirect; redirects are not followed".into(),
        },
        410 => Disposition::Dead {
            reason: "HTTP 410: the webhook endpoint is gone".into(),
        },
        _ => response.default_disposition(),
    };
    (disposition, response.summary())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn answer(status: u16) -> Disposition {
        classify(&Response {
            status,
            retry_after: Some(Duration::from_secs(7)),
            body: Vec::new(),
        })
        .0
    }

    #[test]
    fn statuses_are_classified_for_a_whole_request() {
        assert_eq!(answer(200), Disposition::Succeeded);
        assert_eq!(answer(204), Disposition::Succeeded);
        for redirect in [301, 302, 303, 307, 308] {
            assert!(
                matches!(answer(redirect), Disposition::NeedsFix { ref reason } if reason.contains("redirect")),
                "{redirect}"
            );
        }
        assert!(matches!(answer(410), Disposition::Dead { .. }));
        assert!(matches!(answer(400), Disposition::Dead { .. }));
        assert!(matches!(answer(401), Disposition::NeedsFix { .. }));
        assert_eq!(
            answer(503),
            Disposition::Retry {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(7)),
                overloaded: false
            }
        );
    }
}

//! TikTok's answer → one result per event, or a refusal of the whole request to isolate.
//!
//! The Business API answers `{"code": 0, "message": "OK", "request_id": "..."}` on success and
//! reports business errors as **HTTP 200 with a non-zero `code`**, so a 200 is not a success
//! by itself. Codes: 40105 (token incorrect or revoked) needs a fix; 40100 (rate limit,
//! unconfirmed) is retried as overload; other 40xxx codes are refusals of the request's content,
//! to be isolated; 5xxxx codes (server side) are retried. Without a JSON code, the HTTP status
//! decides (a bad token can also come back as HTTP 401 with an empty body).

use serde::Deserialize;
use tally_core::retry::Disposition;

use crate::AttemptSummary;
use crate::http::{Response, excerpt, same_for_all};
use crate::split::BatchAnswer;

/// Access token incorrect or revoked.
const CODE_BAD_TOKEN: i64 = 40105;
/// Too many requests (unconfirmed).
const CODE_RATE_LIMITED: i64 = 40100;

#[derive(Debug, Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    message: String,
}

/// Classifies TikTok's answer to a request that carried `sent` events.
pub(super) fn classify(response: &Response, sent: usize) -> BatchAnswer {
    let summary = response.summary();
    let all = |disposition: Disposition| {
        BatchAnswer::PerEvent(same_for_all(sent, (disposition, summary.clone())))
    };
    let envelope = serde_json::from_slice::<Envelope>(&response.body).ok();
    let Some(Envelope { code, message }) = envelope else {
        return classify_status(response, summary, sent);
    };
    let reason = excerpt(format!("TikTok code {code}: {message}").as_bytes());
    match code {
        0 if (200..300).contains(&response.status) => all(Disposition::Succeeded),
        CODE_BAD_TOKEN => all(Disposition::NeedsFix {
            reason: format!("{reason} (check access_token)"),
        }),
        CODE_RATE_LIMITED => all(Disposition::Retry {
            reason,
            retry_after: response.retry_after,
            overloaded: true,
        }),
        40_000..=40_999 => BatchAnswer::Rejected(Disposition::Dead { reason }, summary),
        50_000..=59_999 => all(Disposition::Retry {
            reason,
            retry_after: response.retry_after,
            overloaded: false,
        }),
        // A code 0 on an error status, or a code nobody documents: the status says more.
        _ => classify_status(response, summary, sent),
    }
}

/// The answer when the body has no code that says more than the status.
fn classify_status(response: &Response, summary: AttemptSummary, sent: usize) -> BatchAnswer {
    let all = |disposition: Disposition| {
        BatchAnswer::PerEvent(same_for_all(sent, (disposition, summary.clone())))
    };
    match response.status {
        // Business errors always carry a code; a 2xx without one may not have been taken.
        200..=299 => all(Disposition::Retry {
            reason: format!(
                "HTTP {} without a TikTok code; sending again",
                response.status
            ),
            retry_after: response.retry_after,
            overloaded: false,
        }),
        401 | 403 => all(Disposition::NeedsFix {
            reason: format!("HTTP {}: check access_token", response.status),
        }),
        300..=399 | 404 | 405 => all(Disposition::NeedsFix {
            reason: format!("HTTP {}: check endpoint and api_version", response.status),
        }),
        // Some event made the request unacceptable (too large, malformed): isolate it.
        400..=499 if !matches!(response.status, 408 | 429) => BatchAnswer::Rejected(
            Disposition::Dead {
                reason: format!("HTTP {}: {}", response.status, response.excerpt()),
            },
            summary,
        ),
        _ => all(response.default_disposition()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn tiktok(code: i64) -> String {
        json!({"code": code, "message": "m", "request_id": "r", "data": {}}).to_string()
    }

    fn per_event(answer: BatchAnswer) -> Vec<Disposition> {
        match answer {
            BatchAnswer::PerEvent(results) => results.into_iter().map(|(d, _)| d).collect(),
            BatchAnswer::Rejected(d, _) => panic!("rejected: {d:?}"),
        }
    }

    #[test]
    fn code_zero_succeeds_and_a_200_with_another_code_does_not() {
        assert_eq!(
            per_event(classify(&response(200, &tiktok(0)), 2)),
            vec![Disposition::Succeeded; 2]
        );
        assert!(matches!(
            classify(&response(200, &tiktok(40002)), 2),
            BatchAnswer::Rejected(Disposition::Dead { reason }, _) if reason.contains("40002")
        ));
        let got = per_event(classify(&response(200, &tiktok(40105)), 2));
        assert!(
            got.iter()
                .all(|d| matches!(d, Disposition::NeedsFix { .. })),
            "{got:?}"
        );
        let got = per_event(classify(&response(200, &tiktok(40100)), 1));
        assert!(
            matches!(
                got[0],
                Disposition::Retry {
                    overloaded: true,
                    ..
                }
            ),
            "{got:?}"
        );
        let got = per_event(classify(&response(200, &tiktok(51000)), 1));
        assert!(
            matches!(
                got[0],
                Disposition::Retry {
                    overloaded: false,
                    ..
                }
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_200_without_a_code_is_not_taken_for_success() {
        let got = per_event(classify(&response(200, "<html>proxy</html>"), 1));
        assert!(matches!(got[0], Disposition::Retry { .. }), "{got:?}");
        let got = per_event(classify(&response(200, &tiktok(12345)), 1));
        assert!(matches!(got[0], Disposition::Retry { .. }), "{got:?}");
    }

    #[test]
    fn bare_statuses_fall_back_to_their_meaning() {
        let got = per_event(classify(&response(401, ""), 3));
        assert!(
            got.iter()
                .all(|d| matches!(d, Disposition::NeedsFix { .. })),
            "{got:?}"
        );
        let mut unavailable = response(503, "");
        unavailable.retry_after = Some(Duration::from_secs(9));
        let got = per_event(classify(&unavailable, 1));
        assert_eq!(
            got[0],
            Disposition::Retry {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(9)),
                overloaded: false
            }
        );
        let got = per_event(classify(&response(500, &tiktok(0)), 1));
        assert!(matches!(got[0], Disposition::Retry { .. }), "{got:?}");
        assert!(matches!(
            classify(&response(400, "bad"), 2),
            BatchAnswer::Rejected(Disposition::Dead { .. }, _)
        ));
    }
}

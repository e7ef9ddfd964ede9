//! Meta's answer → one result per event, or a refusal of the whole request to isolate.
//!
//! Success is `{"events_received": N, "messages": [], "fbtrace_id": "..."}`; an `N` below the
//! number sent means Meta did not take the whole batch, so it is retried (Meta deduplicates the
//! resend on `event_name` + `event_id`). Errors use the Graph envelope
//! `{"error": {"code", "error_subcode", "type", "is_transient", ...}}` and are told apart by
//! code: 100 (invalid parameter) is a refusal of some event's content, to be isolated; token and
//! permission codes need a fix; throttling and transient codes are retried.

use serde::Deserialize;
use tally_core::retry::Disposition;

use crate::AttemptSummary;
use crate::http::{Response, excerpt, same_for_all};
use crate::split::BatchAnswer;

/// Graph codes for call-rate limits (app, user, app-level, ad account).
const THROTTLING_CODES: &[i64] = &[4, 17, 341, 80004];

/// Subcode of code 100 for an object that does not exist or the token cannot reach: here the
/// pixel, so a configuration problem, not a bad event.
const SUBCODE_UNKNOWN_OBJECT: i64 = 33;

#[derive(Debug, Deserialize)]
struct Success {
    events_received: usize,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    error: GraphError,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GraphError {
    message: String,
    #[serde(rename = "type")]
    kind: String,
    code: Option<i64>,
    error_subcode: Option<i64>,
    is_transient: bool,
    error_user_title: Option<String>,
    error_user_msg: Option<String>,
}

impl GraphError {
    /// `Meta error 100/2804003 (Event Timestamp Too Old): <what to do>`, short.
    fn describe(&self) -> String {
        let mut text = String::from("Meta error");
        if let Some(code) = self.code {
            text.push_str(&format!(" {code}"));
        }
        if let Some(subcode) = self.error_subcode {
            text.push_str(&format!("/{subcode}"));
        }
        if let Some(title) = &self.error_user_title {
            text.push_str(&format!(" ({title})"));
        }
        let detail = self.error_user_msg.as_deref().unwrap_or(&self.message);
        if !detail.is_empty() {
            text.push_str(": ");
            text.push_str(detail);
        }
        excerpt(text.as_bytes())
    }
}

/// Classifies Meta's answer to a request that carried `sent` events.
pub(super) fn classify(response: &Response, sent: usize) -> BatchAnswer {
    let summary = response.summary();
    let all = |disposition: Disposition| {
        BatchAnswer::PerEvent(same_for_all(sent, (disposition, summary.clone())))
    };
    if (200..300).contains(&response.status) {
        let shortfall = match serde_json::from_slice::<Success>(&response.body) {
            Ok(success) if success.events_received >= sent => return all(Disposition::Succeeded),
            Ok(success) => format!(
                "Meta took {} of {sent} events (events_received)",
                success.events_received
            ),
            Err(_) => "Meta answered success without events_received".to_owned(),
        };
        // Not fully taken: send again (Meta deduplicates what it had on event_name + event_id).
        let summary = AttemptSummary::new(
            Some(response.status),
            format!(
                "HTTP {}: {shortfall}: {}",
                response.status,
                response.excerpt()
            ),
        );
        let retry = Disposition::Retry {
            reason: format!("{shortfall}; sending the batch again"),
            retry_after: response.retry_after,
            overloaded: false,
        };
        return BatchAnswer::PerEvent(same_for_all(sent, (retry, summary)));
    }
    if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(&response.body)
        && let Some(answer) = classify_graph_error(&error, response, &summary, sent)
    {
        return answer;
    }
    classify_status(response, summary, sent)
}

/// The answer for a Graph error whose code says what it is; `None` leaves it to the status.
fn classify_graph_error(
    error: &GraphError,
    response: &Response,
    summary: &AttemptSummary,
    sent: usize,
) -> Option<BatchAnswer> {
    let reason = error.describe();
    let all = |disposition: Disposition| {
        BatchAnswer::PerEvent(same_for_all(sent, (disposition, summary.clone())))
    };
    let needs_fix = |what: &str| {
        all(Disposition::NeedsFix {
            reason: format!("{reason} ({what})"),
        })
    };
    let code = error.code;
    Some(match code {
        Some(c) if THROTTLING_CODES.contains(&c) => all(Disposition::Retry {
            reason,
            retry_after: response.retry_after,
            overloaded: true,
        }),
        Some(1 | 2) => all(Disposition::Retry {
            reason,
            retry_after: response.retry_after,
            overloaded: false,
        }),
        _ if error.is_transient => all(Disposition::Retry {
            reason,
            retry_after: response.retry_after,
            overloaded: false,
        }),
        Some(100) if error.error_subcode == Some(SUBCODE_UNKNOWN_OBJECT) => {
            needs_fix("check pixel_id and that the token may send to it")
        }
        Some(100) => BatchAnswer::Rejected(Disposition::Dead { reason }, summary.clone()),
        Some(102 | 190) => needs_fix("check access_token"),
        Some(3 | 10 | 200..=299) => needs_fix("the token lacks a permission"),
        Some(368) => needs_fix("the account is blocked for a policy reason"),
        _ if error.kind == "OAuthException" && error.error_subcode.is_none() => {
            needs_fix("check access_token")
        }
        _ => return None,
    })
}

/// The answer for an error without a Graph code that says more than the status.
fn classify_status(response: &Response, summary: AttemptSummary, sent: usize) -> BatchAnswer {
    let all = |disposition: Disposition| {
        BatchAnswer::PerEvent(same_for_all(sent, (disposition, summary.clone())))
    };
    match response.status {
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

    fn response(status: u16, body: serde_json::Value) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.to_string().into_bytes(),
        }
    }

    fn graph(code: i64, subcode: Option<i64>) -> serde_json::Value {
        let mut error = json!({"message": "m", "type": "OAuthException", "code": code,
                               "is_transient": false, "fbtrace_id": "t"});
        if let Some(subcode) = subcode {
            error["error_subcode"] = subcode.into();
        }
        json!({ "error": error })
    }

    fn per_event(answer: BatchAnswer) -> Vec<Disposition> {
        match answer {
            BatchAnswer::PerEvent(results) => results.into_iter().map(|(d, _)| d).collect(),
            BatchAnswer::Rejected(d, _) => panic!("rejected: {d:?}"),
        }
    }

    #[test]
    fn all_received_succeeds_and_fewer_is_retried() {
        let ok = response(
            200,
            json!({"events_received": 3, "messages": [], "fbtrace_id": "t"}),
        );
        assert_eq!(per_event(classify(&ok, 3)), vec![Disposition::Succeeded; 3]);
        let BatchAnswer::PerEvent(short) = classify(&ok, 4) else {
            panic!("a short receipt is per event");
        };
        assert_eq!(short.len(), 4);
        assert!(
            matches!(&short[0].0, Disposition::Retry { reason, .. } if reason.contains("3 of 4")),
            "{short:?}"
        );
        assert!(short[0].1.text.contains("took 3 of 4"), "{:?}", short[0].1);
        let garbage = per_event(classify(&response(200, json!("ok")), 1));
        assert!(matches!(garbage[0], Disposition::Retry { .. }));
    }

    #[test]
    fn invalid_parameter_is_a_rejection_to_isolate() {
        let answer = classify(&response(400, graph(100, Some(2_804_003))), 5);
        match answer {
            BatchAnswer::Rejected(Disposition::Dead { reason }, summary) => {
                assert!(reason.starts_with("Meta error 100/2804003"), "{reason}");
                assert_eq!(summary.status, Some(400));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_permission_and_unknown_pixel_errors_need_a_fix_for_all() {
        for body in [
            graph(190, None),
            graph(10, None),
            graph(200, None),
            graph(100, Some(33)),
            graph(2500, None),
        ] {
            let got = per_event(classify(&response(400, body.clone()), 2));
            assert!(
                got.iter()
                    .all(|d| matches!(d, Disposition::NeedsFix { .. })),
                "{body}: {got:?}"
            );
        }
    }

    #[test]
    fn throttling_and_transient_errors_are_retried() {
        for code in [4, 17, 341, 80004] {
            let got = per_event(classify(&response(400, graph(code, None)), 1));
            assert!(
                matches!(
                    got[0],
                    Disposition::Retry {
                        overloaded: true,
                        ..
                    }
                ),
                "{code}: {got:?}"
            );
        }
        let mut transient = graph(999, Some(1));
        transient["error"]["is_transient"] = true.into();
        let got = per_event(classify(&response(400, transient), 1));
        assert!(matches!(
            got[0],
            Disposition::Retry {
                overloaded: false,
                ..
            }
        ));
        let got = per_event(classify(&response(500, graph(2, None)), 1));
        assert!(matches!(
            got[0],
            Disposition::Retry {
                overloaded: false,
                ..
            }
        ));
    }

    #[test]
    fn bare_statuses_fall_back_to_their_meaning() {
        let mut unavailable = response(503, json!(null));
        unavailable.retry_after = Some(Duration::from_secs(7));
        let got = per_event(classify(&unavailable, 1));
        assert_eq!(
            got[0],
            Disposition::Retry {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(7)),
                overloaded: false
            }
        );
        let got = per_event(classify(&response(401, json!(null)), 1));
        assert!(matches!(got[0], Disposition::NeedsFix { .. }));
        let got = per_event(classify(&response(404, json!(null)), 1));
        assert!(matches!(got[0], Disposition::NeedsFix { .. }));
        assert!(matches!(
            classify(&response(413, json!(null)), 2),
            BatchAnswer::Rejected(Disposition::Dead { .. }, _)
        ));
    }
}

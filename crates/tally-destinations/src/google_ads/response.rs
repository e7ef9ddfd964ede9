//! Google's answers as dispositions, for both APIs.
//!
//! Data Manager fails fast: a request refused for its content (400 `INVALID_ARGUMENT`) is a
//! [`BatchAnswer::Rejected`] that [`crate::split::isolate`] narrows down to the bad event,
//! unless the error is about the destination (account, conversion action, terms), which no
//! event can fix: that is `NeedsFix` for all without splitting.
//!
//! The Google Ads API answers 200 with `partialFailureError` whose errors point at rows through
//! `location.fieldPathElements` (`{"fieldName": "conversions", "index": i}`); each row's
//! `conversionUploadError` decides its disposition and unmentioned rows succeeded. A duplicate
//! (`ORDER_ID_ALREADY_IN_USE`, `CLICK_CONVERSION_ALREADY_EXISTS`, …) means Google already has
//! the conversion, so it counts as delivered: the goal is exactly once.
//!
//! Both use the Google error envelope `{"error": {"code", "message", "status", "details"}}`;
//! the Google Ads API's details carry `GoogleAdsFailure` errors, Data Manager's `ErrorInfo`
//! and `BadRequest` field violations. Pure functions, no I/O.

use std::time::Duration;

use serde_json::Value;
use tally_core::retry::Disposition;

use crate::AttemptSummary;
use crate::http::{MAX_RESPONSE_BYTES, Response, excerpt};
use crate::split::BatchAnswer;

/// How long to wait after `TOO_RECENT_EVENT`: Google takes a click conversion only 6 hours
/// after the click, and hourly tries find the earliest moment within a few attempts.
pub const TOO_RECENT_WAIT: Duration = Duration::from_secs(3600);

/// Data Manager error reasons that concern the destination or the account, never one event.
const DATA_MANAGER_CONFIG_REASONS: &[&str] = &[
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "INVALID_DESTINATION",
    "INVALID_CONVERSION_ACTION_ID",
    "INVALID_CONVERSION_ACTION_TYPE",
    "TERMS_AND_CONDITIONS_NOT_SIGNED",
    "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
    "DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS",
    "DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED",
];

/// Google Ads error codes that mean "Google already has this conversion".
const ALREADY_RECORDED: &[&str] = &[
    "CLICK_CONVERSION_ALREADY_EXISTS",
    "ORDER_ID_ALREADY_IN_USE",
    "DUPLICATE_ORDER_ID",
    "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
];

/// Google Ads error codes that mean "too early, the same row will be accepted later".
const TOO_RECENT: &[&str] = &["TOO_RECENT_EVENT", "TOO_RECENT_CONVERSION_ACTION"];

/// Google Ads error codes about the account, conversion action or credentials: no row can
/// succeed until the configuration (or the account's settings) is fixed.
const ADS_NEEDS_FIX: &[&str] = &[
    "NO_CONVERSION_ACTION_FOUND",
    "INVALID_CONVERSION_ACTION_TYPE",
    "UNAUTHORIZED_CUSTOMER",
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE",
    "CUSTOMER_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS",
    "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
    "CUSTOMER_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
    "EXTERNAL_ATTRIBUTION_DATA_NOT_SET_FOR_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
    "ORDER_ID_NOT_PERMITTED_FOR_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
    "EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION_NOT_PERMITTED_WITH_USER_IDENTIFIER",
    "ONE_PER_CLICK_CONVERSION_ACTION_NOT_PERMITTED_WITH_BRAID",
    "DEVELOPER_TOKEN_PARAMETER_MISSING",
    "LOGIN_CUSTOMER_ID_PARAMETER_MISSING",
];

/// Data Manager's answer to one `events:ingest` request of `n` events.
pub fn data_manager(response: &Response, n: usize, validate_only: bool) -> BatchAnswer {
    let status = response.status;
    if (200..300).contains(&status) {
        let request_id = response
            .json()
            .and_then(|body| {
                body.get("requestId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "none".to_owned());
        let text = if validate_only {
            format!("HTTP {status}: validated only (validateOnly), requestId {request_id}")
        } else {
            format!("HTTP {status}: accepted, requestId {request_id}")
        };
        return BatchAnswer::PerEvent(same(n, Disposition::Succeeded, status, text));
    }
    let error = ErrorEnvelope::read(response);
    let described = error.describe(status);
    let needs_fix = |advice: &str| {
        let reason = format!("{described}; {advice}");
        BatchAnswer::PerEvent(same(
            n,
            Disposition::NeedsFix {
                reason: reason.clone(),
            },
            status,
            reason,
        ))
    };
    match status {
        401 | 403 => needs_fix("check access_token (a static OAuth token, it may have expired)"),
        404 => needs_fix("check endpoint, api_version, customer_id and the conversion action"),
        400 if error.status == "FAILED_PRECONDITION"
            || error
                .reasons
                .iter()
                .any(|r| DATA_MANAGER_CONFIG_REASONS.contains(&r.as_str()))
            || error.fields.iter().any(|f| f.starts_with("destinations")) =>
        {
            needs_fix("check customer_id, login_customer_id and the conversion action")
        }
        400 => BatchAnswer::Rejected(
            Disposition::Dead {
                reason: described.clone(),
            },
            AttemptSummary::new(Some(status), described),
        ),
        _ => BatchAnswer::PerEvent(plain_status(response, n, described)),
    }
}

/// The Google Ads API's answer to one `uploadClickConversions` request of `n` rows.
pub fn click_conversions(
    response: &Response,
    n: usize,
    validate_only: bool,
) -> Vec<(Disposition, AttemptSummary)> {
    let status = response.status;
    if !(200..300).contains(&status) {
        let error = ErrorEnvelope::read(response);
        let described = error.describe(status);
        let needs_fix = error
            .ads_errors
            .iter()
            .find(|e| verdict(e) == Verdict::NeedsFix);
        return match (status, needs_fix) {
            (401 | 403, _) => {
                let reason = format!("{described}; check access_token and developer_token");
                same(
                    n,
                    Disposition::NeedsFix {
                        reason: reason.clone(),
                    },
                    status,
                    reason,
                )
            }
            (400, Some(cause)) => {
                let reason = format!("{}: {}", cause.code, cause.message);
                same(n, Disposition::NeedsFix { reason }, status, described)
            }
            (400, None) => same(
                n,
                Disposition::Dead {
                    reason: described.clone(),
                },
                status,
                described,
            ),
            _ => plain_status(response, n, described),
        };
    }
    let Some(body) = response.json() else {
        // Without the answer no row's fate is known; Google's own duplicate check on the order
        // ID makes a resend harmless (accepted rows come back as already recorded).
        let reason = if response.body.len() >= MAX_RESPONSE_BYTES {
            format!(
                "HTTP {status} answer longer than the {MAX_RESPONSE_BYTES}-byte read limit, \
                 outcome unknown; resending is safe (order IDs are deduplicated)"
            )
        } else {
            format!(
                "HTTP {status} with an unreadable body, outcome unknown: {}",
                response.excerpt()
            )
        };
        return same(
            n,
            Disposition::Retry {
                reason: reason.clone(),
                retry_after: None,
                overloaded: false,
            },
            status,
            reason,
        );
    };
    let job = match body.get("jobId") {
        Some(Value::String(id)) => format!(", jobId {id}"),
        Some(Value::Number(id)) => format!(", jobId {id}"),
        _ => String::new(),
    };
    let errors = body
        .get("partialFailureError")
        .and_then(|status| status.get("details"))
        .map(ads_errors)
        .unwrap_or_default();
    (0..n)
        .map(|row| {
            let worst = errors
                .iter()
                .filter(|e| e.row.is_none_or(|r| r == row))
                .max_by_key(|e| verdict(e).severity());
            match worst {
                None if validate_only => (
                    Disposition::Succeeded,
                    AttemptSummary::new(
                        Some(status),
                        format!("HTTP {status}: validated only (validateOnly){job}"),
                    ),
                ),
                None => (
                    Disposition::Succeeded,
                    AttemptSummary::new(Some(status), format!("HTTP {status}: uploaded{job}")),
                ),
                Some(error) => row_result(error, status, &job),
            }
        })
        .collect()
}

/// The disposition of a row Google refused (or found already recorded).
fn row_result(error: &AdsError, status: u16, job: &str) -> (Disposition, AttemptSummary) {
    let code = &error.code;
    let message = excerpt(error.message.as_bytes());
    let (disposition, text) = match verdict(error) {
        Verdict::AlreadyRecorded => (
            Disposition::Succeeded,
            format!("HTTP {status}: already recorded ({code}){job}"),
        ),
        Verdict::Retry { overloaded } => {
            let (wait, why) = if TOO_RECENT.contains(&code.as_str()) {
                (
                    Some(TOO_RECENT_WAIT),
                    "Google takes a click conversion only 6 hours after the click and a new \
                     conversion action after 6 hours; ",
                )
            } else {
                (None, "")
            };
            let reason = format!("{code}: {why}{message}");
            (
                Disposition::Retry {
                    reason: reason.clone(),
                    retry_after: wait,
                    overloaded,
                },
                format!("HTTP {status}: {reason}{job}"),
            )
        }
        Verdict::Dead => {
            let reason = format!("{code}: {message}");
            (
                Disposition::Dead {
                    reason: reason.clone(),
                },
                format!("HTTP {status}: {reason}{job}"),
            )
        }
        Verdict::NeedsFix => {
            let reason = format!("{code}: {message}; check customer_id and the conversion action");
            (
                Disposition::NeedsFix {
                    reason: reason.clone(),
                },
                format!("HTTP {status}: {reason}{job}"),
            )
        }
    };
    (disposition, AttemptSummary::new(Some(status), text))
}

/// What one Google Ads error means for its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Google already has it.
    AlreadyRecorded,
    /// Try again later.
    Retry {
        /// Quota trouble: back off harder.
        overloaded: bool,
    },
    /// The row will never be accepted.
    Dead,
    /// Nothing will be accepted until the configuration is fixed.
    NeedsFix,
}

impl Verdict {
    /// Which error wins when a row has several: the one asking the most of the operator.
    fn severity(self) -> u8 {
        match self {
            Verdict::AlreadyRecorded => 0,
            Verdict::Retry { .. } => 1,
            Verdict::Dead => 2,
            Verdict::NeedsFix => 3,
        }
    }
}

fn verdict(error: &AdsError) -> Verdict {
    let code = error.code.as_str();
    match error.family.as_str() {
        "authenticationError" | "authorizationError" => Verdict::NeedsFix,
        "quotaError" => Verdict::Retry { overloaded: true },
        "internalError" => Verdict::Retry { overloaded: false },
        _ if ALREADY_RECORDED.contains(&code) => Verdict::AlreadyRecorded,
        _ if TOO_RECENT.contains(&code) => Verdict::Retry { overloaded: false },
        _ if ADS_NEEDS_FIX.contains(&code) => Verdict::NeedsFix,
        _ => Verdict::Dead,
    }
}

/// One `GoogleAdsError`: its `errorCode` (family such as `conversionUploadError`, and value),
/// message, and the conversion row it points at, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AdsError {
    family: String,
    code: String,
    message: String,
    row: Option<usize>,
}

/// The `GoogleAdsFailure` errors found in a `details` array.
fn ads_errors(details: &Value) -> Vec<AdsError> {
    let mut out = Vec::new();
    for failure in details.as_array().into_iter().flatten() {
        for error in failure
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some((family, code)) = error
                .get("errorCode")
                .and_then(Value::as_object)
                .and_then(|codes| codes.iter().next())
            else {
                continue;
            };
            let row = error
                .pointer("/location/fieldPathElements")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|element| {
                    element.get("fieldName").and_then(Value::as_str) == Some("conversions")
                })
                .and_then(|element| element.get("index"))
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok());
            out.push(AdsError {
                family: family.clone(),
                code: code.as_str().unwrap_or_default().to_owned(),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                row,
            });
        }
    }
    out
}

/// The parts of a Google error envelope that classification needs.
#[derive(Debug, Default)]
struct ErrorEnvelope {
    /// `error.status`, e.g. `INVALID_ARGUMENT`.
    status: String,
    /// `error.message`.
    message: String,
    /// `ErrorInfo.reason` and `BadRequest` field-violation reasons (Data Manager).
    reasons: Vec<String>,
    /// `BadRequest` field-violation paths, e.g. `events[3].eventTimestamp` (Data Manager).
    fields: Vec<String>,
    /// `GoogleAdsFailure` errors (Google Ads API).
    ads_errors: Vec<AdsError>,
}

impl ErrorEnvelope {
    fn read(response: &Response) -> ErrorEnvelope {
        let Some(error) = response.json().and_then(|body| body.get("error").cloned()) else {
            return ErrorEnvelope {
                message: response.excerpt(),
                ..ErrorEnvelope::default()
            };
        };
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut envelope = ErrorEnvelope {
            status: text(&error, "status"),
            message: text(&error, "message"),
            ..ErrorEnvelope::default()
        };
        let details = error.get("details").cloned().unwrap_or(Value::Null);
        for detail in details.as_array().into_iter().flatten() {
            if let Some(reason) = detail.get("reason").and_then(Value::as_str) {
                envelope.reasons.push(reason.to_owned());
            }
            for violation in detail
                .get("fieldViolations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                envelope.fields.push(text(violation, "field"));
                if let Some(reason) = violation.get("reason").and_then(Value::as_str) {
                    envelope.reasons.push(reason.to_owned());
                }
            }
        }
        envelope.ads_errors = ads_errors(&details);
        envelope
    }

    /// `HTTP 400 INVALID_ARGUMENT INVALID_FORMAT events[0].eventTimestamp: <message>`, short.
    fn describe(&self, status: u16) -> String {
        let mut head = format!("HTTP {status}");
        let first_code = self
            .ads_errors
            .first()
            .map(|e| e.code.as_str())
            .or(self.reasons.first().map(String::as_str));
        for part in [
            Some(self.status.as_str()),
            first_code,
            self.fields.first().map(String::as_str),
        ]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        {
            head.push(' ');
            head.push_str(part);
        }
        let message = self
            .ads_errors
            .first()
            .map(|e| e.message.as_str())
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.message);
        format!("{head}: {}", excerpt(message.as_bytes()))
    }
}

/// A status with no more specific meaning (429, 5xx, other 4xx), classified by the defaults.
fn plain_status(
    response: &Response,
    n: usize,
    described: String,
) -> Vec<(Disposition, AttemptSummary)> {
    let disposition = match response.default_disposition() {
        Disposition::Retry {
            retry_after,
            overloaded,
            ..
        } => Disposition::Retry {
            reason: described.clone(),
            retry_after,
            overloaded,
        },
        Disposition::Dead { .. } => Disposition::Dead {
            reason: described.clone(),
        },
        other => other,
    };
    same(n, disposition, response.status, described)
}

fn same(
    n: usize,
    disposition: Disposition,
    status: u16,
    text: String,
) -> Vec<(Disposition, AttemptSummary)> {
    vec![(disposition, AttemptSummary::new(Some(status), text)); n]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn response(status: u16, body: Value) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.to_string().into_bytes(),
        }
    }

    fn row_error(index: usize, code: &str) -> Value {
        json!({
            "errorCode": {"conversionUploadError": code},
            "message": format!("row {index}: {code}"),
            "location": {"fieldPathElements": [
                {"fieldName": "conversions", "index": index}, {"fieldName": "gclid"}]}
        })
    }

    fn partial(errors: Vec<Value>) -> Value {
        json!({
            "results": [],
            "partialFailureError": {"code": 3, "message": "partial failure", "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure",
                "errors": errors}]},
            "jobId": "2147483650"
        })
    }

    #[test]
    fn partial_failures_land_on_their_rows() {
        let body = partial(vec![
            row_error(1, "TOO_RECENT_EVENT"),
            row_error(2, "EXPIRED_EVENT"),
            row_error(3, "ORDER_ID_ALREADY_IN_USE"),
            row_error(4, "NO_CONVERSION_ACTION_FOUND"),
        ]);
        let results = click_conversions(&response(200, body), 6, false);
        assert_eq!(results[0].0, Disposition::Succeeded);
        assert_eq!(results[0].1.text, "HTTP 200: uploaded, jobId 2147483650");
        match &results[1].0 {
            Disposition::Retry {
                reason,
                retry_after,
                ..
            } => {
                assert!(reason.starts_with("TOO_RECENT_EVENT: "), "{reason}");
                assert!(reason.contains("6 hours"), "{reason}");
                assert_eq!(*retry_after, Some(TOO_RECENT_WAIT));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&results[2].0, Disposition::Dead { reason } if reason.starts_with("EXPIRED_EVENT"))
        );
        assert_eq!(results[3].0, Disposition::Succeeded);
        assert!(results[3].1.text.contains("already recorded"));
        assert!(matches!(results[4].0, Disposition::NeedsFix { .. }));
        assert_eq!(results[5].0, Disposition::Succeeded);
    }

    #[test]
    fn an_error_without_a_row_applies_to_every_row_and_the_worst_error_wins() {
        let body = partial(vec![
            json!({"errorCode": {"conversionUploadError": "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"},
                   "message": "not allowlisted"}),
            row_error(0, "ORDER_ID_ALREADY_IN_USE"),
        ]);
        let results = click_conversions(&response(200, body), 2, false);
        assert!(
            results
                .iter()
                .all(|(d, _)| matches!(d, Disposition::NeedsFix { .. }))
        );
    }

    #[test]
    fn an_unreadable_success_is_retried() {
        let answer = Response {
            status: 200,
            retry_after: None,
            body: b"<html>".to_vec(),
        };
        let results = click_conversions(&answer, 1, false);
        assert!(matches!(results[0].0, Disposition::Retry { .. }));
    }

    #[test]
    fn request_level_ads_errors_are_classified() {
        let envelope = |status: u16, family: &str, code: &str| {
            json!({"error": {"code": status, "message": "Request contains an invalid argument.",
                "status": "INVALID_ARGUMENT", "details": [{
                    "@type": "type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure",
                    "errors": [{"errorCode": {family: code}, "message": code}]}]}})
        };
        let missing = click_conversions(
            &response(
                400,
                envelope(400, "requestError", "DEVELOPER_TOKEN_PARAMETER_MISSING"),
            ),
            2,
            false,
        );
        assert!(
            matches!(&missing[1].0, Disposition::NeedsFix { reason } if reason.contains("DEVELOPER_TOKEN"))
        );
        let bad = click_conversions(
            &response(400, envelope(400, "fieldError", "REQUIRED")),
            2,
            false,
        );
        assert!(matches!(&bad[0].0, Disposition::Dead { reason } if reason.contains("REQUIRED")));
        let auth = click_conversions(
            &response(
                401,
                envelope(401, "authenticationError", "OAUTH_TOKEN_EXPIRED"),
            ),
            1,
            false,
        );
        assert!(matches!(&auth[0].0, Disposition::NeedsFix { .. }));
        assert_eq!(auth[0].1.status, Some(401));
    }

    fn data_manager_error(status: u16, code: &str, reason: &str, field: &str) -> Value {
        json!({"error": {"code": status, "message": "Request contains an invalid argument.",
            "status": code, "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                 "domain": "datamanager.googleapis.com"},
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": field, "description": "bad", "reason": reason}]}]}})
    }

    #[test]
    fn a_bad_event_rejects_the_request_but_a_bad_destination_needs_a_fix() {
        let event = data_manager_error(
            400,
            "INVALID_ARGUMENT",
            "INVALID_FORMAT",
            "events[3].eventTimestamp",
        );
        match data_manager(&response(400, event), 10, false) {
            BatchAnswer::Rejected(Disposition::Dead { reason }, summary) => {
                assert!(reason.contains("events[3].eventTimestamp"), "{reason}");
                assert_eq!(summary.status, Some(400));
            }
            other => panic!("{other:?}"),
        }
        let action = data_manager_error(
            400,
            "INVALID_ARGUMENT",
            "INVALID_CONVERSION_ACTION_ID",
            "destinations[0].productDestinationId",
        );
        match data_manager(&response(400, action), 10, false) {
            BatchAnswer::PerEvent(results) => {
                assert_eq!(results.len(), 10);
                assert!(matches!(results[0].0, Disposition::NeedsFix { .. }));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_manager_success_keeps_the_request_id() {
        match data_manager(&response(200, json!({"requestId": "r-42"})), 2, true) {
            BatchAnswer::PerEvent(results) => {
                assert_eq!(results[1].0, Disposition::Succeeded);
                assert!(results[1].1.text.contains("requestId r-42"));
                assert!(results[1].1.text.contains("validateOnly"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overload_and_outages_are_retried_with_the_platforms_wait() {
        let mut answer = response(
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}),
        );
        answer.retry_after = Some(Duration::from_secs(30));
        match data_manager(&answer, 1, false) {
            BatchAnswer::PerEvent(results) => match &results[0].0 {
                Disposition::Retry {
                    reason,
                    retry_after,
                    overloaded,
                } => {
                    assert!(reason.contains("RESOURCE_EXHAUSTED"), "{reason}");
                    assert_eq!(*retry_after, Some(Duration::from_secs(30)));
                    assert!(*overloaded);
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let outage = click_conversions(&response(503, json!({})), 1, false);
        assert!(matches!(
            outage[0].0,
            Disposition::Retry {
                overloaded: false,
                ..
            }
        ));
    }
}

//! GA4's answers → dispositions.
//!
//! `/mp/collect` answers 2xx whenever it received the request, valid or not, so a 2xx there is
//! the best success there is (the connector checked the payload beforehand). Google says not to
//! retry a non-2xx answer but to fix the request: overload and server errors (408, 429, 5xx) are
//! retried anyway, since those are about the moment and not the payload; every other answer
//! needs a fix. `/debug/mp/collect` lists `validationMessages`; any message means GA4 would drop
//! the events, so it is a failure.

use serde::Deserialize;
use tally_core::retry::Disposition;

use crate::AttemptSummary;
use crate::http::{Response, excerpt};

/// The disposition of a non-2xx or 2xx answer from either endpoint, by status alone.
pub fn status_disposition(response: &Response) -> Disposition {
    match response.default_disposition() {
        Disposition::Dead { reason } => Disposition::NeedsFix {
            reason: format!("{reason}: GA4 refused the request; fix it rather than retry"),
        },
        other => other,
    }
}

/// One message of a `/debug/mp/collect` answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValidationMessage {
    /// Where the problem is (`events`, `events[0].params.value`, ...).
    #[serde(default)]
    pub field_path: String,
    /// What is wrong.
    #[serde(default)]
    pub description: String,
    /// `VALUE_INVALID`, `VALUE_REQUIRED`, `NAME_INVALID`, `NAME_RESERVED`,
    /// `VALUE_OUT_OF_BOUNDS`, `EXCEEDED_MAX_ENTITIES` or `NAME_DUPLICATED`.
    #[serde(default)]
    pub validation_code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidationAnswer {
    validation_messages: Vec<ValidationMessage>,
}

/// The messages of a `/debug/mp/collect` answer, or the result for every event of the request
/// when the answer is not a validation report (an HTTP error, an unexpected body).
pub fn validation_messages(
    response: &Response,
) -> Result<Vec<ValidationMessage>, (Disposition, AttemptSummary)> {
    if !(200..300).contains(&response.status) {
        return Err((status_disposition(response), response.summary()));
    }
    match serde_json::from_slice::<ValidationAnswer>(&response.body) {
        Ok(answer) => Ok(answer.validation_messages),
        Err(_) => {
            let text = format!(
                "HTTP {}: /debug/mp/collect answered without validationMessages: {}",
                response.status,
                response.excerpt()
            );
            Err((
                Disposition::Retry {
                    reason: "unexpected answer from /debug/mp/collect".into(),
                    retry_after: None,
                    overloaded: false,
                },
                AttemptSummary::new(Some(response.status), text),
            ))
        }
    }
}

/// The failure that non-empty `messages` mean for the events they were about: a name problem
/// is a mapping problem (NeedsFix); anything else is the payload (Dead).
pub fn validation_failure(
    status: u16,
    messages: &[ValidationMessage],
) -> (Disposition, AttemptSummary) {
    let listed: Vec<String> = messages
        .iter()
        .map(|m| {
            format!(
                "{} at {}: {}",
                m.validation_code, m.field_path, m.description
            )
        })
        .collect();
    let text = excerpt(format!("GA4 validation: {}", listed.join("; ")).as_bytes());
    let name_problem = messages.iter().any(|m| {
        matches!(
            m.validation_code.as_str(),
            "NAME_INVALID" | "NAME_RESERVED" | "NAME_DUPLICATED"
        )
    });
    let disposition = if name_problem {
        Disposition::NeedsFix {
            reason: text.clone(),
        }
    } else {
        Disposition::Dead {
            reason: text.clone(),
        }
    };
    (disposition, AttemptSummary::new(Some(status), text))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn only_overload_and_server_errors_are_retried_the_rest_needs_a_fix() {
        assert_eq!(
            status_disposition(&response(204, "")),
            Disposition::Succeeded
        );
        let mut busy = response(503, "");
        busy.retry_after = Some(Duration::from_secs(9));
        assert!(matches!(
            status_disposition(&busy),
            Disposition::Retry {
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(9)
        ));
        assert!(matches!(
            status_disposition(&response(429, "")),
            Disposition::Retry {
                overloaded: true,
                ..
            }
        ));
        for status in [400, 403, 404, 413] {
            assert!(
                matches!(
                    status_disposition(&response(status, "")),
                    Disposition::NeedsFix { .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn validation_reports_are_read_and_name_problems_need_a_fix() {
        let clean = response(200, r#"{"validationMessages":[]}"#);
        assert_eq!(validation_messages(&clean).unwrap(), vec![]);

        let named = response(
            200,
            r#"{"validationMessages":[{"fieldPath":"events","description":"Event at index: [0] has invalid name [_x].","validationCode":"NAME_INVALID"}]}"#,
        );
        let messages = validation_messages(&named).unwrap();
        assert_eq!(messages[0].validation_code, "NAME_INVALID");
        let (disposition, summary) = validation_failure(200, &messages);
        assert!(matches!(disposition, Disposition::NeedsFix { .. }));
        assert_eq!(
            summary.text,
            "GA4 validation: NAME_INVALID at events: Event at index: [0] has invalid name [_x]."
        );

        let value = [ValidationMessage {
            field_path: "events[0].params.value".into(),
            description: "bad".into(),
            validation_code: "VALUE_INVALID".into(),
        }];
        assert!(matches!(
            validation_failure(200, &value).0,
            Disposition::Dead { .. }
        ));
    }

    #[test]
    fn an_answer_that_is_no_validation_report_is_not_taken_for_a_clean_one() {
        assert!(matches!(
            validation_messages(&response(200, "<html>")),
            Err((Disposition::Retry { .. }, _))
        ));
        assert!(matches!(
            validation_messages(&response(500, "")),
            Err((Disposition::Retry { .. }, _))
        ));
    }
}

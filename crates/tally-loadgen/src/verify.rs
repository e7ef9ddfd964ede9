//! Checks a 200 answer against what was sent: one result per event, in order, echoing the
//! event_id, with `accepted` for fresh events and `duplicate` for repeats.
//!
//! Expectations are exact because a repeat only ever names an event the same connection already
//! saw accepted in an earlier, finished request, so no in-flight race can make the server's
//! answer legitimately differ.

use std::borrow::Cow;

use serde::Deserialize;

use crate::body::{EventWriter, PlannedEvent};
use crate::stats::{MismatchKind, Stats};

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    results: Vec<EventResult<'a>>,
}

#[derive(Deserialize)]
struct EventResult<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Tallies the results in `body` into `stats` and appends the numbers of fresh events the
/// server accepted to `accepted`, which later repeats draw from.
pub fn check_answer(
    body: &[u8],
    sent: &[PlannedEvent],
    writer: &EventWriter,
    stats: &mut Stats,
    accepted: &mut Vec<u64>,
) {
    let answer: Answer<'_> = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            stats.mismatch(MismatchKind::BadBody, || {
                let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                format!("200 body is not {{\"results\": [...]}} ({e}): {head}")
            });
            return;
        }
    };
    if answer.results.len() != sent.len() {
        stats.mismatch(MismatchKind::WrongResultCount, || {
            format!("{} results for {} events", answer.results.len(), sent.len())
        });
    }
    for (planned, result) in sent.iter().zip(&answer.results) {
        check_result(planned, result, writer, stats, accepted);
    }
}

fn check_result(
    planned: &PlannedEvent,
    result: &EventResult<'_>,
    writer: &EventWriter,
    stats: &mut Stats,
    accepted: &mut Vec<u64>,
) {
    let describe = || {
        format!(
            "lg-{}-{} ({}) got {:?} event_id={:?} code={:?} message={:?}",
            writer.run(),
            planned.n,
            if planned.duplicate { "repeat" } else { "fresh" },
            result.status,
            result.event_id,
            result.code,
            result.message,
        )
    };
    if let Some(id) = &result.event_id
        && writer.parse_event_id(id) != Some(planned.n)
    {
        stats.mismatch(MismatchKind::WrongEventId, describe);
    }
    let mismatch = match (result.status.as_ref(), planned.duplicate) {
        ("accepted", false) => {
            stats.accepted += 1;
            accepted.push(planned.n);
            None
        }
        ("duplicate", true) => {
            stats.duplicate += 1;
            None
        }
        ("accepted", true) => {
            stats.accepted += 1;
            Some(MismatchKind::RepeatGotAccepted)
        }
        ("duplicate", false) => {
            stats.duplicate += 1;
            Some(MismatchKind::FreshGotDuplicate)
        }
        ("rejected", dup) => {
            stats.rejected += 1;
            Some(if dup {
                MismatchKind::RepeatGotRejected
            } else {
                MismatchKind::FreshGotRejected
            })
        }
        _ => Some(MismatchKind::UnknownStatus),
    };
    if let Some(kind) = mismatch {
        stats.mismatch(kind, describe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(n: u64) -> PlannedEvent {
        PlannedEvent {
            n,
            duplicate: false,
        }
    }

    fn repeat(n: u64) -> PlannedEvent {
        PlannedEvent { n, duplicate: true }
    }

    #[test]
    fn expected_answers_count_without_mismatch() {
        let w = EventWriter::new("r");
        let mut stats = Stats::new();
        let mut accepted = Vec::new();
        let body = br#"{"results":[{"status":"accepted","event_id":"lg-r-5"},
            {"status":"duplicate","event_id":"lg-r-2"}]}"#;
        check_answer(body, &[fresh(5), repeat(2)], &w, &mut stats, &mut accepted);
        assert_eq!(
            (stats.accepted, stats.duplicate, stats.mismatch_total()),
            (1, 1, 0)
        );
        assert_eq!(accepted, [5]);
    }

    #[test]
    fn flags_wrong_status_id_and_count() {
        let w = EventWriter::new("r");
        let mut stats = Stats::new();
        let mut accepted = Vec::new();
        let body = br#"{"results":[{"status":"duplicate","event_id":"lg-r-9",
            "code":"dup","message":"seen"}]}"#;
        check_answer(body, &[fresh(5), fresh(6)], &w, &mut stats, &mut accepted);
        let idx = |k| MismatchKind::ALL.iter().position(|x| *x == k).unwrap();
        assert_eq!(stats.mismatches[idx(MismatchKind::WrongResultCount)], 1);
        assert_eq!(stats.mismatches[idx(MismatchKind::WrongEventId)], 1);
        assert_eq!(stats.mismatches[idx(MismatchKind::FreshGotDuplicate)], 1);
        assert!(accepted.is_empty());
        assert!(stats.mismatch_samples.iter().any(|s| s.contains("seen")));
    }

    #[test]
    fn flags_a_body_without_results() {
        let w = EventWriter::new("r");
        let mut stats = Stats::new();
        check_answer(
            b"{\"ok\":true}",
            &[fresh(1)],
            &w,
            &mut stats,
            &mut Vec::new(),
        );
        assert_eq!(stats.mismatch_total(), 1);
        assert!(stats.mismatch_samples[0].contains("ok"));
    }
}

//! Isolating the bad event when a platform refuses a whole request for one event's sake
//! (Meta rejects the entire batch; Google Data Manager fails fast): the batch is halved and
//! each half re-sent until every refusal is pinned to one event, so one poisoned event
//! cannot sink a thousand good ones. `k` bad events in `n` cost about `2k·log2(n)` requests.

use std::future::Future;

use tally_core::retry::Disposition;

use crate::{AttemptSummary, Outgoing};

/// What one request made of a (sub-)batch.
#[derive(Debug)]
pub enum BatchAnswer {
    /// One result per event, in order (success, or a failure that applies to each: a 503, a bad
    /// token).
    PerEvent(Vec<(Disposition, AttemptSummary)>),
    /// The platform refused the request because of its content: some event in it is bad. For a
    /// single event this is that event's result; a larger batch is split and re-sent.
    Rejected(Disposition, AttemptSummary),
}

impl BatchAnswer {
    /// Replaces `secret` wherever the platform echoed it back (some echo the token in error
    /// messages), so no reason or summary kept in the ledger holds it.
    pub fn redact(self, secret: &str) -> BatchAnswer {
        if secret.is_empty() {
            return self;
        }
        let clean = |text: String| text.replace(secret, "[redacted]");
        let clean_result = |(disposition, summary): (Disposition, AttemptSummary)| {
            let disposition = match disposition {
                Disposition::Succeeded => Disposition::Succeeded,
                Disposition::Retry {
                    reason,
                    retry_after,
                    overloaded,
                } => Disposition::Retry {
                    reason: clean(reason),
                    retry_after,
                    overloaded,
                },
                Disposition::Dead { reason } => Disposition::Dead {
                    reason: clean(reason),
                },
                Disposition::NeedsFix { reason } => Disposition::NeedsFix {
                    reason: clean(reason),
                },
            };
            let summary = AttemptSummary {
                text: clean(summary.text),
                ..summary
            };
            (disposition, summary)
        };
        match self {
            BatchAnswer::PerEvent(results) => {
                BatchAnswer::PerEvent(results.into_iter().map(clean_result).collect())
            }
            BatchAnswer::Rejected(disposition, summary) => {
                let (disposition, summary) = clean_result((disposition, summary));
                BatchAnswer::Rejected(disposition, summary)
            }
        }
    }
}

/// Sends live and test events in separate requests (test mode is request-wide on Meta and
/// TikTok) of at most `max` events each, isolating refusals with [`isolate`]; an event
/// `unsendable` names a reason for is dead without a request. One result per event, in order.
pub async fn send_by_mode<'a, F, Fut>(
    batch: &[Outgoing<'a>],
    max: usize,
    unsendable: impl Fn(&Outgoing<'a>) -> Option<String>,
    mut send: F,
) -> Vec<(Disposition, AttemptSummary)>
where
    F: FnMut(Vec<Outgoing<'a>>, bool) -> Fut,
    Fut: Future<Output = BatchAnswer>,
{
    let mut results: Vec<Option<(Disposition, AttemptSummary)>> = vec![None; batch.len()];
    let mut live = Vec::new();
    let mut test = Vec::new();
    for (i, outgoing) in batch.iter().enumerate() {
        match unsendable(outgoing) {
            Some(reason) => {
                let summary = AttemptSummary::new(None, format!("not sent: {reason}"));
                results[i] = Some((Disposition::Dead { reason }, summary));
            }
            None if outgoing.test => test.push((i, *outgoing)),
            None => live.push((i, *outgoing)),
        }
    }
    for (is_test, group) in [(false, live), (true, test)] {
        // The dispatcher asks for at most `max`; a larger batch is still sent in pieces.
        for chunk in group.chunks(max.max(1)) {
            let outgoing: Vec<Outgoing<'a>> = chunk.iter().map(|(_, o)| *o).collect();
            let answers = isolate(&outgoing, |sub| send(sub, is_test)).await;
            for ((i, _), answer) in chunk.iter().zip(answers) {
                results[*i] = Some(answer);
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every event is settled or sent"))
        .collect()
}

/// Sends `batch` with `send`, splitting refused requests until each refusal belongs to one
/// event. Returns one result per event, in order.
pub async fn isolate<'a, F, Fut>(
    batch: &[Outgoing<'a>],
    mut send: F,
) -> Vec<(Disposition, AttemptSummary)>
where
    F: FnMut(Vec<Outgoing<'a>>) -> Fut,
    Fut: Future<Output = BatchAnswer>,
{
    let mut results: Vec<Option<(Disposition, AttemptSummary)>> = vec![None; batch.len()];
    // Depth-first over index ranges, left half first, so requests go out in event order.
    let mut pending = vec![(0, batch.len())];
    while let Some((start, end)) = pending.pop() {
        if start == end {
            continue;
        }
        match send(batch[start..end].to_vec()).await {
            BatchAnswer::PerEvent(answers) => {
                let expected = end - start;
                if answers.len() != expected {
                    let failure = (
                        Disposition::Retry {
                            reason: format!(
                                "connector answered {} results for {expected} events",
                                answers.len()
                            ),
                            retry_after: None,
                            overloaded: false,
                        },
                        AttemptSummary::new(None, "result count mismatch"),
                    );
                    for slot in &mut results[start..end] {
                        *slot = Some(failure.clone());
                    }
                    continue;
                }
                for (slot, answer) in results[start..end].iter_mut().zip(answers) {
                    *slot = Some(answer);
                }
            }
            BatchAnswer::Rejected(disposition, summary) if end - start == 1 => {
                results[start] = Some((disposition, summary));
            }
            BatchAnswer::Rejected(..) => {
                let mid = start + (end - start) / 2;
                pending.push((mid, end));
                pending.push((start, mid));
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every range is answered"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use tally_core::event::Event;

    use super::*;

    fn events(n: usize) -> Vec<Event> {
        let template = tally_testkit::events::purchase("e");
        (0..n)
            .map(|i| Event {
                event_id: format!("e{i}"),
                ..template.clone()
            })
            .collect()
    }

    fn outgoing(events: &[Event]) -> Vec<Outgoing<'_>> {
        events
            .iter()
            .map(|event| Outgoing {
                event,
                name: "Purchase",
                value: None,
                identifiers: true,
                test: false,
            })
            .collect()
    }

    async fn run(n: usize, poisoned: &[usize]) -> (Vec<(Disposition, AttemptSummary)>, usize) {
        let events = events(n);
        let batch = outgoing(&events);
        let poisoned: Vec<String> = poisoned.iter().map(|i| format!("e{i}")).collect();
        let requests = RefCell::new(0);
        let results = isolate(&batch, |sub| {
            *requests.borrow_mut() += 1;
            let bad = sub.iter().any(|o| poisoned.contains(&o.event.event_id));
            let len = sub.len();
            async move {
                if bad {
                    BatchAnswer::Rejected(
                        Disposition::Dead {
                            reason: "invalid".into(),
                        },
                        AttemptSummary::new(Some(400), "invalid"),
                    )
                } else {
                    BatchAnswer::PerEvent(vec![
                        (
                            Disposition::Succeeded,
                            AttemptSummary::new(Some(200), "ok")
                        );
                        len
                    ])
                }
            }
        })
        .await;
        (results, requests.into_inner())
    }

    #[tokio::test]
    async fn one_poisoned_event_in_a_thousand_is_isolated_and_the_rest_succeed() {
        let (results, requests) = run(1000, &[617]).await;
        for (i, (d, _)) in results.iter().enumerate() {
            if i == 617 {
                assert!(matches!(d, Disposition::Dead { .. }), "event {i}: {d:?}");
            } else {
                assert_eq!(d, &Disposition::Succeeded, "event {i}");
            }
        }
        assert!(requests <= 2 * 10 + 1, "{requests} requests");
    }

    #[tokio::test]
    async fn several_poisoned_events_are_each_isolated() {
        let bad = [0, 1, 499, 999];
        let (results, _) = run(1000, &bad).await;
        let dead: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| d != &Disposition::Succeeded)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(dead, bad);
    }

    #[test]
    fn redaction_removes_an_echoed_secret_everywhere() {
        let answer = BatchAnswer::Rejected(
            Disposition::NeedsFix {
                reason: "token tok-123 is invalid".into(),
            },
            AttemptSummary::new(Some(401), "HTTP 401: bad tok-123"),
        )
        .redact("tok-123");
        let BatchAnswer::Rejected(Disposition::NeedsFix { reason }, summary) = answer else {
            panic!("shape kept")
        };
        assert_eq!(reason, "token [redacted] is invalid");
        assert_eq!(summary.text, "HTTP 401: bad [redacted]");
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_request() {
        let (results, requests) = run(1000, &[]).await;
        assert_eq!(requests, 1);
        assert!(results.iter().all(|(d, _)| d == &Disposition::Succeeded));
    }
}

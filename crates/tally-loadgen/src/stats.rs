//! Counters and the latency histogram. Each connection task owns one [`Stats`] and nothing is
//! shared while the run is going; they are merged once at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency the histogram resolves, in microseconds; slower requests are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Mismatch samples kept for the report; enough to diagnose, bounded so a broken server does
/// not turn into unbounded memory.
const MAX_SAMPLES: usize = 10;

/// What went wrong when an answer did not match what the load generator expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// A fresh event came back `duplicate`.
    FreshGotDuplicate,
    /// A fresh event came back `rejected`.
    FreshGotRejected,
    /// A repeated event came back `accepted`.
    RepeatGotAccepted,
    /// A repeated event came back `rejected`.
    RepeatGotRejected,
    /// A result status other than accepted/duplicate/rejected.
    UnknownStatus,
    /// A result's `event_id` is not the one sent in that position.
    WrongEventId,
    /// `results` has a different length than the request had events.
    WrongResultCount,
    /// A 200 whose body is not `{"results": [...]}`.
    BadBody,
}

impl MismatchKind {
    /// Every kind, in report order.
    pub const ALL: [Self; 8] = [
        Self::FreshGotDuplicate,
        Self::FreshGotRejected,
        Self::RepeatGotAccepted,
        Self::RepeatGotRejected,
        Self::UnknownStatus,
        Self::WrongEventId,
        Self::WrongResultCount,
        Self::BadBody,
    ];

    /// Stable snake_case name used in both output formats.
    pub fn name(self) -> &'static str {
        match self {
            Self::FreshGotDuplicate => "fresh_got_duplicate",
            Self::FreshGotRejected => "fresh_got_rejected",
            Self::RepeatGotAccepted => "repeat_got_accepted",
            Self::RepeatGotRejected => "repeat_got_rejected",
            Self::UnknownStatus => "unknown_status",
            Self::WrongEventId => "wrong_event_id",
            Self::WrongResultCount => "wrong_result_count",
            Self::BadBody => "bad_body",
        }
    }
}

/// Everything measured by one connection task, or by all of them once merged.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Per-request latency in microseconds, for requests that got an HTTP response.
    pub latency_us: Histogram<u64>,
    /// Requests sent in the measured window (whatever their outcome).
    pub requests: u64,
    /// Events carried by those requests.
    pub events: u64,
    /// Of `events`, those deliberately repeating an earlier accepted event.
    pub repeats_sent: u64,
    /// Events in requests answered 200.
    pub events_ok: u64,
    /// Responses by HTTP status class.
    pub http_200: u64,
    /// 429 Too Many Requests.
    pub http_429: u64,
    /// 503 Service Unavailable.
    pub http_503: u64,
    /// Any other status.
    pub http_other: u64,
    /// `http_other` split by status code, so a wrong key (401) or route (404) is obvious.
    pub http_other_by_status: BTreeMap<u16, u64>,
    /// Connect failures and connections lost mid-request.
    pub connect_errors: u64,
    /// Requests abandoned after `--timeout`.
    pub timeouts: u64,
    /// Open-loop slots that were due but never sent because the run ended first.
    pub unsent: u64,
    /// Result statuses.
    pub accepted: u64,
    /// `duplicate` results.
    pub duplicate: u64,
    /// `rejected` results.
    pub rejected: u64,
    /// Count per [`MismatchKind`], indexed like [`MismatchKind::ALL`].
    pub mismatches: [u64; MismatchKind::ALL.len()],
    /// First few mismatches, human-readable.
    pub mismatch_samples: Vec<String>,
    /// When the last measured request finished, to size the window honestly when the server
    /// falls behind an open-loop schedule.
    pub last_completion: Option<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            events: 0,
            repeats_sent: 0,
            events_ok: 0,
            http_200: 0,
            http_429: 0,
            http_503: 0,
            http_other: 0,
            http_other_by_status: BTreeMap::new(),
            connect_errors: 0,
            timeouts: 0,
            unsent: 0,
            accepted: 0,
            duplicate: 0,
            rejected: 0,
            mismatches: [0; MismatchKind::ALL.len()],
            mismatch_samples: Vec::new(),
            last_completion: None,
        }
    }

    /// Records one request's latency.
    pub fn record_latency(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(us);
    }

    /// Counts a mismatch and keeps `detail` if there is room for another sample.
    pub fn mismatch(&mut self, kind: MismatchKind, detail: impl FnOnce() -> String) {
        let idx = MismatchKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.mismatches[idx] += 1;
        if self.mismatch_samples.len() < MAX_SAMPLES {
            self.mismatch_samples.push(detail());
        }
    }

    /// Total mismatches of every kind.
    pub fn mismatch_total(&self) -> u64 {
        self.mismatches.iter().sum()
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        // Both histograms share the same constant bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.requests += other.requests;
        self.events += other.events;
        self.repeats_sent += other.repeats_sent;
        self.events_ok += other.events_ok;
        self.http_200 += other.http_200;
        self.http_429 += other.http_429;
        self.http_503 += other.http_503;
        self.http_other += other.http_other;
        for (status, n) in &other.http_other_by_status {
            *self.http_other_by_status.entry(*status).or_default() += n;
        }
        self.connect_errors += other.connect_errors;
        self.timeouts += other.timeouts;
        self.unsent += other.unsent;
        self.accepted += other.accepted;
        self.duplicate += other.duplicate;
        self.rejected += other.rejected;
        for (a, b) in self.mismatches.iter_mut().zip(other.mismatches) {
            *a += b;
        }
        let room = MAX_SAMPLES.saturating_sub(self.mismatch_samples.len());
        self.mismatch_samples
            .extend(other.mismatch_samples.iter().take(room).cloned());
        self.last_completion = self.last_completion.max(other.last_completion);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_bounded_samples() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.requests = 2;
        b.requests = 3;
        a.record_latency(Duration::from_millis(1));
        b.record_latency(Duration::from_millis(9));
        for i in 0..MAX_SAMPLES {
            a.mismatch(MismatchKind::WrongEventId, || format!("a{i}"));
        }
        b.mismatch(MismatchKind::BadBody, || "b".into());
        a.merge(&b);
        assert_eq!(a.requests, 5);
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!(a.mismatch_total(), MAX_SAMPLES as u64 + 1);
        assert_eq!(a.mismatch_samples.len(), MAX_SAMPLES);
    }
}

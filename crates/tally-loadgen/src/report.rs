//! The end-of-run summary, as text for people or as one JSON object for scripts
//! (`scripts/bench-ingest` reads `events_per_sec` and `latency_ms`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Args, Mode};
use crate::stats::{MismatchKind, Stats};

/// Everything printed at the end of a run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Random prefix of every event_id and order_id sent.
    pub run: String,
    /// Endpoint that was driven.
    pub url: String,
    /// `single` or `batch`.
    pub mode: &'static str,
    /// Events per request.
    pub events_per_request: u32,
    /// Concurrent connections.
    pub connections: u32,
    /// Tokio worker threads.
    pub threads: u32,
    /// Requested share of repeated events, in percent.
    pub dup_rate_pct: f64,
    /// Open-loop target in events per second; absent for closed loop.
    pub target_rate: Option<f64>,
    /// Unmeasured lead-in, seconds.
    pub warmup_s: f64,
    /// Requested measured window, seconds.
    pub duration_s: f64,
    /// Window the rates are computed over: the requested one, stretched to the last answer
    /// when the server finished measured requests late.
    pub elapsed_s: f64,
    /// Requests sent in the window.
    pub requests: u64,
    /// Events in those requests.
    pub events: u64,
    /// Of `events`, how many deliberately repeated an accepted one.
    pub repeats_sent: u64,
    /// Events in requests answered 200.
    pub events_ok: u64,
    /// `requests / elapsed_s`.
    pub requests_per_sec: f64,
    /// `events_ok / elapsed_s`: throughput the server actually took.
    pub events_per_sec: f64,
    /// Per-request latency.
    pub latency_ms: Latency,
    /// Per-event result statuses from 200 answers.
    pub results: ResultCounts,
    /// Responses by HTTP status, plus failures that got no response.
    pub http: HttpCounts,
    /// Open-loop slots never sent because the run ended first.
    pub unsent: u64,
    /// Answers that did not match what was sent.
    pub mismatches: Mismatches,
    /// No mismatch and at least one 200: the server behaved.
    pub ok: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest request.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Per-event result statuses.
#[derive(Debug, Serialize)]
pub struct ResultCounts {
    /// `accepted`.
    pub accepted: u64,
    /// `duplicate`.
    pub duplicate: u64,
    /// `rejected`.
    pub rejected: u64,
}

/// Request outcomes.
#[derive(Debug, Serialize)]
pub struct HttpCounts {
    /// 200 OK.
    #[serde(rename = "200")]
    pub ok: u64,
    /// 429 Too Many Requests.
    #[serde(rename = "429")]
    pub too_many_requests: u64,
    /// 503 Service Unavailable.
    #[serde(rename = "503")]
    pub unavailable: u64,
    /// Any other status.
    pub other: u64,
    /// `other` by status code.
    pub other_by_status: BTreeMap<u16, u64>,
    /// Failed connects and connections lost mid-request.
    pub connect_errors: u64,
    /// Requests abandoned after `--timeout`.
    pub timeouts: u64,
}

/// Verification failures.
#[derive(Debug, Serialize)]
pub struct Mismatches {
    /// Sum over all kinds.
    pub total: u64,
    /// Non-zero counts by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// A few failures spelled out.
    pub samples: Vec<String>,
}

impl Report {
    /// Summarises merged `stats` of a run configured by `args`.
    pub fn new(args: &Args, run: String, url: String, stats: &Stats, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let h = &stats.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let latency = Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        };
        let by_kind = MismatchKind::ALL
            .iter()
            .zip(stats.mismatches)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.name(), n))
            .collect();
        let mismatch_total = stats.mismatch_total();
        Self {
            run,
            url,
            mode: match args.mode {
                Mode::Single => "single",
                Mode::Batch => "batch",
            },
            events_per_request: args.events_per_request(),
            connections: args.connections,
            threads: args.threads,
            dup_rate_pct: args.dup_rate,
            target_rate: args.rate,
            warmup_s: args.warmup,
            duration_s: args.duration,
            elapsed_s: secs,
            requests: stats.requests,
            events: stats.events,
            repeats_sent: stats.repeats_sent,
            events_ok: stats.events_ok,
            requests_per_sec: per_sec(stats.requests),
            events_per_sec: per_sec(stats.events_ok),
            latency_ms: latency,
            results: ResultCounts {
                accepted: stats.accepted,
                duplicate: stats.duplicate,
                rejected: stats.rejected,
            },
            http: HttpCounts {
                ok: stats.http_200,
                too_many_requests: stats.http_429,
                unavailable: stats.http_503,
                other: stats.http_other,
                other_by_status: stats.http_other_by_status.clone(),
                connect_errors: stats.connect_errors,
                timeouts: stats.timeouts,
            },
            unsent: stats.unsent,
            mismatches: Mismatches {
                total: mismatch_total,
                by_kind,
                samples: stats.mismatch_samples.clone(),
            },
            ok: mismatch_total == 0 && stats.http_200 > 0,
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report fields always serialise")
    }

    /// The report as aligned text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let schedule = match self.target_rate {
            Some(rate) => format!("open loop at {rate} events/s (latency from scheduled send)"),
            None => "closed loop (latency from actual send)".to_owned(),
        };
        line(format!("tally-loadgen -> {}  run {}", self.url, self.run));
        line(format!(
            "  {} x{} events/request, {} connections, {} thread(s), dup {}%, {schedule}",
            self.mode, self.events_per_request, self.connections, self.threads, self.dup_rate_pct
        ));
        line(format!(
            "  {:.1} s measured after {:.1} s warm-up (rates over {:.3} s)",
            self.duration_s, self.warmup_s, self.elapsed_s
        ));
        line(format!(
            "requests     {:>10} sent   {:>12.1}/s",
            self.requests, self.requests_per_sec
        ));
        line(format!(
            "events       {:>10} sent   {:>12.1}/s answered 200 ({} ok, {} repeats sent)",
            self.events, self.events_per_sec, self.events_ok, self.repeats_sent
        ));
        let l = &self.latency_ms;
        line(format!(
            "latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        ));
        line(format!(
            "results      accepted {}  duplicate {}  rejected {}",
            self.results.accepted, self.results.duplicate, self.results.rejected
        ));
        let h = &self.http;
        let mut http = format!(
            "http         200: {}  429: {}  503: {}  other: {}  connect errors: {}  timeouts: {}",
            h.ok, h.too_many_requests, h.unavailable, h.other, h.connect_errors, h.timeouts
        );
        if !h.other_by_status.is_empty() {
            let codes: Vec<_> = h
                .other_by_status
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect();
            http.push_str(&format!("  (other = {})", codes.join(", ")));
        }
        if self.target_rate.is_some() {
            http.push_str(&format!("  unsent: {}", self.unsent));
        }
        line(http);
        if self.mismatches.total == 0 {
            if self.ok {
                line("verify       ok: every result matched what was sent".to_owned());
            } else {
                line("verify       FAILED: no request was answered 200".to_owned());
            }
        } else {
            let kinds: Vec<_> = self
                .mismatches
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            line(format!(
                "verify       MISMATCH {}: {}",
                self.mismatches.total,
                kinds.join(", ")
            ));
            for s in &self.mismatches.samples {
                line(format!("  {s}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn sample() -> Report {
        let args = Args::try_parse_from(["tally-loadgen", "--duration", "2"]).unwrap();
        let mut stats = Stats::new();
        stats.requests = 10;
        stats.events = 10;
        stats.events_ok = 10;
        stats.http_200 = 10;
        stats.accepted = 10;
        stats.record_latency(Duration::from_micros(1500));
        Report::new(
            &args,
            "r".into(),
            "u".into(),
            &stats,
            Duration::from_secs(2),
        )
    }

    #[test]
    fn json_has_the_fields_the_bench_script_reads() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["events_per_sec"].as_f64(), Some(5.0));
        assert!(v["latency_ms"]["p50"].as_f64().unwrap() > 1.4);
        assert!(v["latency_ms"]["p99"].is_number());
        assert_eq!(v["http"]["200"].as_u64(), Some(10));
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn text_reports_mismatches_with_samples() {
        let mut r = sample();
        r.mismatches.total = 1;
        r.mismatches.by_kind.insert("wrong_event_id", 1);
        r.mismatches.samples.push("lg-r-1 got x".into());
        r.ok = false;
        let text = r.to_text();
        assert!(text.contains("MISMATCH 1: wrong_event_id 1"), "{text}");
        assert!(text.contains("lg-r-1 got x"), "{text}");
    }
}

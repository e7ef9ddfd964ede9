//! Command-line arguments. Only shape and range checks live here; turning the URL into an
//! address to connect to is [`crate::target`]'s job.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Drive a running tally server with conversion events and report throughput and latency.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tally-loadgen",
    version,
    after_help = "Exit status: 0 when every answer matched, 1 on a setup error, 2 on bad \
                  arguments, 3 when answers mismatched or no request was answered 200."
)]
pub struct Args {
    /// Base URL of the tally server; requests go to `{url}/v1/events`. Repeat it to spread
    /// the connections round robin over several nodes (connection i goes to URL i mod n).
    #[arg(
        long,
        env = "TALLY_LOADGEN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: Vec<String>,

    /// API key sent as `Authorization: Bearer {key}`.
    #[arg(long, env = "TALLY_LOADGEN_KEY", default_value = "sk_backend_demo")]
    pub key: String,

    /// One event per request, or `{"batch": [...]}` bodies of `--batch-size` events.
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    pub mode: Mode,

    /// Events per request in batch mode.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub batch_size: u32,

    /// Percentage (0–100) of events that reuse the event_id and order_id of an event this run
    /// already had accepted, so the server should answer `duplicate` for them.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = parse_percent)]
    pub dup_rate: f64,

    /// Concurrent HTTP/1.1 keep-alive connections, one task each.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub connections: u32,

    /// Measured seconds, after the warm-up.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub duration: f64,

    /// Seconds of traffic sent before measuring starts; its results are not counted.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_seconds)]
    pub warmup: f64,

    /// Open-loop target in events per second, spread over all connections. Without it each
    /// connection sends its next request as soon as the previous one is answered.
    #[arg(long, value_name = "EVENTS_PER_SEC", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Seconds a single request may take before it is abandoned and counted as a timeout.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub timeout: f64,

    /// Tokio worker threads; 1 runs everything on the calling thread.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub threads: u32,

    /// Allow a target that does not resolve to a loopback address.
    #[arg(long)]
    pub allow_remote: bool,

    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// How events are packed into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The body is a single event object.
    Single,
    /// The body is `{"batch": [event, ...]}`.
    Batch,
}

impl Args {
    /// Events carried by every request.
    pub fn events_per_request(&self) -> u32 {
        match self.mode {
            Mode::Single => 1,
            Mode::Batch => self.batch_size,
        }
    }

    /// The measured window.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// The unmeasured lead-in.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    /// Per-request deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 100".into())
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    // The upper bound keeps `Duration::from_secs_f64` from panicking on absurd input.
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 86400 seconds".into())
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a positive number of events per second".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_benchmark_setup() {
        let args = Args::try_parse_from(["tally-loadgen"]).unwrap();
        assert_eq!(args.url, ["http://127.0.0.1:8080"]);
        assert_eq!(args.key, "sk_backend_demo");
        assert_eq!(args.mode, Mode::Single);
        assert_eq!(args.events_per_request(), 1);
        assert_eq!(args.connections, 64);
        assert_eq!(args.threads, 1);
        assert_eq!(args.rate, None);
    }

    #[test]
    fn batch_mode_uses_batch_size() {
        let args = Args::try_parse_from(["tally-loadgen", "--mode", "batch", "--batch-size", "25"])
            .unwrap();
        assert_eq!(args.events_per_request(), 25);
    }

    #[test]
    fn url_repeats_for_several_nodes() {
        let args = Args::try_parse_from([
            "tally-loadgen",
            "--url",
            "http://127.0.0.1:8080",
            "--url",
            "http://127.0.0.1:8081",
        ])
        .unwrap();
        assert_eq!(args.url, ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]);
    }

    #[test]
    fn rejects_dup_rate_above_100() {
        assert!(Args::try_parse_from(["tally-loadgen", "--dup-rate", "101"]).is_err());
        assert!(Args::try_parse_from(["tally-loadgen", "--dup-rate", "12.5"]).is_ok());
    }
}

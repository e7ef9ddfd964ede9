//! Command-line arguments of `tally-sink`.

use std::time::Duration;

use clap::Parser;

/// A fake delivery destination for load tests: answers every POST after a delay, failing a
/// share of them with 503, and counts the event IDs it was sent (GET any path for the counts).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tally-sink",
    version,
    after_help = "Prints its base URL (http://127.0.0.1:PORT) on the first line of stdout once \
                  it listens. Answers to Meta Conversions API paths (/{version}/{pixel}/events) \
                  carry {\"events_received\": N, ...}; any other POST gets an empty 200."
)]
pub struct Args {
    /// Port on 127.0.0.1 to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Milliseconds every POST is held before it is answered (a timer, not a blocked thread).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub delay_ms: u64,

    /// Share (0–1) of POSTs answered 503 instead of success, drawn at random per request.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.01, value_parser = parse_fraction)]
    pub fail_rate: f64,

    /// A platform that is up at the door but down behind it: every POST is answered 503 at
    /// once, without `--delay-ms`. (A destination that is down altogether is a closed port:
    /// point tally at one and start no sink.)
    #[arg(long)]
    pub down: bool,

    /// Tokio worker threads; 1 runs everything on the calling thread.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub threads: u32,
}

impl Args {
    /// How long a POST is held before its answer.
    pub fn delay(&self) -> Duration {
        if self.down {
            Duration::ZERO
        } else {
            Duration::from_millis(self.delay_ms)
        }
    }

    /// Share of POSTs answered 503.
    pub fn fail_rate(&self) -> f64 {
        if self.down { 1.0 } else { self.fail_rate }
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_slow_platform_failing_one_request_in_a_hundred() {
        let args = Args::try_parse_from(["tally-sink"]).unwrap();
        assert_eq!(args.port, 0);
        assert_eq!(args.delay(), Duration::from_millis(100));
        assert_eq!(args.fail_rate(), 0.01);
        assert_eq!(args.threads, 1);
    }

    #[test]
    fn down_fails_everything_at_once() {
        let args = Args::try_parse_from(["tally-sink", "--down", "--delay-ms", "500"]).unwrap();
        assert_eq!(args.delay(), Duration::ZERO);
        assert_eq!(args.fail_rate(), 1.0);
    }

    #[test]
    fn fail_rate_is_a_fraction() {
        assert!(Args::try_parse_from(["tally-sink", "--fail-rate", "1.5"]).is_err());
        assert!(Args::try_parse_from(["tally-sink", "--fail-rate", "0"]).is_ok());
    }
}

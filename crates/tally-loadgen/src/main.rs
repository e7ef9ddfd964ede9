//! `tally-loadgen`: drives a running tally server's `POST /v1/events` over loopback and prints
//! throughput, per-request latency percentiles and what the server answered.
//!
//! It is a measuring tool, not a test suite, and stays out of CI's critical path (style guide
//! §4.9). Two properties keep its numbers trustworthy:
//! - it must not be the bottleneck: bodies come from a byte template ([`body`]), each connection
//!   task owns its counters ([`stats`]), and by default everything runs on one thread so the
//!   benchmark can pin it to one core next to a server pinned to another;
//! - a wrong server must be visible: every 200 answer is checked event by event ([`verify`]),
//!   and the exit status is 3 when any answer mismatched or nothing was answered 200.

mod body;
mod cli;
mod connection;
mod report;
mod stats;
mod target;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use tokio::task::JoinSet;

use crate::body::EventWriter;
use crate::cli::{Args, Mode};
use crate::connection::{Plan, run_connection};
use crate::report::Report;
use crate::stats::Stats;
use crate::target::Target;

/// Exit status when the server answered wrongly or not at all.
const EXIT_VERIFY_FAILED: u8 = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads as usize)
            .enable_all()
            .build()
    };
    let result = runtime
        .context("starting the tokio runtime")
        .and_then(|rt| rt.block_on(run(&args)));
    match result {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_VERIFY_FAILED)
            }
        }
        Err(e) => {
            eprintln!("tally-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<Report> {
    let mut targets = Vec::with_capacity(args.url.len());
    for url in &args.url {
        targets.push(Target::resolve(url, &args.key, args.allow_remote).await?);
    }
    let url = targets
        .iter()
        .map(|t| format!("http://{}{}", t.host.to_str().unwrap_or("?"), t.path))
        .collect::<Vec<_>>()
        .join(" ");
    // 40 random bits: collisions between runs against one database are not a practical concern.
    let run = format!("{:010x}", rand::random::<u64>() >> 24);
    let events_per_request = args.events_per_request();
    let slot_interval = match args.rate {
        None => None,
        Some(rate) => {
            let interval = f64::from(events_per_request) / rate;
            ensure!(
                interval >= 1e-9,
                "--rate {rate} is beyond one request per nanosecond"
            );
            Some(Duration::from_secs_f64(interval))
        }
    };

    let start = Instant::now();
    let measure_from = start + args.warmup();
    let plan = Arc::new(Plan {
        targets,
        writer: EventWriter::new(&run),
        batch: args.mode == Mode::Batch,
        events_per_request,
        repeat_probability: args.dup_rate / 100.0,
        connections: args.connections,
        slot_interval,
        start,
        measure_from,
        end: measure_from + args.duration(),
        timeout: args.timeout(),
    });

    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        tasks.spawn(run_connection(Arc::clone(&plan), index));
    }
    let mut total = Stats::new();
    while let Some(stats) = tasks.join_next().await {
        total.merge(&stats.context("a connection task panicked")?);
    }

    let elapsed = total
        .last_completion
        .map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(measure_from)
        })
        .max(args.duration());
    Ok(Report::new(args, run, url, &total, elapsed))
}

//! `tally-sink`: a fake delivery destination on loopback for `scripts/bench-delivery` and the
//! destination scenarios of `scripts/bench-ingest`.
//!
//! It answers every POST after `--delay-ms` (a timer, so hundreds of requests wait at once on
//! one thread), 503 for a random `--fail-rate` share of them, otherwise a success the
//! connector understands: `{"events_received": N, "messages": [], "fbtrace_id": "sink"}` on a
//! Meta Conversions API path (`/{version}/{pixel}/events`, N the events in the body), an empty
//! 200 anywhere else (a webhook). `GET` on any path answers the [`ledger::Counts`] as JSON.
//!
//! It is a measuring tool, not a fake for tests: it checks no signature, token or payload
//! shape (the strict fakes in `tally-testkit` do), and listens on 127.0.0.1 only.

mod cli;
mod ledger;

use std::convert::Infallible;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::cli::Args;
use crate::ledger::{Ledger, event_ids};

/// What every connection shares.
struct Sink {
    delay: Duration,
    fail_rate: f64,
    ledger: Mutex<Ledger>,
}

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
        .and_then(|rt| rt.block_on(serve(&args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-sink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: &Args) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    let sink = Arc::new(Sink {
        delay: args.delay(),
        fail_rate: args.fail_rate(),
        ledger: Mutex::new(Ledger::new()),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("tally-sink: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sink = Arc::clone(&sink);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| answer(Arc::clone(&sink), req)),
        );
        tokio::spawn(async move {
            // A client that hangs up mid-request is normal here (a dispatcher giving up).
            let _ = connection.await;
        });
    }
}

async fn answer(
    sink: Arc<Sink>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::GET {
        let counts = serde_json::to_vec(sink.ledger.lock().expect("ledger lock").counts())
            .expect("counts always serialise");
        return Ok(respond(StatusCode::OK, Some(counts)));
    }
    if req.method() != Method::POST {
        return Ok(respond(StatusCode::METHOD_NOT_ALLOWED, None));
    }
    let meta = is_meta_events_path(req.uri().path());
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(respond(StatusCode::BAD_REQUEST, None));
    };
    if !sink.delay.is_zero() {
        tokio::time::sleep(sink.delay).await;
    }
    let ok =
        sink.fail_rate < 1.0 && (sink.fail_rate <= 0.0 || rand::random::<f64>() >= sink.fail_rate);
    let ids = event_ids(&body);
    sink.ledger
        .lock()
        .expect("ledger lock")
        .record(&ids, ok, unix_ms());
    Ok(if !ok {
        respond(StatusCode::SERVICE_UNAVAILABLE, None)
    } else if meta {
        let text = format!(
            r#"{{"events_received":{},"messages":[],"fbtrace_id":"sink"}}"#,
            ids.len()
        );
        respond(StatusCode::OK, Some(text.into_bytes()))
    } else {
        respond(StatusCode::OK, None)
    })
}

fn respond(status: StatusCode, json: Option<Vec<u8>>) -> Response<Full<Bytes>> {
    let has_body = json.is_some();
    let mut response = Response::new(Full::new(Bytes::from(json.unwrap_or_default())));
    *response.status_mut() = status;
    if has_body {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// `…/{version}/{pixel}/events` with a `vNN.N`-looking version and a numeric pixel.
fn is_meta_events_path(path: &str) -> bool {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    segments.next() == Some("events")
        && segments
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && segments.next().is_some_and(|v| v.starts_with('v'))
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_meta_events_paths_only() {
        assert!(is_meta_events_path("/v25.0/1234567890/events"));
        assert!(is_meta_events_path("/graph/v25.0/1/events/"));
        assert!(!is_meta_events_path("/v25.0/12ab/events"));
        assert!(!is_meta_events_path("/hooks/events"));
        assert!(!is_meta_events_path("/webhook"));
        assert!(!is_meta_events_path("/"));
    }
}

//! One load task: it owns one HTTP/1.1 keep-alive connection (re-dialled if lost) and sends
//! requests on it one after another.
//!
//! Closed loop (no `--rate`): the next request goes out as soon as the previous answer is read,
//! and latency runs from the actual send.
//!
//! Open loop (`--rate`): request slot `j` of the whole run is due at `start + j * interval`, and
//! slots are dealt round-robin to the connections. When a slot comes due while its connection is
//! still waiting for an earlier answer, latency runs from the due time, not from when the request
//! finally went out, so a stalled server is charged for the requests it delayed (the
//! coordinated-omission correction wrk2 makes). A slot due before the end of the run is still
//! sent after it, for at most one `--timeout`; what is left then counts as unsent.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;

use crate::body::{EventWriter, PlannedEvent};
use crate::stats::Stats;
use crate::target::Target;
use crate::verify::check_answer;

/// Pause after a failed connect so a dead server does not turn the run into a busy loop.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What every connection task shares: where to send, what to send and when to stop.
#[derive(Debug)]
pub struct Plan {
    /// Server addresses and fixed headers (connection i uses target i mod n).
    pub targets: Vec<Target>,
    /// Body template for this run.
    pub writer: EventWriter,
    /// Wrap events in `{"batch": [...]}`.
    pub batch: bool,
    /// Events per request.
    pub events_per_request: u32,
    /// Probability (0–1) that an event repeats an earlier accepted one.
    pub repeat_probability: f64,
    /// Number of connection tasks; event numbers and open-loop slots interleave over them.
    pub connections: u32,
    /// Time between consecutive open-loop request slots across all connections.
    pub slot_interval: Option<Duration>,
    /// Start of the warm-up.
    pub start: Instant,
    /// Requests (intended to be) sent from here on are measured.
    pub measure_from: Instant,
    /// No request is started or scheduled at or after this instant.
    pub end: Instant,
    /// Per-request deadline, and how long open-loop backlog may drain after `end`.
    pub timeout: Duration,
}

impl Plan {
    /// Where connection `index` sends.
    fn target(&self, index: u32) -> &Target {
        &self.targets[index as usize % self.targets.len()]
    }

    /// Open-loop slots that fall before `end` and belong to connection `index`.
    fn slots_for(&self, index: u32, interval: Duration) -> u64 {
        let span = self.end.saturating_duration_since(self.start).as_nanos();
        let total = span.div_ceil(interval.as_nanos().max(1));
        let (index, connections) = (u128::from(index), u128::from(self.connections));
        let mine = total.saturating_sub(index).div_ceil(connections);
        u64::try_from(mine).unwrap_or(u64::MAX)
    }
}

/// Mutable state of one connection task.
struct Worker {
    plan: Arc<Plan>,
    index: u32,
    sender: Option<SendRequest<Full<Bytes>>>,
    next_seq: u64,
    /// Event numbers this connection saw accepted; repeats are drawn from here.
    accepted: Vec<u64>,
    rng: StdRng,
    buf: BytesMut,
    events: Vec<PlannedEvent>,
    warmup: Stats,
    measured: Stats,
}

/// Runs connection task `index` until the plan's end and returns what it measured.
pub async fn run_connection(plan: Arc<Plan>, index: u32) -> Stats {
    let mut w = Worker {
        index,
        sender: None,
        next_seq: 0,
        accepted: Vec::new(),
        rng: StdRng::from_rng(&mut rand::rng()),
        buf: BytesMut::with_capacity(1024 * plan.events_per_request as usize),
        events: Vec::with_capacity(plan.events_per_request as usize),
        warmup: Stats::new(),
        measured: Stats::new(),
        plan,
    };
    match w.plan.slot_interval {
        None => w.closed_loop().await,
        Some(interval) => w.open_loop(interval).await,
    }
    w.measured
}

impl Worker {
    async fn closed_loop(&mut self) {
        while Instant::now() < self.plan.end {
            if self.ensure_connected().await {
                let now = Instant::now();
                if now < self.plan.end {
                    self.send_one(now, now).await;
                }
            }
        }
    }

    async fn open_loop(&mut self, interval: Duration) {
        let plan = Arc::clone(&self.plan);
        let slots = plan.slots_for(self.index, interval);
        let stride = u64::from(plan.connections);
        let drain_until = plan.end + plan.timeout;
        for k in 0..slots {
            let slot = k * stride + u64::from(self.index);
            let due = plan.start + interval.mul_f64(slot as f64);
            if Instant::now() >= drain_until {
                self.measured.unsent += slots - k;
                return;
            }
            let intended = if Instant::now() < due {
                tokio::time::sleep_until(due.into()).await;
                // Tokio's timer wheel wakes up to a millisecond late. The connection was idle at
                // `due`, so that lateness is the load generator's, not the server's.
                Instant::now()
            } else {
                due
            };
            if self.ensure_connected().await {
                self.send_one(intended, due).await;
            }
        }
    }

    /// Makes sure a usable connection exists; on failure counts it, backs off and returns false.
    async fn ensure_connected(&mut self) -> bool {
        if let Some(sender) = &mut self.sender {
            // A server that answered with `Connection: close` leaves a closed sender behind;
            // that is a normal reconnect, not an error.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return true;
            }
            self.sender = None;
        }
        match tokio::time::timeout(
            self.plan.timeout,
            connect(self.plan.target(self.index).addr),
        )
        .await
        {
            Ok(Ok(sender)) => {
                self.sender = Some(sender);
                true
            }
            Ok(Err(_)) | Err(_) => {
                self.stats_at(Instant::now()).connect_errors += 1;
                tokio::time::sleep(RECONNECT_BACKOFF).await;
                false
            }
        }
    }

    fn stats_at(&mut self, at: Instant) -> &mut Stats {
        if at >= self.plan.measure_from {
            &mut self.measured
        } else {
            &mut self.warmup
        }
    }

    fn plan_events(&mut self) -> u64 {
        self.events.clear();
        let mut repeats = 0;
        for _ in 0..self.plan.events_per_request {
            let repeat = !self.accepted.is_empty()
                && self.plan.repeat_probability > 0.0
                && self.rng.random_bool(self.plan.repeat_probability);
            let event = if repeat {
                repeats += 1;
                let pick = self.rng.random_range(0..self.accepted.len());
                PlannedEvent {
                    n: self.accepted[pick],
                    duplicate: true,
                }
            } else {
                let n = self.next_seq * u64::from(self.plan.connections) + u64::from(self.index);
                self.next_seq += 1;
                PlannedEvent {
                    n,
                    duplicate: false,
                }
            };
            self.events.push(event);
        }
        repeats
    }

    fn build_request(&mut self) -> Request<Full<Bytes>> {
        let plan = &self.plan;
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Reclaims the previous body's allocation once hyper has dropped it.
        self.buf.reserve(1024 * plan.events_per_request as usize);
        plan.writer
            .write_body(&mut self.buf, &self.events, plan.batch, timestamp_ms);
        let body = self.buf.split().freeze();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        let target = plan.target(self.index);
        *req.uri_mut() = target.path.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, target.host.clone());
        headers.insert(AUTHORIZATION, target.authorization.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req
    }

    /// Sends one request whose latency is counted from `intended`; `slot` decides whether it
    /// falls in the warm-up or the measured window.
    async fn send_one(&mut self, intended: Instant, slot: Instant) {
        let repeats = self.plan_events();
        let req = self.build_request();
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        let exchange = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let outcome = tokio::time::timeout(self.plan.timeout, exchange).await;
        let done = Instant::now();

        let events = u64::from(self.plan.events_per_request);
        let measuring = slot >= self.plan.measure_from;
        let stats = if measuring {
            &mut self.measured
        } else {
            &mut self.warmup
        };
        stats.requests += 1;
        stats.events += events;
        stats.repeats_sent += repeats;
        if measuring {
            stats.last_completion = Some(done);
        }
        match outcome {
            Err(_) => {
                stats.timeouts += 1;
                // The request may still be in flight; its answer would be read as the next one's.
                self.sender = None;
            }
            Ok(Err(_)) => {
                stats.connect_errors += 1;
                self.sender = None;
            }
            Ok(Ok((status, body))) => {
                stats.record_latency(done - intended);
                match status {
                    StatusCode::OK => {
                        stats.http_200 += 1;
                        stats.events_ok += events;
                        let (writer, accepted) = (&self.plan.writer, &mut self.accepted);
                        check_answer(&body, &self.events, writer, stats, accepted);
                    }
                    StatusCode::TOO_MANY_REQUESTS => stats.http_429 += 1,
                    StatusCode::SERVICE_UNAVAILABLE => stats.http_503 += 1,
                    other => {
                        stats.http_other += 1;
                        *stats
                            .http_other_by_status
                            .entry(other.as_u16())
                            .or_default() += 1;
                    }
                }
            }
        }
    }
}

async fn connect(addr: std::net::SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    // Requests are small and latency is the measurement; Nagle would add delay for nothing.
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Errors surface on the sender as well, where they are counted.
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(connections: u32, run: Duration) -> Plan {
        let start = Instant::now();
        Plan {
            targets: vec![Target {
                addr: "127.0.0.1:9".parse().unwrap(),
                path: "/v1/events".parse().unwrap(),
                host: HeaderValue::from_static("127.0.0.1:9"),
                authorization: HeaderValue::from_static("Bearer k"),
            }],
            writer: EventWriter::new("r"),
            batch: false,
            events_per_request: 1,
            repeat_probability: 0.0,
            connections,
            slot_interval: None,
            start,
            measure_from: start,
            end: start + run,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn open_loop_slots_are_dealt_round_robin() {
        // 1 s at 10 ms per slot = 100 slots over 3 connections: 34, 33, 33.
        let p = plan(3, Duration::from_secs(1));
        let iv = Duration::from_millis(10);
        let counts: Vec<_> = (0..3).map(|i| p.slots_for(i, iv)).collect();
        assert_eq!(counts, [34, 33, 33]);
    }

    #[test]
    fn connections_beyond_the_slot_count_get_none() {
        let p = plan(8, Duration::from_millis(30));
        let iv = Duration::from_millis(10);
        let counts: Vec<_> = (0..8).map(|i| p.slots_for(i, iv)).collect();
        assert_eq!(counts, [1, 1, 1, 0, 0, 0, 0, 0]);
    }
}

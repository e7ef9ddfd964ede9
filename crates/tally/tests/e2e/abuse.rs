//! Abuse end to end: slow and oversized clients, CORS, which key opens which door, and the
//! admin token. Raw TCP where a well-behaved HTTP client cannot misbehave enough; every wait is
//! bounded and waits for a condition (a closed connection, an answer), never a fixed sleep.

use std::sync::Arc;
use std::time::Duration;

use tally_core::clock::SystemClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::support::{SERVER_KEY, TestApp, purchase};

/// The header read timeout the slow-client tests run with.
const SHORT_HEADER_TIMEOUT: Duration = Duration::from_millis(300);
/// Upper bound for anything that should happen at once or soon after a timeout.
const BOUND: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent, or
/// `None` when it was still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    timeout(within, read_all).await.ok().map(|()| got)
}

/// Whether the server still holds the connection open (nothing to read, no EOF).
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn short_timeout_app() -> TestApp {
    TestApp::start_with(
        &format!(
            "[http]\nheader_read_timeout_ms = {}\n",
            SHORT_HEADER_TIMEOUT.as_millis()
        ),
        Arc::new(SystemClock),
    )
    .await
}

/// A normal request through a fresh client must be answered at once.
async fn healthy(app: &TestApp) {
    let resp = timeout(
        BOUND,
        reqwest::Client::new()
            .get(format!("{}/healthz", app.url))
            .send(),
    )
    .await
    .expect("a normal request is answered while slow clients hang")
    .expect("request");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn many_slow_clients_do_not_keep_a_normal_request_out() {
    // The default 10 s timeout: the slow connections are all still held when the normal
    // request is answered, so it is served beside them, not after they were dropped.
    let app = TestApp::start().await;
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut stream = connect(&app).await;
        if i % 2 == 0 {
            // Half send the start of a request and never finish its headers.
            stream
                .write_all(b"POST /v1/events HTTP/1.1\r\nHost: tally\r\nX-Slow: ")
                .await
                .expect("write");
        }
        slow.push(stream);
    }
    let started = Instant::now();
    healthy(&app).await;
    let (status, body) = timeout(BOUND, app.post("/v1/events", &purchase("loris-1", "L1")))
        .await
        .expect("an event is accepted while slow clients hang");
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let open = slow.iter().filter(|s| still_open(s)).count();
    assert_eq!(open, slow.len(), "the slow connections were still held");
    // Graceful shutdown lets a half-sent request finish until the header read timeout; this
    // test is not about shutdown, so the slow clients leave first.
    drop(slow);
    app.stop().await;
}

#[tokio::test]
async fn unfinished_headers_are_cut_off_after_the_header_read_timeout() {
    let app = short_timeout_app().await;
    let started = Instant::now();
    let mut silent = connect(&app).await;
    let mut partial = connect(&app).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\nX-Slow: a")
        .await
        .expect("write");
    for (name, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        let answer = closed_within(stream, BOUND)
            .await
            .unwrap_or_else(|| panic!("the {name} connection is still open after {BOUND:?}"));
        assert!(
            started.elapsed() >= SHORT_HEADER_TIMEOUT,
            "{name} closed before the timeout"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{name}: {text}"
        );
    }
    healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_header_sent_one_byte_at_a_time_does_not_extend_the_timeout() {
    let app = short_timeout_app().await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\nX-Slow: ")
        .await
        .expect("write");
    let (mut reader, mut writer) = stream.into_split();
    // The client keeps trickling a byte every 20 ms (pacing the attack, not waiting for the
    // server); each byte would reset a per-read timeout, but not a per-header one.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let closed = timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a trickling client kept its connection for {BOUND:?}"
    );
    assert!(started.elapsed() >= SHORT_HEADER_TIMEOUT);
    healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let app = short_timeout_app().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    timeout(BOUND, async {
        while !String::from_utf8_lossy(&answer).ends_with("ok\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(
        still_open(&stream),
        "keep-alive holds the connection at first"
    );
    closed_within(&mut stream, BOUND)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(answered.elapsed() >= SHORT_HEADER_TIMEOUT);
    app.stop().await;
}

/// Sends raw `head` (a request line and headers) and returns the server's answer up to close.
async fn send_head(app: &TestApp, head: &[u8]) -> String {
    let mut stream = connect(app).await;
    // The server may answer and close before it has read everything: a failed write is fine,
    // the answer (or the close) is what counts.
    let _ = stream.write_all(head).await;
    let answer = closed_within(&mut stream, BOUND)
        .await
        .unwrap_or_else(|| panic!("the connection is still open after {BOUND:?}"));
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_carries_on() {
    let app = TestApp::start().await;
    let huge_value = "a".repeat(1024 * 1024);
    let one_huge = format!(
        "POST /v1/events HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer {SERVER_KEY}\r\nX-Big: {huge_value}\r\n\r\n"
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_small = format!(
        "POST /v1/events HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer {SERVER_KEY}\r\n{many}\r\n"
    );
    let huge_uri = format!(
        "GET /v1/ledger/{} HTTP/1.1\r\nHost: tally\r\n\r\n",
        "x".repeat(1024 * 1024)
    );
    for (name, head) in [
        ("one huge header", one_huge),
        ("500 headers", many_small),
        ("a 1 MiB path", huge_uri),
    ] {
        let answer = send_head(&app, head.as_bytes()).await;
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 431")
                || answer.starts_with("HTTP/1.1 414")
                || answer.starts_with("HTTP/1.1 400"),
            "{name}: {}",
            answer.lines().next().unwrap_or("")
        );
        assert!(!answer.starts_with("HTTP/1.1 2"), "{name} was served");
    }
    healthy(&app).await;
    let (status, _) = app.post("/v1/events", &purchase("after-big-1", "B1")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

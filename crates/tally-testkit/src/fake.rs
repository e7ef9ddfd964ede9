//! The scriptable fake destination server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, oneshot};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Option<Duration>,
}

impl Reply {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: None,
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::status(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }

    /// Adds `Retry-After: <secs>`.
    pub fn retry_after(self, after: Duration) -> Reply {
        let secs = after.as_secs().to_string();
        self.header("retry-after", &secs)
    }

    /// Answers only after `delay` (a slow platform; with paused time, advance the clock).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

/// A vendor fake's judgement of one request that the script did not answer.
pub type Handler = Arc<dyn Fn(&Captured) -> Reply + Send + Sync>;

struct Inner {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    handler: Option<Handler>,
    received: Mutex<Vec<Captured>>,
    arrived: Notify,
}

/// A fake destination on `127.0.0.1:0`.
pub struct FakeDestination {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeDestination {
    /// Starts a fake that answers 200 unless scripted otherwise.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub async fn start() -> FakeDestination {
        Self::start_inner(None).await
    }

    /// Starts a fake whose unscripted answers come from `handler` (a vendor fake's validation
    /// and envelope). Scripted replies (503 storms, 429s, delays) still come first.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub async fn start_with(handler: Handler) -> FakeDestination {
        Self::start_inner(Some(handler)).await
    }

    async fn start_inner(handler: Option<Handler>) -> FakeDestination {
        let inner = Arc::new(Inner {
            script: Mutex::default(),
            default: Mutex::new(Reply::status(200)),
            handler,
            received: Mutex::default(),
            arrived: Notify::new(),
        });
        let app = Router::new().fallback(answer).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeDestination {
            addr,
            inner,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues plain status answers, in order.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        let mut script = self.inner.script.lock().expect("lock");
        script.extend(statuses.into_iter().map(Reply::status));
    }

    /// Queues one answer.
    pub fn script_one(&self, reply: Reply) {
        self.inner.script.lock().expect("lock").push_back(reply);
    }

    /// Sets the answer used once the script is exhausted.
    pub fn set_default(&self, reply: Reply) {
        *self.inner.default.lock().expect("lock") = reply;
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        self.inner.received.lock().expect("lock").len()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Captured> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Waits (at most `within`) until at least `n` requests have arrived; returns whether they did.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.inner.arrived.notified();
            if self.request_count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.request_count() >= n;
            }
        }
    }
}

impl Drop for FakeDestination {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn answer(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let captured = Captured {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let scripted = inner.script.lock().expect("lock").pop_front();
    let reply = match (scripted, &inner.handler) {
        (Some(reply), _) => reply,
        (None, Some(handler)) => handler(&captured),
        (None, None) => inner.default.lock().expect("lock").clone(),
    };
    inner.received.lock().expect("lock").push(captured);
    inner.arrived.notify_waiters();
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body,
    )
        .into_response();
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_from_the_script_then_the_default_and_records_every_request() {
        let fake = FakeDestination::start().await;
        fake.script([503, 503]);
        fake.script_one(Reply::status(429).retry_after(Duration::from_secs(30)));
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for i in 0..4 {
            let resp = client
                .post(format!("{}/v25.0/123/events?access_token=t", fake.url()))
                .body(format!("{{\"n\":{i}}}"))
                .send()
                .await
                .unwrap();
            statuses.push(resp.status().as_u16());
            if resp.status() == 429 {
                retry_after = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
            }
        }
        assert_eq!(statuses, [503, 503, 429, 200]);
        assert_eq!(retry_after.as_deref(), Some("30"));
        assert_eq!(fake.request_count(), 4);
        let first = &fake.requests()[0];
        assert_eq!(first.path, "/v25.0/123/events");
        assert_eq!(first.query.as_deref(), Some("access_token=t"));
        assert_eq!(&first.body[..], b"{\"n\":0}");
    }

    #[tokio::test]
    async fn json_replies_and_a_changed_default_are_served() {
        let fake = FakeDestination::start().await;
        fake.set_default(Reply::json(200, r#"{"code":0,"message":"OK"}"#));
        let resp = reqwest::get(fake.url()).await.unwrap();
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.text().await.unwrap(), r#"{"code":0,"message":"OK"}"#);
    }

    #[tokio::test]
    async fn wait_for_returns_once_requests_arrive_and_gives_up_after_its_bound() {
        let fake = FakeDestination::start().await;
        assert!(!fake.wait_for(1, Duration::from_millis(20)).await);
        let url = fake.url();
        tokio::spawn(async move { reqwest::get(url).await.unwrap() });
        assert!(fake.wait_for(1, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn a_delayed_reply_is_not_answered_before_its_delay() {
        let fake = FakeDestination::start().await;
        fake.script_one(Reply::status(202).delay(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        let status = reqwest::get(fake.url()).await.unwrap().status().as_u16();
        assert_eq!(status, 202);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}

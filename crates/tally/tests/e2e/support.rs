//! Test harness: [`TestApp`] runs tally in-process on a temp dir and port 0; [`Binary`] runs the
//! real `tally` executable for tests that kill or signal it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::Value;
use tally::config::{self, Overrides};
use tally_core::clock::{Clock, SystemClock};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const SERVER_KEY: &str = "sk_backend_demo";
pub const BROWSER_KEY: &str = "pk_web_demo";

/// A tally running in this process.
pub struct TestApp {
    pub url: String,
    /// The config it runs with.
    pub config: config::Config,
    pub client: reqwest::Client,
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Loads a config from the defaults plus `extra_toml`, with the admin token set.
pub fn config_with(extra_toml: &str, data_dir: &Path) -> config::Config {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let file = if extra_toml.contains("admin_token") {
        extra_toml.to_owned()
    } else {
        env.insert("TALLY_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned());
        format!("admin_token = \"${{TALLY_ADMIN_TOKEN}}\"\n{extra_toml}")
    };
    config::load_from(
        Some(("test.toml", &file)),
        &env,
        &Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_owned()),
        },
    )
    .unwrap_or_else(|e| panic!("test config: {e}"))
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with("", Arc::new(SystemClock)).await
    }

    pub async fn start_with(extra_toml: &str, clock: Arc<dyn Clock>) -> TestApp {
        TestApp::start_in(tempfile::tempdir().expect("temp dir"), extra_toml, clock).await
    }

    /// Starts on an existing data dir (a restart with another config).
    pub async fn start_in(dir: TempDir, extra_toml: &str, clock: Arc<dyn Clock>) -> TestApp {
        let config = config_with(extra_toml, dir.path());
        let store = tally::app::open_store(&config).await.expect("store");
        let app = tally::app::build(&config, store, clock).expect("app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(tally::app::serve(app, listener, async {
            let _ = rx.await;
        }));
        TestApp {
            url,
            config,
            client: reqwest::Client::new(),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// POSTs `body` to `path` with a server key; returns status and JSON (or Null).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(
            path,
            body.to_string().into_bytes(),
            &[("authorization", &format!("Bearer {SERVER_KEY}"))],
        )
        .await
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POST JSON with the admin token.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POSTs a browser copy to `/v1/collect` from an allowed origin.
    pub async fn collect(&self, event: &Value) -> (u16, Value) {
        let mut body = event.clone();
        body["key"] = Value::String(BROWSER_KEY.into());
        self.post_raw(
            "/v1/collect",
            body.to_string().into_bytes(),
            &[
                ("origin", "http://localhost:8000"),
                ("content-type", "text/plain"),
                ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) tally-e2e"),
            ],
        )
        .await
    }

    /// The ledger entry of `event_id` (panics when there is none).
    pub async fn ledger(&self, event_id: &str) -> Value {
        let (status, body) = self.admin_get(&format!("/v1/ledger/{event_id}")).await;
        assert_eq!(status, 200, "{body}");
        body["events"][0].clone()
    }

    /// Polls the ledger (every 20 ms, at most `within`) until `destination`'s delivery of
    /// `event_id` is in `state`; returns the delivery.
    pub async fn wait_for_delivery(
        &self,
        event_id: &str,
        destination: &str,
        state: &str,
        within: std::time::Duration,
    ) -> Value {
        self.wait_for_delivery_where(event_id, destination, state, within, |d| {
            d["state"] == state
        })
        .await
    }

    /// Polls the ledger (every 20 ms, at most `within`) until `destination`'s delivery of
    /// `event_id` satisfies `done` (described by `what` in the failure message).
    pub async fn wait_for_delivery_where(
        &self,
        event_id: &str,
        destination: &str,
        what: &str,
        within: std::time::Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.admin_get(&format!("/v1/ledger/{event_id}")).await;
            let delivery = body["events"][0]["deliveries"]
                .as_array()
                .and_then(|ds| ds.iter().find(|d| d["destination"] == destination).cloned());
            if let Some(d) = &delivery
                && done(d)
            {
                return d.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{destination} delivery of {event_id} never reached {what}: {status} {body}"
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// GET with the admin token.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Stops the server and hands back its data dir.
    pub async fn stop_keeping_data(mut self) -> TempDir {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        self.stop().await;
        dir
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("serve");
        }
    }
}

/// The statuses of a `{"results": [...]}` answer.
pub fn statuses(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A valid purchase.
pub fn purchase(event_id: &str, order_id: &str) -> Value {
    serde_json::json!({
        "event": "purchase", "event_id": event_id,
        "user": {"email": "jane.doe@example.com", "phone": "+1 650 555 1212"},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": order_id}
    })
}

/// The real `tally` binary, started with `--data-dir` on port 0.
pub struct Binary {
    pub child: Child,
    pub url: String,
}

pub fn tally_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tally"))
}

impl Binary {
    pub fn start(data_dir: &Path) -> Binary {
        let mut child = Command::new(tally_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("TALLY_CONFIG")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tally");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listen line");
        let url = line
            .trim()
            .strip_prefix("tally listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line}"))
            .to_owned();
        Binary { child, url }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

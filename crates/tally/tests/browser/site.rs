//! One test's world: a headless Chromium, the demo shop, and tally in-process on its own
//! loopback port and data dir, which can be stopped and started again on the same port (the
//! collector going down and coming back).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tally::config::{self, Overrides, StoreSettings};
use tally_core::clock::SystemClock;
use tally_store::Store;
use tally_store::sqlite::SqliteStore;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::shop::{self, AWAY_HOST, SHOP_HOST, TALLY_HOST};
use crate::webdriver::Browser;

const ADMIN_TOKEN: &str = "browser-test-admin-token-0123";
/// Lifetime of the cookie tally sets, in days; tally.js writes its own for 395, so the
/// expiry tells who wrote last.
pub const SERVER_COOKIE_DAYS: u64 = 200;

struct Running {
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The browser, the shop and tally.
pub struct Site {
    /// The browser.
    pub browser: Browser,
    shop_port: u16,
    tally_port: u16,
    dir: TempDir,
    tally: Option<Running>,
    client: reqwest::Client,
}

impl Site {
    /// Starts everything; `None` when the browser is not installed (outside CI).
    pub async fn open() -> Option<Site> {
        let browser = Browser::launch().await?;
        let tally_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tally_port = tally_listener.local_addr().expect("addr").port();
        let shop_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let shop_port = shop_listener.local_addr().expect("addr").port();
        shop::serve(shop_listener, format!("http://{TALLY_HOST}:{tally_port}"));
        let mut site = Site {
            browser,
            shop_port,
            tally_port,
            dir: tempfile::tempdir().expect("data dir"),
            tally: None,
            client: reqwest::Client::new(),
        };
        site.serve_tally(tally_listener);
        Some(site)
    }

    fn serve_tally(&mut self, listener: TcpListener) {
        let toml = format!(
            r#"
admin_token = "{ADMIN_TOKEN}"

[tag]
cookie_domain = "example.com"
cookie_max_age_days = {SERVER_COOKIE_DAYS}

[[sources]]
name = "web"
kind = "browser"
key = "pk_web_demo"
allowed_origins = ["http://{SHOP_HOST}:{shop_port}"]
"#,
            shop_port = self.shop_port
        );
        let config = config::load_from(
            Some(("browser-test.toml", &toml)),
            &BTreeMap::new(),
            &Overrides {
                listen: Some(format!("127.0.0.1:{}", self.tally_port)),
                data_dir: Some(self.dir.path().to_owned()),
            },
        )
        .unwrap_or_else(|e| panic!("test config: {e}"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // SQLite, opened directly: the browser tests need nothing else from the store.
            let store: Arc<dyn Store> = match &config.store {
                StoreSettings::Sqlite(c) => Arc::new(SqliteStore::open(c.clone())?),
                _ => unreachable!("the browser tests configure no other store"),
            };
            let app = tally::app::build(&config, store, Arc::new(SystemClock))?;
            tally::app::serve(app, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        self.tally = Some(Running { shutdown, task });
    }

    /// Stops tally (graceful: the store is closed); its port refuses connections until
    /// [`Site::start_tally`].
    pub async fn stop_tally(&mut self) {
        let running = self.tally.take().expect("tally is running");
        let _ = running.shutdown.send(());
        running
            .task
            .await
            .expect("tally task")
            .expect("tally stopped cleanly");
    }

    /// Starts tally again on the same port and data dir.
    pub async fn start_tally(&mut self) {
        assert!(self.tally.is_none(), "tally is already running");
        let listener = TcpListener::bind(("127.0.0.1", self.tally_port))
            .await
            .expect("the same port again");
        self.serve_tally(listener);
    }

    /// A URL of the shop.
    pub fn shop(&self, path_and_query: &str) -> String {
        format!("http://{SHOP_HOST}:{}{path_and_query}", self.shop_port)
    }

    /// A page of another site, without tally.
    pub fn away(&self) -> String {
        format!("http://{AWAY_HOST}:{}/bye", self.shop_port)
    }

    /// The ledger of `event_id`, or `None` when tally has no such event.
    pub async fn ledger(&self, event_id: &str) -> Option<Value> {
        let resp = self
            .client
            .get(format!(
                "http://127.0.0.1:{}/v1/ledger/{event_id}",
                self.tally_port
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("ledger request");
        if resp.status() == 404 {
            return None;
        }
        assert_eq!(resp.status(), 200, "ledger of {event_id}");
        Some(resp.json().await.expect("ledger JSON"))
    }

    /// Calls tally's admin API: status and JSON answer.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(
                method,
                format!("http://127.0.0.1:{}{path}", self.tally_port),
            )
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// tally's Prometheus text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://127.0.0.1:{}/metrics", self.tally_port))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics text")
    }

    /// Polls the ledger (every 50 ms, at most `within`) until `event_id` is there and `done`
    /// holds for it; returns the ledger.
    pub async fn wait_for_ledger(
        &self,
        event_id: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let ledger = self.ledger(event_id).await;
            if let Some(l) = &ledger
                && done(l)
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{event_id} did not reach the expected state within {within:?}: {ledger:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `within`) until tally has `event_id`; returns its merged event.
    pub async fn wait_for_event(&self, event_id: &str, within: Duration) -> Value {
        let ledger = self.wait_for_ledger(event_id, within, |_| true).await;
        ledger["events"][0]["event"].clone()
    }
}

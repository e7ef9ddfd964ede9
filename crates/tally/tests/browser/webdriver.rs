//! Real headless Chromium, driven through chromedriver with the few W3C WebDriver commands the
//! tests need (a small client of our own over reqwest: new session, navigate, refresh, run
//! script, cookies).
//!
//! Chromium runs with a fresh profile and a host resolver that maps the test's host names to
//! 127.0.0.1 and refuses every other name, so nothing leaves the loopback interface. With
//! `CI=true` a missing chromium or chromedriver fails the test; elsewhere the test is skipped
//! with a loud message (`scripts/test` installs both).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// Host names the browser resolves (to 127.0.0.1); every other name fails to resolve.
pub const HOSTS: &[&str] = &["shop.example.com", "t.shop.example.com", "away.example.net"];

/// A Chromium session; ended (and chromedriver stopped) on drop, also when a test panics.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    _profile: TempDir,
}

/// Finds an executable on `PATH` (or in the environment variable `env`, when set).
fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (after saying so) when they
    /// are not installed and this is not CI.
    ///
    /// # Panics
    /// When they are missing under `CI=true`, or do not start.
    pub async fn launch() -> Option<Browser> {
        let chromium = find(
            "TALLY_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find("TALLY_CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let message = "chromium and chromedriver are not installed (scripts/test installs them with apt-get)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}; browser tests cannot be skipped in CI");
            }
            eprintln!("\n!!! SKIPPED browser test: {message} !!!\n");
            return None;
        };
        Some(Browser::start(&chromium, &driver).await)
    }

    async fn start(chromium: &Path, driver_bin: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_bin.display()));
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: reqwest::Client::new(),
            _profile: profile,
        };
        browser.wait_until_ready().await;
        let mut rules: Vec<String> = HOSTS.iter().map(|h| format!("MAP {h} 127.0.0.1")).collect();
        rules.push("MAP * ~NOTFOUND".into());
        rules.push("EXCLUDE localhost".into());
        let user_data = browser._profile.path().join("chromium");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-default-apps".into(),
            "--disable-extensions".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            // Plain http to the test hosts stays plain http.
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".into(),
            format!("--user-data-dir={}", user_data.display()),
            format!("--host-resolver-rules={}", rules.join(", ")),
        ];
        let answer = browser
            .command(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {"script": 15_000, "pageLoad": 20_000, "implicit": 0},
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }}}),
            )
            .await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {answer}"))
            .to_owned();
        browser
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = self
                .client
                .get(format!("{}/status", self.base))
                .send()
                .await
                && let Ok(status) = resp.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!("chromedriver exited at start: {exit}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60));
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path} answered {status}: {answer}"
        );
        answer["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Navigates and waits for the page's load event.
    pub async fn goto(&self, url: &str) {
        self.command(
            reqwest::Method::POST,
            &self.session_path("/url"),
            json!({ "url": url }),
        )
        .await;
    }

    /// Reloads the page and waits for its load event.
    pub async fn refresh(&self) {
        self.command(
            reqwest::Method::POST,
            &self.session_path("/refresh"),
            json!({}),
        )
        .await;
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn run(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            &self.session_path("/execute/sync"),
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The cookies visible to the current page, as WebDriver reports them (name, value,
    /// domain, expiry, ...).
    pub async fn cookies(&self) -> Vec<Value> {
        let v = self
            .command(
                reqwest::Method::GET,
                &self.session_path("/cookie"),
                Value::Null,
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Polls `script` (every 50 ms, at most `within`) until it returns something other than
    /// `null`/`false`; returns that.
    ///
    /// # Panics
    /// When `within` passes first, naming `what`.
    pub async fn wait_for(&self, what: &str, within: Duration, script: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.run(script).await;
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page never got {what} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; chromedriver would leave it running if killed
        // first. A plain blocking request, since drop may run inside the test's runtime.
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect(self.base.trim_start_matches("http://"))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session,
                self.base.trim_start_matches("http://")
            );
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

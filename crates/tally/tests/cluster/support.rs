//! The harness: real `tally serve` processes ([`Node`]) on a shared store ([`TestStore`]: an
//! SQLite data dir, or a fresh schema of the test PostgreSQL), a private PostgreSQL cluster the
//! test may stop ([`PrivatePostgres`]), strict Meta fakes, one per node incarnation
//! ([`Platform`]), and a load client that behaves like a real one ([`Load`]).
//!
//! Why one fake per incarnation: a request then tells which process sent it, so "no process
//! sends an event twice" and "a second copy only comes after the process holding the first one
//! was killed" can be checked exactly, without timing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_store::{DeliveryState, Store};
use tally_testkit::fakes::meta::FakeMeta;
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "cluster-admin-token-0123456789";
pub const SERVER_KEY: &str = "sk_backend_demo";
pub const PIXEL: &str = "1234567890";
pub const META_TOKEN: &str = "meta-cluster-token";
/// The destination's name in the store (every node and incarnation shares it).
pub const DESTINATION: &str = "meta";

const POSTGRES_URL_VAR: &str = "TALLY_TEST_POSTGRES_URL";

/// True when `CI=true`: a missing dependency fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says loudly that a test did not run (or panics with `CI=true`).
pub fn skip(test: &str, why: &str) {
    assert!(
        !in_ci(),
        "{test}: {why}, but CI=true: this test must run in CI"
    );
    eprintln!("\n**** SKIPPED {test}: {why}. ****\n");
}

/// Polls `check` (every 20 ms) until it gives a value; panics after `within` with `what`.
pub fn wait_until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small seeded generator (SplitMix64), so a failing run can be repeated with its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `TALLY_CLUSTER_SEED` when set, else from the clock; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("TALLY_CLUSTER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: TALLY_CLUSTER_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A purchase a real server would send (Meta's website-event fields included).
pub fn purchase(event_id: &str) -> Value {
    json!({
        "event": "purchase", "event_id": event_id,
        "user": {"email": "jane.doe@example.com", "ip": "203.0.113.9",
                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64) tally-cluster"},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": event_id},
        "page": {"url": "https://shop.example/thanks"},
    })
}

/// A batch of purchases.
pub fn batch(ids: &[String]) -> Value {
    json!({"batch": ids.iter().map(|id| purchase(id)).collect::<Vec<_>>()})
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

/// A blocking HTTP client with a generous timeout (a loaded CI machine is slow, a dead node
/// answers at once).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// POSTs `body` to `/v1/events` with the server key: status and JSON (Null when not JSON).
pub fn post_events(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let resp = client
        .post(format!("{url}/v1/events"))
        .bearer_auth(SERVER_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// GETs an admin path: status and JSON.
pub fn admin_get(client: &reqwest::blocking::Client, url: &str, path: &str) -> (u16, Value) {
    match client
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// `GET /healthz`'s status (0 when the node did not answer).
pub fn health(client: &reqwest::blocking::Client, url: &str) -> u16 {
    client
        .get(format!("{url}/healthz"))
        .send()
        .map_or(0, |r| r.status().as_u16())
}

/// How a node delivers: short leases so takeovers happen within a test.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    /// `[delivery] lease_secs`.
    pub lease_secs: u64,
    /// `[delivery] request_timeout_secs` (three quarters of the lease must exceed it).
    pub request_timeout_secs: u64,
    /// `[delivery] join_window_secs`.
    pub join_window_secs: u64,
    /// Dispatchers per node.
    pub concurrency: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        // A timed-out request is retried after 30 s (the overload floor), so the timeout is
        // generous for a loaded machine; the lease is the shortest the config allows above it.
        Delivery {
            lease_secs: 6,
            request_timeout_secs: 3,
            join_window_secs: 0,
            concurrency: 2,
        }
    }
}

/// Where the nodes of one test keep their data: an SQLite data dir they share in turn, or a
/// fresh schema of a PostgreSQL database they share at once (dropped at the end).
pub struct TestStore {
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("temp dir"),
            postgres: None,
        }
    }

    /// A fresh schema in the database at `TALLY_TEST_POSTGRES_URL`; `None` (after saying so)
    /// when it is not set; panics when it is not set and `CI=true`.
    pub fn postgres(test: &str) -> Option<TestStore> {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.is_empty() => Some(TestStore::postgres_at(&url)),
            _ => {
                skip(
                    test,
                    &format!(
                        "{POSTGRES_URL_VAR} is not set (scripts/test starts a private PostgreSQL and sets it)"
                    ),
                );
                None
            }
        }
    }

    /// A fresh schema in the database at `url`.
    pub fn postgres_at(url: &str) -> TestStore {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "tally_cluster_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        TestStore {
            dir: tempfile::tempdir().expect("temp dir"),
            postgres: Some((url.to_owned(), schema)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The config of a node called `node`, delivering to `meta_url` when given.
    pub fn config(&self, node: &str, delivery: Delivery, meta_url: Option<&str>) -> String {
        let data_dir = match &self.postgres {
            // SQLite: every incarnation opens the same database.
            None => self.dir.path().join("data"),
            Some(_) => self.dir.path().join(node),
        };
        let store = match &self.postgres {
            None => "[store]\nkind = \"sqlite\"\n".to_owned(),
            Some((url, schema)) => format!(
                "[store]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\npool_size = 6\ncommitters = 2\nconnect_timeout_ms = 2000\n"
            ),
        };
        let destination = meta_url.map_or(String::new(), |url| {
            format!(
                r#"
[[destinations]]
name = "{DESTINATION}"
kind = "meta_capi"
pixel_id = "{PIXEL}"
access_token = "{META_TOKEN}"
endpoint = "{url}"
events = {{ purchase = "Purchase" }}
require_test_conversion = false
"#
            )
        });
        format!(
            r#"data_dir = "{data_dir}"
admin_token = "{ADMIN_TOKEN}"
workers = 2

[log]
level = "warn"

{store}
[delivery]
join_window_secs = {join}
lease_secs = {lease}
request_timeout_secs = {timeout}
idle_poll_ms = 20
concurrency = {concurrency}
{destination}"#,
            data_dir = data_dir.display(),
            join = delivery.join_window_secs,
            lease = delivery.lease_secs,
            timeout = delivery.request_timeout_secs,
            concurrency = delivery.concurrency,
        )
    }

    /// Opens the store in this process (for SQLite only while no node runs), the way
    /// `tally serve` does with `config`.
    pub async fn open(&self, config_toml: &str) -> Arc<dyn Store> {
        let config = tally::config::load_from(
            Some(("cluster.toml", config_toml)),
            &BTreeMap::new(),
            &tally::config::Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("config: {e}"));
        tally::app::open_store(&config).await.expect("open store")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some((url, schema)) = self.postgres.take() else {
            return;
        };
        // The test's runtime (if any) must not block on itself: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test schema: {e}");
        }
    }
}

/// One `tally serve` process (the real binary) on a port of its own.
pub struct Node {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
    /// Which fake of the [`Platform`] this incarnation delivers to.
    pub fake: Option<usize>,
}

impl Node {
    /// Starts `tally serve --config <dir>/<name>.toml` with `config_toml`.
    pub fn start(dir: &Path, name: &str, config_toml: &str) -> Node {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, config_toml).expect("write config");
        let mut command = Command::new(tally_bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"]);
        Node::spawn(command, &dir.join(format!("{name}.log")))
    }

    /// Spawns `command` (which must end up exec'ing `tally serve`), its stderr appended to
    /// `log`, and waits for the line saying where it listens.
    pub fn spawn(mut command: Command, log: &Path) -> Node {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let start = stderr.metadata().map_or(0, |m| m.len());
        let mut child = command
            .env_remove("TALLY_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn tally");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let Some(url) = line.trim().strip_prefix("tally listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tally did not start ({line:?}); its log:\n{}",
                log_from(log, start)
            );
        };
        Node {
            url: url.to_owned(),
            child,
            log: log.to_owned(),
            fake: None,
        }
    }

    /// Delivers to fake `index` of the platform (for the checks).
    pub fn with_fake(mut self, index: usize) -> Node {
        self.fake = Some(index);
        self
    }

    /// `kill -9`, and waits until the process is gone.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of this node's log (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_now();
        if std::thread::panicking() {
            eprintln!(
                "---- {} (the end of its log):\n{}",
                self.url,
                self.log_tail()
            );
        }
    }
}

pub fn tally_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tally"))
}

fn log_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// The last 40 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = log_from(path, 0);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The strict Meta fakes of one test, one per node incarnation, on a runtime of their own.
pub struct Platform {
    runtime: tokio::runtime::Runtime,
    fakes: Vec<FakeMeta>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform::new()
    }
}

impl Platform {
    pub fn new() -> Platform {
        Platform {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
            fakes: Vec::new(),
        }
    }

    /// Starts another fake; its index and URL.
    pub fn add(&mut self) -> (usize, String) {
        let fake = self.runtime.block_on(FakeMeta::start(PIXEL, META_TOKEN));
        let url = fake.url();
        self.fakes.push(fake);
        (self.fakes.len() - 1, url)
    }

    pub fn fake(&self, index: usize) -> &FakeMeta {
        &self.fakes[index]
    }

    /// Runs `f` on the platform's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The event IDs in each request fake `index` received (answered or not), oldest first.
    pub fn requests(&self, index: usize) -> Vec<Vec<String>> {
        self.fakes[index]
            .requests()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("a Meta request that is not JSON: {e}"));
                body["data"]
                    .as_array()
                    .unwrap_or_else(|| panic!("a Meta request without data: {body}"))
                    .iter()
                    .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
                    .collect()
            })
            .collect()
    }

    /// Copies of each event ID: (fake index, how many times that fake got it).
    pub fn copies(&self) -> HashMap<String, Vec<(usize, usize)>> {
        let mut out: HashMap<String, BTreeMap<usize, usize>> = HashMap::new();
        for index in 0..self.fakes.len() {
            for id in self.requests(index).into_iter().flatten() {
                *out.entry(id).or_default().entry(index).or_default() += 1;
            }
        }
        out.into_iter()
            .map(|(id, per)| (id, per.into_iter().collect()))
            .collect()
    }
}

/// What the store says about the events a test sent.
pub struct StoreCheck {
    /// Every event ID the store holds.
    pub stored: HashSet<String>,
    /// Deliveries whose history shows a send that timed out before the one that succeeded
    /// (such a send may have reached the platform: a second copy from one process is allowed).
    pub retried: HashSet<String>,
}

/// Checks that each of `acked` is stored exactly once and delivered, and each of `maybe` (sent
/// but never acknowledged) at most once (and delivered when stored); that the store holds no
/// other event; and, when `delivered`, that tally recorded exactly one successful attempt for
/// each.
pub async fn check_store(
    store: &dyn Store,
    acked: &HashSet<String>,
    maybe: &HashSet<String>,
    delivered: bool,
) -> StoreCheck {
    let mut stored = HashSet::new();
    let mut retried = HashSet::new();
    for (id, must) in acked
        .iter()
        .map(|id| (id, true))
        .chain(maybe.iter().map(|id| (id, false)))
    {
        let entries = store.ledger(id).await.expect("ledger");
        match entries.len() {
            0 if !must => continue,
            0 => panic!("acknowledged event {id} is not in the store"),
            1 => {}
            n => panic!("event {id} is stored {n} times"),
        }
        let entry = &entries[0];
        assert_eq!(entry.event.event_id, *id);
        stored.insert(id.clone());
        if !delivered {
            continue;
        }
        assert_eq!(entry.deliveries.len(), 1, "{id}: {:?}", entry.deliveries);
        let d = &entry.deliveries[0];
        assert_eq!(
            d.state,
            DeliveryState::Delivered,
            "{id} was not delivered: {d:?}"
        );
        let succeeded = d
            .attempts
            .iter()
            .filter(|a| a.outcome == "succeeded")
            .count();
        assert_eq!(
            succeeded, 1,
            "{id}: tally recorded {succeeded} successes: {d:?}"
        );
        assert!(
            d.attempts
                .iter()
                .all(|a| a.outcome == "succeeded" || a.outcome == "retry"),
            "{id}: {d:?}"
        );
        if d.attempts.len() > 1 {
            retried.insert(id.clone());
        }
    }
    let stats = store
        .dedup_stats(tally_core::timestamp::Timestamp::from_millis(0))
        .await
        .expect("stats");
    let events: u64 = stats.iter().map(|s| s.events).sum();
    assert_eq!(
        events as usize,
        stored.len(),
        "the store holds events the test never had acknowledged or sent"
    );
    StoreCheck { stored, retried }
}

/// The platform side of "delivered exactly once", given the store's view and which fakes
/// belonged to incarnations that were killed:
/// - every stored event reached the platform, and nothing else did;
/// - no process sent an event twice (unless tally recorded a timed-out send for it);
/// - an event that reached the platform more than once did so only because the processes that
///   sent the other copies were killed before recording the outcome: of its copies, at most one
///   is from a process that was not killed.
///
/// Returns how many events reached the platform more than once.
pub fn check_platform(platform: &Platform, check: &StoreCheck, killed: &HashSet<usize>) -> usize {
    let copies = platform.copies();
    for id in &check.stored {
        assert!(
            copies.contains_key(id),
            "stored event {id} never reached the platform"
        );
    }
    let mut twice = 0;
    for (id, per_fake) in &copies {
        assert!(
            check.stored.contains(id),
            "{id} reached the platform but is not stored"
        );
        for &(fake, n) in per_fake {
            assert!(
                n == 1 || check.retried.contains(id),
                "one process (fake {fake}) sent {id} {n} times without a timed-out attempt"
            );
        }
        let from_survivors = per_fake.iter().filter(|(f, _)| !killed.contains(f)).count();
        assert!(
            from_survivors <= 1,
            "{id} was sent by {from_survivors} processes that were never killed: {per_fake:?}"
        );
        let total: usize = per_fake.iter().map(|(_, n)| n).sum();
        if total > 1 {
            twice += 1;
        }
    }
    twice
}

/// Waits until no delivery of the destination is pending on `url` (any live node) and at
/// least `at_least` are delivered.
pub fn wait_drained(url: &str, at_least: usize, within: Duration) {
    let client = client();
    let mut last = Value::Null;
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = admin_get(&client, url, "/v1/destinations");
        if status == 200 {
            let stats = body["destinations"]
                .as_array()
                .and_then(|ds| ds.iter().find(|d| d["destination"] == DESTINATION))
                .cloned()
                .unwrap_or(Value::Null);
            let pending = stats["pending"].as_u64().unwrap_or(u64::MAX);
            let delivered = stats["delivered"].as_u64().unwrap_or(0);
            if pending == 0 && delivered as usize >= at_least {
                return;
            }
            last = stats;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not drain within {within:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a load client saw.
pub struct LoadResult {
    /// Event IDs answered 200 (accepted or duplicate): they must be stored.
    pub acked: HashSet<String>,
    /// Event IDs sent but never acknowledged (the client gave up after an error): stored at
    /// most once.
    pub unacked: HashSet<String>,
    /// Requests that failed (connection errors, 503).
    pub errors: usize,
}

struct LoadShared {
    urls: Mutex<Vec<String>>,
    changed: Condvar,
    stop: AtomicBool,
    acked: Mutex<HashSet<String>>,
    sent: Mutex<HashSet<String>>,
    acked_count: AtomicUsize,
    errors: AtomicUsize,
    wrong: Mutex<Vec<String>>,
}

/// A load client: threads sending batches of 1–4 new purchases (unique IDs) round robin to the
/// current node URLs. After an error (connection refused or reset, a timeout, 503) a thread
/// sends the same batch again half of the time, like a real client with retries, and gives it
/// up otherwise.
pub struct Load {
    shared: Arc<LoadShared>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(prefix: &str, urls: Vec<String>, threads: usize, seed: u64) -> Load {
        let shared = Arc::new(LoadShared {
            urls: Mutex::new(urls),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            acked: Mutex::default(),
            sent: Mutex::default(),
            acked_count: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            wrong: Mutex::default(),
        });
        let threads = (0..threads)
            .map(|t| {
                let shared = shared.clone();
                let prefix = format!("{prefix}-{t}");
                let mut rng = Rng(seed.wrapping_add(t as u64 * 7919));
                std::thread::spawn(move || send_loop(&shared, &prefix, &mut rng))
            })
            .collect();
        Load { shared, threads }
    }

    /// Replaces the node URLs (after a restart).
    pub fn set_urls(&self, urls: Vec<String>) {
        *self.shared.urls.lock().expect("urls") = urls;
        self.shared.changed.notify_all();
    }

    /// How many events were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.shared.acked_count.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `n` events are acknowledged.
    pub fn wait_for_acked(&self, n: usize, within: Duration) {
        wait_until(&format!("{n} acknowledged events"), within, || {
            self.assert_no_wrong_answers();
            (self.acked() >= n).then_some(())
        });
    }

    fn assert_no_wrong_answers(&self) {
        let wrong = self.shared.wrong.lock().expect("wrong");
        assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    }

    /// Stops the threads (each finishes its request in flight) and reports.
    pub fn finish(mut self) -> LoadResult {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("load thread");
        }
        self.assert_no_wrong_answers();
        let acked = self.shared.acked.lock().expect("acked").clone();
        let unacked = self
            .shared
            .sent
            .lock()
            .expect("sent")
            .difference(&acked)
            .cloned()
            .collect();
        LoadResult {
            acked,
            unacked,
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }
}

fn send_loop(shared: &LoadShared, prefix: &str, rng: &mut Rng) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let mut next = 0u64;
    let mut retry: Option<Vec<String>> = None;
    let mut turn = rng.next() as usize;
    while !shared.stop.load(Ordering::Relaxed) {
        let ids = retry.take().unwrap_or_else(|| {
            let n = rng.range(1, 5);
            (0..n)
                .map(|_| {
                    next += 1;
                    format!("{prefix}-{next}")
                })
                .collect()
        });
        let url = {
            let urls = shared.urls.lock().expect("urls");
            turn += 1;
            urls[turn % urls.len()].clone()
        };
        shared
            .sent
            .lock()
            .expect("sent")
            .extend(ids.iter().cloned());
        match post_events(&client, &url, &batch(&ids)) {
            Ok((200, body)) => {
                let s = statuses(&body);
                if s.len() != ids.len() || s.iter().any(|s| s != "accepted" && s != "duplicate") {
                    shared
                        .wrong
                        .lock()
                        .expect("wrong")
                        .push(format!("{ids:?}: {body}"));
                }
                shared.acked_count.fetch_add(ids.len(), Ordering::Relaxed);
                shared.acked.lock().expect("acked").extend(ids);
            }
            Ok((503, _)) | Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if rng.next().is_multiple_of(2) {
                    retry = Some(ids);
                }
                // A dead node refuses at once: wait for a restart (bounded) instead of spinning.
                let urls = shared.urls.lock().expect("urls");
                let _ = shared
                    .changed
                    .wait_timeout(urls, Duration::from_millis(50))
                    .expect("urls");
            }
            Ok((status, body)) => shared
                .wrong
                .lock()
                .expect("wrong")
                .push(format!("{ids:?}: {status} {body}")),
        }
    }
}

/// A PostgreSQL cluster of the test's own (initdb + pg_ctl from the installed binaries, as
/// scripts/test does), so the test can stop it without breaking other tests.
pub struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Starts one; `None` (after saying so) when PostgreSQL is not installed; panics when it
    /// is not installed and `CI=true`.
    pub fn start(test: &str) -> Option<PrivatePostgres> {
        PrivatePostgres::start_with(test, |_| {})
    }

    /// As [`PrivatePostgres::start`], with `configure` run between initdb and the first start
    /// (to write certificates, `postgresql.conf` settings, `pg_hba.conf`).
    pub fn start_with(
        test: &str,
        configure: impl FnOnce(&PrivatePostgres),
    ) -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .max_by_key(|b| {
                b.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            });
        let Some(bin) = bin else {
            skip(
                test,
                "PostgreSQL is not installed (/usr/lib/postgresql/*/bin; scripts/test installs it)",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
        let as_postgres = run_output(Command::new("id").arg("-u")).trim() == "0";
        if as_postgres {
            if !Command::new("id")
                .arg("postgres")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                run(Command::new("useradd").args(["--system", "postgres"]));
            }
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = PrivatePostgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        run(pg.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]));
        configure(&pg);
        pg.resume();
        Some(pg)
    }

    /// Writes (or, with `append`, adds to) a file of the data directory, owned by the server's
    /// user and readable by it alone (as PostgreSQL wants a key file).
    pub fn write_data_file(&self, name: &str, contents: &str, append: bool) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("data").join(name);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.write_all(contents.as_bytes())
            .expect("write a data file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if self.as_postgres {
            run(Command::new("chown").arg("postgres").arg(&path));
        }
    }

    /// A superuser connection string over the unix socket (trusted by initdb's pg_hba.conf).
    pub fn socket_conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) on the same port and data. `fsync=off` only spares the disk: a halt
    /// kills the server, not the machine, so what it wrote is still in the page cache.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=100 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start", "-o", &options]));
    }

    /// Stops it at once (`-m immediate`: like a crash, no checkpoint).
    pub fn halt(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("run a command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_output(command: &mut Command) -> String {
    let out = command.output().expect("run a command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

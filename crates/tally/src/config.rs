//! Loading the config: embedded defaults → file → `TALLY_*` environment → flags, `${VAR}`
//! expansion, then validation that collects every problem (with the key it concerns) instead
//! of stopping at the first. `tally config check` prints exactly what this finds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use tally_collector::config::{IngestConfig, SourceConfig, TagConfig};
use tally_core::consent::{ConsentNeeds, ConsentPolicy, Signal};
use tally_core::event::SourceKind;
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan, UnplannedPolicy};
use tally_core::route::Route;
use tally_core::secret::Secret;
use tally_store::postgres::{PostgresConfig, valid_schema_name};
use tally_store::sqlite::SqliteConfig;
use toml::{Table, Value};

/// The commented default config, built into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../../config/tally.default.toml");

/// One thing wrong with a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`sources[1].key`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a config.
#[derive(Debug)]
pub struct Problems(pub Vec<Problem>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} problem(s) in the config:", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Command-line overrides (the last layer).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// Where the store lives.
#[derive(Clone, Debug)]
pub enum StoreSettings {
    /// Embedded SQLite.
    Sqlite(SqliteConfig),
    /// PostgreSQL, shared by any number of nodes.
    Postgres(PostgresConfig),
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Filter.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configured destination: its connector settings and its routing rules. `Debug` names the
/// connector's settings but never shows their values (tokens, secrets, header values).
#[derive(Clone)]
pub struct DestinationDecl {
    /// Name (deliveries are keyed by it).
    pub name: String,
    /// Kind (`meta_capi`, ...).
    pub kind: String,
    /// Which events go there, how, and under which consent.
    pub route: Route,
    /// Dispatchers working on it at once.
    pub concurrency: usize,
    /// Request budget per second (`None`: unlimited).
    pub max_requests_per_second: Option<u32>,
    /// The connector's own keys (endpoint, credentials, ...), validated by its builder.
    pub settings: Table,
}

impl std::fmt::Debug for DestinationDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationDecl")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("route", &self.route)
            .field("concurrency", &self.concurrency)
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[delivery]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How long a delivery waits for the browser/server twin of its event.
    pub join_window_secs: u64,
    /// How long a dispatcher holds claimed deliveries before another may take them.
    pub lease_secs: u64,
    /// How often an idle dispatcher looks for due deliveries.
    pub idle_poll_ms: u64,
    /// Timeout of one request to a platform.
    pub request_timeout_secs: u64,
    /// Dispatchers per destination unless the destination says otherwise.
    pub concurrency: usize,
    /// How long a visitor's click IDs are attached to their later events.
    pub click_id_ttl_days: u64,
}

/// `[http]`: the HTTP server's connection limits.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a client may take to send a request's headers (also an idle keep-alive
    /// connection's next request) before the connection is closed: slow-loris protection.
    pub header_read_timeout_ms: u64,
}

impl HttpConfig {
    /// [`HttpConfig::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
}

/// The validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Admin token; `None` disables the admin API.
    pub admin_token: Option<Secret>,
    /// Worker threads (0 = per core).
    pub workers: usize,
    /// Store.
    pub store: StoreSettings,
    /// HTTP server limits.
    pub http: HttpConfig,
    /// Request limits.
    pub ingest: IngestConfig,
    /// The browser tag's collector-side settings.
    pub tag: TagConfig,
    /// The tracking plan.
    pub plan: TrackingPlan,
    /// Sources.
    pub sources: Vec<SourceConfig>,
    /// Destinations.
    pub destinations: Vec<DestinationDecl>,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// What to assume for events without consent state.
    pub consent: ConsentPolicy,
    /// Logging.
    pub log: LogConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: String,
    path: String,
    url: Secret,
    schema: String,
    pool_size: usize,
    committers: usize,
    connect_timeout_ms: u64,
    max_group_items: usize,
    queue_capacity: usize,
    enqueue_timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    event_id_window_secs: u64,
    dedup_key_window_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    unplanned: UnplannedPolicy,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "admin_token",
    "workers",
    "store",
    "http",
    "ingest",
    "tag",
    "dedup",
    "plan",
    "log",
    "sources",
    "events",
    "destinations",
    "delivery",
    "consent",
];

/// Loads and validates the config from `file` (if any), the process environment and flags.
///
/// # Errors
/// Every problem found.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Problems> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let file_text = match file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path.display().to_string(), text)),
            Err(e) => {
                return Err(Problems(vec![Problem {
                    key: path.display().to_string(),
                    message: format!("cannot read config file: {e}"),
                }]));
            }
        },
    };
    load_from(
        file_text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        &env,
        overrides,
    )
}

/// [`load`] with the file text and environment given (for tests).
///
/// # Errors
/// Every problem found.
pub fn load_from(
    file: Option<(&str, &str)>,
    env: &BTreeMap<String, String>,
    overrides: &Overrides,
) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let mut table: Table =
        toml::from_str(DEFAULT_TOML).expect("the embedded default config parses");
    if let Some((path, text)) = file {
        match toml::from_str::<Table>(text) {
            Ok(user) => {
                for key in user
                    .keys()
                    .filter(|k| !TOP_LEVEL_KEYS.contains(&k.as_str()))
                {
                    problems.push(problem(
                        key,
                        format!("unknown key (known: {})", TOP_LEVEL_KEYS.join(", ")),
                    ));
                }
                merge(&mut table, user);
            }
            Err(e) => {
                return Err(Problems(vec![Problem {
                    key: path.to_owned(),
                    message: format!("not valid TOML: {e}"),
                }]));
            }
        }
    }
    apply_env(&mut table, env, &mut problems);
    if let Some(listen) = &overrides.listen {
        table.insert("listen".into(), Value::String(listen.clone()));
    }
    if let Some(dir) = &overrides.data_dir {
        table.insert("data_dir".into(), Value::String(dir.display().to_string()));
    }
    expand_table(&mut table, "", env, &mut problems);
    let config = resolve(table, &mut problems);
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(Problems(problems)),
    }
}

fn postgres_config(s: &RawStore, problems: &mut Vec<Problem>) -> PostgresConfig {
    if s.url.is_empty() {
        problems.push(problem(
            "store.url",
            "is required when store.kind = \"postgres\"",
        ));
    } else if !s.url.expose().starts_with("postgres://")
        && !s.url.expose().starts_with("postgresql://")
    {
        // The URL may hold a password: never echo it.
        problems.push(problem(
            "store.url",
            "must be a postgres:// URL (postgres://user:password@host:port/database)",
        ));
    } else if let Err(why) = tally_store::postgres::check_url(s.url.expose()) {
        // sslmode, sslrootcert and the rest, without connecting or reading the CA file; the
        // message never holds the URL.
        problems.push(problem("store.url", why));
    }
    if !s.schema.is_empty() && !valid_schema_name(&s.schema) {
        problems.push(problem(
            "store.schema",
            "must be lowercase letters, digits and underscores, starting with a letter",
        ));
    }
    if s.committers == 0 {
        problems.push(problem("store.committers", "must be greater than 0"));
    } else if s.pool_size <= s.committers {
        problems.push(problem(
            "store.pool_size",
            "must be greater than store.committers (reads need connections too)",
        ));
    }
    let mut c = PostgresConfig::new(s.url.expose());
    c.schema = (!s.schema.is_empty()).then(|| s.schema.clone());
    c.pool_size = s.pool_size.max(1);
    c.committers = s.committers.max(1);
    c.connect_timeout = Duration::from_millis(s.connect_timeout_ms.max(1));
    c.max_group_items = s.max_group_items.max(1);
    c.queue_capacity = s.queue_capacity.max(1);
    c.enqueue_timeout = Duration::from_millis(s.enqueue_timeout_ms);
    c
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
    }
}

/// Tables merge key by key; anything else (arrays of tables included) replaces.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn apply_env(table: &mut Table, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("TALLY_") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        // Only keys that exist in the defaults: other TALLY_* variables (TALLY_CONFIG,
        // test settings) are not config.
        let Some(slot) = lookup_scalar(table, &path) else {
            continue;
        };
        let value = match slot {
            Value::String(_) => Value::String(raw.clone()),
            Value::Integer(_) => match raw.trim().parse::<i64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => {
                    problems.push(problem(
                        format!("{} (from {name})", path.join(".")),
                        "must be a whole number",
                    ));
                    continue;
                }
            },
            Value::Boolean(_) => match raw.trim() {
                "true" | "1" => Value::Boolean(true),
                "false" | "0" => Value::Boolean(false),
                _ => {
                    problems.push(problem(
                        format!("{} (from {name})", path.join(".")),
                        "must be true or false",
                    ));
                    continue;
                }
            },
            _ => continue,
        };
        *slot = value;
    }
}

fn lookup_scalar<'a>(table: &'a mut Table, path: &[String]) -> Option<&'a mut Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get_mut(p)?.as_table_mut()?;
    }
    t.get_mut(last).filter(|v| !v.is_table() && !v.is_array())
}

fn expand_table(
    table: &mut Table,
    prefix: &str,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        expand_value(v, &key, env, problems);
    }
}

fn expand_value(
    v: &mut Value,
    key: &str,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    match v {
        Value::String(s) => match expand_vars(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => problems.push(problem(key, message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), env, problems);
            }
        }
        Value::Table(t) => expand_table(t, key, env, problems),
        _ => {}
    }
}

/// Replaces `${VAR}` and `${VAR:-fallback}`; `$${` is a literal `${`.
fn expand_vars(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unclosed `${` in value".to_owned())?;
        let inner = &after[..end];
        let (name, fallback) = match inner.split_once(":-") {
            Some((n, f)) => (n, Some(f)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{inner}}}` is not a valid variable reference"));
        }
        match (env.get(name), fallback) {
            (Some(v), _) => out.push_str(v),
            (None, Some(f)) => out.push_str(f),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn section<T: DeserializeOwned>(
    table: &Table,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let value = table
        .get(key)
        .cloned()
        .unwrap_or(Value::Table(Table::new()));
    deserialize(value, key, problems)
}

fn deserialize<T: DeserializeOwned>(
    value: Value,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let full = if path == "." || path.is_empty() {
                key.to_owned()
            } else {
                format!("{key}.{path}")
            };
            problems.push(problem(full, e.into_inner().to_string()));
            None
        }
    }
}

fn list<T: DeserializeOwned>(table: &Table, key: &str, problems: &mut Vec<Problem>) -> Vec<T> {
    match table.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| deserialize(item.clone(), &format!("{key}[{i}]"), problems))
            .collect(),
        Some(_) => {
            problems.push(problem(
                key,
                format!("must be a list of tables ([[{key}]])"),
            ));
            Vec::new()
        }
    }
}

fn resolve(table: Table, problems: &mut Vec<Problem>) -> Option<Config> {
    let text = |key: &str, problems: &mut Vec<Problem>| -> Option<String> {
        match table.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                problems.push(problem(key, "must be a string"));
                None
            }
            None => None,
        }
    };
    let listen = text("listen", problems).and_then(|l| match l.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(problem(
                "listen",
                format!("`{l}` is not an address like 127.0.0.1:8080"),
            ));
            None
        }
    });
    let data_dir = text("data_dir", problems).map(PathBuf::from);
    let admin_token = text("admin_token", problems)
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        problems.push(problem("admin_token", "must be at least 16 characters"));
    }
    let workers = match table.get("workers") {
        Some(Value::Integer(n)) if (0..=1024).contains(n) => Some(*n as usize),
        _ => {
            problems.push(problem("workers", "must be a whole number from 0 to 1024"));
            None
        }
    };
    let raw_store: Option<RawStore> = section(&table, "store", problems);
    let http: Option<HttpConfig> = section(&table, "http", problems);
    if http.as_ref().is_some_and(|h| h.header_read_timeout_ms == 0) {
        problems.push(problem(
            "http.header_read_timeout_ms",
            "must be greater than 0",
        ));
    }
    let ingest: Option<IngestConfig> = section(&table, "ingest", problems);
    let tag: Option<TagConfig> = section(&table, "tag", problems);
    if let Some(t) = &tag {
        validate_tag(t, problems);
    }
    let dedup: Option<RawDedup> = section(&table, "dedup", problems);
    let plan_settings: Option<RawPlan> = section(&table, "plan", problems);
    let log: Option<LogConfig> = section(&table, "log", problems);
    let sources: Vec<SourceConfig> = list(&table, "sources", problems);
    let events: Vec<EventPlanConfig> = list(&table, "events", problems);
    let delivery: Option<DeliveryConfig> = section(&table, "delivery", problems);
    let consent = resolve_consent(&table, problems);

    validate_sources(&sources, problems);
    if let Some(i) = &ingest {
        for (key, v) in [
            ("max_body_bytes", i.max_body_bytes),
            ("max_browser_body_bytes", i.max_browser_body_bytes),
            ("max_event_bytes", i.max_event_bytes),
            ("max_batch_events", i.max_batch_events),
            ("body_read_timeout_ms", i.body_read_timeout_ms as usize),
        ] {
            if v == 0 {
                problems.push(problem(format!("ingest.{key}"), "must be greater than 0"));
            }
        }
    }
    let store = match (&raw_store, &data_dir) {
        (Some(s), Some(dir)) => match s.kind.as_str() {
            "sqlite" => {
                let path = if s.path.is_empty() {
                    dir.join("tally.db")
                } else {
                    PathBuf::from(&s.path)
                };
                let mut c = SqliteConfig::new(path);
                c.max_group_items = s.max_group_items.max(1);
                c.queue_capacity = s.queue_capacity.max(1);
                c.enqueue_timeout = Duration::from_millis(s.enqueue_timeout_ms);
                Some(StoreSettings::Sqlite(c))
            }
            "postgres" => Some(StoreSettings::Postgres(postgres_config(s, problems))),
            other => {
                problems.push(problem(
                    "store.kind",
                    format!("`{other}` is not one of sqlite, postgres"),
                ));
                None
            }
        },
        _ => None,
    };
    let plan = match (dedup, plan_settings) {
        (Some(d), Some(p)) => {
            let settings = PlanSettings {
                unplanned: p.unplanned,
                event_id_window_ms: (d.event_id_window_secs as i64).saturating_mul(1000),
                dedup_key_window_ms: (d.dedup_key_window_secs as i64).saturating_mul(1000),
            };
            match TrackingPlan::new(events, settings) {
                Ok(plan) => Some(plan),
                Err(list) => {
                    problems.extend(list.into_iter().map(|(k, m)| problem(k, m)));
                    None
                }
            }
        }
        _ => None,
    };
    let destinations = match (&plan, &delivery) {
        (Some(plan), Some(delivery)) => resolve_destinations(&table, plan, delivery, problems),
        _ => Vec::new(),
    };
    if let Some(d) = &delivery {
        if d.lease_secs.saturating_mul(3) / 4 <= d.request_timeout_secs {
            problems.push(problem(
                "delivery.lease_secs",
                format!(
                    "must be well above request_timeout_secs ({}): a send is abandoned after three quarters of the lease",
                    d.request_timeout_secs
                ),
            ));
        }
        for (key, v) in [
            ("lease_secs", d.lease_secs),
            ("idle_poll_ms", d.idle_poll_ms),
            ("request_timeout_secs", d.request_timeout_secs),
            ("concurrency", d.concurrency as u64),
        ] {
            if v == 0 {
                problems.push(problem(format!("delivery.{key}"), "must be greater than 0"));
            }
        }
    }
    Some(Config {
        listen: listen?,
        data_dir: data_dir?,
        admin_token,
        workers: workers?,
        store: store?,
        http: http?,
        ingest: ingest?,
        tag: tag?,
        plan: plan?,
        sources,
        destinations,
        delivery: delivery?,
        consent: consent?,
        log: log?,
    })
}

fn validate_tag(tag: &TagConfig, problems: &mut Vec<Problem>) {
    // A cookie name is an RFC 6265 token; tally.js and the collector must agree on it.
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if tag.cookie_name.is_empty() || !tag.cookie_name.chars().all(token) {
        problems.push(problem(
            "tag.cookie_name",
            "must be a cookie name: letters, digits and !#$%&'*+-.^_`|~",
        ));
    }
    let domain = tag.cookie_domain.trim_start_matches('.');
    if !domain.is_empty()
        && (!domain.contains('.')
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        problems.push(problem(
            "tag.cookie_domain",
            format!("`{domain}` is not a site domain like shop.example"),
        ));
    }
    if !(1..=400).contains(&tag.cookie_max_age_days) {
        problems.push(problem(
            "tag.cookie_max_age_days",
            "must be from 1 to 400 (browsers cap cookies at 400 days)",
        ));
    }
}

fn validate_sources(sources: &[SourceConfig], problems: &mut Vec<Problem>) {
    let mut names = BTreeMap::new();
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        let key = format!("sources[{i}]");
        if s.name.trim().is_empty() {
            problems.push(problem(format!("{key}.name"), "must not be empty"));
        } else if let Some(prev) = names.insert(s.name.as_str(), i) {
            problems.push(problem(
                format!("{key}.name"),
                format!("`{}` is also the name of sources[{prev}]", s.name),
            ));
        }
        if s.key.expose().len() < 8 {
            problems.push(problem(
                format!("{key}.key"),
                "must be at least 8 characters",
            ));
        } else if let Some(prev) = keys.insert(s.key.expose(), i) {
            problems.push(problem(
                format!("{key}.key"),
                format!("is the same key as sources[{prev}]"),
            ));
        }
        match s.kind {
            SourceKind::Browser if s.allowed_origins.is_empty() => problems.push(problem(
                format!("{key}.allowed_origins"),
                "a browser source needs at least one origin (\"https://shop.example\", or \"*\")",
            )),
            SourceKind::Server if !s.allowed_origins.is_empty() => problems.push(problem(
                format!("{key}.allowed_origins"),
                "server sources are not used from browsers; remove allowed_origins",
            )),
            _ => {}
        }
        for (j, o) in s.allowed_origins.iter().enumerate() {
            let host = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            let ok = o == "*" || host.is_some_and(|h| !h.is_empty() && !h.contains('/'));
            if !ok {
                problems.push(problem(
                    format!("{key}.allowed_origins[{j}]"),
                    format!("`{o}` is not an origin like https://shop.example (scheme and host, no path)"),
                ));
            }
        }
        if s.rate_limit_per_sec == Some(0) {
            problems.push(problem(
                format!("{key}.rate_limit_per_sec"),
                "must be at least 1 (or unset for no limit)",
            ));
        }
    }
}

/// The keys every destination has; the rest belong to its connector.
const COMMON_DESTINATION_KEYS: &[&str] = &[
    "name",
    "kind",
    "enabled",
    "events",
    "value_property",
    "consent",
    "test_mode",
    "require_test_conversion",
    "concurrency",
    "max_requests_per_second",
    "join_window_secs",
    "max_age_days",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    name: String,
    kind: String,
    #[serde(default = "yes")]
    enabled: bool,
    events: Option<BTreeMap<String, String>>,
    value_property: Option<String>,
    #[serde(default)]
    consent: RawConsentNeeds,
    #[serde(default)]
    test_mode: bool,
    #[serde(default = "yes")]
    require_test_conversion: bool,
    concurrency: Option<usize>,
    max_requests_per_second: Option<u32>,
    join_window_secs: Option<u64>,
    max_age_days: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsentNeeds {
    requires: Option<Vec<String>>,
    without_identifiers: Option<Vec<String>>,
    tcf_vendor_id: Option<u16>,
}

/// Events older than this are not sent to a destination kind without its own limit (a webhook).
const DEFAULT_MAX_AGE_DAYS: u64 = 30;

fn resolve_destinations(
    table: &Table,
    plan: &TrackingPlan,
    delivery: &DeliveryConfig,
    problems: &mut Vec<Problem>,
) -> Vec<DestinationDecl> {
    let Some(value) = table.get("destinations") else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(problem(
            "destinations",
            "must be a list of tables ([[destinations]])",
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("destinations[{i}]");
        let Some(t) = item.as_table() else {
            problems.push(problem(&key, "must be a table"));
            continue;
        };
        let (common, settings): (Table, Table) = t
            .clone()
            .into_iter()
            .partition(|(k, _)| COMMON_DESTINATION_KEYS.contains(&k.as_str()));
        let Some(raw) = deserialize::<RawDestination>(Value::Table(common), &key, problems) else {
            continue;
        };
        if raw.name.trim().is_empty() {
            problems.push(problem(format!("{key}.name"), "must not be empty"));
        } else if let Some(prev) = names.insert(raw.name.clone(), i) {
            problems.push(problem(
                format!("{key}.name"),
                format!("`{}` is also the name of destinations[{prev}]", raw.name),
            ));
        }
        if !tally_destinations::KINDS.contains(&raw.kind.as_str()) {
            problems.push(problem(
                format!("{key}.kind"),
                format!(
                    "`{}` is not one of {}",
                    raw.kind,
                    tally_destinations::KINDS.join(", ")
                ),
            ));
            continue;
        }
        if let Err(e) = tally_destinations::validate(&raw.kind, &raw.name, settings.clone()) {
            match e {
                tally_destinations::DestinationError::Config { key: k, message } => {
                    problems.push(problem(format!("{key}.{k}"), message));
                }
                other => problems.push(problem(&key, other.to_string())),
            }
        }
        let events: BTreeMap<String, String> = match raw.events {
            Some(map) => {
                for (event, platform) in &map {
                    if plan.event(event).is_none() {
                        problems.push(problem(
                            format!("{key}.events.{event}"),
                            "is not an event in the tracking plan ([[events]])",
                        ));
                    }
                    if platform.trim().is_empty() {
                        problems.push(problem(
                            format!("{key}.events.{event}"),
                            "needs the platform's event name",
                        ));
                    }
                }
                map
            }
            None => tally_destinations::default_events(&raw.kind)
                .iter()
                .filter(|(ours, _)| plan.event(ours).is_some_and(|e| e.config.conversion))
                .map(|(ours, theirs)| ((*ours).to_owned(), (*theirs).to_owned()))
                .collect(),
        };
        let value_properties = events
            .keys()
            .filter_map(|event| {
                let property = raw
                    .value_property
                    .clone()
                    .or_else(|| plan.event(event)?.config.value_property.clone())?;
                Some((event.clone(), property))
            })
            .collect();
        let mut consent = ConsentNeeds::for_kind(&raw.kind);
        let mut signals = |list: Option<Vec<String>>, field: &str| -> Option<Vec<Signal>> {
            let list = list?;
            let mut out = Vec::new();
            for (j, name) in list.iter().enumerate() {
                match Signal::parse(name) {
                    Some(s) => out.push(s),
                    None => problems.push(problem(
                        format!("{key}.consent.{field}[{j}]"),
                        format!(
                            "`{name}` is not one of ad_storage, analytics_storage, ad_user_data, ad_personalization"
                        ),
                    )),
                }
            }
            Some(out)
        };
        if let Some(required) = signals(raw.consent.requires, "requires") {
            consent.required = required;
        }
        if let Some(stripped) = signals(raw.consent.without_identifiers, "without_identifiers") {
            consent.identifiers_need = stripped;
        }
        consent.tcf_vendor_id = raw.consent.tcf_vendor_id;
        let max_age = match raw.max_age_days {
            Some(days) => Duration::from_secs(days * 86_400),
            None => tally_core::retry::acceptance_window(&raw.kind)
                .unwrap_or(Duration::from_secs(DEFAULT_MAX_AGE_DAYS * 86_400)),
        };
        let concurrency = raw.concurrency.unwrap_or(delivery.concurrency);
        if concurrency == 0 {
            problems.push(problem(format!("{key}.concurrency"), "must be at least 1"));
        }
        if raw.max_requests_per_second == Some(0) {
            problems.push(problem(
                format!("{key}.max_requests_per_second"),
                "must be at least 1 (or unset for no limit)",
            ));
        }
        if !raw.enabled {
            continue;
        }
        out.push(DestinationDecl {
            route: Route {
                destination: raw.name.clone(),
                kind: raw.kind.clone(),
                events,
                value_properties,
                consent,
                test_mode: raw.test_mode,
                require_test_conversion: raw.require_test_conversion,
                join_window_ms: (raw.join_window_secs.unwrap_or(delivery.join_window_secs) as i64)
                    .saturating_mul(1000),
                max_age_ms: max_age.as_millis() as i64,
            },
            name: raw.name,
            kind: raw.kind,
            concurrency: concurrency.max(1),
            max_requests_per_second: raw.max_requests_per_second,
            settings,
        });
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsent {
    default: String,
    #[serde(default)]
    regions: BTreeMap<String, String>,
}

fn resolve_consent(table: &Table, problems: &mut Vec<Problem>) -> Option<ConsentPolicy> {
    let raw: RawConsent = section(table, "consent", problems)?;
    let granted = |value: &str, key: String, problems: &mut Vec<Problem>| match value {
        "granted" => Some(true),
        "denied" => Some(false),
        other => {
            problems.push(problem(
                key,
                format!("`{other}` is not \"granted\" or \"denied\""),
            ));
            None
        }
    };
    let default_granted = granted(&raw.default, "consent.default".into(), problems);
    let mut regions = BTreeMap::new();
    for (region, value) in &raw.regions {
        let region = region.to_ascii_lowercase();
        let key = format!("consent.regions.{region}");
        if region != "eea" && !(region.len() == 2 && region.bytes().all(|b| b.is_ascii_lowercase()))
        {
            problems.push(problem(
                &key,
                "must be a two-letter country code (\"de\") or \"eea\"",
            ));
            continue;
        }
        if let Some(g) = granted(value, key, problems) {
            regions.insert(region, g);
        }
    }
    Some(ConsentPolicy {
        default_granted: default_granted?,
        regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load_and_match_the_documented_values() {
        let c = load_from(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./tally-data"));
        assert!(c.admin_token.is_none());
        assert_eq!(c.ingest, IngestConfig::default());
        assert_eq!(c.tag, TagConfig::default());
        assert_eq!(c.http.header_read_timeout(), Duration::from_secs(10));
        let StoreSettings::Sqlite(s) = &c.store else {
            panic!("sqlite by default")
        };
        assert_eq!(s, &SqliteConfig::new("./tally-data/tally.db"));
        assert_eq!(c.plan.settings(), &PlanSettings::default());
        assert!(c.plan.event("purchase").is_some());
        assert_eq!(c.sources.len(), 2);
    }

    #[test]
    fn postgres_store_settings_are_read_and_checked() {
        let file = r#"
            [store]
            kind = "postgres"
            url = "${DB_URL}"
            schema = "shop_one"
            pool_size = 8
            committers = 3
            connect_timeout_ms = 1500
        "#;
        let url = "postgres://tally:pw-secret-1234@db.internal:5432/tally";
        let c = load_from(
            Some(("f", file)),
            &env(&[("DB_URL", url)]),
            &Overrides::default(),
        )
        .unwrap();
        let StoreSettings::Postgres(p) = &c.store else {
            panic!("postgres selected")
        };
        assert_eq!(p.url.expose(), url);
        assert_eq!(p.schema.as_deref(), Some("shop_one"));
        assert_eq!((p.pool_size, p.committers), (8, 3));
        assert_eq!(p.connect_timeout, Duration::from_millis(1500));
        assert!(!format!("{c:?}").contains("pw-secret-1234"));

        let bad = r#"
            [store]
            kind = "postgres"
            url = "mysql://root:pw-secret-1234@db/x"
            schema = "Shop-One"
            pool_size = 2
            committers = 2
        "#;
        let err = load_from(Some(("f", bad)), &env(&[]), &Overrides::default()).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["store.url", "store.schema", "store.pool_size"]);
        assert!(!err.to_string().contains("pw-secret-1234"), "{err}");
    }

    #[test]
    fn store_url_tls_parameters_are_checked_by_config_check() {
        let config = |url: &str| {
            let file = format!("[store]\nkind = \"postgres\"\nurl = \"{url}\"\n");
            load_from(Some(("f", &file)), &env(&[]), &Overrides::default())
        };
        let good = "postgres://tally:pw-secret-1234@db.internal/tally?sslmode=verify-full\
                    &sslrootcert=/etc/tally/db-ca.pem";
        let c = config(good).unwrap();
        let StoreSettings::Postgres(p) = &c.store else {
            panic!("postgres selected")
        };
        // The store reads the parameters itself when it opens.
        assert_eq!(p.url.expose(), good);

        for url in [
            "postgres://tally:pw-secret-1234@db/tally?sslmode=verify_full",
            "postgres://tally:pw-secret-1234@db/tally?sslmode=verify-ca",
            "postgres://tally:pw-secret-1234@db/tally?sslmode=disable&sslrootcert=/ca.pem",
        ] {
            let err = config(url).unwrap_err();
            let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, ["store.url"], "{url}");
            let text = err.to_string();
            assert!(text.contains("sslmode"), "{text}");
            assert!(!text.contains("pw-secret-1234"), "{text}");
        }
    }

    #[test]
    fn the_product_sample_config_loads() {
        let sample = include_str!("../../../config/examples/single-node.toml");
        let c = load_from(
            Some(("sample", sample)),
            &env(&[
                ("TALLY_ADMIN_TOKEN", "admin-token-0123456789"),
                ("META_ACCESS_TOKEN", "t"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.sources[0].allowed_origins, ["https://shop.example"]);
        assert_eq!(c.destinations[0].kind, "meta_capi");
        assert!(c.plan.event("lead").is_some());
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        let file = "listen = \"127.0.0.1:9000\"\n[ingest]\nmax_event_bytes = 1000\n";
        let e = env(&[
            ("TALLY_LISTEN", "127.0.0.1:9100"),
            ("TALLY_INGEST__MAX_EVENT_BYTES", "2000"),
        ]);
        let c = load_from(Some(("f", file)), &e, &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.ingest.max_event_bytes, 2000);
        let flags = Overrides {
            listen: Some("127.0.0.1:9200".into()),
            data_dir: None,
        };
        let c = load_from(Some(("f", file)), &e, &flags).unwrap();
        assert_eq!(c.listen.port(), 9200);
    }

    #[test]
    fn destinations_are_checked_key_by_key_including_the_connector_s_own() {
        let file = r#"
            [delivery]
            lease_secs = 20
            [consent]
            default = "maybe"
            regions = { europe = "denied", fr = "denied" }
            [[destinations]]
            name = "meta"
            kind = "meta_capi"
            pixel_id = "not-digits"
            access_token = "EAAB-secret-token"
            events = { purchase = "Purchase", refund = "Refund" }
            consent = { requires = ["ad_clicks"] }
            [[destinations]]
            name = "meta"
            kind = "ga4"
            measurement_id = "G-ABC123"
            api_secret = "s"
            colour = "blue"
        "#;
        let err = load_from(Some(("f", file)), &env(&[]), &Overrides::default()).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "delivery.lease_secs",
            "consent.default",
            "consent.regions.europe",
            "destinations[0].pixel_id",
            "destinations[0].events.refund",
            "destinations[0].consent.requires[0]",
            "destinations[1].name",
            "destinations[1].colour",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
        }
        assert!(!keys.contains(&"consent.regions.fr"));
        assert!(!err.to_string().contains("EAAB-secret-token"), "{err}");
    }

    #[test]
    fn a_loaded_config_never_shows_a_credential_in_debug() {
        let file = r#"
            admin_token = "admin-token-0123456789"
            [[sources]]
            name = "api"
            kind = "server"
            key = "sk_live_0123456789"
            [[destinations]]
            name = "hook"
            kind = "webhook"
            url = "https://hooks.example.com/tally"
            secret = "whsec-0123456789abcdef"
            headers = { Authorization = "Bearer rcv-0123456789" }
        "#;
        let c = load_from(Some(("f", file)), &env(&[]), &Overrides::default()).unwrap();
        let shown = format!("{c:?}");
        for secret in [
            "admin-token-0123456789",
            "sk_live_0123456789",
            "whsec-0123456789abcdef",
            "rcv-0123456789",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("\"secret\""),
            "the settings are named: {shown}"
        );
    }

    #[test]
    fn a_destination_without_events_gets_the_kind_s_names_for_the_plan_s_conversions() {
        let file = r#"
            [[destinations]]
            name = "tiktok"
            kind = "tiktok"
            pixel_code = "CABC123"
            access_token = "t"
            [[destinations]]
            name = "off"
            kind = "webhook"
            url = "https://hooks.example/tally"
            secret = "0123456789abcdef"
            enabled = false
        "#;
        let c = load_from(Some(("f", file)), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.destinations.len(), 1, "a disabled destination is not run");
        let route = &c.destinations[0].route;
        assert_eq!(route.platform_name("purchase"), Some("CompletePayment"));
        assert_eq!(route.platform_name("lead"), Some("SubmitForm"));
        assert_eq!(
            route.platform_name("add_to_cart"),
            None,
            "not a conversion in the default plan"
        );
        assert_eq!(route.join_window_ms, 5_000);
        assert_eq!(route.max_age_ms, 7 * 86_400_000);
        assert_eq!(route.consent, ConsentNeeds::for_kind("tiktok"));
    }

    #[test]
    fn reports_every_problem_with_its_key_and_never_a_secret() {
        let file = r#"
            listen = "nowhere"
            admin_token = "${MISSING_TOKEN}"
            colour = "blue"
            [store]
            kind = "mysql"
            [ingest]
            max_event_bytes = "big"
            [[sources]]
            name = "web"
            kind = "browser"
            key = "pk_secret_value_123"
            [[sources]]
            name = "web"
            kind = "server"
            key = "pk_secret_value_123"
            [[events]]
            name = "purchase"
            dedup_key = 7
            [[destinations]]
            name = "fb"
            kind = "facebook"
        "#;
        let err = load_from(Some(("f", file)), &env(&[]), &Overrides::default()).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "colour",
            "admin_token",
            "listen",
            "store.kind",
            "ingest.max_event_bytes",
            "sources[0].allowed_origins",
            "sources[1].name",
            "sources[1].key",
            "events[0].dedup_key",
            "destinations[0].kind",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
        }
        assert!(!err.to_string().contains("pk_secret_value_123"), "{err}");
    }

    #[test]
    fn expands_variables_with_fallbacks_and_escapes() {
        let e = env(&[("A", "x")]);
        assert_eq!(expand_vars("${A}-${B:-y}-$${C}", &e).unwrap(), "x-y-${C}");
        assert!(
            expand_vars("${B}", &e)
                .unwrap_err()
                .contains("B is not set")
        );
    }

    #[test]
    fn a_file_s_sources_replace_the_demo_sources() {
        let file = "[[sources]]\nname = \"api\"\nkind = \"server\"\nkey = \"sk_live_0123456789\"\n";
        let c = load_from(Some(("f", file)), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].name, "api");
    }
}

//! Assembling a running tally from a validated [`Config`]: the store, the collector state and
//! the router; and serving it until shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use tower::Service;

use anyhow::Context;
use tally_collector::delivery::DeliveryPlanner;
use tally_collector::metrics::Metrics;
use tally_collector::pipeline::Pipeline;
use tally_collector::sources::Sources;
use tally_collector::{CollectorState, router};
use tally_core::clock::{Clock, SystemClock};
use tally_core::retry::RetryPolicy;
use tally_outbox::{Dispatcher, DispatcherConfig, request_limiter};
use tally_store::Store;
use tally_store::postgres::PostgresStore;
use tally_store::sqlite::SqliteStore;
use tokio::net::TcpListener;

use crate::config::{Config, StoreSettings};

/// A built application, ready to serve.
pub struct App {
    /// The router with every route.
    pub router: axum::Router,
    /// The store (to close on shutdown).
    pub store: Arc<dyn Store>,
    /// The collector state (pipeline for replay).
    pub state: CollectorState,
    /// One or more dispatchers per destination, started by [`serve`].
    pub dispatchers: Vec<Dispatcher>,
    /// How long shutdown waits for dispatchers to finish the round they are in.
    pub dispatcher_grace: Duration,
    /// How long a client may take to send a request's headers (slow-loris protection).
    pub header_read_timeout: Duration,
}

/// Opens the store named by the config, applying migrations.
///
/// # Errors
/// When the store cannot be opened: an unreachable database, a schema newer than this binary.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.store {
        StoreSettings::Sqlite(c) => {
            let store = SqliteStore::open(c.clone())
                .with_context(|| format!("opening the SQLite store at {}", c.path.display()))?;
            Ok(Arc::new(store))
        }
        StoreSettings::Postgres(c) => {
            let store = PostgresStore::open(c.clone())
                .await
                .context("opening the PostgreSQL store (store.url)")?;
            Ok(Arc::new(store))
        }
    }
}

/// Builds the application on an opened store: the collector and a dispatcher per destination.
///
/// # Errors
/// When a destination's connector cannot be built.
pub fn build(config: &Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let delivery = DeliveryPlanner {
        routes: config
            .destinations
            .iter()
            .map(|d| d.route.clone())
            .collect(),
        click_id_ttl_ms: (config.delivery.click_id_ttl_days as i64).saturating_mul(86_400_000),
        consent: config.consent.clone(),
    };
    let pipeline = Pipeline {
        store: store.clone(),
        plan: Arc::new(config.plan.clone()),
        limits: config.ingest.parse_limits(),
        max_event_bytes: config.ingest.max_event_bytes,
        delivery: Arc::new(delivery),
    };
    let dispatchers = dispatchers(config, &store, &clock)?;
    let state = CollectorState {
        pipeline,
        sources: Sources::new(config.sources.clone()),
        ingest: Arc::new(config.ingest.clone()),
        tag: Arc::new(config.tag.clone()),
        admin_token: config.admin_token.clone(),
        clock,
        metrics: Arc::new(Metrics::default()),
        container_scripts: Default::default(),
    };
    Ok(App {
        router: router(state.clone()),
        store,
        state,
        dispatchers,
        dispatcher_grace: Duration::from_secs(config.delivery.request_timeout_secs + 1),
        header_read_timeout: config.http.header_read_timeout(),
    })
}

fn dispatchers(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Vec<Dispatcher>> {
    let client = tally_destinations::http::client(Duration::from_secs(
        config.delivery.request_timeout_secs,
    ))?;
    // Lease owners must differ between processes sharing a store.
    let node = uuid::Uuid::new_v4().simple().to_string();
    let mut out = Vec::new();
    for d in &config.destinations {
        let destination =
            tally_destinations::build(&d.kind, &d.name, d.settings.clone(), &client, clock.clone())
                .with_context(|| format!("destination `{}`", d.name))?;
        let limiter = d
            .max_requests_per_second
            .and_then(std::num::NonZeroU32::new)
            .map(request_limiter);
        for i in 0..d.concurrency {
            let dispatcher = Dispatcher::new(
                store.clone(),
                destination.clone(),
                clock.clone(),
                DispatcherConfig {
                    owner: format!("{}/{}/{i}", &node[..12], d.name),
                    lease: Duration::from_secs(config.delivery.lease_secs),
                    idle_poll: Duration::from_millis(config.delivery.idle_poll_ms),
                    retry: RetryPolicy::default(),
                    route: d.route.clone(),
                    consent: config.consent.clone(),
                },
            );
            out.push(match &limiter {
                Some(l) => dispatcher.with_limiter(l.clone()),
                None => dispatcher,
            });
        }
    }
    Ok(out)
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests, closes
/// idle connections and flushes the store.
///
/// The accept loop is ours rather than `axum::serve` so connections are plain HTTP/1.1 (no
/// protocol sniffing on every connection), get `TCP_NODELAY`, and have a header read timeout
/// (`[http] header_read_timeout_ms`, which also closes idle keep-alive connections).
///
/// # Errors
/// When serving fails.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_dispatchers, stopping) = tokio::sync::watch::channel(false);
    let delivery = delivery_runtime()?;
    let running: Vec<_> = app
        .dispatchers
        .into_iter()
        .map(|d| {
            let mut stopping = stopping.clone();
            delivery.spawn(d.run(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            }))
        })
        .collect();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = app.router.clone();
                let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let mut router = router.clone();
                    async move { router.call(req.map(axum::body::Body::new)).await }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "Connection ended with an error.");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    // Dispatchers finish the round they are in (a lease covers any that do not).
    let _ = stop_dispatchers.send(true);
    let _ = tokio::time::timeout(app.dispatcher_grace, futures::future::join_all(running)).await;
    delivery.shutdown_background();
    app.store.close().await;
    Ok(())
}

/// Niceness of the delivery threads: when ingest and delivery compete for a core, the kernel
/// gives ingest about 90 % of it (scheduler weights 1024 against 110), while a core ingest
/// leaves idle still goes to delivery in full.
pub const DELIVERY_NICENESS: i32 = 10;

/// The runtime dispatchers run on: threads of their own at a lower CPU priority, so delivery
/// work (request bodies, TLS, HTTP) never makes an ingest request wait for a busy core. A
/// delivery can wait milliseconds; the page or backend sending an event should not.
fn delivery_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("tally-delivery")
        .on_thread_start(lower_thread_priority)
        .enable_all()
        .build()
}

fn lower_thread_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    // The crate maps 0..=99 linearly onto niceness 19..=-20; 22 is niceness 10.
    let value = ThreadPriorityValue::try_from(22u8).expect("22 is within 0..=99");
    if let Err(e) = set_current_thread_priority(ThreadPriority::Crossplatform(value)) {
        tracing::warn!(error = ?e, "Could not lower the delivery threads' priority; delivery competes with ingest for CPU.");
    }
}

/// Starts tally with `config` on the system clock: opens the store, binds, prints where it
/// listens, and serves until SIGTERM or Ctrl-C.
///
/// # Errors
/// When the store cannot be opened or the address cannot be bound.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let app = build(&config, store, Arc::new(SystemClock))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    for s in &config.sources {
        if s.key.expose().ends_with("_demo") {
            tracing::warn!(source = %s.name, "Source uses a demo key from the default config; replace it before production.");
        }
    }
    let live: Vec<String> = app_live_destinations(&app).await;
    for d in &config.destinations {
        tracing::info!(destination = %d.name, kind = %d.kind, events = ?d.route.events, test_mode = d.route.test_mode, "Delivering.");
        if d.route.require_test_conversion && !live.contains(&d.name) {
            tracing::warn!(destination = %d.name, "Only test events go out until a test conversion passes: run `tally test-conversion --destination {}`; live events wait meanwhile.", d.name);
        }
    }
    println!("tally listening on http://{addr}");
    tracing::info!(%addr, store = ?config.store, "Serving.");
    serve(app, listener, shutdown_signal()).await
}

async fn app_live_destinations(app: &App) -> Vec<String> {
    match app.store.destination_stats().await {
        Ok(stats) => stats
            .into_iter()
            .filter(|s| s.live_since.is_some())
            .map(|s| s.destination)
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("Shutting down: finishing in-flight requests.");
}

#[cfg(test)]
mod delivery_priority_tests {
    use super::*;

    /// The niceness of the calling thread, from the kernel's own account.
    fn own_niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("linux /proc");
        // Fields after the parenthesised command name; niceness is field 19 overall.
        let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
        after_name
            .split(' ')
            .nth(16)
            .expect("nice field")
            .parse()
            .expect("a number")
    }

    #[test]
    fn delivery_threads_run_at_lower_priority_than_ingest() {
        let ingest = own_niceness();
        let runtime = delivery_runtime().expect("runtime");
        let delivery = runtime
            .block_on(async { tokio::spawn(async { own_niceness() }).await })
            .expect("task");
        if ingest < DELIVERY_NICENESS {
            assert_eq!(delivery, DELIVERY_NICENESS);
        }
        runtime.shutdown_background();
    }
}

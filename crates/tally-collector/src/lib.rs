//! tally's HTTP ingestion: the event doors of PRODUCT.md §2, the admin API, and the
//! [`pipeline`] that turns request bodies into durably stored events.
//!
//! Not here: listening on sockets and shutdown (the `tally` binary), delivery (the outbox).
//! The collector never calls a destination.

pub mod api_error;
pub mod body;
pub mod config;
pub mod cookie;
pub mod delivery;
pub mod metrics;
pub mod pipeline;
pub mod routes;
pub mod sources;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use state::CollectorState;

/// The collector's routes.
pub fn router(state: CollectorState) -> Router {
    use routes::{admin, consent, container, erase, events, health, tag};
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/tally.js", get(tag::tally_js))
        .route("/v1/events", post(events::server_events))
        .route(
            "/v1/collect",
            post(events::browser_collect).options(events::browser_preflight),
        )
        .route("/v1/track", post(events::segment_track))
        .route("/v1/page", post(events::segment_page))
        .route("/v1/identify", post(events::segment_identify))
        .route("/v1/batch", post(events::segment_batch))
        .route("/v1/ledger/{event_id}", get(admin::ledger))
        .route("/v1/quarantine", get(admin::quarantine))
        .route("/v1/quarantine/replay", post(admin::replay))
        .route("/v1/stats/dedup", get(admin::dedup_stats))
        .route("/v1/destinations", get(admin::destinations))
        .route("/v1/destinations/{name}/live", post(admin::go_live))
        .route("/v1/deliveries", get(admin::deliveries))
        .route("/v1/deliveries/replay", post(admin::replay_deliveries))
        .route("/v1/consent/revoke", post(consent::revoke))
        .route("/v1/erase", post(erase::erase))
        .route("/v1/container.js", get(container::container_js))
        .route(
            "/v1/containers/{name}/draft",
            get(container::get_draft).put(container::put_draft),
        )
        .route("/v1/containers/{name}/diff", get(container::diff))
        .route("/v1/containers/{name}/publish", post(container::publish))
        .route("/v1/containers/{name}/versions", get(container::versions))
        .route(
            "/v1/containers/{name}/versions/{version}",
            get(container::version),
        )
        .route("/v1/containers/{name}/rollback", post(container::rollback))
        .route("/v1/containers/{name}/preview", post(container::preview))
        // Body limits are enforced per door after decompression (see `body::read`).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

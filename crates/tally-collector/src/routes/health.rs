//! `/healthz` and `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::fmt::Write as _;

use tally_store::DestinationStats;

use crate::state::CollectorState;

/// `GET /healthz`: 200 when the store can accept events, 503 otherwise.
pub async fn healthz(State(state): State<CollectorState>) -> Response {
    match state.pipeline.store.ready().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format: the collector's counters, and the outbox's
/// deliveries per destination and state read from the store (so every node reports the same
/// figures, and `withheld` is the consent gap).
pub async fn metrics(State(state): State<CollectorState>) -> Response {
    let mut text = state.metrics.render();
    match state.pipeline.store.destination_stats().await {
        Ok(stats) => {
            let body = text.strip_suffix("# EOF\n").unwrap_or(&text).to_owned();
            text = body + &deliveries_gauge(&stats) + "# EOF\n";
        }
        Err(e) => tracing::warn!(error = %e, "Delivery figures left out of /metrics."),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn deliveries_gauge(stats: &[DestinationStats]) -> String {
    let mut out = String::from(
        "# HELP tally_outbox_deliveries Deliveries by destination and state (withheld: not sent for lack of consent).\n\
         # TYPE tally_outbox_deliveries gauge\n",
    );
    for s in stats {
        let name = s.destination.replace('\\', "\\\\").replace('"', "\\\"");
        for (state, n) in [
            ("pending", s.pending),
            ("delivered", s.delivered),
            ("dead", s.dead),
            ("needs_fix", s.needs_fix),
            ("withheld", s.withheld),
        ] {
            let _ = writeln!(
                out,
                "tally_outbox_deliveries{{destination=\"{name}\",state=\"{state}\"}} {n}"
            );
        }
    }
    out
}

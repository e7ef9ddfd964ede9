//! Router-level tests with `oneshot` (no sockets): behaviour that needs a store that fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tally_collector::config::{IngestConfig, SourceConfig};
use tally_collector::metrics::Metrics;
use tally_collector::pipeline::Pipeline;
use tally_collector::sources::Sources;
use tally_collector::{CollectorState, router};
use tally_core::clock::SystemClock;
use tally_core::event::SourceKind;
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan};
use tally_core::secret::Secret;
use tally_core::timestamp::Timestamp;
use tally_store::{
    ContainerDraft, ContainerPublish, ContainerVersion, ContainerVersionInfo, DeliveryState,
    DeliverySummary, DestinationStats, EventDedupStats, IngestItem, IngestOutcome, LedgerEntry,
    QuarantineFilter, QuarantineRecord, Store, StoreError,
};

/// A store whose disk is "full" until told otherwise.
#[derive(Default)]
struct FlakyStore {
    broken: AtomicBool,
}

#[async_trait]
impl Store for FlakyStore {
    async fn ingest(
        &self,
        _now: Timestamp,
        items: Vec<IngestItem>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("database or disk is full".into()));
        }
        Ok(items.iter().map(|_| IngestOutcome::Accepted).collect())
    }
    async fn ledger(&self, _: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(Vec::new())
    }
    async fn quarantine(&self, _: QuarantineFilter) -> Result<Vec<QuarantineRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn dedup_stats(&self, _: Timestamp) -> Result<Vec<EventDedupStats>, StoreError> {
        Ok(Vec::new())
    }
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        Ok(Vec::new())
    }
    async fn deliveries_in_state(
        &self,
        _: DeliveryState,
        _: Option<String>,
        _: u32,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        Ok(Vec::new())
    }
    async fn ready(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("database or disk is full".into()))
        } else {
            Ok(())
        }
    }
    async fn container_draft(&self, _: &str) -> Result<Option<ContainerDraft>, StoreError> {
        Ok(None)
    }
    async fn save_container_draft(&self, _: Timestamp, _: &str, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("database or disk is full".into()))
    }
    async fn publish_container(
        &self,
        _: Timestamp,
        _: &str,
        _: ContainerPublish,
    ) -> Result<ContainerVersionInfo, StoreError> {
        Err(StoreError::Unavailable("database or disk is full".into()))
    }
    async fn container_versions(&self, _: &str) -> Result<Vec<ContainerVersionInfo>, StoreError> {
        Ok(Vec::new())
    }
    async fn container_version(
        &self,
        _: &str,
        _: Option<u32>,
    ) -> Result<Option<ContainerVersion>, StoreError> {
        Ok(None)
    }
    async fn live_container_version(&self, _: &str) -> Result<Option<u32>, StoreError> {
        Ok(None)
    }
    async fn close(&self) {}
}

fn app(store: Arc<FlakyStore>) -> axum::Router {
    let plan = TrackingPlan::new(
        vec![EventPlanConfig {
            name: "add_to_cart".into(),
            ..Default::default()
        }],
        PlanSettings::default(),
    )
    .unwrap();
    let ingest = IngestConfig::default();
    router(CollectorState {
        pipeline: Pipeline {
            store,
            plan: Arc::new(plan),
            limits: ingest.parse_limits(),
            max_event_bytes: ingest.max_event_bytes,
            delivery: Arc::default(),
        },
        sources: Sources::new(vec![SourceConfig {
            name: "backend".into(),
            kind: SourceKind::Server,
            key: Secret::new("sk_test_0123456789"),
            allowed_origins: vec![],
            rate_limit_per_sec: None,
            rate_limit_burst: None,
        }]),
        ingest: Arc::new(ingest),
        tag: Arc::default(),
        admin_token: None,
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::default()),
        container_scripts: Default::default(),
    })
}

fn post_event() -> Request<Body> {
    Request::post("/v1/events")
        .header("authorization", "Bearer sk_test_0123456789")
        .body(Body::from(r#"{"event": "add_to_cart", "event_id": "e-1"}"#))
        .unwrap()
}

#[tokio::test]
async fn a_store_that_cannot_commit_gets_503_with_retry_after_never_a_2xx() {
    let store = Arc::new(FlakyStore::default());
    store.broken.store(true, Ordering::SeqCst);
    let app = app(store.clone());

    let resp = tower::ServiceExt::oneshot(app.clone(), post_event())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "store_unavailable");
    let health = tower::ServiceExt::oneshot(
        app.clone(),
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);

    // When the store comes back, the same request succeeds.
    store.broken.store(false, Ordering::SeqCst);
    let resp = tower::ServiceExt::oneshot(app.clone(), post_event())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let health =
        tower::ServiceExt::oneshot(app, Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

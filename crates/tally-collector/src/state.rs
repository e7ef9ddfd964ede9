//! What every handler shares.

use std::sync::Arc;

use tally_core::clock::Clock;
use tally_core::secret::Secret;

use crate::config::{IngestConfig, TagConfig};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::routes::container::ContainerScripts;
use crate::sources::Sources;

/// The collector's shared state; cheap to clone.
#[derive(Clone)]
pub struct CollectorState {
    /// Parsing, plan and store.
    pub pipeline: Pipeline,
    /// Who may send.
    pub sources: Sources,
    /// Limits.
    pub ingest: Arc<IngestConfig>,
    /// The browser tag's cookie settings.
    pub tag: Arc<TagConfig>,
    /// Admin API token; `None` disables the admin API.
    pub admin_token: Option<Secret>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The tag containers' built scripts (live versions).
    pub container_scripts: Arc<ContainerScripts>,
}

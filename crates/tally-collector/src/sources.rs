//! Looking up the source behind a key, and its rate limiter.
//!
//! Keys are looked up by their SHA-256, so a lookup's time does not depend on how much of a
//! wrong key matches a real one.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tally_core::event::SourceKind;

use crate::config::SourceConfig;

/// A configured source at run time.
pub struct Source {
    /// Its config.
    pub config: SourceConfig,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Source {
    /// Source name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Source kind.
    pub fn kind(&self) -> SourceKind {
        self.config.kind
    }

    /// Whether a request from `origin` may use this source.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.config
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/') == origin)
    }

    /// Takes `events` tokens, or says how long to wait before retrying.
    pub fn admit(&self, events: usize) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let n = NonZeroU32::new(events.max(1) as u32).expect("max(1)");
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // More events than the whole burst: never admissible in one request.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }
}

/// All sources, by key.
#[derive(Clone, Default)]
pub struct Sources {
    by_key_hash: Arc<HashMap<[u8; 32], Arc<Source>>>,
    origins: Arc<Vec<String>>,
}

impl Sources {
    /// Builds the registry. Config validation has already refused duplicate keys.
    pub fn new(configs: Vec<SourceConfig>) -> Self {
        let mut origins = Vec::new();
        let mut map = HashMap::new();
        for config in configs {
            if config.kind == SourceKind::Browser {
                origins.extend(
                    config
                        .allowed_origins
                        .iter()
                        .map(|o| o.trim_end_matches('/').to_owned()),
                );
            }
            let limiter = config
                .rate_limit_per_sec
                .and_then(NonZeroU32::new)
                .map(|rate| {
                    let burst = config
                        .rate_limit_burst
                        .and_then(NonZeroU32::new)
                        .unwrap_or(rate.saturating_mul(NonZeroU32::new(2).expect("2")));
                    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
                });
            map.insert(
                hash(config.key.expose()),
                Arc::new(Source { config, limiter }),
            );
        }
        Sources {
            by_key_hash: Arc::new(map),
            origins: Arc::new(origins),
        }
    }

    /// The source whose key is `key`.
    pub fn by_key(&self, key: &str) -> Option<&Arc<Source>> {
        self.by_key_hash.get(&hash(key))
    }

    /// The browser source named `name` (its tag container carries the name).
    pub fn browser_by_name(&self, name: &str) -> Option<&Arc<Source>> {
        self.by_key_hash
            .values()
            .find(|s| s.kind() == SourceKind::Browser && s.name() == name)
    }

    /// Whether any browser source allows `origin` (for CORS preflight, which carries no key).
    pub fn any_allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o == origin)
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

//! Why one event was refused: a stable machine-readable code and a human sentence.
//!
//! Rejections are data, not failures of the request: a batch answers each event separately, and
//! the collector quarantines rejected events so they can be replayed after the plan is fixed.

use serde::{Deserialize, Serialize};

/// One refused event's reason, as answered to the client and kept in quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// Stable snake_case code, e.g. `missing_property` (documented in `docs/API.md`).
    pub code: String,
    /// What was wrong, naming the field.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Rejection {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Something accepted but not quite right (an identifier dropped, a timestamp clamped); answered
/// to the client next to `accepted` so integration bugs are visible without losing the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Field path the warning is about, e.g. `user.phone`.
    pub field: String,
    /// Stable snake_case code.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl Warning {
    /// A warning about `field`.
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Warning {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

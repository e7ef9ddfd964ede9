//! Errors building a destination from its configuration.

/// Why a destination could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// A configuration value is missing or invalid; `key` is relative to the destination's table.
    #[error("{key}: {message}")]
    Config {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

impl DestinationError {
    /// A configuration problem at `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        DestinationError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

//! The store's one error type.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot commit right now (disk full, I/O error, database locked or down).
    /// Callers answer 503 so clients retry; nothing was acknowledged.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The writer is saturated and the request waited too long for a place in the queue.
    #[error("store overloaded: the write queue is full")]
    Overloaded,
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// The database schema is newer than this binary understands.
    #[error(
        "database schema version {found} is newer than this binary's {supported}; upgrade tally"
    )]
    SchemaTooNew {
        /// Version in the database.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// The store could not be opened or migrated.
    #[error("cannot open store at {path}")]
    Open {
        /// What was being opened.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored row could not be decoded: a bug or a hand-edited database.
    #[error("corrupt stored row in {table}: {message}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// What was wrong.
        message: String,
    },
}

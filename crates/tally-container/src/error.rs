//! Why a container document or a preview token was refused.

/// A document that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Not JSON, or not the document's shape (the message names the field).
    #[error("not a container document: {message}")]
    Invalid {
        /// serde's description, with line and column.
        message: String,
    },
    /// Over the size limit.
    #[error("the document is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

/// A preview token that does not open a preview.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreviewError {
    /// Not a token this tally made (wrong shape or signature).
    #[error("the preview token is not valid")]
    Invalid,
    /// Made here, but past its lifetime.
    #[error("the preview link has expired; create a new one")]
    Expired,
}

//! What the store keeps of the tag container: per container, one mutable draft and numbered,
//! immutable published versions. Documents are JSON text the store does not interpret (the
//! `tally-container` crate reads and lints them before they get here).
//!
//! The live version is the newest one. A rollback publishes an earlier version's document as
//! a new version (`copied_from` names it), so the list of versions is the full history of what
//! pages ran, in order, and "live" needs no pointer that could disagree with it.

use serde::Serialize;
use tally_core::timestamp::Timestamp;

/// A container's draft.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerDraft {
    /// The document (JSON).
    pub document: String,
    /// When it was last saved.
    pub updated: Timestamp,
}

/// What to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerPublish {
    /// The document (JSON), already linted.
    pub document: String,
    /// Why (the author's note).
    pub note: String,
    /// The earlier version this one copies (a rollback).
    pub copied_from: Option<u32>,
}

/// One published version, without its document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerVersionInfo {
    /// 1, 2, ... per container.
    pub version: u32,
    /// When it was published.
    pub published: Timestamp,
    /// The author's note.
    pub note: String,
    /// The version it copies, for a rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<u32>,
}

/// One published version with its document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerVersion {
    /// Number, time, note.
    #[serde(flatten)]
    pub info: ContainerVersionInfo,
    /// The document (JSON).
    pub document: String,
}

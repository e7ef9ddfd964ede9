//! tally's tag container: which tags fire on which actions, as one versioned document
//! ([`Container`]: triggers, tags, variables), with what is decided about it before it reaches
//! a page: parsing ([`Container::parse`]), the publish linter ([`lint`]), the readable diff
//! between two versions ([`diff`]) and the signed preview tokens ([`preview`]).
//!
//! Not here: storing versions (the store's `container_*` methods), the admin API and serving
//! (the collector), or running a container in the browser (`tally-tag`'s `container.js`).
//!
//! Invariants: a document that [`Container::parse`] accepts holds only known fields; a
//! document with a lint [`Severity::Error`] is never published; every tag of one trigger
//! firing that does not set its own event ID shares the ID of the tally event for the same
//! action fired with it, so the browser pixel and the server copy deduplicate.

pub mod diff;
pub mod document;
pub mod error;
pub mod lint;
pub mod preview;

pub use diff::{Change, diff, render};
pub use document::{Container, Tag, TagKind, Trigger, UrlMatch, Variable};
pub use error::{ContainerError, PreviewError};
pub use lint::{Finding, Severity, lint};

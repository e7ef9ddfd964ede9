//! The PostgreSQL backend: several tally nodes on one database act as one.
//!
//! Writes queue for a few committer tasks per node; each takes everything queued (up to a cap)
//! and runs it in one transaction, so concurrent requests share a commit and its WAL flush.
//! Without a single writer, correctness comes from the database: unique indexes decide which
//! of two concurrent copies of an event is stored (the loser is decided again as a duplicate),
//! row locks serialise merges into one event, and claims lease deliveries with
//! `FOR UPDATE SKIP LOCKED`. Deadlocks between groups are retried with the whole group.
//! Reads use the same connection pool. Migrations are applied on open under an advisory lock;
//! a schema newer than the binary is refused. TLS follows libpq's `sslmode` and `sslrootcert`
//! in the URL (`tls.rs`), with rustls.

mod batch;
mod container;
mod erase;
mod people;
mod read;
mod schema;
mod store;
#[cfg(test)]
mod tests;
mod tls;
mod writer;

pub use schema::{SCHEMA_VERSION, valid_schema_name};
pub use store::{PostgresConfig, PostgresStore};
pub use tls::check_url;

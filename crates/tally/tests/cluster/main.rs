//! Several real `tally serve` processes on one store, killed and restarted: the multi-node and
//! crash-safety suite (issue 4). Every node is the built binary on `127.0.0.1:0`; deliveries go
//! to strict Meta fakes in this process; leases are seconds long so takeovers happen in a test.
//!
//! PostgreSQL tests use `TALLY_TEST_POSTGRES_URL` (scripts/test starts a private server), a fresh
//! schema each, or a private cluster of their own (`store_down`, `tls`); without PostgreSQL they
//! skip loudly, and fail with `CI=true`.

/// Harness: nodes, stores, a private PostgreSQL, per-incarnation Meta fakes, the load client,
/// the exactly-once checks.
mod support;

/// kill -9 under load and in the middle of a delivery, on SQLite and PostgreSQL.
mod crash_loop;
/// N nodes on one PostgreSQL: one copy accepted, each delivery sent once, takeover after kill -9.
mod multi_node;
/// A store that cannot write (full disk, stopped PostgreSQL): 503, never 2xx, then recovery.
mod store_down;
/// PostgreSQL over TLS: verified, encrypted sessions; wrong CA, host name, CA file, no TLS refused.
mod tls;

//! tally's end-to-end tests: one binary, modules by area.

/// Shared harness: an in-process app on a temp data dir, or the real binary for crash tests.
mod support;

/// Abuse: slow and oversized clients, CORS, key scopes, the admin token.
mod abuse;
/// Secrets: a full run's logs, answers and CLI output never show a credential.
mod abuse_secrets;
/// SSRF: webhook targets on private networks, literal, through DNS, or through redirects.
mod abuse_ssrf;
/// Admin API: auth, ledger, quarantine, replay, dedup stats.
mod admin;
/// The bad-input catalogue: each malformed request's status and code, and no collateral damage.
mod bad_input;
/// The CLI: init, config check, ledger, quarantine, replay.
mod cli;
/// The tag container: drafts, lint-refused publishes, versions, rollback, serving, preview, CLI.
mod container;
/// kill -9 and restart; graceful shutdown finishing in-flight requests.
mod crash_recovery;
/// Dedup and merge over HTTP, including 50 simultaneous copies of one event.
mod dedup;
/// Delivery to the fake platforms: join window, consent, revocation, replay, test-conversion.
mod delivery;
/// Right to erasure: one person's data found by email and identify links, removed, reported.
mod erase;
/// Ingest through every door: results in order, Segment mapping, gzip, CORS, rate limits.
mod ingest;

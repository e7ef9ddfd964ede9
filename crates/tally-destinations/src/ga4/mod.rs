//! The `ga4` connector (in progress).

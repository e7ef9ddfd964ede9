//! Fake for `ga4` (in progress).

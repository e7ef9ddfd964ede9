//! Fake for `meta` (in progress).

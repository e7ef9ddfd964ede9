//! Fake for `webhook` (in progress).

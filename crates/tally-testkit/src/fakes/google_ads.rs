//! Fake for `google_ads` (in progress).

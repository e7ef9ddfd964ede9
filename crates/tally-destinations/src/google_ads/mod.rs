//! The `google_ads` connector (in progress).

//! Fake for `tiktok` (in progress).

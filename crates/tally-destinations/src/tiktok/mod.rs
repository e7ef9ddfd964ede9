//! The `tiktok` connector (in progress).

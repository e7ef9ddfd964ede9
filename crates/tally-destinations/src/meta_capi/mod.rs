//! The `meta_capi` connector (in progress).

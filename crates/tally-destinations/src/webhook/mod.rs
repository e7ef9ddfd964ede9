//! The `webhook` connector (in progress).

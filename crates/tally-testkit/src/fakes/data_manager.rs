//! Fake for `data_manager` (in progress).

//! tally binary library.

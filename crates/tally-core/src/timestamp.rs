//! [`Timestamp`]: one instant in Unix milliseconds (UTC), and the rules that turn the many time
//! forms clients send (RFC 3339 strings, Unix seconds, Unix milliseconds) into it.
//!
//! This module is not a calendar library and keeps no time zone: every output is UTC, and a
//! string without an explicit offset is refused rather than guessed. It does not convert to any
//! destination's unit either (Meta wants seconds, GA4 microseconds); encoders do that from
//! [`Timestamp::millis`].
//!
//! Invariants:
//! - anything produced by [`Timestamp::parse_str`], [`Timestamp::from_json`] or
//!   [`Timestamp::now`] lies in `2000-01-01T00:00:00.000Z ..= 9999-12-31T23:59:59.999Z`, and for
//!   those values `parse_str(&t.to_rfc3339()) == Ok(t)`;
//! - precision is the millisecond: finer input is truncated, never rounded up;
//! - a number is read from its exact JSON text, never through `f64`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// `2000-01-01T00:00:00.000Z`: older times are almost always a unit or clock mistake.
const MIN_MILLIS: i64 = 946_684_800_000;
/// `9999-12-31T23:59:59.999Z`: the last instant RFC 3339's four-digit year can write.
const MAX_MILLIS: i64 = 253_402_300_799_999;
/// Numbers below this magnitude are Unix seconds (1e11 s is the year 5138).
const SECONDS_LIMIT: i64 = 100_000_000_000;
/// Numbers below this magnitude (and not seconds) are Unix milliseconds; larger ones could be
/// micro- or nanoseconds and are refused instead of guessed.
const MILLIS_LIMIT: i64 = 100_000_000_000_000;

/// Why a time value was refused.
#[derive(Debug, thiserror::Error)]
pub enum TimestampError {
    /// A date-time without `Z` or a `±hh:mm` offset; the zone is not guessed.
    #[error("timestamp has no timezone offset (add `Z` or `+hh:mm`)")]
    MissingTimezone,
    /// Not an RFC 3339 date-time, or not a real calendar date (such as February 30).
    #[error("timestamp is not a valid RFC 3339 date-time")]
    Malformed(#[source] chrono::ParseError),
    /// A leap second (`:60`), which a millisecond count cannot represent.
    #[error("leap seconds (`:60`) are not supported")]
    LeapSecond,
    /// Zero, negative, before 2000-01-01 or after 9999-12-31, or a number too far out to read.
    #[error("timestamp is outside 2000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z")]
    OutOfRange,
    /// A number too large for Unix seconds or milliseconds (micro- or nanoseconds are not guessed).
    #[error("timestamp number {0} is too large for unix seconds or milliseconds")]
    AmbiguousUnit(String),
    /// A JSON value that is neither a string nor a number.
    #[error("timestamp must be an RFC 3339 string or a unix time number")]
    WrongType,
}

impl TimestampError {
    /// Stable machine-readable code for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            TimestampError::MissingTimezone => "missing_timezone",
            TimestampError::Malformed(_) => "invalid_timestamp",
            TimestampError::LeapSecond => "leap_second_unsupported",
            TimestampError::OutOfRange => "timestamp_out_of_range",
            TimestampError::AmbiguousUnit(_) => "ambiguous_time_unit",
            TimestampError::WrongType => "timestamp_wrong_type",
        }
    }
}

/// One instant as Unix milliseconds, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps a Unix millisecond count as is, without the range check the parsers apply.
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// The current time from the system clock, truncated to the millisecond.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Unix milliseconds.
    pub const fn millis(&self) -> i64 {
        self.0
    }

    /// Unix seconds, rounded down (so instants before 1970 round towards the past).
    pub fn secs(&self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// RFC 3339 in UTC with exactly three fractional digits, e.g. `2026-11-20T10:15:00.000Z`.
    ///
    /// A value from [`Timestamp::from_millis`] beyond chrono's range (about ±262,000 years) is
    /// clamped to that range; it cannot be parsed back.
    pub fn to_rfc3339(&self) -> String {
        let dt = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or(if self.0 < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        });
        dt.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses an RFC 3339 date-time with an offset (`Z`, `z` or `±hh:mm`); surrounding
    /// whitespace is ignored and digits beyond the millisecond are truncated.
    ///
    /// # Errors
    ///
    /// [`TimestampError::MissingTimezone`] for a date-time without offset,
    /// [`TimestampError::Malformed`] for anything else that is not RFC 3339 or not a real date,
    /// [`TimestampError::LeapSecond`] for `:60`, and [`TimestampError::OutOfRange`] outside
    /// years 2000–9999.
    pub fn parse_str(s: &str) -> Result<Timestamp, TimestampError> {
        let s = s.trim();
        let dt = match DateTime::parse_from_rfc3339(s) {
            Ok(dt) => dt,
            Err(err) => {
                return Err(if looks_like_local_date_time(s) {
                    TimestampError::MissingTimezone
                } else {
                    TimestampError::Malformed(err)
                });
            }
        };
        // chrono keeps a leap second as a nanosecond count of 1e9 or more; as milliseconds it
        // would silently become the next second.
        if dt.nanosecond() >= 1_000_000_000 {
            return Err(TimestampError::LeapSecond);
        }
        checked(dt.timestamp_millis())
    }

    /// Reads a time from JSON: a string is RFC 3339 ([`Timestamp::parse_str`]); a number is Unix
    /// seconds when its magnitude is below 1e11, Unix milliseconds below 1e14, and refused
    /// above. A fraction is allowed (`1763633700.5` is 500 ms past the second); a fraction of a
    /// millisecond is truncated.
    ///
    /// # Errors
    ///
    /// Those of [`Timestamp::parse_str`] for strings; for numbers
    /// [`TimestampError::AmbiguousUnit`] at 1e14 and above and [`TimestampError::OutOfRange`]
    /// for zero, negative or outside years 2000–9999; [`TimestampError::WrongType`] for other
    /// JSON types.
    pub fn from_json(v: &serde_json::Value) -> Result<Timestamp, TimestampError> {
        match v {
            serde_json::Value::String(s) => Timestamp::parse_str(s),
            serde_json::Value::Number(n) => from_number_text(n.as_str()),
            _ => Err(TimestampError::WrongType),
        }
    }
}

/// True when `s` is a well-formed date-time that only lacks its offset, so the error can say
/// what to add instead of just "invalid".
fn looks_like_local_date_time(s: &str) -> bool {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dt%H:%M:%S%.f",
    ]
    .iter()
    .any(|fmt| NaiveDateTime::parse_from_str(s, fmt).is_ok())
}

fn from_number_text(text: &str) -> Result<Timestamp, TimestampError> {
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    // Only absurd magnitudes (1e400, 1e-40) fail to fit a Decimal.
    let value = parsed.map_err(|_| TimestampError::OutOfRange)?;
    if value <= Decimal::ZERO {
        return Err(TimestampError::OutOfRange);
    }
    let millis = if value < Decimal::from(SECONDS_LIMIT) {
        value * Decimal::from(1000)
    } else if value < Decimal::from(MILLIS_LIMIT) {
        value
    } else {
        return Err(TimestampError::AmbiguousUnit(text.to_owned()));
    };
    let millis = millis.trunc().to_i64().ok_or(TimestampError::OutOfRange)?;
    checked(millis)
}

fn checked(millis: i64) -> Result<Timestamp, TimestampError> {
    if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
        Ok(Timestamp(millis))
    } else {
        Err(TimestampError::OutOfRange)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_str(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Timestamp::parse_str(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// 2025-11-20T10:15:00.000Z
    const INSTANT_MS: i64 = 1_763_633_700_000;

    fn from_json_text(text: &str) -> Result<Timestamp, TimestampError> {
        let v: serde_json::Value = serde_json::from_str(text).expect("test JSON is valid");
        Timestamp::from_json(&v)
    }

    #[test]
    fn seconds_millis_and_rfc3339_of_one_instant_are_equal() {
        let from_secs = from_json_text("1763633700").unwrap();
        let from_ms = from_json_text("1763633700000").unwrap();
        let from_str = from_json_text("\"2025-11-20T10:15:00Z\"").unwrap();
        let from_offset = from_json_text("\"2025-11-20T11:15:00.000+01:00\"").unwrap();
        assert_eq!(from_secs.millis(), INSTANT_MS);
        assert_eq!(from_secs, from_ms);
        assert_eq!(from_secs, from_str);
        assert_eq!(from_secs, from_offset);
    }

    #[test]
    fn formats_as_utc_with_three_fraction_digits() {
        let t = Timestamp::from_millis(INSTANT_MS);
        assert_eq!(t.to_rfc3339(), "2025-11-20T10:15:00.000Z");
        assert_eq!(t.to_string(), "2025-11-20T10:15:00.000Z");
        assert_eq!(
            Timestamp::from_millis(INSTANT_MS + 7).to_rfc3339(),
            "2025-11-20T10:15:00.007Z"
        );
    }

    #[test]
    fn secs_rounds_down() {
        assert_eq!(Timestamp::from_millis(1_999).secs(), 1);
        assert_eq!(Timestamp::from_millis(-1).secs(), -1);
    }

    #[test]
    fn fractional_seconds_keep_milliseconds() {
        assert_eq!(
            from_json_text("1763633700.5").unwrap().millis(),
            INSTANT_MS + 500
        );
        assert_eq!(
            from_json_text("1763633700.1239").unwrap().millis(),
            INSTANT_MS + 123
        );
    }

    #[test]
    fn fractional_milliseconds_are_truncated() {
        assert_eq!(
            from_json_text("1763633700000.9").unwrap().millis(),
            INSTANT_MS
        );
    }

    #[test]
    fn exponent_numbers_are_read_exactly() {
        assert_eq!(from_json_text("1.7636337e9").unwrap().millis(), INSTANT_MS);
        assert_eq!(from_json_text("1.7636337E12").unwrap().millis(), INSTANT_MS);
    }

    #[test]
    fn micro_and_nanoseconds_are_refused_not_guessed() {
        let micros = from_json_text("1763633700000000").unwrap_err();
        assert!(matches!(micros, TimestampError::AmbiguousUnit(_)));
        assert_eq!(micros.code(), "ambiguous_time_unit");
        let nanos = from_json_text("1763633700000000000").unwrap_err();
        assert!(matches!(nanos, TimestampError::AmbiguousUnit(_)));
    }

    #[test]
    fn zero_and_negative_numbers_are_out_of_range() {
        for text in ["0", "-1", "-1763633700", "0.0"] {
            assert!(
                matches!(from_json_text(text), Err(TimestampError::OutOfRange)),
                "{text}"
            );
        }
    }

    #[test]
    fn times_before_2000_are_out_of_range() {
        assert!(matches!(
            from_json_text("946684799"),
            Err(TimestampError::OutOfRange)
        ));
        assert!(from_json_text("946684800").is_ok());
        assert!(from_json_text("99999999999999").is_ok());
        assert!(matches!(
            Timestamp::parse_str("1999-12-31T23:59:59.999Z"),
            Err(TimestampError::OutOfRange)
        ));
        // A millisecond count in 1973 is not a plausible event time.
        assert!(matches!(
            from_json_text("100000000000"),
            Err(TimestampError::OutOfRange)
        ));
    }

    #[test]
    fn numbers_that_do_not_fit_are_out_of_range_without_panicking() {
        assert!(matches!(
            from_json_text("1e400"),
            Err(TimestampError::OutOfRange)
        ));
        assert!(matches!(
            from_json_text("1e-400"),
            Err(TimestampError::OutOfRange)
        ));
        assert!(matches!(
            from_json_text("1e20"),
            Err(TimestampError::AmbiguousUnit(_))
        ));
    }

    #[test]
    fn other_json_types_are_wrong_type() {
        for v in [
            json!(null),
            json!(true),
            json!([1763633700]),
            json!({"t": 1}),
        ] {
            let err = Timestamp::from_json(&v).unwrap_err();
            assert!(matches!(err, TimestampError::WrongType), "{v}");
            assert_eq!(err.code(), "timestamp_wrong_type");
        }
    }

    #[test]
    fn date_time_without_offset_is_missing_timezone() {
        for s in [
            "2025-11-20T10:15:00",
            "2025-11-20 10:15:00.123",
            "2025-11-20T10:15:00.5",
        ] {
            let err = Timestamp::parse_str(s).unwrap_err();
            assert!(matches!(err, TimestampError::MissingTimezone), "{s}");
            assert_eq!(err.code(), "missing_timezone");
        }
    }

    #[test]
    fn impossible_dates_and_garbage_are_malformed() {
        for s in [
            "2025-02-30T10:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-11-20",
            "yesterday",
            "",
        ] {
            let err = Timestamp::parse_str(s).unwrap_err();
            assert!(matches!(err, TimestampError::Malformed(_)), "{s}: {err:?}");
            assert_eq!(err.code(), "invalid_timestamp");
        }
    }

    #[test]
    fn leap_second_is_refused() {
        let err = Timestamp::parse_str("2016-12-31T23:59:60Z").unwrap_err();
        assert!(matches!(err, TimestampError::LeapSecond), "{err:?}");
    }

    #[test]
    fn parse_accepts_lowercase_z_space_separator_and_truncates_micros() {
        let a = Timestamp::parse_str(" 2025-11-20t10:15:00.000123z ").unwrap();
        let b = Timestamp::parse_str("2025-11-20 10:15:00.000999Z").unwrap();
        assert_eq!(a.millis(), INSTANT_MS);
        assert_eq!(b.millis(), INSTANT_MS);
    }

    #[test]
    fn serde_uses_the_rfc3339_string() {
        let t = Timestamp::from_millis(INSTANT_MS + 42);
        let json = serde_json::to_value(t).unwrap();
        assert_eq!(json, json!("2025-11-20T10:15:00.042Z"));
        let back: Timestamp = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_value::<Timestamp>(json!("2025-11-20T10:15:00")).is_err());
        assert!(serde_json::from_value::<Timestamp>(json!(1763633700)).is_err());
    }

    #[test]
    fn now_is_in_the_supported_range() {
        let now = Timestamp::now();
        assert_eq!(Timestamp::parse_str(&now.to_rfc3339()).unwrap(), now);
    }

    #[test]
    fn extreme_millis_format_without_panicking() {
        assert!(!Timestamp::from_millis(i64::MAX).to_rfc3339().is_empty());
        assert!(!Timestamp::from_millis(i64::MIN).to_rfc3339().is_empty());
    }

    #[test]
    fn every_error_has_a_snake_case_code() {
        let errors = [
            TimestampError::MissingTimezone,
            Timestamp::parse_str("x").unwrap_err(),
            TimestampError::LeapSecond,
            TimestampError::OutOfRange,
            TimestampError::AmbiguousUnit("1".into()),
            TimestampError::WrongType,
        ];
        for err in errors {
            let code = err.code();
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(ms in MIN_MILLIS..=253_402_300_799_000i64) {
            let t = Timestamp::from_millis(ms);
            prop_assert_eq!(Timestamp::parse_str(&t.to_rfc3339()).unwrap(), t);
        }

        #[test]
        fn from_json_never_panics(s in "\\PC{0,40}", n in any::<f64>()) {
            let _ = Timestamp::from_json(&json!(s));
            let _ = Timestamp::from_json(&json!(n));
        }
    }
}

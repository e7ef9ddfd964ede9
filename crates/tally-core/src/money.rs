//! Money amounts as exact decimals: reading them from JSON ([`parse_value`]) and writing them
//! back ([`value_to_json`]).
//!
//! An amount is read from the exact text of the JSON number (serde_json's
//! `arbitrary_precision` keeps it), so `129.90` stays `129.90` and `0.1` stays `0.1`; no value
//! ever passes through `f64`. This module does not know currencies or minor units (see
//! [`crate::currency`]) and does not round; it does not refuse negative amounts either, since
//! refunds are the caller's business.
//!
//! Invariants:
//! - a returned [`Decimal`] has `|d| <= 1e12` and keeps the scale of its input text
//!   (`12.30` has scale 2), except that exponent forms with a positive exponent larger than
//!   their fraction (`1.5e3`) come back normalised (`1500`);
//! - negative zero is returned as zero;
//! - nothing here panics on any input.

use std::str::FromStr;

use rust_decimal::Decimal;

/// The largest magnitude accepted; anything beyond is a unit mistake (cents as units, a
/// timestamp in the value field), not a sale.
pub const MAX_ABS: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// Why a money value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Neither a JSON number nor a string.
    #[error("amount must be a number or a string holding a decimal")]
    WrongType,
    /// A string that does not hold a plain decimal number (`1,000`, `$5`, `NaN`).
    #[error("amount string is not a decimal number")]
    InvalidDecimal,
    /// Beyond ±1e12, or not representable as a 96-bit decimal (1e400, 30 significant digits).
    #[error("amount is out of range (at most 1e12 in magnitude and 28 significant digits)")]
    OutOfRange,
}

impl MoneyError {
    /// Stable machine-readable code for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::WrongType => "money_wrong_type",
            MoneyError::InvalidDecimal => "invalid_money",
            MoneyError::OutOfRange => "money_out_of_range",
        }
    }
}

/// Reads an amount from a JSON number or from a string holding one (`"12.30"`, `" 5 "`,
/// `"1e2"`), exactly as written.
///
/// # Errors
///
/// [`MoneyError::WrongType`] for other JSON types, [`MoneyError::InvalidDecimal`] for a string
/// that is not a decimal number, [`MoneyError::OutOfRange`] above 1e12 in magnitude or when the
/// number does not fit a [`Decimal`].
pub fn parse_value(v: &serde_json::Value) -> Result<Decimal, MoneyError> {
    let text = match v {
        serde_json::Value::Number(n) => n.as_str(),
        serde_json::Value::String(s) => {
            let s = s.trim();
            // Decimal's own parser also takes `_` separators and a lone `.5`; only the JSON
            // number grammar (plus a leading `+`) is a decimal here.
            if !is_decimal_text(s) {
                return Err(MoneyError::InvalidDecimal);
            }
            s
        }
        _ => return Err(MoneyError::WrongType),
    };
    let mut d = parse_text(text)?;
    if d.abs() > MAX_ABS {
        return Err(MoneyError::OutOfRange);
    }
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    Ok(d)
}

/// Writes an amount as a JSON number with the decimal's exact text, keeping its scale:
/// `129.90` becomes the JSON number `129.90`, not `129.9`.
///
/// # Panics
///
/// Never: a [`Decimal`] always prints as `-?digits(.digits)?`, which is a valid JSON number.
pub fn value_to_json(d: &Decimal) -> serde_json::Value {
    let number = serde_json::Number::from_str(&d.to_string())
        .expect("decimal text is valid JSON number grammar");
    serde_json::Value::Number(number)
}

fn parse_text(text: &str) -> Result<Decimal, MoneyError> {
    let parsed = match text.split_once(['e', 'E']) {
        Some((mantissa, _)) => {
            // from_scientific rounds a long mantissa; checking it exactly first keeps the
            // "no silent rounding" promise.
            Decimal::from_str_exact(mantissa).map_err(|_| MoneyError::OutOfRange)?;
            Decimal::from_scientific(text)
        }
        None => Decimal::from_str_exact(text),
    };
    parsed.map_err(|_| MoneyError::OutOfRange)
}

fn is_decimal_text(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if !digits(&mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn number(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("test JSON is valid")
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn max_abs_is_one_trillion() {
        assert_eq!(MAX_ABS, Decimal::from(1_000_000_000_000i64));
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        assert_eq!(
            parse_value(&number("129.90")).unwrap().to_string(),
            "129.90"
        );
        assert_eq!(parse_value(&number("0.1")).unwrap().to_string(), "0.1");
        assert_eq!(parse_value(&number("42")).unwrap().to_string(), "42");
        assert_eq!(parse_value(&number("-15.5")).unwrap(), dec("-15.5"));
    }

    #[test]
    fn exponent_forms_are_read_exactly() {
        assert_eq!(parse_value(&number("1e2")).unwrap(), dec("100"));
        assert_eq!(parse_value(&number("1E+2")).unwrap(), dec("100"));
        assert_eq!(
            parse_value(&number("1.5e-3")).unwrap().to_string(),
            "0.0015"
        );
        assert_eq!(
            parse_value(&number("12.30e1")).unwrap().to_string(),
            "123.0"
        );
    }

    #[test]
    fn strings_holding_decimals_are_accepted() {
        assert_eq!(parse_value(&json!("12.30")).unwrap().to_string(), "12.30");
        assert_eq!(parse_value(&json!(" 5 ")).unwrap(), dec("5"));
        assert_eq!(parse_value(&json!("+7.25")).unwrap(), dec("7.25"));
        assert_eq!(parse_value(&json!("2.5E1")).unwrap(), dec("25"));
    }

    #[test]
    fn strings_that_are_not_decimals_are_invalid() {
        for s in [
            "", "abc", "1,000", "$5", "1_000", ".5", "5.", "NaN", "Infinity", "1e", "--1",
        ] {
            let err = parse_value(&json!(s)).unwrap_err();
            assert_eq!(err, MoneyError::InvalidDecimal, "{s:?}");
            assert_eq!(err.code(), "invalid_money");
        }
    }

    #[test]
    fn other_json_types_are_wrong_type() {
        for v in [json!(null), json!(true), json!([1]), json!({"value": 1})] {
            let err = parse_value(&v).unwrap_err();
            assert_eq!(err, MoneyError::WrongType, "{v}");
            assert_eq!(err.code(), "money_wrong_type");
        }
    }

    #[test]
    fn magnitudes_above_one_trillion_are_out_of_range() {
        assert_eq!(parse_value(&number("1000000000000")).unwrap(), MAX_ABS);
        assert_eq!(parse_value(&number("-1000000000000")).unwrap(), -MAX_ABS);
        for text in ["1000000000000.01", "-1000000000001", "1e13", "\"2e12\""] {
            let err = parse_value(&number(text)).unwrap_err();
            assert_eq!(err, MoneyError::OutOfRange, "{text}");
            assert_eq!(err.code(), "money_out_of_range");
        }
    }

    #[test]
    fn numbers_that_do_not_fit_a_decimal_are_out_of_range() {
        let long = format!("0.{}", "1".repeat(35));
        let many_digits = "1".repeat(40);
        for text in [
            "1e400",
            "1e-400",
            "1e99999999999",
            &long,
            &many_digits,
            "1.23456789012345678901234567890123e2",
        ] {
            assert_eq!(
                parse_value(&number(text)),
                Err(MoneyError::OutOfRange),
                "{text}"
            );
        }
    }

    #[test]
    fn negative_zero_becomes_zero() {
        let zero = parse_value(&number("-0")).unwrap();
        assert!(zero.is_sign_positive());
        assert_eq!(zero.to_string(), "0");
        assert_eq!(parse_value(&number("-0.00")).unwrap().to_string(), "0.00");
    }

    #[test]
    fn value_to_json_keeps_the_scale() {
        assert_eq!(value_to_json(&dec("129.90")).to_string(), "129.90");
        assert_eq!(value_to_json(&dec("-0.001")).to_string(), "-0.001");
        assert_eq!(value_to_json(&dec("100")).to_string(), "100");
        assert!(value_to_json(&dec("1.5")).is_number());
    }

    proptest! {
        #[test]
        fn json_numbers_parse_to_the_decimal_of_their_text(
            text in "-?(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6})?"
        ) {
            let parsed = parse_value(&number(&text)).unwrap();
            let expected = dec(&text);
            prop_assert_eq!(parsed, expected);
            prop_assert_eq!(parsed.scale(), expected.scale());
            prop_assert_eq!(parse_value(&value_to_json(&parsed)).unwrap(), parsed);
        }

        #[test]
        fn parse_value_never_panics(s in "\\PC{0,60}") {
            let _ = parse_value(&json!(s));
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
                let _ = parse_value(&v);
            }
        }
    }
}

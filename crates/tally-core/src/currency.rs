//! [`Currency`]: an active ISO 4217 currency that money can be counted in, with its minor units.
//!
//! The list of codes is embedded (ISO 4217 list one as amended up to 2025) so parsing needs no
//! I/O. This module does not convert between currencies or round amounts; it only says which
//! codes are acceptable and how many decimals each one has.
//!
//! Invariants:
//! - a [`Currency`] always holds an uppercase code from [`ACTIVE`], so [`Currency::as_str`] and
//!   [`Currency::minor_units`] cannot fail;
//! - withdrawn codes (HRK 2023, ZWL 2024, SLL 2024, CUC 2022, ANG 2025) are refused as unknown;
//! - the X codes that are not money (test, "no currency", precious metals, SDR, bond units)
//!   are refused as [`CurrencyError::NotMoney`], while the CFA/CFP/Caribbean X codes (XOF, XAF,
//!   XPF, XCD, XCG) are ordinary currencies.

use std::fmt;
use std::str::FromStr;

/// Why a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    /// Not exactly three ASCII letters after trimming.
    #[error("currency must be a three-letter ISO 4217 code")]
    InvalidFormat,
    /// Three letters, but not an active ISO 4217 code.
    #[error("currency {0} is not an active ISO 4217 code")]
    Unknown(String),
    /// An ISO 4217 code that does not denote money (such as XXX, XTS or XAU).
    #[error("currency {0} is an ISO 4217 code for something that is not money")]
    NotMoney(String),
}

impl CurrencyError {
    /// Stable machine-readable code for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            CurrencyError::InvalidFormat => "invalid_currency",
            CurrencyError::Unknown(_) => "unknown_currency",
            CurrencyError::NotMoney(_) => "currency_not_money",
        }
    }
}

/// ISO 4217 codes that are valid but do not denote money: gold, silver, palladium, platinum,
/// the SDR, the European bond-market units, Sucre, ADB unit of account, testing and "no currency".
pub const NOT_MONEY: [&str; 13] = [
    "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX",
];

/// Active ISO 4217 currencies with their minor units, sorted by code.
///
/// Includes fund codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW) because they appear in
/// list one; BGN is kept while it is still listed after Bulgaria's move to the euro.
#[rustfmt::skip]
pub const ACTIVE: [(&str, u8); 165] = [
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2), ("AWG", 2),
    ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0), ("BMD", 2),
    ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2),
    ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4), ("CLP", 0),
    ("CNY", 2), ("COP", 2), ("COU", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0),
    ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2),
    ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2), ("GNF", 0), ("GTQ", 2),
    ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2), ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2),
    ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2),
    ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0), ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2),
    ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2),
    ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2),
    ("MXN", 2), ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2),
    ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2), ("PKR", 2),
    ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2), ("RWF", 0), ("SAR", 2),
    ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2), ("SHP", 2), ("SLE", 2), ("SOS", 2),
    ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2),
    ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2),
    ("UGX", 0), ("USD", 2), ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4), ("UZS", 2), ("VED", 2),
    ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XCG", 2), ("XOF", 0),
    ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// An active ISO 4217 currency code, uppercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a currency code: surrounding whitespace is ignored and lowercase is accepted
    /// (`" usd"` is `USD`).
    ///
    /// # Errors
    ///
    /// [`CurrencyError::InvalidFormat`] unless the trimmed input is exactly three ASCII letters,
    /// [`CurrencyError::NotMoney`] for the non-money X codes, [`CurrencyError::Unknown`] for any
    /// other code that is not in [`ACTIVE`].
    pub fn parse(s: &str) -> Result<Currency, CurrencyError> {
        let s = s.trim();
        let code: [u8; 3] = s
            .as_bytes()
            .try_into()
            .map_err(|_| CurrencyError::InvalidFormat)?;
        if !code.iter().all(u8::is_ascii_alphabetic) {
            return Err(CurrencyError::InvalidFormat);
        }
        let code = code.map(|b| b.to_ascii_uppercase());
        let upper = String::from_utf8_lossy(&code).into_owned();
        if NOT_MONEY.contains(&upper.as_str()) {
            return Err(CurrencyError::NotMoney(upper));
        }
        if lookup(&code).is_none() {
            return Err(CurrencyError::Unknown(upper));
        }
        Ok(Currency(code))
    }

    /// The uppercase three-letter code.
    pub fn as_str(&self) -> &str {
        // Only `parse` builds a Currency, from three ASCII letters.
        std::str::from_utf8(&self.0).expect("currency code is ASCII")
    }

    /// How many decimals the currency's minor unit has (JPY 0, EUR 2, KWD 3, CLF 4).
    pub fn minor_units(&self) -> u8 {
        lookup(&self.0).map_or(2, |(_, units)| units)
    }
}

fn lookup(code: &[u8; 3]) -> Option<(&'static str, u8)> {
    ACTIVE
        .binary_search_by(|(c, _)| c.as_bytes().cmp(code.as_slice()))
        .ok()
        .map(|i| ACTIVE[i])
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn active_table_is_sorted_unique_uppercase() {
        for pair in ACTIVE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, units) in ACTIVE {
            assert!(
                code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()),
                "{code}"
            );
            assert!(units <= 4, "{code}");
            assert!(!NOT_MONEY.contains(&code), "{code}");
        }
    }

    #[test]
    fn parses_common_codes_and_lowercase() {
        for code in [
            "USD", "EUR", "GBP", "JPY", "CHF", "BRL", "SEK", "ZAR", "VES", "SLE", "ZWG",
        ] {
            assert_eq!(Currency::parse(code).unwrap().as_str(), code);
        }
        assert_eq!(Currency::parse("usd").unwrap().as_str(), "USD");
        assert_eq!(Currency::parse(" eUr \n").unwrap().as_str(), "EUR");
    }

    #[test]
    fn rejects_anything_but_three_ascii_letters() {
        for s in ["US", "EURO", "978", "", "U$D", "ÉUR", "U S"] {
            let err = Currency::parse(s).unwrap_err();
            assert_eq!(err, CurrencyError::InvalidFormat, "{s:?}");
            assert_eq!(err.code(), "invalid_currency");
        }
    }

    #[test]
    fn rejects_withdrawn_and_made_up_codes_as_unknown() {
        for s in ["HRK", "ZWL", "SLL", "CUC", "ANG", "DEM", "ABC", "BTC"] {
            let err = Currency::parse(s).unwrap_err();
            assert_eq!(err, CurrencyError::Unknown(s.to_owned()), "{s}");
            assert_eq!(err.code(), "unknown_currency");
        }
    }

    #[test]
    fn rejects_non_money_x_codes_but_keeps_currency_unions() {
        for s in NOT_MONEY {
            let err = Currency::parse(&s.to_lowercase()).unwrap_err();
            assert_eq!(err, CurrencyError::NotMoney(s.to_owned()));
            assert_eq!(err.code(), "currency_not_money");
        }
        for s in ["XOF", "XAF", "XPF", "XCD", "XCG"] {
            assert!(Currency::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn knows_minor_units() {
        let units = |s: &str| Currency::parse(s).unwrap().minor_units();
        for (code, expected) in [
            ("JPY", 0),
            ("KRW", 0),
            ("BHD", 3),
            ("KWD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("LYD", 3),
            ("IQD", 3),
            ("CLF", 4),
            ("UYW", 4),
            ("USD", 2),
            ("EUR", 2),
            ("ISK", 0),
        ] {
            assert_eq!(units(code), expected, "{code}");
        }
    }

    #[test]
    fn serde_uses_the_code_string_and_validates() {
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(serde_json::to_string(&usd).unwrap(), "\"USD\"");
        assert_eq!(
            serde_json::from_str::<Currency>("\"eur\"")
                .unwrap()
                .to_string(),
            "EUR"
        );
        assert!(serde_json::from_str::<Currency>("\"XXX\"").is_err());
        assert!(serde_json::from_str::<Currency>("840").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,8}") {
            if let Ok(c) = Currency::parse(&s) {
                prop_assert_eq!(Currency::parse(c.as_str()).unwrap(), c);
                prop_assert_eq!(c.as_str(), s.trim().to_ascii_uppercase());
            }
        }
    }
}

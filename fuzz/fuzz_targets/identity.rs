//! Identity normalisers and hashers: every per-platform rule an email, phone, name, address,
//! birth date, gender or external ID goes through before it is hashed.
//!
//! Input: the value, optionally followed by NUL and a country (for phones and zips).
//! Properties: nothing panics; every normaliser is idempotent on its own output (phones
//! through both their E.164 and digits forms); hashing emits only 64 lowercase hex; an
//! already-hashed value is kept, lowercased, never hashed again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tally_core::identity::{
    HashedIdentity, IdentityError, RawIdentity, is_sha256_hex, normalize_city, normalize_country,
    normalize_date_of_birth, normalize_email, normalize_email_google, normalize_external_id,
    normalize_gender, normalize_name, normalize_phone, normalize_state, normalize_zip, sha256_hex,
};

type Normalizer = fn(&str) -> Result<String, IdentityError>;

const PLAIN: [(&str, Normalizer); 9] = [
    ("email", normalize_email),
    ("email_google", normalize_email_google),
    ("name", normalize_name),
    ("city", normalize_city),
    ("state", normalize_state),
    ("country", normalize_country),
    ("date_of_birth", normalize_date_of_birth),
    ("gender", normalize_gender),
    ("external_id", normalize_external_id),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (value, country) = match text.split_once('\0') {
        Some((v, c)) => (v, Some(c)),
        None => (text, None),
    };
    for (what, normalize) in PLAIN {
        if let Ok(once) = normalize(value) {
            assert_eq!(normalize(&once).as_ref(), Ok(&once), "{what} of {value:?}");
        }
    }
    if let Ok(once) = normalize_zip(value, country) {
        assert_eq!(
            normalize_zip(&once, country).as_ref(),
            Ok(&once),
            "zip of {value:?}"
        );
    }
    if let Ok(forms) = normalize_phone(value, country) {
        assert_eq!(forms.e164.strip_prefix('+'), Some(forms.digits.as_str()));
        assert_eq!(
            normalize_phone(&forms.e164, country).as_ref(),
            Ok(&forms),
            "{value:?}"
        );
        assert_eq!(
            normalize_phone(&forms.digits, None).as_ref(),
            Ok(&forms),
            "{value:?}"
        );
    }

    let digest = sha256_hex(value);
    assert!(lower_hex(&digest) && is_sha256_hex(&digest));

    let raw = RawIdentity {
        email: Some(value),
        phone: Some(value),
        first_name: Some(value),
        last_name: Some(value),
        city: Some(value),
        state: Some(value),
        zip: Some(value),
        country,
        date_of_birth: Some(value),
        gender: Some(value),
        external_id: Some(value),
    };
    let (hashed, _warnings) = HashedIdentity::hash(&raw);
    let fields = serde_json::to_value(&hashed).expect("identity serialises");
    let Value::Object(fields) = fields else {
        panic!("identity is not an object");
    };
    let trimmed = value.trim();
    for (name, v) in &fields {
        if !name.ends_with("_sha256") {
            continue;
        }
        let h = v.as_str().unwrap_or_default();
        assert!(lower_hex(h), "{name} = {h:?}");
        if is_sha256_hex(trimmed) {
            assert_eq!(
                h,
                trimmed.to_ascii_lowercase(),
                "{name}: an existing hash is kept"
            );
        }
    }
    // Hashing what was kept again changes nothing (the ingest of a stored event's copy).
    let again = HashedIdentity::hash(&RawIdentity {
        email: hashed.email_sha256.as_deref(),
        first_name: hashed.first_name_sha256.as_deref(),
        ..RawIdentity::default()
    })
    .0;
    assert_eq!(again.email_sha256, hashed.email_sha256);
    assert_eq!(again.first_name_sha256, hashed.first_name_sha256);
});

fn lower_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

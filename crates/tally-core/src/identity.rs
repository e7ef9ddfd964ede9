//! Customer identifiers: normalisation per platform rules and SHA-256 hashing, so that a raw
//! email address or phone number never needs to be stored.
//!
//! [`HashedIdentity::hash`] turns a borrowed [`RawIdentity`] into what tally keeps: lowercase
//! hex SHA-256 forms of the personal fields (in each platform's variant where they differ:
//! Google's gmail form of the email, Meta's `+`-less phone against Google's E.164 phone), plus
//! normalised plaintext for the geography fields (Google wants those unhashed; encoders hash
//! them for Meta) and the advertiser's own external id. The `normalize_*` functions are the
//! single source of each rule, following Meta's customer-information parameters, Google's
//! enhanced-conversions and GA4 `user_data` rules, and TikTok's Events API.
//!
//! This module is not a validator of deliverability (no DNS, no carrier lookup) and not a full
//! phone-number library: national numbers are turned into international ones with a small
//! embedded table of calling codes, trunk prefixes and plausible lengths.
//!
//! Invariants:
//! - every value is trimmed and NFC-normalised before anything else, so precomposed and
//!   decomposed input hash alike (`valéry`);
//! - every normaliser is idempotent on its own output, never panics, and its errors never
//!   echo the input (they end up in logs);
//! - a value that is already a SHA-256 (64 hex characters) is taken as the hash, lowercased,
//!   and never hashed again; Google's gmail email form cannot be derived from a hash, so a
//!   pre-hashed email fills both email forms with the same value;
//! - [`HashedIdentity::hash`] never fails: a value that cannot be normalised is left out and
//!   reported as an [`IdentityWarning`]; a value that is empty after trimming counts as absent.
//!
//! ASCII input, the usual case, takes fast paths that give exactly what the general Unicode
//! path gives; the tests hold the implementation from before them as the oracle (`reference`).

use chrono::{Datelike, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Inputs longer than this (in bytes, before trimming) are refused without further work, which
/// bounds the cost of hostile input; every per-field limit below is far under it even after the
/// up-to-threefold growth that lowercasing and NFC can cause.
const MAX_INPUT_BYTES: usize = 4096;
/// Longest accepted email address, in characters (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// Longest accepted name, city or state, in characters.
const MAX_TEXT_CHARS: usize = 256;
/// Longest accepted postal code, in characters; real ones are at most 10.
const MAX_ZIP_CHARS: usize = 16;
/// Longest accepted external id, in characters.
const MAX_EXTERNAL_ID_CHARS: usize = 256;

/// Why one identifier could not be normalised. The reason never contains the input itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a usable email address.
    #[error("invalid email: {0}")]
    Email(&'static str),
    /// Not a usable phone number.
    #[error("invalid phone: {0}")]
    Phone(&'static str),
    /// Not a usable first or last name.
    #[error("invalid name: {0}")]
    Name(&'static str),
    /// Not a usable city.
    #[error("invalid city: {0}")]
    City(&'static str),
    /// Not a usable state or region.
    #[error("invalid state: {0}")]
    State(&'static str),
    /// Not a usable postal code.
    #[error("invalid zip: {0}")]
    Zip(&'static str),
    /// Not an ISO 3166-1 country or a known country name.
    #[error("invalid country: {0}")]
    Country(&'static str),
    /// Not a real date of birth in a supported format.
    #[error("invalid date of birth: {0}")]
    DateOfBirth(&'static str),
    /// Not one of the recognised gender words.
    #[error("invalid gender: expected f, female, w, woman, m, male or man")]
    Gender,
    /// Empty or too long external id.
    #[error("invalid external id: {0}")]
    ExternalId(&'static str),
    /// A SHA-256 value where plaintext is required (city, state, zip, country).
    #[error("{0} must be plaintext, not a SHA-256 hash")]
    UnexpectedHash(&'static str),
}

impl IdentityError {
    /// Stable machine-readable code for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Email(_) => "invalid_email",
            IdentityError::Phone(_) => "invalid_phone",
            IdentityError::Name(_) => "invalid_name",
            IdentityError::City(_) => "invalid_city",
            IdentityError::State(_) => "invalid_state",
            IdentityError::Zip(_) => "invalid_zip",
            IdentityError::Country(_) => "invalid_country",
            IdentityError::DateOfBirth(_) => "invalid_date_of_birth",
            IdentityError::Gender => "invalid_gender",
            IdentityError::ExternalId(_) => "invalid_external_id",
            IdentityError::UnexpectedHash(_) => "unexpected_hash",
        }
    }
}

/// One identifier that [`HashedIdentity::hash`] left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityWarning {
    /// The [`RawIdentity`] field name, e.g. `"phone"`.
    pub field: &'static str,
    /// The [`IdentityError::code`], e.g. `"invalid_phone"`.
    pub code: &'static str,
    /// Human-readable reason; never contains the input value.
    pub message: String,
}

/// Raw identifiers as received (any may be missing). Borrowed; never stored.
#[derive(Default, Debug, Clone, Copy)]
pub struct RawIdentity<'a> {
    /// Email address, or its SHA-256.
    pub email: Option<&'a str>,
    /// Phone number in any common format, or its SHA-256.
    pub phone: Option<&'a str>,
    /// First name, or its SHA-256.
    pub first_name: Option<&'a str>,
    /// Last name, or its SHA-256.
    pub last_name: Option<&'a str>,
    /// City, plaintext.
    pub city: Option<&'a str>,
    /// State or region, plaintext.
    pub state: Option<&'a str>,
    /// Postal code, plaintext.
    pub zip: Option<&'a str>,
    /// Country as ISO 3166-1 alpha-2 or alpha-3 code or English name; also used to complete
    /// national phone numbers and US zip codes.
    pub country: Option<&'a str>,
    /// Date of birth (`YYYY-MM-DD`, `YYYYMMDD`, `YYYY/MM/DD` or `MM/DD/YYYY`), or its SHA-256.
    pub date_of_birth: Option<&'a str>,
    /// Gender word (`f`, `female`, `m`, `male`, ...), or its SHA-256.
    pub gender: Option<&'a str>,
    /// The advertiser's own customer id.
    pub external_id: Option<&'a str>,
}

/// What tally keeps: SHA-256 (64 lowercase hex) forms, plus normalised plaintext for geography
/// (Google wants city/state/zip/country unhashed) and the advertiser's own external id.
#[derive(Default, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashedIdentity {
    /// Email trimmed, lowercased and NFC (Meta, TikTok, GA4 base form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    /// Google form: as above and, for gmail.com/googlemail.com, dots removed before the `@`.
    /// Always set when an email is present; equal to `email_sha256` when nothing differs or
    /// when the email arrived already hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_google_sha256: Option<String>,
    /// Meta/Pinterest form: digits with country code, no `+`, no leading zeros.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_digits_sha256: Option<String>,
    /// Google/TikTok form: `+` and digits (E.164). Equal to `phone_digits_sha256` when the
    /// phone arrived already hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_e164_sha256: Option<String>,
    /// See [`normalize_name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name_sha256: Option<String>,
    /// See [`normalize_name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name_sha256: Option<String>,
    /// Of `YYYYMMDD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth_sha256: Option<String>,
    /// Of `f` or `m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender_sha256: Option<String>,
    /// Meta `ct` form, see [`normalize_city`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// See [`normalize_state`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// See [`normalize_zip`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// ISO 3166-1 alpha-2, lowercase; see [`normalize_country`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Trimmed, NFC, case kept; see [`normalize_external_id`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// Field groups that describe one identifier in several forms; merging moves a group as a whole
/// so that an identity never pairs one address's Meta hash with another address's Google hash.
#[rustfmt::skip]
const GROUPS: [&[usize]; 11] =
    [&[0, 1], &[2, 3], &[4], &[5], &[6], &[7], &[8], &[9], &[10], &[11], &[12]];

impl HashedIdentity {
    /// Normalises and hashes every present identifier. Never fails: an identifier that cannot
    /// be normalised is left out and reported in the returned warnings.
    pub fn hash(raw: &RawIdentity) -> (HashedIdentity, Vec<IdentityWarning>) {
        let mut warnings = Vec::new();
        let w = &mut warnings;
        let mut out = HashedIdentity::default();
        // One buffer for every value that is normalised only to be hashed.
        let mut scratch = String::new();
        // The country completes the phone and the zip and is a field itself: look it up once.
        let country = raw.country.map(country_code);
        let alpha2 = country.as_ref().and_then(|c| c.as_ref().ok().copied());

        if let Some((meta, google)) =
            present(raw.email).and_then(|v| keep(w, "email", email_hashes(v, &mut scratch)))
        {
            out.email_sha256 = Some(meta);
            out.email_google_sha256 = Some(google);
        }
        if let Some((digits, e164)) =
            present(raw.phone).and_then(|v| keep(w, "phone", phone_hashes(v, alpha2, &mut scratch)))
        {
            out.phone_digits_sha256 = Some(digits);
            out.phone_e164_sha256 = Some(e164);
        }
        let mut hashed = |field, value: Option<&str>, normalize: NormalizeInto| {
            present(value).and_then(|v| keep(w, field, hash_with(v, normalize, &mut scratch)))
        };
        out.first_name_sha256 = hashed("first_name", raw.first_name, name_into);
        out.last_name_sha256 = hashed("last_name", raw.last_name, name_into);
        out.date_of_birth_sha256 = hashed("date_of_birth", raw.date_of_birth, date_of_birth_into);
        out.gender_sha256 = hashed("gender", raw.gender, gender_into);

        let mut plain = |field, value: Option<&str>, normalize: &dyn Fn(&str) -> Normalized| {
            let result = present(value).map(|v| {
                if is_sha256_hex(v.trim()) {
                    Err(IdentityError::UnexpectedHash(field))
                } else {
                    normalize(v)
                }
            });
            result.and_then(|r| keep(w, field, r))
        };
        out.city = plain("city", raw.city, &normalize_city);
        out.state = plain("state", raw.state, &normalize_state);
        out.zip = plain("zip", raw.zip, &|s| zip_for(s, alpha2));
        // `country` is set whenever this closure runs; the fallback only avoids an unwrap.
        out.country = plain("country", raw.country, &|v| match &country {
            Some(code) => code.clone().map(str::to_owned),
            None => normalize_country(v),
        });
        // An external id may legitimately look like a hash: advertisers often send one.
        out.external_id =
            present(raw.external_id).and_then(|v| keep(w, "external_id", normalize_external_id(v)));
        (out, warnings)
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.slots().iter().all(|(_, v)| v.is_none())
    }

    /// Copies into `self` what `other` has and `self` lacks; returns the field names copied.
    /// The two email forms and the two phone forms count as one field each: they are copied
    /// only when both are missing here.
    pub fn fill_from(&mut self, other: &HashedIdentity) -> Vec<&'static str> {
        let theirs = other.slots();
        let mine = self.slots_mut();
        let mut copied = Vec::new();
        for group in GROUPS {
            let empty_here = group.iter().all(|&i| mine[i].1.is_none());
            let set_there = group.iter().any(|&i| theirs[i].1.is_some());
            if empty_here && set_there {
                for &i in group {
                    if theirs[i].1.is_some() {
                        *mine[i].1 = theirs[i].1.clone();
                        copied.push(mine[i].0);
                    }
                }
            }
        }
        copied
    }

    /// Lets every field that `other` has win over `self`; returns the names of the fields whose
    /// value changed. When `other` has either email form (or either phone form), both forms are
    /// taken from `other`, so a form `other` lacks is cleared here.
    pub fn override_from(&mut self, other: &HashedIdentity) -> Vec<&'static str> {
        let theirs = other.slots();
        let mine = self.slots_mut();
        let mut changed = Vec::new();
        for group in GROUPS {
            if group.iter().any(|&i| theirs[i].1.is_some()) {
                for &i in group {
                    if *mine[i].1 != *theirs[i].1 {
                        *mine[i].1 = theirs[i].1.clone();
                        changed.push(mine[i].0);
                    }
                }
            }
        }
        changed
    }

    /// Names of the fields that are set, in declaration order.
    pub fn field_names_present(&self) -> Vec<&'static str> {
        self.slots()
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(name, _)| *name)
            .collect()
    }

    fn slots(&self) -> [(&'static str, &Option<String>); 13] {
        [
            ("email_sha256", &self.email_sha256),
            ("email_google_sha256", &self.email_google_sha256),
            ("phone_digits_sha256", &self.phone_digits_sha256),
            ("phone_e164_sha256", &self.phone_e164_sha256),
            ("first_name_sha256", &self.first_name_sha256),
            ("last_name_sha256", &self.last_name_sha256),
            ("date_of_birth_sha256", &self.date_of_birth_sha256),
            ("gender_sha256", &self.gender_sha256),
            ("city", &self.city),
            ("state", &self.state),
            ("zip", &self.zip),
            ("country", &self.country),
            ("external_id", &self.external_id),
        ]
    }

    fn slots_mut(&mut self) -> [(&'static str, &mut Option<String>); 13] {
        [
            ("email_sha256", &mut self.email_sha256),
            ("email_google_sha256", &mut self.email_google_sha256),
            ("phone_digits_sha256", &mut self.phone_digits_sha256),
            ("phone_e164_sha256", &mut self.phone_e164_sha256),
            ("first_name_sha256", &mut self.first_name_sha256),
            ("last_name_sha256", &mut self.last_name_sha256),
            ("date_of_birth_sha256", &mut self.date_of_birth_sha256),
            ("gender_sha256", &mut self.gender_sha256),
            ("city", &mut self.city),
            ("state", &mut self.state),
            ("zip", &mut self.zip),
            ("country", &mut self.country),
            ("external_id", &mut self.external_id),
        ]
    }
}

fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

fn existing_hash(v: &str) -> Option<String> {
    let v = v.trim();
    is_sha256_hex(v).then(|| v.to_ascii_lowercase())
}

type Normalized = Result<String, IdentityError>;
#[cfg(test)]
type Normalizer = fn(&str) -> Normalized;
/// Normalises into the given buffer (replacing its content), so that values normalised only to
/// be hashed need no allocation of their own.
type NormalizeInto = fn(&str, &mut String) -> Result<(), IdentityError>;

/// Passes a success through; turns a failure into a warning for `field`.
fn keep<T>(
    warnings: &mut Vec<IdentityWarning>,
    field: &'static str,
    result: Result<T, IdentityError>,
) -> Option<T> {
    result
        .map_err(|err| {
            warnings.push(IdentityWarning {
                field,
                code: err.code(),
                message: err.to_string(),
            });
        })
        .ok()
}

fn email_hashes(v: &str, scratch: &mut String) -> Result<(String, String), IdentityError> {
    if let Some(h) = existing_hash(v) {
        return Ok((h.clone(), h));
    }
    email_into(v, scratch)?;
    let email = scratch.as_str();
    let meta = sha256_hex(email);
    // The gmail form hashed piecewise: SHA-256 over the parts equals SHA-256 over their join.
    let google = match email.split_once('@') {
        Some((_, "gmail.com" | "googlemail.com")) if !email.is_ascii() => {
            // Composition after the dots are gone may change non-ASCII text; take the slow way.
            sha256_hex(&gmail_form(email)?)
        }
        Some((local, domain @ ("gmail.com" | "googlemail.com"))) => {
            let mut hasher = Sha256::new();
            let mut empty = true;
            for part in local.split('.').filter(|p| !p.is_empty()) {
                hasher.update(part);
                empty = false;
            }
            if empty {
                return Err(IdentityError::Email("empty local part"));
            }
            hasher.update(b"@");
            hasher.update(domain);
            hex_lower(&hasher.finalize().into())
        }
        _ => meta.clone(),
    };
    Ok((meta, google))
}

fn phone_hashes(
    v: &str,
    alpha2: Option<&str>,
    scratch: &mut String,
) -> Result<(String, String), IdentityError> {
    if let Some(h) = existing_hash(v) {
        return Ok((h.clone(), h));
    }
    let (code, rest) = phone_digits(v, alpha2, scratch)?;
    let digits = Sha256::new_with_prefix(code).chain_update(rest);
    let e164 = Sha256::new_with_prefix("+")
        .chain_update(code)
        .chain_update(rest);
    Ok((
        hex_lower(&digits.finalize().into()),
        hex_lower(&e164.finalize().into()),
    ))
}

fn hash_with(v: &str, normalize: NormalizeInto, scratch: &mut String) -> Normalized {
    match existing_hash(v) {
        Some(h) => Ok(h),
        None => {
            normalize(v, scratch)?;
            Ok(sha256_hex(scratch))
        }
    }
}

/// SHA-256 of the UTF-8 bytes of `s`, as 64 lowercase hex characters.
pub fn sha256_hex(s: &str) -> String {
    hex_lower(&Sha256::digest(s.as_bytes()).into())
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [digits[i >> 4], digits[i & 0x0f]];
        i += 1;
    }
    pairs
};

/// Lowercase hex of a digest: one table lookup per byte into a stack buffer, one allocation.
fn hex_lower(digest: &[u8; 32]) -> String {
    let mut hex = [[0; 2]; 32];
    for (pair, &b) in hex.iter_mut().zip(digest) {
        *pair = HEX_PAIRS[usize::from(b)];
    }
    std::str::from_utf8(hex.as_flattened())
        .expect("hex digits are ASCII")
        .to_owned()
}

/// True when `s` is exactly 64 hex characters (either case), i.e. looks like a SHA-256 already.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

// Every normaliser has two paths. ASCII input, the usual case, is handled on bytes without
// allocating intermediate strings: for ASCII, NFC is the identity, Unicode lowercasing is ASCII
// lowercasing, and a character count is a byte count. Anything else takes the general path,
// which applies the rules literally (trim, NFC, lowercase, NFC, filter, NFC). Both give the same
// output for every input; the `reference` test module holds the implementation from before the
// fast paths, and properties in `tests` compare the two.

/// [`prepare`] for ASCII input: length guard and trim, borrowing.
fn prepare_ascii(s: &str) -> Result<&str, &'static str> {
    if s.len() > MAX_INPUT_BYTES {
        return Err("too long");
    }
    let s = s.trim();
    if s.is_empty() {
        return Err("empty");
    }
    Ok(s)
}

/// Length guard, trim, NFC. `Err` carries the reason for the caller's error variant.
fn prepare(s: &str) -> Result<String, &'static str> {
    if s.len() > MAX_INPUT_BYTES {
        return Err("too long");
    }
    let s = nfc(s.trim());
    let s = s.trim();
    if s.is_empty() {
        return Err("empty");
    }
    Ok(s.to_owned())
}

/// [`prepare`] then lowercase; NFC again because lowercasing can un-compose.
fn fold(s: &str) -> Result<String, &'static str> {
    Ok(nfc(&prepare(s)?.to_lowercase()))
}

/// `s` in NFC. The quick check spares the composition pass for the many strings already in NFC.
fn nfc(s: &str) -> String {
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => s.to_owned(),
        IsNormalized::No | IsNormalized::Maybe => s.nfc().collect(),
    }
}

fn too_long(s: &str, max: usize) -> bool {
    // A character takes at least one byte, so the byte length settles most cases.
    s.len() > max && s.chars().nth(max).is_some()
}

/// Trims, NFC-normalises and lowercases an email address, then checks it.
///
/// The check is Meta's pattern `^[a-z0-9_.+-]+@[a-z0-9-]+\.[a-z0-9-.]+$` applied to ASCII
/// characters only: non-ASCII letters (internationalised addresses) are allowed anywhere, but
/// whitespace and control characters are not. Additionally the domain may not have empty labels
/// (`a@b..com`, `a@b.com.`).
///
/// # Errors
///
/// [`IdentityError::Email`] when the address is empty, too long, has not exactly one `@`, an
/// empty local part or domain, or a character outside the pattern.
pub fn normalize_email(s: &str) -> Result<String, IdentityError> {
    let mut email = String::new();
    email_into(s, &mut email)?;
    Ok(email)
}

fn email_into(s: &str, out: &mut String) -> Result<(), IdentityError> {
    if s.is_ascii() {
        let trimmed = prepare_ascii(s).map_err(IdentityError::Email)?;
        out.clear();
        out.push_str(trimmed);
        out.make_ascii_lowercase();
    } else {
        *out = fold(s).map_err(IdentityError::Email)?;
    }
    check_email(out)
}

/// The checks of [`normalize_email`] on a trimmed, lowercased NFC address. Works on bytes: the
/// pattern only constrains ASCII characters, and every byte of a non-ASCII character is >= 0x80.
fn check_email(email: &str) -> Result<(), IdentityError> {
    if too_long(email, MAX_EMAIL_CHARS) {
        return Err(IdentityError::Email("too long"));
    }
    let space_or_control = if email.is_ascii() {
        // ASCII whitespace and control characters: 0x00..=0x20 and DEL.
        email.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        email.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if space_or_control {
        return Err(IdentityError::Email(
            "contains whitespace or control characters",
        ));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(IdentityError::Email("no @"));
    };
    if domain.contains('@') {
        return Err(IdentityError::Email("more than one @"));
    }
    if local.is_empty() {
        return Err(IdentityError::Email("empty local part"));
    }
    let local_ok = |b: u8| {
        !b.is_ascii() || b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-')
    };
    if !local.bytes().all(local_ok) {
        return Err(IdentityError::Email("character not allowed before @"));
    }
    let domain_ok = |b: u8| !b.is_ascii() || b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    if !domain.bytes().all(domain_ok) {
        return Err(IdentityError::Email("character not allowed in domain"));
    }
    if !domain.contains('.') {
        return Err(IdentityError::Email("domain has no dot"));
    }
    if domain.split('.').any(str::is_empty) {
        return Err(IdentityError::Email("empty domain label"));
    }
    Ok(())
}

/// Google's email form: [`normalize_email`], then for `gmail.com` and `googlemail.com`
/// addresses every `.` before the `@` removed.
///
/// # Errors
///
/// Those of [`normalize_email`]; also [`IdentityError::Email`] when a gmail local part is only
/// dots.
pub fn normalize_email_google(s: &str) -> Result<String, IdentityError> {
    gmail_form(&normalize_email(s)?)
}

/// Google's form of an already normalised address.
fn gmail_form(email: &str) -> Result<String, IdentityError> {
    match email.split_once('@') {
        Some((local, domain @ ("gmail.com" | "googlemail.com"))) => {
            // A removed dot may have kept a combining mark from its letter (`n.\u{301}`):
            // compose again, so the form stays NFC and normalising it twice changes nothing.
            let local = nfc(&local.replace('.', ""));
            if local.is_empty() {
                return Err(IdentityError::Email("empty local part"));
            }
            Ok(format!("{local}@{domain}"))
        }
        _ => Ok(email.to_owned()),
    }
}

/// The two forms of one phone number that platforms hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneForms {
    /// Country code and number, digits only (Meta, Pinterest): `16505551212`.
    pub digits: String,
    /// E.164 (Google, TikTok): `+16505551212`.
    pub e164: String,
}

/// Calling-code facts for turning a national number into an international one.
struct Dialing {
    alpha2: &'static str,
    code: &'static str,
    /// Plausible length of the national significant number (without trunk prefix).
    nsn: (usize, usize),
    /// National trunk prefixes dialled before the number at home (`0` in most of Europe).
    trunk: &'static [&'static str],
}

const fn dialing(
    alpha2: &'static str,
    code: &'static str,
    min: usize,
    max: usize,
    trunk: &'static [&'static str],
) -> Dialing {
    Dialing {
        alpha2,
        code,
        nsn: (min, max),
        trunk,
    }
}

const Z: &[&str] = &["0"];

/// Sorted by alpha-2. Italy, San Marino and others without a trunk prefix keep a leading `0`,
/// because there it is part of the number.
const DIALING: [Dialing; 66] = [
    dialing("ae", "971", 8, 9, Z),
    dialing("ar", "54", 10, 11, Z),
    dialing("at", "43", 4, 13, Z),
    dialing("au", "61", 9, 9, Z),
    dialing("be", "32", 8, 9, Z),
    dialing("bg", "359", 7, 9, Z),
    dialing("br", "55", 10, 11, Z),
    dialing("ca", "1", 10, 10, &[]),
    dialing("ch", "41", 9, 9, Z),
    dialing("cl", "56", 9, 9, &[]),
    dialing("cn", "86", 10, 11, Z),
    dialing("co", "57", 10, 10, &[]),
    dialing("cy", "357", 8, 8, &[]),
    dialing("cz", "420", 9, 9, &[]),
    dialing("de", "49", 6, 13, Z),
    dialing("dk", "45", 8, 8, &[]),
    dialing("ee", "372", 7, 8, &[]),
    dialing("eg", "20", 9, 10, Z),
    dialing("es", "34", 9, 9, &[]),
    dialing("fi", "358", 5, 12, Z),
    dialing("fr", "33", 9, 9, Z),
    dialing("gb", "44", 9, 10, Z),
    dialing("gr", "30", 10, 10, &[]),
    dialing("hk", "852", 8, 8, &[]),
    dialing("hr", "385", 8, 9, Z),
    dialing("hu", "36", 8, 9, &["06"]),
    dialing("id", "62", 8, 12, Z),
    dialing("ie", "353", 7, 9, Z),
    dialing("il", "972", 8, 9, Z),
    dialing("in", "91", 10, 10, Z),
    dialing("is", "354", 7, 9, &[]),
    dialing("it", "39", 6, 11, &[]),
    dialing("jp", "81", 9, 10, Z),
    dialing("ke", "254", 9, 9, Z),
    dialing("kr", "82", 8, 10, Z),
    dialing("kz", "7", 10, 10, &["8"]),
    dialing("li", "423", 7, 9, &[]),
    dialing("lt", "370", 8, 8, &["8", "0"]),
    dialing("lu", "352", 4, 11, &[]),
    dialing("lv", "371", 8, 8, &[]),
    dialing("mc", "377", 8, 9, &[]),
    dialing("mt", "356", 8, 8, &[]),
    dialing("mx", "52", 10, 10, &[]),
    dialing("my", "60", 8, 10, Z),
    dialing("ng", "234", 8, 10, Z),
    dialing("nl", "31", 9, 9, Z),
    dialing("no", "47", 8, 8, &[]),
    dialing("nz", "64", 8, 10, Z),
    dialing("ph", "63", 8, 10, Z),
    dialing("pl", "48", 9, 9, &[]),
    dialing("pt", "351", 9, 9, &[]),
    dialing("ro", "40", 9, 9, Z),
    dialing("ru", "7", 10, 10, &["8"]),
    dialing("sa", "966", 8, 9, Z),
    dialing("se", "46", 7, 10, Z),
    dialing("sg", "65", 8, 8, &[]),
    dialing("si", "386", 8, 8, Z),
    dialing("sk", "421", 9, 9, Z),
    dialing("sm", "378", 6, 10, &[]),
    dialing("th", "66", 8, 9, Z),
    dialing("tr", "90", 10, 10, Z),
    dialing("tw", "886", 8, 9, Z),
    dialing("ua", "380", 9, 9, Z),
    dialing("us", "1", 10, 10, &[]),
    dialing("vn", "84", 9, 10, Z),
    dialing("za", "27", 9, 9, Z),
];

/// Normalises a phone number into its digits-only and E.164 forms.
///
/// Spaces, `-`, `(`, `)`, `.` and `/` are removed, and so is a parenthesised trunk zero as in
/// `+44 (0)20 7946 0958`. A number starting with `+` or `00` is international. Otherwise, when
/// `country` (any form [`normalize_country`] accepts) is in the embedded dialing table, the
/// number is national: one trunk prefix is dropped and the calling code prepended, unless the
/// digits already start with the calling code and only make sense as an international number
/// (US `16505551212` stays). Without a usable country, or for a country outside the table, the
/// digits are taken to carry their country code already (Meta's rule) after leading zeros are
/// dropped.
///
/// Output is idempotent through the E.164 form with the same country, and through the digits
/// form without a country.
///
/// # Errors
///
/// [`IdentityError::Phone`] for letters or other symbols, a `+` after the first digit, or fewer
/// than 7 or more than 15 digits once the country code is included.
pub fn normalize_phone(s: &str, country: Option<&str>) -> Result<PhoneForms, IdentityError> {
    let alpha2 = country.and_then(|c| country_code(c).ok());
    let mut scratch = String::new();
    let (code, rest) = phone_digits(s, alpha2, &mut scratch)?;
    let digits = [code, rest].concat();
    Ok(PhoneForms {
        e164: ["+", code, rest].concat(),
        digits,
    })
}

/// The digits form of [`normalize_phone`] as a calling code to put in front (empty when the
/// digits carry it already) and the digits read from `s`, which are kept in `scratch`.
/// `alpha2` is the country already normalised.
fn phone_digits<'a>(
    s: &str,
    alpha2: Option<&str>,
    scratch: &'a mut String,
) -> Result<(&'static str, &'a str), IdentityError> {
    let plus = if s.is_ascii() {
        ascii_phone_digits(s, scratch)?
    } else {
        unicode_phone_digits(s, scratch)?
    };
    let digits: &'a str = scratch;
    let international = plus || digits.starts_with("00");
    let dialing = alpha2
        .and_then(|c| DIALING.binary_search_by(|d| cmp_short(d.alpha2, c)).ok())
        .map(|i| &DIALING[i]);
    let (code, rest) = match dialing {
        Some(d) if !international => with_calling_code(digits, d),
        _ => ("", digits.trim_start_matches('0')),
    };
    if !(7..=15).contains(&(code.len() + rest.len())) {
        return Err(IdentityError::Phone(
            "needs 7 to 15 digits including the country code",
        ));
    }
    Ok((code, rest))
}

/// Reads the digits of an ASCII phone number into `digits`; true when it starts with `+`.
fn ascii_phone_digits(s: &str, digits: &mut String) -> Result<bool, IdentityError> {
    let mut rest = prepare_ascii(s).map_err(IdentityError::Phone)?.as_bytes();
    digits.clear();
    let mut plus = false;
    while let Some((&b, tail)) = rest.split_first() {
        // Like `replace("(0)", "")` before the scan: leftmost, non-overlapping, one pass.
        if let Some(after) = rest.strip_prefix(b"(0)") {
            rest = after;
            continue;
        }
        match b {
            b'0'..=b'9' => digits.push(char::from(b)),
            b'-' | b'(' | b')' | b'.' | b'/' => {}
            // `char::is_whitespace` in ASCII, which unlike `u8::is_ascii_whitespace` has VT.
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => {}
            b'+' if digits.is_empty() && !plus => plus = true,
            b if b.is_ascii_alphabetic() => return Err(IdentityError::Phone("contains letters")),
            _ => return Err(IdentityError::Phone("contains symbols")),
        }
        rest = tail;
    }
    Ok(plus)
}

/// [`ascii_phone_digits`] for any input.
fn unicode_phone_digits(s: &str, digits: &mut String) -> Result<bool, IdentityError> {
    let s = prepare(s).map_err(IdentityError::Phone)?;
    let s = s.replace("(0)", "");
    digits.clear();
    let mut plus = false;
    for c in s.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '(' | ')' | '.' | '/' => {}
            c if c.is_whitespace() => {}
            '+' if digits.is_empty() && !plus => plus = true,
            c if c.is_alphabetic() => return Err(IdentityError::Phone("contains letters")),
            _ => return Err(IdentityError::Phone("contains symbols")),
        }
    }
    Ok(plus)
}

/// The national `digits` with `d`'s calling code, as the code to put in front and the rest.
fn with_calling_code<'a>(digits: &'a str, d: &Dialing) -> (&'static str, &'a str) {
    let nsn_ok = |n: &str| (d.nsn.0..=d.nsn.1).contains(&n.len());
    let after_trunk = d
        .trunk
        .iter()
        .find_map(|t| digits.strip_prefix(t).filter(|n| nsn_ok(n)));
    // Where a trunk prefix is customary, a national number without it is unusual, so digits
    // that start with the calling code are read as an international number missing its `+`.
    let national = if d.trunk.is_empty() {
        nsn_ok(digits)
    } else {
        after_trunk.is_some()
    };
    if let Some(nsn) = digits.strip_prefix(d.code)
        && nsn_ok(nsn)
        && !national
    {
        return ("", digits);
    }
    (d.code, after_trunk.unwrap_or(digits))
}

/// Typographic punctuation that names pick up from word processors, removed like ASCII
/// punctuation.
const UNICODE_PUNCTUATION: &[char] = &[
    '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}', '\u{201C}', '\u{201D}', '\u{2010}', '\u{2011}',
    '\u{2012}', '\u{2013}', '\u{2014}', '\u{00B7}', '\u{00B4}', '\u{02BC}', '\u{00AB}', '\u{00BB}',
];

/// Normalises a first or last name: lowercase, ASCII and typographic punctuation and control
/// characters removed, runs of whitespace collapsed to one space, trimmed. Letters of any script
/// keep their accents (`Valéry` becomes `valéry`); digits are kept.
///
/// # Errors
///
/// [`IdentityError::Name`] when nothing is left or the result exceeds 256 characters.
pub fn normalize_name(s: &str) -> Result<String, IdentityError> {
    let mut name = String::new();
    name_into(s, &mut name)?;
    Ok(name)
}

fn name_into(s: &str, out: &mut String) -> Result<(), IdentityError> {
    if !s.is_ascii() {
        *out = unicode_name(s)?;
        return Ok(());
    }
    let trimmed = prepare_ascii(s).map_err(IdentityError::Name)?;
    out.clear();
    // In ASCII only letters, digits and the space survive the filter (tab and the other
    // whitespace characters are control characters); spaces separate words.
    let mut space = false;
    for b in trimmed.bytes() {
        if b.is_ascii_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(char::from(b.to_ascii_lowercase()));
        } else if b == b' ' {
            space = true;
        }
    }
    if out.is_empty() {
        return Err(IdentityError::Name("no letters"));
    }
    if out.len() > MAX_TEXT_CHARS {
        return Err(IdentityError::Name("too long"));
    }
    Ok(())
}

/// [`normalize_name`] for any input.
fn unicode_name(s: &str) -> Result<String, IdentityError> {
    let folded = fold(s).map_err(IdentityError::Name)?;
    let kept: String = folded
        .chars()
        .filter(|&c| {
            !c.is_ascii_punctuation() && !c.is_control() && !UNICODE_PUNCTUATION.contains(&c)
        })
        .collect();
    let name = nfc(&kept.split_whitespace().collect::<Vec<_>>().join(" "));
    if name.is_empty() {
        return Err(IdentityError::Name("no letters"));
    }
    if too_long(&name, MAX_TEXT_CHARS) {
        return Err(IdentityError::Name("too long"));
    }
    Ok(name)
}

/// Letters (and combining marks) only, lowercase, NFC: Meta's "no punctuation, special
/// characters or spaces" form (`New York` becomes `newyork`).
fn letters_only(s: &str) -> Result<String, &'static str> {
    let kept = if s.is_ascii() {
        let trimmed = prepare_ascii(s)?;
        let mut kept = String::with_capacity(trimmed.len());
        let letters = trimmed.bytes().filter(u8::is_ascii_alphabetic);
        kept.extend(letters.map(|b| char::from(b.to_ascii_lowercase())));
        kept
    } else {
        let folded = fold(s)?;
        let letters = folded
            .chars()
            .filter(|&c| c.is_alphabetic() || is_combining_mark(c));
        // NFC again: dropping a character can bring two combining marks together out of order.
        nfc(&letters.collect::<String>())
    };
    if kept.is_empty() {
        return Err("no letters");
    }
    if too_long(&kept, MAX_TEXT_CHARS) {
        return Err("too long");
    }
    Ok(kept)
}

/// Normalises a city to Meta's `ct` form: lowercase letters of any script only, no spaces,
/// punctuation or digits (`New York` becomes `newyork`).
///
/// # Errors
///
/// [`IdentityError::City`] when no letter is left or the result exceeds 256 characters.
pub fn normalize_city(s: &str) -> Result<String, IdentityError> {
    letters_only(s).map_err(IdentityError::City)
}

/// US states, DC and inhabited territories by compact lowercase name.
#[rustfmt::skip]
const US_STATES: [(&str, &str); 58] = [
    ("alabama", "al"), ("alaska", "ak"), ("americansamoa", "as"), ("arizona", "az"),
    ("arkansas", "ar"), ("california", "ca"), ("colorado", "co"), ("connecticut", "ct"),
    ("delaware", "de"), ("districtofcolumbia", "dc"), ("florida", "fl"), ("georgia", "ga"),
    ("guam", "gu"), ("hawaii", "hi"), ("idaho", "id"), ("illinois", "il"), ("indiana", "in"),
    ("iowa", "ia"), ("kansas", "ks"), ("kentucky", "ky"), ("louisiana", "la"), ("maine", "me"),
    ("maryland", "md"), ("massachusetts", "ma"), ("michigan", "mi"), ("minnesota", "mn"),
    ("mississippi", "ms"), ("missouri", "mo"), ("montana", "mt"), ("nebraska", "ne"),
    ("nevada", "nv"), ("newhampshire", "nh"), ("newjersey", "nj"), ("newmexico", "nm"),
    ("newyork", "ny"), ("northcarolina", "nc"), ("northdakota", "nd"),
    ("northernmarianaislands", "mp"), ("ohio", "oh"), ("oklahoma", "ok"), ("oregon", "or"),
    ("pennsylvania", "pa"), ("puertorico", "pr"), ("rhodeisland", "ri"), ("southcarolina", "sc"),
    ("southdakota", "sd"), ("tennessee", "tn"), ("texas", "tx"), ("usvirginislands", "vi"),
    ("utah", "ut"), ("vermont", "vt"), ("virginia", "va"), ("washington", "wa"),
    ("washingtondc", "dc"), ("westvirginia", "wv"), ("wisconsin", "wi"), ("wyoming", "wy"),
    ("virginislands", "vi"),
];

/// Normalises a state or region: lowercase letters only (Meta's `st` rule), and a full US state,
/// DC or territory name becomes its two-letter code (`California` becomes `ca`). Any other
/// region keeps its compact name (`Bayern` becomes `bayern`).
///
/// # Errors
///
/// [`IdentityError::State`] when no letter is left or the result exceeds 256 characters.
pub fn normalize_state(s: &str) -> Result<String, IdentityError> {
    let compact = letters_only(s).map_err(IdentityError::State)?;
    Ok(match US_STATES.iter().find(|(name, _)| *name == compact) {
        Some((_, code)) => (*code).to_owned(),
        None => compact,
    })
}

/// Normalises a postal code: lowercase, cut at the first `-`, letters and digits only (`M1 1AE`
/// becomes `m11ae`). For the US (`country` normalising to `us`) the first five digits are kept;
/// without a country, a nine-digit ZIP+4 (`12345 6789`) is cut to five as well.
///
/// # Errors
///
/// [`IdentityError::Zip`] when nothing is left, the result exceeds 16 characters, or a US code
/// does not start with five digits.
pub fn normalize_zip(s: &str, country: Option<&str>) -> Result<String, IdentityError> {
    zip_for(s, country.and_then(|c| country_code(c).ok()))
}

/// [`normalize_zip`] with the country already normalised.
fn zip_for(s: &str, alpha2: Option<&str>) -> Result<String, IdentityError> {
    let mut zip = if s.is_ascii() {
        let trimmed = prepare_ascii(s).map_err(IdentityError::Zip)?;
        let head = trimmed.split('-').next().unwrap_or_default();
        let mut zip = String::with_capacity(head.len());
        let kept = head.bytes().filter(u8::is_ascii_alphanumeric);
        zip.extend(kept.map(|b| char::from(b.to_ascii_lowercase())));
        zip
    } else {
        let folded = fold(s).map_err(IdentityError::Zip)?;
        let head = folded.split('-').next().unwrap_or_default();
        // NFC again: dropping a character can bring two combining marks together out of order.
        nfc(&head
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>())
    };
    if zip.is_empty() {
        return Err(IdentityError::Zip(
            "no letters or digits before the first '-'",
        ));
    }
    let five_digits = zip.len() >= 5 && zip.bytes().take(5).all(|b| b.is_ascii_digit());
    match alpha2 {
        Some("us") if five_digits => {
            zip.truncate(5);
            return Ok(zip);
        }
        Some("us") => return Err(IdentityError::Zip("a US zip code starts with five digits")),
        None if zip.len() == 9 && zip.bytes().all(|b| b.is_ascii_digit()) => {
            zip.truncate(5);
            return Ok(zip);
        }
        _ => {}
    }
    if too_long(&zip, MAX_ZIP_CHARS) {
        return Err(IdentityError::Zip("too long"));
    }
    Ok(zip)
}

/// ISO 3166-1 alpha-2 codes, lowercase, sorted.
const ISO_COUNTRIES: [&str; 249] = [
    "ad", "ae", "af", "ag", "ai", "al", "am", "ao", "aq", "ar", "as", "at", "au", "aw", "ax", "az",
    "ba", "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj", "bl", "bm", "bn", "bo", "bq", "br", "bs",
    "bt", "bv", "bw", "by", "bz", "ca", "cc", "cd", "cf", "cg", "ch", "ci", "ck", "cl", "cm", "cn",
    "co", "cr", "cu", "cv", "cw", "cx", "cy", "cz", "de", "dj", "dk", "dm", "do", "dz", "ec", "ee",
    "eg", "eh", "er", "es", "et", "fi", "fj", "fk", "fm", "fo", "fr", "ga", "gb", "gd", "ge", "gf",
    "gg", "gh", "gi", "gl", "gm", "gn", "gp", "gq", "gr", "gs", "gt", "gu", "gw", "gy", "hk", "hm",
    "hn", "hr", "ht", "hu", "id", "ie", "il", "im", "in", "io", "iq", "ir", "is", "it", "je", "jm",
    "jo", "jp", "ke", "kg", "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb", "lc",
    "li", "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc", "md", "me", "mf", "mg", "mh", "mk",
    "ml", "mm", "mn", "mo", "mp", "mq", "mr", "ms", "mt", "mu", "mv", "mw", "mx", "my", "mz", "na",
    "nc", "ne", "nf", "ng", "ni", "nl", "no", "np", "nr", "nu", "nz", "om", "pa", "pe", "pf", "pg",
    "ph", "pk", "pl", "pm", "pn", "pr", "ps", "pt", "pw", "py", "qa", "re", "ro", "rs", "ru", "rw",
    "sa", "sb", "sc", "sd", "se", "sg", "sh", "si", "sj", "sk", "sl", "sm", "sn", "so", "sr", "ss",
    "st", "sv", "sx", "sy", "sz", "tc", "td", "tf", "tg", "th", "tj", "tk", "tl", "tm", "tn", "to",
    "tr", "tt", "tv", "tw", "tz", "ua", "ug", "um", "us", "uy", "uz", "va", "vc", "ve", "vg", "vi",
    "vn", "vu", "wf", "ws", "ye", "yt", "za", "zm", "zw",
];

/// Alpha-3 codes and names (compact, lowercase) of the countries tally's customers mostly sell
/// to, plus the common non-ISO `uk`.
#[rustfmt::skip]
const COUNTRY_ALIASES: [(&str, &str); 156] = [
    ("uk", "gb"), ("gbr", "gb"), ("unitedkingdom", "gb"), ("greatbritain", "gb"), ("britain", "gb"),
    ("england", "gb"), ("scotland", "gb"), ("wales", "gb"), ("northernireland", "gb"),
    ("usa", "us"), ("unitedstates", "us"), ("unitedstatesofamerica", "us"), ("america", "us"),
    ("deu", "de"), ("germany", "de"), ("deutschland", "de"), ("fra", "fr"), ("france", "fr"),
    ("esp", "es"), ("spain", "es"), ("españa", "es"), ("espana", "es"), ("ita", "it"),
    ("italy", "it"), ("italia", "it"), ("nld", "nl"), ("netherlands", "nl"),
    ("thenetherlands", "nl"), ("holland", "nl"), ("bel", "be"), ("belgium", "be"), ("aut", "at"),
    ("austria", "at"), ("österreich", "at"), ("osterreich", "at"), ("che", "ch"),
    ("switzerland", "ch"), ("schweiz", "ch"), ("suisse", "ch"), ("irl", "ie"), ("ireland", "ie"),
    ("prt", "pt"), ("portugal", "pt"), ("pol", "pl"), ("poland", "pl"), ("polska", "pl"),
    ("swe", "se"), ("sweden", "se"), ("nor", "no"), ("norway", "no"), ("dnk", "dk"),
    ("denmark", "dk"), ("fin", "fi"), ("finland", "fi"), ("isl", "is"), ("iceland", "is"),
    ("cze", "cz"), ("czechia", "cz"), ("czechrepublic", "cz"), ("svk", "sk"), ("slovakia", "sk"),
    ("hun", "hu"), ("hungary", "hu"), ("rou", "ro"), ("romania", "ro"), ("bgr", "bg"),
    ("bulgaria", "bg"), ("grc", "gr"), ("greece", "gr"), ("hrv", "hr"), ("croatia", "hr"),
    ("svn", "si"), ("slovenia", "si"), ("est", "ee"), ("estonia", "ee"), ("lva", "lv"),
    ("latvia", "lv"), ("ltu", "lt"), ("lithuania", "lt"), ("lux", "lu"), ("luxembourg", "lu"),
    ("mlt", "mt"), ("malta", "mt"), ("cyp", "cy"), ("cyprus", "cy"), ("lie", "li"),
    ("liechtenstein", "li"), ("can", "ca"), ("canada", "ca"), ("mex", "mx"), ("mexico", "mx"),
    ("méxico", "mx"), ("bra", "br"), ("brazil", "br"), ("brasil", "br"), ("arg", "ar"),
    ("argentina", "ar"), ("chl", "cl"), ("chile", "cl"), ("col", "co"), ("colombia", "co"),
    ("per", "pe"), ("peru", "pe"), ("aus", "au"), ("australia", "au"), ("nzl", "nz"),
    ("newzealand", "nz"), ("jpn", "jp"), ("japan", "jp"), ("kor", "kr"), ("southkorea", "kr"),
    ("korea", "kr"), ("republicofkorea", "kr"), ("chn", "cn"), ("china", "cn"), ("ind", "in"),
    ("india", "in"), ("sgp", "sg"), ("singapore", "sg"), ("hkg", "hk"), ("hongkong", "hk"),
    ("twn", "tw"), ("taiwan", "tw"), ("tha", "th"), ("thailand", "th"), ("idn", "id"),
    ("indonesia", "id"), ("mys", "my"), ("malaysia", "my"), ("phl", "ph"), ("philippines", "ph"),
    ("vnm", "vn"), ("vietnam", "vn"), ("zaf", "za"), ("southafrica", "za"), ("nga", "ng"),
    ("nigeria", "ng"), ("ken", "ke"), ("kenya", "ke"), ("egy", "eg"), ("egypt", "eg"),
    ("are", "ae"), ("uae", "ae"), ("unitedarabemirates", "ae"), ("sau", "sa"),
    ("saudiarabia", "sa"), ("isr", "il"), ("israel", "il"), ("tur", "tr"), ("turkey", "tr"),
    ("türkiye", "tr"), ("rus", "ru"), ("russia", "ru"), ("russianfederation", "ru"), ("ukr", "ua"),
    ("ukraine", "ua"),
];

/// Normalises a country to a lowercase ISO 3166-1 alpha-2 code. Letters only are kept
/// (`U.S.` is `us`); a real alpha-2 code is taken as is, and the alpha-3 codes and English (and
/// some native) names of common countries are mapped (`United States`, `USA`, `Germany`,
/// `Deutschland`, `United Kingdom`, `UK`).
///
/// # Errors
///
/// [`IdentityError::Country`] when the letters are neither an ISO 3166-1 alpha-2 code nor a
/// known alias.
pub fn normalize_country(s: &str) -> Result<String, IdentityError> {
    country_code(s).map(str::to_owned)
}

/// Longer than every ISO code and alias, in bytes.
const MAX_COUNTRY_KEY: usize = 24;

/// [`normalize_country`], borrowing the code from the tables.
fn country_code(s: &str) -> Result<&'static str, IdentityError> {
    let unknown = IdentityError::Country("not an ISO 3166-1 code or known country name");
    let owned;
    let mut buffer = [0u8; MAX_COUNTRY_KEY];
    let key: &[u8] = if s.is_ascii() {
        // `letters_only` on the stack.
        let trimmed = prepare_ascii(s).map_err(IdentityError::Country)?;
        let mut len = 0;
        for b in trimmed.bytes().filter(u8::is_ascii_alphabetic) {
            if let Some(slot) = buffer.get_mut(len) {
                *slot = b.to_ascii_lowercase();
            }
            len += 1;
        }
        if len == 0 {
            return Err(IdentityError::Country("no letters"));
        }
        if len > MAX_TEXT_CHARS {
            return Err(IdentityError::Country("too long"));
        }
        match buffer.get(..len) {
            Some(key) => key,
            None => return Err(unknown),
        }
    } else {
        owned = letters_only(s).map_err(IdentityError::Country)?;
        owned.as_bytes()
    };
    let codes: &'static [&'static str] = &ISO_COUNTRIES;
    if let Ok(i) = codes.binary_search_by(|code| cmp_short(code.as_bytes(), key)) {
        return Ok(codes[i]);
    }
    COUNTRY_ALIASES
        .iter()
        .find(|(alias, _)| alias.as_bytes() == key)
        .map(|&(_, code)| code)
        .ok_or(unknown)
}

/// Byte order of two short strings, compared inline: `Ord` calls `memcmp`, which costs more than
/// the comparison itself at two or three bytes.
fn cmp_short<T: AsRef<[u8]> + ?Sized>(a: &T, b: &T) -> std::cmp::Ordering {
    a.as_ref().iter().cmp(b.as_ref())
}

/// Normalises a date of birth to `YYYYMMDD`. Accepted: `YYYYMMDD`, `YYYY-MM-DD`, `YYYY/MM/DD`
/// and the US order `MM/DD/YYYY`; month and day may have one digit (`2/16/1997`). Day-first
/// orders are refused rather than guessed.
///
/// # Errors
///
/// [`IdentityError::DateOfBirth`] for other formats, dates that do not exist, years before 1900,
/// and dates after today.
pub fn normalize_date_of_birth(s: &str) -> Result<String, IdentityError> {
    let mut date = String::new();
    date_of_birth_into(s, &mut date)?;
    Ok(date)
}

fn date_of_birth_into(s: &str, out: &mut String) -> Result<(), IdentityError> {
    let owned;
    let s = if s.is_ascii() {
        prepare_ascii(s).map_err(IdentityError::DateOfBirth)?
    } else {
        owned = prepare(s).map_err(IdentityError::DateOfBirth)?;
        owned.as_str()
    };
    let unsupported = IdentityError::DateOfBirth("use YYYY-MM-DD, YYYYMMDD or MM/DD/YYYY");
    let (y, m, d) = if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        (&s[..4], &s[4..6], &s[6..])
    } else {
        let sep = if s.contains('/') { '/' } else { '-' };
        let mut parts = s.split(sep);
        let (Some(a), Some(b), Some(c), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unsupported);
        };
        let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !(numeric(a) && numeric(b) && numeric(c)) {
            return Err(unsupported);
        }
        let short = |p: &str| p.len() <= 2;
        match (a, b, c) {
            (y, m, d) if y.len() == 4 && short(m) && short(d) => (y, m, d),
            (m, d, y) if sep == '/' && y.len() == 4 && short(m) && short(d) => (y, m, d),
            _ => return Err(unsupported),
        }
    };
    let number = |p: &str| p.parse::<u32>().unwrap_or(0);
    let year = i32::try_from(number(y)).unwrap_or(0);
    let date = NaiveDate::from_ymd_opt(year, number(m), number(d))
        .ok_or(IdentityError::DateOfBirth("not a real calendar date"))?;
    if year < 1900 {
        return Err(IdentityError::DateOfBirth("year before 1900"));
    }
    if date > Utc::now().date_naive() {
        return Err(IdentityError::DateOfBirth("in the future"));
    }
    out.clear();
    push_zero_padded(out, date.year().unsigned_abs(), 4);
    push_zero_padded(out, date.month(), 2);
    push_zero_padded(out, date.day(), 2);
    Ok(())
}

/// Appends `n` in decimal, left-padded with zeros to `width` digits (`{n:0width$}`).
fn push_zero_padded(out: &mut String, n: u32, width: usize) {
    let mut digits = [0u8; 10];
    let mut rest = n;
    let mut len = 0;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
        if rest == 0 {
            break;
        }
    }
    for _ in len..width {
        out.push('0');
    }
    out.extend(digits[digits.len() - len..].iter().map(|&b| char::from(b)));
}

/// Normalises gender to Meta's lowercase initial: `f`, `female`, `w`, `woman` become `f`;
/// `m`, `male`, `man` become `m` (any case).
///
/// # Errors
///
/// [`IdentityError::Gender`] for any other value; tally does not guess.
pub fn normalize_gender(s: &str) -> Result<String, IdentityError> {
    gender_code(s).map(str::to_owned)
}

fn gender_into(s: &str, out: &mut String) -> Result<(), IdentityError> {
    let code = gender_code(s)?;
    out.clear();
    out.push_str(code);
    Ok(())
}

fn gender_code(s: &str) -> Result<&'static str, IdentityError> {
    const FEMALE: [&str; 4] = ["f", "female", "w", "woman"];
    const MALE: [&str; 3] = ["m", "male", "man"];
    let folded;
    let word = if s.is_ascii() {
        prepare_ascii(s).map_err(|_| IdentityError::Gender)?
    } else {
        folded = fold(s).map_err(|_| IdentityError::Gender)?;
        folded.as_str()
    };
    // Every byte of a non-ASCII character is >= 0x80, so ignoring ASCII case compares a
    // lowercased word exactly.
    if FEMALE.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        Ok("f")
    } else if MALE.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        Ok("m")
    } else {
        Err(IdentityError::Gender)
    }
}

/// Normalises the advertiser's external id: trimmed and NFC, case kept (it must match what the
/// browser pixel sends).
///
/// # Errors
///
/// [`IdentityError::ExternalId`] when empty or longer than 256 characters.
pub fn normalize_external_id(s: &str) -> Result<String, IdentityError> {
    let id = if s.is_ascii() {
        prepare_ascii(s)
            .map_err(IdentityError::ExternalId)?
            .to_owned()
    } else {
        prepare(s).map_err(IdentityError::ExternalId)?
    };
    if too_long(&id, MAX_EXTERNAL_ID_CHARS) {
        return Err(IdentityError::ExternalId("too long"));
    }
    Ok(id)
}

/// The implementation from before the ASCII fast paths, kept verbatim and test-only as the
/// oracle of the equivalence tests and properties in `tests`. Do not optimise or otherwise
/// change it: the fast paths must keep giving exactly what it gives.
#[cfg(test)]
mod reference {
    use chrono::{Datelike, NaiveDate, Utc};
    use sha2::{Digest, Sha256};
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;

    use super::{
        COUNTRY_ALIASES, DIALING, Dialing, HashedIdentity, ISO_COUNTRIES, IdentityError,
        IdentityWarning, MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_INPUT_BYTES, MAX_TEXT_CHARS,
        MAX_ZIP_CHARS, PhoneForms, RawIdentity, UNICODE_PUNCTUATION, US_STATES, is_sha256_hex,
    };

    type Normalized = Result<String, IdentityError>;
    type Normalizer = fn(&str) -> Normalized;

    pub(super) fn hash(raw: &RawIdentity) -> (HashedIdentity, Vec<IdentityWarning>) {
        let mut warnings = Vec::new();
        let w = &mut warnings;
        let mut out = HashedIdentity::default();

        if let Some((meta, google)) =
            present(raw.email).and_then(|v| keep(w, "email", email_hashes(v)))
        {
            out.email_sha256 = Some(meta);
            out.email_google_sha256 = Some(google);
        }
        if let Some((digits, e164)) =
            present(raw.phone).and_then(|v| keep(w, "phone", phone_hashes(v, raw.country)))
        {
            out.phone_digits_sha256 = Some(digits);
            out.phone_e164_sha256 = Some(e164);
        }
        let mut hashed = |field, value: Option<&str>, normalize: Normalizer| {
            present(value).and_then(|v| keep(w, field, hash_with(v, normalize)))
        };
        out.first_name_sha256 = hashed("first_name", raw.first_name, normalize_name);
        out.last_name_sha256 = hashed("last_name", raw.last_name, normalize_name);
        out.date_of_birth_sha256 =
            hashed("date_of_birth", raw.date_of_birth, normalize_date_of_birth);
        out.gender_sha256 = hashed("gender", raw.gender, normalize_gender);

        let mut plain = |field, value: Option<&str>, normalize: &dyn Fn(&str) -> Normalized| {
            let result = present(value).map(|v| {
                if is_sha256_hex(v.trim()) {
                    Err(IdentityError::UnexpectedHash(field))
                } else {
                    normalize(v)
                }
            });
            result.and_then(|r| keep(w, field, r))
        };
        out.city = plain("city", raw.city, &normalize_city);
        out.state = plain("state", raw.state, &normalize_state);
        out.zip = plain("zip", raw.zip, &|s| normalize_zip(s, raw.country));
        out.country = plain("country", raw.country, &normalize_country);
        // An external id may legitimately look like a hash: advertisers often send one.
        out.external_id =
            present(raw.external_id).and_then(|v| keep(w, "external_id", normalize_external_id(v)));
        (out, warnings)
    }

    fn present(v: Option<&str>) -> Option<&str> {
        v.filter(|s| !s.trim().is_empty())
    }

    fn existing_hash(v: &str) -> Option<String> {
        let v = v.trim();
        is_sha256_hex(v).then(|| v.to_ascii_lowercase())
    }

    fn keep<T>(
        warnings: &mut Vec<IdentityWarning>,
        field: &'static str,
        result: Result<T, IdentityError>,
    ) -> Option<T> {
        result
            .map_err(|err| {
                warnings.push(IdentityWarning {
                    field,
                    code: err.code(),
                    message: err.to_string(),
                });
            })
            .ok()
    }

    fn email_hashes(v: &str) -> Result<(String, String), IdentityError> {
        if let Some(h) = existing_hash(v) {
            return Ok((h.clone(), h));
        }
        let email = normalize_email(v)?;
        Ok((sha256_hex(&email), sha256_hex(&gmail_form(&email)?)))
    }

    fn phone_hashes(v: &str, country: Option<&str>) -> Result<(String, String), IdentityError> {
        if let Some(h) = existing_hash(v) {
            return Ok((h.clone(), h));
        }
        let forms = normalize_phone(v, country)?;
        Ok((sha256_hex(&forms.digits), sha256_hex(&forms.e164)))
    }

    fn hash_with(v: &str, normalize: Normalizer) -> Normalized {
        match existing_hash(v) {
            Some(h) => Ok(h),
            None => normalize(v).map(|s| sha256_hex(&s)),
        }
    }

    pub(super) fn sha256_hex(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    fn prepare(s: &str) -> Result<String, &'static str> {
        if s.len() > MAX_INPUT_BYTES {
            return Err("too long");
        }
        let s: String = s.trim().nfc().collect();
        let s = s.trim();
        if s.is_empty() {
            return Err("empty");
        }
        Ok(s.to_owned())
    }

    fn fold(s: &str) -> Result<String, &'static str> {
        Ok(prepare(s)?.to_lowercase().nfc().collect())
    }

    fn too_long(s: &str, max: usize) -> bool {
        s.chars().nth(max).is_some()
    }

    pub(super) fn normalize_email(s: &str) -> Result<String, IdentityError> {
        let email = fold(s).map_err(IdentityError::Email)?;
        if too_long(&email, MAX_EMAIL_CHARS) {
            return Err(IdentityError::Email("too long"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdentityError::Email(
                "contains whitespace or control characters",
            ));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(IdentityError::Email("no @"));
        };
        if domain.contains('@') {
            return Err(IdentityError::Email("more than one @"));
        }
        if local.is_empty() {
            return Err(IdentityError::Email("empty local part"));
        }
        let local_ok = |c: char| !c.is_ascii() || c.is_ascii_alphanumeric() || "_.+-".contains(c);
        if !local.chars().all(local_ok) {
            return Err(IdentityError::Email("character not allowed before @"));
        }
        let domain_ok =
            |c: char| !c.is_ascii() || c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if !domain.chars().all(domain_ok) {
            return Err(IdentityError::Email("character not allowed in domain"));
        }
        if !domain.contains('.') {
            return Err(IdentityError::Email("domain has no dot"));
        }
        if domain.split('.').any(str::is_empty) {
            return Err(IdentityError::Email("empty domain label"));
        }
        Ok(email)
    }

    pub(super) fn normalize_email_google(s: &str) -> Result<String, IdentityError> {
        gmail_form(&normalize_email(s)?)
    }

    fn gmail_form(email: &str) -> Result<String, IdentityError> {
        match email.split_once('@') {
            Some((local, domain @ ("gmail.com" | "googlemail.com"))) => {
                let local: String = local.replace('.', "").nfc().collect();
                if local.is_empty() {
                    return Err(IdentityError::Email("empty local part"));
                }
                Ok(format!("{local}@{domain}"))
            }
            _ => Ok(email.to_owned()),
        }
    }

    pub(super) fn normalize_phone(
        s: &str,
        country: Option<&str>,
    ) -> Result<PhoneForms, IdentityError> {
        let s = prepare(s).map_err(IdentityError::Phone)?;
        let s = s.replace("(0)", "");
        let mut digits = String::with_capacity(s.len());
        let mut plus = false;
        for c in s.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '-' | '(' | ')' | '.' | '/' => {}
                c if c.is_whitespace() => {}
                '+' if digits.is_empty() && !plus => plus = true,
                c if c.is_alphabetic() => return Err(IdentityError::Phone("contains letters")),
                _ => return Err(IdentityError::Phone("contains symbols")),
            }
        }
        let international = plus || digits.starts_with("00");
        let dialing = country
            .and_then(|c| normalize_country(c).ok())
            .and_then(|c| DIALING.binary_search_by(|d| d.alpha2.cmp(c.as_str())).ok())
            .map(|i| &DIALING[i]);
        let digits = match dialing {
            Some(d) if !international => with_calling_code(&digits, d),
            _ => digits.trim_start_matches('0').to_owned(),
        };
        if !(7..=15).contains(&digits.len()) {
            return Err(IdentityError::Phone(
                "needs 7 to 15 digits including the country code",
            ));
        }
        Ok(PhoneForms {
            e164: format!("+{digits}"),
            digits,
        })
    }

    fn with_calling_code(digits: &str, d: &Dialing) -> String {
        let nsn_ok = |n: &str| (d.nsn.0..=d.nsn.1).contains(&n.len());
        let after_trunk = d
            .trunk
            .iter()
            .find_map(|t| digits.strip_prefix(t).filter(|n| nsn_ok(n)));
        // Where a trunk prefix is customary, a national number without it is unusual, so digits
        // that start with the calling code are read as an international number missing its `+`.
        let national = if d.trunk.is_empty() {
            nsn_ok(digits)
        } else {
            after_trunk.is_some()
        };
        if let Some(nsn) = digits.strip_prefix(d.code)
            && nsn_ok(nsn)
            && !national
        {
            return digits.to_owned();
        }
        format!("{}{}", d.code, after_trunk.unwrap_or(digits))
    }

    pub(super) fn normalize_name(s: &str) -> Result<String, IdentityError> {
        let folded = fold(s).map_err(IdentityError::Name)?;
        let kept: String = folded
            .chars()
            .filter(|&c| {
                !c.is_ascii_punctuation() && !c.is_control() && !UNICODE_PUNCTUATION.contains(&c)
            })
            .collect();
        let name: String = kept
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .nfc()
            .collect();
        if name.is_empty() {
            return Err(IdentityError::Name("no letters"));
        }
        if too_long(&name, MAX_TEXT_CHARS) {
            return Err(IdentityError::Name("too long"));
        }
        Ok(name)
    }

    fn letters_only(s: &str) -> Result<String, &'static str> {
        let folded = fold(s)?;
        let kept: String = folded
            .chars()
            .filter(|&c| c.is_alphabetic() || is_combining_mark(c))
            .nfc()
            .collect();
        if kept.is_empty() {
            return Err("no letters");
        }
        if too_long(&kept, MAX_TEXT_CHARS) {
            return Err("too long");
        }
        Ok(kept)
    }

    pub(super) fn normalize_city(s: &str) -> Result<String, IdentityError> {
        letters_only(s).map_err(IdentityError::City)
    }

    pub(super) fn normalize_state(s: &str) -> Result<String, IdentityError> {
        let compact = letters_only(s).map_err(IdentityError::State)?;
        Ok(match US_STATES.iter().find(|(name, _)| *name == compact) {
            Some((_, code)) => (*code).to_owned(),
            None => compact,
        })
    }

    pub(super) fn normalize_zip(s: &str, country: Option<&str>) -> Result<String, IdentityError> {
        let folded = fold(s).map_err(IdentityError::Zip)?;
        let head = folded.split('-').next().unwrap_or_default();
        // NFC again: dropping a character can bring two combining marks together out of order.
        let zip: String = head.chars().filter(|c| c.is_alphanumeric()).nfc().collect();
        if zip.is_empty() {
            return Err(IdentityError::Zip(
                "no letters or digits before the first '-'",
            ));
        }
        let country = country.and_then(|c| normalize_country(c).ok());
        let five_digits = zip.len() >= 5 && zip.bytes().take(5).all(|b| b.is_ascii_digit());
        match country.as_deref() {
            Some("us") if five_digits => return Ok(zip[..5].to_owned()),
            Some("us") => return Err(IdentityError::Zip("a US zip code starts with five digits")),
            None if zip.len() == 9 && zip.bytes().all(|b| b.is_ascii_digit()) => {
                return Ok(zip[..5].to_owned());
            }
            _ => {}
        }
        if too_long(&zip, MAX_ZIP_CHARS) {
            return Err(IdentityError::Zip("too long"));
        }
        Ok(zip)
    }

    pub(super) fn normalize_country(s: &str) -> Result<String, IdentityError> {
        let compact = letters_only(s).map_err(IdentityError::Country)?;
        if ISO_COUNTRIES.binary_search(&compact.as_str()).is_ok() {
            return Ok(compact);
        }
        match COUNTRY_ALIASES.iter().find(|(alias, _)| *alias == compact) {
            Some((_, code)) => Ok((*code).to_owned()),
            None => Err(IdentityError::Country(
                "not an ISO 3166-1 code or known country name",
            )),
        }
    }

    pub(super) fn normalize_date_of_birth(s: &str) -> Result<String, IdentityError> {
        let s = prepare(s).map_err(IdentityError::DateOfBirth)?;
        let unsupported = IdentityError::DateOfBirth("use YYYY-MM-DD, YYYYMMDD or MM/DD/YYYY");
        let (y, m, d) = if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
            (&s[..4], &s[4..6], &s[6..])
        } else {
            let sep = if s.contains('/') { '/' } else { '-' };
            let parts: Vec<&str> = s.split(sep).collect();
            let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            if parts.len() != 3 || !parts.iter().all(numeric) {
                return Err(unsupported);
            }
            let short = |p: &str| p.len() <= 2;
            match (parts[0], parts[1], parts[2]) {
                (y, m, d) if y.len() == 4 && short(m) && short(d) => (y, m, d),
                (m, d, y) if sep == '/' && y.len() == 4 && short(m) && short(d) => (y, m, d),
                _ => return Err(unsupported),
            }
        };
        let number = |p: &str| p.parse::<u32>().unwrap_or(0);
        let year = i32::try_from(number(y)).unwrap_or(0);
        let date = NaiveDate::from_ymd_opt(year, number(m), number(d))
            .ok_or(IdentityError::DateOfBirth("not a real calendar date"))?;
        if year < 1900 {
            return Err(IdentityError::DateOfBirth("year before 1900"));
        }
        if date > Utc::now().date_naive() {
            return Err(IdentityError::DateOfBirth("in the future"));
        }
        Ok(format!(
            "{:04}{:02}{:02}",
            date.year(),
            date.month(),
            date.day()
        ))
    }

    pub(super) fn normalize_gender(s: &str) -> Result<String, IdentityError> {
        let folded = fold(s).map_err(|_| IdentityError::Gender)?;
        match folded.as_str() {
            "f" | "female" | "w" | "woman" => Ok("f".to_owned()),
            "m" | "male" | "man" => Ok("m".to_owned()),
            _ => Err(IdentityError::Gender),
        }
    }

    pub(super) fn normalize_external_id(s: &str) -> Result<String, IdentityError> {
        let id = prepare(s).map_err(IdentityError::ExternalId)?;
        if too_long(&id, MAX_EXTERNAL_ID_CHARS) {
            return Err(IdentityError::ExternalId("too long"));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMAIL_HASH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
    const PHONE_DIGITS_HASH: &str =
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";
    const PHONE_E164_HASH: &str =
        "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8";
    const MARY_HASH: &str = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec";
    const VALERY_HASH: &str = "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c";
    const JEONG_HASH: &str = "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14";
    const DOB_HASH: &str = "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c";
    const US_HASH: &str = "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621";

    fn hash(raw: RawIdentity) -> HashedIdentity {
        let (hashed, warnings) = HashedIdentity::hash(&raw);
        assert!(warnings.is_empty(), "{warnings:?}");
        hashed
    }

    #[test]
    fn sha256_matches_the_reference_vectors() {
        assert_eq!(sha256_hex("john_smith@gmail.com"), EMAIL_HASH);
        assert_eq!(sha256_hex("16505551212"), PHONE_DIGITS_HASH);
        assert_eq!(sha256_hex("+16505551212"), PHONE_E164_HASH);
        assert_eq!(sha256_hex("mary"), MARY_HASH);
        assert_eq!(sha256_hex("val\u{e9}ry"), VALERY_HASH);
        assert_eq!(sha256_hex("정"), JEONG_HASH);
        assert_eq!(sha256_hex("19970216"), DOB_HASH);
        assert_eq!(sha256_hex("us"), US_HASH);
    }

    #[test]
    fn email_is_trimmed_and_lowercased_before_hashing() {
        let h = hash(RawIdentity {
            email: Some(" John_Smith@Gmail.com "),
            ..Default::default()
        });
        assert_eq!(h.email_sha256.as_deref(), Some(EMAIL_HASH));
        let google = sha256_hex("john_smith@gmail.com");
        assert_eq!(h.email_google_sha256.as_deref(), Some(google.as_str()));
    }

    #[test]
    fn google_email_form_stays_nfc_when_a_dot_separated_a_combining_mark() {
        // Found by the identity fuzz target (fuzz/regressions/identity/): the dot kept `n` and
        // U+0301 apart through NFC, its removal joined them undecomposed.
        let once = normalize_email_google("J.an..n.\u{301}j.et+agag@GoogleMail.com").unwrap();
        assert_eq!(once, "jan\u{144}jet+agag@googlemail.com");
        assert_eq!(normalize_email_google(&once).unwrap(), once);
        let raw = RawIdentity {
            email: Some("J.an..n.\u{301}j.et+agag@GoogleMail.com"),
            ..Default::default()
        };
        assert_eq!(
            HashedIdentity::hash(&raw).0.email_google_sha256,
            Some(sha256_hex(&once)),
            "the hashing fast path agrees"
        );
    }

    #[test]
    fn google_email_form_drops_dots_for_gmail_only() {
        assert_eq!(
            normalize_email_google("J.O.Hn@Gmail.com").unwrap(),
            "john@gmail.com"
        );
        assert_eq!(
            normalize_email_google("j.doe@googlemail.com").unwrap(),
            "jdoe@googlemail.com"
        );
        assert_eq!(
            normalize_email_google("j.doe@example.com").unwrap(),
            "j.doe@example.com"
        );
        assert_eq!(
            normalize_email("J.Doe@Gmail.com").unwrap(),
            "j.doe@gmail.com"
        );
        assert_eq!(
            normalize_email_google("...@gmail.com").unwrap_err().code(),
            "invalid_email"
        );
        let dots_only = RawIdentity {
            email: Some("...@gmail.com"),
            ..Default::default()
        };
        let (h, warnings) = HashedIdentity::hash(&dots_only);
        assert!(h.is_empty());
        assert_eq!(warnings[0].code, "invalid_email");

        let h = hash(RawIdentity {
            email: Some("J.Doe@gmail.com"),
            ..Default::default()
        });
        assert_eq!(h.email_sha256.unwrap(), sha256_hex("j.doe@gmail.com"));
        assert_eq!(h.email_google_sha256.unwrap(), sha256_hex("jdoe@gmail.com"));
    }

    #[test]
    fn email_accepts_plus_tags_and_internationalised_parts() {
        assert_eq!(
            normalize_email("a.b+tag@sub.example.co.uk").unwrap(),
            "a.b+tag@sub.example.co.uk"
        );
        assert_eq!(normalize_email("JÖRG@Bücher.DE").unwrap(), "jörg@bücher.de");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for s in [
            "",
            "   ",
            "john",
            "john@",
            "@example.com",
            "jo hn@example.com",
            "john@example",
            "a@b@example.com",
            "john@exa_mple.com",
            "john@example..com",
            "john@example.com.",
            "jo\"hn@example.com",
            "john@example.com\u{0}",
        ] {
            let err = normalize_email(s).unwrap_err();
            assert_eq!(err.code(), "invalid_email", "{s:?}");
        }
    }

    #[test]
    fn error_messages_never_echo_the_input() {
        let secret = "secret.person@example";
        let err = normalize_email(secret).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let (_, warnings) = HashedIdentity::hash(&RawIdentity {
            email: Some(secret),
            phone: Some("555-CALL-NOW"),
            ..Default::default()
        });
        assert_eq!(warnings.len(), 2);
        for w in warnings {
            assert!(
                !w.message.contains("secret") && !w.message.contains("CALL"),
                "{w:?}"
            );
        }
    }

    #[test]
    fn international_phone_gives_both_platform_forms() {
        let h = hash(RawIdentity {
            phone: Some("+1 (650) 555-1212"),
            ..Default::default()
        });
        assert_eq!(h.phone_digits_sha256.as_deref(), Some(PHONE_DIGITS_HASH));
        assert_eq!(h.phone_e164_sha256.as_deref(), Some(PHONE_E164_HASH));
    }

    #[test]
    fn national_phone_takes_the_calling_code_from_the_country() {
        let h = hash(RawIdentity {
            phone: Some("(650) 555-1212"),
            country: Some("US"),
            ..Default::default()
        });
        assert_eq!(h.phone_digits_sha256.as_deref(), Some(PHONE_DIGITS_HASH));
        assert_eq!(h.phone_e164_sha256.as_deref(), Some(PHONE_E164_HASH));
        assert_eq!(h.country.as_deref(), Some("us"));
    }

    #[test]
    fn phone_forms_follow_country_rules() {
        let digits = |s: &str, c: Option<&str>| normalize_phone(s, c).map(|f| f.digits);
        // US: already international without '+', or national.
        assert_eq!(digits("16505551212", Some("us")).unwrap(), "16505551212");
        assert_eq!(
            digits("650.555.1212", Some("United States")).unwrap(),
            "16505551212"
        );
        // Trunk zero dropped.
        assert_eq!(digits("030 1234567", Some("DE")).unwrap(), "49301234567");
        assert_eq!(digits("07911 123456", Some("gb")).unwrap(), "447911123456");
        assert_eq!(digits("+44 (0)20 7946 0958", None).unwrap(), "442079460958");
        assert_eq!(
            digits("0044 20 7946 0958", Some("de")).unwrap(),
            "442079460958"
        );
        // International without '+' where a trunk prefix is customary.
        assert_eq!(
            digits("49 151 12345678", Some("de")).unwrap(),
            "4915112345678"
        );
        // Italy keeps its leading zero.
        assert_eq!(digits("06 1234 5678", Some("it")).unwrap(), "390612345678");
        // India: a national mobile that happens to start with 91.
        assert_eq!(digits("91234 56789", Some("in")).unwrap(), "919123456789");
        assert_eq!(
            digits("8 912 345-67-89", Some("ru")).unwrap(),
            "79123456789"
        );
        assert_eq!(digits("06 30 123 4567", Some("hu")).unwrap(), "36301234567");
        // Without a country the digits carry the country code (Meta's rule).
        assert_eq!(digits("0016505551212", None).unwrap(), "16505551212");
        // A country outside the dialing table falls back to the same rule.
        assert_eq!(digits("6797654321", Some("fj")).unwrap(), "6797654321");
        let forms = normalize_phone("+49 30 1234567", Some("fr")).unwrap();
        assert_eq!(forms.e164, "+49301234567");
    }

    #[test]
    fn bad_phones_are_refused() {
        for (s, c) in [
            ("555-CALL-NOW", None),
            ("+1 650 555 1212 ext 3", None),
            ("123456", None),
            ("1234567890123456", None),
            ("+", None),
            ("1+2345678", None),
            ("650#5551212", None),
            ("12", Some("us")),
        ] {
            let err = normalize_phone(s, c).unwrap_err();
            assert_eq!(err.code(), "invalid_phone", "{s:?}");
        }
    }

    #[test]
    fn names_are_lowercased_without_punctuation_and_nfc() {
        assert_eq!(normalize_name(" Mary ").unwrap(), "mary");
        assert_eq!(normalize_name("Valéry").unwrap(), "val\u{e9}ry");
        assert_eq!(normalize_name("vale\u{301}ry").unwrap(), "val\u{e9}ry");
        assert_eq!(normalize_name("O'Brien-Smith").unwrap(), "obriensmith");
        assert_eq!(normalize_name("O\u{2019}Brien").unwrap(), "obrien");
        assert_eq!(normalize_name("Jean   Paul\t").unwrap(), "jean paul");
        assert_eq!(normalize_name("...").unwrap_err().code(), "invalid_name");
        for raw in ["Valéry", "vale\u{301}ry", "VALÉRY"] {
            let h = hash(RawIdentity {
                first_name: Some(raw),
                ..Default::default()
            });
            assert_eq!(h.first_name_sha256.as_deref(), Some(VALERY_HASH), "{raw}");
        }
        let h = hash(RawIdentity {
            first_name: Some("Mary"),
            last_name: Some("정"),
            ..Default::default()
        });
        assert_eq!(h.first_name_sha256.as_deref(), Some(MARY_HASH));
        assert_eq!(h.last_name_sha256.as_deref(), Some(JEONG_HASH));
    }

    #[test]
    fn date_of_birth_formats_become_yyyymmdd() {
        for s in [
            "1997-02-16",
            "19970216",
            "1997/02/16",
            "02/16/1997",
            "2/16/1997",
            "1997-2-16",
        ] {
            assert_eq!(normalize_date_of_birth(s).unwrap(), "19970216", "{s}");
        }
        let h = hash(RawIdentity {
            date_of_birth: Some("2/16/1997"),
            ..Default::default()
        });
        assert_eq!(h.date_of_birth_sha256.as_deref(), Some(DOB_HASH));
    }

    #[test]
    fn impossible_or_ambiguous_dates_of_birth_are_refused() {
        let next_year = format!("{}-01-01", Utc::now().year() + 1);
        for s in [
            "1997-02-30",
            "1899-12-31",
            "19971316",
            "16/02/1997",
            "16.02.1997",
            "1997-02",
            "97-02-16",
            "2/16/97",
            "1997-02/16",
            "birthday",
            next_year.as_str(),
        ] {
            let err = normalize_date_of_birth(s).unwrap_err();
            assert_eq!(err.code(), "invalid_date_of_birth", "{s}");
        }
        assert_eq!(normalize_date_of_birth("2000-02-29").unwrap(), "20000229");
    }

    #[test]
    fn gender_words_become_initials() {
        for s in ["f", "F", "female", "Woman", "w"] {
            assert_eq!(normalize_gender(s).unwrap(), "f", "{s}");
        }
        for s in ["m", "MALE", " man "] {
            assert_eq!(normalize_gender(s).unwrap(), "m", "{s}");
        }
        for s in ["x", "unknown", "femme"] {
            assert_eq!(
                normalize_gender(s).unwrap_err().code(),
                "invalid_gender",
                "{s}"
            );
        }
    }

    #[test]
    fn geography_is_kept_as_normalised_plaintext() {
        let h = hash(RawIdentity {
            city: Some("New York"),
            state: Some("New York"),
            zip: Some("10001-1234"),
            country: Some("United States"),
            ..Default::default()
        });
        assert_eq!(h.city.as_deref(), Some("newyork"));
        assert_eq!(h.state.as_deref(), Some("ny"));
        assert_eq!(h.zip.as_deref(), Some("10001"));
        assert_eq!(h.country.as_deref(), Some("us"));
        assert_eq!(sha256_hex(h.country.as_deref().unwrap()), US_HASH);
    }

    #[test]
    fn city_and_state_keep_letters_only() {
        assert_eq!(normalize_city("St. Louis 2").unwrap(), "stlouis");
        assert_eq!(normalize_city("São Paulo").unwrap(), "s\u{e3}opaulo");
        assert_eq!(normalize_city("123").unwrap_err().code(), "invalid_city");
        assert_eq!(normalize_state("California").unwrap(), "ca");
        assert_eq!(normalize_state("District of Columbia").unwrap(), "dc");
        assert_eq!(normalize_state("CA").unwrap(), "ca");
        assert_eq!(normalize_state("Bayern").unwrap(), "bayern");
        assert_eq!(normalize_state("--").unwrap_err().code(), "invalid_state");
    }

    #[test]
    fn all_us_states_and_dc_map_to_codes() {
        let codes: std::collections::BTreeSet<&str> = US_STATES.iter().map(|(_, c)| *c).collect();
        for code in [
            "al", "ak", "az", "ca", "dc", "ny", "tx", "wa", "wy", "wv", "ri", "pr",
        ] {
            assert!(codes.contains(code), "{code}");
        }
        let states = US_STATES
            .iter()
            .filter(|(_, c)| !["as", "gu", "mp", "pr", "vi"].contains(c));
        let distinct: std::collections::BTreeSet<&str> = states.map(|(_, c)| *c).collect();
        assert_eq!(distinct.len(), 51);
    }

    #[test]
    fn zip_rules_follow_country() {
        assert_eq!(normalize_zip("M1 1AE", Some("gb")).unwrap(), "m11ae");
        assert_eq!(normalize_zip("94043-1351", None).unwrap(), "94043");
        assert_eq!(normalize_zip("94043 1351", None).unwrap(), "94043");
        assert_eq!(normalize_zip("940431351", Some("US")).unwrap(), "94043");
        assert_eq!(normalize_zip("123456789", Some("de")).unwrap(), "123456789");
        assert_eq!(normalize_zip("10115", Some("Germany")).unwrap(), "10115");
        assert_eq!(
            normalize_zip("1234", Some("us")).unwrap_err().code(),
            "invalid_zip"
        );
        assert_eq!(
            normalize_zip("-123", None).unwrap_err().code(),
            "invalid_zip"
        );
    }

    #[test]
    fn countries_map_codes_and_names_to_alpha2() {
        for s in [
            "US",
            "us",
            "U.S.",
            "USA",
            "United States",
            "united states of america",
        ] {
            assert_eq!(normalize_country(s).unwrap(), "us", "{s}");
        }
        assert_eq!(normalize_country("Germany").unwrap(), "de");
        assert_eq!(normalize_country("DEU").unwrap(), "de");
        assert_eq!(normalize_country("United Kingdom").unwrap(), "gb");
        assert_eq!(normalize_country("UK").unwrap(), "gb");
        assert_eq!(normalize_country("Österreich").unwrap(), "at");
        for s in ["XX", "Atlantis", "zz", "1", ""] {
            assert_eq!(
                normalize_country(s).unwrap_err().code(),
                "invalid_country",
                "{s}"
            );
        }
    }

    #[test]
    fn country_tables_are_consistent() {
        assert!(ISO_COUNTRIES.windows(2).all(|w| w[0] < w[1]));
        for (alias, code) in COUNTRY_ALIASES {
            assert!(ISO_COUNTRIES.contains(&code), "{alias} -> {code}");
            assert!(
                ISO_COUNTRIES.binary_search(&alias).is_err(),
                "{alias} shadows a code"
            );
            assert_eq!(normalize_country(alias).unwrap(), code, "{alias}");
        }
        assert!(DIALING.windows(2).all(|w| w[0].alpha2 < w[1].alpha2));
        for d in &DIALING {
            assert!(ISO_COUNTRIES.contains(&d.alpha2), "{}", d.alpha2);
        }
    }

    #[test]
    fn external_id_keeps_case_and_is_bounded() {
        assert_eq!(normalize_external_id("  Cust-0042 ").unwrap(), "Cust-0042");
        assert_eq!(
            normalize_external_id(&"x".repeat(257)).unwrap_err().code(),
            "invalid_external_id"
        );
        assert_eq!(normalize_external_id(&"x".repeat(256)).unwrap().len(), 256);
    }

    #[test]
    fn already_hashed_values_pass_through_lowercased() {
        let upper = EMAIL_HASH.to_uppercase();
        let h = hash(RawIdentity {
            email: Some(&upper),
            phone: Some(PHONE_E164_HASH),
            first_name: Some(MARY_HASH),
            date_of_birth: Some(DOB_HASH),
            ..Default::default()
        });
        assert_eq!(h.email_sha256.as_deref(), Some(EMAIL_HASH));
        assert_eq!(h.email_google_sha256.as_deref(), Some(EMAIL_HASH));
        assert_eq!(h.phone_digits_sha256.as_deref(), Some(PHONE_E164_HASH));
        assert_eq!(h.phone_e164_sha256.as_deref(), Some(PHONE_E164_HASH));
        assert_eq!(h.first_name_sha256.as_deref(), Some(MARY_HASH));
        assert_eq!(h.date_of_birth_sha256.as_deref(), Some(DOB_HASH));
    }

    #[test]
    fn hashed_geography_is_refused_with_a_warning() {
        let (h, warnings) = HashedIdentity::hash(&RawIdentity {
            city: Some(MARY_HASH),
            ..Default::default()
        });
        assert!(h.is_empty());
        assert_eq!(warnings[0].field, "city");
        assert_eq!(warnings[0].code, "unexpected_hash");
    }

    #[test]
    fn bad_fields_are_left_out_and_reported_while_good_ones_are_kept() {
        let (h, warnings) = HashedIdentity::hash(&RawIdentity {
            email: Some("not-an-email"),
            phone: Some("+1 650 555 1212"),
            gender: Some("x"),
            country: Some("Atlantis"),
            ..Default::default()
        });
        assert_eq!(
            h.field_names_present(),
            ["phone_digits_sha256", "phone_e164_sha256"]
        );
        let fields: Vec<_> = warnings.iter().map(|w| (w.field, w.code)).collect();
        assert_eq!(
            fields,
            [
                ("email", "invalid_email"),
                ("gender", "invalid_gender"),
                ("country", "invalid_country")
            ]
        );
    }

    #[test]
    fn blank_values_count_as_absent() {
        let (h, warnings) = HashedIdentity::hash(&RawIdentity {
            email: Some(""),
            phone: Some("   "),
            ..Default::default()
        });
        assert!(h.is_empty());
        assert!(warnings.is_empty());
    }

    #[test]
    fn fill_from_copies_only_missing_fields() {
        let mut a = HashedIdentity {
            email_sha256: Some("a".into()),
            email_google_sha256: Some("a".into()),
            ..Default::default()
        };
        let b = HashedIdentity {
            email_sha256: Some("b".into()),
            email_google_sha256: Some("b".into()),
            city: Some("paris".into()),
            ..Default::default()
        };
        assert_eq!(a.fill_from(&b), ["city"]);
        assert_eq!(a.email_sha256.as_deref(), Some("a"));
        assert_eq!(a.city.as_deref(), Some("paris"));
        assert!(a.fill_from(&b).is_empty());
    }

    #[test]
    fn fill_from_never_mixes_forms_of_two_emails() {
        let mut a = HashedIdentity {
            email_sha256: Some("a".into()),
            ..Default::default()
        };
        let b = HashedIdentity {
            email_sha256: Some("b".into()),
            email_google_sha256: Some("b".into()),
            ..Default::default()
        };
        assert!(a.fill_from(&b).is_empty());
        assert_eq!(a.email_google_sha256, None);
    }

    #[test]
    fn override_from_lets_the_other_side_win_and_reports_changes() {
        let mut a = HashedIdentity {
            email_sha256: Some("a".into()),
            email_google_sha256: Some("a-google".into()),
            zip: Some("10001".into()),
            country: Some("us".into()),
            ..Default::default()
        };
        let b = HashedIdentity {
            email_sha256: Some("b".into()),
            country: Some("us".into()),
            city: Some("paris".into()),
            ..Default::default()
        };
        assert_eq!(
            a.override_from(&b),
            ["email_sha256", "email_google_sha256", "city"]
        );
        assert_eq!(a.email_sha256.as_deref(), Some("b"));
        assert_eq!(a.email_google_sha256, None);
        assert_eq!(a.zip.as_deref(), Some("10001"));
        assert!(a.override_from(&b).is_empty());
    }

    #[test]
    fn serde_skips_absent_fields_and_refuses_unknown_ones() {
        let h = hash(RawIdentity {
            country: Some("us"),
            ..Default::default()
        });
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"country":"us"}"#);
        let back: HashedIdentity = serde_json::from_str(r#"{"country":"us"}"#).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<HashedIdentity>(r#"{"email":"x"}"#).is_err());
    }

    #[test]
    fn is_sha256_hex_needs_exactly_64_hex_chars() {
        assert!(is_sha256_hex(EMAIL_HASH));
        assert!(is_sha256_hex(&EMAIL_HASH.to_uppercase()));
        assert!(!is_sha256_hex(&EMAIL_HASH[1..]));
        assert!(!is_sha256_hex(&format!("{}g", &EMAIL_HASH[1..])));
    }

    #[test]
    fn huge_inputs_are_refused_quickly() {
        let huge = format!("{}@example.com", "a".repeat(1 << 20));
        assert_eq!(
            normalize_email(&huge).unwrap_err(),
            IdentityError::Email("too long")
        );
        let (h, warnings) = HashedIdentity::hash(&RawIdentity {
            email: Some(&huge),
            first_name: Some(&huge),
            phone: Some(&huge),
            ..Default::default()
        });
        assert!(h.is_empty());
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn every_error_code_is_snake_case() {
        let errors = [
            IdentityError::Email(""),
            IdentityError::Phone(""),
            IdentityError::Name(""),
            IdentityError::City(""),
            IdentityError::State(""),
            IdentityError::Zip(""),
            IdentityError::Country(""),
            IdentityError::DateOfBirth(""),
            IdentityError::Gender,
            IdentityError::ExternalId(""),
            IdentityError::UnexpectedHash("city"),
        ];
        for err in errors {
            assert!(
                err.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }

    /// Arbitrary text, text with control characters, and shapes close to real identifiers, so
    /// that the properties also exercise the success paths.
    fn inputs() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ \\t\\x00-\\x1f]{0,3}\\PC{0,24}[ \\n]{0,2}",
            "[ ]?[A-Za-z0-9._+-]{1,12}@[A-Za-z0-9-]{1,10}\\.[A-Za-z]{2,4}[ ]?",
            "[+]?[0 (]{0,3}[0-9 ().-]{6,18}",
            "[A-Za-zÀ-ÿ\\u{300}-\\u{36f} '.-]{1,20}",
            "[0-9]{1,2}/[0-9]{1,2}/(19|20)[0-9]{2}|(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}|[0-9]{8}",
            "(f|m|female|male|woman|man|W|F|M)",
            "[A-Za-z0-9 -]{2,12}",
        ]
    }

    fn countries() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "(us|US|de|gb|it|in|ru|hu|fr|jp|United States|Germany|fj|xx)".prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn normalisers_are_idempotent(s in inputs(), country in countries()) {
            let c = country.as_deref();
            let plain: [(&str, Normalizer); 9] = [
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
            for (what, normalize) in plain {
                if let Ok(once) = normalize(&s) {
                    let twice = normalize(&once);
                    prop_assert_eq!(twice.as_ref(), Ok(&once), "{}", what);
                }
            }
            if let Ok(once) = normalize_zip(&s, c) {
                prop_assert_eq!(normalize_zip(&once, c), Ok(once));
            }
            if let Ok(forms) = normalize_phone(&s, c) {
                let via_e164 = normalize_phone(&forms.e164, c);
                let via_digits = normalize_phone(&forms.digits, None);
                prop_assert_eq!(via_e164.as_ref(), Ok(&forms));
                prop_assert_eq!(via_digits.as_ref(), Ok(&forms));
                prop_assert_eq!(forms.e164.strip_prefix('+'), Some(forms.digits.as_str()));
            }
        }

        #[test]
        fn already_hashed_values_are_never_hashed_again(h in "[0-9a-fA-F]{64}", pad in "[ ]{0,2}") {
            let v = format!("{pad}{h}{pad}");
            let raw = RawIdentity {
                email: Some(&v), phone: Some(&v), first_name: Some(&v), last_name: Some(&v),
                date_of_birth: Some(&v), gender: Some(&v), ..Default::default()
            };
            let (hashed, warnings) = HashedIdentity::hash(&raw);
            prop_assert!(warnings.is_empty());
            let lower = h.to_ascii_lowercase();
            for (name, value) in hashed.slots().into_iter().take(8) {
                prop_assert_eq!(value.as_deref(), Some(lower.as_str()), "{}", name);
            }
        }

        #[test]
        fn hashing_never_panics_and_only_emits_hex(s in inputs(), country in countries()) {
            let raw = RawIdentity {
                email: Some(&s), phone: Some(&s), first_name: Some(&s), last_name: Some(&s),
                city: Some(&s), state: Some(&s), zip: Some(&s), country: country.as_deref(),
                date_of_birth: Some(&s), gender: Some(&s), external_id: Some(&s),
            };
            let (hashed, _) = HashedIdentity::hash(&raw);
            for (name, value) in hashed.slots().into_iter().take(8) {
                if let Some(v) = value {
                    prop_assert!(is_sha256_hex(v) && v.bytes().all(|b| !b.is_ascii_uppercase()), "{}", name);
                }
            }
        }
    }

    /// Pieces that sit on the edges between the ASCII fast paths and the general path: ASCII
    /// controls and whitespace (VT is whitespace for `char`, not for `u8`), the phone's `(0)`,
    /// gmail, the lookup tables, combining marks in and out of order, full-width digits, Turkish
    /// dotted and dotless i, German sharp s, case mappings that leave or enter ASCII (Kelvin
    /// sign), Unicode spaces (one with a singleton decomposition), and hash-like values.
    const EDGE_PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "9",
        " ",
        "  ",
        "\t",
        "\n",
        "\u{b}",
        "\u{c}",
        "\r",
        "\u{0}",
        "\u{1c}",
        "\u{1f}",
        "\u{7f}",
        ".",
        "-",
        "+",
        "(",
        ")",
        "/",
        "@",
        "_",
        "'",
        ",",
        "#",
        "(0)",
        "((0)0)",
        "00",
        "+1",
        "+44 (0)",
        "650",
        "555-1212",
        "Jane",
        "DOE",
        "O'Brien",
        "@gmail.com",
        "@googlemail.com",
        "@Example.COM",
        "j.o.h.n",
        "...",
        "US",
        "us",
        "U.S.",
        "USA",
        "United States",
        "Germany",
        "DE",
        "uk",
        "fj",
        "xx",
        "New York",
        "California",
        "female",
        "WOMAN",
        "Male",
        "m",
        "f",
        "w",
        "1997",
        "02",
        "16",
        "1997-02-16",
        "2/16/1997",
        "19970216",
        "2099-01-01",
        "94043",
        "-1351",
        "M1 1AE",
        "vale\u{301}ry",
        "Val\u{e9}ry",
        "\u{301}",
        "\u{327}\u{301}",
        "\u{301}\u{327}",
        "e\u{301}\u{327}",
        "\u{ff11}\u{ff12}",
        "\u{ff16}\u{ff15}\u{ff10}",
        "\u{130}",
        "\u{131}",
        "I\u{307}",
        "\u{df}",
        "\u{1e9e}",
        "\u{212a}",
        "\u{212b}",
        "A\u{30a}",
        "\u{3a3}",
        "\u{345}",
        "\u{1c5}",
        "\u{a0}",
        "\u{85}",
        "\u{2028}",
        "\u{3000}",
        "\u{2001}",
        "\u{2019}",
        "\u{2013}",
        "\u{b7}",
        "\u{ab}",
        "\u{d55c}",
        "\u{1100}\u{1161}\u{11a8}",
        "\u{f900}",
        "\u{200b}",
        "\u{feff}",
        "\u{1f600}",
        "Espa\u{f1}a",
        "\u{d6}sterreich",
        "T\u{fc}rkiye",
        "M\u{c9}XICO",
        "M\u{fc}nchen",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF",
        // Whitespace inside a value, where trimming does not reach it.
        "650\u{b}555 1212",
        "Jean\tPaul",
        "a\u{85}b",
        "x\u{a0}y",
        "a\u{b}b@x.io",
    ];

    fn edge_text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(EDGE_PIECES), 0..8).prop_map(|p| p.concat())
    }

    /// Mostly ASCII, like real traffic, but every path gets its share.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => inputs(),
            3 => "[\\x00-\\x7f]{0,24}",
            3 => edge_text(),
            1 => any::<String>(),
        ]
    }

    fn field_country() -> impl Strategy<Value = Option<String>> {
        prop_oneof![countries(), prop::option::of(field())]
    }

    /// Every public normaliser against its reference, for one input and country.
    fn assert_normalisers_match_reference(s: &str, c: Option<&str>) {
        use super::reference as r;
        assert_eq!(sha256_hex(s), r::sha256_hex(s), "sha256_hex {s:?}");
        assert_eq!(normalize_email(s), r::normalize_email(s), "email {s:?}");
        let google = normalize_email_google(s);
        assert_eq!(google, r::normalize_email_google(s), "email_google {s:?}");
        assert_eq!(
            normalize_phone(s, c),
            r::normalize_phone(s, c),
            "phone {s:?} {c:?}"
        );
        assert_eq!(normalize_name(s), r::normalize_name(s), "name {s:?}");
        assert_eq!(normalize_city(s), r::normalize_city(s), "city {s:?}");
        assert_eq!(normalize_state(s), r::normalize_state(s), "state {s:?}");
        assert_eq!(
            normalize_zip(s, c),
            r::normalize_zip(s, c),
            "zip {s:?} {c:?}"
        );
        assert_eq!(
            normalize_country(s),
            r::normalize_country(s),
            "country {s:?}"
        );
        let dob = normalize_date_of_birth(s);
        assert_eq!(dob, r::normalize_date_of_birth(s), "date_of_birth {s:?}");
        assert_eq!(normalize_gender(s), r::normalize_gender(s), "gender {s:?}");
        let id = normalize_external_id(s);
        assert_eq!(id, r::normalize_external_id(s), "external_id {s:?}");
    }

    fn same_in_every_field<'a>(s: &'a str, country: Option<&'a str>) -> RawIdentity<'a> {
        RawIdentity {
            email: Some(s),
            phone: Some(s),
            first_name: Some(s),
            last_name: Some(s),
            city: Some(s),
            state: Some(s),
            zip: Some(s),
            country,
            date_of_birth: Some(s),
            gender: Some(s),
            external_id: Some(s),
        }
    }

    #[test]
    fn edge_pieces_and_their_pairs_normalise_as_the_reference_does() {
        let countries = [
            None,
            Some("us"),
            Some("DE"),
            Some("gb"),
            Some("it"),
            Some("fj"),
        ];
        for a in EDGE_PIECES {
            for b in EDGE_PIECES {
                let s = format!("{a}{b}");
                assert_normalisers_match_reference(&s, None);
            }
            for c in countries {
                assert_normalisers_match_reference(a, c);
                let raw = same_in_every_field(a, c);
                assert_eq!(
                    HashedIdentity::hash(&raw),
                    reference::hash(&raw),
                    "{a:?} {c:?}"
                );
            }
            assert_normalisers_match_reference("US", Some(a));
        }
    }

    #[test]
    fn lengths_at_the_limits_normalise_as_the_reference_does() {
        for unit in ["a", "\u{e9}", "e\u{301}", "1", " ", "a.", "\u{d55c}"] {
            for n in [
                15, 16, 17, 63, 64, 65, 240, 253, 254, 255, 256, 257, 258, 1365, 2048, 4097,
            ] {
                let body = unit.repeat(n);
                for s in [
                    body.clone(),
                    format!("{body}@example.com"),
                    format!("x@{body}.com"),
                    format!(" {body} "),
                    format!("+{body}"),
                ] {
                    assert_normalisers_match_reference(&s, None);
                    assert_normalisers_match_reference(&s, Some("us"));
                    let raw = same_in_every_field(&s, Some("us"));
                    assert_eq!(HashedIdentity::hash(&raw), reference::hash(&raw), "{s:?}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn hash_equals_the_reference_for_arbitrary_fields(
            email in prop::option::of(field()),
            phone in prop::option::of(field()),
            first_name in prop::option::of(field()),
            last_name in prop::option::of(field()),
            city in prop::option::of(field()),
            state in prop::option::of(field()),
            zip in prop::option::of(field()),
            country in field_country(),
            date_of_birth in prop::option::of(field()),
            gender in prop::option::of(field()),
            external_id in prop::option::of(field()),
        ) {
            let raw = RawIdentity {
                email: email.as_deref(),
                phone: phone.as_deref(),
                first_name: first_name.as_deref(),
                last_name: last_name.as_deref(),
                city: city.as_deref(),
                state: state.as_deref(),
                zip: zip.as_deref(),
                country: country.as_deref(),
                date_of_birth: date_of_birth.as_deref(),
                gender: gender.as_deref(),
                external_id: external_id.as_deref(),
            };
            prop_assert_eq!(HashedIdentity::hash(&raw), reference::hash(&raw));
        }

        #[test]
        fn hash_equals_the_reference_with_one_value_in_every_field(
            s in field(),
            country in field_country(),
        ) {
            let raw = same_in_every_field(&s, country.as_deref());
            prop_assert_eq!(HashedIdentity::hash(&raw), reference::hash(&raw));
        }

        #[test]
        fn every_normaliser_equals_its_reference(s in field(), country in field_country()) {
            assert_normalisers_match_reference(&s, country.as_deref());
        }
    }
}

//! IAB TCF v2 consent strings ("TC strings"): [`decode`] turns the core segment into a
//! [`TcString`] that answers per-purpose, per-vendor and publisher-restriction questions, and
//! [`TcString::google_consent_signals`] maps it onto the four Consent Mode v2 signals.
//!
//! This module is not a CMP: it does not encode TC strings, does not fetch or consult the Global
//! Vendor List (so it cannot tell whether a vendor declared a purpose or its flexibility), and
//! does not decide what a restriction means for a particular vendor. Segments after the core one
//! (disclosed vendors, allowed vendors, publisher TC) are checked to be base64url and their
//! segment type is recorded ([`TcString::other_segments`]), but their contents are not decoded.
//!
//! Invariants:
//! - [`decode`] never panics, whatever the input;
//! - input over [`MAX_LEN`] bytes is refused before any decoding, and every allocation after
//!   that is bounded by the input's length: a vendor bitfield costs at most 8 KiB (65,535 bits),
//!   a range list costs one entry per range as written (so `1-65535` is one entry, not 65,535);
//! - only version 2 is accepted; the core segment's fields are read in the order and widths of
//!   the TCF v2.2 "TC String" specification, which did not change the core layout from v2.0;
//! - vendor ranges are checked (`1 <= start <= end`, and `end <= MaxVendorId` in the vendor
//!   consent and legitimate-interest sections); a string that breaks a rule is refused as a
//!   whole rather than partly trusted.

use std::fmt;

use crate::timestamp::Timestamp;

/// Longest TC string accepted, in bytes. Real strings are a few hundred bytes to a few KiB; the
/// limit only bounds the work an adversarial string can cause.
pub const MAX_LEN: usize = 64 * 1024;

/// Number of purposes in the core segment's purpose bitfields.
const PURPOSES: usize = 24;
/// Number of special features in the core segment.
const SPECIAL_FEATURES: usize = 12;

/// Why a TC string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcfError {
    /// The string is longer than [`MAX_LEN`] bytes.
    #[error("tc string is {0} bytes long, over the limit of {MAX_LEN}")]
    TooLong(usize),
    /// The string is empty.
    #[error("tc string is empty")]
    Empty,
    /// A `.`-separated segment is empty (segments count from 0, the core segment).
    #[error("tc string segment {0} is empty")]
    EmptySegment(usize),
    /// A segment holds a character outside the base64url alphabet (`A-Z a-z 0-9 - _`; trailing
    /// `=` padding is tolerated). Segments count from 0, the core segment.
    #[error("tc string segment {0} is not base64url")]
    NotBase64(usize),
    /// The version field is not 2 (TCF v1 strings, for instance, start with version 1).
    #[error("tc string version {0} is not supported (only version 2)")]
    UnsupportedVersion(u8),
    /// The core segment ends before the named field is complete.
    #[error("tc string is truncated: it ends inside {field}")]
    Truncated {
        /// The field that could not be read in full.
        field: &'static str,
    },
    /// A vendor range starts at 0, ends before it starts, or ends above the section's
    /// `MaxVendorId`.
    #[error("tc string has an invalid vendor range {start}-{end} in {section}")]
    InvalidRange {
        /// The section holding the range.
        section: &'static str,
        /// First vendor ID of the range.
        start: u16,
        /// Last vendor ID of the range (equal to `start` for a single ID).
        end: u16,
    },
    /// A two-letter code (language or country) holds a value outside `A`–`Z`.
    #[error("tc string field {field} is not two letters A-Z")]
    InvalidLetters {
        /// The field holding the code.
        field: &'static str,
    },
    /// A publisher restriction has type 3, which the specification leaves undefined.
    #[error("tc string publisher restriction type {0} is undefined")]
    UnknownRestrictionType(u8),
}

impl TcfError {
    /// Stable machine-readable code for API responses, audit lines and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            TcfError::TooLong(_) => "tcf_too_long",
            TcfError::Empty => "tcf_empty",
            TcfError::EmptySegment(_) => "tcf_empty_segment",
            TcfError::NotBase64(_) => "tcf_not_base64",
            TcfError::UnsupportedVersion(_) => "tcf_unsupported_version",
            TcfError::Truncated { .. } => "tcf_truncated",
            TcfError::InvalidRange { .. } => "tcf_invalid_range",
            TcfError::InvalidLetters { .. } => "tcf_invalid_letters",
            TcfError::UnknownRestrictionType(_) => "tcf_unknown_restriction_type",
        }
    }
}

/// A decoded TC string: the core segment's fields, plus which other segments followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcString {
    created: Timestamp,
    last_updated: Timestamp,
    cmp_id: u16,
    cmp_version: u16,
    consent_screen: u8,
    consent_language: [u8; 2],
    vendor_list_version: u16,
    tcf_policy_version: u8,
    is_service_specific: bool,
    use_non_standard_texts: bool,
    /// Bit `n - 1` is special feature `n`.
    special_feature_opt_ins: u16,
    /// Bit `p - 1` is purpose `p`.
    purposes_consent: u32,
    /// Bit `p - 1` is purpose `p`.
    purposes_li_transparency: u32,
    purpose_one_treatment: bool,
    publisher_cc: [u8; 2],
    vendor_consents: VendorSet,
    vendor_legitimate_interests: VendorSet,
    publisher_restrictions: Vec<PublisherRestriction>,
    other_segments: Vec<SegmentType>,
}

impl TcString {
    /// When the string was first created (the format's precision is a decisecond).
    pub fn created(&self) -> Timestamp {
        self.created
    }

    /// When the string was last updated (the format's precision is a decisecond).
    pub fn last_updated(&self) -> Timestamp {
        self.last_updated
    }

    /// ID of the Consent Management Platform that last updated the string.
    pub fn cmp_id(&self) -> u16 {
        self.cmp_id
    }

    /// Version of that CMP.
    pub fn cmp_version(&self) -> u16 {
        self.cmp_version
    }

    /// The CMP's own number for the screen where consent was given.
    pub fn consent_screen(&self) -> u8 {
        self.consent_screen
    }

    /// ISO 639-1 language of the CMP's UI, two uppercase letters such as `EN`.
    pub fn consent_language(&self) -> &str {
        letters(&self.consent_language)
    }

    /// Version of the Global Vendor List the CMP used.
    pub fn vendor_list_version(&self) -> u16 {
        self.vendor_list_version
    }

    /// TCF policy version (2 for TCF v2.0 and v2.1, 4 for v2.2, 5 for v2.3).
    pub fn tcf_policy_version(&self) -> u8 {
        self.tcf_policy_version
    }

    /// True when the consent applies only to the publisher's service, not globally.
    pub fn is_service_specific(&self) -> bool {
        self.is_service_specific
    }

    /// True when the CMP showed non-standard texts (called "UseNonStandardStacks" before v2.2).
    pub fn use_non_standard_texts(&self) -> bool {
        self.use_non_standard_texts
    }

    /// True when purpose 1 was *not* disclosed because of the publisher's country rules, in
    /// which case purpose 1's consent bit is not a user choice.
    pub fn purpose_one_treatment(&self) -> bool {
        self.purpose_one_treatment
    }

    /// ISO 3166-1 alpha-2 country of the publisher, two uppercase letters (`AA` when unknown).
    pub fn publisher_cc(&self) -> &str {
        letters(&self.publisher_cc)
    }

    /// Whether the user consented to purpose `p` (1-based, `1..=24`); false outside that range.
    pub fn purpose_consent(&self, p: u8) -> bool {
        flag(self.purposes_consent, p, PURPOSES)
    }

    /// Whether legitimate interest for purpose `p` (1-based, `1..=24`) was disclosed and not
    /// objected to; false outside that range.
    pub fn purpose_legitimate_interest(&self, p: u8) -> bool {
        flag(self.purposes_li_transparency, p, PURPOSES)
    }

    /// Whether the user opted in to special feature `n` (1-based, `1..=12`); false outside that
    /// range.
    pub fn special_feature_opt_in(&self, n: u8) -> bool {
        flag(u32::from(self.special_feature_opt_ins), n, SPECIAL_FEATURES)
    }

    /// Whether vendor `id` (a Global Vendor List ID) has the user's consent.
    pub fn vendor_consent(&self, id: u16) -> bool {
        self.vendor_consents.contains(id)
    }

    /// Whether vendor `id` may rely on legitimate interest (disclosed and not objected to).
    pub fn vendor_legitimate_interest(&self, id: u16) -> bool {
        self.vendor_legitimate_interests.contains(id)
    }

    /// The vendors with consent.
    pub fn vendor_consents(&self) -> &VendorSet {
        &self.vendor_consents
    }

    /// The vendors that may rely on legitimate interest.
    pub fn vendor_legitimate_interests(&self) -> &VendorSet {
        &self.vendor_legitimate_interests
    }

    /// The publisher's restrictions, in the order the string lists them.
    pub fn publisher_restrictions(&self) -> &[PublisherRestriction] {
        &self.publisher_restrictions
    }

    /// The publisher's restriction on `vendor` for `purpose`, if any.
    ///
    /// The specification allows one restriction per purpose and vendor; should a string list
    /// several, [`RestrictionType::NotAllowed`] wins, else the first one listed. Use
    /// [`TcString::has_restriction`] to ask about one type exactly.
    pub fn restriction(&self, purpose: u8, vendor: u16) -> Option<RestrictionType> {
        let mut found = None;
        for r in self.restrictions_on(purpose, vendor) {
            if r == RestrictionType::NotAllowed {
                return Some(r);
            }
            found.get_or_insert(r);
        }
        found
    }

    /// Whether the string lists a restriction of exactly `restriction_type` on `vendor` for
    /// `purpose`.
    pub fn has_restriction(
        &self,
        purpose: u8,
        restriction_type: RestrictionType,
        vendor: u16,
    ) -> bool {
        self.restrictions_on(purpose, vendor)
            .any(|r| r == restriction_type)
    }

    fn restrictions_on(&self, purpose: u8, vendor: u16) -> impl Iterator<Item = RestrictionType> {
        self.publisher_restrictions
            .iter()
            .filter(move |r| r.purpose_id == purpose && r.vendors.contains(vendor))
            .map(|r| r.restriction_type)
    }

    /// The types of the segments that followed the core segment, in order (their contents are
    /// not decoded).
    pub fn other_segments(&self) -> &[SegmentType] {
        &self.other_segments
    }

    /// The four Consent Mode v2 signals this string grants, purpose by purpose.
    ///
    /// This mapping is tally's, modelled on Google's documented consent mode TCF integration
    /// (November 2023 onward), which denies `ad_storage` and `ad_user_data` without purpose 1,
    /// `ad_user_data` without purpose 7 and `ad_personalization` without purpose 3 or 4:
    /// - `ad_storage` ← consent for purpose 1 (store and/or access information on a device);
    /// - `ad_user_data` ← consent for purposes 1 and 7 (measure advertising performance);
    /// - `ad_personalization` ← consent for purposes 3 and 4 (create and use a personalised
    ///   advertising profile);
    /// - `analytics_storage` ← consent for purposes 1 and 8 (measure content performance).
    ///   Google's integration leaves this signal to consent mode; purposes 1 and 8 are tally's
    ///   choice.
    ///
    /// Only purpose *consent* counts, never legitimate interest, and the purpose 1 bit is read
    /// as written even when [`TcString::purpose_one_treatment`] is set. Vendor-level consent is
    /// not part of this mapping: check it separately with [`TcString::vendor_consent`] (Google
    /// Advertising Products is Global Vendor List vendor 755), and publisher restrictions with
    /// [`TcString::restriction`].
    pub fn google_consent_signals(&self) -> GoogleConsentSignals {
        let p = |n| self.purpose_consent(n);
        GoogleConsentSignals {
            ad_storage: p(1),
            ad_user_data: p(1) && p(7),
            ad_personalization: p(3) && p(4),
            analytics_storage: p(1) && p(8),
        }
    }
}

/// Consent Mode v2 signals derived from a TC string; `true` means granted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoogleConsentSignals {
    /// `ad_storage`: purpose 1.
    pub ad_storage: bool,
    /// `ad_user_data`: purposes 1 and 7.
    pub ad_user_data: bool,
    /// `ad_personalization`: purposes 3 and 4.
    pub ad_personalization: bool,
    /// `analytics_storage`: purposes 1 and 8.
    pub analytics_storage: bool,
}

/// What a publisher restriction requires of the vendors it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestrictionType {
    /// The purpose is not allowed at all (type 0).
    NotAllowed,
    /// The vendor must have consent, even where it declared legitimate interest (type 1).
    RequireConsent,
    /// The vendor must rely on legitimate interest, even where it declared consent (type 2).
    RequireLegitimateInterest,
}

/// One publisher restriction: a purpose, a restriction type and the vendors it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherRestriction {
    purpose_id: u8,
    restriction_type: RestrictionType,
    vendors: VendorSet,
}

impl PublisherRestriction {
    /// The purpose restricted (as written: the 6-bit field allows 0 to 63).
    pub fn purpose_id(&self) -> u8 {
        self.purpose_id
    }

    /// What the restriction requires.
    pub fn restriction_type(&self) -> RestrictionType {
        self.restriction_type
    }

    /// The vendors it applies to.
    pub fn vendors(&self) -> &VendorSet {
        &self.vendors
    }
}

/// The type of a segment after the core segment, from its first three bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentType {
    /// Type 1: vendors the CMP disclosed to the user.
    DisclosedVendors,
    /// Type 2: vendors the publisher allows for out-of-band legal bases (deprecated in v2.2).
    AllowedVendors,
    /// Type 3: the publisher's own purposes ("Publisher TC").
    PublisherTc,
    /// Any other type (0, or 4 to 7), which the specification does not define.
    Unknown(u8),
}

/// A set of vendor IDs (1 to 65,535), stored as the string wrote it: a bitfield of at most
/// 8 KiB, or a sorted list of disjoint ranges.
#[derive(Clone)]
pub struct VendorSet {
    max_id: u16,
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Bit `(id - 1) % 64` of word `(id - 1) / 64`; `ceil(max_id / 64)` words.
    Bits(Vec<u64>),
    /// Inclusive ranges, sorted, disjoint and not adjacent.
    Ranges(Vec<(u16, u16)>),
}

impl VendorSet {
    /// Whether `id` is in the set (never for 0).
    pub fn contains(&self, id: u16) -> bool {
        if id == 0 || id > self.max_id {
            return false;
        }
        match &self.repr {
            Repr::Bits(words) => {
                let i = usize::from(id - 1);
                words.get(i / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
            }
            Repr::Ranges(ranges) => {
                let i = ranges.partition_point(|&(_, end)| end < id);
                ranges.get(i).is_some_and(|&(start, _)| start <= id)
            }
        }
    }

    /// The section's `MaxVendorId` (for publisher restrictions, the highest ID listed); 0 for
    /// an empty section.
    pub fn max_id(&self) -> u16 {
        self.max_id
    }

    /// True when no vendor is in the set.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The IDs in the set, ascending. Lazy: a set written as one range of 65,535 IDs is not
    /// expanded up front.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=self.max_id).filter(move |&id| self.contains(id))
    }
}

impl PartialEq for VendorSet {
    /// Equal when the same IDs are in both and `max_id` agrees, however each was encoded.
    fn eq(&self, other: &VendorSet) -> bool {
        self.max_id == other.max_id && self.iter().eq(other.iter())
    }
}

impl Eq for VendorSet {}

impl fmt::Debug for VendorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Runs<'a>(&'a VendorSet);
        impl fmt::Debug for Runs<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = f.debug_list();
                let mut run: Option<(u16, u16)> = None;
                for id in self.0.iter() {
                    run = match run {
                        Some((start, end)) if u32::from(end) + 1 == u32::from(id) => {
                            Some((start, id))
                        }
                        Some((start, end)) => {
                            list.entry(&format_args!("{start}..={end}"));
                            Some((id, id))
                        }
                        None => Some((id, id)),
                    };
                }
                if let Some((start, end)) = run {
                    list.entry(&format_args!("{start}..={end}"));
                }
                list.finish()
            }
        }
        f.debug_struct("VendorSet")
            .field("max_id", &self.max_id)
            .field("ids", &Runs(self))
            .finish()
    }
}

/// Decodes a TC string: the core segment in full, and the type of every segment after it.
pub fn decode(s: &str) -> Result<TcString, TcfError> {
    if s.len() > MAX_LEN {
        return Err(TcfError::TooLong(s.len()));
    }
    if s.is_empty() {
        return Err(TcfError::Empty);
    }
    let mut segments = s.split('.');
    let core = segments.next().unwrap_or_default();
    let mut tc = decode_core(&mut Bits::new(core, 0)?)?;
    for (i, segment) in segments.enumerate() {
        tc.other_segments.push(segment_type(segment, i + 1)?);
    }
    Ok(tc)
}

fn decode_core(b: &mut Bits) -> Result<TcString, TcfError> {
    let version = b.int(6, "version")? as u8;
    if version != 2 {
        return Err(TcfError::UnsupportedVersion(version));
    }
    Ok(TcString {
        created: deciseconds(b.int(36, "created")?),
        last_updated: deciseconds(b.int(36, "last_updated")?),
        cmp_id: b.int(12, "cmp_id")? as u16,
        cmp_version: b.int(12, "cmp_version")? as u16,
        consent_screen: b.int(6, "consent_screen")? as u8,
        consent_language: b.letters("consent_language")?,
        vendor_list_version: b.int(12, "vendor_list_version")? as u16,
        tcf_policy_version: b.int(6, "tcf_policy_version")? as u8,
        is_service_specific: b.bool("is_service_specific")?,
        use_non_standard_texts: b.bool("use_non_standard_texts")?,
        special_feature_opt_ins: b.flags(SPECIAL_FEATURES, "special_feature_opt_ins")? as u16,
        purposes_consent: b.flags(PURPOSES, "purposes_consent")?,
        purposes_li_transparency: b.flags(PURPOSES, "purposes_li_transparency")?,
        purpose_one_treatment: b.bool("purpose_one_treatment")?,
        publisher_cc: b.letters("publisher_cc")?,
        vendor_consents: vendor_section(b, &VENDOR_CONSENTS)?,
        vendor_legitimate_interests: vendor_section(b, &VENDOR_LEGITIMATE_INTERESTS)?,
        publisher_restrictions: publisher_restrictions(b)?,
        other_segments: Vec::new(),
    })
}

/// Field names of one vendor section, for errors.
struct Section {
    name: &'static str,
    max_vendor_id: &'static str,
    is_range_encoding: &'static str,
    bitfield: &'static str,
    num_entries: &'static str,
    is_a_range: &'static str,
    start_vendor_id: &'static str,
    end_vendor_id: &'static str,
}

const VENDOR_CONSENTS: Section = Section {
    name: "vendor_consents",
    max_vendor_id: "vendor_consents.max_vendor_id",
    is_range_encoding: "vendor_consents.is_range_encoding",
    bitfield: "vendor_consents.bitfield",
    num_entries: "vendor_consents.num_entries",
    is_a_range: "vendor_consents.is_a_range",
    start_vendor_id: "vendor_consents.start_or_only_vendor_id",
    end_vendor_id: "vendor_consents.end_vendor_id",
};

const VENDOR_LEGITIMATE_INTERESTS: Section = Section {
    name: "vendor_legitimate_interests",
    max_vendor_id: "vendor_legitimate_interests.max_vendor_id",
    is_range_encoding: "vendor_legitimate_interests.is_range_encoding",
    bitfield: "vendor_legitimate_interests.bitfield",
    num_entries: "vendor_legitimate_interests.num_entries",
    is_a_range: "vendor_legitimate_interests.is_a_range",
    start_vendor_id: "vendor_legitimate_interests.start_or_only_vendor_id",
    end_vendor_id: "vendor_legitimate_interests.end_vendor_id",
};

const PUBLISHER_RESTRICTIONS: Section = Section {
    name: "publisher_restrictions",
    max_vendor_id: "",
    is_range_encoding: "",
    bitfield: "",
    num_entries: "publisher_restrictions.num_entries",
    is_a_range: "publisher_restrictions.is_a_range",
    start_vendor_id: "publisher_restrictions.start_or_only_vendor_id",
    end_vendor_id: "publisher_restrictions.end_vendor_id",
};

fn vendor_section(b: &mut Bits, section: &Section) -> Result<VendorSet, TcfError> {
    let max_id = b.int(16, section.max_vendor_id)? as u16;
    if b.bool(section.is_range_encoding)? {
        let ranges = ranges(b, section, Some(max_id))?;
        return Ok(VendorSet {
            max_id,
            repr: Repr::Ranges(ranges),
        });
    }
    let bits = usize::from(max_id);
    // Check before allocating, so a short string cannot ask for a bitset it does not carry.
    if b.remaining() < bits {
        return Err(TcfError::Truncated {
            field: section.bitfield,
        });
    }
    let mut words = vec![0u64; bits.div_ceil(64)];
    for i in 0..bits {
        if b.bool(section.bitfield)?
            && let Some(w) = words.get_mut(i / 64)
        {
            *w |= 1 << (i % 64);
        }
    }
    Ok(VendorSet {
        max_id,
        repr: Repr::Bits(words),
    })
}

/// Reads `NumEntries` and its range entries; returns them sorted and merged.
fn ranges(
    b: &mut Bits,
    section: &Section,
    max_id: Option<u16>,
) -> Result<Vec<(u16, u16)>, TcfError> {
    let n = b.int(12, section.num_entries)? as usize;
    // Each entry takes at least 17 bits, so the input bounds the allocation too.
    let mut out = Vec::with_capacity(n.min(b.remaining() / 17));
    for _ in 0..n {
        let is_range = b.bool(section.is_a_range)?;
        let start = b.int(16, section.start_vendor_id)? as u16;
        let end = if is_range {
            b.int(16, section.end_vendor_id)? as u16
        } else {
            start
        };
        if start == 0 || start > end || max_id.is_some_and(|max| end > max) {
            return Err(TcfError::InvalidRange {
                section: section.name,
                start,
                end,
            });
        }
        out.push((start, end));
    }
    out.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(out.len());
    for (start, end) in out {
        match merged.last_mut() {
            Some(last) if u32::from(start) <= u32::from(last.1) + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}

fn publisher_restrictions(b: &mut Bits) -> Result<Vec<PublisherRestriction>, TcfError> {
    let n = b.int(12, "num_pub_restrictions")? as usize;
    // Each restriction takes at least 20 bits.
    let mut out = Vec::with_capacity(n.min(b.remaining() / 20));
    for _ in 0..n {
        let purpose_id = b.int(6, "publisher_restrictions.purpose_id")? as u8;
        let restriction_type = match b.int(2, "publisher_restrictions.restriction_type")? {
            0 => RestrictionType::NotAllowed,
            1 => RestrictionType::RequireConsent,
            2 => RestrictionType::RequireLegitimateInterest,
            t => return Err(TcfError::UnknownRestrictionType(t as u8)),
        };
        let ranges = ranges(b, &PUBLISHER_RESTRICTIONS, None)?;
        let vendors = VendorSet {
            max_id: ranges.last().map_or(0, |&(_, end)| end),
            repr: Repr::Ranges(ranges),
        };
        out.push(PublisherRestriction {
            purpose_id,
            restriction_type,
            vendors,
        });
    }
    Ok(out)
}

fn segment_type(segment: &str, index: usize) -> Result<SegmentType, TcfError> {
    let body = segment.trim_end_matches('=');
    let mut values = body.bytes().map(sextet);
    let first = match values.next() {
        None => return Err(TcfError::EmptySegment(index)),
        Some(None) => return Err(TcfError::NotBase64(index)),
        Some(Some(v)) => v,
    };
    if values.any(|v| v.is_none()) {
        return Err(TcfError::NotBase64(index));
    }
    Ok(match first >> 3 {
        1 => SegmentType::DisclosedVendors,
        2 => SegmentType::AllowedVendors,
        3 => SegmentType::PublisherTc,
        t => SegmentType::Unknown(t),
    })
}

fn deciseconds(ds: u64) -> Timestamp {
    // 36 bits of deciseconds is at most about 6.9e12 ms: no overflow.
    Timestamp::from_millis(ds as i64 * 100)
}

fn flag(bits: u32, n: u8, count: usize) -> bool {
    n >= 1 && usize::from(n) <= count && (bits >> (n - 1)) & 1 == 1
}

fn letters(code: &[u8; 2]) -> &str {
    // Always two ASCII uppercase letters (checked by `Bits::letters`).
    std::str::from_utf8(code).unwrap_or_default()
}

/// The value of one base64url character.
fn sextet(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    })
}

/// A big-endian bit reader over a base64url segment, six bits per character (as the TCF
/// reference implementation reads it, so a length that is not a multiple of four is fine).
struct Bits {
    sextets: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(segment: &str, index: usize) -> Result<Bits, TcfError> {
        let body = segment.trim_end_matches('=');
        if body.is_empty() {
            return Err(TcfError::EmptySegment(index));
        }
        let sextets = body
            .bytes()
            .map(sextet)
            .collect::<Option<Vec<u8>>>()
            .ok_or(TcfError::NotBase64(index))?;
        Ok(Bits { sextets, pos: 0 })
    }

    fn remaining(&self) -> usize {
        (self.sextets.len() * 6).saturating_sub(self.pos)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, TcfError> {
        let bit = self
            .sextets
            .get(self.pos / 6)
            .map(|s| (s >> (5 - self.pos % 6)) & 1 == 1)
            .ok_or(TcfError::Truncated { field })?;
        self.pos += 1;
        Ok(bit)
    }

    /// An unsigned integer of `width` bits (at most 64), most significant bit first.
    fn int(&mut self, width: usize, field: &'static str) -> Result<u64, TcfError> {
        if self.remaining() < width {
            return Err(TcfError::Truncated { field });
        }
        let mut v = 0u64;
        for _ in 0..width {
            v = (v << 1) | u64::from(self.bool(field)?);
        }
        Ok(v)
    }

    /// `count` flags (at most 32), the first read landing in bit 0.
    fn flags(&mut self, count: usize, field: &'static str) -> Result<u32, TcfError> {
        if self.remaining() < count {
            return Err(TcfError::Truncated { field });
        }
        let mut v = 0u32;
        for i in 0..count {
            v |= u32::from(self.bool(field)?) << i;
        }
        Ok(v)
    }

    /// Two 6-bit letters, `A` = 0.
    fn letters(&mut self, field: &'static str) -> Result<[u8; 2], TcfError> {
        let mut out = [0u8; 2];
        for c in &mut out {
            let v = self.int(6, field)? as u8;
            if v >= 26 {
                return Err(TcfError::InvalidLetters { field });
            }
            *c = b'A' + v;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    // ---- a test-only encoder: spec → bits → base64url ----

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[derive(Default)]
    struct Writer(Vec<bool>);

    impl Writer {
        fn int(&mut self, v: u64, width: usize) {
            for i in (0..width).rev() {
                self.0.push((v >> i) & 1 == 1);
            }
        }

        fn flags(&mut self, bits: u32, count: usize) {
            for i in 0..count {
                self.0.push((bits >> i) & 1 == 1);
            }
        }

        fn base64url(&self) -> String {
            self.0
                .chunks(6)
                .map(|chunk| {
                    let v = (0..6).fold(0usize, |v, i| {
                        (v << 1) | usize::from(chunk.get(i).copied().unwrap_or(false))
                    });
                    char::from(ALPHABET[v])
                })
                .collect()
        }
    }

    #[derive(Clone, Debug)]
    enum Vendors {
        Bitfield { max: u16, ids: BTreeSet<u16> },
        Ranges { max: u16, ranges: Vec<(u16, u16)> },
    }

    impl Vendors {
        fn none() -> Vendors {
            Vendors::Bitfield {
                max: 0,
                ids: BTreeSet::new(),
            }
        }

        fn ids(&self) -> BTreeSet<u16> {
            match self {
                Vendors::Bitfield { ids, .. } => ids.clone(),
                Vendors::Ranges { ranges, .. } => ranges.iter().flat_map(|&(s, e)| s..=e).collect(),
            }
        }

        fn max(&self) -> u16 {
            match self {
                Vendors::Bitfield { max, .. } | Vendors::Ranges { max, .. } => *max,
            }
        }

        fn write(&self, w: &mut Writer) {
            match self {
                Vendors::Bitfield { max, ids } => {
                    w.int(u64::from(*max), 16);
                    w.int(0, 1);
                    for id in 1..=*max {
                        w.int(u64::from(ids.contains(&id)), 1);
                    }
                }
                Vendors::Ranges { max, ranges } => {
                    w.int(u64::from(*max), 16);
                    w.int(1, 1);
                    write_ranges(w, ranges);
                }
            }
        }
    }

    fn write_ranges(w: &mut Writer, ranges: &[(u16, u16)]) {
        w.int(ranges.len() as u64, 12);
        for &(start, end) in ranges {
            w.int(u64::from(start != end), 1);
            w.int(u64::from(start), 16);
            if start != end {
                w.int(u64::from(end), 16);
            }
        }
    }

    #[derive(Clone, Debug)]
    struct Spec {
        version: u8,
        created_ds: u64,
        last_updated_ds: u64,
        cmp_id: u16,
        cmp_version: u16,
        consent_screen: u8,
        language: [u8; 2],
        vendor_list_version: u16,
        policy: u8,
        service_specific: bool,
        non_standard: bool,
        special_features: u16,
        purposes: u32,
        purposes_li: u32,
        purpose_one_treatment: bool,
        publisher_cc: [u8; 2],
        consents: Vendors,
        legitimate_interests: Vendors,
        restrictions: Vec<RestrictionSpec>,
    }

    /// Purpose, restriction type (0 to 3) and vendor ranges.
    type RestrictionSpec = (u8, u8, Vec<(u16, u16)>);

    impl Default for Spec {
        fn default() -> Spec {
            Spec {
                version: 2,
                created_ds: 17_000_000_000,
                last_updated_ds: 17_000_000_123,
                cmp_id: 300,
                cmp_version: 7,
                consent_screen: 1,
                language: *b"DE",
                vendor_list_version: 120,
                policy: 4,
                service_specific: true,
                non_standard: false,
                special_features: 0,
                purposes: 0,
                purposes_li: 0,
                purpose_one_treatment: false,
                publisher_cc: *b"FR",
                consents: Vendors::none(),
                legitimate_interests: Vendors::none(),
                restrictions: Vec::new(),
            }
        }
    }

    impl Spec {
        fn bits(&self) -> Writer {
            let mut w = Writer::default();
            w.int(u64::from(self.version), 6);
            w.int(self.created_ds, 36);
            w.int(self.last_updated_ds, 36);
            w.int(u64::from(self.cmp_id), 12);
            w.int(u64::from(self.cmp_version), 12);
            w.int(u64::from(self.consent_screen), 6);
            for c in self.language {
                w.int(u64::from(c - b'A'), 6);
            }
            w.int(u64::from(self.vendor_list_version), 12);
            w.int(u64::from(self.policy), 6);
            w.int(u64::from(self.service_specific), 1);
            w.int(u64::from(self.non_standard), 1);
            w.flags(u32::from(self.special_features), 12);
            w.flags(self.purposes, 24);
            w.flags(self.purposes_li, 24);
            w.int(u64::from(self.purpose_one_treatment), 1);
            for c in self.publisher_cc {
                w.int(u64::from(c - b'A'), 6);
            }
            self.consents.write(&mut w);
            self.legitimate_interests.write(&mut w);
            w.int(self.restrictions.len() as u64, 12);
            for (purpose, kind, ranges) in &self.restrictions {
                w.int(u64::from(*purpose), 6);
                w.int(u64::from(*kind), 2);
                write_ranges(&mut w, ranges);
            }
            w
        }

        fn encode(&self) -> String {
            self.bits().base64url()
        }
    }

    fn mask(ids: &[u8]) -> u32 {
        ids.iter().fold(0, |m, &p| m | 1 << (p - 1))
    }

    fn purposes_consented(tc: &TcString) -> Vec<u8> {
        (1..=24).filter(|&p| tc.purpose_consent(p)).collect()
    }

    fn purposes_li(tc: &TcString) -> Vec<u8> {
        (1..=24)
            .filter(|&p| tc.purpose_legitimate_interest(p))
            .collect()
    }

    fn special_features(tc: &TcString) -> Vec<u8> {
        (1..=12).filter(|&n| tc.special_feature_opt_in(n)).collect()
    }

    fn ids(set: &VendorSet) -> Vec<u16> {
        set.iter().collect()
    }

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_str(rfc3339).expect("valid test timestamp")
    }

    fn truncated(r: Result<TcString, TcfError>) -> bool {
        matches!(r, Err(TcfError::Truncated { .. }))
    }

    // ---- published strings, checked against the values their sources state ----

    /// InteractiveAdvertisingBureau/iabtcf-java, TCStringV2Test (string made with iabtcf.com).
    #[test]
    fn decodes_the_iab_java_library_example_to_its_stated_fields() {
        let tc = decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA").unwrap();
        assert_eq!(tc.created(), at("2020-01-26T17:01:00Z"));
        assert_eq!(tc.last_updated(), at("2021-02-02T17:01:00Z"));
        assert_eq!(tc.cmp_id(), 675);
        assert_eq!(tc.cmp_version(), 2);
        assert_eq!(tc.consent_screen(), 1);
        assert_eq!(tc.vendor_list_version(), 15);
        assert_eq!(tc.tcf_policy_version(), 2);
        assert_eq!(tc.consent_language(), "EN");
        assert_eq!(tc.publisher_cc(), "AA");
        assert!(!tc.is_service_specific());
        assert!(tc.purpose_one_treatment());
        assert!(!tc.use_non_standard_texts());
        assert_eq!(special_features(&tc), [1]);
        assert_eq!(purposes_consented(&tc), [2, 10]);
        assert_eq!(purposes_li(&tc), [2, 9]);
        assert!(tc.other_segments().is_empty());
    }

    /// iabtcf-java TCStringV2Test: bitfield-encoded vendors, then the same core with disclosed,
    /// allowed and publisher TC segments (the last one padded with `=`).
    #[test]
    fn decodes_iab_java_bitfield_vendors_and_skips_extra_segments() {
        let core =
            "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA";
        let tc = decode(core).unwrap();
        assert_eq!(purposes_consented(&tc), [3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(ids(tc.vendor_consents()), [23, 37, 47, 48, 53, 65, 98]);
        assert_eq!(
            ids(tc.vendor_legitimate_interests()),
            [37, 47, 48, 53, 65, 98, 129]
        );
        assert!(matches!(tc.vendor_consents().repr, Repr::Bits(_)));

        let full = format!("{core}.IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg=");
        let with_segments = decode(&full).unwrap();
        assert_eq!(
            with_segments.other_segments(),
            [
                SegmentType::DisclosedVendors,
                SegmentType::AllowedVendors,
                SegmentType::PublisherTc
            ]
        );
        assert_eq!(
            TcString {
                other_segments: Vec::new(),
                ..with_segments
            },
            tc,
            "the extra segments change nothing else"
        );
    }

    /// iabtcf-java TCStringV2Test: range-encoded vendor consents and legitimate interests.
    #[test]
    fn decodes_iab_java_range_examples() {
        let two = "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw";
        let one = "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw";
        assert_eq!(ids(decode(two).unwrap().vendor_consents()), [702, 703]);
        assert_eq!(ids(decode(one).unwrap().vendor_consents()), [703]);
        let li = decode("COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA").unwrap();
        assert_eq!(ids(li.vendor_legitimate_interests()), [128]);
        assert!(
            decode("COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA")
                .unwrap()
                .purpose_consent(1)
        );
    }

    /// LiveRamp/iabconsent v2_parsed_consent_fixture_test.go: range encoding plus disclosed and
    /// allowed vendor segments.
    #[test]
    fn decodes_liveramp_range_fixture_to_its_stated_fields() {
        let tc = decode("COvzTO5OvzTO5B7ABCENAPCYAKdAADkAAIqIFhwBAAGAAXAFGAsMAhYAgAMAAegBYAEKAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw.QE5QAwCvgHyATkA").unwrap();
        // time.Unix(1583436280, 9 deciseconds)
        assert_eq!(tc.created(), Timestamp::from_millis(1_583_436_280_900));
        assert_eq!(tc.last_updated(), Timestamp::from_millis(1_583_436_280_900));
        assert_eq!(tc.cmp_id(), 123);
        assert_eq!(tc.cmp_version(), 1);
        assert_eq!(tc.consent_screen(), 2);
        assert_eq!(tc.consent_language(), "EN");
        assert_eq!(tc.vendor_list_version(), 15);
        assert_eq!(tc.tcf_policy_version(), 2);
        assert!(!tc.is_service_specific());
        assert!(tc.use_non_standard_texts());
        assert_eq!(special_features(&tc), [1]);
        assert_eq!(purposes_consented(&tc), [1, 3, 6, 7, 8, 10]);
        assert_eq!(purposes_li(&tc), [3, 4, 5, 8]);
        assert!(tc.purpose_one_treatment());
        assert_eq!(tc.publisher_cc(), "FR");
        assert_eq!(tc.vendor_consents().max_id(), 707);
        assert_eq!(ids(tc.vendor_consents()), [12, 23, 163, 707]);
        assert_eq!(tc.vendor_legitimate_interests().max_id(), 133);
        assert_eq!(ids(tc.vendor_legitimate_interests()), [48, 61, 88, 133]);
        assert!(tc.publisher_restrictions().is_empty());
        assert_eq!(
            tc.other_segments(),
            [SegmentType::DisclosedVendors, SegmentType::AllowedVendors]
        );
    }

    /// LiveRamp/iabconsent: publisher restrictions (purpose 1 require consent for vendor 123,
    /// purpose 2 not allowed and purpose 3 require legitimate interest, both for no vendor).
    #[test]
    fn decodes_liveramp_publisher_restriction_fixture() {
        let tc =
            decode("COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA").unwrap();
        assert_eq!(tc.cmp_id(), 81);
        assert_eq!(tc.cmp_version(), 0);
        assert!(tc.is_service_specific());
        assert!(!tc.purpose_one_treatment());
        assert_eq!(tc.publisher_cc(), "AA");
        assert_eq!(purposes_consented(&tc), [1, 3, 4, 7]);
        assert_eq!(purposes_li(&tc), [3, 4, 5]);
        assert_eq!(tc.vendor_consents().max_id(), 61);
        assert_eq!(ids(tc.vendor_consents()), [2, 37, 61]);
        assert_eq!(tc.vendor_legitimate_interests().max_id(), 8);
        assert_eq!(ids(tc.vendor_legitimate_interests()), [2, 6, 8]);

        let r = tc.publisher_restrictions();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (
                r[0].purpose_id(),
                r[0].restriction_type(),
                ids(r[0].vendors())
            ),
            (1, RestrictionType::RequireConsent, vec![123])
        );
        assert_eq!(
            (
                r[1].purpose_id(),
                r[1].restriction_type(),
                ids(r[1].vendors())
            ),
            (2, RestrictionType::NotAllowed, vec![])
        );
        assert_eq!(
            (
                r[2].purpose_id(),
                r[2].restriction_type(),
                ids(r[2].vendors())
            ),
            (3, RestrictionType::RequireLegitimateInterest, vec![])
        );
        assert_eq!(
            tc.restriction(1, 123),
            Some(RestrictionType::RequireConsent)
        );
        assert_eq!(tc.restriction(1, 122), None);
        assert_eq!(tc.restriction(2, 123), None);
    }

    /// LiveRamp/iabconsent: a TCF v2.2 string (policy version 4) with one-bit vendor sections.
    #[test]
    fn decodes_liveramp_tcf_2_2_fixture() {
        let tc = decode("COvzTO5OvzTO5B7ABCENAPEYAIAAAIAAAIqIAAoAAoAA.QAAo.IAAo").unwrap();
        assert_eq!(tc.tcf_policy_version(), 4);
        assert_eq!(purposes_consented(&tc), [1]);
        assert_eq!(purposes_li(&tc), [1]);
        assert_eq!(ids(tc.vendor_consents()), [1]);
        assert_eq!(ids(tc.vendor_legitimate_interests()), [1]);
        assert_eq!(tc.publisher_cc(), "FR");
        assert_eq!(
            tc.other_segments(),
            [SegmentType::AllowedVendors, SegmentType::DisclosedVendors]
        );
    }

    /// peczenyj/GDPR-IAB-TCFv2 t/01-parse.t: bitfield example.
    #[test]
    fn decodes_the_perl_library_bitfield_example_to_its_stated_fields() {
        let s =
            "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA";
        let tc = decode(s).unwrap();
        assert_eq!(tc.created(), Timestamp::from_millis(1_228_644_257_700));
        assert_eq!(tc.last_updated(), Timestamp::from_millis(1_326_215_413_400));
        assert_eq!(tc.cmp_id(), 21);
        assert_eq!(tc.cmp_version(), 7);
        assert_eq!(tc.consent_screen(), 2);
        assert_eq!(tc.consent_language(), "EN");
        assert_eq!(tc.vendor_list_version(), 23);
        assert_eq!(tc.tcf_policy_version(), 2);
        assert!(tc.is_service_specific());
        assert!(!tc.use_non_standard_texts());
        assert!(!tc.purpose_one_treatment());
        assert_eq!(tc.publisher_cc(), "KM");
        assert_eq!(tc.vendor_consents().max_id(), 115);
        assert_eq!(tc.vendor_legitimate_interests().max_id(), 113);
        assert_eq!(purposes_consented(&tc), [1, 3, 9, 10]);
        assert_eq!(purposes_li(&tc), [3, 4, 5, 8, 9, 10]);
        assert_eq!(special_features(&tc), [2]);
        assert_eq!(
            ids(tc.vendor_consents()),
            [
                2, 3, 6, 7, 8, 10, 12, 13, 14, 15, 16, 21, 25, 27, 30, 31, 34, 35, 37, 38, 39, 42,
                43, 49, 52, 54, 55, 56, 57, 59, 60, 63, 64, 65, 66, 67, 68, 69, 73, 74, 76, 78, 83,
                86, 87, 89, 90, 92, 96, 99, 100, 106, 109, 110, 114, 115
            ]
        );
        assert_eq!(
            ids(tc.vendor_legitimate_interests()),
            [1, 9, 26, 27, 30, 36, 37, 43, 86, 97, 110, 113]
        );
        assert_eq!(tc.restriction(1, 284), None);

        let with_publisher_tc = decode(&format!("{s}.YAAAAAAAAXA")).unwrap();
        assert_eq!(
            with_publisher_tc.other_segments(),
            [SegmentType::PublisherTc]
        );
    }

    /// peczenyj/GDPR-IAB-TCFv2 t/01-parse.t: range example.
    #[test]
    fn decodes_the_perl_library_range_example_to_its_stated_fields() {
        let tc = decode("COyfVVoOyfVVoADACHENAwCAAAAAAAAAAAAAE5QBgALgAqgD8AQACSwEygJyAnSAMABgAFkAgQCDASeAmYBOgAA").unwrap();
        assert_eq!(tc.created(), Timestamp::from_millis(1_587_946_020_000));
        assert_eq!(tc.last_updated(), Timestamp::from_millis(1_587_946_020_000));
        assert_eq!(tc.cmp_id(), 3);
        assert_eq!(tc.cmp_version(), 2);
        assert_eq!(tc.consent_screen(), 7);
        assert_eq!(tc.consent_language(), "EN");
        assert_eq!(tc.vendor_list_version(), 48);
        assert_eq!(tc.tcf_policy_version(), 2);
        assert!(!tc.is_service_specific());
        assert!(!tc.use_non_standard_texts());
        assert!(!tc.purpose_one_treatment());
        assert_eq!(tc.publisher_cc(), "AA");
        assert!(purposes_consented(&tc).is_empty());
        assert!(purposes_li(&tc).is_empty());
        assert!(special_features(&tc).is_empty());
        assert_eq!(tc.vendor_consents().max_id(), 626);
        assert_eq!(tc.vendor_legitimate_interests().max_id(), 628);
        assert_eq!(
            ids(tc.vendor_consents()),
            [23, 42, 126, 127, 128, 587, 613, 626]
        );
        assert_eq!(
            ids(tc.vendor_legitimate_interests()),
            [24, 44, 129, 130, 131, 591, 614, 628]
        );
        assert!(matches!(tc.vendor_consents().repr, Repr::Ranges(_)));
    }

    /// peczenyj/GDPR-IAB-TCFv2 t/01-parse.t: publisher restriction examples #1 to #3. Example #2
    /// lists vendor 32 under purpose 2 as both "not allowed" and "require consent".
    #[test]
    fn decodes_the_perl_library_publisher_restriction_examples() {
        use RestrictionType::*;
        let one = decode("COwAdDhOwAdDhN4ABAENAPCgAAQAAv___wAAAFP_AAp_4AI6ACACAA").unwrap();
        assert!(!one.has_restriction(1, NotAllowed, 284));
        assert!(one.has_restriction(7, RequireConsent, 32));
        assert!(!one.has_restriction(7, RequireConsent, 7));
        assert!(!one.has_restriction(5, RequireConsent, 32));
        assert_eq!(one.restriction(7, 32), Some(RequireConsent));

        let two = decode("COxPe2TOxPe2TALABAENAPCgAAAAAAAAAAAAAFAAAAoAAA4IACACAIABgACAFA4ADACAAIygAGADwAQBIAIAIB0AEAEBSACACAA").unwrap();
        assert!(!two.purpose_one_treatment());
        assert!(!two.special_feature_opt_in(3));
        assert!(!two.has_restriction(1, NotAllowed, 284));
        assert!(two.has_restriction(1, NotAllowed, 32));
        assert!(!two.has_restriction(1, RequireConsent, 32));
        assert!(two.has_restriction(2, NotAllowed, 32));
        assert!(two.has_restriction(2, NotAllowed, 5));
        assert!(two.has_restriction(2, NotAllowed, 11));
        assert!(!two.has_restriction(2, NotAllowed, 44));
        assert!(!two.has_restriction(2, NotAllowed, 500));
        assert!(two.has_restriction(2, RequireConsent, 32));
        assert!(!two.has_restriction(2, RequireConsent, 42));
        assert_eq!(two.restriction(2, 32), Some(NotAllowed), "not allowed wins");

        let three = decode("COzSDo9OzSDo9B9AAAENAiCAALAAAAAAAAAACOQAQCOAAAAA").unwrap();
        assert!(!three.has_restriction(1, NotAllowed, 284));
    }

    /// peczenyj/GDPR-IAB-TCFv2 t/01-parse.t: the invalid candidates it refuses.
    #[test]
    fn refuses_the_perl_library_invalid_examples() {
        assert_eq!(
            decode("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASAAAAAAAAAA"),
            Err(TcfError::UnsupportedVersion(1))
        );
        assert_eq!(
            decode("DOEFEAyOEFEAyAHABDENAI4AAAB9vABAASAAAAAAAAAA"),
            Err(TcfError::UnsupportedVersion(3))
        );
        assert_eq!(
            decode(
                "COyfVVoOyfVVoADACHENAwCAAAAAAAAAAAAAE5QBgALgAqgD8AQACSwEygJyAnSAMABgAFkAgQCDASeAmYBOgA!A"
            ),
            Err(TcfError::NotBase64(0))
        );
        assert!(truncated(decode("Clc")));
        // Bitfield of 10 vendors, then no legitimate-interest section.
        assert!(truncated(decode(
            "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFAAAAA"
        )));
        // Range section of 10 vendors, then no legitimate-interest section.
        assert!(truncated(decode(
            "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFQBgAAgABAACAAEAAQAAgAA"
        )));
        assert_eq!(decode(""), Err(TcfError::Empty));
    }

    // ---- strings built with the test encoder ----

    #[test]
    fn round_trips_known_fields_through_the_test_encoder() {
        let spec = Spec {
            cmp_id: 4095,
            cmp_version: 4095,
            consent_screen: 63,
            language: *b"ZA",
            vendor_list_version: 4095,
            special_features: 0b1000_0000_0001,
            purposes: mask(&[1, 2, 24]),
            purposes_li: mask(&[2, 7, 11]),
            purpose_one_treatment: true,
            non_standard: true,
            consents: Vendors::Bitfield {
                max: 130,
                ids: [1, 64, 65, 128, 130].into(),
            },
            legitimate_interests: Vendors::Ranges {
                max: 5000,
                ranges: vec![(4000, 5000), (7, 7), (10, 20)],
            },
            ..Spec::default()
        };
        let tc = decode(&spec.encode()).unwrap();
        assert_eq!(tc.created(), Timestamp::from_millis(1_700_000_000_000));
        assert_eq!(tc.last_updated(), Timestamp::from_millis(1_700_000_012_300));
        assert_eq!(
            (tc.cmp_id(), tc.cmp_version(), tc.consent_screen()),
            (4095, 4095, 63)
        );
        assert_eq!(tc.consent_language(), "ZA");
        assert_eq!(tc.vendor_list_version(), 4095);
        assert_eq!(tc.tcf_policy_version(), 4);
        assert!(tc.is_service_specific() && tc.use_non_standard_texts());
        assert_eq!(special_features(&tc), [1, 12]);
        assert_eq!(purposes_consented(&tc), [1, 2, 24]);
        assert_eq!(purposes_li(&tc), [2, 7, 11]);
        assert!(!tc.purpose_consent(0) && !tc.purpose_consent(25));
        assert!(!tc.special_feature_opt_in(0) && !tc.special_feature_opt_in(13));
        assert_eq!(ids(tc.vendor_consents()), [1, 64, 65, 128, 130]);
        assert!(!tc.vendor_consent(0) && !tc.vendor_consent(131) && !tc.vendor_consent(129));
        let li = ids(tc.vendor_legitimate_interests());
        assert_eq!(li.len(), 1 + 11 + 1001);
        assert!(tc.vendor_legitimate_interest(7) && tc.vendor_legitimate_interest(4500));
        assert!(!tc.vendor_legitimate_interest(8) && !tc.vendor_legitimate_interest(3999));
        assert_eq!(tc.publisher_cc(), "FR");
    }

    #[test]
    fn a_range_of_every_vendor_is_one_entry_and_a_full_bitfield_is_8_kib() {
        let spec = Spec {
            consents: Vendors::Ranges {
                max: u16::MAX,
                ranges: vec![(1, u16::MAX)],
            },
            restrictions: vec![(1, 0, vec![(1, u16::MAX)])],
            ..Spec::default()
        };
        let tc = decode(&spec.encode()).unwrap();
        assert!(tc.vendor_consent(1) && tc.vendor_consent(u16::MAX));
        assert!(matches!(&tc.vendor_consents().repr, Repr::Ranges(r) if r.len() == 1));
        assert_eq!(tc.restriction(1, 40_000), Some(RestrictionType::NotAllowed));

        let spec = Spec {
            consents: Vendors::Bitfield {
                max: u16::MAX,
                ids: [1, 777, u16::MAX].into(),
            },
            ..Spec::default()
        };
        let s = spec.encode();
        assert!(s.len() > 10_000);
        let tc = decode(&s).unwrap();
        assert_eq!(ids(tc.vendor_consents()), [1, 777, u16::MAX]);
        assert!(matches!(&tc.vendor_consents().repr, Repr::Bits(w) if w.len() * 8 <= 8 * 1024));
    }

    #[test]
    fn a_bitfield_longer_than_the_string_is_truncated_not_allocated() {
        let mut w = Spec::default().bits();
        // Replace the vendor sections with a header claiming 65,535 bitfield vendors.
        w.0.truncate(213);
        w.int(u64::from(u16::MAX), 16);
        w.int(0, 1);
        assert_eq!(
            decode(&w.base64url()),
            Err(TcfError::Truncated {
                field: "vendor_consents.bitfield"
            })
        );
    }

    #[test]
    fn overlapping_and_unsorted_ranges_are_merged() {
        let spec = Spec {
            consents: Vendors::Ranges {
                max: 100,
                ranges: vec![(50, 60), (1, 3), (55, 70), (4, 4), (100, 100)],
            },
            ..Spec::default()
        };
        let tc = decode(&spec.encode()).unwrap();
        assert!(
            matches!(&tc.vendor_consents().repr, Repr::Ranges(r) if r == &[(1, 4), (50, 70), (100, 100)])
        );
        assert_eq!(
            format!("{:?}", tc.vendor_consents()),
            "VendorSet { max_id: 100, ids: [1..=4, 50..=70, 100..=100] }"
        );
    }

    #[test]
    fn refuses_invalid_ranges() {
        for (max, range) in [(10, (0, 3)), (10, (5, 4)), (10, (9, 11)), (0, (1, 1))] {
            let spec = Spec {
                consents: Vendors::Ranges {
                    max,
                    ranges: vec![range],
                },
                ..Spec::default()
            };
            assert_eq!(
                decode(&spec.encode()),
                Err(TcfError::InvalidRange {
                    section: "vendor_consents",
                    start: range.0,
                    end: range.1
                }),
                "{range:?} with max {max}"
            );
        }
        let spec = Spec {
            restrictions: vec![(2, 1, vec![(9, 3)])],
            ..Spec::default()
        };
        assert!(matches!(
            decode(&spec.encode()),
            Err(TcfError::InvalidRange {
                section: "publisher_restrictions",
                ..
            })
        ));
    }

    #[test]
    fn publisher_restrictions_round_trip_and_undefined_type_is_refused() {
        use RestrictionType::*;
        let spec = Spec {
            restrictions: vec![
                (2, 0, vec![(10, 20)]),
                (7, 1, vec![(755, 755), (1, 2)]),
                (7, 2, vec![(3, 3)]),
                (9, 1, vec![]),
            ],
            ..Spec::default()
        };
        let tc = decode(&spec.encode()).unwrap();
        assert_eq!(tc.publisher_restrictions().len(), 4);
        assert_eq!(tc.restriction(2, 15), Some(NotAllowed));
        assert_eq!(tc.restriction(2, 21), None);
        assert_eq!(tc.restriction(7, 755), Some(RequireConsent));
        assert_eq!(tc.restriction(7, 3), Some(RequireLegitimateInterest));
        assert_eq!(tc.restriction(8, 755), None);
        assert!(tc.publisher_restrictions()[3].vendors().is_empty());

        // Against the specification, one pair listed twice: not allowed wins wherever it is.
        let spec = Spec {
            restrictions: vec![
                (4, 1, vec![(1, 9)]),
                (4, 2, vec![(5, 5)]),
                (4, 0, vec![(5, 5)]),
            ],
            ..Spec::default()
        };
        let tc = decode(&spec.encode()).unwrap();
        assert_eq!(tc.restriction(4, 5), Some(NotAllowed));
        assert_eq!(tc.restriction(4, 6), Some(RequireConsent));
        assert!(tc.has_restriction(4, RequireLegitimateInterest, 5));

        let spec = Spec {
            restrictions: vec![(1, 3, vec![(1, 1)])],
            ..Spec::default()
        };
        assert_eq!(
            decode(&spec.encode()),
            Err(TcfError::UnknownRestrictionType(3))
        );
    }

    #[test]
    fn every_prefix_of_an_encoded_string_is_truncated() {
        let spec = Spec {
            purposes: mask(&[1, 7]),
            consents: Vendors::Bitfield {
                max: 40,
                ids: [3, 40].into(),
            },
            legitimate_interests: Vendors::Ranges {
                max: 900,
                ranges: vec![(5, 9), (900, 900)],
            },
            restrictions: vec![(1, 1, vec![(2, 2), (4, 8)])],
            ..Spec::default()
        };
        let s = spec.encode();
        assert!(decode(&s).is_ok());
        for k in 1..s.len() {
            assert!(truncated(decode(&s[..k])), "prefix of {k} characters");
            assert!(truncated(decode(&format!("{}.IAAo", &s[..k]))));
        }
    }

    #[test]
    fn every_prefix_of_a_published_string_is_truncated_or_complete() {
        for s in [
            "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
            "COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA",
            "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA",
        ] {
            let full = decode(s).unwrap();
            for k in 1..s.len() {
                match decode(&s[..k]) {
                    // Only trailing padding bits were cut.
                    Ok(tc) => assert_eq!(tc, full, "prefix of {k}"),
                    Err(e) => assert!(matches!(e, TcfError::Truncated { .. }), "{e:?} at {k}"),
                }
            }
        }
    }

    #[test]
    fn refuses_wrong_versions_bad_text_and_oversized_input() {
        for version in [0, 1, 3, 63] {
            let spec = Spec {
                version,
                ..Spec::default()
            };
            assert_eq!(
                decode(&spec.encode()),
                Err(TcfError::UnsupportedVersion(version))
            );
        }
        let good = Spec::default().encode();
        assert_eq!(decode(&format!("{good}+")), Err(TcfError::NotBase64(0)));
        assert_eq!(decode(&format!("{good}/")), Err(TcfError::NotBase64(0)));
        assert_eq!(decode(&format!(" {good}")), Err(TcfError::NotBase64(0)));
        assert_eq!(decode(&format!("{good}é")), Err(TcfError::NotBase64(0)));
        assert_eq!(decode(&format!("{good}.IA!o")), Err(TcfError::NotBase64(1)));
        assert_eq!(decode(&format!("{good}.")), Err(TcfError::EmptySegment(1)));
        assert_eq!(
            decode(&format!("{good}..IAAo")),
            Err(TcfError::EmptySegment(1))
        );
        assert_eq!(decode(".IAAo"), Err(TcfError::EmptySegment(0)));
        assert_eq!(decode("=="), Err(TcfError::EmptySegment(0)));
        assert_eq!(decode(&format!("{good}==")).map(|t| t.cmp_id()), Ok(300));

        let long = format!("{good}{}", "A".repeat(MAX_LEN));
        assert_eq!(decode(&long), Err(TcfError::TooLong(long.len())));
        // Trailing bits after the core fields are padding, whatever their value.
        assert!(decode(&format!("{good}{}", "_".repeat(MAX_LEN - good.len()))).is_ok());
    }

    #[test]
    fn refuses_letters_outside_a_to_z() {
        let mut w = Spec::default().bits();
        // Consent language starts at bit 6 + 36 + 36 + 12 + 12 + 6 = 108.
        for (i, bit) in [true, true, false, true, false].into_iter().enumerate() {
            w.0[108 + 1 + i] = bit; // 0b011010 = 26, one past Z
        }
        assert_eq!(
            decode(&w.base64url()),
            Err(TcfError::InvalidLetters {
                field: "consent_language"
            })
        );
    }

    #[test]
    fn extra_segments_are_typed_not_decoded() {
        let good = Spec::default().encode();
        // 000 (0), 100 (4), 111 (7): undefined types are recorded, not refused.
        let tc = decode(&format!("{good}.AAAA.gAAA._w.YA")).unwrap();
        assert_eq!(
            tc.other_segments(),
            [
                SegmentType::Unknown(0),
                SegmentType::Unknown(4),
                SegmentType::Unknown(7),
                SegmentType::PublisherTc
            ]
        );
    }

    #[test]
    fn error_codes_are_stable_and_messages_lowercase() {
        let all = [
            TcfError::TooLong(1),
            TcfError::Empty,
            TcfError::EmptySegment(1),
            TcfError::NotBase64(0),
            TcfError::UnsupportedVersion(1),
            TcfError::Truncated { field: "created" },
            TcfError::InvalidRange {
                section: "vendor_consents",
                start: 0,
                end: 1,
            },
            TcfError::InvalidLetters {
                field: "publisher_cc",
            },
            TcfError::UnknownRestrictionType(3),
        ];
        let codes: BTreeSet<&str> = all.iter().map(TcfError::code).collect();
        assert_eq!(codes.len(), all.len());
        for e in &all {
            assert!(e.code().starts_with("tcf_"));
            let msg = e.to_string();
            assert!(msg.starts_with("tc string"), "{msg}");
        }
    }

    // ---- Consent Mode mapping ----

    #[test]
    fn google_signals_follow_purposes_1_3_4_7_8() {
        let signals = |purposes: &[u8]| {
            let spec = Spec {
                purposes: mask(purposes),
                purposes_li: mask(&[2, 7, 8, 9, 10]),
                ..Spec::default()
            };
            decode(&spec.encode()).unwrap().google_consent_signals()
        };
        let all = GoogleConsentSignals {
            ad_storage: true,
            ad_user_data: true,
            ad_personalization: true,
            analytics_storage: true,
        };
        assert_eq!(signals(&[1, 3, 4, 7, 8]), all);
        assert_eq!(signals(&[]), GoogleConsentSignals::default());
        assert_eq!(
            signals(&[1]),
            GoogleConsentSignals {
                ad_storage: true,
                ..GoogleConsentSignals::default()
            }
        );
        assert_eq!(
            signals(&[1, 7]),
            GoogleConsentSignals {
                ad_storage: true,
                ad_user_data: true,
                ..GoogleConsentSignals::default()
            }
        );
        assert_eq!(
            signals(&[3, 4, 7, 8]),
            GoogleConsentSignals {
                ad_personalization: true,
                ..GoogleConsentSignals::default()
            },
            "without purpose 1 only personalisation survives"
        );
        assert!(!signals(&[1, 3, 7, 8]).ad_personalization);
        assert!(!signals(&[1, 4, 7, 8]).ad_personalization);
        assert!(!signals(&[1, 3, 4, 7]).analytics_storage);

        // LiveRamp fixture: purposes 1, 3, 6, 7, 8, 10.
        let tc = decode("COvzTO5OvzTO5B7ABCENAPCYAKdAADkAAIqIFhwBAAGAAXAFGAsMAhYAgAMAAegBYAEKAAA")
            .unwrap();
        assert_eq!(
            tc.google_consent_signals(),
            GoogleConsentSignals {
                ad_storage: true,
                ad_user_data: true,
                ad_personalization: false,
                analytics_storage: true,
            }
        );
    }

    // ---- properties ----

    fn vendors() -> impl Strategy<Value = Vendors> {
        let ids = prop_oneof![
            proptest::collection::btree_set(1u16..=300, 0..40),
            proptest::collection::btree_set(1u16..=u16::MAX, 0..8),
        ];
        (ids, any::<bool>(), 0u16..=20).prop_map(|(ids, as_ranges, slack)| {
            let last = ids.last().copied().unwrap_or(0);
            if as_ranges {
                let mut ranges: Vec<(u16, u16)> = Vec::new();
                for &id in &ids {
                    match ranges.last_mut() {
                        Some(r) if u32::from(r.1) + 1 == u32::from(id) => r.1 = id,
                        _ => ranges.push((id, id)),
                    }
                }
                Vendors::Ranges { max: last, ranges }
            } else {
                Vendors::Bitfield {
                    max: last.saturating_add(slack).min(last.max(2000)),
                    ids,
                }
            }
        })
    }

    fn specs() -> impl Strategy<Value = Spec> {
        let header = (
            0u64..(1 << 36),
            0u64..(1 << 36),
            0u16..4096,
            0u16..4096,
            0u8..64,
            (b'A'..=b'Z', b'A'..=b'Z'),
            0u16..4096,
            0u8..64,
        );
        let flags = (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            0u32..(1 << 24),
            0u32..(1 << 24),
            any::<bool>(),
            (b'A'..=b'Z', b'A'..=b'Z'),
        );
        let restriction = (
            1u8..=24,
            0u8..=2,
            proptest::collection::btree_set(1u16..=2000, 0..6),
        )
            .prop_map(|(purpose, kind, ids)| {
                (purpose, kind, ids.into_iter().map(|id| (id, id)).collect())
            });
        (
            header,
            flags,
            vendors(),
            vendors(),
            proptest::collection::vec(restriction, 0..5),
        )
            .prop_map(
                |(h, f, consents, legitimate_interests, restrictions)| Spec {
                    version: 2,
                    created_ds: h.0,
                    last_updated_ds: h.1,
                    cmp_id: h.2,
                    cmp_version: h.3,
                    consent_screen: h.4,
                    language: [h.5.0, h.5.1],
                    vendor_list_version: h.6,
                    policy: h.7,
                    service_specific: f.0,
                    non_standard: f.1,
                    special_features: f.2,
                    purposes: f.3,
                    purposes_li: f.4,
                    purpose_one_treatment: f.5,
                    publisher_cc: [f.6.0, f.6.1],
                    consents,
                    legitimate_interests,
                    restrictions,
                },
            )
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_any_text(s in "\\PC{0,300}") {
            let _ = decode(&s);
        }

        #[test]
        fn decode_never_panics_on_base64url_text(
            s in "C[A-Za-z0-9_-]{0,400}(\\.[A-Za-z0-9_=-]{0,12}){0,3}"
        ) {
            if let Err(e) = decode(&s) {
                prop_assert!(!e.code().is_empty());
            }
        }

        #[test]
        fn decode_never_panics_on_any_bytes_behind_a_version_2_header(
            bytes in proptest::collection::vec(any::<u8>(), 0..3000)
        ) {
            let mut w = Writer::default();
            w.int(2, 6);
            for b in bytes {
                w.int(u64::from(b), 8);
            }
            let _ = decode(&w.base64url());
        }

        #[test]
        fn encoder_and_decoder_round_trip(spec in specs()) {
            let tc = decode(&spec.encode()).unwrap();
            prop_assert_eq!(tc.created().millis(), spec.created_ds as i64 * 100);
            prop_assert_eq!(tc.last_updated().millis(), spec.last_updated_ds as i64 * 100);
            prop_assert_eq!(tc.cmp_id(), spec.cmp_id);
            prop_assert_eq!(tc.cmp_version(), spec.cmp_version);
            prop_assert_eq!(tc.consent_screen(), spec.consent_screen);
            prop_assert_eq!(tc.consent_language().as_bytes(), &spec.language);
            prop_assert_eq!(tc.vendor_list_version(), spec.vendor_list_version);
            prop_assert_eq!(tc.tcf_policy_version(), spec.policy);
            prop_assert_eq!(tc.is_service_specific(), spec.service_specific);
            prop_assert_eq!(tc.use_non_standard_texts(), spec.non_standard);
            prop_assert_eq!(tc.purpose_one_treatment(), spec.purpose_one_treatment);
            prop_assert_eq!(tc.publisher_cc().as_bytes(), &spec.publisher_cc);
            for p in 1..=24u8 {
                prop_assert_eq!(tc.purpose_consent(p), spec.purposes >> (p - 1) & 1 == 1);
                prop_assert_eq!(tc.purpose_legitimate_interest(p), spec.purposes_li >> (p - 1) & 1 == 1);
            }
            for n in 1..=12u8 {
                prop_assert_eq!(tc.special_feature_opt_in(n), spec.special_features >> (n - 1) & 1 == 1);
            }
            prop_assert_eq!(tc.vendor_consents().max_id(), spec.consents.max());
            prop_assert_eq!(ids(tc.vendor_consents()), spec.consents.ids().into_iter().collect::<Vec<_>>());
            prop_assert_eq!(
                ids(tc.vendor_legitimate_interests()),
                spec.legitimate_interests.ids().into_iter().collect::<Vec<_>>()
            );
            for id in spec.consents.ids() {
                prop_assert!(tc.vendor_consent(id));
            }
            prop_assert_eq!(tc.publisher_restrictions().len(), spec.restrictions.len());
            for (r, (purpose, kind, ranges)) in tc.publisher_restrictions().iter().zip(&spec.restrictions) {
                prop_assert_eq!(r.purpose_id(), *purpose);
                let expected = [
                    RestrictionType::NotAllowed,
                    RestrictionType::RequireConsent,
                    RestrictionType::RequireLegitimateInterest,
                ][usize::from(*kind)];
                prop_assert_eq!(r.restriction_type(), expected);
                let listed: Vec<u16> = ranges.iter().map(|&(id, _)| id).collect();
                prop_assert_eq!(ids(r.vendors()), listed.clone());
                for id in listed {
                    prop_assert!(tc.has_restriction(*purpose, expected, id));
                }
            }
            prop_assert!(tc.other_segments().is_empty());
        }
    }
}

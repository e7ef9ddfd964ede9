//! Preview tokens: short-lived, signed links that let one browser run a container's draft.
//!
//! A token is `<container, hex>.<expiry, Unix ms>.<HMAC-SHA256, first 16 bytes, hex>`. The key
//! is derived from the admin token (so every node sharing a config checks every node's
//! tokens, and a new admin token ends every preview); the token names its container, so a
//! preview of one container opens no other.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::PreviewError;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a token.
const MAC_BYTES: usize = 16;

/// The signing key for preview tokens, derived from the admin token.
#[derive(Clone)]
pub struct PreviewKey([u8; 32]);

impl std::fmt::Debug for PreviewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreviewKey([redacted])")
    }
}

impl PreviewKey {
    /// Derives the key from the admin token.
    pub fn from_admin_token(token: &str) -> PreviewKey {
        let mut h = Sha256::new();
        h.update(b"tally container preview v1\0");
        h.update(token.as_bytes());
        PreviewKey(h.finalize().into())
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `container` valid until `expires_ms`.
    pub fn sign(&self, container: &str, expires_ms: i64) -> String {
        let payload = format!("{}.{expires_ms}", hex::encode(container));
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// The container a token opens at `now_ms`.
    ///
    /// # Errors
    /// [`PreviewError::Invalid`] for a token this key did not sign, [`PreviewError::Expired`]
    /// for one past its expiry.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<String, PreviewError> {
        let (payload, tag) = token.rsplit_once('.').ok_or(PreviewError::Invalid)?;
        let tag = hex::decode(tag).map_err(|_| PreviewError::Invalid)?;
        if tag.len() != MAC_BYTES {
            return Err(PreviewError::Invalid);
        }
        // Constant time.
        self.mac(payload)
            .verify_truncated_left(&tag)
            .map_err(|_| PreviewError::Invalid)?;
        let (name, expires) = payload.split_once('.').ok_or(PreviewError::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| PreviewError::Invalid)?;
        let name = hex::decode(name)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(PreviewError::Invalid)?;
        if now_ms >= expires {
            return Err(PreviewError::Expired);
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_container_until_it_expires() {
        let key = PreviewKey::from_admin_token("admin-secret");
        let token = key.sign("web", 10_000);
        assert_eq!(key.verify(&token, 9_999), Ok("web".to_owned()));
        assert_eq!(key.verify(&token, 10_000), Err(PreviewError::Expired));
        // Another admin token's key, a changed expiry or container, and garbage are refused.
        let other = PreviewKey::from_admin_token("rotated");
        assert_eq!(other.verify(&token, 0), Err(PreviewError::Invalid));
        let (_, mac) = token.rsplit_once('.').unwrap();
        let longer = format!("{}.99999.{mac}", hex::encode("web"));
        assert_eq!(key.verify(&longer, 0), Err(PreviewError::Invalid));
        let renamed = format!("{}.10000.{mac}", hex::encode("app"));
        assert_eq!(key.verify(&renamed, 0), Err(PreviewError::Invalid));
        for junk in ["", ".", "a.b.c", "7765.1.zz", &token[..token.len() - 2]] {
            assert_eq!(key.verify(junk, 0), Err(PreviewError::Invalid), "{junk}");
        }
        assert!(!format!("{key:?}").contains(&hex::encode(key.0)));
    }
}

//! tally's browser tag: the `tally.js` source (`assets/tally.js`, written by us, no third-party
//! code), built into the binary, with the content hash that versions it and its gzip form, both
//! computed once.
//!
//! Also the tag container's runtime (`assets/container.js`), which [`container_script`] joins
//! with one container version into the script the collector serves at `/v1/container.js`.
//!
//! Not here: serving them (the collector's `routes/tag.rs` and `routes/container.rs`), or the
//! container document and its linter (`tally-container`).
//!
//! Invariants: a [`Script`]'s `hash` names exactly its `source` bytes; its `gzip` decompresses
//! to them; tally.js stays within [`GZIP_BUDGET_BYTES`] (a test checks it).

use std::io::Write;
use std::sync::OnceLock;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// The tally.js source as written.
pub const TALLY_JS: &str = include_str!("../assets/tally.js");

/// The tag container's runtime, with `/*CONFIG*/{}` where a version's settings go.
pub const CONTAINER_JS: &str = include_str!("../assets/container.js");

/// Most bytes the container runtime may take on the wire, gzipped (without a document).
pub const CONTAINER_GZIP_BUDGET_BYTES: usize = 6 * 1024;

/// The runtime running `config` (JSON: `container`, `version`, `preview`, `document`,
/// `actions`, `order`, `previewError`; see `assets/container.js`).
pub fn container_script(config_json: &str) -> Script {
    Script::new(CONTAINER_JS.replacen("/*CONFIG*/{}", config_json, 1))
}

/// Most bytes tally.js may take on the wire, gzipped.
pub const GZIP_BUDGET_BYTES: usize = 10 * 1024;

/// A script ready to serve: its bytes, their version hash, and their gzip form.
#[derive(Clone, Debug)]
pub struct Script {
    /// The JavaScript as served without compression.
    pub source: Vec<u8>,
    /// The same bytes gzipped (served when the client accepts gzip).
    pub gzip: Vec<u8>,
    /// The first 16 hex digits of the source's SHA-256: the version in URLs and ETags.
    pub hash: String,
}

impl Script {
    /// Hashes and compresses `source`.
    pub fn new(source: impl Into<Vec<u8>>) -> Script {
        let source = source.into();
        let digest = Sha256::digest(&source);
        let hash = hex::encode(&digest[..8]);
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder
            .write_all(&source)
            .expect("writing to a Vec cannot fail");
        let gzip = encoder.finish().expect("writing to a Vec cannot fail");
        Script { source, gzip, hash }
    }
}

/// tally.js, hashed and compressed on first use.
pub fn tally_js() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(TALLY_JS))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn tally_js_fits_the_gzip_budget() {
        let size = tally_js().gzip.len();
        assert!(
            size <= GZIP_BUDGET_BYTES,
            "tally.js is {size} bytes gzipped, over the {GZIP_BUDGET_BYTES}-byte budget"
        );
    }

    #[test]
    fn gzip_form_decompresses_to_the_source() {
        let script = tally_js();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&script.gzip[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        assert_eq!(out, TALLY_JS.as_bytes());
    }

    #[test]
    fn hash_names_the_content() {
        let a = Script::new("tally('page')");
        assert_eq!(a.hash.len(), 16);
        assert!(a.hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a.hash, Script::new("tally('page')").hash);
        assert_ne!(a.hash, Script::new("tally('page');").hash);
    }

    #[test]
    fn tally_js_loads_no_other_code() {
        // First-party and self-contained: no imports or eval, and the one script element it
        // adds is the tag container, from tally's own origin.
        for needle in ["import(", "importScripts", "eval(", "new Function"] {
            assert!(!TALLY_JS.contains(needle), "tally.js contains `{needle}`");
            assert!(
                !CONTAINER_JS.contains(needle),
                "container.js contains `{needle}`"
            );
        }
        assert_eq!(TALLY_JS.matches("createElement").count(), 1);
        assert!(TALLY_JS.contains("createElement('script')"));
        let sources: Vec<&str> = TALLY_JS
            .lines()
            .filter(|l| l.contains(".src ="))
            .map(str::trim)
            .collect();
        assert_eq!(sources.len(), 1, "{sources:?}");
        assert!(
            sources[0].starts_with("s.src = ORIGIN + '/v1/container.js?key='"),
            "{sources:?}"
        );
        // The container runtime adds no script elements at all.
        assert!(!CONTAINER_JS.contains("createElement('script')"));
        assert!(!CONTAINER_JS.contains(".src ="));
    }

    #[test]
    fn the_container_runtime_fits_its_budget_and_takes_its_config() {
        let script = container_script(r#"{"container":"web","version":7,"document":{}}"#);
        let size = Script::new(CONTAINER_JS).gzip.len();
        assert!(
            size <= CONTAINER_GZIP_BUDGET_BYTES,
            "container.js is {size} bytes gzipped, over {CONTAINER_GZIP_BUDGET_BYTES}"
        );
        let text = String::from_utf8(script.source).unwrap();
        assert!(text.ends_with(
            "})(window, document, {\"container\":\"web\",\"version\":7,\"document\":{}});\n"
        ));
        assert!(!text.contains("/*CONFIG*/"));
    }
}

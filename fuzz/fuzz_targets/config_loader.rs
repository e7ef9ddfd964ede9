//! The config loader: any TOML text through the layers (embedded defaults, the file, `${VAR}`
//! expansion from a fixed environment) and validation, as `tally serve` and `tally config
//! check` run it.
//!
//! Properties: nothing panics; every refusal names at least one problem with a key; neither the
//! problems nor a loaded config's `Debug` form ever show a credential: the admin token, a
//! source key, or a destination's token, secret or header value.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tally::config::{Overrides, load_from};

/// Values the fuzzer can reach through `${VAR}`; long enough to pass the length checks.
const ENV: &[(&str, &str)] = &[
    ("TALLY_ADMIN_TOKEN", "env-admin-token-0123456789"),
    ("META_ACCESS_TOKEN", "env-meta-token-0123456789"),
    ("WEBHOOK_SECRET", "env-webhook-secret-0123456789"),
];

/// Keys whose values are credentials, wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "admin_token",
    "key",
    "access_token",
    "developer_token",
    "api_secret",
    "secret",
    "url",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<String, String> = ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let secrets = secrets_in(text, &env);
    match load_from(Some(("fuzz.toml", text)), &env, &Overrides::default()) {
        Ok(config) => {
            let shown = format!("{config:?}");
            for s in &secrets {
                assert!(!shown.contains(s.as_str()), "config Debug shows {s:?}");
            }
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "refused without a problem");
            let shown = problems.to_string();
            for s in &secrets {
                assert!(!shown.contains(s.as_str()), "problems show {s:?}: {shown}");
            }
        }
    }
});

/// The credential values the text sets (after `${VAR}` expansion for the known variables):
/// strings under a secret key and every value of a `headers` table, long enough that finding
/// one elsewhere is not a coincidence.
fn secrets_in(text: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect(&toml::Value::Table(table), None, &mut out);
    out.iter_mut().for_each(|s| {
        for (k, v) in env {
            *s = s.replace(&format!("${{{k}}}"), v);
        }
    });
    out.retain(|s| s.len() >= 12 && !s.contains('$'));
    out
}

fn collect(value: &toml::Value, key: Option<&str>, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if key.is_some_and(|k| SECRET_KEYS.contains(&k)) => {
            out.push(s.clone());
        }
        toml::Value::Table(t) => {
            for (k, v) in t {
                if k == "headers"
                    && let toml::Value::Table(headers) = v
                {
                    out.extend(
                        headers
                            .values()
                            .filter_map(|h| h.as_str().map(str::to_owned)),
                    );
                }
                collect(v, Some(k), out);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect(v, key, out)),
        _ => {}
    }
}

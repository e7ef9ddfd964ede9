//! `tally erase`: a right-to-erasure request sent to the running tally's `POST /v1/erase`
//! with the admin token, so the erasure runs in the server's own store transaction and its
//! audit line lands in the server's log with every other admin action.
//!
//! Email and phone are normalised and hashed here, as ingest does, and only their SHA-256 is
//! sent: the raw address never leaves this process. Anonymous and external IDs are sent as
//! they are (tally stores them so).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use tally_core::identity::{HashedIdentity, RawIdentity};

use crate::config::Config;

/// Who to erase and where.
#[derive(Clone, Debug, Default)]
pub struct EraseCommand {
    /// The running tally (`http://<listen>` by default).
    pub url: String,
    /// The browser's anonymous ID.
    pub anonymous_id: Option<String>,
    /// The advertiser's customer ID.
    pub external_id: Option<String>,
    /// Email address, or its SHA-256.
    pub email: Option<String>,
    /// Phone number, or its SHA-256 (digits form).
    pub phone: Option<String>,
    /// Country completing a phone number given without its code.
    pub country: Option<String>,
    /// Count only.
    pub dry_run: bool,
    /// Print the server's JSON answer.
    pub json: bool,
}

impl EraseCommand {
    /// The request body: IDs as given, email and phone hashed.
    ///
    /// # Errors
    /// When no identifier is given or email or phone cannot be normalised.
    pub fn body(&self) -> anyhow::Result<Value> {
        let (identity, warnings) = HashedIdentity::hash(&RawIdentity {
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            country: self.country.as_deref(),
            ..RawIdentity::default()
        });
        if let Some(w) = warnings.first() {
            bail!("--{}: {}", w.field, w.message);
        }
        let mut body = Map::new();
        let mut put = |field: &str, value: Option<String>| {
            if let Some(v) = value {
                body.insert(field.to_owned(), Value::String(v));
            }
        };
        put("anonymous_id", self.anonymous_id.clone());
        put("external_id", self.external_id.clone());
        put("email", identity.email_sha256);
        put("phone", identity.phone_digits_sha256);
        if body.is_empty() {
            bail!("name the person: --email, --phone, --anonymous-id or --external-id");
        }
        if self.dry_run {
            body.insert("dry_run".into(), json!(true));
        }
        Ok(Value::Object(body))
    }
}

/// Sends the request and prints the report; returns 0, or 1 when the search stopped at its
/// bound before it had followed every link.
///
/// # Errors
/// When tally cannot be reached, refuses the request, or the config has no admin token.
pub async fn run(config: &Config, cmd: &EraseCommand, out: &mut impl Write) -> anyhow::Result<i32> {
    let body = cmd.body()?;
    let admin = config
        .admin_token
        .as_ref()
        .context("erase uses the admin API: set admin_token (or TALLY_ADMIN_TOKEN)")?;
    let base = cmd.url.trim_end_matches('/');
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?
        .post(format!("{base}/v1/erase"))
        .bearer_auth(admin.expose())
        .json(&body)
        .send()
        .await
        .with_context(|| format!("tally is not answering at {base}; is `tally serve` running?"))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("tally answered {status} without JSON"))?;
    if !status.is_success() {
        bail!(
            "tally refused the erasure ({status}): {}",
            answer["message"].as_str().unwrap_or("no reason given")
        );
    }
    if cmd.json {
        writeln!(out, "{answer:#}")?;
    } else {
        print_report(out, &answer)?;
    }
    Ok(if answer["complete"] == true { 0 } else { 1 })
}

fn print_report(out: &mut impl Write, a: &Value) -> std::io::Result<()> {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let verb = if a["dry_run"] == true {
        "would remove (dry run)"
    } else {
        "removed"
    };
    writeln!(out, "{verb}:")?;
    writeln!(out, "  events          {}", n(&a["events"]))?;
    writeln!(out, "  later copies    {}", n(&a["copies"]))?;
    let d = &a["deliveries"];
    writeln!(
        out,
        "  deliveries      {} pending, {} retrying, {} in flight, {} delivered, {} dead, {} needs fix, {} withheld",
        n(&d["pending"]),
        n(&d["retrying"]),
        n(&d["in_flight"]),
        n(&d["delivered"]),
        n(&d["dead"]),
        n(&d["needs_fix"]),
        n(&d["withheld"])
    )?;
    writeln!(out, "  quarantine rows {}", n(&a["quarantine"]))?;
    writeln!(out, "  click memories  {}", n(&a["click_memories"]))?;
    writeln!(out, "  identity links  {}", n(&a["identity_links"]))?;
    let keys = a["keys_searched"].as_array().map_or(0, Vec::len);
    writeln!(
        out,
        "found by {keys} key(s) in {} round(s); {} revocation(s) kept",
        n(&a["rounds"]),
        n(&a["revocations_kept"])
    )?;
    if a["complete"] != true {
        writeln!(
            out,
            "incomplete: the search stopped at its round limit; events linked further away were left"
        )?;
    }
    writeln!(
        out,
        "request digest {} (in the server's audit log)",
        a["request"].as_str().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_and_phone_leave_as_hashes_only() {
        let cmd = EraseCommand {
            email: Some("Jane.Doe@Example.com".into()),
            phone: Some("+1 (650) 555-1212".into()),
            anonymous_id: Some("v-1".into()),
            ..EraseCommand::default()
        };
        let body = cmd.body().unwrap();
        let text = body.to_string();
        assert!(!text.contains("Jane") && !text.contains("650"), "{text}");
        assert_eq!(
            body["email"],
            tally_core::identity::sha256_hex("jane.doe@example.com")
        );
        assert_eq!(body["anonymous_id"], "v-1");
        assert_eq!(body.get("dry_run"), None);
        assert!(EraseCommand::default().body().is_err());
        let bad = EraseCommand {
            email: Some("nobody".into()),
            ..EraseCommand::default()
        };
        assert!(!bad.body().unwrap_err().to_string().contains("nobody"));
    }
}

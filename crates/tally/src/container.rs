//! `tally container`: a browser source's tag container through the running tally's admin API
//! (`/v1/containers/{source}/...`), so every edit, publish and rollback goes through the one
//! store every node reads, and the server's linter decides what may be published.
//!
//! Exit codes: 0 done; 1 refused by the linter (publish) or a draft that has lint errors
//! (`draft set`, which still saves it); 2 anything else.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tally_core::event::SourceKind;

use crate::config::Config;

/// `tally container ...`.
#[derive(Args, Debug)]
pub struct ContainerArgs {
    /// The browser source whose container this is (default: the config's only browser source).
    #[arg(long, global = true)]
    pub source: Option<String>,
    /// The running tally (default: http://<listen>).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: ContainerCommand,
}

/// The container commands.
#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Print or replace the draft.
    Draft {
        /// get or set.
        #[command(subcommand)]
        command: DraftCommand,
    },
    /// What publishing the draft would change against the live version.
    Diff,
    /// Lint the draft and publish it as the next version (refused on lint errors).
    Publish {
        /// What changed and why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Published versions, newest (live) first.
    Versions,
    /// Print one published version's document.
    Show {
        /// The version number.
        version: u32,
    },
    /// Make an earlier version live again (published as a new version copying it).
    Rollback {
        /// The version to run again.
        version: u32,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Create a preview link: a page opened with the printed query parameter runs the draft
    /// in that browser only, with a panel showing what fired.
    Preview {
        /// Lifetime of the link in seconds (at most a day).
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

/// `tally container draft ...`.
#[derive(Subcommand, Debug)]
pub enum DraftCommand {
    /// Print the draft (JSON), ready to edit and `set` again.
    Get,
    /// Replace the draft with the document in FILE (`-` reads standard input).
    Set {
        /// The document (JSON).
        file: PathBuf,
    },
}

fn source_name(config: &Config, given: Option<String>) -> anyhow::Result<String> {
    if let Some(s) = given {
        return Ok(s);
    }
    let browsers: Vec<&str> = config
        .sources
        .iter()
        .filter(|s| s.kind == SourceKind::Browser)
        .map(|s| s.name.as_str())
        .collect();
    match browsers.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => bail!("the config has no browser source; a container belongs to one"),
        many => bail!(
            "the config has several browser sources ({}); name one with --source",
            many.join(", ")
        ),
    }
}

/// Runs one container command; returns the exit code.
///
/// # Errors
/// When tally cannot be reached, refuses the request, or the config has no admin token.
pub async fn run(
    config: &Config,
    args: ContainerArgs,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let admin = config
        .admin_token
        .as_ref()
        .context("container commands use the admin API: set admin_token (or TALLY_ADMIN_TOKEN)")?;
    let source = source_name(config, args.source)?;
    let base = args
        .url
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let base = format!("{}/v1/containers/{source}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(admin.expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req
                .send()
                .await
                .context("tally is not answering; is `tally serve` running?")?;
            let status = resp.status();
            let answer: Value = resp
                .json()
                .await
                .with_context(|| format!("tally answered {status} without JSON"))?;
            anyhow::Ok((status, answer))
        }
    };
    let refused = |status: reqwest::StatusCode, answer: &Value| {
        anyhow::anyhow!(
            "tally refused ({status}): {}",
            answer["message"].as_str().unwrap_or("no reason given")
        )
    };
    use reqwest::Method;
    match args.command {
        ContainerCommand::Draft {
            command: DraftCommand::Get,
        } => {
            let (status, answer) = call(Method::GET, "/draft", None).await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            writeln!(out, "{:#}", answer["document"])?;
            Ok(0)
        }
        ContainerCommand::Draft {
            command: DraftCommand::Set { file },
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let document: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let (status, answer) = call(Method::PUT, "/draft", Some(document)).await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            writeln!(out, "draft of `{source}` saved")?;
            let errors = print_findings(out, &answer["findings"])?;
            Ok(if errors > 0 { 1 } else { 0 })
        }
        ContainerCommand::Diff => {
            let (status, answer) = call(Method::GET, "/diff", None).await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            match answer["live_version"].as_u64() {
                Some(v) => writeln!(out, "draft against live version {v}:")?,
                None => writeln!(out, "draft (nothing is published yet):")?,
            }
            write!(out, "{}", answer["text"].as_str().unwrap_or(""))?;
            Ok(0)
        }
        ContainerCommand::Publish { note } => {
            let (status, answer) =
                call(Method::POST, "/publish", Some(json!({"note": note}))).await?;
            if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
                writeln!(out, "not published: the draft has lint errors")?;
                print_findings(out, &answer["errors"])?;
                print_findings(out, &answer["warnings"])?;
                return Ok(1);
            }
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            writeln!(
                out,
                "published version {} of `{source}`; it is live",
                answer["version"]["version"]
            )?;
            print_findings(out, &answer["warnings"])?;
            Ok(0)
        }
        ContainerCommand::Versions => {
            let (status, answer) = call(Method::GET, "/versions", None).await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            let versions = answer["versions"].as_array().cloned().unwrap_or_default();
            if versions.is_empty() {
                writeln!(out, "no version of `{source}` is published")?;
            }
            for (i, v) in versions.iter().enumerate() {
                let copy = v["copied_from"]
                    .as_u64()
                    .map(|c| format!(" (copy of {c})"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:>4}  {}  {}{copy}{}",
                    v["version"],
                    v["published"].as_str().unwrap_or("?"),
                    v["note"].as_str().unwrap_or(""),
                    if i == 0 { "  [live]" } else { "" }
                )?;
            }
            Ok(0)
        }
        ContainerCommand::Show { version } => {
            let (status, answer) = call(Method::GET, &format!("/versions/{version}"), None).await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            writeln!(out, "{:#}", answer["document"])?;
            Ok(0)
        }
        ContainerCommand::Rollback { version, note } => {
            let (status, answer) = call(
                Method::POST,
                "/rollback",
                Some(json!({"version": version, "note": note})),
            )
            .await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            writeln!(
                out,
                "version {} of `{source}` is live: a copy of version {version}",
                answer["version"]["version"]
            )?;
            Ok(0)
        }
        ContainerCommand::Preview { ttl_secs } => {
            let (status, answer) = call(
                Method::POST,
                "/preview",
                Some(json!({"ttl_secs": ttl_secs})),
            )
            .await?;
            if !status.is_success() {
                return Err(refused(status, &answer));
            }
            writeln!(
                out,
                "open any page of the site with ?{} (until {}); ?tally_preview=off ends the preview",
                answer["query"].as_str().unwrap_or(""),
                answer["expires"].as_str().unwrap_or("?")
            )?;
            Ok(0)
        }
    }
}

/// Prints lint findings; returns how many are errors.
fn print_findings(out: &mut impl Write, findings: &Value) -> std::io::Result<usize> {
    let mut errors = 0;
    for f in findings.as_array().into_iter().flatten() {
        let severity = f["severity"].as_str().unwrap_or("?");
        if severity == "error" {
            errors += 1;
        }
        writeln!(
            out,
            "  {severity} {}: {}",
            f["code"].as_str().unwrap_or("?"),
            f["message"].as_str().unwrap_or("")
        )?;
    }
    Ok(errors)
}

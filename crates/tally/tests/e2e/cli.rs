use std::process::Command;

use serde_json::json;

use crate::support::{Binary, purchase, statuses, tally_bin};

fn tally(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tally_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("TALLY_CONFIG")
        .env_remove("TALLY_ADMIN_TOKEN")
        .output()
        .expect("run tally");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_a_config_that_checks_clean_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = tally(dir.path(), &["init"]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(dir.path().join("tally.toml")).unwrap();
    assert!(
        text.contains("[[sources]]") && text.contains("# "),
        "commented config"
    );
    let (code, out, err) = tally(dir.path(), &["--config", "tally.toml", "config", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("config ok"), "{out}");
    let (code, _, err) = tally(dir.path(), &["init"]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn config_check_reports_every_problem_with_its_key_and_exit_code_1_without_printing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        r#"
listen = "not-an-address"
[[sources]]
name = "api"
kind = "server"
key = "sk_super_secret_value"
[[sources]]
name = "api"
kind = "browser"
key = "pk_other_public_key"
[[events]]
name = "purchase"
types = { value = "colour" }
"#,
    )
    .unwrap();
    let (code, out, err) = tally(dir.path(), &["--config", "bad.toml", "config", "check"]);
    assert_eq!(code, 1, "{out}{err}");
    for key in [
        "listen:",
        "sources[1].name:",
        "sources[1].allowed_origins:",
        "events[0].types.value:",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
    assert!(!err.contains("sk_super_secret_value") && !out.contains("sk_super_secret_value"));
}

#[test]
fn env_overrides_and_missing_variables_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        "admin_token = \"${NOT_SET_ANYWHERE}\"\n",
    )
    .unwrap();
    let (code, _, err) = tally(dir.path(), &["--config", "t.toml", "config", "check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("admin_token: environment variable NOT_SET_ANYWHERE is not set"),
        "{err}"
    );
}

#[test]
fn ledger_and_quarantine_commands_read_the_data_dir_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Binary::start(&data);
    let client = reqwest::blocking::Client::new();
    let post = |body: serde_json::Value| -> serde_json::Value {
        client
            .post(format!("{}/v1/events", server.url))
            .bearer_auth("sk_backend_demo")
            .body(body.to_string())
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(statuses(&post(purchase("cli-1", "C1"))), ["accepted"]);
    assert_eq!(
        statuses(&post(json!({"event": "purchse", "event_id": "cli-typo"}))),
        ["rejected"]
    );
    let data_arg = data.to_str().unwrap();
    let (code, out, err) = tally(dir.path(), &["--data-dir", data_arg, "ledger", "cli-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("purchase cli-1") && out.contains("129.90 EUR") && out.contains("1. "),
        "{out}"
    );
    let (code, out, _) = tally(
        dir.path(),
        &["--data-dir", data_arg, "ledger", "cli-1", "--json"],
    );
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["events"][0]["event"]["event_id"], "cli-1");
    let (code, out, _) = tally(dir.path(), &["--data-dir", data_arg, "ledger", "nope"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = tally(dir.path(), &["--data-dir", data_arg, "quarantine"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("unplanned_event") && out.contains("purchse"),
        "{out}"
    );
}

#[test]
fn replay_quarantine_from_the_cli_applies_the_fixed_plan() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let server = Binary::start(&data);
        let client = reqwest::blocking::Client::new();
        let resp = client
            .post(format!("{}/v1/events", server.url))
            .bearer_auth("sk_backend_demo")
            .body(json!({"event": "trial_started", "event_id": "tr-1"}).to_string())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let data_arg = data.to_str().unwrap();
    let (code, out, _) = tally(
        dir.path(),
        &["--data-dir", data_arg, "replay", "--quarantine"],
    );
    assert_eq!(code, 1, "still unplanned: {out}");
    assert!(out.contains("1 still failing"), "{out}");
    std::fs::write(
        dir.path().join("fixed.toml"),
        "[[events]]\nname = \"trial_started\"\nconversion = true\n",
    )
    .unwrap();
    let (code, out, err) = tally(
        dir.path(),
        &[
            "--config",
            "fixed.toml",
            "--data-dir",
            data_arg,
            "replay",
            "--quarantine",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 accepted"), "{out}");
    let (code, out, _) = tally(dir.path(), &["--data-dir", data_arg, "ledger", "tr-1"]);
    assert_eq!(code, 0);
    assert!(out.contains("trial_started tr-1"), "{out}");
}

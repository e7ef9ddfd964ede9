use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::{Binary, purchase, statuses};

fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let resp = client
        .post(format!("{url}/v1/events"))
        .bearer_auth("sk_backend_demo")
        .body(body.to_string())
        .send()
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.json().ok()
}

#[test]
fn an_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::blocking::Client::new();
    let server = Binary::start(dir.path());
    let body = post(&client, &server.url, &purchase("k9-1", "K1")).expect("answered");
    assert_eq!(statuses(&body), ["accepted"]);
    drop(server); // SIGKILL, no shutdown path runs

    let server = Binary::start(dir.path());
    let body = post(&client, &server.url, &purchase("k9-1", "K1")).expect("answered");
    assert_eq!(
        statuses(&body),
        ["duplicate"],
        "the acknowledged event was still there"
    );
}

#[test]
fn every_event_acknowledged_under_load_is_present_exactly_once_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path());
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, acked, stop) = (server.url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> = (0..5).map(|i| format!("load-{w}-{n}-{i}")).collect();
                    n += 1;
                    let batch =
                        json!({"batch": ids.iter().map(|id| purchase(id, id)).collect::<Vec<_>>()});
                    match post(&client, &url, &batch) {
                        Some(body) => {
                            assert!(statuses(&body).iter().all(|s| s == "accepted"), "{body}");
                            acked.lock().unwrap().extend(ids);
                        }
                        None => break, // the server died under us
                    }
                }
            })
        })
        .collect();
    // Kill once a fair number of batches are acknowledged, while writers are mid-flight.
    while acked.lock().unwrap().len() < 400 {
        std::thread::yield_now();
    }
    drop(server);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    let server = Binary::start(dir.path());
    let client = reqwest::blocking::Client::new();
    for chunk in acked.chunks(500) {
        let batch = json!({"batch": chunk.iter().map(|id| purchase(id, id)).collect::<Vec<_>>()});
        let body = post(&client, &server.url, &batch).expect("answered");
        let s = statuses(&body);
        assert!(
            s.iter().all(|s| s == "duplicate"),
            "an acknowledged event was lost: {body}"
        );
    }
    // Exactly once: each acknowledged ID has one stored event (checked through the CLI).
    let sample = &acked[acked.len() / 2];
    let out = Command::new(crate::support::tally_bin())
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "ledger",
            sample,
            "--json",
        ])
        .output()
        .unwrap();
    let ledger: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ledger["events"].as_array().unwrap().len(), 1);
}

#[test]
fn sigterm_finishes_a_request_in_flight_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::start(dir.path());
    let addr = server.url.trim_start_matches("http://").to_owned();
    let body = purchase("term-1", "T1").to_string();
    let mut conn = TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer sk_backend_demo\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.flush().unwrap();
    // "100 Continue" is sent when the handler starts reading the body: it is in flight.
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    conn.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"accepted\""), "{response}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let server = Binary::start(dir.path());
    let client = reqwest::blocking::Client::new();
    let body = post(&client, &server.url, &purchase("term-1", "T1")).unwrap();
    assert_eq!(statuses(&body), ["duplicate"]);
}

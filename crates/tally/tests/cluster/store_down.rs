//! A store that cannot write answers 503 — never a 2xx for an event it did not store — and
//! recovers by itself when it can write again (PRODUCT.md §3).
//!
//! Disk full (SQLite): the node runs in a user and mount namespace of its own (`unshare
//! --user --map-root-user --mount`, which needs no privilege where unprivileged user namespaces
//! are allowed, as on Debian and in our CI) over a 32 MiB tmpfs mounted on its data dir. That is
//! a real filesystem returning a real ENOSPC to every write SQLite makes (WAL appends, database
//! growth, the shared-memory index), unlike `PRAGMA max_page_count` (SQLite refusing by itself)
//! or RLIMIT_FSIZE (EFBIG, only for files over a size, and SIGXFSZ). The test fills the disk
//! through `/proc/<pid>/root` (the node's view of the mount) and frees it by deleting the file.
//! `/healthz` must come back by itself, before any write is sent (a load balancer sends none to
//! a node it took out of rotation), and only once there is room for real writes: the store's
//! probe writes `probe_bytes` (8 MiB by default, hence a tmpfs bigger than that) beside the
//! database; a one-page commit once passed on the full disk.
//!
//! PostgreSQL stopped: a private cluster of the test's own (stopping the shared one would break
//! other tests), halted with `pg_ctl -m immediate` and started again on the same port.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    Delivery, Node, PrivatePostgres, TestStore, admin_get, batch, client, health, post_events,
    skip, statuses, tally_bin, wait_until,
};

const RECOVERY: Duration = Duration::from_secs(60);

/// The SQLite store's default `probe_bytes`: the room a probe needs.
const PROBE_BYTES: u64 = 8 << 20;

/// IDs of the events a test sent, by what became of them.
#[derive(Default)]
struct Sent {
    acked: HashSet<String>,
    refused: HashSet<String>,
    next: usize,
}

impl Sent {
    fn ids(&mut self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.next += 1;
                format!("down-{}", self.next)
            })
            .collect()
    }

    /// Sends `ids` once: the status, with the IDs recorded as acknowledged (200, each
    /// accepted or duplicate) or refused (503). Any other answer fails the test.
    fn send(&mut self, client: &reqwest::blocking::Client, url: &str, ids: &[String]) -> u16 {
        let (status, body) = post_events(client, url, &batch(ids)).expect("the node answered");
        match status {
            200 => {
                let s = statuses(&body);
                assert!(
                    s.iter().all(|s| s == "accepted" || s == "duplicate"),
                    "{body}"
                );
                self.acked.extend(ids.iter().cloned());
            }
            503 => self.refused.extend(ids.iter().cloned()),
            other => panic!("answered {other}, not 200 or 503: {body}"),
        }
        status
    }
}

/// Every acknowledged event is stored, once, and nothing else is: sending each again is a
/// duplicate, and the store holds exactly as many events as were acknowledged (an event
/// answered 503 was not stored, unless a later retry of it was acknowledged).
fn assert_stored_exactly(client: &reqwest::blocking::Client, url: &str, sent: &Sent) {
    let acked: Vec<String> = sent.acked.iter().cloned().collect();
    for chunk in acked.chunks(200) {
        let (status, body) = post_events(client, url, &batch(chunk)).expect("answered");
        assert_eq!(status, 200, "{body}");
        assert!(
            statuses(&body).iter().all(|s| s == "duplicate"),
            "an acknowledged event is missing: {body}"
        );
    }
    let (status, body) = admin_get(client, url, "/v1/stats/dedup?since=2020-01-01T00:00:00Z");
    assert_eq!(status, 200, "{body}");
    let events: u64 = body["events"]
        .as_array()
        .map_or(0, |es| es.iter().filter_map(|e| e["events"].as_u64()).sum());
    assert_eq!(
        events as usize,
        sent.acked.len(),
        "stored events vs acknowledged ones: {body}"
    );
}

fn namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes zeros to `path` until the filesystem is full; returns how much it wrote.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("ballast");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // Whatever a short write left: fill the last bytes too.
    while let Ok(n) = file.write(&chunk[..512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

/// `GET /healthz`: status and body text.
fn health_text(client: &reqwest::blocking::Client, url: &str) -> (u16, String) {
    let resp = client
        .get(format!("{url}/healthz"))
        .send()
        .expect("the node answered /healthz");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

/// How many space probes have failed, as `/healthz` tells it (0 before the first).
fn failed_probes(body: &str) -> u64 {
    body.split("probes so far: ").nth(1).map_or(0, |rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("a probe count")
    })
}

/// Polls `/healthz` until `probes` more space probes have failed (each runs a second apart);
/// every answer meanwhile must be 503.
fn stays_unready_over_probes(
    client: &reqwest::blocking::Client,
    url: &str,
    probes: u64,
    what: &str,
) {
    let (status, body) = health_text(client, url);
    assert_eq!(status, 503, "/healthz {what}: {body}");
    let target = failed_probes(&body) + probes;
    let mut polls = 0;
    wait_until(
        &format!("{probes} failed space probes {what}"),
        RECOVERY,
        || {
            let (status, body) = health_text(client, url);
            polls += 1;
            assert_eq!(status, 503, "/healthz {what}, poll {polls}: {body}");
            (failed_probes(&body) >= target).then_some(())
        },
    );
    assert!(polls >= probes, "{polls} polls");
}

#[test]
fn a_full_disk_answers_503_never_2xx_and_healthz_recovers_with_no_write_once_space_is_freed() {
    let test = "a_full_disk_answers_503_never_2xx_and_healthz_recovers";
    if !namespaces_work() {
        skip(
            test,
            "`unshare --user --map-root-user --mount` is not permitted here, so no small \
             filesystem can be mounted",
        );
        return;
    }
    let store = TestStore::sqlite();
    let data = store.dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let config = store.dir.path().join("node.toml");
    std::fs::write(&config, store.config("node", Delivery::default(), None)).expect("config");
    let mut command = Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=32m tmpfs \"$1\" && \
             exec \"$2\" serve --config \"$3\" --listen 127.0.0.1:0",
        )
        .arg("sh")
        .arg(&data)
        .arg(tally_bin())
        .arg(&config);
    let node = Node::spawn(command, &store.dir.path().join("node.log"));
    // The node's own view of its data dir (our view of it is the empty directory underneath).
    let inside = PathBuf::from(format!("/proc/{}/root{}", node.child.id(), data.display()));
    assert!(
        inside.join("tally.db").exists(),
        "the database is on the tmpfs"
    );

    let client = client();
    let mut sent = Sent::default();
    for _ in 0..5 {
        let ids = sent.ids(4);
        assert_eq!(sent.send(&client, &node.url, &ids), 200);
    }
    let ballast = inside.join("ballast");
    let filled = fill(&ballast);
    assert!(filled > 1 << 20, "filled only {filled} bytes");

    // Writes go on until SQLite needs a page the disk does not have: from then on, 503.
    let mut refused_batch = None;
    for _ in 0..2000 {
        let ids = sent.ids(10);
        if sent.send(&client, &node.url, &ids) == 503 {
            refused_batch = Some(ids);
            break;
        }
    }
    let refused_batch = refused_batch.expect("a full disk never answered 503");
    assert_eq!(
        health(&client, &node.url),
        503,
        "/healthz while the disk is full"
    );
    for _ in 0..20 {
        let ids = sent.ids(10);
        assert_eq!(
            sent.send(&client, &node.url, &ids),
            503,
            "the disk is still full"
        );
    }
    // A one-page probe said 200 on a disk like this one (not in every run: only when SQLite
    // found a page to reuse).
    stays_unready_over_probes(&client, &node.url, 3, "while the disk is full");

    // Room for a commit of a few events, but less than a probe needs: still 503. This is where
    // a one-page probe says 200 in every run.
    let freed = 4 << 20;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .and_then(|f| f.set_len(filled - freed))
        .expect("free part of the disk");
    assert!(freed < PROBE_BYTES);
    stays_unready_over_probes(&client, &node.url, 2, "with less room than a probe needs");

    // Freed: /healthz comes back with no write sent (as a load balancer sends none).
    std::fs::remove_file(&ballast).expect("free the disk");
    let mut polls = 0;
    wait_until(
        "/healthz to say 200 after the disk was freed",
        RECOVERY,
        || {
            let (status, body) = health_text(&client, &node.url);
            polls += 1;
            match status {
                200 => Some(()),
                503 => None,
                other => panic!("/healthz answered {other}, poll {polls}: {body}"),
            }
        },
    );
    assert!(
        !inside.join("tally.db-space-probe").exists(),
        "the probe's file is removed"
    );
    // The client retries its refused batch: it goes through at once, without a restart.
    assert_eq!(
        sent.send(&client, &node.url, &refused_batch),
        200,
        "the first write after /healthz said 200"
    );
    assert_eq!(health(&client, &node.url), 200, "/healthz after the write");
    for _ in 0..5 {
        let ids = sent.ids(4);
        assert_eq!(sent.send(&client, &node.url, &ids), 200);
    }
    assert_stored_exactly(&client, &node.url, &sent);
    assert!(!sent.refused.is_empty());
    drop(node);
}

#[test]
fn a_stopped_postgres_answers_503_and_writes_succeed_again_once_it_is_back() {
    let test = "a_stopped_postgres_answers_503";
    let Some(pg) = PrivatePostgres::start(test) else {
        return;
    };
    let store = TestStore::postgres_at(&pg.url());
    let node = Node::start(
        store.dir.path(),
        "node",
        &store.config("node", Delivery::default(), None),
    );
    let client = client();
    let mut sent = Sent::default();
    for _ in 0..5 {
        let ids = sent.ids(4);
        assert_eq!(sent.send(&client, &node.url, &ids), 200);
    }
    assert_eq!(health(&client, &node.url), 200);

    pg.halt();
    let mut refused_batch = Vec::new();
    for _ in 0..20 {
        refused_batch = sent.ids(4);
        assert_eq!(
            sent.send(&client, &node.url, &refused_batch),
            503,
            "a write while PostgreSQL is stopped"
        );
    }
    let status = health(&client, &node.url);
    assert_ne!(status, 200, "/healthz while PostgreSQL is stopped");

    pg.resume();
    wait_until(
        "a write to succeed after PostgreSQL came back",
        RECOVERY,
        || (sent.send(&client, &node.url, &refused_batch) == 200).then_some(()),
    );
    assert_eq!(health(&client, &node.url), 200, "/healthz after recovery");
    for _ in 0..5 {
        let ids = sent.ids(4);
        assert_eq!(sent.send(&client, &node.url, &ids), 200);
    }
    assert_stored_exactly(&client, &node.url, &sent);
    drop(node);
}

//! Whether the SQLite writer can take writes, for `/healthz` ([`crate::Store::ready`]), and
//! the probe that proves room on the disk again after it filled.
//!
//! Two causes make the store unready, and each is cleared only by a proof that it is gone:
//!
//! - **No room**: a commit failed with `SQLITE_FULL` (a write hit `ENOSPC`) or could not grow
//!   the WAL index (`SQLITE_IOERR_SHMSIZE`). A later small commit proves nothing here: it may fit
//!   in the WAL's slack or in free pages while a group of typical size does not (that is how a
//!   one-page probe once said 200 on a full disk). So only a [`Probe`] clears it: on the writer
//!   thread, it writes and syncs `probe_bytes` of fresh pseudo-random bytes into a file beside
//!   the database, removes it, and commits a transaction. Passing means the file system gave this
//!   process that much room just now (past quotas, reserved blocks and delayed allocation, which
//!   free-space figures do not show; random bytes cannot be compressed, deduplicated or stored
//!   as holes), and that the database takes a commit (its lock, a WAL append and a sync).
//!   `ready()` asks for one at most every `probe_interval`, so a node that a load balancer took
//!   out of rotation comes back with no write sent to it.
//! - **Anything else** (an I/O error, a read-only file system, a corrupt page, a row that
//!   cannot be decoded): room on the disk says nothing about it, so only a commit that wrote
//!   rows clears it.
//!
//! A commit that changed no rows (a claim with nothing due) clears neither: it wrote nothing.
//! Every transition happens on the writer thread; `ready()` only reads (and asks for probes).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, ErrorCode, TransactionBehavior, ffi};

/// Shared between the writer (which changes it) and the store handle (which reads it).
pub(super) struct WriterHealth {
    /// No cause is set: the fast path of `ready()` and of every commit.
    ready: AtomicBool,
    causes: Mutex<Causes>,
    probe_bytes: u64,
}

#[derive(Default)]
struct Causes {
    no_room: Option<NoRoom>,
    /// The last failure that was not about room.
    other: Option<String>,
}

struct NoRoom {
    /// The commit failure that set it (the latest, when several did).
    error: String,
    probes: u64,
    last_probe: Option<String>,
}

/// What a failed commit says about its cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    NoRoom,
    Other,
}

/// The cause of a failed SQLite call.
pub(super) fn cause_of(e: &rusqlite::Error) -> Cause {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::DiskFull || f.extended_code == ffi::SQLITE_IOERR_SHMSIZE =>
        {
            Cause::NoRoom
        }
        _ => Cause::Other,
    }
}

impl WriterHealth {
    pub(super) fn new(probe_bytes: u64) -> Self {
        WriterHealth {
            ready: AtomicBool::new(true),
            causes: Mutex::default(),
            probe_bytes,
        }
    }

    fn causes(&self) -> std::sync::MutexGuard<'_, Causes> {
        // A panic elsewhere cannot leave `Causes` half-changed: every change is one assignment.
        self.causes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Causes)) {
        let mut causes = self.causes();
        change(&mut causes);
        let ready = causes.no_room.is_none() && causes.other.is_none();
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// After a successful group commit that changed `changed` rows.
    pub(super) fn committed(&self, changed: bool) {
        if changed && !self.ready.load(Ordering::Relaxed) {
            self.update(|c| c.other = None);
        }
    }

    /// After a failed commit (or probe commit).
    pub(super) fn failed(&self, cause: Cause, error: String) {
        self.update(|c| match cause {
            Cause::NoRoom => match &mut c.no_room {
                Some(no_room) => no_room.error = error,
                None => {
                    c.no_room = Some(NoRoom {
                        error,
                        probes: 0,
                        last_probe: None,
                    });
                }
            },
            Cause::Other => c.other = Some(error),
        });
    }

    /// Whether a probe has something to clear.
    pub(super) fn lacks_room(&self) -> bool {
        !self.ready.load(Ordering::Relaxed) && self.causes().no_room.is_some()
    }

    /// A probe's result: passing clears "no room".
    pub(super) fn probed(&self, result: Result<(), String>) {
        self.update(|c| match result {
            Ok(()) => c.no_room = None,
            Err(why) => {
                if let Some(no_room) = &mut c.no_room {
                    no_room.probes += 1;
                    no_room.last_probe = Some(why);
                }
            }
        });
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Ready, or why not (the text `/healthz` shows).
    pub(super) fn check(&self) -> Result<(), String> {
        let causes = self.causes();
        let mut why = Vec::new();
        if let Some(n) = &causes.no_room {
            let mut text = format!(
                "no room: a commit failed ({}); ready again once a probe can write {} beside \
                 the database and commit",
                n.error,
                mib(self.probe_bytes)
            );
            if let Some(last) = &n.last_probe {
                text.push_str(&format!("; probes so far: {}, the last: {last}", n.probes));
            }
            why.push(text);
        }
        if let Some(error) = &causes.other {
            why.push(format!(
                "a commit failed ({error}); ready again once a commit that writes succeeds"
            ));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; and "))
        }
    }

    #[cfg(test)]
    pub(super) fn probes(&self) -> u64 {
        self.causes().no_room.as_ref().map_or(0, |n| n.probes)
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// The probe of room beside one database: its file (`<database>-space-probe`, in the same
/// directory, so on the same file system as the database and its WAL) and how much it writes.
pub(super) struct Probe {
    path: PathBuf,
    bytes: u64,
}

/// How much the probe writes at a time.
const CHUNK: usize = 64 * 1024;

impl Probe {
    pub(super) fn beside(database: &Path, bytes: u64) -> Probe {
        let mut name = database.file_name().unwrap_or_default().to_owned();
        name.push("-space-probe");
        Probe {
            path: database.with_file_name(name),
            bytes,
        }
    }

    /// Removes a probe file a crash left behind (it may hold the very room the disk lacks).
    pub(super) fn remove_leftover(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), "Removed a space probe left by a crash.")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "Could not remove a space probe left by a crash.")
            }
        }
    }

    /// Writes and syncs the probe file, then removes it (also when writing failed, so a
    /// failed probe gives back what it took).
    pub(super) fn room(&self) -> io::Result<()> {
        let written = self.write();
        let removed = match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        written.and(removed)
    }

    fn write(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // A new file: never a symlink followed, never someone's file overwritten.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)?;
        let mut bytes = Noise::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut left = self.bytes;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            bytes.fill(&mut chunk[..n]);
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        // Delayed allocation (ext4, XFS, NFS) may report ENOSPC only here.
        file.sync_all()
    }
}

/// SplitMix64 bytes: fresh for every probe and every block, so no file system can store them
/// in less room than they take.
struct Noise(u64);

impl Noise {
    fn new() -> Noise {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Noise(nanos ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            word.copy_from_slice(&z.to_le_bytes()[..word.len()]);
        }
    }
}

/// Runs a probe on the writer's connection, if one has something to clear: first room on the
/// disk (so a full disk never gets as far as SQLite), then a commit that writes the database
/// header (`PRAGMA user_version`, rewritten with the value read in the same transaction) into
/// the WAL and syncs it.
pub(super) fn probe(conn: &mut Connection, health: &WriterHealth, probe: &Probe) {
    if !health.lacks_room() {
        return;
    }
    let result = match probe.room() {
        Err(e) => Err(format!(
            "could not write {} at {}: {e}",
            mib(probe.bytes),
            probe.path.display()
        )),
        Ok(()) => commit_probe(conn).map_err(|e| {
            let why = format!("the probe's commit failed: {e}");
            if cause_of(&e) == Cause::Other {
                health.failed(Cause::Other, why.clone());
            }
            why
        }),
    };
    match &result {
        Ok(()) => tracing::info!(
            bytes = probe.bytes,
            "Space probe passed after a commit failed for lack of room; ready again."
        ),
        Err(why) => tracing::debug!(why = %why, "Space probe failed; still not ready."),
    }
    health.probed(result);
}

fn commit_probe(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn only_a_full_database_or_an_unextendable_wal_index_is_a_lack_of_room() {
        assert_eq!(cause_of(&sqlite_error(ffi::SQLITE_FULL)), Cause::NoRoom);
        assert_eq!(
            cause_of(&sqlite_error(ffi::SQLITE_IOERR_SHMSIZE)),
            Cause::NoRoom
        );
        for other in [
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_BUSY,
        ] {
            assert_eq!(cause_of(&sqlite_error(other)), Cause::Other, "{other}");
        }
        assert_eq!(
            cause_of(&rusqlite::Error::InvalidQuery),
            Cause::Other,
            "not an SQLite failure"
        );
    }

    #[test]
    fn lack_of_room_is_cleared_by_a_passing_probe_and_not_by_a_commit() {
        let health = WriterHealth::new(8 << 20);
        health.failed(Cause::NoRoom, "database or disk is full".into());
        assert!(!health.is_ready());
        assert!(health.lacks_room());
        health.committed(true);
        assert!(
            !health.is_ready(),
            "a small commit may fit where a group does not"
        );
        health.probed(Err("could not write 8 MiB".into()));
        health.probed(Err("could not write 8 MiB".into()));
        let why = health.check().expect_err("still no room");
        assert!(why.contains("probes so far: 2"), "{why}");
        assert!(why.contains("8 MiB"), "{why}");
        health.probed(Ok(()));
        assert!(health.is_ready());
        assert_eq!(health.check(), Ok(()));
        assert!(!health.lacks_room());
    }

    #[test]
    fn other_failures_are_cleared_by_a_commit_that_wrote_and_not_by_a_probe() {
        let health = WriterHealth::new(1 << 20);
        health.failed(Cause::Other, "disk I/O error".into());
        assert!(!health.lacks_room(), "nothing for a probe to clear");
        health.probed(Ok(()));
        assert!(!health.is_ready());
        health.committed(false);
        assert!(
            !health.is_ready(),
            "a commit that changed nothing proves nothing"
        );
        health.committed(true);
        assert!(health.is_ready());
    }

    #[test]
    fn both_causes_must_be_cleared_each_by_its_own_proof() {
        let health = WriterHealth::new(1 << 20);
        health.failed(Cause::Other, "attempt to write a readonly database".into());
        health.failed(Cause::NoRoom, "database or disk is full".into());
        health.probed(Ok(()));
        let why = health.check().expect_err("the other cause is still there");
        assert!(why.contains("readonly"), "{why}");
        assert!(!why.contains("no room"), "{why}");
        health.failed(Cause::NoRoom, "database or disk is full".into());
        health.committed(true);
        let why = health.check().expect_err("no room is still there");
        assert!(why.starts_with("no room"), "{why}");
        health.probed(Ok(()));
        assert!(health.is_ready());
    }

    #[test]
    fn the_probe_writes_its_size_in_blocks_that_cannot_be_stored_smaller_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let probe = Probe::beside(&dir.path().join("tally.db"), 3 * CHUNK as u64 + 100);
        assert_eq!(probe.path, dir.path().join("tally.db-space-probe"));
        probe.write().expect("write");
        let written = std::fs::read(&probe.path).expect("read");
        assert_eq!(written.len() as u64, probe.bytes);
        let blocks: std::collections::HashSet<&[u8]> = written.chunks(4096).collect();
        assert_eq!(
            blocks.len(),
            written.len().div_ceil(4096),
            "a block repeats"
        );
        assert!(
            written.chunks(4096).all(|b| b.iter().any(|&x| x != 0)),
            "a zero block"
        );

        // A leftover (a crash mid-probe) is replaced, not appended to.
        probe.room().expect("room");
        assert!(!probe.path.exists(), "the probe file is removed");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "nothing left behind"
        );
    }

    #[test]
    fn a_probe_that_cannot_write_fails_and_frees_what_it_wrote() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = Probe::beside(&dir.path().join("gone").join("tally.db"), 4096);
        assert!(missing.room().is_err(), "no directory");
        let blocked = Probe::beside(&dir.path().join("tally.db"), 4096);
        std::fs::create_dir(&blocked.path).expect("a directory in the probe's place");
        assert!(blocked.room().is_err(), "not a file");
        std::fs::remove_dir(&blocked.path).expect("unblock");
        blocked.room().expect("room again");
    }

    #[test]
    fn the_probes_commit_writes_the_wal_and_keeps_the_schema_version() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tally.db");
        let mut conn = super::super::schema::open_writer(&path).expect("open");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        let wal = dir.path().join("tally.db-wal");
        assert_eq!(std::fs::metadata(&wal).expect("wal").len(), 0);
        commit_probe(&mut conn).expect("probe commit");
        assert!(
            std::fs::metadata(&wal).expect("wal").len() > 0,
            "the probe's commit wrote nothing: it would prove nothing"
        );
        let after: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(after, version);
    }
}

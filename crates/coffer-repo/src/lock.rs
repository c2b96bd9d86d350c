//! Lock files: who is using the repository right now.
//!
//! Locks never block backups, restores or verification; they exist so that `prune` can tell
//! whether data it plans to delete might still be needed by a process that started before the
//! plan (see the locking table in lib.rs). Only two prunes exclude each other.
//!
//! A lock is stale, and ignored (then removed), when its process is gone: on the same host the
//! pid no longer exists or now belongs to a process started at another time; on another host
//! the lock has not been refreshed for `STALE_AFTER`. A live lock is refreshed every
//! `REFRESH_EVERY` by a background thread, so a crash can never leave a lock that blocks anything
//! for longer than that.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendErrorKind};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{self, LOCKS, Repository};

const MAGIC: &[u8; 4] = b"CFLK";
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// Writes new data (backup).
    Backup,
    /// Reads data (restore, dump, verify).
    Read,
    /// Removes snapshots (forget).
    Forget,
    /// Deletes data (prune). Exclusive among prunes.
    Prune,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub host: String,
    pub pid: u32,
    /// Start time of the process (clock ticks since boot), to survive pid reuse.
    pub pid_start: Option<u64>,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl LockInfo {
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            LockKind::Backup => "backup",
            LockKind::Read => "read",
            LockKind::Forget => "forget",
            LockKind::Prune => "prune",
        };
        format!(
            "a {kind} (process {} on {}, since {})",
            self.pid,
            self.host,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    fn is_stale(&self, host: &str, now: DateTime<Utc>) -> bool {
        if self.host == host {
            !process_alive(self.pid, self.pid_start)
        } else {
            now - self.refreshed > STALE_AFTER
        }
    }
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime); fields after the command name start at field 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

pub(crate) fn process_alive(pid: u32, start: Option<u64>) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    exists && (start.is_none() || process_start(pid) == start)
}

/// Held while an operation runs; removes its lock file when dropped.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    name: String,
    pub id: Id,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .finish()
    }
}

fn encode(repo: &Repository, info: &LockInfo) -> Vec<u8> {
    repo.seal(MAGIC, serde_json::to_vec(info).expect("lock serializes"))
}

/// Take a lock of `kind`. Fails with `Error::Locked` only for a prune while another live prune
/// holds the repository.
pub fn acquire(repo: &Repository, kind: LockKind) -> Result<LockGuard> {
    let pid = std::process::id();
    let now = Utc::now();
    let mut info = LockInfo {
        kind,
        host: repo::hostname(),
        pid,
        pid_start: process_start(pid),
        created: now,
        refreshed: now,
    };
    let id = Id::random();
    let name = repo::object_name(LOCKS, &id);
    let backend = repo.backend().clone();
    let mut guard = LockGuard {
        backend: backend.clone(),
        name: name.clone(),
        id,
        stop: None,
        refresher: None,
    };
    match repo.backend().write(&name, &encode(repo, &info)) {
        Ok(()) => {}
        // Reading from read-only storage (a write-protected disk, a read-only bucket policy):
        // nobody can prune it either, so there is nothing to protect against.
        Err(e) if kind == LockKind::Read && e.kind == BackendErrorKind::PermissionDenied => {
            guard.name.clear();
            return Ok(guard);
        }
        Err(e) => return Err(e.into()),
    }
    if kind == LockKind::Prune {
        for (other_id, other) in live_locks(repo)? {
            if other_id != id
                && other.kind == LockKind::Prune
                && (other.created, other_id) < (info.created, id)
            {
                return Err(Error::Locked(other.describe()));
            }
        }
    }
    let repo = repo.clone();
    let (tx, rx) = mpsc::channel::<()>();
    guard.stop = Some(tx);
    guard.refresher = Some(std::thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH_EVERY) {
            info.refreshed = Utc::now();
            let _ = backend.write(&name, &encode(&repo, &info));
        }
    }));
    Ok(guard)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if !self.name.is_empty() {
            let _ = self.backend.delete(&self.name);
        }
    }
}

/// Every lock whose process is still alive. Stale locks are removed on the way.
pub fn live_locks(repo: &Repository) -> Result<Vec<(Id, LockInfo)>> {
    let host = repo::hostname();
    let now = Utc::now();
    let mut out = vec![];
    for obj in repo.backend().list(LOCKS)? {
        let Some(id) = repo::id_of_name(&obj.name) else {
            continue;
        };
        let parsed = match repo.backend().read(&obj.name) {
            Ok(data) => repo
                .unseal(MAGIC, &obj.name, &data)
                .ok()
                .and_then(|p| serde_json::from_slice::<LockInfo>(&p).ok()),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        match parsed {
            Some(info) if !info.is_stale(&host, now) => out.push((id, info)),
            Some(_) => {
                let _ = repo.backend().delete(&obj.name);
            }
            // Unreadable (damaged): nobody can prove it is live, so it protects nothing.
            None => {}
        }
    }
    Ok(out)
}

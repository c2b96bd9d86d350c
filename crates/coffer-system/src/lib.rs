//! Coffer's own data, backed up: consistent snapshots of its metadata database (`coffer.db`,
//! which holds every user, job, record and sealed secret), kept in
//! `<data_dir>/system-backups/`.
//!
//! A snapshot is taken with SQLite's online backup API while the server keeps serving and
//! writing (`coffer_sources::sqlite::copy`: one read transaction, checked with `PRAGMA
//! integrity_check`), written under a temporary name, synced and renamed into place, so a file
//! with a snapshot's name is always a complete one. Snapshots are taken one at a time; two in the
//! same second get distinct names.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Where the snapshots live, inside the data directory.
pub const DIR: &str = "system-backups";
const PREFIX: &str = "coffer-backup-";
const SUFFIX: &str = ".db";
/// Files being written; removed when found at start-up.
const TEMPORARY: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// A name that is not a snapshot's: it must end in `.db` and hold no `/` or `..`.
    #[error("{0:?} is not the name of a backup: it ends in .db and contains no '/' or '..'")]
    BadName(String),
    #[error("there is no backup named {0:?}")]
    NotFound(String),
    #[error("the metadata database could not be copied: {0}")]
    Copy(#[from] coffer_sources::SourceError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl SystemError {
    fn io(what: impl std::fmt::Display, source: std::io::Error) -> SystemError {
        SystemError::Io {
            what: what.to_string(),
            source,
        }
    }
}

pub type Result<T, E = SystemError> = std::result::Result<T, E>;

/// A snapshot of the metadata database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

/// The snapshots of one data directory.
#[derive(Debug)]
pub struct Snapshots {
    database: PathBuf,
    dir: PathBuf,
    /// One snapshot at a time.
    taking: Mutex<()>,
}

impl Snapshots {
    /// The snapshots of the database `database` (`coffer.db`) in `data_dir`; what a stop left
    /// half-written is removed.
    pub fn new(data_dir: &Path, database: &Path) -> Snapshots {
        let data_dir = std::fs::canonicalize(data_dir)
            .or_else(|_| std::path::absolute(data_dir))
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let dir = data_dir.join(DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(TEMPORARY) {
                    let _ = std::fs::remove_file(e.path());
                    tracing::warn!(file = %e.path().display(), "removed a backup a stop left half-written");
                }
            }
        }
        Snapshots {
            database: database.to_path_buf(),
            dir,
            taking: Mutex::new(()),
        }
    }

    /// The directory they are kept in (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every snapshot, newest first.
    pub fn list(&self) -> Result<Vec<Snapshot>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(SystemError::io(self.dir.display(), e)),
        };
        let mut all = vec![];
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let created_at = meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_default();
            all.push(Snapshot {
                name,
                size: meta.len(),
                created_at,
            });
        }
        all.sort_by(|a, b| (b.created_at, &b.name).cmp(&(a.created_at, &a.name)));
        Ok(all)
    }

    /// Take a snapshot now, then keep only the newest `keep` (at least this one).
    pub fn take(&self, keep: usize) -> Result<Snapshot> {
        let _one = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.dir).map_err(|e| SystemError::io(self.dir.display(), e))?;
        let stamp = Utc::now().format("%Y-%m-%d_%H-%M-%S").to_string();
        let name = (1..)
            .map(|n| match n {
                1 => format!("{PREFIX}{stamp}{SUFFIX}"),
                n => format!("{PREFIX}{stamp}-{n}{SUFFIX}"),
            })
            .find(|n| !self.dir.join(n).exists())
            .expect("a free name");
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TEMPORARY}"));
        let written = (|| {
            coffer_sources::sqlite::copy(&self.database, &tmp)?;
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&tmp).map_err(|e| SystemError::io(tmp.display(), e))?;
            std::fs::rename(&tmp, &path).map_err(|e| SystemError::io(path.display(), e))?;
            sync(&self.dir).map_err(|e| SystemError::io(self.dir.display(), e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        for old in self.list()?.into_iter().skip(keep.max(1)) {
            match std::fs::remove_file(self.dir.join(&old.name)) {
                Ok(()) => tracing::info!(backup = %old.name, "removed by the backup retention"),
                Err(e) => {
                    tracing::warn!(backup = %old.name, error = %e, "could not remove an old backup")
                }
            }
        }
        let meta = std::fs::metadata(&path).map_err(|e| SystemError::io(path.display(), e))?;
        Ok(Snapshot {
            name,
            size: meta.len(),
            created_at: meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_default(),
        })
    }

    /// Delete the snapshot `name`.
    pub fn delete(&self, name: &str) -> Result<()> {
        if !name.ends_with(SUFFIX) || name.contains('/') || name.contains("..") || name.len() <= 3 {
            return Err(SystemError::BadName(name.to_string()));
        }
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SystemError::NotFound(name.to_string()))
            }
            Err(e) => Err(SystemError::io(name, e)),
        }
    }
}

impl From<Snapshot> for coffer_types::MetaBackup {
    fn from(s: Snapshot) -> Self {
        coffer_types::MetaBackup {
            name: s.name,
            size: s.size,
            created_at: s.created_at.timestamp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> PathBuf {
        let db = dir.join("coffer.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        db
    }

    #[test]
    fn snapshots_are_complete_distinct_and_kept_to_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshots::new(dir.path(), &database(dir.path()));
        let taken: Vec<Snapshot> = (0..4).map(|_| s.take(3).unwrap()).collect();
        let names: Vec<String> = s.list().unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&taken[3].name) && !names.contains(&taken[0].name));
        let copy = rusqlite::Connection::open(s.dir().join(&taken[3].name)).unwrap();
        let x: i64 = copy.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 1);
    }

    #[test]
    fn only_snapshot_names_can_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshots::new(dir.path(), &database(dir.path()));
        for bad in ["../coffer.db", "a/b.db", "x.txt", ".db"] {
            assert!(
                matches!(s.delete(bad), Err(SystemError::BadName(_))),
                "{bad}"
            );
        }
        assert!(matches!(s.delete("nope.db"), Err(SystemError::NotFound(_))));
        let b = s.take(10).unwrap();
        s.delete(&b.name).unwrap();
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn what_a_stop_left_half_written_goes_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        let half = dir.path().join(DIR).join("coffer-backup-x.db.tmp");
        std::fs::write(&half, b"half").unwrap();
        let s = Snapshots::new(dir.path(), &database(dir.path()));
        assert!(!half.exists());
        assert!(s.list().unwrap().is_empty());
    }
}

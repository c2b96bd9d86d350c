//! Coffer's own data, backed up, in `<data_dir>/system-backups/` ([`Folder`]): snapshots of its
//! metadata database (`coffer.db`, which holds every user, job, record and sealed secret) and
//! system backups ([`archive`]: the whole database as a checked `.zip`).
//!
//! A snapshot is taken with SQLite's online backup API while the server keeps serving and
//! writing (`coffer_sources::sqlite::copy`: one read transaction, checked with `PRAGMA
//! integrity_check`). Every file is written under a temporary name, synced and renamed into
//! place, so a file with a backup's name is always a complete one; files are written one at a
//! time, and two in the same second get distinct names.

pub mod archive;
mod local;
pub mod offsite;
mod recover;

pub use local::{DirLock, SERVER_KEY, lock, read_backup, server_key_id, system_backup};
pub use recover::{Recovered, recover};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Where Coffer's own backups live, inside the data directory.
pub const DIR: &str = "system-backups";
/// Files being written; removed when found at start-up.
const TEMPORARY: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// A name that is not a backup's: it must end in its kind's suffix and hold no `/` or `..`.
    #[error(
        "{name:?} is not the name of a backup: it ends in {suffix} and contains no '/' or '..'"
    )]
    BadName { name: String, suffix: &'static str },
    #[error("there is no backup named {0:?}")]
    NotFound(String),
    #[error("the metadata database could not be copied: {0}")]
    Copy(#[from] coffer_sources::SourceError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// Something that must not be done to this data directory or with this backup.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] coffer_db::DbError),
    /// The repository that holds copies of system backups (`offsite`).
    #[error(transparent)]
    Repository(#[from] coffer_repo::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The fewest characters a passphrase that seals secrets may have.
const MIN_PASSPHRASE_CHARS: usize = 12;

/// The passphrase the server seals the secrets of its copies of system backups under
/// (`COFFER_SYSTEM_PASSPHRASE`): long enough, and never shown.
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(text: String) -> Result<Passphrase> {
        match text.chars().count() >= MIN_PASSPHRASE_CHARS {
            true => Ok(Passphrase(text)),
            false => Err(SystemError::Refused(format!(
                "the passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters"
            ))),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

/// An I/O failure of `what`, for `map_err`.
fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SystemError {
    move |source| SystemError::Io {
        what: what.to_string(),
        source,
    }
}

pub type Result<T, E = SystemError> = std::result::Result<T, E>;

/// A file in the folder: a snapshot of the metadata database, or a system backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

/// The folder Coffer keeps its own backups in, `<data_dir>/system-backups/`: files written
/// under a temporary name, synced and renamed (what a stop left half-written is removed at
/// start-up), one at a time, named by kind and time, distinct even within a second.
#[derive(Debug)]
pub struct Folder {
    dir: PathBuf,
    writing: Mutex<()>,
}

/// A kind of file in the folder: `coffer-backup-….db`.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub prefix: &'static str,
    pub suffix: &'static str,
}

/// Snapshots of the metadata database.
pub const SNAPSHOT: Kind = Kind {
    prefix: "coffer-backup-",
    suffix: ".db",
};
/// System backups.
pub const SYSTEM: Kind = Kind {
    prefix: "coffer-system-",
    suffix: ".zip",
};
/// A system backup made to be copied into a repository (`offsite`), removed once copied.
pub const OFFSITE: Kind = Kind {
    prefix: "coffer-offsite-",
    suffix: ".zip",
};
/// The system backup a restore makes of what it replaces.
pub const PRE_RESTORE: Kind = Kind {
    prefix: "pre_restore_",
    suffix: ".zip",
};

impl Folder {
    pub fn new(data_dir: &Path) -> Folder {
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
        Folder {
            dir,
            writing: Mutex::new(()),
        }
    }

    /// The directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of the kinds `kinds`, newest first.
    pub fn list(&self, kinds: &[Kind]) -> Result<Vec<BackupFile>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io(self.dir.display())(e)),
        };
        let mut all = vec![];
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !kinds
                .iter()
                .any(|k| name.starts_with(k.prefix) && name.ends_with(k.suffix))
            {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            all.push(described(name, &meta));
        }
        all.sort_by(|a, b| (b.created_at, &b.name).cmp(&(a.created_at, &a.name)));
        Ok(all)
    }

    /// A new file of `kind`, written by `fill` (under a temporary name), then kept; then only
    /// the newest `keep` of that kind remain.
    pub fn write(
        &self,
        kind: Kind,
        keep: Option<usize>,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<BackupFile> {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.dir).map_err(io(self.dir.display()))?;
        let stamp = Utc::now().format("%Y-%m-%d_%H-%M-%S").to_string();
        let name = (1..)
            .map(|n| match n {
                1 => format!("{}{stamp}{}", kind.prefix, kind.suffix),
                n => format!("{}{stamp}-{n}{}", kind.prefix, kind.suffix),
            })
            .find(|n| !self.dir.join(n).exists())
            .expect("a free name");
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TEMPORARY}"));
        let written = (|| {
            fill(&tmp)?;
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&tmp).map_err(io(tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(io(path.display()))?;
            sync(&self.dir).map_err(io(self.dir.display()))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(keep) = keep {
            for old in self.list(&[kind])?.into_iter().skip(keep.max(1)) {
                match std::fs::remove_file(self.dir.join(&old.name)) {
                    Ok(()) => tracing::info!(backup = %old.name, "removed by the backup retention"),
                    Err(e) => {
                        tracing::warn!(backup = %old.name, error = %e, "could not remove an old backup")
                    }
                }
            }
        }
        let meta = std::fs::metadata(&path).map_err(io(path.display()))?;
        Ok(described(name, &meta))
    }

    /// The file `name` of a kind ending in `suffix`: it ends so, contains no `/` or `..`, and
    /// exists.
    pub fn path(&self, name: &str, suffix: &'static str) -> Result<PathBuf> {
        if !name.ends_with(suffix)
            || name.len() <= suffix.len()
            || name.contains('/')
            || name.contains("..")
        {
            return Err(SystemError::BadName {
                name: name.to_string(),
                suffix,
            });
        }
        let path = self.dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            _ => Err(SystemError::NotFound(name.to_string())),
        }
    }

    /// Delete the file `name` (see [`Folder::path`]).
    pub fn delete(&self, name: &str, suffix: &'static str) -> Result<()> {
        let path = self.path(name, suffix)?;
        std::fs::remove_file(&path).map_err(io(name))
    }
}

fn described(name: String, meta: &std::fs::Metadata) -> BackupFile {
    BackupFile {
        name,
        size: meta.len(),
        created_at: meta
            .modified()
            .map(DateTime::<Utc>::from)
            .unwrap_or_default(),
    }
}

/// Take a snapshot of the metadata database `database` now (SQLite's online backup API,
/// checked), keeping the newest `keep`.
pub fn snapshot(folder: &Folder, database: &Path, keep: usize) -> Result<BackupFile> {
    folder.write(SNAPSHOT, Some(keep), |into| {
        coffer_sources::sqlite::copy(database, into)?;
        Ok(())
    })
}

impl From<BackupFile> for coffer_types::MetaBackup {
    fn from(s: BackupFile) -> Self {
        coffer_types::MetaBackup {
            name: s.name,
            size: s.size,
            created_at: s.created_at.timestamp(),
            offsite: None,
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
        let (s, db) = (Folder::new(dir.path()), database(dir.path()));
        let taken: Vec<BackupFile> = (0..4).map(|_| snapshot(&s, &db, 3).unwrap()).collect();
        let names: Vec<String> = s
            .list(&[SNAPSHOT])
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&taken[3].name) && !names.contains(&taken[0].name));
        let copy = rusqlite::Connection::open(s.dir().join(&taken[3].name)).unwrap();
        let x: i64 = copy.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 1);
    }

    #[test]
    fn only_snapshot_names_can_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (s, db) = (Folder::new(dir.path()), database(dir.path()));
        for bad in ["../coffer.db", "a/b.db", "x.txt", ".db"] {
            let refused = s.delete(bad, SNAPSHOT.suffix);
            assert!(matches!(refused, Err(SystemError::BadName { .. })), "{bad}");
        }
        let missing = s.delete("nope.db", SNAPSHOT.suffix);
        assert!(matches!(missing, Err(SystemError::NotFound(_))));
        let b = snapshot(&s, &db, 10).unwrap();
        s.delete(&b.name, SNAPSHOT.suffix).unwrap();
        assert!(s.list(&[SNAPSHOT]).unwrap().is_empty());
    }

    #[test]
    fn what_a_stop_left_half_written_goes_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        let half = dir.path().join(DIR).join("coffer-backup-x.db.tmp");
        std::fs::write(&half, b"half").unwrap();
        let s = Folder::new(dir.path());
        assert!(!half.exists());
        assert!(s.list(&[SNAPSHOT]).unwrap().is_empty());
    }
}

//! SQLite through its online backup API: the copy is one consistent state of the database,
//! taken in a single read transaction, so writers (in WAL mode) are never blocked and a
//! half-written transaction is never copied. The copy is checked with `PRAGMA
//! integrity_check` before it is handed to the engine.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::SourceError;

fn failed(db: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Failed {
        what: format!("SQLite database {}", db.display()),
        message: e.to_string(),
    }
}

pub use crate::rows::RowCounts;

/// Copy the database at `db` into a new file `into`, consistently, and check the copy; the
/// rows of each of its tables, as copied.
pub fn copy(db: &Path, into: &Path) -> Result<RowCounts, SourceError> {
    if !db.is_file() {
        return Err(failed(db, "no such file"));
    }
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| failed(db, e))?;
    src.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| failed(db, e))?;
    let mut dst = Connection::open(into).map_err(|e| failed(db, e))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| failed(db, e))?;
        // All pages in one step: one read transaction, so the copy is one state of the database
        // even while others write (stepping in small pieces restarts on every write).
        loop {
            match backup.step(-1).map_err(|e| failed(db, e))? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => continue,
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    integrity(&dst, db)?;
    let rows = counts(&dst, db)?;
    dst.close().map_err(|(_, e)| failed(db, e))?;
    Ok(rows)
}

fn integrity(c: &Connection, db: &Path) -> Result<(), SourceError> {
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| failed(db, e))?;
    if check != "ok" {
        return Err(failed(db, format!("fails its integrity check: {check}")));
    }
    Ok(())
}

/// Check that `db` is a sound SQLite database (before it replaces a live one).
pub fn check(db: &Path) -> Result<(), SourceError> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| failed(db, e))?;
    integrity(&c, db)
}

/// The rows of each table of the database at `db` (its own `sqlite_*` tables left out).
pub fn row_counts(db: &Path) -> Result<RowCounts, SourceError> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| failed(db, e))?;
    counts(&c, db)
}

fn counts(c: &Connection, db: &Path) -> Result<RowCounts, SourceError> {
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| failed(db, e))?;
    let mut out = RowCounts::new();
    for t in tables {
        let sql = format!("SELECT COUNT(*) FROM \"{}\"", t.replace('"', "\"\""));
        let n: i64 = c
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| failed(db, e))?;
        out.insert(t, n.max(0) as u64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_a_database_and_refuses_what_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        let out = dir.path().join("copy.db");
        let rows = copy(&db, &out).unwrap();
        assert_eq!(rows.get("t"), Some(&2));
        let n: i64 = Connection::open(&out)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "committed rows, also those still in the WAL");
        c.execute_batch(r#"CREATE TABLE "odd ""name" (y); INSERT INTO "odd ""name" VALUES (1);"#)
            .unwrap();
        let counts = row_counts(&db).unwrap();
        assert_eq!(counts.get("t"), Some(&2));
        assert_eq!(counts.get("odd \"name"), Some(&1));
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database, just some text that is long enough").unwrap();
        assert!(copy(&text, &dir.path().join("c2.db")).is_err());
        assert!(copy(&dir.path().join("missing.db"), &dir.path().join("c3.db")).is_err());
    }
}

/// A process that has a file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub name: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// The processes other than this one that have the database at `db` open, or its `-wal` or
/// `-shm` file: an application that would go on writing into a file a restore replaced.
/// Read from `/proc/<pid>/fd`, so only processes this one may inspect are seen (all, as root).
pub fn holders(db: &Path) -> Vec<Holder> {
    let Ok(real) = std::fs::canonicalize(db) else {
        return vec![];
    };
    let files: Vec<std::path::PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = real.clone().into_os_string();
            p.push(suffix);
            p.into()
        })
        .collect();
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut out = vec![];
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| files.contains(&target));
        if holds {
            let name = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(Holder {
                pid,
                name: name.trim().to_string(),
            });
        }
    }
    out
}

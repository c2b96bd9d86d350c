//! SQLite sources: a database file copied consistently while applications write to it (the
//! online backup API), kept in the snapshot as the file `sqlite/<its path>`. In place, the
//! restored copy is checked (`PRAGMA integrity_check`) before it replaces the file, and is
//! refused while processes hold the database open (their later writes would be lost).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coffer_repo::BackupItem;

use super::{Judge, Kind, Logins, Restore, Run, ServerDumps, missing_on_disk, unreadable};
use crate::spec::FieldError;
use crate::{JobsError, Result};

pub(super) struct Database<'a> {
    pub path: &'a str,
}

/// Where the database at `path` lives in a snapshot.
pub(crate) fn inside(path: &Path) -> String {
    format!("sqlite{}", path.display())
}

/// The snapshot label holding the rows of each table of the database at `path` when it was
/// backed up (JSON: table → rows).
pub(crate) fn rows_label(path: &Path) -> String {
    format!("rows:{}", inside(path))
}

impl Kind for Database<'_> {
    fn check(&self, judge: &Judge<'_>) -> Result<(), FieldError> {
        judge.places.source(self.path, judge.role)
    }

    fn on_disk(&self) -> Option<PathBuf> {
        Some(PathBuf::from(self.path))
    }

    fn missing(&self, _: &Logins) -> Option<String> {
        missing_on_disk(self.path)
    }

    fn items(&self, run: &mut Run<'_>) -> Result<Vec<BackupItem>> {
        let dir = run.scratch_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| JobsError::io(format!("creating {}", dir.display()), e))?;
        let copy = dir.join(format!(
            "sqlite-{}-{}.db",
            std::process::id(),
            hex::encode(crate::random_key())
        ));
        run.scratch.0.push(copy.clone());
        match coffer_sources::sqlite::copy(Path::new(self.path), &copy) {
            // What a drill checks the restored copy against: the rows of each table, as copied.
            Ok(rows) => {
                let rows = serde_json::to_string(&rows).expect("counts serialize");
                run.labels.insert(rows_label(Path::new(self.path)), rows);
            }
            // A safety record must save what is there even when it is no database any more
            // (often the reason to restore): then its raw bytes.
            Err(e) => {
                if !run.keep_unreadable || std::fs::copy(self.path, &copy).is_err() {
                    return Err(e.into());
                }
            }
        }
        let file = std::fs::File::open(&copy).map_err(|e| JobsError::io(copy.display(), e))?;
        let item = BackupItem::named(
            &inside(Path::new(self.path)),
            coffer_repo::Source::Stream(Box::new(file)),
        )
        .map_err(|e| unreadable(self.path, e))?;
        Ok(vec![item])
    }

    fn restores(&self, _: &HashMap<String, ServerDumps>) -> Vec<Restore> {
        vec![Restore::Sqlite(PathBuf::from(self.path))]
    }
}

/// Refuse when processes hold the SQLite database at `db` open: they would go on writing into
/// the file the restore replaces, and their writes would be lost.
pub(crate) fn unused(db: &Path) -> Result<()> {
    let holders = coffer_sources::sqlite::holders(db);
    if holders.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
    Err(JobsError::Busy(format!(
        "the SQLite database {} is open in {}: stop it first (its writes after the restore \
         would be lost), or restore with \"force\": true",
        db.display(),
        names.join(", ")
    )))
}

/// Before the restored copy `staged` replaces the database at `db`: it must be a sound
/// database, and unless `force` no process may have opened `db` meanwhile. Its journal files
/// move with it.
pub(super) fn ready(staged: &Path, db: &Path, force: bool) -> Result<&'static [&'static str]> {
    coffer_sources::sqlite::check(staged)?;
    if !force {
        unused(db)?;
    }
    Ok(&crate::inplace::SQLITE_SIDECARS)
}

/// Unless `force`, refuse when processes hold a SQLite database of `plan` open (see
/// [`unused`]).
pub(crate) fn unused_in(plan: &[Restore], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    for item in plan {
        if let Restore::Sqlite(db) = item {
            unused(db)?;
        }
    }
    Ok(())
}

//! In-place restores of files, trees and SQLite databases: each item is written into a
//! staging directory beside it (`.coffer-restore-<task>`), checked, and swapped in by renames
//! in one directory; what it replaces is moved aside (`.coffer-old-<task>-<name>`) and removed
//! only once the new one is in place. A SQLite database's `-wal` and `-shm` files move aside
//! with it, so the old journal is never applied to the restored database and comes back with
//! the old database if the swap fails.
//!
//! A crash can leave a staging directory, or an item moved aside with nothing in its place.
//! [`recover`] puts such an item back and removes the rest; it runs at start-up for every
//! restore the crash interrupted.

use std::path::{Path, PathBuf};

use coffer_db::Restored;

use crate::kinds::{Logins, Restore};
use crate::spec::FieldError;
use crate::{JobsError, Result};

/// The sidecar files of a SQLite database that belong to it and move with it.
pub(crate) const SQLITE_SIDECARS: [&str; 2] = ["-wal", "-shm"];

fn staging_dir(parent: &Path, task: &str) -> PathBuf {
    parent.join(format!(".coffer-restore-{task}"))
}

/// `live` with `suffix` appended to its name (`app.db` → `app.db-wal`).
fn with_suffix(live: &Path, suffix: &str) -> PathBuf {
    let mut p = live.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

/// Where `live` is moved aside while task `task` swaps it.
fn aside(live: &Path, task: &str) -> PathBuf {
    let name = live.file_name().unwrap_or_default().to_string_lossy();
    live.with_file_name(format!(".coffer-old-{task}-{name}"))
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Restore each item of `plan` in place: `fill` writes a file or tree (with its path inside
/// the archive) under a staging directory, then it is checked and swapped in; `other`
/// restores a Docker volume or a database. Unless `force`, a SQLite database that a process
/// opened meanwhile stops the restore before it is swapped.
pub(crate) fn in_place(
    plan: &[Restore],
    task: &str,
    force: bool,
    mut fill: impl FnMut(&Path, &Restore) -> Result<Restored>,
    mut other: impl FnMut(&Restore) -> Result<Restored>,
) -> Result<Restored> {
    let mut total = Restored::default();
    let mut add = |done: Restored| {
        total.files += done.files;
        total.bytes += done.bytes;
        total.warnings.extend(done.warnings);
    };
    for item in plan {
        let Some(live) = item.live() else {
            add(other(item)?);
            continue;
        };
        let parent = live.parent().ok_or_else(|| {
            JobsError::Unusable(format!("{} cannot be restored in place", live.display()))
        })?;
        std::fs::create_dir_all(parent).map_err(|e| JobsError::io(parent.display(), e))?;
        let staging = staging_dir(parent, task);
        let result = (|| {
            let done = fill(&staging, item)?;
            let inside = item.inside(&Logins::default());
            let staged = staging.join(inside.trim_start_matches('/'));
            if std::fs::symlink_metadata(&staged).is_err() {
                return Err(JobsError::Field(FieldError {
                    field: "paths",
                    message: format!("{} is not in this archive", live.display()),
                }));
            }
            let sidecars = item.ready(&staged, force)?;
            swap_in(&staged, live, task, sidecars)?;
            Ok(done)
        })();
        let _ = std::fs::remove_dir_all(&staging);
        add(result?);
    }
    Ok(total)
}

/// Counts of files and bytes as a restore's outcome.
pub(crate) fn counts((files, bytes): (u64, u64)) -> Restored {
    Restored {
        files,
        bytes,
        warnings: vec![],
    }
}

/// Put `staged` where `live` is, by renames in the same directory: `live` and its `sidecars`
/// move aside, `staged` takes its place, and what was moved aside is removed only then. A
/// failure puts everything back.
fn swap_in(staged: &Path, live: &Path, task: &str, sidecars: &[&str]) -> Result<()> {
    let err = |e: std::io::Error| JobsError::io(live.display(), e);
    let old = aside(live, task);
    // The live item first, its sidecars after it: a crash in between leaves the item aside
    // and `recover` puts the sidecars it finds back with it.
    let moving: Vec<(PathBuf, PathBuf)> = std::iter::once((live.to_path_buf(), old.clone()))
        .chain(
            sidecars
                .iter()
                .map(|s| (with_suffix(live, s), with_suffix(&old, s))),
        )
        .filter(|(from, _)| std::fs::symlink_metadata(from).is_ok())
        .collect();
    let mut moved = vec![];
    let put_back = |moved: &[&(PathBuf, PathBuf)]| {
        for (from, to) in moved.iter().rev() {
            let _ = std::fs::rename(to, from);
        }
    };
    for m in &moving {
        if let Err(e) = std::fs::rename(&m.0, &m.1) {
            put_back(&moved);
            return Err(err(e));
        }
        moved.push(m);
    }
    if let Err(e) = std::fs::rename(staged, live) {
        put_back(&moved);
        return Err(err(e));
    }
    for (_, aside) in &moving {
        remove_any(aside).map_err(err)?;
    }
    Ok(())
}

/// After a crash during task `task`'s in-place restore of the items at `live` (paths on the
/// node): an item moved aside with nothing in its place goes back (with its sidecars), one
/// already replaced is removed, and staging directories go. Returns what it did, for the log.
pub(crate) fn recover(task: &str, live: &[PathBuf]) -> Vec<String> {
    let mut done = vec![];
    for item in live {
        let Some(parent) = item.parent() else {
            continue;
        };
        let old = aside(item, task);
        let present = std::fs::symlink_metadata(item).is_ok();
        if std::fs::symlink_metadata(&old).is_ok() {
            if present {
                let _ = remove_any(&old);
                done.push(format!("removed the replaced {}", old.display()));
            } else if std::fs::rename(&old, item).is_ok() {
                done.push(format!("put {} back as it was", item.display()));
            }
        }
        for s in SQLITE_SIDECARS {
            let (old_side, side) = (with_suffix(&old, s), with_suffix(item, s));
            if std::fs::symlink_metadata(&old_side).is_err() {
                continue;
            }
            // Sidecars go back only with their own database (not the restored one).
            if !present && std::fs::symlink_metadata(&side).is_err() {
                let _ = std::fs::rename(&old_side, &side);
            } else {
                let _ = remove_any(&old_side);
            }
        }
        let staging = staging_dir(parent, task);
        if std::fs::symlink_metadata(&staging).is_ok() {
            let _ = std::fs::remove_dir_all(&staging);
            done.push(format!("removed {}", staging.display()));
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_interrupted_half_way_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.db");
        std::fs::write(&live, b"old db").unwrap();
        std::fs::write(with_suffix(&live, "-wal"), b"old wal").unwrap();
        // The crash came after the database and its journal were moved aside.
        std::fs::rename(&live, aside(&live, "t1")).unwrap();
        std::fs::rename(
            with_suffix(&live, "-wal"),
            with_suffix(&aside(&live, "t1"), "-wal"),
        )
        .unwrap();
        std::fs::create_dir(staging_dir(dir.path(), "t1")).unwrap();
        let done = recover("t1", std::slice::from_ref(&live));
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(std::fs::read(&live).unwrap(), b"old db");
        assert_eq!(
            std::fs::read(with_suffix(&live, "-wal")).unwrap(),
            b"old wal"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        // After the new one took its place, the old one goes.
        std::fs::write(aside(&live, "t2"), b"older").unwrap();
        recover("t2", std::slice::from_ref(&live));
        assert_eq!(std::fs::read(&live).unwrap(), b"old db");
        assert!(std::fs::symlink_metadata(aside(&live, "t2")).is_err());
    }

    #[test]
    fn a_failed_swap_puts_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.db");
        std::fs::write(&live, b"old").unwrap();
        std::fs::write(with_suffix(&live, "-wal"), b"wal").unwrap();
        let missing = dir.path().join("nothing-staged");
        assert!(swap_in(&missing, &live, "t", &SQLITE_SIDECARS).is_err());
        assert_eq!(std::fs::read(&live).unwrap(), b"old");
        assert_eq!(std::fs::read(with_suffix(&live, "-wal")).unwrap(), b"wal");
        let staged = dir.path().join("new.db");
        std::fs::write(&staged, b"new").unwrap();
        swap_in(&staged, &live, "t", &SQLITE_SIDECARS).unwrap();
        assert_eq!(std::fs::read(&live).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(with_suffix(&live, "-wal")).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

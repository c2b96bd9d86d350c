//! Restore drills: a job's newest backup restored with the restore code every restore uses,
//! somewhere that is not the job's sources, then compared with what was backed up:
//! - files, trees and volumes come back into a throwaway directory, and each entry is compared
//!   with what the snapshot says — the type, size and permission bits of each, the target of
//!   each link, and each file's bytes;
//! - a SQLite database is checked as a database: its integrity, and the rows of each table
//!   against those its backup counted (a snapshot label);
//! - a PostgreSQL or MySQL/MariaDB database comes back into a scratch database of the same
//!   server (`coffer_drill_<drill id>`), one after the other, through the job's credential;
//!   the rows of each table are compared with those counted at backup time in a snapshot that
//!   saw what the dump saw (see `coffer_sources::rows`), and the scratch database is dropped.
//!   A whole server's roles or accounts are read back, not applied.
//!
//! The directory goes when the drill ends (and at start-up, with the rest of the scratch
//! directory, after a crash); scratch databases a crash left are dropped at start-up; a drill a
//! stop interrupted is marked failed at start-up.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use coffer_db::{DrillOutcome, RecordQuery, TriggerFilter};
use coffer_repo::{Node, NodeKind, SnapshotReader};
use coffer_sources::rows::RowCounts;
use coffer_types::{Credential, DatabaseDump, Drill, DrillCheck, Job, Record, RecordStatus};

use crate::kinds::{self, Logins, Restore, database, sqlite};
use crate::spec::field;
use crate::target::Target;
use crate::{Jobs, Result, blocking, runner};

/// Differences named in a failed check, at most.
const SHOWN: usize = 5;

impl Jobs {
    /// Start a drill of job `job_id`'s newest successful backup: answers at once with the
    /// drill to poll; a conflict while another drill of the job runs.
    pub async fn drill(self: &Arc<Self>, job_id: &str) -> Result<Drill> {
        let job = self.db.job(job_id).await?;
        let query = RecordQuery {
            status: Some(RecordStatus::Success),
            trigger: TriggerFilter::Backups,
            limit: 1,
            ..RecordQuery::default()
        };
        let Some(record) = self.db.records(job_id, &query).await?.into_iter().next() else {
            return Err(field("record", "the job has no successful backup to drill yet").into());
        };
        let drill = self.db.start_drill(job_id, &record).await?;
        let (jobs, id) = (self.clone(), drill.id.clone());
        tokio::spawn(async move {
            let outcome = jobs.run_drill(&id, &job, &record).await;
            let outcome = outcome.unwrap_or_else(|e| DrillOutcome {
                error: Some(e.to_string()),
                ..DrillOutcome::default()
            });
            let finished = jobs.db.finish_drill(&id, &outcome).await;
            if let Ok(d) = &finished {
                let (event, error) = match d.status {
                    RecordStatus::Success => ("drill.completed", None),
                    _ => ("drill.failed", Some(failure(d))),
                };
                jobs.emit(event, &job.id, &record.id, None, error.as_deref());
            }
            match finished {
                Ok(d) if d.status == RecordStatus::Success => {
                    tracing::info!(job = %job.name, record = %record.id, "restore drill passed");
                    let labels = crate::job_labels(&job);
                    metrics::gauge!(
                        "coffer_backup_last_proven_restorable_timestamp_seconds",
                        &labels
                    )
                    .set(record.started_at.timestamp() as f64);
                    let took = d.restore_ms.unwrap_or_default() as f64 / 1000.0;
                    metrics::gauge!("coffer_backup_restore_drill_duration_seconds", &labels)
                        .set(took);
                }
                Ok(d) => {
                    tracing::warn!(job = %job.name, record = %record.id, error = ?d.error, "restore drill failed")
                }
                Err(e) => tracing::error!(drill = %id, error = %e, "could not finish the drill"),
            }
        });
        Ok(drill)
    }

    /// Job `job_id`'s drills, newest first.
    pub async fn drills(&self, job_id: &str, limit: u32) -> Result<Vec<Drill>> {
        self.db.job(job_id).await?;
        Ok(self.db.drills(job_id, limit).await?)
    }

    pub async fn drill_of(&self, job_id: &str, id: &str) -> Result<Drill> {
        Ok(self.db.drill(job_id, id).await?)
    }

    /// Restore `record` of `job`, timed, then compare.
    async fn run_drill(&self, id: &str, job: &Job, record: &Record) -> Result<DrillOutcome> {
        let target = self.target(job).await?;
        let logins = self.logins(&job.sources).await?;
        let (logins, servers) = {
            let (t, r, s) = (target.clone(), record.clone(), job.sources.clone());
            blocking(move || database::recorded(&t, &r, &s, logins)).await?
        };
        let plan = kinds::plan(&job.sources, &servers, &[], &[], &[])?;
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let dir = self.places.scratch().join(format!("drill-{id}"));
        let scratch = Scratch {
            dir: dir.clone(),
            database: format!("{SCRATCH_DATABASE}{id}"),
            task: id.to_string(),
        };
        let (t, p, s, l) = (
            target.clone(),
            plan.clone(),
            snapshot.clone(),
            logins.clone(),
        );
        let restored = blocking(move || scratch.restore(&t, &s, &p, &l)).await;
        let (restore_ms, databases) = match restored {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                return Err(e.context("restoring the record"));
            }
        };
        self.db.set_drill_phase(id, "checking").await?;
        let recorded = record.databases.clone();
        let checks = blocking(move || {
            let checks = check_all(
                &target, &snapshot, &plan, &logins, &dir, &databases, &recorded,
            );
            let _ = std::fs::remove_dir_all(&dir);
            checks
        })
        .await?;
        Ok(DrillOutcome {
            checks,
            restore_ms: Some(restore_ms),
            error: None,
        })
    }

    /// Drop the scratch databases of drills a crash (or a server that was away) left on the
    /// servers of the stored credentials: only those named after a drill of this Coffer.
    pub(crate) async fn drop_drill_databases(&self) -> Result<()> {
        for c in self.db.resources::<Credential>().await? {
            let name = c.name.clone();
            let login = self.login_of(c).await?;
            let listed = {
                let login = login.clone();
                blocking(move || login.databases()).await
            };
            let databases = match listed {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(credential = %name, error = %e, "cannot look for drills' scratch databases");
                    continue;
                }
            };
            for db in databases {
                let Some(drill) = db.strip_prefix(SCRATCH_DATABASE).map(str::to_string) else {
                    continue;
                };
                if !self.db.is_drill(&drill).await? {
                    continue;
                }
                let login = login.clone();
                let dropped = blocking(move || login.drop_database(&db)).await;
                match dropped {
                    Ok(()) => {
                        tracing::info!(credential = %name, drill, "dropped a drill's scratch database")
                    }
                    Err(e) => {
                        tracing::warn!(credential = %name, drill, error = %e, "cannot drop a drill's scratch database")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why drill `d` failed, in a line: its error, else the checks that failed.
fn failure(d: &Drill) -> String {
    let failed: Vec<String> = d
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    d.error.clone().unwrap_or_else(|| failed.join("; "))
}

/// The name of a drill's scratch database: this, then the drill's id.
const SCRATCH_DATABASE: &str = "coffer_drill_";

/// Where a drill restores: a directory for files, trees and volumes, a database for each
/// database in turn.
struct Scratch {
    dir: std::path::PathBuf,
    database: String,
    task: String,
}

/// The rows of each table of a database a drill restored, by the restore item.
type RestoredRows = Vec<(Restore, RowCounts)>;

impl Scratch {
    /// Restore `plan` of `snapshot`: files, trees and volumes into the directory, then each
    /// database into the scratch database, its rows counted before it is dropped (a failed
    /// restore's too); how long the restores took, in milliseconds, and the rows counted.
    fn restore(
        &self,
        target: &Target,
        snapshot: &str,
        plan: &[Restore],
        logins: &Logins,
    ) -> Result<(u64, RestoredRows)> {
        let run = || runner::RestoreRun {
            task: &self.task,
            force: false,
            progress: Arc::new(coffer_repo::Progress::default()),
        };
        let mut took = std::time::Duration::ZERO;
        let files: Vec<Restore> = plan
            .iter()
            .filter(|r| r.live().is_some() || r.volume().is_some())
            .cloned()
            .collect();
        if !files.is_empty() {
            let started = Instant::now();
            runner::restore(target, snapshot, &files, logins, Some(&self.dir), run())?;
            took += started.elapsed();
        }
        let mut databases = vec![];
        for item in plan
            .iter()
            .filter(|r| matches!(r, Restore::Database { .. }))
        {
            let mut scratch = item.clone();
            let Some((credential_id, into)) = scratch.database_into() else {
                continue;
            };
            let login = logins.login(credential_id)?.1.clone();
            into.clone_from(&self.database);
            let started = Instant::now();
            let restored = runner::restore(target, snapshot, &[scratch], logins, None, run());
            took += started.elapsed();
            let rows = restored.and_then(|_| Ok(login.row_counts(&self.database)?));
            if let Err(e) = login.drop_database(&self.database) {
                tracing::warn!(database = %self.database, error = %e, "cannot drop a drill's scratch database (dropped at start-up)");
            }
            databases.push((item.clone(), rows?));
        }
        Ok((took.as_millis() as u64, databases))
    }
}

/// The checks of what `plan` restored of `snapshot`: into `dir`, and into the scratch
/// databases whose rows `databases` holds (`recorded`: the record's dumps).
fn check_all(
    target: &Target,
    snapshot: &str,
    plan: &[Restore],
    logins: &kinds::Logins,
    dir: &Path,
    databases: &RestoredRows,
    recorded: &[DatabaseDump],
) -> Result<Vec<DrillCheck>> {
    let repo = target.open()?;
    let session = repo.open_snapshot(&runner::snapshot_id(snapshot)?)?;
    let mut checks = vec![];
    for r in plan {
        let inside = r.inside(logins);
        match r {
            Restore::Path(p) => {
                checks.push(compare(&session, &inside, &p.display().to_string(), dir))
            }
            Restore::Volume(name) => {
                checks.push(compare(&session, &inside, &format!("volume {name}"), dir))
            }
            Restore::Sqlite(p) => {
                let counted = session.snapshot().labels.get(&sqlite::rows_label(p));
                checks.extend(sqlite_checks(p, &dir.join(&inside), counted));
            }
            Restore::Database {
                credential_id,
                database,
                ..
            } => {
                let engine = logins.login(credential_id)?.1.engine();
                let counted = recorded
                    .iter()
                    .find(|d| d.engine == engine && d.database == *database)
                    .and_then(|d| d.rows.as_ref());
                let now = databases.iter().find(|(item, _)| item == r).map(|(_, n)| n);
                let outcome = match (counted, now) {
                    (Some(counted), Some(now)) => compare_rows(counted, now),
                    (None, _) => Ok("no row counts were recorded at backup time".to_string()),
                    (_, None) => Err("it was not restored".to_string()),
                };
                checks.push(check(format!("rows of database {database}"), outcome));
            }
            Restore::Globals { credential_id } => {
                let folder = &logins.login(credential_id)?.0;
                let read = session
                    .cat(&inside, &mut std::io::sink())
                    .map(|n| {
                        format!(
                            "read back whole ({n} bytes); a drill does not apply them to the server"
                        )
                    })
                    .map_err(|e| e.to_string());
                checks.push(check(format!("roles and accounts of {folder}"), read));
            }
        }
    }
    Ok(checks)
}

/// A check named `check` with its outcome: passed, or failed, in words either way.
fn check(check: String, outcome: std::result::Result<String, String>) -> DrillCheck {
    DrillCheck {
        check,
        ok: outcome.is_ok(),
        detail: outcome.unwrap_or_else(|e| e),
    }
}

/// The rows of each table `now` against those `counted` at backup time: the tables and rows
/// when they are the same, else each table that lost or gained rows, is missing, or is new.
fn compare_rows(counted: &RowCounts, now: &RowCounts) -> std::result::Result<String, String> {
    let mut differ = vec![];
    for (table, n) in counted {
        match now.get(table) {
            Some(m) if m == n => {}
            Some(m) => differ.push(format!("table {table}: {m} rows, {n} at backup time")),
            None => differ.push(format!(
                "table {table} is missing ({n} rows at backup time)"
            )),
        }
    }
    for table in now.keys().filter(|t| !counted.contains_key(*t)) {
        differ.push(format!("table {table} was not there at backup time"));
    }
    match differ.is_empty() {
        true => Ok(format!(
            "{} tables, {} rows, as at backup time",
            counted.len(),
            counted.values().sum::<u64>()
        )),
        false => Err(differ.join("; ")),
    }
}

/// The checks of SQLite source `source` as restored at `file`: its integrity, and the rows of
/// each table against `counted` at backup time (JSON, table → rows; none for records made
/// before backups counted them).
fn sqlite_checks(source: &Path, file: &Path, counted: Option<&String>) -> Vec<DrillCheck> {
    let what = source.display();
    let integrity = coffer_sources::sqlite::check(file)
        .map(|()| "PRAGMA integrity_check: ok".to_string())
        .map_err(|e| e.to_string());
    let rows = (|| {
        let counted: RowCounts = match counted {
            Some(c) => serde_json::from_str(c).map_err(|e| format!("the counts recorded: {e}"))?,
            None => return Ok("no row counts were recorded at backup time".to_string()),
        };
        let now = coffer_sources::sqlite::row_counts(file).map_err(|e| e.to_string())?;
        compare_rows(&counted, &now)
    })();
    vec![
        check(format!("integrity of {what}"), integrity),
        check(format!("rows of {what}"), rows),
    ]
}

/// The check of `what` (a path source, a volume), at `path` in the snapshot, as restored under
/// `dir`.
fn compare(session: &SnapshotReader<'_>, path: &str, what: &str, dir: &Path) -> DrillCheck {
    let inside = path.trim_start_matches('/');
    let mut found = Findings::default();
    let (parent, name) = inside.rsplit_once('/').unwrap_or(("", inside));
    match session.entries(parent) {
        Ok(nodes) => match nodes.iter().find(|n| n.name == name.as_bytes()) {
            Some(node) => found.node(session, inside, node, dir),
            None => found.differ(inside, "not in the snapshot"),
        },
        Err(e) => found.differ(inside, &e.to_string()),
    }
    let detail = match found.differences.len() {
        0 => format!(
            "{} entries compared: type, size, permissions, content",
            found.compared
        ),
        n => {
            let shown: Vec<&str> = found
                .differences
                .iter()
                .take(SHOWN)
                .map(String::as_str)
                .collect();
            let more = match n > SHOWN {
                true => format!(" (and {} more)", n - SHOWN),
                false => String::new(),
            };
            format!("{}{more}", shown.join("; "))
        }
    };
    DrillCheck {
        check: format!("files of {what}"),
        ok: found.differences.is_empty(),
        detail,
    }
}

/// What comparing found: how many entries, and what differed.
#[derive(Default)]
struct Findings {
    compared: u64,
    differences: Vec<String>,
}

impl Findings {
    fn differ(&mut self, path: &str, what: &str) {
        self.differences.push(format!("/{path}: {what}"));
    }

    /// Compare the entry `node` at `path` in the snapshot with `dir/path`, and what it holds.
    fn node(&mut self, session: &SnapshotReader<'_>, path: &str, node: &Node, dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        self.compared += 1;
        let here = dir.join(path);
        let Ok(meta) = std::fs::symlink_metadata(&here) else {
            return self.differ(path, "missing");
        };
        let ft = meta.file_type();
        let kind_matches = match node.kind {
            NodeKind::File => ft.is_file(),
            NodeKind::Dir => ft.is_dir(),
            NodeKind::Symlink => ft.is_symlink(),
            _ => !(ft.is_file() || ft.is_dir() || ft.is_symlink()),
        };
        if !kind_matches {
            return self.differ(
                path,
                &format!("a {:?} in the snapshot, not here", node.kind),
            );
        }
        if node.kind != NodeKind::Symlink && meta.permissions().mode() & 0o7777 != node.mode {
            self.differ(
                path,
                &format!(
                    "permissions {:o}, the snapshot says {:o}",
                    meta.permissions().mode() & 0o7777,
                    node.mode
                ),
            );
        }
        match node.kind {
            NodeKind::File if meta.len() != node.size => self.differ(
                path,
                &format!("{} bytes, the snapshot says {}", meta.len(), node.size),
            ),
            NodeKind::File => match same_content(session, path, &here) {
                Ok(None) => {}
                Ok(Some(at)) => self.differ(path, &format!("its bytes differ from byte {at}")),
                Err(e) => self.differ(path, &format!("cannot be compared: {e}")),
            },
            NodeKind::Symlink => match std::fs::read_link(&here) {
                Ok(t) if t.as_os_str().as_encoded_bytes() == node.target.as_slice() => {}
                _ => self.differ(path, "the link points elsewhere"),
            },
            NodeKind::Dir => {
                let children = match session.entries(path) {
                    Ok(c) => c,
                    Err(e) => return self.differ(path, &e.to_string()),
                };
                let expected: BTreeSet<&[u8]> =
                    children.iter().map(|c| c.name.as_slice()).collect();
                if let Ok(entries) = std::fs::read_dir(&here) {
                    for e in entries.flatten() {
                        let name = e.file_name();
                        if !expected.contains(name.as_encoded_bytes()) {
                            let extra = format!("{path}/{}", name.to_string_lossy());
                            self.differ(&extra, "not in the snapshot");
                        }
                    }
                }
                for child in &children {
                    let child_path = format!("{path}/{}", String::from_utf8_lossy(&child.name));
                    self.node(session, &child_path, child, dir);
                }
            }
            _ => {}
        }
    }
}

/// Whether the file at `here` holds exactly the snapshot's file at `path`: none, or the offset
/// of the first byte that differs.
fn same_content(
    session: &SnapshotReader<'_>,
    path: &str,
    here: &Path,
) -> std::result::Result<Option<u64>, String> {
    let file = std::fs::File::open(here).map_err(|e| e.to_string())?;
    let mut same = SameAs {
        file: std::io::BufReader::new(file),
        at: 0,
        differs: None,
    };
    session.cat(path, &mut same).map_err(|e| e.to_string())?;
    Ok(same.differs)
}

/// A writer that compares what is written with a file's bytes, in order.
struct SameAs<R> {
    file: R,
    at: u64,
    differs: Option<u64>,
}

impl<R: Read> Write for SameAs<R> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.differs.is_none() {
            let mut here = Vec::with_capacity(buf.len());
            (&mut self.file)
                .take(buf.len() as u64)
                .read_to_end(&mut here)?;
            if let Some(i) = (0..buf.len()).find(|&i| here.get(i) != Some(&buf[i])) {
                self.differs = Some(self.at + i as u64);
            }
        }
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_difference(file: &[u8], written: &[&[u8]]) -> Option<u64> {
        let mut same = SameAs {
            file,
            at: 0,
            differs: None,
        };
        for w in written {
            same.write_all(w).unwrap();
        }
        same.differs
    }

    #[test]
    fn a_sqlite_database_that_lost_rows_fails_naming_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let copy = dir.path().join("copy.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE orders (n); INSERT INTO orders VALUES (1), (2), (3);")
            .unwrap();
        let counted = coffer_sources::sqlite::copy(&db, &copy).unwrap();
        let json = serde_json::to_string(&counted).unwrap();
        let checks = sqlite_checks(&db, &copy, Some(&json));
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        // As if the backup had counted more rows and another table.
        let more = r#"{"orders": 5, "gone": 1}"#.to_string();
        let checks = sqlite_checks(&db, &copy, Some(&more));
        assert!(checks[0].ok, "the file itself is sound");
        assert!(!checks[1].ok);
        assert_eq!(
            checks[1].detail,
            "table gone is missing (1 rows at backup time); table orders: 3 rows, 5 at backup time"
        );
        let none = sqlite_checks(&db, &copy, None);
        assert!(
            none[1].ok && none[1].detail.starts_with("no row counts"),
            "{none:?}"
        );
        std::fs::write(
            &copy,
            b"garbage, not a database at all, long enough to be read",
        )
        .unwrap();
        assert!(sqlite_checks(&db, &copy, Some(&json)).iter().all(|c| !c.ok));
    }

    #[test]
    fn the_first_byte_that_differs_is_found_across_writes() {
        assert_eq!(
            first_difference(b"hello world", &[b"hello", b" world"]),
            None
        );
        assert_eq!(
            first_difference(b"hello world", &[b"hello", b" wOrld"]),
            Some(7)
        );
        assert_eq!(
            first_difference(b"hello", &[b"hello", b"!"]),
            Some(5),
            "shorter here"
        );
        assert_eq!(
            first_difference(b"Hello", &[b"hello", b"x"]),
            Some(0),
            "the first one"
        );
    }
}

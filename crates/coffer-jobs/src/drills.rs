//! Restore drills: a job's newest backup restored into a throwaway directory with the restore
//! code every restore uses, then compared, entry by entry, with what the snapshot says was
//! backed up — the type, size and permission bits of each, the target of each link, and each
//! file's bytes. The directory goes when the drill ends (and at start-up, with the rest of the
//! scratch directory, after a crash); a drill a stop interrupted is marked failed at start-up.
//!
//! A SQLite database is checked as a database: its integrity, and the rows of each table
//! against those its backup counted (a snapshot label).
//!
//! So far for path, volume and SQLite sources; the database servers' are refused with a clear
//! reason.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use coffer_db::{DrillOutcome, RecordQuery, TriggerFilter};
use coffer_repo::{Node, NodeKind, SnapshotReader};
use coffer_types::{Drill, DrillCheck, Job, Record, RecordStatus, Source};

use crate::kinds::{self, Restore, sqlite};
use crate::spec::field;
use crate::{Jobs, JobsError, Result, blocking, runner};

/// Differences named in a failed check, at most.
const SHOWN: usize = 5;

impl Jobs {
    /// Start a drill of job `job_id`'s newest successful backup: answers at once with the
    /// drill to poll; a conflict while another drill of the job runs.
    pub async fn drill(self: &Arc<Self>, job_id: &str) -> Result<Drill> {
        let job = self.db.job(job_id).await?;
        let other = job.sources.iter().find_map(|s| match s {
            Source::Path { .. } | Source::Volume { .. } | Source::Sqlite { .. } => None,
            Source::Postgres { .. } => Some("postgres"),
            Source::Mysql { .. } => Some("mysql"),
        });
        if let Some(kind) = other {
            return Err(field(
                "sources",
                format!(
                    "restore drills are for jobs of path, volume and sqlite sources so far; \
                     this job also backs up a {kind} source"
                ),
            )
            .into());
        }
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
            match jobs.db.finish_drill(&id, &outcome).await {
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

    /// Restore `record` of `job` into a scratch directory, timed, then compare.
    async fn run_drill(&self, id: &str, job: &Job, record: &Record) -> Result<DrillOutcome> {
        let target = self.target(job).await?;
        let logins = self.logins(&job.sources).await?;
        let plan = kinds::plan(&job.sources, &HashMap::new(), &[], &[], &[])?;
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let dir = self.places.scratch().join(format!("drill-{id}"));
        let (t, p, d, s, l, task) = (
            target.clone(),
            plan.clone(),
            dir.clone(),
            snapshot.clone(),
            logins.clone(),
            id.to_string(),
        );
        let restored = blocking(move || {
            let started = Instant::now();
            let run = runner::RestoreRun {
                task: &task,
                force: false,
                progress: Arc::new(coffer_repo::Progress::default()),
            };
            runner::restore(&t, &s, &p, &l, Some(&d), run)?;
            Ok::<_, JobsError>(started.elapsed().as_millis() as u64)
        })
        .await;
        let restore_ms = match restored {
            Ok(ms) => ms,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                return Err(e.context("restoring the record"));
            }
        };
        self.db.set_drill_phase(id, "checking").await?;
        let checks = blocking(move || {
            let checks = check_all(&target, &snapshot, &plan, &logins, &dir);
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
}

/// The checks of what `plan` restored of `snapshot` into `dir`.
fn check_all(
    target: &crate::target::Target,
    snapshot: &str,
    plan: &[Restore],
    logins: &kinds::Logins,
    dir: &Path,
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
            _ => {}
        }
    }
    Ok(checks)
}

/// The checks of SQLite source `source` as restored at `file`: its integrity, and the rows of
/// each table against `counted` at backup time (JSON, table → rows; none for records made
/// before backups counted them).
fn sqlite_checks(source: &Path, file: &Path, counted: Option<&String>) -> Vec<DrillCheck> {
    let what = source.display();
    let check = |check: String, outcome: std::result::Result<String, String>| DrillCheck {
        check,
        ok: outcome.is_ok(),
        detail: outcome.unwrap_or_else(|e| e),
    };
    let integrity = coffer_sources::sqlite::check(file)
        .map(|()| "PRAGMA integrity_check: ok".to_string())
        .map_err(|e| e.to_string());
    let rows = (|| {
        let counted: coffer_sources::sqlite::RowCounts = match counted {
            Some(c) => serde_json::from_str(c).map_err(|e| format!("the counts recorded: {e}"))?,
            None => return Ok("no row counts were recorded at backup time".to_string()),
        };
        let now = coffer_sources::sqlite::row_counts(file).map_err(|e| e.to_string())?;
        let mut differ = vec![];
        for (table, n) in &counted {
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

//! Backup jobs and their records.
//!
//! "A job never runs twice at once" is a partial unique index (one `running` record per job),
//! so two starts racing each other cannot both succeed.

use chrono::{DateTime, Utc};
use coffer_types::{Job, Record, RecordStatus};

use crate::{Db, DbError, Result, new_id, parse_opt_ts, parse_ts, ts, unique_violation};

/// What a job's schedules start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    Backups,
    Drills,
}

impl Scheduled {
    /// The column keeping the latest time of its schedule the scheduler acted on.
    fn column(self) -> &'static str {
        match self {
            Scheduled::Backups => "scheduled_until",
            Scheduled::Drills => "drill_scheduled_until",
        }
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    name: String,
    node_id: String,
    sources: String,
    schedule: Option<String>,
    timezone: String,
    drill_schedule: Option<String>,
    ping_url: Option<String>,
    retention_count: Option<i64>,
    retention_days: Option<i64>,
    retention: Option<String>,
    dest_path: Option<String>,
    repository_id: Option<String>,
    encrypted: bool,
    enabled: bool,
    created_at: String,
    updated_at: String,
    last_run: Option<String>,
    last_status: Option<String>,
    last_error: Option<String>,
    last_success_at: Option<String>,
    last_size_bytes: Option<i64>,
    last_duration_ms: Option<i64>,
    stored_bytes: Option<i64>,
    last_drill_status: Option<String>,
    last_proven_restorable_at: Option<String>,
    last_restore_ms: Option<i64>,
}

const JOB_COLUMNS: &str = "j.id, j.name, j.node_id, j.sources, j.schedule, j.timezone,
    j.drill_schedule, j.ping_url, j.retention_count, j.retention_days, j.retention, j.dest_path, j.repository_id, j.encrypted,
    j.enabled, j.created_at, j.updated_at,
    (SELECT started_at FROM backup_records r WHERE r.job_id = j.id AND r.trigger NOT IN ('pre_restore', 'pitr')
        ORDER BY started_at DESC LIMIT 1) AS last_run,
    (SELECT status FROM backup_records r WHERE r.job_id = j.id AND r.trigger NOT IN ('pre_restore', 'pitr')
        ORDER BY started_at DESC LIMIT 1) AS last_status,
    (SELECT error FROM backup_records r WHERE r.job_id = j.id AND r.trigger NOT IN ('pre_restore', 'pitr')
        ORDER BY started_at DESC LIMIT 1) AS last_error,
    (SELECT started_at FROM backup_records r WHERE r.job_id = j.id AND r.trigger NOT IN ('pre_restore', 'pitr')
        AND r.status = 'success' ORDER BY started_at DESC LIMIT 1) AS last_success_at,
    (SELECT size_bytes FROM backup_records r WHERE r.job_id = j.id AND r.trigger NOT IN ('pre_restore', 'pitr')
        AND r.status = 'success' ORDER BY started_at DESC LIMIT 1) AS last_size_bytes,
    (SELECT duration_ms FROM backup_records r WHERE r.job_id = j.id AND r.trigger NOT IN ('pre_restore', 'pitr')
        AND r.status = 'success' ORDER BY started_at DESC LIMIT 1) AS last_duration_ms,
    (SELECT SUM(stored_bytes) FROM backup_records r WHERE r.job_id = j.id) AS stored_bytes,
    (SELECT status FROM drills d WHERE d.job_id = j.id
        ORDER BY started_at DESC LIMIT 1) AS last_drill_status,
    (SELECT record_at FROM drills d WHERE d.job_id = j.id AND d.status = 'success'
        ORDER BY record_at DESC, started_at DESC LIMIT 1) AS last_proven_restorable_at,
    (SELECT restore_ms FROM drills d WHERE d.job_id = j.id AND d.status = 'success'
        ORDER BY record_at DESC, started_at DESC LIMIT 1) AS last_restore_ms";

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| DbError::Corrupt(format!("{what}: {e}")))
}

fn sources_json(j: &Job) -> String {
    serde_json::to_string(&j.sources).expect("sources serialize")
}

fn retention_json(j: &Job) -> Option<String> {
    j.retention
        .as_ref()
        .map(|r| serde_json::to_string(r).expect("retention serializes"))
}

fn count(v: Option<i64>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok())
}

fn job(r: JobRow) -> Result<Job> {
    let sources: Vec<coffer_types::Source> = json("job sources", &r.sources)?;
    let volumes = sources
        .iter()
        .filter_map(|s| match s {
            coffer_types::Source::Volume { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let failed = r.last_status.as_deref() == Some("failed");
    Ok(Job {
        id: r.id,
        name: r.name,
        node_id: r.node_id,
        sources,
        volumes,
        schedule: r.schedule,
        timezone: r.timezone,
        drill_schedule: r.drill_schedule,
        ping_url: r.ping_url,
        retention_count: count(r.retention_count),
        retention_days: count(r.retention_days),
        retention: r
            .retention
            .as_deref()
            .map(|s| json("job retention", s))
            .transpose()?,
        dest_path: r.dest_path,
        repository_id: r.repository_id,
        encrypted: r.encrypted,
        enabled: r.enabled,
        created_at: parse_ts(&r.created_at)?,
        updated_at: parse_ts(&r.updated_at)?,
        last_run: parse_opt_ts(r.last_run)?,
        last_status: r
            .last_status
            .map(|s| s.parse().map_err(DbError::BadValue))
            .transpose()?,
        next_run: None,
        last_error: r.last_error.filter(|_| failed),
        last_success_at: parse_opt_ts(r.last_success_at)?,
        last_size_bytes: r.last_size_bytes.and_then(|n| u64::try_from(n).ok()),
        last_duration_ms: r.last_duration_ms.and_then(|n| u64::try_from(n).ok()),
        stored_bytes: r.stored_bytes.and_then(|n| u64::try_from(n).ok()),
        overdue: false,
        warnings: vec![],
        last_drill_status: r
            .last_drill_status
            .map(|s| s.parse().map_err(DbError::BadValue))
            .transpose()?,
        last_proven_restorable_at: parse_opt_ts(r.last_proven_restorable_at)?,
        last_restore_ms: r.last_restore_ms.and_then(|n| u64::try_from(n).ok()),
        next_drill: None,
    })
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    id: String,
    job_id: String,
    status: String,
    phase: String,
    size_bytes: Option<i64>,
    stored_bytes: Option<i64>,
    checksum: Option<String>,
    file_path: Option<String>,
    snapshot_id: Option<String>,
    encrypted: bool,
    trigger: String,
    started_at: String,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    error: Option<String>,
    warnings: String,
    databases: String,
    backup_tool: Option<String>,
    verified_at: Option<String>,
    verify_ok: Option<bool>,
    progress: Option<String>,
}

const RECORD_COLUMNS: &str = "id, job_id, status, phase, size_bytes, stored_bytes, checksum,
    file_path, snapshot_id, encrypted, trigger, started_at, finished_at, duration_ms, error, warnings,
    databases, backup_tool, verified_at, verify_ok, progress";

/// The progress kept for running work, shown only while it runs.
pub(crate) fn running_progress(
    status: &RecordStatus,
    progress: Option<String>,
) -> Result<Option<coffer_types::Progress>> {
    match (status, progress) {
        (RecordStatus::Running, Some(p)) => Ok(Some(json("progress", &p)?)),
        _ => Ok(None),
    }
}

fn record(r: RecordRow) -> Result<Record> {
    let bytes = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    let status: RecordStatus = r.status.parse().map_err(DbError::BadValue)?;
    Ok(Record {
        id: r.id,
        job_id: r.job_id,
        status,
        phase: r.phase,
        size_bytes: bytes(r.size_bytes),
        stored_bytes: bytes(r.stored_bytes),
        checksum: r.checksum,
        file_path: r.file_path,
        snapshot_id: r.snapshot_id,
        encrypted: r.encrypted,
        trigger: r.trigger,
        started_at: parse_ts(&r.started_at)?,
        finished_at: parse_opt_ts(r.finished_at)?,
        duration_ms: bytes(r.duration_ms),
        error: r.error,
        warnings: json("record warnings", &r.warnings)?,
        databases: json("record databases", &r.databases)?,
        backup_tool: r.backup_tool,
        verified_at: parse_opt_ts(r.verified_at)?,
        verify_ok: r.verify_ok,
        progress: running_progress(&status, r.progress)?,
    })
}

/// The distinct tools that made `dumps`, in order, or none.
fn backup_tool(dumps: &[coffer_types::DatabaseDump]) -> Option<String> {
    let mut tools: Vec<&str> = vec![];
    for d in dumps {
        if !tools.contains(&d.tool.as_str()) {
            tools.push(&d.tool);
        }
    }
    (!tools.is_empty()).then(|| tools.join(", "))
}

/// How a finished run went.
#[derive(Clone, Debug)]
pub enum RunOutcome {
    Success {
        size_bytes: u64,
        stored_bytes: u64,
        checksum: String,
        file_path: String,
        snapshot_id: String,
        warnings: Vec<String>,
        databases: Vec<coffer_types::DatabaseDump>,
    },
    Failed {
        error: String,
    },
}

/// The trigger of a safety record, taken before a restore. Safety records are no backups of
/// the job: they are not its last run, not listed among its records unless asked for, and are
/// kept for a time of their own.
pub const SAFETY_TRIGGER: &str = "pre_restore";

/// The trigger of a point-in-time recovery's result: listed among the job's records, but no
/// backup the job made (not its last run, not counted by its retention).
pub const PITR_TRIGGER: &str = "pitr";

/// Which records a query wants by their trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TriggerFilter {
    /// The job's backups: every record but safety records.
    #[default]
    Backups,
    Any,
    /// Records of this trigger (`schedule`, `manual`, `adopted`, `pre_restore`).
    Is(String),
}

/// Filters for a job's records; they come newest first.
#[derive(Clone, Debug, Default)]
pub struct RecordQuery {
    pub status: Option<RecordStatus>,
    pub trigger: TriggerFilter,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

impl Db {
    /// Store a new job (its `id`, `created_at` and `updated_at` are taken as given).
    pub async fn create_job(&self, j: &Job) -> Result<Job> {
        sqlx::query(
            "INSERT INTO backup_jobs (id, name, node_id, sources, schedule, timezone, retention_count,
                 retention_days, retention, dest_path, repository_id, encrypted, enabled, created_at,
                 updated_at, drill_schedule, ping_url)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
        )
        .bind(&j.id)
        .bind(&j.name)
        .bind(&j.node_id)
        .bind(sources_json(j))
        .bind(&j.schedule)
        .bind(&j.timezone)
        .bind(j.retention_count.map(i64::from))
        .bind(j.retention_days.map(i64::from))
        .bind(retention_json(j))
        .bind(&j.dest_path)
        .bind(&j.repository_id)
        .bind(j.encrypted)
        .bind(j.enabled)
        .bind(ts(j.created_at))
        .bind(&j.drill_schedule)
        .bind(&j.ping_url)
        .execute(self.pool())
        .await?;
        self.job(&j.id).await
    }

    pub async fn job(&self, id: &str) -> Result<Job> {
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM backup_jobs j WHERE j.id = ?1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        job(row.ok_or(DbError::NotFound("backup job"))?)
    }

    pub async fn jobs(&self) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM backup_jobs j ORDER BY j.created_at, j.id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(job).collect()
    }

    /// Replace a job's changeable fields with those of `j`.
    pub async fn update_job(&self, j: &Job) -> Result<Job> {
        let done = sqlx::query(
            "UPDATE backup_jobs SET name = ?2, sources = ?3, schedule = ?4, timezone = ?5,
                 retention_count = ?6, retention_days = ?7, retention = ?8, enabled = ?9, updated_at = ?10,
                 drill_schedule = ?11, ping_url = ?12
             WHERE id = ?1",
        )
        .bind(&j.id)
        .bind(&j.name)
        .bind(sources_json(j))
        .bind(&j.schedule)
        .bind(&j.timezone)
        .bind(j.retention_count.map(i64::from))
        .bind(j.retention_days.map(i64::from))
        .bind(retention_json(j))
        .bind(j.enabled)
        .bind(ts(Utc::now()))
        .bind(&j.drill_schedule)
        .bind(&j.ping_url)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound("backup job"));
        }
        self.job(&j.id).await
    }

    pub async fn delete_job(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM backup_jobs WHERE id = ?1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound("backup job"));
        }
        Ok(())
    }

    /// The latest time of its schedule for `what` the scheduler acted on, for every job (by
    /// id) in one query.
    pub async fn scheduled_until(
        &self,
        what: Scheduled,
    ) -> Result<std::collections::HashMap<String, Option<DateTime<Utc>>>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, {} FROM backup_jobs",
            what.column()
        )))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, at)| Ok((id, parse_opt_ts(at)?)))
            .collect()
    }

    pub async fn set_scheduled_until(
        &self,
        what: Scheduled,
        job_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE backup_jobs SET {} = ?2 WHERE id = ?1",
            what.column()
        )))
        .bind(job_id)
        .bind(ts(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The jobs told overdue, by id: since when.
    pub async fn overdue_since(&self) -> Result<std::collections::HashMap<String, DateTime<Utc>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, overdue_since FROM backup_jobs WHERE overdue_since IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, at)| Ok((id, parse_ts(&at)?)))
            .collect()
    }

    /// Job `job_id` told overdue since `since`, or no longer (none).
    pub async fn set_overdue_since(
        &self,
        job_id: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query("UPDATE backup_jobs SET overdue_since = ?2 WHERE id = ?1")
            .bind(job_id)
            .bind(since.map(ts))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Start a record; a conflict if the job already has a running one.
    pub async fn start_record(
        &self,
        job_id: &str,
        trigger: &str,
        encrypted: bool,
    ) -> Result<Record> {
        let id = new_id();
        let started = sqlx::query(
            "INSERT INTO backup_records (id, job_id, status, phase, encrypted, trigger, started_at)
             VALUES (?1, ?2, 'running', 'preparing', ?3, ?4, ?5)",
        )
        .bind(&id)
        .bind(job_id)
        .bind(encrypted)
        .bind(trigger)
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await;
        match started {
            Ok(_) => self.record(job_id, &id).await,
            Err(e) if unique_violation(&e) => Err(DbError::JobRunning),
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                Err(DbError::NotFound("backup job"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How far the running record `id` is.
    pub async fn set_record_progress(
        &self,
        id: &str,
        progress: &coffer_types::Progress,
    ) -> Result<()> {
        self.set_progress("backup_records", id, progress).await
    }

    /// How far the running record or restore `id` in `table` is.
    pub(crate) async fn set_progress(
        &self,
        table: &str,
        id: &str,
        progress: &coffer_types::Progress,
    ) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET progress = ?2 WHERE id = ?1 AND status = 'running'"
        )))
        .bind(id)
        .bind(serde_json::to_string(progress).expect("progress serializes"))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Keep the outcome of a verify of the record, now.
    pub async fn set_record_verified(&self, id: &str, ok: bool) -> Result<()> {
        sqlx::query("UPDATE backup_records SET verified_at = ?2, verify_ok = ?3 WHERE id = ?1")
            .bind(id)
            .bind(ts(Utc::now()))
            .bind(ok)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn set_record_phase(&self, id: &str, phase: &str) -> Result<()> {
        sqlx::query("UPDATE backup_records SET phase = ?2 WHERE id = ?1 AND status = 'running'")
            .bind(id)
            .bind(phase)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn finish_record(&self, id: &str, outcome: &RunOutcome) -> Result<()> {
        let now = Utc::now();
        let q = match outcome {
            RunOutcome::Success {
                size_bytes,
                stored_bytes,
                checksum,
                file_path,
                snapshot_id,
                warnings,
                databases,
            } => sqlx::query(
                "UPDATE backup_records SET status = 'success', phase = 'finalizing', size_bytes = ?2,
                     stored_bytes = ?3, checksum = ?4, file_path = ?5, snapshot_id = ?6, warnings = ?7,
                     finished_at = ?8, databases = ?9, backup_tool = ?10,
                     duration_ms = CAST(ROUND((julianday(?8) - julianday(started_at)) * 86400000) AS INTEGER)
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(*size_bytes as i64)
            .bind(*stored_bytes as i64)
            .bind(checksum)
            .bind(file_path)
            .bind(snapshot_id)
            .bind(serde_json::to_string(warnings).expect("strings serialize"))
            .bind(ts(now))
            .bind(serde_json::to_string(databases).expect("dumps serialize"))
            .bind(backup_tool(databases)),
            RunOutcome::Failed { error } => sqlx::query(
                "UPDATE backup_records SET status = 'failed', error = ?2, finished_at = ?3,
                     duration_ms = CAST(ROUND((julianday(?3) - julianday(started_at)) * 86400000) AS INTEGER)
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(error)
            .bind(ts(now)),
        };
        q.execute(self.pool()).await?;
        Ok(())
    }

    /// A successful record whose follow-up work (retention) is done.
    pub async fn complete_record(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE backup_records SET phase = 'complete' WHERE id = ?1 AND status = 'success'",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Mark every running record failed (at start-up: their process is gone). Returns how many.
    pub async fn fail_interrupted_records(&self, error: &str) -> Result<u64> {
        let now = ts(Utc::now());
        let done = sqlx::query(
            "UPDATE backup_records SET status = 'failed', error = ?1, finished_at = ?2,
                 duration_ms = CAST(ROUND((julianday(?2) - julianday(started_at)) * 86400000) AS INTEGER)
             WHERE status = 'running'",
        )
        .bind(error)
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn record(&self, job_id: &str, id: &str) -> Result<Record> {
        let row: Option<RecordRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM backup_records WHERE id = ?1 AND job_id = ?2"
        )))
        .bind(id)
        .bind(job_id)
        .fetch_optional(self.pool())
        .await?;
        record(row.ok_or(DbError::NotFound("record"))?)
    }

    pub async fn records(&self, job_id: &str, q: &RecordQuery) -> Result<Vec<Record>> {
        self.query_records(Some(job_id), q).await
    }

    /// The records of every job, newest first.
    pub async fn all_records(&self, q: &RecordQuery) -> Result<Vec<Record>> {
        self.query_records(None, q).await
    }

    async fn query_records(&self, job_id: Option<&str>, q: &RecordQuery) -> Result<Vec<Record>> {
        let rows: Vec<RecordRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM backup_records
             WHERE (?1 IS NULL OR job_id = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR started_at >= ?3) AND (?4 IS NULL OR started_at <= ?4)
               AND CASE ?6 WHEN 'any' THEN 1 WHEN 'backups' THEN trigger != '{SAFETY_TRIGGER}'
                   ELSE trigger = ?7 END
             ORDER BY started_at DESC, id DESC LIMIT ?5"
        )))
        .bind(job_id)
        .bind(q.status.map(|s| s.as_str()))
        .bind(q.since.map(ts))
        .bind(q.until.map(ts))
        .bind(q.limit as i64)
        .bind(match &q.trigger {
            TriggerFilter::Backups => "backups",
            TriggerFilter::Any => "any",
            TriggerFilter::Is(_) => "is",
        })
        .bind(match &q.trigger {
            TriggerFilter::Is(t) => Some(t.as_str()),
            _ => None,
        })
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(record).collect()
    }

    /// Delete the job's records of these snapshots; returns how many.
    pub async fn delete_records_of_snapshots(
        &self,
        job_id: &str,
        snapshots: &[String],
    ) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let mut n = 0;
        for s in snapshots {
            n += sqlx::query("DELETE FROM backup_records WHERE job_id = ?1 AND snapshot_id = ?2")
                .bind(job_id)
                .bind(s)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Records of snapshots a deleted job left in a repository, taken over by job `job_id`;
    /// returns how many. A record keeps its id unless another record has it.
    pub async fn adopt_records(&self, job_id: &str, records: &[Record]) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        for r in records {
            for id in [r.id.clone(), new_id()] {
                let done = sqlx::query(
                    "INSERT OR IGNORE INTO backup_records (id, job_id, status, phase, size_bytes,
                         stored_bytes, checksum, file_path, snapshot_id, encrypted, trigger,
                         started_at, finished_at, duration_ms, warnings)
                     VALUES (?1, ?2, 'success', 'complete', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                         ?12, ?13)",
                )
                .bind(&id)
                .bind(job_id)
                .bind(r.size_bytes.map(|n| n as i64))
                .bind(r.stored_bytes.map(|n| n as i64))
                .bind(&r.checksum)
                .bind(&r.file_path)
                .bind(&r.snapshot_id)
                .bind(r.encrypted)
                .bind(&r.trigger)
                .bind(ts(r.started_at))
                .bind(r.finished_at.map(ts))
                .bind(r.duration_ms.map(|n| n as i64))
                .bind(serde_json::to_string(&r.warnings).expect("strings serialize"))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    break;
                }
            }
        }
        tx.commit().await?;
        Ok(records.len() as u64)
    }

    pub async fn delete_record(&self, job_id: &str, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM backup_records WHERE id = ?1 AND job_id = ?2")
            .bind(id)
            .bind(job_id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound("record"));
        }
        Ok(())
    }
}

//! Restore tasks: one row per restore, updated as it runs.

use chrono::Utc;
use coffer_types::RestoreTask;

use crate::{Db, DbError, Result, new_id, parse_opt_ts, parse_ts, ts};

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: String,
    job_id: String,
    record_id: String,
    status: String,
    phase: String,
    target: String,
    paths: String,
    safety_record_id: Option<String>,
    files: Option<i64>,
    bytes: Option<i64>,
    started_at: String,
    finished_at: Option<String>,
    error: Option<String>,
    warnings: String,
    safety_record_removed: bool,
    progress: Option<String>,
}

/// What a finished restore did.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub files: u64,
    pub bytes: u64,
    /// What was left out or changed on the way.
    pub warnings: Vec<String>,
}

fn task(r: TaskRow) -> Result<RestoreTask> {
    let count = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    let status = r.status.parse().map_err(DbError::BadValue)?;
    Ok(RestoreTask {
        id: r.id,
        job_id: r.job_id,
        record_id: r.record_id,
        progress: crate::jobs::running_progress(&status, r.progress)?,
        status,
        phase: r.phase,
        target: r.target,
        paths: serde_json::from_str(&r.paths)
            .map_err(|e| DbError::Corrupt(format!("restore paths: {e}")))?,
        safety_record_id: r.safety_record_id,
        files: count(r.files),
        bytes: count(r.bytes),
        started_at: parse_ts(&r.started_at)?,
        finished_at: parse_opt_ts(r.finished_at)?,
        error: r.error,
        warnings: serde_json::from_str(&r.warnings)
            .map_err(|e| DbError::Corrupt(format!("restore warnings: {e}")))?,
        safety_record_removed: r.safety_record_removed,
    })
}

const COLUMNS: &str = "id, job_id, record_id, status, phase, target, paths, safety_record_id,
    files, bytes, started_at, finished_at, error, warnings, progress,
    (safety_record_id IS NOT NULL AND NOT EXISTS
        (SELECT 1 FROM backup_records r WHERE r.id = restore_tasks.safety_record_id))
        AS safety_record_removed";

impl Db {
    pub async fn create_restore(
        &self,
        job_id: &str,
        record_id: &str,
        target: &str,
        paths: &[String],
    ) -> Result<RestoreTask> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO restore_tasks (id, job_id, record_id, status, phase, target, paths, started_at)
             VALUES (?1, ?2, ?3, 'running', 'preparing', ?4, ?5, ?6)",
        )
        .bind(&id)
        .bind(job_id)
        .bind(record_id)
        .bind(target)
        .bind(serde_json::to_string(paths).expect("strings serialize"))
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await?;
        self.restore(job_id, &id).await
    }

    pub async fn set_restore_phase(
        &self,
        id: &str,
        phase: &str,
        safety_record_id: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE restore_tasks SET phase = ?2, safety_record_id = COALESCE(?3, safety_record_id)
             WHERE id = ?1 AND status = 'running'",
        )
        .bind(id)
        .bind(phase)
        .bind(safety_record_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Finish a restore: counts and warnings on success, the error on failure.
    pub async fn finish_restore(
        &self,
        id: &str,
        outcome: std::result::Result<Restored, String>,
    ) -> Result<()> {
        let (status, phase, files, bytes, error, warnings) = match outcome {
            Ok(r) => (
                "success",
                "complete",
                Some(r.files as i64),
                Some(r.bytes as i64),
                None,
                r.warnings,
            ),
            Err(e) => ("failed", "failed", None, None, Some(e), vec![]),
        };
        sqlx::query(
            "UPDATE restore_tasks SET status = ?2, phase = ?3, files = ?4, bytes = ?5, error = ?6,
                 finished_at = ?7, warnings = ?8 WHERE id = ?1",
        )
        .bind(id)
        .bind(status)
        .bind(phase)
        .bind(files)
        .bind(bytes)
        .bind(error)
        .bind(ts(Utc::now()))
        .bind(serde_json::to_string(&warnings).expect("strings serialize"))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// How far the running restore `id` is.
    pub async fn set_restore_progress(
        &self,
        id: &str,
        progress: &coffer_types::Progress,
    ) -> Result<()> {
        self.set_progress("restore_tasks", id, progress).await
    }

    pub async fn restore(&self, job_id: &str, id: &str) -> Result<RestoreTask> {
        let row: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restore_tasks WHERE id = ?1 AND job_id = ?2"
        )))
        .bind(id)
        .bind(job_id)
        .fetch_optional(self.pool())
        .await?;
        task(row.ok_or(DbError::NotFound("restore"))?)
    }

    pub async fn restores(&self, job_id: &str) -> Result<Vec<RestoreTask>> {
        let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restore_tasks WHERE job_id = ?1 ORDER BY started_at DESC LIMIT 200"
        )))
        .bind(job_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(task).collect()
    }

    /// Restores a stopped server left running (their process is gone).
    pub async fn interrupted_restores(&self) -> Result<Vec<RestoreTask>> {
        let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restore_tasks WHERE status = 'running'"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(task).collect()
    }
}

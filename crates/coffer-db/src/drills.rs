//! Restore drills: one row per drill, updated as it runs; at most one running per job (a
//! unique index).

use chrono::Utc;
use coffer_types::{Drill, DrillCheck, Record};

use crate::{Db, DbError, Result, new_id, parse_opt_ts, parse_ts, ts, unique_violation};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    job_id: String,
    record_id: String,
    status: String,
    phase: String,
    started_at: String,
    finished_at: Option<String>,
    restore_ms: Option<i64>,
    checks: String,
    error: Option<String>,
}

fn drill(r: Row) -> Result<Drill> {
    Ok(Drill {
        status: r.status.parse().map_err(DbError::BadValue)?,
        checks: serde_json::from_str(&r.checks)
            .map_err(|e| DbError::Corrupt(format!("drill {} checks: {e}", r.id)))?,
        started_at: parse_ts(&r.started_at)?,
        finished_at: parse_opt_ts(r.finished_at)?,
        restore_ms: r.restore_ms.and_then(|n| u64::try_from(n).ok()),
        id: r.id,
        job_id: r.job_id,
        record_id: r.record_id,
        phase: r.phase,
        error: r.error,
    })
}

const COLUMNS: &str = "id, job_id, record_id, status, phase, started_at, finished_at, restore_ms,
    checks, error";

/// How a drill ended: its checks, how long the restore took (when it got that far), and why
/// it failed, if it did.
#[derive(Clone, Debug, Default)]
pub struct DrillOutcome {
    pub checks: Vec<DrillCheck>,
    pub restore_ms: Option<u64>,
    pub error: Option<String>,
}

impl Db {
    /// Record a drill of job `job_id`'s record `record`; a conflict while another runs.
    pub async fn start_drill(&self, job_id: &str, record: &Record) -> Result<Drill> {
        let id = new_id();
        let started = sqlx::query(
            "INSERT INTO drills (id, job_id, record_id, record_at, status, phase, started_at)
             VALUES (?1, ?2, ?3, ?4, 'running', 'restoring', ?5)",
        )
        .bind(&id)
        .bind(job_id)
        .bind(&record.id)
        .bind(ts(record.started_at))
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await;
        match started {
            Ok(_) => self.drill(job_id, &id).await,
            Err(e) if unique_violation(&e) => Err(DbError::DrillRunning),
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                Err(DbError::NotFound("job"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The running drill `id` reached `phase`.
    pub async fn set_drill_phase(&self, id: &str, phase: &str) -> Result<()> {
        sqlx::query("UPDATE drills SET phase = ?2 WHERE id = ?1 AND status = 'running'")
            .bind(id)
            .bind(phase)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Finish drill `id`: passed when it has no error and every check passed.
    pub async fn finish_drill(&self, id: &str, outcome: &DrillOutcome) -> Result<Drill> {
        let passed = outcome.error.is_none() && outcome.checks.iter().all(|c| c.ok);
        let (status, phase) = match passed {
            true => ("success", "complete"),
            false => ("failed", "failed"),
        };
        let checks = serde_json::to_string(&outcome.checks).expect("checks serialize");
        let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE drills SET status = ?2, phase = ?3, finished_at = ?4, restore_ms = ?5,
                 checks = ?6, error = ?7
             WHERE id = ?1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(status)
        .bind(phase)
        .bind(ts(Utc::now()))
        .bind(outcome.restore_ms.map(|n| n as i64))
        .bind(checks)
        .bind(&outcome.error)
        .fetch_one(self.pool())
        .await?;
        drill(row)
    }

    /// Mark the drills a stopped process left running as failed; how many.
    pub async fn fail_interrupted_drills(&self, error: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE drills SET status = 'failed', phase = 'failed', error = ?1, finished_at = ?2
             WHERE status = 'running'",
        )
        .bind(error)
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Whether `id` is a drill's (any job's).
    pub async fn is_drill(&self, id: &str) -> Result<bool> {
        let found: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM drills WHERE id = ?1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(found.is_some())
    }

    pub async fn drill(&self, job_id: &str, id: &str) -> Result<Drill> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM drills WHERE id = ?1 AND job_id = ?2"
        )))
        .bind(id)
        .bind(job_id)
        .fetch_optional(self.pool())
        .await?;
        drill(row.ok_or(DbError::NotFound("drill"))?)
    }

    /// Job `job_id`'s drills, newest first.
    pub async fn drills(&self, job_id: &str, limit: u32) -> Result<Vec<Drill>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM drills WHERE job_id = ?1
             ORDER BY started_at DESC, id LIMIT ?2"
        )))
        .bind(job_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(drill).collect()
    }
}

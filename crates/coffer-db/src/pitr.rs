//! Point-in-time recoveries: one row per recovery, updated as it runs; at most one running per
//! credential (a unique index).

use chrono::Utc;
use coffer_types::{PitrRequest, PitrRun, PitrStatus};

use crate::{Db, DbError, Result, new_id, parse_opt_ts, parse_ts, ts, unique_violation};

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    credential_id: String,
    server_name: String,
    target_time: String,
    database: Option<String>,
    tables_filter: Option<String>,
    allow_gaps: bool,
    status: String,
    phase: String,
    baseline_record_id: Option<String>,
    job_id: Option<String>,
    record_id: Option<String>,
    file_path: Option<String>,
    size_bytes: Option<i64>,
    file_count: Option<i64>,
    started_at: String,
    completed_at: Option<String>,
    error_message: Option<String>,
}

fn run(r: RunRow) -> Result<PitrRun> {
    let count = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    let started_at = parse_ts(&r.started_at)?;
    let completed_at = parse_opt_ts(r.completed_at)?;
    Ok(PitrRun {
        id: r.id,
        credential_id: r.credential_id,
        server_name: r.server_name,
        target_time: parse_ts(&r.target_time)?,
        database: r.database,
        tables_filter: r.tables_filter,
        allow_gaps: r.allow_gaps,
        status: r.status.parse().map_err(DbError::BadValue)?,
        phase: r.phase,
        baseline_record_id: r.baseline_record_id,
        job_id: r.job_id,
        record_id: r.record_id,
        file_path: r.file_path,
        size_bytes: count(r.size_bytes),
        file_count: count(r.file_count),
        duration_ms: completed_at.map(|done| (done - started_at).num_milliseconds().max(0) as u64),
        error_message: r.error_message,
        started_at,
        completed_at,
    })
}

const COLUMNS: &str = "p.id, p.credential_id, c.name AS server_name, p.target_time, p.database,
    p.tables_filter, p.allow_gaps, p.status, p.phase, p.baseline_record_id, p.job_id,
    p.record_id, p.file_path, p.size_bytes, p.file_count, p.started_at, p.completed_at,
    p.error_message";

/// What a completed recovery produced.
#[derive(Clone, Debug)]
pub struct PitrProduced {
    pub job_id: String,
    pub record_id: String,
    pub file_path: Option<String>,
    pub size_bytes: Option<u64>,
    pub file_count: u64,
}

impl Db {
    /// Record a recovery of credential `credential_id`'s server starting from
    /// `baseline_record_id`; a conflict while another runs for that server.
    pub async fn start_pitr(
        &self,
        credential_id: &str,
        request: &PitrRequest,
        baseline_record_id: &str,
    ) -> Result<PitrRun> {
        let id = new_id();
        let started = sqlx::query(
            "INSERT INTO pitr_runs (id, credential_id, target_time, database, tables_filter,
                 allow_gaps, status, phase, baseline_record_id, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 'preparing', ?7, ?8)",
        )
        .bind(&id)
        .bind(credential_id)
        .bind(ts(request.target_time))
        .bind(&request.database)
        .bind(&request.tables)
        .bind(request.allow_gaps)
        .bind(baseline_record_id)
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await;
        match started {
            Ok(_) => self.pitr_run(credential_id, &id).await,
            Err(e) if unique_violation(&e) => Err(DbError::PitrRunning),
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                Err(DbError::NotFound("credential"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The running recovery `id` reached `phase`; the record it makes, once it has one.
    pub async fn set_pitr_phase(
        &self,
        id: &str,
        phase: &str,
        record: Option<(&str, &str)>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE pitr_runs SET phase = ?2, job_id = COALESCE(?3, job_id),
                 record_id = COALESCE(?4, record_id)
             WHERE id = ?1 AND status = 'running'",
        )
        .bind(id)
        .bind(phase)
        .bind(record.map(|r| r.0))
        .bind(record.map(|r| r.1))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Finish a recovery: what it produced, or why it failed.
    pub async fn finish_pitr(
        &self,
        id: &str,
        outcome: std::result::Result<&PitrProduced, &str>,
    ) -> Result<()> {
        let (status, phase, error) = match outcome {
            Ok(_) => ("completed", "complete", None),
            Err(e) => ("failed", "failed", Some(e)),
        };
        let produced = outcome.ok();
        sqlx::query(
            "UPDATE pitr_runs SET status = ?2, phase = ?3, error_message = ?4, completed_at = ?5,
                 job_id = COALESCE(?6, job_id), record_id = COALESCE(?7, record_id),
                 file_path = ?8, size_bytes = ?9, file_count = ?10
             WHERE id = ?1",
        )
        .bind(id)
        .bind(status)
        .bind(phase)
        .bind(error)
        .bind(ts(Utc::now()))
        .bind(produced.map(|p| p.job_id.as_str()))
        .bind(produced.map(|p| p.record_id.as_str()))
        .bind(produced.and_then(|p| p.file_path.as_deref()))
        .bind(produced.and_then(|p| p.size_bytes).map(|n| n as i64))
        .bind(produced.map(|p| p.file_count as i64))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Mark the recoveries a stopped process left running as failed; how many.
    pub async fn fail_interrupted_pitr(&self, error: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE pitr_runs SET status = 'failed', phase = 'failed', error_message = ?1,
                 completed_at = ?2 WHERE status = 'running'",
        )
        .bind(error)
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn pitr_run(&self, credential_id: &str, id: &str) -> Result<PitrRun> {
        let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM pitr_runs p JOIN credentials c ON c.id = p.credential_id
             WHERE p.id = ?1 AND p.credential_id = ?2"
        )))
        .bind(id)
        .bind(credential_id)
        .fetch_optional(self.pool())
        .await?;
        run(row.ok_or(DbError::NotFound("point-in-time recovery"))?)
    }

    /// The recoveries of credential `credential_id`'s server, newest first.
    pub async fn pitr_runs(
        &self,
        credential_id: &str,
        status: Option<PitrStatus>,
        limit: u32,
    ) -> Result<Vec<PitrRun>> {
        let rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM pitr_runs p JOIN credentials c ON c.id = p.credential_id
             WHERE p.credential_id = ?1 AND (?2 IS NULL OR p.status = ?2)
             ORDER BY p.started_at DESC, p.id LIMIT ?3"
        )))
        .bind(credential_id)
        .bind(status.map(|s| s.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(run).collect()
    }
}

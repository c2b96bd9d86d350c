//! The audit log: who did what, from where, with which outcome.

use chrono::{DateTime, Utc};
use coffer_types::{AuditEntry, Outcome};

use crate::{Db, DbError, Result, parse_ts, ts};

/// An entry to record.
#[derive(Clone, Debug)]
pub struct NewAuditEntry {
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub key_id: Option<String>,
    pub client_ip: Option<String>,
    pub action: String,
    pub target: String,
    pub status: u16,
}

/// Filters for reading the log; entries come newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A username or a user id.
    pub user: Option<String>,
    /// Substring of the action, e.g. `POST /api/users` or `users`.
    pub action: Option<String>,
    pub limit: u32,
}

type AuditRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    String,
);

impl Db {
    pub async fn add_audit(&self, e: &NewAuditEntry) -> Result<()> {
        let outcome = if e.status < 400 { "success" } else { "failure" };
        sqlx::query(
            "INSERT INTO audit (at, user_id, username, key_id, client_ip, action, target, status, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(ts(Utc::now()))
        .bind(&e.user_id)
        .bind(&e.username)
        .bind(&e.key_id)
        .bind(&e.client_ip)
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.status as i64)
        .bind(outcome)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, user_id, username, key_id, client_ip, action, target, status, outcome FROM audit
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at <= ?2)
               AND (?3 IS NULL OR username = ?3 OR user_id = ?3)
               AND (?4 IS NULL OR instr(action, ?4) > 0)
             ORDER BY id DESC LIMIT ?5",
        )
        .bind(q.since.map(ts))
        .bind(q.until.map(ts))
        .bind(&q.user)
        .bind(&q.action)
        .bind(q.limit as i64)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(
                |(
                    id,
                    at,
                    user_id,
                    username,
                    key_id,
                    client_ip,
                    action,
                    target,
                    status,
                    outcome,
                )| {
                    Ok(AuditEntry {
                        id,
                        at: parse_ts(&at)?,
                        user_id,
                        username,
                        key_id,
                        client_ip,
                        action,
                        target,
                        status: u16::try_from(status)
                            .map_err(|_| DbError::Corrupt(format!("status {status}")))?,
                        outcome: if outcome == "success" {
                            Outcome::Success
                        } else {
                            Outcome::Failure
                        },
                    })
                },
            )
            .collect()
    }
}

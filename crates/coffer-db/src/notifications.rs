//! Notification channels (a resource with a sealed secret), and the notifications sent through
//! them: each one a row from the moment it is due until it is delivered or given up on, with
//! every attempt kept. A pending notification survives a restart: the deliverer picks it up.

use chrono::{DateTime, Utc};
use coffer_types::{
    ChannelKind, DeliveryAttempt, DeliveryStatus, EmailSettings, Notification, NotificationChannel,
};

use crate::resources::{Statement, Stored};
use crate::{Db, DbError, Result, new_id, parse_opt_ts, parse_ts, ts};

#[derive(sqlx::FromRow)]
pub struct ChannelRow {
    id: String,
    name: String,
    kind: String,
    events: String,
    enabled: bool,
    target: String,
    email: Option<String>,
    created_at: String,
    updated_at: String,
}

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| DbError::Corrupt(format!("{what}: {e}")))
}

impl Stored for NotificationChannel {
    const TABLE: &'static str = "notification_channels";
    const SECRET: &'static str = "secret_sealed";
    const COLUMNS: &'static str =
        "t.id, t.name, t.kind, t.events, t.enabled, t.target, t.email, t.created_at, t.updated_at";
    const FIELDS: &'static [&'static str] =
        &["name", "kind", "events", "enabled", "target", "email"];
    /// Nothing holds on to a channel: its notifications go with it.
    const USED: &'static str = "0";
    type Row = ChannelRow;

    fn from_row(r: ChannelRow) -> Result<Self> {
        let kind: ChannelKind =
            serde_json::from_value(serde_json::Value::String(r.kind.clone()))
                .map_err(|_| DbError::Corrupt(format!("channel type {:?}", r.kind)))?;
        Ok(NotificationChannel {
            id: r.id,
            name: r.name,
            kind,
            events: json("channel events", &r.events)?,
            enabled: r.enabled,
            target: r.target,
            email: r
                .email
                .as_deref()
                .map(|e| json::<EmailSettings>("channel e-mail settings", e))
                .transpose()?,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }

    fn bind(&self, q: Statement) -> Statement {
        q.bind(self.name.clone())
            .bind(self.kind.as_str())
            .bind(serde_json::to_string(&self.events).expect("events serialize"))
            .bind(self.enabled)
            .bind(self.target.clone())
            .bind(
                self.email
                    .as_ref()
                    .map(|e| serde_json::to_string(e).expect("settings serialize")),
            )
    }

    fn in_use(&self) -> String {
        format!("notification channel {:?} is in use", self.name)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    channel_id: String,
    channel_name: String,
    event: String,
    job_id: Option<String>,
    title: String,
    text: String,
    status: String,
    attempts: String,
    next_attempt_at: Option<String>,
    created_at: String,
}

/// A due notification's row, with the body a webhook receives.
#[derive(sqlx::FromRow)]
struct DueRow {
    #[sqlx(flatten)]
    row: Row,
    payload: String,
}

const COLUMNS: &str = "id, channel_id, channel_name, event, job_id, title, text, status, attempts,
    next_attempt_at, created_at";

fn notification(r: Row) -> Result<Notification> {
    let status = match r.status.as_str() {
        "pending" => DeliveryStatus::Pending,
        "delivered" => DeliveryStatus::Delivered,
        "failed" => DeliveryStatus::Failed,
        other => return Err(DbError::Corrupt(format!("notification status {other:?}"))),
    };
    Ok(Notification {
        id: r.id,
        channel_id: r.channel_id,
        channel_name: r.channel_name,
        event: r.event,
        job_id: r.job_id,
        title: r.title,
        text: r.text,
        status,
        attempts: json("notification attempts", &r.attempts)?,
        next_attempt_at: parse_opt_ts(r.next_attempt_at)?,
        created_at: parse_ts(&r.created_at)?,
    })
}

/// A notification to send: to which channel, about what, and the body a webhook receives.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub channel: NotificationChannel,
    pub event: String,
    pub job_id: Option<String>,
    pub title: String,
    pub text: String,
    pub payload: String,
}

/// A notification due for delivery, with the body a webhook receives.
#[derive(Clone, Debug)]
pub struct Due {
    pub notification: Notification,
    pub payload: String,
}

impl Db {
    /// Queue a notification, due now.
    pub async fn add_notification(&self, n: &NewNotification) -> Result<Notification> {
        let id = new_id();
        let now = ts(Utc::now());
        sqlx::query(
            "INSERT INTO notifications (id, channel_id, channel_name, event, job_id, title, text,
                 payload, status, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9)",
        )
        .bind(&id)
        .bind(&n.channel.id)
        .bind(&n.channel.name)
        .bind(&n.event)
        .bind(&n.job_id)
        .bind(&n.title)
        .bind(&n.text)
        .bind(&n.payload)
        .bind(&now)
        .execute(self.pool())
        .await?;
        self.notification(&id).await
    }

    pub async fn notification(&self, id: &str) -> Result<Notification> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        notification(row.ok_or(DbError::NotFound("notification"))?)
    }

    /// The newest notifications first, at most `limit`.
    pub async fn notifications(&self, limit: u32) -> Result<Vec<Notification>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications ORDER BY created_at DESC, id LIMIT ?1"
        )))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(notification).collect()
    }

    /// The pending notifications due by `now`, oldest first; and when the next one after
    /// them is due.
    pub async fn due_notifications(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Due>, Option<DateTime<Utc>>)> {
        let rows: Vec<DueRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, payload FROM notifications
             WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id"
        )))
        .bind(ts(now))
        .fetch_all(self.pool())
        .await?;
        let due = rows
            .into_iter()
            .map(|r| {
                Ok(Due {
                    notification: notification(r.row)?,
                    payload: r.payload,
                })
            })
            .collect::<Result<_>>()?;
        let next: Option<String> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM notifications
             WHERE status = 'pending' AND next_attempt_at > ?1",
        )
        .bind(ts(now))
        .fetch_one(self.pool())
        .await?;
        Ok((due, parse_opt_ts(next)?))
    }

    /// Record an attempt at delivering notification `id`: delivered, failed for good, or tried
    /// again at `retry_at`.
    pub async fn attempted(
        &self,
        id: &str,
        attempt: &DeliveryAttempt,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<Notification> {
        let status = match (attempt.ok, retry_at) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET status = ?2, attempts = json_insert(attempts, '$[#]', json(?3)),
                 next_attempt_at = ?4
             WHERE id = ?1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(status.as_str())
        .bind(serde_json::to_string(attempt).expect("an attempt serializes"))
        .bind(retry_at.filter(|_| !attempt.ok).map(ts))
        .fetch_optional(self.pool())
        .await?;
        notification(row.ok_or(DbError::NotFound("notification"))?)
    }
}

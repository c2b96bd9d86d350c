//! Coffer's metadata store: an embedded SQLite database with versioned migrations.
//!
//! The only crate that knows SQL. Every statement is a string literal with bound parameters.
//! The database runs in WAL mode with foreign keys on: a process killed at any moment leaves it
//! consistent (SQLite's transactions), and readers never wait for the writer.
//!
//! Rules that must hold under concurrency are single statements, so SQLite makes them atomic:
//! "the first admin only while there are no users", "never remove or demote the last admin".

mod audit;
mod credentials;
mod drills;
mod jobs;
mod keys;
mod notifications;
mod pitr;
mod repositories;
mod resources;
mod restores;
mod tables;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use audit::{AuditQuery, NewAuditEntry};
pub use drills::DrillOutcome;
pub use jobs::{PITR_TRIGGER, RecordQuery, RunOutcome, SAFETY_TRIGGER, Scheduled, TriggerFilter};
pub use keys::KeyRecord;
pub use notifications::{Due as DueNotification, NewNotification};
pub use pitr::PitrProduced;
pub use resources::{Statement, Stored};
pub use restores::Restored;
pub use tables::{Row, Tables, schema_version};
pub use users::Session;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A name that must be unique is taken.
    #[error("{0}")]
    Taken(String),
    /// The job has a running record already.
    #[error("this job is already running: wait for the running record to finish")]
    JobRunning,
    /// A point-in-time recovery of the server is running already.
    #[error("a point-in-time recovery of this server is running: wait for it to finish")]
    PitrRunning,
    /// A drill of the job is running already.
    #[error("a restore drill of this job is running: wait for it to finish")]
    DrillRunning,
    /// What jobs use cannot be removed.
    #[error("{0}")]
    InUse(String),
    /// A rule about users would break (setup once, never zero admins).
    #[error("{0}")]
    Conflict(String),
    #[error("the metadata database was written by a newer Coffer (schema {0}); upgrade Coffer")]
    NewerVersion(i64),
    #[error("the disk holding the metadata database is full")]
    DiskFull,
    #[error("metadata database: {0}")]
    Storage(sqlx::Error),
    #[error("metadata database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("metadata database holds an invalid value: {0}")]
    Corrupt(String),
    #[error("metadata database holds an invalid value: {0}")]
    BadValue(coffer_types::BadValue),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        // SQLITE_FULL (13), also as an extended code; or the file system's ENOSPC.
        let full = match &e {
            sqlx::Error::Database(d) => d
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 13),
            sqlx::Error::Io(io) => io.raw_os_error() == Some(28),
            _ => false,
        };
        if full {
            DbError::DiskFull
        } else {
            DbError::Storage(e)
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Timestamps as stored: fixed-width RFC 3339 UTC, so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| DbError::Corrupt(format!("time {s:?}")))
}

pub(crate) fn parse_opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

pub(crate) fn parse_role(s: &str) -> Result<coffer_types::Role> {
    coffer_types::Role::from_str(s).map_err(DbError::BadValue)
}

pub(crate) fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A new random opaque id.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

type SettingRow = (String, String, String);

fn setting((key, value, at): SettingRow) -> Result<coffer_types::Setting> {
    let value = serde_json::from_str(&value)
        .map_err(|e| DbError::Corrupt(format!("setting {key}: {e}")))?;
    Ok(coffer_types::Setting {
        key,
        value,
        updated_at: parse_ts(&at)?,
    })
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    /// Refuses a database whose schema is newer than this Coffer knows.
    pub async fn open(path: &Path) -> Result<Db> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a crashed process loses nothing committed; power loss may
            // lose the last transactions but never corrupts the database.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // What is deleted (sessions, secrets) is overwritten, not left in free pages.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
        if let Some(v) = applied.filter(|v| *v > known) {
            return Err(DbError::NewerVersion(v));
        }
        MIGRATOR.run(&pool).await?;
        Ok(Db { pool })
    }

    /// A cheap query proving the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn setting(&self, key: &str) -> Result<Option<coffer_types::Setting>> {
        let row: Option<SettingRow> =
            sqlx::query_as("SELECT key, value, updated_at FROM settings WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.map(setting).transpose()
    }

    pub async fn settings(&self) -> Result<Vec<coffer_types::Setting>> {
        let rows: Vec<SettingRow> =
            sqlx::query_as("SELECT key, value, updated_at FROM settings ORDER BY key")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(setting).collect()
    }

    pub async fn put_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<coffer_types::Setting> {
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value.to_string())
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(coffer_types::Setting {
            key: key.to_string(),
            value: value.clone(),
            updated_at: now,
        })
    }

    /// Delete a setting, and every trace of it in the files: older versions of its row in
    /// free pages go with a `VACUUM`, and the checkpoint writes the clean pages over the old
    /// ones in the database file. For a setting that held a secret.
    pub async fn erase_setting(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM settings WHERE key = ?1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        sqlx::query("VACUUM").execute(&self.pool).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A secret the server keeps for itself, if it exists.
    pub async fn find_secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A secret the server keeps for itself, created with `make` on first use.
    pub async fn secret(&self, name: &str, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>> {
        let fresh = make();
        sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(&fresh)
            .bind(ts(Utc::now()))
            .execute(&self.pool)
            .await?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    pub async fn replace_secret(&self, name: &str, value: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
        )
        .bind(name)
        .bind(value)
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

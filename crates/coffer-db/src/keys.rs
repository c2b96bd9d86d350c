//! API keys. Only a hash of each key is stored; the key itself is shown once, at creation.

use chrono::{DateTime, Utc};
use coffer_types::{ApiKey, Role};

use crate::{Db, DbError, Result, new_id, parse_opt_ts, parse_role, parse_ts, ts};

type KeyRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A key as stored, with what authentication needs beyond its public description.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub info: ApiKey,
    pub revoked: bool,
}

fn key(row: KeyRow) -> Result<KeyRecord> {
    let (id, user_id, name, role, prefix, created, expires, revoked, last_used) = row;
    Ok(KeyRecord {
        info: ApiKey {
            id,
            name,
            role: parse_role(&role)?,
            user_id,
            prefix,
            created_at: parse_ts(&created)?,
            expires_at: parse_opt_ts(expires)?,
            last_used_at: parse_opt_ts(last_used)?,
        },
        revoked: revoked.is_some(),
    })
}

impl Db {
    pub async fn create_key(
        &self,
        user_id: &str,
        name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ApiKey> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, role, key_hash, prefix, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(role.as_str())
        .bind(key_hash)
        .bind(prefix)
        .bind(ts(Utc::now()))
        .bind(expires_at.map(ts))
        .execute(self.pool())
        .await?;
        Ok(self.key(&id).await?.info)
    }

    pub async fn key(&self, id: &str) -> Result<KeyRecord> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, user_id, name, role, prefix, created_at, expires_at, revoked_at, last_used_at
             FROM api_keys WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        key(row.ok_or(DbError::NotFound("API key"))?)
    }

    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, user_id, name, role, prefix, created_at, expires_at, revoked_at, last_used_at
             FROM api_keys WHERE key_hash = ?1",
        )
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(key).transpose()
    }

    /// Keys not revoked: of one user, or of everyone.
    pub async fn keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT id, user_id, name, role, prefix, created_at, expires_at, revoked_at, last_used_at
             FROM api_keys WHERE revoked_at IS NULL AND (?1 IS NULL OR user_id = ?1) ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(|r| key(r).map(|k| k.info)).collect()
    }

    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
                .bind(id)
                .bind(ts(Utc::now()))
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound("API key"));
        }
        Ok(())
    }

    pub async fn touch_key(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(ts(Utc::now()))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

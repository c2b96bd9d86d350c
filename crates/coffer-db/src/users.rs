//! Users and their sessions.

use chrono::{DateTime, Utc};
use coffer_types::{Role, User};

use crate::{Db, DbError, Result, new_id, parse_role, parse_ts, ts, unique_violation};

type UserRow = (String, String, String, String, String);

fn user(row: UserRow) -> Result<User> {
    let (id, username, role, created, updated) = row;
    Ok(User {
        id,
        username,
        role: parse_role(&role)?,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
    })
}

/// A session as stored: whose it is, until when, and whether it was revoked.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

impl Db {
    /// Create the first administrator; a conflict once any user exists.
    pub async fn create_first_admin(&self, username: &str, password_hash: &str) -> Result<User> {
        let (id, now) = (new_id(), ts(Utc::now()));
        let done = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at, updated_at)
             SELECT ?1, ?2, ?3, 'admin', ?4, ?4 WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(&id)
        .bind(username)
        .bind(password_hash)
        .bind(&now)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::Conflict(
                "setup is already done: an administrator exists".into(),
            ));
        }
        self.user(&id).await
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<User> {
        let (id, now) = (new_id(), ts(Utc::now()));
        let res = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(&id)
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(&now)
        .execute(self.pool())
        .await;
        match res {
            Err(e) if unique_violation(&e) => Err(DbError::Taken(format!(
                "the username {username:?} is taken"
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => self.user(&id).await,
        }
    }

    pub async fn user(&self, id: &str) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, created_at, updated_at FROM users WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        user(row.ok_or(DbError::NotFound("user"))?)
    }

    /// The user and the password hash to check a login against.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>> {
        let row: Option<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, username, role, created_at, updated_at, password_hash FROM users WHERE username = ?1 COLLATE NOCASE",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        row.map(|(a, b, c, d, e, hash)| Ok((user((a, b, c, d, e))?, hash)))
            .transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, username, role, created_at, updated_at FROM users ORDER BY username",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(user).collect()
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?)
    }

    /// Change a user's password and/or role. Demoting the last administrator is a conflict.
    pub async fn update_user(
        &self,
        id: &str,
        password_hash: Option<&str>,
        role: Option<Role>,
    ) -> Result<User> {
        let done = sqlx::query(
            "UPDATE users SET
                 password_hash = COALESCE(?2, password_hash),
                 role = COALESCE(?3, role),
                 updated_at = ?4
             WHERE id = ?1
               AND (COALESCE(?3, role) = 'admin' OR role != 'admin'
                    OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1)",
        )
        .bind(id)
        .bind(password_hash)
        .bind(role.map(|r| r.as_str()))
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            self.user(id).await?;
            return Err(DbError::Conflict(
                "the last administrator cannot be demoted".into(),
            ));
        }
        self.user(id).await
    }

    /// Delete a user (and their sessions and keys). Deleting the last administrator is a conflict.
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM users WHERE id = ?1
               AND (role != 'admin' OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1)",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            self.user(id).await?;
            return Err(DbError::Conflict(
                "the last administrator cannot be deleted".into(),
            ));
        }
        Ok(())
    }

    pub async fn create_session(
        &self,
        user_id: &str,
        expires_at: DateTime<Utc>,
        client_ip: Option<&str>,
    ) -> Result<String> {
        let id = new_id();
        sqlx::query("INSERT INTO sessions (id, user_id, created_at, expires_at, client_ip) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(&id)
            .bind(user_id)
            .bind(ts(Utc::now()))
            .bind(ts(expires_at))
            .bind(client_ip)
            .execute(self.pool())
            .await?;
        Ok(id)
    }

    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, user_id, expires_at, revoked_at FROM sessions WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|(id, user_id, exp, revoked)| {
            Ok(Session {
                id,
                user_id,
                expires_at: parse_ts(&exp)?,
                revoked: revoked.is_some(),
            })
        })
        .transpose()
    }

    pub async fn extend_session(&self, id: &str, expires_at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE sessions SET expires_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
            .bind(id)
            .bind(ts(expires_at))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn revoke_session(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
            .bind(id)
            .bind(ts(Utc::now()))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// End every session of one user (after a password change).
    pub async fn revoke_user_sessions(&self, user_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Revoke every session (used when the token signing key is replaced).
    pub async fn revoke_all_sessions(&self) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = ?1 WHERE revoked_at IS NULL")
            .bind(ts(Utc::now()))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

//! Database credentials. Passwords arrive sealed (by the job service's vault) and leave only
//! through `credential_password`; the API type never carries them.

use coffer_types::{Credential, DbEngine, TlsMode};

use crate::{Db, DbError, Result, parse_ts, ts, unique_violation};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    engine: String,
    host: Option<String>,
    port: i64,
    socket: Option<String>,
    user: String,
    has_password: bool,
    tls: String,
    created_at: String,
    updated_at: String,
}

const COLUMNS: &str = "id, name, engine, host, port, socket, user,
    password_sealed IS NOT NULL AS has_password, tls, created_at, updated_at";

/// Jobs whose sources name credential `?1`.
const USED_BY_JOBS: &str = "SELECT COUNT(*) FROM backup_jobs j, json_each(j.sources) s
    WHERE json_extract(s.value, '$.credential_id') = ?1";

fn parse<T: for<'de> serde::Deserialize<'de>>(what: &str, v: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| DbError::Corrupt(format!("credential {what} {v:?}")))
}

fn credential(r: Row) -> Result<Credential> {
    Ok(Credential {
        engine: parse::<DbEngine>("engine", &r.engine)?,
        tls: parse::<TlsMode>("tls", &r.tls)?,
        port: u16::try_from(r.port).map_err(|_| DbError::Corrupt(format!("port {}", r.port)))?,
        id: r.id,
        name: r.name,
        host: r.host,
        socket: r.socket,
        user: r.user,
        has_password: r.has_password,
        created_at: parse_ts(&r.created_at)?,
        updated_at: parse_ts(&r.updated_at)?,
    })
}

fn name_taken(e: sqlx::Error, name: &str) -> DbError {
    if unique_violation(&e) {
        DbError::Taken(format!("a credential named {name:?} already exists"))
    } else {
        e.into()
    }
}

impl Db {
    pub async fn credentials(&self) -> Result<Vec<Credential>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM credentials ORDER BY name"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(credential).collect()
    }

    pub async fn credential(&self, id: &str) -> Result<Credential> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM credentials WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        credential(row.ok_or(DbError::NotFound("credential"))?)
    }

    /// The sealed password of a credential, if it has one.
    pub async fn credential_password(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let v: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT password_sealed FROM credentials WHERE id = ?1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        v.ok_or(DbError::NotFound("credential"))
    }

    pub async fn create_credential(
        &self,
        c: &Credential,
        password: Option<&[u8]>,
    ) -> Result<Credential> {
        sqlx::query(
            "INSERT INTO credentials (id, name, engine, host, port, socket, user,
                 password_sealed, tls, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(c.engine.as_str())
        .bind(&c.host)
        .bind(i64::from(c.port))
        .bind(&c.socket)
        .bind(&c.user)
        .bind(password)
        .bind(c.tls.as_str())
        .bind(ts(c.created_at))
        .execute(self.pool())
        .await
        .map_err(|e| name_taken(e, &c.name))?;
        self.credential(&c.id).await
    }

    /// Store `c`'s fields; the password changes only with `password` (`Some(None)`: removed).
    pub async fn update_credential(
        &self,
        c: &Credential,
        password: Option<Option<&[u8]>>,
    ) -> Result<Credential> {
        let done = sqlx::query(
            "UPDATE credentials SET name = ?2, host = ?3, port = ?4, socket = ?5, user = ?6,
                 password_sealed = CASE WHEN ?7 THEN ?8 ELSE password_sealed END,
                 tls = ?9, updated_at = ?10
             WHERE id = ?1",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.host)
        .bind(i64::from(c.port))
        .bind(&c.socket)
        .bind(&c.user)
        .bind(password.is_some())
        .bind(password.flatten())
        .bind(c.tls.as_str())
        .bind(ts(chrono::Utc::now()))
        .execute(self.pool())
        .await
        .map_err(|e| name_taken(e, &c.name))?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound("credential"));
        }
        self.credential(&c.id).await
    }

    /// Delete a credential that no job's source names (a conflict otherwise).
    pub async fn delete_credential(&self, id: &str) -> Result<()> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM credentials WHERE id = ?1 AND ({USED_BY_JOBS}) = 0"
        )))
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            let c = self.credential(id).await?;
            return Err(DbError::InUse(format!(
                "credential {:?} is used by a job: remove it from the job's sources first",
                c.name
            )));
        }
        Ok(())
    }
}

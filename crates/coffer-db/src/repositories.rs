//! Repositories registered for jobs. Secrets arrive sealed (by the job service's vault) and
//! leave only through `repository_secret`; the API type never carries them.

use coffer_types::Repository;

use crate::{Db, DbError, Result, parse_ts, ts, unique_violation};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    has_secret: bool,
    encrypted: bool,
    jobs: i64,
    created_at: String,
    updated_at: String,
}

const COLUMNS: &str = "r.id, r.name, r.url, r.endpoint, r.region, r.access_key_id,
    r.secret_sealed IS NOT NULL AS has_secret, r.encrypted,
    (SELECT COUNT(*) FROM backup_jobs j WHERE j.repository_id = r.id) AS jobs,
    r.created_at, r.updated_at";

fn repository(r: Row) -> Result<Repository> {
    Ok(Repository {
        id: r.id,
        name: r.name,
        url: r.url,
        endpoint: r.endpoint,
        region: r.region,
        access_key_id: r.access_key_id,
        has_secret: r.has_secret,
        encrypted: r.encrypted,
        jobs: u32::try_from(r.jobs).unwrap_or(u32::MAX),
        created_at: parse_ts(&r.created_at)?,
        updated_at: parse_ts(&r.updated_at)?,
    })
}

fn name_taken(e: sqlx::Error, name: &str) -> DbError {
    if unique_violation(&e) {
        DbError::Taken(format!("a repository named {name:?} already exists"))
    } else {
        e.into()
    }
}

impl Db {
    pub async fn repositories(&self) -> Result<Vec<Repository>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM repositories r ORDER BY r.name"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(repository).collect()
    }

    pub async fn repository(&self, id: &str) -> Result<Repository> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM repositories r WHERE r.id = ?1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        repository(row.ok_or(DbError::NotFound("repository"))?)
    }

    /// The sealed secret key of a repository, if it has one.
    pub async fn repository_secret(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let v: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT secret_sealed FROM repositories WHERE id = ?1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        v.ok_or(DbError::NotFound("repository"))
    }

    pub async fn create_repository(
        &self,
        r: &Repository,
        secret: Option<&[u8]>,
    ) -> Result<Repository> {
        sqlx::query(
            "INSERT INTO repositories (id, name, url, endpoint, region, access_key_id,
                 secret_sealed, encrypted, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.url)
        .bind(&r.endpoint)
        .bind(&r.region)
        .bind(&r.access_key_id)
        .bind(secret)
        .bind(r.encrypted)
        .bind(ts(r.created_at))
        .execute(self.pool())
        .await
        .map_err(|e| name_taken(e, &r.name))?;
        self.repository(&r.id).await
    }

    /// Store `r`'s fields; the secret changes only when `secret` is given.
    pub async fn update_repository(
        &self,
        r: &Repository,
        secret: Option<&[u8]>,
    ) -> Result<Repository> {
        let done = sqlx::query(
            "UPDATE repositories SET name = ?2, url = ?3, endpoint = ?4, region = ?5,
                 access_key_id = ?6, secret_sealed = COALESCE(?7, secret_sealed),
                 encrypted = ?8, updated_at = ?9
             WHERE id = ?1",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.url)
        .bind(&r.endpoint)
        .bind(&r.region)
        .bind(&r.access_key_id)
        .bind(secret)
        .bind(r.encrypted)
        .bind(ts(chrono::Utc::now()))
        .execute(self.pool())
        .await
        .map_err(|e| name_taken(e, &r.name))?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound("repository"));
        }
        self.repository(&r.id).await
    }

    /// Delete a repository that no job uses (a conflict otherwise). The repository's data
    /// stays where it is.
    pub async fn delete_repository(&self, id: &str) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM repositories WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM backup_jobs WHERE repository_id = ?1)",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            let r = self.repository(id).await?;
            return Err(DbError::InUse(format!(
                "repository {:?} is used by {} job(s): delete them or point them elsewhere first",
                r.name, r.jobs
            )));
        }
        Ok(())
    }
}

//! Resources admins manage, each a table with a sealed secret: registered repositories and
//! database credentials (and what comes later, like notification channels). One generic
//! piece reads, writes and deletes them; each kind says only its table, its columns and what
//! uses it. Secrets arrive sealed (by the job service's vault) and leave only through
//! [`Db::sealed_secret`]; the API types never carry them.

use coffer_types::Resource;
use sqlx::sqlite::{SqliteArguments, SqliteRow};

use crate::{Db, DbError, Result, ts, unique_violation};

/// A statement with arguments bound to it.
pub type Statement = sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments>;

/// How one kind of resource is stored.
pub trait Stored: Resource + Unpin {
    /// Its table.
    const TABLE: &'static str;
    /// The column holding its sealed secret.
    const SECRET: &'static str;
    /// What the API type is read from (the table is `t`).
    const COLUMNS: &'static str;
    /// The columns [`Stored::bind`] fills, in its order (besides id, secret and times).
    const FIELDS: &'static [&'static str];
    /// An SQL condition, true while something uses the resource `?1`.
    const USED: &'static str;
    type Row: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin;

    fn from_row(row: Self::Row) -> Result<Self>;
    /// Bind the values of [`Stored::FIELDS`].
    fn bind(&self, q: Statement) -> Statement;
    /// Why it cannot be deleted while used.
    fn in_use(&self) -> String;
}

fn name_taken<T: Stored>(e: sqlx::Error, t: &T) -> DbError {
    if unique_violation(&e) {
        DbError::Taken(format!("a {} named {:?} already exists", T::KIND, t.name()))
    } else {
        e.into()
    }
}

impl Db {
    /// All of one kind, by name.
    pub async fn resources<T: Stored>(&self) -> Result<Vec<T>> {
        let rows: Vec<T::Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} t ORDER BY t.name",
            T::COLUMNS,
            T::TABLE
        )))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(T::from_row).collect()
    }

    pub async fn resource<T: Stored>(&self, id: &str) -> Result<T> {
        let row: Option<T::Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} t WHERE t.id = ?1",
            T::COLUMNS,
            T::TABLE
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        T::from_row(row.ok_or(DbError::NotFound(T::KIND))?)
    }

    /// The sealed secret of a resource, if it has one.
    pub async fn sealed_secret<T: Stored>(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let v: Option<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} WHERE id = ?1",
            T::SECRET,
            T::TABLE
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        v.ok_or(DbError::NotFound(T::KIND))
    }

    pub async fn create_resource<T: Stored>(&self, t: &T, secret: Option<&[u8]>) -> Result<T> {
        let n = T::FIELDS.len();
        let sql = format!(
            "INSERT INTO {} (id, {}, {}, created_at, updated_at) VALUES (?1, {}, ?{}, ?{}, ?{})",
            T::TABLE,
            T::FIELDS.join(", "),
            T::SECRET,
            (2..n + 2)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            n + 2,
            n + 3,
            n + 3,
        );
        t.bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(t.id().to_string()))
            .bind(secret.map(<[u8]>::to_vec))
            .bind(ts(chrono::Utc::now()))
            .execute(self.pool())
            .await
            .map_err(|e| name_taken(e, t))?;
        self.resource(t.id()).await
    }

    /// Store `t`'s fields; the secret changes only with `secret` (`Some(None)`: removed).
    pub async fn update_resource<T: Stored>(
        &self,
        t: &T,
        secret: Option<Option<&[u8]>>,
    ) -> Result<T> {
        let n = T::FIELDS.len();
        let sets: Vec<String> = T::FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{f} = ?{}", i + 2))
            .collect();
        let sql = format!(
            "UPDATE {} SET {}, {s} = CASE WHEN ?{} THEN ?{} ELSE {s} END, updated_at = ?{}
             WHERE id = ?1",
            T::TABLE,
            sets.join(", "),
            n + 2,
            n + 3,
            n + 4,
            s = T::SECRET,
        );
        let done = t
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(t.id().to_string()))
            .bind(secret.is_some())
            .bind(secret.flatten().map(<[u8]>::to_vec))
            .bind(ts(chrono::Utc::now()))
            .execute(self.pool())
            .await
            .map_err(|e| name_taken(e, t))?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound(T::KIND));
        }
        self.resource(t.id()).await
    }

    /// Delete a resource that nothing uses (a conflict otherwise).
    pub async fn delete_resource<T: Stored>(&self, id: &str) -> Result<()> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = ?1 AND NOT ({})",
            T::TABLE,
            T::USED
        )))
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::InUse(self.resource::<T>(id).await?.in_use()));
        }
        Ok(())
    }
}

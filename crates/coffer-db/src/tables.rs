//! Every table of the metadata database as data, for Coffer's own backups: read whole in one
//! transaction (one state of the database), and replaced whole in one transaction (all or
//! nothing). Values keep their SQLite type: INTEGER and REAL as JSON numbers, TEXT as strings,
//! NULL as null, BLOB as `{"hex": "…"}`.

use std::collections::BTreeMap;

use sqlx::{Column, Row as _, TypeInfo, ValueRef};

use crate::{Db, DbError, MIGRATOR, Result};

/// One row: column name → value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// Every table's rows, by table name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tables {
    /// The schema version they were taken at (the newest migration applied).
    pub schema: i64,
    pub rows: BTreeMap<String, Vec<Row>>,
}

impl Tables {
    /// Tables of an older schema brought to this one: loaded into a scratch database at their
    /// schema (`scratch`, a file that must not exist; removed afterwards), migrated as any
    /// database is, and read back. The tables `absent` are not among them and stay out.
    pub async fn migrated(self, scratch: &std::path::Path, absent: &[&str]) -> Result<Tables> {
        let current = schema_version();
        if self.schema == current {
            return Ok(self);
        }
        if self.schema > current {
            return Err(DbError::NewerVersion(self.schema));
        }
        let older: Vec<sqlx::migrate::Migration> = MIGRATOR
            .iter()
            .filter(|m| m.version <= self.schema)
            .cloned()
            .collect();
        if older.last().map(|m| m.version) != Some(self.schema) {
            return Err(DbError::Corrupt(format!(
                "no schema {} was ever written",
                self.schema
            )));
        }
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(scratch)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let migrated = async {
            sqlx::migrate::Migrator::with_migrations(older)
                .run(&pool)
                .await?;
            let db = Db { pool: pool.clone() };
            db.load(&self, absent).await?;
            MIGRATOR.run(&pool).await?;
            let mut tables = db.dump_tables().await?;
            tables.rows.retain(|t, _| !absent.contains(&t.as_str()));
            Ok(tables)
        }
        .await;
        pool.close().await;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = scratch.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        migrated
    }
}

/// The schema version this build of Coffer writes.
pub fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

fn corrupt(table: &str, message: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("table {table}: {message}"))
}

/// Coffer's own tables (not SQLite's, not the migrations' bookkeeping).
async fn table_names(c: &mut sqlx::SqliteConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(c)
    .await?)
}

fn value(row: &sqlx::sqlite::SqliteRow, i: usize, table: &str) -> Result<serde_json::Value> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(serde_json::Value::Null);
    }
    let kind = raw.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INTEGER" => row.try_get::<i64, _>(i)?.into(),
        "REAL" => serde_json::Number::from_f64(row.try_get::<f64, _>(i)?)
            .map(serde_json::Value::Number)
            .ok_or_else(|| corrupt(table, "a REAL that is not a number"))?,
        "TEXT" => row.try_get::<String, _>(i)?.into(),
        "BLOB" => serde_json::json!({ "hex": hex::encode(row.try_get::<Vec<u8>, _>(i)?) }),
        other => return Err(corrupt(table, format!("a value of type {other}"))),
    })
}

impl Db {
    /// How many records are running now.
    pub async fn running_records(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM backup_records WHERE status = 'running'")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Every row of every table, read in one transaction.
    pub async fn dump_tables(&self) -> Result<Tables> {
        let mut tx = self.pool().begin().await?;
        let schema: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
                .fetch_one(&mut *tx)
                .await?;
        let mut rows = BTreeMap::new();
        for table in table_names(&mut tx).await? {
            let all = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{table}\"")))
                .fetch_all(&mut *tx)
                .await?;
            let mut out = Vec::with_capacity(all.len());
            for r in &all {
                let mut row = Row::new();
                for (i, c) in r.columns().iter().enumerate() {
                    row.insert(c.name().to_string(), value(r, i, &table)?);
                }
                out.push(row);
            }
            rows.insert(table, out);
        }
        tx.commit().await?;
        Ok(Tables { schema, rows })
    }

    /// Replace the rows of every table with `tables`, in one transaction: on any failure
    /// nothing changes. `tables` must be of this schema version and name exactly this
    /// database's tables but those in `keep`, which stay as they are (their rows whose
    /// parents are gone excepted); foreign keys are checked when it commits.
    pub async fn replace_tables(&self, tables: &Tables, keep: &[&str]) -> Result<()> {
        if tables.schema != schema_version() {
            return Err(DbError::Conflict(format!(
                "the tables are of schema {}, this database of schema {}",
                tables.schema,
                schema_version()
            )));
        }
        self.load(tables, keep).await
    }

    /// `replace_tables` without the schema check: the database is at the tables' schema.
    async fn load(&self, tables: &Tables, keep: &[&str]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let names = table_names(&mut tx).await?;
        let replaced: Vec<&String> = names
            .iter()
            .filter(|n| !keep.contains(&n.as_str()))
            .collect();
        let given: Vec<&String> = tables.rows.keys().collect();
        if given != replaced {
            return Err(DbError::Conflict(format!(
                "the tables given ({given:?}) are not this database's ({replaced:?})"
            )));
        }
        // Kept rows are set aside: deleting their parents may cascade to them.
        for table in keep {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TEMP TABLE \"kept_{table}\" AS SELECT * FROM \"{table}\""
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("PRAGMA defer_foreign_keys = ON")
            .execute(&mut *tx)
            .await?;
        for table in &replaced {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM \"{table}\"")))
                .execute(&mut *tx)
                .await?;
        }
        for (table, rows) in &tables.rows {
            for row in rows {
                let columns: Vec<String> = row
                    .keys()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect();
                let marks: Vec<String> = (1..=row.len()).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "INSERT INTO \"{table}\" ({}) VALUES ({})",
                    columns.join(", "),
                    marks.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for v in row.values() {
                    q = match v {
                        serde_json::Value::Null => q.bind(None::<String>),
                        serde_json::Value::Bool(b) => q.bind(*b),
                        serde_json::Value::Number(n) => match n.as_i64() {
                            Some(i) => q.bind(i),
                            None => q.bind(n.as_f64()),
                        },
                        serde_json::Value::String(s) => q.bind(s.clone()),
                        serde_json::Value::Object(o) => {
                            let bytes = o
                                .get("hex")
                                .and_then(|h| h.as_str())
                                .and_then(|h| hex::decode(h).ok())
                                .ok_or_else(|| {
                                    corrupt(table, "an object that is not {\"hex\": …}")
                                })?;
                            q.bind(bytes)
                        }
                        serde_json::Value::Array(_) => {
                            return Err(corrupt(table, "an array where a value belongs"));
                        }
                    };
                }
                q.execute(&mut *tx).await?;
            }
        }
        for table in keep {
            // Back, but for the rows whose parents are gone.
            let parents: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1)",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            let mut sql =
                format!("INSERT OR IGNORE INTO \"{table}\" SELECT * FROM \"kept_{table}\" WHERE 1");
            for (parent, from, to) in &parents {
                sql += &format!(" AND \"{from}\" IN (SELECT \"{to}\" FROM \"{parent}\")");
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM \"{table}\"")))
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"kept_{table}\"")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn tables_taken_from_one_database_replace_another_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let a = Db::open(&dir.path().join("a.db")).await.unwrap();
        let admin = a.create_first_admin("admin", "hash").await.unwrap();
        a.put_setting("greeting", &serde_json::json!({"say": "hello"}))
            .await
            .unwrap();
        let taken = a.dump_tables().await.unwrap();
        assert_eq!(taken.schema, schema_version());
        assert_eq!(taken.rows["users"].len(), 1);

        let b = Db::open(&dir.path().join("b.db")).await.unwrap();
        b.create_first_admin("someone-else", "hash").await.unwrap();
        b.replace_tables(&taken, &[]).await.unwrap();
        assert_eq!(b.dump_tables().await.unwrap(), taken);
        assert_eq!(b.user_count().await.unwrap(), 1);
        assert!(b.user(&admin.id).await.is_ok());

        // All or nothing: a row that breaks a rule leaves the database as it was.
        let mut broken = taken.clone();
        let mut row = broken.rows["users"][0].clone();
        row.insert("id".into(), "another".into());
        broken.rows.get_mut("users").unwrap().push(row);
        assert!(b.replace_tables(&broken, &[]).await.is_err());
        assert_eq!(b.dump_tables().await.unwrap(), taken);

        // Kept tables stay, but for rows whose parents are gone.
        let hour = chrono::Utc::now() + chrono::Duration::hours(1);
        let kept = b.create_session(&admin.id, hour, None).await.unwrap();
        let stranger = b
            .create_user("stranger", "hash", coffer_types::Role::Viewer)
            .await
            .unwrap();
        let gone = b.create_session(&stranger.id, hour, None).await.unwrap();
        let mut other = taken.clone();
        other.rows.remove("sessions");
        b.replace_tables(&other, &["sessions"]).await.unwrap();
        assert!(b.session(&kept).await.unwrap().is_some());
        assert!(b.session(&gone).await.unwrap().is_none());

        // Tables of the schema before the newest migration (before notifications had tables
        // of their own) are migrated: what was added since gets its defaults.
        let mut old = taken.clone();
        old.schema -= 1;
        old.rows.remove("notification_channels");
        old.rows.remove("notifications");
        let scratch = dir.path().join("scratch.db");
        let brought = old.migrated(&scratch, &[]).await.unwrap();
        assert_eq!(brought.schema, schema_version());
        assert_eq!(brought.rows["users"], taken.rows["users"]);
        assert!(!scratch.exists());

        // Another schema is refused before anything changes.
        let older = Tables {
            schema: taken.schema - 1,
            ..taken.clone()
        };
        assert!(matches!(
            b.replace_tables(&older, &[]).await,
            Err(DbError::Conflict(_))
        ));
    }
}

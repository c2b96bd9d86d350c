//! Database credentials, stored with their sealed password.

use coffer_types::{Credential, DbEngine, TlsMode};

use crate::resources::{Statement, Stored};
use crate::{DbError, Result, parse_ts};

#[derive(sqlx::FromRow)]
pub struct Row {
    id: String,
    name: String,
    engine: String,
    host: Option<String>,
    port: i64,
    socket: Option<String>,
    user: String,
    has_password: bool,
    tls: String,
    pitr: bool,
    pitr_repository_id: Option<String>,
    created_at: String,
    updated_at: String,
}

fn parse<T: for<'de> serde::Deserialize<'de>>(what: &str, v: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| DbError::Corrupt(format!("credential {what} {v:?}")))
}

impl Stored for Credential {
    const TABLE: &'static str = "credentials";
    const SECRET: &'static str = "password_sealed";
    const COLUMNS: &'static str = "t.id, t.name, t.engine, t.host, t.port, t.socket, t.user,
        t.password_sealed IS NOT NULL AS has_password, t.tls, t.pitr, t.pitr_repository_id, t.created_at,
        t.updated_at";
    const FIELDS: &'static [&'static str] = &[
        "name",
        "engine",
        "host",
        "port",
        "socket",
        "user",
        "tls",
        "pitr",
        "pitr_repository_id",
    ];
    /// Jobs whose sources name the credential.
    const USED: &'static str = "EXISTS (SELECT 1 FROM backup_jobs j, json_each(j.sources) s
        WHERE json_extract(s.value, '$.credential_id') = ?1)";
    type Row = Row;

    fn from_row(r: Row) -> Result<Self> {
        Ok(Credential {
            engine: parse::<DbEngine>("engine", &r.engine)?,
            tls: parse::<TlsMode>("tls", &r.tls)?,
            port: u16::try_from(r.port)
                .map_err(|_| DbError::Corrupt(format!("port {}", r.port)))?,
            id: r.id,
            name: r.name,
            host: r.host,
            socket: r.socket,
            user: r.user,
            has_password: r.has_password,
            pitr: r.pitr,
            pitr_repository_id: r.pitr_repository_id,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }

    fn bind(&self, q: Statement) -> Statement {
        q.bind(self.name.clone())
            .bind(self.engine.as_str())
            .bind(self.host.clone())
            .bind(i64::from(self.port))
            .bind(self.socket.clone())
            .bind(self.user.clone())
            .bind(self.tls.as_str())
            .bind(self.pitr)
            .bind(self.pitr_repository_id.clone())
    }

    fn in_use(&self) -> String {
        format!(
            "credential {:?} is used by a job: remove it from the job's sources first",
            self.name
        )
    }
}

//! Repositories registered for jobs, stored with their sealed S3 secret key.

use coffer_types::Repository;

use crate::resources::{Statement, Stored};
use crate::{Result, parse_ts};

#[derive(sqlx::FromRow)]
pub struct Row {
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

impl Stored for Repository {
    const TABLE: &'static str = "repositories";
    const SECRET: &'static str = "secret_sealed";
    const COLUMNS: &'static str = "t.id, t.name, t.url, t.endpoint, t.region, t.access_key_id,
        t.secret_sealed IS NOT NULL AS has_secret, t.encrypted,
        (SELECT COUNT(*) FROM backup_jobs j WHERE j.repository_id = t.id) AS jobs,
        t.created_at, t.updated_at";
    const FIELDS: &'static [&'static str] = &[
        "name",
        "url",
        "endpoint",
        "region",
        "access_key_id",
        "encrypted",
    ];
    const USED: &'static str = "EXISTS (SELECT 1 FROM backup_jobs WHERE repository_id = ?1)
        OR EXISTS (SELECT 1 FROM credentials WHERE pitr_repository_id = ?1)";
    type Row = Row;

    fn from_row(r: Row) -> Result<Self> {
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

    fn bind(&self, q: Statement) -> Statement {
        q.bind(self.name.clone())
            .bind(self.url.clone())
            .bind(self.endpoint.clone())
            .bind(self.region.clone())
            .bind(self.access_key_id.clone())
            .bind(self.encrypted)
    }

    /// The repository's data stays where it is when it is deleted.
    fn in_use(&self) -> String {
        format!(
            "repository {:?} is used by {} job(s) or a credential's binary log archive: \
             delete them or point them elsewhere first",
            self.name, self.jobs
        )
    }
}

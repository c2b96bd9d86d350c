//! Database credentials: validation, and passwords sealed by the vault. Only the runner ever
//! sees a password in clear, and hands it to a dump tool through its environment or a private
//! option file — never a command line, never a log.

use coffer_types::{Check, Credential, CredentialInput, CredentialUpdate};

use crate::resources::Managed;
use crate::spec::{self, field};
use crate::{Jobs, Result};

/// Exactly one of `host` and `socket`; a socket is an absolute path; a user is named.
fn check(c: &Credential) -> Result<()> {
    match (&c.host, &c.socket) {
        (Some(h), None) if !h.trim().is_empty() => {}
        (None, Some(s)) => spec::absolute("socket", s)?,
        _ => return Err(field("host", "give either host (and port) or socket").into()),
    }
    if c.user.trim().is_empty() {
        return Err(field("user", "name the database user").into());
    }
    if c.port == 0 {
        return Err(field("port", "the port must be 1 to 65535").into());
    }
    if c.pitr && c.engine != coffer_types::DbEngine::Mysql {
        return Err(field(
            "pitr",
            "point-in-time recovery archives a MySQL or MariaDB server's binary log",
        )
        .into());
    }
    Ok(())
}

/// The archive repository named, as stored: a registered repository (none: the default).
async fn archive_repository(jobs: &Jobs, id: Option<String>) -> Result<Option<String>> {
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    match jobs.db.resource::<coffer_types::Repository>(&id).await {
        Ok(r) => Ok(Some(r.id)),
        Err(coffer_db::DbError::NotFound(_)) => Err(field(
            "pitr_repository_id",
            format!("there is no registered repository {id}"),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

impl Managed for Credential {
    async fn make(
        jobs: &Jobs,
        id: String,
        input: CredentialInput,
    ) -> Result<(Self, Option<String>)> {
        let now = chrono::Utc::now();
        let c = Credential {
            id,
            name: spec::name(&input.name)?,
            port: input.port.unwrap_or(input.engine.default_port()),
            engine: input.engine,
            host: input.host.filter(|h| !h.is_empty()),
            socket: input.socket.filter(|s| !s.is_empty()),
            user: input.user,
            has_password: input.password.is_some(),
            tls: input.tls.unwrap_or_default(),
            pitr: input.pitr.unwrap_or(false),
            pitr_repository_id: archive_repository(jobs, input.pitr_repository_id).await?,
            created_at: now,
            updated_at: now,
        };
        check(&c)?;
        Ok((c, input.password))
    }

    async fn change(
        jobs: &Jobs,
        mut c: Self,
        u: CredentialUpdate,
    ) -> Result<(Self, Option<String>)> {
        if let Some(name) = u.name {
            c.name = spec::name(&name)?;
        }
        // Host and socket replace each other.
        if let Some(h) = u.host {
            c.host = Some(h).filter(|h| !h.is_empty());
            c.socket = None;
        }
        if let Some(s) = u.socket {
            c.socket = Some(s).filter(|s| !s.is_empty());
            c.host = None;
        }
        if let Some(p) = u.port {
            c.port = p;
        }
        if let Some(user) = u.user {
            c.user = user;
        }
        if let Some(t) = u.tls {
            c.tls = t;
        }
        if let Some(p) = u.pitr {
            c.pitr = p;
        }
        if let Some(r) = u.pitr_repository_id {
            c.pitr_repository_id = archive_repository(jobs, Some(r)).await?;
        }
        check(&c)?;
        Ok((c, u.password))
    }

    async fn test(jobs: &Jobs, c: Self) -> Result<Check> {
        jobs.test_credential(c).await
    }
}

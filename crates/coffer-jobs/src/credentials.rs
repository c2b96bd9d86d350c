//! Database credentials: validation, and passwords sealed by the vault. Only the runner ever
//! sees a password in clear, and hands it to a dump tool through its environment or a private
//! option file — never a command line, never a log.

use coffer_types::{Credential, CredentialInput, CredentialUpdate};

use crate::spec::{self, FieldError};
use crate::{Jobs, JobsError, Result};

/// What a sealed password is bound to.
fn context(id: &str) -> String {
    format!("credential:{id}")
}

fn field(name: &'static str, message: impl Into<String>) -> JobsError {
    JobsError::Field(FieldError {
        field: name,
        message: message.into(),
    })
}

/// Exactly one of `host` and `socket`; a socket is an absolute path; a user is named.
fn check(c: &Credential) -> Result<()> {
    match (&c.host, &c.socket) {
        (Some(h), None) if !h.trim().is_empty() => {}
        (None, Some(s)) => spec::absolute("socket", s)?,
        _ => return Err(field("host", "give either host (and port) or socket")),
    }
    if c.user.trim().is_empty() {
        return Err(field("user", "name the database user"));
    }
    if c.port == 0 {
        return Err(field("port", "the port must be 1 to 65535"));
    }
    Ok(())
}

impl Jobs {
    pub async fn credentials(&self) -> Result<Vec<Credential>> {
        Ok(self.db.credentials().await?)
    }

    pub async fn credential(&self, id: &str) -> Result<Credential> {
        Ok(self.db.credential(id).await?)
    }

    pub async fn create_credential(&self, input: CredentialInput) -> Result<Credential> {
        let now = chrono::Utc::now();
        let c = Credential {
            id: coffer_db::new_id(),
            name: spec::name(&input.name)?,
            port: input.port.unwrap_or(input.engine.default_port()),
            engine: input.engine,
            host: input.host.filter(|h| !h.is_empty()),
            socket: input.socket.filter(|s| !s.is_empty()),
            user: input.user,
            has_password: input.password.is_some(),
            tls: input.tls.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        };
        check(&c)?;
        let sealed = input.password.map(|p| self.vault.seal(&p, &context(&c.id)));
        Ok(self.db.create_credential(&c, sealed.as_deref()).await?)
    }

    pub async fn update_credential(&self, id: &str, u: CredentialUpdate) -> Result<Credential> {
        let mut c = self.db.credential(id).await?;
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
        check(&c)?;
        let sealed = u
            .password
            .map(|p| (!p.is_empty()).then(|| self.vault.seal(&p, &context(id))));
        Ok(self
            .db
            .update_credential(&c, sealed.as_ref().map(|s| s.as_deref()))
            .await?)
    }

    pub async fn delete_credential(&self, id: &str) -> Result<()> {
        Ok(self.db.delete_credential(id).await?)
    }

    /// A credential's password in clear, for a run.
    pub(crate) async fn credential_password(&self, id: &str) -> Result<Option<String>> {
        match self.db.credential_password(id).await? {
            Some(sealed) => Ok(Some(self.vault.open(&sealed, &context(id))?)),
            None => Ok(None),
        }
    }
}

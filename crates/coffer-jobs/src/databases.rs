//! Database sources: PostgreSQL dumps streamed into the snapshot as
//! `postgres/<credential>/<database>.dump` (and `globals.sql` for a whole server), restored with
//! `pg_restore` into the original database or another one.

use std::collections::HashMap;

use coffer_repo::{BackupItem, Id, Repository};
use coffer_sources::postgres::{Dump, Login};
use coffer_types::{DbEngine, Source};

use crate::spec::FieldError;
use crate::{Jobs, JobsError, Result};

/// The logins of a run's database sources, by credential id: the folder name and the login.
pub type Logins = HashMap<String, (String, Login)>;

/// A name as one path component: `/` and `%` escaped, `.` and `..` never produced.
fn component(name: &str) -> String {
    let s = name
        .replace('%', "%25")
        .replace('/', "%2F")
        .replace('\0', "%00");
    match s.as_str() {
        "" | "." | ".." => s.replace('.', "%2E") + "%",
        _ => s,
    }
}

/// Where a database's dump lives in the snapshot.
pub(crate) fn dump_path(folder: &str, database: &str) -> String {
    format!("postgres/{folder}/{}.dump", component(database))
}

/// A dump that starts its tool only when the engine first reads it, so that the databases of
/// a run are dumped one after the other.
struct Lazy<F: FnOnce() -> std::result::Result<Dump, String>> {
    start: Option<F>,
    dump: Option<Dump>,
}

impl<F: FnOnce() -> std::result::Result<Dump, String>> std::io::Read for Lazy<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(start) = self.start.take() {
            self.dump = Some(start().map_err(std::io::Error::other)?);
        }
        match &mut self.dump {
            Some(d) => d.read(buf),
            None => Ok(0),
        }
    }
}

fn lazy(
    name: String,
    start: impl FnOnce() -> std::result::Result<Dump, String> + Send + 'static,
) -> std::result::Result<BackupItem, String> {
    let reader = Lazy {
        start: Some(start),
        dump: None,
    };
    BackupItem::named(&name, coffer_repo::Source::Stream(Box::new(reader)))
        .map_err(|e| e.to_string())
}

/// The engine items of a postgres source (blocking: asks the server for its version and, for
/// `all`, its databases). With `keep_missing` (a safety record), a database that does not
/// exist is no error: there is nothing to save.
pub(crate) fn backup_items(
    source: &Source,
    logins: &Logins,
    keep_missing: bool,
) -> std::result::Result<Vec<BackupItem>, String> {
    let Source::Postgres {
        credential_id,
        database,
        all,
    } = source
    else {
        return Ok(vec![]);
    };
    let (folder, login) = logins
        .get(credential_id)
        .ok_or_else(|| format!("credential {credential_id} is gone"))?;
    let major = login.server_major().map_err(|e| e.to_string())?;
    let existing = login.databases().map_err(|e| e.to_string())?;
    let databases = match database {
        Some(d) if keep_missing && !existing.contains(d) => vec![],
        Some(d) => vec![d.clone()],
        None => existing,
    };
    let mut items = vec![];
    if *all {
        let l = login.clone();
        items.push(lazy(format!("postgres/{folder}/globals.sql"), move || {
            l.dump_globals(Some(major)).map_err(|e| e.to_string())
        })?);
    }
    for db in databases {
        let l = login.clone();
        items.push(lazy(dump_path(folder, &db), move || {
            l.dump(&db, Some(major)).map_err(|e| e.to_string())
        })?);
    }
    Ok(items)
}

/// Restore `database`'s dump from the snapshot into `into` (dropped and created anew).
pub(crate) fn restore(
    repo: &Repository,
    id: &Id,
    (folder, login): &(String, Login),
    database: &str,
    into: &str,
) -> std::result::Result<(u64, u64), String> {
    let major = login.server_major().ok();
    let path = dump_path(folder, database);
    // The dump flows from the repository into pg_restore through a pipe: no copy on disk.
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let feeder = s.spawn(move || {
            let r = coffer_repo::cat(repo, id, &path, &mut writer);
            drop(writer);
            r
        });
        let restored = login
            .restore(into, &mut reader, major)
            .map_err(|e| e.to_string());
        drop(reader);
        let size = feeder
            .join()
            .map_err(|_| "reading the dump crashed".to_string())?
            .map_err(|e| e.to_string())?;
        restored.map(|()| (1, size))
    })
}

impl Jobs {
    /// The logins of the postgres sources among `sources`.
    pub(crate) async fn logins(&self, sources: &[Source]) -> Result<Logins> {
        let mut logins = Logins::new();
        for s in sources {
            let Source::Postgres { credential_id, .. } = s else {
                continue;
            };
            if logins.contains_key(credential_id) {
                continue;
            }
            let c = self.db.credential(credential_id).await?;
            let password = self.credential_password(credential_id).await?;
            let login = Login {
                host: c.host.or(c.socket).unwrap_or_default(),
                port: c.port,
                user: c.user,
                password,
                sslmode: c.tls.as_str().to_string(),
            };
            logins.insert(credential_id.clone(), (component(&c.name), login));
        }
        Ok(logins)
    }

    /// Every postgres source names a stored PostgreSQL credential.
    pub(crate) async fn check_credentials(&self, sources: &[Source]) -> Result<()> {
        for s in sources {
            let Source::Postgres { credential_id, .. } = s else {
                continue;
            };
            let bad = |message: String| {
                JobsError::Field(FieldError {
                    field: "sources",
                    message,
                })
            };
            match self.db.credential(credential_id).await {
                Ok(c) if c.engine == DbEngine::Postgres => {}
                Ok(c) => {
                    return Err(bad(format!(
                        "credential {:?} is for {}, not PostgreSQL",
                        c.name,
                        c.engine.as_str()
                    )));
                }
                Err(coffer_db::DbError::NotFound(_)) => {
                    return Err(bad(format!("there is no credential {credential_id:?}")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

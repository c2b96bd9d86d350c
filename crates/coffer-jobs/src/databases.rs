//! Database sources: dumps streamed into the snapshot — PostgreSQL as
//! `postgres/<credential>/<database>.dump` (custom format; `globals.sql` for a whole server),
//! MySQL/MariaDB as `mysql/<credential>/<database>.sql` — and restored with the engine's own
//! tools into the original database or another one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coffer_repo::{BackupItem, Id, Repository};
use coffer_sources::{Dump, SourceError, mysql, postgres};
use coffer_types::{DatabaseDump, DbEngine, Source};

use crate::spec::FieldError;
use crate::{Jobs, JobsError, Result};

/// How a run reaches one database server.
#[derive(Clone, Debug)]
pub enum Login {
    Postgres(postgres::Login),
    Mysql(mysql::Login),
}

impl Login {
    pub(crate) fn engine(&self) -> DbEngine {
        match self {
            Login::Postgres(_) => DbEngine::Postgres,
            Login::Mysql(_) => DbEngine::Mysql,
        }
    }

    pub(crate) fn databases(&self) -> std::result::Result<Vec<String>, SourceError> {
        match self {
            Login::Postgres(l) => l.databases(),
            Login::Mysql(l) => l.databases(),
        }
    }
}

/// The logins of a run's database sources, by credential id (the folder name and the login),
/// and the dumps the run made.
#[derive(Clone, Debug, Default)]
pub struct Logins {
    logins: HashMap<String, (String, Login)>,
    dumps: Arc<Mutex<Vec<DatabaseDump>>>,
}

impl Logins {
    pub(crate) fn get(&self, credential_id: &str) -> Option<&(String, Login)> {
        self.logins.get(credential_id)
    }

    /// The dumps read to their end so far, in order.
    pub(crate) fn dumps(&self) -> Vec<DatabaseDump> {
        self.dumps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

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
pub(crate) fn dump_path(engine: DbEngine, folder: &str, database: &str) -> String {
    match engine {
        DbEngine::Postgres => format!("postgres/{folder}/{}.dump", component(database)),
        DbEngine::Mysql => format!("mysql/{folder}/{}.sql", component(database)),
    }
}

/// A dump that starts its tool only when the engine first reads it, so that the databases of
/// a run are dumped one after the other; a dump read to its end is logged with its size.
struct Lazy<F: FnOnce() -> std::result::Result<Dump, SourceError>> {
    start: Option<F>,
    dump: Option<Dump>,
    entry: DatabaseDump,
    log: Arc<Mutex<Vec<DatabaseDump>>>,
}

impl<F: FnOnce() -> std::result::Result<Dump, SourceError>> std::io::Read for Lazy<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(start) = self.start.take() {
            self.dump = Some(start().map_err(std::io::Error::other)?);
        }
        let n = match &mut self.dump {
            Some(d) => d.read(buf)?,
            None => return Ok(0),
        };
        self.entry.size_bytes += n as u64;
        if n == 0 && !buf.is_empty() {
            self.dump = None;
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(self.entry.clone());
        }
        Ok(n)
    }
}

impl Logins {
    fn lazy(
        &self,
        name: String,
        entry: DatabaseDump,
        start: impl FnOnce() -> std::result::Result<Dump, SourceError> + Send + 'static,
    ) -> std::result::Result<BackupItem, String> {
        let reader = Lazy {
            start: Some(start),
            dump: None,
            entry,
            log: self.dumps.clone(),
        };
        BackupItem::named(&name, coffer_repo::Source::Stream(Box::new(reader)))
            .map_err(|e| e.to_string())
    }
}

/// The engine items of a database source (blocking: asks a whole server for its databases,
/// and PostgreSQL for its version). A safety record never gets here for a database that does
/// not exist: the restore leaves such sources out first (`Jobs::existing`).
pub(crate) fn backup_items(
    source: &Source,
    logins: &Logins,
) -> std::result::Result<Vec<BackupItem>, String> {
    let Some((credential_id, database, _)) = source.database() else {
        return Ok(vec![]);
    };
    let (folder, login) = logins
        .get(credential_id)
        .ok_or_else(|| format!("credential {credential_id} is gone"))?;
    let databases = match database {
        Some(d) => vec![d.to_string()],
        None => login.databases().map_err(|e| e.to_string())?,
    };
    let mut items = vec![];
    let engine = login.engine();
    let entry = |database: &str, tool: &str| DatabaseDump {
        engine,
        database: database.to_string(),
        tool: tool.to_string(),
        size_bytes: 0,
    };
    match login {
        Login::Postgres(l) => {
            let major = l.server_major().map_err(|e| e.to_string())?;
            if database.is_none() {
                let l = l.clone();
                items.push(logins.lazy(
                    format!("postgres/{folder}/globals.sql"),
                    entry("(globals)", &format!("pg_dumpall {major}")),
                    move || l.dump_globals(Some(major)),
                )?);
            }
            for db in databases {
                let l = l.clone();
                let e = entry(&db, &format!("pg_dump {major}"));
                items.push(logins.lazy(dump_path(engine, folder, &db), e, move || {
                    l.dump(&db, Some(major))
                })?);
            }
        }
        Login::Mysql(l) => {
            let tool = mysql::dump_tool();
            let tool = tool
                .file_name()
                .map_or("mysqldump".into(), |n| n.to_string_lossy());
            for db in databases {
                let l = l.clone();
                let e = entry(&db, &tool);
                items.push(logins.lazy(dump_path(engine, folder, &db), e, move || l.dump(&db))?);
            }
        }
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
    let path = dump_path(login.engine(), folder, database);
    // The dump flows from the repository into the restore tool through a pipe: no copy on disk.
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let feeder = s.spawn(move || {
            let r = coffer_repo::cat(repo, id, &path, &mut writer);
            drop(writer);
            r
        });
        let restored = match login {
            Login::Postgres(l) => l.restore(into, &mut reader, l.server_major().ok()),
            Login::Mysql(l) => l.restore(into, &mut reader),
        }
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
    /// The logins of the database sources among `sources`.
    pub(crate) async fn logins(&self, sources: &[Source]) -> Result<Logins> {
        let mut logins = Logins::default();
        for (credential_id, _, _) in sources.iter().filter_map(Source::database) {
            if logins.logins.contains_key(credential_id) {
                continue;
            }
            let c = self.db.credential(credential_id).await?;
            let password = self.credential_password(credential_id).await?;
            let login = match c.engine {
                DbEngine::Postgres => Login::Postgres(postgres::Login {
                    host: c.host.or(c.socket).unwrap_or_default(),
                    port: c.port,
                    user: c.user,
                    password,
                    sslmode: c.tls.as_str().to_string(),
                }),
                DbEngine::Mysql => Login::Mysql(mysql::Login {
                    host: c.host,
                    port: c.port,
                    socket: c.socket,
                    user: c.user,
                    password,
                    tls: c.tls.as_str().to_string(),
                    scratch: self.scratch_dir(),
                }),
            };
            logins
                .logins
                .insert(credential_id.to_string(), (component(&c.name), login));
        }
        Ok(logins)
    }

    /// Every database source names a stored credential of its engine.
    pub(crate) async fn check_credentials(&self, sources: &[Source]) -> Result<()> {
        for (credential_id, _, engine) in sources.iter().filter_map(Source::database) {
            let bad = |message: String| {
                JobsError::Field(FieldError {
                    field: "sources",
                    message,
                })
            };
            match self.db.credential(credential_id).await {
                Ok(c) if c.engine == engine => {}
                Ok(c) => {
                    return Err(bad(format!(
                        "credential {:?} is for {}, not {}",
                        c.name,
                        c.engine.as_str(),
                        engine.as_str()
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

    /// Whether a database source's database exists now (any database, for a whole server).
    pub(crate) async fn database_exists(&self, source: &Source, logins: &Logins) -> bool {
        let Some((credential_id, database, _)) = source.database() else {
            return false;
        };
        let Some((_, login)) = logins.get(credential_id) else {
            return false;
        };
        let login = login.clone();
        let database = database.map(str::to_string);
        tokio::task::spawn_blocking(move || match login.databases() {
            Ok(dbs) => database.is_none_or(|d| dbs.contains(&d)),
            Err(_) => false,
        })
        .await
        .unwrap_or(false)
    }
}

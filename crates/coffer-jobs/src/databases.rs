//! Database sources: dumps streamed into the snapshot — PostgreSQL as
//! `postgres/<credential>/<database>.dump` (custom format), MySQL/MariaDB as
//! `mysql/<credential>/<database>.sql`, and for a whole server its roles or accounts too
//! (`postgres/<credential>/globals.sql`, `mysql/<credential>/%globals.sql`: no database's file
//! can have either name) — restored with the engine's own tools into the original database or
//! another one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use coffer_repo::{BackupItem, Id, Repository};
use coffer_sources::{Dump, SourceError, mysql, postgres};
use coffer_types::{DatabaseDump, DbEngine, Record, Source};

use crate::runner::{self, Target};
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

    /// As `get`, a missing one an error.
    pub(crate) fn login(
        &self,
        credential_id: &str,
    ) -> std::result::Result<&(String, Login), String> {
        self.get(credential_id)
            .ok_or_else(|| format!("credential {credential_id} is gone"))
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

/// The name a record's `databases` gives a whole server's roles or accounts.
const GLOBALS: &str = "(globals)";

/// The file name of a database's dump in its server's folder.
fn dump_name(engine: DbEngine, database: &str) -> String {
    match engine {
        DbEngine::Postgres => format!("{}.dump", component(database)),
        DbEngine::Mysql => format!("{}.sql", component(database)),
    }
}

/// The file name of a whole server's roles or accounts in its folder.
fn globals_name(engine: DbEngine) -> &'static str {
    match engine {
        DbEngine::Postgres => "globals.sql",
        DbEngine::Mysql => "%globals.sql",
    }
}

/// Where a database's dump lives in the snapshot.
pub(crate) fn dump_path(engine: DbEngine, folder: &str, database: &str) -> String {
    format!(
        "{}/{folder}/{}",
        engine.as_str(),
        dump_name(engine, database)
    )
}

/// Where a whole server's roles or accounts live in the snapshot.
pub(crate) fn globals_path(engine: DbEngine, folder: &str) -> String {
    format!("{}/{folder}/{}", engine.as_str(), globals_name(engine))
}

/// What a record holds of a whole-server source.
#[derive(Clone, Debug, Default)]
pub struct ServerDumps {
    /// Its roles or accounts.
    pub globals: bool,
    /// Its databases, in the order they were dumped.
    pub databases: Vec<String>,
}

/// The snapshot label keeping the folder a credential's dumps went into (its name then).
fn folder_label(credential_id: &str) -> String {
    format!("credential:{credential_id}")
}

/// How to restore the database sources among `sources` from `record` (blocking; the
/// repository is read only when there are some): `logins` with the folders the record's
/// snapshot kept (a credential renamed since still finds its dumps), and what the record holds
/// of each whole-server source, by credential id (from each server's folder in the snapshot).
pub(crate) fn recorded(
    target: &Target,
    record: &Record,
    sources: &[Source],
    mut logins: Logins,
) -> std::result::Result<(Logins, HashMap<String, ServerDumps>), String> {
    let mut servers = HashMap::new();
    if logins.logins.is_empty() {
        return Ok((logins, servers));
    }
    let repo = &target.open()?;
    let id = &runner::snapshot_id(record.snapshot_id.as_deref().unwrap_or_default())?;
    let labels = coffer_repo::snapshot::load(repo, id)
        .map_err(|e| e.to_string())?
        .labels;
    for (credential_id, (folder, _)) in logins.logins.iter_mut() {
        if let Some(recorded) = labels.get(&folder_label(credential_id)) {
            folder.clone_from(recorded);
        }
    }
    let whole_servers = sources
        .iter()
        .filter_map(Source::database)
        .filter(|(_, database, _)| database.is_none());
    for (credential_id, _, _) in whole_servers {
        let (folder, login) = logins.login(credential_id)?;
        let engine = login.engine();
        let names = coffer_repo::list_dir(repo, id, &format!("{}/{folder}", engine.as_str()))
            .map_err(|e| e.to_string())?;
        let has = |name: &str| names.iter().any(|n| n == name.as_bytes());
        let databases = record
            .databases
            .iter()
            .filter(|d| d.engine == engine && d.database != GLOBALS)
            .filter(|d| has(&dump_name(engine, &d.database)))
            .map(|d| d.database.clone())
            .collect();
        servers.insert(
            credential_id.to_string(),
            ServerDumps {
                globals: has(globals_name(engine)),
                databases,
            },
        );
    }
    Ok((logins, servers))
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
/// and PostgreSQL for its version); the folder they go into is kept in `labels`. A safety
/// record never gets here for a database that does not exist: the restore leaves such sources
/// out first (`Jobs::existing`).
pub(crate) fn backup_items(
    source: &Source,
    logins: &Logins,
    labels: &mut BTreeMap<String, String>,
) -> std::result::Result<Vec<BackupItem>, String> {
    let Some((credential_id, database, _)) = source.database() else {
        return Ok(vec![]);
    };
    let (folder, login) = logins.login(credential_id)?;
    labels.insert(folder_label(credential_id), folder.clone());
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
                    globals_path(engine, folder),
                    entry(GLOBALS, &format!("pg_dumpall {major}")),
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
            if database.is_none() {
                if mysql::dumps_users() {
                    let l = l.clone();
                    items.push(logins.lazy(
                        globals_path(engine, folder),
                        entry(GLOBALS, &tool),
                        move || l.dump_users(),
                    )?);
                } else {
                    tracing::warn!(
                        tool = %tool,
                        "users and grants are not backed up: only mariadb-dump can dump them"
                    );
                }
            }
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
    pipe(repo, id, &path, |input| match login {
        Login::Postgres(l) => l.restore(database, into, input, l.server_major().ok()),
        Login::Mysql(l) => l.restore(into, input),
    })
}

/// Restore a whole server's roles (PostgreSQL) or accounts (MySQL/MariaDB) from the snapshot:
/// those missing are created, all get what they had.
pub(crate) fn restore_globals(
    repo: &Repository,
    id: &Id,
    (folder, login): &(String, Login),
) -> std::result::Result<(u64, u64), String> {
    let path = globals_path(login.engine(), folder);
    pipe(repo, id, &path, |input| match login {
        Login::Postgres(l) => l.restore_globals(input),
        Login::Mysql(l) => l.restore_users(input),
    })
}

/// Feed the file at `path` of the snapshot to `tool` through a pipe (no copy on disk); one
/// file and its size.
fn pipe(
    repo: &Repository,
    id: &Id,
    path: &str,
    tool: impl FnOnce(&mut dyn std::io::Read) -> std::result::Result<(), SourceError>,
) -> std::result::Result<(u64, u64), String> {
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let feeder = s.spawn(move || {
            let r = coffer_repo::cat(repo, id, path, &mut writer);
            drop(writer);
            r
        });
        let restored = tool(&mut reader).map_err(|e| e.to_string());
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

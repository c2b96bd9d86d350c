//! Database sources: dumps streamed into the snapshot — PostgreSQL as
//! `postgres/<credential>/<database>.dump` (custom format), MySQL/MariaDB as
//! `mysql/<credential>/<database>.mydumper/` (mydumper's files) or
//! `mysql/<credential>/<database>.sql` (mariadb-dump's script), and for a whole server its
//! roles or accounts too (`postgres/<credential>/globals.sql`, `mysql/<credential>/%globals.sql`:
//! no database's dump can have either name) — restored with the tools that match the dump, into
//! the original database or another one.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};

use coffer_repo::{BackupItem, SnapshotReader};
use coffer_sources::rows::{Counted, RowCounts};
use coffer_sources::{SourceError, binlog, mysql, postgres};
use coffer_types::{BinlogPosition, Credential, DatabaseDump, DbEngine, MysqlTool, Record, Source};

use super::{Judge, Kind, Restore, Run};
use crate::runner;
use crate::spec::{FieldError, field};
use crate::target::Target;
use crate::{Jobs, JobsError, Result};

/// A PostgreSQL or MySQL/MariaDB source: one database of a server, or all of them and its
/// roles or accounts, reached with a stored credential.
pub(crate) struct Server<'a> {
    credential_id: &'a str,
    /// None: every database of the server.
    database: Option<&'a str>,
    all: bool,
    /// MySQL's dump tool, when the job names one.
    tool: Option<MysqlTool>,
}

impl<'a> Server<'a> {
    /// The database source `source` is, if it is one.
    pub(crate) fn of(source: &'a Source) -> Option<Server<'a>> {
        let (credential_id, database, all, tool) = match source {
            Source::Postgres {
                credential_id,
                database,
                all,
            } => (credential_id, database, all, None),
            Source::Mysql {
                credential_id,
                database,
                all,
                backup_tool,
            } => (credential_id, database, all, *backup_tool),
            _ => return None,
        };
        Some(Server {
            credential_id,
            database: database.as_deref(),
            all: *all,
            tool,
        })
    }
}

impl Kind for Server<'_> {
    fn check(&self, _: &Judge<'_>) -> Result<(), FieldError> {
        match (self.database, self.all) {
            (Some(d), false) if !d.is_empty() && !d.contains('\0') => Ok(()),
            (None, true) => Ok(()),
            _ => Err(field(
                "sources",
                "a database source names a database, or takes them all with \"all\": true",
            )),
        }
    }

    fn missing(&self, logins: &Logins) -> Option<String> {
        let listed = logins.get(self.credential_id).map(|(_, l)| l.databases());
        let found = match (listed, self.database) {
            (Some(Ok(dbs)), Some(d)) => dbs.iter().any(|x| x == d),
            (Some(Ok(_)), None) => true,
            _ => false,
        };
        (!found).then(|| match self.database {
            Some(d) => format!("the database {d} (or its server)"),
            None => format!("the server of credential {}", self.credential_id),
        })
    }

    fn items(&self, run: &mut Run<'_>) -> Result<Vec<BackupItem>> {
        backup_items(self, run.logins, run.labels)
    }

    fn restores(&self, servers: &HashMap<String, ServerDumps>) -> Vec<Restore> {
        let database = |d: &str| Restore::Database {
            credential_id: self.credential_id.to_string(),
            database: d.to_string(),
            into: d.to_string(),
        };
        if let Some(d) = self.database {
            return vec![database(d)];
        }
        let server = servers.get(self.credential_id).cloned().unwrap_or_default();
        let globals = server.globals.then(|| Restore::Globals {
            credential_id: self.credential_id.to_string(),
        });
        globals
            .into_iter()
            .chain(server.databases.iter().map(|d| database(d)))
            .collect()
    }
}

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

    /// The rows of each table of database `db` now.
    pub(crate) fn row_counts(&self, db: &str) -> std::result::Result<RowCounts, SourceError> {
        match self {
            Login::Postgres(l) => l.row_counts(db),
            Login::Mysql(l) => l.row_counts(db),
        }
    }

    /// Drop database `db` if it exists.
    pub(crate) fn drop_database(&self, db: &str) -> std::result::Result<(), SourceError> {
        match self {
            Login::Postgres(l) => l.drop_database(db),
            Login::Mysql(l) => l.drop_database(db),
        }
    }
}

/// The logins of a run's database sources, by credential id (the folder name and the login),
/// and the dumps the run made; for a restore, also what the record holds in each folder.
#[derive(Clone, Debug, Default)]
pub struct Logins {
    logins: HashMap<String, (String, Login)>,
    /// The credentials whose servers' binary logs are archived: their dumps record the binlog
    /// position they are consistent with.
    binlogged: std::collections::HashSet<String>,
    dumps: Arc<Mutex<Vec<DatabaseDump>>>,
    /// The names in each credential's folder of the snapshot restored (see `recorded`).
    held: HashMap<String, Vec<Vec<u8>>>,
    /// The MySQL/MariaDB databases whose dump in the snapshot restored holds only some of
    /// their tables (a point-in-time recovery's): restoring one replaces those tables alone.
    partial: std::collections::HashSet<String>,
    /// Set when a point-in-time recovery dumps its result (see [`Logins::recovered`]).
    recovered: Option<Recovered>,
}

/// What a point-in-time recovery's dumps hold: the databases as of `at`; of those named in
/// `tables`, those tables only; with a whole server's, its accounts as the baseline holds them
/// (`users`, a copy of its dump: the binary log is replayed per database, not for accounts).
#[derive(Clone, Debug)]
pub(crate) struct Recovered {
    pub at: chrono::DateTime<chrono::Utc>,
    pub tables: BTreeMap<String, Vec<String>>,
    pub users: Option<std::path::PathBuf>,
}

impl Logins {
    pub(crate) fn get(&self, credential_id: &str) -> Option<&(String, Login)> {
        self.logins.get(credential_id)
    }

    /// As `get`, a missing one an error.
    pub(crate) fn login(&self, credential_id: &str) -> Result<&(String, Login)> {
        self.get(credential_id)
            .ok_or_else(|| JobsError::Unusable(format!("credential {credential_id} is gone")))
    }

    /// The same logins, credential `credential_id` reaching `login` instead (a scratch server)
    /// under the same folder.
    pub(crate) fn through(mut self, credential_id: &str, login: mysql::Login) -> Result<Logins> {
        let (folder, _) = self.login(credential_id)?.clone();
        self.logins
            .insert(credential_id.to_string(), (folder, Login::Mysql(login)));
        Ok(self)
    }

    /// The same logins, their MySQL/MariaDB dumps made as a point-in-time recovery's result:
    /// with mariadb-dump (one script a restore can apply to some tables alone), marked with
    /// the moment and the tables they hold, and without binlog positions.
    pub(crate) fn recovered(mut self, recovered: Recovered) -> Logins {
        self.binlogged.clear();
        self.recovered = Some(recovered);
        self
    }

    /// The dumps read to their end so far, in order.
    pub(crate) fn dumps(&self) -> Vec<DatabaseDump> {
        self.dumps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The format of the record's dump of `database` through `credential_id`, if it holds one.
    fn recorded_format(&self, credential_id: &str, database: &str) -> Option<Format> {
        let (_, login) = self.get(credential_id)?;
        let names = self.held.get(credential_id)?;
        Format::of(login.engine())
            .iter()
            .copied()
            .find(|f| names.iter().any(|n| *n == f.file_name(database).as_bytes()))
    }

    /// Where the record's dump of `database` through `credential_id` lives in the snapshot
    /// (empty for an unknown credential).
    pub(crate) fn dump_path(&self, credential_id: &str, database: &str) -> String {
        let Some((folder, login)) = self.get(credential_id) else {
            return String::new();
        };
        let format = self
            .recorded_format(credential_id, database)
            .unwrap_or(Format::of(login.engine())[0]);
        format.path(folder, database)
    }
}

impl Logins {
    /// Where the record's roles or accounts of the server behind `credential_id` live in the
    /// snapshot (empty for an unknown credential).
    pub(crate) fn globals_path(&self, credential_id: &str) -> String {
        match self.get(credential_id) {
            Some((folder, login)) => globals_path(login.engine(), folder),
            None => String::new(),
        }
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

/// How a database's dump is kept in its server's folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// pg_dump's custom format: `<database>.dump`.
    PgCustom,
    /// mydumper's files: the directory `<database>.mydumper`.
    Mydumper,
    /// mariadb-dump's SQL script: `<database>.sql`.
    Sql,
}

impl Format {
    /// The formats of an engine's dumps.
    fn of(engine: DbEngine) -> &'static [Format] {
        match engine {
            DbEngine::Postgres => &[Format::PgCustom],
            DbEngine::Mysql => &[Format::Mydumper, Format::Sql],
        }
    }

    fn engine(self) -> DbEngine {
        match self {
            Format::PgCustom => DbEngine::Postgres,
            Format::Mydumper | Format::Sql => DbEngine::Mysql,
        }
    }

    /// The name of a database's dump in its server's folder.
    fn file_name(self, database: &str) -> String {
        let extension = match self {
            Format::PgCustom => "dump",
            Format::Mydumper => "mydumper",
            Format::Sql => "sql",
        };
        format!("{}.{extension}", component(database))
    }

    /// Where a database's dump lives in the snapshot.
    fn path(self, folder: &str, database: &str) -> String {
        let engine = self.engine().as_str();
        format!("{engine}/{folder}/{}", self.file_name(database))
    }
}

/// The file name of a whole server's roles or accounts in its folder.
fn globals_name(engine: DbEngine) -> &'static str {
    match engine {
        DbEngine::Postgres => "globals.sql",
        DbEngine::Mysql => "%globals.sql",
    }
}

/// Where a whole server's roles or accounts live in the snapshot.
fn globals_path(engine: DbEngine, folder: &str) -> String {
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
/// snapshot kept (a credential renamed since still finds its dumps) and what each holds, and
/// what the record holds of each whole-server source, by credential id.
pub(crate) fn recorded(
    target: &Target,
    record: &Record,
    sources: &[Source],
    mut logins: Logins,
) -> Result<(Logins, HashMap<String, ServerDumps>)> {
    let mut servers = HashMap::new();
    if logins.logins.is_empty() {
        return Ok((logins, servers));
    }
    logins.partial = record
        .databases
        .iter()
        .filter(|d| d.engine == DbEngine::Mysql && !d.tables.is_empty())
        .map(|d| d.database.clone())
        .collect();
    let repo = target.open()?;
    let id = runner::snapshot_id(record.snapshot_id.as_deref().unwrap_or_default())?;
    let session = repo.open_snapshot(&id)?;
    let labels = &session.snapshot().labels;
    for (credential_id, (folder, login)) in logins.logins.iter_mut() {
        if let Some(recorded) = labels.get(&folder_label(credential_id)) {
            folder.clone_from(recorded);
        }
        let names = session.list_dir(&format!("{}/{folder}", login.engine().as_str()))?;
        logins.held.insert(credential_id.clone(), names);
    }
    let whole_servers = sources
        .iter()
        .filter_map(Source::database)
        .filter(|(_, database, _)| database.is_none());
    for (credential_id, _, engine) in whole_servers {
        let databases = record
            .databases
            .iter()
            .filter(|d| d.engine == engine && d.database != GLOBALS)
            .filter(|d| logins.recorded_format(credential_id, &d.database).is_some())
            .map(|d| d.database.clone())
            .collect();
        let globals = globals_name(engine).as_bytes();
        servers.insert(
            credential_id.to_string(),
            ServerDumps {
                globals: logins
                    .held
                    .get(credential_id)
                    .is_some_and(|names| names.iter().any(|n| n == globals)),
                databases,
            },
        );
    }
    Ok((logins, servers))
}

/// A dump that starts its tool only when the engine first reads it, so that the databases of
/// a run are dumped one after the other; a dump read to its end is logged with its size.
struct Lazy<R, F: FnOnce() -> std::result::Result<Counted<R>, SourceError>> {
    start: Option<F>,
    dump: Option<R>,
    entry: DatabaseDump,
    log: Arc<Mutex<Vec<DatabaseDump>>>,
    /// Where to look for the binlog position, when the dump records one.
    position: Option<Ends>,
}

/// The first and the last bytes of a dump: where the dump tools write the binlog position
/// (mariadb-dump in its header, mydumper in its `metadata` file, the last of its archive).
#[derive(Default)]
struct Ends {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Ends {
    const HEAD: usize = 64 * 1024;
    const TAIL: usize = 8 * 1024;

    fn see(&mut self, bytes: &[u8]) {
        let room = Self::HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        let keep = Self::TAIL.min(bytes.len());
        self.tail.extend_from_slice(&bytes[bytes.len() - keep..]);
        let over = self.tail.len().saturating_sub(Self::TAIL);
        self.tail.drain(..over);
    }

    fn position(&self) -> Option<BinlogPosition> {
        let (file, position) =
            binlog::dump_position(&self.head).or_else(|| binlog::dump_position(&self.tail))?;
        let gtid = binlog::dump_gtid(&self.head).or_else(|| binlog::dump_gtid(&self.tail));
        Some(BinlogPosition {
            file,
            position,
            gtid,
        })
    }
}

impl<R: Read, F: FnOnce() -> std::result::Result<Counted<R>, SourceError>> Read for Lazy<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(start) = self.start.take() {
            let started = start().map_err(std::io::Error::other)?;
            self.entry.rows = started.rows;
            self.dump = Some(started.dump);
        }
        let n = match &mut self.dump {
            Some(d) => d.read(buf)?,
            None => return Ok(0),
        };
        self.entry.size_bytes += n as u64;
        if let Some(ends) = &mut self.position {
            ends.see(&buf[..n]);
        }
        if n == 0 && !buf.is_empty() {
            self.dump = None;
            self.entry.binlog = self.position.as_ref().and_then(Ends::position);
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(self.entry.clone());
        }
        Ok(n)
    }
}

impl Logins {
    /// The item `name` of the snapshot, read from the dump `start` makes: a stream stored as a
    /// file, or a tar stream as a directory (`as_source` says which); with the rows it holds
    /// when they were counted.
    fn lazy<R: Read + Send + 'static>(
        &self,
        name: String,
        entry: DatabaseDump,
        as_source: fn(Box<dyn Read + Send>) -> coffer_repo::Source,
        start: impl FnOnce() -> std::result::Result<Counted<R>, SourceError> + Send + 'static,
    ) -> Result<BackupItem> {
        self.lazy_at(name, entry, as_source, false, start)
    }

    /// [`Logins::lazy`], also reading the binlog position the dump records when `position`.
    fn lazy_at<R: Read + Send + 'static>(
        &self,
        name: String,
        entry: DatabaseDump,
        as_source: fn(Box<dyn Read + Send>) -> coffer_repo::Source,
        position: bool,
        start: impl FnOnce() -> std::result::Result<Counted<R>, SourceError> + Send + 'static,
    ) -> Result<BackupItem> {
        let reader = Lazy {
            start: Some(start),
            dump: None,
            entry,
            log: self.dumps.clone(),
            position: position.then(Ends::default),
        };
        Ok(BackupItem::named(&name, as_source(Box::new(reader)))?)
    }
}

/// The engine items of a database source (blocking: asks a whole server for its databases,
/// and PostgreSQL for its version); the folder they go into is kept in `labels`. A safety
/// record never gets here for a database that does not exist: the restore leaves such sources
/// out first (`Jobs::existing`).
fn backup_items(
    source: &Server<'_>,
    logins: &Logins,
    labels: &mut BTreeMap<String, String>,
) -> Result<Vec<BackupItem>> {
    let database = source.database;
    let (folder, login) = logins.login(source.credential_id)?;
    labels.insert(folder_label(source.credential_id), folder.clone());
    let databases = match database {
        Some(d) => vec![d.to_string()],
        None => login.databases()?,
    };
    let mut items = vec![];
    let engine = login.engine();
    let entry = |database: &str, tool: &str| DatabaseDump {
        engine,
        database: database.to_string(),
        tool: tool.to_string(),
        size_bytes: 0,
        binlog: None,
        point_in_time: None,
        tables: vec![],
        rows: None,
    };
    let stream = coffer_repo::Source::Stream;
    match login {
        Login::Postgres(l) => {
            let major = l.server_major()?;
            if database.is_none() {
                let l = l.clone();
                items.push(logins.lazy(
                    globals_path(engine, folder),
                    entry(GLOBALS, &format!("pg_dumpall {major}")),
                    stream,
                    move || l.dump_globals(Some(major)).map(Counted::bare),
                )?);
            }
            for db in databases {
                let l = l.clone();
                let e = entry(&db, &format!("pg_dump {major}"));
                let path = Format::PgCustom.path(folder, &db);
                items.push(logins.lazy(path, e, stream, move || l.dump_counted(&db, Some(major)))?);
            }
        }
        Login::Mysql(l) if logins.recovered.is_some() => {
            let recovered = logins.recovered.as_ref().expect("recovered");
            if let Some(users) = recovered.users.clone().filter(|_| database.is_none()) {
                items.push(logins.lazy(
                    globals_path(engine, folder),
                    entry(GLOBALS, "mariadb-dump"),
                    stream,
                    move || {
                        std::fs::File::open(&users).map(Counted::bare).map_err(|e| {
                            SourceError::Failed {
                                what: "the baseline's accounts".into(),
                                message: e.to_string(),
                            }
                        })
                    },
                )?);
            }
            for db in databases {
                let tables = recovered.tables.get(&db).cloned().unwrap_or_default();
                let e = DatabaseDump {
                    point_in_time: Some(recovered.at),
                    tables: tables.clone(),
                    ..entry(&db, &mysql::dump_tool_name())
                };
                let l = l.clone();
                let path = Format::Sql.path(folder, &db);
                items.push(logins.lazy(path, e, stream, move || {
                    l.dump(&db, false, &tables).map(Counted::bare)
                })?);
            }
        }
        Login::Mysql(l) => {
            if database.is_none() {
                if mysql::dumps_users() {
                    let l = l.clone();
                    items.push(logins.lazy(
                        globals_path(engine, folder),
                        entry(GLOBALS, "mariadb-dump"),
                        stream,
                        move || l.dump_users().map(Counted::bare),
                    )?);
                } else {
                    tracing::warn!(
                        "users and grants are not backed up: only mariadb-dump can dump them"
                    );
                }
            }
            let mydumper = match source.tool {
                Some(tool) => tool == MysqlTool::Mydumper,
                None => mysql::mydumper_installed(),
            };
            let tool = if mydumper {
                "mydumper".to_string()
            } else {
                mysql::dump_tool_name()
            };
            // The baseline of point-in-time recovery: where in the binary log each dump is.
            let position = logins.binlogged.contains(source.credential_id);
            for db in databases {
                let l = l.clone();
                let e = entry(&db, &tool);
                items.push(if mydumper {
                    let path = Format::Mydumper.path(folder, &db);
                    let tar = coffer_repo::Source::Tar;
                    logins.lazy_at(path, e, tar, position, move || l.dump_dir_counted(&db))?
                } else {
                    let path = Format::Sql.path(folder, &db);
                    logins.lazy_at(path, e, stream, position, move || {
                        l.dump_counted(&db, position)
                    })?
                });
            }
        }
    }
    Ok(items)
}

/// Restore the record's dump of `database` through `credential_id` into `into` (dropped and
/// created anew), with the tools that match the dump.
pub(crate) fn restore(
    session: &SnapshotReader<'_>,
    logins: &Logins,
    credential_id: &str,
    database: &str,
    into: &str,
) -> Result<(u64, u64)> {
    let (folder, login) = logins.login(credential_id)?;
    let format = logins
        .recorded_format(credential_id, database)
        .ok_or_else(|| {
            JobsError::Field(FieldError {
                field: "databases",
                message: format!("the record holds no dump of database {database}"),
            })
        })?;
    let path = format.path(folder, database);
    // The database is dropped before its dump is read: a lost pack must stop the restore first.
    session.check_present(std::slice::from_ref(&path))?;
    let restored = match (format, login) {
        (Format::Mydumper, Login::Mysql(l)) => pipe(
            |out| session.dump_dir(&path, out),
            |input| l.load_dir(database, into, input),
        ),
        (_, Login::Postgres(l)) => pipe(file(session, &path), |input| {
            l.restore(database, into, input, l.server_major().ok())
        }),
        (_, Login::Mysql(l)) if logins.partial.contains(database) => {
            pipe(file(session, &path), |input| l.restore_tables(into, input))
        }
        (_, Login::Mysql(l)) => pipe(file(session, &path), |input| l.restore(into, input)),
    };
    restored.map_err(|e| match e {
        JobsError::Damaged { object, detail } => JobsError::Damaged {
            object,
            detail: format!("{detail}; not restored: {path}"),
        },
        other => other,
    })
}

/// Restore a whole server's roles (PostgreSQL) or accounts (MySQL/MariaDB) from the snapshot:
/// those missing are created, all get what they had.
pub(crate) fn restore_globals(
    session: &SnapshotReader<'_>,
    (folder, login): &(String, Login),
) -> Result<(u64, u64)> {
    let path = globals_path(login.engine(), folder);
    pipe(file(session, &path), |input| match login {
        Login::Postgres(l) => l.restore_globals(input),
        Login::Mysql(l) => l.restore_users(input),
    })
}

/// A reader for `pipe` of the file at `path` in the snapshot: one file, its size.
fn file<'a>(
    session: &'a SnapshotReader<'_>,
    path: &'a str,
) -> impl FnOnce(&mut std::io::PipeWriter) -> coffer_repo::Result<(u64, u64)> + Send + 'a {
    move |out| session.cat(path, out).map(|size| (1, size))
}

/// Feed what `read` writes from the snapshot (a dump) to `tool` through a pipe (no copy on
/// disk); the files and bytes `read` wrote.
fn pipe(
    read: impl FnOnce(&mut std::io::PipeWriter) -> coffer_repo::Result<(u64, u64)> + Send,
    tool: impl FnOnce(&mut dyn Read) -> std::result::Result<(), SourceError>,
) -> Result<(u64, u64)> {
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| JobsError::io("a pipe", e))?;
    std::thread::scope(|s| {
        let feeder = s.spawn(move || {
            let r = read(&mut writer);
            drop(writer);
            r
        });
        let restored = tool(&mut reader);
        drop(reader);
        let read = feeder
            .join()
            .map_err(|_| JobsError::Internal("reading the dump crashed".into()))?;
        match (restored, read) {
            (Ok(()), read) => Ok(read?),
            // Damage found while reading comes first; the tool then failed on a cut input.
            (Err(tool), Err(e)) if !broken_pipe(&e) => Err(match JobsError::from(e) {
                JobsError::Damaged { object, detail } => JobsError::Damaged {
                    object,
                    detail: format!("{detail}; the restore tool then failed: {tool}"),
                },
                other => other,
            }),
            (Err(tool), _) => Err(tool.into()),
        }
    })
}

/// Whether reading stopped because the tool had closed its input (having failed).
fn broken_pipe(e: &coffer_repo::Error) -> bool {
    matches!(e, coffer_repo::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

impl Jobs {
    /// The logins of the database sources among `sources`.
    pub(crate) async fn logins(&self, sources: &[Source]) -> Result<Logins> {
        let mut logins = Logins::default();
        for (credential_id, _, _) in sources.iter().filter_map(Source::database) {
            if logins.logins.contains_key(credential_id) {
                continue;
            }
            let c = self.db.resource::<Credential>(credential_id).await?;
            let password = self.secret::<Credential>(credential_id).await?;
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
            if c.pitr {
                logins.binlogged.insert(credential_id.to_string());
            }
            logins
                .logins
                .insert(credential_id.to_string(), (component(&c.name), login));
        }
        Ok(logins)
    }

    /// Whether the server behind credential `c` answers with its password: the databases
    /// it lists, or why not; for MySQL/MariaDB, also whether its binary log allows
    /// point-in-time recovery, and if not, what to change.
    pub(crate) async fn test_credential(&self, c: Credential) -> Result<coffer_types::Check> {
        let login = self.login_of(c).await?;
        let probed = crate::blocking(move || {
            let dbs = login.databases()?;
            let readiness = match &login {
                Login::Mysql(l) => Some(l.binlog_readiness()?),
                Login::Postgres(_) => None,
            };
            Ok::<_, SourceError>((dbs, readiness))
        });
        Ok(match probed.await {
            Ok((dbs, readiness)) => {
                let mut detail = match dbs.len() {
                    0 => "it answers; no databases yet".to_string(),
                    n => format!("it answers; {n} databases: {}", dbs.join(", ")),
                };
                match readiness {
                    Some(r) if r.ready() => detail.push_str(&format!(
                        "; its binary log allows point-in-time recovery (binlog_format {})",
                        r.format
                    )),
                    Some(r) => detail.push_str(&format!(
                        "; point-in-time recovery needs its binary log: {}",
                        r.missing.join("; ")
                    )),
                    None => {}
                }
                coffer_types::Check { ok: true, detail }
            }
            Err(JobsError::Source(e)) => coffer_types::Check {
                ok: false,
                detail: e.to_string(),
            },
            Err(e) => return Err(e),
        })
    }

    /// The databases of the server behind credential `id` (what a source can name), or why
    /// they cannot be listed.
    pub async fn credential_databases(&self, id: &str) -> Result<Vec<String>> {
        let login = self
            .login_of(self.db.resource::<Credential>(id).await?)
            .await?;
        crate::blocking(move || login.databases()).await
    }

    /// The login of credential `c`, its password opened.
    pub(crate) async fn login_of(&self, c: Credential) -> Result<Login> {
        let id = c.id.as_str();
        let probe = match c.engine {
            DbEngine::Postgres => Source::Postgres {
                credential_id: id.to_string(),
                database: None,
                all: true,
            },
            DbEngine::Mysql => Source::Mysql {
                credential_id: id.to_string(),
                database: None,
                all: true,
                backup_tool: None,
            },
        };
        let logins = self.logins(std::slice::from_ref(&probe)).await?;
        Ok(logins.login(id)?.1.clone())
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
            match self.db.resource::<Credential>(credential_id).await {
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
}

/// Whether the server behind `credential_id` has a database named `name`.
pub(crate) async fn has_database(logins: &Logins, credential_id: &str, name: &str) -> Result<bool> {
    let (_, login) = logins.login(credential_id)?;
    let (login, name) = (login.clone(), name.to_string());
    crate::blocking(move || login.databases().map(|dbs| dbs.contains(&name))).await
}

//! MySQL and MariaDB through their own tools, each database dumped on its own:
//! - `mydumper` (where installed): the tables dumped in parallel into a directory of files,
//!   streamed to the engine as a tar archive while it writes them (see `dirdump`), restored
//!   with `myloader`;
//! - `mariadb-dump` (or `mysqldump`) with `--single-transaction --routines --triggers
//!   --events`: one SQL script, restored with the `mariadb` (or `mysql`) client.
//!
//! The login reaches a tool only through an option file (`--defaults-extra-file`, mydumper's
//! `--defaults-file`) of mode 0600 in a private directory of mode 0700 under `Login::scratch`,
//! removed when the tool ends — never a command line, never the environment, never a log.
//! (The caller's scratch directory is emptied at start-up, so not even a crash leaves one
//! behind for long.) A mydumper dump is written into the same private directory.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::child::{self, Dump};
use crate::dirdump::{self, DirDump, Listing};
use crate::rows::{self, Counted, RowCounts, Session};
use crate::{SourceError, failed};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Login {
    pub host: Option<String>,
    pub port: u16,
    /// A Unix socket file, instead of `host`.
    pub socket: Option<String>,
    pub user: String,
    pub password: Option<String>,
    /// `disable`, `prefer`, `require` or `verify-full`.
    pub tls: String,
    /// Where option files are made (each in a private directory of its own).
    pub scratch: PathBuf,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// The first of `names` found on `PATH`.
fn find(names: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names
        .iter()
        .find_map(|n| dirs.iter().map(|d| d.join(n)).find(|p| p.is_file()))
}

/// The first of `names` found on `PATH`, else the first name (to fail when started).
fn tool(names: &[&str]) -> PathBuf {
    find(names).unwrap_or_else(|| PathBuf::from(names[0]))
}

/// Whether `mydumper` (and with it `myloader`: Debian ships them together) is installed.
pub fn mydumper_installed() -> bool {
    find(&["mydumper"]).is_some()
}

/// mydumper or myloader, or an error naming the package when it is not installed.
fn mydumper_tool(name: &str, what: &str) -> Result<PathBuf, SourceError> {
    find(&[name]).ok_or_else(|| {
        failed(
            what,
            format!("{name} is not installed on this node (Debian: apt-get install mydumper)"),
        )
    })
}

/// mydumper's rule for the names of the files it has closed (see `dirdump::Settled`): a table's
/// data goes into numbered files of at most `--chunk-filesize`, and when the first turns out
/// to be the only one it is renamed from `<db>.<table>.00001.sql` to `<db>.<table>.sql`; the
/// `metadata.partial` it keeps open is renamed `metadata` at the end.
fn mydumper_settled(name: &str, files: &Listing) -> bool {
    if name.ends_with(".partial") {
        return false;
    }
    match name.strip_suffix(".00001.sql") {
        Some(stem) => files.contains_key(std::ffi::OsStr::new(&format!("{stem}.00002.sql"))),
        None => true,
    }
}

/// The dump tool this node uses.
fn dump_tool() -> PathBuf {
    tool(&["mariadb-dump", "mysqldump"])
}

/// Its name, as records show it: `mariadb-dump` or `mysqldump`.
pub fn dump_tool_name() -> String {
    name_of(&dump_tool())
}

fn name_of(tool: &Path) -> String {
    tool.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Whether this node's dump tool can dump accounts: `mariadb-dump` can, MySQL's own
/// `mysqldump` cannot.
pub fn dumps_users() -> bool {
    dump_tool_name() == "mariadb-dump"
}

fn client() -> PathBuf {
    tool(&["mariadb", "mysql"])
}

/// The tool that reads a server's binary log.
pub(crate) fn binlog_tool() -> PathBuf {
    tool(&["mariadb-binlog", "mysqlbinlog"])
}

/// How long a dump may take to begin while writes are held for counting its rows.
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A dump read up to where it shows it has begun, then read on.
pub type Begun<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// The query of the (hex-encoded) names of the tables of database `db` whose rows a dump
/// holds.
fn tables_of(db: &str) -> String {
    format!(
        "SELECT HEX(table_name) FROM information_schema.tables \
         WHERE table_schema = CONVERT(0x{} USING utf8mb4) \
         AND table_type IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY 1",
        hex::encode_upper(db)
    )
}

/// The query of the rows of each of the tables `names` of database `db`, by their index.
fn count(db: &str, names: &[String]) -> String {
    let each: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, t)| format!("SELECT {i}, COUNT(*) FROM {}.{}", ident(db), ident(t)))
        .collect();
    each.join(" UNION ALL ")
}

/// The answer of `count`, each line an index into `names` and a count.
fn counts(what: &str, names: &[String], answer: Vec<String>) -> Result<RowCounts, SourceError> {
    let mut rows = RowCounts::new();
    for line in answer {
        let (i, n) = line.split_once('\t').unwrap_or_default();
        match (
            i.parse::<usize>().ok().and_then(|i| names.get(i)),
            n.parse(),
        ) {
            (Some(t), Ok(n)) => rows.insert(t.clone(), n),
            _ => return Err(failed(what, format!("unexpected answer {line:?}"))),
        };
    }
    Ok(rows)
}

/// A table name the client printed in hexadecimal (printed raw, it would be escaped).
fn unhex(text: &str) -> String {
    String::from_utf8_lossy(&hex::decode(text).unwrap_or_default()).into_owned()
}

/// A database name as an SQL identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// An option file value, quoted.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A private directory holding the option file; removed when dropped.
pub(crate) struct OptionFile {
    dir: PathBuf,
    file: PathBuf,
}

impl Drop for OptionFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Login {
    pub(crate) fn option_file(&self) -> Result<OptionFile, SourceError> {
        let err = |e: std::io::Error| failed("MySQL option file", e);
        let dir = crate::private_dir(&self.scratch, "coffer-mysql-").map_err(err)?;
        let guard = OptionFile {
            file: dir.join("client.cnf"),
            dir,
        };
        let mut text = format!(
            "[client]\nuser={}\nport={}\n",
            quoted(&self.user),
            self.port
        );
        match (&self.socket, &self.host) {
            (Some(s), _) => text.push_str(&format!("socket={}\n", quoted(s))),
            (None, Some(h)) => text.push_str(&format!("host={}\nprotocol=tcp\n", quoted(h))),
            (None, None) => {}
        }
        if let Some(p) = &self.password {
            text.push_str(&format!("password={}\n", quoted(p)));
        }
        text.push_str(match self.tls.as_str() {
            "disable" => "skip-ssl\n",
            "require" => "ssl\n",
            "verify-full" => "ssl\nssl-verify-server-cert\n",
            _ => "",
        });
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&guard.file)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        Ok(guard)
    }

    pub(crate) fn command(&self, tool: &Path, options: &OptionFile) -> Command {
        let flag = match tool.file_name().and_then(|n| n.to_str()) {
            Some("mydumper" | "myloader") => "--defaults-file",
            _ => "--defaults-extra-file",
        };
        let mut c = crate::command::tool(tool);
        // Must come first; the environment must not add a password of its own.
        c.arg(format!("{flag}={}", options.file.display()))
            .env_remove("MYSQL_PWD")
            .env_remove("MYSQL_HOST");
        c
    }

    /// The client, answering bare values, one row a line.
    fn batch_client(&self, options: &OptionFile) -> Command {
        let mut c = self.command(&client(), options);
        c.args(["--batch", "--skip-column-names"]);
        c
    }

    /// Run one SQL statement with the client; its output.
    pub(crate) fn sql(&self, db: Option<&str>, sql: &str) -> Result<String, SourceError> {
        let options = self.option_file()?;
        let mut c = self.batch_client(&options);
        c.args(["--execute", sql]);
        if let Some(db) = db {
            c.arg(db);
        }
        let out = c
            .output()
            .map_err(|e| failed("mariadb", format!("cannot start the client: {e}")))?;
        if !out.status.success() {
            let at = self
                .host
                .as_deref()
                .or(self.socket.as_deref())
                .unwrap_or("");
            return Err(failed(
                &format!("MySQL at {at}:{}", self.port),
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The databases a whole-server backup takes: all but the server's own schemas.
    pub fn databases(&self) -> Result<Vec<String>, SourceError> {
        Ok(self
            .sql(None, "SHOW DATABASES")?
            .lines()
            .filter(|d| {
                !matches!(
                    *d,
                    "information_schema" | "performance_schema" | "sys" | "mysql"
                )
            })
            .map(str::to_string)
            .collect())
    }

    /// A dump of one database as a stream (one consistent transaction); with `position`, the
    /// binlog position it is consistent with written into it (`--master-data=2`: a comment;
    /// needs the binary log on and the RELOAD privilege).
    /// With `tables`, only those tables of it.
    pub fn dump(&self, db: &str, position: bool, tables: &[String]) -> Result<Dump, SourceError> {
        let options = self.option_file()?;
        let tool = dump_tool();
        let mut c = self.command(&tool, &options);
        if position {
            c.arg("--master-data=2");
        }
        c.args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-dump-date",
            "--",
            db,
        ])
        .args(tables);
        let name = name_of(&tool);
        Dump::start(
            c,
            format!("{name} of database {db}"),
            Some(Box::new(options)),
        )
    }

    /// [`Login::dump`] of a whole database (see `counted`).
    pub fn dump_counted(
        &self,
        db: &str,
        position: bool,
    ) -> Result<Counted<Begun<Dump>>, SourceError> {
        // Only statements written after its snapshot began: the tables, then the events and
        // routines an empty database still has; or output past any header.
        self.counted(
            db,
            || self.dump(db, position, &[]),
            |head| {
                head.len() > 64 * 1024
                    || [
                        "\n-- Table structure for table ",
                        "\n-- Dumping events for database ",
                        "\n-- Dumping routines for database ",
                    ]
                    .iter()
                    .any(|m| head.windows(m.len()).any(|w| w == m.as_bytes()))
            },
        )
    }

    /// [`Login::dump_dir`] (see `counted`).
    pub fn dump_dir_counted(&self, db: &str) -> Result<Counted<Begun<DirDump>>, SourceError> {
        // mydumper's files (taken when closed) are all written after its snapshots began.
        self.counted(db, || self.dump_dir(db), |head| !head.is_empty())
    }

    /// The dump `start` makes of database `db`, and the rows of each of its tables counted
    /// in a snapshot that sees what the dump sees: writes are held (`FLUSH TABLES WITH READ
    /// LOCK`, as mydumper and `--master-data` take themselves) from before this session's
    /// snapshot until the dump has begun its own — until its output, read up to where `begun`
    /// says, shows it — so that no write comes between the two. Then the rows are counted in
    /// this session's snapshot while the dump goes on. Writes are held for as long as the tool
    /// takes to start, at most [`HOLD_LIMIT`] (then released; nothing counted). Needs the
    /// RELOAD privilege; without it (or whatever else keeps the rows from being counted) the
    /// dump is made all the same.
    fn counted<R: Read>(
        &self,
        db: &str,
        start: impl FnOnce() -> Result<R, SourceError>,
        begun: fn(&[u8]) -> bool,
    ) -> Result<Counted<Begun<R>>, SourceError> {
        let what = rows::counting(db);
        let held = (|| {
            let options = self.option_file()?;
            let mut c = self.batch_client(&options);
            c.arg("--unbuffered");
            let keep = Some(Box::new(options) as Box<dyn Send>);
            let mut session = Session::start(c, what.clone(), "SELECT 'coffer:end';", keep)?;
            session
                .ask("FLUSH TABLES WITH READ LOCK; START TRANSACTION WITH CONSISTENT SNAPSHOT;")?;
            let deadline = session.deadline(HOLD_LIMIT);
            let tables = session.ask(&format!("{};", tables_of(db)))?;
            Ok::<_, SourceError>((session, deadline, tables))
        })();
        let (mut session, deadline, tables) = match held {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(database = db, error = %e, "rows not counted");
                return Ok(Counted::bare(std::io::Cursor::new(vec![]).chain(start()?)));
            }
        };
        let mut dump = start()?;
        let mut head = vec![];
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = dump.read(&mut buf).map_err(|e| failed(&what, e))?;
            head.extend_from_slice(&buf[..n]);
            if n == 0 || begun(&head) {
                break;
            }
        }
        let dump = std::io::Cursor::new(head).chain(dump);
        if deadline.disarm() {
            tracing::warn!(
                database = db,
                "the dump took too long to start: its rows are not counted"
            );
            return Ok(Counted::bare(dump));
        }
        let rows = session.ask("UNLOCK TABLES;").and_then(|_| {
            let names: Vec<String> = tables.iter().map(|t| unhex(t)).collect();
            match names.is_empty() {
                true => Ok(RowCounts::new()),
                false => counts(
                    &what,
                    &names,
                    session.ask(&format!("{};", count(db, &names)))?,
                ),
            }
        });
        Ok(Counted {
            dump,
            rows: rows
                .inspect_err(|e| tracing::warn!(database = db, error = %e, "rows not counted"))
                .ok(),
        })
    }

    /// The rows of each table of database `db` now.
    pub fn row_counts(&self, db: &str) -> Result<RowCounts, SourceError> {
        let names: Vec<String> = self.sql(None, &tables_of(db))?.lines().map(unhex).collect();
        if names.is_empty() {
            return Ok(RowCounts::new());
        }
        let answer = self.sql(None, &count(db, &names))?;
        counts(
            &rows::counting(db),
            &names,
            answer.lines().map(str::to_string).collect(),
        )
    }

    /// Drop database `db` if it exists.
    pub fn drop_database(&self, db: &str) -> Result<(), SourceError> {
        self.sql(None, &format!("DROP DATABASE IF EXISTS {}", ident(db)))
            .map(drop)
    }

    /// A dump of one database by mydumper, as a tar stream of its directory (see `dirdump`):
    /// the tables dumped in parallel within one consistent snapshot (`--trx-consistency-only`:
    /// InnoDB tables are consistent, as with `--single-transaction`), in files of at most
    /// 64 MiB so that the disk holds no more than a few at a time; empty tables are kept as
    /// empty files. mydumper takes a global read lock for a moment (the RELOAD privilege).
    pub fn dump_dir(&self, db: &str) -> Result<DirDump, SourceError> {
        let what = format!("mydumper of database {db}");
        let tool = mydumper_tool("mydumper", &what)?;
        let options = self.option_file()?;
        let out = options.dir.join("dump");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&out)
            .map_err(|e| failed(&what, e))?;
        let mut c = self.command(&tool, &options);
        c.arg(format!("--database={db}"))
            .arg(format!("--outputdir={}", out.display()))
            .args([
                "--triggers",
                "--events",
                "--routines",
                "--trx-consistency-only",
                "--build-empty-files",
                "--chunk-filesize=64",
            ]);
        DirDump::start(c, out, what, mydumper_settled, Box::new(options))
    }

    /// The server's accounts (users, roles, their grants) as SQL that creates those missing and
    /// grants what was granted: `mariadb-dump --system=users` (see `dumps_users`).
    pub fn dump_users(&self) -> Result<Dump, SourceError> {
        let options = self.option_file()?;
        let mut c = self.command(&dump_tool(), &options);
        c.args(["--system=users", "--insert-ignore", "--skip-dump-date"]);
        Dump::start(
            c,
            "mariadb-dump --system=users".into(),
            Some(Box::new(options)),
        )
    }

    /// Apply accounts dumped by `dump_users`, read from `input`.
    pub fn restore_users(&self, input: &mut dyn Read) -> Result<(), SourceError> {
        let options = self.option_file()?;
        let c = self.command(&client(), &options);
        child::feed(c, input, "restoring users and grants", child::none)
    }

    /// Restore a dump read from `input` into `db`, which is dropped and created anew first.
    pub fn restore(&self, db: &str, input: &mut dyn Read) -> Result<(), SourceError> {
        self.sql(
            None,
            &format!(
                "DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0}",
                ident(db)
            ),
        )?;
        self.apply(db, input, &format!("restoring database {db}"))
    }

    /// Restore a dump of some tables read from `input` into `db` (created if missing): the
    /// dump drops and creates the tables it holds, the database's other tables stay.
    pub fn restore_tables(&self, db: &str, input: &mut dyn Read) -> Result<(), SourceError> {
        self.sql(
            None,
            &format!("CREATE DATABASE IF NOT EXISTS {}", ident(db)),
        )?;
        self.apply(db, input, &format!("restoring tables of database {db}"))
    }

    /// Run the SQL read from `input` with `db` as the default database (`what` names it in
    /// errors).
    pub(crate) fn apply(
        &self,
        db: &str,
        input: &mut dyn Read,
        what: &str,
    ) -> Result<(), SourceError> {
        let options = self.option_file()?;
        let mut c = self.command(&client(), &options);
        c.args(["--default-character-set=utf8mb4", "--", db]);
        child::feed(c, input, what, child::none)
    }

    /// Restore a mydumper dump, read as a tar stream from `input`, into `into`: unpacked into a
    /// private directory (myloader reads only directories) before anything is dropped; then
    /// `into` is dropped and myloader creates it as the dump says (its character set too) and
    /// loads it, into the binary log like the client's restores.
    pub fn load_dir(&self, db: &str, into: &str, input: &mut dyn Read) -> Result<(), SourceError> {
        let what = format!("restoring database {into} with myloader");
        let tool = mydumper_tool("myloader", &what)?;
        let options = self.option_file()?;
        let dir = options.dir.join("dump");
        dirdump::unpack(input, &dir).map_err(|e| failed(&what, e))?;
        self.sql(None, &format!("DROP DATABASE IF EXISTS {}", ident(into)))?;
        let mut c = self.command(&tool, &options);
        c.arg(format!("--directory={}", dir.display()))
            .arg(format!("--source-db={db}"))
            .arg(format!("--database={into}"))
            .args(["--overwrite-tables", "--enable-binlog"]);
        child::feed(c, &mut std::io::empty(), &what, child::none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mydumper_files_are_taken_only_under_their_final_names() {
        let files = |names: &[&str]| -> Listing {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| ((*n).into(), (0, i as u64)))
                .collect()
        };
        let now = files(&["db.a.00001.sql", "db.b.00001.sql", "db.b.00002.sql"]);
        // `db.a` may still turn out to have one chunk only, and be renamed `db.a.sql`.
        assert!(!mydumper_settled("db.a.00001.sql", &now));
        assert!(mydumper_settled("db.b.00001.sql", &now));
        assert!(mydumper_settled("db.b.00002.sql", &now));
        assert!(mydumper_settled("db.a-schema.sql", &now));
        assert!(!mydumper_settled("metadata.partial", &now));
        assert!(mydumper_settled("metadata", &now));
    }
}

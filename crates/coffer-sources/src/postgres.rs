//! PostgreSQL through its own tools: `pg_dump --format=custom --compress=0` per database
//! (uncompressed: Coffer compresses, and only uncompressed dumps deduplicate),
//! `pg_dumpall --globals-only` for roles and tablespaces, `pg_restore` to restore.
//!
//! The password reaches a tool only through the environment of that one child process
//! (`PGPASSWORD`), never a command line or a log. The tools of the server's major version are
//! preferred when several are installed (`/usr/lib/postgresql/<major>/bin`).
//!
//! A dump is a stream the engine reads while the tool writes it: no copy on disk. A tool that
//! fails (non-zero exit, a signal, an error on stderr) turns the end of its stream into an
//! error, so a failed dump can never be stored as a complete one.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::child::{self, Dump};
use crate::rows::{self, Counted, RowCounts, Session};
use crate::{SourceError, failed};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Login {
    /// A host name or address, or the directory of a Unix socket.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// `disable`, `prefer`, `require` or `verify-full`.
    pub sslmode: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

/// The rows of each table of the database it runs in, as one JSON object keyed by
/// `schema.table` (quoted where need be): the tables pg_dump dumps the rows of — not the
/// catalog's, nor temporary ones, nor those an extension owns; a partitioned table's rows are
/// its partitions'.
const COUNT_ROWS: &str = "SELECT coalesce(json_object_agg(name, n ORDER BY name), '{}') FROM (\
  SELECT format('%I.%I', s.nspname, c.relname) AS name, (xpath('/row/n/text()', query_to_xml(\
    format('SELECT count(*) AS n FROM ONLY %I.%I', s.nspname, c.relname), false, true, '')\
  ))[1]::text::bigint AS n \
  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace \
  WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
    AND s.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND s.nspname NOT LIKE 'pg\\_toast%' \
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
      AND d.objid = c.oid AND d.deptype = 'e')) t;";

/// A database name as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A globals script without the password of one role: the ` PASSWORD '…'` of the
/// `ALTER ROLE <role> WITH …;` line pg_dumpall writes for it (its name bare or quoted) is left
/// out, so the role keeps the password it has.
struct KeepPassword<R> {
    input: R,
    /// The line's start for the role: `ALTER ROLE <name> WITH `, bare and quoted.
    starts: [String; 2],
    line: Vec<u8>,
    at: usize,
}

impl<R: BufRead> KeepPassword<R> {
    fn new(input: R, role: &str) -> Self {
        KeepPassword {
            input,
            starts: [role.to_string(), ident(role)].map(|r| format!("ALTER ROLE {r} WITH ")),
            line: vec![],
            at: 0,
        }
    }
}

impl<R: BufRead> Read for KeepPassword<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.line.len() {
            self.line.clear();
            self.at = 0;
            if self.input.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(0);
            }
            if self
                .starts
                .iter()
                .any(|s| self.line.starts_with(s.as_bytes()))
            {
                let clause = b" PASSWORD '";
                if let Some(from) = self.line.windows(clause.len()).position(|w| w == clause)
                    && let Some(len) = self.line[from + clause.len()..]
                        .iter()
                        .position(|b| *b == b'\'')
                {
                    self.line.drain(from..from + clause.len() + len + 1);
                }
            }
        }
        let n = buf.len().min(self.line.len() - self.at);
        buf[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The installed tool `name`: the one of the server's major version if present, else the
/// newest under `/usr/lib/postgresql`, else whatever `PATH` finds.
pub fn tool(name: &str, server_major: Option<u32>) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|v: &u32| root.join(v.to_string()).join("bin").join(name).is_file())
        .collect();
    versions.sort();
    let chosen = server_major
        .filter(|m| versions.contains(m))
        .or(versions.last().copied());
    match chosen {
        Some(v) => root.join(v.to_string()).join("bin").join(name),
        None => PathBuf::from(name),
    }
}

/// The major version of an installed tool, from its `--version` line
/// (`pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)` → 15).
fn tool_major(path: &Path) -> Option<u32> {
    let text = crate::command::version(path)?;
    let version = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    version.split(['.', '-']).next()?.parse().ok()
}

/// Why a dump tool of major version `own` cannot dump a server of major version `server`
/// (it is older: PostgreSQL's dump tools refuse newer servers), with the package to install.
fn too_old(name: &str, own: u32, server: u32) -> Option<String> {
    (own < server).then(|| {
        format!(
            "{name} {own} cannot dump a PostgreSQL {server} server; install the PostgreSQL \
             {server} client tools on this node (Debian: apt-get install postgresql-client-{server})"
        )
    })
}

/// The dump tool `name` for a server of major version `major`: refused, with what to install,
/// when the newest one here is older than the server.
fn dump_tool(name: &str, major: Option<u32>) -> Result<PathBuf, SourceError> {
    let path = tool(name, major);
    if let Some(server) = major
        && let Some(own) = tool_major(&path)
        && let Some(why) = too_old(name, own, server)
    {
        return Err(failed(name, why));
    }
    Ok(path)
}

impl Login {
    fn command(&self, tool: &Path) -> Command {
        let mut c = crate::command::tool(tool);
        for var in [
            "PGPASSFILE",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            c.env_remove(var);
        }
        c.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGSSLMODE", &self.sslmode)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "coffer")
            .stdin(Stdio::null());
        match &self.password {
            Some(p) => c.env("PGPASSWORD", p),
            None => c.env_remove("PGPASSWORD"),
        };
        c
    }

    /// `psql` against `db`, answering bare values and stopping at the first error.
    fn psql_command(&self, db: &str) -> Command {
        let mut c = self.command(&tool("psql", None));
        c.args([
            "--no-password",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
        ])
        .args(["--set", "ON_ERROR_STOP=1", "--dbname", db]);
        c
    }

    /// Run `psql` with one SQL command against `db`; its output.
    fn psql(&self, db: &str, sql: &str) -> Result<String, SourceError> {
        let out = self
            .psql_command(db)
            .args(["--command", sql])
            .output()
            .map_err(|e| failed("psql", format!("cannot start psql: {e}")))?;
        if !out.status.success() {
            return Err(failed(
                &format!("PostgreSQL at {}:{}", self.host, self.port),
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The server's major version (15 for 15.4).
    pub fn server_major(&self) -> Result<u32, SourceError> {
        let v = self.psql("postgres", "SHOW server_version_num")?;
        v.parse::<u32>()
            .map(|n| n / 10_000)
            .map_err(|_| failed("PostgreSQL", format!("unexpected server version {v:?}")))
    }

    /// The databases a whole-server backup takes: every one that accepts connections, but the
    /// templates.
    pub fn databases(&self) -> Result<Vec<String>, SourceError> {
        Ok(self
            .psql(
                "postgres",
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            )?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// `pg_dump` of one database as a stream.
    pub fn dump(&self, db: &str, major: Option<u32>) -> Result<Dump, SourceError> {
        self.dump_in(db, major, None)
    }

    /// `pg_dump` of one database as a stream, and the rows of each of its tables counted in
    /// the very snapshot the dump reads: a session begins a read-only repeatable-read
    /// transaction, exports its snapshot, counts, and stays open until the dump ends
    /// (`pg_dump --snapshot` imports it when it starts). When they cannot be counted, the
    /// dump is made all the same.
    pub fn dump_counted(&self, db: &str, major: Option<u32>) -> Result<Counted<Dump>, SourceError> {
        let what = rows::counting(db);
        let counted = (|| {
            let mut c = self.psql_command(db);
            c.arg("--quiet");
            let mut session = Session::start(c, what.clone(), "\\echo coffer:end", None)?;
            session.ask("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")?;
            let snapshot = session.ask("SELECT pg_export_snapshot();")?.concat();
            let rows = rows::from_json(&what, &session.ask(COUNT_ROWS)?.concat())?;
            Ok::<_, SourceError>((snapshot, session, rows))
        })();
        match counted {
            Ok((snapshot, session, rows)) => Ok(Counted {
                dump: self.dump_in(db, major, Some((snapshot, session)))?,
                rows: Some(rows),
            }),
            Err(e) => {
                tracing::warn!(database = db, error = %e, "rows not counted");
                self.dump_in(db, major, None).map(Counted::bare)
            }
        }
    }

    /// `pg_dump` of `db`, in the snapshot a session exported when one is given (the session
    /// kept open until the dump ends).
    fn dump_in(
        &self,
        db: &str,
        major: Option<u32>,
        snapshot: Option<(String, Session)>,
    ) -> Result<Dump, SourceError> {
        let mut c = self.command(&dump_tool("pg_dump", major)?);
        c.args([
            "--format=custom",
            "--compress=0",
            "--no-password",
            "--dbname",
            db,
        ]);
        let keep = snapshot.map(|(id, session)| {
            c.arg(format!("--snapshot={id}"));
            Box::new(session) as Box<dyn Send>
        });
        Dump::start(c, format!("pg_dump of database {db}"), keep)
    }

    /// The rows of each table of database `db` now.
    pub fn row_counts(&self, db: &str) -> Result<RowCounts, SourceError> {
        rows::from_json(&rows::counting(db), &self.psql(db, COUNT_ROWS)?)
    }

    /// Drop database `db` if it exists, with its connections.
    pub fn drop_database(&self, db: &str) -> Result<(), SourceError> {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(db)),
        )
        .map(drop)
    }

    /// `pg_dumpall --globals-only` (roles, tablespaces) as a stream.
    pub fn dump_globals(&self, major: Option<u32>) -> Result<Dump, SourceError> {
        let mut c = self.command(&dump_tool("pg_dumpall", major)?);
        c.args(["--globals-only", "--no-password"]);
        Dump::start(c, "pg_dumpall --globals-only".into(), None)
    }

    /// Apply a `pg_dumpall --globals-only` script read from `input`: roles and tablespaces
    /// come back as recorded (passwords included); those that exist already are altered, not
    /// created again. The password of this login's own role is left as it is now: set back to
    /// the recorded one, it would lock this restore (and later runs) out.
    pub fn restore_globals(&self, input: &mut dyn Read) -> Result<(), SourceError> {
        let mut input = KeepPassword::new(std::io::BufReader::new(input), &self.user);
        let mut c = self.command(&tool("psql", None));
        c.args([
            "--no-password",
            "--no-psqlrc",
            "--quiet",
            "--dbname",
            "postgres",
        ]);
        child::feed(c, &mut input, "restoring roles and tablespaces", |l| {
            l.contains("already exists")
        })
    }

    /// Restore the custom-format dump of database `db` read from `input` into `into`, which
    /// is dropped (with its connections) first. Restored under its own name, the database is
    /// created by the dump itself, as it was: owner, encoding, locale, privileges, settings;
    /// under another name it is created plainly. Objects keep their owners and privileges, so
    /// the roles they name must exist.
    pub fn restore(
        &self,
        db: &str,
        into: &str,
        input: &mut dyn Read,
        major: Option<u32>,
    ) -> Result<(), SourceError> {
        // Connected to another database than the one dropped (`postgres` itself, say).
        let admin = if into == "postgres" {
            "template1"
        } else {
            "postgres"
        };
        self.psql(
            admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(into)),
        )?;
        let mut c = self.command(&tool("pg_restore", major));
        c.args(["--no-password", "--exit-on-error"]);
        if db == into {
            c.args(["--create", "--dbname", admin]);
        } else {
            self.psql(admin, &format!("CREATE DATABASE {}", ident(into)))?;
            c.args(["--dbname", into]);
        }
        child::feed(
            c,
            input,
            &format!("pg_restore into database {into}"),
            child::none,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logins_own_password_is_kept_out_of_a_globals_restore() {
        let script = "CREATE ROLE backup;\n\
            ALTER ROLE backup WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:old';\n\
            ALTER ROLE backups WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:other';\n\
            ALTER ROLE \"Backup Admin\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';\n";
        let filtered = |role: &str| {
            let mut out = String::new();
            KeepPassword::new(script.as_bytes(), role)
                .read_to_string(&mut out)
                .unwrap();
            out
        };
        assert_eq!(
            filtered("backup"),
            script.replace(" PASSWORD 'SCRAM-SHA-256$4096:old'", "")
        );
        assert_eq!(
            filtered("Backup Admin"),
            script.replace(" PASSWORD 'SCRAM-SHA-256$4096:x'", "")
        );
        assert_eq!(filtered("nobody"), script);
    }

    #[test]
    fn an_older_dump_tool_says_what_to_install() {
        assert_eq!(too_old("pg_dump", 15, 15), None);
        assert_eq!(too_old("pg_dump", 16, 15), None);
        let why = too_old("pg_dump", 15, 17).unwrap();
        assert!(
            why.contains("pg_dump 15 cannot dump a PostgreSQL 17 server"),
            "{why}"
        );
        assert!(
            why.contains("apt-get install postgresql-client-17"),
            "{why}"
        );
    }

    #[test]
    fn the_installed_tools_tell_their_version() {
        let own = tool_major(&tool("pg_dump", None)).expect("pg_dump --version");
        assert!(own >= 10, "{own}");
    }
}

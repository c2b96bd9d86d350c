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

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::child::{self, Dump};
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

/// A database name as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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

impl Login {
    fn command(&self, tool: &Path) -> Command {
        let mut c = Command::new(tool);
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

    /// Run `psql` with one SQL command against `db`; its output.
    fn psql(&self, db: &str, sql: &str) -> Result<String, SourceError> {
        let out = self
            .command(&tool("psql", None))
            .args([
                "--no-password",
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
            ])
            .args(["--set", "ON_ERROR_STOP=1", "--dbname", db, "--command", sql])
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
        let mut c = self.command(&tool("pg_dump", major));
        c.args([
            "--format=custom",
            "--compress=0",
            "--no-password",
            "--dbname",
            db,
        ]);
        Dump::start(c, format!("pg_dump of database {db}"), None)
    }

    /// `pg_dumpall --globals-only` (roles, tablespaces) as a stream.
    pub fn dump_globals(&self, major: Option<u32>) -> Result<Dump, SourceError> {
        let mut c = self.command(&tool("pg_dumpall", major));
        c.args(["--globals-only", "--no-password"]);
        Dump::start(c, "pg_dumpall --globals-only".into(), None)
    }

    /// Restore a custom-format dump read from `input` into `db`, which is dropped (with its
    /// connections) and created anew first, with the owner it had. Objects keep their owners
    /// and privileges, so the roles they name must exist.
    pub fn restore(
        &self,
        db: &str,
        input: &mut dyn Read,
        major: Option<u32>,
    ) -> Result<(), SourceError> {
        let literal = format!("'{}'", db.replace('\'', "''"));
        let owner = self.psql(
            "postgres",
            &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {literal}"),
        )?;
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(db)),
        )?;
        let owned = if owner.is_empty() {
            String::new()
        } else {
            format!(" OWNER {}", ident(&owner))
        };
        self.psql("postgres", &format!("CREATE DATABASE {}{owned}", ident(db)))?;
        let mut c = self.command(&tool("pg_restore", major));
        c.args(["--no-password", "--exit-on-error", "--dbname", db]);
        child::feed(c, input, &format!("pg_restore into database {db}"))
    }
}

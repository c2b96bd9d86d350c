//! A PostgreSQL instance of a test's own (the machine's server trusts every local connection
//! and must not be stopped): `initdb` with password authentication, on a free port of
//! 127.0.0.1, run as the `postgres` user, stopped (immediately) when dropped or on demand.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{TempDir, free_port, sql_output, tempdir, wait_until};

/// The superuser's password in a test instance.
pub const PG_PASSWORD: &str = "test-superuser-password";

pub struct PgInstance {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn as_postgres(bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin).args(args);
    c
}

impl PgInstance {
    /// Start an instance; panics with what to do when it cannot.
    pub fn start() -> PgInstance {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .max()
            .expect("PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are needed: apt-get install postgresql");
        let dir = tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).expect("password file");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--pwfile",
                pwfile.to_str().expect("utf-8"),
            ],
        )
        .output()
        .expect("runuser and initdb run (the tests run as root)");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        let log = dir.path().join("log");
        let ok = as_postgres(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-l",
                log.to_str().expect("utf-8"),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        )
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl");
        assert!(
            ok.success(),
            "the test PostgreSQL did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let instance = PgInstance { dir, bin, port };
        wait_until(Duration::from_secs(30), || {
            instance
                .try_sql("postgres", "SELECT 1")
                .map_err(|e| format!("the test PostgreSQL does not answer: {e}"))
        });
        instance
    }

    /// Run SQL as the superuser; its output or psql's error.
    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .map_err(|e| e.to_string())?;
        sql_output(out)
    }

    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Stop at once, as a crash or `pg_ctl stop -m immediate` would.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

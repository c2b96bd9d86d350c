//! A MariaDB instance of a test's own (the machine's server must not be stopped and lets root
//! in without a password): `mariadb-install-db` into a temporary directory, `mariadbd` on a free
//! port of 127.0.0.1 as the `mysql` user, with a user `coffer` that has a password. Killed when
//! dropped or on demand.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{TempDir, free_port, sql_output, tempdir, wait_until};

/// The password of the user `coffer` in a test instance.
pub const MY_PASSWORD: &str = "test-coffer-password";

pub struct MyInstance {
    dir: TempDir,
    server: Option<Child>,
    pub port: u16,
    /// The `mariadbd` options given besides the testkit's own.
    options: Vec<String>,
}

impl MyInstance {
    /// Start an instance; panics with what to do when it cannot.
    pub fn start() -> MyInstance {
        MyInstance::start_with(&[])
    }

    /// Start an instance with these `mariadbd` options as well (`--log-bin`, say).
    pub fn start_with(options: &[&str]) -> MyInstance {
        let dir = tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let data = dir.path().join("data");
        // Its bootstrap server sometimes crashes when several run at once (MariaDB 10.11): one
        // at a time across the test processes, and a failed one is tried again.
        let lock = std::fs::File::create(std::env::temp_dir().join("coffer-test-mariadb-install"))
            .expect("lock file");
        lock.lock().expect("lock");
        let install = || {
            let _ = std::fs::remove_dir_all(&data);
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg("--user=mysql")
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                .output()
                .expect("mariadb-install-db is needed (Debian's mariadb-server)")
        };
        let mut out = install();
        for _ in 1..3 {
            if out.status.success() {
                break;
            }
            out = install();
        }
        drop(lock);
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut instance = MyInstance {
            dir,
            server: None,
            port: free_port(),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        instance.run();
        instance.sql(&format!(
            "CREATE USER 'coffer'@'%' IDENTIFIED BY '{MY_PASSWORD}';
             GRANT ALL ON *.* TO 'coffer'@'%';
             CREATE USER 'coffer'@'localhost' IDENTIFIED BY '{MY_PASSWORD}';
             GRANT ALL ON *.* TO 'coffer'@'localhost';"
        ));
        instance
    }

    /// Run SQL as root; its output or the client's error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
            ])
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        sql_output(out)
    }

    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Start its server on its data directory, and wait until it answers.
    fn run(&mut self) {
        let dir = self.dir.path();
        let server = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("err").display()))
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd is needed (Debian's mariadb-server)");
        self.server = Some(server);
        wait_until(Duration::from_secs(60), || {
            self.try_sql("SELECT 1").map_err(|_| {
                format!(
                    "the test MariaDB does not answer: {}",
                    std::fs::read_to_string(self.dir.path().join("err")).unwrap_or_default()
                )
            })
        });
    }

    /// Kill the server, as a crash would, and start it again on the same data and port.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// [`MyInstance::restart`] with other `mariadbd` options than it had.
    pub fn restart_with(&mut self, options: &[&str]) {
        self.options = options.iter().map(|o| o.to_string()).collect();
        self.restart();
    }

    /// Kill the server, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

impl Drop for MyInstance {
    fn drop(&mut self) {
        self.kill();
    }
}

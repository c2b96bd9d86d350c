//! A private MariaDB server to rebuild a database in (point-in-time recovery): its
//! own data directory under a base directory Coffer names, reachable only through a Unix socket
//! in that directory (`--skip-networking`), with a root that needs no password — nobody else
//! can reach the socket. Stopped and removed when dropped; what a killed process left behind is
//! removed by the next [`ScratchServer::start`] (or [`remove_leftovers`] at start-up).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::mysql::Login;
use crate::{SourceError, failed};

const WHAT: &str = "the scratch MariaDB server";

/// A running scratch server and the login that reaches it.
pub struct ScratchServer {
    child: Child,
    dir: PathBuf,
    pub login: Login,
}

impl std::fmt::Debug for ScratchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchServer")
            .field("dir", &self.dir)
            .finish()
    }
}

impl ScratchServer {
    /// Start one under `base` (made private if it does not exist); it answers when this
    /// returns. The tools come from Debian's `mariadb-server`.
    pub fn start(base: &Path) -> Result<ScratchServer, SourceError> {
        let err = |e: std::io::Error| failed(WHAT, e);
        remove_leftovers(base);
        let dir = crate::private_dir(base, &format!("{}-", std::process::id())).map_err(err)?;
        // Run as whoever runs Coffer: as root, mariadbd must be told so.
        let user: &[&str] = match rustix::process::geteuid().is_root() {
            true => &["--user=root"],
            false => &[],
        };
        let data = dir.join("data");
        let install = crate::command::tool("mariadb-install-db")
            .arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .map_err(|e| {
                failed(
                    WHAT,
                    format!(
                        "mariadb-install-db cannot start ({e}): Debian ships it in mariadb-server"
                    ),
                )
            })?;
        if !install.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(failed(
                WHAT,
                format!(
                    "mariadb-install-db failed: {}",
                    String::from_utf8_lossy(&install.stderr).trim()
                ),
            ));
        }
        let socket = dir.join("sock");
        let child = crate::command::tool("mariadbd")
            .arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("err").display()))
            .arg("--skip-networking")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                failed(
                    WHAT,
                    format!("mariadbd cannot start ({e}): Debian ships it in mariadb-server"),
                )
            })?;
        let server = ScratchServer {
            child,
            login: Login {
                host: None,
                port: 3306,
                socket: Some(socket.display().to_string()),
                user: "root".into(),
                password: None,
                tls: "disable".into(),
                scratch: dir.join("options"),
            },
            dir,
        };
        server.wait_until_it_answers()?;
        Ok(server)
    }

    /// Its directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wait_until_it_answers(&self) -> Result<(), SourceError> {
        let started = Instant::now();
        loop {
            match self.login.sql(None, "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(_) if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    let log = std::fs::read_to_string(self.dir.join("err")).unwrap_or_default();
                    let last: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(failed(
                        WHAT,
                        format!(
                            "it does not answer ({e}); its log ends: {}",
                            last.join(" | ")
                        ),
                    ));
                }
            }
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        // Its data is thrown away: no need to shut it down gently.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Remove the scratch servers under `base` whose process is gone (killed, crashed): stop a
/// server one of them left running (the one whose command line names its directory), then
/// remove its directory.
pub fn remove_leftovers(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name.split('-').next().unwrap_or_default();
        let a_pid = !owner.is_empty() && owner.bytes().all(|b| b.is_ascii_digit());
        if !a_pid || Path::new("/proc").join(owner).exists() {
            continue;
        }
        let ours = format!("--datadir={}", dir.join("data").display());
        crate::command::stop_leftover(&dir.join("pid"), &ours);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

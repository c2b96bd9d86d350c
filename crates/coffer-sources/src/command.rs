//! The one place Coffer starts processes: dump and restore tools and the probes that find
//! them. Starting a process anywhere else is refused by clippy (`disallowed-methods` in
//! `clippy.toml`), so that every child is started the same way: with no input it could read
//! from the server, and given secrets only through its environment or a private file (the
//! callers' business, checked in one place each).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A command for `program`, its input closed.
#[allow(clippy::disallowed_methods)]
pub(crate) fn tool(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null());
    c
}

/// Stop the process whose id `pid_file` holds if it is one a killed process of ours left
/// running — told by `marker`, an argument it was started with (a pid alone may have been
/// reused) — and wait until it is gone.
pub(crate) fn stop_leftover(pid_file: &Path, marker: &str) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let runs = || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
    };
    if !runs() {
        return;
    }
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    for _ in 0..100 {
        if !runs() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The first line `program --version` prints, if it runs.
pub(crate) fn version(program: &Path) -> Option<String> {
    let out = tool(program).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next()?.trim().to_string()).filter(|v| !v.is_empty())
}

/// A tool database sources need: where it is on `PATH`, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: &'static str,
    pub path: Option<PathBuf>,
    pub version: Option<String>,
}

/// The dump and client tools database sources need, looked up on `PATH`.
pub fn tools() -> Vec<Found> {
    const TOOLS: [&str; 12] = [
        "pg_dump",
        "pg_dumpall",
        "pg_restore",
        "psql",
        "mydumper",
        "myloader",
        "mariadb-dump",
        "mysqldump",
        "mariadb",
        "mysql",
        "mariadb-binlog",
        "sqlite3",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    TOOLS
        .iter()
        .map(|&name| {
            let path = dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p));
            let version = path.as_deref().and_then(version);
            Found {
                name,
                path,
                version,
            }
        })
        .collect()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

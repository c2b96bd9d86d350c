//! The rows of each table of a database, counted consistently with a dump of it: what a
//! restore drill compares the restored database with. The counts come from a client session
//! of the server's own (psql, mariadb) kept open beside the dump tool, in a snapshot that sees
//! exactly what the dump sees (see `postgres::Login::dump_counted`,
//! `mysql::Login::dump_counted`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::child::collect;
use crate::{SourceError, failed};

/// Rows per table.
pub type RowCounts = BTreeMap<String, u64>;

/// A dump, and the rows of each table it holds when they were counted.
pub struct Counted<R> {
    pub dump: R,
    pub rows: Option<RowCounts>,
}

impl<R> Counted<R> {
    /// A dump whose rows are not counted.
    pub fn bare(dump: R) -> Self {
        Counted { dump, rows: None }
    }
}

/// What a session prints alone on a line after each answer.
const END: &str = "coffer:end";

/// A client kept open: statements written to its input, its answers read line by line. Its
/// connection (and any transaction or lock it holds) ends when it is dropped.
pub(crate) struct Session {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    errors: Option<std::thread::JoinHandle<String>>,
    what: String,
    /// A statement that makes the client print [`END`] alone on a line.
    marker: &'static str,
    /// Kept while the client runs (its option file, say).
    _keep: Option<Box<dyn Send>>,
}

impl Session {
    pub(crate) fn start(
        mut c: Command,
        what: String,
        marker: &'static str,
        keep: Option<Box<dyn Send>>,
    ) -> Result<Session, SourceError> {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(&what, format!("cannot start the client: {e}")))?;
        Ok(Session {
            input: child.stdin.take().expect("piped"),
            output: BufReader::new(child.stdout.take().expect("piped")),
            errors: Some(collect(child.stderr.take())),
            child,
            what,
            marker,
            _keep: keep,
        })
    }

    /// Run `sql` (statements ending in `;`); the lines they printed.
    pub(crate) fn ask(&mut self, sql: &str) -> Result<Vec<String>, SourceError> {
        let sent = writeln!(self.input, "{sql}\n{}", self.marker).and_then(|()| self.input.flush());
        if sent.is_err() {
            return Err(self.ended());
        }
        let mut lines = vec![];
        loop {
            let mut line = String::new();
            match self.output.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return Err(self.ended()),
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line == END {
                return Ok(lines);
            }
            lines.push(line.to_string());
        }
    }

    /// The error of a client that ended (on an error in what it was asked), in its words.
    fn ended(&mut self) -> SourceError {
        let _ = self.child.kill();
        let status = self.child.wait();
        let errors = self
            .errors
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        failed(&self.what, format!("{} ({status})", errors.trim()))
    }

    /// A guard that ends the session's connection if it is not disarmed within `limit`:
    /// what keeps a lock the session holds from outliving a tool that hangs.
    pub(crate) fn deadline(&self, limit: Duration) -> Deadline {
        let (disarm, wait) = mpsc::channel::<()>();
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        let watch = std::thread::spawn(move || {
            let expired = matches!(
                wait.recv_timeout(limit),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            if expired && let Some(pid) = pid {
                // The child is not waited for before the guard is gone: its pid is its own.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            expired
        });
        Deadline { disarm, watch }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// See [`Session::deadline`].
pub(crate) struct Deadline {
    disarm: mpsc::Sender<()>,
    watch: std::thread::JoinHandle<bool>,
}

impl Deadline {
    /// Disarm it: whether it had expired (and ended the session) before.
    pub(crate) fn disarm(self) -> bool {
        let _ = self.disarm.send(());
        self.watch.join().unwrap_or(true)
    }
}

/// What counting the rows of database `db` is called in errors.
pub(crate) fn counting(db: &str) -> String {
    format!("counting the rows of database {db}")
}

/// The counts in an answer of one JSON object, table → rows.
pub(crate) fn from_json(what: &str, text: &str) -> Result<RowCounts, SourceError> {
    serde_json::from_str(text).map_err(|e| failed(what, format!("unexpected row counts: {e}")))
}

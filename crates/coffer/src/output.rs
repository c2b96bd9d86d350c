//! Output for people and for `--json`: sizes, durations, progress, and one-line errors that say
//! what to do.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coffer_repo::{BackendErrorKind, Error, Progress};

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("output serializes")
    );
}

/// A stable code and a hint for each kind of failure.
fn classify(e: &anyhow::Error) -> (&'static str, Option<&'static str>) {
    let Some(err) = e.downcast_ref::<Error>() else {
        return ("error", None);
    };
    match err {
        Error::NotARepository(_) => (
            "not_a_repository",
            Some("check --repo, or create one with `coffer repo init`"),
        ),
        Error::AlreadyExists(_) => (
            "already_exists",
            Some("choose another location, or use the existing repository"),
        ),
        Error::PasswordRequired => (
            "password_required",
            Some(
                "set COFFER_PASSWORD or pass --password-file FILE (or --key-file with a `coffer key export` file)",
            ),
        ),
        Error::WrongPassword => (
            "wrong_password",
            Some("check COFFER_PASSWORD or the file given to --password-file"),
        ),
        Error::WrongKeyFile => (
            "wrong_key_file",
            Some("the key file was exported from another repository"),
        ),
        Error::UnsupportedVersion(_) => ("unsupported_version", Some("use a newer Coffer")),
        Error::Damaged { .. } | Error::MissingBlob(_) => {
            ("damaged", Some("run `coffer verify` for a full report"))
        }
        Error::Locked(_) => (
            "locked",
            Some(
                "wait for it to finish; locks of processes that are gone are cleared automatically",
            ),
        ),
        Error::SnapshotNotFound(_) => (
            "snapshot_not_found",
            Some("list them with `coffer snapshots`"),
        ),
        Error::AmbiguousSnapshot(_) => ("ambiguous_snapshot", None),
        Error::NotInSnapshot(_) => ("not_in_snapshot", None),
        Error::Invalid(_) => ("invalid", None),
        Error::Refused(_) => ("refused", None),
        Error::Interrupted => ("interrupted", None),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => (
            "no_space",
            Some("free some space and run the command again; nothing already stored was changed"),
        ),
        Error::Io { .. } => ("io", None),
        Error::Backend(b) => match b.kind {
            BackendErrorKind::NotFound => ("not_found", None),
            BackendErrorKind::PermissionDenied if b.location.starts_with("s3://") => (
                "permission_denied",
                Some(
                    "check the access key (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and what it may do in the bucket",
                ),
            ),
            BackendErrorKind::PermissionDenied => (
                "permission_denied",
                Some("check the permissions of the repository"),
            ),
            BackendErrorKind::NoSpace => (
                "no_space",
                Some(
                    "free some space where the repository lives and run the command again; nothing already stored was changed",
                ),
            ),
            BackendErrorKind::Temporary => (
                "temporary",
                Some("check the connection to the storage and try again"),
            ),
            BackendErrorKind::Unreachable => (
                "unreachable",
                Some("check the address of the storage (AWS_ENDPOINT_URL) and that it is running"),
            ),
            BackendErrorKind::Misconfigured => (
                "misconfigured",
                Some("check the bucket name in --repo, and AWS_REGION"),
            ),
            BackendErrorKind::Other => ("storage", None),
        },
    }
}

/// An error and its causes on one line, each said once: errors that show their source in their
/// own message (an I/O error with its path) do not repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Report a failure: one line for people, or one JSON document.
pub fn error(e: &anyhow::Error, json: bool) {
    let (code, hint) = classify(e);
    let msg = one_line(e);
    if json {
        print_json(&serde_json::json!({ "error": msg, "code": code, "hint": hint }));
    } else {
        match hint {
            Some(h) => eprintln!("coffer: {msg} ({h})"),
            None => eprintln!("coffer: {msg}"),
        }
    }
}

/// A progress line on stderr while work runs, only when stderr is a terminal.
pub struct ProgressLine {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    pub fn start(progress: &Arc<Progress>, enabled: bool, verb: &'static str) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return ProgressLine {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let p = progress.clone();
        let thread = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new_spinner();
            let start = std::time::Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_millis(150))
            {
                let b = p.bytes.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{verb} {} files, {} ({}/s)",
                    p.files.load(Ordering::Relaxed),
                    bytes(b),
                    bytes((b as f64 / secs) as u64)
                ));
                bar.tick();
            }
            bar.finish_and_clear();
        });
        ProgressLine {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

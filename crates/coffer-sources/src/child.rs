//! Dump and restore tools as child processes: their output read as a stream while they write
//! it, their input fed from a stream, and their failure (non-zero exit, a signal, an error on
//! stderr) turned into an error — at the end of the stream, so that the engine never stores a
//! failed dump as a complete one.

use std::io::{Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use crate::{SourceError, failed};

/// The last 8 KiB a child writes to stderr, read on a thread of its own (a full pipe would
/// stop the child).
pub(crate) fn collect(
    stderr: Option<std::process::ChildStderr>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let Some(mut err) = stderr else {
            return text;
        };
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.len() > 8192 {
                let cut = (text.len() - 8192..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                text.drain(..cut);
            }
        }
        text
    })
}

/// Whether a tool reported an error on stderr (even when it exited with 0), other than those
/// `tolerated` accepts.
fn reports_error(stderr: &str, tolerated: fn(&str) -> bool) -> bool {
    stderr.lines().any(|l| {
        (l.contains("error:")
            || l.contains("Got error")
            || l.contains("FATAL:")
            || l.contains("CRITICAL")
            || l.contains("ERROR"))
            && !tolerated(l)
    })
}

/// How a dump tool that exited with `status` and wrote `errors` to stderr went: an error in
/// its own words unless it succeeded and reported no error.
pub(crate) fn outcome(what: &str, status: ExitStatus, errors: &str) -> std::io::Result<()> {
    if status.success() && !reports_error(errors, none) {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{what} failed ({status}): {}",
        errors.trim()
    )))
}

/// No error line is acceptable.
pub(crate) fn none(_: &str) -> bool {
    false
}

/// A dump tool's output as it writes it. Its end is an error unless the tool exited
/// successfully and reported no error.
pub struct Dump {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<std::thread::JoinHandle<String>>,
    what: String,
    ended: bool,
    /// Kept until the tool ends (a private option file, say).
    _keep: Option<Box<dyn Send>>,
}

impl std::fmt::Debug for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl Dump {
    pub(crate) fn start(
        mut c: Command,
        what: String,
        keep: Option<Box<dyn Send>>,
    ) -> Result<Dump, SourceError> {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(&what, format!("cannot start it: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = Some(collect(child.stderr.take()));
        Ok(Dump {
            child,
            stdout,
            stderr,
            what,
            ended: false,
            _keep: keep,
        })
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.ended = true;
        let status = self.child.wait()?;
        let errors = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        outcome(&self.what, status, &errors)
    }
}

impl Read for Dump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run a restore tool with `input` on its stdin; an error with its own words if it fails or
/// reports an error line that `tolerated` does not accept.
pub(crate) fn feed(
    mut c: Command,
    input: &mut dyn Read,
    what: &str,
    tolerated: fn(&str) -> bool,
) -> Result<(), SourceError> {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(what, format!("cannot start it: {e}")))?;
    let stderr = collect(child.stderr.take());
    let mut stdin = child.stdin.take().expect("piped");
    let copied = std::io::copy(input, &mut stdin).and_then(|_| stdin.flush());
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| failed(what, format!("waiting for it: {e}")))?;
    let errors = stderr.join().unwrap_or_default();
    if !status.success() || reports_error(&errors, tolerated) {
        return Err(failed(what, format!("{} ({status})", errors.trim())));
    }
    copied.map_err(|e| failed(what, e))?;
    Ok(())
}

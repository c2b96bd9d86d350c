//! Dump tools that write a directory of files instead of a stream (mydumper), and restore
//! tools that read one (myloader).
//!
//! A dump directory reaches the engine as a tar stream while its tool is still writing: each
//! file is taken as soon as the tool is done with it, appended to the stream and deleted, so
//! the disk holds only the files being written (a few table chunks), never the whole dump.
//! Such a tool writes each file once, start to end, and never reopens it; so a file is done
//! when the tool no longer holds it open and will not rename it (the tool's `Settled` rule).
//! The directory is listed *before* the tool's open files are read: a file created after the
//! listing is not considered, and one in the listing was opened when it was created, so if it
//! is not open now, it has been closed.
//!
//! The stream ends with the tool: its end is an error unless the tool exited successfully and
//! reported no error, so a failed dump is never stored as a complete one (the engine reads a
//! tar stream to its end).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::{PipeReader, PipeWriter, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::child::{collect, outcome};
use crate::{SourceError, failed};

/// How long to wait before looking again when no file was ready.
const POLL: Duration = Duration::from_millis(50);

/// The files of a directory: name → (device, inode).
pub(crate) type Listing = BTreeMap<OsString, (u64, u64)>;

/// Whether the tool has settled the name of a file it has closed: it will not rename it.
/// Given the file's name and everything now in the directory.
pub(crate) type Settled = fn(&str, &Listing) -> bool;

/// A dump directory as a tar stream of its files (each a regular file of mode 0644 with
/// time 0), in the order the tool finishes them.
pub struct DirDump {
    reader: Option<PipeReader>,
    worker: Option<JoinHandle<std::io::Result<()>>>,
    stop: Arc<AtomicBool>,
    what: String,
}

impl std::fmt::Debug for DirDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl DirDump {
    /// Start `c`, which writes its dump into `dir` (an empty private directory that `keep`
    /// removes when dropped, after the tool has ended).
    pub(crate) fn start(
        mut c: Command,
        dir: PathBuf,
        what: String,
        settled: Settled,
        keep: Box<dyn Send>,
    ) -> Result<DirDump, SourceError> {
        let (reader, writer) = std::io::pipe().map_err(|e| failed(&what, e))?;
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(&what, format!("cannot start it: {e}")))?;
        let stderr = collect(child.stderr.take());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (stop, what) = (stop.clone(), what.clone());
            std::thread::spawn(move || {
                let _keep = keep;
                let mut tar = tar::Builder::new(writer);
                let taken = take_files(&mut child, &dir, settled, &stop, &mut tar);
                if taken.is_err() {
                    let _ = child.kill();
                }
                let status = child.wait();
                let errors = stderr.join().unwrap_or_default();
                // A failure to take the files (the tool was killed for it) or the tool's own.
                taken?;
                outcome(&what, status?, &errors)?;
                tar.finish()
            })
        };
        Ok(DirDump {
            reader: Some(reader),
            worker: Some(worker),
            stop,
            what,
        })
    }
}

impl Read for DirDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(reader) = &mut self.reader else {
            return Ok(0);
        };
        let n = reader.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.reader = None;
            if let Some(worker) = self.worker.take() {
                worker
                    .join()
                    .map_err(|_| std::io::Error::other(format!("{} crashed", self.what)))??;
            }
        }
        Ok(n)
    }
}

impl Drop for DirDump {
    /// A dump dropped before its end stops its tool.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.reader = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Take the files of `dir` into `tar` as the tool finishes them, until it exits; then, if it
/// succeeded, the rest.
fn take_files(
    child: &mut Child,
    dir: &Path,
    settled: Settled,
    stop: &AtomicBool,
    tar: &mut tar::Builder<PipeWriter>,
) -> std::io::Result<()> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the dump was stopped"));
        }
        let exited = child.try_wait()?;
        if exited.is_some_and(|status| !status.success()) {
            return Ok(());
        }
        let files = listing(dir)?;
        let mut done: Vec<&OsString> = match exited {
            Some(_) => files.keys().collect(),
            None => match open_files(child.id()) {
                Some(open) => files
                    .iter()
                    .filter(|(name, key)| {
                        !open.contains(*key) && settled(&name.to_string_lossy(), &files)
                    })
                    .map(|(name, _)| name)
                    .collect(),
                None => vec![],
            },
        };
        // mydumper's `metadata` (the binlog position a baseline records) goes last: the
        // position is read from the end of the stream, which must not be the last chunks of a
        // large table still open when the tool ended.
        done.sort_by_key(|name| name.as_os_str() == "metadata");
        for name in &done {
            append(tar, &dir.join(name), name)?;
        }
        if exited.is_some() {
            return Ok(());
        }
        if done.is_empty() {
            std::thread::sleep(POLL);
        }
    }
}

/// The regular files in `dir`.
fn listing(dir: &Path) -> std::io::Result<Listing> {
    let mut files = Listing::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() {
            files.insert(entry.file_name(), (meta.dev(), meta.ino()));
        }
    }
    Ok(files)
}

/// The files process `pid` holds open, as (device, inode); none known when they cannot be
/// read.
fn open_files(pid: u32) -> Option<HashSet<(u64, u64)>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.filter_map(|fd| std::fs::metadata(fd.ok()?.path()).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect(),
    )
}

/// Append the finished file at `path` to `tar` under `name`, then delete it.
fn append(tar: &mut tar::Builder<PipeWriter>, path: &Path, name: &OsString) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let len = meta.len();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(len);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    // When the tool wrote it (the archive shows when the dump was made).
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    tar.append_data(&mut header, name, file.take(len))?;
    std::fs::remove_file(path)
}

/// Unpack a tar stream of a dump directory into `dir`, reading `input` to its end.
pub(crate) fn unpack(input: &mut dyn Read, dir: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(&mut *input);
    archive.unpack(dir)?;
    std::io::copy(input, &mut std::io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_name(_: &str, _: &Listing) -> bool {
        true
    }

    /// Run `script` (sh, with the output directory as `$1`) as a directory dump; the files of
    /// its archive, or the error its stream ended with.
    fn dump(script: &str, settled: Settled) -> Result<BTreeMap<String, Vec<u8>>, String> {
        Ok(dump_in_order(script, settled)?.into_iter().collect())
    }

    /// [`dump`], the files in the order of the archive.
    fn dump_in_order(script: &str, settled: Settled) -> Result<Vec<(String, Vec<u8>)>, String> {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        let mut c = crate::command::tool("sh");
        c.args(["-c", script, "sh"]).arg(&dir);
        let mut d = DirDump::start(c, dir, "test tool".into(), settled, Box::new(())).unwrap();
        let mut archive = vec![];
        d.read_to_end(&mut archive).map_err(|e| e.to_string())?;
        let mut files = vec![];
        for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut content = vec![];
            entry.read_to_end(&mut content).unwrap();
            files.push((name, content));
        }
        Ok(files)
    }

    #[test]
    fn metadata_ends_the_archive_when_files_are_left_at_the_end() {
        // Files still open when the tool exits are all taken then: mydumper's `metadata`
        // (where a baseline's binlog position is read, at the stream's end) after the rest.
        let files = dump_in_order(
            r#"cd "$1"; exec 3> metadata 4> z.00002.sql 5> a.sql
               echo position >&3; echo rows >&4; echo more >&5"#,
            every_name,
        )
        .unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.sql", "z.00002.sql", "metadata"]);
    }

    #[test]
    fn a_closed_file_is_taken_while_the_tool_still_writes_the_next() {
        // The tool writes b only once a is gone from its directory: the dump finishes only if
        // a was taken (and deleted) while the tool was still running and holding b's file.
        let files = dump(
            r#"cd "$1"; echo first > a.sql
               exec 3> b.sql; echo second >&3
               for i in $(seq 100); do [ -e a.sql ] || break; sleep 0.05; done
               [ -e a.sql ] && echo "a was never taken" >&3; echo done >&3"#,
            every_name,
        )
        .unwrap();
        assert_eq!(files["a.sql"], b"first\n");
        assert_eq!(files["b.sql"], b"second\ndone\n");
    }

    #[test]
    fn a_file_is_left_until_the_tool_settles_its_name() {
        fn not_partial(name: &str, _: &Listing) -> bool {
            !name.ends_with(".partial")
        }
        let files = dump(
            r#"cd "$1"; echo meta > metadata.partial; sleep 0.3; mv metadata.partial metadata"#,
            not_partial,
        )
        .unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["metadata"]);
    }

    #[test]
    fn a_tool_that_fails_ends_the_stream_with_its_error() {
        let err = dump(
            r#"cd "$1"; echo partial > a.sql; echo "lost connection" >&2; exit 1"#,
            every_name,
        )
        .unwrap_err();
        assert!(
            err.contains("test tool failed") && err.contains("lost connection"),
            "{err}"
        );
        let err = dump(
            r#"echo "** (mydumper:1): CRITICAL **: Error dumping table" >&2"#,
            every_name,
        )
        .unwrap_err();
        assert!(err.contains("Error dumping table"), "{err}");
    }
}

//! A MySQL/MariaDB server's binary log, followed as it is written: the ground point-in-time
//! recovery stands on.
//!
//! - [`Login::binlog_readiness`] says whether the server writes a binary log that can be
//!   replayed (`log_bin` on, `binlog_format` ROW or MIXED), and if not, what to change.
//! - [`Follower`] runs `mariadb-binlog --read-from-remote-server --raw --stop-never` into a
//!   directory: the server's binlog files, byte for byte, the current one growing as the server
//!   writes it (the login reaches the tool through its option file, as for the dump tools).
//! - [`scan`] reads a binlog file's event headers (the format is documented by MariaDB as "the
//!   binary log's v4 format": a 4-byte magic, then events, each with a 19-byte header giving its
//!   time, type and length): how many transactions it holds, the times of the first and last,
//!   and whether the file is complete. A growing file ends in a partial event, which is left
//!   for the next scan.
//! - [`replay`] applies archived binlog files to a server up to a second: the reconstruction
//!   step of point-in-time recovery.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::mysql::Login;
use crate::{SourceError, failed};

/// The first bytes of every binlog file.
pub const MAGIC: &[u8; 4] = b"\xfebin";
/// The v4 event header: timestamp (4), type (1), server id (4), event size (4), next position
/// (4), flags (2).
const HEADER: usize = 19;

/// Event types that matter here (MariaDB's numbering).
const STOP_EVENT: u8 = 3;
const ROTATE_EVENT: u8 = 4;
/// MariaDB writes one before every transaction and every DDL statement: one per transaction.
const GTID_EVENT: u8 = 162;

/// What a server's binary log setup allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub log_bin: bool,
    /// `ROW`, `MIXED` or `STATEMENT`.
    pub format: String,
    /// What is missing for point-in-time recovery, and how to enable it; none when ready.
    pub missing: Vec<String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.missing.is_empty()
    }
}

impl Login {
    /// Whether the server's binary log can be followed and replayed.
    pub fn binlog_readiness(&self) -> Result<Readiness, SourceError> {
        let out = self.sql(None, "SELECT @@log_bin, @@binlog_format")?;
        let mut cols = out.split('\t');
        let log_bin = cols.next() == Some("1");
        let format = cols.next().unwrap_or_default().to_string();
        let mut missing = vec![];
        if !log_bin {
            missing.push(
                "the binary log is off: start the server with log_bin (in my.cnf, [mysqld] \
                 log_bin=mysql-bin, with a server_id), then restart it"
                    .to_string(),
            );
        }
        if !matches!(format.as_str(), "ROW" | "MIXED") {
            missing.push(format!(
                "binlog_format is {format}: set binlog_format=ROW (or MIXED) in my.cnf, or \
                 SET GLOBAL binlog_format='ROW'"
            ));
        }
        Ok(Readiness {
            log_bin,
            format,
            missing,
        })
    }

    /// The file and position the server writes its binary log at now (`SHOW MASTER STATUS`).
    pub fn master_status(&self) -> Result<(String, u64), SourceError> {
        let out = self.sql(None, "SHOW MASTER STATUS")?;
        let mut cols = out.split('\t');
        match (cols.next(), cols.next().and_then(|p| p.parse().ok())) {
            (Some(file), Some(position)) if !file.is_empty() => Ok((file.to_string(), position)),
            _ => Err(failed("binlog", "the server writes no binary log")),
        }
    }

    /// The server's binlog files, oldest first, with their sizes (`SHOW BINARY LOGS`).
    pub fn binary_logs(&self) -> Result<Vec<(String, u64)>, SourceError> {
        Ok(self
            .sql(None, "SHOW BINARY LOGS")?
            .lines()
            .filter_map(|l| {
                let mut cols = l.split('\t');
                let name = cols.next()?.to_string();
                let size = cols.next()?.parse().ok()?;
                Some((name, size))
            })
            .collect())
    }
}

/// The binlog position a dump is consistent with, as the dump tools write it into the dump:
/// mariadb-dump's `--master-data=2` comment (`-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002',
/// MASTER_LOG_POS=1234;`) or mydumper's `metadata` file (`SHOW MASTER STATUS:` then `Log:` and
/// `Pos:` lines). `text` is a part of the dump that holds it.
pub fn dump_position(text: &[u8]) -> Option<(String, u64)> {
    let text = String::from_utf8_lossy(text);
    let digits = |s: &str| -> Option<u64> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    if let Some(at) = text.find("MASTER_LOG_FILE='") {
        let (file, rest) = text[at + "MASTER_LOG_FILE='".len()..].split_once('\'')?;
        let position = digits(rest.split_once("MASTER_LOG_POS=")?.1)?;
        return Some((file.to_string(), position));
    }
    let file = master_status(&text, "Log:").filter(|f| !f.is_empty())?;
    Some((file.to_string(), digits(master_status(&text, "Pos:")?)?))
}

/// The value of `field` (`Log:`, `Pos:`, `GTID:`) in the `SHOW MASTER STATUS:` block of
/// mydumper's `metadata`.
fn master_status<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    let at = text.find("SHOW MASTER STATUS:")?;
    text[at..]
        .lines()
        .skip(1)
        .take(4)
        .find_map(|l| l.trim().strip_prefix(field))
        .map(str::trim)
}

/// The GTID position a dump is consistent with, where the dump tool writes it: mariadb-dump's
/// `-- SET GLOBAL gtid_slave_pos='0-1-42';` comment (near its end) or the `GTID:` line of
/// mydumper's `metadata`.
pub fn dump_gtid(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let gtid = match text.find("gtid_slave_pos='") {
        Some(at) => text[at + "gtid_slave_pos='".len()..].split_once('\'')?.0,
        None => master_status(&text, "GTID:")?,
    };
    let valid = !gtid.is_empty()
        && gtid
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b',');
    valid.then(|| gtid.to_string())
}

/// `mariadb-binlog` copying the server's binary log into a directory from a given file on, and
/// waiting for more; stopped (killed) when dropped.
pub struct Follower {
    child: Child,
    /// The option file with the login: the tool reads it when it starts, and again when it
    /// reconnects, so it lives as long as the tool.
    _options: crate::mysql::OptionFile,
    dir: PathBuf,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("pid", &self.child.id())
            .field("dir", &self.dir)
            .finish()
    }
}

impl Follower {
    /// Start copying into `dir` from the binlog file `from` on. `replica_id` is the server id
    /// the tool registers with (unique among the server's replicas).
    pub fn start(
        login: &Login,
        dir: &Path,
        from: &str,
        replica_id: u32,
    ) -> Result<Follower, SourceError> {
        std::fs::create_dir_all(dir).map_err(|e| failed("binlog directory", e))?;
        // A follower of a process that was killed outlives it: two would write the same files.
        let result_prefix = format!("--result-file={}/", dir.display());
        crate::command::stop_leftover(&dir.join(PID_FILE), &result_prefix);
        let options = login.option_file()?;
        let tool = crate::mysql::binlog_tool();
        let mut c = login.command(&tool, &options);
        // `--result-file` is a prefix for the raw files: the directory, with its slash.
        c.args([
            "--read-from-remote-server",
            "--raw",
            "--stop-never",
            &format!("--stop-never-slave-server-id={replica_id}"),
            &result_prefix,
            from,
        ])
        .stdout(Stdio::null())
        // Into a file, not a pipe nobody reads while it runs (for days): a full pipe would
        // stop the tool.
        .stderr(
            std::fs::File::create(dir.join(LOG_FILE)).map_err(|e| failed("binlog directory", e))?,
        );
        let child = c.spawn().map_err(|e| {
            failed(
                "mariadb-binlog",
                format!("cannot start it ({e}): Debian ships it in mariadb-client"),
            )
        })?;
        let pid_file = dir.join(PID_FILE);
        let tmp = dir.join(format!("{PID_FILE}.tmp"));
        std::fs::write(&tmp, child.id().to_string())
            .and_then(|()| std::fs::rename(&tmp, &pid_file))
            .map_err(|e| failed("binlog directory", e))?;
        Ok(Follower {
            child,
            _options: options,
            dir: dir.to_path_buf(),
        })
    }

    /// The tool's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the tool still runs; when it ended, why (its last words).
    pub fn check(&mut self) -> Result<(), SourceError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                let err = std::fs::read_to_string(self.dir.join(LOG_FILE)).unwrap_or_default();
                let last: Vec<&str> = err.trim().lines().rev().take(3).collect();
                Err(failed(
                    "mariadb-binlog",
                    format!("it stopped ({status}): {}", last.join(" | ")),
                ))
            }
            Err(e) => Err(failed("mariadb-binlog", e)),
        }
    }
}

/// Where a follower's process id and its messages are kept, in the directory it writes to.
const PID_FILE: &str = ".follower.pid";
const LOG_FILE: &str = ".follower.log";

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Apply the transactions of database `database` in the binlog `files` (in order; the first
/// read from `start`, a position at a transaction boundary) to the server `login` reaches, up
/// to and including the second `until`: `mariadb-binlog` piped into the client, as a replica
/// would apply them. The tool stops at the first event after that second; a transaction it
/// cuts short there is rolled back when the client ends. Statements (DDL) are applied when
/// they ran with `database` as the default database — the binary log's own filter rule.
pub fn replay(
    login: &Login,
    files: &[PathBuf],
    start: u64,
    until: chrono::DateTime<chrono::Utc>,
    database: &str,
) -> Result<(), SourceError> {
    let what = format!("replaying the binary log of database {database}");
    // The tool reads --stop-datetime in its own time zone: UTC, said so.
    let stop = (until + chrono::TimeDelta::seconds(1)).format("%Y-%m-%d %H:%M:%S");
    let mut c = crate::command::tool(crate::mysql::binlog_tool());
    c.env("TZ", "UTC")
        .arg("--no-defaults")
        .arg(format!("--start-position={start}"))
        .arg(format!("--stop-datetime={stop}"))
        .arg(format!("--database={database}"))
        .arg("--")
        .args(files);
    let mut events = crate::child::Dump::start(c, format!("mariadb-binlog ({what})"), None)?;
    login.apply(database, &mut events, &what)
}

/// What a binlog file holds, from its event headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// When the server created the file (its first event's time, seconds since the epoch):
    /// with its name, what tells the file apart from a later one of the same name, written
    /// after the server started its binary log anew (`RESET MASTER`).
    pub created: Option<u32>,
    /// Transactions (and DDL statements) in it.
    pub transactions: u64,
    /// When the first and the last of them were written (seconds since the epoch).
    pub first: Option<u32>,
    pub last: Option<u32>,
    /// Bytes of whole events (with the magic): the length up to which the file is settled.
    pub settled: u64,
    /// The server closed it (a rotate or stop event ends it): it will not grow any more.
    pub complete: bool,
}

/// Read the event headers of a binlog file's bytes. Not a binlog file: an error.
pub fn scan(bytes: &[u8]) -> Result<Scan, SourceError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(not_binlog("binlog"));
    }
    walk(bytes.len() as u64, Scan::start(), |at| {
        let at = at as usize;
        Ok(bytes[at..at + HEADER].try_into().expect("a whole header"))
    })
}

/// [`scan`] of the file at `path`, reading only its event headers (a binlog file can be large),
/// and only those after `before`, an earlier scan of the same file: a binlog file only grows
/// (one that is shorter now, rewritten from its start, is scanned from its start).
pub fn scan_file(path: &Path, before: Option<&Scan>) -> Result<Scan, SourceError> {
    use std::io::{Read, Seek, SeekFrom};
    let what = path.display().to_string();
    let err = |e: std::io::Error| failed(&what, e);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let mut magic = [0u8; MAGIC.len()];
    if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(not_binlog(&what));
    }
    let start = before
        .filter(|b| b.settled <= len)
        .cloned()
        .unwrap_or_else(Scan::start);
    walk(len, start, |at| {
        let mut header = [0u8; HEADER];
        f.seek(SeekFrom::Start(at)).map_err(err)?;
        f.read_exact(&mut header).map_err(err)?;
        Ok(header)
    })
}

/// When the binlog file at `path` was created ([`Scan::created`]), read from its first event's
/// header alone; none while the file is too short to hold it.
pub fn created(path: &Path) -> Result<Option<u32>, SourceError> {
    use std::io::Read;
    let what = path.display().to_string();
    let mut head = [0u8; MAGIC.len() + 4];
    let mut f = std::fs::File::open(path).map_err(|e| failed(&what, e))?;
    match f.read_exact(&mut head) {
        Ok(()) if head.starts_with(MAGIC) => Ok(Some(u32::from_le_bytes(
            head[MAGIC.len()..].try_into().expect("4 bytes"),
        ))),
        Ok(()) => Err(not_binlog(&what)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(failed(&what, e)),
    }
}

fn not_binlog(what: &str) -> SourceError {
    failed(what, "this is not a binlog file (no magic number)")
}

impl Scan {
    /// Nothing read yet but the magic.
    fn start() -> Scan {
        Scan {
            settled: MAGIC.len() as u64,
            ..Scan::default()
        }
    }
}

/// Walk on from `s` the events of a binlog of `len` bytes whose header at an offset
/// `header_at` reads.
fn walk(
    len: u64,
    mut s: Scan,
    mut header_at: impl FnMut(u64) -> Result<[u8; HEADER], SourceError>,
) -> Result<Scan, SourceError> {
    let mut at = s.settled;
    while len - at >= HEADER as u64 {
        let h = header_at(at)?;
        let time = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let kind = h[4];
        let size = u64::from(u32::from_le_bytes(h[9..13].try_into().expect("4 bytes")));
        if size < HEADER as u64 {
            return Err(failed(
                "binlog",
                format!("an event at byte {at} claims {size} bytes, less than its header"),
            ));
        }
        if len - at < size {
            break; // still being written
        }
        if at == MAGIC.len() as u64 {
            s.created = Some(time);
        }
        if kind == GTID_EVENT {
            s.transactions += 1;
            s.first.get_or_insert(time);
            s.last = Some(time);
        }
        if kind == ROTATE_EVENT || kind == STOP_EVENT {
            s.complete = true;
        }
        at += size;
        s.settled = at;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: u32, kind: u8, body: usize) -> Vec<u8> {
        let size = (HEADER + body) as u32;
        let mut e = vec![];
        e.extend_from_slice(&time.to_le_bytes());
        e.push(kind);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend(std::iter::repeat_n(0u8, body));
        e
    }

    #[test]
    fn a_growing_file_is_settled_up_to_its_last_whole_event() {
        let mut f = MAGIC.to_vec();
        f.extend(event(100, 15, 40)); // format description
        f.extend(event(101, GTID_EVENT, 10));
        f.extend(event(101, 16, 8)); // xid
        f.extend(event(105, GTID_EVENT, 10));
        let whole = f.len() as u64;
        f.extend(&event(106, GTID_EVENT, 10)[..7]);
        let s = scan(&f).unwrap();
        assert_eq!(
            s,
            Scan {
                created: Some(100),
                transactions: 2,
                first: Some(101),
                last: Some(105),
                settled: whole,
                complete: false,
            }
        );
        f.truncate(whole as usize);
        f.extend(event(107, ROTATE_EVENT, 20));
        assert!(scan(&f).unwrap().complete);
        assert!(scan(b"not a binlog").is_err());
        let mut bad = MAGIC.to_vec();
        bad.extend(event(1, 2, 0));
        bad[4 + 9..4 + 13].copy_from_slice(&3u32.to_le_bytes());
        assert!(scan(&bad).is_err(), "an event shorter than its header");
    }

    #[test]
    fn the_position_a_dump_is_consistent_with_is_read_from_either_tool() {
        let sql = b"-- MariaDB dump 10.19\n--\n-- Position to start replication or point-in-time recovery from\n--\n\n-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=1234;\n";
        assert_eq!(dump_position(sql), Some(("binlog.000002".into(), 1234)));
        let mydumper = b"Started dump at: 2026-12-06 11:00:00\nSHOW MASTER STATUS:\n\tLog: mysql-bin.000007\n\tPos: 328\n\tGTID:0-1-5\n\nFinished dump at: 2026-12-06 11:00:01\n";
        assert_eq!(
            dump_position(mydumper),
            Some(("mysql-bin.000007".into(), 328))
        );
        assert_eq!(dump_gtid(mydumper).as_deref(), Some("0-1-5"));
        let tail = b"-- Preferably use GTID to start replication from GTID position:\n\n-- SET GLOBAL gtid_slave_pos='0-1-1,1-2-7';\n/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n";
        assert_eq!(dump_gtid(tail).as_deref(), Some("0-1-1,1-2-7"));
        assert_eq!(dump_gtid(sql), None);
        assert_eq!(dump_gtid(b"-- SET GLOBAL gtid_slave_pos='';"), None);
        assert_eq!(
            dump_position(b"-- MariaDB dump 10.19\nCREATE TABLE t (id INT);"),
            None
        );
    }

    #[test]
    fn a_file_is_scanned_by_its_headers_alone() {
        let mut f = MAGIC.to_vec();
        f.extend(event(100, GTID_EVENT, 1000));
        f.extend(event(101, GTID_EVENT, 10));
        f.extend(&event(102, GTID_EVENT, 10)[..25]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("binlog.000001");
        std::fs::write(&path, &f).unwrap();
        let whole = scan(&f).unwrap();
        assert_eq!(scan_file(&path, None).unwrap(), whole);
        assert_eq!(whole.created, Some(100));
        assert_eq!(created(&path).unwrap(), Some(100));
        // On from an earlier scan of its first event: the same.
        let mut first = MAGIC.to_vec();
        first.extend(event(100, GTID_EVENT, 1000));
        let before = scan(&first).unwrap();
        assert_eq!(scan_file(&path, Some(&before)).unwrap(), whole);
        // A file shorter than the earlier scan was rewritten: read from its start.
        let longer = Scan {
            settled: 1 << 20,
            transactions: 99,
            ..Scan::default()
        };
        assert_eq!(scan_file(&path, Some(&longer)).unwrap(), whole);
        std::fs::write(&path, b"\xfebin\x01").unwrap();
        assert_eq!(created(&path).unwrap(), None, "too short to tell");
        std::fs::write(&path, b"\xfebi").unwrap();
        assert!(scan_file(&path, None).is_err());
    }
}

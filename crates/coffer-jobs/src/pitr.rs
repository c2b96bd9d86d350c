//! Point-in-time recovery's archive: a database server's binlog files kept in a
//! repository, one snapshot per file, labelled with what the file holds. A growing file is
//! stored again as it grows (deduplication keeps that cheap) and its newer copy replaces the
//! older, so what is covered — the oldest and latest events, how many, the gaps — is told from
//! the repository alone, whatever happened to the server's metadata.
//!
//! Storing a grown file again reads it whole (chunked and hashed; only new chunks are
//! uploaded): cheap for files of tens of MiB, costly near `max_binlog_size` (1 GiB). Storing
//! the appended part as a segment, consolidated when the file completes, is the way out. Each
//! replaced copy leaves its last, partial chunk unreferenced: the archiver prunes when a file
//! completes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use coffer_repo::{BackupItem, BackupOptions, Id, ParentChoice, Repository, Source};
use coffer_sources::binlog;

use crate::{JobsError, Result};

/// The label naming the credential whose server a binlog snapshot comes from.
pub const PITR_LABEL: &str = "pitr";
const BINLOG_LABEL: &str = "binlog";

/// One binlog file as the archive holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub name: String,
    pub snapshot: Id,
    pub scan: binlog::Scan,
}

/// The binlog files archived for credential `credential`, by name.
pub fn archived(repo: &Repository, credential: &str) -> Result<BTreeMap<String, Archived>> {
    let mut out = BTreeMap::new();
    for (id, s) in coffer_repo::snapshot::list(repo)?.snapshots {
        if s.labels.get(PITR_LABEL).map(String::as_str) != Some(credential) {
            continue;
        }
        let Some(name) = s.labels.get(BINLOG_LABEL) else {
            continue;
        };
        let number = |k: &str| s.labels.get(k).and_then(|v| v.parse::<u64>().ok());
        let scan = binlog::Scan {
            transactions: number("transactions").unwrap_or(0),
            first: number("first").map(|t| t as u32),
            last: number("last").map(|t| t as u32),
            settled: number("settled").unwrap_or(0),
            complete: s.labels.get("complete").map(String::as_str) == Some("true"),
        };
        // Snapshots are listed oldest first: a newer copy of the same file wins.
        out.insert(
            name.clone(),
            Archived {
                name: name.clone(),
                snapshot: id,
                scan,
            },
        );
    }
    Ok(out)
}

/// The binlog files archived at `target` for credential `credential` (none before the first
/// is stored).
pub(crate) fn archived_in(
    target: &crate::target::Target,
    credential: &str,
) -> Result<BTreeMap<String, Archived>> {
    match target.open() {
        Ok(repo) => archived(&repo, credential),
        Err(coffer_repo::Error::NotARepository(_)) => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// Store each binlog file in `spool` that holds more settled bytes than `known` says, and
/// forget the copy it replaces. Returns the names stored.
pub fn store(
    repo: &Repository,
    credential: &str,
    spool: &Path,
    known: &mut BTreeMap<String, Archived>,
) -> Result<Vec<String>> {
    let io = |what: &Path, e: std::io::Error| JobsError::io(what.display(), e);
    let mut names: Vec<String> = std::fs::read_dir(spool)
        .map_err(|e| io(spool, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| binlog_number(n).is_some())
        .collect();
    names.sort();
    let mut stored = vec![];
    for name in names {
        let path = spool.join(&name);
        // Only what the file gained since it was last stored is read.
        let scan = binlog::scan_file(&path, known.get(&name).map(|a| &a.scan))?;
        if known
            .get(&name)
            .is_some_and(|a| a.scan.settled >= scan.settled)
        {
            continue;
        }
        let mut labels = BTreeMap::from([
            (PITR_LABEL.to_string(), credential.to_string()),
            (BINLOG_LABEL.to_string(), name.clone()),
            ("transactions".into(), scan.transactions.to_string()),
            ("settled".into(), scan.settled.to_string()),
            ("complete".into(), scan.complete.to_string()),
        ]);
        if let (Some(first), Some(last)) = (scan.first, scan.last) {
            labels.insert("first".into(), first.to_string());
            labels.insert("last".into(), last.to_string());
        }
        let file = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
        let reader: Box<dyn Read + Send> = Box::new(file.take(scan.settled));
        let item = BackupItem::named(&format!("binlog/{name}"), Source::Stream(reader))?;
        let summary = coffer_repo::backup(
            repo,
            vec![item],
            BackupOptions {
                labels,
                parent: ParentChoice::None,
                ..BackupOptions::default()
            },
        )?;
        // The new copy is stored before the old one goes.
        if let Some(old) = known.get(&name) {
            coffer_repo::forget::forget_ids(repo, &[old.snapshot], false)?;
        }
        known.insert(
            name.clone(),
            Archived {
                name: name.clone(),
                snapshot: summary.snapshot_id,
                scan,
            },
        );
        stored.push(name);
    }
    Ok(stored)
}

/// `binlog.000042` → ("binlog", 42).
pub(crate) fn binlog_number(name: &str) -> Option<(&str, u64)> {
    let (base, n) = name.rsplit_once('.')?;
    if n.len() < 6 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, n.parse().ok()?))
}

/// What the archive covers: the span of its events, and where events are missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub oldest_event: Option<DateTime<Utc>>,
    pub latest_event: Option<DateTime<Utc>>,
    pub total_events: u64,
    /// Binlog files the server wrote that the archive does not hold (between two it holds).
    pub gaps: Vec<String>,
}

impl Coverage {
    /// Whether any point in time can be recovered from these events.
    pub fn available(&self) -> bool {
        self.total_events > 0
    }
}

/// The coverage of the archived files `archived`.
pub fn coverage(archived: &BTreeMap<String, Archived>) -> Coverage {
    let at = |t: u32| DateTime::from_timestamp(i64::from(t), 0);
    let mut gaps = vec![];
    let mut before: Option<(&str, u64)> = None;
    for name in archived.keys() {
        let Some((base, n)) = binlog_number(name) else {
            continue;
        };
        if let Some((b, m)) = before
            && b == base
        {
            gaps.extend((m + 1..n).map(|k| format!("{base}.{k:06}")));
        }
        before = Some((base, n));
    }
    let files = archived.values().map(|a| &a.scan);
    Coverage {
        oldest_event: files.clone().filter_map(|s| s.first).min().and_then(at),
        latest_event: files.clone().filter_map(|s| s.last).max().and_then(at),
        total_events: files.map(|s| s.transactions).sum(),
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, transactions: u64, first: u32, last: u32) -> (String, Archived) {
        let id: Id = "00".repeat(32).parse().unwrap();
        (
            name.to_string(),
            Archived {
                name: name.into(),
                snapshot: id,
                scan: binlog::Scan {
                    transactions,
                    first: Some(first),
                    last: Some(last),
                    settled: 100,
                    complete: true,
                },
            },
        )
    }

    #[test]
    fn coverage_spans_the_files_and_names_the_missing_ones() {
        let files: BTreeMap<_, _> = [
            file("binlog.000001", 3, 100, 200),
            file("binlog.000002", 2, 210, 300),
            file("binlog.000005", 4, 500, 900),
        ]
        .into_iter()
        .collect();
        let c = coverage(&files);
        assert_eq!(c.total_events, 9);
        assert_eq!(c.oldest_event, DateTime::from_timestamp(100, 0));
        assert_eq!(c.latest_event, DateTime::from_timestamp(900, 0));
        assert_eq!(c.gaps, ["binlog.000003", "binlog.000004"]);
        assert!(c.available());
        assert!(!coverage(&BTreeMap::new()).available());
        assert_eq!(binlog_number("mysql-bin.000123"), Some(("mysql-bin", 123)));
        assert_eq!(binlog_number("binlog.index"), None);
    }
}

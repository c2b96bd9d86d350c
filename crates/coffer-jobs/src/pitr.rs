//! Point-in-time recovery's archive: a database server's binlog files kept in a
//! repository, labelled with what each file holds, so that what is covered — the oldest and
//! latest events, how many, the gaps, the resets — is told from the repository alone, whatever
//! happened to the server's metadata.
//!
//! A growing file is stored again as it grows. While it is small, whole (deduplication keeps
//! that cheap, and the newer copy replaces the older); once it is large, only what it gained,
//! as a piece of its own, so that a pass reads the new bytes and not the whole file again
//! ([`Pieces`]); after a number of pieces, and when the file completes, it is stored whole
//! once more and the pieces go. A replaced copy leaves its last, partial chunk unreferenced:
//! the archiver prunes when a file completes.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use coffer_repo::{BackupItem, BackupOptions, Id, ParentChoice, Repository, Source};
use coffer_sources::binlog;

use crate::{JobsError, Result};

/// The label naming the credential whose server a binlog snapshot comes from.
pub const PITR_LABEL: &str = "pitr";
const BINLOG_LABEL: &str = "binlog";
const SEQUENCE_LABEL: &str = "sequence";
/// On a piece: where in the file its bytes start.
const OFFSET_LABEL: &str = "offset";
/// On a mark: when the server was found writing no binary log.
const OFF_LABEL: &str = "binlog_off";

/// Where a binlog file sits in the archive: the sequence of the server's binary log it belongs
/// to (0, then one more each time the server started its log anew, `RESET MASTER`, reusing
/// the names), and its name.
pub type Key = (u32, String);

/// One binlog file as the archive holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub sequence: u32,
    pub name: String,
    /// The snapshots holding the file's bytes, in order: the first from its start, each next
    /// one what the file gained after the one before.
    pub pieces: Vec<Id>,
    /// What the pieces hold together.
    pub scan: binlog::Scan,
}

impl Archived {
    pub fn key(&self) -> Key {
        (self.sequence, self.name.clone())
    }

    /// Write the file's bytes, as far as archived, to `out`.
    pub fn copy_to(&self, repo: &Repository, out: &mut dyn std::io::Write) -> Result<()> {
        for piece in &self.pieces {
            repo.open_snapshot(piece)?
                .cat(&format!("binlog/{}", self.name), &mut *out)?;
        }
        Ok(())
    }
}

/// When a growing file's gain is stored as a piece of its own rather than with the whole file
/// again: once the file holds `from` bytes, up to `most` pieces, after which (and when the
/// file completes) the whole file is stored once more and the pieces go. A whole store reads
/// the file from its start; a piece reads only what it gained.
#[derive(Debug, Clone, Copy)]
pub struct Pieces {
    pub from: u64,
    pub most: usize,
}

impl Default for Pieces {
    fn default() -> Self {
        Pieces {
            from: 16 << 20,
            most: 32,
        }
    }
}

/// A credential's archived binlog files, in the order the server wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    pub files: BTreeMap<Key, Archived>,
    /// Sequences that began with the server found writing no binary log (its `log_bin` off),
    /// and when: what it wrote then is not in any file.
    pub off: BTreeMap<u32, u32>,
    /// Snapshots no file needs: pieces an interrupted store left behind, forgotten by the
    /// next store.
    pub stale: Vec<Id>,
}

impl Archive {
    pub fn get(&self, sequence: u32, name: &str) -> Option<&Archived> {
        self.files.get(&(sequence, name.to_string()))
    }

    /// The sequence the server writes now, as far as the archive knows.
    pub fn current(&self) -> u32 {
        let files = self.files.keys().next_back().map_or(0, |(s, _)| *s);
        let off = self.off.keys().next_back().copied().unwrap_or(0);
        files.max(off)
    }

    /// The file archived last.
    pub fn newest(&self) -> Option<&Archived> {
        self.files.values().next_back()
    }

    /// The files of sequence `sequence`, in order.
    pub fn sequence(&self, sequence: u32) -> impl Iterator<Item = &Archived> {
        self.files.values().filter(move |a| a.sequence == sequence)
    }

    /// When each sequence after the first started (the server found without its binary log,
    /// or its first file's creation), in order.
    pub fn resets(&self) -> Vec<(u32, DateTime<Utc>)> {
        let mut out: BTreeMap<u32, DateTime<Utc>> = BTreeMap::new();
        let files = self
            .files
            .values()
            .filter_map(|a| Some((a.sequence, a.scan.created?)));
        for (s, t) in self.off.iter().map(|(s, t)| (*s, *t)).chain(files) {
            let Some(t) = at(t).filter(|_| s > 0) else {
                continue;
            };
            out.entry(s)
                .and_modify(|first| *first = (*first).min(t))
                .or_insert(t);
        }
        out.into_iter().collect()
    }

    /// The sequence the server wrote at moment `t`: the newest that had started by then.
    pub fn sequence_at(&self, t: DateTime<Utc>) -> u32 {
        self.resets()
            .into_iter()
            .filter(|(_, started)| *started <= t)
            .map(|(s, _)| s)
            .next_back()
            .unwrap_or(0)
    }

    /// The sequence a file named `name` created at `created` belongs to: that of the same
    /// file archived already; else the current one, unless the current one holds that name
    /// or a later one — then the server started its log anew, and this is the next.
    fn place(&self, name: &str, created: u32) -> u32 {
        let same = self
            .files
            .values()
            .rev()
            .find(|a| a.name == name && a.scan.created.is_none_or(|c| c == created));
        if let Some(a) = same {
            return a.sequence;
        }
        let current = self.current();
        let passed =
            self.sequence(current)
                .any(|a| match (binlog_number(&a.name), binlog_number(name)) {
                    (Some((b, m)), Some((base, n))) => b == base && m >= n,
                    _ => a.name.as_str() >= name,
                });
        match passed {
            true => current + 1,
            false => current,
        }
    }
}

fn at(t: u32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::from(t), 0)
}

/// The binlog files archived for credential `credential`.
pub fn archived(repo: &Repository, credential: &str) -> Result<Archive> {
    let mut out = Archive::default();
    // Oldest first: a whole copy replaces what was before it, a piece continues its file.
    for (id, s) in coffer_repo::snapshot::list(repo)?.snapshots {
        if s.labels.get(PITR_LABEL).map(String::as_str) != Some(credential) {
            continue;
        }
        let number = |k: &str| s.labels.get(k).and_then(|v| v.parse::<u64>().ok());
        if let (Some(sequence), Some(off)) = (number(SEQUENCE_LABEL), number(OFF_LABEL)) {
            out.off.insert(sequence as u32, off as u32);
            continue;
        }
        let Some(name) = s.labels.get(BINLOG_LABEL) else {
            continue;
        };
        let scan = binlog::Scan {
            created: number("created").map(|t| t as u32),
            transactions: number("transactions").unwrap_or(0),
            first: number("first").map(|t| t as u32),
            last: number("last").map(|t| t as u32),
            settled: number("settled").unwrap_or(0),
            complete: s.labels.get("complete").map(String::as_str) == Some("true"),
        };
        let key = (number(SEQUENCE_LABEL).unwrap_or(0) as u32, name.clone());
        match number(OFFSET_LABEL) {
            None | Some(0) => {
                let a = Archived {
                    sequence: key.0,
                    name: name.clone(),
                    pieces: vec![id],
                    scan,
                };
                if let Some(old) = out.files.insert(key, a) {
                    out.stale.extend(old.pieces);
                }
            }
            Some(offset) => match out.files.get_mut(&key) {
                Some(a) if a.scan.settled == offset => {
                    a.pieces.push(id);
                    a.scan = scan;
                }
                _ => out.stale.push(id),
            },
        }
    }
    Ok(out)
}

/// The binlog files archived at `target` for credential `credential` (none before the first
/// is stored).
pub(crate) fn archived_in(target: &crate::target::Target, credential: &str) -> Result<Archive> {
    match target.open() {
        Ok(repo) => archived(&repo, credential),
        Err(coffer_repo::Error::NotARepository(_)) => Ok(Archive::default()),
        Err(e) => Err(e.into()),
    }
}

/// The binlog files in `spool`, each with the place it has in `archive` and when it was
/// created, in order (a file too short to tell when it was created is left for later).
fn spooled(spool: &Path, archive: &Archive) -> Result<Vec<(Key, PathBuf, u32)>> {
    let io = |what: &Path, e: std::io::Error| JobsError::io(what.display(), e);
    let mut out = vec![];
    for entry in std::fs::read_dir(spool).map_err(|e| io(spool, e))? {
        let name = entry.map_err(|e| io(spool, e))?.file_name();
        let name = name.to_string_lossy().into_owned();
        if binlog_number(&name).is_none() {
            continue;
        }
        let path = spool.join(&name);
        if let Some(created) = binlog::created(&path)? {
            out.push(((archive.place(&name, created), name), path, created));
        }
    }
    out.sort();
    Ok(out)
}

/// Store what each binlog file in `spool` holds beyond what `archive` says, as `pieces` tells
/// (the whole file, or what it gained), and forget the copies a whole one replaces. Returns
/// the files stored.
pub fn store(
    repo: &Repository,
    credential: &str,
    spool: &Path,
    archive: &mut Archive,
    pieces: Pieces,
) -> Result<Vec<Key>> {
    let mut stored = vec![];
    // One at a time: a file placed in a new sequence makes the next ones follow it.
    for ((_, name), path, created) in spooled(spool, archive)? {
        let key = (archive.place(&name, created), name.clone());
        let before = archive.files.get(&key);
        // Only what the file gained since it was last stored is read.
        let scan = binlog::scan_file(&path, before.map(|a| &a.scan))?;
        if before.is_some_and(|a| a.scan.settled >= scan.settled) {
            continue;
        }
        let from = match before {
            Some(a)
                if a.scan.settled >= pieces.from
                    && a.pieces.len() < pieces.most
                    && !scan.complete =>
            {
                a.scan.settled
            }
            _ => 0,
        };
        let mut labels = BTreeMap::from([
            (PITR_LABEL.to_string(), credential.to_string()),
            (BINLOG_LABEL.to_string(), name.clone()),
            (SEQUENCE_LABEL.to_string(), key.0.to_string()),
            (OFFSET_LABEL.to_string(), from.to_string()),
            ("transactions".into(), scan.transactions.to_string()),
            ("settled".into(), scan.settled.to_string()),
            ("complete".into(), scan.complete.to_string()),
        ]);
        for (label, value) in [
            ("created", scan.created),
            ("first", scan.first),
            ("last", scan.last),
        ] {
            if let Some(v) = value {
                labels.insert(label.into(), v.to_string());
            }
        }
        let io = |e: std::io::Error| JobsError::io(path.display(), e);
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(from)).map_err(io)?;
        let reader: Box<dyn Read + Send> = Box::new(file.take(scan.settled - from));
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
        let mut pieces = before.map(|a| a.pieces.clone()).unwrap_or_default();
        if from == 0 {
            // The whole copy is stored before what it replaces goes.
            let gone: Vec<Id> = pieces.drain(..).chain(archive.stale.drain(..)).collect();
            if !gone.is_empty() {
                coffer_repo::forget::forget_ids(repo, &gone, false)?;
            }
        }
        pieces.push(summary.snapshot_id);
        let a = Archived {
            sequence: key.0,
            name,
            pieces,
            scan,
        };
        archive.files.insert(key.clone(), a);
        stored.push(key);
    }
    Ok(stored)
}

/// Note in the archive that the server writes no binary log at `now` (found with `log_bin`
/// off): what it writes meanwhile is in no file, so the files it writes once it is on again
/// begin a sequence of their own, and recovery counts the break as a gap. Once per break.
pub fn mark_off(
    repo: &Repository,
    credential: &str,
    archive: &mut Archive,
    now: DateTime<Utc>,
) -> Result<()> {
    let current = archive.current();
    if archive.files.is_empty() || archive.off.contains_key(&current) {
        return Ok(());
    }
    let sequence = current + 1;
    let at = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
    let labels = BTreeMap::from([
        (PITR_LABEL.to_string(), credential.to_string()),
        (SEQUENCE_LABEL.to_string(), sequence.to_string()),
        (OFF_LABEL.to_string(), at.to_string()),
    ]);
    let note = format!("the server wrote no binary log at {now}\n").into_bytes();
    let note = Source::Stream(Box::new(std::io::Cursor::new(note)));
    let options = BackupOptions {
        labels,
        parent: ParentChoice::None,
        ..BackupOptions::default()
    };
    coffer_repo::backup(repo, vec![BackupItem::named("binlog-off", note)?], options)?;
    archive.off.insert(sequence, at);
    Ok(())
}

/// Remove from `spool` the copies `archive` holds whole: files the server closed, and what is
/// left of a sequence the server has since started anew.
pub fn tidy(spool: &Path, archive: &Archive) -> Result<()> {
    let current = archive.current();
    for (key, path, _) in spooled(spool, archive)? {
        let Some(a) = archive.files.get(&key) else {
            continue;
        };
        if (a.scan.complete || key.0 < current)
            && std::fs::metadata(&path).is_ok_and(|m| m.len() <= a.scan.settled)
        {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
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
    /// When the server started its binary log anew (`RESET MASTER`): what it wrote just
    /// before may be missing, and replay cannot tell.
    pub resets: Vec<DateTime<Utc>>,
}

impl Coverage {
    /// Whether any point in time can be recovered from these events.
    pub fn available(&self) -> bool {
        self.total_events > 0
    }
}

/// The files missing between those of one sequence that the archive holds, `files` in order.
pub(crate) fn missing_between<'a>(files: impl Iterator<Item = &'a Archived>) -> Vec<String> {
    let mut gaps = vec![];
    let mut before: Option<(&str, u64)> = None;
    for a in files {
        let Some((base, n)) = binlog_number(&a.name) else {
            continue;
        };
        if let Some((b, m)) = before
            && b == base
        {
            gaps.extend((m + 1..n).map(|k| format!("{base}.{k:06}")));
        }
        before = Some((base, n));
    }
    gaps
}

/// The coverage of the archived files `archive`.
pub fn coverage(archive: &Archive) -> Coverage {
    let mut gaps = vec![];
    for s in 0..=archive.current() {
        gaps.extend(missing_between(archive.sequence(s)));
    }
    let files = archive.files.values().map(|a| &a.scan);
    Coverage {
        oldest_event: files.clone().filter_map(|s| s.first).min().and_then(at),
        latest_event: files.clone().filter_map(|s| s.last).max().and_then(at),
        total_events: files.map(|s| s.transactions).sum(),
        gaps,
        resets: archive.resets().into_iter().map(|(_, t)| t).collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An archived file of sequence `sequence` created at `first - 1` holding `transactions`
    /// from `first` to `last`.
    pub(crate) fn file(
        sequence: u32,
        name: &str,
        transactions: u64,
        first: u32,
        last: u32,
    ) -> Archived {
        Archived {
            sequence,
            name: name.into(),
            pieces: vec!["00".repeat(32).parse().unwrap()],
            scan: binlog::Scan {
                created: Some(first - 1),
                transactions,
                first: Some(first),
                last: Some(last),
                settled: 100,
                complete: true,
            },
        }
    }

    pub(crate) fn archive(files: impl IntoIterator<Item = Archived>) -> Archive {
        Archive {
            files: files.into_iter().map(|a| (a.key(), a)).collect(),
            ..Archive::default()
        }
    }

    #[test]
    fn coverage_spans_the_files_and_names_the_missing_ones() {
        let files = archive([
            file(0, "binlog.000001", 3, 100, 200),
            file(0, "binlog.000002", 2, 210, 300),
            file(0, "binlog.000005", 4, 500, 900),
        ]);
        let c = coverage(&files);
        assert_eq!(c.total_events, 9);
        assert_eq!(c.oldest_event, DateTime::from_timestamp(100, 0));
        assert_eq!(c.latest_event, DateTime::from_timestamp(900, 0));
        assert_eq!(c.gaps, ["binlog.000003", "binlog.000004"]);
        assert!(c.resets.is_empty());
        assert!(c.available());
        assert!(!coverage(&Archive::default()).available());
        assert_eq!(binlog_number("mysql-bin.000123"), Some(("mysql-bin", 123)));
        assert_eq!(binlog_number("binlog.index"), None);
    }

    #[test]
    fn a_name_the_server_reuses_after_starting_its_log_anew_opens_a_sequence() {
        let mut files = archive([
            file(0, "binlog.000001", 3, 100, 200),
            file(0, "binlog.000002", 2, 210, 300),
        ]);
        // The same files, growing or copied again: their own place.
        assert_eq!(files.place("binlog.000001", 99), 0);
        assert_eq!(files.place("binlog.000002", 209), 0);
        // The next file of the sequence.
        assert_eq!(files.place("binlog.000003", 400), 0);
        // A file 000001 or 000002 created at another time: the log started anew.
        assert_eq!(files.place("binlog.000001", 500), 1);
        assert_eq!(files.place("binlog.000002", 500), 1);
        let new = file(1, "binlog.000001", 1, 501, 510);
        files.files.insert(new.key(), new);
        assert_eq!(files.current(), 1);
        assert_eq!(files.place("binlog.000002", 520), 1, "its next file");
        assert_eq!(files.place("binlog.000002", 209), 0, "the old one still");
        let c = coverage(&files);
        assert_eq!(c.resets, [DateTime::from_timestamp(500, 0).unwrap()]);
        assert!(c.gaps.is_empty(), "{c:?}");
        assert_eq!(c.total_events, 6);
        assert_eq!(
            files.sequence_at(DateTime::from_timestamp(499, 0).unwrap()),
            0
        );
        assert_eq!(
            files.sequence_at(DateTime::from_timestamp(500, 0).unwrap()),
            1
        );
    }

    #[test]
    fn a_server_found_without_its_binary_log_opens_a_sequence_for_what_it_writes_after() {
        let mut files = archive([file(0, "binlog.000001", 3, 100, 200)]);
        files.off.insert(1, 300);
        assert_eq!(files.current(), 1);
        // The next file, written once the log is on again, belongs to the new sequence.
        assert_eq!(files.place("binlog.000002", 400), 1);
        assert_eq!(files.place("binlog.000001", 99), 0, "the old one still");
        let later = file(1, "binlog.000002", 1, 401, 410);
        files.files.insert(later.key(), later);
        let c = coverage(&files);
        assert_eq!(c.resets, [DateTime::from_timestamp(300, 0).unwrap()]);
        assert!(c.gaps.is_empty(), "{c:?}");
    }
}

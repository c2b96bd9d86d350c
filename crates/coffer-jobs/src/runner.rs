//! The blocking side of a run: back a job's sources up into its repository; verify, dump and
//! restore a record's snapshot. Called on the blocking thread pool.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coffer_db::Restored;
use coffer_repo::verify::{self, VerifyOptions};
use coffer_repo::{BackupOptions, BackupSummary, Id, NodeKind, ParentChoice};
use coffer_types::{Source, VerifyResult};

use crate::kinds::{self, Logins, Restore, Scratch};
use crate::spec::field;
use crate::target::Target;
use crate::{JobsError, Result, inplace};

/// How running work is watched: a flag that stops it, and its counters.
#[derive(Debug, Clone)]
pub struct Watch {
    pub cancel: Arc<AtomicBool>,
    pub progress: Arc<coffer_repo::Progress>,
}

/// A restore's task (in place, it names the staging directories), whether it may replace
/// SQLite databases held open, and its counters.
#[derive(Debug, Clone)]
pub struct RestoreRun<'a> {
    pub task: &'a str,
    pub force: bool,
    pub progress: Arc<coffer_repo::Progress>,
}

/// Back `sources` up into the repository at `target` (created on first use). With
/// `keep_unreadable` (safety records before a restore), a SQLite file that cannot be read as a
/// database is stored as raw bytes instead of failing the run.
pub fn backup(
    target: &Target,
    scratch_dir: &Path,
    sources: &[Source],
    logins: &Logins,
    mut labels: BTreeMap<String, String>,
    keep_unreadable: bool,
    watch: Watch,
) -> Result<BackupSummary> {
    let mut scratch = Scratch::default();
    let mut run = kinds::Run {
        scratch_dir,
        scratch: &mut scratch,
        keep_unreadable,
        labels: &mut labels,
        logins,
    };
    let mut items = vec![];
    for s in sources {
        items.extend(kinds::of(s).items(&mut run)?);
    }
    let repo = target.open_or_init()?;
    let opts = BackupOptions {
        labels,
        parent: ParentChoice::Auto,
        cancel: Some(watch.cancel),
        progress: Some(watch.progress),
        ..Default::default()
    };
    Ok(coffer_repo::backup(&repo, items, opts)?)
}

pub(crate) fn snapshot_id(id: &str) -> Result<Id> {
    id.parse::<Id>().map_err(|_| JobsError::Damaged {
        object: format!("record's snapshot {id:?}"),
        detail: "it is not a snapshot id".into(),
    })
}

/// Re-read everything the snapshot references and recompute its archive checksum. Damage is
/// a result (`ok: false`, naming what is damaged); a repository that cannot be read at all is
/// an error that says why.
pub fn verify(target: &Target, snapshot: &str, expected: &str) -> Result<VerifyResult> {
    let repo = match target.open() {
        Ok(repo) => repo,
        // A damaged config or key file is a finding, like any other damage.
        Err(e) if e.is_damage() => return Ok(damaged(vec![e.damaged_object()])),
        Err(e) => return Err(e.into()),
    };
    let opts = VerifyOptions {
        snapshots: Some(vec![snapshot_id(snapshot)?]),
        quick: false,
    };
    let report = match verify::verify(&repo, &opts) {
        Ok(r) => r,
        Err(e) if e.is_damage() => return Ok(damaged(vec![e.damaged_object()])),
        Err(e) => return Err(e.into()),
    };
    let checksum = report.checksums.get(snapshot).cloned();
    let ok = report.ok && checksum.as_deref() == Some(expected);
    let mut result = damaged(
        report
            .problems
            .iter()
            .map(|p| {
                let files = match p.files.is_empty() {
                    true => String::new(),
                    false => format!(" (affects {})", p.files.join(", ")),
                };
                (p.object.clone(), format!("{}{files}", p.error))
            })
            .collect(),
    );
    result.ok = ok;
    result.checksum = checksum;
    result.error = (!ok).then(|| "checksum mismatch".to_string());
    Ok(result)
}

/// A failed verify naming the damaged objects and what is wrong with each.
fn damaged(problems: Vec<(String, String)>) -> VerifyResult {
    VerifyResult {
        ok: false,
        checksum: None,
        error: Some("checksum mismatch".into()),
        damaged: problems
            .into_iter()
            .map(|(object, detail)| format!("{object}: {detail}"))
            .collect(),
    }
}

/// Write the snapshot's canonical archive to `out`.
pub fn dump(target: &Target, snapshot: &str, out: &mut dyn Write) -> Result<()> {
    target
        .open()?
        .open_snapshot(&snapshot_id(snapshot)?)?
        .dump(out)?;
    Ok(())
}

/// The folder at `path` of the snapshot (`/`: its root), for browsing a record.
pub fn tree(target: &Target, snapshot: &str, path: &str) -> Result<coffer_types::RecordTree> {
    let repo = target.open()?;
    let session = repo.open_snapshot(&snapshot_id(snapshot)?)?;
    let folder = format!("/{}", path.trim_matches('/'));
    let entries = match session.entries(&folder) {
        Err(coffer_repo::Error::NotInSnapshot(_)) => {
            Err(field("path", format!("{folder} is not in this record")))?
        }
        Err(coffer_repo::Error::Invalid(_)) => {
            Err(field("path", format!("{folder} is not a folder")))?
        }
        listed => listed?,
    };
    let under = folder.trim_end_matches('/');
    let entries = entries
        .into_iter()
        .map(|e| {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            coffer_types::TreeEntry {
                path: format!("{under}/{name}"),
                name,
                kind: match e.kind {
                    NodeKind::File => "file",
                    NodeKind::Dir => "dir",
                    NodeKind::Symlink => "symlink",
                    NodeKind::CharDevice => "chardev",
                    NodeKind::BlockDevice => "blockdev",
                    NodeKind::Fifo => "fifo",
                }
                .into(),
                size: e.size,
                mode: e.mode,
                mtime: chrono::DateTime::from_timestamp(e.mtime.0, e.mtime.1).unwrap_or_default(),
                target: (e.kind == NodeKind::Symlink)
                    .then(|| String::from_utf8_lossy(&e.target).into_owned()),
            }
        })
        .collect();
    Ok(coffer_types::RecordTree {
        path: folder,
        entries,
    })
}

/// Check, before anything is changed, that the snapshot holds every item of `plan` and every
/// pack their data needs.
pub fn check_restorable(
    target: &Target,
    snapshot: &str,
    plan: &[Restore],
    logins: &Logins,
) -> Result<()> {
    target
        .open()?
        .open_snapshot(&snapshot_id(snapshot)?)?
        .check_present(&kinds::needed(plan, logins))?;
    Ok(())
}

/// Restore `plan` from `snapshot`: into `target` (keeping absolute paths below it), or in
/// place (see `inplace`): each item ends up exactly as recorded (files that were not in the
/// record are gone), and a failure part-way leaves the original in place. A SQLite database
/// is checked with `PRAGMA integrity_check` before it replaces the file.
pub fn restore(
    target: &Target,
    snapshot: &str,
    plan: &[Restore],
    logins: &Logins,
    into: Option<&Path>,
    run: RestoreRun<'_>,
) -> Result<Restored> {
    let RestoreRun {
        task,
        force,
        progress,
    } = run;
    let repo = target.open()?;
    let session = repo.open_snapshot(&snapshot_id(snapshot)?)?;
    let run = |into: &Path, include: Vec<String>| -> Result<Restored> {
        let options = coffer_repo::restore::RestoreOptions {
            include,
            progress: Some(progress.clone()),
            ..Default::default()
        };
        let s = session.restore(into, options)?;
        if let Some(d) = s.damaged.first() {
            let more = match s.damaged.len() {
                1 => String::new(),
                n => format!(" (and {} more files)", n - 1),
            };
            return Err(JobsError::Damaged {
                object: d.object.clone(),
                detail: format!("{}; not restored: {}{more}", d.detail, d.file),
            });
        }
        Ok(Restored {
            files: s.files,
            bytes: s.bytes,
            warnings: s.warnings,
        })
    };
    if let Some(t) = into {
        std::fs::create_dir_all(t).map_err(|e| JobsError::io(t.display(), e))?;
        return run(t, kinds::needed(plan, logins));
    }
    inplace::in_place(
        plan,
        task,
        force,
        |staging, item| run(staging, vec![item.inside(logins)]),
        |item| item.apply(&session, logins),
    )
}

//! The blocking side of a run: open (or create) the job's repository and back its sources up;
//! verify and dump a record's snapshot. Called on the blocking thread pool.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coffer_db::Restored;
use coffer_repo::forget::{self, RetentionPolicy};
use coffer_repo::prune::{self, PruneOptions};
use coffer_repo::verify::{self, VerifyOptions};
use coffer_repo::{
    BackupItem, BackupOptions, BackupSummary, Id, InitOptions, KdfParams, Location, ParentChoice,
    Repository, S3Options, Secret,
};
use coffer_types::{Source, VerifyResult};

use crate::databases::{self, Logins};
use crate::spec::FieldError;
use crate::{JobsError, Result, inplace, volumes};

/// The repository key is 256 random bits, not a human password: a light KDF is enough.
const KDF: KdfParams = KdfParams {
    m_cost: 8 * 1024,
    t_cost: 1,
    p_cost: 1,
};

/// Where a job's repository lives, how to reach it, and its key (none: unencrypted).
#[derive(Clone)]
pub struct Target {
    pub location: Location,
    pub s3: Option<S3Options>,
    pub key: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("location", &self.location.to_string())
            .field("s3", &self.s3)
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

impl Target {
    fn backend(&self) -> coffer_repo::Result<Arc<dyn coffer_repo::Backend>> {
        Ok(self.location.open(self.s3.clone())?)
    }

    fn secret(&self) -> Option<Secret> {
        self.key.clone().map(Secret::Password)
    }

    /// The repository, opened.
    pub(crate) fn open(&self) -> coffer_repo::Result<Repository> {
        Repository::open(self.backend()?, self.secret().as_ref())
    }

    /// Open the repository, creating it on the first run.
    fn open_or_init(&self) -> Result<Repository> {
        let backend = self.backend()?;
        if backend
            .size("config")
            .map_err(coffer_repo::Error::from)?
            .is_some()
        {
            return Ok(Repository::open(backend, self.secret().as_ref())?);
        }
        if let Location::Local(dir) = &self.location {
            std::fs::create_dir_all(dir)
                .map_err(|e| JobsError::io(format!("creating {}", dir.display()), e))?;
        }
        let opts = InitOptions {
            kdf: KDF,
            ..InitOptions::default()
        };
        Ok(Repository::init(backend, self.key.as_deref(), opts)?)
    }

    /// Bytes the repository takes in its storage.
    pub fn size(&self) -> coffer_repo::Result<u64> {
        let backend = self.backend()?;
        let mut total = backend.size("config")?.unwrap_or(0);
        for dir in ["keys", "data", "index", "snapshots"] {
            total += backend.list(dir)?.iter().map(|o| o.size).sum::<u64>();
        }
        Ok(total)
    }
}

/// What the repository at `target` holds, in words, once it is reached and opened: an error
/// when it cannot be.
pub fn describe(target: &Target) -> Result<String> {
    match existing(target)? {
        None => {
            target
                .backend()?
                .list("snapshots")
                .map_err(coffer_repo::Error::from)?;
            Ok("reachable; no repository yet (the first run makes one)".into())
        }
        Some(repo) => {
            let n = coffer_repo::snapshot::list(&repo)?.snapshots.len();
            Ok(format!(
                "reachable; a repository with {n} snapshots that opens with this server's key"
            ))
        }
    }
}

/// Add a key file that opens the repository with `new` (opened with its current key);
/// `false` when there is no repository yet.
pub fn add_key(target: &Target, new: &str) -> coffer_repo::Result<bool> {
    let Some(repo) = existing(target)? else {
        return Ok(false);
    };
    repo.add_key(new, KDF)?;
    Ok(true)
}

/// Remove the key files that `old` opens (the repository opened with another key).
pub fn remove_key(target: &Target, old: &str) -> coffer_repo::Result<usize> {
    target.open()?.remove_key(old)
}

/// Temporary copies made for a run, removed when it ends (whatever the outcome).
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// What the engine stores for one source. Files and trees keep their absolute paths; a SQLite
/// database becomes the file `sqlite/<its path>` holding a consistent copy; a Docker volume the
/// folder `volume/<name>` (its description goes into `labels`); a database source one dump
/// stream per database (`postgres/…`, `mysql/…`).
fn items(
    source: &Source,
    scratch_dir: &Path,
    scratch: &mut Scratch,
    keep_unreadable: bool,
    labels: &mut BTreeMap<String, String>,
    logins: &Logins,
) -> Result<Vec<BackupItem>> {
    let source_error = |path: &str, e: &dyn std::fmt::Display| {
        JobsError::Source(coffer_sources::SourceError::Failed {
            what: format!("source {path}"),
            message: e.to_string(),
        })
    };
    let one = match source {
        Source::Path {
            path,
            exclude,
            exclude_caches,
        } => {
            let p = Path::new(path);
            std::fs::symlink_metadata(p).map_err(|e| source_error(path, &e))?;
            let exclude = coffer_repo::Excludes::new(exclude, *exclude_caches)?;
            BackupItem::path(p)
                .map(|item| item.excluding(exclude))
                .map_err(|e| source_error(path, &e))
        }
        Source::Sqlite { path } => {
            std::fs::create_dir_all(scratch_dir)
                .map_err(|e| JobsError::io(format!("creating {}", scratch_dir.display()), e))?;
            let copy = scratch_dir.join(format!(
                "sqlite-{}-{}.db",
                std::process::id(),
                hex::encode(crate::random_key())
            ));
            scratch.0.push(copy.clone());
            if let Err(e) = coffer_sources::sqlite::copy(Path::new(path), &copy) {
                // A safety record must save what is there even when it is no database any
                // more (often the reason to restore): then its raw bytes.
                if !keep_unreadable || std::fs::copy(path, &copy).is_err() {
                    return Err(e.into());
                }
            }
            let file = std::fs::File::open(&copy).map_err(|e| JobsError::io(copy.display(), e))?;
            BackupItem::named(
                &format!("sqlite{path}"),
                coffer_repo::Source::Stream(Box::new(file)),
            )
            .map_err(|e| source_error(path, &e))
        }
        Source::Volume { name } => volumes::backup_item(name, labels),
        Source::Postgres { .. } | Source::Mysql { .. } => {
            return databases::backup_items(source, logins, labels);
        }
    };
    one.map(|item| vec![item])
}

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

/// The label that ties a snapshot to its job (retention works per job).
pub const JOB_LABEL: &str = "job";
/// The label that names the record a snapshot was made for.
pub const RECORD_LABEL: &str = "record";

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
    let mut copies = Scratch(vec![]);
    let mut all = vec![];
    for s in sources {
        all.extend(items(
            s,
            scratch_dir,
            &mut copies,
            keep_unreadable,
            &mut labels,
            logins,
        )?);
    }
    let items = all;
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

/// How long a job keeps its records.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// At most this many (the newest).
    pub count: Option<u32>,
    /// None older than this many days.
    pub days: Option<u32>,
    /// Calendar rules (keep the newest of each day, week, ...); a record must be kept by one of
    /// them, when any is given.
    pub rules: RetentionPolicy,
    /// Safety records (taken before restores) are kept this many days, apart from the rest.
    pub safety_days: u32,
}

/// The label of a snapshot taken before a restore.
pub const SAFETY_LABEL: &str = "pre_restore";

/// The job's snapshots that `retention` no longer keeps (nothing is removed here): regular
/// ones by the job's retention, the newest always kept; those taken before a restore once they
/// are older than their days. Safety snapshots do not count towards the job's retention, so
/// that restoring never costs the job its regular history.
pub fn expired(
    target: &Target,
    job_id: &str,
    retention: &Retention,
    tz: &chrono_tz::Tz,
) -> Result<Vec<String>> {
    let repo = target.open()?;
    let snapshots = coffer_repo::snapshot::list(&repo)?
        .snapshots
        .into_iter()
        .filter(|(_, s)| s.labels.get(JOB_LABEL).map(String::as_str) == Some(job_id))
        .collect();
    Ok(expire(snapshots, retention, tz, chrono::Utc::now()))
}

/// Which of a job's `snapshots` `retention` no longer keeps at `now` (see [`expired`]).
fn expire(
    snapshots: Vec<(Id, coffer_repo::Snapshot)>,
    retention: &Retention,
    tz: &chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let (safety, mut mine): (Vec<_>, Vec<_>) = snapshots
        .into_iter()
        .partition(|(_, s)| s.labels.contains_key(SAFETY_LABEL));
    let safety_limit = now - chrono::TimeDelta::days(i64::from(retention.safety_days));
    let old_safety = safety
        .iter()
        .filter(|(_, s)| s.time < safety_limit)
        .map(|(id, _)| id.to_string());
    mine.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
    let kept_by_rules: Option<HashSet<Id>> = (!retention.rules.is_empty()).then(|| {
        forget::decide(&mine, &retention.rules, tz)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect()
    });
    mine.iter()
        .enumerate()
        .skip(1)
        .filter(|(i, (id, s))| {
            retention.count.is_some_and(|n| *i >= n as usize)
                || retention
                    .days
                    .is_some_and(|d| s.time < now - chrono::TimeDelta::days(i64::from(d)))
                || kept_by_rules.as_ref().is_some_and(|k| !k.contains(id))
        })
        .map(|(_, (id, _))| id.to_string())
        .chain(old_safety)
        .collect()
}

/// The repository at `target`, or none where there is no repository yet.
fn existing(target: &Target) -> coffer_repo::Result<Option<Repository>> {
    match target.open() {
        Err(coffer_repo::Error::NotARepository(_)) => Ok(None),
        other => other.map(Some),
    }
}

/// Every snapshot of job `job_id` (its safety snapshots too).
pub fn snapshots_of(target: &Target, job_id: &str) -> coffer_repo::Result<Vec<String>> {
    let Some(repo) = existing(target)? else {
        return Ok(vec![]);
    };
    Ok(coffer_repo::snapshot::list(&repo)?
        .snapshots
        .into_iter()
        .filter(|(_, s)| s.labels.get(JOB_LABEL).map(String::as_str) == Some(job_id))
        .map(|(id, _)| id.to_string())
        .collect())
}

/// Remove snapshots from the repository (their data stays until a prune).
pub fn forget(target: &Target, snapshots: &[String]) -> coffer_repo::Result<()> {
    let repo = target.open()?;
    let ids = snapshots
        .iter()
        .map(|s| {
            s.parse::<Id>()
                .map_err(|_| coffer_repo::Error::SnapshotNotFound(s.clone()))
        })
        .collect::<coffer_repo::Result<Vec<_>>>()?;
    forget::forget_ids(&repo, &ids, false)?;
    Ok(())
}

/// Remove the data no snapshot uses any more (`Error::Locked` while another prune runs).
pub fn prune(target: &Target) -> coffer_repo::Result<()> {
    prune::prune(&target.open()?, &PruneOptions { dry_run: false }).map(|_| ())
}

/// Remove a local repository that holds no snapshot any more, with the folders it made.
pub fn remove_if_empty(target: &Target) -> coffer_repo::Result<()> {
    let Location::Local(dir) = &target.location else {
        return Ok(());
    };
    let Some(repo) = existing(target)? else {
        return Ok(());
    };
    if !coffer_repo::snapshot::list(&repo)?.snapshots.is_empty() {
        return Ok(());
    }
    coffer_repo::destroy(&repo)?;
    // The folders the repository made, then the directory itself, as far as they are empty (a
    // directory the user named may hold other things).
    for sub in coffer_repo::FOLDERS {
        remove_empty_dirs(&dir.join(sub));
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// Remove `dir` and the directories below it, bottom up, as far as they are empty.
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The data deleted jobs left in the repository at `target`: per job id (label `job`) not in
/// `existing_jobs`, the records its snapshots make (newest first). Nothing when there is no
/// repository yet.
pub fn left_behind(
    target: &Target,
    existing_jobs: &HashSet<String>,
) -> coffer_repo::Result<Vec<(String, Vec<coffer_types::Record>)>> {
    let Some(repo) = existing(target)? else {
        return Ok(vec![]);
    };
    let mut by_job: BTreeMap<String, Vec<coffer_types::Record>> = BTreeMap::new();
    for (id, s) in coffer_repo::snapshot::list(&repo)?
        .snapshots
        .into_iter()
        .rev()
    {
        let Some(job) = s
            .labels
            .get(JOB_LABEL)
            .filter(|j| !existing_jobs.contains(*j))
        else {
            continue;
        };
        let record = coffer_types::Record {
            id: s
                .labels
                .get(RECORD_LABEL)
                .cloned()
                .unwrap_or_else(coffer_db::new_id),
            job_id: job.clone(),
            status: coffer_types::RecordStatus::Success,
            phase: "complete".into(),
            size_bytes: Some(s.size_bytes),
            stored_bytes: Some(s.stored_bytes),
            checksum: Some(s.checksum.clone()),
            file_path: Some(format!("{}/snapshots/{id}", target.location)),
            snapshot_id: Some(id.to_string()),
            encrypted: repo.is_encrypted(),
            trigger: match s.labels.contains_key(SAFETY_LABEL) {
                true => coffer_db::SAFETY_TRIGGER.into(),
                false => "adopted".into(),
            },
            started_at: s.time,
            finished_at: Some(s.time + chrono::TimeDelta::milliseconds(s.duration_ms as i64)),
            duration_ms: Some(s.duration_ms),
            error: None,
            warnings: s.warnings.clone(),
            databases: vec![],
            backup_tool: None,
            verified_at: None,
            verify_ok: None,
            progress: None,
        };
        by_job.entry(job.clone()).or_default().push(record);
    }
    Ok(by_job.into_iter().collect())
}

/// One thing to restore: where it lives on the node, and its path inside the snapshot.
#[derive(Debug, Clone)]
pub enum Restore {
    /// A file or tree of a path source (the source itself or something inside it).
    Path(PathBuf),
    /// A SQLite source's database file.
    Sqlite(PathBuf),
    /// A Docker volume, by name.
    Volume(String),
    /// A database's dump, restored into the database `into` of the same server.
    Database {
        credential_id: String,
        database: String,
        into: String,
    },
    /// A whole server's roles or accounts, restored before its databases.
    Globals { credential_id: String },
}

impl Restore {
    /// The path inside the snapshot.
    pub(crate) fn include(&self, logins: &Logins) -> String {
        match self {
            Restore::Path(p) => p.display().to_string(),
            Restore::Sqlite(p) => format!("sqlite{}", p.display()),
            Restore::Volume(name) => volumes::folder(name),
            Restore::Database {
                credential_id,
                database,
                ..
            } => logins.dump_path(credential_id, database),
            Restore::Globals { credential_id } => match logins.get(credential_id) {
                Some((folder, login)) => databases::globals_path(login.engine(), folder),
                None => String::new(),
            },
        }
    }

    /// The volume this restores, if it is one.
    pub fn volume(&self) -> Option<&str> {
        match self {
            Restore::Volume(name) => Some(name),
            _ => None,
        }
    }
}

/// The names of the volumes `plan` restores.
pub fn volumes_in(plan: &[Restore]) -> Vec<String> {
    plan.iter()
        .filter_map(|r| r.volume().map(str::to_string))
        .collect()
}

/// What to restore for `paths`, `volumes` and `databases` (all empty: every source). Each path
/// must be a source, or lie inside a path source; each volume a volume source; each database a
/// database source or one that `servers` (by credential id) says the record holds of a whole
/// server. A whole server comes back as its roles or accounts, then its databases.
pub fn plan_restore(
    sources: &[Source],
    servers: &HashMap<String, databases::ServerDumps>,
    paths: &[String],
    volumes: &[String],
    databases: &[String],
) -> Result<Vec<Restore>, FieldError> {
    let database = |credential_id: &str, d: &str| Restore::Database {
        credential_id: credential_id.to_string(),
        database: d.to_string(),
        into: d.to_string(),
    };
    let all: Vec<Restore> = sources
        .iter()
        .flat_map(|s| match s {
            Source::Path { path, .. } => vec![Restore::Path(PathBuf::from(path))],
            Source::Sqlite { path } => vec![Restore::Sqlite(PathBuf::from(path))],
            Source::Volume { name } => vec![Restore::Volume(name.clone())],
            Source::Postgres { .. } | Source::Mysql { .. } => match s.database() {
                Some((credential_id, Some(d), _)) => vec![database(credential_id, d)],
                Some((credential_id, None, _)) => {
                    let server = servers.get(credential_id).cloned().unwrap_or_default();
                    let globals = server.globals.then(|| Restore::Globals {
                        credential_id: credential_id.to_string(),
                    });
                    globals
                        .into_iter()
                        .chain(server.databases.iter().map(|d| database(credential_id, d)))
                        .collect()
                }
                None => vec![],
            },
        })
        .collect();
    if paths.is_empty() && volumes.is_empty() && databases.is_empty() {
        return Ok(all);
    }
    let chosen_paths = paths.iter().map(|p| {
        let p = Path::new(p);
        all.iter()
            .find_map(|r| match r {
                Restore::Path(src) if p.starts_with(src) => Some(Restore::Path(p.to_path_buf())),
                Restore::Sqlite(db) if p == db => Some(r.clone()),
                _ => None,
            })
            .ok_or_else(|| FieldError {
                field: "paths",
                message: format!("{} is not part of this job's sources", p.display()),
            })
    });
    let chosen_volumes = volumes.iter().map(|v| {
        all.iter()
            .find(|r| r.volume() == Some(v.as_str()))
            .cloned()
            .ok_or_else(|| FieldError {
                field: "volumes",
                message: format!("{v} is not one of this job's volumes"),
            })
    });
    let chosen_databases = databases.iter().map(|name| {
        all.iter()
            .find(|r| matches!(r, Restore::Database { database, .. } if database == name))
            .cloned()
            .ok_or_else(|| FieldError {
                field: "databases",
                message: format!("{name} is not one of this job's databases"),
            })
    });
    chosen_paths
        .chain(chosen_volumes)
        .chain(chosen_databases)
        .collect()
}

/// The paths inside the snapshot (or an uploaded archive) that restoring `plan` reads.
pub fn needed(plan: &[Restore], logins: &Logins) -> Vec<String> {
    plan.iter().map(|r| r.include(logins)).collect()
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
        .check_present(&needed(plan, logins))?;
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
        return run(t, needed(plan, logins));
    }
    inplace::in_place(
        plan,
        task,
        force,
        |staging, item| run(staging, vec![item.include(logins)]),
        |item| {
            match item {
                Restore::Volume(name) => volumes::restore(&session, name),
                Restore::Database {
                    credential_id,
                    database,
                    into,
                } => databases::restore(&session, logins, credential_id, database, into),
                Restore::Globals { credential_id } => {
                    databases::restore_globals(&session, logins.login(credential_id)?)
                }
                _ => unreachable!("in_place handles files"),
            }
            .map(inplace::counts)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(
        days_ago: i64,
        safety: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Id, coffer_repo::Snapshot) {
        let mut labels = BTreeMap::new();
        if safety {
            labels.insert(SAFETY_LABEL.to_string(), "true".to_string());
        }
        let s = coffer_repo::Snapshot {
            time: now - chrono::TimeDelta::days(days_ago),
            labels,
            ..coffer_repo::Snapshot::default()
        };
        (Id::random(), s)
    }

    #[test]
    fn safety_records_expire_by_age_apart_from_the_jobs_retention() {
        let now = chrono::Utc::now();
        let all = vec![
            snapshot(0, false, now),
            snapshot(1, false, now),
            snapshot(2, true, now),
            snapshot(9, true, now),
            snapshot(10, false, now),
        ];
        let id = |i: usize| all[i].0.to_string();
        let retention = Retention {
            count: Some(2),
            safety_days: 7,
            ..Retention::default()
        };
        let mut gone = expire(all.clone(), &retention, &chrono_tz::UTC, now);
        gone.sort();
        let mut expected = vec![id(3), id(4)];
        expected.sort();
        assert_eq!(
            gone, expected,
            "the 9-day-old safety record and the third backup"
        );
        // Without any retention of the job's own, safety records still expire.
        let gone = expire(
            all.clone(),
            &Retention {
                safety_days: 7,
                ..Retention::default()
            },
            &chrono_tz::UTC,
            now,
        );
        assert_eq!(gone, vec![id(3)]);
    }
}

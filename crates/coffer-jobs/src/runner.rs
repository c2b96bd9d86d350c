//! The blocking side of a run: open (or create) the job's repository and back its sources up;
//! verify and dump a record's snapshot. Called on the blocking thread pool.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coffer_repo::forget::{self, RetentionPolicy};
use coffer_repo::prune::{self, PruneOptions};
use coffer_repo::verify::{self, VerifyOptions};
use coffer_repo::{
    BackupItem, BackupOptions, BackupSummary, Id, InitOptions, KdfParams, Location, ParentChoice,
    Repository, S3Options, Secret,
};
use coffer_types::{Source, VerifyResult};

use crate::databases::{self, Logins};
use crate::volumes;

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
    fn backend(&self) -> Result<Arc<dyn coffer_repo::Backend>, String> {
        self.location
            .open(self.s3.clone())
            .map_err(|e| e.to_string())
    }

    fn secret(&self) -> Option<Secret> {
        self.key.clone().map(Secret::Password)
    }

    pub(crate) fn open(&self) -> Result<Repository, String> {
        Repository::open(self.backend()?, self.secret().as_ref()).map_err(|e| e.to_string())
    }

    /// Open the repository, creating it on the first run.
    fn open_or_init(&self) -> Result<Repository, String> {
        let backend = self.backend()?;
        if backend.size("config").map_err(|e| e.to_string())?.is_some() {
            return Repository::open(backend, self.secret().as_ref()).map_err(|e| e.to_string());
        }
        if let Location::Local(dir) = &self.location {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let opts = InitOptions {
            kdf: KDF,
            ..InitOptions::default()
        };
        Repository::init(backend, self.key.as_deref(), opts).map_err(|e| e.to_string())
    }

    /// Bytes the repository takes in its storage.
    pub fn size(&self) -> Result<u64, String> {
        let backend = self.backend()?;
        let mut total = backend
            .size("config")
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        for dir in ["keys", "data", "index", "snapshots"] {
            total += backend
                .list(dir)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|o| o.size)
                .sum::<u64>();
        }
        Ok(total)
    }
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
) -> Result<Vec<BackupItem>, String> {
    let one = match source {
        Source::Path { path, .. } => {
            let p = Path::new(path);
            std::fs::symlink_metadata(p).map_err(|e| format!("source {path}: {e}"))?;
            BackupItem::path(p).map_err(|e| format!("source {path}: {e}"))
        }
        Source::Sqlite { path } => {
            std::fs::create_dir_all(scratch_dir)
                .map_err(|e| format!("creating {}: {e}", scratch_dir.display()))?;
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
                    return Err(e.to_string());
                }
            }
            let file =
                std::fs::File::open(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
            BackupItem::named(
                &format!("sqlite{path}"),
                coffer_repo::Source::Stream(Box::new(file)),
            )
            .map_err(|e| format!("source {path}: {e}"))
        }
        Source::Volume { name } => volumes::backup_item(name, labels),
        Source::Postgres { .. } | Source::Mysql { .. } => {
            return databases::backup_items(source, logins, labels);
        }
    };
    one.map(|item| vec![item])
}

/// The label that ties a snapshot to its job (retention works per job).
pub const JOB_LABEL: &str = "job";

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
    cancel: Arc<AtomicBool>,
) -> Result<BackupSummary, String> {
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
        cancel: Some(cancel),
        ..Default::default()
    };
    coffer_repo::backup(&repo, items, opts).map_err(|e| e.to_string())
}

pub(crate) fn snapshot_id(id: &str) -> Result<Id, String> {
    id.parse::<Id>()
        .map_err(|_| format!("the record names an invalid snapshot {id:?}"))
}

/// Re-read everything the snapshot references and recompute its archive checksum.
pub fn verify(target: &Target, snapshot: &str, expected: &str) -> VerifyResult {
    let run = || -> Result<VerifyResult, String> {
        let repo = target.open()?;
        let opts = VerifyOptions {
            snapshots: Some(vec![snapshot_id(snapshot)?]),
            quick: false,
        };
        let report = verify::verify(&repo, &opts).map_err(|e| e.to_string())?;
        let checksum = report.checksums.get(snapshot).cloned();
        let damaged: Vec<String> = report
            .problems
            .iter()
            .map(|p| {
                let files = if p.files.is_empty() {
                    String::new()
                } else {
                    format!(" (affects {})", p.files.join(", "))
                };
                format!("{}: {}{files}", p.object, p.error)
            })
            .collect();
        let ok = report.ok && checksum.as_deref() == Some(expected);
        Ok(VerifyResult {
            ok,
            error: (!ok).then(|| "checksum mismatch".to_string()),
            checksum,
            damaged,
        })
    };
    run().unwrap_or_else(|e| VerifyResult {
        ok: false,
        checksum: None,
        error: Some(format!("checksum mismatch: {e}")),
        damaged: vec![],
    })
}

/// Write the snapshot's canonical archive to `out`.
pub fn dump(target: &Target, snapshot: &str, out: &mut dyn Write) -> Result<(), String> {
    let repo = target.open()?;
    coffer_repo::dump(&repo, &snapshot_id(snapshot)?, out)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        self.count.is_none() && self.days.is_none() && self.rules.is_empty()
    }
}

/// The label of a snapshot taken before a restore.
pub const SAFETY_LABEL: &str = "pre_restore";

/// How many of a job's snapshots taken before a restore are kept; they do not count towards
/// its retention, so that restoring never costs the job its regular history.
const SAFETY_KEPT: usize = 3;

/// The job's snapshots that `retention` no longer keeps (nothing is removed here): regular
/// ones by the job's retention, the newest always kept; those taken before a restore beyond
/// the newest `SAFETY_KEPT`.
pub fn expired(
    target: &Target,
    job_id: &str,
    retention: &Retention,
    tz: &chrono_tz::Tz,
) -> Result<Vec<String>, String> {
    if retention.is_empty() {
        return Ok(vec![]);
    }
    let repo = target.open()?;
    let (mut safety, mut mine): (Vec<_>, Vec<_>) = coffer_repo::snapshot::list(&repo)
        .map_err(|e| e.to_string())?
        .snapshots
        .into_iter()
        .filter(|(_, s)| s.labels.get(JOB_LABEL).map(String::as_str) == Some(job_id))
        .partition(|(_, s)| s.labels.contains_key(SAFETY_LABEL));
    let newest_first = |a: &(Id, coffer_repo::Snapshot), b: &(Id, coffer_repo::Snapshot)| {
        b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0))
    };
    mine.sort_by(newest_first);
    safety.sort_by(newest_first);
    let old_safety = safety
        .iter()
        .skip(SAFETY_KEPT)
        .map(|(id, _)| id.to_string());
    let kept_by_rules: Option<HashSet<Id>> = (!retention.rules.is_empty()).then(|| {
        forget::decide(&mine, &retention.rules, tz)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect()
    });
    let now = chrono::Utc::now();
    Ok(mine
        .iter()
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
        .collect())
}

/// Remove snapshots from the repository, then the data no remaining snapshot uses.
pub fn forget_and_prune(target: &Target, snapshots: &[String]) -> Result<(), String> {
    if snapshots.is_empty() {
        return Ok(());
    }
    let repo = target.open()?;
    let ids = snapshots
        .iter()
        .map(|s| snapshot_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    forget::forget_ids(&repo, &ids, false).map_err(|e| e.to_string())?;
    prune::prune(&repo, &PruneOptions { dry_run: false })
        .map(|_| ())
        .map_err(|e| e.to_string())
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
    fn include(&self, logins: &Logins) -> String {
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
) -> Result<Vec<Restore>, String> {
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
            .ok_or_else(|| format!("{} is not part of this job's sources", p.display()))
    });
    let chosen_volumes = volumes.iter().map(|v| {
        all.iter()
            .find(|r| r.volume() == Some(v.as_str()))
            .cloned()
            .ok_or_else(|| format!("{v} is not one of this job's volumes"))
    });
    let chosen_databases = databases.iter().map(|name| {
        all.iter()
            .find(|r| matches!(r, Restore::Database { database, .. } if database == name))
            .cloned()
            .ok_or_else(|| format!("{name} is not one of this job's databases"))
    });
    chosen_paths
        .chain(chosen_volumes)
        .chain(chosen_databases)
        .collect()
}

/// Restore `plan` from `snapshot`: into `target` (keeping absolute paths below it), or in
/// place. In place, each item is restored next to where it lives, then swapped in with
/// renames, so it ends up exactly as recorded (files that were not in the record are gone)
/// and a failure part-way leaves the original in place. A SQLite database is checked with
/// `PRAGMA integrity_check` before it replaces the file, and its old `-wal`/`-shm` files are
/// removed so that they are never applied to the restored database. Returns files and bytes.
pub fn restore(
    target: &Target,
    snapshot: &str,
    plan: &[Restore],
    logins: &Logins,
    into: Option<&Path>,
    task: &str,
) -> Result<(u64, u64), String> {
    let repo = target.open()?;
    let id = snapshot_id(snapshot)?;
    let run = |into: &Path, include: Vec<String>| -> Result<(u64, u64), String> {
        let s = coffer_repo::restore::restore(
            &repo,
            &id,
            into,
            coffer_repo::restore::RestoreOptions {
                include,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        if !s.damaged.is_empty() {
            let names: Vec<String> = s.damaged.iter().map(|d| format!("{d:?}")).collect();
            return Err(format!("damaged data, not restored: {}", names.join("; ")));
        }
        Ok((s.files, s.bytes))
    };
    if let Some(t) = into {
        std::fs::create_dir_all(t).map_err(|e| format!("{}: {e}", t.display()))?;
        return run(t, plan.iter().map(|r| r.include(logins)).collect());
    }
    in_place(
        plan,
        task,
        |staging, item| run(staging, vec![item.include(logins)]),
        |item| match item {
            Restore::Volume(name) => volumes::restore(&repo, &id, name),
            Restore::Database {
                credential_id,
                database,
                into,
            } => databases::restore(&repo, &id, logins, credential_id, database, into),
            Restore::Globals { credential_id } => {
                databases::restore_globals(&repo, &id, logins.login(credential_id)?)
            }
            _ => unreachable!("in_place handles files"),
        },
    )
}

/// Restore each item of `plan` in place: `fill` writes a file or tree (with its path inside
/// the archive) under a staging directory beside it, then it is checked and swapped in by
/// renames; `other` restores a Docker volume or a database.
fn in_place(
    plan: &[Restore],
    task: &str,
    mut fill: impl FnMut(&Path, &Restore) -> Result<(u64, u64), String>,
    mut other: impl FnMut(&Restore) -> Result<(u64, u64), String>,
) -> Result<(u64, u64), String> {
    let mut total = (0, 0);
    for item in plan {
        let live = match item {
            Restore::Path(live) | Restore::Sqlite(live) => live,
            Restore::Volume(_) | Restore::Database { .. } | Restore::Globals { .. } => {
                let (f, b) = other(item)?;
                total = (total.0 + f, total.1 + b);
                continue;
            }
        };
        let parent = live
            .parent()
            .ok_or_else(|| format!("{} cannot be restored in place", live.display()))?;
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let staging = parent.join(format!(".coffer-restore-{task}"));
        let result = (|| {
            let (f, b) = fill(&staging, item)?;
            let inside = item.include(&Logins::default());
            let staged = staging.join(inside.trim_start_matches('/'));
            if std::fs::symlink_metadata(&staged).is_err() {
                return Err(format!("{} is not in this archive", live.display()));
            }
            if let Restore::Sqlite(db) = item {
                coffer_sources::sqlite::check(&staged).map_err(|e| e.to_string())?;
                for suffix in ["-wal", "-shm"] {
                    let mut side = db.clone().into_os_string();
                    side.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(side));
                }
            }
            swap_in(&staged, live, task)?;
            Ok((f, b))
        })();
        let _ = std::fs::remove_dir_all(&staging);
        let (f, b) = result?;
        total = (total.0 + f, total.1 + b);
    }
    Ok(total)
}

/// Why a job with database sources cannot restore from an uploaded archive.
pub(crate) const NO_DATABASES_IN_UPLOADS: &str =
    "databases are restored from records, not from uploaded archives";

/// Check an uploaded archive before anything is written: every entry a relative path without
/// `..`, links staying inside the archive. Returns its SHA-256 (hex).
pub fn check_archive(archive: &Path) -> Result<String, String> {
    use sha2::Digest;
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut hasher = sha2::Sha256::new();
    let reader = HashingReader {
        inner: file,
        hasher: &mut hasher,
    };
    let mut tar = tar::Archive::new(reader);
    let bad = |what: &str, p: &Path| format!("the archive is refused: {what} {}", p.display());
    for entry in tar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
    {
        let entry = entry.map_err(|e| format!("the archive is damaged or truncated: {e}"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let escapes = |p: &Path| {
            p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir)
        };
        if path.as_os_str().is_empty() || escapes(&path) {
            return Err(bad("an entry leaves the target:", &path));
        }
        if let Some(link) = entry.link_name().map_err(|e| e.to_string())? {
            let kind = entry.header().entry_type();
            // A symlink is resolved from its directory, a hard link from the archive root.
            let resolved = if kind.is_symlink() {
                path.parent().unwrap_or(Path::new("")).join(&link)
            } else {
                link.to_path_buf()
            };
            if link.is_absolute() || !stays_inside(&resolved) {
                return Err(bad("a link points outside the target:", &path));
            }
        }
    }
    // Hash what follows the last entry too (the end-of-archive blocks).
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| e.to_string())?;
    Ok(hex::encode(hasher.finalize()))
}

/// Whether a relative path, followed component by component, never climbs above its root.
fn stays_inside(p: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The exact modification time of a pax header (`mtime=SECONDS.FRACTION`), which the plain
/// header rounds to seconds.
fn pax_mtime<R: std::io::Read>(entry: &mut tar::Entry<'_, R>) -> Option<rustix::fs::Timespec> {
    let exts = entry.pax_extensions().ok()??;
    let value = exts
        .filter_map(Result::ok)
        .find(|e| e.key() == Ok("mtime"))?
        .value()
        .ok()?
        .to_string();
    let (secs, frac) = value.split_once('.').unwrap_or((&value, "0"));
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(rustix::fs::Timespec {
        tv_sec: secs.parse().ok()?,
        tv_nsec: digits.parse().ok()?,
    })
}

/// Set the modification time of `path` itself (not of a symlink's target).
fn set_mtime(path: &Path, t: rustix::fs::Timespec) -> std::io::Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
}

/// Restore `plan` in place from an uploaded (and checked) archive.
pub fn restore_archive(archive: &Path, plan: &[Restore], task: &str) -> Result<(u64, u64), String> {
    in_place(
        plan,
        task,
        |staging, item| {
            let include = PathBuf::from(item.include(&Logins::default()).trim_start_matches('/'));
            let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
            let mut tar = tar::Archive::new(file);
            tar.set_preserve_permissions(true);
            tar.set_preserve_mtime(true);
            tar.set_preserve_ownerships(rustix::process::geteuid().is_root());
            tar.set_unpack_xattrs(true);
            std::fs::create_dir_all(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
            let (mut files, mut bytes) = (0, 0);
            for entry in tar.entries().map_err(|e| e.to_string())? {
                let mut entry = entry.map_err(|e| e.to_string())?;
                let path = entry.path().map_err(|e| e.to_string())?.into_owned();
                if !path.starts_with(&include) {
                    continue;
                }
                if entry.header().entry_type().is_file() {
                    files += 1;
                    bytes += entry.size();
                }
                let mtime = pax_mtime(&mut entry);
                let unpacked = entry
                    .unpack_in(staging)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if !unpacked {
                    return Err(format!(
                        "the archive is refused: {} leaves the target",
                        path.display()
                    ));
                }
                if let Some(t) = mtime {
                    set_mtime(&staging.join(&path), t)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            Ok((files, bytes))
        },
        |item| match item {
            Restore::Volume(name) => volumes::restore_from_archive(archive, name),
            _ => Err(NO_DATABASES_IN_UPLOADS.into()),
        },
    )
}

/// Put `staged` where `live` is, by renames in the same directory; the old one is removed
/// only once the new one is in place.
fn swap_in(staged: &Path, live: &Path, task: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", live.display());
    let old = live.with_file_name(format!(
        ".coffer-old-{task}-{}",
        live.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let had = std::fs::symlink_metadata(live).is_ok();
    if had {
        std::fs::rename(live, &old).map_err(err)?;
    }
    if let Err(e) = std::fs::rename(staged, live) {
        if had {
            let _ = std::fs::rename(&old, live);
        }
        return Err(err(e));
    }
    if had {
        let removed = match std::fs::symlink_metadata(&old) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&old),
            _ => std::fs::remove_file(&old),
        };
        removed.map_err(err)?;
    }
    Ok(())
}

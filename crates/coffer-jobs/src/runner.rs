//! The blocking side of a run: open (or create) the job's repository and back its sources up;
//! verify and dump a record's snapshot. Called on the blocking thread pool.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coffer_repo::forget::{self, RetentionPolicy};
use coffer_repo::prune::{self, PruneOptions};
use coffer_repo::verify::{self, VerifyOptions};
use coffer_repo::{
    BackupItem, BackupOptions, BackupSummary, Id, InitOptions, KdfParams, Location, ParentChoice,
    Repository, Secret,
};
use coffer_types::{Source, VerifyResult};

/// The repository key is 256 random bits, not a human password: a light KDF is enough.
const KDF: KdfParams = KdfParams {
    m_cost: 8 * 1024,
    t_cost: 1,
    p_cost: 1,
};

fn backend(dest: &Path) -> Result<Arc<dyn coffer_repo::Backend>, String> {
    let location = Location::parse(&dest.display().to_string())?;
    location.open(None).map_err(|e| e.to_string())
}

fn open(dest: &Path, key: Option<&str>) -> Result<Repository, String> {
    let backend = backend(dest)?;
    let secret = key.map(|k| Secret::Password(k.to_string()));
    Repository::open(backend, secret.as_ref()).map_err(|e| e.to_string())
}

/// Open the job's repository, creating it on the first run.
fn open_or_init(dest: &Path, key: Option<&str>) -> Result<Repository, String> {
    if dest.join("config").exists() {
        return open(dest, key);
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let backend = backend(dest)?;
    let opts = InitOptions {
        kdf: KDF,
        ..InitOptions::default()
    };
    Repository::init(backend, key, opts).map_err(|e| e.to_string())
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
/// database becomes the file `sqlite/<its path>` holding a consistent copy.
fn item(source: &Source, scratch_dir: &Path, scratch: &mut Scratch) -> Result<BackupItem, String> {
    match source {
        Source::Path { path, exclude } if exclude.is_empty() => {
            let p = Path::new(path);
            std::fs::symlink_metadata(p).map_err(|e| format!("source {path}: {e}"))?;
            BackupItem::path(p).map_err(|e| format!("source {path}: {e}"))
        }
        Source::Path { path, .. } => Err(format!(
            "source {path}: exclude patterns are not supported by this version"
        )),
        Source::Sqlite { path } => {
            std::fs::create_dir_all(scratch_dir)
                .map_err(|e| format!("creating {}: {e}", scratch_dir.display()))?;
            let copy = scratch_dir.join(format!(
                "sqlite-{}-{}.db",
                std::process::id(),
                hex::encode(crate::random_key())
            ));
            scratch.0.push(copy.clone());
            coffer_sources::sqlite::copy(Path::new(path), &copy).map_err(|e| e.to_string())?;
            let file =
                std::fs::File::open(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
            BackupItem::named(
                &format!("sqlite{path}"),
                coffer_repo::Source::Stream(Box::new(file)),
            )
            .map_err(|e| format!("source {path}: {e}"))
        }
        Source::Volume { name } => Err(format!(
            "volume {name}: Docker volume sources are not supported by this version"
        )),
    }
}

/// The label that ties a snapshot to its job (retention works per job).
pub const JOB_LABEL: &str = "job";

pub fn backup(
    dest: &Path,
    scratch_dir: &Path,
    key: Option<&str>,
    sources: &[Source],
    labels: BTreeMap<String, String>,
    cancel: Arc<AtomicBool>,
) -> Result<BackupSummary, String> {
    let mut copies = Scratch(vec![]);
    let items = sources
        .iter()
        .map(|s| item(s, scratch_dir, &mut copies))
        .collect::<Result<Vec<_>, _>>()?;
    let repo = open_or_init(dest, key)?;
    let opts = BackupOptions {
        labels,
        parent: ParentChoice::Auto,
        cancel: Some(cancel),
        ..Default::default()
    };
    coffer_repo::backup(&repo, items, opts).map_err(|e| e.to_string())
}

fn snapshot_id(id: &str) -> Result<Id, String> {
    id.parse::<Id>()
        .map_err(|_| format!("the record names an invalid snapshot {id:?}"))
}

/// Re-read everything the snapshot references and recompute its archive checksum.
pub fn verify(dest: &Path, key: Option<&str>, snapshot: &str, expected: &str) -> VerifyResult {
    let run = || -> Result<VerifyResult, String> {
        let repo = open(dest, key)?;
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
pub fn dump(
    dest: &Path,
    key: Option<&str>,
    snapshot: &str,
    out: &mut dyn Write,
) -> Result<(), String> {
    let repo = open(dest, key)?;
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

/// The job's snapshots that `retention` no longer keeps (nothing is removed here). The newest
/// snapshot is always kept.
pub fn expired(
    dest: &Path,
    key: Option<&str>,
    job_id: &str,
    retention: &Retention,
    tz: &chrono_tz::Tz,
) -> Result<Vec<String>, String> {
    if retention.is_empty() {
        return Ok(vec![]);
    }
    let repo = open(dest, key)?;
    let mut mine: Vec<(Id, coffer_repo::Snapshot)> = coffer_repo::snapshot::list(&repo)
        .map_err(|e| e.to_string())?
        .snapshots
        .into_iter()
        .filter(|(_, s)| s.labels.get(JOB_LABEL).map(String::as_str) == Some(job_id))
        .collect();
    mine.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
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
        .collect())
}

/// Remove snapshots from the repository, then the data no remaining snapshot uses.
pub fn forget_and_prune(
    dest: &Path,
    key: Option<&str>,
    snapshots: &[String],
) -> Result<(), String> {
    if snapshots.is_empty() {
        return Ok(());
    }
    let repo = open(dest, key)?;
    let ids = snapshots
        .iter()
        .map(|s| snapshot_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    forget::forget_ids(&repo, &ids, false).map_err(|e| e.to_string())?;
    prune::prune(&repo, &PruneOptions { dry_run: false })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

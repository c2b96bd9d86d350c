//! A job's repository: where it lives and how to open it (creating it on the first run), and
//! what works on the repository as a whole — its keys, the snapshots of each job (by their
//! labels), forgetting and pruning, what deleted jobs left behind, removing it once empty.
//! Blocking: called on the blocking thread pool.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_repo::forget;
use coffer_repo::prune::{self, PruneOptions};
use coffer_repo::{Id, InitOptions, KdfParams, Location, Repository, S3Options, Secret};

use crate::{JobsError, Result};

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
    /// Where to keep the cache of a remote repository.
    pub cache: Option<PathBuf>,
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
    pub(crate) fn backend(&self) -> coffer_repo::Result<Arc<dyn coffer_repo::Backend>> {
        Ok(self.location.open(self.s3.clone())?)
    }

    fn secret(&self) -> Option<Secret> {
        self.key.clone().map(Secret::Password)
    }

    /// The repository, opened.
    pub(crate) fn open(&self) -> coffer_repo::Result<Repository> {
        Ok(self.cached(Repository::open(self.backend()?, self.secret().as_ref())?))
    }

    fn cached(&self, repo: Repository) -> Repository {
        match &self.cache {
            Some(base) => repo.with_cache(base),
            None => repo,
        }
    }

    /// Open the repository, creating it on the first run.
    pub(crate) fn open_or_init(&self) -> Result<Repository> {
        let backend = self.backend()?;
        if backend
            .size("config")
            .map_err(coffer_repo::Error::from)?
            .is_some()
        {
            return Ok(self.cached(Repository::open(backend, self.secret().as_ref())?));
        }
        if let Location::Local(dir) = &self.location {
            std::fs::create_dir_all(dir)
                .map_err(|e| JobsError::io(format!("creating {}", dir.display()), e))?;
        }
        let opts = InitOptions {
            kdf: KDF,
            ..InitOptions::default()
        };
        Ok(self.cached(Repository::init(backend, self.key.as_deref(), opts)?))
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

/// The label that ties a snapshot to its job (retention works per job).
pub const JOB_LABEL: &str = "job";
/// The label that names the record a snapshot was made for.
pub const RECORD_LABEL: &str = "record";

/// The label of a snapshot taken before a restore.
pub const SAFETY_LABEL: &str = "pre_restore";
/// The label of a point-in-time recovery's result: the moment it holds its databases as of.
pub const PITR_LABEL: &str = "pitr_target";

/// The repository at `target`, or none where there is no repository yet.
fn existing(target: &Target) -> coffer_repo::Result<Option<Repository>> {
    match target.open() {
        Err(coffer_repo::Error::NotARepository(_)) => Ok(None),
        other => other.map(Some),
    }
}

/// Every snapshot of job `job_id`, its safety snapshots too (none where there is no
/// repository yet).
pub fn snapshots_of(
    target: &Target,
    job_id: &str,
) -> coffer_repo::Result<Vec<(Id, coffer_repo::Snapshot)>> {
    let Some(repo) = existing(target)? else {
        return Ok(vec![]);
    };
    Ok(coffer_repo::snapshot::list(&repo)?
        .snapshots
        .into_iter()
        .filter(|(_, s)| s.labels.get(JOB_LABEL).map(String::as_str) == Some(job_id))
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
/// Prune; whether packs were removed (or rewritten).
pub fn prune(target: &Target) -> coffer_repo::Result<bool> {
    let report = prune::prune(&target.open()?, &PruneOptions { dry_run: false })?;
    Ok(report.packs_deleted > 0 || report.packs_repacked > 0)
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
            trigger: if s.labels.contains_key(SAFETY_LABEL) {
                coffer_db::SAFETY_TRIGGER.into()
            } else if s.labels.contains_key(PITR_LABEL) {
                coffer_db::PITR_TRIGGER.into()
            } else {
                "adopted".into()
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

//! Backup jobs: parsing and validation (`spec`), the scheduler, the runner (`runner`) and the
//! record lifecycle. No HTTP here: the server calls [`Jobs`].
//!
//! A run is a record: created `running` in the metadata store (at most one per job, enforced by
//! the database), then one snapshot in the job's repository, then `success` or `failed`.
//! Records left `running` by a killed server are marked failed at start-up.
//!
//! The scheduler keeps, per job, the latest schedule time it acted on (`scheduled_until`). A job
//! is due when its next schedule time after that is past; however many times were missed, it
//! runs once and `scheduled_until` jumps to the latest of them. Deciding is a pure function of
//! the job, that mark and the current time ([`due`]), tested with fixed clocks. A job's restore
//! drills follow a schedule of their own (`drill_schedule`) the same way, with a mark of their
//! own (`drill_scheduled_until`).

mod alerts;
mod credentials;
mod drills;
mod error;
mod inplace;
mod keys;
mod kinds;
mod notifications;
mod places;
mod progress;
mod repos;
mod resources;
mod restores;
mod retention;
mod target;
mod upload;
mod vault;

pub use alerts::PING_HOSTS;
pub use error::{JobsError, Result, Unrecoverable};
pub use keys::KEY_SETTING;
pub use kinds::volume::{docker_check, docker_volumes};
pub use places::Roots;
pub use resources::Managed;
pub use vault::Vault;

/// The dump and client tools database sources need, found on `PATH` (with versions).
pub fn tools() -> Vec<coffer_types::Tool> {
    coffer_sources::tools()
        .into_iter()
        .map(|t| coffer_types::Tool {
            name: t.name.to_string(),
            path: t.path.map(|p| p.display().to_string()),
            version: t.version,
        })
        .collect()
}
mod archiver;
pub mod pitr;
mod recovery;
mod runner;
mod scheduler;
pub mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use coffer_db::{Db, DbError, RecordQuery, RunOutcome, Scheduled};
use coffer_types::{
    Event, Job, JobInput, JobUpdate, Record, RecordStatus, RecordTree, Repository, Role, Source,
    VerifyResult,
};

pub use coffer_repo::sealed::sealed_len;
pub use scheduler::{Due, due};
pub use spec::{FieldError, Schedule};

/// How the job service is set up.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// The server's data directory (it exists).
    pub data_dir: PathBuf,
    /// Where jobs may read and write beyond the data directory's own places.
    pub roots: Roots,
    /// How long the safety records taken before restores are kept.
    pub safety_record_days: u32,
    /// How often running work reports its progress.
    pub progress_every: Duration,
    /// Where users reach this server (`http://host:port`, no trailing slash): the links in
    /// notifications.
    pub public_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the data directory's folders cannot be made: {0}")]
    DataDir(#[from] std::io::Error),
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

/// Jobs, runs and the scheduler, over the metadata store.
#[derive(Debug)]
pub struct Jobs {
    db: Db,
    /// Where jobs may read and write.
    places: places::Places,
    safety_record_days: u32,
    progress_every: Duration,
    /// Seals the secrets of registered repositories and database credentials.
    vault: Vault,
    /// Backups read it, a rotation of the repository key writes it: no backup creates a
    /// repository while the key changes.
    key_rotation: tokio::sync::RwLock<()>,
    /// One prune at a time per repository (by location) from this server.
    prunes: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bytes each repository takes (by location): listed once, then a running figure that
    /// grows by what each run stores, and listed again after a prune removed packs (listing
    /// every object costs time, and money on S3).
    sizes: Mutex<HashMap<String, u64>>,
    /// Cancellation flags of running records, by record id.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    wake: tokio::sync::Notify,
    events: tokio::sync::broadcast::Sender<Event>,
    /// Wakes the deliverer of notifications when new ones are queued.
    deliveries: tokio::sync::Notify,
    /// Where users reach this server: the links in notifications.
    public_url: String,
    /// How archiving each followed credential's binary log stands, by credential id.
    archiving: Mutex<HashMap<String, archiver::Archiving>>,
}

/// Why a record is made.
pub(crate) enum Purpose {
    /// A backup of the job (scheduled, manual): followed by its retention, counted in the
    /// metrics, told as events.
    Backup,
    /// A safety record before a restore: kept apart from the job's retention, and keeps a
    /// SQLite file that is no database any more as raw bytes rather than failing.
    Safety,
    /// A point-in-time recovery's result, dumped from its scratch server (`logins`), holding
    /// the databases as of `at`: kept until deleted.
    Recovery {
        logins: Box<kinds::Logins>,
        at: chrono::DateTime<Utc>,
    },
}

impl Jobs {
    /// The job service. What a previous process left running is marked failed, and what it
    /// left half-done on disk is cleaned up (see `restores::clean_up_after_crash`).
    pub async fn start(
        db: Db,
        config: JobsConfig,
        vault: Vault,
    ) -> std::result::Result<Arc<Jobs>, StartError> {
        let places = places::Places::new(&config.data_dir, config.roots)?;
        let n = db
            .fail_interrupted_records("the server stopped while this record was running")
            .await?;
        if n > 0 {
            tracing::warn!(
                records = n,
                "marked records interrupted by a stop as failed"
            );
        }
        let n = db
            .fail_interrupted_drills("the server stopped while this drill was running")
            .await?;
        if n > 0 {
            tracing::warn!(drills = n, "marked drills interrupted by a stop as failed");
        }
        let n = db
            .fail_interrupted_pitr("the server stopped while this recovery was running")
            .await?;
        if n > 0 {
            tracing::warn!(
                recoveries = n,
                "marked recoveries interrupted by a stop as failed"
            );
        }
        keys::move_out_of_settings(&db, &vault).await?;
        // Database copies, uploads, scratch database servers and temporary containers a killed
        // run left behind.
        coffer_sources::scratch_server::remove_leftovers(&places.scratch_servers());
        let _ = std::fs::remove_dir_all(places.scratch());
        // Temporary containers are this data directory's: another Coffer's stay.
        let owner = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            places.scratch().as_os_str().as_encoded_bytes(),
        );
        coffer_sources::docker::set_owner(&hex::encode(&owner.as_ref()[..8]));
        tokio::spawn(kinds::volume::remove_leftovers());
        let jobs = Arc::new(Jobs {
            db,
            places,
            safety_record_days: config.safety_record_days,
            progress_every: config.progress_every,
            vault,
            key_rotation: Default::default(),
            prunes: Default::default(),
            sizes: Default::default(),
            running: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            events: tokio::sync::broadcast::channel(256).0,
            deliveries: tokio::sync::Notify::new(),
            public_url: config.public_url.trim_end_matches('/').to_string(),
            archiving: Mutex::new(HashMap::new()),
        });
        jobs.clean_up_after_crash().await?;
        // Database servers may be slow to answer, or away: not something to wait for.
        let dropping = jobs.clone();
        tokio::spawn(async move {
            if let Err(e) = dropping.drop_drill_databases().await {
                tracing::warn!(error = %e, "cannot look for drills' scratch databases");
            }
        });
        Ok(jobs)
    }

    /// Live events from now on. A subscriber that falls more than 256 events behind misses
    /// the oldest (and is told so by the channel).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(
        &self,
        event: &str,
        job_id: &str,
        record_id: &str,
        restore_id: Option<&str>,
        error: Option<&str>,
    ) {
        // No subscriber is not an error.
        let _ = self.events.send(Event {
            event: event.to_string(),
            job_id: job_id.to_string(),
            record_id: record_id.to_string(),
            restore_id: restore_id.map(str::to_string),
            error: error.map(str::to_string),
            progress: None,
            at: Utc::now(),
        });
    }

    /// Start reporting the progress of `work`.
    pub(crate) fn report(
        &self,
        work: progress::Work,
        total_bytes: Option<u64>,
    ) -> progress::Reporter {
        progress::Reporter::start(
            self.db.clone(),
            self.events.clone(),
            work,
            total_bytes,
            self.progress_every,
        )
    }

    /// The archive size of the job's newest successful backup: what the next is likely to be.
    async fn likely_size(&self, job_id: &str) -> Option<u64> {
        let newest = RecordQuery {
            status: Some(RecordStatus::Success),
            limit: 1,
            ..RecordQuery::default()
        };
        let records = self.db.records(job_id, &newest).await.ok()?;
        records.first().and_then(|r| r.size_bytes)
    }

    /// Where runs keep temporary copies (SQLite databases); emptied at start-up.
    pub fn scratch_dir(&self) -> PathBuf {
        self.places.scratch()
    }

    /// The job with what its schedules say now: the next run and drill, and whether a run is
    /// overdue.
    fn with_next_run(job: Job) -> Job {
        let now = Utc::now();
        let next = |what| match due(&job, what, Some(now), now) {
            Due::Wait { at } => Some(at),
            _ => None,
        };
        Job {
            next_run: next(Scheduled::Backups),
            next_drill: next(Scheduled::Drills),
            overdue: scheduler::overdue(&job, now),
            ..job
        }
    }

    pub async fn list(&self) -> Result<Vec<Job>> {
        Ok(self
            .db
            .jobs()
            .await?
            .into_iter()
            .map(Self::with_next_run)
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<Job> {
        Ok(Self::with_next_run(self.db.job(id).await?))
    }

    /// The directories of the local repositories in use: jobs' own (`dest_path`) and
    /// registered ones.
    async fn repository_dirs(&self) -> Result<Vec<PathBuf>> {
        let own = self
            .db
            .jobs()
            .await?
            .into_iter()
            .filter_map(|j| j.dest_path.map(PathBuf::from));
        let registered = self
            .db
            .resources::<Repository>()
            .await?
            .into_iter()
            .filter_map(|r: Repository| r.url.strip_prefix("file://").map(PathBuf::from));
        Ok(own.chain(registered).collect())
    }

    /// A new job, made by someone with `role`. With `adopt`, the job takes over the id and
    /// the data a deleted job left in the repository (its records come back).
    pub async fn create(&self, input: JobInput, role: Role) -> Result<Job> {
        let repository =
            match &input.repository_id {
                Some(id) => Some(self.db.resource::<Repository>(id).await.map_err(
                    |e| match e {
                        coffer_db::DbError::NotFound(_) => JobsError::Field(FieldError {
                            field: "repository_id",
                            message: format!("there is no repository {id:?}"),
                        }),
                        other => other.into(),
                    },
                )?),
                None => None,
            };
        let adopt = input.adopt.clone();
        let id = match &adopt {
            Some(old) => {
                spec::plain("adopt", old)?;
                if self.db.job(old).await.is_ok() {
                    return Err(JobsError::Exists(format!(
                        "job {old:?} exists: only a deleted job's data can be adopted"
                    )));
                }
                old.clone()
            }
            None => coffer_db::new_id(),
        };
        let taken = self.repository_dirs().await?;
        let job = spec::new_job(input, id, &self.places, role, repository.as_ref(), &taken)?;
        self.check_credentials(&job.sources).await?;
        if let Some(url) = &job.ping_url {
            self.allowed_ping(url).await?;
        }
        // A repository of the job's own must not hold a deleted job's data beside the job's:
        // nothing would ever reach or remove it. (A registered one is shared anyway.)
        let left = match adopt.is_some() || job.dest_path.is_some() {
            true => self.left_behind(&job).await?,
            false => vec![],
        };
        let adopted = match adopt {
            Some(old) => {
                let found = left.into_iter().find(|(id, _)| *id == old);
                let Some((_, records)) = found else {
                    return Err(JobsError::Field(FieldError {
                        field: "adopt",
                        message: format!("the repository holds no data of a job {old:?}"),
                    }));
                };
                records
            }
            None if job.dest_path.is_some() && !left.is_empty() => {
                let ids: Vec<String> = left
                    .iter()
                    .map(|(id, r)| format!("{id:?} ({} records)", r.len()))
                    .collect();
                return Err(JobsError::Exists(format!(
                    "the repository at {} holds the data of deleted jobs: {}; give \"adopt\": \
                     \"<job id>\" to take one over, or choose another dest_path",
                    job.dest_path.as_deref().unwrap_or_default(),
                    ids.join(", ")
                )));
            }
            None => vec![],
        };
        let job = self.db.create_job(&job).await?;
        if !adopted.is_empty() {
            let n = self.db.adopt_records(&job.id, &adopted).await?;
            tracing::info!(job = %job.id, records = n, "adopted the records of a deleted job");
        }
        self.wake.notify_one();
        let warnings = self.warnings(&job).await;
        Ok(Job {
            warnings,
            ..Self::with_next_run(job)
        })
    }

    /// For each of `sources`, what of it does not exist now (see `kinds::Kind::missing`).
    async fn missing(&self, sources: &[Source]) -> Vec<Option<String>> {
        let logins = self.logins(sources).await.unwrap_or_default();
        let sources = sources.to_vec();
        let missing = blocking(move || {
            let missing = sources.iter().map(|s| kinds::of(s).missing(&logins));
            Ok::<_, JobsError>(missing.collect())
        });
        missing.await.unwrap_or_default()
    }

    /// What will not work as `job` stands: sources that do not exist now (a volume or a
    /// database may well appear later), a job that keeps everything forever.
    async fn warnings(&self, job: &Job) -> Vec<String> {
        let mut out = vec![];
        for what in self.missing(&job.sources).await.into_iter().flatten() {
            out.push(format!(
                "{what} does not exist now: runs fail until it does"
            ));
        }
        let keeps_all = job.retention_count.is_none()
            && job.retention_days.is_none()
            && job
                .retention
                .as_ref()
                .is_none_or(|r| *r == Default::default());
        if keeps_all {
            out.push(
                "no retention: every record is kept forever; set retention_count, \
                 retention_days or retention"
                    .into(),
            );
        }
        out
    }

    /// The records that the data of deleted jobs in `job`'s repository makes, by job id.
    async fn left_behind(&self, job: &Job) -> Result<Vec<(String, Vec<Record>)>> {
        let target = self.target(job).await?;
        let existing: std::collections::HashSet<String> =
            self.db.jobs().await?.into_iter().map(|j| j.id).collect();
        blocking(move || target::left_behind(&target, &existing)).await
    }

    pub async fn update(&self, id: &str, u: JobUpdate, role: Role) -> Result<Job> {
        let before = self.db.job(id).await?;
        let after = spec::update_job(before.clone(), u, &self.places, role)?;
        self.check_credentials(&after.sources).await?;
        if let Some(url) = after
            .ping_url
            .as_ref()
            .filter(|u| Some(*u) != before.ping_url.as_ref())
        {
            self.allowed_ping(url).await?;
        }
        let job = self.db.update_job(&after).await?;
        // A new schedule (or re-enabling) starts from now: no burst of "missed" runs.
        let moved = (before.timezone != after.timezone) || (before.enabled != after.enabled);
        if moved || before.schedule != after.schedule {
            self.db
                .set_scheduled_until(Scheduled::Backups, id, Utc::now())
                .await?;
        }
        if moved || before.drill_schedule != after.drill_schedule {
            self.db
                .set_scheduled_until(Scheduled::Drills, id, Utc::now())
                .await?;
        }
        self.wake.notify_one();
        let warnings = self.warnings(&job).await;
        Ok(Job {
            warnings,
            ..Self::with_next_run(job)
        })
    }

    /// Delete a job and its records. With `keep_data` its data stays in the repository (a new
    /// job can adopt it); otherwise its snapshots are removed, and a repository of its own that
    /// holds nothing else any more goes with them.
    pub async fn delete(&self, id: &str, keep_data: bool) -> Result<()> {
        let running = RecordQuery {
            status: Some(coffer_types::RecordStatus::Running),
            trigger: coffer_db::TriggerFilter::Any,
            limit: 1,
            ..RecordQuery::default()
        };
        if !self.db.records(id, &running).await?.is_empty() {
            return Err(JobsError::Unusable(
                "the job is running: wait for the run to finish, then delete it".into(),
            ));
        }
        let job = self.db.job(id).await?;
        let target = match keep_data {
            true => None,
            false => Some(self.target(&job).await?),
        };
        // The records go first: a record never names data that is gone.
        self.db.delete_job(id).await?;
        let Some(target) = target else {
            return Ok(());
        };
        let removed = async {
            let job_id = job.id.clone();
            let t = target.clone();
            let snapshots = blocking(move || target::snapshots_of(&t, &job_id)).await?;
            let snapshots = snapshots
                .into_iter()
                .map(|(id, _)| id.to_string())
                .collect();
            self.forget_and_prune(&target, snapshots).await?;
            if job.dest_path.is_some() {
                blocking(move || target::remove_if_empty(&target)).await?;
            }
            Ok::<_, JobsError>(())
        };
        removed
            .await
            .map_err(|e| e.context("the job is deleted, but its data could not be removed"))
    }

    pub async fn records(&self, job_id: &str, q: &RecordQuery) -> Result<Vec<Record>> {
        self.db.job(job_id).await?;
        Ok(self.db.records(job_id, q).await?)
    }

    /// Records of every job, or of `job_id`, newest first.
    pub async fn history(&self, job_id: Option<&str>, q: &RecordQuery) -> Result<Vec<Record>> {
        match job_id {
            Some(id) => self.records(id, q).await,
            None => Ok(self.db.all_records(q).await?),
        }
    }

    pub async fn record(&self, job_id: &str, rid: &str) -> Result<Record> {
        Ok(self.db.record(job_id, rid).await?)
    }

    /// Start a run now (`trigger`: `manual` or `schedule`); a conflict if one is running.
    pub async fn run(self: &Arc<Self>, job_id: &str, trigger: &str) -> Result<Record> {
        let job = self.db.job(job_id).await?;
        let record = self.db.start_record(job_id, trigger, job.encrypted).await?;
        let jobs = self.clone();
        let rid = record.id.clone();
        tokio::spawn(async move {
            let sources = job.sources.clone();
            jobs.backup_record(&job, sources, &rid, Purpose::Backup)
                .await;
        });
        Ok(record)
    }

    /// Back `sources` of `job` up as the (started) record `rid` and finish it. A backup is
    /// followed by the job's retention, counted in the metrics and told as events; the other
    /// purposes are not (see [`Purpose`]).
    async fn backup_record(
        &self,
        job: &Job,
        sources: Vec<Source>,
        rid: &str,
        purpose: Purpose,
    ) -> RunOutcome {
        let backup = matches!(purpose, Purpose::Backup);
        let _key_stays = self.key_rotation.read().await;
        let cancel = Arc::new(AtomicBool::new(false));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rid.to_string(), cancel.clone());
        let started = std::time::Instant::now();
        // A safety record is part of its restore, whose events tell how it went; a recovery's
        // record, of its recovery, which tells how it went.
        if backup {
            self.emit("backup.started", &job.id, rid, None, None);
        }
        let reporter = self.report(
            progress::Work::Backup {
                job_id: job.id.clone(),
                record_id: rid.to_string(),
            },
            self.likely_size(&job.id).await,
        );
        let outcome = self
            .execute(
                job,
                sources,
                rid,
                purpose,
                cancel,
                reporter.counters.clone(),
            )
            .await;
        drop(reporter);
        if let RunOutcome::Failed { error } = &outcome {
            tracing::warn!(job = %job.id, record = %rid, %error, "backup failed");
        } else {
            tracing::info!(job = %job.id, record = %rid, "backup succeeded");
        }
        // Only backups are backups of the job: monitoring must not count the others.
        if backup {
            record_metrics(job, &outcome, started.elapsed());
        }
        let success = matches!(outcome, RunOutcome::Success { .. });
        if let Err(e) = self.db.finish_record(rid, &outcome).await {
            tracing::error!(record = %rid, error = %e, "could not finish the record");
        } else if success
            && backup
            && let Err(e) = self.apply_retention(job).await
        {
            tracing::warn!(job = %job.id, error = %e, "retention failed; it is retried after the next run");
        }
        let stored = match &outcome {
            RunOutcome::Success { stored_bytes, .. } => *stored_bytes,
            RunOutcome::Failed { .. } => 0,
        };
        if let Some(size) = self.repository_size(job, stored).await {
            metrics::gauge!("coffer_backup_repository_bytes", &job_labels(job)).set(size as f64);
        }
        if success && let Err(e) = self.db.complete_record(rid).await {
            tracing::error!(record = %rid, error = %e, "could not complete the record");
        }
        match &outcome {
            _ if !backup => {}
            RunOutcome::Success { .. } => self.emit("backup.completed", &job.id, rid, None, None),
            RunOutcome::Failed { error } => {
                self.emit("backup.failed", &job.id, rid, None, Some(error))
            }
        }
        if backup {
            self.after_backup(job, rid, success).await;
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(rid);
        outcome
    }

    async fn execute(
        &self,
        job: &Job,
        sources: Vec<Source>,
        rid: &str,
        purpose: Purpose,
        cancel: Arc<AtomicBool>,
        counters: Arc<coffer_repo::Progress>,
    ) -> RunOutcome {
        let prepared = async {
            for path in sources.iter().filter_map(|s| kinds::of(s).on_disk()) {
                self.places.check_source_now(&path)?;
            }
            let target = self.target(job).await?;
            let logins = match &purpose {
                Purpose::Recovery { logins, .. } => (**logins).clone(),
                _ => self.logins(&sources).await?,
            };
            self.db.set_record_phase(rid, "reading").await?;
            Ok::<_, JobsError>((target, logins))
        };
        let (target, logins) = match prepared.await {
            Ok(p) => p,
            Err(e) => {
                return RunOutcome::Failed {
                    error: e.to_string(),
                };
            }
        };
        let mut labels: std::collections::BTreeMap<_, _> = [
            (target::JOB_LABEL.to_string(), job.id.clone()),
            (target::RECORD_LABEL.to_string(), rid.to_string()),
        ]
        .into();
        match &purpose {
            Purpose::Backup => {}
            Purpose::Safety => {
                labels.insert(target::SAFETY_LABEL.to_string(), "true".to_string());
            }
            Purpose::Recovery { at, .. } => {
                labels.insert(target::PITR_LABEL.to_string(), at.to_rfc3339());
            }
        }
        let safety = matches!(purpose, Purpose::Safety);
        let (t, scratch, l) = (target.clone(), self.scratch_dir(), logins.clone());
        let result = tokio::task::spawn_blocking(move || {
            let watch = runner::Watch {
                cancel,
                progress: counters,
            };
            runner::backup(&t, &scratch, &sources, &l, labels, safety, watch)
        })
        .await
        .unwrap_or_else(|e| {
            Err(JobsError::Internal(format!(
                "the backup stopped unexpectedly: {e}"
            )))
        });
        match result {
            Ok(s) => RunOutcome::Success {
                size_bytes: s.size_bytes,
                stored_bytes: s.stored_bytes,
                checksum: s.checksum,
                file_path: format!("{}/snapshots/{}", target.location, s.snapshot_id),
                snapshot_id: s.snapshot_id.to_string(),
                warnings: s.warnings,
                databases: logins.dumps(),
            },
            Err(error) => RunOutcome::Failed {
                error: error.to_string(),
            },
        }
    }

    /// After a successful record or a restore: drop the records the job's retention no longer
    /// keeps (and the safety records older than their time), then their snapshots, then the
    /// data nothing uses any more. Records go first: a record must never name a snapshot that
    /// is gone, while a snapshot without a record is only retried.
    async fn apply_retention(&self, job: &Job) -> Result<()> {
        let policy = retention_of(job, self.safety_record_days);
        let tz: chrono_tz::Tz = job.timezone.parse().unwrap_or(chrono_tz::UTC);
        let target = self.target(job).await?;
        let job_id = job.id.clone();
        let t = target.clone();
        let expired = blocking(move || retention::expired(&t, &job_id, &policy, &tz)).await?;
        if expired.is_empty() {
            return Ok(());
        }
        let n = self
            .db
            .delete_records_of_snapshots(&job.id, &expired)
            .await?;
        tracing::info!(job = %job.id, records = n, snapshots = expired.len(), "retention removed old records");
        self.forget_and_prune(&target, expired).await
    }

    /// The bytes the job's repository takes, after a run that stored `stored` bytes: the
    /// running figure, or a listing when there is none.
    async fn repository_size(&self, job: &Job, stored: u64) -> Option<u64> {
        let target = self.target(job).await.ok()?;
        let key = target.location.to_string();
        let running = {
            let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
            sizes.get_mut(&key).map(|size| {
                *size += stored;
                *size
            })
        };
        if running.is_some() {
            return running;
        }
        let size = blocking(move || target.size()).await.ok()?;
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, size);
        Some(size)
    }

    /// Forget `snapshots`, then prune. From this server one prune runs at a time per
    /// repository; another process's prune is waited for up to `PRUNE_WAIT`. A prune only
    /// frees space nothing uses: one that cannot run now leaves that to the next, which is no
    /// failure of what was asked.
    async fn forget_and_prune(
        &self,
        target: &target::Target,
        snapshots: Vec<String>,
    ) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let t = target.clone();
        blocking(move || target::forget(&t, &snapshots)).await?;
        let one = self
            .prunes
            .lock()
            .await
            .entry(target.location.to_string())
            .or_default()
            .clone();
        let _one = one.lock().await;
        let deadline = std::time::Instant::now() + PRUNE_WAIT;
        loop {
            let t = target.clone();
            match blocking(move || target::prune(&t)).await {
                Err(JobsError::Locked(who)) if std::time::Instant::now() < deadline => {
                    tracing::debug!(%who, "waiting for another prune");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::warn!(repository = %target.location, error = %e, "pruning failed; the next prune frees the space");
                    return Ok(());
                }
                Ok(removed) => {
                    if removed {
                        self.sizes
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&target.location.to_string());
                    }
                    return Ok(());
                }
            }
        }
    }

    /// A successful record, its job, and the job's repository.
    async fn usable(&self, job_id: &str, rid: &str) -> Result<(Record, Job, target::Target)> {
        let record = self.db.record(job_id, rid).await?;
        if record.snapshot_id.is_none() {
            return Err(JobsError::Unusable(format!(
                "record {rid} has no snapshot (its status is {})",
                record.status.as_str()
            )));
        }
        let job = self.db.job(job_id).await?;
        let target = self.target(&job).await?;
        Ok((record, job, target))
    }

    /// Re-read the record's snapshot completely and recompute its archive checksum. Damage is
    /// the answer `ok: false` (kept on the record, logged, counted and announced); a
    /// repository that cannot be read at all is an error that says why, and changes nothing.
    pub async fn verify(&self, job_id: &str, rid: &str) -> Result<VerifyResult> {
        let (record, job, target) = self.usable(job_id, rid).await?;
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let expected = record.checksum.clone().unwrap_or_default();
        let result = blocking(move || runner::verify(&target, &snapshot, &expected)).await?;
        self.db.set_record_verified(rid, result.ok).await?;
        if !result.ok {
            tracing::warn!(job = %job_id, record = %rid, damaged = ?result.damaged, "verify found damage");
            metrics::counter!("coffer_backup_verify_failures_total", &job_labels(&job))
                .increment(1);
            self.emit("verify.failed", job_id, rid, None, result.error.as_deref());
        }
        Ok(result)
    }

    /// The folder at `path` of the record (`/`: its root).
    pub async fn tree(&self, job_id: &str, rid: &str, path: &str) -> Result<RecordTree> {
        let (record, _, target) = self.usable(job_id, rid).await?;
        let snapshot = record.snapshot_id.unwrap_or_default();
        let path = path.to_string();
        blocking(move || runner::tree(&target, &snapshot, &path)).await
    }

    /// The record's canonical archive, ready to stream (see [`Download`]); with `sealed`,
    /// sealed with the repository key (`coffer decrypt`), which needs an encrypted repository.
    pub async fn download(&self, job_id: &str, rid: &str, sealed: bool) -> Result<Download> {
        let (record, _, target) = self.usable(job_id, rid).await?;
        if sealed && target.key.is_none() {
            return Err(JobsError::Unusable(
                "the job's repository is not encrypted: there is no key to seal the archive with"
                    .into(),
            ));
        }
        Ok(Download {
            record,
            target,
            sealed,
        })
    }

    /// Delete a record, then its snapshot and the data nothing else uses (record first, as in
    /// retention). Once the record is gone the deletion has happened: a repository that cannot
    /// be reached now keeps the snapshot until the next retention pass removes it.
    pub async fn delete_record(&self, job_id: &str, rid: &str) -> Result<()> {
        let record = self.db.record(job_id, rid).await?;
        if record.status == coffer_types::RecordStatus::Running {
            return Err(JobsError::Unusable(
                "the record is still running: wait for it to finish".into(),
            ));
        }
        let job = self.db.job(job_id).await?;
        self.db.delete_record(job_id, rid).await?;
        if let Some(snapshot) = record.snapshot_id {
            let removed = async {
                let target = self.target(&job).await?;
                self.forget_and_prune(&target, vec![snapshot]).await
            };
            if let Err(e) = removed.await {
                tracing::warn!(job = %job_id, record = %rid, error = %e, "the record is deleted; its snapshot is removed later");
            }
        }
        Ok(())
    }
}

/// A record's archive to download: the record, and where its snapshot is.
#[derive(Debug)]
pub struct Download {
    pub record: Record,
    target: target::Target,
    sealed: bool,
}

impl Download {
    /// Stream the bytes `range` (start, length; `None`: all) of the archive — sealed, always
    /// the whole — as a channel of chunks that ends with an error item if reading fails
    /// part-way. Dropping the receiver stops the reading; memory stays constant.
    pub fn stream(
        self,
        range: Option<(u64, u64)>,
    ) -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
        let Download {
            record,
            target,
            sealed,
        } = self;
        let snapshot = record.snapshot_id.unwrap_or_default();
        let (skip, take) = range.filter(|_| !sealed).unwrap_or((0, u64::MAX));
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter::new(tx, skip, take);
            let sending = |e| JobsError::io("sending the archive", e);
            let result = if sealed {
                let material = target.key.clone().unwrap_or_default();
                coffer_repo::sealed::Sealer::new(&mut out, material.as_bytes())
                    .map_err(sending)
                    .and_then(|mut sealer| {
                        runner::dump(&target, &snapshot, &mut sealer)?;
                        sealer.finish().map(|_| ()).map_err(sending)
                    })
            } else {
                runner::dump(&target, &snapshot, &mut out)
            }
            .and_then(|()| out.flush_buf().map_err(sending));
            if let Err(e) = result {
                out.fail(e.to_string());
            }
        });
        rx
    }
}

/// How long a prune waits for another process's prune of the same repository.
const PRUNE_WAIT: Duration = Duration::from_secs(30);

/// Wait until `next` (a minute at most), a wake-up of `wake`, or `shutdown`: false on
/// shutdown. What the loops beside the server (scheduler, deliverer) wait on between passes.
pub(crate) async fn pause(
    next: Option<chrono::DateTime<Utc>>,
    wake: &tokio::sync::Notify,
    shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    let wait = next
        .and_then(|t| (t - Utc::now()).to_std().ok())
        .unwrap_or(Duration::from_secs(60))
        .min(Duration::from_secs(60));
    tokio::select! {
        _ = shutdown => false,
        _ = wake.notified() => true,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// Run blocking repository work on the blocking pool.
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> Result<T>
where
    T: Send + 'static,
    E: Send + 'static,
    JobsError: From<E>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobsError::Internal(format!("the operation stopped unexpectedly: {e}")))?
        .map_err(JobsError::from)
}

fn job_labels(job: &Job) -> [(&'static str, String); 2] {
    [("job", job.id.clone()), ("name", job.name.clone())]
}

/// Per-job series for `/metrics`.
fn record_metrics(job: &Job, outcome: &RunOutcome, took: Duration) {
    let labels = job_labels(job);
    let status = match outcome {
        RunOutcome::Success { .. } => "success",
        RunOutcome::Failed { .. } => "failed",
    };
    let mut with_status = labels.to_vec();
    with_status.push(("status", status.to_string()));
    metrics::counter!("coffer_backup_runs_total", &with_status).increment(1);
    if let RunOutcome::Success { size_bytes, .. } = outcome {
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        metrics::gauge!("coffer_backup_last_success_timestamp_seconds", &labels).set(now);
        metrics::gauge!("coffer_backup_last_duration_seconds", &labels).set(took.as_secs_f64());
        metrics::gauge!("coffer_backup_last_size_bytes", &labels).set(*size_bytes as f64);
    }
}

/// The job's retention fields, and how long its safety records are kept.
fn retention_of(job: &Job, safety_days: u32) -> retention::Retention {
    let r = job.retention.clone().unwrap_or_default();
    retention::Retention {
        safety_days,
        count: job.retention_count,
        days: job.retention_days,
        rules: coffer_repo::forget::RetentionPolicy {
            keep_last: r.keep_last,
            keep_within: None,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        },
    }
}

pub(crate) fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("the operating system's random number generator failed");
    k
}

const CHUNK: usize = 256 * 1024;

/// `Write` into a bounded channel of chunks, passing on only a window of the bytes (after
/// `skip`, at most `remaining`): memory stays constant, and a receiver that went away (the
/// client disconnected) or a window that is complete turns into a write error that stops the
/// producer.
pub(crate) struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    skip: u64,
    remaining: u64,
}

impl ChannelWriter {
    pub(crate) fn new(
        tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
        skip: u64,
        remaining: u64,
    ) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            skip,
            remaining,
        }
    }

    /// End the stream with an error (unless the window was complete: that is no failure), so
    /// that the receiver never takes a truncated stream for a whole one.
    pub(crate) fn fail(&self, error: String) {
        if self.remaining > 0 {
            let _ = self.tx.blocking_send(Err(std::io::Error::other(error)));
        }
    }

    pub(crate) fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let skipped = self.skip.min(data.len() as u64) as usize;
        self.skip -= skipped as u64;
        let wanted = &data[skipped..];
        let n = self.remaining.min(wanted.len() as u64) as usize;
        self.buf.extend_from_slice(&wanted[..n]);
        self.remaining -= n as u64;
        if self.buf.len() >= CHUNK || self.remaining == 0 {
            self.flush_buf()?;
        }
        if self.remaining == 0 {
            return Err(std::io::Error::other("the requested range is complete"));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buf()
    }
}

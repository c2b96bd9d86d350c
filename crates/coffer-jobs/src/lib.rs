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
//! the job, that mark and the current time ([`due`]), tested with fixed clocks.

mod credentials;
mod databases;
mod repos;
mod restores;
mod vault;
mod volumes;

pub use vault::Vault;
pub use volumes::docker_check;
pub mod runner;
mod scheduler;
pub mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use coffer_db::{Db, DbError, RecordQuery, RunOutcome};
use coffer_types::{Event, Job, JobInput, JobUpdate, Record, Source, VerifyResult};

pub use coffer_repo::sealed::sealed_len;
pub use scheduler::{Due, due};
pub use spec::{FieldError, Schedule};

/// The setting that holds the key of job repositories (created on first use).
pub const ENCRYPTION_KEY_SETTING: &str = "backup_encryption_key";

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The record cannot be used this way (still running, failed, no snapshot).
    #[error("{0}")]
    Unusable(String),
    /// The repository could not be read or written.
    #[error("{0}")]
    Repository(String),
    /// What a restore would overwrite is in use (a volume of a running container).
    #[error("{0}")]
    Busy(String),
}

pub type Result<T, E = JobsError> = std::result::Result<T, E>;

/// Jobs, runs and the scheduler, over the metadata store.
#[derive(Debug)]
pub struct Jobs {
    db: Db,
    /// Where local repositories may live.
    root: PathBuf,
    /// Seals the secrets of registered repositories and database credentials.
    vault: Vault,
    /// Cancellation flags of running records, by record id.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    wake: tokio::sync::Notify,
    events: tokio::sync::broadcast::Sender<Event>,
}

impl Jobs {
    /// The job service; records a previous process left running are marked failed.
    pub async fn start(db: Db, root: PathBuf, vault: Vault) -> coffer_db::Result<Arc<Jobs>> {
        let n = db
            .fail_interrupted_records("the server stopped while this record was running")
            .await?
            + db.fail_interrupted_restores("the server stopped while this restore was running")
                .await?;
        if n > 0 {
            tracing::warn!(
                records = n,
                "marked records interrupted by a stop as failed"
            );
        }
        // Database copies, uploads and temporary containers a killed run left behind.
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        tokio::spawn(volumes::remove_leftovers());
        Ok(Arc::new(Jobs {
            db,
            root,
            vault,
            running: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            events: tokio::sync::broadcast::channel(256).0,
        }))
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
            at: Utc::now(),
        });
    }

    /// Where runs keep temporary copies (SQLite databases); emptied at start-up.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn with_next_run(job: Job) -> Job {
        let next_run = match due(&job, Some(Utc::now()), Utc::now()) {
            Due::Wait { at } => Some(at),
            _ => None,
        };
        Job { next_run, ..job }
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

    pub async fn create(&self, input: JobInput) -> Result<Job> {
        let repository = match &input.repository_id {
            Some(id) => Some(self.db.repository(id).await.map_err(|e| match e {
                coffer_db::DbError::NotFound(_) => JobsError::Field(FieldError {
                    field: "repository_id",
                    message: format!("there is no repository {id:?}"),
                }),
                other => other.into(),
            })?),
            None => None,
        };
        let job = spec::new_job(input, coffer_db::new_id(), &self.root, repository.as_ref())?;
        self.check_credentials(&job.sources).await?;
        let job = self.db.create_job(&job).await?;
        self.wake.notify_one();
        Ok(Self::with_next_run(job))
    }

    pub async fn update(&self, id: &str, u: JobUpdate) -> Result<Job> {
        let before = self.db.job(id).await?;
        let after = spec::update_job(before.clone(), u)?;
        self.check_credentials(&after.sources).await?;
        let job = self.db.update_job(&after).await?;
        // A new schedule (or re-enabling) starts from now: no burst of "missed" runs.
        if (before.schedule, before.timezone, before.enabled)
            != (after.schedule, after.timezone, after.enabled)
        {
            self.db.set_scheduled_until(id, Utc::now()).await?;
        }
        self.wake.notify_one();
        Ok(Self::with_next_run(job))
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        let running = RecordQuery {
            status: Some(coffer_types::RecordStatus::Running),
            limit: 1,
            ..RecordQuery::default()
        };
        if !self.db.records(id, &running).await?.is_empty() {
            return Err(JobsError::Unusable(
                "the job is running: wait for the run to finish, then delete it".into(),
            ));
        }
        self.db.delete_job(id).await?;
        Ok(())
    }

    pub async fn records(&self, job_id: &str, q: &RecordQuery) -> Result<Vec<Record>> {
        self.db.job(job_id).await?;
        Ok(self.db.records(job_id, q).await?)
    }

    pub async fn record(&self, job_id: &str, rid: &str) -> Result<Record> {
        Ok(self.db.record(job_id, rid).await?)
    }

    /// The key of encrypted job repositories, created on first use and kept in the settings.
    async fn key(&self, job: &Job) -> Result<Option<String>> {
        if !job.encrypted {
            return Ok(None);
        }
        // Read first: only the very first use writes (the insert is atomic if two race).
        let v = match self.db.setting(ENCRYPTION_KEY_SETTING).await? {
            Some(v) => v,
            None => {
                let fresh = serde_json::Value::String(hex::encode(random_key()));
                self.db
                    .setting_or_insert(ENCRYPTION_KEY_SETTING, &fresh)
                    .await?
            }
        };
        match v.value {
            serde_json::Value::String(k) if !k.is_empty() => Ok(Some(k)),
            _ => Err(JobsError::Unusable(format!(
                "the setting {ENCRYPTION_KEY_SETTING} must be a non-empty string"
            ))),
        }
    }

    /// Start a run now (`trigger`: `manual` or `schedule`); a conflict if one is running.
    pub async fn run(self: &Arc<Self>, job_id: &str, trigger: &str) -> Result<Record> {
        let job = self.db.job(job_id).await?;
        let record = self.db.start_record(job_id, trigger, job.encrypted).await?;
        let jobs = self.clone();
        let rid = record.id.clone();
        tokio::spawn(async move {
            let sources = job.sources.clone();
            jobs.backup_record(&job, sources, &rid, false).await;
        });
        Ok(record)
    }

    /// Back `sources` of `job` up as the (started) record `rid` and finish it. A regular run is
    /// followed by the job's retention; a `safety` run (before a restore) is not, and keeps a
    /// SQLite file that is no database any more as raw bytes rather than failing.
    async fn backup_record(
        &self,
        job: &Job,
        sources: Vec<Source>,
        rid: &str,
        safety: bool,
    ) -> RunOutcome {
        let cancel = Arc::new(AtomicBool::new(false));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rid.to_string(), cancel.clone());
        let started = std::time::Instant::now();
        self.emit("backup.started", &job.id, rid, None, None);
        let outcome = self.execute(job, sources, rid, safety, cancel).await;
        if let RunOutcome::Failed { error } = &outcome {
            tracing::warn!(job = %job.id, record = %rid, %error, "backup failed");
        } else {
            tracing::info!(job = %job.id, record = %rid, "backup succeeded");
        }
        record_metrics(job, &outcome, started.elapsed());
        let success = matches!(outcome, RunOutcome::Success { .. });
        if let Err(e) = self.db.finish_record(rid, &outcome).await {
            tracing::error!(record = %rid, error = %e, "could not finish the record");
        } else if success
            && !safety
            && let Err(e) = self.apply_retention(job).await
        {
            tracing::warn!(job = %job.id, error = %e, "retention failed; it is retried after the next run");
        }
        if let Ok(target) = self.target(job).await
            && let Ok(Ok(size)) = tokio::task::spawn_blocking(move || target.size()).await
        {
            metrics::gauge!("coffer_backup_repository_bytes", &job_labels(job)).set(size as f64);
        }
        if success && let Err(e) = self.db.complete_record(rid).await {
            tracing::error!(record = %rid, error = %e, "could not complete the record");
        }
        match &outcome {
            RunOutcome::Success { .. } => self.emit("backup.completed", &job.id, rid, None, None),
            RunOutcome::Failed { error } => {
                self.emit("backup.failed", &job.id, rid, None, Some(error))
            }
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
        safety: bool,
        cancel: Arc<AtomicBool>,
    ) -> RunOutcome {
        let prepared = async {
            let target = self.target(job).await?;
            let logins = self.logins(&sources).await?;
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
            (runner::JOB_LABEL.to_string(), job.id.clone()),
            ("record".to_string(), rid.to_string()),
        ]
        .into();
        if safety {
            labels.insert(runner::SAFETY_LABEL.to_string(), "true".to_string());
        }
        let (t, scratch, l) = (target.clone(), self.scratch_dir(), logins.clone());
        let result = tokio::task::spawn_blocking(move || {
            runner::backup(&t, &scratch, &sources, &l, labels, safety, cancel)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the backup stopped unexpectedly: {e}")));
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
            Err(error) => RunOutcome::Failed { error },
        }
    }

    /// After a successful record: drop the records the job's retention no longer keeps, then
    /// their snapshots, then the data nothing uses any more. Records go first: a record must
    /// never name a snapshot that is gone, while a snapshot without a record is only retried.
    async fn apply_retention(&self, job: &Job) -> Result<()> {
        let policy = retention_of(job);
        if policy.is_empty() {
            return Ok(());
        }
        let tz: chrono_tz::Tz = job.timezone.parse().unwrap_or(chrono_tz::UTC);
        let target = self.target(job).await?;
        let job_id = job.id.clone();
        let t = target.clone();
        let expired =
            tokio::task::spawn_blocking(move || runner::expired(&t, &job_id, &policy, &tz))
                .await
                .map_err(|e| JobsError::Repository(e.to_string()))?
                .map_err(JobsError::Repository)?;
        if expired.is_empty() {
            return Ok(());
        }
        let n = self
            .db
            .delete_records_of_snapshots(&job.id, &expired)
            .await?;
        tracing::info!(job = %job.id, records = n, snapshots = expired.len(), "retention removed old records");
        tokio::task::spawn_blocking(move || runner::forget_and_prune(&target, &expired))
            .await
            .map_err(|e| JobsError::Repository(e.to_string()))?
            .map_err(JobsError::Repository)
    }

    /// A successful record, its job, and the job's repository.
    async fn usable(&self, job_id: &str, rid: &str) -> Result<(Record, Job, runner::Target)> {
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

    /// Re-read the record's snapshot completely and recompute its archive checksum.
    pub async fn verify(&self, job_id: &str, rid: &str) -> Result<VerifyResult> {
        let (record, _, target) = self.usable(job_id, rid).await?;
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let expected = record.checksum.clone().unwrap_or_default();
        let result =
            tokio::task::spawn_blocking(move || runner::verify(&target, &snapshot, &expected))
                .await
                .map_err(|e| JobsError::Repository(e.to_string()))?;
        if !result.ok {
            self.emit("verify.failed", job_id, rid, None, result.error.as_deref());
        }
        Ok(result)
    }

    /// Stream the bytes `range` (start, length; `None`: all) of the record's canonical archive,
    /// or with `sealed` the whole archive sealed with the repository key (`coffer decrypt`):
    /// the record, and a channel of chunks that ends with an error item if reading fails
    /// part-way. Dropping the receiver stops the reading; memory stays constant.
    pub async fn download(
        &self,
        job_id: &str,
        rid: &str,
        range: Option<(u64, u64)>,
        sealed: bool,
    ) -> Result<(
        Record,
        tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    )> {
        let (record, _, target) = self.usable(job_id, rid).await?;
        if sealed && target.key.is_none() {
            return Err(JobsError::Unusable(
                "the job's repository is not encrypted: there is no key to seal the archive with"
                    .into(),
            ));
        }
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let (skip, take) = range.filter(|_| !sealed).unwrap_or((0, u64::MAX));
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter::new(tx, skip, take);
            let result = if sealed {
                let material = target.key.clone().unwrap_or_default();
                coffer_repo::sealed::Sealer::new(&mut out, material.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|mut sealer| {
                        runner::dump(&target, &snapshot, &mut sealer)?;
                        sealer.finish().map(|_| ()).map_err(|e| e.to_string())
                    })
            } else {
                runner::dump(&target, &snapshot, &mut out)
            }
            .and_then(|()| out.flush_buf().map_err(|e| e.to_string()));
            if let Err(e) = result {
                out.fail(e);
            }
        });
        Ok((record, rx))
    }

    /// Delete a record, then its snapshot and the data nothing else uses (record first, as in
    /// retention).
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
            let target = self.target(&job).await?;
            tokio::task::spawn_blocking(move || runner::forget_and_prune(&target, &[snapshot]))
                .await
                .map_err(|e| JobsError::Repository(e.to_string()))?
                .map_err(JobsError::Repository)?;
        }
        Ok(())
    }
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

/// The job's retention fields.
fn retention_of(job: &Job) -> runner::Retention {
    let r = job.retention.clone().unwrap_or_default();
    runner::Retention {
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

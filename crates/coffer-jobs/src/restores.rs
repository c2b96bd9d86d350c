//! Restores: of a record (in place after a safety record, or elsewhere) and of an uploaded
//! archive; each a task recorded in `restore_tasks` and announced when it ends.
//!
//! Everything a restore can check is checked before anything changes and before its safety
//! record is taken: the request, what it would replace (a volume of a running container, a
//! SQLite database a process holds open, a database under another name that exists), and that
//! the record or the upload holds every item. A request that fails these takes no safety
//! record and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_db::{Restored, RunOutcome};
use coffer_types::{Job, Record, RestoreRequest, RestoreTask, Source};

use crate::inplace;
use crate::kinds::{self, Restore, database, sqlite, volume};
use crate::upload::{self, NO_DATABASES_IN_UPLOADS, refuse};
use crate::{FieldError, Jobs, JobsError, Result, blocking, runner, spec};

/// How a restore task runs in the background.
struct Task {
    job: Job,
    task: RestoreTask,
    /// The safety record to take first (in place only).
    safety: Option<Record>,
    /// Volumes to make unused first, and whether to stop their containers for it.
    volumes: Vec<String>,
    stop_containers: bool,
    /// How many bytes the restore writes, when that can be told.
    total_bytes: Option<u64>,
}

impl Jobs {
    /// Restore a successful record: in place (after a `pre_restore` safety record of what is
    /// about to be overwritten), into another database, or into an alternative target
    /// directory. Answers at once with the task.
    pub async fn restore(
        self: &Arc<Self>,
        job_id: &str,
        rid: &str,
        req: RestoreRequest,
    ) -> Result<RestoreTask> {
        let (record, job, repo) = self.usable(job_id, rid).await?;
        for p in &req.paths {
            spec::absolute("paths", p)?;
        }
        let target = match &req.target {
            Some(t) => {
                let repositories = self.repository_dirs().await?;
                Some(self.places.restore_target(t, &repositories)?)
            }
            None => None,
        };
        let logins = self.logins(&job.sources).await?;
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let (logins, servers) = {
            let (repo, record, sources) = (repo.clone(), record.clone(), job.sources.clone());
            blocking(move || database::recorded(&repo, &record, &sources, logins)).await?
        };
        let mut plan = kinds::plan(
            &job.sources,
            &servers,
            &req.paths,
            &req.volumes,
            &req.databases,
        )?;
        if let Some(name) = &req.target_database {
            // That database alone: anything else would be restored in place, without the
            // safety record an in-place restore takes first.
            let alone = plan.len() == 1;
            let mut dbs = plan.iter_mut().filter_map(Restore::database_into);
            let credential_id = match (dbs.next(), &target) {
                (Some((credential_id, into)), None)
                    if alone && !name.is_empty() && !name.chars().any(char::is_control) =>
                {
                    *into = name.clone();
                    credential_id.to_string()
                }
                _ => {
                    return Err(FieldError {
                        field: "target_database",
                        message: "restoring into another database needs a non-empty name and exactly one database to restore (and nothing else), in place".into(),
                    }
                    .into());
                }
            };
            if !req.replace && database::has_database(&logins, &credential_id, name).await? {
                return Err(JobsError::Exists(format!(
                    "the database {name:?} exists: restore with \"replace\": true to replace \
                     it, or name another target_database"
                )));
            }
        }
        // The record must hold every item, and every pack their data needs.
        {
            let (repo, snapshot, plan, logins) =
                (repo.clone(), snapshot.clone(), plan.clone(), logins.clone());
            blocking(move || runner::check_restorable(&repo, &snapshot, &plan, &logins)).await?;
        }
        let in_place = target.is_none() && req.target_database.is_none();
        // In place, what is in use is refused now (or its containers stopped by the task).
        let vols = match in_place {
            true => kinds::volumes_in(&plan),
            false => vec![],
        };
        if in_place {
            sqlite::unused_in(&plan, req.force)?;
        }
        if !req.stop_containers {
            volume::make_unused(&vols, false).await?;
        }
        // The safety record is started first: a running job makes the restore a conflict
        // before anything happens.
        let safety = match in_place {
            true => Some(
                self.db
                    .start_record(job_id, coffer_db::SAFETY_TRIGGER, job.encrypted)
                    .await?,
            ),
            false => None,
        };
        // Where the data goes: in place, a directory, or another database.
        let shown = match (&target, &req.target_database) {
            (Some(t), _) => t.display().to_string(),
            (None, Some(db)) => format!("database {db}"),
            (None, None) => "/".to_string(),
        };
        let task = self
            .db
            .create_restore(job_id, rid, &shown, &req.paths)
            .await?;
        let t = task.id.clone();
        let force = req.force;
        let whole = req.paths.is_empty() && req.volumes.is_empty() && req.databases.is_empty();
        let run = Task {
            job,
            task: task.clone(),
            safety,
            volumes: vols,
            stop_containers: req.stop_containers,
            total_bytes: record.size_bytes.filter(|_| whole),
        };
        self.spawn_restore(run, move |progress| {
            runner::restore(
                &repo,
                &snapshot,
                &plan,
                &logins,
                target.as_deref(),
                runner::RestoreRun {
                    task: &t,
                    force,
                    progress,
                },
            )
        });
        Ok(task)
    }

    /// Restore every source of the job in place from an uploaded archive (as `download`
    /// produces it) at `archive`, which the restore removes when done. The archive is checked
    /// first (entries and links stay inside the target; it holds every source; its SHA-256
    /// equals `checksum` when given): nothing is written, and no safety record taken, for an
    /// archive that fails.
    pub async fn restore_upload(
        self: &Arc<Self>,
        job_id: &str,
        archive: PathBuf,
        checksum: Option<String>,
        stop_containers: bool,
        force: bool,
    ) -> Result<RestoreTask> {
        let checked = self
            .check_upload(job_id, &archive, checksum, stop_containers, force)
            .await;
        let (job, plan, vols) = match checked {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&archive);
                return Err(e);
            }
        };
        let safety = match self
            .db
            .start_record(job_id, coffer_db::SAFETY_TRIGGER, job.encrypted)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&archive);
                return Err(e.into());
            }
        };
        let task = self.db.create_restore(job_id, "upload", "/", &[]).await?;
        let t = task.id.clone();
        let run = Task {
            job,
            task: task.clone(),
            safety: Some(safety),
            volumes: vols,
            stop_containers,
            total_bytes: std::fs::metadata(&archive).ok().map(|m| m.len()),
        };
        self.spawn_restore(run, move |progress| {
            let result = upload::restore_archive(&archive, &plan, &t, force, &progress);
            let _ = std::fs::remove_file(&archive);
            result
        });
        Ok(task)
    }

    /// Everything an upload restore checks before it changes anything: the job, the archive,
    /// and what it would replace. Returns the job, the plan and the volumes it restores.
    async fn check_upload(
        &self,
        job_id: &str,
        archive: &Path,
        checksum: Option<String>,
        stop_containers: bool,
        force: bool,
    ) -> Result<(Job, Vec<Restore>, Vec<String>)> {
        let job = self.db.job(job_id).await?;
        if job.sources.iter().any(|s| s.database().is_some()) {
            return Err(refuse(NO_DATABASES_IN_UPLOADS.into()));
        }
        let plan = kinds::plan(&job.sources, &Default::default(), &[], &[], &[])?;
        let needed = kinds::needed(&plan, &Default::default());
        let a = archive.to_path_buf();
        let sha = blocking(move || coffer_repo::tarball::check(&a, &needed)).await?;
        if let Some(expected) = checksum.filter(|c| !c.eq_ignore_ascii_case(&sha)) {
            return Err(refuse(format!(
                "its SHA-256 is {sha}, not the {expected} that was given: the upload is damaged"
            )));
        }
        sqlite::unused_in(&plan, force)?;
        let vols = kinds::volumes_in(&plan);
        if !stop_containers {
            volume::make_unused(&vols, false).await?;
        }
        Ok((job, plan, vols))
    }

    /// Run a restore task: its volumes made unused (their running containers stopped when
    /// asked, else refused), the safety record (if any), then `work` on the blocking pool, and
    /// stopped containers started again; the outcome is recorded and announced, and the job's
    /// safety records past their time are removed.
    fn spawn_restore(
        self: &Arc<Self>,
        run: Task,
        work: impl FnOnce(Arc<coffer_repo::Progress>) -> Result<Restored> + Send + 'static,
    ) {
        let jobs = self.clone();
        tokio::spawn(async move {
            let Task {
                job,
                task,
                safety,
                volumes: vols,
                stop_containers,
                total_bytes,
            } = run;
            let tid = task.id.clone();
            let (stopped, not_unused) = match volume::make_unused(&vols, stop_containers).await {
                Ok(stopped) => (Some(stopped), None),
                Err(e) => (None, Some(e)),
            };
            let outcome = async {
                if let Some(e) = not_unused {
                    return Err(e);
                }
                if !vols.is_empty() {
                    let containers = stopped.as_ref().map_or(0, |s| s.len());
                    tracing::info!(restore = %tid, containers, "volumes unused");
                }
                if let Some(s) = &safety {
                    jobs.take_safety_record(&job, &tid, s).await?;
                }
                jobs.db.set_restore_phase(&tid, "restoring", None).await?;
                let reporter = jobs.report(
                    crate::progress::Work::Restore {
                        job_id: job.id.clone(),
                        record_id: task.record_id.clone(),
                        restore_id: tid.clone(),
                    },
                    total_bytes,
                );
                let counters = reporter.counters.clone();
                blocking(move || work(counters)).await
            }
            .await
            .map_err(|e| e.to_string());
            if let Some(stopped) = stopped {
                volume::start_again(stopped).await;
            }
            match &outcome {
                Ok(_) => tracing::info!(job = %job.id, restore = %tid, "restore finished"),
                Err(e) => {
                    tracing::warn!(job = %job.id, restore = %tid, error = %e, "restore failed")
                }
            }
            let error = outcome.as_ref().err().map(String::as_str);
            let name = if error.is_some() {
                "restore.failed"
            } else {
                "restore.completed"
            };
            jobs.emit(name, &job.id, &task.record_id, Some(&tid), error);
            if let Err(e) = jobs.db.finish_restore(&tid, outcome).await {
                tracing::error!(restore = %tid, error = %e, "could not finish the restore");
            }
            if safety.is_some()
                && let Err(e) = jobs.apply_retention(&job).await
            {
                tracing::warn!(job = %job.id, error = %e, "removing old safety records failed");
            }
        });
    }

    /// The safety record `s` of restore task `tid`: a backup of what the restore is about to
    /// overwrite, or nothing when none of it exists any more.
    async fn take_safety_record(&self, job: &Job, tid: &str, s: &Record) -> Result<()> {
        self.db
            .set_restore_phase(tid, "safety_snapshot", Some(&s.id))
            .await?;
        let present = self.existing(&job.sources).await;
        if present.is_empty() {
            // Nothing there to save (the data is gone, the usual reason to restore).
            let nothing = RunOutcome::Failed {
                error: "nothing to save before the restore: no source exists".into(),
            };
            return Ok(self.db.finish_record(&s.id, &nothing).await?);
        }
        match self
            .backup_record(job, present, &s.id, crate::Purpose::Safety)
            .await
        {
            RunOutcome::Failed { error } => Err(JobsError::Unusable(format!(
                "the safety snapshot failed, so nothing was overwritten: {error}"
            ))),
            RunOutcome::Success { .. } => Ok(()),
        }
    }

    pub async fn restore_task(&self, job_id: &str, tid: &str) -> Result<RestoreTask> {
        Ok(self.db.restore(job_id, tid).await?)
    }

    /// The job's sources that exist now (what a safety snapshot can save).
    async fn existing(&self, sources: &[Source]) -> Vec<Source> {
        let missing = self.missing(sources).await;
        let present = sources.iter().zip(missing).filter(|(_, m)| m.is_none());
        present.map(|(s, _)| s.clone()).collect()
    }

    pub async fn restore_tasks(&self, job_id: &str) -> Result<Vec<RestoreTask>> {
        self.db.job(job_id).await?;
        Ok(self.db.restores(job_id).await?)
    }

    /// At start-up, for each restore a stop interrupted: undo what it left half-done and
    /// remove its debris — in place, an item moved aside goes back and staging directories
    /// go (`inplace::recover`); in a target directory, its temporary files — then mark it
    /// failed. Files a restore into a directory created under their own names may be
    /// incomplete: the task's error says to restore again, which replaces them.
    pub(crate) async fn clean_up_after_crash(&self) -> Result<()> {
        for task in self.db.interrupted_restores().await? {
            let live: Vec<PathBuf> = match self.db.job(&task.job_id).await {
                Ok(job) if task.target == "/" => match task.paths.is_empty() {
                    true => job
                        .sources
                        .iter()
                        .filter_map(|s| kinds::of(s).on_disk())
                        .collect(),
                    false => task.paths.iter().map(PathBuf::from).collect(),
                },
                _ => vec![],
            };
            let (id, target) = (task.id.clone(), PathBuf::from(&task.target));
            let elsewhere = target.is_absolute() && target != Path::new("/");
            let done = blocking(move || {
                let mut done = inplace::recover(&id, &live);
                if elsewhere {
                    done.extend(coffer_repo::restore::remove_leftovers(&target));
                }
                Ok::<_, JobsError>(done)
            })
            .await?;
            for what in &done {
                tracing::warn!(restore = %task.id, "after an interrupted restore: {what}");
            }
            let mut error = "the server stopped while this restore was running".to_string();
            if elsewhere {
                error += &format!(
                    ": files under {} may be incomplete; restore into it again to complete them",
                    task.target
                );
            }
            self.db.finish_restore(&task.id, Err(error)).await?;
        }
        Ok(())
    }
}

//! Restores: of a record (in place after a safety record, or elsewhere) and of an uploaded
//! archive; each a task recorded in `restore_tasks` and announced when it ends.

use std::path::PathBuf;
use std::sync::Arc;

use coffer_db::RunOutcome;
use coffer_types::{Job, Record, RestoreRequest, RestoreTask, Source};

use crate::{FieldError, Jobs, JobsError, Result, databases, runner, spec, volumes};

impl Jobs {
    /// Restore a successful record: in place (after a `pre_restore` safety record of what is
    /// about to be overwritten) or into an alternative target. Answers at once with the task.
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
            Some(t) => Some(spec::confine("target", t, &self.root)?),
            None => None,
        };
        let logins = self.logins(&job.sources).await?;
        let snapshot = record.snapshot_id.clone().unwrap_or_default();
        let (logins, servers) = {
            let (repo, record, sources) = (repo.clone(), record.clone(), job.sources.clone());
            tokio::task::spawn_blocking(move || {
                databases::recorded(&repo, &record, &sources, logins)
            })
            .await
            .map_err(|e| JobsError::Repository(e.to_string()))?
            .map_err(JobsError::Repository)?
        };
        let mut plan = runner::plan_restore(
            &job.sources,
            &servers,
            &req.paths,
            &req.volumes,
            &req.databases,
        )
        .map_err(|message| FieldError {
            field: if !req.databases.is_empty() {
                "databases"
            } else if !req.volumes.is_empty() {
                "volumes"
            } else {
                "paths"
            },
            message,
        })?;
        if let Some(name) = &req.target_database {
            let mut dbs = plan
                .iter_mut()
                .filter(|r| matches!(r, runner::Restore::Database { .. }));
            match (dbs.next(), dbs.next(), &target) {
                (Some(runner::Restore::Database { into, .. }), None, None)
                    if !name.is_empty() && !name.contains('\0') =>
                {
                    *into = name.clone();
                }
                _ => {
                    return Err(FieldError {
                        field: "target_database",
                        message: "restoring into another database needs a non-empty name and exactly one database to restore, in place".into(),
                    }
                    .into());
                }
            }
        }
        // In place, volumes that running containers use are refused now, or their containers
        // stopped by the task.
        let vols = match target {
            None => runner::volumes_in(&plan),
            Some(_) => vec![],
        };
        if !req.stop_containers {
            volumes::make_unused(&vols, false).await?;
        }
        // The safety record is started first: a running job makes the restore a conflict
        // before anything happens.
        let safety = match target {
            None => Some(
                self.db
                    .start_record(job_id, "pre_restore", job.encrypted)
                    .await?,
            ),
            Some(_) => None,
        };
        let shown = target
            .as_ref()
            .map_or("/".to_string(), |t| t.display().to_string());
        let task = self
            .db
            .create_restore(job_id, rid, &shown, &req.paths)
            .await?;
        let t = task.id.clone();
        let stop = (vols, req.stop_containers);
        self.spawn_restore(job, task.clone(), safety, stop, move || {
            runner::restore(&repo, &snapshot, &plan, &logins, target.as_deref(), &t)
        });
        Ok(task)
    }

    /// Restore every source of the job in place from an uploaded archive (as `download`
    /// produces it) at `archive`, which the restore removes when done. The archive is checked
    /// first (entries and links stay inside the target; its SHA-256 equals `checksum` when
    /// given): nothing is written for an archive that fails.
    pub async fn restore_upload(
        self: &Arc<Self>,
        job_id: &str,
        archive: PathBuf,
        checksum: Option<String>,
        stop_containers: bool,
    ) -> Result<RestoreTask> {
        let job = self.db.job(job_id).await?;
        let refuse = |message: String| {
            let _ = std::fs::remove_file(&archive);
            JobsError::Field(FieldError {
                field: "archive",
                message,
            })
        };
        let a = archive.clone();
        let sha = tokio::task::spawn_blocking(move || runner::check_archive(&a))
            .await
            .map_err(|e| JobsError::Repository(e.to_string()))?
            .map_err(refuse)?;
        if let Some(expected) = checksum.filter(|c| !c.eq_ignore_ascii_case(&sha)) {
            return Err(refuse(format!(
                "its SHA-256 is {sha}, not the {expected} that was given: the upload is damaged"
            )));
        }
        if job.sources.iter().any(|s| s.database().is_some()) {
            return Err(refuse(runner::NO_DATABASES_IN_UPLOADS.into()));
        }
        let plan = runner::plan_restore(&job.sources, &Default::default(), &[], &[], &[])
            .map_err(refuse)?;
        let vols = runner::volumes_in(&plan);
        if !stop_containers && let Err(e) = volumes::make_unused(&vols, false).await {
            let _ = std::fs::remove_file(&archive);
            return Err(e);
        }
        let safety = match self
            .db
            .start_record(job_id, "pre_restore", job.encrypted)
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
        self.spawn_restore(
            job,
            task.clone(),
            Some(safety),
            (vols, stop_containers),
            move || {
                let result = runner::restore_archive(&archive, &plan, &t);
                let _ = std::fs::remove_file(&archive);
                result
            },
        );
        Ok(task)
    }

    /// Run a restore task: the volumes in `in_use.0` made unused (their running containers
    /// stopped when `in_use.1`, else refused), the safety record (if any), then `work` on the
    /// blocking pool, and stopped containers started again; the outcome is recorded and
    /// announced.
    fn spawn_restore(
        self: &Arc<Self>,
        job: Job,
        task: RestoreTask,
        safety: Option<Record>,
        in_use: (Vec<String>, bool),
        work: impl FnOnce() -> std::result::Result<(u64, u64), String> + Send + 'static,
    ) {
        let jobs = self.clone();
        let tid = task.id.clone();
        tokio::spawn(async move {
            let stopped = volumes::make_unused(&in_use.0, in_use.1).await;
            let outcome = async {
                let stopped = stopped.as_ref().map_err(|e| e.to_string())?;
                if !in_use.0.is_empty() {
                    tracing::info!(restore = %tid, containers = stopped.len(), "volumes unused");
                }
                if let Some(s) = &safety {
                    jobs.db
                        .set_restore_phase(&tid, "safety_snapshot", Some(&s.id))
                        .await
                        .map_err(|e| e.to_string())?;
                    let present = jobs.existing(&job.sources).await;
                    if present.is_empty() {
                        // Nothing there to save (the data is gone, the usual reason to restore).
                        let nothing = RunOutcome::Failed {
                            error: "nothing to save before the restore: no source exists".into(),
                        };
                        jobs.db
                            .finish_record(&s.id, &nothing)
                            .await
                            .map_err(|e| e.to_string())?;
                    } else if let RunOutcome::Failed { error } =
                        jobs.backup_record(&job, present, &s.id, true).await
                    {
                        return Err(format!(
                            "the safety snapshot failed, so nothing was overwritten: {error}"
                        ));
                    }
                }
                jobs.db
                    .set_restore_phase(&tid, "restoring", None)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(work)
                    .await
                    .map_err(|e| e.to_string())?
            }
            .await;
            if let Ok(stopped) = stopped {
                volumes::start_again(stopped).await;
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
        });
    }

    pub async fn restore_task(&self, job_id: &str, tid: &str) -> Result<RestoreTask> {
        Ok(self.db.restore(job_id, tid).await?)
    }

    /// The job's sources that exist now (what a safety snapshot can save).
    async fn existing(&self, sources: &[Source]) -> Vec<Source> {
        let logins = self.logins(sources).await.unwrap_or_default();
        let mut present = vec![];
        for s in sources {
            let here = match s {
                Source::Path { path, .. } | Source::Sqlite { path } => {
                    std::fs::symlink_metadata(path).is_ok()
                }
                Source::Volume { name } => volumes::exists(name).await,
                Source::Postgres { .. } | Source::Mysql { .. } => {
                    self.database_exists(s, &logins).await
                }
            };
            if here {
                present.push(s.clone());
            }
        }
        present
    }

    pub async fn restore_tasks(&self, job_id: &str) -> Result<Vec<RestoreTask>> {
        self.db.job(job_id).await?;
        Ok(self.db.restores(job_id).await?)
    }
}

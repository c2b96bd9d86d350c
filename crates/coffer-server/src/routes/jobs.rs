//! Backup jobs and their records: CRUD, run now, verify, download, delete.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use coffer_db::{RecordQuery, TriggerFilter};
use coffer_types::{
    ErrorBody, Job, JobInput, JobUpdate, Record, RecordStatus, RecordTree, RestoreRequest,
    RestoreTask, SchedulePreview, VerifyResult,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::upload;
use crate::AppState;
use crate::auth::{AuditedRead, Auth, Operator, Viewer};
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson, Path, Query};

#[utoipa::path(get, path = "/api/backup-jobs", tag = "jobs", security(("bearer" = ["viewer"])),
    responses((status = 200, body = [Job])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(state.jobs.list().await?))
}

#[utoipa::path(post, path = "/api/backup-jobs", tag = "jobs", security(("bearer" = ["operator"])), request_body = JobInput,
    responses((status = 201, body = Job), (status = 400, body = ErrorBody, description = "Names the invalid field")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Operator>,
    Json(input): Json<JobInput>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let job = state.jobs.create(input, caller.role).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

#[utoipa::path(get, path = "/api/backup-jobs/{id}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.jobs.get(&id).await?))
}

/// Replace the fields given.
#[utoipa::path(put, path = "/api/backup-jobs/{id}", tag = "jobs", security(("bearer" = ["operator"])), request_body = JobUpdate,
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Operator>,
    Path(id): Path<String>,
    Json(u): Json<JobUpdate>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.jobs.update(&id, u, caller.role).await?))
}

/// Change the fields given (as `PUT`).
#[utoipa::path(patch, path = "/api/backup-jobs/{id}", tag = "jobs", security(("bearer" = ["operator"])), request_body = JobUpdate,
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch(
    state: State<Arc<AppState>>,
    auth: Auth<Operator>,
    id: Path<String>,
    body: Json<JobUpdate>,
) -> Result<Json<Job>, ApiError> {
    update(state, auth, id, body).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Keep the job's data in its repository (the default): a new job can take it over with
    /// `"adopt": "<this job's id>"`. `false` removes the job's snapshots, and its own
    /// repository once it holds nothing else.
    keep_data: Option<bool>,
}

/// Delete a job and its records; its data stays unless `keep_data=false`.
#[utoipa::path(delete, path = "/api/backup-jobs/{id}", tag = "jobs", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id"), DeleteParams),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "A run is in progress")))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
    Query(p): Query<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    state.jobs.delete(&id, p.keep_data.unwrap_or(true)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewParams {
    /// A five-field cron expression or an alias such as `@daily`.
    schedule: String,
    /// IANA time zone (default `UTC`).
    timezone: Option<String>,
}

/// The next five times a schedule fires, read in its time zone: what a job's schedule means,
/// before the job is saved. 400 naming `schedule` or `timezone` when it cannot be used.
#[utoipa::path(get, path = "/api/schedule-preview", tag = "jobs", security(("bearer" = ["viewer"])),
    params(PreviewParams),
    responses((status = 200, body = SchedulePreview), (status = 400, body = ErrorBody)))]
pub async fn schedule_preview(
    _: Auth<Viewer>,
    Query(p): Query<PreviewParams>,
) -> Result<Json<SchedulePreview>, ApiError> {
    let preview = coffer_jobs::spec::preview(&p.schedule, p.timezone.as_deref(), Utc::now(), 5)?;
    Ok(Json(preview))
}

/// Start a run now: 202 with the new record; 409 while the job is running.
#[utoipa::path(post, path = "/api/backup-jobs/{id}/run", tag = "jobs", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 202, body = Record), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn run(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.jobs.run(&id, "manual").await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordParams {
    /// Only this job's records (`GET /api/records`; the other route names its job in the path).
    job_id: Option<String>,
    /// `running`, `success` or `failed`.
    #[param(value_type = Option<String>)]
    status: Option<RecordStatus>,
    /// Which records by why they were made: `backups` (the default: every record but the
    /// safety records taken before restores), `pre_restore` (only those), `pitr` (the
    /// results of point-in-time recoveries), `schedule`, `manual`, `adopted`, or `all`.
    trigger: Option<String>,
    /// Records started at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Records started at or before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// 1–200, default 50.
    limit: Option<u32>,
}

/// The job's records, newest first.
#[utoipa::path(get, path = "/api/backup-jobs/{id}/records", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), RecordParams),
    responses((status = 200, body = [Record]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn records(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path(id): Path<String>,
    Query(p): Query<RecordParams>,
) -> Result<Json<Vec<Record>>, ApiError> {
    if p.job_id.is_some() {
        return Err(ApiError::Invalid {
            field: "job_id".into(),
            message: "this route names its job in the path".into(),
        });
    }
    Ok(Json(state.jobs.records(&id, &p.query()?).await?))
}

impl RecordParams {
    /// The query these parameters ask for.
    fn query(self) -> Result<RecordQuery, ApiError> {
        let limit = super::limit(self.limit, 50, 200)?;
        let trigger = match self.trigger.as_deref() {
            None | Some("backups") => TriggerFilter::Backups,
            Some("all") => TriggerFilter::Any,
            Some(t @ ("schedule" | "manual" | "adopted" | "pre_restore" | "pitr")) => {
                TriggerFilter::Is(t.to_string())
            }
            Some(other) => {
                return Err(ApiError::Invalid {
                    field: "trigger".into(),
                    message: format!(
                        "{other:?} is not one of backups, pre_restore, pitr, schedule, manual, adopted, all"
                    ),
                });
            }
        };
        Ok(RecordQuery {
            status: self.status,
            trigger,
            since: self.since,
            until: self.until,
            limit,
        })
    }
}

/// Records of every job (or of `job_id`), newest first: the history across jobs.
#[utoipa::path(get, path = "/api/records", tag = "jobs", security(("bearer" = ["viewer"])),
    params(RecordParams),
    responses((status = 200, body = [Record]), (status = 400, body = ErrorBody)))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Query(p): Query<RecordParams>,
) -> Result<Json<Vec<Record>>, ApiError> {
    let job = p.job_id.clone();
    Ok(Json(state.jobs.history(job.as_deref(), &p.query()?).await?))
}

#[utoipa::path(get, path = "/api/backup-jobs/{id}/records/{rid}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), ("rid" = String, Path, description = "Record id")),
    responses((status = 200, body = Record), (status = 404, body = ErrorBody)))]
pub async fn record(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path((id, rid)): Path<(String, String)>,
) -> Result<Json<Record>, ApiError> {
    Ok(Json(state.jobs.record(&id, &rid).await?))
}

/// Delete a record and its snapshot; the data no other record uses goes with the next prune.
#[utoipa::path(delete, path = "/api/backup-jobs/{id}/records/{rid}", tag = "jobs", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id"), ("rid" = String, Path, description = "Record id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_record(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path((id, rid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.jobs.delete_record(&id, &rid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TreeParams {
    /// The folder to list, absolute (default `/`, the record's root).
    path: Option<String>,
}

/// What a folder of the record holds (names, types, sizes, modes, times), for picking what to
/// restore; read from the repository one folder at a time. 400 naming `path` when the record
/// has no such folder.
#[utoipa::path(get, path = "/api/backup-jobs/{id}/records/{rid}/tree", tag = "jobs", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id"), ("rid" = String, Path, description = "Record id"), TreeParams),
    responses((status = 200, body = RecordTree), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn tree(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path((id, rid)): Path<(String, String)>,
    Query(p): Query<TreeParams>,
) -> Result<Json<RecordTree>, ApiError> {
    let path = p.path.unwrap_or_else(|| "/".into());
    Ok(Json(state.jobs.tree(&id, &rid, &path).await?))
}

/// Re-read everything the record references and recompute the archive checksum.
#[utoipa::path(post, path = "/api/backup-jobs/{id}/records/{rid}/verify", tag = "jobs", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id"), ("rid" = String, Path, description = "Record id")),
    responses((status = 200, body = VerifyResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path((id, rid)): Path<(String, String)>,
) -> Result<Json<VerifyResult>, ApiError> {
    Ok(Json(state.jobs.verify(&id, &rid).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DownloadParams {
    /// Seal the archive with the repository key (see docs/repository-format.md, "Sealed
    /// archives"); `coffer decrypt --key-file K` opens it. Ranges are not served sealed.
    encrypted: Option<bool>,
}

/// The record's canonical tar archive, streamed; its SHA-256 is the record's checksum (also
/// for `?encrypted=true`, of the archive inside).
#[utoipa::path(get, path = "/api/backup-jobs/{id}/records/{rid}/download", tag = "jobs", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id"), ("rid" = String, Path, description = "Record id"), DownloadParams),
    responses((status = 200, description = "The archive (application/x-tar), with X-Checksum-Sha256", content_type = "application/x-tar"),
        (status = 206, description = "The bytes a `Range: bytes=...` header asked for", content_type = "application/x-tar"),
        (status = 416, body = ErrorBody, description = "The range lies outside the archive"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn download(
    State(state): State<Arc<AppState>>,
    _: AuditedRead,
    _: Auth<Operator>,
    Path((id, rid)): Path<(String, String)>,
    Query(q): Query<DownloadParams>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let sealed = q.encrypted.unwrap_or(false);
    let download = state.jobs.download(&id, &rid, sealed).await?;
    let size = download.record.size_bytes.unwrap_or_default();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if !sealed => byte_range(r, size)?,
        _ => None,
    };
    let record = download.record.clone();
    let stream = tokio_stream::wrappers::ReceiverStream::new(download.stream(range));
    let filename = format!(
        "coffer-{}-{}.tar{}",
        record.started_at.format("%Y%m%dT%H%M%SZ"),
        &record.id[..8.min(record.id.len())],
        if sealed { ".sealed" } else { "" }
    );
    let (status, length) = match range {
        Some((_, len)) => (StatusCode::PARTIAL_CONTENT, len),
        None if sealed => (StatusCode::OK, coffer_jobs::sealed_len(size)),
        None => (StatusCode::OK, size),
    };
    let mut res = (
        status,
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                record.checksum.unwrap_or_default(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    if let Some((start, len)) = range {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        res.headers_mut().insert(
            header::CONTENT_RANGE,
            value.parse().expect("a valid header value"),
        );
    }
    Ok(res)
}

/// One `bytes=` range of a body of `size` bytes, as (start, length). Several ranges, or a
/// header this does not understand, are ignored (the whole body is sent, as HTTP allows); a
/// range that lies outside the body is 416.
fn byte_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let unsatisfiable = || ApiError::RangeNotSatisfiable(format!("the archive has {size} bytes"));
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
        (Ok(s), Err(_)) if b.is_empty() => (s, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end - start + 1)))
}

/// Restore the record: 202 with a task to poll. In place (the default) is destructive: a
/// `pre_restore` record of the current data is taken first, and each source is then replaced
/// by its recorded state. With `target`, the data goes to that directory instead.
#[utoipa::path(post, path = "/api/backup-jobs/{id}/records/{rid}/restore", tag = "jobs", security(("bearer" = ["operator"])),
    request_body(content = Option<RestoreRequest>, description = "Optional: paths and an alternative target"),
    params(("id" = String, Path, description = "Job id"), ("rid" = String, Path, description = "Record id")),
    responses((status = 202, body = RestoreTask), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The job is running, or the record has no data")))]
pub async fn restore(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path((id, rid)): Path<(String, String)>,
    OptionalJson(req): OptionalJson<RestoreRequest>,
) -> Result<(StatusCode, Json<RestoreTask>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.jobs.restore(&id, &rid, req).await?),
    ))
}

#[utoipa::path(get, path = "/api/backup-jobs/{id}/restores", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = [RestoreTask]), (status = 404, body = ErrorBody)))]
pub async fn restores(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RestoreTask>>, ApiError> {
    Ok(Json(state.jobs.restore_tasks(&id).await?))
}

#[utoipa::path(get, path = "/api/backup-jobs/{id}/restores/{tid}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), ("tid" = String, Path, description = "Restore id")),
    responses((status = 200, body = RestoreTask), (status = 404, body = ErrorBody)))]
pub async fn restore_task(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path((id, tid)): Path<(String, String)>,
) -> Result<Json<RestoreTask>, ApiError> {
    Ok(Json(state.jobs.restore_task(&id, &tid).await?))
}

/// Restore every source of the job in place from an archive as `download` produces it: the
/// raw request body (`Content-Type: application/x-tar`), or a `multipart/form-data` form with
/// the archive in the field `archive` or `file` (and optionally its SHA-256 in the field `checksum`).
/// The upload is streamed to disk (at most the configured size), then checked — entries and
/// links must stay inside the target, and with `X-Checksum-Sha256` (or `checksum`) its SHA-256
/// must match — before a `pre_restore` record is taken and anything is overwritten. 202 with
/// the task to poll.
#[utoipa::path(post, path = "/api/backup-jobs/{id}/restore-upload", tag = "jobs", security(("bearer" = ["operator"])),
    request_body(content(
        (Vec<u8> = "application/x-tar"),
        (Vec<u8> = "multipart/form-data")
    ), description = "The archive, raw or as the form field `archive`"),
    params(("id" = String, Path, description = "Job id"), UploadParams),
    responses((status = 202, body = RestoreTask), (status = 400, body = ErrorBody, description = "Not an acceptable archive"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn restore_upload(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
    Query(params): Query<UploadParams>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<RestoreTask>), ApiError> {
    state.jobs.get(&id).await?;
    let path = state.scratch_file("upload", "tar").await?;
    let checksum = upload::receive(&state, &headers, body, &path).await?;
    let task = state
        .jobs
        .restore_upload(
            &id,
            path,
            checksum,
            params.stop_containers.unwrap_or(false),
            params.force.unwrap_or(false),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Stop running containers that use the job's volumes, and start them again afterwards
    /// (otherwise such a restore is refused with 409).
    stop_containers: Option<bool>,
    /// Replace SQLite databases even while processes hold them open (otherwise refused with
    /// 409, naming the processes).
    force: Option<bool>,
}

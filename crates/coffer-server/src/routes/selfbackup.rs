//! Coffer's own data (admin): snapshots of its metadata database, the server's own scheduled
//! tasks, and the configuration exported and imported.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_types::{
    Done, ErrorBody, Export, ImportReport, MetaBackup, MetaBackupName, MetaBackupTaken,
    MetaBackups, RunServerTask, ServerTaskRun, ServerTasks, SystemBackupRequest, SystemRestored,
};

use coffer_system::{PRE_RESTORE, SNAPSHOT, SYSTEM};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Admin, AuditSubject, AuditedRead, Auth};
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson, Path, Query};
use crate::selfbackup::{self, AUTO_BACKUP_TASK};
use crate::transfer;

use super::upload;

/// The snapshots kept in `<data_dir>/system-backups/`, newest first.
#[utoipa::path(get, path = "/api/backup", tag = "system", security(("bearer" = ["admin"])),
    responses((status = 200, body = MetaBackups)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<MetaBackups>, ApiError> {
    let s = state.clone();
    let backups = tokio::task::spawn_blocking(move || s.backups.list(&[SNAPSHOT]))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(MetaBackups {
        backups: backups.into_iter().map(Into::into).collect(),
        dir: state.backups.dir().display().to_string(),
    }))
}

/// A consistent snapshot of the metadata database, taken while the server keeps serving,
/// checked, and kept (with the newest `general.backup_retention_count`, 10 by default). At most
/// 10 per hour per admin.
#[utoipa::path(post, path = "/api/backup", tag = "system", security(("bearer" = ["admin"])),
    responses((status = 200, body = MetaBackupTaken),
        (status = 429, body = ErrorBody, description = "More than 10 in an hour by this admin; see Retry-After")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    subject: AuditSubject,
    Auth(caller, _): Auth<Admin>,
) -> Result<Json<MetaBackupTaken>, ApiError> {
    state
        .backup_limiter
        .attempt(caller.user.id.clone())
        .map_err(|retry_after_secs| ApiError::TooManyRequests { retry_after_secs })?;
    let taken = selfbackup::take(&state).await?;
    subject.name(&taken.name);
    Ok(Json(MetaBackupTaken {
        success: true,
        backup: taken.into(),
    }))
}

/// Delete a snapshot by name: it ends in `.db` and contains no `/` or `..` (400), and exists
/// (404).
#[utoipa::path(delete, path = "/api/backup", tag = "system", security(("bearer" = ["admin"])),
    request_body = MetaBackupName,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    subject: AuditSubject,
    _: Auth<Admin>,
    Json(req): Json<MetaBackupName>,
) -> Result<Json<Done>, ApiError> {
    subject.name(&req.name);
    let s = state.clone();
    tokio::task::spawn_blocking(move || s.backups.delete(&req.name, SNAPSHOT.suffix))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(Done { success: true }))
}

/// The server's own scheduled tasks: `auto_backup`, a snapshot of the metadata database every
/// day at 03:00 UTC while the setting `general.auto_backup` is `"true"`.
#[utoipa::path(get, path = "/api/scheduler", tag = "system", security(("bearer" = ["admin"])),
    responses((status = 200, body = ServerTasks)))]
pub async fn tasks(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<ServerTasks>, ApiError> {
    Ok(Json(ServerTasks {
        tasks: vec![selfbackup::task(&state).await?],
    }))
}

/// Run one of the server's own tasks now: `{"task_id": "auto_backup"}`.
#[utoipa::path(post, path = "/api/scheduler", tag = "system", security(("bearer" = ["admin"])),
    request_body = RunServerTask,
    responses((status = 200, body = ServerTaskRun), (status = 404, body = ErrorBody, description = "No such task")))]
pub async fn run(
    State(state): State<Arc<AppState>>,
    subject: AuditSubject,
    _: Auth<Admin>,
    Json(req): Json<RunServerTask>,
) -> Result<Json<ServerTaskRun>, ApiError> {
    if req.task_id != AUTO_BACKUP_TASK {
        return Err(ApiError::NotFound(format!(
            "there is no task {:?}: the server's tasks are {AUTO_BACKUP_TASK}",
            req.task_id
        )));
    }
    let (success, message) = match selfbackup::run_task(&state).await {
        Ok(taken) => {
            subject.name(&taken.name);
            (
                true,
                format!("backed up the metadata database as {}", taken.name),
            )
        }
        Err(e) => (false, e.to_string()),
    };
    Ok(Json(ServerTaskRun {
        success,
        task_id: req.task_id,
        message,
    }))
}

/// The configuration as one document, without a secret: users (without passwords),
/// repositories and credentials (without their secrets), jobs, settings (without the
/// repository key).
#[utoipa::path(get, path = "/api/export", tag = "system", security(("bearer" = ["admin"])),
    responses((status = 200, body = Export)))]
pub async fn export(
    State(state): State<Arc<AppState>>,
    _: AuditedRead,
    _: Auth<Admin>,
) -> Result<Json<Export>, ApiError> {
    Ok(Json(transfer::export(&state).await?))
}

/// Merge an export into this server: what exists (by id or name) is skipped, the rest is
/// created with the usual checks. The answer lists what was added and what was skipped, and
/// why (users get no password, repositories and credentials no secret: set them again).
#[utoipa::path(post, path = "/api/import", tag = "system", security(("bearer" = ["admin"])),
    request_body = Export,
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody, description = "Not a Coffer export")))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Json(doc): Json<Export>,
) -> Result<Json<ImportReport>, ApiError> {
    Ok(Json(transfer::import(&state, doc).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SystemBackupParams {
    /// Also seal the server key and the token signing key into it, under the `passphrase` of
    /// the body: what a new machine needs to open the stored secrets.
    include_secrets: Option<bool>,
}

/// A system backup: the whole metadata database as one `.zip` (docs/system-backup.md), kept
/// in `<data_dir>/system-backups/`; with `include_secrets=true` and a passphrase, the secrets
/// sealed under it. When the setting `system.offsite_repository` names a repository, a copy
/// (its secrets sealed under the server's system passphrase) is also stored there: `offsite`
/// in the answer.
#[utoipa::path(post, path = "/api/system/backups", tag = "system", security(("bearer" = ["admin"])),
    params(SystemBackupParams), request_body = SystemBackupRequest,
    responses((status = 201, body = MetaBackup), (status = 400, body = ErrorBody, description = "Names the invalid field")))]
pub async fn create_system(
    State(state): State<Arc<AppState>>,
    subject: AuditSubject,
    _: Auth<Admin>,
    Query(params): Query<SystemBackupParams>,
    OptionalJson(req): OptionalJson<SystemBackupRequest>,
) -> Result<(StatusCode, Json<MetaBackup>), ApiError> {
    let invalid = |message: &str| ApiError::Invalid {
        field: "passphrase".into(),
        message: message.into(),
    };
    let passphrase = match (params.include_secrets.unwrap_or(false), req.passphrase) {
        (true, Some(p)) => Some(coffer_system::Passphrase::new(p).map_err(|e| {
            invalid(&format!(
                "include_secrets needs a passphrase to seal the secrets with: {e}"
            ))
        })?),
        (true, None) => {
            return Err(invalid(
                "include_secrets needs a passphrase to seal the secrets with",
            ));
        }
        (false, Some(_)) => {
            return Err(invalid(
                "a passphrase seals secrets: ask for them with include_secrets=true",
            ));
        }
        (false, None) => None,
    };
    let made = selfbackup::system_backup(&state, SYSTEM, passphrase.as_ref()).await?;
    subject.name(&made.name);
    let mut answer: MetaBackup = made.into();
    answer.offsite = selfbackup::offsite_copy(&state).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The system backups kept on the server (`pre_restore_…` ones included), newest first.
#[utoipa::path(get, path = "/api/system/backups", tag = "system", security(("bearer" = ["admin"])),
    responses((status = 200, body = [MetaBackup])))]
pub async fn list_system(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<Vec<MetaBackup>>, ApiError> {
    let s = state.clone();
    let all = tokio::task::spawn_blocking(move || s.backups.list(&[SYSTEM, PRE_RESTORE]))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

/// Download a system backup, with its SHA-256 in `X-Checksum-Sha256`.
#[utoipa::path(get, path = "/api/system/backups/{name}", tag = "system", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "System backup file name")),
    responses((status = 200, description = "The system backup (application/zip)", content_type = "application/zip"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn download_system(
    State(state): State<Arc<AppState>>,
    _: AuditedRead,
    _: Auth<Admin>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let path = state.backups.path(&name, SYSTEM.suffix)?;
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::io)?;
    let checksum = hex::encode(Sha256::digest(&bytes));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                checksum,
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Delete a system backup kept on the server.
#[utoipa::path(delete, path = "/api/system/backups/{name}", tag = "system", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "System backup file name")),
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_system(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiError> {
    state.backups.delete(&name, SYSTEM.suffix)?;
    Ok(Json(Done { success: true }))
}

/// Restore a system backup kept on the server: a full replacement of the metadata database,
/// checked whole first, after a `pre_restore_…` system backup of what it replaces; 409 while
/// jobs run or when it belongs to another server key.
#[utoipa::path(post, path = "/api/system/restore/{name}", tag = "system", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "System backup file name")),
    responses((status = 200, body = SystemRestored), (status = 400, body = ErrorBody, description = "Not a usable system backup"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn restore_system(
    State(state): State<Arc<AppState>>,
    subject: AuditSubject,
    _: Auth<Admin>,
    Path(name): Path<String>,
) -> Result<Json<SystemRestored>, ApiError> {
    let path = state.backups.path(&name, SYSTEM.suffix)?;
    subject.name(&name);
    Ok(Json(selfbackup::system_restore(&state, path).await?))
}

/// Restore an uploaded system backup (the raw body, or the form field `file`), as
/// `POST /api/system/restore/{name}` does; with `X-Checksum-Sha256` its SHA-256 must match.
#[utoipa::path(post, path = "/api/system/restore", tag = "system", security(("bearer" = ["admin"])),
    request_body(content(
        (Vec<u8> = "application/zip"),
        (Vec<u8> = "multipart/form-data")
    ), description = "The system backup, raw or as the form field `file`"),
    responses((status = 200, body = SystemRestored), (status = 400, body = ErrorBody, description = "Not a usable system backup"),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn restore_system_upload(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<SystemRestored>, ApiError> {
    let path = state.scratch_file("system-upload", "zip").await?;
    let checksum = upload::receive(&state, &headers, body, &path).await?;
    let restored = async {
        if let Some(want) = checksum {
            let bytes = tokio::fs::read(&path).await.map_err(ApiError::io)?;
            if !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(want.trim()) {
                return Err(ApiError::BadRequest(
                    "the upload does not match its X-Checksum-Sha256: it was damaged on the way"
                        .into(),
                ));
            }
        }
        selfbackup::system_restore(&state, path.clone()).await
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(Json(restored?))
}

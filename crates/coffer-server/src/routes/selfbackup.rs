//! Coffer's own data (admin): snapshots of its metadata database, the server's own scheduled
//! tasks, and the configuration exported and imported.

use std::sync::Arc;

use axum::extract::State;
use coffer_types::{
    Done, ErrorBody, Export, ImportReport, MetaBackupName, MetaBackupTaken, MetaBackups,
    RunServerTask, ServerTaskRun, ServerTasks,
};

use crate::AppState;
use crate::auth::{Admin, AuditSubject, AuditedRead, Auth};
use crate::error::ApiError;
use crate::extract::Json;
use crate::selfbackup::{self, AUTO_BACKUP_TASK};
use crate::transfer;

/// The snapshots kept in `<data_dir>/system-backups/`, newest first.
#[utoipa::path(get, path = "/api/backup", tag = "system", security(("bearer" = ["admin"])),
    responses((status = 200, body = MetaBackups)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<MetaBackups>, ApiError> {
    let s = state.clone();
    let backups = tokio::task::spawn_blocking(move || s.snapshots.list())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(MetaBackups {
        backups: backups.into_iter().map(Into::into).collect(),
        dir: state.snapshots.dir().display().to_string(),
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
    tokio::task::spawn_blocking(move || s.snapshots.delete(&req.name))
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

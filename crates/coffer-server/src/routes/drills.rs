//! Restore drills of a job: its newest backup restored into a throwaway place and compared
//! with what was backed up (one at a time per job), and their history.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use coffer_types::{Drill, ErrorBody};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Auth, Operator, Viewer};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Drill the job's newest successful backup now: 202 with the drill to poll. It restores the
/// record with the restore code every restore uses — files, trees and volumes into a scratch
/// directory, databases into scratch databases of their servers — times it, and compares it
/// with what was backed up (each entry's type, size, permissions, link target and bytes; a
/// database's rows per table); the job's sources are not touched. 409 while another drill of
/// the job runs; 400 when the job has no successful backup.
#[utoipa::path(post, path = "/api/backup-jobs/{id}/drills", tag = "drills", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 202, body = Drill), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Another drill of this job is running")))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Drill>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(state.jobs.drill(&id).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DrillParams {
    /// 1–200, default 50.
    limit: Option<u32>,
}

/// The job's drills, newest first, each with its checks.
#[utoipa::path(get, path = "/api/backup-jobs/{id}/drills", tag = "drills", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), DrillParams),
    responses((status = 200, body = [Drill]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path(id): Path<String>,
    Query(p): Query<DrillParams>,
) -> Result<Json<Vec<Drill>>, ApiError> {
    let limit = super::limit(p.limit, 50, 200)?;
    Ok(Json(state.jobs.drills(&id, limit).await?))
}

#[utoipa::path(get, path = "/api/backup-jobs/{id}/drills/{drill_id}", tag = "drills", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), ("drill_id" = String, Path, description = "Drill id")),
    responses((status = 200, body = Drill), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Path((id, drill_id)): Path<(String, String)>,
) -> Result<Json<Drill>, ApiError> {
    Ok(Json(state.jobs.drill_of(&id, &drill_id).await?))
}

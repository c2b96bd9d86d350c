//! Point-in-time recovery of a MySQL/MariaDB server, under its credential: what the binlog
//! archive covers, recoveries to a second (one at a time per server), and their history.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use coffer_types::{ErrorBody, PitrCoverage, PitrRequest, PitrRun, PitrStatus};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Auth, Operator};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// What the archive of the credential's binary log covers: the oldest and latest archived
/// events, how many transactions, the binlog files missing, whether archiving runs (`pitr` on
/// the credential) and up to when it is known complete, why it stands still when it does, and
/// the full backups recovery can start from.
#[utoipa::path(get, path = "/api/credentials/{id}/pitr/coverage", tag = "pitr", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = PitrCoverage), (status = 404, body = ErrorBody)))]
pub async fn coverage(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
) -> Result<Json<PitrCoverage>, ApiError> {
    Ok(Json(state.jobs.pitr_coverage(&id).await?))
}

/// Recover the server's databases (or some tables) as of `target_time`: 202 with the recovery
/// to poll. It starts from the newest full backup that finished by then, replays the archived
/// binary log up to the end of that second in a private scratch server, and stores the result
/// as a new record (trigger `pitr`) of that backup's job, to verify, download or restore like
/// any record. 400 when the time cannot be reached (`pitr_in_future`, `pitr_no_baseline`,
/// `pitr_outside_coverage`, `pitr_gap`), 409 while another recovery of the server runs.
#[utoipa::path(post, path = "/api/credentials/{id}/pitr", tag = "pitr", security(("bearer" = ["operator"])),
    request_body = PitrRequest,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 202, body = PitrRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Another recovery of this server is running")))]
pub async fn recover(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
    Json(req): Json<PitrRequest>,
) -> Result<(StatusCode, Json<PitrRun>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.jobs.recover(&id, req).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// `running`, `completed` or `failed`.
    #[param(value_type = Option<String>)]
    status: Option<PitrStatus>,
    /// 1–200, default 50.
    limit: Option<u32>,
}

/// The server's recoveries, newest first.
#[utoipa::path(get, path = "/api/credentials/{id}/pitr", tag = "pitr", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Credential id"), RunParams),
    responses((status = 200, body = [PitrRun]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn runs(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path(id): Path<String>,
    Query(p): Query<RunParams>,
) -> Result<Json<Vec<PitrRun>>, ApiError> {
    let limit = super::limit(p.limit, 50, 200)?;
    Ok(Json(state.jobs.pitr_runs(&id, p.status, limit).await?))
}

#[utoipa::path(get, path = "/api/credentials/{id}/pitr/{pitr_id}", tag = "pitr", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "Credential id"), ("pitr_id" = String, Path, description = "Recovery id")),
    responses((status = 200, body = PitrRun), (status = 404, body = ErrorBody)))]
pub async fn run(
    State(state): State<Arc<AppState>>,
    _: Auth<Operator>,
    Path((id, pitr_id)): Path<(String, String)>,
) -> Result<Json<PitrRun>, ApiError> {
    Ok(Json(state.jobs.pitr_run(&id, &pitr_id).await?))
}

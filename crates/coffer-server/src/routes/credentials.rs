//! Database credentials (admin) that postgres and mysql sources name. The password is
//! write-only: stored sealed, never returned.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use coffer_types::{Check, Credential, CredentialInput, CredentialUpdate, ErrorBody};

use crate::AppState;
use crate::auth::{Admin, Auth};
use crate::error::ApiError;
use crate::extract::{Json, Path};

#[utoipa::path(get, path = "/api/credentials", tag = "credentials", security(("bearer" = ["admin"])),
    responses((status = 200, body = [Credential])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<Vec<Credential>>, ApiError> {
    Ok(Json(state.jobs.credentials().await?))
}

#[utoipa::path(post, path = "/api/credentials", tag = "credentials", security(("bearer" = ["admin"])), request_body = CredentialInput,
    responses((status = 201, body = Credential), (status = 400, body = ErrorBody, description = "Names the invalid field"),
        (status = 409, body = ErrorBody, description = "The name is taken")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Json(input): Json<CredentialInput>,
) -> Result<(StatusCode, Json<Credential>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.jobs.create_credential(input).await?),
    ))
}

#[utoipa::path(get, path = "/api/credentials/{id}", tag = "credentials", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = Credential), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(state.jobs.credential(&id).await?))
}

/// Replace the fields given; an empty `password` removes it.
#[utoipa::path(put, path = "/api/credentials/{id}", tag = "credentials", security(("bearer" = ["admin"])), request_body = CredentialUpdate,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = Credential), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
    Json(u): Json<CredentialUpdate>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(state.jobs.update_credential(&id, u).await?))
}

/// Delete a credential; 409 while a job names it.
#[utoipa::path(delete, path = "/api/credentials/{id}", tag = "credentials", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Jobs use it")))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.jobs.delete_credential(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the server answers with this credential: `ok` and the databases it lists, or why
/// not (a wrong password, a server that is down).
#[utoipa::path(post, path = "/api/credentials/{id}/test", tag = "credentials", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = Check), (status = 404, body = ErrorBody)))]
pub async fn test(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Check>, ApiError> {
    Ok(Json(state.jobs.test_credential(&id).await?))
}

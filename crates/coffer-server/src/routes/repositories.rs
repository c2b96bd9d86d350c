//! Repositories registered for jobs (admin): a local directory or an S3 bucket prefix with its
//! connection settings. The S3 secret key is write-only: stored sealed, never returned.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use coffer_types::{Check, ErrorBody, Repository, RepositoryInput, RepositoryUpdate};

use crate::AppState;
use crate::auth::{Admin, Auth};
use crate::error::ApiError;
use crate::extract::{Json, Path};

#[utoipa::path(get, path = "/api/repositories", tag = "repositories", security(("bearer" = ["admin"])),
    responses((status = 200, body = [Repository])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<Vec<Repository>>, ApiError> {
    Ok(Json(state.jobs.repositories().await?))
}

#[utoipa::path(post, path = "/api/repositories", tag = "repositories", security(("bearer" = ["admin"])), request_body = RepositoryInput,
    responses((status = 201, body = Repository), (status = 400, body = ErrorBody, description = "Names the invalid field"),
        (status = 409, body = ErrorBody, description = "The name is taken")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Json(input): Json<RepositoryInput>,
) -> Result<(StatusCode, Json<Repository>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.jobs.create_repository(input).await?),
    ))
}

#[utoipa::path(get, path = "/api/repositories/{id}", tag = "repositories", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Repository id")),
    responses((status = 200, body = Repository), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Repository>, ApiError> {
    Ok(Json(state.jobs.repository(&id).await?))
}

/// Replace the fields given; `url` and `encrypted` cannot change while jobs use it (409).
#[utoipa::path(put, path = "/api/repositories/{id}", tag = "repositories", security(("bearer" = ["admin"])), request_body = RepositoryUpdate,
    params(("id" = String, Path, description = "Repository id")),
    responses((status = 200, body = Repository), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
    Json(u): Json<RepositoryUpdate>,
) -> Result<Json<Repository>, ApiError> {
    Ok(Json(state.jobs.update_repository(&id, u).await?))
}

/// Forget a repository (its data stays where it is); 409 while jobs use it.
#[utoipa::path(delete, path = "/api/repositories/{id}", tag = "repositories", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Repository id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Jobs use it")))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.jobs.delete_repository(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the repository can be reached with its settings, and what it holds (a repository
/// that opens with the server's key, or nothing yet), or why not.
#[utoipa::path(post, path = "/api/repositories/{id}/test", tag = "repositories", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Repository id")),
    responses((status = 200, body = Check), (status = 404, body = ErrorBody)))]
pub async fn test(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Check>, ApiError> {
    Ok(Json(state.jobs.test_repository(&id).await?))
}

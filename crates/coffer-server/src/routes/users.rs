//! User accounts, for administrators. The last administrator can be neither deleted nor
//! demoted (409); the rule is one SQL statement, so concurrent requests cannot break it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use coffer_types::{CreateUser, ErrorBody, UpdateUser, User};

use crate::AppState;
use crate::auth::{Admin, Auth, hash_password};
use crate::error::ApiError;
use crate::extract::{Json, Path};

#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = ["admin"])),
    responses((status = 200, body = [User]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.db.users().await?))
}

#[utoipa::path(post, path = "/api/users", tag = "users", security(("bearer" = ["admin"])), request_body = CreateUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "The username is taken")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let hash = hash_password(req.password.expose().to_string()).await?;
    let user = state
        .db
        .create_user(req.username.as_str(), &hash, req.role)
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.db.user(&id).await?))
}

/// Change the password and/or the role. A new password ends the user's sessions.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", security(("bearer" = ["admin"])), request_body = UpdateUser,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Would demote the last administrator")))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
    Json(req): Json<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    let hash = match &req.password {
        Some(p) => Some(hash_password(p.expose().to_string()).await?),
        None => None,
    };
    let user = state.db.update_user(&id, hash.as_deref(), req.role).await?;
    if hash.is_some() {
        state.db.revoke_user_sessions(&id).await?;
    }
    Ok(Json(user))
}

/// Delete a user, their sessions and their API keys.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The last administrator")))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.db.delete_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

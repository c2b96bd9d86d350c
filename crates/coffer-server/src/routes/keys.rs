//! API keys: anyone may hold keys acting with at most their own role.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use coffer_types::{ApiKey, CreateKey, CreatedKey, ErrorBody, Role};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Auth, Viewer, api_key_prefix, new_api_key};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListKeys {
    /// Administrators only: everyone's keys, not just their own.
    #[serde(default)]
    all: bool,
}

/// Your keys (never the secrets).
#[utoipa::path(get, path = "/api/keys", tag = "keys", security(("bearer" = ["viewer"])), params(ListKeys),
    responses((status = 200, body = [ApiKey]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Viewer>,
    Query(q): Query<ListKeys>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    if q.all && caller.role < Role::Admin {
        return Err(ApiError::Forbidden(
            "listing everyone's keys needs the admin role".into(),
        ));
    }
    let owner = (!q.all).then_some(caller.user.id.as_str());
    Ok(Json(state.db.keys(owner).await?))
}

/// A new key, shown this once. Its role defaults to, and may not exceed, yours.
#[utoipa::path(post, path = "/api/keys", tag = "keys", security(("bearer" = ["viewer"])), request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Viewer>,
    Json(req): Json<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            field: "name".into(),
            message: "give the key a name of 1 to 100 characters, without control characters"
                .into(),
        });
    }
    let role = req.role.unwrap_or(caller.role);
    if role > caller.role {
        return Err(ApiError::Forbidden(format!(
            "a key cannot have more rights than its creator: you have {}, the key asks for {role}",
            caller.role
        )));
    }
    if req.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::Invalid {
            field: "expires_at".into(),
            message: "the expiry must be in the future".into(),
        });
    }
    let (key, hash) = new_api_key();
    let info = state
        .db
        .create_key(
            &caller.user.id,
            name,
            role,
            &hash,
            &api_key_prefix(&key),
            req.expires_at,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, info })))
}

/// Revoke one of your keys (administrators: anyone's). It stops working at once.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Viewer>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = state.db.key(&id).await?;
    if key.info.user_id != caller.user.id && caller.role < Role::Admin {
        // Someone else's key: as if it did not exist.
        return Err(ApiError::NotFound("API key not found".into()));
    }
    state.db.revoke_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

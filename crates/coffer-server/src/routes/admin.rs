//! Administration: the token signing secret, server settings and the audit log.

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use coffer_db::AuditQuery;
use coffer_types::{
    AuditEntry, ErrorBody, KeyRotation, RepositoryKey, Rotated, Setting, SettingValue,
    SettingsUpdate,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Admin, AuditedRead, Auth, JWT_SECRET, TokenKeys, random_bytes};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::selfbackup;

/// A new token signing secret: every existing token and session stops working, including the
/// caller's. API keys are not affected.
#[utoipa::path(post, path = "/api/admin/secrets/rotate-jwt", tag = "admin", security(("bearer" = ["admin"])),
    responses((status = 200, body = Rotated), (status = 403, body = ErrorBody)))]
pub async fn rotate_jwt(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<Rotated>, ApiError> {
    let secret: [u8; 32] = random_bytes();
    state.db.replace_secret(JWT_SECRET, &secret).await?;
    state.db.revoke_all_sessions().await?;
    state.set_token_keys(TokenKeys::new(&secret));
    tracing::info!("token signing secret rotated; all sessions ended");
    Ok(Json(Rotated { rotated: true }))
}

#[utoipa::path(get, path = "/api/settings", tag = "admin", security(("bearer" = ["admin"])),
    responses((status = 200, body = [Setting])))]
pub async fn settings(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<Vec<Setting>>, ApiError> {
    Ok(Json(state.db.settings().await?))
}

/// Setting names: 1 to 64 lowercase letters, digits, `_`, `.` or `-`; the repository key is
/// none (it was one in earlier versions).
fn setting_key(key: &str) -> Result<&str, ApiError> {
    let ok = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if key == coffer_jobs::KEY_SETTING {
        return Err(ApiError::Conflict(format!(
            "{key} is not a setting: the repository key belongs to the jobs (replacing it would \
             lock every encrypted repository); export it with GET /api/admin/repository-key, replace \
             it with POST /api/admin/repository-key/rotate"
        )));
    }
    ok.then_some(key).ok_or_else(|| {
        ApiError::BadRequest(
            "a setting name is 1 to 64 lowercase letters, digits, '_', '.' or '-'".into(),
        )
    })
}

/// The key every encrypted job repository opens with, for safe keeping (keep it away from
/// this machine: with the repositories, it is everything needed to read them).
#[utoipa::path(get, path = "/api/admin/repository-key", tag = "admin", security(("bearer" = ["admin"])),
    responses((status = 200, body = RepositoryKey), (status = 403, body = ErrorBody)))]
pub async fn repository_key(
    State(state): State<Arc<AppState>>,
    _: AuditedRead,
    _: Auth<Admin>,
) -> Result<Json<RepositoryKey>, ApiError> {
    let key = state.jobs.export_repository_key().await?;
    Ok(Json(RepositoryKey { key }))
}

/// Replace the repository key with a new one: added to every encrypted repository first, then
/// stored, then the old one removed from them; a repository that does not take the new key
/// stops it before anything changed. Backups wait while it runs. Export the new key afterwards
/// (downloads sealed before still open with the old one).
#[utoipa::path(post, path = "/api/admin/repository-key/rotate", tag = "admin", security(("bearer" = ["admin"])),
    responses((status = 200, body = KeyRotation), (status = 403, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn rotate_repository_key(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
) -> Result<Json<KeyRotation>, ApiError> {
    Ok(Json(state.jobs.rotate_repository_key().await?))
}

#[utoipa::path(get, path = "/api/settings/{key}", tag = "admin", security(("bearer" = ["admin"])),
    params(("key" = String, Path, description = "Setting name")),
    responses((status = 200, body = Setting), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Not a setting (the repository key)")))]
pub async fn get_setting(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(key): Path<String>,
) -> Result<Json<Setting>, ApiError> {
    let key = setting_key(&key)?;
    state
        .db
        .setting(key)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("setting {key:?} is not set")))
}

/// Set a setting to any JSON value: `{"value": ...}`. The settings the server reads are
/// checked (`general.backup_retention_count`: a positive whole number; `general.auto_backup`:
/// `"true"` or `"false"`).
#[utoipa::path(put, path = "/api/settings/{key}", tag = "admin", security(("bearer" = ["admin"])), request_body = SettingValue,
    params(("key" = String, Path, description = "Setting name")),
    responses((status = 200, body = Setting), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Not a setting (the repository key)")))]
pub async fn put_setting(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Path(key): Path<String>,
    Json(req): Json<SettingValue>,
) -> Result<Json<Setting>, ApiError> {
    let key = setting_key(&key)?;
    selfbackup::check_setting(&state, key, &req.value).await?;
    Ok(Json(state.db.put_setting(key, &req.value).await?))
}

/// Set several settings at once: `{"settings": {"general.auto_backup": "true"}}`. Every one
/// is checked before any is stored.
#[utoipa::path(put, path = "/api/settings", tag = "admin", security(("bearer" = ["admin"])), request_body = SettingsUpdate,
    responses((status = 200, body = [Setting]), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Not a setting (the repository key)")))]
pub async fn put_settings(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Json(req): Json<SettingsUpdate>,
) -> Result<Json<Vec<Setting>>, ApiError> {
    for (key, value) in &req.settings {
        selfbackup::check_setting(&state, setting_key(key)?, value).await?;
    }
    let mut stored = vec![];
    for (key, value) in &req.settings {
        stored.push(state.db.put_setting(key, value).await?);
    }
    Ok(Json(stored))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Entries at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Entries at or before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// A username or user id.
    user: Option<String>,
    /// Part of the action, e.g. `POST /api/users` or `keys`.
    action: Option<String>,
    /// At most this many entries (1–1000, default 100).
    limit: Option<u32>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "admin", security(("bearer" = ["admin"])), params(AuditParams),
    responses((status = 200, body = [AuditEntry]), (status = 400, body = ErrorBody)))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    _: Auth<Admin>,
    Query(q): Query<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = super::limit(q.limit, 100, 1000)?;
    let query = AuditQuery {
        since: q.since,
        until: q.until,
        user: q.user,
        action: q.action,
        limit,
    };
    Ok(Json(state.db.audit(&query).await?))
}

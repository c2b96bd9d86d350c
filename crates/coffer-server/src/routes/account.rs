//! First-admin setup, login, token refresh, logout and the current user.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use coffer_types::{ErrorBody, LoginRequest, LoginResponse, SetupRequest, User};

use crate::AppState;
use crate::auth::{
    Actor, AuditSlot, Auth, Viewer, hash_password, session_cookie, session_cookie_value,
    session_expiry, session_user, verify_password,
};
use crate::error::ApiError;
use crate::extract::{ClientIp, Json};

fn actor(user: &User) -> Actor {
    Actor {
        user_id: Some(user.id.clone()),
        username: Some(user.username.clone()),
        key_id: None,
    }
}

/// Create the first administrator. Once any user exists, this answers 409.
#[utoipa::path(post, path = "/api/auth/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn setup(
    State(state): State<Arc<AppState>>,
    Extension(slot): Extension<AuditSlot>,
    Json(req): Json<SetupRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if state.db.user_count().await? > 0 {
        return Err(ApiError::Conflict(
            "setup is already done: log in, or ask an administrator for an account".into(),
        ));
    }
    let hash = hash_password(req.password.expose().to_string()).await?;
    let user = state
        .db
        .create_first_admin(req.username.as_str(), &hash)
        .await?;
    slot.set(actor(&user));
    tracing::info!(username = %user.username, "first administrator created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// The token both in the body and as an HttpOnly, SameSite=Strict cookie.
fn session_response(token: String, expires_at: DateTime<Utc>, user: User) -> Response {
    let cookie = session_cookie(&token, (expires_at - Utc::now()).num_seconds());
    (
        [(header::SET_COOKIE, cookie)],
        Json(LoginResponse {
            token,
            expires_at,
            user,
        }),
    )
        .into_response()
}

/// Log in. At most 10 attempts per minute per client address (then 429 with `Retry-After`).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse, description = "Also sets the session cookie"),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    Extension(slot): Extension<AuditSlot>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    state
        .login_limiter
        .attempt(ip)
        .map_err(|retry_after_secs| ApiError::TooManyRequests { retry_after_secs })?;
    slot.set(Actor {
        username: Some(req.username.clone()),
        ..Actor::default()
    });
    let found = state.db.user_by_name(&req.username).await?;
    let ok = verify_password(
        req.password,
        found.as_ref().map(|(_, h)| h.clone()),
        state.dummy_hash.clone(),
    )
    .await?;
    let Some((user, _)) = found.filter(|_| ok) else {
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    };
    slot.set(actor(&user));
    let expires_at = session_expiry(&state);
    let sid = state
        .db
        .create_session(&user.id, expires_at, ip.map(|i| i.to_string()).as_deref())
        .await?;
    let token = state.token_keys().issue(&user.id, &sid, expires_at)?;
    Ok(session_response(token, expires_at, user))
}

/// A fresh token (and cookie) for a valid, unexpired one given as Bearer token or cookie; the
/// session is extended.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    Extension(slot): Extension<AuditSlot>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| session_cookie_value(&headers))
        .ok_or_else(|| {
            ApiError::Unauthorized("send the token to refresh as `Authorization: Bearer`".into())
        })?;
    let (user, sid) = session_user(&state, token.trim()).await?;
    slot.set(actor(&user));
    let expires_at = session_expiry(&state);
    state.db.extend_session(&sid, expires_at).await?;
    let token = state.token_keys().issue(&user.id, &sid, expires_at)?;
    Ok(session_response(token, expires_at, user))
}

/// End the current session: its tokens stop working at once, and the cookie is cleared.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = ["viewer"])),
    responses((status = 204, description = "Logged out"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Viewer>,
) -> Result<Response, ApiError> {
    let Some(sid) = caller.session_id else {
        return Err(ApiError::BadRequest(
            "an API key has no session: revoke it with DELETE /api/keys/{id}".into(),
        ));
    };
    state.db.revoke_session(&sid).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session_cookie("", 0))],
    )
        .into_response())
}

/// The current user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = ["viewer"])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(Auth(caller, ..): Auth<Viewer>) -> Json<User> {
    Json(caller.user)
}

//! The router and its public handlers.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/modules", get(modules))
        .fallback(not_found)
        .with_state(state)
}

/// 200 while the data directory is usable, 503 otherwise.
async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let dir = state.data_dir.clone();
    let usable = tokio::task::spawn_blocking(move || std::fs::read_dir(&dir).map(|_| ()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    usable.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({
        "status": "ok",
        "version": state.version,
        "uptime_seconds": state.started.elapsed().as_secs(),
    })))
}

/// The modules this server provides.
async fn modules() -> Json<Value> {
    Json(json!({ "backups": true }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

//! Public endpoints (health, modules, metrics, the OpenAPI document), the node list and the
//! live events.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::header;
use axum::response::IntoResponse;
use coffer_types::{DockerVolume, ErrorBody, Health, Modules, Node};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::auth::{Auth, Viewer};
use crate::error::{ApiError, is_disk_full};
use crate::extract::{self, Json};

/// 200 while the data directory can be written and the metadata database answers; 503 with
/// the reason otherwise (a full disk, a data directory that cannot be written, a database that
/// does not answer).
#[utoipa::path(get, path = "/api/health", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    let dir = state.data_dir.clone();
    let written = tokio::task::spawn_blocking(move || write_probe(&dir))
        .await
        .map_err(ApiError::internal)?;
    if let Err(e) = written {
        let why = match is_disk_full(&e) {
            true => "the disk is full".to_string(),
            false => e.to_string(),
        };
        return Err(ApiError::Unavailable(format!(
            "the data directory cannot be written: {why}"
        )));
    }
    if let Err(e) = state.db.ping().await {
        tracing::error!(error = %e, "the metadata database does not answer");
        return Err(ApiError::Unavailable(
            "the metadata database does not answer".into(),
        ));
    }
    let setup_required = state.db.user_count().await? == 0;
    Ok(Json(Health {
        status: "ok".into(),
        version: state.version.into(),
        uptime_seconds: state.started.elapsed().as_secs(),
        setup_required,
    }))
}

/// Write (and sync) a page into the data directory and remove it again: a full disk or a
/// read-only file system shows here, not only at the next write that matters.
fn write_probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(".coffer-health");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&[0u8; 4096])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written
}

/// The modules this server provides.
#[utoipa::path(get, path = "/api/modules", tag = "system", responses((status = 200, body = Modules)))]
pub async fn modules() -> Json<Modules> {
    Json(Modules { backups: true })
}

/// Prometheus text format; open, by Prometheus convention.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.metrics, state.started_at),
    )
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API")))]
pub async fn openapi(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(state.openapi.get().cloned().unwrap_or_default())
}

/// The nodes that run jobs (for now, this server) and what each can do.
#[utoipa::path(get, path = "/api/nodes", tag = "system", security(("bearer" = ["viewer"])),
    responses((status = 200, body = [Node]), (status = 401, body = ErrorBody)))]
pub async fn nodes(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
) -> Result<Json<Vec<Node>>, ApiError> {
    let tools = tokio::task::spawn_blocking(coffer_jobs::tools)
        .await
        .map_err(ApiError::internal)?;
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    Ok(Json(vec![Node {
        id: "local".into(),
        name,
        version: state.version.into(),
        docker: coffer_jobs::docker_check().await,
        tools,
    }]))
}

/// The node's Docker volumes: what a job's `volume` sources can name.
#[utoipa::path(get, path = "/api/nodes/{id}/volumes", tag = "system", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Node id (`local`)")),
    responses((status = 200, body = [DockerVolume]), (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody, description = "The Docker engine cannot be asked")))]
pub async fn volumes(
    _: Auth<Viewer>,
    extract::Path(id): extract::Path<String>,
) -> Result<Json<Vec<DockerVolume>>, ApiError> {
    if id != "local" {
        return Err(ApiError::NotFound(format!(
            "node {id:?} not found: this server has one node, \"local\""
        )));
    }
    Ok(Json(coffer_jobs::docker_volumes().await?))
}

/// Live events (backups started, completed or failed; restores; failed verifies) as JSON text
/// messages, from the moment of connecting. Browsers authenticate with the session cookie.
#[utoipa::path(get, path = "/api/ws", tag = "system", security(("bearer" = ["viewer"])),
    responses((status = 101, description = "A WebSocket sending one JSON `Event` per text message"),
        (status = 400, body = ErrorBody, description = "Not a WebSocket handshake")))]
pub async fn ws(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<axum::response::Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!(
            "this endpoint speaks WebSocket only: {}",
            e.body_text()
        ))
    })?;
    let mut events = state.jobs.subscribe();
    Ok(upgrade.on_upgrade(move |mut socket| async move {
        loop {
            tokio::select! {
                event = events.recv() => {
                    let text = match event {
                        Ok(e) => serde_json::to_string(&e).expect("events serialize"),
                        Err(RecvError::Lagged(n)) => format!(r#"{{"event":"lagged","missed":{n}}}"#),
                        Err(RecvError::Closed) => break,
                    };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }))
}

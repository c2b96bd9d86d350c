//! The notifications sent through the channels, newest first, each with every attempt at
//! delivering it.

use std::sync::Arc;

use axum::extract::State;
use coffer_types::{ErrorBody, Notification};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Auth, Viewer};
use crate::error::ApiError;
use crate::extract::{Json, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationParams {
    /// 1–500, default 100.
    limit: Option<u32>,
}

/// The notifications, newest first: the event, the channel, what it said, whether it was
/// delivered (`pending`: it is tried again at `next_attempt_at`; `failed`: given up on), and
/// each attempt with what the receiver answered.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", operation_id = "notification_log",
    security(("bearer" = ["viewer"])),
    params(NotificationParams),
    responses((status = 200, body = [Notification]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Auth<Viewer>,
    Query(p): Query<NotificationParams>,
) -> Result<Json<Vec<Notification>>, ApiError> {
    let limit = super::limit(p.limit, 100, 500)?;
    Ok(Json(state.jobs.notifications(limit).await?))
}

//! Cross-cutting request handling: request ids and their log span, the audit log of mutating
//! requests, and turning panics into the one error format.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coffer_db::NewAuditEntry;
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Instrument;

use crate::AppState;
use crate::auth::AuditSlot;
use crate::error::ApiError;
use crate::extract::client_ip;

pub const REQUEST_ID: &str = "x-request-id";

/// Random request ids, unless the client sent one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = hex::encode(crate::auth::random_bytes::<8>());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Everything logged while handling a request carries its id, method and path.
pub async fn span(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    async move {
        let res = next.run(req).await;
        tracing::debug!(status = res.status().as_u16(), "answered");
        res
    }
    .instrument(span)
    .await
}

/// Mutating requests of known routes, and the reads their handlers mark (`AuditedRead`), go to
/// the audit log, with who made them (filled in by authentication or by login/setup), from
/// where, and the outcome.
pub async fn audit(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let action = format!("{} {route}", req.method());
    let target = req.uri().path().to_string();
    let ip = client_ip(req.extensions()).map(|ip| ip.to_string());
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let res = next.run(req).await;
    let audited = slot.take();
    if !mutating && !audited.read {
        return res;
    }
    let actor = audited.actor;
    let entry = NewAuditEntry {
        user_id: actor.user_id,
        username: actor.username,
        key_id: actor.key_id,
        client_ip: ip,
        action,
        target: match audited.subject {
            Some(subject) => format!("{target} {subject}"),
            None => target,
        },
        status: res.status().as_u16(),
    };
    if let Err(e) = state.db.add_audit(&entry).await {
        tracing::error!(error = %e, ?entry, "could not write the audit log");
    }
    res
}

/// A handler that panicked answers 500 in the usual format (and is logged with the request id).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// Browsers send `Origin` with every request that changes something and with every WebSocket
/// handshake. One from a page of another site is refused before anything runs, so that such a
/// page cannot act with the user's session cookie (which is SameSite=Strict as well). Clients
/// that are not browsers send no `Origin` and are not affected. The page's own address is the
/// `Host` the request came to, or the `X-Forwarded-Host` a reverse proxy in front names (a
/// page cannot make a browser send that header to another site without the site's consent).
pub async fn same_origin(req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.headers().contains_key(header::UPGRADE);
    if let Some(origin) = req.headers().get(header::ORIGIN).filter(|_| changes) {
        let from = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, authority)| authority.as_bytes());
        let ours = [header::HOST.as_str(), "x-forwarded-host"]
            .into_iter()
            .filter_map(|h| req.headers().get(h).map(HeaderValue::as_bytes))
            .any(|host| Some(host) == from);
        if !ours {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            tracing::warn!(%origin, "refused a request from a page of another site");
            return ApiError::CrossOrigin(format!(
                "a page of {origin} may not act on this server: open Coffer at its own address"
            ))
            .into_response();
        }
    }
    next.run(req).await
}

//! The router: every API route with its OpenAPI description, the web interface, and the
//! layers around them.
//!
//! API routes are only ever added through `OpenApiRouter::routes(routes!(...))`, so a route
//! cannot be served without being documented (the interface's page and files are no API). A handler's `security` names the least role it needs
//! (as the scope of the `bearer` scheme), and its `Auth<Role>` extractor enforces exactly that;
//! the route × role test checks that the two agree.

mod account;
mod admin;
mod drills;
mod jobs;
mod keys;
mod notifications;
mod pitr;
mod resources;
mod selfbackup;
mod system;
mod upload;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use resources::{credentials, notification_channels, repositories};

use crate::AppState;
use crate::auth::SESSION_COOKIE;
use crate::error::ApiError;
use crate::middleware::{self, REQUEST_ID, RandomRequestId};

#[derive(OpenApi)]
#[openapi(
    info(title = "Coffer", description = "Self-hosted backup and restore server."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "system", description = "Health, modules, metrics, nodes"),
        (name = "auth", description = "Setup, login, sessions"),
        (name = "users", description = "User accounts (admin)"),
        (name = "keys", description = "API keys"),
        (name = "admin", description = "Settings, audit log, secrets (admin)"),
        (name = "jobs", description = "Backup jobs and their records"),
        (name = "repositories", description = "Repositories for jobs: local or S3 (managed by admins, read by operators)"),
        (name = "credentials", description = "Database credentials for postgres and mysql sources (managed by admins, read by operators)"),
        (name = "drills", description = "Restore drills: a job's newest backup restored into a throwaway place and checked"),
        (name = "pitr", description = "Point-in-time recovery of MySQL/MariaDB servers: binlog coverage, recoveries to a second"),
        (name = "notifications", description = "Notification channels (managed by admins) and the notifications sent through them"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The OpenAPI document as served. Each operation names its least role once, as the scope of
/// `bearer`; the session cookie and API keys are equivalent alternatives with the same scope.
/// The answers every operation of a kind can give are added here, once: 401 (and 403 above
/// viewer) where authentication is needed, 400 where a request has parameters or a body, 413
/// and 415 where it has a JSON body.
/// A list's `limit` parameter: `default` when not given, refused outside `1..=max`.
fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::Invalid {
            field: "limit".into(),
            message: format!("use 1 to {max}"),
        });
    }
    Ok(limit)
}

fn openapi_json(api: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(api).expect("the OpenAPI document serializes");
    // The codes an error can carry, with their statuses and meanings.
    if let Some(code) = doc.pointer_mut("/components/schemas/ErrorBody/properties/code") {
        code["enum"] = crate::error::CODES
            .iter()
            .map(|(c, ..)| c.to_string())
            .collect();
        code["description"] = crate::error::CODES
            .iter()
            .map(|(c, status, meaning)| format!("`{c}` ({status}): {meaning}"))
            .collect::<Vec<_>>()
            .join("; ")
            .into();
    }
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for op in paths.values_mut().filter_map(|p| p.as_object_mut()) {
            for op in op.values_mut() {
                // Handlers are named for what they do within their tag (`list`, `create`):
                // the tag makes the operation id unique.
                if let (Some(tag), Some(id)) = (
                    op.pointer("/tags/0")
                        .and_then(|t| t.as_str())
                        .map(str::to_string),
                    op.get("operationId")
                        .and_then(|i| i.as_str())
                        .map(str::to_string),
                ) {
                    op["operationId"] = format!("{tag}_{id}").into();
                }
                let scopes = op.pointer("/security/0/bearer").cloned();
                let json_body = op
                    .pointer("/requestBody/content/application~1json")
                    .is_some();
                let has_params = op
                    .get("parameters")
                    .and_then(|p| p.as_array())
                    .is_some_and(|p| !p.is_empty());
                let mut common = vec![];
                if let Some(scopes) = &scopes {
                    common.push(("401", "Not authenticated"));
                    if scopes
                        .as_array()
                        .is_some_and(|s| s.iter().any(|r| r != "viewer"))
                    {
                        common.push(("403", "The caller's role is too low"));
                    }
                }
                if json_body || has_params {
                    common.push((
                        "400",
                        "The request is not valid; the message names the field",
                    ));
                }
                if json_body {
                    common.push(("413", "The body is too large"));
                    common.push((
                        "415",
                        "The body is not JSON (Content-Type: application/json)",
                    ));
                }
                let responses = op["responses"]
                    .as_object_mut()
                    .expect("every operation answers");
                for (status, response) in responses.iter_mut() {
                    if response.get("description").is_none() {
                        let reason = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Answer");
                        response["description"] = reason.into();
                    }
                }
                for (status, description) in common {
                    responses.entry(status).or_insert_with(|| {
                        serde_json::json!({
                            "description": description,
                            "content": { "application/json": { "schema":
                                { "$ref": "#/components/schemas/ErrorBody" } } }
                        })
                    });
                }
                if let Some(scopes) = scopes {
                    op["security"] = serde_json::json!([
                        { "bearer": scopes }, { "cookie": scopes }, { "api_key": scopes }
                    ]);
                }
            }
        }
    }
    doc
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(system::modules))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(system::nodes))
        .routes(routes!(system::volumes))
        .routes(routes!(system::ws))
        .routes(routes!(account::setup))
        .routes(routes!(account::login))
        .routes(routes!(account::refresh))
        .routes(routes!(account::logout))
        .routes(routes!(account::me))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(admin::rotate_jwt))
        .routes(routes!(admin::settings, admin::put_settings))
        .routes(routes!(admin::get_setting, admin::put_setting))
        .routes(routes!(admin::audit))
        .routes(routes!(admin::repository_key))
        .routes(routes!(admin::rotate_repository_key))
        .routes(routes!(
            selfbackup::list,
            selfbackup::create,
            selfbackup::delete
        ))
        .routes(routes!(selfbackup::tasks, selfbackup::run))
        .routes(routes!(selfbackup::create_system, selfbackup::list_system))
        .routes(routes!(
            selfbackup::download_system,
            selfbackup::delete_system
        ))
        .routes(routes!(selfbackup::restore_system))
        .routes(routes!(selfbackup::restore_system_upload))
        .routes(routes!(selfbackup::export))
        .routes(routes!(selfbackup::import))
        .routes(routes!(jobs::list, jobs::create))
        .routes(routes!(jobs::schedule_preview))
        .routes(routes!(jobs::get, jobs::update, jobs::patch, jobs::delete))
        .routes(routes!(jobs::history))
        .routes(routes!(jobs::run))
        .routes(routes!(jobs::records))
        .routes(routes!(jobs::record, jobs::delete_record))
        .routes(routes!(jobs::verify))
        .routes(routes!(jobs::tree))
        .routes(routes!(jobs::download))
        .routes(routes!(jobs::restore))
        .routes(routes!(jobs::restore_upload))
        .routes(routes!(jobs::restores))
        .routes(routes!(jobs::restore_task))
        .routes(routes!(drills::list, drills::start))
        .routes(routes!(drills::get))
        .routes(routes!(repositories::list, repositories::create))
        .routes(routes!(
            repositories::get,
            repositories::update,
            repositories::delete
        ))
        .routes(routes!(credentials::list, credentials::create))
        .routes(routes!(credentials::test))
        .routes(routes!(resources::databases))
        .routes(routes!(pitr::coverage))
        .routes(routes!(pitr::runs, pitr::recover))
        .routes(routes!(pitr::run))
        .routes(routes!(repositories::test))
        .routes(routes!(
            credentials::get,
            credentials::update,
            credentials::delete
        ))
        .routes(routes!(
            notification_channels::list,
            notification_channels::create
        ))
        .routes(routes!(
            notification_channels::get,
            notification_channels::update,
            notification_channels::delete
        ))
        .routes(routes!(notification_channels::test))
        .routes(routes!(notifications::list))
        .split_for_parts();
    state
        .openapi
        .set(openapi_json(&api))
        .expect("the router is built once per server");
    let body_limit = state.max_body_bytes;
    // Layers run outside-in in the reverse of the order written here.
    router
        .route("/", axum::routing::get(crate::ui::index))
        .route("/ui/{*path}", axum::routing::get(crate::ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::audit,
        ))
        .layer(axum::middleware::from_fn(middleware::same_origin))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::from_fn(middleware::span))
        .layer(PropagateRequestIdLayer::new(
            REQUEST_ID.parse().expect("valid header name"),
        ))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID.parse().expect("valid header name"),
            RandomRequestId,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // Answers carry tokens, keys and private data: no cache may keep them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

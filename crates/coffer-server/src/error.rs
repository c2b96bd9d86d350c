//! `ApiError`: every error the API returns, as `{"error": "...", "code": "..."}` with the
//! matching status. Internal errors are logged with their details (inside the request's span,
//! which carries the request id that the response's `x-request-id` header also carries) and
//! answered with a generic message: a 500 never leaks internals.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_db::DbError;
use coffer_types::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// What the request would replace is in use (a running container's volume, an open
    /// SQLite database).
    #[error("{0}")]
    InUse(String),
    /// Another process holds the repository's lock longer than the server waits.
    #[error("{0}")]
    RepositoryLocked(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RangeNotSatisfiable(String),
    #[error("too many attempts: try again in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    /// The server cannot serve now; the message says why (it is shown).
    #[error("{0}")]
    Unavailable(String),
    /// A disk Coffer writes to is full; the message says which.
    #[error("{0}")]
    DiskFull(String),
    #[error("internal error: the server log has the details under this request's id")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::InUse(_) | ApiError::RepositoryLocked(_) => {
                StatusCode::CONFLICT
            }
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::InUse(_) => "in_use",
            ApiError::RepositoryLocked(_) => "repository_locked",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DiskFull(_) => "disk_full",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail)
        | ApiError::Unavailable(detail)
        | ApiError::DiskFull(detail) = &self
        {
            tracing::error!(code = self.code(), %detail, "request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
            code: self.code().to_string(),
        };
        let mut res = (self.status(), Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        res
    }
}

fn e_full() -> String {
    "the disk of the data directory is full: free some space, then try again".into()
}

/// Whether an I/O error says the disk is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
}

impl ApiError {
    /// An I/O failure of the server's own files: a full disk says so, anything else is
    /// internal.
    pub fn io(e: std::io::Error) -> ApiError {
        if is_disk_full(&e) {
            ApiError::DiskFull(e_full())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            DbError::Conflict(msg) => ApiError::Conflict(msg),
            DbError::DiskFull => ApiError::DiskFull(e_full()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Body rejections keep axum's explanation (which names the field and the expected type) but
/// take our format and the right status: 400 for bad JSON, 413 for too large, 415 for a body
/// that is not JSON.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let text = r.body_text();
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("the request body is too large".into())
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "the request body must be JSON (Content-Type: application/json)".into(),
            ),
            _ => ApiError::BadRequest(text),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

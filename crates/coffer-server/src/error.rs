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

/// Every error the API answers, one variant per meaning: its status and its stable code come
/// from it (`status`, `code`), and README and the OpenAPI document list the codes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request that cannot be read (malformed JSON, a wrong type, an unknown query key).
    #[error("{0}")]
    BadRequest(String),
    /// A field whose value cannot be used; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        field: std::borrow::Cow<'static, str>,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A browser request that changes something, sent by a page of another site.
    #[error("{0}")]
    CrossOrigin(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A rule about users would break (setup once, never zero admins).
    #[error("{0}")]
    Conflict(String),
    /// A name is taken, or what the request would create exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The job is running now.
    #[error("{0}")]
    JobRunning(String),
    /// A point-in-time recovery of the server is running now.
    #[error("{0}")]
    PitrRunning(String),
    /// A restore drill of the job is running now.
    #[error("{0}")]
    DrillRunning(String),
    /// A point-in-time recovery cannot reach the time asked for; the code says why.
    #[error("{message}")]
    Unrecoverable {
        why: coffer_jobs::Unrecoverable,
        message: String,
    },
    /// What the request would remove or replace is in use (by jobs, by running containers, by
    /// a process that has a database open).
    #[error("{0}")]
    InUse(String),
    /// The record cannot be used this way (no snapshot, still running).
    #[error("{0}")]
    Unusable(String),
    /// Another process holds the repository's lock longer than the server waits.
    #[error("{0}")]
    RepositoryLocked(String),
    /// The repository's data is damaged or missing.
    #[error("{0}")]
    RepositoryDamaged(String),
    /// The repository does not open with the server's key.
    #[error("{0}")]
    WrongKey(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RangeNotSatisfiable(String),
    #[error("too many attempts: try again in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    /// A dump tool, the Docker engine or a database server failed.
    #[error("{0}")]
    SourceFailed(String),
    /// The server cannot serve now; the message says why (it is shown).
    #[error("{0}")]
    Unavailable(String),
    /// The repository cannot be reached or found.
    #[error("{0}")]
    RepositoryUnavailable(String),
    /// A disk Coffer writes to is full; the message says which.
    #[error("{0}")]
    DiskFull(String),
    #[error("internal error: the server log has the details under this request's id")]
    Internal(String),
}

/// Every code the API answers with, its status and what it means (for README and the OpenAPI
/// document; a test checks that each variant's code is here).
pub const CODES: &[(&str, u16, &str)] = &[
    ("bad_request", 400, "the request cannot be read"),
    (
        "invalid_field",
        400,
        "a field's value cannot be used; `field` names it",
    ),
    ("unauthorized", 401, "no valid credentials"),
    ("forbidden", 403, "the caller's role is too low"),
    (
        "cross_origin",
        403,
        "a browser request that changes something came from a page of another site",
    ),
    ("not_found", 404, "no such thing"),
    (
        "method_not_allowed",
        405,
        "the method is not served on this path",
    ),
    (
        "conflict",
        409,
        "a rule would break (setup once, never zero admins, the repository key is no setting)",
    ),
    (
        "already_exists",
        409,
        "the name is taken, or the target exists",
    ),
    ("job_running", 409, "the job is running now"),
    (
        "pitr_running",
        409,
        "a point-in-time recovery of the server is running now",
    ),
    (
        "drill_running",
        409,
        "a restore drill of the job is running now",
    ),
    (
        "pitr_in_future",
        400,
        "the recovery's target time is in the future",
    ),
    (
        "pitr_no_baseline",
        400,
        "no full backup with a binlog position finished by the target time",
    ),
    (
        "pitr_outside_coverage",
        400,
        "the binlog archive does not reach the target time",
    ),
    (
        "pitr_gap",
        400,
        "binlog files before the target time are missing (allow_gaps to recover anyway)",
    ),
    ("in_use", 409, "what would be removed or replaced is in use"),
    ("unusable", 409, "the record cannot be used this way"),
    (
        "repository_locked",
        409,
        "another process holds the repository's lock",
    ),
    (
        "repository_damaged",
        409,
        "the repository's data is damaged or missing",
    ),
    (
        "wrong_key",
        409,
        "the repository does not open with this server's key",
    ),
    ("payload_too_large", 413, "the body is too large"),
    ("uri_too_long", 414, "the address is too long"),
    ("unsupported_media_type", 415, "the body is not JSON"),
    (
        "range_not_satisfiable",
        416,
        "the range lies outside the archive",
    ),
    ("headers_too_large", 431, "the headers are too large"),
    ("rate_limited", 429, "too many attempts"),
    (
        "internal",
        500,
        "a bug or an unexpected failure; the log has the details",
    ),
    (
        "source_failed",
        502,
        "a dump tool, the Docker engine or a database server failed",
    ),
    ("unavailable", 503, "the server cannot serve now"),
    (
        "repository_unavailable",
        503,
        "the repository cannot be reached or found",
    ),
    ("disk_full", 507, "a disk Coffer writes to is full"),
];

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { .. } => "invalid_field",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CrossOrigin(_) => "cross_origin",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::AlreadyExists(_) => "already_exists",
            ApiError::JobRunning(_) => "job_running",
            ApiError::PitrRunning(_) => "pitr_running",
            ApiError::DrillRunning(_) => "drill_running",
            ApiError::Unrecoverable { why, .. } => match why {
                coffer_jobs::Unrecoverable::InFuture => "pitr_in_future",
                coffer_jobs::Unrecoverable::NoBaseline => "pitr_no_baseline",
                coffer_jobs::Unrecoverable::OutsideCoverage => "pitr_outside_coverage",
                coffer_jobs::Unrecoverable::BehindGap => "pitr_gap",
            },
            ApiError::InUse(_) => "in_use",
            ApiError::Unusable(_) => "unusable",
            ApiError::RepositoryLocked(_) => "repository_locked",
            ApiError::RepositoryDamaged(_) => "repository_damaged",
            ApiError::WrongKey(_) => "wrong_key",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::SourceFailed(_) => "source_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RepositoryUnavailable(_) => "repository_unavailable",
            ApiError::DiskFull(_) => "disk_full",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        let code = self.code();
        let status = CODES
            .iter()
            .find(|(c, ..)| *c == code)
            .map(|(_, s, _)| *s)
            .expect("every code is listed in CODES");
        StatusCode::from_u16(status).expect("a valid status")
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail)
        | ApiError::Unavailable(detail)
        | ApiError::RepositoryUnavailable(detail)
        | ApiError::DiskFull(detail) = &self
        {
            tracing::error!(code = self.code(), %detail, "request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
            code: self.code().to_string(),
            field: self.field().map(str::to_string),
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

/// The job service's errors, each to its meaning.
impl From<coffer_jobs::JobsError> for ApiError {
    fn from(e: coffer_jobs::JobsError) -> Self {
        use coffer_jobs::JobsError as J;
        match e {
            J::Field(f) => f.into(),
            J::Db(e) => e.into(),
            J::Unusable(m) => ApiError::Unusable(m),
            J::Busy(m) => ApiError::InUse(m),
            J::Locked(m) => ApiError::RepositoryLocked(m),
            J::Exists(m) => ApiError::AlreadyExists(m),
            e @ J::Damaged { .. } => ApiError::RepositoryDamaged(e.to_string()),
            e @ J::Unavailable(_) => ApiError::RepositoryUnavailable(e.to_string()),
            e @ J::WrongKey(_) => ApiError::WrongKey(e.to_string()),
            J::Source(e) => ApiError::SourceFailed(e.to_string()),
            J::DiskFull(m) => ApiError::DiskFull(m),
            J::Unrecoverable { why, message } => ApiError::Unrecoverable { why, message },
            J::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<coffer_jobs::FieldError> for ApiError {
    fn from(f: coffer_jobs::FieldError) -> Self {
        ApiError::Invalid {
            field: f.field.into(),
            message: f.message,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            DbError::Taken(msg) => ApiError::AlreadyExists(msg),
            DbError::JobRunning => ApiError::JobRunning(e.to_string()),
            DbError::PitrRunning => ApiError::PitrRunning(e.to_string()),
            DbError::DrillRunning => ApiError::DrillRunning(e.to_string()),
            DbError::InUse(msg) => ApiError::InUse(msg),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_listed_code_and_its_status() {
        let all = [
            ApiError::BadRequest(String::new()),
            ApiError::Invalid {
                field: "f".into(),
                message: String::new(),
            },
            ApiError::Unauthorized(String::new()),
            ApiError::Forbidden(String::new()),
            ApiError::CrossOrigin(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::AlreadyExists(String::new()),
            ApiError::JobRunning(String::new()),
            ApiError::PitrRunning(String::new()),
            ApiError::DrillRunning(String::new()),
            ApiError::Unrecoverable {
                why: coffer_jobs::Unrecoverable::InFuture,
                message: String::new(),
            },
            ApiError::Unrecoverable {
                why: coffer_jobs::Unrecoverable::NoBaseline,
                message: String::new(),
            },
            ApiError::Unrecoverable {
                why: coffer_jobs::Unrecoverable::OutsideCoverage,
                message: String::new(),
            },
            ApiError::Unrecoverable {
                why: coffer_jobs::Unrecoverable::BehindGap,
                message: String::new(),
            },
            ApiError::InUse(String::new()),
            ApiError::Unusable(String::new()),
            ApiError::RepositoryLocked(String::new()),
            ApiError::RepositoryDamaged(String::new()),
            ApiError::WrongKey(String::new()),
            ApiError::TooLarge(String::new()),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::RangeNotSatisfiable(String::new()),
            ApiError::TooManyRequests {
                retry_after_secs: 1,
            },
            ApiError::SourceFailed(String::new()),
            ApiError::Unavailable(String::new()),
            ApiError::RepositoryUnavailable(String::new()),
            ApiError::DiskFull(String::new()),
            ApiError::Internal(String::new()),
        ];
        let mut codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        for e in &all {
            assert!(e.status().as_u16() >= 400, "{}", e.code());
        }
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "one code per meaning");
    }
}

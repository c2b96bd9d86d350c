//! The job service's one error type.
//!
//! Error policy: each variant is one meaning a user acts on differently, and the server gives
//! each its own status and stable code. The engine's and the sources' errors are classified
//! here, once (`From<coffer_repo::Error>`): damage of the repository's data is not its being
//! unreachable, locked, or opened with the wrong key, and none of them is a bug. Nothing is
//! flattened to text on the way and no text is parsed back; messages are sentences for people.
//! What a record or a restore task keeps of an error is its message.

use coffer_db::DbError;
use coffer_repo::BackendErrorKind;
use coffer_sources::SourceError;

use crate::spec::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// Input that cannot be used: which field, and why.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The metadata store.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The record cannot be used this way (still running, failed, no snapshot).
    #[error("{0}")]
    Unusable(String),
    /// What a restore would overwrite is in use (a volume of a running container, a SQLite
    /// database a process holds open).
    #[error("{0}")]
    Busy(String),
    /// Another process holds the repository's exclusive lock, longer than we wait.
    #[error("{0}")]
    Locked(String),
    /// What the request would create or replace exists, and the request did not say to
    /// replace it.
    #[error("{0}")]
    Exists(String),
    /// The repository's data is damaged or missing: `object` names what (a pack, an index
    /// file, a snapshot).
    #[error("{object} is damaged: {detail}")]
    Damaged { object: String, detail: String },
    /// The repository cannot be reached or found (gone, unreachable, refused).
    #[error("the repository cannot be reached: {0}")]
    Unavailable(String),
    /// The repository does not open with the key this server has for it.
    #[error("the repository does not open with this server's key: {0}")]
    WrongKey(String),
    /// A dump tool, the Docker engine or a SQLite database failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A disk is full (the repository's, or the server's own).
    #[error("{0}")]
    DiskFull(String),
    /// A point-in-time recovery cannot reach the time asked for: `why` says which rule, the
    /// message what the archive and the baselines hold instead.
    #[error("{message}")]
    Unrecoverable { why: Unrecoverable, message: String },
    /// Anything else: an unexpected failure, with what was being done.
    #[error("{0}")]
    Internal(String),
}

/// Why a point-in-time recovery to the time asked for is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecoverable {
    /// The time has not come yet.
    InFuture,
    /// The archive holds the binary log only up to an earlier moment (or not from the
    /// baseline's position on).
    OutsideCoverage,
    /// No full backup with a binlog position finished before the time.
    NoBaseline,
    /// Binlog files between the baseline and the time are missing, and gaps were not allowed.
    BehindGap,
}

pub type Result<T, E = JobsError> = std::result::Result<T, E>;

impl From<coffer_repo::Error> for JobsError {
    fn from(e: coffer_repo::Error) -> Self {
        use coffer_repo::Error as E;
        match e {
            E::Locked(who) => JobsError::Locked(format!(
                "the repository is locked by {who}: try again when it is done"
            )),
            E::NotInSnapshot(path) => JobsError::Field(FieldError {
                field: "paths",
                message: format!("{path} is not in this record"),
            }),
            damage @ (E::Damaged { .. } | E::MissingBlob(_)) => {
                let (object, detail) = damage.damaged_object();
                JobsError::Damaged { object, detail }
            }
            E::SnapshotNotFound(id) => JobsError::Damaged {
                object: format!("snapshot {id}"),
                detail: "it is gone from the repository".into(),
            },
            E::NotARepository(_) | E::UnsupportedVersion(_) => {
                JobsError::Unavailable(e.to_string())
            }
            E::WrongPassword | E::PasswordRequired | E::WrongKeyFile => {
                JobsError::WrongKey(e.to_string())
            }
            E::Backend(b) => match b.kind {
                BackendErrorKind::NoSpace => JobsError::DiskFull(b.to_string()),
                BackendErrorKind::NotFound
                | BackendErrorKind::PermissionDenied
                | BackendErrorKind::Temporary
                | BackendErrorKind::Unreachable
                | BackendErrorKind::Misconfigured => JobsError::Unavailable(b.to_string()),
                BackendErrorKind::Other => JobsError::Internal(b.to_string()),
            },
            E::Io { ref source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                JobsError::DiskFull(e.to_string())
            }
            E::AlreadyExists(_) => JobsError::Exists(e.to_string()),
            E::AmbiguousSnapshot(_) => JobsError::Internal(e.to_string()),
            E::Invalid(message) => JobsError::Unusable(message),
            E::Refused(message) => JobsError::Field(FieldError {
                field: "archive",
                message,
            }),
            E::Io { .. } | E::Interrupted => JobsError::Internal(e.to_string()),
        }
    }
}

impl From<crate::vault::Unsealable> for JobsError {
    fn from(e: crate::vault::Unsealable) -> Self {
        JobsError::Unusable(e.to_string())
    }
}

impl JobsError {
    /// An I/O failure while doing `what` (a full disk says so).
    pub(crate) fn io(what: impl std::fmt::Display, e: std::io::Error) -> JobsError {
        let message = format!("{what}: {e}");
        match e.kind() {
            std::io::ErrorKind::StorageFull => JobsError::DiskFull(message),
            _ => JobsError::Internal(message),
        }
    }

    /// The same error, its message saying first what it stopped (`what`).
    pub(crate) fn context(self, what: &str) -> JobsError {
        let with = |m: String| format!("{what}: {m}");
        match self {
            JobsError::Unusable(m) => JobsError::Unusable(with(m)),
            JobsError::Busy(m) => JobsError::Busy(with(m)),
            JobsError::Locked(m) => JobsError::Locked(with(m)),
            JobsError::Exists(m) => JobsError::Exists(with(m)),
            JobsError::Unavailable(m) => JobsError::Unavailable(with(m)),
            JobsError::WrongKey(m) => JobsError::WrongKey(with(m)),
            JobsError::DiskFull(m) => JobsError::DiskFull(with(m)),
            JobsError::Internal(m) => JobsError::Internal(with(m)),
            JobsError::Damaged { object, detail } => JobsError::Damaged {
                object,
                detail: with(detail),
            },
            other @ (JobsError::Field(_)
            | JobsError::Db(_)
            | JobsError::Source(_)
            | JobsError::Unrecoverable { .. }) => JobsError::Internal(with(other.to_string())),
        }
    }

    /// Whether the repository could not be used at all (rather than found damaged).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            JobsError::Unavailable(_) | JobsError::WrongKey(_) | JobsError::Locked(_)
        )
    }
}

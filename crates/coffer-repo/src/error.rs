//! The engine's one error type.
//!
//! Error policy: every failure the user can act on has its own variant with a message that says
//! what happened in the user's words (wrong password, repository locked, object damaged).
//! Storage failures keep the backend's classification (`BackendErrorKind`) so callers can tell
//! "missing" from "permission denied" from "disk full" and whether retrying can help.
//! Damage is never an `Io` error: anything read from the repository that fails authentication,
//! hashing or parsing becomes `Damaged` naming the object, so that verify and restore can name it.

use std::path::PathBuf;

use crate::backend::BackendError;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("there is no Coffer repository at {0}")]
    NotARepository(String),

    #[error("a Coffer repository already exists at {0}")]
    AlreadyExists(String),

    #[error("the repository is encrypted and no password was given")]
    PasswordRequired,

    #[error("wrong password: no key in the repository opens with it")]
    WrongPassword,

    #[error("the key file does not belong to this repository")]
    WrongKeyFile,

    #[error("repository format version {0} is not supported by this Coffer")]
    UnsupportedVersion(u32),

    #[error("{object} is damaged: {detail}")]
    Damaged { object: String, detail: String },

    #[error("blob {0} is not in the index of the repository")]
    MissingBlob(String),

    #[error("the repository is locked by {0}")]
    Locked(String),

    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),

    #[error("{0} is not in this snapshot")]
    NotInSnapshot(String),

    #[error("{0:?} matches more than one snapshot; give more characters of the id")]
    AmbiguousSnapshot(String),

    #[error("{0}")]
    Invalid(String),

    /// A tar archive from outside (an upload) that is refused: what is wrong with it.
    #[error("{0}")]
    Refused(String),

    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the operation was interrupted")]
    Interrupted,
}

impl Error {
    pub(crate) fn damaged(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Damaged {
            object: object.into(),
            detail: detail.into(),
        }
    }

    /// `pack`, which blob `blob` needs, is not in storage.
    pub(crate) fn pack_missing(pack: &crate::id::Id, blob: &crate::id::Id) -> Self {
        Error::damaged(
            crate::repo::pack_name(pack),
            format!("the pack is missing (needed for blob {})", blob.short()),
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error is about data in the repository being damaged or missing, as opposed
    /// to an environment problem (network, permissions, disk full) or a usage problem.
    pub fn is_damage(&self) -> bool {
        matches!(self, Error::Damaged { .. } | Error::MissingBlob(_))
    }

    /// A copy of a damage error (one blob's damage reported for each file that needs the blob);
    /// anything else is copied as its message.
    pub(crate) fn copy_damage(&self) -> Error {
        match self {
            Error::Damaged { object, detail } => Error::damaged(object.clone(), detail.clone()),
            Error::MissingBlob(id) => Error::MissingBlob(id.clone()),
            other => Error::Invalid(other.to_string()),
        }
    }

    /// The object an error names and what is wrong with it: for damage the object itself,
    /// for anything else "repository".
    pub fn damaged_object(&self) -> (String, String) {
        match self {
            Error::Damaged { object, detail } => (object.clone(), detail.clone()),
            Error::MissingBlob(id) => (
                format!("blob {}", &id[..8.min(id.len())]),
                "missing: no index file or pack lists it".into(),
            ),
            other => ("repository".into(), other.to_string()),
        }
    }
}

//! Sources of backups beyond plain files. Each turns what a job names into something the
//! engine can store: a consistent copy of a SQLite database taken while applications keep
//! writing to it; a Docker volume read (and written back) through the Docker Engine API.
//! Database dumps come next, in this crate, which is the only one that starts child processes
//! or talks to Docker.

mod child;
pub mod docker;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

pub use child::Dump;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what}: {message}")]
    Failed { what: String, message: String },
}

pub(crate) fn failed(what: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Failed {
        what: what.to_string(),
        message: message.to_string(),
    }
}

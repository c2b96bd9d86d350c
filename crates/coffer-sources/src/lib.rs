//! Sources of backups beyond plain files. Each turns what a job names into something the
//! engine can store: a consistent copy of a SQLite database taken while applications keep
//! writing to it; a Docker volume read (and written back) through the Docker Engine API.
//! Database dumps come next, in this crate, which is the only one that starts child processes
//! or talks to Docker.

pub mod docker;
pub mod postgres;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what}: {message}")]
    Failed { what: String, message: String },
}

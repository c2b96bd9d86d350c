//! Sources of backups beyond plain files. Each turns what a job names into something the
//! engine can store: here, a consistent copy of a SQLite database taken while applications
//! keep writing to it. Docker volumes and database dumps come next, in this crate, which will
//! be the only one that starts child processes or talks to Docker.

pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what}: {message}")]
    Failed { what: String, message: String },
}

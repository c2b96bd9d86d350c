//! Sources of backups beyond plain files. Each turns what a job names into something the
//! engine can store: a consistent copy of a SQLite database taken while applications keep
//! writing to it; a Docker volume read (and written back) through the Docker Engine API;
//! PostgreSQL and MySQL/MariaDB dumps made (and restored) by the servers' own tools. This is
//! the only crate that starts child processes or talks to Docker.

pub mod binlog;
mod child;
mod command;
mod dirdump;

pub use command::{Found, tools};
pub mod docker;
pub mod mysql;
pub mod postgres;
pub mod scratch_server;
pub mod sqlite;

pub use child::Dump;
pub use dirdump::DirDump;

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

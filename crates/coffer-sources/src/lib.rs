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
pub mod rows;
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

/// A new directory of mode 0700 under `parent` (made if need be), named `prefix` and random
/// hex digits: a place only Coffer reaches, for option files, dumps and scratch servers.
pub(crate) fn private_dir(
    parent: &std::path::Path,
    prefix: &str,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(parent)?;
    let dir = parent.join(format!("{prefix}{hex}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

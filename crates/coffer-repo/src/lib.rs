//! Coffer's storage engine: content-defined chunking, deduplication, compression, encryption,
//! packs, index, snapshots; backup, restore, dump, verify, forget and prune; storage backends
//! behind one trait. No HTTP, no SQL, no processes: callers hand it paths and byte streams.
//!
//! # On-disk format (version 1; full specification in docs/repository-format.md)
//!
//! ```text
//! config                      JSON: id, encrypted, chunker parameters, pack size; checksum (+ MAC)
//! keys/<id>                   JSON: the master key wrapped by an argon2id-derived key
//! data/<xx>/<pack id>         packs of blobs; id = BLAKE3 of the whole pack
//! index/<id>                  sealed: which pack holds each blob; id = BLAKE3 of the object
//! snapshots/<id>              sealed JSON: root tree, archive checksum, sizes; id = BLAKE3
//! locks/<random id>           sealed JSON: who is using the repository
//! prune/<random id>           sealed JSON: packs condemned by prune, and whom they wait for
//! ```
//!
//! **Architecture Invariant:** objects other than locks and prune plans are written once and
//! never modified. A backup writes packs, then the index files that list them, then the
//! snapshot: an interrupted backup leaves only data nobody references, which prune removes.
//!
//! **Architecture Invariant:** the archive checksum recorded in a snapshot is the SHA-256 of the
//! exact bytes `dump` produces from the repository; backup computes it with the same header
//! code (`archive::entry_header`) as dump, in the same order.
//!
//! # Locking table
//!
//! Locks never make an operation wait, except prune against prune. They let prune know who
//! might still need data it is about to delete.
//!
//! | running ↓ / starting → | backup | restore, dump, verify | forget | prune |
//! |---|---|---|---|---|
//! | backup                 | yes    | yes                   | yes    | yes: packs condemned after the backup started are deleted only once it has ended |
//! | restore, dump, verify  | yes    | yes                   | yes    | yes: same rule |
//! | forget                 | yes    | yes                   | yes    | yes (prune keeps what a snapshot it listed needs) |
//! | prune                  | yes    | yes                   | yes    | no: `Error::Locked` |
//!
//! Stale locks (process gone, or not refreshed for 30 minutes on another host) are ignored
//! and removed, so a crash never blocks anything.

pub mod archive;
pub mod backend;
mod backup;
mod cache;
mod chunker;
mod compress;
mod crypto;
mod error;
mod fetch;
pub mod forget;
mod id;
mod index;
mod lock;
mod pack;
pub mod prune;
mod reader;
mod repo;
pub mod restore;
pub mod sealed;
mod session;
pub mod sha256;
pub mod snapshot;
mod spool;
pub mod tarball;
mod tree;
pub mod verify;
mod wire;

pub use archive::Damage;
pub use backend::{
    Backend, BackendError, BackendErrorKind, BadLocation, Location, RequestStats, S3Options,
};
pub use backup::{
    BackupCounts, BackupItem, BackupOptions, BackupSummary, Excludes, ParentChoice, Progress,
    Source, backup,
};
pub use chunker::ChunkerParams;
pub use crypto::{KdfParams, MasterKey};
pub use error::{Error, Result};
pub use forget::{GroupBy, RetentionPolicy};
pub use id::{BadId, Id};
pub use lock::{LockGuard, LockInfo, LockKind, acquire as lock};
pub use repo::{Config, FORMAT_VERSION, InitOptions, KeyExport, Repository, Secret};
pub use session::{DumpSummary, SnapshotReader};
pub use snapshot::Snapshot;
pub use tree::{Content, Node, NodeKind, Tree};

/// The folders of a repository, beside its `config`.
pub const FOLDERS: [&str; 6] = [
    repo::KEYS,
    repo::DATA,
    repo::INDEX,
    repo::SNAPSHOTS,
    repo::LOCKS,
    repo::PLANS,
];

/// Delete a whole repository that holds no snapshot any more: its config first (from then on
/// it is no repository), then every object. Refused while it holds snapshots or a live
/// process uses it.
pub fn destroy(repo: &Repository) -> Result<()> {
    if !snapshot::list(repo)?.snapshots.is_empty() {
        return Err(Error::Invalid(
            "the repository still holds snapshots".into(),
        ));
    }
    if let Some((_, user)) = lock::live_locks(repo)?.first() {
        return Err(Error::Locked(user.describe()));
    }
    let backend = repo.backend();
    backend.delete(repo::CONFIG)?;
    for folder in FOLDERS {
        for object in backend.list(folder)? {
            backend.delete(&object.name)?;
        }
    }
    Ok(())
}

/// Locks held right now by live processes.
pub fn live_locks(repo: &Repository) -> Result<Vec<LockInfo>> {
    Ok(lock::live_locks(repo)?
        .into_iter()
        .map(|(_, l)| l)
        .collect())
}

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
mod chunker;
mod compress;
mod crypto;
mod error;
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
pub mod sha256;
pub mod snapshot;
mod tree;
pub mod verify;
mod wire;

use std::io::{Read, Write};

pub use archive::Damage;
pub use backend::{Backend, BackendError, BackendErrorKind, Location, S3Options};
pub use backup::{
    BackupCounts, BackupItem, BackupOptions, BackupSummary, ParentChoice, Progress, Source, backup,
};
pub use chunker::ChunkerParams;
pub use crypto::{KdfParams, MasterKey};
pub use error::{Error, Result};
pub use forget::{GroupBy, RetentionPolicy};
pub use id::Id;
pub use lock::{LockGuard, LockInfo, LockKind, acquire as lock};
pub use repo::{Config, FORMAT_VERSION, InitOptions, KeyExport, Repository, Secret};
pub use snapshot::Snapshot;
pub use tree::{Content, Node, NodeKind, Tree};

/// What `dump` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpSummary {
    pub snapshot_id: Id,
    pub size_bytes: u64,
    pub checksum: String,
}

/// Write the canonical archive of a snapshot to `out`, and check that it hashes to the
/// snapshot's recorded checksum. Damaged or missing data is an error, never silent zeros.
pub fn dump(repo: &Repository, snapshot_id: &Id, out: &mut dyn Write) -> Result<DumpSummary> {
    let _lock = lock::acquire(repo, LockKind::Read)?;
    let snap = snapshot::load(repo, snapshot_id)?;
    let mut index = index::Index::load(repo)?;
    if !index.damaged.is_empty() {
        index.add_unindexed_packs(repo)?;
    }
    let reader = reader::BlobReader::new(repo, &index);
    struct Tee<'a> {
        out: &'a mut dyn Write,
        sha: sha256::Sha256,
    }
    impl Write for Tee<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(buf)?;
            self.sha.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    let mut tee = Tee {
        out,
        sha: sha256::Sha256::new(),
    };
    let size = archive::write_archive(&reader, &snap.tree, &mut tee, None)?;
    tee.flush().map_err(|e| Error::io("output", e))?;
    let checksum = tee.sha.finalize_hex();
    if checksum != snap.checksum || size != snap.size_bytes {
        return Err(Error::damaged(
            repo::object_name(repo::SNAPSHOTS, snapshot_id),
            format!(
                "checksum mismatch: the archive hashes to {checksum}, the snapshot recorded {}",
                snap.checksum
            ),
        ));
    }
    Ok(DumpSummary {
        snapshot_id: *snapshot_id,
        size_bytes: size,
        checksum,
    })
}

/// The node at `path` inside a snapshot (`a/b/c`), with a reader for its data.
fn node_at<'a>(
    reader: &reader::BlobReader<'a>,
    snap: &Snapshot,
    path: &str,
) -> Result<Option<Node>> {
    let mut node: Option<Node> = None;
    let mut tree = Some(reader.tree(&snap.tree)?);
    for name in path.split('/').filter(|c| !c.is_empty()) {
        let Some(t) = tree.take() else {
            return Ok(None);
        };
        let Some(n) = t.find(name.as_bytes()).cloned() else {
            return Ok(None);
        };
        if let Some(sub) = n.subtree.filter(|_| n.kind == NodeKind::Dir) {
            tree = Some(reader.tree(&sub)?);
        }
        node = Some(n);
    }
    Ok(node)
}

/// Write a tar archive of the directory at `path` inside a snapshot (a volume's folder, say)
/// to `out`, with entry paths relative to it: `./<path>` for its contents, then `./` for the
/// directory itself. Returns the files and content bytes written.
pub fn dump_dir(
    repo: &Repository,
    snapshot_id: &Id,
    path: &str,
    out: &mut dyn Write,
) -> Result<(u64, u64)> {
    let _lock = lock::acquire(repo, LockKind::Read)?;
    let snap = snapshot::load(repo, snapshot_id)?;
    let index = index::Index::load(repo)?;
    let reader = reader::BlobReader::new(repo, &index);
    match node_at(&reader, &snap, path)? {
        Some(node) if node.kind == NodeKind::Dir => archive::write_dir(&reader, &node, out),
        _ => Err(Error::Invalid(format!(
            "{path} is not a directory of this snapshot"
        ))),
    }
}

/// The names in the directory at `path` inside a snapshot (the dumps of a database server,
/// say), in the tree's order; empty when there is no such directory.
pub fn list_dir(repo: &Repository, snapshot_id: &Id, path: &str) -> Result<Vec<Vec<u8>>> {
    let _lock = lock::acquire(repo, LockKind::Read)?;
    let snap = snapshot::load(repo, snapshot_id)?;
    let index = index::Index::load(repo)?;
    let reader = reader::BlobReader::new(repo, &index);
    Ok(match node_at(&reader, &snap, path)? {
        Some(Node {
            kind: NodeKind::Dir,
            subtree: Some(sub),
            ..
        }) => reader
            .tree(&sub)?
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect(),
        _ => vec![],
    })
}

/// Check, without reading any data, that the files or directories at `paths` inside a
/// snapshot exist (`Error::NotInSnapshot` names one that does not) and that everything they
/// need is in the index and in a pack that exists: before a restore destroys what it replaces,
/// so that a lost pack stops it first. (Damage inside a pack still shows only when the data is
/// read.)
pub fn check_present(repo: &Repository, snapshot_id: &Id, paths: &[String]) -> Result<()> {
    let _lock = lock::acquire(repo, LockKind::Read)?;
    let snap = snapshot::load(repo, snapshot_id)?;
    let index = index::Index::load(repo)?;
    let reader = reader::BlobReader::new(repo, &index);
    let mut pending = vec![];
    for path in paths {
        match node_at(&reader, &snap, path)? {
            Some(node) => pending.push(node),
            None => return Err(Error::NotInSnapshot(path.clone())),
        }
    }
    while let Some(node) = pending.pop() {
        for c in &node.content {
            if let Content::Chunk { id, .. } = c {
                let loc = index
                    .lookup(id)
                    .ok_or_else(|| Error::MissingBlob(id.to_hex()))?;
                if !index.listed.contains_key(&loc.pack) {
                    return Err(Error::damaged(
                        repo::pack_name(&loc.pack),
                        format!("the pack is missing (needed for blob {})", id.short()),
                    ));
                }
            }
        }
        if let Some(sub) = node.subtree.filter(|_| node.kind == NodeKind::Dir) {
            pending.extend(reader.tree(&sub)?.nodes.iter().cloned());
        }
    }
    Ok(())
}

/// Write the content of the file at `path` inside a snapshot (a database dump, say) to `out`.
/// Every blob is checked as it is read; damage is an error. Returns its size.
pub fn cat(repo: &Repository, snapshot_id: &Id, path: &str, out: &mut dyn Write) -> Result<u64> {
    let _lock = lock::acquire(repo, LockKind::Read)?;
    let snap = snapshot::load(repo, snapshot_id)?;
    let index = index::Index::load(repo)?;
    let reader = reader::BlobReader::new(repo, &index);
    let node = match node_at(&reader, &snap, path)? {
        Some(n) if n.kind == NodeKind::File => n,
        _ => {
            return Err(Error::Invalid(format!(
                "{path} is not a file of this snapshot"
            )));
        }
    };
    let io = |e: std::io::Error| Error::io(path, e);
    for c in &node.content {
        match *c {
            Content::Chunk { id, len } => out.write_all(&reader.chunk(&id, len)?).map_err(io)?,
            Content::Hole { len } => {
                std::io::copy(&mut std::io::repeat(0).take(len), out).map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(node.size)
}

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

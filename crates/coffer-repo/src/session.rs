//! A snapshot open for reading: the one place that sets up what every read of a snapshot
//! needs — a read lock (so that prune keeps what it uses), the snapshot, and the index — so
//! that every read path behaves the same. An index file that cannot be read never hides data:
//! the packs it listed are indexed again from the packs themselves.
//!
//! `dump`, `dump_dir`, `list_dir`, `check_present`, `cat` and `restore` are its methods; a
//! caller that reads a snapshot several times (a restore of several items) opens it once.

use std::io::{Read, Write};
use std::path::Path;

use crate::archive;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Index;
use crate::lock::{self, LockGuard, LockKind};
use crate::reader::{BlobReader, chunk_of};
use crate::repo::{self, Repository};
use crate::restore::{RestoreOptions, RestoreSummary};
use crate::sha256;
use crate::snapshot::{self, Snapshot};
use crate::tree::{Content, Node, NodeKind};

/// What `dump` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpSummary {
    pub snapshot_id: Id,
    pub size_bytes: u64,
    pub checksum: String,
}

/// A snapshot open for reading; the read lock is held until it is dropped.
pub struct SnapshotReader<'r> {
    repo: &'r Repository,
    id: Id,
    snapshot: Snapshot,
    index: Index,
    _lock: LockGuard,
}

impl std::fmt::Debug for SnapshotReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("snapshot", &self.id)
            .finish()
    }
}

impl Repository {
    /// Open snapshot `id` for reading.
    pub fn open_snapshot(&self, id: &Id) -> Result<SnapshotReader<'_>> {
        let lock = lock::acquire(self, LockKind::Read)?;
        let snapshot = snapshot::load(self, id)?;
        let index = Index::load_readable(self)?;
        Ok(SnapshotReader {
            repo: self,
            id: *id,
            snapshot,
            index,
            _lock: lock,
        })
    }
}

impl<'r> SnapshotReader<'r> {
    pub fn id(&self) -> &Id {
        &self.id
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// A reader of the snapshot's blobs (with its own cache).
    pub(crate) fn blobs(&self) -> BlobReader<'_> {
        BlobReader::new(self.repo, &self.index)
    }

    /// The node at `path` inside the snapshot (`a/b/c`), if there is one.
    fn node(&self, reader: &BlobReader<'_>, path: &str) -> Result<Option<Node>> {
        let mut node: Option<Node> = None;
        let mut tree = Some(reader.tree(&self.snapshot.tree)?);
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

    /// Write the canonical archive to `out`, and check that it hashes to the snapshot's
    /// recorded checksum. Damaged or missing data is an error, never silent zeros.
    pub fn dump(&self, out: &mut dyn Write) -> Result<DumpSummary> {
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
        let size = archive::write_archive(&self.blobs(), &self.snapshot.tree, &mut tee, None)?;
        tee.flush().map_err(|e| Error::io("output", e))?;
        let checksum = tee.sha.finalize_hex();
        if checksum != self.snapshot.checksum || size != self.snapshot.size_bytes {
            return Err(Error::damaged(
                repo::object_name(repo::SNAPSHOTS, &self.id),
                format!(
                    "checksum mismatch: the archive hashes to {checksum}, the snapshot recorded {}",
                    self.snapshot.checksum
                ),
            ));
        }
        Ok(DumpSummary {
            snapshot_id: self.id,
            size_bytes: size,
            checksum,
        })
    }

    /// Write a tar archive of the directory at `path` (a volume's folder, say) to `out`, with
    /// entry paths relative to it: `./<path>` for its contents, then `./` for the directory
    /// itself. Returns the files and content bytes written.
    pub fn dump_dir(&self, path: &str, out: &mut dyn Write) -> Result<(u64, u64)> {
        let reader = self.blobs();
        match self.node(&reader, path)? {
            Some(node) if node.kind == NodeKind::Dir => archive::write_dir(&reader, &node, out),
            Some(_) => Err(Error::Invalid(format!(
                "{path} is not a directory of this snapshot"
            ))),
            None => Err(Error::NotInSnapshot(path.to_string())),
        }
    }

    /// The names in the directory at `path` (the dumps of a database server, say), in the
    /// tree's order; empty when there is no such directory.
    pub fn list_dir(&self, path: &str) -> Result<Vec<Vec<u8>>> {
        Ok(match self.entries(path) {
            Ok(nodes) => nodes.into_iter().map(|n| n.name).collect(),
            Err(Error::NotInSnapshot(_) | Error::Invalid(_)) => vec![],
            Err(e) => Err(e)?,
        })
    }

    /// What the directory at `path` holds (`""` or `/`: the snapshot's root), in the tree's
    /// order (by name). `Error::NotInSnapshot` when there is nothing at `path`,
    /// `Error::Invalid` when it is no directory.
    pub fn entries(&self, path: &str) -> Result<Vec<Node>> {
        let reader = self.blobs();
        let tree = match path.split('/').all(str::is_empty) {
            true => reader.tree(&self.snapshot.tree)?,
            false => match self.node(&reader, path)? {
                Some(Node {
                    kind: NodeKind::Dir,
                    subtree: Some(sub),
                    ..
                }) => reader.tree(&sub)?,
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                }) => return Ok(vec![]),
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "{path} is not a directory of this snapshot"
                    )));
                }
                None => return Err(Error::NotInSnapshot(path.to_string())),
            },
        };
        Ok(tree.nodes.clone())
    }

    /// Check, without reading any data, that the files or directories at `paths` exist
    /// (`Error::NotInSnapshot` names one that does not) and that everything they need is in
    /// the index and in a pack that exists: before a restore destroys what it replaces, so
    /// that a lost pack stops it first. (Damage inside a pack still shows only when the data is
    /// read.)
    pub fn check_present(&self, paths: &[String]) -> Result<()> {
        let reader = self.blobs();
        let mut pending = vec![];
        for path in paths {
            match self.node(&reader, path)? {
                Some(node) => pending.push(node),
                None => return Err(Error::NotInSnapshot(path.clone())),
            }
        }
        while let Some(node) = pending.pop() {
            for c in &node.content {
                if let Content::Chunk { id, .. } = c {
                    let loc = self
                        .index
                        .lookup(id)
                        .ok_or_else(|| Error::MissingBlob(id.to_hex()))?;
                    if !self.index.listed.contains_key(&loc.pack) {
                        return Err(Error::pack_missing(&loc.pack, id));
                    }
                }
            }
            if let Some(sub) = node.subtree.filter(|_| node.kind == NodeKind::Dir) {
                pending.extend(reader.tree(&sub)?.nodes.iter().cloned());
            }
        }
        Ok(())
    }

    /// Write the content of the file at `path` (a database dump, say) to `out`. Every blob is
    /// checked as it is read; damage is an error. Returns its size.
    pub fn cat(&self, path: &str, out: &mut dyn Write) -> Result<u64> {
        let reader = self.blobs();
        let node = match self.node(&reader, path)? {
            Some(n) if n.kind == NodeKind::File => n,
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "{path} is not a file of this snapshot"
                )));
            }
            None => return Err(Error::NotInSnapshot(path.to_string())),
        };
        let io = |e: std::io::Error| Error::io(path, e);
        // Windows of content read ahead together, planned per pack, written in order.
        let tuning = reader.tuning();
        let window = tuning.segment * 8;
        let mut rest = &node.content[..];
        while !rest.is_empty() {
            let (mut end, mut bytes) = (0, 0);
            while end < rest.len() && bytes < window {
                if let Content::Chunk { len, .. } = rest[end] {
                    bytes += len as usize;
                }
                end += 1;
            }
            let (part, next) = rest.split_at(end);
            let wanted: Vec<(Id, u32)> = part
                .iter()
                .filter_map(|c| match *c {
                    Content::Chunk { id, len } => Some((id, len)),
                    Content::Hole { .. } => None,
                })
                .collect();
            let read = reader.chunks(&wanted, tuning.parallel)?;
            for c in part {
                match *c {
                    Content::Chunk { id, .. } => {
                        out.write_all(&chunk_of(&read, &id)?).map_err(io)?
                    }
                    Content::Hole { len } => {
                        std::io::copy(&mut std::io::repeat(0).take(len), out).map_err(io)?;
                    }
                }
            }
            rest = next;
        }
        out.flush().map_err(io)?;
        Ok(node.size)
    }

    /// Restore the snapshot (or the parts `opts` includes) into the directory `target`.
    pub fn restore(&self, target: &Path, opts: RestoreOptions) -> Result<RestoreSummary> {
        crate::restore::restore(self, target, opts)
    }
}

//! Backup: walk the sources, store new data, hash the archive, write the snapshot.
//!
//! Threads: the walker (the caller's thread) reads, chunks and hashes blob ids; the archive
//! hasher computes the checksum; the pipeline compresses, encrypts, packs and uploads. See
//! `pipeline.rs` and `hasher.rs`. A backup takes a `Backup` lock (it never waits for one).

mod exclude;
mod hasher;
mod known;
mod pipeline;
mod walker;

pub use exclude::Excludes;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fetch;
use crate::id::Id;
use crate::lock::{self, LockKind};
use crate::pack::BlobKind;
use crate::reader::BlobReader;
use crate::repo::{self, Repository};
use crate::snapshot::{self, Snapshot};
use crate::tree::valid_name;

use hasher::{BlobSource, HashMsg, Hasher, ParentArchive};
pub(crate) use hasher::{decode_checkpoints, encode_checkpoints};
use known::Known;
use pipeline::{Pipeline, StoredBlobs};

/// Where the data of one backup item comes from.
pub enum Source {
    /// A file, directory or other filesystem object, walked recursively.
    Path(PathBuf),
    /// A byte stream stored as one regular file (a database dump, stdin).
    Stream(Box<dyn Read + Send>),
    /// A tar stream whose entries become a directory tree (a Docker volume read through the
    /// engine's archive endpoint). Entry paths are relative to the item; `.` is the item itself.
    Tar(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(p) => write!(f, "Path({})", p.display()),
            Source::Stream(_) => f.write_str("Stream"),
            Source::Tar(_) => f.write_str("Tar"),
        }
    }
}

/// One thing to back up, and where it goes in the snapshot.
#[derive(Debug)]
pub struct BackupItem {
    /// Path of the item inside the snapshot, as components.
    components: Vec<Vec<u8>>,
    source: Source,
    /// Take the metadata of the item's parent directories from the disk (for paths backed up
    /// under their own absolute path), rather than making them up.
    ancestors_on_disk: bool,
    /// Recorded in the snapshot's `paths`.
    label: String,
    /// What to leave out of a directory backed up.
    exclude: Excludes,
}

impl BackupItem {
    /// Back up `path` (a directory, file, symlink…) under its own absolute path. Relative
    /// paths and `..` are resolved; the last component is kept as is, so a symlink named here is
    /// backed up as a symlink.
    pub fn path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let resolved = if abs.components().any(|c| c == Component::ParentDir) {
            let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io(path, e));
            match (abs.parent(), abs.file_name()) {
                (Some(parent), Some(name)) => canon(parent)?.join(name),
                _ => canon(&abs)?,
            }
        } else {
            abs
        };
        let mut components = vec![];
        let mut clean = PathBuf::from("/");
        for c in resolved.components() {
            if let Component::Normal(n) = c {
                components.push(n.as_encoded_bytes().to_vec());
                clean.push(n);
            }
        }
        Ok(BackupItem {
            components,
            label: clean.display().to_string(),
            source: Source::Path(clean),
            ancestors_on_disk: true,
            exclude: Excludes::default(),
        })
    }

    /// The same item, leaving out what `exclude` says (for directories).
    pub fn excluding(self, exclude: Excludes) -> Self {
        BackupItem { exclude, ..self }
    }

    /// Back up `source` under `name` (e.g. `"volume-data"` or `"db/app.dump"`) in the snapshot.
    pub fn named(name: &str, source: Source) -> Result<Self> {
        let components: Vec<Vec<u8>> = name.split('/').map(|c| c.as_bytes().to_vec()).collect();
        if components.iter().any(|c| !valid_name(c)) {
            return Err(Error::Invalid(format!(
                "{name:?} is not a valid name inside a snapshot"
            )));
        }
        let label = match &source {
            Source::Path(p) => p.display().to_string(),
            Source::Stream(_) => format!("stdin:{name}"),
            Source::Tar(_) => format!("tar:{name}"),
        };
        Ok(BackupItem {
            components,
            source,
            ancestors_on_disk: false,
            label,
            exclude: Excludes::default(),
        })
    }
}

/// Which earlier snapshot unchanged files are taken from.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The newest snapshot of the same host and paths.
    #[default]
    Auto,
    None,
    Snapshot(Id),
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct BackupOptions {
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub parent: ParentChoice,
    pub time: Option<DateTime<Utc>>,
    pub progress: Option<Arc<Progress>>,
    /// Set to stop the backup early (it then fails with `Error::Interrupted`).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What a backup did, for people and for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub snapshot_id: Id,
    pub parent: Option<Id>,
    pub checksum: String,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    #[serde(flatten)]
    pub counts: BackupCounts,
    pub packs: u64,
    /// Archive bytes hashed for the checksum (the rest was proven identical to the parent's).
    pub archive_bytes_hashed: u64,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
}

/// What the walk found and read.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct BackupCounts {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    /// Bytes read from files and streams.
    pub bytes_read: u64,
    /// Bytes of new (not deduplicated) content, before compression.
    pub bytes_added: u64,
    /// Files and directories left out by the excludes (the contents of a directory left out
    /// are not counted).
    pub excluded: u64,
}

/// Blobs for the hasher: from the index, or stored by this very backup.
struct Readback {
    repo: Repository,
    known: Arc<Known>,
    stored: StoredBlobs,
}

impl BlobSource for Readback {
    fn read(&self, id: &Id) -> Result<Bytes> {
        let loc = self.known.lookup(id)?.or_else(|| self.stored.get(id));
        fetch::read_one(
            &self.repo,
            &loc.ok_or_else(|| Error::MissingBlob(id.to_hex()))?,
        )
    }
}

fn choose_parent(
    repo: &Repository,
    choice: &ParentChoice,
    host: &str,
    paths: &[String],
) -> Result<Option<(Id, Snapshot)>> {
    match choice {
        ParentChoice::None => Ok(None),
        ParentChoice::Snapshot(id) => Ok(Some((*id, snapshot::load(repo, id)?))),
        ParentChoice::Auto => {
            let all = snapshot::list(repo)?.snapshots;
            let mut want = paths.to_vec();
            want.sort();
            Ok(all.into_iter().rev().find(|(_, s)| {
                let mut p = s.paths.clone();
                p.sort();
                s.host == host && p == want
            }))
        }
    }
}

/// Back up `items` into a new snapshot.
pub fn backup(
    repo: &Repository,
    items: Vec<BackupItem>,
    opts: BackupOptions,
) -> Result<BackupSummary> {
    if items.is_empty() {
        return Err(Error::Invalid("nothing to back up".into()));
    }
    let started = Instant::now();
    let time = opts.time.unwrap_or_else(Utc::now);
    let host = opts.host.clone().unwrap_or_else(repo::hostname);
    let _lock = lock::acquire(repo, LockKind::Backup)?;
    // Data in a lost pack is not reused: it is stored again when the files still have it, and
    // the new snapshot never depends on a pack that is gone.
    let (known, lost) = Known::load(repo)?;
    let known = Arc::new(known);
    let paths: Vec<String> = items.iter().map(|i| i.label.clone()).collect();
    let parent = choose_parent(repo, &opts.parent, &host, &paths)?;
    let reader = BlobReader::new(repo, known.trees());

    // What the hasher needs of the parent; a damaged parent only costs speed, never the backup.
    let parent_archive = parent.as_ref().and_then(|(_, p)| {
        let cps = p
            .checkpoints
            .and_then(|id| reader.read_blob(&id).ok())
            .and_then(|d| decode_checkpoints(&d))?;
        Some(ParentArchive {
            checksum: p.checksum.clone(),
            size: p.size_bytes,
            checkpoints: cps,
        })
    });

    let pipeline = Pipeline::start(repo);
    let (hash_tx, hash_rx) = crossbeam_channel::bounded::<Vec<HashMsg>>(4);
    let readback = Readback {
        repo: repo.clone(),
        known: known.clone(),
        stored: pipeline.stored_blobs(),
    };
    let hasher = std::thread::Builder::new()
        .name("coffer-archive-hash".into())
        .spawn(move || Hasher::new(&readback, parent_archive).run(hash_rx))
        .expect("spawn hasher");

    let walked = {
        let mut w = walker::Walker::new(
            repo,
            &known,
            &reader,
            &pipeline,
            hash_tx,
            parent.as_ref().map(|(_, p)| p.tree),
            time,
            opts.progress.clone(),
            opts.cancel.clone(),
        )?;
        let root = w.run(items);
        w.finish_archive(root.is_ok());
        root.map(|root| (root, w.stats, std::mem::take(&mut w.warnings)))
    };
    let hashed = hasher
        .join()
        .map_err(|_| Error::Invalid("the archive hasher crashed".into()))?;
    let (root, stats, mut warnings) = walked?;
    let hashed = hashed?;
    warnings.extend(hashed.warnings);
    if !lost.is_empty() {
        warnings.push(format!(
            "missing or truncated packs: {}: what this backup still had of their data was stored again; run verify to see which older snapshots they damage",
            lost.join(", ")
        ));
    }

    let cp_data = encode_checkpoints(&hashed.checkpoints);
    let cp_id = repo.blob_id(&cp_data);
    if !known.has_tree(&cp_id) {
        pipeline.add(BlobKind::Tree, cp_id, Bytes::from(cp_data))?;
    }
    let stored = pipeline.finish()?;
    let mut snap = Snapshot {
        time,
        host,
        tags: opts.tags,
        paths,
        parent: parent.as_ref().map(|(id, _)| *id),
        tree: root,
        checksum: hashed.checksum,
        size_bytes: hashed.size,
        stored_bytes: stored.stored_bytes,
        file_count: stats.files_new + stats.files_changed + stats.files_unchanged,
        dir_count: stats.dirs,
        checkpoints: Some(cp_id),
        duration_ms: 0,
        warnings: warnings.clone(),
        labels: opts.labels,
    };
    snap.duration_ms = started.elapsed().as_millis() as u64;
    let (snapshot_id, snap_size) = snapshot::save(repo, &snap)?;
    Ok(BackupSummary {
        snapshot_id,
        parent: snap.parent,
        checksum: snap.checksum,
        size_bytes: snap.size_bytes,
        stored_bytes: stored.stored_bytes + snap_size,
        counts: stats,
        archive_bytes_hashed: hashed.hashed,
        packs: stored.packs,
        duration_ms: started.elapsed().as_millis() as u64,
        warnings,
    })
}

//! Snapshots: sealed JSON objects ("CFSN") naming a root tree plus what people and retention
//! need to know about it. A snapshot is written last, after its packs and index: its existence
//! proves that everything it references is stored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::BackendErrorKind;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{self, Repository, SNAPSHOTS};

const MAGIC: &[u8; 4] = b"CFSN";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub time: DateTime<Utc>,
    pub host: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// What was backed up: absolute paths, or `stdin:NAME` for streams.
    pub paths: Vec<String>,
    #[serde(default)]
    pub parent: Option<Id>,
    /// The root tree.
    pub tree: Id,
    /// SHA-256 (hex) of the canonical tar archive of this snapshot (`coffer dump`).
    pub checksum: String,
    /// Size in bytes of that archive.
    pub size_bytes: u64,
    /// Bytes this snapshot added to the repository (new packs, index, snapshot).
    pub stored_bytes: u64,
    pub file_count: u64,
    pub dir_count: u64,
    /// Blob with SHA-256 checkpoints of the archive, so that the next backup can resume hashing.
    #[serde(default)]
    pub checkpoints: Option<Id>,
    pub duration_ms: u64,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Free-form labels for callers (the server marks jobs, records and safety snapshots).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn save(repo: &Repository, s: &Snapshot) -> Result<(Id, u64)> {
    let json = serde_json::to_vec(s).expect("snapshot serializes");
    repo.write_object(SNAPSHOTS, MAGIC, json)
}

pub fn load(repo: &Repository, id: &Id) -> Result<Snapshot> {
    let data = repo.read_object(SNAPSHOTS, id, MAGIC)?;
    serde_json::from_slice(&data).map_err(|e| {
        Error::damaged(
            repo::object_name(SNAPSHOTS, id),
            format!("it is not a valid snapshot: {e}"),
        )
    })
}

/// The snapshots of a repository.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every readable snapshot, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Why the others could not be read.
    pub damaged: Vec<Error>,
}

pub fn list(repo: &Repository) -> Result<Listing> {
    let mut out = vec![];
    let mut damaged = vec![];
    let listed = repo.backend().list(SNAPSHOTS)?;
    repo.forget_unlisted(SNAPSHOTS, listed.iter().map(|o| o.name.as_str()));
    for obj in listed {
        let Some(id) = repo::id_of_name(&obj.name) else {
            continue;
        };
        match load(repo, &id) {
            Ok(s) => out.push((id, s)),
            Err(Error::Backend(e)) if e.kind == BackendErrorKind::NotFound => {}
            Err(e) if e.is_damage() => damaged.push(e),
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok(Listing {
        snapshots: out,
        damaged,
    })
}

/// Resolve what a user typed: `latest`, a full id or a unique id prefix.
pub fn find(repo: &Repository, spec: &str) -> Result<(Id, Snapshot)> {
    let spec = spec.trim();
    if spec == "latest" {
        return list(repo)?
            .snapshots
            .into_iter()
            .next_back()
            .ok_or_else(|| Error::SnapshotNotFound(spec.into()));
    }
    if spec.is_empty() || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::SnapshotNotFound(spec.into()));
    }
    let spec_lc = spec.to_ascii_lowercase();
    let names = repo.backend().list(SNAPSHOTS)?;
    let matches: Vec<Id> = names
        .iter()
        .filter_map(|o| repo::id_of_name(&o.name))
        .filter(|id| id.to_hex().starts_with(&spec_lc))
        .collect();
    match matches.as_slice() {
        [] => Err(Error::SnapshotNotFound(spec.into())),
        [id] => Ok((*id, load(repo, id)?)),
        _ => Err(Error::AmbiguousSnapshot(spec.into())),
    }
}

/// Remove a snapshot. Its data stays until `prune`.
pub fn remove(repo: &Repository, id: &Id) -> Result<()> {
    repo.backend().delete(&repo::object_name(SNAPSHOTS, id))?;
    Ok(())
}

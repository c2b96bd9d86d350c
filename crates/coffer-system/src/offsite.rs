//! Copies of system backups in a repository away from the data directory ("offsite").
//!
//! Each copy is a snapshot holding the zip as `coffer-system.zip`, labelled
//! `coffer.system_backup` with the zip's name; the newest `keep` are kept. The zip's secrets
//! are sealed under the system passphrase, and the repository gets a key file that the same
//! passphrase opens, so that a machine that has nothing but the repository's address and the
//! passphrase can take the newest copy back (`coffer system recover --repo`).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use coffer_repo::prune::{self, PruneOptions};
use coffer_repo::{
    BackupItem, BackupOptions, Id, KdfParams, ParentChoice, Repository, Secret, Snapshot, Source,
};

use crate::{Result, io};

/// The label of a copy; its value is the system backup's file name.
pub const LABEL: &str = "coffer.system_backup";
/// The zip's name inside a copy.
const FILE: &str = "coffer-system.zip";

/// What storing a copy did.
#[derive(Debug, Clone)]
pub struct Stored {
    pub snapshot: Id,
    /// Older copies removed by the retention.
    pub forgotten: usize,
}

/// Store the system backup `zip` (named `name`, its secrets sealed under `passphrase`) in
/// `repo`, make sure `passphrase` opens the repository, and keep the `keep` newest copies.
pub fn store(
    repo: &Repository,
    zip: &Path,
    name: &str,
    passphrase: &str,
    keep: usize,
) -> Result<Stored> {
    if repo.is_encrypted() {
        let secret = Secret::Password(passphrase.to_string());
        match Repository::open(repo.backend().clone(), Some(&secret)) {
            Ok(_) => {}
            Err(coffer_repo::Error::WrongPassword) => {
                repo.add_key(passphrase, KdfParams::default())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let item = BackupItem::named(FILE, Source::Path(zip.to_path_buf()))?;
    let opts = BackupOptions {
        labels: BTreeMap::from([(LABEL.to_string(), name.to_string())]),
        parent: ParentChoice::None,
        ..Default::default()
    };
    let summary = coffer_repo::backup(repo, vec![item], opts)?;
    let old: Vec<Id> = copies(repo)?
        .into_iter()
        .skip(keep.max(1))
        .map(|(id, _)| id)
        .collect();
    if !old.is_empty() {
        coffer_repo::forget::forget_ids(repo, &old, false)?;
        // Their data goes with the next prune that can run: one running now (or a backup of a
        // job into the same repository) leaves it for later.
        match prune::prune(repo, &PruneOptions { dry_run: false }) {
            Ok(_) | Err(coffer_repo::Error::Locked(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Stored {
        snapshot: summary.snapshot_id,
        forgotten: old.len(),
    })
}

/// The copies in `repo`, newest first.
fn copies(repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
    let mut all: Vec<(Id, Snapshot)> = coffer_repo::snapshot::list(repo)?
        .snapshots
        .into_iter()
        .filter(|(_, s)| s.labels.contains_key(LABEL))
        .collect();
    all.sort_by_key(|(_, s)| std::cmp::Reverse(s.time));
    Ok(all)
}

/// Write the newest copy in `repo` to `into` (a new file, private, synced; nothing when the
/// copy cannot be read whole) and return its name; `None` when the repository holds no copy.
pub fn fetch_newest(repo: &Repository, into: &Path) -> Result<Option<String>> {
    let Some((id, snapshot)) = copies(repo)?.into_iter().next() else {
        return Ok(None);
    };
    let reader = repo.open_snapshot(&id)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(into)
        .map_err(io(into.display()))?;
    let written = (|| -> Result<()> {
        reader.cat(FILE, &mut file)?;
        file.flush()
            .and_then(|()| file.sync_all())
            .map_err(io(into.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(into);
    }
    written?;
    Ok(Some(snapshot.labels[LABEL].clone()))
}

//! The blocking side of a run: open (or create) the job's repository and back its sources up;
//! verify and dump a record's snapshot. Called on the blocking thread pool.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coffer_repo::verify::{self, VerifyOptions};
use coffer_repo::{
    BackupItem, BackupOptions, BackupSummary, Id, InitOptions, KdfParams, Location, ParentChoice,
    Repository, Secret,
};
use coffer_types::{Source, VerifyResult};

/// The repository key is 256 random bits, not a human password: a light KDF is enough.
const KDF: KdfParams = KdfParams {
    m_cost: 8 * 1024,
    t_cost: 1,
    p_cost: 1,
};

fn backend(dest: &Path) -> Result<Arc<dyn coffer_repo::Backend>, String> {
    let location = Location::parse(&dest.display().to_string())?;
    location.open(None).map_err(|e| e.to_string())
}

fn open(dest: &Path, key: Option<&str>) -> Result<Repository, String> {
    let backend = backend(dest)?;
    let secret = key.map(|k| Secret::Password(k.to_string()));
    Repository::open(backend, secret.as_ref()).map_err(|e| e.to_string())
}

/// Open the job's repository, creating it on the first run.
fn open_or_init(dest: &Path, key: Option<&str>) -> Result<Repository, String> {
    if dest.join("config").exists() {
        return open(dest, key);
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let backend = backend(dest)?;
    let opts = InitOptions {
        kdf: KDF,
        ..InitOptions::default()
    };
    Repository::init(backend, key, opts).map_err(|e| e.to_string())
}

fn item(source: &Source) -> Result<BackupItem, String> {
    match source {
        Source::Path { path, exclude } if exclude.is_empty() => {
            let p = Path::new(path);
            std::fs::symlink_metadata(p).map_err(|e| format!("source {path}: {e}"))?;
            BackupItem::path(p).map_err(|e| format!("source {path}: {e}"))
        }
        Source::Path { path, .. } => Err(format!(
            "source {path}: exclude patterns are not supported by this version"
        )),
        Source::Sqlite { path } => Err(format!(
            "source {path}: SQLite sources are not supported by this version"
        )),
        Source::Volume { name } => Err(format!(
            "volume {name}: Docker volume sources are not supported by this version"
        )),
    }
}

pub fn backup(
    dest: &Path,
    key: Option<&str>,
    sources: &[Source],
    tags: Vec<String>,
    cancel: Arc<AtomicBool>,
) -> Result<BackupSummary, String> {
    let items = sources.iter().map(item).collect::<Result<Vec<_>, _>>()?;
    let repo = open_or_init(dest, key)?;
    let opts = BackupOptions {
        tags,
        parent: ParentChoice::Auto,
        cancel: Some(cancel),
        ..Default::default()
    };
    coffer_repo::backup(&repo, items, opts).map_err(|e| e.to_string())
}

fn snapshot_id(id: &str) -> Result<Id, String> {
    id.parse::<Id>()
        .map_err(|_| format!("the record names an invalid snapshot {id:?}"))
}

/// Re-read everything the snapshot references and recompute its archive checksum.
pub fn verify(dest: &Path, key: Option<&str>, snapshot: &str, expected: &str) -> VerifyResult {
    let run = || -> Result<VerifyResult, String> {
        let repo = open(dest, key)?;
        let opts = VerifyOptions {
            snapshots: Some(vec![snapshot_id(snapshot)?]),
            quick: false,
        };
        let report = verify::verify(&repo, &opts).map_err(|e| e.to_string())?;
        let checksum = report.checksums.get(snapshot).cloned();
        let damaged: Vec<String> = report
            .problems
            .iter()
            .map(|p| {
                let files = if p.files.is_empty() {
                    String::new()
                } else {
                    format!(" (affects {})", p.files.join(", "))
                };
                format!("{}: {}{files}", p.object, p.error)
            })
            .collect();
        let ok = report.ok && checksum.as_deref() == Some(expected);
        Ok(VerifyResult {
            ok,
            error: (!ok).then(|| "checksum mismatch".to_string()),
            checksum,
            damaged,
        })
    };
    run().unwrap_or_else(|e| VerifyResult {
        ok: false,
        checksum: None,
        error: Some(format!("checksum mismatch: {e}")),
        damaged: vec![],
    })
}

/// Write the snapshot's canonical archive to `out`.
pub fn dump(
    dest: &Path,
    key: Option<&str>,
    snapshot: &str,
    out: &mut dyn Write,
) -> Result<(), String> {
    let repo = open(dest, key)?;
    coffer_repo::dump(&repo, &snapshot_id(snapshot)?, out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Remove a record's snapshot from the repository (its data goes with the next prune).
pub fn forget(dest: &Path, key: Option<&str>, snapshot: &str) -> Result<(), String> {
    let repo = open(dest, key)?;
    coffer_repo::forget::forget_ids(&repo, &[snapshot_id(snapshot)?], false)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

//! What works on a data directory directly: its lock, and system backups made from its
//! database (by the server, or by `coffer system backup --local` while no server runs on it).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use coffer_db::Db;

use crate::archive;
use crate::{BackupFile, Folder, Kind, Result, SystemError, io};

/// The file a server holds locked while it runs on a data directory.
const LOCK: &str = ".coffer.lock";
/// The server key, beside the database.
pub const SERVER_KEY: &str = "server.key";

/// A data directory held by one process: the lock is the kernel's (`flock`), so a process
/// that dies, however it dies, leaves nothing stuck.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Hold `data_dir` for this process; refused while another process (a running server) holds
/// it.
pub fn lock(data_dir: &Path) -> Result<DirLock> {
    let path = data_dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DirLock { _file: file, path }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(SystemError::Refused(format!(
            "another Coffer process (a running server) is using {}: stop it, or work through its API",
            data_dir.display()
        ))),
        Err(e) => Err(io(path.display())(e.into())),
    }
}

/// Make a system backup of `kind` of the database `db` of `data_dir` in `folder`: every
/// table, the configuration file `config` the server runs with, and the secrets sealed under
/// `passphrase` when given.
pub async fn system_backup(
    db: &Db,
    data_dir: &Path,
    folder: &Folder,
    coffer_version: &str,
    config: Option<&Path>,
    kind: Kind,
    passphrase: Option<&str>,
) -> Result<BackupFile> {
    let tables = db.dump_tables().await?;
    let server_key = server_key(data_dir)?;
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let config = match config {
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "coffer.toml".into());
            let bytes = std::fs::read(path).map_err(io(path.display()))?;
            Some((name, bytes))
        }
        None => None,
    };
    let about = archive::About {
        coffer_version,
        host: &host,
        server_key: &server_key,
        config,
    };
    folder.write(kind, None, |into| {
        let file = std::fs::File::create(into).map_err(io(into.display()))?;
        archive::write(file, &tables, &about, passphrase)?;
        Ok(())
    })
}

fn server_key(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join(SERVER_KEY);
    std::fs::read(&path).map_err(io(path.display()))
}

/// The fingerprint of the server key of `data_dir`, as system backups record it.
pub fn server_key_id(data_dir: &Path) -> Result<String> {
    Ok(archive::key_id(&server_key(data_dir)?))
}

/// Read the system backup at `path` and check all of it (see [`archive::read`]).
pub fn read_backup(path: &Path) -> Result<archive::Opened> {
    let file = std::fs::File::open(path).map_err(io(path.display()))?;
    Ok(archive::read(file, coffer_db::schema_version())?)
}

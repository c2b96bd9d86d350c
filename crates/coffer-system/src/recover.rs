//! Recovery on a new machine: a data directory built from a system backup, for `coffer serve`
//! to start with every user, key, job, record, credential and repository it had.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use coffer_db::{Db, Tables};

use crate::archive::{self, SECRET_TABLES};
use crate::{Result, SystemError, io};

/// What a recovery did.
#[derive(Debug)]
pub struct Recovered {
    pub manifest: archive::Manifest,
    /// Whether the server key came back (without it, stored secrets do not open).
    pub with_secrets: bool,
    /// Where the configuration file the server ran with was written, if it had one.
    pub config: Option<std::path::PathBuf>,
}

/// Build the data directory `data_dir` (empty or missing) from the system backup `zip`. A
/// backup with secrets needs `passphrase`; without secrets the database comes back, but what
/// its server key sealed (passwords, secret keys, the repository key) does not open. The
/// configuration file the server ran with, if any, is written to `<data_dir>/config/`.
pub async fn recover(zip: &Path, data_dir: &Path, passphrase: Option<&str>) -> Result<Recovered> {
    let database = data_dir.join("coffer.db");
    if database.exists() {
        return Err(SystemError::Refused(format!(
            "{} already holds a Coffer database: recover into an empty data directory",
            data_dir.display()
        )));
    }
    let opened = crate::read_backup(zip)?;
    let secrets = match (opened.manifest.secrets_included, passphrase) {
        (false, _) => None,
        (true, None) => {
            return Err(SystemError::Refused(
                "this system backup holds sealed secrets: give its passphrase".into(),
            ));
        }
        (true, Some(p)) => opened.secrets(p)?,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(io(data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(data_dir.display()))?;
    let _held = crate::lock(data_dir)?;
    let mut tables = Tables {
        schema: opened.tables.schema,
        rows: opened.tables.rows.clone(),
    };
    let absent: &[&str] = match &secrets {
        Some(s) => {
            let key = hex::decode(&s.server_key)
                .ok()
                .filter(|k| archive::key_id(k) == opened.manifest.server_key_id)
                .ok_or_else(|| {
                    SystemError::Refused(
                        "its sealed server key is not the one its manifest names".into(),
                    )
                })?;
            write_private(&data_dir.join("server.key"), &key)?;
            let secret_tables: BTreeMap<_, _> = s.tables.clone().into_iter().collect();
            tables.rows.extend(secret_tables);
            &[]
        }
        None => &SECRET_TABLES,
    };
    // An older Coffer's tables are migrated first, as its database would have been.
    let tables = tables
        .migrated(&data_dir.join(".coffer-recover-scratch.db"), absent)
        .await?;
    let config = match &opened.config {
        Some((name, bytes)) => {
            let dir = data_dir.join("config");
            std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
            write_private(&dir.join(name), bytes)?;
            Some(dir.join(name))
        }
        None => None,
    };
    let db = Db::open(&database).await?;
    db.replace_tables(&tables, absent).await?;
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let p = data_dir.join(format!("coffer.db{suffix}"));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(io(p.display()))?;
        }
    }
    Ok(Recovered {
        manifest: opened.manifest,
        with_secrets: secrets.is_some(),
        config,
    })
}

/// Write `bytes` to `path`, 0600, synced, under a temporary name renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(tmp.display()))?;
    f.write_all(bytes).map_err(io(tmp.display()))?;
    f.sync_all().map_err(io(tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(io(path.display()))?;
    let dir = path.parent().expect("a file in a directory");
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir.display()))
}

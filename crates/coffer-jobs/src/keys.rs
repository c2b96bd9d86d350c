//! The key of job repositories: 256 random bits (as hex) that every encrypted job repository
//! opens with. The job service owns it: it is sealed at rest with the server key like the
//! secrets of credentials, an admin can export it for safe keeping, and it is never a setting
//! that one call could overwrite (which would orphan every encrypted repository).

use coffer_db::Db;
use coffer_types::Job;

use crate::{Jobs, JobsError, Result, Vault};

/// The setting in which earlier versions kept the key in clear (moved out at start-up).
pub const KEY_SETTING: &str = "backup_encryption_key";
/// Its name among the server's secrets, and what the sealed value is bound to.
const SECRET: &str = "repository_key";
const CONTEXT: &str = "repository-key";

/// Earlier versions kept the key in clear in the settings: seal it, then remove the setting
/// (in that order, so that a crash in between loses nothing).
pub(crate) async fn move_out_of_settings(db: &Db, vault: &Vault) -> Result<()> {
    let Some(setting) = db.setting(KEY_SETTING).await? else {
        return Ok(());
    };
    let serde_json::Value::String(key) = setting.value else {
        return Err(JobsError::Unusable(format!(
            "the setting {KEY_SETTING} is not a string: set it back to the key the repositories \
             were made with"
        )));
    };
    let sealed = vault.seal(&key, CONTEXT);
    let stored = db.secret(SECRET, || sealed).await?;
    if vault.open(&stored, CONTEXT).map_err(JobsError::Unusable)? != key {
        return Err(JobsError::Unusable(format!(
            "the setting {KEY_SETTING} differs from the repository key this server keeps: remove \
             the one that does not open the repositories"
        )));
    }
    db.delete_setting(KEY_SETTING).await?;
    tracing::info!(
        "the repository key moved out of the settings; it is sealed with the server key"
    );
    Ok(())
}

impl Jobs {
    /// The key of the job repositories, made on first use.
    async fn repository_key(&self) -> Result<String> {
        let sealed = match self.db.find_secret(SECRET).await? {
            Some(s) => s,
            None => {
                let fresh = self.vault.seal(&hex::encode(crate::random_key()), CONTEXT);
                // Two first uses racing: the first insert wins, both read what it stored.
                self.db.secret(SECRET, || fresh).await?
            }
        };
        self.vault
            .open(&sealed, CONTEXT)
            .map_err(JobsError::Unusable)
    }

    /// The key `job`'s repository opens with (none: unencrypted).
    pub(crate) async fn key(&self, job: &Job) -> Result<Option<String>> {
        match job.encrypted {
            true => self.repository_key().await.map(Some),
            false => Ok(None),
        }
    }

    /// The repository key for safe keeping: with it, `coffer --password-file` opens every
    /// encrypted job repository, and `coffer decrypt` every sealed download.
    pub async fn export_repository_key(&self) -> Result<String> {
        self.repository_key().await
    }
}

//! The key of job repositories: 256 random bits (as hex) that every encrypted job repository
//! opens with. The job service owns it: it is sealed at rest with the server key like the
//! secrets of credentials, an admin can export it for safe keeping, and it is never a setting
//! that one call could overwrite (which would orphan every encrypted repository).
//!
//! Rotation replaces it without ever leaving a repository that no stored key opens: the new
//! key is added to every encrypted repository first (a failure removes it again and changes
//! nothing), then it replaces the old one in the database, and only then is the old key
//! removed from the repositories. Backups wait while a rotation runs, so that none creates a
//! repository with the old key in the middle of it.

use coffer_db::Db;
use coffer_types::{Job, KeyRotation};

use crate::target::{self, Target};
use crate::{Jobs, JobsError, Result, Vault, blocking};

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
    if vault.open(&stored, CONTEXT)? != key {
        return Err(JobsError::Unusable(format!(
            "the setting {KEY_SETTING} differs from the repository key this server keeps: remove \
             the one that does not open the repositories"
        )));
    }
    db.erase_setting(KEY_SETTING).await?;
    tracing::info!(
        "the repository key moved out of the settings; it is sealed with the server key"
    );
    Ok(())
}

impl Jobs {
    /// The key of the job repositories, made on first use.
    pub(crate) async fn repository_key(&self) -> Result<String> {
        let sealed = match self.db.find_secret(SECRET).await? {
            Some(s) => s,
            None => {
                let fresh = self.vault.seal(&hex::encode(crate::random_key()), CONTEXT);
                // Two first uses racing: the first insert wins, both read what it stored.
                self.db.secret(SECRET, || fresh).await?
            }
        };
        Ok(self.vault.open(&sealed, CONTEXT)?)
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

impl Jobs {
    /// Every encrypted repository the server knows, opened with `key`: those of its jobs, the
    /// registered ones and the binary log archives, each once.
    async fn encrypted_targets(&self, key: &str) -> Result<Vec<Target>> {
        let mut out: Vec<Target> = vec![];
        let key = Some(key.to_string());
        for job in self.db.jobs().await?.into_iter().filter(|j| j.encrypted) {
            let t = Target {
                key: key.clone(),
                ..self.target(&job).await?
            };
            out.push(t);
        }
        for r in self
            .db
            .resources::<coffer_types::Repository>()
            .await?
            .into_iter()
            .filter(|r| r.encrypted)
        {
            out.push(self.registered_target(r, key.clone()).await?);
        }
        for c in self.db.resources::<coffer_types::Credential>().await? {
            if c.engine == coffer_types::DbEngine::Mysql {
                let t = self.pitr_target(&c).await?;
                out.push(Target {
                    key: key.clone(),
                    ..t
                });
            }
        }
        out.sort_by_key(|t| t.location.to_string());
        out.dedup_by_key(|t| t.location.to_string());
        Ok(out)
    }

    /// Replace the repository key with a new random one (see the module's documentation).
    pub async fn rotate_repository_key(&self) -> Result<KeyRotation> {
        let _no_backups = self.key_rotation.write().await;
        let old = self.repository_key().await?;
        let new = hex::encode(crate::random_key());
        let targets = self.encrypted_targets(&old).await?;
        let mut added = vec![];
        for t in &targets {
            let (t2, n) = (t.clone(), new.clone());
            match blocking(move || target::add_key(&t2, &n)).await {
                Ok(true) => added.push(t.clone()),
                Ok(false) => {} // not made yet: it will be made with the new key
                Err(e) => {
                    for t in added {
                        let n = new.clone();
                        let _ = blocking(move || target::remove_key(&t, &n)).await;
                    }
                    return Err(e.context(&format!(
                        "the repository at {} did not take the new key, so nothing changed",
                        t.location
                    )));
                }
            }
        }
        self.db
            .replace_secret(SECRET, &self.vault.seal(&new, CONTEXT))
            .await?;
        tracing::info!(
            repositories = added.len(),
            "the repository key was replaced"
        );
        let mut warnings = vec![];
        for t in &added {
            let t = Target {
                key: Some(new.clone()),
                ..t.clone()
            };
            let (location, o) = (t.location.to_string(), old.clone());
            if let Err(e) = blocking(move || target::remove_key(&t, &o)).await {
                warnings.push(format!(
                    "{location}: the old key still opens it too (removing it failed: {e})"
                ));
            }
        }
        Ok(KeyRotation {
            repositories: added.len() as u64,
            warnings,
        })
    }
}

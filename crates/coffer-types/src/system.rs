//! Coffer's own data backed up: snapshots of the metadata database, and the server's own
//! scheduled tasks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A snapshot of the metadata database, kept in `<data_dir>/system-backups/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetaBackup {
    /// `coffer-backup-YYYY-MM-DD_HH-MM-SS.db`.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// When it was taken, in seconds since the Unix epoch.
    pub created_at: i64,
    /// A system backup just made: its copy in the repository `system.offsite_repository`
    /// names, when one is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<OffsiteCopy>,
}

/// A copy of a system backup in the repository the setting `system.offsite_repository` names,
/// its secrets sealed under the server's system passphrase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OffsiteCopy {
    pub repository_id: String,
    /// The snapshot that holds it; absent when the copy failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Why the copy failed (the system backup itself was made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/backup`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MetaBackups {
    /// Newest first.
    pub backups: Vec<MetaBackup>,
    /// The directory they are kept in.
    pub dir: String,
}

/// `POST /api/backup`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MetaBackupTaken {
    pub success: bool,
    pub backup: MetaBackup,
}

/// `DELETE /api/backup`: which snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetaBackupName {
    pub name: String,
}

/// The answer of an action that has nothing more to say.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    pub success: bool,
}

/// One of the server's own scheduled tasks.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerTask {
    /// `auto_backup`.
    pub id: String,
    pub name: String,
    /// When it runs, as a cron expression in UTC.
    pub schedule: String,
    pub enabled: bool,
    pub last_run: Option<DateTime<Utc>>,
    /// `success`, or `failed: <why>`.
    pub last_status: Option<String>,
    /// When it runs next (if enabled).
    pub next_run: DateTime<Utc>,
}

/// `GET /api/scheduler`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerTasks {
    pub tasks: Vec<ServerTask>,
}

/// `POST /api/scheduler`: run a task now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunServerTask {
    pub task_id: String,
}

/// `POST /api/scheduler`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerTaskRun {
    pub success: bool,
    pub task_id: String,
    /// What it did, or why it failed.
    pub message: String,
}

/// `PUT /api/settings`: several settings at once (each checked before any is stored).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// What `GET /api/export` answers and `POST /api/import` takes: the configuration, without a
/// secret (API types never carry one) — users without passwords, credentials and repositories
/// without their secrets, settings without the repository key.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Export {
    /// `coffer-export`.
    pub format: String,
    /// 1.
    pub version: u32,
    pub coffer_version: String,
    pub exported_at: DateTime<Utc>,
    pub users: Vec<crate::User>,
    pub repositories: Vec<crate::Repository>,
    pub credentials: Vec<crate::Credential>,
    pub jobs: Vec<crate::Job>,
    pub settings: Vec<crate::Setting>,
}

/// One item of an import, and why it was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportItem {
    /// `user`, `repository`, `credential`, `job` or `setting`.
    pub kind: String,
    /// Its id in the document (a setting's key).
    pub id: String,
    pub name: String,
    /// Why it was skipped, or what to do about it once added (a user has no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What `POST /api/import` did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    pub added: Vec<ImportItem>,
    pub skipped: Vec<ImportItem>,
}

/// `POST /api/system/backups`: with `include_secrets=true`, the passphrase that seals them
/// (12 characters or more).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemBackupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
}

/// What a system restore did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemRestored {
    pub success: bool,
    /// The system backup of what was replaced (`pre_restore_….zip`).
    pub pre_restore: String,
    /// Rows restored per table.
    pub tables: std::collections::BTreeMap<String, usize>,
}

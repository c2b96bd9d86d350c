//! Coffer backing up its own metadata database: the snapshots `coffer_system` takes, their
//! settings (`general.backup_retention_count`, `general.auto_backup`), the server's own
//! scheduled task `auto_backup` (daily at 03:00 UTC when enabled), and system backups made and
//! restored on the running server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use coffer_system::archive::{self, ArchiveError};
use coffer_system::{BackupFile, SystemError};
use coffer_types::{OffsiteCopy, ServerTask};

use crate::AppState;
use crate::error::ApiError;

/// How many snapshots are kept (a positive integer; 10 when unset).
pub const RETENTION: &str = "general.backup_retention_count";
/// `"true"`: a snapshot every day at 03:00 UTC.
pub const AUTO_BACKUP: &str = "general.auto_backup";
/// The id of a registered repository that every system backup is also copied into (and the
/// daily task, when enabled, makes one for); empty or unset: none.
pub const OFFSITE_REPOSITORY: &str = "system.offsite_repository";
/// How many copies that repository keeps (a positive integer; 7 when unset).
pub const OFFSITE_KEEP: &str = "system.offsite_keep";
const DEFAULT_OFFSITE_KEEP: usize = 7;
pub const AUTO_BACKUP_TASK: &str = "auto_backup";
const DEFAULT_RETENTION: usize = 10;
const AUDIT: &str = "audit";
const AT: NaiveTime = NaiveTime::from_hms_opt(3, 0, 0).expect("a time of day");

impl From<SystemError> for ApiError {
    fn from(e: SystemError) -> Self {
        match e {
            SystemError::BadName { .. }
            | SystemError::Refused(_)
            | SystemError::Archive(ArchiveError::Invalid(_) | ArchiveError::WrongPassphrase) => {
                ApiError::BadRequest(e.to_string())
            }
            SystemError::Db(e) => e.into(),
            SystemError::NotFound(_) => ApiError::NotFound(e.to_string()),
            SystemError::Io { source, .. } if crate::error::is_disk_full(&source) => {
                ApiError::io(source)
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// A positive whole number, given as a number or as text.
fn positive(v: &serde_json::Value) -> Option<usize> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| *n > 0)
}

/// `true` or `false`, given as a boolean or as text.
fn flag(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Refuse a value the server could not use for a setting it reads.
pub async fn check_setting(
    state: &AppState,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), ApiError> {
    if key != OFFSITE_REPOSITORY {
        return check_value(key, value);
    }
    let invalid = |message: String| ApiError::Invalid {
        field: OFFSITE_REPOSITORY.into(),
        message,
    };
    let id = match value {
        serde_json::Value::Null => return Ok(()),
        serde_json::Value::String(s) if s.is_empty() => return Ok(()),
        serde_json::Value::String(s) => s,
        _ => {
            return Err(invalid(format!(
                "{key} must be a repository's id, not {value}"
            )));
        }
    };
    if state.system_passphrase.is_none() {
        return Err(invalid(
            "copies of system backups are sealed under the system passphrase: start the server with COFFER_SYSTEM_PASSPHRASE (or COFFER_SYSTEM_PASSPHRASE_FILE) set"
                .into(),
        ));
    }
    match state.db.resource::<coffer_types::Repository>(id).await {
        Ok(_) => Ok(()),
        Err(coffer_db::DbError::NotFound(_)) => Err(invalid(format!(
            "no registered repository has the id {id:?}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Refuse a value of a setting that needs nothing but itself to be checked.
fn check_value(key: &str, value: &serde_json::Value) -> Result<(), ApiError> {
    let count = |field| (field, positive(value).is_some(), "a positive whole number");
    let (field, ok, expected) = match key {
        RETENTION => count(RETENTION),
        OFFSITE_KEEP => count(OFFSITE_KEEP),
        AUTO_BACKUP => (AUTO_BACKUP, flag(value).is_some(), "\"true\" or \"false\""),
        coffer_jobs::PING_HOSTS => (
            coffer_jobs::PING_HOSTS,
            serde_json::from_value::<Vec<String>>(value.clone()).is_ok(),
            "a list of host names (with :port where it is not the usual one)",
        ),
        _ => return Ok(()),
    };
    match ok {
        true => Ok(()),
        false => Err(ApiError::Invalid {
            field: field.into(),
            message: format!("{key} must be {expected}, not {value}"),
        }),
    }
}

async fn setting(state: &AppState, key: &str) -> Result<Option<serde_json::Value>, ApiError> {
    Ok(state.db.setting(key).await?.map(|s| s.value))
}

/// Take a snapshot now and apply the retention.
pub async fn take(state: &Arc<AppState>) -> Result<BackupFile, ApiError> {
    let keep = setting(state, RETENTION)
        .await?
        .as_ref()
        .and_then(positive)
        .unwrap_or(DEFAULT_RETENTION);
    let s = state.clone();
    let taken =
        tokio::task::spawn_blocking(move || coffer_system::snapshot(&s.backups, &s.db_path, keep))
            .await
            .map_err(|e| ApiError::Internal(format!("the backup stopped unexpectedly: {e}")))??;
    tracing::info!(backup = %taken.name, size = taken.size, "backed up the metadata database");
    Ok(taken)
}

/// Make a system backup of `kind`: every table, with the secrets sealed under `passphrase`
/// when given.
pub async fn system_backup(
    state: &Arc<AppState>,
    kind: coffer_system::Kind,
    passphrase: Option<&coffer_system::Passphrase>,
) -> Result<BackupFile, ApiError> {
    Ok(coffer_system::system_backup(
        &state.db,
        &state.data_dir,
        &state.backups,
        state.version,
        state.config_file.as_deref(),
        kind,
        passphrase.map(coffer_system::Passphrase::expose),
    )
    .await?)
}

/// When the settings name a repository: a system backup made for it, its secrets sealed under
/// the system passphrase, copied into it (the newest `system.offsite_keep` kept) and removed
/// here. A copy that failed says why; the caller's own backup stands either way.
pub async fn offsite_copy(state: &Arc<AppState>) -> Result<Option<OffsiteCopy>, ApiError> {
    let Some(repository_id) = setting(state, OFFSITE_REPOSITORY)
        .await?
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|id| !id.is_empty())
    else {
        return Ok(None);
    };
    let keep = setting(state, OFFSITE_KEEP)
        .await?
        .as_ref()
        .and_then(positive)
        .unwrap_or(DEFAULT_OFFSITE_KEEP);
    let copy = async {
        let passphrase = state.system_passphrase.clone().ok_or_else(|| {
            ApiError::Conflict(
                "the server has no system passphrase (COFFER_SYSTEM_PASSPHRASE) to seal the copy's secrets under"
                    .into(),
            )
        })?;
        let made = system_backup(state, coffer_system::OFFSITE, Some(&passphrase)).await?;
        let stored = async {
            let repo = state.jobs.open_registered(&repository_id).await?;
            let zip = state.backups.path(&made.name, coffer_system::OFFSITE.suffix)?;
            let name = made.name.clone();
            tokio::task::spawn_blocking(move || {
                coffer_system::offsite::store(&repo, &zip, &name, passphrase.expose(), keep)
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
        }
        .await;
        let _ = state
            .backups
            .delete(&made.name, coffer_system::OFFSITE.suffix);
        stored
    }
    .await;
    Ok(Some(match copy {
        Ok(stored) => {
            tracing::info!(repository = %repository_id, snapshot = %stored.snapshot, forgotten = stored.forgotten, "copied a system backup offsite");
            OffsiteCopy {
                repository_id,
                snapshot: Some(stored.snapshot.to_hex()),
                error: None,
            }
        }
        Err(e) => {
            tracing::warn!(repository = %repository_id, error = %e, "the offsite copy of a system backup failed");
            OffsiteCopy {
                repository_id,
                snapshot: None,
                error: Some(e.to_string()),
            }
        }
    }))
}

/// Replace every table with those of the system backup at `path`, after checking all of it
/// and keeping a `pre_restore_…` system backup of what it replaces. Sessions stay for the
/// users the backup has; the token signing key and the audit log stay.
pub async fn system_restore(
    state: &Arc<AppState>,
    path: std::path::PathBuf,
) -> Result<coffer_types::SystemRestored, ApiError> {
    let s = state.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let opened = coffer_system::read_backup(&path)?;
        Ok::<_, SystemError>((opened, coffer_system::server_key_id(&s.data_dir)?))
    })
    .await
    .map_err(ApiError::internal)?;
    let (opened, key_here) = opened?;
    if opened.manifest.server_key_id != key_here {
        return Err(ApiError::Conflict(
            "this system backup belongs to another server key: the secrets sealed in it would not open here. \
             Recover it on a stopped server with `coffer system recover`"
                .into(),
        ));
    }
    // An older Coffer's tables are migrated first, as its database would have been.
    let scratch = state.scratch_file("system-restore", "db").await?;
    let mut tables = opened
        .tables
        .migrated(&scratch, &archive::SECRET_TABLES)
        .await
        .map_err(|e| match e {
            coffer_db::DbError::DiskFull => e.into(),
            e => ApiError::BadRequest(format!(
                "its tables do not fit the schema it names, so they cannot be brought to this Coffer's: {e}"
            )),
        })?;
    if state.db.running_records().await? > 0 {
        return Err(ApiError::JobRunning(
            "jobs are running: wait for them to finish, then restore".into(),
        ));
    }
    let pre = system_backup(state, coffer_system::PRE_RESTORE, None).await?;
    // The audit log is this server's history: a restore adds to it, never rewrites it.
    tables.rows.remove(AUDIT);
    let keep = [&archive::SECRET_TABLES[..], &[AUDIT]].concat();
    state.db.replace_tables(&tables, &keep).await?;
    tracing::warn!(pre_restore = %pre.name, "the metadata database was replaced by a system restore");
    Ok(coffer_types::SystemRestored {
        success: true,
        pre_restore: pre.name,
        tables: opened.manifest.tables.clone(),
    })
}

/// The last run of the server's own task, for `GET /api/scheduler`.
#[derive(Debug, Default)]
pub struct TaskLog(Mutex<Option<(DateTime<Utc>, String)>>);

impl TaskLog {
    fn record(&self, status: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Utc::now(), status));
    }
}

/// The next 03:00 UTC after `now`.
fn next_run(now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive().and_time(AT).and_utc();
    match today > now {
        true => today,
        false => today + chrono::Duration::days(1),
    }
}

/// `auto_backup` as `GET /api/scheduler` shows it.
pub async fn task(state: &AppState) -> Result<ServerTask, ApiError> {
    let enabled = setting(state, AUTO_BACKUP)
        .await?
        .as_ref()
        .and_then(flag)
        .unwrap_or(false);
    let last = state
        .auto_backup
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(ServerTask {
        id: AUTO_BACKUP_TASK.into(),
        name: "Daily backup of Coffer's metadata database".into(),
        schedule: "0 3 * * *".into(),
        enabled,
        last_run: last.as_ref().map(|(at, _)| *at),
        last_status: last.map(|(_, status)| status),
        next_run: next_run(Utc::now()),
    })
}

/// Run `auto_backup` now (whether enabled or not): a snapshot, and a copy of a system backup
/// when the settings name a repository for them; what it did, or why it failed.
pub async fn run_task(state: &Arc<AppState>) -> Result<BackupFile, ApiError> {
    let taken = take(state).await;
    let offsite = match &taken {
        Ok(_) => offsite_copy(state).await,
        Err(_) => Ok(None),
    };
    let failed = match (&taken, &offsite) {
        (Err(e), _) | (Ok(_), Err(e)) => Some(e.to_string()),
        (Ok(_), Ok(Some(OffsiteCopy { error: Some(e), .. }))) => {
            Some(format!("the offsite copy: {e}"))
        }
        (Ok(_), Ok(_)) => None,
    };
    if let Some(why) = &failed {
        state.jobs.system_backup_failed(why);
    }
    state.auto_backup.record(match failed {
        Some(why) => format!("failed: {why}"),
        None => "success".into(),
    });
    if let Err(e) = &taken {
        tracing::warn!(error = %e, "the backup of the metadata database failed");
    }
    taken
}

/// Every day at 03:00 UTC, a snapshot when `general.auto_backup` is true; until `stop`.
pub async fn schedule(state: Arc<AppState>, stop: impl std::future::Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let now = Utc::now();
        let wait = (next_run(now) - now).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if task(&state).await.is_ok_and(|t| t.enabled) {
            let _ = run_task(&state).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_next_three_oclock_utc() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            next_run(at("2026-12-05T02:59:59Z")),
            at("2026-12-05T03:00:00Z")
        );
        assert_eq!(
            next_run(at("2026-12-05T03:00:00Z")),
            at("2026-12-06T03:00:00Z")
        );
        assert_eq!(
            next_run(at("2026-12-31T21:00:00Z")),
            at("2027-01-01T03:00:00Z")
        );
    }

    #[test]
    fn settings_the_server_reads_are_checked() {
        use serde_json::json;
        for ok in [json!(3), json!("3"), json!(" 12 ")] {
            assert!(check_value(RETENTION, &ok).is_ok(), "{ok}");
        }
        for bad in [
            json!(0),
            json!(-1),
            json!("ten"),
            json!(2.5),
            json!(null),
            json!("0"),
        ] {
            assert!(check_value(RETENTION, &bad).is_err(), "{bad}");
        }
        assert!(check_value(AUTO_BACKUP, &json!("true")).is_ok());
        assert!(check_value(AUTO_BACKUP, &json!(false)).is_ok());
        assert!(check_value(AUTO_BACKUP, &json!("yes")).is_err());
        assert!(check_value(OFFSITE_KEEP, &json!(3)).is_ok());
        assert!(check_value(OFFSITE_KEEP, &json!(0)).is_err());
        assert!(check_value("ui.theme", &json!("anything")).is_ok());
    }
}

//! Restore drills (`/api/backup-jobs/{id}/drills`): a job's newest backup restored into a
//! throwaway place and compared with what was backed up, to prove it restorable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::RecordStatus;

/// One drill: the record it restored, how long the restore took, and each check made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Drill {
    pub id: String,
    pub job_id: String,
    /// The record restored: the job's newest successful backup when the drill started.
    pub record_id: String,
    /// `running`, `success` (every check passed) or `failed`.
    pub status: RecordStatus,
    /// `restoring`, `checking`, then `complete` or `failed`.
    pub phase: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How long restoring the record took: what a restore of it takes.
    pub restore_ms: Option<u64>,
    /// The checks made, each with its outcome.
    pub checks: Vec<DrillCheck>,
    /// Why it failed, in a sentence naming what differed.
    pub error: Option<String>,
}

/// A check a drill made of what it restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DrillCheck {
    /// What was checked (`files of /srv/app`).
    pub check: String,
    pub ok: bool,
    /// What was found: how many were compared, or what differed.
    pub detail: String,
}

//! Point-in-time recovery of a MySQL/MariaDB server (`/api/credentials/{id}/pitr…`): what its
//! binlog archive covers, the recoveries asked for and what they produced.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a credential's binlog archive covers: `GET /api/credentials/{id}/pitr/coverage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PitrCoverage {
    /// Whether any point in time can be recovered (events are archived).
    pub available: bool,
    pub oldest_event: Option<DateTime<Utc>>,
    pub latest_event: Option<DateTime<Utc>>,
    /// Transactions archived.
    pub total_events: u64,
    /// Binlog files the server wrote that the archive does not hold.
    pub gaps: Vec<String>,
    /// Breaks in the binary log, oldest first: when the server was found running without it
    /// (`log_bin` off: what it wrote then is in no file) or started it anew (`RESET MASTER`,
    /// reusing the names: the archive keeps the files before and after). Recovering across
    /// one from an older backup is a gap; a backup taken after it starts anew.
    #[serde(default)]
    pub resets: Vec<DateTime<Utc>>,
    /// Whether the binary log is being archived now (`pitr` on the credential).
    pub archiving: bool,
    /// The archive holds everything the server wrote up to this moment (the server may have
    /// been idle since its latest event): recovery can target any second up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_until: Option<DateTime<Utc>>,
    /// Why archiving stands still, when it does (the server's binary log is off, the server
    /// does not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The full backups recovery can start from, oldest first: a target time needs one that
    /// finished before it.
    #[serde(default)]
    pub baselines: Vec<PitrBaseline>,
}

/// A full backup through the credential that recorded its binlog position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PitrBaseline {
    pub job_id: String,
    pub record_id: String,
    /// Recovery to a time at or after this one can start from this backup.
    pub finished_at: DateTime<Utc>,
    /// The databases it holds.
    pub databases: Vec<String>,
}

/// `POST /api/credentials/{id}/pitr`: recover to a second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PitrRequest {
    /// The moment to recover to (RFC 3339): every transaction of that second and before it is
    /// in the result, none after. Fractions of a second are dropped.
    pub target_time: DateTime<Utc>,
    /// Only this database (by default every database of the newest baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Only these tables: `db.table` names, separated by commas. The result holds only them,
    /// and restoring it replaces only them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<String>,
    /// Recover even when binlog files between the baseline and the target are missing (the
    /// result then lacks their transactions).
    #[serde(default)]
    pub allow_gaps: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PitrStatus {
    Running,
    Completed,
    Failed,
}

impl PitrStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PitrStatus::Running => "running",
            PitrStatus::Completed => "completed",
            PitrStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for PitrStatus {
    type Err = crate::BadValue;
    fn from_str(s: &str) -> Result<Self, crate::BadValue> {
        match s {
            "running" => Ok(PitrStatus::Running),
            "completed" => Ok(PitrStatus::Completed),
            "failed" => Ok(PitrStatus::Failed),
            other => Err(crate::BadValue::PitrStatus(other.to_string())),
        }
    }
}

/// One point-in-time recovery: what was asked, how far it is, and the record it produced —
/// a record of the baseline's job (trigger `pitr`) that verifies, downloads and restores like
/// any other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PitrRun {
    pub id: String,
    /// The credential whose server is recovered, and its name.
    pub credential_id: String,
    pub server_name: String,
    pub target_time: DateTime<Utc>,
    pub database: Option<String>,
    /// The tables asked for (`db.table,…`), if any.
    pub tables_filter: Option<String>,
    pub allow_gaps: bool,
    pub status: PitrStatus,
    /// `preparing` (the scratch server started, the baseline loaded), `reconstructing`
    /// (the binary log replayed), `uploading` (the result dumped into the repository), then
    /// `complete` or `failed`.
    pub phase: String,
    /// The full backup it started from.
    pub baseline_record_id: Option<String>,
    /// The record it produced, in the baseline's job.
    pub job_id: Option<String>,
    pub record_id: Option<String>,
    /// Where the record's snapshot lives.
    pub file_path: Option<String>,
    pub size_bytes: Option<u64>,
    /// The database dumps the record holds.
    pub file_count: Option<u64>,
    pub duration_ms: Option<u64>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

//! Backup jobs and their records, as the API shows and accepts them.
//!
//! A job's input is taken as given here (strings for the schedule and time zone) and parsed
//! into a valid job by `coffer-jobs`, which names the offending field when it is not.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Something a job backs up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A file or directory tree on the node.
    Path {
        path: String,
        /// Patterns of what to leave out, with restic's rules: matched against the absolute
        /// path of each file and directory; `*.tmp` and `node_modules` at any depth, `/srv/*/
        /// cache` from the root, `**` for any number of directories, `!pattern` to bring back
        /// what an earlier pattern left out.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
        /// Leave out the contents of cache directories (those with a `CACHEDIR.TAG`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exclude_caches: bool,
    },
    /// A SQLite database file, copied consistently while applications write to it.
    Sqlite { path: String },
    /// A Docker volume.
    Volume { name: String },
    /// A PostgreSQL database (`database`), or every database of the server and its roles
    /// (`all: true`), reached with a stored credential.
    Postgres {
        credential_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
    },
    /// A MySQL or MariaDB database (`database`), or every database of the server but its own
    /// schemas (`all: true`), reached with a stored credential.
    Mysql {
        credential_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
        /// The dump tool; by default `mydumper` where it is installed, else `mariadb-dump`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup_tool: Option<MysqlTool>,
    },
}

/// Which tool dumps a `mysql` source (a restore uses the tool that matches the dump).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MysqlTool {
    /// `mydumper`: the tables dumped in parallel, a file each; restored with `myloader`.
    Mydumper,
    /// `mariadb-dump` (or MySQL's `mysqldump`): one SQL script; restored with the client.
    #[serde(alias = "mysqldump")]
    MariadbDump,
}

impl Source {
    /// For database sources: the credential, the database (none: all) and the engine.
    pub fn database(&self) -> Option<(&str, Option<&str>, crate::DbEngine)> {
        match self {
            Source::Postgres {
                credential_id,
                database,
                ..
            } => Some((
                credential_id,
                database.as_deref(),
                crate::DbEngine::Postgres,
            )),
            Source::Mysql {
                credential_id,
                database,
                ..
            } => Some((credential_id, database.as_deref(), crate::DbEngine::Mysql)),
            _ => None,
        }
    }
}

/// Calendar-based retention, on top of `retention_count` / `retention_days`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
}

/// A job to create: `POST /api/backup-jobs`. `volumes` is shorthand for `volume` sources.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    pub name: String,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Five-field cron expression or an alias such as `@daily`; none: run by hand only.
    #[serde(default)]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// When to drill the newest backup (restore it somewhere else and compare: see the
    /// `drills` endpoints), in the job's time zone, like `schedule` (weekly, say:
    /// `0 4 * * 0`); none: drills by hand only.
    #[serde(default)]
    pub drill_schedule: Option<String>,
    /// A URL to ping after each backup (healthchecks-style: the URL on success, the URL with
    /// `/fail` after a failure), for a dead-man's switch. Its host must be one an admin
    /// allowed (the `alerts.ping_hosts` setting).
    #[serde(default)]
    pub ping_url: Option<String>,
    #[serde(default)]
    pub retention_count: Option<u32>,
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Local repository directory (default `<data_dir>/backups/<job id>`).
    #[serde(default)]
    pub dest_path: Option<String>,
    #[serde(default)]
    pub repository_id: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The id of a deleted job whose data the repository still holds: the new job takes over
    /// that id and the records of that data.
    #[serde(default)]
    pub adopt: Option<String>,
}

/// A change to a job: `PUT /api/backup-jobs/{id}` replaces the fields given.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Source>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// An empty string removes the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// An empty string removes the drill schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_schedule: Option<String>,
    /// An empty string removes the ping URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    Running,
    Success,
    Failed,
}

impl RecordStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordStatus::Running => "running",
            RecordStatus::Success => "success",
            RecordStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for RecordStatus {
    type Err = crate::BadValue;
    fn from_str(s: &str) -> Result<Self, crate::BadValue> {
        match s {
            "running" => Ok(RecordStatus::Running),
            "success" => Ok(RecordStatus::Success),
            "failed" => Ok(RecordStatus::Failed),
            other => Err(crate::BadValue::Status(other.to_string())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub node_id: String,
    pub sources: Vec<Source>,
    /// The names of the job's volume sources.
    pub volumes: Vec<String>,
    pub schedule: Option<String>,
    pub timezone: String,
    /// When restore drills run (none: by hand only).
    #[serde(default)]
    pub drill_schedule: Option<String>,
    /// Pinged after each backup (`/fail` appended after a failure).
    #[serde(default)]
    pub ping_url: Option<String>,
    pub retention_count: Option<u32>,
    pub retention_days: Option<u32>,
    pub retention: Option<Retention>,
    pub dest_path: Option<String>,
    pub repository_id: Option<String>,
    pub encrypted: bool,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the latest record started.
    pub last_run: Option<DateTime<Utc>>,
    pub last_status: Option<RecordStatus>,
    /// When the schedule fires next (none when disabled or unscheduled).
    pub next_run: Option<DateTime<Utc>>,
    /// When the latest successful record started.
    #[serde(default)]
    pub last_success_at: Option<DateTime<Utc>>,
    /// The archive size of the latest successful record.
    #[serde(default)]
    pub last_size_bytes: Option<u64>,
    /// How long the latest successful record took.
    #[serde(default)]
    pub last_duration_ms: Option<u64>,
    /// What the job's records have added to their repository, together.
    #[serde(default)]
    pub stored_bytes: Option<u64>,
    /// Why the latest record failed, when it did.
    #[serde(default)]
    pub last_error: Option<String>,
    /// No successful backup came when the schedule expected one: within one interval of the
    /// latest success (or of the job's creation), plus an hour and as long as the latest
    /// success took. The server was down, the job failed, or could not start.
    #[serde(default)]
    pub overdue: bool,
    /// In the answer to a create or a change: what will not work as the job stands (a source
    /// that does not exist now, no retention). The job is saved all the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How the job's latest restore drill ended (or that it runs).
    #[serde(default)]
    pub last_drill_status: Option<RecordStatus>,
    /// When the newest record a drill proved restorable was taken: the data as of then is known
    /// to come back.
    #[serde(default)]
    pub last_proven_restorable_at: Option<DateTime<Utc>>,
    /// How long that drill's restore took (what a restore of the job takes).
    #[serde(default)]
    pub last_restore_ms: Option<u64>,
    /// When the drill schedule fires next (none when disabled or without one).
    #[serde(default)]
    pub next_drill: Option<DateTime<Utc>>,
}

/// How far running work is: files and bytes done, and the total when it can be told (the
/// size of the previous record for a backup, of the record for a restore).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub files: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

/// One run of a job: one snapshot in the job's repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Record {
    pub id: String,
    pub job_id: String,
    pub status: RecordStatus,
    /// `preparing`, `reading`, then for a successful record `finalizing` (retention and
    /// pruning run) and `complete`.
    pub phase: String,
    /// Size of the canonical archive.
    pub size_bytes: Option<u64>,
    /// New bytes this record added to the repository.
    pub stored_bytes: Option<u64>,
    /// SHA-256 (hex) of the canonical archive.
    pub checksum: Option<String>,
    /// Where the snapshot lives: `<repository>/snapshots/<snapshot id>` (a path, or `s3://…`).
    pub file_path: Option<String>,
    pub snapshot_id: Option<String>,
    pub encrypted: bool,
    /// Why the record was made: `schedule`, `manual`, `adopted` (a deleted job's data taken
    /// over), `pre_restore` (a safety record taken before a restore, which is no backup of
    /// the job), or `pitr` (a point-in-time recovery's result: its dumps say the moment).
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The database dumps the record holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseDump>,
    /// The tools that made them (`pg_dump 15`, `mariadb-dump`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_tool: Option<String>,
    /// When the record was last verified, and whether its data was whole then.
    #[serde(default)]
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub verify_ok: Option<bool>,
    /// While it runs: how far it is (updated every few seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// One database dump in a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseDump {
    pub engine: crate::DbEngine,
    pub database: String,
    pub tool: String,
    pub size_bytes: u64,
    /// Where in the server's binary log the dump is consistent with (MySQL/MariaDB, when the
    /// credential archives the binary log): the baseline point-in-time recovery replays from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPosition>,
    /// A dump made by point-in-time recovery: the moment it holds the database as of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<DateTime<Utc>>,
    /// When it holds only some of the database's tables, their names: restoring it replaces
    /// those tables and leaves the rest of the database as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// The rows of each table at backup time, counted in a snapshot that sees what the dump
    /// saw (what a restore drill compares the restored database with); none when they could
    /// not be counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<std::collections::BTreeMap<String, u64>>,
}

/// A position in a MySQL/MariaDB server's binary log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BinlogPosition {
    pub file: String,
    pub position: u64,
    /// The server's GTID position at the same point (`domain-server-sequence`, comma
    /// separated), where the dump tool records it: what stays true of a transaction across
    /// servers, where file names and positions do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// The answer to `POST .../verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyResult {
    pub ok: bool,
    /// The archive's SHA-256 as recomputed (when it could be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Damaged objects and the files they affect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
}

/// `POST .../records/{rid}/restore`: what to restore, and where. Everything, in place, by
/// default.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Absolute paths to restore (a source, or something inside a path source). With none of
    /// `paths`, `volumes` and `databases`, every source is restored.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Names of the job's volume sources to restore.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Names of the job's databases to restore.
    #[serde(default)]
    pub databases: Vec<String>,
    /// In place, a volume that a running container uses is refused (409) unless this is set:
    /// then those containers are stopped first and started again afterwards.
    #[serde(default)]
    pub stop_containers: bool,
    /// Restore the job's one database into this database instead of the original (created;
    /// one that exists is replaced only with `replace`); the original is left alone.
    #[serde(default)]
    pub target_database: Option<String>,
    /// Replace the `target_database` if it exists (otherwise that is refused with 409).
    #[serde(default)]
    pub replace: bool,
    /// Restore a SQLite database in place even while processes hold it open (otherwise that
    /// is refused with 409, naming them: their later writes would be lost).
    #[serde(default)]
    pub force: bool,
    /// Restore into this directory (inside the allowed root, by default the data directory)
    /// instead of in place; sources keep their absolute paths below it.
    #[serde(default)]
    pub target: Option<String>,
}

/// A restore, polled at `GET /api/backup-jobs/{id}/restores/{tid}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestoreTask {
    pub id: String,
    pub job_id: String,
    pub record_id: String,
    pub status: RecordStatus,
    /// `preparing`, `safety_snapshot`, `restoring`, `complete`.
    pub phase: String,
    /// Where the data went: `/` for in place, a directory, or `database <name>` for a
    /// restore into another database.
    pub target: String,
    pub paths: Vec<String>,
    /// The `pre_restore` record taken of the data before it was overwritten.
    pub safety_record_id: Option<String>,
    /// The safety record is gone (its time ran out, or it was deleted).
    #[serde(default)]
    pub safety_record_removed: bool,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What the restore left out or changed on the way (special files of an uploaded archive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// While it runs: how far it is (updated every few seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// A live event on `GET /api/ws`, one JSON text message each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// `backup.started`, `backup.progress`, `backup.completed`, `backup.failed`,
    /// `restore.progress`, `restore.completed`, `restore.failed`, `verify.failed`,
    /// `drill.completed`, `drill.failed`, and the others notification channels can choose
    /// (`EVENTS`: `backup.suspicious`, `job.overdue`, … with an empty `job_id` for those of no
    /// job).
    pub event: String,
    pub job_id: String,
    /// The record concerned (for restores: the record restored).
    pub record_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `backup.progress` and `restore.progress`: how far it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub at: DateTime<Utc>,
}

/// The next runs of a schedule: `GET /api/schedule-preview`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SchedulePreview {
    /// The time zone the schedule is read in.
    pub timezone: String,
    /// The next five times it fires.
    pub next: Vec<DateTime<Utc>>,
}

/// A folder of a record: `GET /api/backup-jobs/{id}/records/{rid}/tree?path=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordTree {
    /// The folder, absolute (`/` is the root of the record).
    pub path: String,
    /// What it holds, sorted by name.
    pub entries: Vec<TreeEntry>,
}

/// A file, folder or link of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TreeEntry {
    pub name: String,
    /// Its absolute path in the record: what a restore's `paths` names.
    pub path: String,
    /// `file`, `dir`, `symlink`, `chardev`, `blockdev` or `fifo`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes of a file's content.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime: DateTime<Utc>,
    /// Where a symlink points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

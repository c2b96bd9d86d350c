//! Alerts for what did not happen or looks wrong: a job that is overdue (told once, and when it
//! is back on schedule), a successful backup much smaller than the recent ones, and the pings
//! of a job's dead-man's switch.

use chrono::{DateTime, Utc};
use coffer_db::{RecordQuery, TriggerFilter};
use coffer_types::{Job, Record, RecordStatus};

use crate::scheduler::overdue;
use crate::spec::field;
use crate::{Jobs, Result};

/// The setting naming the hosts job ping URLs may go to (a JSON list of `host` or `host:port`).
pub const PING_HOSTS: &str = "alerts.ping_hosts";

/// How many earlier successful backups a new one is compared with.
const RECENT: usize = 5;

/// Why a successful record `new` looks wrong next to `earlier` ones of its job (newest first),
/// if it does: its size under half the median of the last five, or a database dump under a
/// tenth of the median of its own last five. Fewer than three earlier ones tell nothing.
pub(crate) fn suspicious(new: &Record, earlier: &[Record]) -> Option<String> {
    let median = |mut v: Vec<u64>| -> Option<u64> {
        (v.len() >= 3).then(|| {
            v.sort_unstable();
            v[v.len() / 2]
        })
    };
    let recent = &earlier[..earlier.len().min(RECENT)];
    let mut why = vec![];
    let sizes = recent.iter().filter_map(|r| r.size_bytes).collect();
    if let (Some(size), Some(m)) = (new.size_bytes, median(sizes))
        && size < m / 2
    {
        why.push(format!(
            "it holds {size} bytes, under half the median of the last {} backups ({m} bytes)",
            recent.len()
        ));
    }
    for dump in &new.databases {
        let sizes = recent
            .iter()
            .filter_map(|r| {
                r.databases
                    .iter()
                    .find(|d| d.engine == dump.engine && d.database == dump.database)
                    .map(|d| d.size_bytes)
            })
            .collect();
        if let Some(m) = median(sizes)
            && dump.size_bytes < m / 10
        {
            why.push(format!(
                "the dump of database {} is {} bytes, under a tenth of its median of the last \
                 backups ({m} bytes)",
                dump.database, dump.size_bytes
            ));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

impl Jobs {
    /// After a backup of `job` ended (record `rid`): a successful one compared with the recent
    /// ones, and the job's ping URL pinged.
    pub(crate) async fn after_backup(&self, job: &Job, rid: &str, success: bool) {
        if success && let Err(e) = self.check_suspicious(job, rid).await {
            tracing::warn!(job = %job.id, error = %e, "cannot compare the record with the recent ones");
        }
        if let Some(url) = &job.ping_url {
            match self.allowed_ping(url).await {
                Ok(()) => {
                    let (url, name) = (url.clone(), job.name.clone());
                    tokio::spawn(async move {
                        match coffer_notify::ping(&url, !success).await {
                            Ok(_) => tracing::debug!(job = %name, "pinged"),
                            Err(e) => tracing::warn!(job = %name, error = %e, "the ping failed"),
                        }
                    });
                }
                Err(e) => tracing::warn!(job = %job.name, error = %e, "not pinged"),
            }
        }
    }

    async fn check_suspicious(&self, job: &Job, rid: &str) -> Result<()> {
        let query = RecordQuery {
            status: Some(RecordStatus::Success),
            trigger: TriggerFilter::Backups,
            limit: RECENT as u32 + 1,
            ..RecordQuery::default()
        };
        let records = self.db.records(&job.id, &query).await?;
        let Some(new) = records.iter().find(|r| r.id == rid) else {
            return Ok(());
        };
        let earlier: Vec<Record> = records.iter().filter(|r| r.id != rid).cloned().collect();
        if let Some(why) = suspicious(new, &earlier) {
            tracing::warn!(job = %job.name, record = %rid, %why, "a backup looks suspicious");
            self.emit("backup.suspicious", &job.id, rid, None, Some(&why));
        }
        Ok(())
    }

    /// Whether pings may go to `url`: its host is among those an admin allowed.
    pub(crate) async fn allowed_ping(&self, url: &str) -> Result<()> {
        let host = coffer_notify::ping_host(url).map_err(|e| field("ping_url", e.to_string()))?;
        let allowed: Vec<String> = match self.db.setting(PING_HOSTS).await? {
            Some(s) => serde_json::from_value(s.value).unwrap_or_default(),
            None => vec![],
        };
        if allowed.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return Ok(());
        }
        Err(field(
            "ping_url",
            format!(
                "pings may go only to the hosts an admin allowed (the {PING_HOSTS} setting): \
                 {host} is not one of them"
            ),
        )
        .into())
    }

    /// Tell (once) the jobs that became overdue, and those back on schedule; `/metrics` has
    /// `coffer_backup_overdue` per job.
    pub(crate) async fn check_overdue(&self, jobs: &[Job], now: DateTime<Utc>) -> Result<()> {
        let told = self.db.overdue_since().await?;
        for job in jobs {
            let late = overdue(job, now);
            metrics::gauge!("coffer_backup_overdue", &crate::job_labels(job))
                .set(f64::from(u8::from(late)));
            match (late, told.get(&job.id)) {
                (true, None) => {
                    self.db.set_overdue_since(&job.id, Some(now)).await?;
                    let since = job
                        .last_success_at
                        .map_or("it was made".to_string(), |t| format!("{t}"));
                    let why = format!(
                        "no successful backup since {since}, and the schedule expected one"
                    );
                    tracing::warn!(job = %job.name, %why, "overdue");
                    self.emit("job.overdue", &job.id, "", None, Some(&why));
                }
                (false, Some(_)) => {
                    self.db.set_overdue_since(&job.id, None).await?;
                    self.emit("job.recovered", &job.id, "", None, None);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::{DatabaseDump, DbEngine};

    fn record(size: u64, dump: Option<u64>) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "id": "r", "job_id": "j", "status": "success", "phase": "complete",
            "size_bytes": size, "stored_bytes": 1, "checksum": null, "file_path": null,
            "snapshot_id": null, "encrypted": true, "trigger": "manual",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": null, "duration_ms": 1,
            "error": null
        }))
        .unwrap();
        r.databases = dump
            .map(|d| DatabaseDump {
                engine: DbEngine::Postgres,
                database: "shop".into(),
                tool: "pg_dump".into(),
                size_bytes: d,
                binlog: None,
                point_in_time: None,
                tables: vec![],
                rows: None,
            })
            .into_iter()
            .collect();
        r
    }

    #[test]
    fn a_record_under_half_the_recent_median_is_suspicious() {
        let earlier: Vec<Record> = [100, 90, 110, 100, 95, 1]
            .iter()
            .map(|s| record(*s, None))
            .collect();
        assert_eq!(suspicious(&record(60, None), &earlier), None);
        let why = suspicious(&record(40, None), &earlier).unwrap();
        assert!(
            why.contains("40 bytes, under half the median of the last 5 backups (100 bytes)"),
            "{why}"
        );
        assert_eq!(
            suspicious(&record(1, None), &earlier[..2]),
            None,
            "too few to tell"
        );
    }

    #[test]
    fn a_database_dump_that_shrank_to_almost_nothing_is_suspicious() {
        let earlier: Vec<Record> = (0..4).map(|_| record(1000, Some(900))).collect();
        assert_eq!(suspicious(&record(1000, Some(500)), &earlier), None);
        let why = suspicious(&record(1000, Some(20)), &earlier).unwrap();
        assert!(
            why.contains("the dump of database shop is 20 bytes"),
            "{why}"
        );
    }
}

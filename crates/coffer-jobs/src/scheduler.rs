//! The scheduler: which jobs are due, and the loop inside `coffer serve` that starts them — their
//! backups, and their restore drills.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coffer_db::Scheduled;
use coffer_types::Job;

use crate::{Jobs, Result, spec};

/// What the scheduler should do about one job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Run once; afterwards the job is scheduled past `slot`.
    Run { slot: DateTime<Utc> },
    /// Nothing before `at`.
    Wait { at: DateTime<Utc> },
    /// Disabled or unscheduled.
    Never,
}

/// The decision for `job`'s schedule for `what`, given the latest time of it acted on and the
/// current time.
pub fn due(
    job: &Job,
    what: Scheduled,
    scheduled_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Due {
    let Some(schedule) = spec::schedule_of(job, what).filter(|_| job.enabled) else {
        return Due::Never;
    };
    let from = scheduled_until.unwrap_or(job.created_at);
    match schedule.next_after(from) {
        Some(next) if next <= now => {
            // Missed slots collapse into one run: the latest slot not after `now`.
            let mut slot = next;
            while let Some(n) = schedule.next_after(slot).filter(|n| *n <= now) {
                slot = n;
            }
            Due::Run { slot }
        }
        Some(at) => Due::Wait { at },
        None => Due::Never,
    }
}

/// How long past the slot a successful backup may come before its job is overdue, besides as
/// long as the latest successful one took.
const GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Whether the schedule expected a successful backup by `now` and none came: the first slot
/// after the latest success (or after the job was made) passed more than the grace ago — an
/// hour, and as long as the latest successful backup took. The server was down past it, the
/// run failed, or could not start, or takes far longer than it did.
pub fn overdue(job: &Job, now: DateTime<Utc>) -> bool {
    let since = job.last_success_at.unwrap_or(job.created_at);
    let took = chrono::TimeDelta::milliseconds(job.last_duration_ms.unwrap_or(0) as i64);
    job.enabled
        && spec::schedule_of(job, Scheduled::Backups)
            .and_then(|s| s.next_after(since))
            .is_some_and(|slot| slot + GRACE + took <= now)
}

impl Jobs {
    /// One pass of the scheduler: start what is due; returns when to look again.
    pub async fn tick(self: &Arc<Self>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        let jobs = self.db.jobs().await?;
        self.check_overdue(&jobs, now).await?;
        for what in [Scheduled::Backups, Scheduled::Drills] {
            let marks = self.db.scheduled_until(what).await?;
            for job in &jobs {
                let until = marks.get(&job.id).copied().flatten();
                let next = match due(job, what, until, now) {
                    Due::Run { slot } => {
                        self.db.set_scheduled_until(what, &job.id, slot).await?;
                        self.start_scheduled(job, what, slot).await;
                        due(job, what, Some(slot), now)
                    }
                    other => other,
                };
                if let Due::Wait { at } = next {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                }
            }
        }
        Ok(earliest)
    }

    /// Start what `job`'s schedule for `what` fired for at `slot`; why not, in the log.
    async fn start_scheduled(self: &Arc<Self>, job: &Job, what: Scheduled, slot: DateTime<Utc>) {
        let started = match what {
            Scheduled::Backups => self.run(&job.id, "schedule").await.map(|r| r.id),
            Scheduled::Drills => self.drill(&job.id).await.map(|d| d.id),
        };
        match started {
            Ok(id) => tracing::info!(job = %job.id, what = ?what, %id, %slot, "scheduled start"),
            Err(e) => {
                tracing::warn!(job = %job.id, what = ?what, error = %e, "scheduled start refused")
            }
        }
    }

    /// The scheduler: runs until `shutdown` resolves, then asks running records to stop and
    /// waits (up to `grace`) for them to be recorded as failed.
    pub async fn scheduler(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        tokio::pin!(shutdown);
        loop {
            let next = match self.tick(Utc::now()).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler pass failed");
                    None
                }
            };
            if !crate::pause(next, &self.wake, shutdown.as_mut()).await {
                break;
            }
        }
        let flags: Vec<Arc<AtomicBool>> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for f in &flags {
            f.store(true, Ordering::Relaxed);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// When backups are due.
    fn due(job: &Job, until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
        super::due(job, Scheduled::Backups, until, now)
    }

    fn job(schedule: Option<&str>, enabled: bool) -> Job {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 0, 30, 0).unwrap();
        Job {
            id: "j".into(),
            name: "j".into(),
            node_id: "local".into(),
            sources: vec![],
            volumes: vec![],
            schedule: schedule.map(str::to_string),
            timezone: "UTC".into(),
            drill_schedule: None,
            ping_url: None,
            retention_count: None,
            retention_days: None,
            retention: None,
            dest_path: None,
            repository_id: None,
            encrypted: true,
            enabled,
            created_at: t,
            updated_at: t,
            last_run: None,
            last_status: None,
            next_run: None,
            last_success_at: None,
            last_size_bytes: None,
            last_duration_ms: None,
            stored_bytes: None,
            last_error: None,
            overdue: false,
            last_drill_status: None,
            last_proven_restorable_at: None,
            next_drill: None,
            last_restore_ms: None,
            warnings: vec![],
        }
    }

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
    }

    #[test]
    fn a_job_is_overdue_an_interval_and_the_grace_after_its_last_success() {
        let mut j = job(Some("0 3 * * *"), true);
        assert!(!overdue(&j, at(1, 3, 30)), "within the hour");
        assert!(
            overdue(&j, at(1, 4, 1)),
            "an hour after 03:00, never a success"
        );
        j.last_success_at = Some(at(1, 3, 0));
        assert!(!overdue(&j, at(1, 23, 0)), "it succeeded");
        assert!(
            overdue(&j, at(2, 4, 1)),
            "the next day's success did not come"
        );
        // A backup that takes two hours has three to succeed.
        j.last_duration_ms = Some(2 * 3600 * 1000);
        assert!(!overdue(&j, at(2, 5, 59)));
        assert!(overdue(&j, at(2, 6, 1)));
        assert!(!overdue(&job(None, true), at(9, 0, 0)), "no schedule");
        assert!(
            !overdue(&job(Some("0 3 * * *"), false), at(9, 0, 0)),
            "disabled"
        );
    }

    #[test]
    fn a_job_fires_at_its_times_and_missed_runs_collapse_into_one() {
        let j = job(Some("0 3 * * *"), true);
        assert_eq!(due(&j, None, at(1, 2, 59)), Due::Wait { at: at(1, 3, 0) });
        assert_eq!(due(&j, None, at(1, 3, 0)), Due::Run { slot: at(1, 3, 0) });
        // After running the 03:00 slot, the next is tomorrow.
        assert_eq!(
            due(&j, Some(at(1, 3, 0)), at(1, 3, 1)),
            Due::Wait { at: at(2, 3, 0) }
        );
        // Down for three days: one run, for the latest missed slot.
        assert_eq!(
            due(&j, Some(at(1, 3, 0)), at(4, 12, 0)),
            Due::Run { slot: at(4, 3, 0) }
        );
        assert_eq!(
            due(&j, Some(at(4, 3, 0)), at(4, 12, 0)),
            Due::Wait { at: at(5, 3, 0) }
        );
    }

    #[test]
    fn disabled_and_unscheduled_jobs_never_fire() {
        assert_eq!(
            due(&job(Some("* * * * *"), false), None, at(9, 0, 0)),
            Due::Never
        );
        assert_eq!(due(&job(None, true), None, at(9, 0, 0)), Due::Never);
    }

    #[test]
    fn drills_follow_a_schedule_of_their_own() {
        let mut j = job(Some("0 3 * * *"), true);
        let drills = |j: &Job, until, now| super::due(j, Scheduled::Drills, until, now);
        assert_eq!(drills(&j, None, at(9, 0, 0)), Due::Never, "off by default");
        // Weekly, Sundays at 04:00 (2026-03-01 is a Sunday).
        j.drill_schedule = Some("0 4 * * 0".into());
        assert_eq!(
            drills(&j, None, at(1, 3, 59)),
            Due::Wait { at: at(1, 4, 0) }
        );
        assert_eq!(
            drills(&j, None, at(1, 4, 0)),
            Due::Run { slot: at(1, 4, 0) }
        );
        assert_eq!(
            drills(&j, Some(at(1, 4, 0)), at(2, 0, 0)),
            Due::Wait { at: at(8, 4, 0) }
        );
        assert_eq!(due(&j, None, at(1, 3, 0)), Due::Run { slot: at(1, 3, 0) });
        j.enabled = false;
        assert_eq!(drills(&j, None, at(9, 0, 0)), Due::Never);
    }

    #[test]
    fn time_zones_and_daylight_saving_are_respected() {
        let mut j = job(Some("30 2 * * *"), true);
        j.timezone = "Europe/Berlin".into();
        // 2026-03-29: clocks jump from 02:00 to 03:00 in Berlin; 02:30 does not exist that day.
        let before = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let Due::Wait { at: next } = due(&j, Some(before), before) else {
            panic!()
        };
        assert!(
            next > before && next < before + chrono::Duration::days(2),
            "{next}"
        );
        // A normal day: 02:30 in Berlin (UTC+1) is 01:30 UTC.
        let jan = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        assert_eq!(
            due(&j, Some(jan), jan),
            Due::Wait {
                at: Utc.with_ymd_and_hms(2026, 1, 11, 1, 30, 0).unwrap()
            }
        );
    }
}

//! Which of a job's snapshots its retention no longer keeps: the job's own by its count, age
//! and calendar rules (the newest always kept), the safety snapshots taken before restores by
//! their age alone; the results of point-in-time recoveries not at all (they go when deleted).

use std::collections::HashSet;

use coffer_repo::Id;
use coffer_repo::forget::{self, RetentionPolicy};

use crate::Result;
use crate::target::{self, PITR_LABEL, SAFETY_LABEL, Target};

/// How long a job keeps its records.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// At most this many (the newest).
    pub count: Option<u32>,
    /// None older than this many days.
    pub days: Option<u32>,
    /// Calendar rules (keep the newest of each day, week, ...); a record must be kept by one of
    /// them, when any is given.
    pub rules: RetentionPolicy,
    /// Safety records (taken before restores) are kept this many days, apart from the rest.
    pub safety_days: u32,
}

/// The job's snapshots that `retention` no longer keeps (nothing is removed here): regular
/// ones by the job's retention, the newest always kept; those taken before a restore once they
/// are older than their days. Safety snapshots do not count towards the job's retention, so
/// that restoring never costs the job its regular history.
pub fn expired(
    target: &Target,
    job_id: &str,
    retention: &Retention,
    tz: &chrono_tz::Tz,
) -> Result<Vec<String>> {
    let snapshots = target::snapshots_of(target, job_id)?;
    Ok(expire(snapshots, retention, tz, chrono::Utc::now()))
}

/// Which of a job's `snapshots` `retention` no longer keeps at `now` (see [`expired`]).
fn expire(
    snapshots: Vec<(Id, coffer_repo::Snapshot)>,
    retention: &Retention,
    tz: &chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    // A point-in-time recovery's result was asked for by someone: kept until deleted.
    let (safety, mut mine): (Vec<_>, Vec<_>) = snapshots
        .into_iter()
        .filter(|(_, s)| !s.labels.contains_key(PITR_LABEL))
        .partition(|(_, s)| s.labels.contains_key(SAFETY_LABEL));
    let safety_limit = now - chrono::TimeDelta::days(i64::from(retention.safety_days));
    let old_safety = safety
        .iter()
        .filter(|(_, s)| s.time < safety_limit)
        .map(|(id, _)| id.to_string());
    mine.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
    let kept_by_rules: Option<HashSet<Id>> = (!retention.rules.is_empty()).then(|| {
        forget::decide(&mine, &retention.rules, tz)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect()
    });
    mine.iter()
        .enumerate()
        .skip(1)
        .filter(|(i, (id, s))| {
            retention.count.is_some_and(|n| *i >= n as usize)
                || retention
                    .days
                    .is_some_and(|d| s.time < now - chrono::TimeDelta::days(i64::from(d)))
                || kept_by_rules.as_ref().is_some_and(|k| !k.contains(id))
        })
        .map(|(_, (id, _))| id.to_string())
        .chain(old_safety)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn snapshot(
        days_ago: i64,
        safety: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Id, coffer_repo::Snapshot) {
        let mut labels = BTreeMap::new();
        if safety {
            labels.insert(SAFETY_LABEL.to_string(), "true".to_string());
        }
        let s = coffer_repo::Snapshot {
            time: now - chrono::TimeDelta::days(days_ago),
            labels,
            ..coffer_repo::Snapshot::default()
        };
        (Id::random(), s)
    }

    #[test]
    fn recovered_records_are_kept_and_count_for_nothing() {
        let now = chrono::Utc::now();
        let mut recovered = snapshot(0, false, now);
        recovered
            .1
            .labels
            .insert(PITR_LABEL.to_string(), now.to_rfc3339());
        let old = snapshot(30, false, now);
        let all = vec![recovered, snapshot(1, false, now), old.clone()];
        let retention = Retention {
            count: Some(1),
            days: Some(7),
            safety_days: 7,
            ..Retention::default()
        };
        // The newest backup is kept (the recovery's result is not one), the old one goes.
        let gone = expire(all, &retention, &chrono_tz::UTC, now);
        assert_eq!(gone, [old.0.to_string()]);
    }

    #[test]
    fn safety_records_expire_by_age_apart_from_the_jobs_retention() {
        let now = chrono::Utc::now();
        let all = vec![
            snapshot(0, false, now),
            snapshot(1, false, now),
            snapshot(2, true, now),
            snapshot(9, true, now),
            snapshot(10, false, now),
        ];
        let id = |i: usize| all[i].0.to_string();
        let retention = Retention {
            count: Some(2),
            safety_days: 7,
            ..Retention::default()
        };
        let mut gone = expire(all.clone(), &retention, &chrono_tz::UTC, now);
        gone.sort();
        let mut expected = vec![id(3), id(4)];
        expected.sort();
        assert_eq!(
            gone, expected,
            "the 9-day-old safety record and the third backup"
        );
        // Without any retention of the job's own, safety records still expire.
        let gone = expire(
            all.clone(),
            &Retention {
                safety_days: 7,
                ..Retention::default()
            },
            &chrono_tz::UTC,
            now,
        );
        assert_eq!(gone, vec![id(3)]);
    }

    #[test]
    fn a_record_goes_when_any_limit_is_passed_but_the_newest_stays() {
        let now = chrono::Utc::now();
        let all: Vec<_> = [0, 1, 2, 5, 40].map(|d| snapshot(d, false, now)).into();
        let id = |i: usize| all[i].0.to_string();
        let gone = |retention: Retention| {
            let mut gone = expire(all.clone(), &retention, &chrono_tz::UTC, now);
            gone.sort();
            gone
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        // Count and days together: older than 3 days, or beyond the newest 4.
        let both = Retention {
            count: Some(4),
            days: Some(3),
            ..Retention::default()
        };
        assert_eq!(gone(both), sorted(vec![id(3), id(4)]));
        // Calendar rules: the newest of each of the last 2 days.
        let daily = Retention {
            rules: RetentionPolicy {
                keep_daily: Some(2),
                ..RetentionPolicy::default()
            },
            ..Retention::default()
        };
        assert_eq!(gone(daily), sorted(vec![id(2), id(3), id(4)]));
        // However strict, the newest record stays.
        let strict = Retention {
            count: Some(0),
            days: Some(0),
            ..Retention::default()
        };
        assert_eq!(gone(strict).len(), all.len() - 1);
    }
}

//! Retention: decide which snapshots to keep, and remove the others.
//!
//! Snapshots are grouped by host and paths (or by any label the caller names, such as a job
//! id), and each rule works within a group, newest first, like the retention of restic and
//! Proxmox Backup Server: `keep_last` keeps the N newest; `keep_hourly`/`daily`/`weekly`/
//! `monthly`/`yearly` keep the newest snapshot of each of the N most recent periods that have
//! one; `keep_within` keeps everything younger than the given duration before the newest. A
//! snapshot kept by any rule stays. The newest snapshot of each group is always kept.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Timelike, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock::{self, LockKind};
use crate::repo::Repository;
use crate::snapshot::{self, Snapshot};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: Option<u32>,
    pub keep_within: Option<TimeDelta>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
}

impl RetentionPolicy {
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Rules that keep it (empty when removed).
    pub reasons: Vec<String>,
}

/// Apply `policy` to one group of snapshots. Pure: time zone given for calendar periods.
pub fn decide<Tz: TimeZone>(
    snaps: &[(Id, Snapshot)],
    policy: &RetentionPolicy,
    tz: &Tz,
) -> Vec<Decision> {
    let mut order: Vec<&(Id, Snapshot)> = snaps.iter().collect();
    order.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
    let mut out: Vec<Decision> = order
        .iter()
        .map(|(id, s)| Decision {
            id: *id,
            time: s.time,
            keep: false,
            reasons: vec![],
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    if let Some(n) = policy.keep_last {
        for d in out.iter_mut().take(n as usize) {
            d.reasons.push("last".into());
        }
    }
    if let Some(within) = policy.keep_within {
        let newest = out[0].time;
        for d in out.iter_mut().filter(|d| newest - d.time <= within) {
            d.reasons.push("within".into());
        }
    }
    type Period = fn(&DateTime<chrono::FixedOffset>) -> (i32, u32, u32, u32);
    let periods: [(&str, Option<u32>, Period); 5] = [
        ("hourly", policy.keep_hourly, |t| {
            (t.year(), t.ordinal(), t.hour(), 0)
        }),
        ("daily", policy.keep_daily, |t| {
            (t.year(), t.ordinal(), 0, 0)
        }),
        ("weekly", policy.keep_weekly, |t| {
            (t.iso_week().year(), t.iso_week().week(), 0, 0)
        }),
        ("monthly", policy.keep_monthly, |t| {
            (t.year(), t.month(), 0, 0)
        }),
        ("yearly", policy.keep_yearly, |t| (t.year(), 0, 0, 0)),
    ];
    for (name, n, period) in periods {
        let Some(n) = n else { continue };
        let mut last = None;
        let mut kept = 0;
        for d in out.iter_mut() {
            if kept >= n {
                break;
            }
            let local = d.time.with_timezone(tz).fixed_offset();
            let p = period(&local);
            if last != Some(p) {
                last = Some(p);
                kept += 1;
                d.reasons.push(name.into());
            }
        }
    }
    if out[0].reasons.is_empty() {
        out[0].reasons.push("newest".into());
    }
    for d in &mut out {
        d.keep = !d.reasons.is_empty();
    }
    out
}

/// How snapshots are grouped before the policy applies.
#[derive(Debug, Clone, Default)]
pub enum GroupBy {
    /// Host and paths, like every snapshot made of the same data on the same machine.
    #[default]
    HostAndPaths,
    /// A label (the server groups by job).
    Label(String),
}

fn group_key(s: &Snapshot, by: &GroupBy) -> String {
    match by {
        GroupBy::HostAndPaths => {
            let mut p = s.paths.clone();
            p.sort();
            format!("{} {}", s.host, p.join(" "))
        }
        GroupBy::Label(l) => s.labels.get(l).cloned().unwrap_or_default(),
    }
}

#[derive(Debug, Serialize)]
pub struct ForgetReport {
    pub kept: Vec<Decision>,
    pub removed: Vec<Decision>,
    pub dry_run: bool,
}

/// Apply a retention policy to the repository's snapshots (those matching `filter`).
pub fn forget<Tz: TimeZone>(
    repo: &Repository,
    policy: &RetentionPolicy,
    group_by: &GroupBy,
    filter: &dyn Fn(&Snapshot) -> bool,
    tz: &Tz,
    dry_run: bool,
) -> Result<ForgetReport> {
    if policy.is_empty() {
        return Err(Error::Invalid(
            "give snapshot ids or at least one keep rule (for example --keep-last 7); forget never removes everything".into(),
        ));
    }
    let _lock = lock::acquire(repo, LockKind::Forget)?;
    let all = snapshot::list(repo)?.snapshots;
    let mut groups: BTreeMap<String, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in all.into_iter().filter(|(_, s)| filter(s)) {
        groups
            .entry(group_key(&s, group_by))
            .or_default()
            .push((id, s));
    }
    let mut report = ForgetReport {
        kept: vec![],
        removed: vec![],
        dry_run,
    };
    for (_, snaps) in groups {
        for d in decide(&snaps, policy, tz) {
            if d.keep {
                report.kept.push(d);
            } else {
                report.removed.push(d);
            }
        }
    }
    if !dry_run {
        for d in &report.removed {
            snapshot::remove(repo, &d.id)?;
        }
    }
    Ok(report)
}

/// Remove the given snapshots.
pub fn forget_ids(repo: &Repository, ids: &[Id], dry_run: bool) -> Result<ForgetReport> {
    let _lock = lock::acquire(repo, LockKind::Forget)?;
    let mut report = ForgetReport {
        kept: vec![],
        removed: vec![],
        dry_run,
    };
    for id in ids {
        let s = snapshot::load(repo, id)?;
        report.removed.push(Decision {
            id: *id,
            time: s.time,
            keep: false,
            reasons: vec![],
        });
    }
    if !dry_run {
        for id in ids {
            snapshot::remove(repo, id)?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t: &str) -> (Id, Snapshot) {
        let time = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let id = Id(*blake3::hash(t.as_bytes()).as_bytes());
        let s = Snapshot {
            time,
            host: "h".into(),
            paths: vec!["/p".into()],
            ..Snapshot::default()
        };
        (id, s)
    }

    fn kept(snaps: &[(Id, Snapshot)], p: &RetentionPolicy) -> Vec<String> {
        let mut v: Vec<String> = decide(snaps, p, &Utc)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.time.format("%m-%d %H").to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let s: Vec<_> = [
            "2026-01-01T01:00:00Z",
            "2026-01-01T20:00:00Z",
            "2026-01-02T05:00:00Z",
            "2026-01-03T05:00:00Z",
            "2026-01-03T06:00:00Z",
        ]
        .iter()
        .map(|t| snap(t))
        .collect();
        let p = RetentionPolicy {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&s, &p), vec!["01-02 05", "01-03 06"]);
        let p = RetentionPolicy {
            keep_last: Some(1),
            keep_daily: Some(3),
            ..Default::default()
        };
        assert_eq!(kept(&s, &p), vec!["01-01 20", "01-02 05", "01-03 06"]);
        let p = RetentionPolicy {
            keep_within: Some(TimeDelta::hours(25)),
            ..Default::default()
        };
        assert_eq!(kept(&s, &p), vec!["01-02 05", "01-03 05", "01-03 06"]);
    }

    #[test]
    fn the_newest_always_stays() {
        let s: Vec<_> = ["2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"]
            .iter()
            .map(|t| snap(t))
            .collect();
        let p = RetentionPolicy {
            keep_within: Some(TimeDelta::seconds(0)),
            ..Default::default()
        };
        assert_eq!(kept(&s, &p), vec!["01-01 00"]);
        assert_eq!(decide(&s, &p, &Utc).iter().filter(|d| d.keep).count(), 1);
    }
}

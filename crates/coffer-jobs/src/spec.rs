//! Parsing job input into a valid job: every field checked once, errors naming the field.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use coffer_db::Scheduled;
use coffer_types::{Job, JobInput, JobUpdate, Repository, Role, Source};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::places::Places;

/// Input that cannot make a valid job: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

pub(crate) fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// A parsed cron schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    pub fn parse(expr: &str, timezone: &str) -> Result<Schedule, FieldError> {
        let tz = time_zone(timezone)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| {
                field(
                    "schedule",
                    format!("{expr:?} is not a five-field cron expression or @alias: {e}"),
                )
            })?;
        Ok(Schedule { cron, tz })
    }

    /// The first time strictly after `t` at which the schedule fires.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }
}

/// The next `count` times `expr` fires after `from`, read in `timezone` (default UTC): what a
/// schedule means, shown while it is typed.
pub fn preview(
    expr: &str,
    timezone: Option<&str>,
    from: DateTime<Utc>,
    count: usize,
) -> Result<coffer_types::SchedulePreview, FieldError> {
    let timezone = timezone
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("UTC");
    let schedule = Schedule::parse(expr, timezone)?;
    let next = std::iter::successors(schedule.next_after(from), |t| schedule.next_after(*t))
        .take(count)
        .collect();
    Ok(coffer_types::SchedulePreview {
        timezone: timezone.to_string(),
        next,
    })
}

/// The job's schedule for `what`, if it has one (a stored job's fields are valid).
pub fn schedule_of(job: &Job, what: Scheduled) -> Option<Schedule> {
    let expr = match what {
        Scheduled::Backups => &job.schedule,
        Scheduled::Drills => &job.drill_schedule,
    };
    expr.as_deref()
        .and_then(|s| Schedule::parse(s, &job.timezone).ok())
}

fn time_zone(timezone: &str) -> Result<Tz, FieldError> {
    Tz::from_str(timezone).map_err(|_| {
        field(
            "timezone",
            format!("{timezone:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
        )
    })
}

/// The job's schedules, read in its time zone.
fn check_schedules(job: &Job) -> Result<(), FieldError> {
    time_zone(&job.timezone)?;
    if let Some(s) = &job.schedule {
        Schedule::parse(s, &job.timezone)?;
    }
    if let Some(s) = &job.drill_schedule {
        Schedule::parse(s, &job.timezone).map_err(|e| FieldError {
            field: "drill_schedule",
            ..e
        })?;
    }
    Ok(())
}

/// A schedule as given: an empty one is none.
fn given(schedule: Option<String>) -> Option<String> {
    schedule.filter(|s| !s.trim().is_empty())
}

/// The name of a job, repository or credential: 1 to 200 characters, trimmed, without
/// control characters.
pub fn name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(field(
            "name",
            "give it a name of 1 to 200 characters, without control characters",
        ));
    }
    Ok(name.to_string())
}

/// `text` must hold no control characters such as NUL (reported under `field`).
pub fn plain(field_name: &'static str, text: &str) -> Result<(), FieldError> {
    if text.chars().any(char::is_control) {
        return Err(field(
            field_name,
            format!("{text:?} holds control characters"),
        ));
    }
    Ok(())
}

/// `path` must be absolute, without `..` and control characters (reported under `field`).
pub fn absolute(field_name: &'static str, path: &str) -> Result<(), FieldError> {
    plain(field_name, path)?;
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(field(
            field_name,
            format!("{path:?} must be an absolute path without '..'"),
        ));
    }
    Ok(())
}

/// Check `sources` as named by someone with `role`. Path and SQLite sources are judged by
/// `places` (Coffer's own files never; outside the source roots only for admins); those
/// already in `before` (the job's sources until now) only for Coffer's own files, so that an
/// operator can change a job an admin made without being refused for its paths.
fn check_sources(
    sources: &[Source],
    places: &Places,
    role: Role,
    before: &[Source],
) -> Result<(), FieldError> {
    if sources.is_empty() {
        return Err(field(
            "sources",
            "a job needs at least one source (sources or volumes)",
        ));
    }
    for s in sources {
        // A source the job had already is judged for Coffer's own files only.
        let role = if before.contains(s) {
            Role::Admin
        } else {
            role
        };
        crate::kinds::of(s).check(&crate::kinds::Judge { places, role })?;
    }
    // Overlapping database sources would dump a database twice into the same place.
    let databases: Vec<_> = sources.iter().filter_map(Source::database).collect();
    for (i, (credential_id, database, _)) in databases.iter().enumerate() {
        let overlaps = databases[..i].iter().any(|(c, d, _)| {
            c == credential_id && (d.is_none() || database.is_none() || d == database)
        });
        if overlaps {
            return Err(field(
                "sources",
                format!(
                    "database sources through credential {credential_id:?} overlap: name each \
                     database once, or take them all with one \"all\": true source"
                ),
            ));
        }
    }
    Ok(())
}

fn check_retention(count: Option<u32>, days: Option<u32>) -> Result<(), FieldError> {
    if count == Some(0) {
        return Err(field("retention_count", "keep at least 1 record"));
    }
    if days.is_some_and(|d| !(1..=365).contains(&d)) {
        return Err(field("retention_days", "use 1 to 365 days"));
    }
    Ok(())
}

/// A new job from `input`, with id `id`, made by someone with `role`; `repository` is the
/// registered repository `input.repository_id` names; `taken` are the directories of the
/// local repositories in use (which a new `dest_path` must not overlap).
pub(crate) fn new_job(
    input: JobInput,
    id: String,
    places: &Places,
    role: Role,
    repository: Option<&Repository>,
    taken: &[PathBuf],
) -> Result<Job, FieldError> {
    let name = name(&input.name)?;
    let node_id = input.node_id.unwrap_or_else(|| "local".into());
    if node_id != "local" {
        return Err(field(
            "node_id",
            format!("unknown node {node_id:?}: this server has one node, \"local\""),
        ));
    }
    let mut sources = input.sources;
    sources.extend(
        input
            .volumes
            .into_iter()
            .map(|name| Source::Volume { name }),
    );
    check_sources(&sources, places, role, &[])?;
    let timezone = input.timezone.unwrap_or_else(|| "UTC".into());
    check_retention(input.retention_count, input.retention_days)?;
    let (dest, encrypted) = match repository {
        Some(r) => {
            if input.dest_path.is_some() {
                return Err(field(
                    "dest_path",
                    "give either dest_path or repository_id, not both",
                ));
            }
            if input.encrypted.is_some_and(|e| e != r.encrypted) {
                return Err(field(
                    "encrypted",
                    format!(
                        "the repository {:?} is {}encrypted",
                        r.name,
                        if r.encrypted { "" } else { "not " }
                    ),
                ));
            }
            (None, r.encrypted)
        }
        None => {
            let default = format!("{}/{id}", crate::places::BACKUPS);
            let dest = places.repository(
                "dest_path",
                input.dest_path.as_deref().unwrap_or(&default),
                taken,
            )?;
            let backs_itself_up = sources.iter().any(|s| {
                crate::kinds::of(s).on_disk().is_some_and(|path| {
                    crate::places::resolve(&path).is_ok_and(|p| crate::places::overlap(&p, &dest))
                })
            });
            if backs_itself_up {
                return Err(field(
                    "dest_path",
                    "the repository would lie inside (or contain) one of the job's own sources",
                ));
            }
            (
                Some(dest.display().to_string()),
                input.encrypted.unwrap_or(true),
            )
        }
    };
    let now = Utc::now();
    let job = Job {
        volumes: vec![],
        id,
        name,
        node_id,
        sources,
        schedule: given(input.schedule),
        timezone,
        drill_schedule: given(input.drill_schedule),
        ping_url: given(input.ping_url),
        retention_count: input.retention_count,
        retention_days: input.retention_days,
        retention: input.retention,
        dest_path: dest,
        repository_id: repository.map(|r| r.id.clone()),
        encrypted,
        enabled: input.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
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
        last_restore_ms: None,
        next_drill: None,
        warnings: vec![],
    };
    check_schedules(&job)?;
    Ok(job)
}

/// `job` with the fields of `u` replaced, by someone with `role`.
pub(crate) fn update_job(
    mut job: Job,
    u: JobUpdate,
    places: &Places,
    role: Role,
) -> Result<Job, FieldError> {
    if let Some(name) = u.name {
        job.name = self::name(&name)?;
    }
    if u.sources.is_some() || u.volumes.is_some() {
        // `volumes` replaces the volume sources; `sources` replaces all of them.
        let mut sources = u.sources.unwrap_or_else(|| job.sources.clone());
        if let Some(volumes) = u.volumes {
            sources.retain(|s| !matches!(s, Source::Volume { .. }));
            sources.extend(volumes.into_iter().map(|name| Source::Volume { name }));
        }
        check_sources(&sources, places, role, &job.sources)?;
        job.sources = sources;
    }
    if let Some(tz) = u.timezone {
        job.timezone = tz;
    }
    if let Some(s) = u.schedule {
        job.schedule = given(Some(s));
    }
    if let Some(s) = u.drill_schedule {
        job.drill_schedule = given(Some(s));
    }
    if let Some(url) = u.ping_url {
        job.ping_url = given(Some(url));
    }
    check_schedules(&job)?;
    if u.retention_count.is_some() {
        job.retention_count = u.retention_count;
    }
    if u.retention_days.is_some() {
        job.retention_days = u.retention_days;
    }
    if u.retention.is_some() {
        job.retention = u.retention;
    }
    check_retention(job.retention_count, job.retention_days)?;
    if let Some(e) = u.enabled {
        job.enabled = e;
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_follow_their_time_zone() {
        let s = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 2, 0, 0).unwrap())
        );
        let daily = Schedule::parse("@daily", "UTC").unwrap();
        assert_eq!(
            daily.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 0, 0, 0).unwrap())
        );
        for (expr, tz, bad) in [
            ("61 * * * *", "UTC", "schedule"),
            ("* * *", "UTC", "schedule"),
            ("0 0 * * * 2030", "UTC", "schedule"),
            ("0 3 * * *", "Mars/Olympus", "timezone"),
        ] {
            assert_eq!(
                Schedule::parse(expr, tz).unwrap_err().field,
                bad,
                "{expr} {tz}"
            );
        }
    }

    #[test]
    fn a_preview_lists_the_next_runs_in_the_time_zone() {
        let t = Utc.with_ymd_and_hms(2026, 7, 10, 12, 0, 0).unwrap();
        let p = preview("30 2 * * *", Some("Europe/Berlin"), t, 5).unwrap();
        assert_eq!(p.timezone, "Europe/Berlin");
        // 02:30 in Berlin in summer is 00:30 UTC, every day.
        let first = Utc.with_ymd_and_hms(2026, 7, 11, 0, 30, 0).unwrap();
        let days: Vec<_> = (0..5).map(|d| first + chrono::TimeDelta::days(d)).collect();
        assert_eq!(p.next, days);
        assert_eq!(preview("@hourly", None, t, 2).unwrap().timezone, "UTC");
        assert_eq!(preview("nope", None, t, 5).unwrap_err().field, "schedule");
        assert_eq!(
            preview("@daily", Some("Mars/Olympus"), t, 5)
                .unwrap_err()
                .field,
            "timezone"
        );
    }
}

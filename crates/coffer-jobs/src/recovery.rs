//! Point-in-time recovery of a MySQL/MariaDB server: its databases rebuilt as of a second, as
//! a new record of the job whose full backup it starts from.
//!
//! A recovery is planned before it is accepted ([`plan`], a pure function of the request, the
//! clock, the baselines and the archive): the newest full backup through the credential that
//! recorded its binlog position and *finished* at or before the target (a backup still running
//! at the target may already hold later transactions), and per database the archived binlog
//! files from that position up to the target. Then, in the background:
//!
//! 1. `preparing`: a private scratch server is started (`coffer_sources::scratch_server`) and
//!    the baseline's dumps are loaded into it with the restore code every restore uses;
//! 2. `reconstructing`: the binlog files are taken out of the archive into the scratch
//!    server's directory and replayed per database from its position to the end of the target
//!    second (`binlog::replay`);
//! 3. `uploading`: the scratch server's databases (or the tables asked for) are dumped as a
//!    record of the baseline's job with trigger `pitr` (`Purpose::Recovery`), a record like
//!    any other: it verifies, downloads and restores.
//!
//! The scratch server goes when the recovery ends, whatever the outcome; one a killed process
//! left is removed at start-up, and a recovery it left running is marked failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_db::{DbError, PITR_TRIGGER, PitrProduced, RecordQuery, RunOutcome, TriggerFilter};
use coffer_sources::binlog;
use coffer_sources::scratch_server::ScratchServer;
use coffer_types::{
    BinlogPosition, Credential, DbEngine, MysqlTool, PitrRequest, PitrRun, Record, RecordStatus,
    Source,
};

use crate::error::Unrecoverable;
use crate::kinds::database::{self, Recovered};
use crate::pitr::{Archive, Archived, binlog_number};
use crate::spec::{FieldError, field};
use crate::target::Target;
use crate::{Jobs, JobsError, Purpose, Result, blocking, runner};

/// A full backup recovery can start from: a successful record of a job whose MySQL/MariaDB
/// sources all go through the credential, with the binlog position of each database's dump.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    pub record: Record,
}

impl Baseline {
    /// Recovery to this moment or later can start from it.
    pub(crate) fn finished(&self) -> DateTime<Utc> {
        self.record.finished_at.unwrap_or(self.record.started_at)
    }

    /// The databases it holds with their binlog positions.
    pub(crate) fn positions(&self) -> impl Iterator<Item = (&str, &BinlogPosition)> {
        self.record
            .databases
            .iter()
            .filter(|d| d.engine == DbEngine::Mysql)
            .filter_map(|d| Some((d.database.as_str(), d.binlog.as_ref()?)))
    }

    fn position(&self, database: &str) -> Option<&BinlogPosition> {
        self.positions()
            .find(|(d, _)| *d == database)
            .map(|(_, p)| p)
    }
}

/// One database's replay: from `start` in the first of `files`, through all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replay {
    pub database: String,
    pub start: u64,
    pub files: Vec<Archived>,
}

/// What a recovery does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The second recovered to (inclusive).
    pub target: DateTime<Utc>,
    pub baseline: Baseline,
    pub replays: Vec<Replay>,
    /// The tables asked for, by database (none: whole databases).
    pub tables: BTreeMap<String, Vec<String>>,
    /// Neither a database nor tables asked for: the server's accounts come along when the
    /// baseline holds them.
    pub everything: bool,
    /// Binlog files missing on the way, accepted with `allow_gaps`.
    pub gaps: Vec<String>,
}

/// The second a recovery targets: fractions dropped.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("a time in range")
}

fn refuse(why: Unrecoverable, message: String) -> JobsError {
    JobsError::Unrecoverable { why, message }
}

/// `db.table,db.table` as tables by database; each in `database` when one is named.
fn parse_tables(
    tables: Option<&str>,
    database: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>, FieldError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in tables.unwrap_or_default().split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let Some((db, table)) = name
            .split_once('.')
            .filter(|(d, t)| !d.is_empty() && !t.is_empty())
        else {
            return Err(field(
                "tables",
                format!("{name:?} is no table: name each as database.table, separated by commas"),
            ));
        };
        if database.is_some_and(|d| d != db) {
            return Err(field(
                "tables",
                format!("{name} is not in database {}", database.unwrap_or_default()),
            ));
        }
        let list = out.entry(db.to_string()).or_default();
        if !list.iter().any(|t| t == table) {
            list.push(table.to_string());
        }
    }
    if tables.is_some() && out.is_empty() {
        return Err(field("tables", "name at least one table, or leave it out"));
    }
    Ok(out)
}

fn shown(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Plan recovering as `request` asks at `now`, from `baselines` (any order) and the archive's
/// files `archived`, which holds everything the server wrote up to `archived_until` when
/// known; or why not.
pub(crate) fn plan(
    request: &PitrRequest,
    now: DateTime<Utc>,
    baselines: &[Baseline],
    archived: &Archive,
    archived_until: Option<DateTime<Utc>>,
) -> Result<Plan> {
    let target = whole_second(request.target_time);
    if target > now {
        return Err(refuse(
            Unrecoverable::InFuture,
            format!("{} is in the future", shown(target)),
        ));
    }
    let database = request.database.as_deref().filter(|d| !d.is_empty());
    let tables = parse_tables(request.tables.as_deref(), database)?;
    let wanted: Vec<&str> = match database {
        Some(d) => vec![d],
        None => tables.keys().map(String::as_str).collect(),
    };
    let usable: Vec<&Baseline> = baselines
        .iter()
        .filter(|b| b.positions().next().is_some())
        .filter(|b| wanted.iter().all(|d| b.position(d).is_some()))
        .collect();
    let Some(oldest) = usable.iter().map(|b| b.finished()).min() else {
        let of = match wanted.is_empty() {
            true => String::new(),
            false => format!(" of {}", wanted.join(", ")),
        };
        return Err(refuse(
            Unrecoverable::NoBaseline,
            format!(
                "no full backup{of} through this credential recorded its binlog position: back \
                 the databases up with a job while the binary log is archived, then recover"
            ),
        ));
    };
    let Some(baseline) = usable
        .iter()
        .filter(|b| b.finished() <= target)
        .max_by_key(|b| b.finished())
    else {
        return Err(refuse(
            Unrecoverable::NoBaseline,
            format!(
                "the oldest full backup to start from finished at {}: recovering to an earlier \
                 time needs a backup taken before it",
                shown(oldest)
            ),
        ));
    };
    let coverage = crate::pitr::coverage(archived);
    let known = coverage.latest_event.max(archived_until);
    if known.is_none_or(|k| target > k) {
        let held = match known {
            Some(k) => format!("the archive holds the binary log up to {}", shown(k)),
            None => "the archive holds no binary log yet".to_string(),
        };
        return Err(refuse(
            Unrecoverable::OutsideCoverage,
            format!("{held}: choose a time at or before it, or wait for the archive to catch up"),
        ));
    }
    let databases: Vec<String> = match wanted.is_empty() {
        true => baseline.positions().map(|(d, _)| d.to_string()).collect(),
        false => wanted.iter().map(|d| d.to_string()).collect(),
    };
    // The position is in the log the server wrote when the backup was taken.
    let sequence = archived.sequence_at(baseline.finished());
    let mut gaps = BTreeSet::new();
    let mut replays = vec![];
    for db in databases {
        let at = baseline.position(&db).expect("the baseline holds it");
        let (files, missing) = files_to_replay(archived, sequence, at, target);
        gaps.extend(missing);
        let start = match files.first() {
            Some(f) if f.sequence == sequence && f.name == at.file => at.position,
            // The tool starts each file after its header anyway.
            _ => 4,
        };
        replays.push(Replay {
            database: db,
            start,
            files,
        });
    }
    let gaps: Vec<String> = gaps.into_iter().collect();
    if !gaps.is_empty() && !request.allow_gaps {
        return Err(refuse(
            Unrecoverable::BehindGap,
            format!(
                "binary log between the backup of {} and the target is missing from the \
                 archive ({}): its transactions would be lost; ask with allow_gaps to recover \
                 without them",
                shown(baseline.finished()),
                gaps.join(", ")
            ),
        ));
    }
    Ok(Plan {
        target,
        baseline: (*baseline).clone(),
        replays,
        everything: database.is_none() && tables.is_empty(),
        tables,
        gaps,
    })
}

/// The archived files holding the transactions after position `at` (in sequence `sequence`)
/// up to `target`, in order, and what the server wrote on the way that the archive lacks:
/// files, and the resets of its log (what it wrote just before one may be missing).
fn files_to_replay(
    archive: &Archive,
    sequence: u32,
    at: &BinlogPosition,
    target: DateTime<Utc>,
) -> (Vec<Archived>, BTreeSet<String>) {
    let mut missing = BTreeSet::new();
    if archive.get(sequence, &at.file).is_none() {
        missing.insert(at.file.clone());
    }
    let Some((base, from)) = binlog_number(&at.file) else {
        return (vec![], missing);
    };
    let resets = archive.resets();
    let mut files = vec![];
    // The file expected next; none at the start of a later sequence.
    let mut next = Some((base, from));
    'sequences: for s in sequence..=archive.current() {
        if s > sequence {
            match resets.iter().find(|(r, _)| *r == s) {
                Some((_, started)) if *started <= target => {
                    missing.insert(format!(
                        "a break in the binary log at {} (it was off, or started anew)",
                        shown(*started)
                    ));
                    next = None;
                }
                _ => break,
            }
        }
        for a in archive.sequence(s) {
            let Some((b, n)) = binlog_number(&a.name) else {
                continue;
            };
            if s == sequence && (b != base || n < from) {
                continue;
            }
            // Files are written one after the other: from the first that starts after the
            // target on, none is needed.
            if a.scan
                .first
                .is_some_and(|t| i64::from(t) > target.timestamp())
            {
                break 'sequences;
            }
            if let Some((nb, nn)) = next
                && nb == b
            {
                missing.extend((nn..n).map(|k| format!("{b}.{k:06}")));
            }
            files.push(a.clone());
            next = Some((b, n + 1));
        }
    }
    (files, missing)
}

impl Jobs {
    /// The full backups point-in-time recovery of credential `credential_id`'s server can
    /// start from, oldest first.
    pub(crate) async fn baselines(&self, credential_id: &str) -> Result<Vec<Baseline>> {
        let mut out = vec![];
        for job in self.db.jobs().await? {
            let mut servers = job.sources.iter().filter_map(|s| match s {
                Source::Mysql { credential_id, .. } => Some(credential_id.as_str()),
                _ => None,
            });
            // A record of a job with two MySQL servers does not say which dump is whose.
            let only_this = servers.clone().next().is_some() && servers.all(|c| c == credential_id);
            if !only_this {
                continue;
            }
            let query = RecordQuery {
                status: Some(RecordStatus::Success),
                trigger: TriggerFilter::Backups,
                limit: 10_000,
                ..RecordQuery::default()
            };
            for record in self.db.records(&job.id, &query).await? {
                let b = Baseline { record };
                if b.record.trigger != PITR_TRIGGER && b.positions().next().is_some() {
                    out.push(b);
                }
            }
        }
        out.sort_by_key(Baseline::finished);
        Ok(out)
    }

    /// Start recovering credential `credential_id`'s server as `request` asks; refused (and
    /// nothing started) when the plan cannot reach the target, or while another recovery of
    /// the server runs.
    pub async fn recover(
        self: &Arc<Self>,
        credential_id: &str,
        request: PitrRequest,
    ) -> Result<PitrRun> {
        let c = self.db.resource::<Credential>(credential_id).await?;
        if c.engine != DbEngine::Mysql {
            return Err(JobsError::Field(field(
                "credential",
                "point-in-time recovery is for MySQL and MariaDB servers",
            )));
        }
        let baselines = self.baselines(&c.id).await?;
        let archive = self.pitr_target(&c).await?;
        let id = c.id.clone();
        let archived = blocking(move || crate::pitr::archived_in(&archive, &id)).await?;
        let plan = plan(
            &request,
            Utc::now(),
            &baselines,
            &archived,
            self.archived_until(&c.id),
        )?;
        let asked = PitrRequest {
            target_time: plan.target,
            ..request
        };
        let run = self
            .db
            .start_pitr(&c.id, &asked, &plan.baseline.record.id)
            .await?;
        tracing::info!(credential = %c.name, target = %plan.target, baseline = %plan.baseline.record.id, "point-in-time recovery started");
        if !plan.gaps.is_empty() {
            tracing::warn!(credential = %c.name, missing = %plan.gaps.join(", "), "recovering without missing binlog files, as asked");
        }
        let jobs = self.clone();
        let run_id = run.id.clone();
        tokio::spawn(async move {
            let outcome = jobs.reconstruct(&run_id, &c, plan).await;
            let finished = match &outcome {
                Ok(produced) => jobs.db.finish_pitr(&run_id, Ok(produced)).await,
                Err(e) => {
                    tracing::warn!(credential = %c.name, error = %e, "point-in-time recovery failed");
                    jobs.db.finish_pitr(&run_id, Err(&e.to_string())).await
                }
            };
            if let Err(e) = finished {
                tracing::error!(pitr = %run_id, error = %e, "could not finish the recovery");
            }
        });
        Ok(run)
    }

    /// Credential `credential_id`'s recoveries, newest first.
    pub async fn pitr_runs(
        &self,
        credential_id: &str,
        status: Option<coffer_types::PitrStatus>,
        limit: u32,
    ) -> Result<Vec<PitrRun>> {
        self.db.resource::<Credential>(credential_id).await?;
        Ok(self.db.pitr_runs(credential_id, status, limit).await?)
    }

    pub async fn pitr_run(&self, credential_id: &str, id: &str) -> Result<PitrRun> {
        Ok(self.db.pitr_run(credential_id, id).await?)
    }

    /// The three phases of a recovery (see the module's description).
    async fn reconstruct(&self, run_id: &str, c: &Credential, plan: Plan) -> Result<PitrProduced> {
        let job = self.db.job(&plan.baseline.record.job_id).await?;
        let job_target = self.target(&job).await?;
        let archive = self.pitr_target(c).await?;
        let logins = self.logins(&job.sources).await?;
        let base = self.places.scratch_servers();
        let (cid, record) = (c.id.clone(), plan.baseline.record.clone());
        let (sources, replays) = (job.sources.clone(), plan.replays.clone());
        let everything = plan.everything;
        let (server, logins, users) = blocking(move || {
            let server = ScratchServer::start(&base)?;
            let logins = logins.through(&cid, server.login.clone())?;
            let (logins, servers) = database::recorded(&job_target, &record, &sources, logins)?;
            let repo = job_target.open()?;
            let id = runner::snapshot_id(record.snapshot_id.as_deref().unwrap_or_default())?;
            let session = repo.open_snapshot(&id)?;
            for r in &replays {
                database::restore(&session, &logins, &cid, &r.database, &r.database)
                    .map_err(|e| e.context("loading the baseline"))?;
            }
            // A whole server's accounts: as the baseline holds them, copied for the result.
            let users = match servers.get(&cid).is_some_and(|s| s.globals) && everything {
                true => {
                    let path = server.dir().join("users.sql");
                    let mut out = std::fs::File::create(&path)
                        .map_err(|e| JobsError::io(path.display(), e))?;
                    session.cat(&logins.globals_path(&cid), &mut out)?;
                    Some(path)
                }
                false => None,
            };
            Ok::<_, JobsError>((server, logins, users))
        })
        .await?;

        self.db
            .set_pitr_phase(run_id, "reconstructing", None)
            .await?;
        let (target, replays, cid) = (plan.target, plan.replays.clone(), c.id.clone());
        let server = blocking(move || {
            replay_all(&server, &archive, &cid, &replays, target)?;
            Ok::<_, JobsError>(server)
        })
        .await?;

        let record = loop {
            match self
                .db
                .start_record(&job.id, PITR_TRIGGER, job.encrypted)
                .await
            {
                // The job's backup runs: the result is stored when it is done.
                Err(DbError::JobRunning) => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await
                }
                other => break other?,
            }
        };
        let made = Some((job.id.as_str(), record.id.as_str()));
        self.db.set_pitr_phase(run_id, "uploading", made).await?;
        let source = |database: Option<&str>| Source::Mysql {
            credential_id: c.id.clone(),
            database: database.map(str::to_string),
            all: database.is_none(),
            backup_tool: Some(MysqlTool::MariadbDump),
        };
        // The scratch server holds the databases replayed, and nothing else.
        let sources = match users {
            Some(_) => vec![source(None)],
            None => plan
                .replays
                .iter()
                .map(|r| source(Some(&r.database)))
                .collect(),
        };
        let purpose = Purpose::Recovery {
            logins: Box::new(logins.recovered(Recovered {
                at: plan.target,
                tables: plan.tables.clone(),
                users,
            })),
            at: plan.target,
        };
        let outcome = self.backup_record(&job, sources, &record.id, purpose).await;
        // Stopping it and removing its data directory is blocking work.
        let _ = tokio::task::spawn_blocking(move || drop(server)).await;
        match outcome {
            RunOutcome::Success {
                size_bytes,
                file_path,
                databases,
                ..
            } => Ok(PitrProduced {
                job_id: job.id.clone(),
                record_id: record.id,
                file_path: Some(file_path),
                size_bytes: Some(size_bytes),
                file_count: databases.len() as u64,
            }),
            RunOutcome::Failed { error } => Err(JobsError::Internal(format!(
                "dumping the recovered databases: {error}"
            ))),
        }
    }
}

/// Take the binlog files the replays need out of credential `credential`'s archive into the
/// scratch server's directory, and replay each database's.
fn replay_all(
    server: &ScratchServer,
    archive: &Target,
    credential: &str,
    replays: &[Replay],
    target: DateTime<Utc>,
) -> Result<()> {
    let dir = server.dir().join("binlog");
    let keys: BTreeSet<crate::pitr::Key> = replays
        .iter()
        .flat_map(|r| &r.files)
        .map(Archived::key)
        .collect();
    // Each sequence in a directory of its own: they reuse the names.
    let local = |(sequence, name): &crate::pitr::Key| dir.join(sequence.to_string()).join(name);
    let mut repo = archive.open()?;
    let mut archived = crate::pitr::archived(&repo, credential)?;
    for key in keys {
        let path = local(&key);
        let parent = path.parent().expect("in a directory");
        std::fs::create_dir_all(parent).map_err(|e| JobsError::io(parent.display(), e))?;
        let name = &key.1;
        // The archiver replaces the copy of a growing file as it grows: a copy that went
        // since the listing is read from its successor, which holds at least as much.
        let mut tries = 0;
        loop {
            let copy = archived.files.get(&key).ok_or_else(|| JobsError::Damaged {
                object: format!("the archived binlog file {name}"),
                detail: "it is gone from the archive".into(),
            })?;
            let mut out =
                std::fs::File::create(&path).map_err(|e| JobsError::io(path.display(), e))?;
            match copy.copy_to(&repo, &mut out) {
                Ok(_) => break,
                Err(_) if tries < 3 => {
                    tries += 1;
                    repo = archive.open()?;
                    archived = crate::pitr::archived(&repo, credential)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    for r in replays.iter().filter(|r| !r.files.is_empty()) {
        let files: Vec<_> = r.files.iter().map(|f| local(&f.key())).collect();
        binlog::replay(&server.login, &files, r.start, target, &r.database)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::DatabaseDump;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn baseline(finished: i64, dbs: &[(&str, &str, u64)]) -> Baseline {
        let record: Record = serde_json::from_value(serde_json::json!({
            "id": format!("r{finished}"), "job_id": "j", "status": "success", "phase": "complete",
            "size_bytes": 1, "stored_bytes": 1, "checksum": null, "file_path": null,
            "snapshot_id": null, "encrypted": true, "trigger": "manual",
            "started_at": at(finished - 5), "finished_at": at(finished), "duration_ms": 5000,
            "error": null
        }))
        .unwrap();
        let databases = dbs
            .iter()
            .map(|(db, file, position)| DatabaseDump {
                engine: DbEngine::Mysql,
                database: db.to_string(),
                tool: "mariadb-dump".into(),
                size_bytes: 1,
                binlog: Some(BinlogPosition {
                    file: file.to_string(),
                    position: *position,
                    gtid: None,
                }),
                point_in_time: None,
                tables: vec![],
                rows: None,
            })
            .collect();
        Baseline {
            record: Record {
                databases,
                ..record
            },
        }
    }

    /// Files of sequence 0 holding one transaction each at the times given.
    fn archive(files: &[File]) -> Archive {
        sequences(&[(0, files)])
    }

    /// A file's name and the times of its first and last transaction.
    type File<'a> = (&'a str, i64, i64);

    fn sequences(sequences: &[(u32, &[File])]) -> Archive {
        crate::pitr::tests::archive(sequences.iter().flat_map(|(s, files)| {
            files.iter().map(|(name, first, last)| {
                let t = |secs: i64| at(secs).timestamp() as u32;
                crate::pitr::tests::file(*s, name, 1, t(*first), t(*last))
            })
        }))
    }

    fn request(target: i64) -> PitrRequest {
        PitrRequest {
            target_time: at(target) + chrono::TimeDelta::milliseconds(700),
            database: None,
            tables: None,
            allow_gaps: false,
        }
    }

    fn why(r: Result<Plan>) -> Unrecoverable {
        match r {
            Err(JobsError::Unrecoverable { why, .. }) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_newest_baseline_finished_by_the_target_is_replayed_from_its_position() {
        let baselines = [
            baseline(100, &[("shop", "binlog.000001", 500)]),
            baseline(300, &[("shop", "binlog.000002", 900)]),
        ];
        let files = archive(&[
            ("binlog.000001", 50, 250),
            ("binlog.000002", 260, 400),
            ("binlog.000003", 410, 600),
        ]);
        let now = at(1000);
        let p = plan(&request(350), now, &baselines, &files, None).unwrap();
        assert_eq!(p.target, at(350), "fractions of a second are dropped");
        assert_eq!(p.baseline.record.id, "r300");
        assert_eq!(p.replays.len(), 1);
        assert_eq!(p.replays[0].start, 900);
        let names: Vec<_> = p.replays[0].files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["binlog.000002"],
            "the file starting after the target is left"
        );
        // Before the newer backup finished: the older one, and both files.
        let p = plan(&request(299), now, &baselines, &files, None).unwrap();
        assert_eq!(p.baseline.record.id, "r100");
        assert_eq!(p.replays[0].files.len(), 2);
        assert_eq!(p.replays[0].start, 500);
    }

    #[test]
    fn targets_that_cannot_be_reached_are_refused_with_their_reason() {
        let baselines = [baseline(100, &[("shop", "binlog.000001", 500)])];
        let files = archive(&[("binlog.000001", 50, 250), ("binlog.000003", 410, 600)]);
        let now = at(1000);
        assert_eq!(
            why(plan(&request(1001), now, &baselines, &files, None)),
            Unrecoverable::InFuture
        );
        assert_eq!(
            why(plan(&request(99), now, &baselines, &files, None)),
            Unrecoverable::NoBaseline
        );
        assert_eq!(
            why(plan(&request(601), now, &baselines, &files, None)),
            Unrecoverable::OutsideCoverage
        );
        // An idle server: the archive is known complete up to later than its latest event.
        let idle = archive(&[("binlog.000001", 50, 250)]);
        assert!(plan(&request(700), now, &baselines, &idle, Some(at(800))).is_ok());
        assert_eq!(
            why(plan(&request(700), now, &baselines, &idle, None)),
            Unrecoverable::OutsideCoverage
        );
        assert_eq!(
            why(plan(&request(500), now, &baselines, &files, None)),
            Unrecoverable::BehindGap
        );
        // Before the gap, it is no matter.
        assert!(plan(&request(200), now, &baselines, &files, None).is_ok());
        let allowed = PitrRequest {
            allow_gaps: true,
            ..request(500)
        };
        let p = plan(&allowed, now, &baselines, &files, None).unwrap();
        assert_eq!(p.gaps, ["binlog.000002"]);
        assert_eq!(p.replays[0].files.len(), 2);
        // A baseline whose own file was never archived is behind a gap too.
        let later = [baseline(100, &[("shop", "binlog.000002", 500)])];
        assert_eq!(
            why(plan(&request(500), now, &later, &files, None)),
            Unrecoverable::BehindGap
        );
        // None of a database asked for.
        let other = PitrRequest {
            database: Some("crm".into()),
            ..request(200)
        };
        assert_eq!(
            why(plan(&other, now, &baselines, &files, None)),
            Unrecoverable::NoBaseline
        );
    }

    #[test]
    fn a_reset_of_the_binary_log_is_a_gap_for_older_backups_and_a_start_for_newer_ones() {
        let baselines = [
            baseline(100, &[("shop", "binlog.000001", 500)]),
            baseline(700, &[("shop", "binlog.000001", 300)]),
        ];
        // The server started its log anew at 599 (the file's creation, a second before its
        // first transaction): 000001 again.
        let files = sequences(&[
            (
                0,
                &[("binlog.000001", 50, 250), ("binlog.000002", 260, 500)],
            ),
            (
                1,
                &[("binlog.000001", 600, 800), ("binlog.000002", 810, 900)],
            ),
        ]);
        let now = at(1000);
        // Before the reset: the old files, the new ones of the same names untouched.
        let p = plan(&request(400), now, &baselines, &files, None).unwrap();
        assert_eq!(p.baseline.record.id, "r100");
        let keys: Vec<_> = p.replays[0].files.iter().map(Archived::key).collect();
        assert_eq!(
            keys,
            [(0, "binlog.000001".into()), (0, "binlog.000002".into())]
        );
        // After it, from the older backup: across the reset, a gap.
        let allowed = PitrRequest {
            allow_gaps: true,
            ..request(650)
        };
        let p = plan(&allowed, now, &baselines[..1], &files, None).unwrap();
        assert_eq!(p.gaps.len(), 1, "{:?}", p.gaps);
        assert!(p.gaps[0].contains("a break"), "{:?}", p.gaps);
        assert_eq!(p.replays[0].files.len(), 3);
        assert_eq!(
            why(plan(&request(650), now, &baselines[..1], &files, None)),
            Unrecoverable::BehindGap
        );
        // From the backup taken after it: its position is in the new 000001.
        let p = plan(&request(850), now, &baselines, &files, None).unwrap();
        assert_eq!(p.baseline.record.id, "r700");
        assert!(p.gaps.is_empty(), "{:?}", p.gaps);
        assert_eq!(p.replays[0].start, 300);
        let keys: Vec<_> = p.replays[0].files.iter().map(Archived::key).collect();
        assert_eq!(
            keys,
            [(1, "binlog.000001".into()), (1, "binlog.000002".into())]
        );
    }

    #[test]
    fn tables_are_named_by_database() {
        let t = parse_tables(Some("shop.orders, shop.items,crm.people"), None).unwrap();
        assert_eq!(t["shop"], ["orders", "items"]);
        assert_eq!(t["crm"], ["people"]);
        assert!(parse_tables(Some("orders"), None).is_err());
        assert!(parse_tables(Some("crm.people"), Some("shop")).is_err());
        assert!(parse_tables(Some(" , "), None).is_err());
        assert!(parse_tables(None, None).unwrap().is_empty());
    }
}

//! The loop that keeps the binary log of every credential with `pitr` on archived: a follower
//! per credential copies the server's binlog files into `<data_dir>/pitr/<credential id>/`, and
//! every few seconds what grew is stored in the credential's archive repository
//! (`<data_dir>/backups/pitr-<credential id>`, encrypted under the repository key). A follower
//! that stops (the server restarted, the network dropped) is started again on the next pass,
//! from the newest file the archive holds; a file the server purged meanwhile shows as a gap.
//! Files the archive holds whole are removed from the spool. An archive that falls more than
//! five minutes behind its server (or stands still as long) is told once as `pitr.lagging`, a
//! new gap in it as `pitr.gap`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use coffer_repo::Location;
use coffer_sources::binlog::Follower;
use coffer_sources::mysql;
use coffer_types::Credential;

use crate::kinds::database::Login;
use crate::pitr::{self, Archive, Pieces};
use crate::target::Target;
use crate::{Jobs, JobsError, Result, blocking};

/// How often what grew is stored.
const EVERY: Duration = Duration::from_secs(2);

/// How far behind its server an archive may fall before it is told.
const LAGGING: Duration = Duration::from_secs(300);

/// What the archiver told, by credential id: which archives are lagging (once per episode),
/// since when each one stands still, and the gaps each one had (those it had when the
/// archiver started are not news).
#[derive(Default)]
struct Alerted {
    lagging: std::collections::HashSet<String>,
    stuck_since: HashMap<String, Instant>,
    gaps: HashMap<String, usize>,
}

/// One credential being archived.
struct Following {
    follower: Follower,
    known: Archive,
    /// The newest moment whose server position the archive is known to hold: the archive
    /// holds everything the server had written by then.
    caught_up: Instant,
    /// The server's position asked for at the end of the previous pass, and when: the follower
    /// has had a pass's time to copy up to it.
    asked: Option<(String, u64, Instant)>,
    /// Whether `caught_up` was proven (a position asked for found in the archive) since the
    /// follower started, rather than assumed.
    proven: bool,
    /// Where the archive is (its location).
    place: String,
}

/// How archiving a credential's binary log stands.
#[derive(Debug, Clone)]
pub(crate) enum Archiving {
    /// The archive holds everything the server wrote up to this moment.
    CaughtUp(DateTime<Utc>),
    /// It stands still, for this reason.
    Stuck(String),
}

impl Jobs {
    /// Archive the binary logs of the `pitr` credentials until `shutdown` completes.
    pub async fn archive_binlogs(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut following: HashMap<String, Following> = HashMap::new();
        let mut told = Alerted::default();
        loop {
            if let Err(e) = self.archive_pass(&mut following, &mut told).await {
                tracing::warn!(error = %e, "the binlog archiver cannot list its credentials");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    async fn archive_pass(
        &self,
        following: &mut HashMap<String, Following>,
        told: &mut Alerted,
    ) -> Result<()> {
        let credentials: Vec<Credential> = self
            .db
            .resources::<Credential>()
            .await?
            .into_iter()
            .filter(|c| c.pitr)
            .collect();
        following.retain(|id, _| credentials.iter().any(|c| &c.id == id));
        self.archiving
            .lock()
            .expect("archiving")
            .retain(|id, _| following.contains_key(id));
        for c in credentials {
            let (id, name) = (c.id.clone(), c.name.clone());
            let state = following.remove(&id);
            match self.archive_one(c, state).await {
                Ok(f) => {
                    let lag = f.caught_up.elapsed();
                    told.stuck_since.remove(&id);
                    let gaps = pitr::coverage(&f.known).gaps;
                    if let Some(before) = told.gaps.insert(id.clone(), gaps.len())
                        && gaps.len() > before
                    {
                        let why = format!("{name}: the archive misses {}", gaps.join(", "));
                        self.emit("pitr.gap", "", "", None, Some(&why));
                    }
                    let why = format!("its archive is {} s behind the server", lag.as_secs());
                    self.tell_lagging(told, &id, &name, (lag > LAGGING).then_some(why));
                    metrics::gauge!("coffer_pitr_archive_lag_seconds", "credential" => id.clone(), "name" => name)
                        .set(lag.as_secs_f64());
                    let mut archiving = self.archiving.lock().expect("archiving");
                    match chrono::TimeDelta::from_std(lag) {
                        Ok(lag) if f.proven => {
                            archiving.insert(id.clone(), Archiving::CaughtUp(Utc::now() - lag));
                        }
                        _ => {
                            archiving.remove(&id);
                        }
                    }
                    drop(archiving);
                    following.insert(id, f);
                }
                Err(e) => {
                    tracing::warn!(credential = %name, error = %e, "binlog archiving");
                    let since = *told
                        .stuck_since
                        .entry(id.clone())
                        .or_insert_with(Instant::now);
                    let why = format!("archiving stands still: {e}");
                    self.tell_lagging(told, &id, &name, (since.elapsed() > LAGGING).then_some(why));
                    self.archiving
                        .lock()
                        .expect("archiving")
                        .insert(id, Archiving::Stuck(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Tell once that credential `id`'s archive is lagging (`why`), and forget it once it is
    /// not (none).
    fn tell_lagging(&self, told: &mut Alerted, id: &str, name: &str, why: Option<String>) {
        match why {
            Some(why) if told.lagging.insert(id.to_string()) => {
                self.emit(
                    "pitr.lagging",
                    "",
                    "",
                    None,
                    Some(&format!("{name}: {why}")),
                );
            }
            Some(_) => {}
            None => {
                told.lagging.remove(id);
            }
        }
    }

    /// One pass for credential `c`: (re)start its follower when needed, store what grew.
    async fn archive_one(&self, c: Credential, state: Option<Following>) -> Result<Following> {
        let Login::Mysql(login) = self.login_of(c.clone()).await? else {
            return Err(JobsError::Unusable(
                "point-in-time recovery is for MySQL and MariaDB servers".into(),
            ));
        };
        let target = self.pitr_target(&c).await?;
        let spool = self.pitr_spool(&c.id);
        let id = c.id.clone();
        blocking(move || {
            let repo = target.open_or_init()?;
            let place = target.location.to_string();
            // Archiving somewhere else starts from what is archived there.
            let running = state
                .filter(|f| f.place == place)
                .and_then(|mut f| f.follower.check().is_ok().then_some(f));
            let mut f = match running {
                Some(f) => f,
                None => start(&login, &repo, &id, spool.clone(), place)?,
            };
            let stored = pitr::store(&repo, &id, &spool, &mut f.known, Pieces::default())?;
            // A file the server closed was stored for the last time: the data only its earlier
            // copies held (their last, partial chunks) goes.
            if stored.iter().any(|k| f.known.files[k].scan.complete) {
                let prune = coffer_repo::prune::PruneOptions { dry_run: false };
                coffer_repo::prune::prune(&repo, &prune)?;
            }
            // Caught up to the moment of the previous pass's question when the archive holds
            // the server's file of then up to its position of then, as its newest file (an
            // older file of that name is another, when the server started its log anew).
            if let Some((file, position, at)) = f.asked.take()
                && f.known
                    .newest()
                    .is_some_and(|a| a.name == file && a.scan.settled >= position)
            {
                f.caught_up = at;
                f.proven = true;
            }
            let (file, position) = login.master_status()?;
            f.asked = Some((file, position, Instant::now()));
            // What the archive holds whole needs no copy on the local disk.
            pitr::tidy(&spool, &f.known)?;
            Ok::<_, JobsError>(f)
        })
        .await
    }

    /// Where credential `c`'s binlog archive lives: a repository of its own, encrypted with
    /// the repository key, under the data directory or inside the registered repository the
    /// credential names.
    pub(crate) async fn pitr_target(&self, c: &Credential) -> Result<Target> {
        let key = Some(self.repository_key().await?);
        let name = format!("pitr-{}", c.id);
        match &c.pitr_repository_id {
            None => Ok(Target {
                location: Location::Local(self.places.backups().join(name)),
                s3: None,
                key,
                cache: None,
            }),
            Some(id) => {
                let r = self.db.resource::<coffer_types::Repository>(id).await?;
                let t = self.registered_target(r, key).await?;
                Ok(Target {
                    location: t.location.join(&name),
                    ..t
                })
            }
        }
    }

    fn pitr_spool(&self, id: &str) -> PathBuf {
        self.places.pitr().join(id)
    }

    /// The moment up to which credential `id`'s archive is known to hold everything its
    /// server wrote, while it is being archived.
    pub(crate) fn archived_until(&self, id: &str) -> Option<DateTime<Utc>> {
        match self.archiving.lock().expect("archiving").get(id) {
            Some(Archiving::CaughtUp(at)) => Some(*at),
            _ => None,
        }
    }

    /// What credential `id`'s archive covers, the full backups recovery can start from, and
    /// why archiving stands still if it does.
    pub async fn pitr_coverage(&self, id: &str) -> Result<coffer_types::PitrCoverage> {
        let c = self.db.resource::<Credential>(id).await?;
        let target = self.pitr_target(&c).await?;
        let cid = c.id.clone();
        let coverage =
            blocking(move || pitr::archived_in(&target, &cid).map(|a| pitr::coverage(&a))).await?;
        let problem = match self.archiving.lock().expect("archiving").get(id) {
            Some(Archiving::Stuck(why)) => Some(why.clone()),
            _ => None,
        };
        let baselines = self
            .baselines(id)
            .await?
            .into_iter()
            .map(|b| coffer_types::PitrBaseline {
                finished_at: b.finished(),
                databases: b.positions().map(|(d, _)| d.to_string()).collect(),
                job_id: b.record.job_id,
                record_id: b.record.id,
            })
            .collect();
        Ok(coffer_types::PitrCoverage {
            available: coverage.available(),
            oldest_event: coverage.oldest_event,
            latest_event: coverage.latest_event,
            total_events: coverage.total_events,
            gaps: coverage.gaps,
            resets: coverage.resets,
            archiving: c.pitr,
            archived_until: self.archived_until(id).filter(|_| c.pitr),
            problem,
            baselines,
        })
    }
}

/// Start following from the newest file the archive holds, if the server still has it, else
/// from the server's oldest.
fn start(
    login: &mysql::Login,
    repo: &coffer_repo::Repository,
    id: &str,
    spool: PathBuf,
    place: String,
) -> Result<Following> {
    let mut known = pitr::archived(repo, id)?;
    let readiness = login.binlog_readiness()?;
    if !readiness.ready() {
        // What the server writes without its binary log is lost to recovery: a break.
        if !readiness.log_bin {
            pitr::mark_off(repo, id, &mut known, Utc::now())?;
        }
        return Err(JobsError::Unusable(readiness.missing.join("; ")));
    }
    let logs = login.binary_logs()?;
    let from = known
        .newest()
        .map(|a| &a.name)
        .filter(|newest| logs.iter().any(|(n, _)| n == *newest))
        .or_else(|| logs.first().map(|(n, _)| n))
        .cloned()
        .ok_or_else(|| JobsError::Unusable("the server lists no binary log".into()))?;
    let follower = Follower::start(login, &spool, &from, replica_id(id))?;
    Ok(Following {
        follower,
        known,
        caught_up: Instant::now(),
        asked: None,
        proven: false,
        place,
    })
}

/// The server id the follower registers with: fixed per credential (ids are random hex),
/// above the ids people give real replicas.
fn replica_id(credential: &str) -> u32 {
    let n = credential
        .get(..7)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    1_000_000_000 + n
}

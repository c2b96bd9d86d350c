//! `GET /api/export` and `POST /api/import`: the configuration as one JSON document, merged
//! into a running server. Everything imported goes through the same checks as when it is
//! created by hand (roots, names, credentials), gets a new id where it must (users,
//! repositories, credentials; references follow), and nothing that exists (by id or name) is
//! touched. A job keeps its id, and with it its records, when its repository holds its data.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_jobs::Managed;
use coffer_types::{
    Credential, CredentialInput, Export, ImportItem, ImportReport, Job, JobInput, Repository,
    RepositoryInput, Role,
};

use crate::AppState;
use crate::error::ApiError;
use crate::selfbackup::check_setting;

const FORMAT: &str = "coffer-export";
const VERSION: u32 = 1;
/// What an imported user's password is until an admin sets one: no password verifies.
const NO_PASSWORD: &str = "!";

pub async fn export(state: &AppState) -> Result<Export, ApiError> {
    let settings = state
        .db
        .settings()
        .await?
        .into_iter()
        .filter(|s| s.key != coffer_jobs::KEY_SETTING)
        .collect();
    Ok(Export {
        format: FORMAT.into(),
        version: VERSION,
        coffer_version: state.version.into(),
        exported_at: chrono::Utc::now(),
        users: state.db.users().await?,
        repositories: state.jobs.resources::<Repository>().await?,
        credentials: state.jobs.resources::<Credential>().await?,
        jobs: state.jobs.list().await?,
        settings,
    })
}

fn item(kind: &str, id: &str, name: &str, note: Option<String>) -> ImportItem {
    ImportItem {
        kind: kind.into(),
        id: id.into(),
        name: name.into(),
        note,
    }
}

/// The job as input for this server: the repository and credentials it names by their ids
/// here, keeping its own id (`adopt`: taken when its repository holds its data).
fn job_input(
    job: &Job,
    repositories: &HashMap<String, String>,
    credentials: &HashMap<String, String>,
) -> Result<JobInput, ApiError> {
    let missing = |what: &str, id: &str| {
        ApiError::BadRequest(format!("its {what} {id:?} is not on this server"))
    };
    let mut sources = vec![];
    for s in &job.sources {
        let mut v = serde_json::to_value(s).map_err(ApiError::internal)?;
        if let Some(old) = v
            .get("credential_id")
            .and_then(|c| c.as_str())
            .map(str::to_string)
        {
            let new = credentials
                .get(&old)
                .ok_or_else(|| missing("credential", &old))?;
            v["credential_id"] = new.clone().into();
        }
        sources.push(serde_json::from_value(v).map_err(ApiError::internal)?);
    }
    let repository_id = match &job.repository_id {
        Some(old) => Some(
            repositories
                .get(old)
                .ok_or_else(|| missing("repository", old))?
                .clone(),
        ),
        None => None,
    };
    Ok(JobInput {
        name: job.name.clone(),
        node_id: Some(job.node_id.clone()),
        sources,
        volumes: vec![],
        schedule: job.schedule.clone(),
        timezone: Some(job.timezone.clone()),
        drill_schedule: job.drill_schedule.clone(),
        ping_url: job.ping_url.clone(),
        retention_count: job.retention_count,
        retention_days: job.retention_days,
        retention: job.retention.clone(),
        dest_path: job.dest_path.clone(),
        repository_id,
        encrypted: Some(job.encrypted),
        enabled: Some(job.enabled),
        adopt: Some(job.id.clone()),
    })
}

/// Import the resources `given` (created from the input `input` makes, without their secret,
/// which the note asks for), skipping those that exist by id or name; their old ids mapped to
/// their ids here.
async fn import_resources<R: Managed>(
    jobs: &coffer_jobs::Jobs,
    given: &[R],
    report: &mut ImportReport,
    input: impl Fn(&R) -> (R::Input, Option<&'static str>),
) -> Result<HashMap<String, String>, ApiError> {
    let mut ids = HashMap::new();
    let existing = jobs.resources::<R>().await?;
    for r in given {
        if let Some(here) = existing
            .iter()
            .find(|e| e.id() == r.id() || e.name() == r.name())
        {
            ids.insert(r.id().to_string(), here.id().to_string());
            report
                .skipped
                .push(item(R::KIND, r.id(), r.name(), Some("exists".into())));
            continue;
        }
        let (made, note) = input(r);
        match jobs.create_resource::<R>(made).await {
            Ok(added) => {
                ids.insert(r.id().to_string(), added.id().to_string());
                let note = note.map(str::to_string);
                report.added.push(item(R::KIND, r.id(), r.name(), note));
            }
            Err(e) => {
                let why = ApiError::from(e).to_string();
                report
                    .skipped
                    .push(item(R::KIND, r.id(), r.name(), Some(why)));
            }
        }
    }
    Ok(ids)
}

pub async fn import(state: &Arc<AppState>, doc: Export) -> Result<ImportReport, ApiError> {
    if doc.format != FORMAT || doc.version != VERSION {
        return Err(ApiError::BadRequest(format!(
            "this is not a Coffer export of version {VERSION} (format {:?}, version {})",
            doc.format, doc.version
        )));
    }
    let mut report = ImportReport::default();
    let (db, jobs) = (&state.db, &state.jobs);

    for u in &doc.users {
        if db.user(&u.id).await.is_ok() || db.user_by_name(&u.username).await?.is_some() {
            report
                .skipped
                .push(item("user", &u.id, &u.username, Some("exists".into())));
            continue;
        }
        let added = db.create_user(&u.username, NO_PASSWORD, u.role).await?;
        let note = format!(
            "no password yet: an admin sets one with PUT /api/users/{}",
            added.id
        );
        report
            .added
            .push(item("user", &u.id, &u.username, Some(note)));
    }

    // Old id → id here, for the jobs that name them.
    let repositories = import_resources(jobs, &doc.repositories, &mut report, |r| {
        let input = RepositoryInput {
            name: r.name.clone(),
            url: r.url.clone(),
            endpoint: r.endpoint.clone(),
            region: r.region.clone(),
            access_key_id: r.access_key_id.clone(),
            secret_access_key: None,
            encrypted: Some(r.encrypted),
        };
        (input, r.has_secret.then_some("enter its secret key again"))
    })
    .await?;
    let credentials = import_resources(jobs, &doc.credentials, &mut report, |c| {
        let input = CredentialInput {
            name: c.name.clone(),
            engine: c.engine,
            host: c.host.clone(),
            port: Some(c.port),
            socket: c.socket.clone(),
            user: c.user.clone(),
            password: None,
            tls: Some(c.tls),
            pitr: Some(c.pitr),
            // The archive's repository as imported here.
            pitr_repository_id: c
                .pitr_repository_id
                .as_ref()
                .and_then(|id| repositories.get(id).cloned()),
        };
        (input, c.has_password.then_some("enter its password again"))
    })
    .await?;

    let existing = jobs.list().await?;
    for j in &doc.jobs {
        if existing.iter().any(|e| e.id == j.id || e.name == j.name) {
            report
                .skipped
                .push(item("job", &j.id, &j.name, Some("exists".into())));
            continue;
        }
        let created = match job_input(j, &repositories, &credentials) {
            Err(e) => Err(e),
            Ok(input) => match jobs.create(input.clone(), Role::Admin).await {
                // Its repository holds no data of it: a job of its own, with a new id.
                Err(coffer_jobs::JobsError::Field(f)) if f.field == "adopt" => {
                    let input = JobInput {
                        adopt: None,
                        ..input
                    };
                    jobs.create(input, Role::Admin)
                        .await
                        .map_err(ApiError::from)
                }
                done => done.map_err(ApiError::from),
            },
        }
        .map_err(|e| e.to_string());
        match created {
            Ok(added) => {
                let note = (added.id != j.id).then(|| format!("its id here is {}", added.id));
                report.added.push(item("job", &j.id, &j.name, note));
            }
            Err(why) => report.skipped.push(item("job", &j.id, &j.name, Some(why))),
        }
    }

    for s in &doc.settings {
        let skip = if s.key == coffer_jobs::KEY_SETTING {
            Some("the repository key is never imported".to_string())
        } else if db.setting(&s.key).await?.is_some() {
            Some("exists".into())
        } else {
            check_setting(state, &s.key, &s.value)
                .await
                .err()
                .map(|e| e.to_string())
        };
        match skip {
            Some(why) => report
                .skipped
                .push(item("setting", &s.key, &s.key, Some(why))),
            None => {
                db.put_setting(&s.key, &s.value).await?;
                report.added.push(item("setting", &s.key, &s.key, None));
            }
        }
    }
    Ok(report)
}

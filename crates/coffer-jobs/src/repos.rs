//! Repositories registered for jobs: validation, secrets sealed by the vault, and the
//! [`Target`] a job's runs open (its own local repository, or a registered one).

use std::path::PathBuf;

use coffer_repo::{Location, S3Options};
use coffer_types::{Check, Job, Repository, RepositoryInput, RepositoryUpdate};

use crate::resources::Managed;
use crate::spec::{self, field};
use crate::target::{self, Target};
use crate::{Jobs, JobsError, Result, blocking};

fn check_endpoint(endpoint: Option<&str>) -> Result<()> {
    match endpoint {
        Some(e)
            if !(e.starts_with("http://") || e.starts_with("https://"))
                || e.split("://").nth(1).is_none_or(str::is_empty) =>
        {
            Err(field(
                "endpoint",
                format!("{e:?} is not an http:// or https:// address"),
            )
            .into())
        }
        _ => Ok(()),
    }
}

impl Managed for Repository {
    async fn make(
        jobs: &Jobs,
        id: String,
        input: RepositoryInput,
    ) -> Result<(Self, Option<String>)> {
        let now = chrono::Utc::now();
        check_endpoint(input.endpoint.as_deref())?;
        let r = Repository {
            name: spec::name(&input.name)?,
            url: jobs.repository_url(&input.url, None).await?,
            endpoint: input.endpoint,
            region: input.region,
            access_key_id: input.access_key_id,
            has_secret: input.secret_access_key.is_some(),
            encrypted: input.encrypted.unwrap_or(true),
            jobs: 0,
            created_at: now,
            updated_at: now,
            id,
        };
        Ok((r, input.secret_access_key))
    }

    async fn change(
        jobs: &Jobs,
        mut r: Self,
        u: RepositoryUpdate,
    ) -> Result<(Self, Option<String>)> {
        if let Some(name) = u.name {
            r.name = spec::name(&name)?;
        }
        let url = match u.url {
            Some(url) => Some(jobs.repository_url(&url, Some(&r.url)).await?),
            None => None,
        };
        let moved = url.as_ref().is_some_and(|u| *u != r.url)
            || u.encrypted.is_some_and(|e| e != r.encrypted);
        if moved && r.jobs > 0 {
            return Err(JobsError::Busy(format!(
                "repository {:?} is used by {} job(s): its url and encryption cannot change",
                r.name, r.jobs
            )));
        }
        if let Some(url) = url {
            r.url = url;
        }
        if let Some(e) = u.encrypted {
            r.encrypted = e;
        }
        if u.endpoint.is_some() {
            check_endpoint(u.endpoint.as_deref())?;
            r.endpoint = u.endpoint.filter(|e| !e.is_empty());
        }
        if u.region.is_some() {
            r.region = u.region.filter(|e| !e.is_empty());
        }
        if u.access_key_id.is_some() {
            r.access_key_id = u.access_key_id.filter(|e| !e.is_empty());
        }
        Ok((r, u.secret_access_key))
    }

    /// Whether the repository can be reached with its settings, and what it holds: a
    /// repository that opens with the server's key, nothing yet (the first run makes one), or
    /// why not.
    async fn test(jobs: &Jobs, r: Self) -> Result<Check> {
        let key = match r.encrypted {
            true => Some(jobs.export_repository_key().await?),
            false => None,
        };
        let target = jobs.registered_target(r, key).await?;
        let opened = blocking(move || target::describe(&target)).await;
        Ok(match opened {
            Ok(detail) => Check { ok: true, detail },
            Err(e) => Check {
                ok: false,
                detail: e.to_string(),
            },
        })
    }
}

impl Jobs {
    /// `url` parsed: S3 locations as given, local ones inside a repository root, clear of
    /// the other local repositories (but `own`, the one being changed), written as
    /// `file:///…`.
    async fn repository_url(&self, url: &str, own: Option<&str>) -> Result<String> {
        match Location::parse(url).map_err(|e| field("url", e.to_string()))? {
            s3 @ Location::S3 { .. } => Ok(s3.to_string()),
            Location::Local(_) => {
                let Some(path) = url.strip_prefix("file://") else {
                    return Err(field(
                        "url",
                        "use s3://bucket/prefix or file:///path (inside a repository root)",
                    )
                    .into());
                };
                let own = own
                    .and_then(|u| u.strip_prefix("file://"))
                    .map(PathBuf::from);
                let taken: Vec<PathBuf> = self
                    .repository_dirs()
                    .await?
                    .into_iter()
                    .filter(|d| Some(d) != own.as_ref())
                    .collect();
                let inside = self.places.repository("url", path, &taken)?;
                Ok(format!("file://{}", inside.display()))
            }
        }
    }

    /// The repository a job writes to, and how to open it.
    pub(crate) async fn target(&self, job: &Job) -> Result<Target> {
        let key = self.key(job).await?;
        let Some(id) = &job.repository_id else {
            let dir = job
                .dest_path
                .as_deref()
                .ok_or_else(|| JobsError::Unusable("the job has no repository".into()))?;
            return Ok(Target {
                location: Location::Local(PathBuf::from(dir)),
                s3: None,
                key,
                cache: None,
            });
        };
        let r = self.db.resource::<Repository>(id).await?;
        self.registered_target(r, key).await
    }

    /// The registered repository `id`, opened with the server's key (made on first use), for
    /// what the server keeps there itself: copies of its system backups.
    pub async fn open_registered(&self, id: &str) -> Result<coffer_repo::Repository> {
        let r = self.db.resource::<Repository>(id).await?;
        let key = match r.encrypted {
            true => Some(self.export_repository_key().await?),
            false => None,
        };
        let target = self.registered_target(r, key).await?;
        blocking(move || target.open_or_init()).await
    }

    /// How to open the registered repository `r` with `key`.
    pub(crate) async fn registered_target(
        &self,
        r: Repository,
        key: Option<String>,
    ) -> Result<Target> {
        let id = &r.id;
        let location = Location::parse(&r.url).map_err(|e| JobsError::Unusable(e.to_string()))?;
        let secret = self.secret::<Repository>(id).await?;
        let s3 = matches!(location, Location::S3 { .. }).then(|| S3Options {
            endpoint: r.endpoint,
            region: r.region,
            access_key_id: r.access_key_id,
            secret_access_key: secret,
            connections: None,
        });
        let cache = Some(self.places.cache());
        Ok(Target {
            location,
            s3,
            key,
            cache,
        })
    }
}

//! A typed, blocking client for Coffer's HTTP API, over the types of `coffer-types`.
//!
//! Every call returns the decoded body or a [`ClientError`] that carries the server's
//! `{"error", "code"}` body and status, so callers (and tests) can act on the exact failure.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coffer_types::{
    ApiKey, AuditEntry, CreateKey, CreateUser, CreatedKey, ErrorBody, Health, Job, JobInput,
    JobUpdate, LoginRequest, LoginResponse, Modules, Node, Record, RecordStatus, Rotated, Setting,
    SettingValue, SetupRequest, UpdateUser, User, VerifyResult,
};
use coffer_types::{
    Check, KeyRotation, MetaBackup, RepositoryKey, Resource, RestoreRequest, RestoreTask,
    RunServerTask, ServerTask, ServerTaskRun, ServerTasks, SystemBackupRequest, SystemRestored,
};
use reqwest::Method;
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde::de::DeserializeOwned;

pub use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{status}: {} ({})", body.error, body.code)]
    Api {
        status: StatusCode,
        body: ErrorBody,
        /// Seconds, from `Retry-After` (rate limiting).
        retry_after: Option<u64>,
    },
    /// The request did not get an answer, or the answer was not what the API promises.
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("the server answered {status} with a body that is not the error format: {text}")]
    Malformed { status: StatusCode, text: String },
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Malformed { status, .. } => {
                Some(*status)
            }
            ClientError::Transport(e) => e.status(),
        }
    }

    /// The server's stable error code, if it answered with an error body.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// How requests authenticate.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    #[default]
    None,
    Bearer(String),
    /// The session cookie, as a browser would send it.
    Cookie(String),
    ApiKey(String),
}

/// Filters for [`Client::audit`].
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub limit: Option<u32>,
}

/// Filters for [`Client::records`].
#[derive(Clone, Debug, Default)]
pub struct RecordFilter {
    /// For [`Client::history`]: only this job's records.
    pub job_id: Option<String>,
    pub status: Option<RecordStatus>,
    /// `backups` (the server's default), `pre_restore`, `schedule`, `manual`, `adopted`, `all`.
    pub trigger: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

fn record_query(f: &RecordFilter) -> Vec<(&'static str, String)> {
    query([
        ("job_id", f.job_id.clone()),
        ("status", f.status.map(|s| s.as_str().to_string())),
        ("trigger", f.trigger.clone()),
        ("since", f.since.map(|t| t.to_rfc3339())),
        ("until", f.until.map(|t| t.to_rfc3339())),
        ("limit", f.limit.map(|l| l.to_string())),
    ])
}

/// A raw answer, for callers that check statuses and headers themselves.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }
}

/// Query parameters: those that are given.
/// Ask `fetch` every 50 ms until `ended` says what it answers has ended, or `timeout` passed:
/// the last answer.
fn poll<T>(
    timeout: Duration,
    fetch: impl Fn() -> Result<T>,
    ended: impl Fn(&T) -> bool,
) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let answer = fetch()?;
        if ended(&answer) || std::time::Instant::now() > deadline {
            return Ok(answer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn query<const N: usize>(
    pairs: [(&'static str, Option<String>); N],
) -> Vec<(&'static str, String)> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// The error an unsuccessful answer carries.
fn api_error(res: reqwest::blocking::Response) -> ClientError {
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = match res.text() {
        Ok(t) => t,
        Err(e) => return e.into(),
    };
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ClientError::Api {
            status,
            body,
            retry_after,
        },
        Err(_) => ClientError::Malformed { status, text },
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: Http,
    credentials: Credentials,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:7480`).
    pub fn new(base: impl Into<String>) -> Client {
        Client::build(base, None, Some(Duration::from_secs(60)))
    }

    /// A client without a time limit per request, for transfers of any size (the command
    /// line).
    pub fn patient(base: impl Into<String>) -> Client {
        Client::build(base, None, None)
    }

    /// A client whose connections come from `local` (e.g. `127.0.0.2`), to act as another host.
    pub fn from_address(base: impl Into<String>, local: IpAddr) -> Client {
        Client::build(base, Some(local), Some(Duration::from_secs(60)))
    }

    fn build(base: impl Into<String>, local: Option<IpAddr>, timeout: Option<Duration>) -> Client {
        let http = Http::builder()
            .timeout(timeout)
            .local_address(local)
            .build()
            .expect("an HTTP client without TLS builds");
        Client {
            base: base.into().trim_end_matches('/').to_string(),
            http,
            credentials: Credentials::None,
        }
    }

    /// The same client, authenticating with `credentials`.
    pub fn with(&self, credentials: Credentials) -> Client {
        Client {
            credentials,
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.credentials {
            Credentials::None => r,
            Credentials::Bearer(t) => r.bearer_auth(t),
            Credentials::Cookie(t) => r.header("cookie", format!("coffer_session={t}")),
            Credentials::ApiKey(k) => r.header("x-api-key", k),
        }
    }

    fn send<T: DeserializeOwned>(&self, r: RequestBuilder) -> Result<T> {
        let res = r.send()?;
        let status = res.status();
        if status.is_success() {
            return if status == StatusCode::NO_CONTENT {
                Ok(
                    serde_json::from_value(serde_json::Value::Null).map_err(|_| {
                        ClientError::Malformed {
                            status,
                            text: String::new(),
                        }
                    })?,
                )
            } else {
                Ok(res.json()?)
            };
        }
        Err(api_error(res))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.request(Method::GET, path))
    }

    fn post<B: serde::Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.request(Method::POST, path).json(body))
    }

    /// Any request, answered as is (no error mapping).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse> {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        self.raw_send(r)
    }

    /// A request with a body sent as given, with the given content type.
    pub fn raw_body(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::blocking::Body>,
    ) -> Result<RawResponse> {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method");
        let r = self
            .request(method, path)
            .header("content-type", content_type)
            .body(body);
        self.raw_send(r)
    }

    fn raw_send(&self, r: RequestBuilder) -> Result<RawResponse> {
        let res = r.send()?;
        Ok(RawResponse {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text()?,
        })
    }

    // ---- public ----

    pub fn health(&self) -> Result<Health> {
        self.get("/api/health")
    }

    pub fn modules(&self) -> Result<Modules> {
        self.get("/api/modules")
    }

    pub fn metrics(&self) -> Result<String> {
        Ok(self.request(Method::GET, "/metrics").send()?.text()?)
    }

    pub fn openapi(&self) -> Result<serde_json::Value> {
        self.get("/api/openapi.json")
    }

    pub fn setup(&self, req: &SetupRequest) -> Result<User> {
        self.post("/api/auth/setup", req)
    }

    pub fn login(&self, username: &str, password: &str) -> Result<LoginResponse> {
        let req = LoginRequest {
            username: username.into(),
            password: password.into(),
        };
        self.post("/api/auth/login", &req)
    }

    /// A new token for the current one (sent as credentials).
    pub fn refresh(&self) -> Result<LoginResponse> {
        self.send(self.request(Method::POST, "/api/auth/refresh"))
    }

    // ---- authenticated ----

    pub fn logout(&self) -> Result<()> {
        self.send(self.request(Method::POST, "/api/auth/logout"))
    }

    pub fn me(&self) -> Result<User> {
        self.get("/api/auth/me")
    }

    pub fn rotate_jwt(&self) -> Result<Rotated> {
        self.send(self.request(Method::POST, "/api/admin/secrets/rotate-jwt"))
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.get("/api/users")
    }

    pub fn create_user(&self, req: &CreateUser) -> Result<User> {
        self.post("/api/users", req)
    }

    pub fn user(&self, id: &str) -> Result<User> {
        self.get(&format!("/api/users/{id}"))
    }

    pub fn update_user(&self, id: &str, req: &UpdateUser) -> Result<User> {
        self.send(
            self.request(Method::PUT, &format!("/api/users/{id}"))
                .json(req),
        )
    }

    pub fn delete_user(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/api/users/{id}")))
    }

    /// Your keys; with `all`, everyone's (administrators).
    pub fn keys(&self, all: bool) -> Result<Vec<ApiKey>> {
        self.get(if all {
            "/api/keys?all=true"
        } else {
            "/api/keys"
        })
    }

    pub fn create_key(&self, req: &CreateKey) -> Result<CreatedKey> {
        self.post("/api/keys", req)
    }

    pub fn revoke_key(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/api/keys/{id}")))
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        self.get("/api/nodes")
    }

    pub fn settings(&self) -> Result<Vec<Setting>> {
        self.get("/api/settings")
    }

    /// The server's own scheduled tasks (admins).
    pub fn server_tasks(&self) -> Result<Vec<ServerTask>> {
        Ok(self.get::<ServerTasks>("/api/scheduler")?.tasks)
    }

    /// Run one of the server's own tasks now (admins).
    pub fn run_server_task(&self, task_id: &str) -> Result<ServerTaskRun> {
        let body = RunServerTask {
            task_id: task_id.into(),
        };
        self.post("/api/scheduler", &body)
    }

    pub fn setting(&self, key: &str) -> Result<Setting> {
        self.get(&format!("/api/settings/{key}"))
    }

    /// The key of the job repositories, for safe keeping (admins).
    pub fn repository_key(&self) -> Result<RepositoryKey> {
        self.get("/api/admin/repository-key")
    }

    /// Replace the key of the job repositories (admins).
    pub fn rotate_repository_key(&self) -> Result<KeyRotation> {
        self.send(self.request(Method::POST, "/api/admin/repository-key/rotate"))
    }

    pub fn put_setting(&self, key: &str, value: serde_json::Value) -> Result<Setting> {
        let body = SettingValue { value };
        self.send(
            self.request(Method::PUT, &format!("/api/settings/{key}"))
                .json(&body),
        )
    }

    /// Every resource of one kind: `client.resources::<Repository>()`.
    pub fn resources<R: Resource>(&self) -> Result<Vec<R>> {
        self.get(&format!("/api/{}", R::PATH))
    }

    pub fn create_resource<R: Resource>(&self, input: &R::Input) -> Result<R> {
        self.post(&format!("/api/{}", R::PATH), input)
    }

    pub fn resource<R: Resource>(&self, id: &str) -> Result<R> {
        self.get(&format!("/api/{}/{id}", R::PATH))
    }

    pub fn update_resource<R: Resource>(&self, id: &str, u: &R::Update) -> Result<R> {
        self.send(
            self.request(Method::PUT, &format!("/api/{}/{id}", R::PATH))
                .json(u),
        )
    }

    pub fn delete_resource<R: Resource>(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/api/{}/{id}", R::PATH)))
    }

    /// Whether the resource works now, and what was found, or why not.
    pub fn test_resource<R: Resource>(&self, id: &str) -> Result<Check> {
        self.send(self.request(Method::POST, &format!("/api/{}/{id}/test", R::PATH)))
    }

    pub fn jobs(&self) -> Result<Vec<Job>> {
        self.get("/api/backup-jobs")
    }

    pub fn create_job(&self, input: &JobInput) -> Result<Job> {
        self.post("/api/backup-jobs", input)
    }

    pub fn job(&self, id: &str) -> Result<Job> {
        self.get(&format!("/api/backup-jobs/{id}"))
    }

    pub fn update_job(&self, id: &str, u: &JobUpdate) -> Result<Job> {
        self.send(
            self.request(Method::PUT, &format!("/api/backup-jobs/{id}"))
                .json(u),
        )
    }

    /// Delete a job; its data stays in the repository unless `keep_data` is false.
    pub fn delete_job(&self, id: &str, keep_data: bool) -> Result<()> {
        self.send(
            self.request(Method::DELETE, &format!("/api/backup-jobs/{id}"))
                .query(&[("keep_data", keep_data)]),
        )
    }

    /// Start a run now; the answer is the new (running) record.
    pub fn run_job(&self, id: &str) -> Result<Record> {
        self.send(self.request(Method::POST, &format!("/api/backup-jobs/{id}/run")))
    }

    pub fn records(&self, job: &str, f: &RecordFilter) -> Result<Vec<Record>> {
        self.send(
            self.request(Method::GET, &format!("/api/backup-jobs/{job}/records"))
                .query(&record_query(f)),
        )
    }

    /// Records of every job (or of `f.job_id`), newest first.
    pub fn history(&self, f: &RecordFilter) -> Result<Vec<Record>> {
        self.send(
            self.request(Method::GET, "/api/records")
                .query(&record_query(f)),
        )
    }

    pub fn record(&self, job: &str, rid: &str) -> Result<Record> {
        self.get(&format!("/api/backup-jobs/{job}/records/{rid}"))
    }

    /// The record once it is finished: failed, or successful with its follow-up work
    /// (retention) done, phase `complete` (polling, at most `timeout`).
    pub fn wait_record(&self, job: &str, rid: &str, timeout: Duration) -> Result<Record> {
        poll(
            timeout,
            || self.record(job, rid),
            |r| match r.status {
                RecordStatus::Running => false,
                RecordStatus::Success => r.phase == "complete",
                RecordStatus::Failed => true,
            },
        )
    }

    pub fn delete_record(&self, job: &str, rid: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/api/backup-jobs/{job}/records/{rid}"),
        ))
    }

    pub fn verify_record(&self, job: &str, rid: &str) -> Result<VerifyResult> {
        self.send(self.request(
            Method::POST,
            &format!("/api/backup-jobs/{job}/records/{rid}/verify"),
        ))
    }

    /// The record's archive, read completely, with the response headers.
    pub fn download_record(
        &self,
        job: &str,
        rid: &str,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>)> {
        self.download(&format!("/api/backup-jobs/{job}/records/{rid}/download"))
    }

    /// Make a system backup on the server (with its secrets sealed under `passphrase`, if given).
    pub fn create_system_backup(&self, passphrase: Option<&str>) -> Result<MetaBackup> {
        let body = SystemBackupRequest {
            passphrase: passphrase.map(str::to_string),
        };
        self.send(
            self.request(Method::POST, "/api/system/backups")
                .query(&[("include_secrets", passphrase.is_some())])
                .json(&body),
        )
    }

    /// Restore the server from the system backup `zip` (whose SHA-256 is `sha256`).
    pub fn restore_system(
        &self,
        zip: impl Into<reqwest::blocking::Body>,
        sha256: &str,
    ) -> Result<SystemRestored> {
        self.send(
            self.request(Method::POST, "/api/system/restore")
                .header("content-type", "application/zip")
                .header("x-checksum-sha256", sha256)
                .body(zip),
        )
    }

    /// Write the file at `path` from byte `from` on into `out` (a `Range` request when `from`
    /// is not 0: resuming an interrupted download); the headers that describe it.
    pub fn download_into(
        &self,
        path: &str,
        from: u64,
        out: &mut impl std::io::Write,
    ) -> Result<reqwest::header::HeaderMap> {
        let mut r = self.request(Method::GET, path);
        if from > 0 {
            r = r.header("range", format!("bytes={from}-"));
        }
        let mut res = r.send()?;
        if !res.status().is_success() {
            return Err(api_error(res));
        }
        let headers = res.headers().clone();
        res.copy_to(out)?;
        Ok(headers)
    }

    /// A file the server gives (a record's archive, a system backup), with the headers that
    /// describe it.
    pub fn download(&self, path: &str) -> Result<(reqwest::header::HeaderMap, Vec<u8>)> {
        let res = self.request(Method::GET, path).send()?;
        if !res.status().is_success() {
            return Err(api_error(res));
        }
        let headers = res.headers().clone();
        Ok((headers, res.bytes()?.to_vec()))
    }

    /// Start restoring a record; the answer is the task to poll.
    pub fn restore_record(
        &self,
        job: &str,
        rid: &str,
        req: &RestoreRequest,
    ) -> Result<RestoreTask> {
        self.send(
            self.request(
                Method::POST,
                &format!("/api/backup-jobs/{job}/records/{rid}/restore"),
            )
            .json(req),
        )
    }

    /// Restore the job's sources in place from an archive (as `download_record` gives it).
    pub fn restore_upload(
        &self,
        job: &str,
        archive: Vec<u8>,
        checksum: Option<&str>,
    ) -> Result<RestoreTask> {
        let mut r = self
            .request(
                Method::POST,
                &format!("/api/backup-jobs/{job}/restore-upload"),
            )
            .header("content-type", "application/x-tar")
            .body(archive);
        if let Some(c) = checksum {
            r = r.header("x-checksum-sha256", c);
        }
        self.send(r)
    }

    pub fn restore_task(&self, job: &str, tid: &str) -> Result<RestoreTask> {
        self.get(&format!("/api/backup-jobs/{job}/restores/{tid}"))
    }

    /// The restore once it ended (polling, at most `timeout`).
    pub fn wait_restore(&self, job: &str, tid: &str, timeout: Duration) -> Result<RestoreTask> {
        poll(
            timeout,
            || self.restore_task(job, tid),
            |t| t.status != RecordStatus::Running,
        )
    }

    /// What credential `id`'s binlog archive covers, and the backups recovery can start from.
    pub fn pitr_coverage(&self, id: &str) -> Result<coffer_types::PitrCoverage> {
        self.get(&format!("/api/credentials/{id}/pitr/coverage"))
    }

    /// Start recovering credential `id`'s server to a point in time.
    pub fn recover(
        &self,
        id: &str,
        req: &coffer_types::PitrRequest,
    ) -> Result<coffer_types::PitrRun> {
        self.post(&format!("/api/credentials/{id}/pitr"), req)
    }

    pub fn pitr_run(&self, id: &str, pitr_id: &str) -> Result<coffer_types::PitrRun> {
        self.get(&format!("/api/credentials/{id}/pitr/{pitr_id}"))
    }

    /// Credential `id`'s recoveries, newest first (at most `limit`, of `status` only).
    pub fn pitr_runs(
        &self,
        id: &str,
        status: Option<coffer_types::PitrStatus>,
        limit: Option<u32>,
    ) -> Result<Vec<coffer_types::PitrRun>> {
        let q = query([
            ("status", status.map(|s| s.as_str().to_string())),
            ("limit", limit.map(|l| l.to_string())),
        ]);
        self.send(
            self.request(Method::GET, &format!("/api/credentials/{id}/pitr"))
                .query(&q),
        )
    }

    /// The recovery once it ended (polling, at most `timeout`).
    pub fn wait_pitr(
        &self,
        id: &str,
        pitr_id: &str,
        timeout: Duration,
    ) -> Result<coffer_types::PitrRun> {
        poll(
            timeout,
            || self.pitr_run(id, pitr_id),
            |r| r.status != coffer_types::PitrStatus::Running,
        )
    }

    /// Start a restore drill of job `id`'s newest backup.
    pub fn drill(&self, id: &str) -> Result<coffer_types::Drill> {
        self.post(
            &format!("/api/backup-jobs/{id}/drills"),
            &serde_json::json!({}),
        )
    }

    pub fn drill_of(&self, id: &str, drill_id: &str) -> Result<coffer_types::Drill> {
        self.get(&format!("/api/backup-jobs/{id}/drills/{drill_id}"))
    }

    /// Job `id`'s drills, newest first.
    /// The notifications sent through the channels, newest first.
    pub fn notifications(&self) -> Result<Vec<coffer_types::Notification>> {
        self.get("/api/notifications")
    }

    pub fn drills(&self, id: &str) -> Result<Vec<coffer_types::Drill>> {
        self.get(&format!("/api/backup-jobs/{id}/drills"))
    }

    /// The drill once it ended (polling, at most `timeout`).
    pub fn wait_drill(
        &self,
        id: &str,
        drill_id: &str,
        timeout: Duration,
    ) -> Result<coffer_types::Drill> {
        poll(
            timeout,
            || self.drill_of(id, drill_id),
            |d| d.status != RecordStatus::Running,
        )
    }

    pub fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let q = query([
            ("since", f.since.map(|t| t.to_rfc3339())),
            ("until", f.until.map(|t| t.to_rfc3339())),
            ("user", f.user.clone()),
            ("action", f.action.clone()),
            ("limit", f.limit.map(|l| l.to_string())),
        ]);
        self.send(self.request(Method::GET, "/api/audit").query(&q))
    }
}

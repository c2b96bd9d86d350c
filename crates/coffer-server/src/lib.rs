//! Coffer's HTTP server: the axum router, handlers, authentication, and the one `ApiError`.
//!
//! This crate is the only one that knows HTTP. It starts with zero configuration: it binds
//! `127.0.0.1:7480` and keeps everything under `./coffer-data` unless told otherwise. Boot is
//! one function, `Server::bind`, which logs each step and refuses to start (with a message that
//! says why) when the data directory is unusable, the metadata database is from a newer Coffer,
//! or the address is taken.

mod auth;
mod conn;
mod error;
mod extract;
mod metrics;
mod middleware;
mod ratelimit;
mod routes;
mod selfbackup;
mod transfer;
mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use coffer_db::Db;
use coffer_types::{NewPassword, Username};

pub use coffer_jobs::Roots;
pub use conn::Timeouts;
pub use error::ApiError;

use crate::auth::TokenKeys;
use crate::ratelimit::RateLimiter;

/// Where and how the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Version reported by `/api/health`.
    pub version: &'static str,
    /// How long a login session lasts without refresh.
    pub session_ttl: Duration,
    /// Largest accepted JSON request body.
    pub max_body_bytes: usize,
    /// Largest accepted uploaded archive.
    pub max_upload_bytes: u64,
    /// Create this administrator at boot if there are no users yet (unattended setup).
    pub initial_admin: Option<(Username, NewPassword)>,
    /// How long clients may take to send headers and bodies.
    pub timeouts: Timeouts,
    /// Where jobs may read and write beyond the data directory's own places.
    pub roots: coffer_jobs::Roots,
    /// How long the safety records taken before restores are kept.
    pub safety_record_days: u32,
    /// How often running backups and restores report their progress.
    pub progress_every: Duration,
    /// The configuration file the server was started with, kept in its system backups.
    pub config_file: Option<PathBuf>,
    /// What the secrets of the server's copies of its system backups are sealed under
    /// (`system.offsite_repository`).
    pub system_passphrase: Option<coffer_system::Passphrase>,
    /// Where users reach this server (default `http://<listen>`): the links in notifications.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            data_dir: PathBuf::from("coffer-data"),
            version: "unknown",
            session_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 64 << 30,
            initial_admin: None,
            timeouts: Timeouts::default(),
            roots: coffer_jobs::Roots::default(),
            safety_record_days: 7,
            progress_every: Duration::from_secs(2),
            config_file: None,
            system_passphrase: None,
            public_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another process holds the data directory: two servers on one would corrupt each other.
    #[error("{0}")]
    InUse(coffer_system::SystemError),
    #[error("the data directory {} cannot be used: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is readable by others and could not be made private: {source}", path.display())]
    NotPrivate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the metadata database {} cannot be opened: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: coffer_db::DbError,
    },
    #[error("the job service cannot start: {0}")]
    Jobs(#[from] coffer_jobs::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// State shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub data_dir: PathBuf,
    pub version: &'static str,
    pub started: Instant,
    pub started_at: SystemTime,
    pub db: Db,
    token_keys: RwLock<Arc<TokenKeys>>,
    pub dummy_hash: Arc<str>,
    pub session_ttl: Duration,
    pub max_body_bytes: usize,
    pub max_upload_bytes: u64,
    pub timeouts: Timeouts,
    pub login_limiter: RateLimiter,
    /// Snapshots of the metadata database, by admin.
    pub backup_limiter: RateLimiter<String>,
    /// `<data_dir>/system-backups/`: snapshots of the metadata database, system backups.
    pub backups: coffer_system::Folder,
    /// The metadata database's file.
    pub db_path: PathBuf,
    pub config_file: Option<PathBuf>,
    pub system_passphrase: Option<coffer_system::Passphrase>,
    /// Held while the server runs: no other Coffer process works on the data directory.
    _lock: coffer_system::DirLock,
    pub auto_backup: selfbackup::TaskLog,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub openapi: OnceLock<serde_json::Value>,
    pub jobs: Arc<coffer_jobs::Jobs>,
}

impl AppState {
    pub fn token_keys(&self) -> Arc<TokenKeys> {
        self.token_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A fresh name in the jobs' scratch directory (`<data_dir>/tmp`, emptied at start-up),
    /// `prefix-<random>.suffix`, for an upload or a temporary database.
    pub async fn scratch_file(
        &self,
        prefix: &str,
        suffix: &str,
    ) -> Result<PathBuf, error::ApiError> {
        let dir = self.jobs.scratch_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(error::ApiError::io)?;
        let random = hex::encode(auth::random_bytes::<16>());
        Ok(dir.join(format!("{prefix}-{random}.{suffix}")))
    }

    pub fn set_token_keys(&self, keys: TokenKeys) {
        *self.token_keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }
}

/// A server whose socket is bound, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
}

/// Create the data directory (private to its owner) and prove it is writable.
fn prepare_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let probe = dir.join(".coffer-write-test");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The files of the data directory that hold secrets (the signing key and sealed secrets in
/// the database, the server key).
const SECRET_FILES: [&str; 4] = ["coffer.db", "coffer.db-wal", "coffer.db-shm", "server.key"];

/// Make the data directory and its secret files private to Coffer's user where others could
/// read them (a directory that existed before, files of an earlier version), saying so.
fn make_private(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let entries = std::iter::once((dir.to_path_buf(), 0o700))
        .chain(SECRET_FILES.iter().map(|f| (dir.join(f), 0o600)));
    for (path, private) in entries {
        let mode = match std::fs::metadata(&path) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StartError::NotPrivate { path, source }),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(private)).map_err(
                |source| StartError::NotPrivate {
                    path: path.clone(),
                    source,
                },
            )?;
            tracing::warn!(path = %path.display(), was = format!("{mode:o}"), now = format!("{private:o}"),
                "others could read this: made it private");
        }
    }
    Ok(())
}

impl Server {
    /// Boot: data directory, metadata database, secrets, then the socket. Each step is logged.
    pub async fn bind(config: ServerConfig) -> Result<Server, StartError> {
        // Every file and directory the server makes is private to it; what it restores gets
        // the modes that were recorded.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        tracing::info!(data_dir = %config.data_dir.display(), "preparing the data directory");
        prepare_data_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        make_private(&config.data_dir)?;
        let lock = coffer_system::lock(&config.data_dir).map_err(StartError::InUse)?;
        let db_path = config.data_dir.join("coffer.db");
        let db_error = |source| StartError::Database {
            path: db_path.clone(),
            source,
        };
        tracing::info!(path = %db_path.display(), "opening the metadata database");
        let db = Db::open(&db_path).await.map_err(db_error)?;
        let secret = db
            .secret(auth::JWT_SECRET, || auth::random_bytes::<32>().to_vec())
            .await
            .map_err(db_error)?;
        if let Some((username, password)) = &config.initial_admin {
            create_initial_admin(&db, username, password)
                .await
                .map_err(db_error)?;
        }
        let vault = coffer_jobs::Vault::open_or_create(&config.data_dir).map_err(|source| {
            StartError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let jobs_config = coffer_jobs::JobsConfig {
            data_dir: config.data_dir.clone(),
            roots: config.roots.clone(),
            safety_record_days: config.safety_record_days,
            progress_every: config.progress_every,
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.listen)),
        };
        tracing::info!(roots = ?config.roots, "starting the job service");
        let jobs = coffer_jobs::Jobs::start(db.clone(), jobs_config, vault).await?;
        let dummy_hash = tokio::task::spawn_blocking(auth::dummy_hash)
            .await
            .expect("hashing does not panic");
        tracing::info!(addr = %config.listen, "binding");
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let backups = coffer_system::Folder::new(&config.data_dir);
        let state = Arc::new(AppState {
            data_dir: config.data_dir,
            version: config.version,
            started: Instant::now(),
            started_at: SystemTime::now(),
            db,
            token_keys: RwLock::new(Arc::new(TokenKeys::new(&secret))),
            dummy_hash: dummy_hash.into(),
            session_ttl: config.session_ttl,
            max_body_bytes: config.max_body_bytes,
            max_upload_bytes: config.max_upload_bytes,
            timeouts: config.timeouts,
            login_limiter: RateLimiter::new(10, Duration::from_secs(60)),
            backup_limiter: RateLimiter::new(10, Duration::from_secs(3600)),
            backups,
            db_path,
            _lock: lock,
            config_file: config.config_file,
            system_passphrase: config.system_passphrase,
            auto_backup: Default::default(),
            metrics: metrics::handle(),
            openapi: OnceLock::new(),
            jobs,
        });
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve and schedule until `shutdown` completes; then finish the requests in flight, ask
    /// running records to stop, and wait for them to be recorded.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let scheduler = tokio::spawn(
            self.state
                .jobs
                .clone()
                .scheduler(until_stopped(stopped.clone()), Duration::from_secs(30)),
        );
        let auto_backup = tokio::spawn(selfbackup::schedule(
            self.state.clone(),
            until_stopped(stopped.clone()),
        ));
        let binlogs = tokio::spawn(
            self.state
                .jobs
                .clone()
                .archive_binlogs(until_stopped(stopped.clone())),
        );
        let notifier = tokio::spawn(
            self.state
                .jobs
                .clone()
                .notifier(until_stopped(stopped.clone())),
        );
        let deliverer = tokio::spawn(
            self.state
                .jobs
                .clone()
                .deliverer(until_stopped(stopped.clone())),
        );
        let timeouts = self.state.timeouts;
        let app = routes::router(self.state);
        conn::serve(self.listener, app, timeouts, until_stopped(stopped)).await;
        let _ = scheduler.await;
        let _ = auto_backup.await;
        let _ = binlogs.await;
        let _ = notifier.await;
        let _ = deliverer.await;
    }
}

/// Unattended setup: the configured administrator, only while there are no users.
async fn create_initial_admin(
    db: &Db,
    username: &Username,
    password: &NewPassword,
) -> coffer_db::Result<()> {
    if db.user_count().await? > 0 {
        return Ok(());
    }
    let password = password.expose().to_string();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password_blocking(&password))
        .await
        .expect("hashing does not panic");
    match db.create_first_admin(username.as_str(), &hash).await {
        Ok(_) => {
            tracing::info!(%username, "created the configured first administrator");
            Ok(())
        }
        Err(coffer_db::DbError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

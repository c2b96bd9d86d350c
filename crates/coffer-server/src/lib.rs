//! Coffer's HTTP server: the axum router, handlers, and the one `ApiError`.
//!
//! This crate is the only one that knows HTTP. It starts with zero configuration: it binds
//! `127.0.0.1:7480` and keeps everything under `./coffer-data` unless told otherwise. Boot is
//! one function, `Server::bind`, which logs each step and refuses to start (with a message that
//! says why) when the data directory is unusable or the address is taken.

mod error;
mod routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use error::ApiError;

/// Where and how the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Version reported by `/api/health`.
    pub version: &'static str,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            data_dir: PathBuf::from("coffer-data"),
            version: "unknown",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the data directory {} cannot be used: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

impl Server {
    /// Boot: data directory, then the socket. Each step is logged.
    pub async fn bind(config: ServerConfig) -> Result<Server, StartError> {
        tracing::info!(data_dir = %config.data_dir.display(), "preparing the data directory");
        prepare_data_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        tracing::info!(addr = %config.listen, "binding");
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let state = Arc::new(AppState {
            data_dir: config.data_dir,
            version: config.version,
            started: Instant::now(),
        });
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` completes, then finish the requests in flight.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = routes::router(self.state);
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

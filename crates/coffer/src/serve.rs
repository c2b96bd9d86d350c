//! `coffer serve`: the composition root of the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use coffer_server::{Server, ServerConfig};

/// Log to stderr; `COFFER_LOG` filters (e.g. `debug`, `coffer_server=trace`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

pub fn run(listen: SocketAddr, data_dir: PathBuf) -> Result<ExitCode> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let config = ServerConfig {
            listen,
            data_dir,
            version: env!("CARGO_PKG_VERSION"),
        };
        let server = Server::bind(config).await?;
        tracing::info!(addr = %server.local_addr()?, "listening");
        server.run(shutdown_signal()).await.context("serving")?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

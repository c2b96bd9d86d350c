//! `coffer serve`: configuration layering and the composition root of the server.
//!
//! Each setting comes from, by priority: the command-line flag, the `COFFER_*` environment
//! variable, the TOML file given by `--config` (or `COFFER_CONFIG`), the built-in default.
//! Secrets never come from flags (which `ps` shows): `COFFER_ADMIN_PASSWORD` or the file named
//! by `COFFER_ADMIN_PASSWORD_FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coffer_server::{Server, ServerConfig};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The config file. Every field is optional; unknown fields are an error (a typo must not be
/// silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    session_hours: Option<u64>,
    max_body_kib: Option<usize>,
    max_upload_mib: Option<u64>,
    admin_username: Option<String>,
    header_timeout_secs: Option<u64>,
    body_idle_timeout_secs: Option<u64>,
    source_roots: Option<Vec<PathBuf>>,
    repository_roots: Option<Vec<PathBuf>>,
    restore_roots: Option<Vec<PathBuf>>,
    safety_record_days: Option<u32>,
    progress_interval_ms: Option<u64>,
    public_url: Option<String>,
}

/// `COFFER_<NAME>`, parsed.
fn env<T: FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let var = format!("COFFER_{name}");
    match std::env::var(&var) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{var}={v:?} is not valid: {e}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => bail!("{var}: {e}"),
    }
}

/// A list of directories from `COFFER_<NAME>` (separated by `:`, as in `PATH`), or the file's;
/// each must be absolute.
fn roots(name: &str, file: Option<Vec<PathBuf>>) -> Result<Vec<PathBuf>> {
    let var: Option<String> = env(name)?;
    let roots = match var {
        Some(v) => v
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => file.unwrap_or_default(),
    };
    if let Some(bad) = roots.iter().find(|r| !r.is_absolute()) {
        bail!(
            "{} (COFFER_{name}): {} is not an absolute path",
            name.to_lowercase(),
            bad.display()
        );
    }
    Ok(roots)
}

/// A secret from `COFFER_<NAME>` or from the file named by `COFFER_<NAME>_FILE` (one trailing
/// newline removed); both at once is an error.
fn secret(name: &str) -> Result<Option<String>> {
    let direct: Option<String> = env(name)?;
    let file: Option<PathBuf> = env(&format!("{name}_FILE"))?;
    match (direct, file) {
        (Some(_), Some(_)) => bail!("set COFFER_{name} or COFFER_{name}_FILE, not both"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("reading COFFER_{name}_FILE {}", f.display()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(Some(text.strip_suffix('\r').unwrap_or(text).to_string()))
        }
        (None, None) => Ok(None),
    }
}

fn config(args: ServeArgs) -> Result<ServerConfig> {
    let config_file = args.config.clone();
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("the config file {} is not valid", path.display()))?
        }
        None => FileConfig::default(),
    };
    let defaults = ServerConfig::default();
    let session_hours = env("SESSION_HOURS")?.or(file.session_hours);
    let max_body_kib = env("MAX_BODY_KIB")?.or(file.max_body_kib);
    let max_upload_mib: Option<u64> = env("MAX_UPLOAD_MIB")?.or(file.max_upload_mib);
    let header_timeout: Option<u64> = env("HEADER_TIMEOUT_SECS")?.or(file.header_timeout_secs);
    let body_idle: Option<u64> = env("BODY_IDLE_TIMEOUT_SECS")?.or(file.body_idle_timeout_secs);
    let roots = coffer_server::Roots {
        sources: roots("SOURCE_ROOTS", file.source_roots)?,
        repositories: roots("REPOSITORY_ROOTS", file.repository_roots)?,
        restores: roots("RESTORE_ROOTS", file.restore_roots)?,
    };
    let safety_record_days: Option<u32> = env("SAFETY_RECORD_DAYS")?.or(file.safety_record_days);
    if safety_record_days == Some(0) {
        bail!("safety_record_days (COFFER_SAFETY_RECORD_DAYS) must be at least 1");
    }
    let progress_ms: Option<u64> = env("PROGRESS_INTERVAL_MS")?.or(file.progress_interval_ms);
    let admin_password = secret("ADMIN_PASSWORD")?;
    let admin_username: Option<String> = env("ADMIN_USERNAME")?.or(file.admin_username);
    let initial_admin = match (admin_password, admin_username) {
        (Some(p), name) => Some((
            name.unwrap_or_else(|| "admin".into())
                .try_into()
                .map_err(|e| anyhow::anyhow!("the admin username: {e}"))?,
            p.try_into()
                .map_err(|e| anyhow::anyhow!("the admin password: {e}"))?,
        )),
        // Without a password the name has no use (the password file may be gone after setup).
        (None, _) => None,
    };
    Ok(ServerConfig {
        listen: args
            .listen
            .or(env("LISTEN")?)
            .or(file.listen)
            .unwrap_or(defaults.listen),
        data_dir: args
            .data_dir
            .or(env("DATA_DIR")?)
            .or(file.data_dir)
            .unwrap_or(defaults.data_dir),
        version: env!("CARGO_PKG_VERSION"),
        session_ttl: session_hours
            .filter(|h| (1..=24 * 365).contains(h))
            .map(|h| Duration::from_secs(h * 3600))
            .unwrap_or(defaults.session_ttl),
        max_body_bytes: max_body_kib
            .map(|k| k * 1024)
            .unwrap_or(defaults.max_body_bytes),
        max_upload_bytes: max_upload_mib
            .map(|m| m << 20)
            .unwrap_or(defaults.max_upload_bytes),
        initial_admin,
        timeouts: coffer_server::Timeouts {
            header: seconds(header_timeout).unwrap_or(defaults.timeouts.header),
            body_idle: seconds(body_idle).unwrap_or(defaults.timeouts.body_idle),
        },
        roots,
        safety_record_days: safety_record_days.unwrap_or(defaults.safety_record_days),
        progress_every: progress_ms
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(defaults.progress_every),
        config_file: config_file.map(|f| std::path::absolute(&f).unwrap_or(f)),
        public_url: env("PUBLIC_URL")?.or(file.public_url),
        system_passphrase: secret("SYSTEM_PASSPHRASE")?
            .map(coffer_system::Passphrase::new)
            .transpose()
            .context("COFFER_SYSTEM_PASSPHRASE")?,
    })
}

/// A positive number of seconds.
fn seconds(secs: Option<u64>) -> Option<Duration> {
    secs.filter(|s| *s > 0).map(Duration::from_secs)
}

/// Log to stderr; `COFFER_LOG` filters (e.g. `debug`, `coffer_server=trace`), else `default`.
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed at once (not when first polled),
/// so a signal that arrives right after the server announced itself is not lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging("info");
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let server = Server::bind(config).await?;
        tracing::info!(addr = %server.local_addr()?, "listening");
        server.run(shutdown).await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

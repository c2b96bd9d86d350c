//! Commands that drive a running server over its REST API (`coffer-client`): jobs, records,
//! downloads, restores, system backups. The server comes from `--url` or `COFFER_URL`
//! (default `http://127.0.0.1:7480`), the API key from `COFFER_API_KEY` or `--api-key-file`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coffer_client::{Client, Credentials, RecordFilter};
use coffer_types::{Record, RecordStatus, RestoreRequest, RestoreTask};

use crate::output::{bytes, print_json};

/// How to reach the server.
pub struct Remote {
    pub url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub json: bool,
}

impl Remote {
    /// The client, when an API key is at hand.
    fn client_or_none(&self) -> Option<Client> {
        self.client().ok()
    }

    fn client(&self) -> Result<Client> {
        let url = self
            .url
            .clone()
            .or_else(|| std::env::var("COFFER_URL").ok())
            .unwrap_or_else(|| "http://127.0.0.1:7480".into());
        let key = match &self.api_key_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("reading the API key file {}", f.display()))?
                .trim()
                .to_string(),
            None => std::env::var("COFFER_API_KEY").context(
                "no API key: set COFFER_API_KEY or pass --api-key-file (create one with POST /api/keys)",
            )?,
        };
        Ok(Client::patient(url).with(Credentials::ApiKey(key)))
    }

    /// Print `value` as JSON, or `text` for people.
    fn show<T: serde::Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        match self.json {
            true => print_json(value),
            false => println!("{}", text()),
        }
    }
}

fn record_line(r: &Record) -> String {
    format!(
        "{}  {:<8}  {}  {}",
        r.id,
        r.status.as_str(),
        r.started_at.format("%Y-%m-%d %H:%M:%S"),
        r.size_bytes.map(bytes).unwrap_or_default()
    )
}

pub fn jobs_list(remote: &Remote) -> Result<ExitCode> {
    let jobs = remote.client()?.jobs()?;
    remote.show(&jobs, || {
        jobs.iter()
            .map(|j| {
                let last = j.last_status.map(|s| s.as_str()).unwrap_or("never run");
                format!("{}  {}  ({last})", j.id, j.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

/// Poll the record until it ends, showing its phase and progress on a terminal.
fn wait_record(client: &Client, job: &str, mut record: Record, json: bool) -> Result<Record> {
    let live = !json && std::io::stderr().is_terminal();
    while record.status == RecordStatus::Running {
        if live {
            let done = record
                .progress
                .as_ref()
                .map(|p| format!("{} files, {}", p.files, bytes(p.bytes)))
                .unwrap_or_default();
            eprint!("\r\x1b[2K{}: {done}", record.phase);
        }
        std::thread::sleep(Duration::from_millis(500));
        record = client.record(job, &record.id)?;
    }
    if live {
        eprintln!();
    }
    Ok(record)
}

pub fn jobs_run(remote: &Remote, job: &str, wait: bool) -> Result<ExitCode> {
    let client = remote.client()?;
    let mut record = client.run_job(job)?;
    if wait {
        record = wait_record(&client, job, record, remote.json)?;
    }
    remote.show(&record, || record_line(&record));
    Ok(match record.status {
        RecordStatus::Failed => {
            eprintln!(
                "coffer: the run failed: {}",
                record.error.as_deref().unwrap_or("see the server's log")
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    })
}

pub fn records(remote: &Remote, job: &str) -> Result<ExitCode> {
    let records = remote.client()?.records(job, &RecordFilter::default())?;
    remote.show(&records, || {
        records
            .iter()
            .map(record_line)
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

/// Download into `out`, resuming after what a file of that name already holds; the SHA-256 the
/// server gives is checked once the file is whole.
fn download_to(client: &Client, path: &str, out: &Path) -> Result<String> {
    let have = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let headers = client.download_into(path, have, &mut file)?;
    file.sync_all()
        .with_context(|| format!("writing {}", out.display()))?;
    let want = headers
        .get("x-checksum-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let got = sha256_file(out)?;
    if !want.is_empty() && !got.eq_ignore_ascii_case(&want) {
        bail!(
            "{} does not match the server's SHA-256 ({want}): remove it and download again",
            out.display()
        );
    }
    Ok(got)
}

pub fn download(
    remote: &Remote,
    job: &str,
    record: &str,
    output: Option<PathBuf>,
) -> Result<ExitCode> {
    let client = remote.client()?;
    let out = output.unwrap_or_else(|| PathBuf::from(format!("{record}.tar")));
    let sum = download_to(
        &client,
        &format!("/api/backup-jobs/{job}/records/{record}/download"),
        &out,
    )?;
    remote.show(&serde_json::json!({"file": out, "sha256": sum}), || {
        format!("{} (SHA-256 {sum})", out.display())
    });
    Ok(ExitCode::SUCCESS)
}

pub fn restore_record(
    remote: &Remote,
    job: &str,
    record: &str,
    request: RestoreRequest,
    wait: bool,
) -> Result<ExitCode> {
    let client = remote.client()?;
    let mut task: RestoreTask = client.restore_record(job, record, &request)?;
    if wait {
        task = client.wait_restore(job, &task.id, Duration::from_secs(7 * 24 * 3600))?;
    }
    remote.show(&task, || {
        format!(
            "restore {}: {} into {}",
            task.id,
            task.status.as_str(),
            task.target
        )
    });
    Ok(match task.status {
        RecordStatus::Failed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// The data directory a local command works on.
pub fn data_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("COFFER_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("coffer-data"))
}

pub fn system_backup(
    remote: &Remote,
    output: &Path,
    include_secrets: bool,
    local: bool,
    data_dir: Option<PathBuf>,
) -> Result<ExitCode> {
    let passphrase = match include_secrets {
        true => Some(std::env::var("COFFER_SYSTEM_PASSPHRASE").context(
            "--include-secrets seals them with a passphrase: set COFFER_SYSTEM_PASSPHRASE",
        )?),
        false => None,
    };
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    // Through the server when one answers (unless --local), else on the data directory.
    let server = match local {
        true => None,
        false => {
            let client = remote.client_or_none();
            client.filter(|c| c.health().is_ok())
        }
    };
    let (mode, out, size) = match server {
        Some(client) => {
            let made = client.create_system_backup(passphrase.as_deref())?;
            let out = output.join(&made.name);
            download_to(&client, &format!("/api/system/backups/{}", made.name), &out)?;
            (
                format!("through the server at {}", client.base()),
                out,
                made.size,
            )
        }
        None => {
            let dir = data_dir_of(data_dir)?;
            let made = local_system_backup(&dir, passphrase.as_deref())?;
            let kept = coffer_system::Folder::new(&dir).dir().join(&made.name);
            let out = output.join(&made.name);
            if std::fs::canonicalize(output).ok() != kept.parent().map(Path::to_path_buf) {
                std::fs::copy(&kept, &out)
                    .with_context(|| format!("copying it to {}", out.display()))?;
            }
            (format!("locally, on {}", dir.display()), out, made.size)
        }
    };
    let sum = sha256_file(&out)?;
    remote.show(
        &serde_json::json!({"file": out, "sha256": sum, "size": size, "mode": mode}),
        || {
            format!(
                "{} ({}, SHA-256 {sum}), made {mode}",
                out.display(),
                bytes(size)
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

fn data_dir_of(given: Option<PathBuf>) -> Result<PathBuf> {
    let dir = data_dir(given);
    if !dir.join("coffer.db").is_file() {
        bail!(
            "no server answers, and {} holds no Coffer database: pass --url or --data-dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// A system backup made on the data directory `dir` directly, kept in its
/// `system-backups/`; refused while a server runs on it.
fn local_system_backup(dir: &Path, passphrase: Option<&str>) -> Result<coffer_system::BackupFile> {
    let _held = coffer_system::lock(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let db = coffer_db::Db::open(&dir.join("coffer.db")).await?;
        let folder = coffer_system::Folder::new(dir);
        Ok(coffer_system::system_backup(
            &db,
            dir,
            &folder,
            env!("CARGO_PKG_VERSION"),
            None,
            coffer_system::SYSTEM,
            passphrase,
        )
        .await?)
    })
}

pub fn system_restore(remote: &Remote, file: &Path) -> Result<ExitCode> {
    let client = remote.client()?;
    let sum = sha256_file(file)?;
    let body = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let restored = client.restore_system(body, &sum)?;
    remote.show(&restored, || {
        format!(
            "restored {}; what it replaced is kept as {}",
            file.display(),
            restored.pre_restore
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut h, mut buf) = (sha2::Sha256::new(), vec![0u8; 1 << 20]);
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

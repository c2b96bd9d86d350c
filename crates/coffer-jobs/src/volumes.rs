//! Docker volume sources: read for a backup as a tar stream the engine turns into the folder
//! `volume/<name>` of the snapshot; restored in place into a recreated volume.
//!
//! Each snapshot records how to create the volume again (driver, options, labels) in its label
//! `volume:<name>`. Blocking functions here run on the blocking pool, inside the runtime.

use std::collections::BTreeMap;

use coffer_repo::{BackupItem, Id, Repository};
use coffer_sources::docker::{Container, Docker, DockerError, VolumeInfo};

use crate::{ChannelWriter, JobsError};

/// The folder of a volume in a snapshot.
pub(crate) fn folder(name: &str) -> String {
    format!("volume/{name}")
}

fn label(name: &str) -> String {
    format!("volume:{name}")
}

fn failed(name: &str) -> impl Fn(DockerError) -> String + '_ {
    move |e| format!("volume {name}: {e}")
}

/// The engine item that reads the volume; its description goes into `labels`.
pub(crate) fn backup_item(
    name: &str,
    labels: &mut BTreeMap<String, String>,
) -> Result<BackupItem, String> {
    let rt = tokio::runtime::Handle::current();
    let (info, reader) = rt
        .block_on(async {
            let docker = Docker::connect().await?;
            let info = docker.volume(name).await?;
            Ok((info, docker.read_volume(name).await?))
        })
        .map_err(failed(name))?;
    labels.insert(
        label(name),
        serde_json::to_string(&info).map_err(|e| e.to_string())?,
    );
    BackupItem::named(&folder(name), coffer_repo::Source::Tar(Box::new(reader)))
        .map_err(|e| format!("volume {name}: {e}"))
}

/// Whether the Docker engine can be used, with its version or why not.
pub async fn docker_check() -> coffer_types::Check {
    match Docker::version().await {
        Ok(v) => coffer_types::Check {
            ok: true,
            detail: v,
        },
        Err(e) => coffer_types::Check {
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// Remove temporary containers a killed run left behind (when there is an engine).
pub(crate) async fn remove_leftovers() {
    if let Ok(docker) = Docker::connect().await {
        match docker.remove_leftovers().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                containers = n,
                "removed temporary containers a stop left behind"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not look for leftover temporary containers")
            }
        }
    }
}

/// Whether the volume exists now (what a safety snapshot can save).
pub(crate) async fn exists(name: &str) -> bool {
    match Docker::connect().await {
        Ok(d) => d.volume(name).await.is_ok(),
        Err(_) => false,
    }
}

/// Containers stopped for a restore, to be started again when it ends.
#[derive(Debug, Default)]
pub(crate) struct Stopped(Vec<(Docker, Container)>);

impl Stopped {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Before an in-place restore of `volumes`: refuse (`Busy`) when running containers use them,
/// or with `stop` stop those containers. An unreachable engine is left for the restore itself
/// to report.
pub(crate) async fn make_unused(volumes: &[String], stop: bool) -> Result<Stopped, JobsError> {
    let mut stopped = Stopped::default();
    if volumes.is_empty() {
        return Ok(stopped);
    }
    let Ok(docker) = Docker::connect().await else {
        return Ok(stopped);
    };
    for name in volumes {
        let users = match docker.check_unused(name).await {
            Ok(_) => continue,
            Err(DockerError::InUse { .. }) if stop => docker.users(name).await,
            Err(e) => Err(e),
        };
        let result = async {
            for c in users?.into_iter().filter(|c| c.running) {
                docker.stop(&c).await?;
                tracing::info!(volume = %name, container = %c.name, "stopped for a restore");
                stopped.0.push((docker.clone(), c));
            }
            Ok::<_, DockerError>(())
        }
        .await;
        if let Err(e) = result {
            start_again(stopped).await;
            return Err(match e {
                DockerError::InUse { .. } => JobsError::Busy(e.to_string()),
                other => JobsError::Repository(failed(name)(other)),
            });
        }
    }
    Ok(stopped)
}

/// Start the containers a restore stopped (whatever its outcome).
pub(crate) async fn start_again(stopped: Stopped) {
    for (docker, c) in stopped.0 {
        match docker.start(&c).await {
            Ok(()) => tracing::info!(container = %c.name, "started again after a restore"),
            Err(e) => {
                tracing::error!(container = %c.name, error = %e, "could not start a container again after a restore")
            }
        }
    }
}

/// Restore the volume `name` from the snapshot: recreated as recorded, then filled through a
/// temporary container. Returns files and bytes.
pub(crate) fn restore(repo: &Repository, id: &Id, name: &str) -> Result<(u64, u64), String> {
    let rt = tokio::runtime::Handle::current();
    let snap = coffer_repo::snapshot::load(repo, id).map_err(|e| e.to_string())?;
    let info = snap
        .labels
        .get(&label(name))
        .and_then(|j| serde_json::from_str::<VolumeInfo>(j).ok())
        .unwrap_or_else(|| VolumeInfo {
            name: name.into(),
            driver: "local".into(),
            ..Default::default()
        });
    let docker = rt
        .block_on(async {
            let docker = Docker::connect().await?;
            docker.check_unused(name).await?;
            docker.recreate(&info).await?;
            Ok(docker)
        })
        .map_err(failed(name))?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let volume = name.to_string();
    let upload = rt.spawn(async move {
        use futures_util::StreamExt;
        let body = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|chunk: std::io::Result<Vec<u8>>| chunk.map(bytes::Bytes::from));
        docker.write_volume(&volume, body).await
    });
    let mut out = ChannelWriter::new(tx, 0, u64::MAX);
    let written = coffer_repo::dump_dir(repo, id, &folder(name), &mut out)
        .map_err(|e| e.to_string())
        .and_then(|counts| {
            out.flush_buf().map_err(|e| e.to_string())?;
            Ok(counts)
        });
    if let Err(e) = &written {
        out.fail(e.clone());
    }
    drop(out);
    let uploaded = rt
        .block_on(upload)
        .map_err(|e| e.to_string())?
        .map_err(failed(name));
    let counts = written?;
    uploaded?;
    Ok(counts)
}

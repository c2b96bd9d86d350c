//! Docker volume sources: read for a backup as a tar stream the engine turns into the folder
//! `volume/<name>` of the snapshot; restored in place into a recreated volume.
//!
//! Each snapshot records how to create the volume again (driver, options, labels) in its label
//! `volume:<name>`. Blocking functions here run on the blocking pool, inside the runtime.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use coffer_repo::{BackupItem, SnapshotReader, tarball};
use coffer_sources::docker::{Container, Docker, DockerError, VolumeInfo};

use coffer_db::Restored;

use super::{Judge, Kind, Logins, Restore, Run, ServerDumps};
use crate::spec::{FieldError, field};
use crate::upload;
use crate::{ChannelWriter, JobsError};

pub(super) struct Volume<'a> {
    pub name: &'a str,
}

impl Kind for Volume<'_> {
    fn check(&self, _: &Judge<'_>) -> Result<(), FieldError> {
        let name = self.name;
        let ok = name.len() <= 255
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        match ok {
            true => Ok(()),
            false => Err(field(
                "volumes",
                format!("{name:?} is not a Docker volume name"),
            )),
        }
    }

    fn missing(&self, _: &Logins) -> Option<String> {
        let rt = tokio::runtime::Handle::current();
        let exists = rt.block_on(async {
            match Docker::connect().await {
                Ok(d) => d.volume(self.name).await.is_ok(),
                Err(_) => false,
            }
        });
        (!exists).then(|| format!("the volume {}", self.name))
    }

    fn items(&self, run: &mut Run<'_>) -> Result<Vec<BackupItem>, JobsError> {
        Ok(vec![backup_item(self.name, run.labels)?])
    }

    fn restores(&self, _: &HashMap<String, ServerDumps>) -> Vec<Restore> {
        vec![Restore::Volume(self.name.to_string())]
    }
}

/// The folder of a volume in a snapshot.
pub(crate) fn folder(name: &str) -> String {
    format!("volume/{name}")
}

fn label(name: &str) -> String {
    format!("volume:{name}")
}

/// A Docker failure while working on volume `name`.
fn failed(name: &str) -> impl Fn(DockerError) -> JobsError + '_ {
    move |e| {
        JobsError::Source(coffer_sources::SourceError::Failed {
            what: format!("volume {name}"),
            message: e.to_string(),
        })
    }
}

/// The engine item that reads the volume; its description goes into `labels`. A volume whose
/// files Coffer reaches in place is walked like a path (files unchanged since the last backup
/// are not read again); any other is read whole as a tar stream through a temporary container.
fn backup_item(name: &str, labels: &mut BTreeMap<String, String>) -> Result<BackupItem, JobsError> {
    let rt = tokio::runtime::Handle::current();
    let (info, source) = rt
        .block_on(async {
            let docker = Docker::connect().await?;
            let info = docker.volume(name).await?;
            let source = match docker.mount_point(name).await? {
                Some(dir) => coffer_repo::Source::Path(dir),
                None => coffer_repo::Source::Tar(Box::new(docker.read_volume(name).await?)),
            };
            Ok((info, source))
        })
        .map_err(failed(name))?;
    labels.insert(
        label(name),
        serde_json::to_string(&info).expect("a volume's description serializes"),
    );
    Ok(BackupItem::named(&folder(name), source)?)
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

/// The node's Docker volumes (what a job can back up), or why the engine cannot be asked.
pub async fn docker_volumes() -> Result<Vec<coffer_types::DockerVolume>, JobsError> {
    let engine = |e: DockerError| {
        JobsError::Source(coffer_sources::SourceError::Failed {
            what: "the Docker engine".into(),
            message: e.to_string(),
        })
    };
    let docker = Docker::connect().await.map_err(engine)?;
    Ok(docker
        .volumes()
        .await
        .map_err(engine)?
        .into_iter()
        .map(|v| coffer_types::DockerVolume {
            name: v.name,
            driver: v.driver,
        })
        .collect())
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
        let result = async {
            if !stop {
                return docker.check_unused(name).await;
            }
            for c in docker.users(name).await?.into_iter().filter(|c| c.running) {
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
                other => failed(name)(other),
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
pub(crate) fn restore(session: &SnapshotReader<'_>, name: &str) -> Result<(u64, u64), JobsError> {
    // The volume is recreated before it is filled: a lost pack must stop the restore first.
    session.check_present(&[folder(name)])?;
    let info = session
        .snapshot()
        .labels
        .get(&label(name))
        .and_then(|j| serde_json::from_str::<VolumeInfo>(j).ok());
    refill(name, info, |out| Ok(session.dump_dir(&folder(name), out)?))
}

/// Restore the volume `name` from its folder in an uploaded (and checked) archive; the volume
/// is recreated as it is now.
pub(crate) fn restore_from_archive(archive: &Path, name: &str) -> Result<Restored, JobsError> {
    refill(name, None, |out| {
        let unpacked = tarball::extract_dir(archive, Path::new(&folder(name)), out)?;
        Ok(upload::restored(unpacked))
    })
}

/// Recreate the volume `name` (as `info` describes it; else as it is now, or as a plain local
/// volume) and fill it with the tar stream (`./…`) that `write` produces. Nothing is written
/// while a running container uses it.
fn refill<T>(
    name: &str,
    info: Option<VolumeInfo>,
    write: impl FnOnce(&mut ChannelWriter) -> Result<T, JobsError>,
) -> Result<T, JobsError> {
    let rt = tokio::runtime::Handle::current();
    let docker = rt
        .block_on(async {
            let docker = Docker::connect().await?;
            docker.check_unused(name).await?;
            let info = match info {
                Some(i) => i,
                None => docker.volume(name).await.unwrap_or_else(|_| VolumeInfo {
                    name: name.into(),
                    driver: "local".into(),
                    ..Default::default()
                }),
            };
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
    let written = write(&mut out).and_then(|counts| {
        out.flush_buf()
            .map_err(|e| JobsError::io(format!("volume {name}"), e))?;
        Ok(counts)
    });
    if let Err(e) = &written {
        out.fail(e.to_string());
    }
    drop(out);
    let uploaded = rt
        .block_on(upload)
        .map_err(|e| JobsError::Internal(format!("volume {name}: {e}")))?
        .map_err(failed(name));
    let counts = written?;
    uploaded?;
    Ok(counts)
}

//! Docker volumes through the Docker Engine API: read a volume as a tar stream, write one back
//! into a recreated volume, and find (and stop, and start again) the containers that use it.
//!
//! Volumes are read and written through a temporary container that is never started: it is
//! created from an image Coffer makes itself by importing an empty tar (no registry, no
//! network), with the volume mounted at `/volume`, and the engine's archive endpoints copy
//! files out of and into it. Temporary containers carry the label `coffer.temporary`; any left
//! behind by a crash are removed by [`Docker::remove_leftovers`].

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig, Mount, MountType,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateImageOptions, DownloadFromContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

/// The image temporary containers are created from: one empty layer, imported by Coffer.
const IMAGE: &str = "coffer-empty:1";
/// Where the volume is mounted in a temporary container.
const MOUNT: &str = "/volume";
/// The label that marks Coffer's temporary containers.
const TEMPORARY: &str = "coffer.temporary";
/// The label naming the Coffer (by its data directory) a temporary container belongs to.
const OWNER: &str = "coffer.owner";

static OWNER_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Mark this process's temporary containers as `id`'s (one per data directory): the leftovers
/// removed at start-up are its own, never those of another Coffer using the same engine.
pub fn set_owner(id: &str) {
    let _ = OWNER_ID.set(id.to_string());
}

fn owner() -> &'static str {
    OWNER_ID.get().map_or("", String::as_str)
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the Docker engine is not reachable ({0})")]
    Unreachable(String),
    #[error("Docker volume {0} does not exist")]
    NoSuchVolume(String),
    #[error(
        "Docker volume {volume} is in use by running container(s) {}: stop them first, or restore with \"stop_containers\": true",
        containers.join(", ")
    )]
    InUse {
        volume: String,
        containers: Vec<String>,
    },
    #[error("Docker: {0}")]
    Api(String),
}

type Result<T> = std::result::Result<T, DockerError>;

fn api(e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError { message, .. } => DockerError::Api(message),
        other => DockerError::Api(other.to_string()),
    }
}

fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What it takes to create a volume again as it was: recorded with each backup of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub options: HashMap<String, String>,
    #[serde(default)]
    pub labels: HashMap<String, String>,
}

/// A container that uses a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub running: bool,
}

/// A connection to the local Docker engine (`DOCKER_HOST` when it names a unix socket,
/// otherwise `/var/run/docker.sock`), speaking the API version the engine offers.
#[derive(Clone, Debug)]
pub struct Docker {
    inner: bollard::Docker,
}

/// The connection once made, shared by every step: the client pools its connections, and the
/// API version is negotiated once per process.
static CONNECTED: Mutex<Option<Docker>> = Mutex::new(None);

impl Docker {
    /// The shared connection, made (and checked with a ping) on first use.
    pub async fn connect() -> Result<Docker> {
        if let Some(d) = CONNECTED.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(d);
        }
        let d = Self::connect_now().await?;
        *CONNECTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.clone());
        Ok(d)
    }

    async fn connect_now() -> Result<Docker> {
        let unreachable = |e: BollardError| DockerError::Unreachable(e.to_string());
        let inner = bollard::Docker::connect_with_unix_defaults().map_err(unreachable)?;
        let inner = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let d = inner.negotiate_version().await?;
            d.ping().await?;
            Ok::<_, BollardError>(d)
        })
        .await
        .map_err(|_| DockerError::Unreachable("it did not answer within 5 s".into()))?
        .map_err(unreachable)?;
        Ok(Docker { inner })
    }

    /// The engine's version, or why it cannot be used.
    pub async fn version() -> Result<String> {
        let d = Docker::connect().await?;
        let v = d.inner.version().await.map_err(api)?;
        Ok(format!(
            "Docker {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    async fn inspect(&self, name: &str) -> Result<bollard::models::Volume> {
        match self.inner.inspect_volume(name).await {
            Err(e) if status(&e) == Some(404) => Err(DockerError::NoSuchVolume(name.into())),
            inspected => inspected.map_err(api),
        }
    }

    /// Every volume of the engine, by name.
    pub async fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let list = self
            .inner
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .map_err(api)?;
        let mut volumes: Vec<VolumeInfo> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeInfo {
                name: v.name,
                driver: v.driver,
                options: v.options,
                labels: v.labels,
            })
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// The volume's driver, options and labels.
    pub async fn volume(&self, name: &str) -> Result<VolumeInfo> {
        let v = self.inspect(name).await?;
        Ok(VolumeInfo {
            name: v.name,
            driver: v.driver,
            options: v.options,
            labels: v.labels,
        })
    }

    /// Where the volume's files can be read in place: the directory of a plain local volume
    /// (without mount options: such a volume is mounted only while a container uses it) when
    /// Coffer reaches it, as it does on the Docker host.
    pub async fn mount_point(&self, name: &str) -> Result<Option<PathBuf>> {
        let v = self.inspect(name).await?;
        let dir = PathBuf::from(&v.mountpoint);
        let plain = v.driver == "local" && v.options.is_empty();
        Ok((plain && dir.is_absolute() && dir.is_dir()).then_some(dir))
    }

    /// Containers, running or not, that match one filter (`volume=…`, `label=…`).
    async fn containers(&self, filter: &str, value: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([(filter.to_string(), vec![value.to_string()])]);
        self.inner
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api)
    }

    /// The containers (running or not) that mount the volume, Coffer's own excepted.
    pub async fn users(&self, volume: &str) -> Result<Vec<Container>> {
        Ok(self
            .containers("volume", volume)
            .await?
            .into_iter()
            .filter(|c| !c.labels.as_ref().is_some_and(|l| l.contains_key(TEMPORARY)))
            .map(|c| Container {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                running: matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING
                    )
                ),
            })
            .collect())
    }

    /// Refuse when a running container uses the volume.
    pub async fn check_unused(&self, volume: &str) -> Result<()> {
        let running: Vec<String> = self
            .users(volume)
            .await?
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.name)
            .collect();
        if running.is_empty() {
            Ok(())
        } else {
            Err(DockerError::InUse {
                volume: volume.into(),
                containers: running,
            })
        }
    }

    pub async fn stop(&self, c: &Container) -> Result<()> {
        let opts = StopContainerOptions {
            // Docker's own default grace period before SIGKILL.
            t: Some(10),
            ..Default::default()
        };
        match self.inner.stop_container(&c.id, Some(opts)).await {
            // 304: already stopped.
            Err(e) if status(&e) != Some(304) => Err(api(e)),
            _ => Ok(()),
        }
    }

    pub async fn start(&self, c: &Container) -> Result<()> {
        match self.inner.start_container(&c.id, None).await {
            Err(e) if status(&e) != Some(304) => Err(api(e)),
            _ => Ok(()),
        }
    }

    /// Read the volume as a tar stream of its contents (`./…`) for a blocking reader, through
    /// a temporary container that goes away when the reader is dropped.
    pub async fn read_volume(&self, name: &str) -> Result<VolumeReader> {
        // Inspected first: mounting a volume that does not exist would create it.
        self.inspect(name).await?;
        let temp = self.temporary(name, true).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let docker = self.inner.clone();
        let id = temp.id.clone();
        tokio::spawn(async move {
            let opts = DownloadFromContainerOptions {
                path: format!("{MOUNT}/."),
            };
            let mut stream = std::pin::pin!(docker.download_from_container(&id, Some(opts)));
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                let item = item.map_err(|e| std::io::Error::other(api(e).to_string()));
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(VolumeReader {
            rx,
            buf: Bytes::new(),
            _temp: temp,
        })
    }

    /// Make the volume empty, as described by `info`: removed and created again with its
    /// driver, options and labels. A volume that stopped containers still reference cannot be
    /// removed; it is emptied in place through its mount point, which Coffer reaches when it
    /// runs on the Docker host.
    pub async fn recreate(&self, info: &VolumeInfo) -> Result<()> {
        match self
            .inner
            .remove_volume(
                &info.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if status(&e) == Some(404) => {}
            Err(e) if status(&e) == Some(409) => return self.empty_in_place(&info.name).await,
            Err(e) => return Err(api(e)),
        }
        let req = VolumeCreateRequest {
            name: Some(info.name.clone()),
            driver: Some(info.driver.clone()).filter(|d| !d.is_empty()),
            driver_opts: Some(info.options.clone()),
            labels: Some(info.labels.clone()),
            ..Default::default()
        };
        self.inner.create_volume(req).await.map_err(api)?;
        Ok(())
    }

    async fn empty_in_place(&self, name: &str) -> Result<()> {
        let v = self.inspect(name).await?;
        let dir = PathBuf::from(&v.mountpoint);
        let in_use = || {
            DockerError::Api(format!(
                "volume {name} is still referenced by stopped containers, so it cannot be recreated, and its mount point {} is not reachable from Coffer: remove those containers or run Coffer on the Docker host",
                dir.display()
            ))
        };
        if v.driver != "local" || !dir.is_dir() {
            return Err(in_use());
        }
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if std::fs::symlink_metadata(&path)?.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| DockerError::Api(e.to_string()))?
        .map_err(|e| DockerError::Api(format!("emptying volume {name}: {e}")))
    }

    /// Write a tar stream (entries `./…`, the volume's top directory as `./`) into the volume.
    pub async fn write_volume(
        &self,
        name: &str,
        tar: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        let temp = self.temporary(name, false).await?;
        let opts = UploadToContainerOptions {
            path: MOUNT.into(),
            ..Default::default()
        };
        let result = self
            .inner
            .upload_to_container(&temp.id, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(api);
        temp.remove().await;
        result
    }

    /// Remove the temporary containers this Coffer's crash left behind (and those of older
    /// versions, which named no owner); another Coffer's stay.
    pub async fn remove_leftovers(&self) -> Result<usize> {
        let list: Vec<ContainerSummary> = self
            .containers("label", TEMPORARY)
            .await?
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .is_none_or(|l| l.get(OWNER).is_none_or(|o| o == owner()))
            })
            .collect();
        for c in &list {
            if let Some(id) = &c.id {
                remove_container(&self.inner, id).await;
            }
        }
        Ok(list.len())
    }

    async fn ensure_image(&self) -> Result<()> {
        if self.inner.inspect_image(IMAGE).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = IMAGE.split_once(':').expect("name:tag");
        let opts = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            ..Default::default()
        };
        // An empty tar: two zero blocks.
        let empty = bollard::body_full(Bytes::from(vec![0u8; 1024]));
        let mut progress = std::pin::pin!(self.inner.create_image(Some(opts), Some(empty), None));
        while let Some(step) = progress.next().await {
            step.map_err(api)?;
        }
        Ok(())
    }

    async fn temporary(&self, volume: &str, read_only: bool) -> Result<Temporary> {
        self.ensure_image().await?;
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            // Never run: the image holds no program at all.
            cmd: Some(vec!["/coffer-never-started".into()]),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                (TEMPORARY.to_string(), volume.to_string()),
                (OWNER.to_string(), owner().to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![Mount {
                    target: Some(MOUNT.into()),
                    source: Some(volume.into()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(read_only),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .inner
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(api)?;
        Ok(Temporary {
            docker: self.inner.clone(),
            id: created.id,
            removed: false,
        })
    }
}

async fn remove_container(docker: &bollard::Docker, id: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    if let Err(e) = docker.remove_container(id, Some(opts)).await {
        tracing::warn!(container = %id, error = %e, "could not remove a temporary container");
    }
}

/// A temporary container, removed when dropped (in the background) or by `remove`.
struct Temporary {
    docker: bollard::Docker,
    id: String,
    removed: bool,
}

impl Temporary {
    async fn remove(mut self) {
        self.removed = true;
        remove_container(&self.docker, &self.id).await;
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            rt.spawn(async move { remove_container(&docker, &id).await });
        }
    }
}

/// A volume's contents as a tar stream, read from a blocking thread.
pub struct VolumeReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
    _temp: Temporary,
}

impl std::fmt::Debug for VolumeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeReader")
    }
}

impl Read for VolumeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.buf = chunk?,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

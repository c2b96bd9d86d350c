//! S3-compatible object storage through OpenDAL (AWS S3, MinIO, Ceph RGW, Garage, R2).
//!
//! OpenDAL is asynchronous; the engine is not. Each backend owns a small private Tokio runtime
//! and waits for each request on a plain channel, which works from any thread, including threads
//! of another runtime (the server calls the engine from `spawn_blocking`).
//! A PUT of a whole object is atomic on S3, which gives the trait's write guarantee.

use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

use super::{Backend, BackendError, BackendErrorKind, BackendResult, ObjectInfo};

/// Connection settings. Unset fields fall back to the AWS environment variables
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`)
/// and the shared files `~/.aws/credentials` and `~/.aws/config`.
#[derive(Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Requests in flight at once (default: `COFFER_S3_CONNECTIONS`, else 8).
    pub connections: Option<usize>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("connections", &self.connections)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Options {
    pub fn from_env() -> Self {
        S3Options::default()
    }
}

pub struct S3Backend {
    op: Operator,
    runtime: tokio::runtime::Runtime,
    location: String,
    connections: usize,
}

/// Requests in flight at once unless configured: enough to hide a WAN round trip behind the
/// others, few enough not to be throttled.
const DEFAULT_CONNECTIONS: usize = 8;

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.location)
            .finish()
    }
}

fn map_err(op: &'static str, location: String, e: opendal::Error) -> BackendError {
    let kind = match e.kind() {
        ErrorKind::NotFound => BackendErrorKind::NotFound,
        ErrorKind::PermissionDenied => BackendErrorKind::PermissionDenied,
        ErrorKind::RateLimited => BackendErrorKind::Temporary,
        _ if e.is_temporary() => BackendErrorKind::Temporary,
        _ => BackendErrorKind::Other,
    };
    BackendError {
        kind,
        op,
        location,
        message: e.to_string(),
    }
}

impl S3Backend {
    pub fn new(bucket: &str, prefix: &str, opts: S3Options) -> BackendResult<Self> {
        opendal::install_default();
        let location = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let cfg_err = |e: opendal::Error| map_err("configure", location.clone(), e);
        let region = opts
            .region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let mut b = opendal::services::S3::default()
            .bucket(bucket)
            .root(&format!("/{prefix}"))
            .region(&region)
            // Instance metadata lives at a link-local address; Coffer only talks to the
            // endpoint it is given.
            .disable_ec2_metadata();
        if let Some(ep) = &opts.endpoint {
            b = b.endpoint(ep);
        }
        if let (Some(ak), Some(sk)) = (&opts.access_key_id, &opts.secret_access_key) {
            b = b.access_key_id(ak).secret_access_key(sk);
        }
        let connections = opts
            .connections
            .or_else(|| {
                std::env::var("COFFER_S3_CONNECTIONS")
                    .ok()
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(DEFAULT_CONNECTIONS)
            .clamp(1, 64);
        let op = Operator::new(b)
            .map_err(cfg_err)?
            .layer(TimeoutLayer::new().with_timeout(Duration::from_secs(120)))
            .layer(RetryLayer::new().with_max_times(4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-s3")
            .enable_all()
            .build()
            .map_err(|e| BackendError::from_io("start", location.clone(), &e))?;
        Ok(S3Backend {
            op,
            runtime,
            location,
            connections,
        })
    }

    fn loc(&self, name: &str) -> String {
        format!("{}/{}", self.location, name)
    }

    /// Run one request on the private runtime and wait for it from this (synchronous) thread.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = opendal::Result<T>> + Send + 'static,
    ) -> opendal::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(opendal::Error::new(
                ErrorKind::Unexpected,
                "the storage request was abandoned",
            ))
        })
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> BackendResult<()> {
        // Buckets are created by their owner; check that this one answers.
        let op = self.op.clone();
        self.run(async move { op.list_with("").limit(1).await.map(|_| ()) })
            .map_err(|e| map_err("access", self.location.clone(), e))
    }

    fn read(&self, name: &str) -> BackendResult<Vec<u8>> {
        let (op, n) = (self.op.clone(), name.to_string());
        self.run(async move { op.read(&n).await.map(|b| b.to_vec()) })
            .map_err(|e| map_err("read", self.loc(name), e))
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> BackendResult<Vec<u8>> {
        if len == 0 {
            return Ok(vec![]);
        }
        let get = |len: u64| {
            let (op, n) = (self.op.clone(), name.to_string());
            self.run(async move {
                op.read_with(&n)
                    .range(offset..offset + len)
                    .await
                    .map(|b| b.to_vec())
            })
        };
        match get(len) {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(map_err("read", self.loc(name), e)),
            // The object is shorter than the range (a truncated pack): return what exists, like
            // a file read would, so that the engine reports damage rather than an I/O error.
            Err(e) => match self.size(name)? {
                Some(size) if size <= offset => Ok(vec![]),
                Some(size) if size < offset + len => {
                    get(size - offset).map_err(|e| map_err("read", self.loc(name), e))
                }
                _ => Err(map_err("read", self.loc(name), e)),
            },
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> BackendResult<()> {
        let (op, n, d) = (self.op.clone(), name.to_string(), data.to_vec());
        self.run(async move { op.write(&n, d).await.map(|_| ()) })
            .map_err(|e| map_err("write", self.loc(name), e))
    }

    fn list(&self, dir: &str) -> BackendResult<Vec<ObjectInfo>> {
        let (op, d) = (self.op.clone(), format!("{dir}/"));
        let entries = self
            .run(async move { op.list_with(&d).recursive(true).await })
            .map_err(|e| map_err("list", self.loc(dir), e))?;
        let mut out: Vec<ObjectInfo> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| ObjectInfo {
                name: e.path().trim_start_matches('/').to_string(),
                size: e.metadata().content_length(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        let (op, n) = (self.op.clone(), name.to_string());
        match self.run(async move { op.delete(&n).await }) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err("delete", self.loc(name), e)),
        }
    }

    fn size(&self, name: &str) -> BackendResult<Option<u64>> {
        let (op, n) = (self.op.clone(), name.to_string());
        match self.run(async move { op.stat(&n).await }) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err("stat", self.loc(name), e)),
        }
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn connections(&self) -> usize {
        self.connections
    }
}

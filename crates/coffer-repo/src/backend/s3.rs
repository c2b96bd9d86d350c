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
    place: Place,
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

/// Where requests go, for sentences about what went wrong.
#[derive(Debug, Clone)]
struct Place {
    bucket: String,
    endpoint: String,
}

impl Place {
    /// A failed request as a sentence for people; the whole error (request, status, headers)
    /// goes to the log.
    fn error(&self, op: &'static str, location: String, e: opendal::Error) -> BackendError {
        let (kind, message) = self.describe(&e);
        if kind == BackendErrorKind::NotFound {
            tracing::debug!(op, %location, error = %e, "S3 request failed");
        } else {
            tracing::warn!(op, %location, error = %e, "S3 request failed");
        }
        BackendError {
            kind,
            op,
            location,
            message,
        }
    }

    fn describe(&self, e: &opendal::Error) -> (BackendErrorKind, String) {
        use BackendErrorKind as K;
        let bucket = &self.bucket;
        let reply = S3Reply::of(e);
        let code = reply.as_ref().map_or("", |r| r.code.as_str());
        let said = || match &reply {
            Some(r) if !r.message.is_empty() => format!("{}: {}", r.code, r.message),
            Some(r) => r.code.clone(),
            None => e.message().to_string(),
        };
        match (e.kind(), code) {
            (_, "NoSuchBucket") => (
                K::Misconfigured,
                format!("the S3 bucket \"{bucket}\" does not exist"),
            ),
            (_, "InvalidBucketName") => (
                K::Misconfigured,
                format!("the S3 server refused the bucket name \"{bucket}\": InvalidBucketName"),
            ),
            (_, "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException") => (
                K::Misconfigured,
                format!("the S3 server refused the request for bucket \"{bucket}\" (is the region right?): {}", said()),
            ),
            (_, "InvalidAccessKeyId") => (
                K::PermissionDenied,
                "the S3 server does not know the access key: InvalidAccessKeyId".to_string(),
            ),
            (_, "SignatureDoesNotMatch") => (
                K::PermissionDenied,
                "the S3 server refused the credentials (the secret key does not match the access key): SignatureDoesNotMatch".to_string(),
            ),
            (ErrorKind::NotFound, _) => (K::NotFound, "no such object".to_string()),
            (ErrorKind::PermissionDenied, _) => (
                K::PermissionDenied,
                format!("the S3 server denied access to bucket \"{bucket}\": {}", said()),
            ),
            (ErrorKind::RateLimited, _) => (
                K::Temporary,
                format!("the S3 server kept asking to slow down: {}", said()),
            ),
            (ErrorKind::ConfigInvalid, _) => (
                K::Misconfigured,
                format!("the S3 settings are not usable: {}", said()),
            ),
            _ if reply.is_none() => match io_cause(e) {
                Some(io) => (
                    K::Unreachable,
                    format!("cannot reach the S3 server at {}: {io}", self.endpoint),
                ),
                None if e.is_temporary() => (
                    K::Temporary,
                    format!("the S3 server at {} did not answer: {}", self.endpoint, said()),
                ),
                None => (K::Other, format!("the S3 request failed: {}", said())),
            },
            _ if e.is_temporary() => (
                K::Temporary,
                format!("the S3 server kept failing: {}", said()),
            ),
            _ => (K::Other, format!("the S3 server answered with an error: {}", said())),
        }
    }
}

/// The operating-system error under a failed request (connection refused, unknown host).
fn io_cause(e: &opendal::Error) -> Option<String> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.to_string());
        }
        cause = c.source();
    }
    None
}

/// The error document an S3 server answered with (`<Error><Code>…</Code><Message>…`).
struct S3Reply {
    code: String,
    message: String,
}

impl S3Reply {
    /// OpenDAL keeps the server's error document only as the text of its message
    /// (`S3Error { code: "…", message: "…", … }`); read the two fields back from there.
    fn of(e: &opendal::Error) -> Option<S3Reply> {
        let text = e.message().strip_prefix("S3Error {")?;
        let field = |name: &str| -> Option<String> {
            let start = text.find(&format!("{name}: \""))? + name.len() + 3;
            let mut out = String::new();
            let mut chars = text[start..].chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(out),
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            None
        };
        let code = field("code").filter(|c| !c.is_empty())?;
        Some(S3Reply {
            code,
            message: field("message").unwrap_or_default(),
        })
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
        let endpoint = opts
            .endpoint
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(ep) = &endpoint {
            b = b.endpoint(ep);
        }
        let place = Place {
            bucket: bucket.to_string(),
            endpoint: endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com")),
        };
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
            .map_err(|e| place.error("configure", location.clone(), e))?
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
            place,
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
            .map_err(|e| self.place.error("access", self.location.clone(), e))
    }

    fn read(&self, name: &str) -> BackendResult<Vec<u8>> {
        let (op, n) = (self.op.clone(), name.to_string());
        self.run(async move { op.read(&n).await.map(|b| b.to_vec()) })
            .map_err(|e| self.place.error("read", self.loc(name), e))
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
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(self.place.error("read", self.loc(name), e))
            }
            // The object is shorter than the range (a truncated pack): return what exists, like
            // a file read would, so that the engine reports damage rather than an I/O error.
            Err(e) => match self.size(name)? {
                Some(size) if size <= offset => Ok(vec![]),
                Some(size) if size < offset + len => {
                    get(size - offset).map_err(|e| self.place.error("read", self.loc(name), e))
                }
                _ => Err(self.place.error("read", self.loc(name), e)),
            },
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> BackendResult<()> {
        let (op, n, d) = (self.op.clone(), name.to_string(), data.to_vec());
        self.run(async move { op.write(&n, d).await.map(|_| ()) })
            .map_err(|e| self.place.error("write", self.loc(name), e))
    }

    fn list(&self, dir: &str) -> BackendResult<Vec<ObjectInfo>> {
        let (op, d) = (self.op.clone(), format!("{dir}/"));
        let entries = self
            .run(async move { op.list_with(&d).recursive(true).await })
            .map_err(|e| self.place.error("list", self.loc(dir), e))?;
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
            Err(e) => Err(self.place.error("delete", self.loc(name), e)),
        }
    }

    fn size(&self, name: &str) -> BackendResult<Option<u64>> {
        let (op, n) = (self.op.clone(), name.to_string());
        match self.run(async move { op.stat(&n).await }) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.place.error("stat", self.loc(name), e)),
        }
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn connections(&self) -> usize {
        self.connections
    }
}

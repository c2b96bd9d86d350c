//! Storage backends behind one narrow trait.
//!
//! A backend stores named, immutable objects ("data/ab/abcd…", "index/…", "snapshots/…").
//! **Architecture Invariant:** `write` is atomic and durable: after it returns, the object is
//! complete and survives a crash; a crash before it returns leaves either nothing or the previous
//! complete object under that name, never a partial one. Everything the engine promises about
//! crash safety rests on this and on the write order (packs, then index, then snapshot).
//!
//! Backends know nothing about encryption, packs or snapshots; the engine never does I/O on the
//! repository except through this trait, so a new backend only has to pass the conformance suite
//! in `tests/backend_conformance.rs`.

mod local;
mod s3;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use local::LocalBackend;
pub use s3::{S3Backend, S3Options};

/// What went wrong, classified so callers can react (and tell users) precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    NotFound,
    PermissionDenied,
    NoSpace,
    /// Network trouble, timeouts, throttling: retrying later may help.
    Temporary,
    /// Nothing answers where the repository is said to be (connection refused, unknown host).
    Unreachable,
    /// The storage answers but the location is wrong: a bucket that does not exist, a name the
    /// server refuses.
    Misconfigured,
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("{op} {location}: {message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub op: &'static str,
    pub location: String,
    pub message: String,
}

impl BackendError {
    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }

    pub(crate) fn from_io(op: &'static str, location: String, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => BackendErrorKind::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => BackendErrorKind::PermissionDenied,
            K::StorageFull | K::QuotaExceeded => BackendErrorKind::NoSpace,
            K::TimedOut | K::Interrupted => BackendErrorKind::Temporary,
            _ => BackendErrorKind::Other,
        };
        let message = match kind {
            BackendErrorKind::NoSpace => format!("no space left on the device ({e})"),
            BackendErrorKind::PermissionDenied => format!("permission denied ({e})"),
            _ => e.to_string(),
        };
        BackendError {
            kind,
            op,
            location,
            message,
        }
    }
}

pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// One listed object: its name relative to the repository root and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

pub trait Backend: Send + Sync + fmt::Debug {
    /// Where the repository lives, for messages (`/srv/repo`, `s3://bucket/prefix`).
    fn location(&self) -> String;
    /// Create the repository's container (directory or prefix) if needed.
    fn create(&self) -> BackendResult<()>;
    fn read(&self, name: &str) -> BackendResult<Vec<u8>>;
    fn read_range(&self, name: &str, offset: u64, len: u64) -> BackendResult<Vec<u8>>;
    /// Atomically create or replace `name` with `data`, durably.
    fn write(&self, name: &str, data: &[u8]) -> BackendResult<()>;
    /// Every object whose name starts with `dir` + "/", at any depth.
    fn list(&self, dir: &str) -> BackendResult<Vec<ObjectInfo>>;
    /// Remove `name`; removing a missing object is not an error.
    fn delete(&self, name: &str) -> BackendResult<()>;
    /// Size of `name`, or `None` when it does not exist.
    fn size(&self, name: &str) -> BackendResult<Option<u64>>;
    /// Remove what writers that were killed left behind (half-written temporary files); how
    /// many. Storage that writes objects whole has nothing to remove.
    fn remove_leftovers(&self) -> BackendResult<u64> {
        Ok(0)
    }
    /// Whether each request crosses a network (high latency, priced per request): readers then
    /// make fewer, larger requests, more of them at a time.
    fn is_remote(&self) -> bool {
        false
    }
    /// How many requests to have in flight at once.
    fn connections(&self) -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// What one process asked of storage, for `--json` summaries and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// Requests made (a listing counts one per page of 1,000 names, as S3 serves it).
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// A backend that counts the requests made through it.
#[derive(Debug)]
pub(crate) struct Metered {
    inner: Arc<dyn Backend>,
    requests: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl Metered {
    pub fn new(inner: Arc<dyn Backend>) -> Metered {
        Metered {
            inner,
            requests: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> RequestStats {
        RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
        }
    }

    fn count(&self, requests: u64) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
    }

    fn read_bytes<T: AsRef<[u8]>>(&self, r: BackendResult<T>) -> BackendResult<T> {
        if let Ok(data) = &r {
            let n = data.as_ref().len() as u64;
            self.bytes_read.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
}

impl Backend for Metered {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BackendResult<()> {
        self.count(1);
        self.inner.create()
    }
    fn read(&self, name: &str) -> BackendResult<Vec<u8>> {
        self.count(1);
        self.read_bytes(self.inner.read(name))
    }
    fn read_range(&self, name: &str, offset: u64, len: u64) -> BackendResult<Vec<u8>> {
        self.count(1);
        self.read_bytes(self.inner.read_range(name, offset, len))
    }
    fn write(&self, name: &str, data: &[u8]) -> BackendResult<()> {
        self.count(1);
        self.bytes_written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.write(name, data)
    }
    fn list(&self, dir: &str) -> BackendResult<Vec<ObjectInfo>> {
        let listed = self.inner.list(dir);
        self.count(1 + listed.as_ref().map_or(0, |l| l.len() as u64 / 1000));
        listed
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.count(1);
        self.inner.delete(name)
    }
    fn size(&self, name: &str) -> BackendResult<Option<u64>> {
        self.count(1);
        self.inner.size(name)
    }
    fn remove_leftovers(&self) -> BackendResult<u64> {
        self.inner.remove_leftovers()
    }
    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
}

/// A repository location that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadLocation(String);

/// Where a repository lives, parsed from what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket/prefix`, `file:///abs/path`, or a plain (relative or absolute) path.
    pub fn parse(s: &str) -> Result<Self, BadLocation> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BadLocation(format!(
                    "{s:?}: the S3 location needs a bucket: s3://bucket/prefix"
                )));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.split('/').any(|c| c == ".." || c == ".") {
                return Err(BadLocation(format!(
                    "{s:?}: the S3 prefix may not contain '.' or '..'"
                )));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            return Err(BadLocation("the repository location is empty".into()));
        }
        if s.contains("://") && !s.starts_with("file://") {
            return Err(BadLocation(format!(
                "{s:?}: unsupported scheme; use a path, file:///path or s3://bucket/prefix"
            )));
        }
        let p = std::path::PathBuf::from(path);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir()
                .map_err(|e| BadLocation(format!("current directory: {e}")))?
                .join(p)
        };
        Ok(Location::Local(abs))
    }

    /// The location `name` (one component) inside this one: a subdirectory, or the prefix
    /// made longer. A repository there is a repository of its own.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: match prefix.is_empty() {
                    true => name.to_string(),
                    false => format!("{prefix}/{name}"),
                },
            },
        }
    }

    /// Open the backend for this location. S3 settings come from the usual AWS environment
    /// variables and files unless `s3` overrides them.
    pub fn open(&self, s3: Option<S3Options>) -> BackendResult<Arc<dyn Backend>> {
        Ok(match self {
            Location::Local(p) => Arc::new(LocalBackend::new(p.clone())),
            Location::S3 { bucket, prefix } => Arc::new(S3Backend::new(
                bucket,
                prefix,
                s3.unwrap_or_else(S3Options::from_env),
            )?),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://b/p/q/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "".into()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("s3://b/../x").is_err());
        assert!(Location::parse("ftp://x").is_err());
        assert_eq!(
            Location::parse("file:///srv/r").unwrap(),
            Location::Local("/srv/r".into())
        );
        assert!(
            matches!(Location::parse("rel/dir").unwrap(), Location::Local(p) if p.is_absolute())
        );
    }
}

//! S3-protocol servers on 127.0.0.1: `s3s-fs` (objects as files, so tests can damage them) and
//! moto's server (a second implementation, in memory, with S3's listing and paging rules).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::{TempDir, tempdir};

use crate::{find_binary, free_port};

/// A running S3 server. Its buckets are empty when it starts.
pub struct S3Server {
    child: Child,
    /// Where s3s-fs keeps the objects; `None` for a server that keeps them in memory.
    root: Option<TempDir>,
    /// The clients' cache of the repositories on this server (`XDG_CACHE_HOME` in `env`).
    pub cache: TempDir,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Server {
    /// s3s-fs, storing objects as files under a temporary directory.
    pub fn start() -> S3Server {
        let bin = find_binary("s3s-fs").unwrap_or_else(|| {
            panic!(
                "the S3 test server `s3s-fs` is not installed: run scripts/test (it installs it), \
                 or `cargo install s3s-fs@0.14.1 --features binary --locked`"
            )
        });
        let root = tempdir().expect("temporary directory");
        let dir = root.path().to_path_buf();
        Self::spawn(Some(root), |port, access, secret| {
            let mut c = Command::new(&bin);
            c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", access, "--secret-key", secret])
                .arg(&dir);
            c
        })
    }

    /// moto's S3 server (Python), keeping objects in memory.
    pub fn moto() -> S3Server {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "moto's S3 server is not installed: run scripts/test (it installs it), \
             or `python3 -m pip install 'moto[server]==5.2.1'`"
        );
        Self::spawn(None, |port, _, _| {
            let mut c = Command::new("python3");
            c.args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]);
            c
        })
    }

    fn spawn(root: Option<TempDir>, command: impl Fn(u16, &str, &str) -> Command) -> S3Server {
        let (access_key, secret_key) = (
            "coffer-test-access".to_string(),
            "coffer-test-secret-key".to_string(),
        );
        for _ in 0..5 {
            let port = free_port();
            let mut child = command(port, &access_key, &secret_key)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the S3 test server: {e}"));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child,
                        root,
                        cache: tempdir().expect("temporary directory"),
                        endpoint: format!("http://127.0.0.1:{port}"),
                        access_key,
                        secret_key,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken in the meantime: try another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the S3 test server did not start listening on 127.0.0.1");
    }

    /// Create a bucket and return its name.
    pub fn bucket(&self, name: &str) -> String {
        match &self.root {
            Some(root) => {
                std::fs::create_dir_all(root.path().join(name)).expect("create bucket directory")
            }
            None => self.create_bucket(name),
        }
        name.to_string()
    }

    /// `PUT /<bucket>` (the in-memory server does not check signatures).
    fn create_bucket(&self, name: &str) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("connect to the S3 test server");
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send CreateBucket");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "the S3 test server did not create bucket {name}: {answer}"
        );
    }

    /// The file that holds an object, for damaging it behind the server's back (s3s-fs only).
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        let root = self
            .root
            .as_ref()
            .expect("only the s3s-fs test server keeps objects in files");
        root.path().join(bucket).join(key)
    }

    /// The AWS variables that point a client at this server, and a cache of its own.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "XDG_CACHE_HOME".into(),
                self.cache.path().display().to_string(),
            ),
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

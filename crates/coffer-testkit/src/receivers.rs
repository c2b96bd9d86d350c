//! Receivers of notifications, started by the tests that send them: an HTTP server that keeps
//! every request it gets, and a real SMTP server (aiosmtpd, from PyPI) that keeps every message.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::free_port;

/// One request an [`HttpReceiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// An HTTP server on a loopback port that answers every request 200 and keeps it.
pub struct HttpReceiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl HttpReceiver {
    /// On a free port.
    pub fn start() -> HttpReceiver {
        HttpReceiver::on(free_port())
    }

    /// On `port` (one a test kept free: a receiver that was down comes up).
    pub fn on(port: u16) -> HttpReceiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver's port");
        let got = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn
                    && let Some(r) = read_request(conn)
                {
                    kept.lock().unwrap().push(r);
                }
            }
        });
        HttpReceiver { port, got, stop }
    }

    /// Its URL with `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it got so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Read one request from `conn` and answer it 200.
fn read_request(mut conn: TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// A real SMTP server on a loopback port (aiosmtpd), keeping each message it takes as a file.
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

const SMTP_SERVER: &str = r#"
import itertools, pathlib, sys
from aiosmtpd.controller import Controller
out, count = pathlib.Path(sys.argv[2]), itertools.count()
class Keep:
    async def handle_DATA(self, server, session, envelope):
        path = out / f"{next(count):04}.eml"
        path.with_suffix(".part").write_bytes(envelope.content)
        path.with_suffix(".part").rename(path)
        return "250 OK"
Controller(Keep(), hostname="127.0.0.1", port=int(sys.argv[1])).start()
print("ready", flush=True)
sys.stdin.read()
"#;

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("a directory for the messages");
        let mut child = Command::new("python3")
            .args(["-c", SMTP_SERVER, &port.to_string()])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut ready)
            .expect("the SMTP server starts");
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP server (python3 -m pip install aiosmtpd) did not start"
        );
        SmtpServer { port, child, dir }
    }

    /// The messages it took so far, in order: each as received (headers and body).
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|f| f.extension().is_some_and(|e| e == "eml"));
        files.sort();
        files
            .iter()
            .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `coffer serve`, started as a real process: zero configuration, health, the error format,
//! refusal to start on a bad data directory or a taken port, and graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use coffer_testkit::tempdir;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// A running server, killed if a test fails before stopping it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start the server in `cwd`; returns it and the address it announced.
fn start(cwd: &Path, args: &[&str]) -> (Running, SocketAddr) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .env_remove("COFFER_LISTEN")
        .env_remove("COFFER_DATA_DIR")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Running(Some(child));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line
                .contains("listening")
                .then(|| line.split("addr=").nth(1))
                .flatten()
            {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server announces its address");
    (child, addr)
}

/// A plain HTTP/1.1 GET; returns the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
    )
}

fn stop(mut running: Running) -> std::process::ExitStatus {
    let mut child = running.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the server did not stop within 5 s of SIGTERM");
}

#[test]
fn starts_with_zero_configuration_and_answers_health() {
    let dir = tempdir().unwrap();
    let (child, addr) = start(dir.path(), &[]);
    assert_eq!(
        addr,
        "127.0.0.1:7480".parse().unwrap(),
        "the default address"
    );
    assert!(
        dir.path().join("coffer-data").is_dir(),
        "the default data directory is ./coffer-data"
    );
    let (status, body) = get(addr, "/api/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(stop(child).success(), "SIGTERM stops it cleanly");
}

#[test]
fn unknown_routes_get_the_json_error_format_and_modules_are_listed() {
    let dir = tempdir().unwrap();
    let (child, addr) = start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let (status, body) = get(addr, "/api/no-such-thing");
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("/api/no-such-thing")
    );
    let (status, body) = get(addr, "/api/modules");
    assert_eq!(
        (status, &body["backups"]),
        (200, &serde_json::Value::Bool(true))
    );
    // Health turns 503 when the data directory disappears.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let (status, body) = get(addr, "/api/health");
    assert_eq!(status, 503);
    assert_eq!(body["code"], "unavailable");
    assert!(stop(child).success());
}

#[test]
fn refuses_to_start_on_an_unusable_data_dir_or_a_taken_port() {
    let dir = tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-dir"), b"x").unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "not-a-dir",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("data directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &port])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

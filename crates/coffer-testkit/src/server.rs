//! `coffer serve` as a real process on a port of its choosing, for black-box API tests.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running server; killed when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Start `bin serve ARGS` in `cwd` with `envs` (and no inherited `COFFER_*` settings), and
    /// wait until it announces the address it listens on.
    pub fn start<S: AsRef<OsStr>>(
        bin: &str,
        cwd: &Path,
        args: &[S],
        envs: &[(&str, &str)],
    ) -> ServerProcess {
        let mut cmd = Command::new(bin);
        cmd.arg("serve").args(args).current_dir(cwd);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("COFFER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start coffer serve");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening")
                    && let Some(addr) = line.split("addr=").nth(1)
                {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut server = ServerProcess {
            child: Some(child),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => server.addr = addr,
            _ => panic!(
                "coffer serve did not announce its address; its log:\n{}",
                server.log()
            ),
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and the exit status once it stopped (at most 10 s).
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        for _ in 0..200 {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("the server did not stop within 10 s of SIGTERM");
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run `f` on a connection to the SQLite database at `db`: for tests that forge states no API
/// call can make (a damaged value, a schema from a newer version) or read what the API never
/// returns (the signing secret).
pub fn with_database<T>(db: &Path, f: impl AsyncFnOnce(&sqlx::SqlitePool) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open the database");
        let out = f(&pool).await;
        pool.close().await;
        out
    })
}

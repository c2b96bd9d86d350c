//! Test harness shared by Coffer's test suites: a real S3-protocol server started on
//! 127.0.0.1, a real Docker engine, a runner for the `coffer` binary, `coffer serve` as a
//! process, deterministic data, and tree comparison.
//!
//! A test that needs a server starts it here or fails with a message that says how to get it;
//! nothing is skipped silently.

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod docker;
mod mysql;
mod postgres;
mod receivers;
mod s3;
mod server;

pub use docker::{BUSYBOX, docker, docker_engine, docker_ok, in_volume, volume_manifest};
pub use mysql::{MY_PASSWORD, MyInstance};
pub use postgres::{PG_PASSWORD, PgInstance};
pub use receivers::{HttpReceiver, Received, SmtpServer};
pub use s3::S3Server;
pub use server::{ServerProcess, with_database};
pub use tempfile::{TempDir, tempdir};

/// The password every test repository uses.
pub const PASSWORD: &str = "correct horse battery staple";
/// Cheap key derivation for tests (the production default is much more expensive).
pub const FAST_KDF: [&str; 4] = ["--kdf-memory-kib", "8192", "--kdf-iterations", "1"];

fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A finished SQL client's answer: its stdout, trimmed, if it succeeded; else its stderr.
pub fn sql_output(out: std::process::Output) -> Result<String, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Poll `check` every 50 ms until it gives a value; after `timeout`, fail with its last
/// complaint.
pub fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("address")
        .port()
}

/// Runs the `coffer` binary against one repository.
#[derive(Clone)]
pub struct Cli {
    bin: PathBuf,
    pub repo: String,
    env: Vec<(String, String)>,
}

impl Cli {
    /// `bin` is `env!("CARGO_BIN_EXE_coffer")` of the calling test crate.
    pub fn new(bin: &str, repo: impl Into<String>) -> Cli {
        Cli {
            bin: bin.into(),
            repo: repo.into(),
            env: vec![("COFFER_PASSWORD".into(), PASSWORD.into())],
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Cli {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn without_env(mut self, key: &str) -> Cli {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn with_envs(mut self, vars: Vec<(String, String)>) -> Cli {
        for (k, v) in vars {
            self = self.with_env(&k, &v);
        }
        self
    }

    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_remove("COFFER_PASSWORD").env_remove("COFFER_REPO");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.arg("--repo").arg(&self.repo).args(args);
        c
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run coffer")
    }

    /// Run and insist on success; returns stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "coffer {:?} failed ({}):\n{}",
            args_str(args),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run with `--json`, insist on success, parse stdout.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--json")];
        all.extend(args.iter().map(|a| a.as_ref()));
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// `repo init` with cheap key derivation; extra arguments (e.g. `--no-encryption`) appended.
    pub fn init(&self, extra: &[&str]) {
        let mut args = vec!["repo", "init"];
        args.extend(FAST_KDF);
        args.extend(extra);
        self.ok(&args);
    }

    /// Back up paths; returns the snapshot id.
    pub fn backup(&self, paths: &[&Path]) -> String {
        let mut args: Vec<&OsStr> = vec![OsStr::new("backup")];
        args.extend(paths.iter().map(|p| p.as_os_str()));
        self.json(&args)["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_string()
    }
}

fn args_str<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

/// Deterministic pseudo-random bytes.
pub fn seeded(len: usize, seed: &str) -> Vec<u8> {
    let mut v = vec![0u8; len];
    blake3::Hasher::new_derive_key(seed)
        .finalize_xof()
        .fill(&mut v);
    v
}

/// What a test compares about one filesystem entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: Option<String>,
    pub target: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = xattr::list(p)
        .map(|names| {
            names
                .filter_map(|n| Some((n.as_bytes().to_vec(), xattr::get(p, &n).ok()??)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Entries by path relative to the root.
pub type Entries = BTreeMap<Vec<u8>, EntryInfo>;
/// Groups of paths that are hard links of each other.
pub type LinkGroups = Vec<Vec<Vec<u8>>>;

/// Everything below `root` (not `root` itself), and its hard link groups.
pub fn manifest(root: &Path) -> (Entries, LinkGroups) {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<Vec<u8>, EntryInfo>,
        inodes: &mut BTreeMap<(u64, u64), Vec<Vec<u8>>>,
    ) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            let content = ft.is_file().then(|| {
                let mut h = blake3::Hasher::new();
                h.update_reader(std::fs::File::open(&p).expect("open"))
                    .expect("read");
                h.finalize().to_hex().to_string()
            });
            let target = ft.is_symlink().then(|| {
                std::fs::read_link(&p)
                    .expect("readlink")
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            });
            if ft.is_file() && m.nlink() > 1 {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            out.insert(
                rel,
                EntryInfo {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    size: if ft.is_file() { m.size() } else { 0 },
                    content,
                    target,
                    xattrs: xattrs(&p),
                },
            );
            if ft.is_dir() {
                walk(root, &p, out, inodes);
            }
        }
    }
    walk(root, root, &mut entries, &mut inodes);
    let links = inodes.into_values().filter(|v| v.len() > 1).collect();
    (entries, links)
}

/// Assert that two trees hold the same entries with the same content and metadata.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (a, la) = manifest(expected);
    let (b, lb) = manifest(actual);
    for (path, ea) in &a {
        let name = String::from_utf8_lossy(path);
        let eb = b
            .get(path)
            .unwrap_or_else(|| panic!("{name:?} is missing from {}", actual.display()));
        assert_eq!(ea, eb, "{name:?} differs");
    }
    let extra: Vec<_> = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected entries in {}: {extra:?}",
        actual.display()
    );
    assert_eq!(la, lb, "hard link groups differ");
}

/// A small tmpfs, unmounted when dropped.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn tmpfs(path: &Path, size: &str) -> Mount {
        assert!(
            is_root(),
            "this test mounts a small tmpfs to provoke a full or read-only disk and must run as root"
        );
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", path.display());
        Mount(path.to_path_buf())
    }

    pub fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

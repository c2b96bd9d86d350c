//! Side-by-side benchmark of Coffer against restic, borg and rustic, run by `cargo bench`.
//!
//! Generates a deterministic dataset (many small text files, medium mixed files, incompressible
//! and compressible large files; about 1 GiB by default), then runs for every tool, in one run:
//! initial backup, no-change backup, backup after ~5 % changes, full restore, restore again
//! onto the wiped target (removed and synced first, as users are told to do before a restore),
//! full verify (`check --read-data`), forget + prune. It measures wall time and peak memory (GNU time) and
//! repository size, and writes a Markdown report to `bench/results/latest.md`.
//!
//! Environment: `COFFER_BENCH_MB` (dataset size, default 1024), `COFFER_BENCH_TOOLS`
//! (comma-separated subset of coffer,restic,borg,rustic), `COFFER_BENCH_DIR` (work directory,
//! default `bench/work`), `COFFER_BENCH_DATASET=small` (only small text files: 20–300 words
//! each, about 1,500 bytes), `COFFER_BENCH_S3=1` (the repositories on the tests' S3 server,
//! `s3s-fs` on 127.0.0.1, for Coffer, restic and rustic; each keeps its cache in the work
//! directory).
//! The tools must be installed: `apt-get install restic borgbackup` and `cargo install
//! rustic-rs` (and `s3s-fs` for the S3 mode: `scripts/test` installs it).
//! Coffer's rows also give the requests it made to storage (its `--json` summary).

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PASSWORD: &str = "benchmark password";

/// Deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn vocabulary() -> Vec<String> {
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zen", "pra", "qui", "dor", "mel", "tan",
        "ix", "ob",
    ];
    let mut rng = Rng(7);
    (0..3000)
        .map(|_| {
            (0..1 + rng.below(3))
                .map(|_| syllables[rng.below(16) as usize])
                .collect::<String>()
        })
        .collect()
}

fn text(rng: &mut Rng, words: &[String], n: usize) -> Vec<u8> {
    let mut s = String::with_capacity(n + 64);
    while s.len() < n {
        s.push_str(
            &words[(rng.below(words.len() as u64) as usize * rng.below(4) as usize / 3)
                % words.len()],
        );
        s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
    }
    s.truncate(n);
    s.into_bytes()
}

fn log_lines(rng: &mut Rng, n: usize) -> Vec<u8> {
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let mut s = String::with_capacity(n + 128);
    let mut t = 1_700_000_000u64;
    while s.len() < n {
        t += rng.below(5);
        let _ = writeln!(
            s,
            "{t} {} request id={:08x} path=/api/v1/items/{} status={} duration_ms={}",
            levels[rng.below(4) as usize],
            rng.next() as u32,
            rng.below(10_000),
            [200, 200, 200, 404, 500][rng.below(5) as usize],
            rng.below(900)
        );
    }
    s.truncate(n);
    s.into_bytes()
}

/// Write the dataset: returns the list of files.
fn generate(root: &Path, total_mb: u64) -> Vec<PathBuf> {
    let words = vocabulary();
    let mut rng = Rng(42);
    let mib = 1024 * 1024;
    let budget = total_mb * mib;
    let mut files = vec![];
    let mut write = |path: PathBuf, data: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        files.push(path);
    };
    // 15 %: many small text files in a tree.
    let mut used = 0;
    let mut i = 0;
    while used < budget * 15 / 100 {
        let n = 512 + rng.below(16 * 1024) as usize;
        write(
            root.join(format!("small/d{:02}/e{:02}/f{i:05}.txt", i % 37, i % 11)),
            &text(&mut rng, &words, n),
        );
        used += n as u64;
        i += 1;
    }
    // 35 %: medium files, half text, half binary-like (compressible tables).
    used = 0;
    i = 0;
    while used < budget * 35 / 100 {
        let n = mib as usize + rng.below(3 * mib) as usize;
        let data = if i % 2 == 0 {
            text(&mut rng, &words, n)
        } else {
            let mut v = rng.bytes(n);
            for (k, b) in v.iter_mut().enumerate() {
                if k % 8 < 5 {
                    *b = (k / 4096) as u8;
                }
            }
            v
        };
        write(root.join(format!("medium/m{i:04}.dat")), &data);
        used += n as u64;
        i += 1;
    }
    // 30 %: incompressible (media, archives, encrypted files).
    for k in 0..6 {
        write(
            root.join(format!("media/v{k}.bin")),
            &rng.bytes((budget * 30 / 100 / 6) as usize),
        );
    }
    // 20 %: compressible logs.
    for k in 0..4 {
        write(
            root.join(format!("logs/app{k}.log")),
            &log_lines(&mut rng, (budget * 20 / 100 / 4) as usize),
        );
    }
    files
}

/// Change about 5 % of the data: rewrite some small files, insert bytes in some medium files,
/// append to a log, add a few files.
fn modify(root: &Path, files: &[PathBuf]) {
    let words = vocabulary();
    let mut rng = Rng(99);
    let mut changed = 0u64;
    for (i, f) in files.iter().enumerate() {
        if i % 20 != 3 {
            continue;
        }
        let mut data = std::fs::read(f).unwrap();
        if data.len() < 64 * 1024 {
            data = text(&mut rng, &words, data.len());
            changed += data.len() as u64;
        } else {
            let at = rng.below(data.len() as u64) as usize;
            let insert = text(&mut rng, &words, 64 * 1024);
            changed += insert.len() as u64;
            data.splice(at..at, insert);
        }
        std::fs::write(f, data).unwrap();
    }
    // The small-files dataset has no log to grow, and no small/ directory yet.
    let log = root.join("logs/app0.log");
    if let Ok(mut data) = std::fs::read(&log) {
        let extra = log_lines(&mut rng, data.len() / 20);
        changed += extra.len() as u64;
        data.extend_from_slice(&extra);
        std::fs::write(&log, data).unwrap();
    }
    std::fs::create_dir_all(root.join("small")).unwrap();
    for k in 0..20 {
        let d = text(&mut rng, &words, 200 * 1024);
        changed += d.len() as u64;
        std::fs::write(root.join(format!("small/new{k}.txt")), d).unwrap();
    }
    eprintln!("  changed {:.1} MiB", changed as f64 / 1048576.0);
}

/// The small-files dataset: `total_mb` of files of 20–300 words, 1,000 per directory.
fn generate_small(root: &Path, total_mb: u64) -> Vec<PathBuf> {
    let words = vocabulary();
    let mut rng = Rng(4242);
    let mut files = vec![];
    let (mut used, budget) = (0u64, total_mb * 1024 * 1024);
    while used < budget {
        let i = files.len();
        let n = 20 + rng.below(281) as usize;
        let mut s = String::new();
        for k in 0..n {
            if k > 0 {
                s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
            }
            s.push_str(&words[rng.below(words.len() as u64) as usize]);
        }
        let path = root.join(format!("t{:03}/f{i:07}.txt", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }
        std::fs::write(&path, &s).unwrap();
        used += s.len() as u64;
        files.push(path);
    }
    files
}

/// The S3 server the tests use, started for the S3 mode.
struct S3 {
    child: std::process::Child,
    root: PathBuf,
    endpoint: String,
}

impl S3 {
    fn start(work: &Path, bin: String) -> S3 {
        let root = work.join("s3");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bench")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "bench", "--secret-key", "bench-secret-key"])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        S3 {
            child,
            root,
            endpoint,
        }
    }

    /// rustic takes S3 settings from a profile only: write one (the benchmark's own throwaway
    /// credentials) under a configuration directory of its own, and return that directory.
    fn rustic_profile(&self, work: &Path, name: &str) -> String {
        let dir = work.join("rustic-config");
        std::fs::create_dir_all(dir.join("rustic")).unwrap();
        let profile = format!(
            "[repository.options]\nendpoint = \"{}\"\nbucket = \"bench\"\nroot = \"/{name}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"bench\"\n\
             secret_access_key = \"bench-secret-key\"\n",
            self.endpoint
        );
        std::fs::write(dir.join("rustic/bench-s3.toml"), profile).unwrap();
        dir.display().to_string()
    }

    fn env(&self, work: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "bench".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench-secret-key".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("XDG_CACHE_HOME", work.join("cache").display().to_string()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Default)]
struct Measure {
    secs: f64,
    rss_mib: f64,
    repo_mib: f64,
    /// Requests to storage, when the tool reports them (Coffer's `--json` summary).
    requests: Option<u64>,
}

fn du(path: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let m = std::fs::symlink_metadata(p).unwrap();
        if m.is_dir() {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| walk(&e.unwrap().path()))
                .sum()
        } else {
            m.len()
        }
    }
    if path.exists() { walk(path) } else { 0 }
}

struct Tool {
    name: &'static str,
    bin: String,
    /// What the tool is given as its repository.
    url: String,
    /// Where the repository's bytes are (for its size).
    repo: PathBuf,
    env: Vec<(&'static str, String)>,
    /// On s3s-fs, restic's `check` and `prune` call packs under nested prefixes missing (the
    /// server lists them differently from S3) and fail: their time is still measured (rustic
    /// alike, should it meet the same listings).
    listing_may_fail: bool,
}

impl Tool {
    fn run(&self, args: &[&str], cwd: Option<&Path>) -> Measure {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%e %M"]).arg(&self.bin).args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin));
        let err = String::from_utf8_lossy(&out.stderr);
        let lenient =
            self.listing_may_fail && (args.contains(&"check") || args.contains(&"--prune"));
        assert!(
            out.status.success() || lenient,
            "{} {args:?} failed:\n{err}",
            self.name
        );
        if !out.status.success() {
            eprintln!("  {} {args:?} failed (measured anyway)", self.name);
        }
        let last = err.trim().lines().last().unwrap_or_default();
        let mut parts = last.split_whitespace();
        let secs: f64 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        let rss_kib: f64 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        let requests = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["storage"]["requests"].as_u64());
        Measure {
            secs,
            rss_mib: rss_kib / 1024.0,
            repo_mib: du(&self.repo) as f64 / 1048576.0,
            requests,
        }
    }
}

const PHASES: [&str; 7] = [
    "initial backup",
    "no-change backup",
    "backup after ~5% changes",
    "full restore",
    "restore onto the wiped target",
    "full verify",
    "forget + prune",
];

/// Remove what the last restore wrote and write it to disk, leaving `target` empty: the
/// filesystem then holds many freshly freed inodes, as after `rm -rf` before a restore.
fn wipe(target: &Path) {
    std::fs::remove_dir_all(target).unwrap();
    assert!(Command::new("sync").status().unwrap().success());
    std::fs::create_dir_all(target).unwrap();
}

fn bench_tool(tool: &Tool, data: &Path, work: &Path, files: &[PathBuf]) -> Vec<Measure> {
    let repo = tool.url.clone();
    let d = data.to_str().unwrap();
    let target = work.join(format!("restore-{}", tool.name));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target).unwrap();
    let t = target.to_str().unwrap();
    let _ = std::fs::remove_dir_all(&tool.repo);
    let mut out = vec![];
    // Phase args per tool: (init, backup, restore, verify, forget+prune).
    match tool.name {
        "coffer" => {
            let r = ["--json", "--repo", &repo];
            let run = |args: &[&str]| tool.run(&[&r[..], args].concat(), None);
            run(&["repo", "init"]);
            out.push(run(&["backup", d]));
            out.push(run(&["backup", d]));
            modify(data, files);
            out.push(run(&["backup", d]));
            out.push(run(&["restore", "latest", "--target", t]));
            wipe(&target);
            out.push(run(&["restore", "latest", "--target", t]));
            out.push(run(&["verify"]));
            out.push(run(&["forget", "--keep-last", "1", "--prune"]));
        }
        "restic" | "rustic" => {
            tool.run(&["-r", &repo, "init"], None);
            out.push(tool.run(&["-r", &repo, "backup", d], None));
            out.push(tool.run(&["-r", &repo, "backup", d], None));
            modify(data, files);
            out.push(tool.run(&["-r", &repo, "backup", d], None));
            let restore: &[&str] = if tool.name == "restic" {
                &["-r", &repo, "restore", "latest", "--target", t]
            } else {
                &["-r", &repo, "restore", "latest", t]
            };
            out.push(tool.run(restore, None));
            wipe(&target);
            out.push(tool.run(restore, None));
            out.push(tool.run(&["-r", &repo, "check", "--read-data"], None));
            out.push(tool.run(
                &["-r", &repo, "forget", "--keep-last", "1", "--prune"],
                None,
            ));
        }
        "borg" => {
            tool.run(&["init", "--encryption=repokey-blake2", &repo], None);
            for (i, _) in [0, 1].iter().enumerate() {
                out.push(tool.run(
                    &[
                        "create",
                        "--compression",
                        "zstd,3",
                        &format!("{repo}::a{i}"),
                        d,
                    ],
                    None,
                ));
            }
            modify(data, files);
            out.push(tool.run(
                &[
                    "create",
                    "--compression",
                    "zstd,3",
                    &format!("{repo}::a2"),
                    d,
                ],
                None,
            ));
            let archive = format!("{repo}::a2");
            let extract = ["extract", archive.as_str()];
            out.push(tool.run(&extract, Some(&target)));
            wipe(&target);
            out.push(tool.run(&extract, Some(&target)));
            out.push(tool.run(&["check", "--verify-data", &repo], None));
            let p = tool.run(&["prune", "--keep-last", "1", &repo], None);
            let c = tool.run(&["compact", &repo], None);
            out.push(Measure {
                secs: p.secs + c.secs,
                rss_mib: p.rss_mib.max(c.rss_mib),
                repo_mib: c.repo_mib,
                requests: None,
            });
        }
        other => panic!("unknown tool {other}"),
    }
    let _ = std::fs::remove_dir_all(&target);
    out
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let mb: u64 = std::env::var("COFFER_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let root =
        std::fs::canonicalize(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    let work = std::env::var_os("COFFER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("bench/work"));
    let tools: Vec<String> = std::env::var("COFFER_BENCH_TOOLS")
        .unwrap_or_else(|_| "coffer,restic,borg,rustic".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let home = std::env::var("HOME").unwrap_or_default();
    let find = |name: &str| -> String {
        for dir in ["/usr/bin", "/usr/local/bin", &format!("{home}/.cargo/bin")] {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p.display().to_string();
            }
        }
        panic!(
            "{name} is not installed: apt-get install restic borgbackup; cargo install rustic-rs"
        );
    };

    let small = std::env::var("COFFER_BENCH_DATASET").is_ok_and(|v| v == "small");
    let dataset = |root: &Path| {
        if small {
            generate_small(root, mb)
        } else {
            generate(root, mb)
        }
    };
    // `COFFER_BENCH_GENERATE=DIR`: only write the dataset (and its ~5 % change in DIR.changed),
    // for profiling one tool by hand.
    if let Some(dir) = std::env::var_os("COFFER_BENCH_GENERATE").map(PathBuf::from) {
        let files = dataset(&dir);
        let changed = dir.with_extension("changed");
        let _ = std::fs::remove_dir_all(&changed);
        let status = Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&changed)
            .status()
            .unwrap();
        assert!(status.success());
        let files: Vec<PathBuf> = files
            .iter()
            .map(|f| changed.join(f.strip_prefix(&dir).unwrap()))
            .collect();
        modify(&changed, &files);
        return;
    }
    let s3 = std::env::var("COFFER_BENCH_S3")
        .is_ok_and(|v| v == "1")
        .then(|| S3::start(&work, find("s3s-fs")));
    let _ = std::fs::remove_dir_all(work.join("cache"));
    let data = work.join("data");
    let mut results: Vec<(String, Vec<Measure>)> = vec![];
    let started = Instant::now();
    for name in &tools {
        // Every tool starts from the same original dataset, changed the same way before its
        // third backup.
        let _ = std::fs::remove_dir_all(&data);
        let files = dataset(&data);
        // The data a backup reads has long been on disk: no tool pays for writing out the
        // freshly generated dataset (an fsync of the repository would wait for it).
        assert!(Command::new("sync").status().unwrap().success());
        let (bin, env): (String, Vec<(&'static str, String)>) = match name.as_str() {
            "coffer" => (
                env!("CARGO_BIN_EXE_coffer").to_string(),
                vec![("COFFER_PASSWORD", PASSWORD.into())],
            ),
            "restic" => (find("restic"), vec![("RESTIC_PASSWORD", PASSWORD.into())]),
            "rustic" => (find("rustic"), vec![("RUSTIC_PASSWORD", PASSWORD.into())]),
            "borg" => (
                find("borg"),
                vec![
                    ("BORG_PASSPHRASE", PASSWORD.into()),
                    (
                        "BORG_BASE_DIR",
                        work.join("borg-home").display().to_string(),
                    ),
                    ("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes".into()),
                    ("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes".into()),
                ],
            ),
            other => panic!("unknown tool {other}"),
        };
        let name_static: &'static str = match name.as_str() {
            "coffer" => "coffer",
            "restic" => "restic",
            "rustic" => "rustic",
            _ => "borg",
        };
        let (url, repo, env) = match &s3 {
            None => {
                let repo = work.join(format!("repo-{name}"));
                (repo.display().to_string(), repo, env)
            }
            Some(s3) => {
                let mut env = [env, s3.env(&work)].concat();
                let url = match name.as_str() {
                    "coffer" => format!("s3://bench/{name}"),
                    "restic" => format!("s3:{}/bench/{name}", s3.endpoint),
                    "rustic" => {
                        env.push(("XDG_CONFIG_HOME", s3.rustic_profile(&work, name)));
                        env.push(("RUSTIC_USE_PROFILE", "bench-s3".into()));
                        "opendal:s3".into()
                    }
                    other => panic!("{other} is not benchmarked on S3 here"),
                };
                (url, s3.root.join("bench").join(name), env)
            }
        };
        let tool = Tool {
            name: name_static,
            bin,
            url,
            repo,
            env,
            listing_may_fail: s3.is_some() && name != "coffer",
        };
        eprintln!("benchmarking {name}…");
        results.push((name.clone(), bench_tool(&tool, &data, &work, &files)));
        let _ = std::fs::remove_dir_all(&tool.repo);
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "Dataset: {mb} MiB{} generated by bench/compare.rs; repositories {}; machine: {} cores.\n",
        if small { " of small files" } else { "" },
        if s3.is_some() {
            "on the S3 server s3s-fs (127.0.0.1)"
        } else {
            "on the local disk"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(md, "| phase | {} |", tools.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(tools.len()));
    for (i, phase) in PHASES.iter().enumerate() {
        let cells: Vec<String> = results
            .iter()
            .map(|(_, m)| {
                format!(
                    "{:.2} s, {:.0} MiB RSS, repo {:.0} MiB{}",
                    m[i].secs,
                    m[i].rss_mib,
                    m[i].repo_mib,
                    m[i].requests
                        .map(|n| format!(", {n} requests"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(md, "| {phase} | {} |", cells.join(" | "));
    }
    if let Some((_, c)) = results.iter().find(|(n, _)| n == "coffer") {
        let _ = writeln!(
            md,
            "\nRatios (other tool ÷ coffer; above 1 means Coffer is faster or smaller):\n"
        );
        let _ = writeln!(
            md,
            "| phase | {} |",
            results
                .iter()
                .filter(|(n, _)| n != "coffer")
                .map(|(n, _)| format!("{n} time | {n} RSS"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let others = results.iter().filter(|(n, _)| n != "coffer").count();
        let _ = writeln!(md, "|---|{}", "---|---|".repeat(others));
        for (i, phase) in PHASES.iter().enumerate() {
            let cells: Vec<String> = results
                .iter()
                .filter(|(n, _)| n != "coffer")
                .map(|(_, m)| {
                    format!(
                        "{:.1}× | {:.1}×",
                        m[i].secs / c[i].secs,
                        m[i].rss_mib / c[i].rss_mib
                    )
                })
                .collect();
            let _ = writeln!(md, "| {phase} | {} |", cells.join(" | "));
        }
        let growth = |m: &[Measure]| m[2].repo_mib - m[1].repo_mib;
        let _ = writeln!(
            md,
            "\nRepository growth from the ~5% change: {}",
            results
                .iter()
                .map(|(n, m)| format!("{n} {:.1} MiB", growth(m)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\nTotal benchmark time: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    let out = root.join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("latest.md"), &md).unwrap();
    println!("{md}");
    let _ = std::fs::remove_dir_all(&data);
}

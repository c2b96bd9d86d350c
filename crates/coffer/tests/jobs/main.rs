//! Backup jobs through the API, black-box, against a real server process: one test binary,
//! one module per topic (runs, restores, volumes and storage, databases), sharing the helpers
//! below.

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use coffer_client::{AuditFilter, Client, ClientError, Credentials, RecordFilter, StatusCode};
use coffer_testkit::{
    ServerProcess, TempDir, assert_same_tree, seeded, tempdir, wait_until, with_database,
};
use coffer_types::{Credential, JobInput, JobUpdate, Record, RecordStatus, Repository};
use serde_json::json;
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");
const PASSWORD: &str = "the admin's long password";
const LONG: Duration = Duration::from_secs(120);

struct Env {
    dir: TempDir,
    server: ServerProcess,
    api: Client,
    token: String,
}

fn start_in(dir: &TempDir) -> ServerProcess {
    start_in_with(dir, &[])
}

/// A server in `dir` with the settings `envs` beside the first admin's password.
fn start_in_with(dir: &TempDir, envs: &[(&str, &str)]) -> ServerProcess {
    let mut all = vec![("COFFER_ADMIN_PASSWORD", PASSWORD)];
    all.extend_from_slice(envs);
    ServerProcess::start(
        BIN,
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        &all,
    )
}

fn token(server: &ServerProcess) -> String {
    Client::new(server.url())
        .login("admin", PASSWORD)
        .unwrap()
        .token
}

fn login(server: &ServerProcess) -> Client {
    Client::new(server.url()).with(Credentials::Bearer(token(server)))
}

fn start() -> Env {
    start_with(tempdir().unwrap(), &[])
}

/// A server in `dir` with the settings `envs`, and its admin logged in.
fn start_with(dir: TempDir, envs: &[(&str, &str)]) -> Env {
    let server = start_in_with(&dir, envs);
    let token = token(&server);
    let api = Client::new(server.url()).with(Credentials::Bearer(token.clone()));
    Env {
        dir,
        server,
        api,
        token,
    }
}

/// A small tree of files under `root`.
fn source_tree(root: &Path, mib: usize) -> std::path::PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    std::fs::write(src.join("sub/big.bin"), seeded(mib * 1024 * 1024, "big")).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    src
}

fn path_job(name: &str, path: &Path, extra: serde_json::Value) -> JobInput {
    let mut v = json!({ "name": name, "sources": [{ "type": "path", "path": path }] });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

fn err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String) {
    match r {
        Err(ClientError::Api { status, body, .. }) => (status, body.error),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A restore-upload of `fields` as a browser sends a form (`multipart/form-data`).
fn upload_form(api: &Client, job: &str, fields: &[(&str, &[u8])]) -> coffer_client::RawResponse {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XBOUNDARYX--\r\n");
    api.raw_body(
        "POST",
        &format!("/api/backup-jobs/{job}/restore-upload"),
        "multipart/form-data; boundary=XBOUNDARYX",
        body,
    )
    .unwrap()
}

/// The status and code of the error a call failed with.
fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String) {
    match r {
        Err(ClientError::Api { status, body, .. }) => (status, body.code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn run_to_end(api: &Client, job: &str) -> Record {
    let started = api.run_job(job).unwrap();
    assert_eq!(started.status, RecordStatus::Running);
    api.wait_record(job, &started.id, LONG).unwrap()
}

/// Flip one byte inside each data pack of the repository at `dest` (those over 1 MiB: the packs
/// of trees are small), as damage after the backup would.
fn flip_a_byte_in_data_packs(dest: &str) {
    for (pack, _) in packs(dest).into_iter().filter(|(_, size)| *size > 1 << 20) {
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[4096] ^= 1;
        std::fs::write(&pack, bytes).unwrap();
    }
}

/// Drill job `job`'s newest backup and wait until the drill ends.
fn drill_to_end(api: &Client, job: &str) -> coffer_types::Drill {
    let started = api.drill(job).unwrap();
    assert_eq!(started.status, RecordStatus::Running);
    api.wait_drill(job, &started.id, LONG).unwrap()
}

/// A drill's checks: each one's name, outcome and detail.
fn checks(drill: &coffer_types::Drill) -> Vec<(String, bool, String)> {
    drill
        .checks
        .iter()
        .map(|c| (c.check.clone(), c.ok, c.detail.clone()))
        .collect()
}

fn restore(
    api: &Client,
    job: &str,
    rid: &str,
    req: serde_json::Value,
) -> coffer_types::RestoreTask {
    let req: coffer_types::RestoreRequest = serde_json::from_value(req).unwrap();
    let task = api.restore_record(job, rid, &req).unwrap();
    assert_eq!(task.status, RecordStatus::Running);
    api.wait_restore(job, &task.id, LONG).unwrap()
}

/// `prefix` made unique among concurrent tests (process id and time), as `prefix_pid_nanos`.
fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A SQLite database `app.db` in WAL mode under `dir`, after `statements`.
fn sqlite_db(dir: &Path, statements: &[&str]) -> std::path::PathBuf {
    let db = dir.join("app.db");
    std::fs::write(&db, b"").unwrap();
    with_database(&db, async |pool| {
        for sql in ["PRAGMA journal_mode=WAL"].iter().chain(statements) {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(pool)
                .await
                .unwrap();
        }
    });
    db
}

/// `cp -a FROM TO`: a copy that keeps modes, owners, times and links.
fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Pack files of a repository, with their sizes.
fn packs(dest: &str) -> std::collections::BTreeMap<std::path::PathBuf, u64> {
    let mut out = std::collections::BTreeMap::new();
    for d in std::fs::read_dir(Path::new(dest).join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            out.insert(f.path(), f.metadata().unwrap().len());
        }
    }
    out
}

/// Whether the server's scratch directory (`data/tmp` of its data directory) holds nothing.
fn scratch_is_empty(dir: &Path) -> bool {
    !dir.join("data/tmp")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
}

mod databases;
mod drills;
mod failures;
mod notifications;
mod pitr;
mod restores;
mod runs;
mod system;
mod trust;
mod views;
mod volumes;

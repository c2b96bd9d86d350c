//! Backup jobs through the API, black-box: create and validate, run, records, verify,
//! download (compared byte for byte with the source), delete, failing sources, a server
//! killed during a run, and a scheduled run missed while the server was down.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use coffer_client::{AuditFilter, Client, ClientError, Credentials, RecordFilter, StatusCode};
use coffer_testkit::{
    ServerProcess, TempDir, assert_same_tree, seeded, tempdir, wait_until, with_database,
};
use coffer_types::{JobInput, JobUpdate, Record, RecordStatus};
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
    ServerProcess::start(
        BIN,
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        &[("COFFER_ADMIN_PASSWORD", PASSWORD)],
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
    let dir = tempdir().unwrap();
    let server = start_in(&dir);
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

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn run_to_end(api: &Client, job: &str) -> Record {
    let started = api.run_job(job).unwrap();
    assert_eq!(started.status, RecordStatus::Running);
    api.wait_record(job, &started.id, LONG).unwrap()
}

#[test]
fn a_path_job_runs_verifies_downloads_and_restores_byte_for_byte() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 48);
    let job = api
        .create_job(&path_job(
            "files",
            &src,
            json!({"schedule": "0 3 * * *", "timezone": "Europe/Berlin", "retention_count": 3}),
        ))
        .unwrap();
    assert!(job.enabled && job.encrypted);
    assert!(job.next_run.is_some_and(|t| t > Utc::now()), "{job:?}");
    let data = std::fs::canonicalize(env.dir.path().join("data")).unwrap();
    assert!(
        job.dest_path
            .as_deref()
            .unwrap()
            .starts_with(data.to_str().unwrap()),
        "{job:?}"
    );

    // A run is a record; a second run while it runs is refused.
    let first = api.run_job(&job.id).unwrap();
    assert_eq!(err(api.run_job(&job.id)).0, StatusCode::CONFLICT);
    let record = api.wait_record(&job.id, &first.id, LONG).unwrap();
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    assert_eq!(record.phase, "complete");
    let checksum = record.checksum.clone().unwrap();
    assert_eq!(checksum.len(), 64);
    assert!(record.size_bytes.unwrap() > 48 * 1024 * 1024);
    assert!(record.stored_bytes.unwrap() > 0 && record.duration_ms.is_some());
    assert!(
        record
            .file_path
            .as_deref()
            .unwrap()
            .contains(job.dest_path.as_deref().unwrap())
    );
    let job = api.job(&job.id).unwrap();
    assert_eq!(job.last_status, Some(RecordStatus::Success));
    assert_eq!(job.last_run, Some(record.started_at));

    // Verify re-reads it; download streams the archive whose SHA-256 is the checksum.
    let v = api.verify_record(&job.id, &record.id).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checksum.as_deref(), Some(checksum.as_str()));
    let (headers, archive) = api.download_record(&job.id, &record.id).unwrap();
    assert_eq!(sha256(&archive), checksum);
    assert_eq!(headers["x-checksum-sha256"], checksum.as_str());
    assert_eq!(archive.len() as u64, record.size_bytes.unwrap());
    // Ranges: the middle, the end, and one that lies outside.
    let url = format!("/api/backup-jobs/{}/records/{}/download", job.id, record.id);
    let ranged = |range: &str| {
        let http = reqwest::blocking::Client::new();
        let (token, base) = (env.token.clone(), env.server.url());
        let r = http
            .get(format!("{base}{url}"))
            .bearer_auth(token)
            .header("range", range)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let content_range = r
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string());
        (status, content_range, r.bytes().unwrap().to_vec())
    };
    let size = archive.len();
    let (status, cr, body) = ranged("bytes=1000-1999");
    assert_eq!(
        (status, cr.as_deref()),
        (206, Some(format!("bytes 1000-1999/{size}").as_str()))
    );
    assert_eq!(body, archive[1000..2000]);
    let (status, _, body) = ranged("bytes=-512");
    assert_eq!((status, body.as_slice()), (206, &archive[size - 512..]));
    let (status, _, body) = ranged(&format!("bytes={}-", size - 10));
    assert_eq!((status, body.as_slice()), (206, &archive[size - 10..]));
    assert_eq!(ranged(&format!("bytes={size}-")).0, 416);
    assert_eq!(headers["accept-ranges"], "bytes");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=") && disposition.ends_with(".tar\""),
        "{disposition}"
    );

    // The archive holds the tree as it was: delete the source, extract, compare.
    let out = env.dir.path().join("extracted");
    std::fs::create_dir_all(&out).unwrap();
    let tar = env.dir.path().join("download.tar");
    std::fs::write(&tar, &archive).unwrap();
    let status = std::process::Command::new("tar")
        .args(["-xpf", tar.to_str().unwrap(), "-C", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let copy = env.dir.path().join("original");
    std::fs::rename(&src, &copy).unwrap();
    assert_same_tree(&copy, &out.join(src.strip_prefix("/").unwrap()));
    std::fs::rename(&copy, &src).unwrap();

    // Records: newest first, filtered.
    let second = run_to_end(api, &job.id);
    let all = api.records(&job.id, &RecordFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [second.id.as_str(), record.id.as_str()]
    );
    let f = |status, limit| RecordFilter {
        status,
        limit,
        ..RecordFilter::default()
    };
    assert_eq!(
        api.records(&job.id, &f(Some(RecordStatus::Success), Some(1)))
            .unwrap()
            .len(),
        1
    );
    assert!(
        api.records(&job.id, &f(Some(RecordStatus::Failed), None))
            .unwrap()
            .is_empty()
    );
    let later = RecordFilter {
        since: Some(Utc::now() + chrono::Duration::hours(1)),
        ..RecordFilter::default()
    };
    assert!(api.records(&job.id, &later).unwrap().is_empty());
    assert_eq!(
        api.raw(
            "GET",
            &format!("/api/backup-jobs/{}/records?limit=0", job.id),
            None
        )
        .unwrap()
        .status,
        400
    );
    assert_eq!(
        api.raw(
            "GET",
            &format!("/api/backup-jobs/{}/records?status=done", job.id),
            None
        )
        .unwrap()
        .status,
        400
    );

    // Deleting a record removes its snapshot from the repository; the other stays sound.
    api.delete_record(&job.id, &record.id).unwrap();
    assert_eq!(
        err(api.record(&job.id, &record.id)).0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        repo_snapshots(api, job.dest_path.as_deref().unwrap()),
        BTreeSet::from([second.snapshot_id.clone().unwrap()])
    );
    assert!(api.verify_record(&job.id, &second.id).unwrap().ok);

    // Runs and downloads are audited.
    let audit = api.audit(&AuditFilter::default()).unwrap();
    for action in [
        "POST /api/backup-jobs/{id}/run",
        "GET /api/backup-jobs/{id}/records/{rid}/download",
        "DELETE /api/backup-jobs/{id}/records/{rid}",
    ] {
        assert!(
            audit.iter().any(|e| e.action == action && e.status < 300),
            "{action} audited"
        );
    }
    assert!(env.server.stop().success());
}

#[test]
fn job_input_is_validated_field_by_field() {
    let env = start();
    let src = source_tree(env.dir.path(), 0);
    for (extra, field) in [
        (json!({"schedule": "61 * * * *"}), "schedule"),
        (json!({"schedule": "every day"}), "schedule"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"retention_days": 0}), "retention_days"),
        (json!({"retention_days": 400}), "retention_days"),
        (json!({"retention_count": 0}), "retention_count"),
        (json!({"dest_path": "../escape"}), "dest_path"),
        (json!({"dest_path": "/etc/coffer"}), "dest_path"),
        (json!({"node_id": "elsewhere"}), "node_id"),
        (json!({"volumes": ["bad name!"]}), "volumes"),
        (
            json!({"sources": [{"type": "path", "path": "/srv", "exclude": ["*.tmp"]}]}),
            "sources",
        ),
    ] {
        let (status, msg) = err(env.api.create_job(&path_job("j", &src, extra.clone())));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}");
        assert!(msg.starts_with(field), "{extra}: {msg}");
    }
    let (status, msg) = err(env
        .api
        .create_job(&serde_json::from_value(json!({"name": "none"})).unwrap()));
    assert_eq!(
        (status, msg.starts_with("sources")),
        (StatusCode::BAD_REQUEST, true),
        "{msg}"
    );
    let r = env
        .api
        .raw(
            "POST",
            "/api/backup-jobs",
            Some(&json!({"name": "x", "sources": [{"type": "path", "path": "/x", "colour": 1}]})),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    let r = env
        .api
        .raw(
            "POST",
            "/api/backup-jobs",
            Some(&json!({"name": "x", "sources": [{"type": "ftp", "path": "/x"}]})),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    // The shorthand `volumes` becomes volume sources; PUT replaces the fields given.
    let job = env
        .api
        .create_job(&path_job("j", &src, json!({"volumes": ["app-data"]})))
        .unwrap();
    assert_eq!(job.volumes, ["app-data"]);
    assert_eq!(job.sources.len(), 2);
    let u: JobUpdate =
        serde_json::from_value(json!({"schedule": "@hourly", "enabled": false})).unwrap();
    let job = env.api.update_job(&job.id, &u).unwrap();
    assert_eq!(
        (job.schedule.as_deref(), job.enabled, job.next_run),
        (Some("@hourly"), false, None)
    );
    let bad: JobUpdate = serde_json::from_value(json!({"timezone": "Nowhere"})).unwrap();
    assert_eq!(
        err(env.api.update_job(&job.id, &bad)).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        env.api.job(&job.id).unwrap().timezone,
        "UTC",
        "a refused change changes nothing"
    );
    env.api.delete_job(&job.id).unwrap();
    assert_eq!(err(env.api.job(&job.id)).0, StatusCode::NOT_FOUND);
    assert_eq!(err(env.api.run_job(&job.id)).0, StatusCode::NOT_FOUND);
    assert!(env.server.stop().success());
}

#[test]
fn a_failing_source_fails_the_record_and_loses_nothing() {
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("files", &src, json!({})))
        .unwrap();
    let good = run_to_end(&env.api, &job.id);
    assert_eq!(good.status, RecordStatus::Success);
    std::fs::rename(&src, env.dir.path().join("moved")).unwrap();
    let bad = run_to_end(&env.api, &job.id);
    assert_eq!(bad.status, RecordStatus::Failed);
    let error = bad.error.unwrap();
    assert!(
        error.contains(src.to_str().unwrap()),
        "the error names the source: {error}"
    );
    assert!(bad.checksum.is_none() && bad.snapshot_id.is_none());
    assert_eq!(
        env.api.job(&job.id).unwrap().last_status,
        Some(RecordStatus::Failed)
    );
    assert!(
        env.api.verify_record(&job.id, &good.id).unwrap().ok,
        "the earlier record is intact"
    );
    assert_eq!(
        err(env.api.verify_record(&job.id, &bad.id)).0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        err(env.api.download_record(&job.id, &bad.id)).0,
        StatusCode::CONFLICT
    );
    assert!(env.server.stop().success());
}

#[test]
fn a_server_killed_during_a_run_marks_it_failed_and_the_next_run_succeeds() {
    let env = start();
    let src = source_tree(env.dir.path(), 300);
    let job = env
        .api
        .create_job(&path_job("files", &src, json!({})))
        .unwrap();
    let running = env.api.run_job(&job.id).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        env.api.record(&job.id, &running.id).unwrap().status,
        RecordStatus::Running
    );
    env.server.kill();

    let server = start_in(&env.dir);
    let api = login(&server);
    let interrupted = api.record(&job.id, &running.id).unwrap();
    assert_eq!(interrupted.status, RecordStatus::Failed);
    assert!(interrupted.error.unwrap().contains("stopped"));
    let next = run_to_end(&api, &job.id);
    assert_eq!(next.status, RecordStatus::Success, "{next:?}");
    assert!(api.verify_record(&job.id, &next.id).unwrap().ok);
    assert!(server.stop().success());
}

#[test]
fn a_scheduled_run_missed_while_the_server_was_down_runs_once_at_start() {
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("hourly", &src, json!({"schedule": "0 * * * *"})))
        .unwrap();
    let manual_only = env
        .api
        .create_job(&path_job(
            "disabled",
            &src,
            json!({"schedule": "0 * * * *", "enabled": false}),
        ))
        .unwrap();
    // As if the server had been down for five hours: five slots were missed.
    let server = restart_after_missed_slots(&env.dir, env.server, 5);
    let api = login(&server);
    let deadline = std::time::Instant::now() + LONG;
    let records = loop {
        let r = api.records(&job.id, &RecordFilter::default()).unwrap();
        if r.iter().any(|r| r.status != RecordStatus::Running)
            || std::time::Instant::now() > deadline
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        records.len(),
        1,
        "one run for all the missed slots: {records:?}"
    );
    assert_eq!(
        (records[0].trigger.as_str(), records[0].status),
        ("schedule", RecordStatus::Success)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        api.records(&job.id, &RecordFilter::default())
            .unwrap()
            .len(),
        1
    );
    assert!(
        api.records(&manual_only.id, &RecordFilter::default())
            .unwrap()
            .is_empty(),
        "disabled jobs never fire"
    );
    assert_eq!(
        run_to_end(&api, &manual_only.id).status,
        RecordStatus::Success,
        "but run by hand"
    );
    assert!(server.stop().success());
}

/// The ids of the snapshots in a job's repository, read with the command line.
fn repo_snapshots(api: &Client, dest: &str) -> BTreeSet<String> {
    let key = api.setting("backup_encryption_key").unwrap().value;
    let out = std::process::Command::new(BIN)
        .args(["--json", "--repo", dest, "snapshots"])
        .env("COFFER_PASSWORD", key.as_str().unwrap())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn retention_keeps_exactly_the_newest_successful_records() {
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("kept", &src, json!({"retention_count": 2})))
        .unwrap();
    let dest = job.dest_path.clone().unwrap();
    let mut good = vec![];
    for i in 0..4 {
        std::fs::write(src.join("a.txt"), format!("version {i}")).unwrap();
        let r = run_to_end(&env.api, &job.id);
        assert_eq!(r.status, RecordStatus::Success, "{r:?}");
        good.push(r);
        let ids: Vec<String> = env
            .api
            .records(&job.id, &RecordFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let expected: Vec<String> = good.iter().rev().take(2).map(|r| r.id.clone()).collect();
        assert_eq!(ids, expected, "after run {i}");
        let snaps: BTreeSet<String> = good
            .iter()
            .rev()
            .take(2)
            .map(|r| r.snapshot_id.clone().unwrap())
            .collect();
        assert_eq!(repo_snapshots(&env.api, &dest), snaps, "after run {i}");
    }
    // A restore's safety record does not count: the next run still keeps the two newest
    // regular records, and the safety record too.
    let latest = good.last().unwrap().id.clone();
    let task = restore(&env.api, &job.id, &latest, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    std::fs::write(src.join("a.txt"), "version 4").unwrap();
    let newest = run_to_end(&env.api, &job.id);
    assert_eq!(newest.status, RecordStatus::Success, "{newest:?}");
    let kept: Vec<(String, String)> = env
        .api
        .records(&job.id, &RecordFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.trigger))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[0], (newest.id.clone(), "manual".to_string()));
    assert_eq!(kept[1].1, "pre_restore");
    assert_eq!(kept[2], (latest, "manual".to_string()));

    // A failed run removes nothing good.
    let moved = env.dir.path().join("moved");
    std::fs::rename(&src, &moved).unwrap();
    let failed = run_to_end(&env.api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    let all = env.api.records(&job.id, &RecordFilter::default()).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all.iter()
            .filter(|r| r.status == RecordStatus::Success)
            .count(),
        3
    );
    for r in all.iter().filter(|r| r.status == RecordStatus::Success) {
        assert!(
            env.api.verify_record(&job.id, &r.id).unwrap().ok,
            "pruning kept what they need"
        );
    }
    // /metrics has the job's series.
    let text = env.api.metrics().unwrap();
    let series = |name: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("job=\"{}\"", job.id)))
            .map(str::to_string)
            .collect()
    };
    let runs = series("coffer_backup_runs_total");
    assert!(
        runs.iter()
            .any(|l| l.contains("status=\"success\"") && l.ends_with(" 6")),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|l| l.contains("status=\"failed\"") && l.ends_with(" 1")),
        "{runs:?}"
    );
    for name in [
        "coffer_backup_last_success_timestamp_seconds",
        "coffer_backup_last_duration_seconds",
        "coffer_backup_last_size_bytes",
        "coffer_backup_repository_bytes",
    ] {
        let s = series(name);
        assert_eq!(s.len(), 1, "{name}: {text}");
        assert!(
            s[0].rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.0,
            "{}",
            s[0]
        );
    }
    assert!(env.server.stop().success());
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

/// Stop the server, move every job's last acted-on schedule time `hours` back (as if the
/// server had been down), and start it again: due jobs fire at once, by their schedule.
fn restart_after_missed_slots(dir: &TempDir, server: ServerProcess, hours: i64) -> ServerProcess {
    assert!(server.stop().success());
    let past = (Utc::now() - chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    with_database(&dir.path().join("data/coffer.db"), async |pool| {
        sqlx::query("UPDATE backup_jobs SET scheduled_until = ?1")
            .bind(&past)
            .execute(pool)
            .await
            .unwrap();
    });
    start_in(dir)
}

/// The job's first record started by the scheduler, once it has ended.
fn wait_for_scheduled(api: &Client, job: &str) -> Record {
    wait_until(LONG, || {
        api.records(job, &RecordFilter::default())
            .unwrap()
            .into_iter()
            .find(|r| r.trigger == "schedule" && r.status != RecordStatus::Running)
            .ok_or_else(|| "the scheduler did not run the job".to_string())
    })
}

/// `cp -a FROM TO`: a copy that keeps modes, owners, times and links.
fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_scheduled_sqlite_job_copies_a_consistent_database_while_it_is_written() {
    let env = start();
    let db = sqlite_db(
        env.dir.path(),
        &["CREATE TABLE events (n INTEGER PRIMARY KEY, payload TEXT)"],
    );
    // A writer that keeps inserting, one row per transaction, numbered from 0.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            with_database(&db, async |pool| {
                let mut n: i64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sqlx::query("INSERT INTO events (n, payload) VALUES (?1, ?2)")
                        .bind(n)
                        .bind("x".repeat(500))
                        .execute(pool)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let input: JobInput = serde_json::from_value(json!({
        "name": "app database", "sources": [{"type": "sqlite", "path": db}],
        "schedule": "*/5 * * * *"
    }))
    .unwrap();
    let job = env.api.create_job(&input).unwrap();
    // The first record comes from the schedule: its slot passed while the server was down,
    // so it fires at start-up (the writer goes on all along). The second is run by hand.
    let Env { dir, server, .. } = env;
    let server = restart_after_missed_slots(&dir, server, 2);
    let api = login(&server);
    let scheduled = wait_for_scheduled(&api, &job.id);
    let records = vec![scheduled, run_to_end(&api, &job.id)];
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);

    for record in &records {
        assert_eq!(record.status, RecordStatus::Success, "{record:?}");
        assert!(api.verify_record(&job.id, &record.id).unwrap().ok);
        let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
        assert_eq!(Some(sha256(&archive)), record.checksum);
        let out = dir.path().join(format!("out-{}", record.id));
        std::fs::create_dir_all(&out).unwrap();
        let tar = out.join("archive.tar");
        std::fs::write(&tar, &archive).unwrap();
        let ok = std::process::Command::new("tar")
            .args(["-xf", tar.to_str().unwrap(), "-C", out.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(ok.success());
        let copy = out.join("sqlite").join(db.strip_prefix("/").unwrap());
        let (check, count, max): (String, i64, i64) = with_database(&copy, async |pool| {
            let check = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(pool)
                .await
                .unwrap();
            let (count, max) = sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(n), -1) FROM events")
                .fetch_one(pool)
                .await
                .unwrap();
            (check, count, max)
        });
        assert_eq!(check, "ok");
        assert!(count > 0, "rows written before the run are in the copy");
        assert_eq!(
            max,
            count - 1,
            "one consistent state: no row without those before it"
        );
        assert!(count <= written);
    }

    // Deleted, then restored from the scheduled record: byte for byte the archive's copy.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let task = restore(&api, &job.id, &records[0].id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let copy = dir
        .path()
        .join(format!("out-{}", records[0].id))
        .join("sqlite")
        .join(db.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(&db).unwrap(), std::fs::read(&copy).unwrap());
    assert!(
        !dir.path()
            .join("data/tmp")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "temporary copies are removed"
    );

    // A database that is not there fails the record with a clear error.
    let missing: JobInput = serde_json::from_value(json!({
        "name": "gone", "sources": [{"type": "sqlite", "path": dir.path().join("gone.db")}]
    }))
    .unwrap();
    let job = api.create_job(&missing).unwrap();
    let r = run_to_end(&api, &job.id);
    assert_eq!(r.status, RecordStatus::Failed);
    assert!(r.error.as_deref().unwrap().contains("gone.db"), "{r:?}");
    assert!(server.stop().success());
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

#[test]
fn a_corrupted_pack_fails_only_the_records_that_use_it() {
    let env = start();
    let src = source_tree(env.dir.path(), 2);
    let job = env
        .api
        .create_job(&path_job("files", &src, json!({"encrypted": false})))
        .unwrap();
    assert!(!job.encrypted);
    let first = run_to_end(&env.api, &job.id);
    let dest = job.dest_path.clone().unwrap();
    let before = packs(&dest);
    std::fs::write(src.join("new.bin"), seeded(3 * 1024 * 1024, "new")).unwrap();
    let second = run_to_end(&env.api, &job.id);
    assert_eq!(
        (first.status, second.status),
        (RecordStatus::Success, RecordStatus::Success)
    );

    // Flip one byte in the middle of the biggest pack the second run wrote.
    let (victim, size) = packs(&dest)
        .into_iter()
        .filter(|(p, _)| !before.contains_key(p))
        .max_by_key(|(_, s)| *s)
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[size as usize / 2] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();

    let bad = env.api.verify_record(&job.id, &second.id).unwrap();
    assert!(!bad.ok);
    assert!(
        bad.error.as_deref().unwrap().contains("checksum mismatch"),
        "{bad:?}"
    );
    let pack_name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        bad.damaged.iter().any(|d| d.contains(pack_name)),
        "the damaged pack is named: {bad:?}"
    );
    assert!(
        bad.damaged.iter().any(|d| d.contains("new.bin")),
        "and the file it affects: {bad:?}"
    );
    let good = env.api.verify_record(&job.id, &first.id).unwrap();
    assert!(good.ok, "the first record does not use that pack: {good:?}");
    let (_, archive) = env.api.download_record(&job.id, &first.id).unwrap();
    assert_eq!(Some(sha256(&archive)), first.checksum);
    // The damaged record's download fails instead of delivering wrong bytes.
    if let Ok((_, bytes)) = env.api.download_record(&job.id, &second.id) {
        assert_ne!(
            Some(sha256(&bytes)),
            second.checksum,
            "never a silently wrong archive"
        );
    }
    assert!(env.server.stop().success());
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

#[test]
fn restores_replace_in_place_after_a_safety_record_or_go_to_another_directory() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 2);
    let original = env.dir.path().join("original");
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    let copy = |to: &Path| copy_tree(&src, to);
    copy(&original);

    // Damage the live data: change, delete, add.
    std::fs::write(src.join("a.txt"), b"changed").unwrap();
    std::fs::remove_file(src.join("sub/big.bin")).unwrap();
    std::fs::write(src.join("extra.txt"), b"not in the record").unwrap();
    let damaged = env.dir.path().join("damaged");
    copy(&damaged);

    // In place: the tree is exactly as recorded again, and what it replaced is saved.
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(task.target, "/");
    assert!(task.files.unwrap() >= 2 && task.bytes.unwrap() > 2 * 1024 * 1024);
    assert_same_tree(&original, &src);
    let safety = api
        .record(&job.id, task.safety_record_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(
        (safety.trigger.as_str(), safety.status),
        ("pre_restore", RecordStatus::Success)
    );
    // ... and can itself be restored, elsewhere, to undo the restore.
    let undo = restore(api, &job.id, &safety.id, json!({"target": "undo"}));
    assert_eq!(undo.status, RecordStatus::Success, "{undo:?}");
    let data = std::fs::canonicalize(env.dir.path().join("data")).unwrap();
    assert_same_tree(
        &damaged,
        &data.join("undo").join(src.strip_prefix("/").unwrap()),
    );

    // Everything gone: restore still works (nothing to save first).
    std::fs::remove_dir_all(&src).unwrap();
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_same_tree(&original, &src);

    // One file only.
    std::fs::write(src.join("a.txt"), b"changed again").unwrap();
    std::fs::write(src.join("extra.txt"), b"stays").unwrap();
    let one = src.join("a.txt");
    let task = restore(api, &job.id, &record.id, json!({"paths": [one]}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(std::fs::read(&one).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(src.join("extra.txt")).unwrap(),
        b"stays",
        "only what was asked"
    );

    // Bad requests change nothing.
    let bad = |req: serde_json::Value| {
        let req: coffer_types::RestoreRequest = serde_json::from_value(req).unwrap();
        err(api.restore_record(&job.id, &record.id, &req))
    };
    assert_eq!(
        bad(json!({"paths": ["/etc/passwd"]})).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        bad(json!({"paths": ["relative"]})).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        bad(json!({"target": "../../outside"})).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(bad(json!({"target": "/etc"})).0, StatusCode::BAD_REQUEST);
    let r = api
        .raw(
            "POST",
            &format!("/api/backup-jobs/{}/records/{}/restore", job.id, record.id),
            Some(&json!({"oops": 1})),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    std::fs::rename(&src, env.dir.path().join("away")).unwrap();
    let failed = run_to_end(api, &job.id);
    std::fs::rename(env.dir.path().join("away"), &src).unwrap();
    let (status, _) = err(api.restore_record(&job.id, &failed.id, &Default::default()));
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a failed record has nothing to restore"
    );
    assert_eq!(std::fs::read(src.join("extra.txt")).unwrap(), b"stays");
    let tasks: Vec<coffer_types::RestoreTask> = serde_json::from_str(
        &api.raw(
            "GET",
            &format!("/api/backup-jobs/{}/restores", job.id),
            None,
        )
        .unwrap()
        .text,
    )
    .unwrap();
    assert_eq!(tasks.len(), 4);
    let audit = api
        .audit(&AuditFilter {
            action: Some("restore".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    assert!(audit.len() >= 4, "restores are audited");
    assert!(env.server.stop().success());
}

#[test]
fn a_sqlite_database_is_restored_whole_and_checked() {
    let env = start();
    let db = sqlite_db(
        env.dir.path(),
        &[
            "CREATE TABLE t (n INTEGER)",
            "INSERT INTO t VALUES (1), (2), (3)",
        ],
    );
    let input: JobInput =
        serde_json::from_value(json!({"name": "db", "sources": [{"type": "sqlite", "path": db}]}))
            .unwrap();
    let job = env.api.create_job(&input).unwrap();
    let record = run_to_end(&env.api, &job.id);
    assert_eq!(record.status, RecordStatus::Success);
    // Rows lost, then the file overwritten with garbage.
    with_database(&db, async |pool| {
        sqlx::query("DELETE FROM t").execute(pool).await.unwrap();
    });
    std::fs::write(&db, b"garbage garbage garbage").unwrap();
    let task = restore(&env.api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let n: i64 = with_database(&db, async |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(n, 3);
    assert!(env.server.stop().success());
}

#[test]
fn live_events_tell_about_runs_restores_and_failed_verifies() {
    use tungstenite::client::IntoClientRequest;
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("watched", &src, json!({})))
        .unwrap();

    let connect = |creds: Option<String>| {
        let mut req = format!("ws://{}/api/ws", env.server.addr)
            .into_client_request()
            .unwrap();
        if let Some(t) = creds {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        tungstenite::connect(req)
    };
    match connect(None) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("no credentials, no events: {:?}", other.map(|_| ())),
    }
    let (mut socket, _) = connect(Some(env.token.clone())).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    // Each message is one event: its name, job, record, and for restores the restore.
    let mut next = || -> (String, String, String, Option<String>, Option<String>) {
        loop {
            if let tungstenite::Message::Text(t) = socket.read().unwrap() {
                let e: coffer_types::Event = serde_json::from_str(&t).unwrap();
                return (e.event, e.job_id, e.record_id, e.restore_id, e.error);
            }
        }
    };
    let event = |name: &str, record: &str| (name.to_string(), job.id.clone(), record.to_string());

    let ok = run_to_end(&env.api, &job.id);
    let (a, b) = (next(), next());
    assert_eq!((a.0, a.1, a.2), event("backup.started", &ok.id));
    assert_eq!((b.0, b.1, b.2), event("backup.completed", &ok.id));

    std::fs::rename(&src, env.dir.path().join("gone")).unwrap();
    let failed = run_to_end(&env.api, &job.id);
    let (_, f) = (next(), next());
    assert_eq!((f.0, f.1, f.2), event("backup.failed", &failed.id));
    assert!(f.4.unwrap().contains("src"));
    std::fs::rename(env.dir.path().join("gone"), &src).unwrap();

    let task = restore(&env.api, &job.id, &ok.id, json!({"target": "elsewhere"}));
    let r = next();
    assert_eq!((r.0, r.1, r.2), event("restore.completed", &ok.id));
    assert_eq!(r.3, Some(task.id));

    // Damage every pack: the verify fails, and says so.
    for (pack, _) in packs(job.dest_path.as_deref().unwrap()) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&pack, bytes).unwrap();
    }
    assert!(!env.api.verify_record(&job.id, &ok.id).unwrap().ok);
    let v = next();
    assert_eq!((v.0, v.1, v.2), event("verify.failed", &ok.id));
    socket.close(None).unwrap();
    assert!(env.server.stop().success());
}

/// `tar ARGS` in `dir` (GNU tar, which can also write the hostile archives a server must refuse).
fn gnu_tar(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("tar")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(ok.success(), "tar {args:?}");
}

#[test]
fn an_uploaded_archive_is_checked_then_restored_in_place() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 2);
    let original = env.dir.path().join("original");
    copy_tree(&src, &original);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
    let checksum = record.checksum.clone().unwrap();

    // Hostile or broken archives are refused before anything is written.
    std::fs::write(src.join("a.txt"), b"live data").unwrap();
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(work.join("d/e")).unwrap();
    std::fs::write(work.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", work.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../etc", work.join("d/e/climb")).unwrap();
    gnu_tar(&work, &["-cPf", "dotdot.tar", "d/../f"]);
    gnu_tar(
        &work,
        &["-cPf", "absolute.tar", work.join("f").to_str().unwrap()],
    );
    gnu_tar(&work, &["-cf", "abs-link.tar", "abs-link"]);
    gnu_tar(&work, &["-cf", "climb.tar", "d/e/climb"]);
    let mut cases: Vec<(&str, Vec<u8>)> =
        ["dotdot.tar", "absolute.tar", "abs-link.tar", "climb.tar"]
            .iter()
            .map(|n| (*n, std::fs::read(work.join(n)).unwrap()))
            .collect();
    cases.push(("truncated", archive[..archive.len() / 2 + 100].to_vec()));
    cases.push(("not tar", seeded(10_000, "noise")));
    for (name, bytes) in cases {
        let (status, msg) = err(api.restore_upload(&job.id, bytes, None));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {msg}");
        assert!(msg.starts_with("archive"), "{name}: {msg}");
    }
    let (status, msg) = err(api.restore_upload(&job.id, archive.clone(), Some(&"0".repeat(64))));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("damaged"), "{msg}");
    assert_eq!(
        std::fs::read(src.join("a.txt")).unwrap(),
        b"live data",
        "nothing was written"
    );
    assert_eq!(
        api.records(&job.id, &RecordFilter::default())
            .unwrap()
            .len(),
        1,
        "no safety record either"
    );

    // The good archive: a safety record, then the tree exactly as it was.
    let task = api
        .restore_upload(&job.id, archive.clone(), Some(&checksum))
        .unwrap();
    let task = api.wait_restore(&job.id, &task.id, LONG).unwrap();
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_same_tree(&original, &src);

    // The same as a form upload (what a browser sends): the archive in the field `archive`,
    // its checksum in `checksum`; a form without the archive, or with a wrong checksum, is
    // refused before anything is written.
    std::fs::write(src.join("a.txt"), b"changed again").unwrap();
    let form = |fields: &[(&str, &[u8])]| {
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
            &format!("/api/backup-jobs/{}/restore-upload", job.id),
            "multipart/form-data; boundary=XBOUNDARYX",
            body,
        )
        .unwrap()
    };
    let wrong = "f".repeat(64);
    for (fields, expect) in [
        (vec![("checksum", checksum.as_bytes())], "archive"),
        (
            vec![("archive", &archive[..]), ("checksum", wrong.as_bytes())],
            "damaged",
        ),
        (vec![("other", &b"x"[..])], "unexpected form field"),
    ] {
        let r = form(&fields);
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains(expect), "{expect}: {}", r.text);
    }
    assert_eq!(std::fs::read(src.join("a.txt")).unwrap(), b"changed again");
    let r = form(&[("archive", &archive[..]), ("checksum", checksum.as_bytes())]);
    assert_eq!(r.status, 202, "{}", r.text);
    let task = api
        .wait_restore(&job.id, r.json()["id"].as_str().unwrap(), LONG)
        .unwrap();
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_same_tree(&original, &src);
    let safety = api
        .record(&job.id, task.safety_record_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(
        (safety.trigger.as_str(), safety.status),
        ("pre_restore", RecordStatus::Success)
    );
    assert!(
        !env.dir
            .path()
            .join("data/tmp")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the upload is removed"
    );
    assert!(env.server.stop().success());

    // Uploads are size-limited.
    let server = ServerProcess::start(
        BIN,
        env.dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        &[("COFFER_MAX_UPLOAD_MIB", "1")],
    );
    let api = login(&server);
    let r = api.restore_upload(&job.id, seeded(3 << 20, "big"), None);
    assert!(
        matches!(&r, Err(ClientError::Api { status, .. }) if *status == StatusCode::PAYLOAD_TOO_LARGE)
            || matches!(&r, Err(ClientError::Transport(_))),
        "{r:?}"
    );
    assert!(server.stop().success());
}

#[test]
fn sealed_downloads_stay_encrypted_and_open_with_the_key() {
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("files", &src, json!({})))
        .unwrap();
    let record = run_to_end(&env.api, &job.id);
    let (_, archive) = env.api.download_record(&job.id, &record.id).unwrap();
    let get = |job: &str, rid: &str| {
        reqwest::blocking::Client::new()
            .get(format!(
                "{}/api/backup-jobs/{job}/records/{rid}/download?encrypted=true",
                env.server.url()
            ))
            .bearer_auth(&env.token)
            .send()
            .unwrap()
    };
    let r = get(&job.id, &record.id);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-checksum-sha256"],
        record.checksum.as_deref().unwrap()
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".tar.sealed")
    );
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let sealed = r.bytes().unwrap().to_vec();
    assert_eq!(sealed.len(), length);
    assert!(
        !sealed.windows(5).any(|w| w == b"hello"),
        "the file contents do not show"
    );

    // `coffer decrypt` opens it with the key an admin exports from the settings.
    let key = env.dir.path().join("key.json");
    let setting = env.api.setting("backup_encryption_key").unwrap().value;
    std::fs::write(&key, setting.to_string()).unwrap();
    let sealed_file = env.dir.path().join("archive.tar.sealed");
    std::fs::write(&sealed_file, &sealed).unwrap();
    let decrypt = |file: &Path| {
        std::process::Command::new(BIN)
            .args([
                "decrypt",
                "--key-file",
                key.to_str().unwrap(),
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let out = decrypt(&sealed_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&out.stdout), record.checksum.clone().unwrap());
    assert_eq!(out.stdout, archive);

    // A changed byte, a cut, or the wrong key: refused, exit 2 with a message.
    let mut bad = sealed.clone();
    bad[sealed.len() / 2] ^= 1;
    std::fs::write(&sealed_file, &bad).unwrap();
    let out = decrypt(&sealed_file);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&sealed_file, &sealed[..sealed.len() - 100]).unwrap();
    assert_eq!(decrypt(&sealed_file).status.code(), Some(2));
    std::fs::write(&sealed_file, &sealed).unwrap();
    std::fs::write(&key, "\"another key\"").unwrap();
    assert_eq!(decrypt(&sealed_file).status.code(), Some(2));

    // An unencrypted job has no key to seal with.
    let plain = env
        .api
        .create_job(&path_job("plain", &src, json!({"encrypted": false})))
        .unwrap();
    let rec = run_to_end(&env.api, &plain.id);
    assert_eq!(get(&plain.id, &rec.id).status(), 409);
    assert!(env.server.stop().success());
}

/// `prefix` made unique among concurrent tests (process id and time), as `prefix_pid_nanos`.
fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A volume with a bit of everything: nested directories, a larger file, a symlink, a hard
/// link, a file owned by another user with a narrow mode, an empty directory.
fn fill_volume(volume: &str) {
    coffer_testkit::in_volume(
        volume,
        "mkdir -p /data/app/sub /data/empty && echo hello > /data/app/a.txt \
         && dd if=/dev/urandom of=/data/app/sub/big.bin bs=64k count=40 2>/dev/null \
         && ln -s a.txt /data/app/link && ln /data/app/a.txt /data/app/hard \
         && echo secret > /data/app/private && chown 1000:1000 /data/app/private \
         && chmod 600 /data/app/private && chmod 700 /data/app/sub",
    );
}

/// A unique volume name, and the volume removed (with the containers using it) at the end.
struct Volume(String);

impl Volume {
    fn new(labels: &[&str]) -> Volume {
        coffer_testkit::docker_engine();
        let name = unique_name("coffer-test-volume").replace('_', "-");
        let mut args = vec!["volume", "create"];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.push(&name);
        coffer_testkit::docker(&args);
        Volume(name)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let users =
            coffer_testkit::docker_ok(&["ps", "-aq", "--filter", &format!("volume={}", self.0)])
                .unwrap_or_default();
        for id in users.split_whitespace() {
            let _ = coffer_testkit::docker_ok(&["rm", "-f", id]);
        }
        let _ = coffer_testkit::docker_ok(&["volume", "rm", "-f", &self.0]);
    }
}

#[test]
fn a_docker_volume_job_backs_up_and_restores_into_a_recreated_volume() {
    let vol = Volume::new(&["app=coffer-test", "tier=data"]);
    fill_volume(&vol.0);
    let original = coffer_testkit::volume_manifest(&vol.0);
    let env = start();
    let api = &env.api;
    assert!(
        api.nodes().unwrap()[0].docker.ok,
        "the node reports Docker reachable"
    );

    // The job exactly as the usual curl examples create one.
    let input: JobInput = serde_json::from_value(json!({
        "name": "Daily core volumes",
        "node_id": "local",
        "volumes": [vol.0],
        "schedule": "0 3 * * *",
        "retention_count": 14,
        "encrypted": true,
        "enabled": true
    }))
    .unwrap();
    let job = api.create_job(&input).unwrap();
    assert_eq!(job.volumes, vec![vol.0.clone()]);
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);

    // The download is the record's archive: one folder for the volume, with its files.
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
    assert_eq!(Some(sha256(&archive)), record.checksum);
    let names: BTreeSet<String> = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let folder = format!("volume/{}", vol.0);
    for f in [
        "app/a.txt",
        "app/sub/big.bin",
        "app/link",
        "app/hard",
        "app/private",
        "empty",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.trim_end_matches('/') == format!("{folder}/{f}")),
            "{f} is in the archive: {names:?}"
        );
    }

    // Changed while an application runs: a restore in place is refused while it runs...
    coffer_testkit::in_volume(
        &vol.0,
        "rm /data/app/a.txt && echo new > /data/extra && echo changed > /data/app/private",
    );
    let changed = coffer_testkit::volume_manifest(&vol.0);
    assert_ne!(changed, original);
    // An application that stops promptly on SIGTERM, as applications do.
    let app = coffer_testkit::docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "-v",
        &format!("{}:/data", vol.0),
        coffer_testkit::BUSYBOX,
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM; sleep 600 & wait",
    ]);
    let req: coffer_types::RestoreRequest = serde_json::from_value(json!({})).unwrap();
    let (status, msg) = err(api.restore_record(&job.id, &record.id, &req));
    assert_eq!(status, StatusCode::CONFLICT, "{msg}");
    assert!(msg.contains("stop_containers"), "{msg}");
    assert_eq!(
        coffer_testkit::volume_manifest(&vol.0),
        changed,
        "nothing was touched"
    );

    // ...and done with stop_containers: the application is stopped, the volume restored
    // exactly (the extra file gone), and the application started again.
    let task = restore(api, &job.id, &record.id, json!({"stop_containers": true}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(
        task.files,
        Some(3),
        "a.txt (with its hard link), big.bin, private"
    );
    assert_eq!(coffer_testkit::volume_manifest(&vol.0), original);
    let running = coffer_testkit::docker(&["inspect", "-f", "{{.State.Running}}", &app]);
    assert_eq!(running, "true", "the application runs again");
    // The safety record saved the changed state first.
    let safety = api
        .record(&job.id, task.safety_record_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(safety.status, RecordStatus::Success, "{safety:?}");
    coffer_testkit::docker(&["rm", "-f", &app]);

    // The volume gone altogether: recreated with its labels, and filled.
    coffer_testkit::docker(&["volume", "rm", &vol.0]);
    let task = restore(api, &job.id, &record.id, json!({"volumes": [vol.0]}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(coffer_testkit::volume_manifest(&vol.0), original);
    let labels = coffer_testkit::docker(&["volume", "inspect", "-f", "{{json .Labels}}", &vol.0]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels, json!({"app": "coffer-test", "tier": "data"}));

    // From the downloaded archive, uploaded: the volume as it was again.
    coffer_testkit::in_volume(&vol.0, "rm -r /data/app/sub && echo x > /data/new");
    let task = api
        .restore_upload(&job.id, archive.clone(), record.checksum.as_deref())
        .unwrap();
    let task = api.wait_restore(&job.id, &task.id, LONG).unwrap();
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(coffer_testkit::volume_manifest(&vol.0), original);

    // Elsewhere: into a directory, as files.
    let task = restore(api, &job.id, &record.id, json!({"target": "restored"}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let out = env.dir.path().join("data/restored").join(&folder);
    assert_eq!(std::fs::read(out.join("app/a.txt")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read_link(out.join("app/link")).unwrap(),
        Path::new("a.txt")
    );

    // A second run stores almost nothing new, and no temporary container stays behind.
    let second = run_to_end(api, &job.id);
    assert_eq!(second.status, RecordStatus::Success, "{second:?}");
    assert!(second.stored_bytes.unwrap() < 200_000, "{second:?}");
    wait_until(Duration::from_secs(10), || {
        let left = coffer_testkit::docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=coffer.temporary",
            "--filter",
            &format!("volume={}", vol.0),
        ]);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("temporary containers left: {left}"))
        }
    });

    // A volume that does not exist fails its record clearly; the job keeps its schedule.
    let missing = api
        .create_job(&serde_json::from_value(json!({"name": "missing", "volumes": ["coffer-test-no-such-volume"], "schedule": "@daily"})).unwrap())
        .unwrap();
    let failed = run_to_end(api, &missing.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("coffer-test-no-such-volume does not exist"),
        "{failed:?}"
    );
    assert!(api.job(&missing.id).unwrap().next_run.is_some());
    assert!(env.server.stop().success());
}

#[test]
fn jobs_write_to_a_registered_s3_repository_whose_secret_never_leaves() {
    let s3 = coffer_testkit::S3Server::start();
    let bucket = s3.bucket("coffer-jobs");
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 3);
    let repo_input = |extra: serde_json::Value| -> coffer_types::RepositoryInput {
        let mut v = json!({
            "name": "offsite",
            "url": format!("s3://{bucket}/team"),
            "endpoint": s3.endpoint,
            "region": "us-east-1",
            "access_key_id": s3.access_key,
            "secret_access_key": s3.secret_key,
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    };

    // Bad input names its field.
    for (extra, field) in [
        (json!({"url": "ftp://host/x"}), "url"),
        (json!({"url": "s3://"}), "url"),
        (json!({"url": "file:///etc"}), "url"),
        (json!({"endpoint": "127.0.0.1:9000"}), "endpoint"),
        (json!({"name": " "}), "name"),
    ] {
        let (status, msg) = err(api.create_repository(&repo_input(extra)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let repo = api.create_repository(&repo_input(json!({}))).unwrap();
    assert!(
        repo.has_secret && repo.encrypted && repo.jobs == 0,
        "{repo:?}"
    );
    assert_eq!(
        err(api.create_repository(&repo_input(json!({})))).0,
        StatusCode::CONFLICT
    );
    let listed = api.raw("GET", "/api/repositories", None).unwrap();
    assert!(listed.text.contains(&repo.id) && !listed.text.contains(&s3.secret_key));

    // Jobs name it instead of a directory.
    let job_with = |extra: serde_json::Value| {
        let mut e = json!({"repository_id": repo.id, "retention_count": 2});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        path_job("offsite files", &src, e)
    };
    for (extra, field) in [
        (json!({"dest_path": "backups/x"}), "dest_path"),
        (json!({"encrypted": false}), "encrypted"),
        (
            json!({"repository_id": "no-such-repository"}),
            "repository_id",
        ),
    ] {
        let (status, msg) = err(api.create_job(&job_with(extra)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let job = api.create_job(&job_with(json!({}))).unwrap();
    assert_eq!(job.repository_id.as_deref(), Some(repo.id.as_str()));
    assert!(job.dest_path.is_none() && job.encrypted, "{job:?}");
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    let location = record.file_path.clone().unwrap();
    assert!(
        location.starts_with(&format!("s3://{bucket}/team/snapshots/")),
        "{location}"
    );
    assert!(
        s3.object_file(&bucket, "team/config").is_file(),
        "the repository is in the bucket"
    );
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
    assert_eq!(Some(sha256(&archive)), record.checksum);
    let task = restore(api, &job.id, &record.id, json!({"target": "from-s3"}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let restored = env.dir.path().join("data/from-s3");
    assert_same_tree(&src, &restored.join(src.strip_prefix("/").unwrap()));

    // In use: it cannot be deleted or moved.
    assert_eq!(api.repository(&repo.id).unwrap().jobs, 1);
    assert_eq!(err(api.delete_repository(&repo.id)).0, StatusCode::CONFLICT);
    let moved: coffer_types::RepositoryUpdate =
        serde_json::from_value(json!({"url": format!("s3://{bucket}/elsewhere")})).unwrap();
    assert_eq!(
        err(api.update_repository(&repo.id, &moved)).0,
        StatusCode::CONFLICT
    );

    // A wrong secret fails the run clearly and keeps the good record; the right one again works.
    let wrong: coffer_types::RepositoryUpdate =
        serde_json::from_value(json!({"secret_access_key": "not-the-secret"})).unwrap();
    api.update_repository(&repo.id, &wrong).unwrap();
    let failed = run_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    assert!(failed.error.is_some());
    assert_eq!(
        api.record(&job.id, &record.id).unwrap().status,
        RecordStatus::Success
    );
    let right: coffer_types::RepositoryUpdate =
        serde_json::from_value(json!({"secret_access_key": s3.secret_key})).unwrap();
    api.update_repository(&repo.id, &right).unwrap();
    assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Success);

    // The secret is nowhere: not in the database files, not in the log, not in the audit log.
    for f in ["coffer.db", "coffer.db-wal"] {
        let bytes = std::fs::read(env.dir.path().join("data").join(f)).unwrap_or_default();
        assert!(
            !bytes
                .windows(s3.secret_key.len())
                .any(|w| w == s3.secret_key.as_bytes()),
            "the secret is readable in {f}"
        );
    }
    let audit = api.raw("GET", "/api/audit", None).unwrap();
    assert!(audit.text.contains("/api/repositories") && !audit.text.contains(&s3.secret_key));

    // Once no job uses it, it can go (its data stays in the bucket).
    api.delete_job(&job.id).unwrap();
    api.delete_repository(&repo.id).unwrap();
    assert_eq!(err(api.repository(&repo.id)).0, StatusCode::NOT_FOUND);
    assert!(s3.object_file(&bucket, "team/config").is_file());
    let log = env.server.log();
    assert!(
        !log.contains(&s3.secret_key),
        "the secret is in the server log"
    );
    assert!(env.server.stop().success());
}

#[test]
fn a_docker_engine_that_is_down_fails_the_record_clearly() {
    let dir = tempdir().unwrap();
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        &[
            ("COFFER_ADMIN_PASSWORD", PASSWORD),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    let api = login(&server);
    let node = &api.nodes().unwrap()[0];
    assert!(
        !node.docker.ok && node.docker.detail.contains("not reachable"),
        "{node:?}"
    );
    let job = api
        .create_job(
            &serde_json::from_value(
                json!({"name": "volumes", "volumes": ["app-data"], "schedule": "@daily"}),
            )
            .unwrap(),
        )
        .unwrap();
    let r = run_to_end(&api, &job.id);
    assert_eq!(r.status, RecordStatus::Failed);
    let error = r.error.unwrap();
    assert!(
        error.contains("app-data") && error.contains("Docker engine is not reachable"),
        "{error}"
    );
    assert!(
        api.job(&job.id).unwrap().next_run.is_some(),
        "the schedule stays"
    );
    assert!(server.stop().success());
}

#[test]
fn database_credentials_keep_their_password_to_themselves() {
    let env = start();
    let api = &env.api;
    let secret = "pa55-w0rd-that-stays-inside";
    let input = |extra: serde_json::Value| -> coffer_types::CredentialInput {
        let mut v = json!({"name": "app db", "engine": "postgres", "host": "127.0.0.1",
                           "user": "app", "password": secret});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    };
    for (extra, field) in [
        (json!({"host": null}), "host"),
        (json!({"socket": "/run/postgresql"}), "host"),
        (json!({"host": null, "socket": "relative/dir"}), "socket"),
        (json!({"user": " "}), "user"),
        (json!({"port": 0}), "port"),
    ] {
        let (status, msg) = err(api.create_credential(&input(extra)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let c = api.create_credential(&input(json!({}))).unwrap();
    assert!(c.has_password && c.port == 5432, "{c:?}");
    assert_eq!(
        err(api.create_credential(&input(json!({})))).0,
        StatusCode::CONFLICT
    );
    let listed = api.raw("GET", "/api/credentials", None).unwrap();
    assert!(listed.text.contains(&c.id) && !listed.text.contains(secret));

    // A socket replaces the host; an empty password removes it.
    let u: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"socket": "/run/postgresql", "password": ""})).unwrap();
    let c = api.update_credential(&c.id, &u).unwrap();
    assert!(c.host.is_none() && !c.has_password, "{c:?}");
    let u: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"password": secret})).unwrap();
    assert!(api.update_credential(&c.id, &u).unwrap().has_password);
    for f in ["coffer.db", "coffer.db-wal"] {
        let bytes = std::fs::read(env.dir.path().join("data").join(f)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the password is readable in {f}"
        );
    }
    api.delete_credential(&c.id).unwrap();
    assert_eq!(err(api.credential(&c.id)).0, StatusCode::NOT_FOUND);
    assert!(!env.server.log().contains(secret));
    assert!(env.server.stop().success());
}

/// A credential (`credential`, JSON) and a job (`job`, JSON) with one database source through
/// it: `source` gives the source's other fields (`{"database": …}` or `{"all": true}`, and
/// `backup_tool`).
fn database_job(
    api: &Client,
    credential: serde_json::Value,
    mut job: serde_json::Value,
    mut source: serde_json::Value,
) -> (coffer_types::Credential, coffer_types::Job) {
    let cred = api
        .create_credential(&serde_json::from_value(credential).unwrap())
        .unwrap();
    source["type"] = json!(cred.engine);
    source["credential_id"] = json!(cred.id);
    job["sources"] = json!([source]);
    if job["schedule"].is_null() {
        job.as_object_mut().unwrap().remove("schedule");
    }
    let job = api
        .create_job(&serde_json::from_value(job).unwrap())
        .unwrap();
    (cred, job)
}

/// A job naming a database that does not exist with `cred` fails its record, in the words of
/// the dump tool (`tool` appears in the error, with the database's name; for MySQL it is the
/// source's `backup_tool`).
fn assert_missing_database_fails(api: &Client, cred: &coffer_types::Credential, tool: &str) {
    let mut source = json!({"type": cred.engine, "credential_id": cred.id,
                            "database": "coffer_no_such_db"});
    if cred.engine == coffer_types::DbEngine::Mysql {
        source["backup_tool"] = json!(tool);
    }
    let missing = api
        .create_job(
            &serde_json::from_value(json!({"name": "missing db", "sources": [source]})).unwrap(),
        )
        .unwrap();
    let failed = run_to_end(api, &missing.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    let error = failed.error.unwrap();
    assert!(
        error.contains(tool) && error.contains("coffer_no_such_db"),
        "{error}"
    );
}

/// `psql` as the superuser against the machine's PostgreSQL (127.0.0.1:5432, trust auth).
fn psql(db: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
        .output()
        .expect("psql is installed (PostgreSQL client)");
    assert!(
        out.status.success(),
        "psql {sql}: {} (is PostgreSQL running on 127.0.0.1:5432?)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database of the test's own, dropped at the end.
struct PgDatabase(String);

impl PgDatabase {
    fn new(tag: &str) -> PgDatabase {
        let name = unique_name(&format!("coffer_{tag}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        PgDatabase(name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-c",
            ])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .output();
    }
}

/// A checksum of every table's rows, in key order.
fn pg_checksums(db: &str) -> String {
    psql(
        db,
        "SELECT string_agg(t || '=' || s, ' ' ORDER BY t) FROM (
           SELECT 'customers' t, md5(string_agg(c::text, ',' ORDER BY id)) s FROM customers c
           UNION ALL SELECT 'orders', md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o
           UNION ALL SELECT 'audit', md5(string_agg(a::text, ',' ORDER BY id)) FROM audit a
           UNION ALL SELECT 'view', md5(string_agg(v::text, ',' ORDER BY customer)) FROM order_totals v
           UNION ALL SELECT 'seq', last_value::text FROM orders_id_seq) x",
    )
}

#[test]
fn a_postgres_database_is_dumped_restored_in_place_and_into_another_database() {
    let db = PgDatabase::new("app");
    psql(
        &db.0,
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text, photo bytea);
         CREATE TABLE orders (id bigserial PRIMARY KEY,
                              customer int NOT NULL REFERENCES customers (id),
                              amount numeric(12, 2), placed timestamptz NOT NULL DEFAULT now());
         CREATE TABLE audit (id bigserial PRIMARY KEY, what text NOT NULL);
         CREATE FUNCTION log_order() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO audit (what) VALUES ('order ' || NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION log_order();
         CREATE VIEW order_totals AS
           SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer;
         INSERT INTO customers (name, note, photo)
           SELECT 'Kunde ' || i || ' — Müller ✓', CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i END,
                  CASE WHEN i % 3 = 0 THEN decode(md5(i::text), 'hex') END
           FROM generate_series(1, 2000) i;
         INSERT INTO orders (customer, amount, placed)
           SELECT 1 + i % 2000, (i % 1000) / 7.0, '2026-01-01'::timestamptz + i * interval '1 minute'
           FROM generate_series(1, 200000) i;",
    );
    let original = pg_checksums(&db.0);
    let env = start();
    let api = &env.api;
    let (cred, job) = database_job(
        api,
        json!({"name": "local pg", "engine": "postgres",
                "host": "127.0.0.1", "user": "postgres", "password": "not-needed-with-trust"}),
        json!({"name": "app db", "schedule": "@daily"}),
        json!({"database": db.0}),
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
    assert_eq!(Some(sha256(&archive)), record.checksum);
    let names: Vec<String> = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let dump = format!("postgres/local pg/{}.dump", db.0);
    assert!(names.contains(&dump), "{names:?}");
    // The record says which tool made which dump, and how large it is.
    assert_eq!(
        record.backup_tool.as_deref(),
        Some("pg_dump 15"),
        "{record:?}"
    );
    assert_eq!(record.databases.len(), 1);
    assert_eq!(record.databases[0].database, db.0);
    let in_archive = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().display().to_string() == dump)
        .unwrap()
        .size();
    assert_eq!(record.databases[0].size_bytes, in_archive);

    // Damage: a table dropped, rows changed. Restored in place: exactly as backed up.
    psql(
        &db.0,
        "DROP VIEW order_totals; DROP TABLE orders CASCADE;
         UPDATE customers SET name = 'changed' WHERE id < 100; DELETE FROM audit WHERE id > 10;",
    );
    assert_ne!(
        psql(
            &db.0,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"
        ),
        "1"
    );
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(pg_checksums(&db.0), original);
    psql(&db.0, "INSERT INTO orders (customer, amount) VALUES (1, 1)");
    assert_eq!(
        psql(
            &db.0,
            "SELECT count(*) FROM audit WHERE what LIKE 'order %'"
        ),
        "200001",
        "the trigger works after the restore"
    );

    // Into another database, while the original is in use and stays as it is.
    let copy = PgDatabase(format!("{}_copy", db.0));
    let before = pg_checksums(&db.0);
    let task = restore(api, &job.id, &record.id, json!({"target_database": copy.0}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(pg_checksums(&copy.0), original);
    assert_eq!(pg_checksums(&db.0), before);

    assert_missing_database_fails(api, &cred, "pg_dump");
    assert_eq!(err(api.delete_credential(&cred.id)).0, StatusCode::CONFLICT);
    assert!(!env.server.log().contains("not-needed-with-trust"));
    assert!(env.server.stop().success());
}

/// The `mariadb` client as root against the machine's MariaDB (127.0.0.1:3306).
fn mariadb(db: &str, sql: &str) -> String {
    let out = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "-e",
            sql,
        ])
        .args((!db.is_empty()).then_some(db))
        .output()
        .expect("the mariadb client is installed");
    assert!(
        out.status.success(),
        "mariadb {sql}: {} (is MariaDB running on 127.0.0.1:3306?)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A MariaDB database of the test's own, dropped at the end.
struct MyDatabase(String);

impl MyDatabase {
    fn new(tag: &str) -> MyDatabase {
        let name = unique_name(&format!("coffer_{tag}"));
        mariadb("", &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
        MyDatabase(name)
    }
}

impl Drop for MyDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.0))
            .output();
    }
}

fn my_checksums(db: &str) -> String {
    mariadb(
        db,
        "CHECKSUM TABLE customers, orders, audit EXTENDED;
         SELECT md5(group_concat(customer, ':', total ORDER BY customer SEPARATOR ',')) FROM order_totals;
         SELECT AUTO_INCREMENT FROM information_schema.TABLES
           WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders';",
    )
    .replace(db, "DB")
}

#[test]
fn a_mariadb_database_is_dumped_by_mydumper_restored_in_place_and_into_another_database() {
    mariadb_round_trip("mydumper");
}

#[test]
fn a_mariadb_database_is_dumped_by_mariadb_dump_restored_in_place_and_into_another_database() {
    mariadb_round_trip("mariadb-dump");
}

/// Back a database up with `tool`; restore it in place, then into another database.
fn mariadb_round_trip(tool: &str) {
    let db = MyDatabase::new("my");
    mariadb(
        &db.0,
        "SET SESSION group_concat_max_len = 100000000;
         CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL,
                                 note TEXT NULL, photo BLOB NULL) ENGINE=InnoDB;
         CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT NOT NULL,
                              amount DECIMAL(12,2), FOREIGN KEY (customer) REFERENCES customers (id))
                              ENGINE=InnoDB;
         CREATE TABLE audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100)) ENGINE=InnoDB;
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
           INSERT INTO audit (what) VALUES (CONCAT('order ', NEW.id));
         CREATE VIEW order_totals AS SELECT customer, SUM(amount) AS total FROM orders GROUP BY customer;
         INSERT INTO customers (name, note, photo)
           SELECT CONCAT('Kunde ', seq, ' — Müller ✓'), IF(seq % 7 = 0, NULL, CONCAT('n', seq)),
                  IF(seq % 3 = 0, UNHEX(MD5(seq)), NULL)
           FROM seq_1_to_2000;
         INSERT INTO orders (customer, amount) SELECT 1 + seq % 2000, (seq % 1000) / 7 FROM seq_1_to_100000;",
    );
    let original = my_checksums(&db.0);
    let env = start();
    let api = &env.api;
    let cred = api
        .create_credential(
            &serde_json::from_value(json!({"name": "local mariadb", "engine": "mysql",
                "host": "127.0.0.1", "user": "root", "tls": "disable"}))
            .unwrap(),
        )
        .unwrap();
    assert_eq!(cred.port, 3306);
    let job = api
        .create_job(
            &serde_json::from_value(json!({"name": "shop db", "schedule": "@daily",
                "sources": [{"type": "mysql", "credential_id": cred.id, "database": db.0,
                             "backup_tool": tool}]}))
            .unwrap(),
        )
        .unwrap();
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);
    assert_eq!(record.backup_tool.as_deref(), Some(tool), "{record:?}");
    assert!(
        record.databases.len() == 1 && record.databases[0].size_bytes > 1_000_000,
        "{record:?}"
    );
    assert!(
        !env.dir
            .path()
            .join("data/tmp")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no option file (with the login) is left behind"
    );

    mariadb(
        &db.0,
        "DROP VIEW order_totals; DROP TABLE audit; UPDATE customers SET name = 'changed' WHERE id < 100;",
    );
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(my_checksums(&db.0), original);
    mariadb(&db.0, "INSERT INTO orders (customer, amount) VALUES (1, 1)");
    assert_eq!(
        mariadb(&db.0, "SELECT COUNT(*) FROM audit"),
        "100001",
        "the trigger works after the restore"
    );

    let copy = MyDatabase(format!("{}_copy", db.0));
    let before = my_checksums(&db.0);
    let (status, msg) = err(api.restore_record(
        &job.id,
        &record.id,
        &serde_json::from_value(json!({"databases": ["other"], "target_database": copy.0}))
            .unwrap(),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("databases"), "{msg}");
    let task = restore(
        api,
        &job.id,
        &record.id,
        json!({"databases": [db.0], "target_database": copy.0}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(my_checksums(&copy.0), original);
    assert_eq!(my_checksums(&db.0), before);

    assert_missing_database_fails(api, &cred, tool);
    // A credential of the wrong engine is refused.
    let (status, msg) = err(api.create_job(
        &serde_json::from_value(json!({"name": "wrong engine",
            "sources": [{"type": "postgres", "credential_id": cred.id, "database": "x"}]}))
        .unwrap(),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("not postgres"), "{msg}");
    assert!(env.server.stop().success());
}

#[test]
fn postgres_failures_fail_the_record_and_keep_the_good_ones() {
    let pg = coffer_testkit::PgInstance::start();
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 10000) i;",
    );
    let env = start();
    let api = &env.api;
    let (cred, job) = database_job(
        api,
        json!({"name": "own pg", "engine": "postgres",
                "host": "127.0.0.1", "port": pg.port, "user": "postgres",
                "password": "not the password"}),
        json!({"name": "app", "schedule": null}),
        json!({"database": "app"}),
    );

    // A wrong password: failed, in the server's words.
    let failed = run_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    let error = failed.error.unwrap();
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!error.contains(coffer_testkit::PG_PASSWORD));

    // The right one: a good record.
    let right: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"password": coffer_testkit::PG_PASSWORD})).unwrap();
    api.update_credential(&cred.id, &right).unwrap();
    let good = run_to_end(api, &job.id);
    assert_eq!(good.status, RecordStatus::Success, "{good:?}");

    // The server stopped in the middle of a dump: pg_dump waits for a lock that another
    // session holds, then the server goes away.
    let locker = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "app",
        ])
        .args([
            "-c",
            "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);",
        ])
        .env("PGPASSWORD", coffer_testkit::PG_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Some row counted by `sql`, or `why` not.
    let counted = |sql: &str, why: &str| match pg.sql("postgres", sql).as_str() {
        "0" => Err(why.to_string()),
        _ => Ok(()),
    };
    wait_until(Duration::from_secs(10), || {
        counted(
            "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation IS NOT NULL",
            "the lock was not taken",
        )
    });
    let started = api.run_job(&job.id).unwrap();
    wait_until(Duration::from_secs(20), || {
        counted(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'coffer' AND wait_event_type = 'Lock'",
            "pg_dump never waited for the lock",
        )
    });
    pg.stop();
    let stopped = api.wait_record(&job.id, &started.id, LONG).unwrap();
    assert_eq!(stopped.status, RecordStatus::Failed, "{stopped:?}");
    assert!(
        stopped.error.as_deref().unwrap().contains("pg_dump"),
        "{stopped:?}"
    );
    let mut locker = locker;
    let _ = locker.kill();
    let _ = locker.wait();

    // Nothing good was lost.
    assert_eq!(
        api.record(&job.id, &good.id).unwrap().status,
        RecordStatus::Success
    );
    assert!(api.verify_record(&job.id, &good.id).unwrap().ok);
    assert!(env.server.stop().success());
}

#[test]
fn a_postgres_restore_keeps_owners_and_privileges() {
    let pg = coffer_testkit::PgInstance::start();
    pg.sql(
        "postgres",
        "CREATE ROLE app_owner LOGIN; CREATE ROLE app_reader",
    );
    pg.sql("postgres", "CREATE DATABASE app OWNER app_owner");
    pg.sql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO app_owner;
         GRANT SELECT ON t TO app_reader; INSERT INTO t SELECT generate_series(1, 100);",
    );
    let owners = |db: &str| {
        pg.sql(
            db,
            "SELECT pg_get_userbyid(d.datdba) || ' ' || t.tableowner || ' ' ||
                    has_table_privilege('app_reader', 't', 'SELECT')
             FROM pg_database d, pg_tables t WHERE d.datname = current_database() AND t.tablename = 't'",
        )
    };
    assert_eq!(owners("app"), "app_owner app_owner true");
    let env = start();
    let api = &env.api;
    let (_, job) = database_job(
        api,
        json!({"name": "own pg", "engine": "postgres",
                "host": "127.0.0.1", "port": pg.port, "user": "postgres",
                "password": coffer_testkit::PG_PASSWORD}),
        json!({"name": "app", "schedule": null}),
        json!({"database": "app"}),
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    pg.sql("app", "DROP TABLE t");
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(owners("app"), "app_owner app_owner true");
    assert_eq!(pg.sql("app", "SELECT count(*) FROM t"), "100");
    assert!(env.server.stop().success());
}

/// A job backing up the whole server of `credential`, and its first record, which must have
/// dumped exactly `dumped` (the roles or accounts as `(globals)`).
fn whole_server_record(
    api: &Client,
    credential: serde_json::Value,
    dumped: &[&str],
) -> (coffer_types::Credential, coffer_types::Job, Record) {
    let (cred, job) = database_job(
        api,
        credential,
        json!({"name": "everything", "schedule": null}),
        json!({"all": true}),
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    let names: BTreeSet<&str> = record
        .databases
        .iter()
        .map(|d| d.database.as_str())
        .collect();
    assert_eq!(names, dumped.iter().copied().collect(), "{record:?}");
    (cred, job, record)
}

#[test]
fn a_whole_postgres_server_comes_back_with_its_roles_and_databases() {
    let pg = coffer_testkit::PgInstance::start();
    pg.sql(
        "postgres",
        "CREATE ROLE shop_owner LOGIN PASSWORD 'shop-secret'; CREATE ROLE auditor;
         CREATE ROLE backup_admin SUPERUSER LOGIN PASSWORD 'at-backup-time';
         CREATE TABLE notes (n text); INSERT INTO notes VALUES ('kept in postgres itself');",
    );
    pg.sql("postgres", "CREATE DATABASE shop OWNER shop_owner");
    pg.sql("postgres", "CREATE DATABASE blog");
    pg.sql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); ALTER TABLE items OWNER TO shop_owner;
         GRANT SELECT ON items TO auditor;
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 5000) i;",
    );
    pg.sql(
        "blog",
        "CREATE TABLE posts (id serial PRIMARY KEY, body text);
         INSERT INTO posts (body) SELECT md5(i::text) FROM generate_series(1, 3000) i;",
    );
    // Roles (with whether they have a password), databases with their owners, and the data.
    // (What cannot be read, say a database that is gone, is shown as psql's error.)
    let q = |db: &str, sql: &str| pg.try_sql(db, sql).unwrap_or_else(|e| e);
    let state = || {
        [
            q(
                "postgres",
                "SELECT string_agg(rolname || ' ' || rolcanlogin || ' ' || (rolpassword IS NOT NULL), ', ' ORDER BY rolname)
                 FROM pg_authid WHERE rolname NOT LIKE 'pg\\_%'",
            ),
            q(
                "postgres",
                "SELECT string_agg(datname || ' ' || pg_get_userbyid(datdba), ', ' ORDER BY datname)
                 FROM pg_database WHERE NOT datistemplate",
            ),
            q("postgres", "SELECT string_agg(n, ',') FROM notes"),
            q(
                "shop",
                "SELECT md5(string_agg(name, ',' ORDER BY id)) || ' ' || has_table_privilege('auditor', 'items', 'SELECT') FROM items",
            ),
            q("blog", "SELECT md5(string_agg(body, ',' ORDER BY id)) FROM posts"),
        ]
        .join("\n")
    };
    let before = state();
    let env = start();
    let api = &env.api;
    let (cred, job, record) = whole_server_record(
        api,
        json!({"name": "whole pg", "engine": "postgres",
                "host": "127.0.0.1", "port": pg.port, "user": "backup_admin",
                "password": "at-backup-time"}),
        &["(globals)", "blog", "postgres", "shop"],
    );

    // A database and the roles it needs are gone, another changed, a table of `postgres` too.
    pg.sql("postgres", "DROP DATABASE shop WITH (FORCE)");
    pg.sql(
        "postgres",
        "DROP ROLE shop_owner; DROP ROLE auditor; DROP TABLE notes",
    );
    pg.sql("blog", "DELETE FROM posts WHERE id % 2 = 0");
    assert_ne!(state(), before);

    // In place: roles first, then every database, owners and privileges as they were. The
    // credential was renamed since (the record still knows where its dumps are) and its role's
    // password changed (the restore keeps the new one, or it could not go on).
    pg.sql(
        "postgres",
        "ALTER ROLE backup_admin PASSWORD 'changed-since'",
    );
    let renamed: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"name": "renamed pg", "password": "changed-since"})).unwrap();
    api.update_credential(&cred.id, &renamed).unwrap();
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(state(), before);

    // One database of the whole server into a new one; into a directory, the dumps as files.
    let task = restore(
        api,
        &job.id,
        &record.id,
        json!({"databases": ["blog"], "target_database": "blog_copy"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(pg.sql("blog_copy", "SELECT count(*) FROM posts"), "3000");
    let task = restore(api, &job.id, &record.id, json!({"target": "files"}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let files = env.dir.path().join("data/files/postgres/whole pg");
    let globals = std::fs::read_to_string(files.join("globals.sql")).unwrap();
    assert!(globals.contains("CREATE ROLE shop_owner"), "{globals}");
    assert!(files.join("shop.dump").is_file());
    let (status, message) = err(api.restore_record(
        &job.id,
        &record.id,
        &serde_json::from_value(json!({"databases": ["nope"]})).unwrap(),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(env.server.stop().success());
}

#[test]
fn a_whole_mariadb_server_comes_back_with_its_users_and_databases() {
    let my = coffer_testkit::MyInstance::start();
    my.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name TEXT);
         INSERT INTO shop.items VALUES (1, 'kettle'), (2, 'théière'), (3, NULL);
         CREATE DATABASE blog; CREATE TABLE blog.posts (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT);
         INSERT INTO blog.posts (body) VALUES ('one'), ('two'), ('three'), ('four');
         CREATE USER 'reader'@'%' IDENTIFIED BY 'reader-secret';
         GRANT SELECT ON shop.* TO 'reader'@'%';",
    );
    let state = || {
        [
            my.sql("CHECKSUM TABLE shop.items, blog.posts"),
            my.sql("SHOW GRANTS FOR 'reader'@'%'"),
        ]
        .join("\n")
    };
    let before = state();
    let env = start();
    let api = &env.api;
    let (_, job, record) = whole_server_record(
        api,
        json!({"name": "whole mariadb", "engine": "mysql",
                "host": "127.0.0.1", "port": my.port, "user": "root"}),
        &["(globals)", "blog", "shop"],
    );
    assert_eq!(
        record.backup_tool.as_deref(),
        Some("mariadb-dump, mydumper"),
        "mariadb-dump dumps the accounts, mydumper the databases where it is installed \
         (scripts/test installs it): {record:?}"
    );

    my.sql("DROP DATABASE shop; DROP USER 'reader'@'%'; DELETE FROM blog.posts WHERE id > 2");
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(state(), before);
    // The restored user logs in with the password it had.
    let out = std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &my.port.to_string(),
        ])
        .args([
            "-u",
            "reader",
            "-N",
            "-B",
            "-e",
            "SELECT name FROM shop.items WHERE id = 2",
        ])
        .env("MYSQL_PWD", "reader-secret")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "théière",
        "{out:?}"
    );
    // Into a directory: mydumper's files, as myloader reads them.
    let task = restore(api, &job.id, &record.id, json!({"target": "files"}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let files = env.dir.path().join("data/files/mysql/whole mariadb");
    let items = std::fs::read(files.join("shop.mydumper/shop.items.sql")).unwrap();
    assert!(items.windows(6).any(|w| w == b"kettle"), "{items:?}");
    assert!(files.join("%globals.sql").is_file());
    assert!(env.server.stop().success());
}

#[test]
fn mydumper_failures_fail_the_record_and_keep_the_good_ones() {
    mariadb_failures("mydumper");
}

#[test]
fn mariadb_dump_failures_fail_the_record_and_keep_the_good_ones() {
    mariadb_failures("mariadb-dump");
}

/// With `tool`: a wrong password fails a record; the server killed while the dump waits for a
/// lock fails one too, and the good record before it still verifies.
fn mariadb_failures(tool: &str) {
    let mut my = coffer_testkit::MyInstance::start();
    my.sql(
        "SET SESSION max_recursive_iterations = 100000;
         CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB;
         INSERT INTO app.t WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10000)
           SELECT n, MD5(n) FROM s;",
    );
    let env = start();
    let api = &env.api;
    let (cred, job) = database_job(
        api,
        json!({"name": "own mariadb", "engine": "mysql",
                "host": "127.0.0.1", "port": my.port, "user": "coffer",
                "password": "not the password"}),
        json!({"name": "app", "schedule": null}),
        json!({"database": "app", "backup_tool": tool}),
    );
    let failed = run_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    let error = failed.error.unwrap();
    assert!(error.contains("Access denied"), "{error}");

    let right: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"password": coffer_testkit::MY_PASSWORD})).unwrap();
    api.update_credential(&cred.id, &right).unwrap();
    let good = run_to_end(api, &job.id);
    assert_eq!(good.status, RecordStatus::Success, "{good:?}");

    // The server killed in the middle of a dump: the dump waits for a table another session
    // has locked, then the server goes away.
    let locker = std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &my.port.to_string(),
            "-u",
            "root",
        ])
        .args(["-e", "LOCK TABLES app.t WRITE; DO SLEEP(60);"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A session in `state`, or `why` not.
    let waiting = |state: &str, why: &str| match my
        .sql(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE '{state}%'"
        ))
        .as_str()
    {
        "0" => Err(why.to_string()),
        _ => Ok(()),
    };
    wait_until(Duration::from_secs(10), || {
        waiting("User sleep", "the lock was not taken")
    });
    let started = api.run_job(&job.id).unwrap();
    wait_until(Duration::from_secs(20), || {
        // The table lock (mariadb-dump) or the global read lock (mydumper).
        waiting("Waiting for", "the dump never waited for the lock")
    });
    my.kill();
    let stopped = api.wait_record(&job.id, &started.id, LONG).unwrap();
    assert_eq!(stopped.status, RecordStatus::Failed, "{stopped:?}");
    assert!(
        stopped.error.as_deref().unwrap().contains(tool),
        "{stopped:?}"
    );
    let mut locker = locker;
    let _ = locker.kill();
    let _ = locker.wait();
    assert!(api.verify_record(&job.id, &good.id).unwrap().ok);
    assert!(env.server.stop().success());
}

/// Back `db` up (tables `debit` and `credit`, already filled) with `credential` and the source
/// fields `source` (its `database` is `db`) while a writer
/// commits one row into each table per transaction, with `pause` (SQL) between the two inserts;
/// restore it as `copy` and check that every transaction is there whole, or not at all.
fn assert_whole_transactions(
    credential: serde_json::Value,
    source: serde_json::Value,
    db: &str,
    copy: &str,
    sql: fn(&str, &str) -> String,
    pause: &'static str,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (name, stop) = (db.to_string(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: String = (0..50)
                    .map(|k| {
                        let id = 100_000 + n * 50 + k;
                        format!(
                            "START TRANSACTION; INSERT INTO debit VALUES ({id}, 1); \
                             {pause}; INSERT INTO credit VALUES ({id}, 1); COMMIT;"
                        )
                    })
                    .collect();
                sql(&name, &batch);
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let env = start();
    let api = &env.api;
    let (_, job) = database_job(
        api,
        credential,
        json!({"name": "ledger", "schedule": null}),
        source,
    );
    let record = run_to_end(api, &job.id);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    let task = restore(api, &job.id, &record.id, json!({"target_database": copy}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let unmatched = sql(
        copy,
        "SELECT (SELECT COUNT(*) FROM debit d LEFT JOIN credit c USING (id) WHERE c.id IS NULL)
              + (SELECT COUNT(*) FROM credit c LEFT JOIN debit d USING (id) WHERE d.id IS NULL)",
    );
    assert_eq!(
        unmatched, "0",
        "every transaction is in the backup whole, or not at all"
    );
    assert!(
        sql(copy, "SELECT COUNT(*) FROM debit")
            .parse::<u64>()
            .unwrap()
            >= 50_000
    );
    assert!(env.server.stop().success());
}

#[test]
fn a_postgres_backup_never_holds_half_a_transaction() {
    let db = PgDatabase::new("tx");
    psql(
        &db.0,
        "CREATE TABLE debit (id bigint PRIMARY KEY, amount int NOT NULL);
         CREATE TABLE credit (id bigint PRIMARY KEY, amount int NOT NULL);
         INSERT INTO debit SELECT i, i FROM generate_series(1, 50000) i;
         INSERT INTO credit SELECT i, i FROM generate_series(1, 50000) i;",
    );
    let copy = PgDatabase(format!("{}_restored", db.0));
    assert_whole_transactions(
        json!({"name": "pg", "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}),
        json!({"database": db.0}),
        &db.0,
        &copy.0,
        psql,
        "SELECT pg_sleep(0.001)",
    );
}

#[test]
fn a_mydumper_backup_never_holds_half_a_transaction() {
    mariadb_whole_transactions("mydumper");
}

#[test]
fn a_mariadb_dump_backup_never_holds_half_a_transaction() {
    mariadb_whole_transactions("mariadb-dump");
}

fn mariadb_whole_transactions(tool: &str) {
    let db = MyDatabase::new("tx");
    mariadb(
        &db.0,
        "CREATE TABLE debit (id BIGINT PRIMARY KEY, amount INT NOT NULL) ENGINE=InnoDB;
         CREATE TABLE credit (id BIGINT PRIMARY KEY, amount INT NOT NULL) ENGINE=InnoDB;
         INSERT INTO debit SELECT seq, seq FROM seq_1_to_50000;
         INSERT INTO credit SELECT seq, seq FROM seq_1_to_50000;",
    );
    let copy = MyDatabase(format!("{}_restored", db.0));
    assert_whole_transactions(
        json!({"name": "my", "engine": "mysql", "host": "127.0.0.1", "user": "root"}),
        json!({"database": db.0, "backup_tool": tool}),
        &db.0,
        &copy.0,
        mariadb,
        "DO SLEEP(0.001)",
    );
}

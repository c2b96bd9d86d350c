//! Running jobs: create and validate, run, records, verify, download, delete, failing
//! sources, a server killed during a run, missed schedules, retention, SQLite sources, damage.

use super::*;

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
    assert_eq!(
        code(api.run_job(&job.id)),
        (StatusCode::CONFLICT, "job_running".into())
    );
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
            json!({"sources": [{"type": "path", "path": "/srv", "exclude": ["[unclosed"]}]}),
            "sources",
        ),
        // A database taken twice through one credential, by name and by a whole server.
        (
            json!({"sources": [{"type": "mysql", "credential_id": "c", "database": "shop"},
                               {"type": "mysql", "credential_id": "c", "all": true}]}),
            "sources: database sources through credential \"c\" overlap",
        ),
        (
            json!({"sources": [{"type": "postgres", "credential_id": "c", "database": "app"},
                               {"type": "postgres", "credential_id": "c", "database": "app"}]}),
            "sources: database sources through credential \"c\" overlap",
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
            Some(
                &json!({"name": "x", "sources": [{"type": "mysql", "credential_id": "c",
                                                   "database": "a", "backup_tool": "pg_dump"}]}),
            ),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text.contains("mariadb-dump"), "{}", r.text);
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
    env.api.delete_job(&job.id, true).unwrap();
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
    let key = api.repository_key().unwrap().key;
    let out = std::process::Command::new(BIN)
        .args(["--json", "--repo", dest, "snapshots"])
        .env("COFFER_PASSWORD", key)
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
    // regular records, and the safety record too — listed on its own, never as a backup.
    let latest = good.last().unwrap().id.clone();
    let task = restore(&env.api, &job.id, &latest, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    std::fs::write(src.join("a.txt"), "version 4").unwrap();
    let newest = run_to_end(&env.api, &job.id);
    assert_eq!(newest.status, RecordStatus::Success, "{newest:?}");
    let listed = |trigger: Option<&str>| -> Vec<(String, String)> {
        let f = RecordFilter {
            trigger: trigger.map(str::to_string),
            ..RecordFilter::default()
        };
        env.api
            .records(&job.id, &f)
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.trigger))
            .collect()
    };
    assert_eq!(
        listed(None),
        vec![
            (newest.id.clone(), "manual".to_string()),
            (latest.clone(), "manual".to_string())
        ]
    );
    let safety = listed(Some("pre_restore"));
    assert_eq!(safety.len(), 1, "{safety:?}");
    assert_eq!(Some(&safety[0].0), task.safety_record_id.as_ref());
    assert_eq!(listed(Some("all")).len(), 3);

    // A failed run removes nothing good.
    let moved = env.dir.path().join("moved");
    std::fs::rename(&src, &moved).unwrap();
    let failed = run_to_end(&env.api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    let all = env.api.records(&job.id, &RecordFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter()
            .filter(|r| r.status == RecordStatus::Success)
            .count(),
        2
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
            .any(|l| l.contains("status=\"success\"") && l.ends_with(" 5")),
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

/// Stop the server, move every job's last acted-on schedule times (backups and drills) `hours`
/// back (as if the server had been down), and start it again: due jobs fire at once, by their
/// schedules.
pub(super) fn restart_after_missed_slots(
    dir: &TempDir,
    server: ServerProcess,
    hours: i64,
) -> ServerProcess {
    assert!(server.stop().success());
    let past = (Utc::now() - chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    with_database(&dir.path().join("data/coffer.db"), async |pool| {
        sqlx::query("UPDATE backup_jobs SET scheduled_until = ?1, drill_scheduled_until = ?1")
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
    assert!(scratch_is_empty(dir.path()), "temporary copies are removed");

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

#[test]
fn a_path_source_leaves_out_what_its_excludes_match() {
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job: JobInput = serde_json::from_value(json!({"name": "some", "sources": [
        {"type": "path", "path": src, "exclude": ["*.bin"], "exclude_caches": true}]}))
    .unwrap();
    let job = env.api.create_job(&job).unwrap();
    let record = run_to_end(&env.api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    let (_, archive) = env.api.download_record(&job.id, &record.id).unwrap();
    let names: Vec<String> = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("a.txt")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".bin")), "{names:?}");
    assert!(env.server.stop().success());
}

/// The repository size in `/metrics` is what the repository takes on disk, run after run (a
/// running figure: the repository is listed once, not after every run).
#[test]
fn the_repository_size_follows_each_run() {
    let env = start();
    let src = env.dir.path().join("sized");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "first").unwrap();
    let job = env
        .api
        .create_job(&path_job("sized", &src, json!({})))
        .unwrap();
    let dest = job.dest_path.clone().unwrap();
    for i in 0..3 {
        std::fs::write(
            src.join(format!("added-{i}.bin")),
            seeded(200_000, &i.to_string()),
        )
        .unwrap();
        assert_eq!(run_to_end(&env.api, &job.id).status, RecordStatus::Success);
        let text = env.api.metrics().unwrap();
        let gauge = text
            .lines()
            .find(|l| {
                l.starts_with("coffer_backup_repository_bytes")
                    && l.contains(&format!("job=\"{}\"", job.id))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap();
        let on_disk: u64 = ["config", "keys", "data", "index", "snapshots"]
            .iter()
            .flat_map(|d| sizes(Path::new(&dest).join(d)))
            .sum();
        assert_eq!(gauge as u64, on_disk, "after run {i}");
    }
}

/// The sizes of the files at or below `path`.
fn sizes(path: std::path::PathBuf) -> Vec<u64> {
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(&path)
            .unwrap()
            .flat_map(|e| sizes(e.unwrap().path()))
            .collect(),
        Ok(m) => vec![m.len()],
        Err(_) => vec![],
    }
}

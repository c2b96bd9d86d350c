//! Restore drills: a job's newest backup restored into a throwaway place and compared with
//! what was backed up — passing on a good record, failing with what differs on a damaged one,
//! never touching the sources, one at a time per job.

use super::*;

#[test]
fn a_drill_proves_a_good_backup_restorable_and_names_what_a_damaged_one_lost() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 8);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();

    // Nothing to drill yet.
    let (status, c) = code(api.drill(&job.id));
    assert_eq!(
        (status, c.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success);
    let before = std::fs::read(src.join("sub/big.bin")).unwrap();

    let first = api.drill(&job.id).unwrap();
    assert_eq!(
        (first.status, first.record_id.as_str()),
        (RecordStatus::Running, record.id.as_str())
    );
    // One at a time: a second while the first runs is refused.
    match api.drill(&job.id) {
        Err(e) => {
            let (status, c) = code::<()>(Err(e));
            assert_eq!(
                (status, c.as_str()),
                (StatusCode::CONFLICT, "drill_running")
            );
        }
        Ok(second) => {
            // Only when the first had ended already.
            let first = api.drill_of(&job.id, &first.id).unwrap();
            assert_ne!(
                first.status,
                RecordStatus::Running,
                "two drills ran at once"
            );
            api.wait_drill(&job.id, &second.id, LONG).unwrap();
        }
    }
    let passed = api.wait_drill(&job.id, &first.id, LONG).unwrap();
    assert_eq!(passed.status, RecordStatus::Success, "{passed:?}");
    assert_eq!(passed.phase, "complete");
    assert!(
        passed.restore_ms.is_some() && passed.finished_at.is_some(),
        "{passed:?}"
    );
    assert_eq!(passed.checks.len(), 1, "{passed:?}");
    let check = &passed.checks[0];
    assert!(check.ok && check.check.ends_with("/src"), "{check:?}");
    // The tree, a.txt, sub, sub/big.bin, link.
    assert!(check.detail.starts_with("5 entries compared"), "{check:?}");
    assert!(
        scratch_is_empty(env.dir.path()),
        "the drill's scratch directory is gone"
    );
    // The job says when its data was last proven restorable and what a restore takes; so
    // does /metrics.
    let summary = api.job(&job.id).unwrap();
    assert_eq!(summary.last_drill_status, Some(RecordStatus::Success));
    assert_eq!(summary.last_proven_restorable_at, Some(record.started_at));
    assert_eq!(summary.last_restore_ms, passed.restore_ms);
    let text = api.metrics().unwrap();
    for name in [
        "coffer_backup_last_proven_restorable_timestamp_seconds",
        "coffer_backup_restore_drill_duration_seconds",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains(&format!("job=\"{}\"", job.id))),
            "{name} in {text}"
        );
    }

    // A flipped byte in the packs: the drill fails, naming the file it could not get back.
    for (pack, _) in packs(job.dest_path.as_deref().unwrap())
        .into_iter()
        .filter(|(_, size)| *size > 1 << 20)
    {
        let mut bytes = std::fs::read(&pack).unwrap();
        // Inside the big file's data (the packs of trees are small).
        bytes[4096] ^= 1;
        std::fs::write(&pack, bytes).unwrap();
    }
    let damaged = api.drill(&job.id).unwrap();
    let failed = api.wait_drill(&job.id, &damaged.id, LONG).unwrap();
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("big.bin") || error.contains("a.txt"),
        "{failed:?}"
    );
    assert!(scratch_is_empty(env.dir.path()));
    let summary = api.job(&job.id).unwrap();
    assert_eq!(summary.last_drill_status, Some(RecordStatus::Failed));
    assert_eq!(
        summary.last_proven_restorable_at,
        Some(record.started_at),
        "what was proven stays proven"
    );
    // The sources were never touched.
    assert_eq!(std::fs::read(src.join("sub/big.bin")).unwrap(), before);

    // The history, newest first.
    let all = api.drills(&job.id).unwrap();
    assert_eq!(all[0].id, damaged.id);
    assert!(all.iter().any(|d| d.id == first.id));
    assert_eq!(code(api.drill_of(&job.id, "nope")).0, StatusCode::NOT_FOUND);
    assert!(env.server.stop().success());
}

#[test]
fn a_drill_of_a_docker_volume_compares_everything_it_held() {
    let vol = super::volumes::Volume::new(&[]);
    super::volumes::fill_volume(&vol.0);
    let env = start();
    let api = &env.api;
    let job: JobInput =
        serde_json::from_value(json!({"name": "volume", "volumes": [vol.0]})).unwrap();
    let job = api.create_job(&job).unwrap();
    assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Success);
    let drill = api.drill(&job.id).unwrap();
    let done = api.wait_drill(&job.id, &drill.id, LONG).unwrap();
    assert_eq!(done.status, RecordStatus::Success, "{done:?}");
    let check = &done.checks[0];
    assert_eq!(check.check, format!("files of volume {}", vol.0));
    // The volume's root, app, a.txt, sub, big.bin, link, hard, private, empty.
    assert!(check.detail.starts_with("9 entries compared"), "{check:?}");
    assert!(scratch_is_empty(env.dir.path()));
    assert!(env.server.stop().success());
}

#[test]
fn a_drill_of_a_sqlite_database_checks_its_integrity_and_its_rows() {
    let env = start();
    let db = sqlite_db(
        env.dir.path(),
        &[
            "CREATE TABLE orders (n INTEGER)",
            "INSERT INTO orders VALUES (1), (2), (3)",
            "CREATE TABLE notes (t TEXT)",
            "INSERT INTO notes VALUES ('a'), ('b')",
        ],
    );
    let input: JobInput =
        serde_json::from_value(json!({"name": "db", "sources": [{"type": "sqlite", "path": db}]}))
            .unwrap();
    let job = env.api.create_job(&input).unwrap();
    assert_eq!(run_to_end(&env.api, &job.id).status, RecordStatus::Success);
    let drill = env.api.drill(&job.id).unwrap();
    let done = env.api.wait_drill(&job.id, &drill.id, LONG).unwrap();
    assert_eq!(done.status, RecordStatus::Success, "{done:?}");
    let checks: Vec<(&str, bool, &str)> = done
        .checks
        .iter()
        .map(|c| (c.check.as_str(), c.ok, c.detail.as_str()))
        .collect();
    let path = db.display().to_string();
    assert_eq!(
        checks,
        [
            (
                format!("integrity of {path}").as_str(),
                true,
                "PRAGMA integrity_check: ok"
            ),
            (
                format!("rows of {path}").as_str(),
                true,
                "2 tables, 5 rows, as at backup time"
            ),
        ]
    );
    let left: Vec<_> = std::fs::read_dir(env.dir.path().join("data/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(scratch_is_empty(env.dir.path()), "{left:?}");
    assert!(env.server.stop().success());
}

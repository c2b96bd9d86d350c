//! Restore drills: a job's newest backup restored into a throwaway place and compared with
//! what was backed up — passing on a good record, failing with what differs on a damaged one,
//! never touching the sources, one at a time per job.

use super::databases::{MyDatabase, PgDatabase, database_job, mariadb, psql};
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
    flip_a_byte_in_data_packs(job.dest_path.as_deref().unwrap());
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
    // Damaged after the backup: the drill fails, naming the file.
    flip_a_byte_in_data_packs(job.dest_path.as_deref().unwrap());
    let failed = drill_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("big.bin"),
        "{failed:?}"
    );
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
            "CREATE TABLE blobs (b BLOB)",
            "INSERT INTO blobs VALUES (randomblob(3000000))",
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
                "3 tables, 6 rows, as at backup time"
            ),
        ]
    );
    // Damaged after the backup: the drill fails, naming the database file.
    flip_a_byte_in_data_packs(job.dest_path.as_deref().unwrap());
    let failed = drill_to_end(&env.api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    let name = db.file_name().unwrap().to_str().unwrap();
    assert!(
        failed.error.as_deref().unwrap_or_default().contains(name),
        "{failed:?}"
    );
    let left: Vec<_> = std::fs::read_dir(env.dir.path().join("data/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(scratch_is_empty(env.dir.path()), "{left:?}");
    assert!(env.server.stop().success());
}

/// Whether database `name` exists on the machine's PostgreSQL.
fn pg_has(name: &str) -> bool {
    psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == "1"
}

#[test]
fn a_drill_of_a_postgres_database_restores_it_beside_the_original_and_counts_its_rows() {
    let db = PgDatabase::new("drill");
    psql(
        &db.0,
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id int PRIMARY KEY, note text);
         INSERT INTO shop.orders
           SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 40000) i;",
    );
    let env = start();
    let api = &env.api;
    let (_, job) = database_job(
        api,
        json!({"name": "pg", "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}),
        json!({"name": "pg drill", "schedule": null}),
        json!({"database": db.0}),
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    let rows = record.databases[0].rows.clone().expect("rows counted");
    assert_eq!(
        rows,
        [
            ("public.customers".to_string(), 3),
            ("shop.orders".to_string(), 40000)
        ]
        .into()
    );
    let passed = drill_to_end(api, &job.id);
    assert_eq!(passed.status, RecordStatus::Success, "{passed:?}");
    assert_eq!(
        checks(&passed),
        [(
            format!("rows of database {}", db.0),
            true,
            "2 tables, 40003 rows, as at backup time".to_string()
        )]
    );
    assert!(passed.restore_ms.is_some());
    let scratch = format!("coffer_drill_{}", passed.id);
    assert!(!pg_has(&scratch), "the scratch database is dropped");
    // The original was left alone.
    assert_eq!(psql(&db.0, "SELECT count(*) FROM shop.orders"), "40000");

    // A flipped byte in the dump's packs: the drill fails, and drops its scratch database.
    flip_a_byte_in_data_packs(job.dest_path.as_deref().unwrap());
    let failed = drill_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains(&format!("{}.dump", db.0)), "{failed:?}");
    assert!(!pg_has(&format!("coffer_drill_{}", failed.id)));

    // A scratch database a crash left is dropped at start-up; one of another name stays.
    assert!(env.server.stop().success());
    let other = PgDatabase(format!("coffer_drill_{}", "0".repeat(32)));
    psql("postgres", &format!("CREATE DATABASE {scratch}"));
    psql("postgres", &format!("CREATE DATABASE {}", other.0));
    let server = start_in(&env.dir);
    wait_until(LONG, || match pg_has(&scratch) {
        true => Err(format!("{scratch} is still there")),
        false => Ok(()),
    });
    assert!(
        pg_has(&other.0),
        "only databases of this server's drills are dropped"
    );
    assert!(server.stop().success());
}

#[test]
fn a_drill_of_a_mariadb_database_names_the_table_its_dump_left_out() {
    let db = MyDatabase::new("drill");
    mariadb(
        &db.0,
        "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT) ENGINE=InnoDB;
         INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE TABLE audit (id INT PRIMARY KEY) ENGINE=InnoDB;
         INSERT INTO audit VALUES (1), (2);
         CREATE TABLE ledger (id INT PRIMARY KEY, note TEXT) ENGINE=InnoDB;
         INSERT INTO ledger SELECT seq, CONCAT(md5(seq), md5(seq * 7)) FROM seq_1_to_40000;",
    );
    // The node's own option file has mariadb-dump leave a table out; mydumper does not read it.
    let home = tempdir().unwrap();
    std::fs::write(
        home.path().join(".my.cnf"),
        format!("[mariadb-dump]\nignore-table={}.audit\n", db.0),
    )
    .unwrap();
    let env = start_with(
        tempdir().unwrap(),
        &[("HOME", home.path().to_str().unwrap())],
    );
    let api = &env.api;
    let cred = json!({"name": "my", "engine": "mysql", "host": "127.0.0.1", "user": "root"});
    let (cred, dumped) = database_job(
        api,
        cred,
        json!({"name": "mariadb-dump", "schedule": null}),
        json!({"database": db.0, "backup_tool": "mariadb-dump"}),
    );
    let source = json!({"type": "mysql", "credential_id": cred.id, "database": db.0,
                        "backup_tool": "mydumper"});
    let input = json!({"name": "mydumper", "sources": [source]});
    let loaded = api
        .create_job(&serde_json::from_value(input).unwrap())
        .unwrap();
    let counted: std::collections::BTreeMap<String, u64> = [
        ("audit".to_string(), 2),
        ("customers".to_string(), 3),
        ("ledger".to_string(), 40000),
    ]
    .into();
    for job in [&dumped, &loaded] {
        let record = run_to_end(api, &job.id);
        assert_eq!(record.status, RecordStatus::Success, "{record:?}");
        assert_eq!(
            record.databases[0].rows.as_ref(),
            Some(&counted),
            "{}",
            job.name
        );
    }
    let what = format!("rows of database {}", db.0);
    let failed = drill_to_end(api, &dumped.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    assert_eq!(
        checks(&failed),
        [(
            what.clone(),
            false,
            "table audit is missing (2 rows at backup time)".to_string()
        )]
    );
    let passed = drill_to_end(api, &loaded.id);
    assert_eq!(passed.status, RecordStatus::Success, "{passed:?}");
    assert_eq!(
        checks(&passed),
        [(
            what,
            true,
            "3 tables, 40005 rows, as at backup time".to_string()
        )]
    );
    for d in [&failed, &passed] {
        let scratch = format!("coffer_drill_{}", d.id);
        let left = mariadb("", &format!("SHOW DATABASES LIKE '{scratch}'"));
        assert_eq!(left, "", "the scratch database is dropped");
    }
    assert_eq!(mariadb(&db.0, "SELECT COUNT(*) FROM audit"), "2");
    // Damaged after the backup: the drill fails, naming the dump, and drops its database.
    flip_a_byte_in_data_packs(loaded.dest_path.as_deref().unwrap());
    let damaged = drill_to_end(api, &loaded.id);
    assert_eq!(damaged.status, RecordStatus::Failed, "{damaged:?}");
    let error = damaged.error.clone().unwrap_or_default();
    assert!(error.contains(&format!("{}.mydumper", db.0)), "{damaged:?}");
    let scratch = format!("coffer_drill_{}", damaged.id);
    let left = mariadb("", &format!("SHOW DATABASES LIKE '{scratch}'"));
    assert_eq!(left, "", "the scratch database is dropped");
    assert!(env.server.stop().success());
}

#[test]
fn a_drill_schedule_drills_the_newest_backup_by_itself() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 1);
    let job = api
        .create_job(&path_job("weekly", &src, json!({})))
        .unwrap();
    assert_eq!(
        (&job.drill_schedule, job.next_drill),
        (&None, None),
        "off by default"
    );
    let change = |expr: &str| JobUpdate {
        drill_schedule: Some(expr.to_string()),
        ..JobUpdate::default()
    };
    match api.update_job(&job.id, &change("61 * * * *")) {
        Err(ClientError::Api { status, body, .. }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(body.error.starts_with("drill_schedule"), "{body:?}");
        }
        other => panic!("a bad drill schedule was taken: {other:?}"),
    }
    // Weekly, on Sundays at 04:00.
    let job = api.update_job(&job.id, &change("0 4 * * 0")).unwrap();
    let next = job.next_drill.expect("the next drill");
    assert_eq!(next.format("%a %H:%M").to_string(), "Sun 04:00");
    let record = run_to_end(api, &job.id);

    // As if the server had been down for eight days: the missed drill runs at start-up.
    let Env { dir, server, .. } = env;
    let server = super::runs::restart_after_missed_slots(&dir, server, 24 * 8);
    let api = login(&server);
    let drilled = wait_until(LONG, || {
        let done: Vec<_> = api
            .drills(&job.id)
            .unwrap()
            .into_iter()
            .filter(|d| d.status != RecordStatus::Running)
            .collect();
        match done.as_slice() {
            [] => Err("no drill yet".to_string()),
            [one] => Ok(one.clone()),
            more => Err(format!("missed drills ran more than once: {more:?}")),
        }
    });
    assert_eq!(drilled.status, RecordStatus::Success, "{drilled:?}");
    assert_eq!(drilled.record_id, record.id);
    let job = api.job(&job.id).unwrap();
    assert_eq!(job.last_proven_restorable_at, Some(record.started_at));
    assert_eq!(job.next_drill, Some(next), "the next one is on schedule");
    // Emptying the schedule turns it off.
    let job = api.update_job(&job.id, &change("")).unwrap();
    assert_eq!((job.drill_schedule, job.next_drill), (None, None));
    assert!(server.stop().success());
}

//! Database credentials and PostgreSQL / MySQL-MariaDB sources against real servers.

use super::*;

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
        let (status, msg) = err(api.create_resource::<Credential>(&input(extra)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let c = api
        .create_resource::<Credential>(&input(json!({})))
        .unwrap();
    assert!(c.has_password && c.port == 5432, "{c:?}");
    assert_eq!(
        err(api.create_resource::<Credential>(&input(json!({})))).0,
        StatusCode::CONFLICT
    );
    let listed = api.raw("GET", "/api/credentials", None).unwrap();
    assert!(listed.text.contains(&c.id) && !listed.text.contains(secret));

    // A socket replaces the host; an empty password removes it.
    let u: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"socket": "/run/postgresql", "password": ""})).unwrap();
    let c = api.update_resource::<Credential>(&c.id, &u).unwrap();
    assert!(c.host.is_none() && !c.has_password, "{c:?}");
    let u: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"password": secret})).unwrap();
    assert!(
        api.update_resource::<Credential>(&c.id, &u)
            .unwrap()
            .has_password
    );
    for f in ["coffer.db", "coffer.db-wal"] {
        let bytes = std::fs::read(env.dir.path().join("data").join(f)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the password is readable in {f}"
        );
    }
    api.delete_resource::<Credential>(&c.id).unwrap();
    assert_eq!(
        err(api.resource::<Credential>(&c.id)).0,
        StatusCode::NOT_FOUND
    );
    assert!(!env.server.log().contains(secret));
    assert!(env.server.stop().success());
}

/// A credential (`credential`, JSON) and a job (`job`, JSON) with one database source through
/// it: `source` gives the source's other fields (`{"database": …}` or `{"all": true}`, and
/// `backup_tool`).
pub(super) fn database_job(
    api: &Client,
    credential: serde_json::Value,
    mut job: serde_json::Value,
    mut source: serde_json::Value,
) -> (Credential, coffer_types::Job) {
    let cred = api
        .create_resource::<Credential>(&serde_json::from_value(credential).unwrap())
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
fn assert_missing_database_fails(api: &Client, cred: &Credential, tool: &str) {
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
pub(super) fn psql(db: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
        .output()
        .expect("psql is installed (PostgreSQL client)");
    coffer_testkit::sql_output(out)
        .unwrap_or_else(|e| panic!("psql {sql}: {e} (is PostgreSQL running on 127.0.0.1:5432?)"))
}

/// A database of the test's own, dropped at the end.
pub(super) struct PgDatabase(pub(super) String);

impl PgDatabase {
    pub(super) fn new(tag: &str) -> PgDatabase {
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
    assert_eq!(task.target, format!("database {}", copy.0));
    assert_eq!(pg_checksums(&copy.0), original);
    assert_eq!(pg_checksums(&db.0), before);

    assert_missing_database_fails(api, &cred, "pg_dump");
    assert_eq!(
        err(api.delete_resource::<Credential>(&cred.id)).0,
        StatusCode::CONFLICT
    );
    assert!(!env.server.log().contains("not-needed-with-trust"));
    assert!(env.server.stop().success());
}

/// The `mariadb` client as root against the machine's MariaDB (127.0.0.1:3306).
pub(super) fn mariadb(db: &str, sql: &str) -> String {
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
    coffer_testkit::sql_output(out)
        .unwrap_or_else(|e| panic!("mariadb {sql}: {e} (is MariaDB running on 127.0.0.1:3306?)"))
}

/// A MariaDB database of the test's own, dropped at the end.
pub(super) struct MyDatabase(pub(super) String);

impl MyDatabase {
    pub(super) fn new(tag: &str) -> MyDatabase {
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
        .create_resource::<Credential>(
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
        scratch_is_empty(env.dir.path()),
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
    api.update_resource::<Credential>(&cred.id, &right).unwrap();
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

/// A record whose dump lost its pack is refused before the database it would replace is
/// dropped (mariadb-dump's restore drops it before the client reads anything): that database
/// stays as it is. The original is gone, so the safety record has nothing to take (and so
/// never trips over the lost pack itself).
#[test]
fn a_lost_pack_stops_a_database_restore_before_anything_is_dropped() {
    let db = MyDatabase::new("lost");
    mariadb(
        &db.0,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB;
         INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_20000;",
    );
    let env = start();
    let api = &env.api;
    let (_, job) = database_job(
        api,
        json!({"name": "my", "engine": "mysql", "host": "127.0.0.1", "user": "root"}),
        json!({"name": "lost", "schedule": null}),
        json!({"database": db.0, "backup_tool": "mariadb-dump"}),
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    // Trees and data live in separate packs; the dump's data is in the largest.
    let (largest, _) = packs(job.dest_path.as_deref().unwrap())
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    std::fs::remove_file(&largest).unwrap();
    mariadb("", &format!("DROP DATABASE {}", db.0));
    let copy = MyDatabase(format!("{}_copy", db.0));
    mariadb("", &format!("CREATE DATABASE {}", copy.0));
    mariadb(
        &copy.0,
        "CREATE TABLE kept (n INT); INSERT INTO kept VALUES (1), (2), (3);",
    );
    let into = |req: serde_json::Value| {
        err(api.restore_record(&job.id, &record.id, &serde_json::from_value(req).unwrap()))
    };
    // An existing database is replaced only when the request says so ...
    let (status, error) = into(json!({"target_database": copy.0}));
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error.contains("\"replace\": true"), "{error}");
    // ... and not at all when the record's data is not all there: that is found first.
    let (status, error) = into(json!({"target_database": copy.0, "replace": true}));
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error.contains("the pack is missing"), "{error}");
    let tasks = api.raw(
        "GET",
        &format!("/api/backup-jobs/{}/restores", job.id),
        None,
    );
    assert_eq!(tasks.unwrap().json(), json!([]), "no restore was started");
    assert_eq!(
        mariadb(&copy.0, "SELECT COUNT(*) FROM kept"),
        "3",
        "the database was left alone"
    );
    assert!(env.server.stop().success());
}

/// Restoring into another database restores that one database and nothing else: files chosen
/// alongside would be written in place without the safety record an in-place restore takes.
#[test]
fn a_restore_into_another_database_takes_that_database_alone() {
    let db = MyDatabase::new("alone");
    mariadb(&db.0, "CREATE TABLE t (n INT); INSERT INTO t VALUES (1);");
    let env = start();
    let api = &env.api;
    let files = env.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), "as recorded").unwrap();
    let (_, job) = database_job(
        api,
        json!({"name": "my", "engine": "mysql", "host": "127.0.0.1", "user": "root"}),
        json!({"name": "alone", "schedule": null}),
        json!({"database": db.0, "backup_tool": "mariadb-dump"}),
    );
    let mut sources = job.sources.clone();
    sources.push(serde_json::from_value(json!({"type": "path", "path": files})).unwrap());
    let update: JobUpdate = serde_json::from_value(json!({"sources": sources})).unwrap();
    api.update_job(&job.id, &update).unwrap();
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    std::fs::write(files.join("a"), "changed since").unwrap();
    let copy = MyDatabase(format!("{}_copy", db.0));
    let (status, error) = err(api.restore_record(
        &job.id,
        &record.id,
        &serde_json::from_value(json!({"paths": [files], "databases": [db.0],
                                       "target_database": copy.0}))
        .unwrap(),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error.starts_with("target_database"), "{error}");
    assert_eq!(
        std::fs::read_to_string(files.join("a")).unwrap(),
        "changed since",
        "nothing was written in place"
    );
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
) -> (Credential, coffer_types::Job, Record) {
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
    api.update_resource::<Credential>(&cred.id, &renamed)
        .unwrap();
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
    let task = restore(
        api,
        &job.id,
        &record.id,
        json!({"target": "restores/files"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let files = env.dir.path().join("data/restores/files/postgres/whole pg");
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
    let task = restore(
        api,
        &job.id,
        &record.id,
        json!({"target": "restores/files"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let files = env
        .dir
        .path()
        .join("data/restores/files/mysql/whole mariadb");
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
    api.update_resource::<Credential>(&cred.id, &right).unwrap();
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
    // The rows the backup counted are those its dump holds, writes going on or not.
    let counted = record.databases[0].rows.clone().expect("rows counted");
    let tables: Vec<(String, String)> = counted
        .iter()
        .map(|(t, n)| (t.rsplit('.').next().unwrap().to_string(), n.to_string()))
        .collect();
    let restored: Vec<(String, String)> = ["credit", "debit"]
        .iter()
        .map(|t| {
            (
                t.to_string(),
                sql(copy, &format!("SELECT COUNT(*) FROM {t}")),
            )
        })
        .collect();
    assert_eq!(tables, restored);
    // And so a drill of the record passes.
    let drill = drill_to_end(api, &job.id);
    assert_eq!(drill.status, RecordStatus::Success, "{drill:?}");
    assert_eq!(
        checks(&drill),
        [(
            format!("rows of database {db}"),
            true,
            format!(
                "2 tables, {} rows, as at backup time",
                counted.values().sum::<u64>()
            )
        )]
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

#[test]
fn a_damaged_index_file_does_not_stop_a_database_restore() {
    let db = PgDatabase::new("idx");
    psql(
        &db.0,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 5000) i;",
    );
    let sum = || {
        psql(
            &db.0,
            "SELECT count(*) || md5(string_agg(v, ',' ORDER BY id)) FROM t",
        )
    };
    let original = sum();
    let env = start();
    let api = &env.api;
    let (_, job) = database_job(
        api,
        json!({"name": "pg", "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}),
        json!({"name": "idx", "schedule": null}),
        json!({"database": db.0}),
    );
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    // Every index file damaged: the data is still in the packs, which are read instead.
    let index = Path::new(job.dest_path.as_deref().unwrap()).join("index");
    for f in std::fs::read_dir(&index).unwrap() {
        let f = f.unwrap().path();
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&f, bytes).unwrap();
    }
    psql(&db.0, "DELETE FROM t WHERE id % 2 = 0");
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(sum(), original);
    assert!(env.server.stop().success());
}

/// A credential for the test instance `my`, with the fields of `extra` besides.
pub(super) fn mariadb_credential(
    api: &Client,
    my: &coffer_testkit::MyInstance,
    extra: serde_json::Value,
) -> Credential {
    let mut v = json!({
        "name": format!("mariadb {}", my.port), "engine": "mysql", "host": "127.0.0.1",
        "port": my.port, "user": "coffer", "password": coffer_testkit::MY_PASSWORD,
        "tls": "disable"
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    api.create_resource::<Credential>(&serde_json::from_value(v).unwrap())
        .unwrap()
}

#[test]
fn a_mysql_credential_says_whether_its_binary_log_allows_point_in_time_recovery() {
    let env = start();
    for (options, says) in [
        (
            &[][..],
            "point-in-time recovery needs its binary log: the binary log is off",
        ),
        (
            &["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"][..],
            "its binary log allows point-in-time recovery (binlog_format ROW)",
        ),
    ] {
        let my = coffer_testkit::MyInstance::start_with(options);
        let c = mariadb_credential(&env.api, &my, json!({}));
        let check = env
            .api
            .raw("POST", &format!("/api/credentials/{}/test", c.id), None)
            .unwrap()
            .json();
        assert_eq!(check["ok"], true, "{check}");
        assert!(check["detail"].as_str().unwrap().contains(says), "{check}");
    }
}

#[test]
fn a_credentials_binary_log_is_archived_across_restarts_and_its_coverage_told() {
    let my = coffer_testkit::MyInstance::start_with(&[
        "--log-bin=binlog",
        "--server-id=1",
        "--binlog-format=ROW",
    ]);
    my.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)");
    let dir = tempdir().unwrap();
    let server = start_in(&dir);
    let api = login(&server);
    let c = mariadb_credential(&api, &my, json!({"pitr": true}));
    assert!(c.pitr);
    let coverage = |api: &Client| {
        let r = api
            .raw(
                "GET",
                &format!("/api/credentials/{}/pitr/coverage", c.id),
                None,
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        serde_json::from_str::<coffer_types::PitrCoverage>(&r.text).unwrap()
    };
    let archived = |api: &Client, n: u64| {
        wait_until(LONG, || {
            let cov = coverage(api);
            if cov.total_events >= n {
                Ok(cov)
            } else {
                Err(format!("{cov:?}"))
            }
        })
    };
    let first = archived(&api, 2);
    assert!(
        first.available && first.archiving && first.gaps.is_empty(),
        "{first:?}"
    );
    let before = Utc::now() - chrono::TimeDelta::seconds(1);
    for i in 1..=5 {
        my.sql(&format!("INSERT INTO shop.t VALUES ({i})"));
    }
    let grown = archived(&api, first.total_events + 5);
    assert!(grown.latest_event.unwrap() >= before, "{grown:?}");
    let metrics = api.metrics().unwrap();
    assert!(
        metrics.contains(&format!(
            "coffer_pitr_archive_lag_seconds{{credential=\"{}\"",
            c.id
        )),
        "{metrics}"
    );

    // Full backups through the credential record where in the binary log they stand: the
    // baselines recovery replays from.
    for tool in ["mydumper", "mariadb-dump"] {
        let job: JobInput = serde_json::from_value(json!({
            "name": format!("shop by {tool}"),
            "sources": [{"type": "mysql", "credential_id": c.id, "database": "shop", "backup_tool": tool}]
        }))
        .unwrap();
        let job = api.create_job(&job).unwrap();
        let r = run_to_end(&api, &job.id);
        assert_eq!(r.status, RecordStatus::Success, "{r:?}");
        let at = r.databases[0]
            .binlog
            .clone()
            .unwrap_or_else(|| panic!("{tool} recorded no binlog position: {r:?}"));
        let status = my.sql("SHOW MASTER STATUS");
        let mut now = status.split('\t');
        assert_eq!(Some(at.file.as_str()), now.next(), "{tool}: {at:?}");
        let current: u64 = now.next().unwrap().parse().unwrap();
        assert!(
            at.position > 4 && at.position <= current,
            "{tool}: {at:?} {status}"
        );
    }

    // Coffer killed, the server writing and rotating meanwhile: nothing is lost.
    server.kill();
    my.sql("INSERT INTO shop.t VALUES (6); FLUSH BINARY LOGS; INSERT INTO shop.t VALUES (7)");
    let server = start_in(&dir);
    let api = login(&server);
    let after = archived(&api, grown.total_events + 2);
    assert!(after.gaps.is_empty(), "{after:?}");
    assert_eq!(after.oldest_event, first.oldest_event);

    // Stopped: what was archived stays.
    let off: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"pitr": false})).unwrap();
    api.update_resource::<Credential>(&c.id, &off).unwrap();
    let kept = coverage(&api);
    assert!(
        !kept.archiving && kept.total_events == after.total_events,
        "{kept:?}"
    );

    // Only MySQL/MariaDB servers have a binary log to archive.
    let pg: coffer_types::CredentialInput = serde_json::from_value(json!({
        "name": "pg", "engine": "postgres", "host": "127.0.0.1", "user": "postgres", "pitr": true
    }))
    .unwrap();
    let (status, msg) = err(api.create_resource::<Credential>(&pg));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("pitr"), "{msg}");
}

#[test]
fn a_server_without_a_binary_log_says_why_nothing_is_archived() {
    let my = coffer_testkit::MyInstance::start();
    let env = start();
    let c = mariadb_credential(&env.api, &my, json!({"pitr": true}));
    let cov = wait_until(LONG, || {
        let r = env
            .api
            .raw(
                "GET",
                &format!("/api/credentials/{}/pitr/coverage", c.id),
                None,
            )
            .unwrap();
        let cov: coffer_types::PitrCoverage = serde_json::from_str(&r.text).unwrap();
        match &cov.problem {
            Some(_) => Ok(cov),
            None => Err(format!("{cov:?}")),
        }
    });
    assert!(!cov.available, "{cov:?}");
    assert!(cov.problem.unwrap().contains("the binary log is off"));
}

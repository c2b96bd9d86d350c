//! Point-in-time recovery against a real MariaDB server with its binary log on: a writer
//! commits known changes before and after a full backup, and recoveries to chosen seconds give
//! exactly the state of that second — after Coffer was killed and the server restarted on the
//! way, for a whole database and for some tables, refused where the archive or the baselines
//! cannot reach, and across a gap only when asked to; a whole server with its accounts, the
//! archive in S3, while the server restarts, runs without its log and starts its log anew.

use chrono::{DateTime, TimeDelta, Utc};
use coffer_testkit::MyInstance;
use coffer_types::{PitrRequest, PitrRun, PitrStatus};

use super::databases::mariadb_credential;
use super::*;

/// The rows of both tables of `db` on `my`, in order (the reference a recovery must equal).
fn state(my: &MyInstance, db: &str) -> String {
    my.sql(&format!(
        "SELECT * FROM {db}.orders ORDER BY id; SELECT '--'; SELECT * FROM {db}.items ORDER BY id"
    ))
}

fn orders(my: &MyInstance, db: &str) -> String {
    my.sql(&format!("SELECT * FROM {db}.orders ORDER BY id"))
}

/// Wait until the clock has moved past the second of `t`; that second, as a whole.
fn second_over(t: DateTime<Utc>) -> DateTime<Utc> {
    let second = DateTime::from_timestamp(t.timestamp(), 0).unwrap();
    wait_until(Duration::from_secs(3), || {
        match Utc::now() > second + TimeDelta::seconds(1) {
            true => Ok(()),
            false => Err("the clock stands still".into()),
        }
    });
    second
}

/// Whether a binlog follower of credential `id` runs (its command line names its spool).
fn follower_runs(id: &str) -> bool {
    let spool = format!("/pitr/{id}/");
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&spool))
    })
}

/// Wait until the archive of credential `id` holds what the server wrote until now.
fn archived_now(api: &Client, id: &str) {
    let now = Utc::now();
    wait_until(LONG, || {
        let c = api.pitr_coverage(id).map_err(|e| e.to_string())?;
        match c.archived_until.is_some_and(|u| u >= now) {
            true => Ok(()),
            false => Err(format!("the archive does not catch up: {c:?}")),
        }
    });
}

fn ask(target: DateTime<Utc>, extra: serde_json::Value) -> PitrRequest {
    let mut v = json!({ "target_time": target });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

/// Recover to `target` and wait for the result, which must be complete.
fn recover(api: &Client, id: &str, req: &PitrRequest) -> PitrRun {
    let run = api.recover(id, req).unwrap();
    assert_eq!(run.status, PitrStatus::Running, "{run:?}");
    let done = api.wait_pitr(id, &run.id, LONG).unwrap();
    assert_eq!(done.status, PitrStatus::Completed, "{done:?}");
    done
}

/// Restore the record recovery `run` produced into a database `into` of the same server.
fn restore_into(api: &Client, run: &PitrRun, into: &str) {
    let job = run.job_id.as_deref().unwrap();
    let rid = run.record_id.as_deref().unwrap();
    let task = restore(api, job, rid, json!({"target_database": into}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
}

/// The options of a server whose binary log can be archived.
const LOG_BIN: [&str; 3] = ["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"];

/// A MariaDB server with its binary log on and a database `shop` (tables `orders` and
/// `items`), then `more` SQL.
fn shop_server(more: &str) -> MyInstance {
    let my = MyInstance::start_with(&LOG_BIN);
    my.sql(&format!(
        "CREATE DATABASE shop;
         CREATE TABLE shop.orders (id INT PRIMARY KEY, customer VARCHAR(20), total INT);
         CREATE TABLE shop.items (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, sku VARCHAR(20));
         {more}"
    ));
    my
}

#[test]
fn a_database_is_recovered_to_the_second_exactly_through_kills_restarts_and_gaps() {
    let mut my = shop_server(
        "INSERT INTO shop.orders VALUES (1, 'ada', 10), (2, 'bob', 20), (3, 'cy', 30);
         INSERT INTO shop.items (order_id, sku) VALUES (1, 'tea'), (2, 'cup'), (3, 'pot');",
    );
    let Env {
        dir, server, api, ..
    } = start();
    let c = mariadb_credential(&api, &my, json!({"pitr": true}));
    let job: JobInput = serde_json::from_value(json!({
        "name": "shop", "sources": [{"type": "mysql", "credential_id": c.id, "database": "shop"}]
    }))
    .unwrap();
    let job = api.create_job(&job).unwrap();

    // Nothing to start from yet.
    let (status, msg) = code(api.recover(&c.id, &ask(Utc::now(), json!({}))));
    assert_eq!(
        (status, msg.as_str()),
        (StatusCode::BAD_REQUEST, "pitr_no_baseline")
    );

    let baseline = run_to_end(&api, &job.id);
    assert_eq!(baseline.status, RecordStatus::Success, "{baseline:?}");
    // Where in the binary log the backup stands: file and position, and the GTID position.
    let at = baseline.databases[0].binlog.as_ref().unwrap();
    assert!(at.file.starts_with("binlog.") && at.position > 4, "{at:?}");
    assert!(
        at.gtid.as_deref().is_some_and(|g| g.starts_with("0-1-")),
        "{at:?}"
    );
    let before_baseline = baseline.started_at - TimeDelta::seconds(1);
    second_over(baseline.finished_at.unwrap());

    // t1: inserts, updates and deletes across both tables after the backup.
    my.sql(
        "INSERT INTO shop.orders VALUES (4, 'dee', 40);
         UPDATE shop.orders SET total = total + 1 WHERE id = 2;
         DELETE FROM shop.orders WHERE id = 3;
         INSERT INTO shop.items (order_id, sku) VALUES (4, 'jam');
         DELETE FROM shop.items WHERE order_id = 3;",
    );
    let at_t1 = state(&my, "shop");
    let t1 = second_over(Utc::now());

    // Later changes a recovery to t1 must not hold.
    my.sql(
        "UPDATE shop.orders SET total = 0;
         DELETE FROM shop.items WHERE order_id = 1;
         INSERT INTO shop.orders VALUES (5, 'eve', 50);",
    );

    // Coffer killed and the server restarted meanwhile, writing and rotating its log: no
    // event is lost.
    server.kill();
    my.sql("INSERT INTO shop.orders VALUES (6, 'fay', 60); FLUSH BINARY LOGS;");
    my.restart();
    my.sql("UPDATE shop.items SET sku = 'mug' WHERE order_id = 2; INSERT INTO shop.orders VALUES (7, 'gus', 70);");
    let at_t2 = state(&my, "shop");
    let t2 = second_over(Utc::now());
    my.sql("DELETE FROM shop.orders WHERE id = 7;");
    let server = start_in(&dir);
    let api = login(&server);
    archived_now(&api, &c.id);

    let coverage = api.pitr_coverage(&c.id).unwrap();
    assert!(coverage.gaps.is_empty(), "{coverage:?}");
    assert_eq!(coverage.baselines.len(), 1, "{coverage:?}");
    assert_eq!(coverage.baselines[0].record_id, baseline.id);
    assert_eq!(coverage.baselines[0].databases, ["shop"]);

    // Refused with their reasons.
    for (target, expected) in [
        (Utc::now() + TimeDelta::hours(1), "pitr_in_future"),
        (before_baseline, "pitr_no_baseline"),
    ] {
        let (status, msg) = code(api.recover(&c.id, &ask(target, json!({}))));
        assert_eq!((status, msg.as_str()), (StatusCode::BAD_REQUEST, expected));
    }
    let (status, msg) = code(api.recover(&c.id, &ask(t1, json!({"tables": "orders"}))));
    assert_eq!(
        (status, msg.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );

    // To t2, the whole database; a second recovery while it runs is refused.
    let run = api.recover(&c.id, &ask(t2, json!({}))).unwrap();
    let (status, msg) = code(api.recover(&c.id, &ask(t1, json!({}))));
    assert_eq!(
        (status, msg.as_str()),
        (StatusCode::CONFLICT, "pitr_running")
    );
    let done = api.wait_pitr(&c.id, &run.id, LONG).unwrap();
    assert_eq!(done.status, PitrStatus::Completed, "{done:?}");
    assert_eq!(done.phase, "complete");
    assert_eq!(done.target_time, t2);
    assert_eq!(
        done.baseline_record_id.as_deref(),
        Some(baseline.id.as_str())
    );
    assert_eq!(done.job_id.as_deref(), Some(job.id.as_str()));
    assert_eq!(done.file_count, Some(1));
    assert!(
        done.size_bytes.unwrap() > 0 && done.duration_ms.is_some(),
        "{done:?}"
    );
    let record = api
        .record(&job.id, done.record_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(record.trigger, "pitr");
    assert_eq!(record.databases[0].point_in_time, Some(t2));
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);
    restore_into(&api, &done, "shop_at_t2");
    assert_eq!(state(&my, "shop_at_t2"), at_t2);

    // To t1, before all that.
    let done = recover(
        &api,
        &c.id,
        &ask(t1 + TimeDelta::milliseconds(999), json!({})),
    );
    assert_eq!(done.target_time, t1, "the second, its fraction dropped");
    restore_into(&api, &done, "shop_at_t1");
    assert_eq!(state(&my, "shop_at_t1"), at_t1);

    // Only the orders of t1: restored in place, they replace that table alone.
    let items_now = my.sql("SELECT * FROM shop.items ORDER BY id");
    let done = recover(&api, &c.id, &ask(t1, json!({"tables": "shop.orders"})));
    assert_eq!(done.tables_filter.as_deref(), Some("shop.orders"));
    let rid = done.record_id.as_deref().unwrap();
    let record = api.record(&job.id, rid).unwrap();
    assert_eq!(record.databases[0].tables, ["orders"]);
    let task = restore(&api, &job.id, rid, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(orders(&my, "shop"), orders(&my, "shop_at_t1"));
    assert_eq!(my.sql("SELECT * FROM shop.items ORDER BY id"), items_now);

    // The history, newest first, with its filters.
    let all = api.pitr_runs(&c.id, None, None).unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0].tables_filter.as_deref(), Some("shop.orders"));
    assert_eq!(
        api.pitr_runs(&c.id, Some(PitrStatus::Completed), Some(1))
            .unwrap()
            .len(),
        1
    );
    assert!(
        api.pitr_runs(&c.id, Some(PitrStatus::Failed), None)
            .unwrap()
            .is_empty()
    );
    // The job's own state is its backups': the recoveries' records are not its last run.
    assert_eq!(
        api.job(&job.id).unwrap().last_run,
        Some(baseline.started_at)
    );

    // A gap: binlog files the server purged while archiving was off.
    let pitr = |on: bool| {
        let u: coffer_types::CredentialUpdate =
            serde_json::from_value(json!({"pitr": on})).unwrap();
        api.update_resource::<Credential>(&c.id, &u).unwrap();
    };
    pitr(false);
    wait_until(LONG, || match follower_runs(&c.id) {
        false => Ok(()),
        true => Err("the binlog follower still runs".into()),
    });
    let current = |my: &MyInstance| {
        let status = my.sql("SHOW MASTER STATUS");
        status.split('\t').next().unwrap().to_string()
    };
    my.sql("FLUSH BINARY LOGS");
    let file_8 = current(&my);
    my.sql("INSERT INTO shop.orders VALUES (8, 'lost', 80); FLUSH BINARY LOGS;");
    let file_9 = current(&my);
    my.sql("INSERT INTO shop.orders VALUES (9, 'lost', 90); FLUSH BINARY LOGS;");
    my.sql(&format!("PURGE BINARY LOGS TO '{}'", current(&my)));
    // MariaDB keeps the newest files its crash recovery may still need (its binlog
    // checkpoint): which of the two went is its choice.
    let kept = my.sql("SHOW BINARY LOGS");
    assert!(!kept.contains(&file_8), "{kept}");
    let expected = match kept.contains(&file_9) {
        true => "1,2,4,9,10",
        false => "1,2,4,10",
    };
    my.sql("INSERT INTO shop.orders VALUES (10, 'after', 100);");
    let t3 = second_over(Utc::now());
    pitr(true);
    archived_now(&api, &c.id);
    let coverage = api.pitr_coverage(&c.id).unwrap();
    assert!(coverage.gaps.contains(&file_8), "{coverage:?}");
    let (status, msg) = code(api.recover(&c.id, &ask(t3, json!({}))));
    assert_eq!(
        (status, msg.as_str()),
        (StatusCode::BAD_REQUEST, "pitr_gap")
    );
    // Before the gap, recovery is whole.
    let done = recover(&api, &c.id, &ask(t2, json!({})));
    restore_into(&api, &done, "shop_at_t2_again");
    assert_eq!(state(&my, "shop_at_t2_again"), at_t2);
    // Across it when asked: without the lost transactions, with those after.
    let done = recover(&api, &c.id, &ask(t3, json!({"allow_gaps": true})));
    restore_into(&api, &done, "shop_at_t3");
    let ids = my.sql("SELECT group_concat(id ORDER BY id) FROM shop_at_t3.orders");
    // The orders went back to t1 when restored in place above; 8 is lost.
    assert_eq!(ids, expected, "{} {coverage:?}", state(&my, "shop_at_t3"));
    assert!(server.stop().success());
}

#[test]
fn a_whole_server_is_recovered_with_its_accounts_across_restarts_and_breaks_in_its_log() {
    let mut my = shop_server(
        "INSERT INTO shop.orders VALUES (1, 'ada', 10), (2, 'bob', 20);
         INSERT INTO shop.items (order_id, sku) VALUES (1, 'tea'), (2, 'cup');
         CREATE DATABASE crm;
         CREATE TABLE crm.people (id INT PRIMARY KEY, name VARCHAR(20));
         INSERT INTO crm.people VALUES (1, 'ann');
         CREATE USER 'clerk'@'localhost' IDENTIFIED BY 'counter';
         GRANT SELECT ON shop.* TO 'clerk'@'localhost';",
    );
    let people =
        |my: &MyInstance, db: &str| my.sql(&format!("SELECT * FROM {db}.people ORDER BY id"));
    // The data directory lives as long as `_dir`.
    let Env {
        api,
        server,
        dir: _dir,
        ..
    } = start();
    // The archive in a registered S3 repository, beside the jobs' (a repository of its own).
    let s3 = coffer_testkit::S3Server::start();
    let bucket = s3.bucket("archive");
    let offsite: coffer_types::RepositoryInput = serde_json::from_value(json!({
        "name": "offsite", "url": format!("s3://{bucket}/coffer"), "endpoint": s3.endpoint,
        "region": "us-east-1", "access_key_id": s3.access_key,
        "secret_access_key": s3.secret_key,
    }))
    .unwrap();
    let offsite = api.create_resource::<Repository>(&offsite).unwrap();
    let (status, msg) = err(api.create_resource::<Credential>(
        &serde_json::from_value(json!({
            "name": "nowhere", "engine": "mysql", "host": "127.0.0.1", "user": "root",
            "pitr": true, "pitr_repository_id": "no-such-repository"
        }))
        .unwrap(),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("pitr_repository_id"), "{msg}");
    // Accounts are restored by a user who may grant what they had.
    let c = mariadb_credential(
        &api,
        &my,
        json!({"pitr": true, "pitr_repository_id": offsite.id, "user": "root", "password": null}),
    );
    assert_eq!(c.pitr_repository_id.as_deref(), Some(offsite.id.as_str()));
    let job: JobInput = serde_json::from_value(json!({
        "name": "server", "sources": [{"type": "mysql", "credential_id": c.id, "all": true}]
    }))
    .unwrap();
    let job = api.create_job(&job).unwrap();
    let baseline = run_to_end(&api, &job.id);
    assert_eq!(baseline.status, RecordStatus::Success, "{baseline:?}");
    second_over(baseline.finished_at.unwrap());

    // The server restarts while Coffer archives its log: nothing is lost.
    my.sql(
        "INSERT INTO shop.orders VALUES (3, 'cy', 30); INSERT INTO crm.people VALUES (2, 'bea');",
    );
    my.restart();
    my.sql("UPDATE crm.people SET name = 'al' WHERE id = 1; DELETE FROM shop.items WHERE order_id = 2;");
    let (shop_t1, crm_t1) = (state(&my, "shop"), people(&my, "crm"));
    let t1 = second_over(Utc::now());

    // The server runs a while without its binary log: what it writes then is in no file, and
    // the archive shows the break.
    archived_now(&api, &c.id);
    my.restart_with(&["--server-id=1"]);
    wait_until(LONG, || {
        let c = api.pitr_coverage(&c.id).map_err(|e| e.to_string())?;
        match c
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("binary log is off"))
        {
            true => Ok(()),
            false => Err(format!("the archive does not see the log off: {c:?}")),
        }
    });
    my.sql("INSERT INTO crm.people VALUES (3, 'unlogged')");
    my.restart_with(&LOG_BIN);
    my.sql("INSERT INTO crm.people VALUES (4, 'logged')");
    archived_now(&api, &c.id);
    let before = api.pitr_coverage(&c.id).unwrap();
    assert!(
        before.gaps.is_empty() && before.problem.is_none(),
        "{before:?}"
    );
    assert_eq!(before.resets.len(), 1, "{before:?}");

    // The server starts its log anew, reusing the names: the archive keeps what it held and
    // shows the reset.
    my.sql("RESET MASTER; INSERT INTO shop.orders VALUES (4, 'dee', 40);");
    let t2 = second_over(Utc::now());
    archived_now(&api, &c.id);
    let coverage = api.pitr_coverage(&c.id).unwrap();
    assert_eq!(coverage.resets.len(), 2, "{coverage:?}");
    assert_eq!(coverage.oldest_event, before.oldest_event, "{coverage:?}");
    assert_eq!(
        coverage.total_events,
        before.total_events + 1,
        "{coverage:?}"
    );
    // From the backup before them, the breaks are gaps.
    let (status, msg) = code(api.recover(&c.id, &ask(t2, json!({}))));
    assert_eq!(
        (status, msg.as_str()),
        (StatusCode::BAD_REQUEST, "pitr_gap")
    );
    // The archive is in the S3 repository, and a repository in use cannot be deleted.
    let archive = s3.object_file(&bucket, &format!("coffer/pitr-{}/config", c.id));
    assert!(archive.exists(), "{}", archive.display());
    let (status, _) = err(api.delete_resource::<Repository>(&offsite.id));
    assert_eq!(status, StatusCode::CONFLICT);
    // A new repository key reaches the archive too: it keeps archiving, and what it holds
    // opens for the recoveries below.
    let rotated = api.rotate_repository_key().unwrap();
    assert!(rotated.warnings.is_empty(), "{rotated:?}");
    // The job's and the archive (the registered repository itself holds nothing yet).
    assert_eq!(rotated.repositories, 2);

    // Before it: the whole server as of t1, its accounts with it.
    let done = recover(&api, &c.id, &ask(t1, json!({})));
    let rid = done.record_id.clone().unwrap();
    let record = api.record(&job.id, &rid).unwrap();
    let mut held: Vec<_> = record
        .databases
        .iter()
        .map(|d| d.database.as_str())
        .collect();
    held.sort();
    assert_eq!(held, ["(globals)", "crm", "shop"], "{record:?}");
    for db in ["shop", "crm"] {
        let into = format!("{db}_at_t1");
        let task = restore(
            &api,
            &job.id,
            &rid,
            json!({"databases": [db], "target_database": into}),
        );
        assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    }
    assert_eq!(state(&my, "shop_at_t1"), shop_t1);
    assert_eq!(people(&my, "crm_at_t1"), crm_t1);
    // Restored in place, an account dropped since comes back with the databases of t1.
    my.sql("DROP USER 'clerk'@'localhost'");
    let task = restore(&api, &job.id, &rid, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(
        my.sql("SELECT count(*) FROM mysql.user WHERE user = 'clerk'"),
        "1"
    );
    assert_eq!(state(&my, "shop"), shop_t1);

    // After the reset, from a backup taken after it: its position is in the new sequence.
    let newer = run_to_end(&api, &job.id);
    assert_eq!(newer.status, RecordStatus::Success, "{newer:?}");
    second_over(newer.finished_at.unwrap());
    my.sql("INSERT INTO shop.orders VALUES (5, 'eve', 50); UPDATE shop.items SET sku = 'pot';");
    let shop_t3 = state(&my, "shop");
    let t3 = second_over(Utc::now());
    my.sql("DELETE FROM shop.orders WHERE id = 5;");
    archived_now(&api, &c.id);
    let done = recover(&api, &c.id, &ask(t3, json!({"database": "shop"})));
    assert_eq!(done.baseline_record_id.as_deref(), Some(newer.id.as_str()));
    let task = restore(
        &api,
        &job.id,
        done.record_id.as_deref().unwrap(),
        json!({"databases": ["shop"], "target_database": "shop_at_t3"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(state(&my, "shop_at_t3"), shop_t3);

    // Back under the data directory: the registered repository is free to go (what the
    // archive there holds stays in the bucket).
    let u: coffer_types::CredentialUpdate =
        serde_json::from_value(json!({"pitr_repository_id": ""})).unwrap();
    let c = api.update_resource::<Credential>(&c.id, &u).unwrap();
    assert_eq!(c.pitr_repository_id, None);
    api.delete_resource::<Repository>(&offsite.id).unwrap();
    assert!(archive.exists());
    assert!(server.stop().success());
}

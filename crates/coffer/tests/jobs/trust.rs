//! The trust model on the host and Coffer's care for its own files: what each role may name,
//! the roots an admin allows, uploads that could raise rights, the repository key, restores
//! over open databases, safety records, kept data, locks and crash debris.

use super::*;
use coffer_types::Role;

/// A user with `role`, logged in from its own loopback address.
fn user(env: &Env, name: &str, role: Role) -> Client {
    let input = serde_json::from_value(
        json!({"username": name, "password": "a user's long password", "role": role}),
    )
    .unwrap();
    env.api.create_user(&input).unwrap();
    let client = Client::new(env.server.url());
    let token = client.login(name, "a user's long password").unwrap().token;
    client.with(Credentials::Bearer(token))
}

fn field_error<T: std::fmt::Debug>(r: Result<T, ClientError>, field: &str) -> String {
    let (status, message) = err(r);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {message}");
    assert!(message.starts_with(field), "{field}: {message}");
    message
}

/// A job backing up a small SQLite database of its own: the database's path and the job.
fn sqlite_job(env: &Env) -> (std::path::PathBuf, coffer_types::Job) {
    let db = sqlite_db(
        env.dir.path(),
        &["CREATE TABLE t (n INTEGER)", "INSERT INTO t VALUES (1)"],
    );
    let job =
        serde_json::from_value(json!({"name": "app", "sources": [{"type": "sqlite", "path": db}]}))
            .unwrap();
    (db, env.api.create_job(&job).unwrap())
}

fn request(req: serde_json::Value) -> coffer_types::RestoreRequest {
    serde_json::from_value(req).unwrap()
}

#[test]
fn operators_stay_inside_the_roots_and_coffers_own_files_are_never_used() {
    let dir = tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let (allowed, repos, restored) = (
        root.join("allowed"),
        root.join("repos"),
        root.join("restored"),
    );
    for d in [&allowed, &repos, &restored] {
        std::fs::create_dir_all(d).unwrap();
    }
    let env = start_with(
        dir,
        &[
            ("COFFER_SOURCE_ROOTS", allowed.to_str().unwrap()),
            ("COFFER_REPOSITORY_ROOTS", repos.to_str().unwrap()),
            ("COFFER_RESTORE_ROOTS", restored.to_str().unwrap()),
        ],
    );
    let admin = &env.api;
    let operator = user(&env, "op", Role::Operator);
    let data = root.join("data");
    let src = source_tree(&allowed, 0);
    std::os::unix::fs::symlink("/etc", allowed.join("etc")).unwrap();

    // Operators back up only what lies inside the source roots, symlinks resolved.
    for path in [
        "/etc".into(),
        "/etc/shadow".into(),
        data.display().to_string(),
        allowed.join("etc/hostname").display().to_string(),
        format!("{}/../repos", allowed.display()),
    ] {
        let job = path_job("escape", Path::new(&path), json!({}));
        field_error(operator.create_job(&job), "sources");
    }
    let sqlite = serde_json::from_value(json!({"name": "db", "sources":
        [{"type": "sqlite", "path": data.join("coffer.db")}]}))
    .unwrap();
    field_error(operator.create_job(&sqlite), "sources");
    let mine = operator
        .create_job(&path_job("mine", &src, json!({})))
        .unwrap();
    // ... and cannot point a job at anything else later.
    let to_etc: JobUpdate =
        serde_json::from_value(json!({"sources": [{"type": "path", "path": "/etc"}]})).unwrap();
    field_error(operator.update_job(&mine.id, &to_etc), "sources");

    // Admins may name any path but Coffer's own data directory (or one that holds it).
    let etc = admin.create_job(&path_job("etc", Path::new("/etc"), json!({})));
    assert!(etc.is_ok(), "{etc:?}");
    for path in [&data, &root, &data.join("backups")] {
        field_error(
            admin.create_job(&path_job("own", path, json!({}))),
            "sources",
        );
    }
    field_error(admin.create_job(&sqlite), "sources");
    // An operator may still change an admin's job in other ways.
    let renamed: JobUpdate = serde_json::from_value(json!({"name": "etc, renamed"})).unwrap();
    assert!(operator.update_job(&etc.unwrap().id, &renamed).is_ok());

    // Repositories: inside the repository roots (another disk, here), never in Coffer's own
    // folders, never on another job's repository.
    for dest in [
        ".",
        "tmp/repo",
        "restores",
        "coffer.db",
        "server.key",
        "backups",
        "/etc/coffer",
        allowed.join("repo").to_str().unwrap(),
        root.to_str().unwrap(),
    ] {
        field_error(
            admin.create_job(&path_job("repo", &src, json!({"dest_path": dest}))),
            "dest_path",
        );
    }
    let elsewhere = repos.join("one");
    let job = admin
        .create_job(&path_job(
            "elsewhere",
            &src,
            json!({"dest_path": elsewhere}),
        ))
        .unwrap();
    assert_eq!(job.dest_path.as_deref(), elsewhere.to_str());
    let record = run_to_end(admin, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    assert!(elsewhere.join("config").is_file());
    for dest in [elsewhere.clone(), elsewhere.join("inner"), repos.clone()] {
        field_error(
            admin.create_job(&path_job("taken", &src, json!({"dest_path": dest}))),
            "dest_path",
        );
    }
    let registered = serde_json::from_value(
        json!({"name": "local", "url": format!("file://{}", elsewhere.display())}),
    )
    .unwrap();
    field_error(admin.create_resource::<Repository>(&registered), "url");

    // Restore targets: inside the restore roots, for everyone, symlinks resolved.
    std::os::unix::fs::symlink("/etc", restored.join("link")).unwrap();
    for target in [
        ".",
        "tmp",
        "backups/x",
        "server.key",
        "/srv/new",
        elsewhere.join("x").to_str().unwrap(),
        restored.join("link/x").to_str().unwrap(),
        "restores/a\0b",
    ] {
        field_error(
            admin.restore_record(&job.id, &record.id, &request(json!({"target": target}))),
            "target",
        );
    }
    let into = restored.join("new");
    let task = restore(admin, &job.id, &record.id, json!({"target": into}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(
        std::fs::read(into.join(src.strip_prefix("/").unwrap()).join("a.txt")).unwrap(),
        b"hello"
    );
    // Names and paths with control characters are refused at once.
    field_error(admin.create_job(&path_job("a\0b", &src, json!({}))), "name");
    field_error(
        admin.create_job(&path_job("nul", Path::new("/srv/a\0b"), json!({}))),
        "sources",
    );
    assert!(env.server.stop().success());
}

#[test]
fn an_uploaded_archive_never_brings_setuid_bits_device_nodes_or_fifos() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 0);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();

    // The downloaded archive, with three more entries in the source's folder.
    let inside = src.strip_prefix("/").unwrap();
    let mut hostile = archive[..archive.len() - 1024].to_vec();
    {
        let mut b = tar::Builder::new(&mut hostile);
        let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            b.append_data(&mut h, inside.join(name), data).unwrap();
        };
        add("suid", tar::EntryType::Regular, 0o4755, b"#!/bin/sh\n");
        add("sgid-dir-file", tar::EntryType::Regular, 0o2755, b"x");
        add("null", tar::EntryType::Char, 0o666, b"");
        add("fifo", tar::EntryType::Fifo, 0o644, b"");
        b.finish().unwrap();
    }
    let task = api.restore_upload(&job.id, hostile, None).unwrap();
    let task = api.wait_restore(&job.id, &task.id, LONG).unwrap();
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| {
        std::fs::symlink_metadata(src.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("suid"), 0o755, "no setuid bit");
    assert_eq!(mode("sgid-dir-file"), 0o755, "no setgid bit");
    for special in ["null", "fifo"] {
        assert!(
            std::fs::symlink_metadata(src.join(special)).is_err(),
            "{special} is not created"
        );
    }
    assert_eq!(task.warnings.len(), 4, "{:?}", task.warnings);
    for name in ["suid", "sgid-dir-file", "null", "fifo"] {
        assert!(
            task.warnings.iter().any(|w| w.contains(name)),
            "{name}: {:?}",
            task.warnings
        );
    }
    assert_eq!(std::fs::read(src.join("a.txt")).unwrap(), b"hello");
    assert!(env.server.stop().success());
}

#[test]
fn the_repository_key_is_sealed_exported_and_never_overwritten() {
    let dir = tempdir().unwrap();
    // A server of an earlier version kept the key in clear in its settings.
    start_in(&dir).stop();
    let old_key = "a key an earlier version kept in the settings";
    with_database(&dir.path().join("data/coffer.db"), async |pool| {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ('backup_encryption_key', ?1, '2026-01-01T00:00:00.000000Z')",
        )
        .bind(json!(old_key).to_string())
        .execute(pool)
        .await
        .unwrap();
    });
    let env = start_with(dir, &[]);
    let api = &env.api;
    assert_eq!(api.repository_key().unwrap().key, old_key);
    let settings = api.raw("GET", "/api/settings", None).unwrap();
    assert!(!settings.text.contains(old_key), "{}", settings.text);

    // It is no setting: it cannot be overwritten (or read) as one.
    let put = code(api.put_setting("backup_encryption_key", json!("another key")));
    assert_eq!(put, (StatusCode::CONFLICT, "conflict".into()));
    assert_eq!(
        code(api.setting("backup_encryption_key")).0,
        StatusCode::CONFLICT
    );

    // Jobs use it, and it opens their repositories.
    let src = source_tree(env.dir.path(), 0);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);

    let opens = |key: &str| {
        std::process::Command::new(BIN)
            .args(["--repo", job.dest_path.as_deref().unwrap(), "snapshots"])
            .env("COFFER_PASSWORD", key)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(opens(old_key));

    // A rotation gives every repository the new key before the old one goes.
    let rotated = api.rotate_repository_key().unwrap();
    assert_eq!((rotated.repositories, rotated.warnings.len()), (1, 0));
    let new_key = api.repository_key().unwrap().key;
    assert_ne!(new_key, old_key);
    assert!(opens(&new_key) && !opens(old_key));
    assert!(api.verify_record(&job.id, &record.id).unwrap().ok);
    assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Success);

    // At rest it is sealed with the server key: the database does not hold it in clear.
    assert!(env.server.stop().success());
    for f in ["coffer.db", "coffer.db-wal"] {
        let bytes = std::fs::read(env.dir.path().join("data").join(f)).unwrap_or_default();
        assert!(
            !bytes
                .windows(old_key.len())
                .any(|w| w == old_key.as_bytes()),
            "the key is readable in {f}"
        );
    }
}

#[test]
fn a_sqlite_database_in_use_is_not_replaced_unless_forced() {
    let env = start();
    let api = &env.api;
    let (db, job) = sqlite_job(&env);
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");

    // An application holds the database open (here: `sleep`, with it as its input).
    let mut holder = std::process::Command::new("sleep")
        .arg("300")
        .stdin(std::fs::File::open(&db).unwrap())
        .spawn()
        .unwrap();
    let (status, error) = err(api.restore_record(&job.id, &record.id, &request(json!({}))));
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(
        error.contains("sleep") && error.contains(&holder.id().to_string()),
        "{error}"
    );
    let in_use = code(api.restore_record(&job.id, &record.id, &request(json!({}))));
    assert_eq!(in_use.1, "in_use");
    let safety = RecordFilter {
        trigger: Some("pre_restore".into()),
        ..Default::default()
    };
    assert!(
        api.records(&job.id, &safety).unwrap().is_empty(),
        "a refused restore takes no safety record"
    );
    let forced = restore(api, &job.id, &record.id, json!({"force": true}));
    assert_eq!(forced.status, RecordStatus::Success, "{forced:?}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(env.server.stop().success());
}

#[test]
fn safety_records_are_kept_apart_from_the_jobs_backups() {
    let env = start();
    let api = &env.api;
    let (db, job) = sqlite_job(&env);
    let good = run_to_end(api, &job.id);
    assert_eq!(good.status, RecordStatus::Success, "{good:?}");
    // The database is damaged: the nightly backup fails, and the admin restores.
    std::fs::write(&db, b"this is no database any more").unwrap();
    let failed = run_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    let task = restore(api, &job.id, &good.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let safety = api
        .record(&job.id, task.safety_record_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(
        safety.status,
        RecordStatus::Success,
        "the damaged file is saved"
    );

    // The restore does not hide the failing backup: not as the last run, not as the newest
    // successful record, not in the metrics.
    let job_now = api.job(&job.id).unwrap();
    assert_eq!(job_now.last_status, Some(RecordStatus::Failed));
    assert_eq!(job_now.last_run, Some(failed.started_at));
    let newest_good = RecordFilter {
        status: Some(RecordStatus::Success),
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(api.records(&job.id, &newest_good).unwrap()[0].id, good.id);
    let metrics = api.metrics().unwrap();
    let runs = |status: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("coffer_backup_runs_total")
                    && l.contains(&format!("job=\"{}\"", job.id))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(runs("success").as_deref(), Some("1"), "{metrics}");
    assert_eq!(runs("failed").as_deref(), Some("1"), "{metrics}");
    // Safety records are listed when asked for.
    let safety_records = RecordFilter {
        trigger: Some("pre_restore".into()),
        ..Default::default()
    };
    let listed = api.records(&job.id, &safety_records).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, safety.id);

    // A restore into another directory takes none.
    let elsewhere = restore(api, &job.id, &good.id, json!({"target": "restores/x"}));
    assert_eq!(elsewhere.status, RecordStatus::Success, "{elsewhere:?}");
    assert_eq!(elsewhere.safety_record_id, None);
    assert_eq!(api.records(&job.id, &safety_records).unwrap().len(), 1);

    // A task whose safety record went says so.
    api.delete_record(&job.id, &safety.id).unwrap();
    let task = api.restore_task(&job.id, &task.id).unwrap();
    assert!(task.safety_record_removed, "{task:?}");
    assert!(!elsewhere.safety_record_removed);
    assert!(env.server.stop().success());
}

#[test]
fn a_restore_that_fails_its_checks_takes_no_safety_record() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 0);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    // A path of the source that the record does not hold.
    let later = src.join("made-later.txt");
    std::fs::write(&later, b"new").unwrap();
    let message = field_error(
        api.restore_record(&job.id, &record.id, &request(json!({"paths": [later]}))),
        "paths",
    );
    assert!(message.contains("made-later.txt"), "{message}");
    // An upload that is not an archive of this job's sources.
    let mut other = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(1);
    h.set_mode(0o644);
    other
        .append_data(&mut h, "elsewhere/file", &b"x"[..])
        .unwrap();
    let other = other.into_inner().unwrap();
    let (status, message) = err(api.restore_upload(&job.id, other, None));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("not an archive of this job"), "{message}");
    let all = RecordFilter {
        trigger: Some("all".into()),
        ..Default::default()
    };
    assert_eq!(
        api.records(&job.id, &all).unwrap().len(),
        1,
        "only the backup"
    );
    assert!(
        api.raw(
            "GET",
            &format!("/api/backup-jobs/{}/restores", job.id),
            None
        )
        .unwrap()
        .json()
        .as_array()
        .unwrap()
        .is_empty()
    );
    assert_eq!(std::fs::read(&later).unwrap(), b"new");
    assert!(env.server.stop().success());
}

#[test]
fn a_deleted_jobs_data_stays_adoptable_or_goes_as_asked() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 1);
    let shared = json!({"dest_path": "backups/shared"});
    let first = api
        .create_job(&path_job("first", &src, shared.clone()))
        .unwrap();
    let record = run_to_end(api, &first.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    // Another job cannot write into the same repository.
    field_error(
        api.create_job(&path_job("second", &src, shared.clone())),
        "dest_path",
    );
    let repo = Path::new(first.dest_path.as_deref().unwrap()).to_path_buf();

    // Deleting keeps the data by default; a new job there is told whose it is ...
    api.delete_job(&first.id, true).unwrap();
    assert!(repo.join("config").is_file());
    let (status, message) = err(api.create_job(&path_job("again", &src, shared.clone())));
    assert_eq!(status, StatusCode::CONFLICT, "{message}");
    assert!(message.contains(&first.id), "{message}");
    field_error(
        api.create_job(&path_job(
            "wrong",
            &src,
            json!({"dest_path": "backups/shared", "adopt": "no-such-job"}),
        )),
        "adopt",
    );

    // ... and can take it over: the records come back and restore.
    let adopted = api
        .create_job(&path_job(
            "adopted",
            &src,
            json!({"dest_path": "backups/shared", "adopt": first.id}),
        ))
        .unwrap();
    assert_eq!(adopted.id, first.id);
    let records = api.records(&adopted.id, &RecordFilter::default()).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].checksum.as_ref(), records[0].trigger.as_str()),
        (record.checksum.as_ref(), "adopted")
    );
    assert!(api.verify_record(&adopted.id, &records[0].id).unwrap().ok);
    let task = restore(
        api,
        &adopted.id,
        &records[0].id,
        json!({"target": "restores/back"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    // The adopted job runs on in the same repository, with its retention.
    let next = run_to_end(api, &adopted.id);
    assert_eq!(next.status, RecordStatus::Success, "{next:?}");

    // Deleting with its data removes the repository it had to itself.
    api.delete_job(&adopted.id, false).unwrap();
    assert!(!repo.exists(), "{} is gone", repo.display());
    assert!(env.server.stop().success());
}

#[test]
fn concurrent_record_deletions_all_succeed() {
    let env = start();
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("files", &src, json!({})))
        .unwrap();
    let mut records = vec![];
    for i in 0..4 {
        std::fs::write(src.join("sub/big.bin"), seeded(1 << 20, &format!("v{i}"))).unwrap();
        records.push(run_to_end(&env.api, &job.id));
    }
    let kept = records.pop().unwrap();
    let deleted: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .iter()
            .map(|r| {
                let api = login(&env.server);
                let (job, rid) = (job.id.clone(), r.id.clone());
                s.spawn(move || api.delete_record(&job, &rid))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for d in &deleted {
        assert!(d.is_ok(), "{deleted:?}");
    }
    let left = env.api.records(&job.id, &RecordFilter::default()).unwrap();
    assert_eq!(left.len(), 1);
    assert!(env.api.verify_record(&job.id, &kept.id).unwrap().ok);
    assert!(env.server.stop().success());
}

/// Entries of `dir` whose names Coffer's restores use for work in progress.
fn debris(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".coffer-"))
        .collect()
}

#[test]
fn a_restore_killed_half_way_leaves_nothing_behind() {
    let dir = tempdir().unwrap();
    let server = start_in(&dir);
    let api = login(&server);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        std::fs::write(
            src.join(format!("part-{i}.bin")),
            seeded(32 << 20, &format!("part {i}")),
        )
        .unwrap();
    }
    let job = api.create_job(&path_job("big", &src, json!({}))).unwrap();
    let record = run_to_end(&api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    std::fs::write(src.join("part-0.bin"), b"changed since").unwrap();

    // Killed while the tree is being written beside the live one ...
    let task = api
        .restore_record(&job.id, &record.id, &Default::default())
        .unwrap();
    wait_until(LONG, || match debris(dir.path()).is_empty() {
        true => Err("no staging directory yet".to_string()),
        false => Ok(()),
    });
    server.kill();
    // ... the restart removes what it left, and the live tree is as it was.
    let server = start_in(&dir);
    assert!(debris(dir.path()).is_empty(), "{:?}", debris(dir.path()));
    assert_eq!(
        std::fs::read(src.join("part-0.bin")).unwrap(),
        b"changed since"
    );
    let api = login(&server);
    let task = api.restore_task(&job.id, &task.id).unwrap();
    assert_eq!(task.status, RecordStatus::Failed, "{task:?}");

    // Killed while restoring into a directory: the task says its files may be incomplete, and
    // a restore into it again completes them.
    let target = dir.path().join("data/restores/big");
    let task = api
        .restore_record(
            &job.id,
            &record.id,
            &request(json!({"target": "restores/big"})),
        )
        .unwrap();
    let inside = target.join(src.strip_prefix("/").unwrap());
    wait_until(LONG, || match inside.join("part-1.bin").exists() {
        true => Ok(()),
        false => Err("no file being written yet".to_string()),
    });
    server.kill();
    let server = start_in(&dir);
    assert!(debris(&inside).is_empty(), "{:?}", debris(&inside));
    let api = login(&server);
    let failed = api.restore_task(&job.id, &task.id).unwrap();
    assert_eq!(failed.status, RecordStatus::Failed);
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("restore into it again"), "{error}");
    let again = api
        .restore_record(
            &job.id,
            &record.id,
            &request(json!({"target": "restores/big"})),
        )
        .unwrap();
    let again = api.wait_restore(&job.id, &again.id, LONG).unwrap();
    assert_eq!(again.status, RecordStatus::Success, "{again:?}");
    for i in 1..12 {
        let restored = std::fs::read(inside.join(format!("part-{i}.bin"))).unwrap();
        assert!(
            restored == seeded(32 << 20, &format!("part {i}")),
            "part-{i}.bin"
        );
    }
    assert!(debris(&inside).is_empty(), "{:?}", debris(&inside));
    assert!(server.stop().success());
}

//! Restores: in place after a safety record or into a directory, SQLite files, live events,
//! uploaded archives, sealed downloads.

use super::*;

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
    let undo = restore(api, &job.id, &safety.id, json!({"target": "restores/undo"}));
    assert_eq!(undo.status, RecordStatus::Success, "{undo:?}");
    let data = std::fs::canonicalize(env.dir.path().join("data")).unwrap();
    assert_same_tree(
        &damaged,
        &data
            .join("restores/undo")
            .join(src.strip_prefix("/").unwrap()),
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
                if e.event.ends_with(".progress") {
                    continue;
                }
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

    let task = restore(
        &env.api,
        &job.id,
        &ok.id,
        json!({"target": "restores/elsewhere"}),
    );
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
    let form = |fields: &[(&str, &[u8])]| upload_form(api, &job.id, fields);
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
    assert!(scratch_is_empty(env.dir.path()), "the upload is removed");
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

    // `coffer decrypt` opens it with the key an admin exports.
    let key = env.dir.path().join("key.txt");
    std::fs::write(&key, env.api.repository_key().unwrap().key).unwrap();
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

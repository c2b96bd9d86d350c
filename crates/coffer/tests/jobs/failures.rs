//! What a user is told when things go wrong: a repository that is gone is not a damaged one,
//! damage is kept on the record and counted, and every error has its own code.

use super::*;

#[test]
fn verify_tells_damage_from_a_repository_that_cannot_be_reached() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 1);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    let dest = Path::new(job.dest_path.as_deref().unwrap()).to_path_buf();

    // Gone (a disk not mounted, say): an error that says so, and nothing recorded as damage.
    let away = env.dir.path().join("away");
    std::fs::rename(&dest, &away).unwrap();
    assert_eq!(
        code(api.verify_record(&job.id, &record.id)),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "repository_unavailable".into()
        )
    );
    let (_, message) = err(api.verify_record(&job.id, &record.id));
    assert!(!message.contains("checksum"), "{message}");
    let unverified = api.record(&job.id, &record.id).unwrap();
    assert_eq!((unverified.verified_at, unverified.verify_ok), (None, None));
    std::fs::rename(&away, &dest).unwrap();
    let verified = api.verify_record(&job.id, &record.id).unwrap();
    assert!(verified.ok, "{verified:?}");
    let first = api.record(&job.id, &record.id).unwrap();
    assert_eq!(first.verify_ok, Some(true));

    // Damaged: the answer names what, the record keeps it, the metrics count it.
    for (pack, _) in packs(dest.to_str().unwrap()) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&pack, bytes).unwrap();
    }
    let damaged = api.verify_record(&job.id, &record.id).unwrap();
    assert!(!damaged.ok);
    assert!(
        damaged.damaged.iter().any(|d| d.starts_with("data/")),
        "the damaged pack is named: {damaged:?}"
    );
    let kept = api.record(&job.id, &record.id).unwrap();
    assert_eq!(kept.verify_ok, Some(false));
    assert!(kept.verified_at > first.verified_at, "{kept:?}");
    let metrics = api.metrics().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("coffer_backup_verify_failures_total")
                && l.contains(&job.id)
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // A restore of damaged data is refused before anything changes, saying what is damaged.
    let req = serde_json::from_value(json!({"target": "restores/x"})).unwrap();
    let refused = api.restore_record(&job.id, &record.id, &req);
    let (_, message) = err(api.restore_record(&job.id, &record.id, &req));
    assert_eq!(
        code(refused),
        (StatusCode::CONFLICT, "repository_damaged".into())
    );
    assert!(
        message.starts_with("data/") && message.contains("is damaged"),
        "{message}"
    );
    assert!(env.server.stop().success());
}

#[test]
fn uploads_history_and_partial_updates_work_as_users_expect() {
    let env = start();
    let api = &env.api;
    let src = source_tree(env.dir.path(), 0);
    let job = api.create_job(&path_job("files", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    let other = api.create_job(&path_job("other", &src, json!({}))).unwrap();
    let other_record = run_to_end(api, &other.id);

    // Files that are no tar archive say what they are and what to do.
    let upload = |body: Vec<u8>| err(api.restore_upload(&job.id, body, None)).1;
    let mut sealed = b"CFSEAL01".to_vec();
    sealed.extend_from_slice(&[0; 100]);
    assert!(upload(sealed).contains("coffer decrypt"));
    assert!(upload(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).contains("gzip"));
    assert!(upload(b"PK\x03\x04zip".to_vec()).contains("zip"));
    // A browser form may call the field `file`.
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
    let r = upload_form(api, &job.id, &[("file", &archive[..])]);
    assert_eq!(r.status, 202, "{}", r.text);

    // PATCH changes the fields given, as PUT does.
    let patched = api
        .raw(
            "PATCH",
            &format!("/api/backup-jobs/{}", job.id),
            Some(&json!({"schedule": "@daily"})),
        )
        .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        api.job(&job.id).unwrap().schedule.as_deref(),
        Some("@daily")
    );

    // The history across jobs, newest first, and of one job.
    let all = api.history(&RecordFilter::default()).unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [other_record.id.as_str(), record.id.as_str()]);
    let one = RecordFilter {
        job_id: Some(job.id.clone()),
        ..Default::default()
    };
    assert_eq!(api.history(&one).unwrap().len(), 1);
    assert!(env.server.stop().success());
}

#[test]
fn what_cannot_work_is_said_when_things_are_made() {
    let env = start();
    let api = &env.api;
    // A job on a path that does not exist (yet), keeping everything: saved, with warnings.
    let missing = env.dir.path().join("not-there");
    let job = api
        .create_job(&path_job("early", &missing, json!({})))
        .unwrap();
    assert!(
        job.warnings
            .iter()
            .any(|w| w.contains("not-there") && w.contains("does not exist")),
        "{:?}",
        job.warnings
    );
    assert!(job.warnings.iter().any(|w| w.starts_with("no retention")));
    let src = source_tree(env.dir.path(), 0);
    let fine = api
        .create_job(&path_job("fine", &src, json!({"retention_count": 3})))
        .unwrap();
    assert!(fine.warnings.is_empty(), "{:?}", fine.warnings);
    assert!(
        api.job(&job.id).unwrap().warnings.is_empty(),
        "only in answers"
    );

    // A credential is tested against its server.
    let credential = |password: Option<&str>| {
        let mut c = json!({"name": format!("my {password:?}"), "engine": "mysql",
                           "host": "127.0.0.1", "user": "root"});
        if let Some(p) = password {
            c["password"] = json!(p);
        }
        let c = api
            .create_resource::<Credential>(&serde_json::from_value(c).unwrap())
            .unwrap();
        let r = api
            .raw("POST", &format!("/api/credentials/{}/test", c.id), None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let good = credential(None);
    assert_eq!(good["ok"], true, "{good}");
    assert!(
        good["detail"].as_str().unwrap().contains("databases"),
        "{good}"
    );
    let bad = credential(Some("not the password"));
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(bad["detail"].as_str().unwrap().contains("denied"), "{bad}");

    // So is a repository: reachable and empty, or why not.
    let repository = |url: &str, endpoint: Option<&str>| {
        let r = serde_json::from_value(json!({"name": url, "url": url, "endpoint": endpoint,
            "access_key_id": "k", "secret_access_key": "s"}))
        .unwrap();
        let r = api.create_resource::<Repository>(&r).unwrap();
        api.raw("POST", &format!("/api/repositories/{}/test", r.id), None)
            .unwrap()
            .json()
    };
    let data = std::fs::canonicalize(env.dir.path().join("data")).unwrap();
    let local = repository(
        &format!("file://{}/backups/registered", data.display()),
        None,
    );
    assert_eq!(local["ok"], true, "{local}");
    assert!(
        local["detail"]
            .as_str()
            .unwrap()
            .contains("no repository yet")
    );
    let nowhere = repository("s3://bucket/prefix", Some("http://127.0.0.1:9"));
    assert_eq!(nowhere["ok"], false, "{nowhere}");
    assert!(env.server.stop().success());
}

#[test]
fn running_backups_and_restores_tell_how_far_they_are() {
    use tungstenite::client::IntoClientRequest;
    let env = start_with(tempdir().unwrap(), &[("COFFER_PROGRESS_INTERVAL_MS", "20")]);
    let api = &env.api;
    let src = source_tree(env.dir.path(), 96);
    let job = api.create_job(&path_job("big", &src, json!({}))).unwrap();
    let mut req = format!("ws://{}/api/ws", env.server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", env.token).parse().unwrap(),
    );
    let (mut socket, _) = tungstenite::connect(req).unwrap();
    // The events of one piece of work up to its end: the progress it reported, in order.
    let mut progress_until = |end: &str| -> Vec<coffer_types::Progress> {
        let mut seen = vec![];
        loop {
            if let tungstenite::Message::Text(t) = socket.read().unwrap() {
                let e: coffer_types::Event = serde_json::from_str(&t).unwrap();
                if e.event == end {
                    return seen;
                }
                seen.extend(e.progress);
            }
        }
    };
    let first = run_to_end(api, &job.id);
    let reported = progress_until("backup.completed");
    assert!(
        !reported.is_empty(),
        "a backup of 96 MiB reports its progress"
    );
    assert!(
        reported.windows(2).all(|w| w[0].bytes <= w[1].bytes),
        "{reported:?}"
    );
    assert!(
        reported.iter().all(|p| p.total_bytes.is_none()),
        "the first has no estimate"
    );
    // The next backup estimates its total from the last one; a restore knows its total.
    std::fs::write(src.join("sub/big.bin"), seeded(96 << 20, "again")).unwrap();
    run_to_end(api, &job.id);
    let reported = progress_until("backup.completed");
    assert!(
        reported.iter().any(|p| p.total_bytes == first.size_bytes),
        "{reported:?}"
    );
    restore(api, &job.id, &first.id, json!({"target": "restores/far"}));
    let reported = progress_until("restore.completed");
    assert!(
        reported
            .last()
            .is_some_and(|p| p.total_bytes == first.size_bytes && p.bytes > 0),
        "{reported:?}"
    );
    assert!(env.server.stop().success());
}

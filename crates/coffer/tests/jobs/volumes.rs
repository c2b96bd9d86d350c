//! Docker volumes, registered S3 repositories, and a Docker engine that is down.

use super::*;

/// A volume with a bit of everything: nested directories, a larger file, a symlink, a hard
/// link, a file owned by another user with a narrow mode, an empty directory.
pub(super) fn fill_volume(volume: &str) {
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
pub(super) struct Volume(pub(super) String);

impl Volume {
    pub(super) fn new(labels: &[&str]) -> Volume {
        let labels: Vec<_> = labels.iter().flat_map(|l| ["--label", l]).collect();
        Volume::create(&labels)
    }

    /// A volume made with these arguments of `docker volume create`.
    fn create(options: &[&str]) -> Volume {
        coffer_testkit::docker_engine();
        let name = unique_name("coffer-test-volume").replace('_', "-");
        let mut args = vec!["volume", "create"];
        args.extend(options);
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
    let task = restore(
        api,
        &job.id,
        &record.id,
        json!({"target": "restores/volumes"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let out = env.dir.path().join("data/restores/volumes").join(&folder);
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

/// A volume with mount options is mounted only while a container uses it: its directory on the
/// host is empty otherwise, so it is read through the engine, never from that directory.
#[test]
fn a_volume_mounted_only_while_in_use_is_read_through_the_engine() {
    let env = start();
    let api = &env.api;
    let host_dir = env.dir.path().join("bound");
    std::fs::create_dir_all(host_dir.join("app")).unwrap();
    std::fs::write(host_dir.join("app/settings.conf"), b"port = 80\n").unwrap();
    let device = format!("device={}", host_dir.display());
    let vol = Volume::create(&["-o", "type=none", "-o", "o=bind", "-o", &device]);

    let input = json!({"name": "bound", "volumes": [vol.0], "schedule": "@daily"});
    let job = api
        .create_job(&serde_json::from_value(input).unwrap())
        .unwrap();
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    let (_, archive) = api.download_record(&job.id, &record.id).unwrap();
    let mut found = None;
    for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(&format!("volume/{}/app/settings.conf", vol.0)) {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            found = Some(text);
        }
    }
    assert_eq!(
        found.as_deref(),
        Some("port = 80\n"),
        "the volume's file is in the archive"
    );

    // Restored in place through the engine: the bound directory holds the file again.
    std::fs::remove_file(host_dir.join("app/settings.conf")).unwrap();
    let task = restore(api, &job.id, &record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(
        std::fs::read(host_dir.join("app/settings.conf")).unwrap(),
        b"port = 80\n"
    );
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
        let (status, msg) = err(api.create_resource::<Repository>(&repo_input(extra)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let repo = api
        .create_resource::<Repository>(&repo_input(json!({})))
        .unwrap();
    assert!(
        repo.has_secret && repo.encrypted && repo.jobs == 0,
        "{repo:?}"
    );
    assert_eq!(
        err(api.create_resource::<Repository>(&repo_input(json!({})))).0,
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
    let task = restore(
        api,
        &job.id,
        &record.id,
        json!({"target": "restores/from-s3"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let restored = env.dir.path().join("data/restores/from-s3");
    assert_same_tree(&src, &restored.join(src.strip_prefix("/").unwrap()));

    // In use: it cannot be deleted or moved.
    assert_eq!(api.resource::<Repository>(&repo.id).unwrap().jobs, 1);
    assert_eq!(
        code(api.delete_resource::<Repository>(&repo.id)),
        (StatusCode::CONFLICT, "in_use".into())
    );
    let moved: coffer_types::RepositoryUpdate =
        serde_json::from_value(json!({"url": format!("s3://{bucket}/elsewhere")})).unwrap();
    assert_eq!(
        err(api.update_resource::<Repository>(&repo.id, &moved)).0,
        StatusCode::CONFLICT
    );

    // A wrong secret fails the run clearly and keeps the good record; the right one again works.
    let wrong: coffer_types::RepositoryUpdate =
        serde_json::from_value(json!({"secret_access_key": "not-the-secret"})).unwrap();
    api.update_resource::<Repository>(&repo.id, &wrong).unwrap();
    let failed = run_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed, "{failed:?}");
    assert!(failed.error.is_some());
    assert_eq!(
        api.record(&job.id, &record.id).unwrap().status,
        RecordStatus::Success
    );
    let right: coffer_types::RepositoryUpdate =
        serde_json::from_value(json!({"secret_access_key": s3.secret_key})).unwrap();
    api.update_resource::<Repository>(&repo.id, &right).unwrap();
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
    api.delete_job(&job.id, true).unwrap();
    api.delete_resource::<Repository>(&repo.id).unwrap();
    assert_eq!(
        err(api.resource::<Repository>(&repo.id)).0,
        StatusCode::NOT_FOUND
    );
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

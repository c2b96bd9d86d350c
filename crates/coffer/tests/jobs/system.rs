//! Coffer's own data: the configuration exported and imported, system backups.

use std::collections::BTreeMap;

use super::*;

/// An export holds the configuration and no secret; imported back after everything was
/// deleted, it brings every item again (the job with its id and records, since its repository
/// kept its data), says what needs a secret again, and a second import adds nothing.
#[test]
fn the_configuration_is_exported_without_secrets_and_imported_back() {
    let env = start();
    let api = &env.api;
    let src = env.dir.path().join("exported");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "kept").unwrap();
    let user = api
        .create_user(&serde_json::from_value(json!({"username": "watcher", "password": "a watcher's long password", "role": "viewer"})).unwrap())
        .unwrap();
    let data = std::fs::canonicalize(env.dir.path().join("data")).unwrap();
    let repo: Repository = api
        .create_resource::<Repository>(
            &serde_json::from_value(json!({
                "name": "shelf",
                "url": format!("file://{}/backups/shelf", data.display()),
            }))
            .unwrap(),
        )
        .unwrap();
    let cred: Credential = api
        .create_resource::<Credential>(
            &serde_json::from_value(json!({
                "name": "warehouse", "engine": "postgres", "host": "127.0.0.1",
                "user": "app", "password": "the credential's secret",
            }))
            .unwrap(),
        )
        .unwrap();
    let job = api
        .create_job(&path_job(
            "shelved",
            &src,
            json!({"repository_id": repo.id}),
        ))
        .unwrap();
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");
    api.put_setting("greeting", json!("hello")).unwrap();

    let r = api.raw("GET", "/api/export", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    for secret in [
        "the credential's secret",
        "watcher's long password",
        "password_hash",
        "argon2",
    ] {
        assert!(!r.text.contains(secret), "the export holds {secret:?}");
    }
    let doc = r.json();
    assert_eq!(doc["format"], "coffer-export");
    assert_eq!(doc["jobs"][0]["id"], job.id.as_str());

    // Everything but the setting deleted (the job's data stays in its repository), then
    // imported.
    api.delete_job(&job.id, true).unwrap();
    api.delete_resource::<Repository>(&repo.id).unwrap();
    api.delete_resource::<Credential>(&cred.id).unwrap();
    api.delete_user(&user.id).unwrap();
    let r = api.raw("POST", "/api/import", Some(&doc)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    let added: BTreeSet<(String, String)> = report["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().into(),
                i["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("user", "watcher"),
        ("repository", "shelf"),
        ("credential", "warehouse"),
        ("job", "shelved"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(added, want, "{report}");
    let note = |kind: &str| {
        report["added"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == kind)
            .unwrap()["note"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(note("credential").contains("password"), "{report}");
    assert!(note("user").contains("password"), "{report}");
    assert!(
        report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "admin")
    );

    // The job is back with its id, its record and the repository it names now.
    let back = api.job(&job.id).unwrap();
    let repos = api.resources::<Repository>().unwrap();
    assert_eq!(back.repository_id.as_deref(), Some(repos[0].id.as_str()));
    let records = api.records(&job.id, &RecordFilter::default()).unwrap();
    assert!(
        records.iter().any(|r| r.snapshot_id == record.snapshot_id),
        "{records:?}"
    );
    assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Success);
    // The imported user cannot log in until an admin gives them a password.
    assert!(
        Client::new(env.server.url())
            .login("watcher", "a watcher's long password")
            .is_err()
    );

    // Nothing twice; and what is not an export is refused.
    let r = api.raw("POST", "/api/import", Some(&doc)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json()["added"].as_array().unwrap().is_empty(),
        "{}",
        r.text
    );
    let mut other = doc.clone();
    other["format"] = json!("something-else");
    assert_eq!(
        api.raw("POST", "/api/import", Some(&other)).unwrap().status,
        400
    );
    assert_eq!(
        api.raw("POST", "/api/import", Some(&json!({"jobs": []})))
            .unwrap()
            .status,
        400
    );
    assert!(env.server.stop().success());
}

/// The entries of a zip, by name.
fn entries(zip: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut bytes = vec![];
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            (e.name().unwrap().to_string(), bytes)
        })
        .collect()
}

/// A zip of `files`, in order.
fn zipped(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(vec![]);
    let mut w = zip::ZipWriter::new(&mut out);
    for (name, bytes) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, bytes).unwrap();
    }
    w.finish().unwrap();
    out.into_inner()
}

fn usernames(api: &Client) -> BTreeSet<String> {
    api.users()
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect()
}

/// A system backup holds the whole metadata database (secrets only sealed under a
/// passphrase), and restoring one — kept on the server or uploaded — replaces everything
/// changed since, after a backup of what it replaces; damaged, tampered, foreign and newer
/// ones are refused before anything changes.
#[test]
fn a_system_backup_restores_the_whole_server_as_it_was() {
    let env = start();
    let api = &env.api;
    let src = env.dir.path().join("system-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "before").unwrap();
    let new_user = |name: &str| {
        api.create_user(
            &serde_json::from_value(
                json!({"username": name, "password": "a long enough password", "role": "viewer"}),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let keeper = new_user("keeper");
    let job = api.create_job(&path_job("kept", &src, json!({}))).unwrap();
    let record = run_to_end(api, &job.id);
    assert_eq!(record.status, RecordStatus::Success, "{record:?}");

    // Made, without and with secrets (which need a passphrase).
    let make = |query: &str, body: serde_json::Value| {
        api.raw("POST", &format!("/api/system/backups{query}"), Some(&body))
            .unwrap()
    };
    let r = make("", json!({}));
    assert_eq!(r.status, 201, "{}", r.text);
    let plain = r.json()["name"].as_str().unwrap().to_string();
    assert!(
        plain.starts_with("coffer-system-") && plain.ends_with(".zip"),
        "{plain}"
    );
    for body in [json!({}), json!({"passphrase": "short"})] {
        let r = make("?include_secrets=true", body);
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["field"], "passphrase");
    }
    let r = make(
        "?include_secrets=true",
        json!({"passphrase": "a long passphrase to keep"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let sealed = r.json()["name"].as_str().unwrap().to_string();
    let listed = api.raw("GET", "/api/system/backups", None).unwrap().json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // What is in it: a manifest, one file per table, nothing secret in the clear.
    let (headers, zip) = api
        .download(&format!("/api/system/backups/{plain}"))
        .unwrap();
    assert_eq!(headers["x-checksum-sha256"].to_str().unwrap(), sha256(&zip));
    let files = entries(&zip);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["format"], "coffer-system-backup");
    assert_eq!(manifest["secrets_included"], false);
    assert_eq!(manifest["tables"]["users"], 2);
    for table in ["users", "backup_jobs", "backup_records", "settings"] {
        assert!(
            files.contains_key(&format!("db/{table}.json")),
            "{:?}",
            files.keys()
        );
    }
    assert!(
        !files.contains_key("db/server_secrets.json") && !files.contains_key("db/sessions.json")
    );
    let server_key = hex::encode(std::fs::read(env.dir.path().join("data/server.key")).unwrap());
    let (_, with_secrets) = api
        .download(&format!("/api/system/backups/{sealed}"))
        .unwrap();
    for bytes in entries(&with_secrets).values() {
        assert!(!String::from_utf8_lossy(bytes).contains(&server_key));
    }
    assert!(entries(&with_secrets).contains_key("secrets/keys.enc"));

    // Everything changed, then restored from the server's copy.
    api.delete_user(&keeper.id).unwrap();
    new_user("intruder");
    api.delete_job(&job.id, true).unwrap();
    let r = api
        .raw("POST", &format!("/api/system/restore/{plain}"), None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let pre_restore = r.json()["pre_restore"].as_str().unwrap().to_string();
    assert!(pre_restore.starts_with("pre_restore_"), "{}", r.text);
    assert_eq!(
        usernames(api),
        BTreeSet::from(["admin".into(), "keeper".into()]),
        "the admin's session still works"
    );
    // The audit log keeps what happened since the backup (the deletion of keeper).
    let audit = api.audit(&coffer_client::AuditFilter::default()).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "DELETE /api/users/{id}"),
        "{audit:?}"
    );
    let back = api.records(&job.id, &RecordFilter::default()).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].snapshot_id, record.snapshot_id);
    assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Success);

    // From an upload: raw with its checksum (a wrong one refused), or as the form field `file`.
    new_user("second-intruder");
    let upload = |zip: &[u8], checksum: Option<&str>| {
        let mut r = reqwest::blocking::Client::new()
            .post(format!("{}/api/system/restore", env.server.url()))
            .bearer_auth(&env.token)
            .header("content-type", "application/zip")
            .body(zip.to_vec());
        if let Some(c) = checksum {
            r = r.header("x-checksum-sha256", c);
        }
        let res = r.send().unwrap();
        (res.status().as_u16(), res.text().unwrap())
    };
    let wrong = sha256(b"something else");
    assert_eq!(upload(&zip, Some(&wrong)).0, 400);
    assert!(
        usernames(api).contains("second-intruder"),
        "nothing changed"
    );
    let (status, text) = upload(&zip, Some(&sha256(&zip)));
    assert_eq!(status, 200, "{text}");
    assert!(!usernames(api).contains("second-intruder"));
    new_user("third-intruder");
    let r = upload_system_form(api, &zip);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!usernames(api).contains("third-intruder"));

    // An older Coffer's system backup (of the schema before the newest migration, when
    // notifications had no tables): migrated, restored.
    let mut older = files.clone();
    let mut old_manifest = manifest.clone();
    old_manifest["schema_version"] = json!(manifest["schema_version"].as_i64().unwrap() - 1);
    for newest_table in ["db/notification_channels.json", "db/notifications.json"] {
        older.remove(newest_table).unwrap();
        old_manifest["files"]
            .as_object_mut()
            .unwrap()
            .remove(newest_table)
            .unwrap();
    }
    older.insert(
        "manifest.json".into(),
        serde_json::to_vec(&old_manifest).unwrap(),
    );
    new_user("fourth-intruder");
    let older_zip = {
        let list: Vec<(&str, &[u8])> = older
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        zipped(&list)
    };
    let (status, text) = upload(&older_zip, None);
    assert_eq!(status, 200, "{text}");
    assert!(!usernames(api).contains("fourth-intruder"));
    let records = api.records(&job.id, &RecordFilter::default()).unwrap();
    assert_eq!(records.len(), 1, "as it was then: {records:?}");

    // Refused before anything changes: not a zip, cut short, tampered, with a name that climbs
    // out, of a newer schema, of another server.
    new_user("witness");
    let mut tampered = files.clone();
    tampered.insert("db/users.json".into(), b"[]".to_vec());
    let mut newer = manifest.clone();
    newer["schema_version"] = json!(manifest["schema_version"].as_i64().unwrap() + 1);
    let mut renewed = files.clone();
    renewed.insert("manifest.json".into(), serde_json::to_vec(&newer).unwrap());
    let as_zip = |files: &BTreeMap<String, Vec<u8>>| {
        let list: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        zipped(&list)
    };
    let mut climbing = files.clone();
    climbing.insert("../escape.json".into(), b"[]".to_vec());
    let other = start();
    let r = other.api.raw("POST", "/api/system/backups", None).unwrap();
    let (_, foreign) = other
        .api
        .download(&format!(
            "/api/system/backups/{}",
            r.json()["name"].as_str().unwrap()
        ))
        .unwrap();
    for (what, bad, status) in [
        ("not a zip", b"PK but not really".to_vec(), 400),
        ("cut short", zip[..zip.len() / 2].to_vec(), 400),
        ("tampered", as_zip(&tampered), 400),
        ("newer", as_zip(&renewed), 400),
        ("climbing", as_zip(&climbing), 400),
        ("foreign", foreign, 409),
    ] {
        let (got, text) = upload(&bad, None);
        assert_eq!(got, status, "{what}: {text}");
        assert!(usernames(api).contains("witness"), "{what} changed nothing");
    }
    assert_eq!(
        api.raw("GET", "/api/system/backups/coffer-system-none.zip", None)
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        api.raw("DELETE", "/api/system/backups/..%2Fcoffer.db", None)
            .unwrap()
            .status,
        400
    );
    let r = api
        .raw("DELETE", &format!("/api/system/backups/{sealed}"), None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(other.server.stop().success());
    assert!(env.server.stop().success());
}

/// A system backup uploaded as the form field `file`, as a browser sends it.
fn upload_system_form(api: &Client, zip: &[u8]) -> coffer_client::RawResponse {
    let boundary = "coffer-system-form";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"backup.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(zip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    api.raw_body(
        "POST",
        "/api/system/restore",
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .unwrap()
}

/// The disaster: the data directory is lost. A system backup with its secrets, recovered on a
/// machine that has nothing but it and the repositories, brings the server back with its
/// admin, its jobs and every record taken before, which verify, download and restore.
#[test]
fn a_lost_data_directory_is_recovered_from_a_system_backup() {
    let dir = tempdir().unwrap();
    let offsite = dir.path().join("offsite");
    std::fs::create_dir_all(&offsite).unwrap();
    let roots = offsite.display().to_string();
    let config = dir.path().join("coffer.toml");
    std::fs::write(&config, "session_hours = 12\n").unwrap();
    let config_path = config.display().to_string();
    let passphrase = "the passphrase kept in the safe";
    let envs = [
        ("COFFER_REPOSITORY_ROOTS", roots.as_str()),
        ("COFFER_CONFIG", config_path.as_str()),
        ("COFFER_SYSTEM_PASSPHRASE", passphrase),
    ];
    let server = start_in_with(&dir, &envs);
    let api = login(&server);
    let repo: Repository = api
        .create_resource::<Repository>(
            &serde_json::from_value(json!({
                "name": "offsite",
                "url": format!("file://{}/repo", offsite.display()),
            }))
            .unwrap(),
        )
        .unwrap();
    // Every system backup is also copied into that repository; one copy is kept.
    let offsite_url = format!("file://{}/repo", offsite.display());
    let put = |settings: serde_json::Value| {
        api.raw(
            "PUT",
            "/api/settings",
            Some(&json!({ "settings": settings })),
        )
        .unwrap()
    };
    for bad in [
        json!({"system.offsite_repository": "no-such-repository"}),
        json!({"system.offsite_repository": 7}),
        json!({"system.offsite_keep": 0}),
    ] {
        let r = put(bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let r = put(json!({"system.offsite_repository": repo.id, "system.offsite_keep": 1}));
    assert_eq!(r.status, 200, "{}", r.text);
    // The copies in the repository, which opens with the system passphrase.
    let copies = || -> Vec<String> {
        let out = std::process::Command::new(BIN)
            .args(["--repo", &offsite_url, "--json", "snapshots"])
            .env("COFFER_PASSWORD", passphrase)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        listed["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["labels"]["coffer.system_backup"].is_string())
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let early = api.raw("POST", "/api/system/backups", None).unwrap();
    assert_eq!(early.status, 201, "{}", early.text);
    assert!(
        early.json()["offsite"]["snapshot"].is_string(),
        "{}",
        early.text
    );
    // The server's daily task makes a copy too.
    assert!(api.run_server_task("auto_backup").unwrap().success);
    let task = &api.server_tasks().unwrap()[0];
    assert_eq!(task.last_status.as_deref(), Some("success"), "{task:?}");
    let held = copies();
    assert_eq!(held.len(), 1, "one copy is kept: {held:?}");
    assert_ne!(
        held[0],
        early.json()["offsite"]["snapshot"],
        "the task's copy replaced it"
    );
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("report.txt"), "first version").unwrap();
    let db = sqlite_db(
        dir.path(),
        &["CREATE TABLE t (x)", "INSERT INTO t VALUES (42)"],
    );
    let files_job = api
        .create_job(&path_job(
            "files",
            &files,
            json!({"repository_id": repo.id}),
        ))
        .unwrap();
    let db_job = api
        .create_job(
            &serde_json::from_value(json!({
                "name": "app database", "sources": [{"type": "sqlite", "path": db}],
                "repository_id": repo.id,
            }))
            .unwrap(),
        )
        .unwrap();
    // A PostgreSQL database through a credential whose password is sealed by the server key.
    let pg = super::databases::PgDatabase::new("recovered");
    super::databases::psql(
        &pg.0,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (7), (8);",
    );
    let (_, pg_job) = super::databases::database_job(
        &api,
        json!({"name": "local pg", "engine": "postgres", "host": "127.0.0.1",
                "user": "postgres", "password": "sealed by the server key"}),
        json!({"name": "pg", "repository_id": repo.id}),
        json!({"database": pg.0}),
    );
    let pg_record = run_to_end(&api, &pg_job.id);
    assert_eq!(pg_record.status, RecordStatus::Success, "{pg_record:?}");
    // A MariaDB database (mariadb-dump), through a credential without a password.
    let my = super::databases::MyDatabase::new("recovered");
    super::databases::mariadb(
        &my.0,
        "CREATE TABLE t (x INT); INSERT INTO t VALUES (20), (22);",
    );
    let (_, my_job) = super::databases::database_job(
        &api,
        json!({"name": "local mariadb", "engine": "mysql", "host": "127.0.0.1",
                "user": "root", "tls": "disable"}),
        json!({"name": "my", "repository_id": repo.id}),
        json!({"database": my.0, "backup_tool": "mariadb-dump"}),
    );
    let my_record = run_to_end(&api, &my_job.id);
    assert_eq!(my_record.status, RecordStatus::Success, "{my_record:?}");
    // A Docker volume.
    let vol = super::volumes::Volume::new(&["app=recovered"]);
    super::volumes::fill_volume(&vol.0);
    let original_volume = coffer_testkit::volume_manifest(&vol.0);
    let vol_job = api
        .create_job(
            &serde_json::from_value(
                json!({"name": "volume", "volumes": [vol.0], "repository_id": repo.id}),
            )
            .unwrap(),
        )
        .unwrap();
    let vol_record = run_to_end(&api, &vol_job.id);
    assert_eq!(vol_record.status, RecordStatus::Success, "{vol_record:?}");
    let first = run_to_end(&api, &files_job.id);
    std::fs::write(files.join("report.txt"), "second version").unwrap();
    let second = run_to_end(&api, &files_job.id);
    let db_record = run_to_end(&api, &db_job.id);
    for r in [&first, &second, &db_record] {
        assert_eq!(r.status, RecordStatus::Success, "{r:?}");
    }

    // The system backup, kept away from the data directory; then the data directory is gone.
    let r = api
        .raw(
            "POST",
            "/api/system/backups?include_secrets=true",
            Some(&json!({"passphrase": passphrase})),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text);
    let offsite_copy = &r.json()["offsite"];
    assert_eq!(
        offsite_copy["repository_id"],
        repo.id.as_str(),
        "{}",
        r.text
    );
    assert!(offsite_copy["error"].is_null(), "{}", r.text);
    let (_, zip) = api
        .download(&format!(
            "/api/system/backups/{}",
            r.json()["name"].as_str().unwrap()
        ))
        .unwrap();
    let kept = dir.path().join("coffer-system.zip");
    std::fs::write(&kept, &zip).unwrap();
    assert!(server.stop().success());
    let data = dir.path().join("data");
    std::fs::remove_dir_all(&data).unwrap();

    let recover = |from: [&str; 2], into: &str, passphrase: &str| {
        std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["system", "recover", from[0], from[1], "--data-dir", into])
            .env("COFFER_SYSTEM_PASSPHRASE", passphrase)
            .output()
            .unwrap()
    };
    // From the zip kept aside.
    let from_zip = ["--from", kept.to_str().unwrap()];
    let wrong = recover(from_zip, "data-from-zip", "not the passphrase");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("passphrase"),
        "{wrong:?}"
    );
    let from_zip_dir = dir.path().join("data-from-zip");
    assert!(
        !from_zip_dir.join("coffer.db").exists(),
        "nothing was built"
    );
    let done = recover(from_zip, "data-from-zip", passphrase);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        std::fs::read_to_string(from_zip_dir.join("config/coffer.toml")).unwrap(),
        "session_hours = 12\n",
        "the configuration file it ran with comes back"
    );
    // From the repository alone, with nothing but its address and the passphrase: the
    // newest copy (the older one is gone: one copy is kept).
    assert_eq!(
        copies(),
        [offsite_copy["snapshot"].as_str().unwrap()],
        "the newest copy alone is kept"
    );
    let from_repo = ["--repo", offsite_url.as_str()];
    let wrong = recover(from_repo, "data", "not the passphrase");
    assert!(!wrong.status.success());
    assert!(!data.join("coffer.db").exists(), "nothing was built");
    let done = recover(from_repo, "data", passphrase);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        std::fs::read_to_string(data.join("config/coffer.toml")).unwrap(),
        "session_hours = 12\n"
    );
    let again = recover(from_repo, "data", passphrase);
    assert!(
        !again.status.success(),
        "a data directory with a database is never overwritten"
    );
    use std::os::unix::fs::PermissionsExt;
    for private in ["server.key", "coffer.db"] {
        let mode = std::fs::metadata(data.join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{private} is private");
    }

    // The server as it was: same admin (with its password), jobs, records, repository key.
    let server = start_in_with(&dir, &envs);
    let api = login(&server);
    let jobs: BTreeSet<String> = api.jobs().unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(
        jobs,
        BTreeSet::from([
            files_job.id.clone(),
            db_job.id.clone(),
            pg_job.id.clone(),
            my_job.id.clone(),
            vol_job.id.clone()
        ])
    );
    for (job, record) in [
        (&files_job.id, &first),
        (&files_job.id, &second),
        (&db_job.id, &db_record),
        (&pg_job.id, &pg_record),
        (&my_job.id, &my_record),
        (&vol_job.id, &vol_record),
    ] {
        assert!(api.verify_record(job, &record.id).unwrap().ok, "{record:?}");
        let (_, archive) = api.download_record(job, &record.id).unwrap();
        assert_eq!(Some(sha256(&archive)), record.checksum);
    }
    let task = restore(
        &api,
        &files_job.id,
        &first.id,
        json!({"target": "restores/first"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let restored = data
        .join("restores/first")
        .join(files.strip_prefix("/").unwrap())
        .join("report.txt");
    assert_eq!(std::fs::read_to_string(restored).unwrap(), "first version");
    let task = restore(
        &api,
        &db_job.id,
        &db_record.id,
        json!({"target": "restores/db"}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    let copy = data
        .join("restores/db/sqlite")
        .join(db.strip_prefix("/").unwrap());
    let x: i64 = with_database(&copy, async |pool| {
        sqlx::query_scalar("SELECT x FROM t")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(x, 42);
    let into = super::databases::PgDatabase::new("recovered_into");
    super::databases::psql("postgres", &format!("DROP DATABASE {}", into.0));
    let task = restore(
        &api,
        &pg_job.id,
        &pg_record.id,
        json!({"target_database": into.0}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(
        super::databases::psql(&into.0, "SELECT sum(x) FROM t"),
        "15"
    );
    super::databases::mariadb(&my.0, "DROP TABLE t");
    let task = restore(&api, &my_job.id, &my_record.id, json!({}));
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(
        super::databases::mariadb(&my.0, "SELECT SUM(x) FROM t"),
        "42"
    );
    coffer_testkit::docker(&["volume", "rm", &vol.0]);
    let task = restore(
        &api,
        &vol_job.id,
        &vol_record.id,
        json!({"volumes": [vol.0]}),
    );
    assert_eq!(task.status, RecordStatus::Success, "{task:?}");
    assert_eq!(coffer_testkit::volume_manifest(&vol.0), original_volume);
    // The credential's sealed password opens again: a new record of the database works.
    assert_eq!(run_to_end(&api, &pg_job.id).status, RecordStatus::Success);
    // And it goes on backing up into the same repositories.
    assert_eq!(
        run_to_end(&api, &files_job.id).status,
        RecordStatus::Success
    );
    assert!(server.stop().success());
}

/// The command line drives a running server with an API key: jobs, runs, records, downloads
/// (resumed), restores and system backups, for people and as JSON.
#[test]
fn the_command_line_drives_a_running_server() {
    let env = start();
    let api = &env.api;
    let key = api
        .create_key(&coffer_types::CreateKey {
            name: "cli".into(),
            role: None,
            expires_at: None,
        })
        .unwrap()
        .key;
    let src = env.dir.path().join("cli-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), seeded(3 << 20, "cli")).unwrap();
    let job = api.create_job(&path_job("cli", &src, json!({}))).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .current_dir(env.dir.path())
            .args(args)
            .env("COFFER_URL", env.server.url())
            .env("COFFER_API_KEY", &key)
            .env("COFFER_SYSTEM_PASSPHRASE", "a passphrase for the cli")
            .output()
            .unwrap();
        assert!(out.status.success(), "coffer {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&cli(&all)).unwrap()
    };

    assert_eq!(json(&["jobs", "list"])[0]["id"], job.id.as_str());
    assert!(cli(&["jobs", "list"]).contains("cli"));
    let record = json(&["jobs", "run", &job.id, "--wait"]);
    assert_eq!(record["status"], "success", "{record}");
    let rid = record["id"].as_str().unwrap().to_string();
    assert_eq!(json(&["records", &job.id]).as_array().unwrap().len(), 1);

    // A download cut short resumes where it stopped, and is checked whole.
    let (_, whole) = api.download_record(&job.id, &rid).unwrap();
    let out = env.dir.path().join("record.tar");
    std::fs::write(&out, &whole[..whole.len() / 3]).unwrap();
    let done = json(&["download", &job.id, &rid, "-o", out.to_str().unwrap()]);
    assert_eq!(done["sha256"], sha256(&whole).as_str());
    assert_eq!(std::fs::read(&out).unwrap(), whole);

    let task = json(&[
        "restore-record",
        &job.id,
        &rid,
        "--target",
        "restores/cli",
        "--wait",
    ]);
    assert_eq!(task["status"], "success", "{task}");
    let restored = env
        .dir
        .path()
        .join("data/restores/cli")
        .join(src.strip_prefix("/").unwrap())
        .join("big.bin");
    assert_eq!(std::fs::read(restored).unwrap(), seeded(3 << 20, "cli"));

    // A system backup downloaded, then the server restored from the file.
    let backups = env.dir.path().join("system-backups-here");
    let made = json(&[
        "system",
        "backup",
        "--output",
        backups.to_str().unwrap(),
        "--include-secrets",
    ]);
    let file = made["file"].as_str().unwrap().to_string();
    assert!(entries(&std::fs::read(&file).unwrap()).contains_key("secrets/keys.enc"));
    api.delete_job(&job.id, true).unwrap();
    let restored = json(&["system", "restore", &file]);
    assert_eq!(restored["success"], true, "{restored}");
    assert!(api.job(&job.id).is_ok(), "the job is back");

    // Without a key: a clear error.
    let out = std::process::Command::new(BIN)
        .args(["jobs", "list"])
        .env("COFFER_URL", env.server.url())
        .env_remove("COFFER_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("COFFER_API_KEY"),
        "{out:?}"
    );

    // One process at a time on a data directory: a second server, or a local system backup,
    // is refused while the server runs.
    let local = |extra: &[&str]| {
        let mut args = vec!["system", "backup", "--data-dir", "data", "--json"];
        args.extend_from_slice(extra);
        std::process::Command::new(BIN)
            .current_dir(env.dir.path())
            .args(&args)
            .env("COFFER_URL", "http://127.0.0.1:9")
            .env("COFFER_API_KEY", &key)
            .output()
            .unwrap()
    };
    let second = std::process::Command::new(BIN)
        .current_dir(env.dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another Coffer process"),
        "{second:?}"
    );
    let refused = local(&["--local"]);
    assert!(!refused.status.success(), "{refused:?}");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(said.contains("another Coffer process"), "{said}");
    assert!(env.server.stop().success());

    // Stopped: no server answers, so the backup is made on the data directory, and says so.
    let made = local(&["--output", "local-backups"]);
    assert!(made.status.success(), "{made:?}");
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    assert!(
        made["mode"].as_str().unwrap().starts_with("locally"),
        "{made}"
    );
    let file = env.dir.path().join(made["file"].as_str().unwrap());
    assert!(entries(&std::fs::read(file).unwrap()).contains_key("db/backup_jobs.json"));
}

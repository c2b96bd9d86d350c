//! The configuration exported and imported.

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

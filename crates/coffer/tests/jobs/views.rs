//! What the web interface reads besides jobs and records: a job's summary (last success, sizes,
//! why it last failed), the meaning of a schedule, a record's folders, the node's Docker
//! volumes and the databases behind a credential.

use super::*;

#[test]
fn a_jobs_summary_follows_its_runs() {
    let env = start();
    let health = env.api.raw("GET", "/api/health", None).unwrap().json();
    assert_eq!(health["setup_required"], false, "{health}");
    let src = source_tree(env.dir.path(), 1);
    let job = env
        .api
        .create_job(&path_job("summary", &src, json!({"schedule": "0 3 * * *"})))
        .unwrap();
    let fresh = env.api.job(&job.id).unwrap();
    assert!(fresh.last_success_at.is_none() && fresh.last_size_bytes.is_none());
    assert!(
        !fresh.overdue,
        "a new job is not overdue before its first slot"
    );

    let ok = run_to_end(&env.api, &job.id);
    assert_eq!(ok.status, RecordStatus::Success, "{ok:?}");
    let j = env.api.job(&job.id).unwrap();
    assert_eq!(j.last_success_at, Some(ok.started_at));
    assert_eq!(j.last_size_bytes, ok.size_bytes);
    assert_eq!(j.stored_bytes, ok.stored_bytes);
    assert_eq!(j.last_error, None);

    // A failed run: its reason is on the job, the last success stays the earlier one.
    let moved = env.dir.path().join("moved");
    std::fs::rename(&src, &moved).unwrap();
    let failed = run_to_end(&env.api, &job.id);
    std::fs::rename(&moved, &src).unwrap();
    assert_eq!(failed.status, RecordStatus::Failed);
    let j = env.api.job(&job.id).unwrap();
    assert_eq!(j.last_status, Some(RecordStatus::Failed));
    assert_eq!(j.last_error, failed.error);
    assert!(j.last_error.as_deref().unwrap().contains("src"), "{j:?}");
    assert_eq!(j.last_success_at, Some(ok.started_at));
    let listed = env.api.jobs().unwrap();
    assert_eq!(listed[0].last_error, failed.error, "the list says it too");

    // The record's folders, one at a time.
    let tree = |path: &str| {
        env.api
            .raw(
                "GET",
                &format!(
                    "/api/backup-jobs/{}/records/{}/tree?path={path}",
                    job.id, ok.id
                ),
                None,
            )
            .unwrap()
    };
    let root = tree("/").json();
    assert_eq!(root["path"], "/");
    assert_eq!(root["entries"][0]["type"], "dir", "{root}");
    let top = tree(src.to_str().unwrap()).json();
    let names: Vec<&str> = top["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "link", "sub"], "{top}");
    let link = &top["entries"][1];
    assert_eq!(
        (link["type"].as_str(), link["target"].as_str()),
        (Some("symlink"), Some("a.txt"))
    );
    assert_eq!(
        top["entries"][0]["path"],
        format!("{}/a.txt", src.display()),
        "what a restore's paths name"
    );
    let sub = tree(&format!("{}/sub/", src.display())).json();
    assert_eq!(sub["entries"][0]["size"], 1024 * 1024, "{sub}");
    for bad in [format!("{}/a.txt", src.display()), "/no/such/folder".into()] {
        let r = tree(&bad);
        assert_eq!(r.status.as_u16(), 400, "{bad}: {}", r.text);
        assert_eq!(r.json()["field"], "path", "{}", r.text);
    }
    let failed_tree = env
        .api
        .raw(
            "GET",
            &format!("/api/backup-jobs/{}/records/{}/tree", job.id, failed.id),
            None,
        )
        .unwrap();
    assert_eq!(
        failed_tree.status.as_u16(),
        409,
        "a failed record has no files"
    );
}

#[test]
fn schedules_volumes_and_databases_are_offered_as_the_server_sees_them() {
    let env = start();
    let preview = |q: &str| {
        env.api
            .raw("GET", &format!("/api/schedule-preview?{q}"), None)
            .unwrap()
    };
    let p = preview("schedule=30%202%20*%20*%20*&timezone=Europe/Berlin").json();
    assert_eq!(p["timezone"], "Europe/Berlin");
    let next: Vec<chrono::DateTime<Utc>> = serde_json::from_value(p["next"].clone()).unwrap();
    assert_eq!(next.len(), 5);
    assert!(
        next[0] > Utc::now()
            && next
                .windows(2)
                .all(|w| w[1] - w[0] >= chrono::TimeDelta::hours(23))
    );
    for (q, field) in [
        ("schedule=61%20*%20*%20*%20*", "schedule"),
        ("schedule=@daily&timezone=Mars/Olympus", "timezone"),
    ] {
        let r = preview(q);
        assert_eq!(r.status.as_u16(), 400, "{}", r.text);
        assert_eq!(r.json()["field"], field, "{}", r.text);
    }

    let volume = super::volumes::Volume::new(&[]);
    let listed = env
        .api
        .raw("GET", "/api/nodes/local/volumes", None)
        .unwrap()
        .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == volume.0.as_str() && v["driver"] == "local"),
        "{listed}"
    );
    let other = env
        .api
        .raw("GET", "/api/nodes/elsewhere/volumes", None)
        .unwrap();
    assert_eq!(other.status.as_u16(), 404, "{}", other.text);

    let input: coffer_types::CredentialInput = serde_json::from_value(
        json!({"name": "local", "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}),
    )
    .unwrap();
    let c = env.api.create_resource::<Credential>(&input).unwrap();
    let dbs = env
        .api
        .raw("GET", &format!("/api/credentials/{}/databases", c.id), None)
        .unwrap()
        .json();
    assert!(
        dbs.as_array().unwrap().iter().any(|d| d == "postgres"),
        "{dbs}"
    );
    let wrong: coffer_types::CredentialInput = serde_json::from_value(
        json!({"name": "nowhere", "engine": "postgres", "host": "127.0.0.1", "port": 1, "user": "postgres"}),
    )
    .unwrap();
    let c = env.api.create_resource::<Credential>(&wrong).unwrap();
    let down = env
        .api
        .raw("GET", &format!("/api/credentials/{}/databases", c.id), None)
        .unwrap();
    assert_eq!(down.status.as_u16(), 502, "{}", down.text);
    assert_eq!(down.json()["code"], "source_failed");
}

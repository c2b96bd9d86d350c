//! The HTTP API, black-box: the real `coffer serve` on a free port with a temporary data
//! directory, driven through the typed client. Setup, login, keys, the route × role matrix
//! (read from the served OpenAPI document), the error format, rate limiting, token rotation,
//! the audit log, metrics, and a SIGKILL during writes.

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use coffer_client::{AuditFilter, Client, ClientError, Credentials, StatusCode};
use coffer_testkit::{ServerProcess, TempDir, tempdir, with_database};
use coffer_types::{
    CreateKey, CreateUser, JobInput, RecordStatus, Role, SetupRequest, UpdateUser, User,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");
const ADMIN_PASSWORD: &str = "the admin's long password";
const PASSWORD: &str = "a user's long password";

struct Env {
    server: ServerProcess,
    dir: TempDir,
    api: Client,
}

fn start() -> Env {
    let dir = tempdir().unwrap();
    let server = start_in(&dir);
    let api = Client::new(server.url());
    Env { server, dir, api }
}

/// Operators may back up what lies in the test's directory (its source root).
fn start_in(dir: &TempDir) -> ServerProcess {
    ServerProcess::start(
        BIN,
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        &[("COFFER_SOURCE_ROOTS", dir.path().to_str().unwrap())],
    )
}

fn setup_request(username: &str, password: &str) -> SetupRequest {
    serde_json::from_value(json!({ "username": username, "password": password })).unwrap()
}

fn create_user(username: &str, role: Role) -> CreateUser {
    serde_json::from_value(json!({ "username": username, "password": PASSWORD, "role": role }))
        .unwrap()
}

/// The setup admin, logged in.
fn admin(env: &Env) -> Client {
    env.api
        .setup(&setup_request("admin", ADMIN_PASSWORD))
        .unwrap();
    let login = env.api.login("admin", ADMIN_PASSWORD).unwrap();
    env.api.with(Credentials::Bearer(login.token))
}

fn bearer(api: &Client, username: &str, password: &str) -> Client {
    api.with(Credentials::Bearer(
        api.login(username, password).unwrap().token,
    ))
}

/// The error a call failed with: status and code, after checking the body's format.
fn err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String) {
    match r {
        Err(ClientError::Api { status, body, .. }) => {
            assert!(!body.error.is_empty(), "an error message for people");
            (status, body.code)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn a_new_user_sets_up_logs_in_and_uses_an_api_key() {
    let env = start();
    let api = &env.api;

    // A weak password is refused; setup works once.
    let weak = api.raw(
        "POST",
        "/api/auth/setup",
        Some(&json!({"username": "admin", "password": "short"})),
    );
    let weak = weak.unwrap();
    assert_eq!(weak.status, 400);
    assert!(
        weak.json()["error"]
            .as_str()
            .unwrap()
            .contains("12 characters"),
        "{}",
        weak.text
    );
    let user = api.setup(&setup_request("admin", ADMIN_PASSWORD)).unwrap();
    assert_eq!(user.role, Role::Admin);
    assert_eq!(
        err(api.setup(&setup_request("other", ADMIN_PASSWORD))),
        (StatusCode::CONFLICT, "conflict".into())
    );

    // Wrong password and unknown user fail alike.
    let wrong = err(api.login("admin", "not the password"));
    let unknown = err(api.login("nobody", ADMIN_PASSWORD));
    assert_eq!(wrong, (StatusCode::UNAUTHORIZED, "unauthorized".into()));
    assert_eq!(wrong, unknown);

    // Login: a token and an HttpOnly, SameSite=Strict session cookie carrying it.
    let r = api
        .raw(
            "POST",
            "/api/auth/login",
            Some(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("coffer_session={token};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(r.json()["expires_at"].as_str().is_some());
    let by_token = api.with(Credentials::Bearer(token.clone()));
    let by_cookie = api.with(Credentials::Cookie(token));
    assert_eq!(by_token.me().unwrap().username, "admin");
    assert_eq!(by_cookie.me().unwrap().username, "admin");

    // An API key: shown once, stored hashed, usable as X-API-Key.
    let created = by_token
        .create_key(&CreateKey {
            name: "ci".into(),
            role: Some(Role::Viewer),
            expires_at: None,
        })
        .unwrap();
    assert!(
        created.key.starts_with("cf_") && created.key.len() == 67,
        "{}",
        created.key
    );
    assert!(created.key.starts_with(&created.info.prefix));
    let listed = serde_json::to_string(&by_token.keys(false).unwrap()).unwrap();
    assert!(
        listed.contains(&created.info.id) && !listed.contains(&created.key),
        "the secret is never listed"
    );
    let db = std::fs::read(env.dir.path().join("data/coffer.db")).unwrap();
    assert!(
        !db.windows(created.key.len())
            .any(|w| w == created.key.as_bytes()),
        "the key is not stored in clear"
    );
    let by_key = api.with(Credentials::ApiKey(created.key.clone()));
    assert_eq!(by_key.me().unwrap().username, "admin");
    // The key acts as a viewer, although its owner is an admin.
    assert_eq!(err(by_key.users()).0, StatusCode::FORBIDDEN);
    assert!(
        by_key.keys(false).unwrap()[0].last_used_at.is_some(),
        "use is recorded"
    );

    // A viewer key cannot mint an admin key; expiries must lie ahead; revocation is immediate.
    let escalate = CreateKey {
        name: "up".into(),
        role: Some(Role::Admin),
        expires_at: None,
    };
    assert_eq!(err(by_key.create_key(&escalate)).0, StatusCode::FORBIDDEN);
    let past = CreateKey {
        name: "old".into(),
        role: None,
        expires_at: Some(Utc::now() - chrono::Duration::hours(1)),
    };
    assert_eq!(err(by_token.create_key(&past)).0, StatusCode::BAD_REQUEST);
    by_token.revoke_key(&created.info.id).unwrap();
    assert_eq!(
        err(by_key.me()),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );

    // A key that expires stops working by itself.
    let soon = CreateKey {
        name: "soon".into(),
        role: None,
        expires_at: Some(Utc::now() + chrono::Duration::seconds(2)),
    };
    let short = api.with(Credentials::ApiKey(by_token.create_key(&soon).unwrap().key));
    assert!(short.me().is_ok());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(err(short.me()).0, StatusCode::UNAUTHORIZED);
    assert!(env.server.stop().success());
}

/// Each route the API serves, with the least role it needs (None: public).
const ROUTES: &[(&str, &str, Option<Role>)] = &[
    ("GET", "/api/health", None),
    ("GET", "/api/modules", None),
    ("GET", "/metrics", None),
    ("GET", "/api/openapi.json", None),
    ("POST", "/api/auth/setup", None),
    ("POST", "/api/auth/login", None),
    ("POST", "/api/auth/refresh", None),
    ("POST", "/api/auth/logout", Some(Role::Viewer)),
    ("GET", "/api/auth/me", Some(Role::Viewer)),
    ("POST", "/api/admin/secrets/rotate-jwt", Some(Role::Admin)),
    ("GET", "/api/users", Some(Role::Admin)),
    ("POST", "/api/users", Some(Role::Admin)),
    ("GET", "/api/users/{id}", Some(Role::Admin)),
    ("PUT", "/api/users/{id}", Some(Role::Admin)),
    ("DELETE", "/api/users/{id}", Some(Role::Admin)),
    ("GET", "/api/keys", Some(Role::Viewer)),
    ("POST", "/api/keys", Some(Role::Viewer)),
    ("DELETE", "/api/keys/{id}", Some(Role::Viewer)),
    ("GET", "/api/nodes", Some(Role::Viewer)),
    ("GET", "/api/nodes/{id}/volumes", Some(Role::Viewer)),
    ("GET", "/api/schedule-preview", Some(Role::Viewer)),
    (
        "GET",
        "/api/credentials/{id}/databases",
        Some(Role::Operator),
    ),
    (
        "GET",
        "/api/credentials/{id}/pitr/coverage",
        Some(Role::Operator),
    ),
    ("GET", "/api/credentials/{id}/pitr", Some(Role::Operator)),
    ("POST", "/api/credentials/{id}/pitr", Some(Role::Operator)),
    (
        "GET",
        "/api/credentials/{id}/pitr/{pitr_id}",
        Some(Role::Operator),
    ),
    (
        "GET",
        "/api/backup-jobs/{id}/records/{rid}/tree",
        Some(Role::Operator),
    ),
    ("GET", "/api/ws", Some(Role::Viewer)),
    ("GET", "/api/settings", Some(Role::Admin)),
    ("GET", "/api/settings/{key}", Some(Role::Admin)),
    ("PUT", "/api/settings/{key}", Some(Role::Admin)),
    ("PUT", "/api/settings", Some(Role::Admin)),
    ("GET", "/api/backup", Some(Role::Admin)),
    ("POST", "/api/backup", Some(Role::Admin)),
    ("DELETE", "/api/backup", Some(Role::Admin)),
    ("GET", "/api/scheduler", Some(Role::Admin)),
    ("GET", "/api/export", Some(Role::Admin)),
    ("POST", "/api/system/backups", Some(Role::Admin)),
    ("GET", "/api/system/backups", Some(Role::Admin)),
    ("GET", "/api/system/backups/{name}", Some(Role::Admin)),
    ("DELETE", "/api/system/backups/{name}", Some(Role::Admin)),
    ("POST", "/api/system/restore/{name}", Some(Role::Admin)),
    ("POST", "/api/system/restore", Some(Role::Admin)),
    ("POST", "/api/import", Some(Role::Admin)),
    ("POST", "/api/scheduler", Some(Role::Admin)),
    ("GET", "/api/audit", Some(Role::Admin)),
    ("GET", "/api/admin/repository-key", Some(Role::Admin)),
    ("POST", "/api/credentials/{id}/test", Some(Role::Admin)),
    ("GET", "/api/notification-channels", Some(Role::Operator)),
    ("POST", "/api/notification-channels", Some(Role::Admin)),
    (
        "GET",
        "/api/notification-channels/{id}",
        Some(Role::Operator),
    ),
    ("PUT", "/api/notification-channels/{id}", Some(Role::Admin)),
    (
        "DELETE",
        "/api/notification-channels/{id}",
        Some(Role::Admin),
    ),
    (
        "POST",
        "/api/notification-channels/{id}/test",
        Some(Role::Admin),
    ),
    ("GET", "/api/notifications", Some(Role::Viewer)),
    ("POST", "/api/repositories/{id}/test", Some(Role::Admin)),
    (
        "POST",
        "/api/admin/repository-key/rotate",
        Some(Role::Admin),
    ),
    ("GET", "/api/backup-jobs", Some(Role::Viewer)),
    ("POST", "/api/backup-jobs", Some(Role::Operator)),
    ("GET", "/api/backup-jobs/{id}", Some(Role::Viewer)),
    ("PUT", "/api/backup-jobs/{id}", Some(Role::Operator)),
    ("PATCH", "/api/backup-jobs/{id}", Some(Role::Operator)),
    ("GET", "/api/records", Some(Role::Viewer)),
    ("DELETE", "/api/backup-jobs/{id}", Some(Role::Operator)),
    ("POST", "/api/backup-jobs/{id}/run", Some(Role::Operator)),
    ("GET", "/api/backup-jobs/{id}/records", Some(Role::Viewer)),
    (
        "GET",
        "/api/backup-jobs/{id}/records/{rid}",
        Some(Role::Viewer),
    ),
    (
        "DELETE",
        "/api/backup-jobs/{id}/records/{rid}",
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/backup-jobs/{id}/records/{rid}/verify",
        Some(Role::Operator),
    ),
    (
        "GET",
        "/api/backup-jobs/{id}/records/{rid}/download",
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/backup-jobs/{id}/records/{rid}/restore",
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/backup-jobs/{id}/restore-upload",
        Some(Role::Operator),
    ),
    ("GET", "/api/backup-jobs/{id}/restores", Some(Role::Viewer)),
    ("GET", "/api/backup-jobs/{id}/drills", Some(Role::Viewer)),
    ("POST", "/api/backup-jobs/{id}/drills", Some(Role::Operator)),
    (
        "GET",
        "/api/backup-jobs/{id}/drills/{drill_id}",
        Some(Role::Viewer),
    ),
    (
        "GET",
        "/api/backup-jobs/{id}/restores/{tid}",
        Some(Role::Viewer),
    ),
    ("GET", "/api/repositories", Some(Role::Operator)),
    ("POST", "/api/repositories", Some(Role::Admin)),
    ("GET", "/api/repositories/{id}", Some(Role::Operator)),
    ("PUT", "/api/repositories/{id}", Some(Role::Admin)),
    ("DELETE", "/api/repositories/{id}", Some(Role::Admin)),
    ("GET", "/api/credentials", Some(Role::Operator)),
    ("POST", "/api/credentials", Some(Role::Admin)),
    ("GET", "/api/credentials/{id}", Some(Role::Operator)),
    ("PUT", "/api/credentials/{id}", Some(Role::Admin)),
    ("DELETE", "/api/credentials/{id}", Some(Role::Admin)),
];

/// A job backing up `src`.
fn job_input(src: &std::path::Path) -> JobInput {
    serde_json::from_value(json!({"name": "matrix", "sources": [{"type": "path", "path": src}]}))
        .unwrap()
}

/// A job of `src` with one finished record: (job id, record id).
fn finished_record(api: &Client, src: &std::path::Path) -> (String, String) {
    let job = api.create_job(&job_input(src)).unwrap();
    let started = api.run_job(&job.id).unwrap();
    let done = api
        .wait_record(&job.id, &started.id, Duration::from_secs(60))
        .unwrap();
    assert_eq!(done.status, RecordStatus::Success, "{done:?}");
    (job.id, done.id)
}

/// Each documented operation and the role its security names (None: public).
fn documented(api: &Client) -> BTreeSet<(String, String, Option<Role>)> {
    let doc = api.openapi().unwrap();
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let role = op["security"].as_array().map(|alternatives| {
                // Each alternative is `{scheme: [role]}`; all must name the same role.
                let roles: BTreeSet<String> = alternatives
                    .iter()
                    .flat_map(|a| a.as_object().unwrap().values())
                    .map(|scopes| scopes[0].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(
                    roles.len(),
                    1,
                    "{method} {path}: bearer, cookie and key need the same role"
                );
                assert_eq!(
                    alternatives.len(),
                    3,
                    "{method} {path}: bearer, cookie and API key"
                );
                roles.first().unwrap().parse::<Role>().unwrap()
            });
            out.insert((method.to_uppercase(), path.clone(), role));
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_enforces_its_role() {
    let env = start();
    let admin = admin(&env);
    let expected: BTreeSet<(String, String, Option<Role>)> = ROUTES
        .iter()
        .map(|(m, p, r)| (m.to_string(), p.to_string(), *r))
        .collect();
    assert_eq!(
        documented(&env.api),
        expected,
        "the OpenAPI document lists exactly the routes served"
    );

    // One account per role, each logging in from its own loopback address (so the login rate
    // limit, which is per address, is not what this test measures).
    let roles = [Role::Viewer, Role::Operator, Role::Admin];
    let from = |i: u8| Client::from_address(env.api.base(), IpAddr::from([127, 0, 0, 10 + i]));
    for role in &roles[..2] {
        admin
            .create_user(&create_user(role.as_str(), *role))
            .unwrap();
    }
    let login = |role: Role| -> Client {
        let c = from(role as u8);
        let (name, pw) = if role == Role::Admin {
            ("admin", ADMIN_PASSWORD)
        } else {
            (role.as_str(), PASSWORD)
        };
        let token = c.login(name, pw).unwrap().token;
        c.with(Credentials::Bearer(token))
    };
    let mut clients: Vec<Client> = roles.iter().map(|r| login(*r)).collect();
    admin.put_setting("greeting", json!("hello")).unwrap();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), b"data").unwrap();
    let (job, rec) = finished_record(&admin, &src);
    let elsewhere: coffer_types::RestoreRequest =
        serde_json::from_value(json!({"target": "restores/matrix"})).unwrap();
    let task = admin.restore_record(&job, &rec, &elsewhere).unwrap();
    let (_, archive) = admin.download_record(&job, &rec).unwrap();

    for (method, template, least) in ROUTES {
        // Without credentials: 401 for protected routes, never 401/403 for public ones.
        let path = template
            .replace("{id}", "0123456789abcdef")
            .replace("{rid}", "0123456789abcdef")
            .replace("{tid}", "0123456789abcdef")
            .replace("{pitr_id}", "0123456789abcdef")
            .replace("{key}", "greeting");
        let anon = env.api.raw(method, &path, Some(&json!({}))).unwrap();
        match least {
            Some(_) => {
                assert_eq!(
                    anon.status, 401,
                    "{method} {template} without credentials: {}",
                    anon.text
                );
                assert_eq!(anon.json()["code"], "unauthorized");
            }
            None => assert!(
                ![401, 403, 404, 405].contains(&anon.status.as_u16())
                    || template.contains("refresh"),
                "{method} {template} is public: {} {}",
                anon.status,
                anon.text
            ),
        }
        let Some(least) = least else { continue };
        for (i, role) in roles.iter().enumerate() {
            let mut upload: Option<(&str, Vec<u8>)> = None;
            // Arguments that make the call succeed when allowed.
            let (path, body) = match (*method, *template) {
                (_, "/api/users/{id}") => {
                    let victim = clients[2]
                        .create_user(&create_user(
                            &format!("u{}", Utc::now().timestamp_micros()),
                            Role::Viewer,
                        ))
                        .unwrap();
                    (
                        format!("/api/users/{}", victim.id),
                        json!({"role": "operator"}),
                    )
                }
                ("DELETE", "/api/keys/{id}") => {
                    let key = clients[i]
                        .create_key(&CreateKey {
                            name: "k".into(),
                            role: None,
                            expires_at: None,
                        })
                        .unwrap();
                    (format!("/api/keys/{}", key.info.id), json!({}))
                }
                ("POST", "/api/users") => (
                    path.clone(),
                    serde_json::to_value(create_user(
                        &format!("n{}", Utc::now().timestamp_micros()),
                        Role::Viewer,
                    ))
                    .unwrap(),
                ),
                ("POST", "/api/keys") => (path.clone(), json!({"name": "matrix"})),
                ("POST", "/api/backup-jobs") => {
                    (path.clone(), serde_json::to_value(job_input(&src)).unwrap())
                }
                ("PUT", "/api/backup-jobs/{id}") => (
                    format!("/api/backup-jobs/{job}"),
                    json!({"name": "renamed"}),
                ),
                ("DELETE", "/api/backup-jobs/{id}") | ("POST", "/api/backup-jobs/{id}/run") => {
                    let fresh = clients[2].create_job(&job_input(&src)).unwrap();
                    (template.replace("{id}", &fresh.id), json!({}))
                }
                ("DELETE", "/api/backup-jobs/{id}/records/{rid}") => {
                    let (j, r) = finished_record(&clients[2], &src);
                    (format!("/api/backup-jobs/{j}/records/{r}"), json!({}))
                }
                ("POST", "/api/backup-jobs/{id}/restore-upload") => {
                    let (j, _) = finished_record(&clients[2], &src);
                    (format!("/api/backup-jobs/{j}/restore-upload"), json!(null))
                }
                ("POST", "/api/backup-jobs/{id}/records/{rid}/restore") => {
                    let (j, r) = finished_record(&clients[2], &src);
                    (
                        format!("/api/backup-jobs/{j}/records/{r}/restore"),
                        json!({"target": "restores/matrix"}),
                    )
                }
                ("POST", "/api/repositories") => (
                    path.clone(),
                    json!({"name": format!("r{}", Utc::now().timestamp_micros()),
                           "url": "s3://matrix/prefix"}),
                ),
                ("POST", "/api/repositories/{id}/test") => {
                    // A local repository: testing one on S3 without an endpoint would reach
                    // beyond this machine.
                    let data = std::fs::canonicalize(env.dir.path().join("data")).unwrap();
                    let url = format!(
                        "file://{}/backups/m{}",
                        data.display(),
                        Utc::now().timestamp_micros()
                    );
                    let r = clients[2]
                        .raw(
                            "POST",
                            "/api/repositories",
                            Some(&json!({"name": url.clone(), "url": url})),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    (format!("/api/repositories/{id}/test"), json!({}))
                }
                ("POST", "/api/credentials/{id}/test") => {
                    let r = clients[2]
                        .raw(
                            "POST",
                            "/api/credentials",
                            Some(
                                &json!({"name": format!("t{}", Utc::now().timestamp_micros()),
                                         "engine": "mysql", "host": "127.0.0.1", "user": "nobody"}),
                            ),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    (format!("/api/credentials/{id}/test"), json!({}))
                }
                (_, "/api/repositories/{id}") => {
                    let r = clients[2]
                        .raw(
                            "POST",
                            "/api/repositories",
                            Some(
                                &json!({"name": format!("r{}", Utc::now().timestamp_micros()),
                                         "url": "s3://matrix/prefix"}),
                            ),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    (
                        format!("/api/repositories/{}", r.json()["id"].as_str().unwrap()),
                        json!({"region": "eu-central-1"}),
                    )
                }
                ("POST", "/api/notification-channels") => (
                    path.clone(),
                    json!({"name": format!("n{}", Utc::now().timestamp_micros()),
                           "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s",
                           "events": ["backup.failed"]}),
                ),
                (_, "/api/notification-channels/{id}" | "/api/notification-channels/{id}/test") => {
                    let r = clients[2]
                        .raw(
                            "POST",
                            "/api/notification-channels",
                            Some(
                                &json!({"name": format!("n{}", Utc::now().timestamp_micros()),
                                         "type": "ntfy", "url": "http://127.0.0.1:9/topic",
                                         "events": ["drill.failed"]}),
                            ),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    (template.replace("{id}", &id), json!({"enabled": false}))
                }
                ("POST", "/api/credentials") => (
                    path.clone(),
                    json!({"name": format!("c{}", Utc::now().timestamp_micros()),
                           "engine": "postgres", "host": "127.0.0.1", "user": "app"}),
                ),
                (
                    _,
                    "/api/credentials/{id}/databases"
                    | "/api/credentials/{id}/pitr/coverage"
                    | "/api/credentials/{id}/pitr"
                    | "/api/credentials/{id}/pitr/{pitr_id}",
                ) => {
                    let r = clients[2]
                        .raw(
                            "POST",
                            "/api/credentials",
                            Some(
                                &json!({"name": format!("pg{}", Utc::now().timestamp_micros()),
                                         "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}),
                            ),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    let path = template
                        .replace("{id}", &id)
                        .replace("{pitr_id}", "0123456789abcdef");
                    (path, json!({"target_time": "2026-01-01T00:00:00Z"}))
                }
                ("GET", "/api/nodes/{id}/volumes") => {
                    ("/api/nodes/local/volumes".into(), json!({}))
                }
                ("GET", "/api/schedule-preview") => {
                    ("/api/schedule-preview?schedule=@daily".into(), json!({}))
                }
                (_, "/api/credentials/{id}") => {
                    let r = clients[2]
                        .raw(
                            "POST",
                            "/api/credentials",
                            Some(
                                &json!({"name": format!("c{}", Utc::now().timestamp_micros()),
                                         "engine": "mysql", "host": "127.0.0.1", "user": "app"}),
                            ),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    (
                        format!("/api/credentials/{}", r.json()["id"].as_str().unwrap()),
                        json!({"port": 3307}),
                    )
                }
                (_, t) if t.starts_with("/api/backup-jobs") => (
                    t.replace("{id}", &job)
                        .replace("{rid}", &rec)
                        .replace("{tid}", &task.id)
                        .replace("{drill_id}", "0123456789abcdef"),
                    json!({}),
                ),
                ("PUT", "/api/settings") => (path.clone(), json!({"settings": {"greeting": "hi"}})),
                ("DELETE", "/api/backup") => {
                    let r = clients[2].raw("POST", "/api/backup", None).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text);
                    (path.clone(), json!({"name": r.json()["backup"]["name"]}))
                }
                ("POST", "/api/scheduler") => (path.clone(), json!({"task_id": "auto_backup"})),
                (_, "/api/system/backups/{name}" | "/api/system/restore/{name}")
                | ("POST", "/api/system/restore") => {
                    let r = clients[2].raw("POST", "/api/system/backups", None).unwrap();
                    assert_eq!(r.status, 201, "{}", r.text);
                    let name = r.json()["name"].as_str().unwrap().to_string();
                    if *template == "/api/system/restore" {
                        let (_, zip) = clients[2]
                            .download(&format!("/api/system/backups/{name}"))
                            .unwrap();
                        upload = Some(("application/zip", zip));
                        (path.clone(), json!(null))
                    } else {
                        (template.replace("{name}", &name), json!({}))
                    }
                }
                ("POST", "/api/import") => {
                    let r = clients[2].raw("GET", "/api/export", None).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text);
                    (path.clone(), r.json())
                }
                ("PUT", _) => (path.clone(), json!({"value": 42})),
                _ => (path.clone(), json!({})),
            };
            // Logout and rotation end sessions: give them a session of their own.
            let ends_sessions = template.contains("logout") || template.contains("rotate");
            let caller = if ends_sessions && role >= least {
                login(*role)
            } else {
                clients[i].clone()
            };
            let r = if body.is_null() {
                // An upload: the archive (or system backup) itself as the body.
                let (kind, bytes) = upload
                    .take()
                    .unwrap_or(("application/x-tar", archive.clone()));
                caller.raw_body(method, &path, kind, bytes).unwrap()
            } else {
                caller.raw(method, &path, Some(&body)).unwrap()
            };
            if role < least {
                assert_eq!(r.status, 403, "{method} {template} as {role}: {}", r.text);
                assert_eq!(r.json()["code"], "forbidden");
            } else if *template == "/api/ws" {
                // Allowed, but a plain request is not a WebSocket handshake (tests/jobs/
                // opens real WebSockets).
                assert_eq!(r.status, 400, "{method} {template} as {role}: {}", r.text);
                assert!(r.text.contains("WebSocket"), "{}", r.text);
            } else if *method == "POST" && template.ends_with("/pitr")
                || template.ends_with("{pitr_id}")
            {
                // Allowed, but a PostgreSQL server has no binary log to recover from, and
                // there is no such recovery (tests/jobs/ recovers MariaDB servers).
                let code = r.json()["code"].clone();
                assert!(
                    code == "invalid_field" || code == "not_found",
                    "{method} {template} as {role}: {}",
                    r.text
                );
            } else if template.ends_with("{drill_id}") {
                // Allowed, but there is no such drill.
                assert_eq!(r.status, 404, "{method} {template} as {role}: {}", r.text);
            } else if template.ends_with("/drills") && r.status == 409 {
                // Allowed, but the drill an earlier role started still runs.
                assert_eq!(r.json()["code"], "drill_running", "{}", r.text);
            } else if template.starts_with("/api/system/restore") && r.status == 409 {
                // Allowed, but refused while the jobs this test started still run.
                assert_eq!(r.json()["code"], "job_running", "{}", r.text);
            } else {
                assert!(
                    r.status.is_success(),
                    "{method} {template} as {role}: {} {}",
                    r.status,
                    r.text
                );
            }
            if template.contains("rotate") && role >= least {
                clients = roles.iter().map(|r| login(*r)).collect();
            }
        }
    }
    assert!(env.server.stop().success());
}

#[test]
fn bad_input_gets_the_error_format_with_the_right_status() {
    let env = start();
    let admin = admin(&env);
    let check = |r: coffer_client::RawResponse, status: u16, code: &str| -> String {
        assert_eq!(r.status.as_u16(), status, "{}", r.text);
        let body = r.json();
        assert_eq!(body["code"], code, "{}", r.text);
        assert!(
            r.headers.contains_key("x-request-id"),
            "every answer carries a request id"
        );
        body["error"].as_str().unwrap().to_string()
    };
    check(
        admin
            .raw_body("POST", "/api/users", "application/json", "{not json")
            .unwrap(),
        400,
        "bad_request",
    );
    let msg = check(
        admin
            .raw(
                "POST",
                "/api/users",
                Some(&json!({"username": "x", "password": 12, "role": "viewer"})),
            )
            .unwrap(),
        400,
        "invalid_field",
    );
    assert!(msg.contains("password"), "the field is named: {msg}");
    let msg = check(
        admin
            .raw(
                "POST",
                "/api/users",
                Some(&json!({"username": "x", "password": PASSWORD, "role": "root"})),
            )
            .unwrap(),
        400,
        "invalid_field",
    );
    assert!(msg.contains("role"), "{msg}");
    let msg = check(admin.raw("POST", "/api/users", Some(&json!({"username": "x", "password": PASSWORD, "role": "viewer", "admin": true}))).unwrap(), 400, "invalid_field");
    assert!(
        msg.contains("unknown field `admin`"),
        "unknown fields are named: {msg}"
    );
    check(
        admin
            .raw(
                "POST",
                "/api/users",
                Some(&json!({"username": "../etc", "password": PASSWORD, "role": "viewer"})),
            )
            .unwrap(),
        400,
        "invalid_field",
    );
    // A value of the wrong type names its field, so that a form can show the reason there.
    let r = admin
        .raw(
            "POST",
            "/api/backup-jobs",
            Some(&json!({"name": "x", "retention": {"keep_daily": "often"}})),
        )
        .unwrap();
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.json()["code"], "invalid_field", "{}", r.text);
    assert_eq!(r.json()["field"], "retention.keep_daily", "{}", r.text);
    check(
        admin
            .raw_body("POST", "/api/users", "text/plain", "hello")
            .unwrap(),
        415,
        "unsupported_media_type",
    );
    // The server stops reading an oversized body and closes that connection: use its own.
    let own_connection = bearer(&Client::new(env.api.base()), "admin", ADMIN_PASSWORD);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    check(
        own_connection
            .raw_body("POST", "/api/keys", "application/json", huge)
            .unwrap(),
        413,
        "payload_too_large",
    );
    check(
        admin.raw("GET", "/api/users/does-not-exist", None).unwrap(),
        404,
        "not_found",
    );
    check(
        admin.raw("GET", "/api/no/such/route", None).unwrap(),
        404,
        "not_found",
    );
    check(
        admin.raw("DELETE", "/api/health", None).unwrap(),
        405,
        "method_not_allowed",
    );
    check(
        admin.raw("GET", "/api/audit?limit=lots", None).unwrap(),
        400,
        "bad_request",
    );
    check(
        admin
            .raw("GET", "/api/audit?since=yesterday", None)
            .unwrap(),
        400,
        "bad_request",
    );
    check(
        admin.raw("GET", "/api/settings/Bad%20Key", None).unwrap(),
        400,
        "bad_request",
    );
    check(
        admin.raw("GET", "/api/settings/never-set", None).unwrap(),
        404,
        "not_found",
    );
    // Broken credentials of every kind: 401, never 500.
    for creds in [
        Credentials::Bearer("not.a.token".into()),
        Credentials::Bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".into()),
        Credentials::Cookie("garbage".into()),
        Credentials::ApiKey("cf_0000".into()),
        Credentials::ApiKey("nonsense".into()),
    ] {
        let r = env
            .api
            .with(creds.clone())
            .raw("GET", "/api/auth/me", None)
            .unwrap();
        check(r, 401, "unauthorized");
    }
    let r = env
        .api
        .raw_body("GET", "/api/auth/me", "application/json", "")
        .unwrap();
    check(r, 401, "unauthorized");
    // Every JSON body is an object: serde would take an array for a struct.
    let me = admin.me().unwrap();
    for (method, path, body) in [
        ("PUT", format!("/api/users/{}", me.id), "[null,null]"),
        ("POST", "/api/backup-jobs/x/records/y/restore".into(), "[]"),
        ("POST", "/api/users".into(), "\"admin\""),
    ] {
        let msg = check(
            admin
                .raw_body(method, &path, "application/json", body)
                .unwrap(),
            400,
            "bad_request",
        );
        assert!(msg.contains("object"), "{method} {path} {body}: {msg}");
    }
    // An oversized restore request and a very long address get the error format too.
    let huge = format!("{{\"paths\": [\"{}\"]}}", "x".repeat(2 * 1024 * 1024));
    let own_connection = bearer(&Client::new(env.api.base()), "admin", ADMIN_PASSWORD);
    check(
        own_connection
            .raw_body(
                "POST",
                "/api/backup-jobs/x/records/y/restore",
                "application/json",
                huge,
            )
            .unwrap(),
        413,
        "payload_too_large",
    );
    // An address longer than HTTP clients send (written by hand: reqwest refuses it).
    let mut c = std::net::TcpStream::connect(env.server.addr).unwrap();
    let long = format!(
        "GET /api/health?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "x".repeat(70_000)
    );
    std::io::Write::write_all(&mut c, long.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut c, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["code"], "uri_too_long", "{answer}");
    // Usernames are one regardless of case; control characters in names are refused.
    let upper = serde_json::from_value(
        json!({"username": "ADMIN", "password": PASSWORD, "role": "viewer"}),
    )
    .unwrap();
    assert_eq!(
        err(admin.create_user(&upper)),
        (StatusCode::CONFLICT, "already_exists".into())
    );
    assert!(env.api.login("Admin", ADMIN_PASSWORD).is_ok());
    let r = admin
        .raw("POST", "/api/keys", Some(&json!({"name": "a\0b"})))
        .unwrap();
    assert_eq!(r.json()["field"], "name", "{}", r.text);
    check(r, 400, "invalid_field");
    let r = admin.raw("GET", "/api/audit?limit=0", None).unwrap();
    assert_eq!(r.json()["field"], "limit", "{}", r.text);
    check(r, 400, "invalid_field");
    // Nothing stored was affected by any of it.
    assert_eq!(admin.users().unwrap().len(), 1);
    assert!(env.server.stop().success());
}

#[test]
fn no_answer_may_be_cached_and_every_status_is_documented() {
    let env = start();
    let admin = admin(&env);
    let login = env
        .api
        .raw(
            "POST",
            "/api/auth/login",
            Some(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .unwrap();
    let key = admin
        .raw("POST", "/api/keys", Some(&json!({"name": "k"})))
        .unwrap();
    for r in [&login, &key] {
        assert_eq!(r.headers["cache-control"], "no-store", "{}", r.text);
    }
    let doc = env.api.openapi().unwrap();
    // Valid OpenAPI, by an independent validator (installed by scripts/test).
    let file = env.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--errors", "all"])
        .arg(&file)
        .output()
        .expect("python3 runs the OpenAPI validator (scripts/test installs it)");
    assert!(
        out.status.success(),
        "the OpenAPI document is not valid (is openapi-spec-validator installed? scripts/test \
         installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            if op.get("security").is_some() {
                assert!(has("401"), "{method} {path}: 401");
            }
            if op
                .pointer("/requestBody/content/application~1json")
                .is_some()
            {
                for s in ["400", "413", "415"] {
                    assert!(has(s), "{method} {path}: {s}");
                }
            }
            let role = op.pointer("/security/0/bearer/0").and_then(|r| r.as_str());
            if role.is_some_and(|r| r != "viewer") {
                assert!(has("403"), "{method} {path}: 403");
            }
        }
    }
    assert!(env.server.stop().success());
}

#[test]
fn login_is_limited_to_ten_attempts_per_minute_per_address() {
    let env = start();
    admin(&env); // one attempt from 127.0.0.1
    for _ in 0..9 {
        assert_eq!(
            err(env.api.login("admin", "wrong password!")).0,
            StatusCode::UNAUTHORIZED
        );
    }
    match env.api.login("admin", ADMIN_PASSWORD) {
        Err(ClientError::Api {
            status,
            body,
            retry_after,
        }) => {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(body.code, "rate_limited");
            let secs = retry_after.expect("a Retry-After header");
            assert!((1..=60).contains(&secs), "{secs}");
        }
        other => panic!("the 11th attempt is refused, even with the right password: {other:?}"),
    }
    // Another address is not affected.
    let other = Client::from_address(env.api.base(), IpAddr::from([127, 0, 0, 2]));
    assert!(other.login("admin", ADMIN_PASSWORD).is_ok());
    assert!(env.server.stop().success());
}

#[test]
fn logout_refresh_and_rotation_end_tokens_at_once() {
    let env = start();
    let admin = admin(&env);
    let key = admin
        .create_key(&CreateKey {
            name: "automation".into(),
            role: None,
            expires_at: None,
        })
        .unwrap()
        .key;
    let by_key = env.api.with(Credentials::ApiKey(key));

    // Refresh gives a new token for the same session; logout ends both at once.
    let session = bearer(&env.api, "admin", ADMIN_PASSWORD);
    let refreshed = session.refresh().unwrap();
    let new = env.api.with(Credentials::Bearer(refreshed.token));
    assert!(new.me().is_ok());
    new.logout().unwrap();
    assert_eq!(err(new.me()).0, StatusCode::UNAUTHORIZED);
    assert_eq!(err(session.me()).0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        err(session.refresh()).0,
        StatusCode::UNAUTHORIZED,
        "an ended session cannot be refreshed"
    );
    assert!(admin.me().is_ok(), "other sessions go on");

    // A token that expired, and one signed with another secret, are refused.
    let db = env.dir.path().join("data/coffer.db");
    let secret: Vec<u8> = with_database(&db, async |pool| {
        sqlx::query_scalar("SELECT value FROM server_secrets")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    let me = admin.me().unwrap();
    let sign = |secret: &[u8], exp: i64| {
        let claims = json!({"sub": me.id, "sid": "x", "iat": exp - 60, "exp": exp});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let expired = env.api.with(Credentials::Bearer(sign(
        &secret,
        Utc::now().timestamp() - 10,
    )));
    let (status, _) = err(expired.me());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let forged = env.api.with(Credentials::Bearer(sign(
        b"another secret",
        Utc::now().timestamp() + 600,
    )));
    assert_eq!(err(forged.me()).0, StatusCode::UNAUTHORIZED);

    // Rotation: every token stops working, including the rotating admin's; keys go on.
    let other = bearer(&env.api, "admin", ADMIN_PASSWORD);
    assert!(admin.rotate_jwt().unwrap().rotated);
    assert_eq!(err(admin.me()).0, StatusCode::UNAUTHORIZED);
    assert_eq!(err(other.me()).0, StatusCode::UNAUTHORIZED);
    assert_eq!(err(other.refresh()).0, StatusCode::UNAUTHORIZED);
    assert!(
        by_key.me().is_ok(),
        "API keys do not depend on the signing secret"
    );
    let fresh = env.api.login("admin", ADMIN_PASSWORD).unwrap().token;

    // The new secret survives a restart: a token issued after the rotation still works.
    assert!(env.server.stop().success());
    let server = start_in(&env.dir);
    let api = Client::new(server.url()).with(Credentials::Bearer(fresh));
    assert_eq!(api.me().unwrap().username, "admin");
    assert!(server.stop().success());
}

#[test]
fn users_are_managed_by_admins_and_the_last_admin_stays() {
    let env = start();
    let admin = admin(&env);
    let me = admin.me().unwrap();
    let op = admin
        .create_user(&create_user("olga", Role::Operator))
        .unwrap();
    assert_eq!(
        err(admin.create_user(&create_user("olga", Role::Viewer))).0,
        StatusCode::CONFLICT
    );
    assert_eq!(admin.users().unwrap().len(), 2);
    assert_eq!(admin.user(&op.id).unwrap().role, Role::Operator);

    // The last admin can be neither demoted nor deleted.
    let demote = UpdateUser {
        password: None,
        role: Some(Role::Viewer),
    };
    assert_eq!(
        err(admin.update_user(&me.id, &demote)).0,
        StatusCode::CONFLICT
    );
    assert_eq!(err(admin.delete_user(&me.id)).0, StatusCode::CONFLICT);
    assert_eq!(admin.me().unwrap().role, Role::Admin);

    // A second admin makes it possible; a role change applies to live sessions at once.
    let olga = bearer(&env.api, "olga", PASSWORD);
    assert_eq!(err(olga.users()).0, StatusCode::FORBIDDEN);
    admin
        .update_user(
            &op.id,
            &UpdateUser {
                password: None,
                role: Some(Role::Admin),
            },
        )
        .unwrap();
    assert_eq!(olga.users().unwrap().len(), 2);
    olga.update_user(&me.id, &demote).unwrap();
    assert_eq!(err(admin.users()).0, StatusCode::FORBIDDEN);

    // A new password ends the user's sessions; deleting a user ends everything of theirs.
    let new_pw: UpdateUser =
        serde_json::from_value(json!({"password": "another long password"})).unwrap();
    olga.update_user(&me.id, &new_pw).unwrap();
    assert_eq!(err(admin.me()).0, StatusCode::UNAUTHORIZED);
    let admin = bearer(&env.api, "admin", "another long password");
    let key = admin
        .create_key(&CreateKey {
            name: "k".into(),
            role: None,
            expires_at: None,
        })
        .unwrap();
    olga.delete_user(&me.id).unwrap();
    assert_eq!(err(admin.me()).0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        err(env.api.with(Credentials::ApiKey(key.key)).me()).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(err(olga.user(&me.id)).0, StatusCode::NOT_FOUND);
    assert_eq!(err(olga.delete_user(&me.id)).0, StatusCode::NOT_FOUND);
    let users: Vec<User> = olga.users().unwrap();
    assert_eq!(users.len(), 1);
    assert!(env.server.stop().success());
}

#[test]
fn mutations_are_audited_with_who_how_from_where_and_the_outcome() {
    let env = start();
    let started = Utc::now();
    let admin = admin(&env);
    assert!(err(env.api.login("admin", "wrong password!")).0 == StatusCode::UNAUTHORIZED);
    let key = admin
        .create_key(&CreateKey {
            name: "bot".into(),
            role: None,
            expires_at: None,
        })
        .unwrap();
    let bot = env.api.with(Credentials::ApiKey(key.key.clone()));
    bot.put_setting("retention", json!({"days": 30})).unwrap();
    admin
        .create_user(&create_user("vera", Role::Viewer))
        .unwrap();
    let vera = bearer(&env.api, "vera", PASSWORD);
    // Reading the repository key is audited, tried or done.
    assert_eq!(err(vera.repository_key()).0, StatusCode::FORBIDDEN);
    admin.repository_key().unwrap();
    assert_eq!(
        err(vera.create_user(&create_user("eve", Role::Admin))).0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        err(vera.audit(&AuditFilter::default())).0,
        StatusCode::FORBIDDEN,
        "the audit log is for admins"
    );
    admin.me().unwrap(); // reads are not audited

    let all = admin.audit(&AuditFilter::default()).unwrap();
    let actions: Vec<(&str, Option<&str>, u16)> = all
        .iter()
        .map(|e| (e.action.as_str(), e.username.as_deref(), e.status))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("POST /api/users", Some("vera"), 403),
            ("GET /api/admin/repository-key", Some("admin"), 200),
            ("GET /api/admin/repository-key", Some("vera"), 403),
            ("POST /api/auth/login", Some("vera"), 200),
            ("POST /api/users", Some("admin"), 201),
            ("PUT /api/settings/{key}", Some("admin"), 200),
            ("POST /api/keys", Some("admin"), 201),
            ("POST /api/auth/login", Some("admin"), 401),
            ("POST /api/auth/login", Some("admin"), 200),
            ("POST /api/auth/setup", Some("admin"), 201),
        ],
        "newest first, reads left out"
    );
    let by_key = &all[5];
    assert_eq!(
        by_key.key_id.as_deref(),
        Some(key.info.id.as_str()),
        "the key used is recorded"
    );
    assert_eq!(by_key.target, "/api/settings/retention");
    assert!(
        all.iter()
            .all(|e| e.client_ip.as_deref() == Some("127.0.0.1"))
    );
    assert_eq!(all[0].outcome, coffer_types::Outcome::Failure);
    assert_eq!(all[1].outcome, coffer_types::Outcome::Success);

    // Filters.
    let f = |user: Option<&str>, action: Option<&str>, limit: Option<u32>| AuditFilter {
        user: user.map(str::to_string),
        action: action.map(str::to_string),
        limit,
        ..AuditFilter::default()
    };
    assert_eq!(admin.audit(&f(Some("vera"), None, None)).unwrap().len(), 3);
    assert_eq!(admin.audit(&f(None, Some("login"), None)).unwrap().len(), 3);
    assert_eq!(admin.audit(&f(None, None, Some(2))).unwrap().len(), 2);
    let window = AuditFilter {
        since: Some(started),
        until: Some(Utc::now()),
        ..AuditFilter::default()
    };
    assert_eq!(admin.audit(&window).unwrap().len(), all.len());
    let later = AuditFilter {
        since: Some(Utc::now() + chrono::Duration::hours(1)),
        ..AuditFilter::default()
    };
    assert!(admin.audit(&later).unwrap().is_empty());
    assert!(env.server.stop().success());
}

#[test]
fn metrics_and_nodes_describe_the_server() {
    let env = start();
    let admin = admin(&env);
    admin.me().unwrap();
    let _ = env.api.raw("GET", "/api/users/some-id", None).unwrap();
    let text = env.api.metrics().unwrap();
    assert!(
        text.contains(
            r#"coffer_http_requests_total{method="GET",route="/api/auth/me",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/users/{id}",status="401""#),
        "routes are labelled by template: {text}"
    );
    assert!(
        text.contains("coffer_http_request_duration_seconds_bucket"),
        "{text}"
    );
    for basic in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(basic))
            .unwrap_or_else(|| panic!("{basic} in {text}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 0.0, "{line}");
    }
    let nodes = admin.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(
        !nodes[0].docker.detail.is_empty(),
        "Docker reachable or not, with the reason"
    );
    for (name, version) in [("pg_dump", "PostgreSQL"), ("mydumper", "mydumper 0.")] {
        let tool = nodes[0].tools.iter().find(|t| t.name == name).unwrap();
        assert!(
            tool.path.is_some() && tool.version.as_deref().is_some_and(|v| v.contains(version)),
            "the node lists its dump tools with their versions: {tool:?}"
        );
    }
    assert!(env.server.stop().success());
}

#[test]
fn a_sigkill_during_writes_leaves_a_working_database() {
    let env = start();
    let admin = admin(&env);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (admin, stop) = (admin.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = vec![];
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let ok = if i % 2 == 0 {
                        admin.put_setting(&name, json!(i)).is_ok()
                    } else {
                        admin
                            .create_key(&CreateKey {
                                name: name.clone(),
                                role: None,
                                expires_at: None,
                            })
                            .is_ok()
                    };
                    if !ok {
                        break;
                    }
                    acknowledged.push(name);
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let server = env.server;
    server.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 20,
        "the writers got going: {}",
        acknowledged.len()
    );

    let server = start_in(&env.dir);
    let api = Client::new(server.url());
    assert_eq!(api.health().unwrap().status, "ok");
    let admin = bearer(&api, "admin", ADMIN_PASSWORD);
    let settings: BTreeSet<String> = admin
        .settings()
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    let keys: BTreeSet<String> = admin
        .keys(false)
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    for name in &acknowledged {
        assert!(
            settings.contains(name) || keys.contains(name),
            "{name} was acknowledged, so it is kept"
        );
    }
    admin.put_setting("after-restart", json!(true)).unwrap();
    assert!(server.stop().success());
}

#[test]
fn an_internal_error_is_logged_under_its_request_id_and_never_leaked() {
    let env = start();
    let admin = admin(&env);
    // A value no Coffer wrote: the server cannot read it back.
    with_database(&env.dir.path().join("data/coffer.db"), async |pool| {
        sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ('broken', 'SECRET-DETAIL{', 'then')")
            .execute(pool)
            .await
            .unwrap();
    });
    let r = admin.raw("GET", "/api/settings/broken", None).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["code"], "internal");
    assert!(
        !r.text.contains("SECRET-DETAIL") && !r.text.contains("setting"),
        "no internals: {}",
        r.text
    );
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(100));
    let log = env.server.log();
    let line = log
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("request {id} in the log:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("broken"),
        "the details are logged: {line}"
    );
    // The rest of the server is unaffected.
    assert!(admin.me().is_ok());
    assert!(env.server.stop().success());
}

/// Coffer backs up its own metadata database: consistent, distinct, kept to their count,
/// deleted only by name, limited per admin, audited, and taken by the server's own daily task.
#[test]
fn the_metadata_database_is_backed_up_while_the_server_runs() {
    let env = start();
    let admin = admin(&env);
    admin
        .create_user(&create_user("keeper", Role::Viewer))
        .unwrap();
    let post = |c: &Client| c.raw("POST", "/api/backup", None).unwrap();
    let listed = |c: &Client| -> Vec<String> {
        let r = c.raw("GET", "/api/backup", None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    let dir = std::fs::canonicalize(env.dir.path().join("data"))
        .unwrap()
        .join("system-backups");
    let users_in = |name: &str| -> Vec<String> {
        with_database(&dir.join(name), async |pool| {
            sqlx::query_scalar::<_, String>("SELECT username FROM users ORDER BY username")
                .fetch_all(pool)
                .await
                .unwrap()
        })
    };

    // One snapshot: named by its time, complete, the newest in the list.
    let r = post(&admin);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["success"], true);
    let first = body["backup"]["name"].as_str().unwrap().to_string();
    let stamp = first
        .strip_prefix("coffer-backup-")
        .and_then(|s| s.strip_suffix(".db"))
        .unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d_%H-%M-%S").is_ok(),
        "{first}"
    );
    assert!(body["backup"]["size"].as_u64().unwrap() > 0);
    assert!((body["backup"]["created_at"].as_i64().unwrap() - Utc::now().timestamp()).abs() < 60);
    assert_eq!(users_in(&first), ["admin", "keeper"]);
    let r = admin.raw("GET", "/api/backup", None).unwrap();
    assert_eq!(r.json()["dir"], dir.display().to_string());
    assert_eq!(listed(&admin), std::slice::from_ref(&first));

    // Taken at once by several requests: distinct, complete files.
    let names: BTreeSet<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| post(&admin))).collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.text);
                r.json()["backup"]["name"].as_str().unwrap().to_string()
            })
            .collect()
    });
    assert_eq!(names.len(), 4, "{names:?}");
    for n in &names {
        assert_eq!(users_in(n), ["admin", "keeper"], "{n}");
    }

    // Settings the server reads are checked; none of a bad batch is stored.
    let put = |body: serde_json::Value| admin.raw("PUT", "/api/settings", Some(&body)).unwrap();
    for bad in [json!("0"), json!(-2), json!("ten"), json!(1.5)] {
        let r = put(json!({"settings": {"greeting": "x", "general.backup_retention_count": bad}}));
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.json()["code"], "invalid_field");
        assert_eq!(r.json()["field"], "general.backup_retention_count");
    }
    assert_eq!(
        admin
            .raw("GET", "/api/settings/greeting", None)
            .unwrap()
            .status,
        404
    );
    let r = admin
        .raw(
            "PUT",
            "/api/settings/general.auto_backup",
            Some(&json!({"value": "maybe"})),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);

    // Retention: only the newest are kept.
    let r = put(json!({"settings": {"general.backup_retention_count": "3"}}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(&admin);
    let newest = r.json()["backup"]["name"].as_str().unwrap().to_string();
    let kept = listed(&admin);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[0], newest);
    assert!(!kept.contains(&first) && !dir.join(&first).exists());

    // Deleted by name only.
    let delete = |name: &str| {
        admin
            .raw("DELETE", "/api/backup", Some(&json!({"name": name})))
            .unwrap()
    };
    for bad in ["../coffer.db", "system-backups/x.db", "coffer.txt", "..db"] {
        let r = delete(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    assert_eq!(delete("coffer-backup-1999-01-01_00-00-00.db").status, 404);
    assert!(
        env.dir.path().join("data/coffer.db").exists(),
        "nothing else was touched"
    );
    let gone = kept[2].clone();
    let r = delete(&gone);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["success"], true);
    assert!(!dir.join(&gone).exists());

    // At most 10 an hour per admin (6 so far); another admin has their own count.
    for _ in 0..4 {
        assert_eq!(post(&admin).status, 200);
    }
    let r = post(&admin);
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["code"], "rate_limited");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    admin
        .create_user(&create_user("second", Role::Admin))
        .unwrap();
    let second = bearer(&env.api, "second", PASSWORD);
    assert_eq!(post(&second).status, 200);

    // Creations and deletions are audited with the admin and the file.
    let audit = admin.audit(&AuditFilter::default()).unwrap();
    let created = audit
        .iter()
        .find(|e| e.action == "POST /api/backup" && e.target.contains(&newest))
        .expect("the creation is audited");
    assert_eq!(created.username.as_deref(), Some("admin"));
    let deleted = audit
        .iter()
        .find(|e| e.action == "DELETE /api/backup" && e.status == 200)
        .expect("the deletion is audited");
    assert!(deleted.target.contains(&gone), "{deleted:?}");
    assert_eq!(deleted.username.as_deref(), Some("admin"));

    // The server's own daily task: shown, switched on by a setting, run on demand.
    let task = || {
        let r = admin.raw("GET", "/api/scheduler", None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["tasks"][0].clone()
    };
    let t = task();
    assert_eq!(t["id"], "auto_backup");
    assert_eq!(t["enabled"], false);
    assert!(t["last_run"].is_null());
    let next: chrono::DateTime<Utc> = t["next_run"].as_str().unwrap().parse().unwrap();
    assert_eq!(next.format("%H:%M:%S").to_string(), "03:00:00");
    assert!(next > Utc::now() && next <= Utc::now() + chrono::Duration::days(1));
    let r = put(json!({"settings": {"general.auto_backup": "true"}}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(task()["enabled"], true);
    let r = admin
        .raw(
            "POST",
            "/api/scheduler",
            Some(&json!({"task_id": "auto_backup"})),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["success"], true);
    let t = task();
    assert_eq!(t["last_status"], "success");
    assert!(!t["last_run"].is_null());
    assert_eq!(
        listed(&admin).len(),
        3,
        "the retention applies to the task too"
    );
    let r = admin
        .raw(
            "POST",
            "/api/scheduler",
            Some(&json!({"task_id": "nightly"})),
        )
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(env.server.stop().success());
}

#[test]
fn requests_that_change_something_from_another_sites_page_are_refused() {
    let env = start();
    admin(&env);
    let token = env.api.login("admin", ADMIN_PASSWORD).unwrap().token;
    let http = reqwest::blocking::Client::new();
    let ours = env.api.base().split_once("://").unwrap().1.to_string();
    let create_key = |name: &str, headers: &[(&str, &str)]| {
        let mut r = http
            .post(format!("{}/api/keys", env.api.base()))
            .bearer_auth(&token)
            .json(&json!({ "name": name }));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let res = r.send().unwrap();
        (res.status().as_u16(), res.text().unwrap())
    };
    let (status, body) = create_key("evil", &[("Origin", "http://evil.example")]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"cross_origin\""), "{body}");
    let (status, body) = create_key("null", &[("Origin", "null")]);
    assert_eq!(status, 403, "a sandboxed page: {body}");
    let same = format!("http://{ours}");
    assert_eq!(create_key("same", &[("Origin", &same)]).0, 201);
    assert_eq!(
        create_key("no browser", &[]).0,
        201,
        "clients without Origin"
    );
    let proxied = [
        ("Origin", "https://backup.example.org"),
        ("X-Forwarded-Host", "backup.example.org"),
    ];
    assert_eq!(create_key("proxied", &proxied).0, 201, "behind a proxy");
    let keys = http
        .get(format!("{}/api/keys", env.api.base()))
        .bearer_auth(&token)
        .header("Origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(keys.status().as_u16(), 200, "reads change nothing");
    let names: Vec<String> = keys
        .json::<Vec<serde_json::Value>>()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n == "evil" || n == "null"),
        "{names:?}"
    );
}

//! Notification channels: what happens to jobs told to a real HTTP receiver (its signature
//! checked) and a real SMTP server, both started here; a receiver that is down is tried again
//! and the log shows each attempt.

use coffer_testkit::{HttpReceiver, SmtpServer};
use coffer_types::{DeliveryStatus, NotificationChannel};

use super::*;

/// HMAC-SHA256 of `body` with `key`, as `sha256=<hex>` (RFC 2104, written out here so that the
/// server's signature is checked by other code than its own).
fn hmac_sha256(key: &[u8], body: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!("sha256={}", hex::encode(outer))
}

fn channel(api: &Client, input: serde_json::Value) -> NotificationChannel {
    api.create_resource::<NotificationChannel>(&serde_json::from_value(input).unwrap())
        .unwrap()
}

#[test]
fn what_happens_reaches_a_signed_webhook_and_an_smtp_server_and_a_receiver_that_was_down() {
    let hook = HttpReceiver::start();
    let smtp = SmtpServer::start();
    // A receiver that is down at first: its port is kept, nothing listens on it yet.
    let down_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = start();
    let api = &env.api;
    let secret = "a-signing-secret-of-the-channel";
    let token_path = "/hooks/t0ken-in-the-path";

    // What cannot work is refused, naming the field.
    for (input, field) in [
        (
            json!({"name": "x", "type": "webhook", "events": ["backup.failed"], "url": hook.url("/")}),
            "secret",
        ),
        (
            json!({"name": "x", "type": "webhook", "events": ["backup.exploded"],
                   "url": hook.url("/"), "secret": secret}),
            "events",
        ),
        (
            json!({"name": "x", "type": "discord", "events": ["backup.failed"], "url": "ftp://x"}),
            "url",
        ),
        (
            json!({"name": "x", "type": "email", "events": ["backup.failed"],
                   "email": {"host": "mail.example.com", "security": "none",
                             "from": "coffer@example.com", "to": ["ops@example.com"]}}),
            "email.security",
        ),
    ] {
        let made = api.create_resource::<NotificationChannel>(
            &serde_json::from_value(input.clone()).unwrap(),
        );
        match made {
            Err(ClientError::Api { status, body, .. }) => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
                assert_eq!(body.field.as_deref(), Some(field), "{body:?}");
            }
            other => panic!("{input} was taken: {other:?}"),
        }
    }

    let webhook = channel(
        api,
        json!({"name": "ops hook", "type": "webhook", "url": hook.url(token_path), "secret": secret,
               "events": ["backup.failed", "backup.completed"]}),
    );
    let mail = channel(
        api,
        json!({"name": "ops mail", "type": "email", "events": ["backup.failed"],
               "email": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                         "from": "coffer@example.com", "to": ["ops@example.com", "oncall@example.com"]}}),
    );
    let late = channel(
        api,
        json!({"name": "late hook", "type": "webhook", "events": ["backup.failed"], "secret": secret,
               "url": format!("http://127.0.0.1:{down_port}/late")}),
    );
    // Shown without its secrets: the URL's path (a token, often) and the signing secret.
    assert_eq!(webhook.target, format!("http://127.0.0.1:{}", hook.port));
    assert_eq!(
        mail.target,
        format!(
            "127.0.0.1:{} → ops@example.com, oncall@example.com",
            smtp.port
        )
    );
    let listed = api.raw("GET", "/api/notification-channels", None).unwrap();
    assert!(!listed.text.contains(secret) && !listed.text.contains("t0ken"));

    // The test button: a signed message, there and then.
    let tested = api
        .test_resource::<NotificationChannel>(&webhook.id)
        .unwrap();
    assert!(tested.ok, "{tested:?}");
    let got = hook.received();
    assert_eq!((got.len(), got[0].path.as_str()), (1, token_path));
    assert_eq!(
        got[0].headers["x-coffer-signature"],
        hmac_sha256(secret.as_bytes(), &got[0].body)
    );
    let test_mail = api.test_resource::<NotificationChannel>(&mail.id).unwrap();
    assert!(test_mail.ok, "{test_mail:?}");
    assert_eq!(smtp.messages().len(), 1);

    // A backup that fails: every channel that chose it is told, with the job and the reason.
    let gone = env.dir.path().join("not-there");
    let job = api
        .create_job(&path_job("payroll", &gone, json!({})))
        .unwrap();
    let failed = run_to_end(api, &job.id);
    assert_eq!(failed.status, RecordStatus::Failed);
    let told = wait_until(LONG, || match hook.received().as_slice() {
        [_, told] => Ok(told.clone()),
        other => Err(format!("{} requests so far", other.len())),
    });
    assert_eq!(
        told.headers["x-coffer-signature"],
        hmac_sha256(secret.as_bytes(), &told.body),
        "signed"
    );
    let payload: serde_json::Value = serde_json::from_slice(&told.body).unwrap();
    assert_eq!(payload["event"], "backup.failed");
    assert_eq!(payload["job_id"], job.id.as_str());
    assert_eq!(payload["job_name"], "payroll");
    assert_eq!(payload["record_id"], failed.id.as_str());
    assert_eq!(payload["error"], failed.error.clone().unwrap().as_str());
    assert!(
        payload["link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/#/jobs/{}", job.id)),
        "{payload}"
    );
    let message = wait_until(LONG, || match smtp.messages().as_slice() {
        [_, told] => Ok(told.clone()),
        other => Err(format!("{} messages so far", other.len())),
    });
    assert!(
        message.contains("Subject: Backup of payroll failed"),
        "{message}"
    );
    assert!(
        message.contains("To: ops@example.com, oncall@example.com"),
        "{message}"
    );
    assert!(
        message.contains(&format!("/#/jobs/{}", job.id)),
        "{message}"
    );

    // The receiver that was down: its first attempt failed and is logged; once it is up, the
    // next attempt gets through.
    let pending = wait_until(LONG, || {
        let n = api.notifications().unwrap();
        n.into_iter()
            .find(|n| n.channel_id == late.id && !n.attempts.is_empty())
            .ok_or_else(|| "no attempt yet".to_string())
    });
    assert_eq!(pending.status, DeliveryStatus::Pending, "{pending:?}");
    assert!(!pending.attempts[0].ok && pending.next_attempt_at.is_some());
    assert!(
        pending.attempts[0].detail.contains("cannot be reached"),
        "{pending:?}"
    );
    let late_hook = HttpReceiver::on(down_port);
    let delivered = wait_until(LONG, || {
        let n = api.notifications().unwrap();
        n.into_iter()
            .find(|n| n.id == pending.id && n.status == DeliveryStatus::Delivered)
            .ok_or_else(|| "not delivered yet".to_string())
    });
    assert_eq!(delivered.attempts.len(), 2, "{delivered:?}");
    assert!(delivered.attempts[1].ok);
    assert_eq!(late_hook.received().len(), 1);

    // The log, newest first: the tests, then what the failed backup caused.
    let log = api.notifications().unwrap();
    assert!(log.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    let events: BTreeSet<(&str, &str)> = log
        .iter()
        .map(|n| (n.channel_name.as_str(), n.event.as_str()))
        .collect();
    for expected in [
        ("ops hook", "test"),
        ("ops mail", "test"),
        ("ops hook", "backup.failed"),
        ("ops mail", "backup.failed"),
        ("late hook", "backup.failed"),
    ] {
        assert!(events.contains(&expected), "{expected:?} in {events:?}");
    }
    assert!(!env.server.log().contains(secret) && !env.server.log().contains("t0ken"));
    assert!(env.server.stop().success());
}

/// The events `hook` got, in order.
fn events(hook: &HttpReceiver) -> Vec<serde_json::Value> {
    hook.received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Wait until `hook` got an event named `name`; all it got until then.
fn wait_event(hook: &HttpReceiver, name: &str) -> Vec<serde_json::Value> {
    wait_until(LONG, || {
        let got = events(hook);
        match got.iter().any(|e| e["event"] == name) {
            true => Ok(got),
            false => Err(format!("no {name} in {got:?}")),
        }
    })
}

#[test]
fn a_suspicious_backup_an_overdue_job_and_a_dead_mans_switch_are_told() {
    let hook = HttpReceiver::start();
    let pings = HttpReceiver::start();
    let env = start();
    let api = &env.api;
    channel(
        api,
        json!({"name": "alerts", "type": "webhook", "url": hook.url("/"), "secret": "s3cret",
               "events": ["job.overdue", "job.recovered", "backup.suspicious"]}),
    );
    let src = source_tree(env.dir.path(), 2);
    let input = path_job(
        "ledger",
        &src,
        json!({"schedule": "0 3 * * *", "ping_url": pings.url("/ping/abc")}),
    );
    // Pings go only to hosts an admin allowed.
    let (status, code) = code(api.create_job(&input));
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    api.put_setting(
        "alerts.ping_hosts",
        json!([format!("127.0.0.1:{}", pings.port)]),
    )
    .unwrap();
    let job = api.create_job(&input).unwrap();

    // Three backups alike, then one that lost most of its data: suspicious, with the numbers.
    for _ in 0..3 {
        assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Success);
    }
    std::fs::remove_file(src.join("sub/big.bin")).unwrap();
    let small = run_to_end(api, &job.id);
    assert_eq!(small.status, RecordStatus::Success);
    let got = wait_event(&hook, "backup.suspicious");
    let told = got
        .iter()
        .find(|e| e["event"] == "backup.suspicious")
        .unwrap();
    assert_eq!(told["record_id"], small.id.as_str());
    let why = told["error"].as_str().unwrap();
    assert!(
        why.contains("under half the median of the last 3 backups"),
        "{why}"
    );
    // Each backup pinged the switch; a failed one its /fail.
    std::fs::rename(&src, env.dir.path().join("gone")).unwrap();
    assert_eq!(run_to_end(api, &job.id).status, RecordStatus::Failed);
    let pinged = wait_until(LONG, || match pings.received().len() {
        5 => Ok(pings.received()),
        n => Err(format!("{n} pings")),
    });
    let paths: Vec<&str> = pinged.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths.iter().filter(|p| **p == "/ping/abc").count(), 4);
    assert!(paths.contains(&"/ping/abc/fail"), "{paths:?}");
    std::fs::rename(env.dir.path().join("gone"), &src).unwrap();

    // As if the latest success were three days old (the server down meanwhile): overdue, told
    // once; a success makes it recover.
    let Env { dir, server, .. } = env;
    assert!(server.stop().success());
    let past = (Utc::now() - chrono::Duration::days(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    with_database(&dir.path().join("data/coffer.db"), async |pool| {
        sqlx::query("UPDATE backup_records SET started_at = ?1")
            .bind(&past)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE backup_jobs SET scheduled_until = ?1, created_at = ?2")
            .bind(&now)
            .bind(&past)
            .execute(pool)
            .await
            .unwrap();
    });
    let server = start_in(&dir);
    let api = login(&server);
    wait_event(&hook, "job.overdue");
    assert!(api.job(&job.id).unwrap().overdue);
    let gauge = format!(
        "coffer_backup_overdue{{job=\"{}\",name=\"ledger\"}} 1",
        job.id
    );
    assert!(api.metrics().unwrap().contains(&gauge), "{gauge}");
    // Looked at again (a change wakes the scheduler): still overdue, not told again.
    let rename = |name: &str| JobUpdate {
        name: Some(name.into()),
        ..JobUpdate::default()
    };
    api.update_job(&job.id, &rename("ledger 2")).unwrap();
    assert_eq!(run_to_end(&api, &job.id).status, RecordStatus::Success);
    api.update_job(&job.id, &rename("ledger")).unwrap();
    let got = wait_event(&hook, "job.recovered");
    let overdue = got.iter().filter(|e| e["event"] == "job.overdue").count();
    assert_eq!(overdue, 1, "{got:?}");
    assert!(!api.job(&job.id).unwrap().overdue);
    assert!(server.stop().success());
}

#[test]
fn each_kind_of_channel_gets_the_message_in_its_own_shape() {
    let hook = HttpReceiver::start();
    let env = start();
    let api = &env.api;
    let kinds = [
        json!({"name": "discord", "type": "discord", "url": hook.url("/api/webhooks/1/tok")}),
        json!({"name": "slack", "type": "slack", "url": hook.url("/services/T/B/X")}),
        json!({"name": "ntfy", "type": "ntfy", "url": hook.url("/backups-topic"), "token": "tk_ntfy"}),
        json!({"name": "gotify", "type": "gotify", "url": hook.url("/"), "token": "AppToken"}),
    ];
    for mut input in kinds {
        input["events"] = json!(["backup.failed"]);
        let c = channel(api, input);
        let tested = api.test_resource::<NotificationChannel>(&c.id).unwrap();
        assert!(tested.ok, "{}: {tested:?}", c.name);
    }
    let got = hook.received();
    assert_eq!(got.len(), 4, "{got:?}");
    let body = |i: usize| -> serde_json::Value { serde_json::from_slice(&got[i].body).unwrap() };
    // Discord: the post's content, mentioning no one.
    assert_eq!(got[0].path, "/api/webhooks/1/tok");
    let discord = body(0);
    assert!(
        discord["content"]
            .as_str()
            .unwrap()
            .starts_with("**Coffer: a test of the channel discord**"),
        "{discord}"
    );
    assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
    // Slack: its text.
    assert_eq!(got[1].path, "/services/T/B/X");
    assert!(
        body(1)["text"]
            .as_str()
            .unwrap()
            .contains("the channel slack works")
    );
    // ntfy: JSON published to the server, the topic inside, the token as a bearer.
    assert_eq!(got[2].path, "/");
    let ntfy = body(2);
    assert_eq!(ntfy["topic"], "backups-topic");
    assert_eq!(got[2].headers["authorization"], "Bearer tk_ntfy");
    // Gotify: /message with the application token.
    assert_eq!(got[3].path, "/message");
    assert_eq!(got[3].headers["x-gotify-key"], "AppToken");
    assert!(body(3)["title"].as_str().unwrap().contains("gotify"));
    assert!(!env.server.log().contains("AppToken") && !env.server.log().contains("tk_ntfy"));
    assert!(env.server.stop().success());
}

//! `coffer serve`, started as a real process: zero configuration, health, the error format,
//! configuration layering, refusal to start on a bad data directory, a taken port or a newer
//! database, and graceful shutdown.

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::process::Command;

use coffer_client::Client;
use coffer_testkit::{ServerProcess, tempdir, with_database};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");
const ANY_PORT: [&str; 2] = ["--listen", "127.0.0.1:0"];

#[test]
fn starts_with_zero_configuration_and_answers_health() {
    let dir = tempdir().unwrap();
    let server = ServerProcess::start(BIN, dir.path(), &[] as &[&str], &[]);
    assert_eq!(
        server.addr,
        "127.0.0.1:7480".parse().unwrap(),
        "the default address"
    );
    assert!(
        dir.path().join("coffer-data/coffer.db").is_file(),
        "the default data directory is ./coffer-data, with the metadata database in it"
    );
    let health = Client::new(server.url()).health().unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    let log = server.log();
    for step in [
        "preparing the data directory",
        "opening the metadata database",
        "listening",
    ] {
        assert!(log.contains(step), "boot step {step:?} is logged:\n{log}");
    }
    assert!(server.stop().success(), "SIGTERM stops it cleanly");
}

#[test]
fn unknown_routes_get_the_json_error_format_and_modules_are_listed() {
    let dir = tempdir().unwrap();
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "data"]].concat(),
        &[],
    );
    let api = Client::new(server.url());
    let r = api.raw("GET", "/api/no-such-thing", None).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("/api/no-such-thing")
    );
    assert!(api.modules().unwrap().backups);
    // Health turns 503 when the data directory disappears.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let r = api.raw("GET", "/api/health", None).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "unavailable");
    assert!(server.stop().success());
}

/// `coffer serve ARGS` in `cwd` that must fail: its exit code 2 and its stderr.
fn refused(cwd: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("COFFER_LISTEN")
        .env_remove("COFFER_DATA_DIR")
        .current_dir(cwd)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn refuses_to_start_on_an_unusable_data_dir_a_taken_port_or_a_newer_database() {
    let dir = tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-dir"), b"x").unwrap();
    let err = refused(
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "not-a-dir"]].concat(),
        &[],
    );
    assert!(err.contains("data directory"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let err = refused(dir.path(), &["--listen", &port], &[]);
    assert!(err.contains("cannot listen"), "{err}");

    // A database that a newer Coffer migrated: refused, and left as it was.
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "d"]].concat(),
        &[],
    );
    assert!(server.stop().success());
    let db = dir.path().join("d/coffer.db");
    with_database(&db, async |pool| {
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'future', CURRENT_TIMESTAMP, 1, x'00', 0)")
            .execute(pool)
            .await
            .unwrap();
    });
    let before = std::fs::read(&db).unwrap();
    let err = refused(
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "d"]].concat(),
        &[],
    );
    assert!(err.contains("newer Coffer"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database is untouched"
    );
}

#[test]
fn settings_come_from_flags_environment_config_file_and_secret_files() {
    let dir = tempdir().unwrap();
    let config = dir.path().join("coffer.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"from-file\"\nadmin_username = \"root\"\n",
    )
    .unwrap();
    let secret = dir.path().join("admin-password");
    std::fs::write(&secret, "a password from a file\n").unwrap();

    // The environment overrides the file; the password comes from a file, not an argument.
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[
            ("COFFER_DATA_DIR", "from-env"),
            ("COFFER_ADMIN_PASSWORD_FILE", secret.to_str().unwrap()),
        ],
    );
    assert!(dir.path().join("from-env/coffer.db").is_file());
    assert!(!dir.path().join("from-file").exists());
    let login = Client::new(server.url())
        .login("root", "a password from a file")
        .unwrap();
    assert_eq!(login.user.role, coffer_types::Role::Admin);
    assert!(
        !server.log().contains("a password from a file"),
        "secrets are never logged"
    );
    assert!(server.stop().success());

    // Flags override the environment.
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            "from-flag",
        ],
        &[("COFFER_DATA_DIR", "from-env")],
    );
    assert!(dir.path().join("from-flag/coffer.db").is_file());
    assert!(server.stop().success());

    // A typo in the file, a bad variable or a weak configured password is refused, not ignored.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\ndata_dri = \"x\"\n").unwrap();
    let err = refused(dir.path(), &["--config", config.to_str().unwrap()], &[]);
    assert!(err.contains("data_dri"), "{err}");
    let err = refused(dir.path(), &ANY_PORT, &[("COFFER_SESSION_HOURS", "many")]);
    assert!(err.contains("COFFER_SESSION_HOURS"), "{err}");
    let err = refused(dir.path(), &ANY_PORT, &[("COFFER_ADMIN_PASSWORD", "short")]);
    assert!(err.contains("too short"), "{err}");
    let err = refused(
        dir.path(),
        &ANY_PORT,
        &[("COFFER_SYSTEM_PASSPHRASE", "short")],
    );
    assert!(
        err.contains("COFFER_SYSTEM_PASSPHRASE") && err.contains("too short"),
        "{err}"
    );
}

/// The permission bits of `p`.
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_directory_and_every_file_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir().unwrap();
    // A data directory that others can read, made before (by hand, or by an earlier version).
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "data"]].concat(),
        &[("COFFER_ADMIN_PASSWORD", "the admin's long password")],
    );
    assert!(
        server.log().contains("made it private"),
        "the change is logged: {}",
        server.log()
    );
    assert_eq!(mode(&data), 0o700);
    for f in ["coffer.db", "coffer.db-wal", "coffer.db-shm", "server.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert!(server.stop().success());
    // Files an earlier version left readable are made private at the next start.
    std::fs::set_permissions(
        data.join("coffer.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "data"]].concat(),
        &[],
    );
    assert_eq!(mode(&data.join("coffer.db")), 0o600);
    assert!(server.stop().success());
}

#[test]
fn slow_clients_are_cut_off() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = tempdir().unwrap();
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "data"]].concat(),
        &[
            ("COFFER_HEADER_TIMEOUT_SECS", "1"),
            ("COFFER_BODY_IDLE_TIMEOUT_SECS", "1"),
        ],
    );
    // What the server answers before it closes the connection, and how long that took.
    let answer = |sent: &[u8]| -> (String, Duration) {
        let mut c = std::net::TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = Instant::now();
        c.write_all(sent).unwrap();
        let mut out = vec![];
        let read = c.read_to_end(&mut out);
        assert!(read.is_ok(), "the connection was not closed: {read:?}");
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    };
    // Nothing at all, half a request line, headers that never end.
    for sent in [
        &b""[..],
        b"GET /api/hea",
        b"GET /api/health HTTP/1.1\r\nHost: x\r\n",
    ] {
        let (out, took) = answer(sent);
        assert!(out.is_empty(), "{out}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // A body that stops arriving.
    let (out, took) = answer(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"username\": ",
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // A client that is quick enough is served on the same connection, request after request.
    let mut c = std::net::TcpStream::connect(server.addr).unwrap();
    for _ in 0..2 {
        c.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    assert!(server.stop().success());
}

#[test]
fn a_full_disk_is_reported_by_health_and_by_the_errors() {
    let dir = tempdir().unwrap();
    let disk = coffer_testkit::Mount::tmpfs(&dir.path().join("disk"), "4m");
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[&ANY_PORT[..], &["--data-dir", "disk/data"]].concat(),
        &[("COFFER_ADMIN_PASSWORD", "the admin's long password")],
    );
    let api = Client::new(server.url());
    assert_eq!(api.health().unwrap().status, "ok");
    // Fill the disk.
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let r = api.raw("GET", "/api/health", None).unwrap();
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("the disk is full"), "{}", r.text);
    let login = api
        .raw(
            "POST",
            "/api/auth/login",
            Some(
                &serde_json::json!({"username": "admin", "password": "the admin's long password"}),
            ),
        )
        .unwrap();
    assert_eq!(login.status, 507, "{}", login.text);
    assert_eq!(login.json()["code"], "disk_full");
    // Space again: everything works.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(api.health().unwrap().status, "ok");
    assert!(api.login("admin", "the admin's long password").is_ok());
    assert!(server.stop().success());
}

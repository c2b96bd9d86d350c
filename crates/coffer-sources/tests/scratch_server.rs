//! The private MariaDB server point-in-time recovery rebuilds databases in: reachable through
//! its socket only, gone when dropped, and what a killed process left behind removed.

#![allow(clippy::disallowed_methods)] // the test talks to the server with its client

use std::process::Command;

use coffer_sources::scratch_server::ScratchServer;
use coffer_testkit::tempdir;

#[test]
fn a_scratch_server_answers_on_its_socket_only_and_leaves_nothing_behind() {
    let base = tempdir().unwrap();
    // What a killed process left: removed by the next start.
    let dead = base.path().join("999999999-0000");
    std::fs::create_dir_all(dead.join("data")).unwrap();
    let server = ScratchServer::start(base.path()).unwrap();
    assert!(!dead.exists(), "the leftover of a dead process is removed");
    let socket = server.login.socket.clone().unwrap();
    let sql = |q: &str| {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "--socket",
                &socket,
                "-u",
                "root",
                "-N",
                "-B",
                "-e",
                q,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    sql(
        "CREATE DATABASE rebuilt; CREATE TABLE rebuilt.t (id INT); INSERT INTO rebuilt.t VALUES (1), (2)",
    );
    assert_eq!(sql("SELECT COUNT(*) FROM rebuilt.t"), "2");
    assert_eq!(sql("SELECT @@skip_networking"), "1", "no TCP port");
    let dir = server.dir().to_path_buf();
    drop(server);
    assert!(!dir.exists(), "nothing is left behind");
}

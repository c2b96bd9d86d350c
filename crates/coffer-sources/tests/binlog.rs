//! Following a real MariaDB server's binary log as it grows and rotates, and telling a server
//! without one what to change.

use std::path::Path;
use std::time::Duration;

use coffer_sources::binlog::{self, Follower, Scan};
use coffer_sources::mysql::Login;
use coffer_testkit::{MY_PASSWORD, MyInstance, tempdir, wait_until};

fn login(port: u16, user: &str, password: Option<&str>, scratch: &Path) -> Login {
    Login {
        host: Some("127.0.0.1".into()),
        port,
        socket: None,
        user: user.into(),
        password: password.map(str::to_string),
        tls: "disable".into(),
        scratch: scratch.to_path_buf(),
    }
}

/// The scan of `file` once it satisfies `enough`, waiting while the follower copies.
fn scanned(follower: &mut Follower, file: &Path, enough: impl Fn(&Scan) -> bool) -> Scan {
    wait_until(Duration::from_secs(30), || {
        follower.check().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let s = binlog::scan(&bytes).map_err(|e| e.to_string())?;
        if enough(&s) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
}

#[test]
fn the_binary_log_is_copied_as_it_grows_and_rotates() {
    let my = MyInstance::start_with(&["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"]);
    let scratch = tempdir().unwrap();
    let l = login(
        my.port,
        "coffer",
        Some(MY_PASSWORD),
        &scratch.path().join("scratch"),
    );
    let ready = l.binlog_readiness().unwrap();
    assert!(ready.ready(), "{ready:?}");
    assert_eq!(ready.format, "ROW");
    my.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT);
         INSERT INTO shop.t VALUES (1, 'a')",
    );
    let logs = l.binary_logs().unwrap();
    let first = logs[0].0.clone();
    let dir = scratch.path().join("binlogs");
    let mut follower = Follower::start(&l, &dir, &first, 4242).unwrap();
    let file = dir.join(&first);
    // Copied up to where the server writes now (its own set-up is in the log too).
    let (_, now) = l.master_status().unwrap();
    let before = scanned(&mut follower, &file, |s| s.settled >= now);
    assert!(before.transactions >= 3, "{before:?}");
    assert!(!before.complete, "the current file is still open");

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    for i in 2..=6 {
        my.sql(&format!("INSERT INTO shop.t VALUES ({i}, 'x')"));
    }
    let (_, now) = l.master_status().unwrap();
    let after = scanned(&mut follower, &file, |s| s.settled >= now);
    assert_eq!(after.transactions, before.transactions + 5, "{after:?}");
    assert!(after.last.unwrap() >= start, "{after:?}");
    assert!(after.first == before.first && after.settled > before.settled);

    // The server closes the file; the follower goes on with the next one.
    my.sql("FLUSH BINARY LOGS");
    my.sql("INSERT INTO shop.t VALUES (7, 'y')");
    scanned(&mut follower, &file, |s| s.complete);
    let next = l.binary_logs().unwrap()[1].0.clone();
    scanned(&mut follower, &dir.join(next), |s| s.transactions >= 1);
    // The login never reached the tool's command line.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", follower.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(MY_PASSWORD));

    // A follower left running by a process that was killed is stopped by the next.
    let leftover = follower.pid();
    std::mem::forget(follower);
    let mut again = Follower::start(&l, &dir, &first, 4242).unwrap();
    assert!(
        !Path::new(&format!("/proc/{leftover}")).exists()
            || std::fs::read_to_string(format!("/proc/{leftover}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the leftover follower still runs"
    );
    scanned(&mut again, &file, |s| s.complete);
}

#[test]
fn a_server_without_a_binary_log_is_told_what_to_change() {
    let my = MyInstance::start();
    let scratch = tempdir().unwrap();
    let r = login(my.port, "coffer", Some(MY_PASSWORD), scratch.path())
        .binlog_readiness()
        .unwrap();
    assert!(!r.ready(), "{r:?}");
    assert!(r.missing[0].contains("log_bin"), "{r:?}");
}

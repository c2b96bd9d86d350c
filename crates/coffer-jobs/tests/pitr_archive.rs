//! The binlog archive of point-in-time recovery against a real MariaDB server: its binary log
//! followed, stored in a repository as it grows and rotates, and its coverage told from the
//! repository alone.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_jobs::pitr;
use coffer_repo::{InitOptions, KdfParams, Location, Repository};
use coffer_sources::binlog::Follower;
use coffer_sources::mysql::Login;
use coffer_testkit::{MY_PASSWORD, MyInstance, tempdir, wait_until};

#[test]
fn the_binary_log_is_archived_as_it_grows_and_its_coverage_is_told() {
    let my = MyInstance::start_with(&["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"]);
    let dir = tempdir().unwrap();
    let login = Login {
        host: Some("127.0.0.1".into()),
        port: my.port,
        socket: None,
        user: "coffer".into(),
        password: Some(MY_PASSWORD.into()),
        tls: "disable".into(),
        scratch: dir.path().join("scratch"),
    };
    let backend = Location::Local(dir.path().join("repo")).open(None).unwrap();
    let opts = InitOptions {
        kdf: KdfParams {
            m_cost: 8 * 1024,
            t_cost: 1,
            p_cost: 1,
        },
        ..InitOptions::default()
    };
    let repo = Repository::init(backend, Some("a repository password"), opts).unwrap();
    my.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)");
    let first = login.binary_logs().unwrap()[0].0.clone();
    let spool = dir.path().join("spool");
    let mut follower = Follower::start(&login, &spool, &first, 4243).unwrap();
    let mut known = BTreeMap::new();
    // Store until the archive holds everything the server has written.
    let mut archive_all = |known: &mut BTreeMap<String, pitr::Archived>| {
        let (file, position) = login.master_status().unwrap();
        wait_until(Duration::from_secs(30), || {
            follower.check().map_err(|e| e.to_string())?;
            pitr::store(&repo, "cred", &spool, known).map_err(|e| e.to_string())?;
            let c = pitr::coverage(known);
            match known.get(&file).is_some_and(|a| a.scan.settled >= position) {
                true => Ok(c),
                false => Err(format!("{c:?}, not yet {file} at {position}")),
            }
        })
    };
    let c = archive_all(&mut known);
    assert!(c.available() && c.gaps.is_empty(), "{c:?}");
    for i in 1..=5 {
        my.sql(&format!("INSERT INTO shop.t VALUES ({i})"));
    }
    let before = c;
    let c = archive_all(&mut known);
    assert_eq!(c.total_events, before.total_events + 5, "{c:?}");
    assert_eq!(known.len(), 1, "one file so far");
    // The growing file's newer copy replaced the older: one snapshot per file.
    let snapshots = coffer_repo::snapshot::list(&repo).unwrap().snapshots;
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");

    my.sql("FLUSH BINARY LOGS");
    my.sql("INSERT INTO shop.t VALUES (6)");
    let after = archive_all(&mut known);
    assert_eq!(after.total_events, c.total_events + 1, "{after:?}");
    assert_eq!(known.len(), 2);
    assert!(known[&first].scan.complete, "the rotated file is complete");
    assert!(after.latest_event >= c.latest_event && after.oldest_event == c.oldest_event);

    // The repository alone tells the same.
    let listed = pitr::archived(&repo, "cred").unwrap();
    assert_eq!(listed, known);
    assert!(pitr::archived(&repo, "another").unwrap().is_empty());
    // What is archived is the server's file, byte for byte, as far as it is settled.
    let mut out = vec![];
    repo.open_snapshot(&known[&first].snapshot)
        .unwrap()
        .cat(&format!("binlog/{first}"), &mut out)
        .unwrap();
    assert_eq!(out, std::fs::read(spool.join(&first)).unwrap());
}

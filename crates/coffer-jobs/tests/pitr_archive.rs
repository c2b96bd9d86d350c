//! The binlog archive of point-in-time recovery against a real MariaDB server: its binary log
//! followed, stored in a repository as it grows and rotates and after the server started it
//! anew, and its coverage told from the repository alone.

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
    let mut known = pitr::Archive::default();
    // Store until the archive holds everything the server has written.
    let archive_with = |follower: &mut Follower, known: &mut pitr::Archive, pieces| {
        let (file, position) = login.master_status().unwrap();
        wait_until(Duration::from_secs(30), || {
            follower.check().map_err(|e| e.to_string())?;
            pitr::store(&repo, "cred", &spool, known, pieces).map_err(|e| e.to_string())?;
            pitr::tidy(&spool, known).map_err(|e| e.to_string())?;
            let c = pitr::coverage(known);
            let newest = known.newest();
            match newest.is_some_and(|n| n.name == file && n.scan.settled >= position) {
                true => Ok(c),
                false => Err(format!("{c:?}, not yet {file} at {position}")),
            }
        })
    };
    let archive_all = |follower: &mut Follower, known: &mut pitr::Archive| {
        archive_with(follower, known, pitr::Pieces::default())
    };
    // What the archive holds of a file is the server's file, byte for byte, as far as settled.
    let holds_the_copy = |a: &pitr::Archived| {
        let mut out = vec![];
        a.copy_to(&repo, &mut out).unwrap();
        let copy = std::fs::read(spool.join(&a.name)).unwrap();
        assert_eq!(out.len() as u64, a.scan.settled);
        assert!(copy.starts_with(&out), "{} differs from its copy", a.name);
    };
    let c = archive_all(&mut follower, &mut known);
    assert!(c.available() && c.gaps.is_empty(), "{c:?}");
    for i in 1..=5 {
        my.sql(&format!("INSERT INTO shop.t VALUES ({i})"));
    }
    let before = c;
    let c = archive_all(&mut follower, &mut known);
    assert_eq!(c.total_events, before.total_events + 5, "{c:?}");
    assert_eq!(known.files.len(), 1, "one file so far");
    // The growing file's newer copy replaced the older: one snapshot per file.
    let snapshots = coffer_repo::snapshot::list(&repo).unwrap().snapshots;
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");

    my.sql("FLUSH BINARY LOGS");
    my.sql("INSERT INTO shop.t VALUES (6)");
    let after = archive_all(&mut follower, &mut known);
    assert_eq!(after.total_events, c.total_events + 1, "{after:?}");
    assert_eq!(known.files.len(), 2);
    let first_copy = known.get(0, &first).unwrap().clone();
    assert!(first_copy.scan.complete, "the rotated file is complete");
    assert!(
        !spool.join(&first).exists(),
        "held whole, its copy left the spool"
    );
    assert!(after.latest_event >= c.latest_event && after.oldest_event == c.oldest_event);

    // The repository alone tells the same.
    let listed = pitr::archived(&repo, "cred").unwrap();
    assert_eq!(listed, known);
    assert!(pitr::archived(&repo, "another").unwrap().files.is_empty());
    let second = known.newest().unwrap().clone();
    holds_the_copy(&second);

    // The server starts its log anew: its files go, and the names come again. The archive
    // keeps the old files and stores the new ones beside them, as a sequence of their own.
    // (A second on, so the new first file is not created in the second of the old.)
    std::thread::sleep(Duration::from_millis(1100));
    my.sql("RESET MASTER; INSERT INTO shop.t VALUES (7), (8)");
    // The follower stops at the reset ("could not find next log"): one started from the
    // server's first file takes over, as the archiver does.
    wait_until(Duration::from_secs(30), || match follower.check() {
        Err(_) => Ok(()),
        Ok(()) => Err("the follower still runs".to_string()),
    });
    let restarted = login.binary_logs().unwrap()[0].0.clone();
    assert_eq!(
        restarted, first,
        "the reset starts with the first name again"
    );
    let mut follower = Follower::start(&login, &spool, &restarted, 4243).unwrap();
    let reset = archive_all(&mut follower, &mut known);
    assert_eq!(reset.resets.len(), 1, "{reset:?}");
    assert_eq!(reset.total_events, after.total_events + 1, "{reset:?}");
    assert!(reset.gaps.is_empty(), "{reset:?}");
    assert_eq!(known.current(), 1);
    assert_eq!(
        known.get(0, &first),
        Some(&first_copy),
        "the old file is kept"
    );
    assert_eq!(known.get(1, &first).unwrap().scan.transactions, 1);
    // Growing on, the new file is stored again; the old one of its name stays.
    my.sql("INSERT INTO shop.t VALUES (9)");
    let grown = archive_all(&mut follower, &mut known);
    assert_eq!(grown.total_events, reset.total_events + 1);
    assert_eq!(known.get(0, &first), Some(&first_copy));
    assert_eq!(pitr::archived(&repo, "cred").unwrap(), known);

    // A large file gains pieces: each pass stores what it gained; after the most pieces, the
    // whole file again, one piece.
    let pieces = pitr::Pieces { from: 1, most: 3 };
    let mut counts = vec![];
    for i in 10..15 {
        my.sql(&format!("INSERT INTO shop.t VALUES ({i})"));
        archive_with(&mut follower, &mut known, pieces);
        let newest = known.newest().unwrap();
        holds_the_copy(newest);
        counts.push(newest.pieces.len());
    }
    // (A pass may catch a transaction half copied and store twice: the counts are bounds.)
    assert!(
        counts.iter().all(|n| (1..=3).contains(n))
            && counts.contains(&3)
            && counts.windows(2).any(|w| w[1] < w[0]),
        "pieces of the growing file after each pass: {counts:?}"
    );
    let listed = pitr::archived(&repo, "cred").unwrap();
    assert_eq!(
        listed.files, known.files,
        "the repository alone tells the same"
    );
    assert!(listed.stale.is_empty());
    // Complete, a file is stored whole.
    my.sql("FLUSH BINARY LOGS");
    my.sql("INSERT INTO shop.t VALUES (15)");
    archive_with(&mut follower, &mut known, pieces);
    let done = known.get(1, &first).unwrap();
    assert!(done.scan.complete && done.pieces.len() == 1, "{done:?}");
}

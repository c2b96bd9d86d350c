//! One conformance suite, run against every storage backend: what the engine relies on.

use coffer_repo::backend::{Backend, BackendErrorKind, LocalBackend, S3Backend, S3Options};
use coffer_testkit::{S3Server, seeded, tempdir};

fn conformance(b: &dyn Backend) {
    b.create().expect("create");
    b.create().expect("create is idempotent");

    // Missing objects are classified, not generic failures.
    let missing = b.read("index/none").unwrap_err();
    assert_eq!(missing.kind, BackendErrorKind::NotFound, "{missing}");
    assert_eq!(b.size("index/none").unwrap(), None);
    assert!(
        b.list("index").unwrap().is_empty(),
        "listing a missing directory is empty"
    );

    // Write, read back, sizes, nested names.
    let big = seeded(3 * 1024 * 1024 + 17, "conformance");
    b.write("data/ab/abcdef", &big).unwrap();
    b.write("data/cd/cdef01", b"small").unwrap();
    b.write("index/0001", b"").unwrap();
    assert_eq!(b.read("data/ab/abcdef").unwrap(), big);
    assert_eq!(b.read("index/0001").unwrap(), b"");
    assert_eq!(b.size("data/ab/abcdef").unwrap(), Some(big.len() as u64));

    // Ranges: inside, up to the end, past the end (short, never an error), empty.
    assert_eq!(
        b.read_range("data/ab/abcdef", 10, 100).unwrap(),
        big[10..110]
    );
    let n = big.len() as u64;
    assert_eq!(
        b.read_range("data/ab/abcdef", n - 5, 5).unwrap(),
        big[big.len() - 5..]
    );
    assert_eq!(
        b.read_range("data/ab/abcdef", n - 5, 50).unwrap(),
        big[big.len() - 5..]
    );
    assert_eq!(b.read_range("data/ab/abcdef", n + 10, 5).unwrap(), b"");
    assert_eq!(b.read_range("data/ab/abcdef", 0, 0).unwrap(), b"");
    assert_eq!(
        b.read_range("data/none", 0, 5).unwrap_err().kind,
        BackendErrorKind::NotFound
    );

    // Listing is recursive, sorted, relative to the repository root, with sizes.
    let names: Vec<(String, u64)> = b
        .list("data")
        .unwrap()
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    assert_eq!(
        names,
        vec![
            ("data/ab/abcdef".to_string(), big.len() as u64),
            ("data/cd/cdef01".to_string(), 5)
        ]
    );
    assert_eq!(b.list("index").unwrap().len(), 1);

    // Replacing is atomic and complete.
    b.write("locks/l1", b"first version").unwrap();
    b.write("locks/l1", b"second").unwrap();
    assert_eq!(b.read("locks/l1").unwrap(), b"second");

    // Delete is idempotent.
    b.delete("data/cd/cdef01").unwrap();
    b.delete("data/cd/cdef01").unwrap();
    assert_eq!(b.size("data/cd/cdef01").unwrap(), None);
    assert_eq!(b.list("data").unwrap().len(), 1);
}

#[test]
fn local_backend_conforms() {
    let dir = tempdir().unwrap();
    conformance(&LocalBackend::new(dir.path().join("repo")));
    listing_at_scale(&LocalBackend::new(dir.path().join("scale")));
}

#[test]
fn local_backend_leaves_no_temporary_files_and_keeps_objects_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir().unwrap();
    let b = LocalBackend::new(dir.path().join("repo"));
    b.create().unwrap();
    b.write("snapshots/abc", b"x").unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("repo/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec!["abc"]);
    let mode = std::fs::metadata(dir.path().join("repo/snapshots/abc"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "repository objects are readable by their owner only"
    );
}

fn options(server: &S3Server) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(server.access_key.clone()),
        secret_access_key: Some(server.secret_key.clone()),
        connections: None,
    }
}

/// The suite, a listing that pages, and a second repository in the same bucket.
fn s3_conformance(server: &S3Server) {
    let bucket = server.bucket("conformance");
    conformance(&S3Backend::new(&bucket, "some/prefix", options(server)).unwrap());
    listing_at_scale(&S3Backend::new(&bucket, "scale", options(server)).unwrap());
    // A second repository under another prefix of the same bucket sees nothing of the first.
    let other = S3Backend::new(&bucket, "other", options(server)).unwrap();
    assert!(other.list("data").unwrap().is_empty());
}

/// More names than one listing page holds (S3 answers 1,000 at a time), under nested
/// prefixes, beside names that merely start with the same letters.
fn listing_at_scale(b: &dyn Backend) {
    b.create().unwrap();
    let mut expected: Vec<String> = (0..1100u32)
        .map(|i| format!("data/{:02x}/{i:08x}", i % 256))
        .collect();
    expected.push("data/ab/cd/deeper".into());
    for name in &expected {
        b.write(name, name.as_bytes()).unwrap();
    }
    b.write("database/not-data", b"x").unwrap();
    b.write("data-other/not-data", b"x").unwrap();
    expected.sort();
    let listed = b.list("data").unwrap();
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, expected, "every object under data/, once, in order");
    assert!(listed.iter().all(|o| o.size == o.name.len() as u64));
    assert_eq!(b.list("data/ab").unwrap().len(), 5, "a nested prefix");
}

#[test]
fn s3_backend_conforms() {
    s3_conformance(&S3Server::start());
}

/// A second S3 implementation, so that the suite does not pass by one server's quirks.
#[test]
fn s3_backend_conforms_on_a_second_server() {
    let server = S3Server::moto();
    s3_conformance(&server);

    // A bucket that does not exist is a wrong setting, said in words.
    let b = S3Backend::new("no-such-bucket", "p", options(&server)).unwrap();
    let err = b.read("config").unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::Misconfigured, "{err}");
    assert_eq!(
        err.message, r#"the S3 bucket "no-such-bucket" does not exist"#,
        "{err}"
    );
}

#[test]
fn s3_backend_says_when_nothing_answers() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let opts = S3Options {
        endpoint: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        connections: None,
    };
    let err = S3Backend::new("bucket", "p", opts)
        .unwrap()
        .read("config")
        .unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::Unreachable, "{err}");
    assert!(
        err.message
            .starts_with(&format!("cannot reach the S3 server at {endpoint}: ")),
        "{err}"
    );
}

#[test]
fn s3_backend_reports_bad_credentials_as_an_error() {
    let server = S3Server::start();
    let bucket = server.bucket("creds");
    let opts = S3Options {
        secret_access_key: Some("wrong-secret".into()),
        ..options(&server)
    };
    let b = S3Backend::new(&bucket, "p", opts).unwrap();
    let err = b.write("config", b"x").unwrap_err();
    assert_ne!(err.kind, BackendErrorKind::NotFound, "{err}");
    assert!(
        !err.message.contains("wrong-secret"),
        "the secret must never appear in errors: {err}"
    );
}

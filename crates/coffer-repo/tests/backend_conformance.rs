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

#[test]
fn s3_backend_conforms() {
    let server = S3Server::start();
    let bucket = server.bucket("conformance");
    let opts = S3Options {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(server.access_key.clone()),
        secret_access_key: Some(server.secret_key.clone()),
        connections: None,
    };
    conformance(&S3Backend::new(&bucket, "some/prefix", opts.clone()).unwrap());
    // A second repository under another prefix of the same bucket sees nothing of the first.
    let other = S3Backend::new(&bucket, "other", opts).unwrap();
    assert!(other.list("data").unwrap().is_empty());
}

#[test]
fn s3_backend_reports_bad_credentials_as_an_error() {
    let server = S3Server::start();
    let bucket = server.bucket("creds");
    let opts = S3Options {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(server.access_key.clone()),
        secret_access_key: Some("wrong-secret".into()),
        connections: None,
    };
    let b = S3Backend::new(&bucket, "p", opts).unwrap();
    let err = b.write("config", b"x").unwrap_err();
    assert_ne!(err.kind, BackendErrorKind::NotFound, "{err}");
    assert!(
        !err.message.contains("wrong-secret"),
        "the secret must never appear in errors: {err}"
    );
}

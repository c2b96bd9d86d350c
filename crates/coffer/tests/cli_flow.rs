//! The command line end to end, against a local directory and a real S3-protocol server.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use coffer_testkit::{Cli, FAST_KDF, S3Server, assert_same_tree, seeded, tempdir};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn make_source(root: &Path) {
    std::fs::create_dir_all(root.join("docs/deep")).unwrap();
    std::fs::write(root.join("docs/readme.txt"), "hello\n".repeat(1000)).unwrap();
    std::fs::write(
        root.join("docs/deep/blob.bin"),
        seeded(5 * 1024 * 1024, "blob"),
    )
    .unwrap();
    std::fs::write(root.join("top.txt"), "top").unwrap();
}

/// init → backup → snapshots → dump (checksum) → verify → restore → compare; then incremental.
fn full_flow(cli: &Cli) {
    let dir = tempdir().unwrap();
    let src = dir.path().join("src");
    make_source(&src);
    cli.init(&[]);

    let first = cli.json(&["backup", src.to_str().unwrap(), "--tag", "first"]);
    let id = first["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(first["files_new"], 3);
    let checksum = first["checksum"].as_str().unwrap().to_string();

    let list = cli.json(&["snapshots"]);
    let snaps = list["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["tags"][0], "first");
    assert_eq!(snaps[0]["checksum"], checksum.as_str());

    // dump | sha256sum equals the recorded checksum, for the id, a prefix and `latest`.
    for spec in [id.as_str(), &id[..8], "latest"] {
        let out = cli.command(&["dump", spec]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sha256_hex(&out.stdout), checksum);
        assert_eq!(
            out.stdout.len() as u64,
            first["size_bytes"].as_u64().unwrap()
        );
    }

    let report = cli.json(&["verify"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checksums"][&id], checksum.as_str());
    assert_eq!(cli.json(&["verify", "--quick", "latest"])["ok"], true);

    let target = dir.path().join("restored");
    cli.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // Partial restore: only one directory.
    let part = dir.path().join("part");
    let include = format!("{}/docs/deep", src.display());
    cli.ok(&[
        "restore",
        &id[..10],
        "--target",
        part.to_str().unwrap(),
        "--include",
        &include,
    ]);
    let base = part.join(src.strip_prefix("/").unwrap());
    assert!(base.join("docs/deep/blob.bin").is_file());
    assert!(!base.join("top.txt").exists() && !base.join("docs/readme.txt").exists());

    // Nothing changed: nothing read, almost nothing stored, same archive. A path with `..`
    // names the same directory, so the first snapshot is its parent.
    let dotted = format!(
        "{}/../{}",
        src.display(),
        src.file_name().unwrap().to_str().unwrap()
    );
    let again = cli.json(&["backup", &dotted]);
    assert_eq!(again["parent"], id.as_str());
    assert_eq!(again["bytes_read"], 0);
    assert_eq!(again["files_unchanged"], 3);
    assert!(again["stored_bytes"].as_u64().unwrap() < 4096, "{again}");

    // One changed file: only it is read.
    std::fs::write(src.join("top.txt"), "changed").unwrap();
    let third = cli.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(
        (
            third["files_changed"].as_u64(),
            third["bytes_read"].as_u64()
        ),
        (Some(1), Some(7))
    );
    let out = cli.command(&["dump", "latest"]).output().unwrap();
    assert_eq!(sha256_hex(&out.stdout), third["checksum"].as_str().unwrap());

    // Retention keeps the newest, prune removes what nobody references, all still verifies.
    let f = cli.json(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(f["forget"]["removed"].as_array().unwrap().len(), 2);
    assert_eq!(f["forget"]["kept"][0]["id"], third["snapshot_id"]);
    assert_eq!(
        cli.json(&["snapshots"])["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let v = cli.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let target2 = dir.path().join("restored2");
    cli.ok(&["restore", "latest", "--target", target2.to_str().unwrap()]);
    assert_same_tree(&src, &target2.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn local_repository_full_flow() {
    let dir = tempdir().unwrap();
    full_flow(&Cli::new(BIN, dir.path().join("repo").to_str().unwrap()));
}

#[test]
fn s3_repository_full_flow() {
    let server = S3Server::start();
    let bucket = server.bucket("backups");
    // What a verify that crashed left behind (no process has this id).
    let spool = server.cache.path().join("coffer/.spool");
    std::fs::create_dir_all(spool.join("4000000000-abandoned")).unwrap();
    std::fs::write(spool.join("4000000000-abandoned/pack"), b"old").unwrap();
    full_flow(&Cli::new(BIN, format!("s3://{bucket}/host-a")).with_envs(server.env()));
    // Verify kept the packs it read whole on local disk for its archive passes, and removed
    // them when it was done, with what the crashed one left.
    let left: Vec<_> = std::fs::read_dir(&spool)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    assert!(spool.is_dir() && left.is_empty(), "{left:?}");
    assert!(
        spool.join("CACHEDIR.TAG").is_file(),
        "backups leave the spool out"
    );

    // What the storage refuses is said in words, with a code to act on, not as a dump of the
    // request and the server's answer.
    let refused = |repo: &str, env: (&str, &str)| {
        let out = Cli::new(BIN, repo)
            .with_envs(server.env())
            .with_env(env.0, env.1)
            .run(&["--json", "snapshots"]);
        assert_eq!(out.status.code(), Some(2));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let error = v["error"].as_str().unwrap().to_string();
        assert!(
            !error.contains("context") && !error.contains("Parts {"),
            "{error}"
        );
        (v["code"].as_str().unwrap().to_string(), error)
    };
    let (code, error) = refused("s3://cb/host-a", ("AWS_REGION", "us-east-1"));
    assert_eq!(code, "misconfigured");
    assert!(
        error.contains(r#"the S3 server refused the bucket name "cb": InvalidBucketName"#),
        "{error}"
    );
    let (code, error) = refused(
        &format!("s3://{bucket}/host-a"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
    );
    assert_eq!(code, "permission_denied");
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("not-the-secret"), "{error}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The local cache of an S3 repository (index, snapshots, trees) saves requests and never
/// changes what comes back: restores give the same bytes with the cache deleted, damaged,
/// stale, or copied from another repository.
#[test]
fn s3_cache_saves_requests_and_never_changes_what_is_restored() {
    let server = S3Server::start();
    let bucket = server.bucket("cached");
    let cli = Cli::new(BIN, format!("s3://{bucket}/r")).with_envs(server.env());
    let other = Cli::new(BIN, format!("s3://{bucket}/other")).with_envs(server.env());
    let dir = tempdir().unwrap();
    let src = dir.path().join("src");
    make_source(&src);
    for d in 0..20 {
        for f in 0..10 {
            let path = src.join(format!("many/d{d}/f{f}.txt"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("file {d}/{f}\n").repeat(50 + f * 7)).unwrap();
        }
    }
    cli.init(&[]);
    other.init(&[]);
    let s = src.to_str().unwrap();
    cli.backup(&[&src]);
    other.backup(&[&src.join("docs")]);

    let requests = |args: &[&str]| cli.json(args)["storage"]["requests"].as_u64().unwrap();
    let without = requests(&["--no-cache", "backup", s]);
    requests(&["backup", s]);
    let with = requests(&["backup", s]);
    assert!(
        with < without,
        "a no-change backup with the cache made {with} requests, without {without}"
    );

    let restored = |label: &str| {
        let target = dir.path().join(label);
        let r = cli.json(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
        r["storage"]["requests"].as_u64().unwrap()
    };
    let cache_root = server.cache.path().join("coffer");
    let ids = |d: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let cached_files = |d: &Path| {
        let mut out = vec![];
        let mut pending = vec![d.to_path_buf()];
        while let Some(p) = pending.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    pending.push(e.path());
                } else if e.path().parent() != Some(d) {
                    out.push(e.path());
                }
            }
        }
        out
    };
    let warm = restored("warm");
    assert_eq!(ids(&cache_root).len(), 2, "one cache per repository");
    let mine = ids(&cache_root)
        .into_iter()
        .find(|d| cached_files(d).len() > 3)
        .unwrap();
    let objects = cached_files(&mine);
    assert!(
        objects
            .iter()
            .any(|p| p.to_str().unwrap().contains("/data/")),
        "the packs of trees are cached: {objects:?}"
    );

    // Deleted: rebuilt, and the restore reads more from the server than with it.
    std::fs::remove_dir_all(&cache_root).unwrap();
    let cold = restored("cold");
    assert!(cold > warm, "cold restore {cold} requests, warm {warm}");

    // Damaged: every cached object overwritten; the entries are refused and read again.
    for f in cached_files(&mine) {
        std::fs::write(&f, b"garbage").unwrap();
    }
    restored("damaged");
    let repaired = |f: &std::path::PathBuf| std::fs::read(f).unwrap() != b"garbage";
    let after = cached_files(&mine);
    // Every index file and snapshot is read by every command; the packs of trees a restore
    // needs are.
    for f in after
        .iter()
        .filter(|f| !f.to_str().unwrap().contains("/data/"))
    {
        assert!(repaired(f), "{} was used damaged", f.display());
    }
    assert!(
        after
            .iter()
            .any(|f| f.to_str().unwrap().contains("/data/") && repaired(f))
    );

    // Stale: a cache from before a forget and prune that rewrote the repository.
    let before = dir.path().join("cache-before");
    copy_dir(&cache_root, &before);
    std::fs::write(src.join("many/d3/f3.txt"), "changed").unwrap();
    cli.backup(&[&src]);
    cli.json(&["forget", "--keep-last", "1", "--prune"]);
    std::fs::remove_dir_all(&cache_root).unwrap();
    std::fs::rename(&before, &cache_root).unwrap();
    restored("stale");

    // Another repository's cache put in this one's place: nothing of it is used or kept.
    other.ok(&[
        "restore",
        "latest",
        "--target",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let theirs = ids(&cache_root).into_iter().find(|d| *d != mine).unwrap();
    let foreign: Vec<_> = cached_files(&theirs)
        .iter()
        .map(|p| p.strip_prefix(&theirs).unwrap().to_path_buf())
        .collect();
    std::fs::remove_dir_all(&mine).unwrap();
    std::fs::rename(&theirs, &mine).unwrap();
    restored("foreign");
    for f in foreign {
        assert!(!mine.join(&f).exists(), "{} was kept", f.display());
    }
}

#[test]
fn file_url_and_unencrypted_repositories_work() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(
        BIN,
        format!("file://{}", dir.path().join("plain").display()),
    )
    .without_env("COFFER_PASSWORD");
    cli.init(&["--no-encryption"]);
    let src = dir.path().join("src");
    make_source(&src);
    cli.backup(&[&src]);
    assert_eq!(cli.json(&["verify"])["ok"], true);
    // The data really is unencrypted: the text can be found compressed but not encrypted.
    let key = cli.run(&["key", "export"]);
    assert_eq!(key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&key.stderr).contains("not encrypted"));
}

#[test]
fn stdin_streams_are_backed_up_as_one_file() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let data = seeded(3 * 1024 * 1024 + 5, "dump");
    let mut child = cli
        .command(&["--json", "backup", "--stdin", "--stdin-name", "app.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["bytes_read"].as_u64(), Some(data.len() as u64));
    let target = dir.path().join("out");
    cli.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("app.sql")).unwrap(), data);
    let archive = cli.command(&["dump", "latest"]).output().unwrap().stdout;
    assert_eq!(sha256_hex(&archive), s["checksum"].as_str().unwrap());

    // An empty stream (a dump tool that failed before the pipe) is stored, with a warning.
    let empty = cli
        .command(&["--json", "backup", "--stdin", "--stdin-name", "failed.sql"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(empty.status.success());
    let s: serde_json::Value = serde_json::from_slice(&empty.stdout).unwrap();
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("failed.sql: the stream was empty"), "{s}");
}

#[test]
fn key_export_opens_the_repository_without_the_password() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let src = dir.path().join("src");
    make_source(&src);
    let id = cli.backup(&[&src]);
    let key = cli.ok(&["key", "export"]);
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, &key).unwrap();
    let exported: serde_json::Value = serde_json::from_str(&key).unwrap();
    assert_eq!(exported["master_key"].as_str().unwrap().len(), 64);

    let keyed = Cli::new(BIN, &cli.repo).without_env("COFFER_PASSWORD");
    let out = keyed.json(&["--key-file", key_file.to_str().unwrap(), "snapshots"]);
    assert_eq!(out["snapshots"][0]["id"], id.as_str());
    // The key of another repository is refused.
    let other = Cli::new(BIN, dir.path().join("other").to_str().unwrap());
    other.init(&[]);
    let out = Cli::new(BIN, &other.repo)
        .without_env("COFFER_PASSWORD")
        .run(&["--key-file", key_file.to_str().unwrap(), "snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another repository"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn password_file_is_read_and_its_newline_ignored() {
    let dir = tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "from a file\n").unwrap();
    let cli =
        Cli::new(BIN, dir.path().join("repo").to_str().unwrap()).without_env("COFFER_PASSWORD");
    let mut args = vec!["--password-file", pw.to_str().unwrap(), "repo", "init"];
    args.extend(FAST_KDF);
    cli.ok(&args);
    let with_env = Cli::new(BIN, &cli.repo).with_env("COFFER_PASSWORD", "from a file");
    with_env.ok(&["snapshots"]);
}

#[test]
fn every_command_prints_one_json_document() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    let src = dir.path().join("src");
    make_source(&src);
    for args in [
        [&["repo", "init"][..], &FAST_KDF].concat(),
        vec!["backup", src.to_str().unwrap()],
        vec!["snapshots"],
        vec!["verify"],
        vec!["forget", "--keep-daily", "7", "--dry-run"],
        vec!["prune", "--dry-run"],
        vec!["prune"],
        vec!["key", "export"],
    ] {
        let v = cli.json(&args);
        assert!(v.is_object(), "{args:?}: {v}");
    }
    // Errors too, with a stable code.
    let out = cli.run(&["--json", "restore", "nosuchsnapshot0", "--target", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "snapshot_not_found");
}

#[test]
fn excludes_leave_out_what_they_match() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let src = dir.path().join("src");
    for f in [
        "keep.txt",
        "scratch.tmp",
        "app/node_modules/lib.js",
        "app/main.js",
        "app/keep.tmp",
        "cache/CACHEDIR.TAG",
        "cache/blob",
    ] {
        let p = src.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f).unwrap();
    }
    std::fs::write(
        src.join("cache/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let patterns = dir.path().join("excludes");
    std::fs::write(&patterns, "# build output\nnode_modules\n\n!keep.tmp\n").unwrap();
    let s = cli.json(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "*.tmp",
        "--exclude-file",
        patterns.to_str().unwrap(),
        "--exclude-caches",
    ]);
    assert_eq!(s["excluded"], 3, "{s}");
    let target = dir.path().join("out");
    cli.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (f, kept) in [
        ("keep.txt", true),
        ("scratch.tmp", false),
        ("app/node_modules", false),
        ("app/main.js", true),
        ("app/keep.tmp", true),
        ("cache/CACHEDIR.TAG", true),
        ("cache/blob", false),
    ] {
        assert_eq!(restored.join(f).exists(), kept, "{f}");
    }
    let bad = cli.run(&["backup", src.to_str().unwrap(), "--exclude", "[oops"]);
    assert_eq!(bad.status.code(), Some(2));
}

//! A tree with the hard cases restores identically, through the command line.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coffer_testkit::{Cli, assert_same_tree, seeded, tempdir};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");
const GIB: u64 = 1024 * 1024 * 1024;

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn build_hard_tree(root: &Path) {
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();

    // Every permission mode from 000 to 777, plus setuid, setgid and sticky bits.
    let modes = root.join("modes");
    std::fs::create_dir(&modes).unwrap();
    for m in 0..=0o777u32 {
        let p = modes.join(format!("m{m:03o}"));
        std::fs::write(&p, format!("{m}")).unwrap();
        set_mode(&p, m);
    }
    for (name, m) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("sticky-dir", 0o1777),
    ] {
        let p = root.join(name);
        if name.ends_with("dir") {
            std::fs::create_dir(&p).unwrap();
        } else {
            std::fs::write(&p, name).unwrap();
        }
        set_mode(&p, m);
    }
    let locked = root.join("locked-dir");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("inside"), b"still restored").unwrap();
    set_mode(&locked, 0o555);

    // Names: unicode, newline, spaces, leading dash, very long.
    let names = root.join("names");
    std::fs::create_dir(&names).unwrap();
    for n in [
        "ünïcödé-名前-🙂",
        "new\nline",
        " leading and trailing ",
        "-dash",
        "tab\there",
        &"long".repeat(60),
    ] {
        std::fs::write(names.join(n), n.as_bytes()).unwrap();
    }

    // Symlinks, also dangling and absolute, and hard links.
    std::os::unix::fs::symlink("names", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("absolute")).unwrap();
    std::fs::write(root.join("hard-a"), seeded(300_000, "hard")).unwrap();
    std::fs::hard_link(root.join("hard-a"), root.join("hard-b")).unwrap();
    std::fs::hard_link(root.join("hard-a"), root.join("names/hard-c")).unwrap();

    // Extended attributes.
    std::fs::write(root.join("xattr-file"), b"x").unwrap();
    xattr::set(
        root.join("xattr-file"),
        "user.coffer",
        b"value \x00 with nul",
    )
    .unwrap();
    xattr::set(root.join("empty-dir"), "user.dir", b"on a directory").unwrap();

    // A 2 GiB sparse file with a little data in the middle and at the end.
    let sparse = root.join("sparse.img");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(2 * GIB).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&seeded(100_000, "middle"), GIB).unwrap();
    f.write_all_at(b"end", 2 * GIB - 3).unwrap();
    drop(f);

    // Times with nanoseconds, and old ones.
    let old = root.join("old");
    std::fs::write(&old, b"from 1970").unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(1, 123_456_789))
        .unwrap();
}

#[test]
fn the_hard_cases_restore_identically() {
    let dir = tempdir().unwrap();
    let src = dir.path().join("src");
    build_hard_tree(&src);
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let s = cli.json(&["backup", src.to_str().unwrap()]);
    assert!(s["warnings"].as_array().unwrap().is_empty(), "{s}");
    // The holes of the sparse file are not read.
    assert!(s["bytes_read"].as_u64().unwrap() < 50 * 1024 * 1024, "{s}");

    let target = dir.path().join("restored");
    cli.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);

    let sparse = std::fs::metadata(restored.join("sparse.img")).unwrap();
    assert_eq!(sparse.len(), 2 * GIB);
    assert!(
        sparse.blocks() * 512 < 16 * 1024 * 1024,
        "restored sparse, not as 2 GiB of written zeros: {} blocks",
        sparse.blocks()
    );

    // The archive of this tree hashes to the recorded checksum.
    let mut child = cli
        .command(&["dump", "latest"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let out = child.stdout.as_mut().unwrap();
    loop {
        let n = std::io::Read::read(out, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(hex::encode(h.finalize()), s["checksum"].as_str().unwrap());
    assert_eq!(cli.json(&["verify"])["ok"], true);

    // Restoring again over the restored tree (files, links and dirs already there) is idempotent.
    cli.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored);
}

#[test]
fn restore_never_writes_through_symlinks_in_the_target() {
    let dir = tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), b"backed up").unwrap();
    std::fs::write(src.join("plain"), b"plain").unwrap();
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    cli.backup(&[&src]);

    // The target already has symlinks where the snapshot has a directory and a file, pointing
    // outside the target.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"must stay").unwrap();
    let target = dir.path().join("target");
    let base = target.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&base).unwrap();
    std::os::unix::fs::symlink(&outside, base.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), base.join("plain")).unwrap();

    cli.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"must stay");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert!(
        std::fs::symlink_metadata(base.join("sub"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(std::fs::read(base.join("sub/file")).unwrap(), b"backed up");
    assert_eq!(std::fs::read(base.join("plain")).unwrap(), b"plain");
}

#[test]
fn files_changing_or_vanishing_during_the_backup_are_warnings() {
    let dir = tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..300 {
        std::fs::write(
            src.join(format!("f{i:03}")),
            seeded(100_000, &format!("{i}")),
        )
        .unwrap();
    }
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (src, stop) = (src.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = src.join(format!("f{:03}", n % 300));
                if n.is_multiple_of(2) {
                    let _ = std::fs::remove_file(&p);
                } else {
                    let _ = std::fs::write(&p, seeded((n % 5) as usize * 40_000, &format!("n{n}")));
                }
                n += 1;
            }
        })
    };
    let mut results = vec![];
    for _ in 0..3 {
        results.push(cli.run(&["--json", "backup", src.to_str().unwrap()]));
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    for out in &results {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let archive = cli
            .command(&["dump", s["snapshot_id"].as_str().unwrap()])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&archive)),
            s["checksum"].as_str().unwrap()
        );
    }
    assert_eq!(cli.json(&["verify"])["ok"], true);
}

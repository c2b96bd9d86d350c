//! Damage: a flipped byte in a pack, an index, a snapshot or the key file, a truncated pack, a
//! deleted pack. `verify` names each (exit 1), `restore` refuses the damaged parts, and what
//! does not depend on the damaged object is unaffected. Run on local and S3 repositories.

use std::path::{Path, PathBuf};

use coffer_testkit::{Cli, S3Server, assert_same_tree, seeded, tempdir};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// A repository with two snapshots of unrelated data, A and B, and where its objects are on disk.
struct Fixture {
    _dir: coffer_testkit::TempDir,
    cli: Cli,
    /// Directory that holds the repository's objects (for S3: the server's files).
    objects: PathBuf,
    src_a: PathBuf,
    src_b: PathBuf,
    a: String,
    b: String,
    /// The largest data pack written by backup A.
    pack_a: String,
    /// The smallest pack backup A wrote: its listings.
    trees_a: String,
    /// The index file backup A wrote.
    index_a: String,
    key_file: PathBuf,
}

fn list(root: &Path, dir: &str) -> Vec<String> {
    let mut out = vec![];
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let name = format!("{rel}/{}", e.file_name().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                walk(root, &name, out);
            } else if !e.file_name().to_str().unwrap().starts_with('.') {
                out.push(name);
            }
        }
    }
    walk(root, dir, &mut out);
    out.sort();
    out
}

fn setup(cli: Cli, objects: PathBuf, dir: coffer_testkit::TempDir) -> Fixture {
    cli.init(&[]);
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, cli.ok(&["key", "export"])).unwrap();
    let src_a = dir.path().join("a");
    let src_b = dir.path().join("b");
    for (src, seed) in [(&src_a, "a"), (&src_b, "b")] {
        std::fs::create_dir_all(src).unwrap();
        for i in 0..4 {
            std::fs::write(
                src.join(format!("file{i}")),
                seeded(3 * 1024 * 1024, &format!("{seed}{i}")),
            )
            .unwrap();
        }
    }
    let before = list(&objects, "data");
    let index_before = list(&objects, "index");
    let a = cli.backup(&[&src_a]);
    let after_a = list(&objects, "data");
    let index_a = list(&objects, "index")
        .into_iter()
        .find(|i| !index_before.contains(i))
        .expect("backup A wrote an index file");
    let b = cli.backup(&[&src_b]);
    let mut new_a: Vec<String> = after_a
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    new_a.sort_by_key(|p| std::fs::metadata(objects.join(p)).unwrap().len());
    let pack_a = new_a.pop().expect("backup A wrote packs");
    let trees_a = new_a
        .first()
        .expect("backup A wrote a pack of listings")
        .clone();
    Fixture {
        _dir: dir,
        cli,
        objects,
        src_a,
        src_b,
        a,
        b,
        pack_a,
        trees_a,
        index_a,
        key_file,
    }
}

fn local_fixture() -> Fixture {
    let dir = tempdir().unwrap();
    let repo = dir.path().join("repo");
    setup(Cli::new(BIN, repo.to_str().unwrap()), repo, dir)
}

fn s3_fixture(server: &S3Server, bucket: &str) -> Fixture {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, format!("s3://{bucket}/repo")).with_envs(server.env());
    setup(cli, server.object_file(bucket, "repo"), dir)
}

fn flip_byte(path: &Path, at: Option<u64>) {
    let mut data = std::fs::read(path).unwrap();
    let i = at.unwrap_or(data.len() as u64 / 2) as usize;
    data[i] ^= 0x40;
    std::fs::write(path, data).unwrap();
}

/// Run verify; insist on exit 1 and return the problems.
fn verify_finds_damage(f: &Fixture, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json", "verify"];
    all.extend(args);
    let out = f.cli.run(&all);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify must exit 1: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    v["problems"].as_array().unwrap().clone()
}

fn assert_restores(f: &Fixture, cli: &Cli, snapshot: &str, src: &Path) {
    let target = f
        ._dir
        .path()
        .join(format!("restore-{snapshot}-{}", rand_suffix()));
    cli.ok(&["restore", snapshot, "--target", target.to_str().unwrap()]);
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn damaged_pack(f: Fixture) {
    flip_byte(&f.objects.join(&f.pack_a), None);
    let problems = verify_finds_damage(&f, &[]);
    let p = problems
        .iter()
        .find(|p| p["object"] == f.pack_a.as_str())
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(
        p["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == f.a.as_str()),
        "{p}"
    );
    assert!(
        !p["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == f.b.as_str()),
        "{p}"
    );
    assert!(
        !p["files"].as_array().unwrap().is_empty(),
        "the affected files are named: {p}"
    );

    // Restore of A refuses the damaged file(s), restores the others, and says so.
    let target = f._dir.path().join("restore-a");
    let out = f.cli.run(&[
        "--json",
        "restore",
        &f.a,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged: Vec<&str> = r["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    assert!(!damaged.is_empty());
    let base = target.join(f.src_a.strip_prefix("/").unwrap());
    for i in 0..4 {
        let name = format!("file{i}");
        let restored = base.join(&name);
        if damaged.iter().any(|d| d.ends_with(&name)) {
            assert!(!restored.exists(), "damaged data is never written");
        } else {
            assert_eq!(
                std::fs::read(&restored).unwrap(),
                std::fs::read(f.src_a.join(&name)).unwrap()
            );
        }
    }
    // Dump refuses too, instead of writing wrong bytes.
    assert_eq!(
        f.cli
            .command(&["dump", &f.a])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    // B is unaffected.
    assert_eq!(f.cli.json(&["verify", &f.b])["ok"], true);
    assert_restores(&f, &f.cli, &f.b, &f.src_b);
}

/// Damage in data two snapshots share, checked by two archive passes at once (the second waits
/// for the blobs the first is decoding): both snapshots are named, and neither verify nor the
/// restore of either hangs or writes the damaged bytes.
fn damage_in_shared_data(f: Fixture) {
    // A second snapshot of A's data with one more file: a different archive over the same
    // packs. B is forgotten so that the two passes run side by side.
    std::fs::write(f.src_a.join("extra"), b"one more file").unwrap();
    let a2 = f.cli.backup(&[&f.src_a]);
    f.cli.ok(&["forget", &f.b]);
    flip_byte(&f.objects.join(&f.pack_a), None);
    let problems = verify_finds_damage(&f, &[]);
    for snap in [&f.a, &a2] {
        assert!(
            problems
                .iter()
                .any(|p| p["object"] == format!("snapshots/{snap}")
                    && p["error"].as_str().unwrap().contains("checksum mismatch")),
            "the archive of {snap} no longer matches: {problems:?}"
        );
    }
    let p = problems
        .iter()
        .find(|p| p["object"] == f.pack_a.as_str())
        .unwrap_or_else(|| panic!("{problems:?}"));
    for snap in [&f.a, &a2] {
        assert!(
            p["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == snap.as_str()),
            "{p}"
        );
    }
    let out = f.cli.run(&[
        "restore",
        &a2,
        "--target",
        f._dir.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "the damaged files are refused");
}

/// A flipped byte in the pack of A's listings, after a walk left an intact copy in the local
/// cache (S3): verify reads the repository, not the cache, and says A is damaged; B is not.
fn damaged_tree_pack(f: Fixture) {
    // Reading A's archive keeps its listings in the cache.
    f.cli.ok(&["dump", &f.a]);
    flip_byte(&f.objects.join(&f.trees_a), None);
    let problems = verify_finds_damage(&f, &[]);
    assert!(
        problems.iter().any(|p| p["object"] == f.trees_a.as_str()),
        "{problems:?}"
    );
    let names_a = |p: &serde_json::Value| {
        p["snapshots"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == f.a.as_str()))
    };
    assert!(problems.iter().any(names_a), "{problems:?}");
    assert_eq!(f.cli.json(&["verify", &f.b])["ok"], true);
}

fn truncated_pack(f: Fixture) {
    let p = f.objects.join(&f.pack_a);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let problems = verify_finds_damage(&f, &[]);
    assert!(
        problems.iter().any(|p| p["object"] == f.pack_a.as_str()),
        "{problems:?}"
    );
    let out = f.cli.run(&[
        "restore",
        &f.a,
        "--target",
        f._dir.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(f.cli.json(&["verify", &f.b])["ok"], true);
    assert_restores(&f, &f.cli, &f.b, &f.src_b);
}

fn deleted_pack(f: Fixture) {
    std::fs::remove_file(f.objects.join(&f.pack_a)).unwrap();
    let problems = verify_finds_damage(&f, &[]);
    let p = problems
        .iter()
        .find(|p| p["object"] == f.pack_a.as_str())
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(p["error"].as_str().unwrap().contains("missing"), "{p}");
    assert_eq!(f.cli.json(&["verify", &f.b])["ok"], true);
    assert_restores(&f, &f.cli, &f.b, &f.src_b);
}

/// A backup after a pack was lost does not build on it: the unchanged files whose data it held
/// are read and stored again (with a warning), so the new snapshot is complete, and snapshot A,
/// whose data that was, is whole again.
fn deleted_pack_is_stored_again(f: Fixture) {
    std::fs::remove_file(f.objects.join(&f.pack_a)).unwrap();
    let out = f.cli.json(&["backup", f.src_a.to_str().unwrap()]);
    assert_eq!(out["parent"], f.a.as_str(), "A is the parent: {out}");
    assert!(
        out["stored_bytes"].as_u64().unwrap() > 3 * 1024 * 1024,
        "{out}"
    );
    let warnings = out["warnings"].to_string();
    assert!(
        warnings.contains(&f.pack_a) && warnings.contains("missing"),
        "{warnings}"
    );
    let again = out["snapshot_id"].as_str().unwrap();
    let verified = f.cli.run(&["--json", "verify", again]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    assert_restores(&f, &f.cli, again, &f.src_a);
    assert_eq!(f.cli.json(&["verify"])["ok"], true);
    assert_restores(&f, &f.cli, &f.a, &f.src_a);
}

/// A backup after an index file was deleted does not trust its parent's data blindly: the
/// parent's listings are indexed (a later backup wrote them) but the packs of its files' data
/// are in storage and indexed nowhere, so the unchanged files are stored again and the new
/// snapshot restores from what the remaining index files list.
fn deleted_index_is_stored_again(f: Fixture) {
    std::fs::write(
        f.src_a.join("new"),
        b"a new file, so that a new listing is stored",
    )
    .unwrap();
    let parent = f.cli.backup(&[&f.src_a]);
    std::fs::remove_file(f.objects.join(&f.index_a)).unwrap();
    let out = f.cli.json(&["backup", f.src_a.to_str().unwrap()]);
    assert_eq!(out["parent"], parent.as_str(), "{out}");
    assert!(
        out["stored_bytes"].as_u64().unwrap() > 3 * 1024 * 1024,
        "{out}"
    );
    let again = out["snapshot_id"].as_str().unwrap();
    assert_restores(&f, &f.cli, again, &f.src_a);
    assert_eq!(f.cli.json(&["verify", again])["ok"], true);
}

fn damaged_index(f: Fixture) {
    let index = list(&f.objects, "index");
    let victim = &index[0];
    flip_byte(&f.objects.join(victim), None);
    let problems = verify_finds_damage(&f, &[]);
    assert!(
        problems.iter().any(|p| p["object"] == victim.as_str()),
        "{problems:?}"
    );
    // The data itself is intact: both snapshots still restore (from the packs' own trailers).
    assert_restores(&f, &f.cli, &f.a, &f.src_a);
    assert_restores(&f, &f.cli, &f.b, &f.src_b);
}

fn damaged_snapshot(f: Fixture) {
    let name = format!("snapshots/{}", f.a);
    flip_byte(&f.objects.join(&name), Some(20));
    let problems = verify_finds_damage(&f, &[]);
    assert!(
        problems.iter().any(|p| p["object"] == name.as_str()),
        "{problems:?}"
    );
    // The repository itself no longer lists it. (A cache of an S3 repository that kept the
    // snapshot intact, its bytes hashing to its name, may still serve that copy; verify, above,
    // reads the repository.)
    let listed = f.cli.json(&["--no-cache", "snapshots"]);
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(listed["snapshots"][0]["id"], f.b.as_str());
    assert_restores(&f, &f.cli, &f.b, &f.src_b);
}

fn damaged_key_file(f: Fixture) {
    let keys = list(&f.objects, "keys");
    flip_byte(&f.objects.join(&keys[0]), Some(40));
    let problems = verify_finds_damage(&f, &[]);
    assert!(
        problems.iter().any(|p| p["object"] == keys[0].as_str()),
        "{problems:?}"
    );
    // Opening with the exported master key still works, and everything else is intact.
    let keyed = f.cli.clone().without_env("COFFER_PASSWORD");
    let key = f.key_file.to_str().unwrap();
    assert_eq!(keyed.json(&["--key-file", key, "verify"])["ok"], true);
    let target = f._dir.path().join("by-key");
    keyed.ok(&[
        "--key-file",
        key,
        "restore",
        &f.a,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&f.src_a, &target.join(f.src_a.strip_prefix("/").unwrap()));
}

macro_rules! damage_tests {
    ($($name:ident),*) => {
        mod local {
            $( #[test] fn $name() { super::$name(super::local_fixture()); } )*
        }
        mod s3 {
            $( #[test] fn $name() {
                let server = coffer_testkit::S3Server::start();
                let bucket = server.bucket("damage");
                super::$name(super::s3_fixture(&server, &bucket));
            } )*
        }
    };
}

damage_tests!(
    damaged_pack,
    damage_in_shared_data,
    damaged_tree_pack,
    truncated_pack,
    deleted_pack,
    deleted_pack_is_stored_again,
    deleted_index_is_stored_again,
    damaged_index,
    damaged_snapshot,
    damaged_key_file
);

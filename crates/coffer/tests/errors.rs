//! Bad input and hostile environments: clear one-line errors, exit code 2, and nothing already
//! stored is changed. Some tests mount small tmpfs filesystems, which needs root.

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use coffer_testkit::{Cli, Mount, assert_same_tree, seeded, tempdir};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// Every file of a repository and a hash of its content, to prove nothing changed.
fn fingerprint(repo: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if !p.starts_with(root.join("locks")) {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    blake3::hash(&std::fs::read(&p).unwrap())
                        .to_hex()
                        .to_string(),
                );
            }
        }
    }
    walk(repo, repo, &mut out);
    out
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails(out: &std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "exit code: {}", stderr_of(out));
    let err = stderr_of(out);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

fn repo_with_snapshot(dir: &Path) -> (Cli, PathBuf, String) {
    let cli = Cli::new(BIN, dir.join("repo").to_str().unwrap());
    cli.init(&[]);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), seeded(200_000, "a")).unwrap();
    let id = cli.backup(&[&src]);
    (cli, src, id)
}

#[test]
fn wrong_or_missing_password_is_refused_without_touching_anything() {
    let dir = tempdir().unwrap();
    let (cli, src, _) = repo_with_snapshot(dir.path());
    let before = fingerprint(&dir.path().join("repo"));
    let wrong = cli.clone().with_env("COFFER_PASSWORD", "not the password");
    for args in [
        vec!["snapshots"],
        vec!["backup", src.to_str().unwrap()],
        vec!["prune"],
        vec!["verify"],
    ] {
        assert_fails(&wrong.run(&args), "wrong password");
    }
    assert_fails(
        &cli.clone()
            .without_env("COFFER_PASSWORD")
            .run(&["snapshots"]),
        "COFFER_PASSWORD",
    );
    assert_eq!(before, fingerprint(&dir.path().join("repo")));
    let out = wrong.run(&["--json", "snapshots"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "wrong_password");
}

#[test]
fn missing_repository_and_double_init_say_what_to_do() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, dir.path().join("nothing-here").to_str().unwrap());
    assert_fails(&cli.run(&["snapshots"]), "coffer repo init");
    assert!(
        !dir.path().join("nothing-here").exists(),
        "reading never creates a repository"
    );
    cli.init(&[]);
    let before = fingerprint(&dir.path().join("nothing-here"));
    assert_fails(&cli.run(&["repo", "init"]), "already exists");
    assert_eq!(before, fingerprint(&dir.path().join("nothing-here")));
    // A directory with other things in it is not a repository either.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "x").unwrap();
    assert_fails(
        &Cli::new(BIN, other.to_str().unwrap()).run(&["snapshots"]),
        "no Coffer repository",
    );
    // No repository at all.
    let out = Command::new(BIN)
        .args(["snapshots"])
        .env_remove("COFFER_REPO")
        .output()
        .unwrap();
    assert_fails(&out, "--repo");
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempdir().unwrap();
    let (cli, _, _) = repo_with_snapshot(dir.path());
    assert_eq!(
        cli.run(&["restore", "latest"]).status.code(),
        Some(2),
        "missing --target"
    );
    assert_eq!(
        cli.run(&["backup", "--no-such-flag"]).status.code(),
        Some(2)
    );
    assert_fails(
        &cli.run(&["backup", dir.path().join("missing").to_str().unwrap()]),
        "No such file",
    );
    assert_fails(&cli.run(&["forget"]), "keep rule");
    assert_fails(
        &cli.run(&["restore", "ffff", "--target", "/tmp/x"]),
        "no snapshot matches",
    );
    assert_fails(
        &cli.run(&[
            "restore",
            "latest",
            "--target",
            "/tmp/x",
            "--include",
            "../etc",
        ]),
        "not a path inside the snapshot",
    );
}

#[test]
fn a_corrupted_config_is_reported_not_misread() {
    let dir = tempdir().unwrap();
    let (cli, _, _) = repo_with_snapshot(dir.path());
    let config = dir.path().join("repo/config");
    // One setting changed by one, as a flipped bit would: the checksum no longer matches.
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    v["pack_size"] = (v["pack_size"].as_u64().unwrap() + 1).into();
    std::fs::write(&config, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    assert_fails(&cli.run(&["snapshots"]), "config is damaged");
    assert_eq!(
        cli.run(&["verify"]).status.code(),
        Some(1),
        "verify reports it as damage"
    );
}

#[test]
fn a_full_disk_fails_the_backup_cleanly_and_the_next_one_succeeds() {
    let dir = tempdir().unwrap();
    let mount = Mount::tmpfs(&dir.path().join("disk"), "3m");
    let repo = dir.path().join("disk/repo");
    let cli = Cli::new(BIN, repo.to_str().unwrap());
    cli.init(&[]);
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    std::fs::write(small.join("f"), seeded(100_000, "small")).unwrap();
    let first = cli.backup(&[&small]);

    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..4 {
        std::fs::write(
            big.join(format!("f{i}")),
            seeded(2_000_000, &format!("big{i}")),
        )
        .unwrap();
    }
    let out = cli.run(&["backup", big.to_str().unwrap()]);
    assert_fails(&out, "no space left");
    assert_eq!(
        cli.json(&["snapshots"])["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no snapshot from a failed backup"
    );
    assert_eq!(cli.json(&["verify"])["ok"], true);
    let target = dir.path().join("restored");
    cli.ok(&["restore", &first, "--target", target.to_str().unwrap()]);
    assert_same_tree(&small, &target.join(small.strip_prefix("/").unwrap()));

    // With room again, the same backup succeeds, and prune clears what the failed one left.
    mount.remount("size=64m");
    cli.backup(&[&big]);
    cli.ok(&["prune"]);
    assert_eq!(cli.json(&["verify"])["ok"], true);
}

#[test]
fn a_full_or_read_only_restore_target_fails_clearly() {
    let dir = tempdir().unwrap();
    let (cli, _, id) = repo_with_snapshot(dir.path());
    let full = Mount::tmpfs(&dir.path().join("full"), "64k");
    assert_fails(
        &cli.run(&["restore", &id, "--target", full.0.to_str().unwrap()]),
        "No space left",
    );
    let ro = Mount::tmpfs(&dir.path().join("ro"), "1m");
    ro.remount("ro");
    assert_fails(
        &cli.run(&["restore", &id, "--target", ro.0.to_str().unwrap()]),
        "Read-only file system",
    );
}

#[test]
fn a_read_only_repository_can_be_read_but_not_written() {
    let dir = tempdir().unwrap();
    let mount = Mount::tmpfs(&dir.path().join("disk"), "16m");
    let repo = dir.path().join("disk/repo");
    let cli = Cli::new(BIN, repo.to_str().unwrap());
    cli.init(&[]);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), seeded(100_000, "ro")).unwrap();
    let id = cli.backup(&[&src]);
    mount.remount("ro");
    assert_fails(
        &cli.run(&["backup", src.to_str().unwrap()]),
        "permission denied",
    );
    let target = dir.path().join("restored");
    cli.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert_eq!(cli.json(&["verify"])["ok"], true);
}

#[test]
fn a_new_repository_needs_a_real_password_and_errors_say_things_once() {
    let dir = tempdir().unwrap();
    let repo = dir.path().join("repo");
    let short = Cli::new(BIN, repo.to_str().unwrap()).with_env("COFFER_PASSWORD", "short");
    assert_fails(&short.run(&["repo", "init"]), "too short");
    assert!(!repo.join("config").exists());
    let cli = Cli::new(BIN, repo.to_str().unwrap());
    cli.init(&[]);
    let out = cli.run(&["backup", "/nonexistent/x"]);
    assert_fails(&out, "No such file or directory");
    assert_eq!(
        stderr_of(&out).matches("No such file").count(),
        1,
        "{}",
        stderr_of(&out)
    );
    // The server's help speaks of the server only.
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--data-dir") && !help.contains("--repo"),
        "{help}"
    );
}
